"""Server-side :class:`ssl.SSLContext` objects built from :class:`TlsSettings`, rebuilt when certificate files change.

Theory of operation
-------------------
A TLS listener asks :meth:`ServerContexts.current` for the context of each new connection. At most once per
``check_interval_s`` it compares the (modification time, size) of the keystore and truststore files with what it
saw when it last built the context; when they differ it builds a new context, logs one line, and new connections
use it (connections already open keep theirs, as in Kafka, whose dynamic keystore update affects new connections
only). A rebuild that fails (a half-written file, a key that does not match its certificate) logs one line and
keeps the old context; the next change is tried again.

Inline PEM (``ssl.keystore.key`` / ``ssl.keystore.certificate.chain``) must reach OpenSSL through a file: it is
written to a private temporary file (mode 0600), loaded, and removed at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Callable

from loosely.tls.principal import PrincipalRule, parse_rules
from loosely.tls.settings import TlsSettings

__all__ = ["ServerContexts", "build_server_context"]

log = logging.getLogger("loosely.tls")

_VERIFY = {"required": ssl.CERT_REQUIRED, "requested": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def _no_password() -> str:
    # Without a callback OpenSSL would ask for the pass phrase on the terminal and the broker would hang there.
    raise ValueError("the private key is encrypted: set ssl.key.password")


def _load_chain(ctx: ssl.SSLContext, s: TlsSettings) -> None:
    password: str | Callable[[], str] = s.key_password if s.key_password is not None else _no_password
    if s.keystore_location is not None:
        ctx.load_cert_chain(s.keystore_location, password=password)
        return
    assert s.keystore_certificate_chain is not None and s.keystore_key is not None
    fd, path = tempfile.mkstemp(prefix="loosely-key-", suffix=".pem")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(s.keystore_key.strip() + "\n" + s.keystore_certificate_chain.strip() + "\n")
        ctx.load_cert_chain(path, password=password)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def build_server_context(s: TlsSettings) -> ssl.SSLContext:
    """A server context for ``s``. Raises :class:`ssl.SSLError` or :class:`OSError` for unreadable material."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = min(_VERSIONS[p] for p in s.enabled_protocols)
    ctx.maximum_version = max(_VERSIONS[p] for p in s.enabled_protocols)
    _load_chain(ctx, s)
    ctx.verify_mode = _VERIFY[s.client_auth]
    if s.truststore_location is not None:
        ctx.load_verify_locations(cafile=s.truststore_location)
    elif s.truststore_certificates:
        ctx.load_verify_locations(cadata=s.truststore_certificates)
    elif s.client_auth == "requested":
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # as Kafka falls back to the JVM's trust store
    return ctx


def _fingerprint(paths: tuple[str, ...]) -> tuple[tuple[int, int] | None, ...]:
    out: list[tuple[int, int] | None] = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size))
    return tuple(out)


class ServerContexts:
    """The current TLS context of one listener, rebuilt when its certificate files change."""

    def __init__(
        self,
        listener: str,
        settings: TlsSettings,
        *,
        check_interval_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Build the first context; :class:`ValueError` with one sentence when the material cannot be loaded."""
        settings.check(listener)
        self.listener = listener
        self.settings = settings
        self.rules: tuple[PrincipalRule, ...] = parse_rules(settings.principal_mapping_rules)
        self._interval_s = check_interval_s
        self._monotonic = monotonic
        self._seen = _fingerprint(settings.watched_files)
        try:
            self._context = build_server_context(settings)
        except (ssl.SSLError, OSError, ValueError) as e:
            raise ValueError(f"listener {listener}: cannot load its TLS key and certificates: {e}") from None
        self._checked_s = monotonic()
        self.reloads = 0

    def current(self) -> ssl.SSLContext:
        now = self._monotonic()
        if now - self._checked_s >= self._interval_s:
            self._checked_s = now
            self._maybe_reload()
        return self._context

    def _maybe_reload(self) -> None:
        seen = _fingerprint(self.settings.watched_files)
        if seen == self._seen:
            return
        self._seen = seen
        try:
            self._context = build_server_context(self.settings)
        except (ssl.SSLError, OSError, ValueError) as e:
            log.error("listener %s: certificate files changed but cannot be loaded (%s); keeping the old ones",
                      self.listener, e)
            return
        self.reloads += 1
        log.info("listener %s: certificate files changed; new connections use the new certificates", self.listener)
