"""One connection's SASL authentication, as Apache Kafka's SaslServerAuthenticator runs it, sans-IO.

Theory of operation
-------------------
A connection on a SASL listener starts in :attr:`Phase.HANDSHAKE`, where only ApiVersions and SaslHandshake may be
sent. SaslHandshake names a mechanism; an enabled one moves the session to :attr:`Phase.AUTHENTICATE` (any other
gets UNSUPPORTED_SASL_MECHANISM with the enabled list, and the connection is closed). There each SaslAuthenticate
carries one token of the mechanism's exchange (PLAIN: one message; SCRAM: two round trips); after SaslHandshake
v0 the tokens come bare instead, framed only by their size (:attr:`SaslSession.raw_tokens`), as Kafka 0.10 clients
send them. The last token makes the session :attr:`Phase.AUTHENTICATED` with the principal ``User:<name>``; a
failing one answers SASL_AUTHENTICATION_FAILED and the shell closes the connection after
``connection.failed.authentication.delay.ms``.

Re-authentication (KIP-368): with ``connections.max.reauth.ms`` > 0 a successful SaslAuthenticate v1+ tells the
client its session lifetime; past it, any request other than a new SaslHandshake/SaslAuthenticate closes the
connection. A client that used SaslAuthenticate v1+ may send SaslHandshake again at any time when authenticated;
it must use the same mechanism and end up the same principal, else the connection is closed. Requests keep being
served under the old session while it re-authenticates.

Delegation tokens (KIP-48): a SCRAM client-first message with ``tokenauth=true`` names a token id instead of a
user; :attr:`SaslSettings.token` gives the token's credential and owner, the session becomes ``User:<owner>`` with
:attr:`SaslSession.token_authenticated` set (such a client may not manage tokens), and it ends when the token
expires, as an OAUTHBEARER session ends at the token's ``exp``.

The messages clients see are Kafka's: for SCRAM only the generic "Authentication failed during authentication due
to invalid credentials with SASL mechanism ..." (naming neither user nor reason, so a client cannot probe which
users exist); for PLAIN, PlainSaslServer's own texts. The detailed reason goes to :attr:`AuthResult.log_reason`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from loosely.protocol.errors import ErrorCode
from loosely.security.oauthbearer import OAuthBearerError, OAuthBearerOptions, OAuthBearerServer, TokenValidator
from loosely.security.plain import PlainError, authenticate_plain
from loosely.security.scram import SCRAM_MECHANISMS, ScramCredential, ScramError, ScramServer, TokenLogin

__all__ = [
    "MECHANISMS_DEFAULT",
    "MECHANISMS_SUPPORTED",
    "AuthResult",
    "HandshakeResult",
    "Phase",
    "SaslSession",
    "SaslSettings",
]

MECHANISMS_SUPPORTED: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
# Kafka's default sasl.enabled.mechanisms is GSSAPI (Kerberos), which loosely does not have; when the setting is
# absent loosely enables the password mechanisms (OAUTHBEARER's unsecured tokens only when asked for by name).
MECHANISMS_DEFAULT: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SASL_HANDSHAKE: Final = 17
_SASL_AUTHENTICATE: Final = 36
_API_VERSIONS: Final = 18


@dataclass(frozen=True, slots=True)
class SaslSettings:
    mechanisms: tuple[str, ...] = MECHANISMS_DEFAULT  # sasl.enabled.mechanisms
    plain_users: Mapping[str, str] = field(default_factory=dict, repr=False)  # PlainLoginModule user_NAME options
    scram: Callable[[str, str], ScramCredential | None] = lambda user, mechanism: None  # (user, mechanism) lookup
    reauth_ms: int = 0  # connections.max.reauth.ms; 0: sessions never expire
    # (token id, mechanism, wall-clock now) -> a delegation token's login, for SCRAM with tokenauth=true
    token: Callable[[str, str, int], TokenLogin | None] = lambda token_id, mechanism, now_ms: None
    oauthbearer: OAuthBearerOptions = field(default_factory=OAuthBearerOptions)  # unsecuredValidator* options
    # OAuthBearerValidatorCallbackHandler on this listener: signed tokens checked against the JWKS (None: unsecured)
    oauthbearer_validate: TokenValidator | None = None


class Phase(enum.Enum):
    HANDSHAKE = "handshake"
    AUTHENTICATE = "authenticate"
    AUTHENTICATED = "authenticated"


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    error_code: int
    mechanisms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AuthResult:
    error_code: int  # NONE, or SASL_AUTHENTICATION_FAILED: answer, then close the connection
    message: str | None = None  # for the client
    token: bytes = b""
    session_lifetime_ms: int = 0
    log_reason: str | None = None  # for the broker's log: why it failed (never a secret)


class SaslSession:
    """The authentication state of one connection; the shell feeds it requests and acts on its answers."""

    __slots__ = (
        "_oauth",
        "_scram",
        "_settings",
        "_wall_ms",
        "mechanism",
        "phase",
        "previous",
        "principal",
        "raw_tokens",
        "reauth_capable",
        "session_expires_ms",
        "token_authenticated",
    )

    def __init__(self, settings: SaslSettings) -> None:
        self._settings = settings
        self.phase = Phase.HANDSHAKE
        self.mechanism: str | None = None
        self.principal: str | None = None  # "User:<name>" once authenticated
        self.previous: tuple[str, str] | None = None  # (mechanism, principal) while re-authenticating
        self.raw_tokens = False  # after SaslHandshake v0 the tokens come without a Kafka request header
        self.reauth_capable = False  # the client has sent SaslAuthenticate v1+ (KIP-368)
        self.session_expires_ms: int | None = None
        # logged in with a delegation token: Kafka's KafkaPrincipal.tokenAuthenticated, which may not manage tokens
        self.token_authenticated = False
        self._wall_ms = 0
        self._scram: ScramServer | None = None
        self._oauth: OAuthBearerServer | None = None

    def allows(self, api_key: int) -> bool:
        """May a request of this API be handled now? (False: close the connection, as Kafka does.)"""
        if self.principal is not None:
            return True
        if self.phase is Phase.HANDSHAKE:
            return api_key in (_API_VERSIONS, _SASL_HANDSHAKE)
        return api_key == _SASL_AUTHENTICATE

    def takes_handshake(self) -> bool:
        """Is a SaslHandshake now part of authentication (else it is answered ILLEGAL_SASL_STATE, as by Kafka)?"""
        return self.phase is Phase.HANDSHAKE or (self.phase is Phase.AUTHENTICATED and self.reauth_capable)

    def expired(self, now_ms: int) -> bool:
        return self.session_expires_ms is not None and now_ms >= self.session_expires_ms

    def handshake(self, mechanism: str, version: int) -> HandshakeResult:
        enabled = self._settings.mechanisms
        assert self.takes_handshake()
        if mechanism not in enabled:
            return HandshakeResult(ErrorCode.unsupported_sasl_mechanism, enabled)
        if self.phase is Phase.AUTHENTICATED:
            assert self.mechanism is not None and self.principal is not None
            self.previous = (self.mechanism, self.principal)
        self.phase = Phase.AUTHENTICATE
        self.mechanism = mechanism
        self.raw_tokens = version == 0
        self._scram = None
        self._oauth = (
            OAuthBearerServer(self._settings.oauthbearer, self._settings.oauthbearer_validate)
            if mechanism == "OAUTHBEARER"
            else None
        )
        if mechanism in SCRAM_MECHANISMS:
            scram, tokens = self._settings.scram, self._settings.token
            self._scram = ScramServer(
                SCRAM_MECHANISMS[mechanism],
                lambda user: scram(user, mechanism),
                token_lookup=lambda token_id: tokens(token_id, mechanism, self._wall_ms),
            )
        return HandshakeResult(ErrorCode.none, enabled)

    def authenticate(self, token: bytes, version: int, now_ms: int, wall_ms: int = 0) -> AuthResult:
        """One client token (SaslAuthenticate ``version``, or -1 for a raw token after SaslHandshake v0).

        ``now_ms`` is monotonic (session expiry); ``wall_ms`` is the time of day, against which OAUTHBEARER tokens'
        ``exp`` and ``iat`` are checked.
        """
        assert self.phase is Phase.AUTHENTICATE and self.mechanism is not None
        self.reauth_capable = self.reauth_capable or version > 0
        doing = "re-authentication" if self.previous is not None else "authentication"
        generic = (
            f"Authentication failed during {doing} due to invalid credentials with SASL mechanism {self.mechanism}"
        )
        if self.previous is not None and self.previous[0] != self.mechanism:
            message = (
                f"SASL mechanism '{self.mechanism}' requested by client is not supported for re-authentication of "
                f"mechanism '{self.previous[0]}'"
            )
            return self._fail(message, message)
        user: str | None = None
        response = b""
        credential_lifetime_ms: int | None = None
        token_login = False
        self._wall_ms = wall_ms
        try:
            if self._oauth is not None:
                response = self._oauth.step(token, wall_ms)
                if self._oauth.token is not None:
                    user = self._oauth.token.principal
                    credential_lifetime_ms = max(0, self._oauth.token.expires_ms - wall_ms)
            elif self._scram is not None:
                response = self._scram.step(token)
                if self._scram.complete:
                    user = self._scram.user
                    if self._scram.token is not None:  # Kafka: the session ends when the token expires
                        token_login = True
                        credential_lifetime_ms = max(0, self._scram.token.expiry_ms - wall_ms)
            else:
                user = authenticate_plain(token, self._settings.plain_users)
        except ScramError as e:
            return self._fail(generic, str(e))
        except PlainError as e:
            return self._fail(str(e), str(e))
        except OAuthBearerError as e:
            return self._fail(e.client_message or generic, str(e))
        if user is None:
            return AuthResult(ErrorCode.none, token=response)
        principal = f"User:{user}"
        if self.previous is not None and self.previous[1] != principal:
            old = self.previous[1].replace(":", ".", 1)
            message = f"Cannot change principals during re-authentication from {old}: {principal.replace(':', '.', 1)}"
            return self._fail(message, message)
        self.principal = principal
        self.token_authenticated = token_login
        self.phase = Phase.AUTHENTICATED
        self.previous = None
        self._scram = self._oauth = None
        # Kafka: the session ends at the credential's expiry (a token's exp) or after connections.max.reauth.ms,
        # whichever comes first; neither set, it never ends.
        limits = [ms for ms in (credential_lifetime_ms, self._settings.reauth_ms or None) if ms is not None]
        lifetime = min(limits) if limits else 0
        self.session_expires_ms = now_ms + lifetime if limits else None
        return AuthResult(ErrorCode.none, token=response, session_lifetime_ms=lifetime)

    def _fail(self, message: str, reason: str) -> AuthResult:
        self._scram = self._oauth = None
        return AuthResult(ErrorCode.sasl_authentication_failed, message, log_reason=reason)
