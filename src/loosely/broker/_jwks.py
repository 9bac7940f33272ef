"""The JWKS behind signed OAUTHBEARER tokens: loaded at start, refreshed in the background, never on the event loop.

Theory of operation
-------------------
A listener whose ``listener.name.<l>.oauthbearer.sasl.server.callback.handler.class`` is Kafka's
OAuthBearerValidatorCallbackHandler checks each token with :meth:`JwksSource.validate`, a synchronous call against
the key set in memory (:func:`loosely.security.jwt.validate_jwt`). The key set comes from
``sasl.oauthbearer.jwks.endpoint.url``: a ``file:`` URL is read, an ``http(s):`` URL fetched with a
:data:`FETCH_TIMEOUT_S` timeout, both in a worker thread (``asyncio.to_thread``) so a slow identity provider never
stalls the broker. The first load happens before the broker serves (a broker that cannot get its keys does not
start, as Kafka's). After that it is reloaded every ``sasl.oauthbearer.jwks.endpoint.refresh.ms``; a failed reload
keeps the keys it had and is logged once.

A token whose ``kid`` is not in the set (the provider rotated its keys) fails, as in Kafka, and schedules a reload
at once, at most one per ``sasl.oauthbearer.jwks.endpoint.retry.backoff.ms``, so a client retrying with a new key
succeeds shortly after, and a flood of made-up ``kid`` values costs at most one fetch per backoff.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Final

from loosely.broker._admission import LogEvery
from loosely.security.jwt import Jwks, JwtValidatorOptions, UnknownKeyError, parse_jwks, validate_jwt
from loosely.security.oauthbearer import OAuthBearerToken
from loosely.storage.clock import Clock

__all__ = ["FETCH_TIMEOUT_S", "JwksSource"]

log = logging.getLogger("loosely.broker.sasl")

FETCH_TIMEOUT_S: Final = 10.0
_JWKS_BYTES_MAX: Final = 1_048_576  # a key set is a few KiB; more is not a key set


def _read(url: str) -> bytes:
    """The document at ``url`` (blocking: run in a thread)."""
    if url.startswith("file:"):
        path = urllib.parse.unquote(urllib.parse.urlparse(url).path)
        with open(Path(path), "rb") as f:
            data = f.read(_JWKS_BYTES_MAX + 1)
    else:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
            data = response.read(_JWKS_BYTES_MAX + 1)
    if len(data) > _JWKS_BYTES_MAX:
        raise ValueError(f"the JWKS is larger than {_JWKS_BYTES_MAX} bytes")
    return data


class JwksSource:
    """The current key set of one JWKS URL and the validator that uses it."""

    def __init__(
        self, url: str, options: JwtValidatorOptions, clock: Clock, refresh_ms: int, retry_backoff_ms: int
    ) -> None:
        self.url = url
        self.options = options
        self.clock = clock
        self.refresh_ms = refresh_ms
        self.retry_backoff_ms = retry_backoff_ms
        self.jwks = Jwks()
        self.loads = 0  # successful loads, for tests and metrics
        self._last_attempt_ms: int | None = None
        self._expedited: asyncio.Task[None] | None = None
        self._log_failure = LogEvery(log, clock)

    async def load(self) -> None:
        """Fetch and parse the key set now; OSError or ValueError if that fails (the old keys stay)."""
        self._last_attempt_ms = self.clock.monotonic_ms()
        self.jwks = parse_jwks(await asyncio.to_thread(_read, self.url))
        self.loads += 1

    async def run(self) -> None:
        """Reload every ``refresh_ms`` until cancelled."""
        while True:
            await asyncio.sleep(self.refresh_ms / 1000)
            await self._reload()

    async def _reload(self) -> None:
        try:
            await self.load()
        except (OSError, ValueError) as e:
            self._log_failure(
                logging.WARNING, "could not reload the JWKS from %s (keeping the old keys): %s", self.url, e
            )

    def validate(self, token: str, now_ms: int) -> OAuthBearerToken:
        """Check ``token`` against the keys held now; an unknown ``kid`` also schedules a reload (rate-limited)."""
        try:
            return validate_jwt(token, self.jwks, self.options, now_ms)
        except UnknownKeyError:
            now = self.clock.monotonic_ms()
            last = self._last_attempt_ms
            idle = self._expedited is None or self._expedited.done()
            if idle and (last is None or now - last >= self.retry_backoff_ms):
                self._last_attempt_ms = now
                self._expedited = asyncio.get_running_loop().create_task(self._reload())
            raise

    async def stop(self) -> None:
        if self._expedited is not None:
            self._expedited.cancel()
            await asyncio.gather(self._expedited, return_exceptions=True)
