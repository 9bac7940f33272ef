"""The SASL gate: the asyncio side of authenticating a connection on a SASL listener.

Theory of operation
-------------------
Every connection on a SASL listener owns a :class:`~loosely.security.sasl.SaslSession` (the sans-IO state machine).
The connection's worker hands each frame to :meth:`SaslGate.handle` before the normal dispatch. The gate answers
SaslHandshake and SaslAuthenticate itself while they are part of (re-)authentication, closes the connection on a
request the session does not allow yet (as Kafka does: no answer), closes it when a KIP-368 session has expired
and the client did not re-authenticate, and otherwise lets the frame through (:data:`PASS`) to the handlers, which
then see ``principal``. After SaslHandshake v0 the next frame is a bare SASL token, answered bare.

A failed authentication is answered (SASL_AUTHENTICATION_FAILED or UNSUPPORTED_SASL_MECHANISM) after
``connection.failed.authentication.delay.ms`` and the connection is closed: the wait is an ``asyncio.sleep`` in that
connection's own worker, so other connections go on, and it slows down password guessing on one connection.
Failures are logged through :class:`~loosely.broker._admission.LogEvery` (one line per interval with a count), and
nothing is kept per failed attempt, so thousands of failed logins cost neither memory nor log volume.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from loosely.broker._admission import LogEvery
from loosely.broker.context import CLOSE_CONNECTION, Request
from loosely.broker.handlers._util import Response, ms
from loosely.protocol import framing
from loosely.protocol.errors import ErrorCode, ProtocolError
from loosely.protocol.messages import API_NAMES, ApiKey, decode_request, encode_response, peek_request_prefix
from loosely.security.jaas import parse_jaas, plain_users
from loosely.security.oauthbearer import OAuthBearerOptions
from loosely.security.sasl import AuthResult, Phase, SaslSession, SaslSettings
from loosely.storage.clock import Clock

__all__ = ["PASS", "AnswerAndClose", "SaslGate", "oauthbearer_options_for", "plain_users_for"]

log = logging.getLogger("loosely.broker.sasl")

# The frame is not part of authentication: dispatch it as usual.
PASS: Final = object()


@dataclass(frozen=True, slots=True)
class AnswerAndClose:
    """Write ``data``, then close the connection (a failed authentication)."""

    data: bytes


class SaslConnection(Protocol):
    sasl: SaslSession | None
    principal: str
    peer: str


def plain_users_for(jaas_configs: Mapping[str, str], listener: str) -> dict[str, str]:
    """The PLAIN users of ``listener`` from its ``listener.name.<listener>.plain.sasl.jaas.config`` line."""
    line = jaas_configs.get(f"{listener.lower()}.plain")
    return plain_users(parse_jaas(line)) if line is not None else {}


def oauthbearer_options_for(jaas_configs: Mapping[str, str], listener: str) -> OAuthBearerOptions:
    """The unsecured-token validator options of ``listener``'s OAuthBearerLoginModule line (defaults without one)."""
    line = jaas_configs.get(f"{listener.lower()}.oauthbearer")
    return OAuthBearerOptions.from_jaas(parse_jaas(line).options) if line is not None else OAuthBearerOptions()


class SaslGate:
    def __init__(self, settings: Mapping[str, SaslSettings], clock: Clock, failed_delay_ms: int) -> None:
        self.settings = settings  # by listener name: the SASL listeners only
        self.clock = clock
        self.failed_delay_ms = failed_delay_ms
        self.failed_total = 0
        self.succeeded_total = 0
        self._log_failure = LogEvery(log, clock)

    async def handle(self, conn: SaslConnection, frame: bytes) -> object:
        """:data:`PASS`, a response frame, :class:`AnswerAndClose`, or ``CLOSE_CONNECTION``."""
        s = conn.sasl
        assert s is not None
        now = self.clock.monotonic_ms()
        if s.raw_tokens and s.phase is Phase.AUTHENTICATE:
            r = s.authenticate(frame, -1, now, self.clock.now_ms())
            if r.error_code != ErrorCode.none:
                await self._failed(conn, r.log_reason or str(r.message), s.mechanism)
                return CLOSE_CONNECTION  # no error response exists without the Kafka header
            self._maybe_done(conn, s)
            return framing.frame(r.token)  # SASL v0: the raw token, size-prefixed like a frame
        try:
            api_key, version, correlation_id = peek_request_prefix(frame)
        except ProtocolError as e:
            self._log_failure(logging.WARNING, "closing connection from %s: not a Kafka request (%s)", conn.peer, e)
            return CLOSE_CONNECTION
        if s.expired(now) and api_key not in (ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE):
            log.info("closing connection from %s: its SASL session expired (connections.max.reauth.ms)", conn.peer)
            return CLOSE_CONNECTION
        handshake = api_key == ApiKey.SASL_HANDSHAKE and s.takes_handshake()
        authenticate = api_key == ApiKey.SASL_AUTHENTICATE and s.phase is Phase.AUTHENTICATE and not s.raw_tokens
        if not (handshake or authenticate):
            if s.allows(api_key):
                return PASS
            self._log_failure(
                logging.WARNING,
                "closing connection from %s: %s request before SASL authentication",
                conn.peer,
                API_NAMES.get(api_key, str(api_key)),
            )
            return CLOSE_CONNECTION
        try:
            _, decoded = decode_request(frame)
            request: Request = decoded
        except ProtocolError as e:
            self._log_failure(logging.WARNING, "closing connection from %s: bad SASL request (%s)", conn.peer, e)
            return CLOSE_CONNECTION
        if handshake:
            h = s.handshake(request.mechanism, version)
            resp = Response.of(api_key, version).make(error_code=h.error_code, mechanisms=h.mechanisms)
            out = encode_response(api_key, version, correlation_id, resp)
            if h.error_code != ErrorCode.none:
                await self._failed(conn, f"unsupported SASL mechanism {request.mechanism[:64]!r}", None)
                return AnswerAndClose(out)
            return out
        r = s.authenticate(request.auth_bytes, version, now, self.clock.now_ms())
        out = encode_response(api_key, version, correlation_id, self._auth_response(version, r))
        if r.error_code != ErrorCode.none:
            await self._failed(conn, r.log_reason or str(r.message), s.mechanism)
            return AnswerAndClose(out)
        self._maybe_done(conn, s)
        return out

    @staticmethod
    def _auth_response(version: int, r: AuthResult) -> object:
        return Response.of(ApiKey.SASL_AUTHENTICATE, version).make(
            error_code=r.error_code,
            error_message=r.message,
            auth_bytes=r.token,
            session_lifetime=ms(r.session_lifetime_ms),
        )

    def _maybe_done(self, conn: SaslConnection, s: SaslSession) -> None:
        if s.phase is Phase.AUTHENTICATED and s.principal is not None:
            if conn.principal != s.principal:
                log.info("%s authenticated as %s with %s", conn.peer, s.principal, s.mechanism)
            conn.principal = s.principal
            self.succeeded_total += 1

    async def _failed(self, conn: SaslConnection, reason: str, mechanism: str | None) -> None:
        self.failed_total += 1
        self._log_failure(
            logging.WARNING,
            "failed SASL authentication from %s%s: %s (%d failures so far)",
            conn.peer,
            f" with {mechanism}" if mechanism else "",
            reason,
            self.failed_total,
        )
        if self.failed_delay_ms > 0:
            await asyncio.sleep(self.failed_delay_ms / 1000)
