"""SASL/OAUTHBEARER with unsecured JWTs (RFC 7628), as Kafka's OAuthBearerUnsecuredValidatorCallbackHandler checks
them: for development only, since anyone can make such a token.

The client's one message is ``n,[a=authzid],`` then ``^Aauth=Bearer <token>^A[key=value^A...]^A`` (``^A`` is 0x01).
The token is an unsecured JWS: ``base64url(header).base64url(claims).`` with ``"alg": "none"`` and an empty
signature. As in Kafka: the principal claim (``sub`` unless ``unsecuredValidatorPrincipalClaimName`` says otherwise)
must be a non-empty string, ``exp`` must be present and not past (``unsecuredValidatorAllowableClockSkewMs`` of
slack), ``iat`` if present must not be in the future and must precede ``exp``, and every scope of
``unsecuredValidatorRequiredScope`` must be in the ``scope`` claim. A token that fails is answered with Kafka's JSON
challenge (``{"status":"invalid_token"}``); the client acknowledges with a lone 0x01 and the exchange then fails with
that text. A malformed message fails at once with the generic message (see :mod:`loosely.security.sasl`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["OAuthBearerError", "OAuthBearerOptions", "OAuthBearerServer", "OAuthBearerToken", "TokenValidator"]

_AUTH: Final = re.compile(r"Bearer +([-_~+/.a-zA-Z0-9]+=*)")


class OAuthBearerError(Exception):
    """The exchange failed. ``client_message`` is what Kafka tells the client (None: the generic message)."""

    def __init__(self, reason: str, client_message: str | None = None) -> None:
        super().__init__(reason)
        self.client_message = client_message


@dataclass(frozen=True, slots=True)
class OAuthBearerOptions:
    """The unsecuredValidator* options of the listener's OAuthBearerLoginModule JAAS line."""

    principal_claim: str = "sub"
    scope_claim: str = "scope"
    required_scope: tuple[str, ...] = ()
    clock_skew_ms: int = 0

    @staticmethod
    def from_jaas(options: Mapping[str, str]) -> OAuthBearerOptions:
        skew = options.get("unsecuredValidatorAllowableClockSkewMs", "0")
        if not skew.isdigit():
            raise ValueError("unsecuredValidatorAllowableClockSkewMs must be a non-negative number")
        return OAuthBearerOptions(
            principal_claim=options.get("unsecuredValidatorPrincipalClaimName", "sub") or "sub",
            scope_claim=options.get("unsecuredValidatorScopeClaimName", "scope") or "scope",
            required_scope=tuple(s for s in options.get("unsecuredValidatorRequiredScope", "").split(",") if s),
            clock_skew_ms=int(skew),
        )


@dataclass(frozen=True, slots=True)
class OAuthBearerToken:
    principal: str
    expires_ms: int  # the token's exp, in ms since the epoch: the session ends then (KIP-368)
    claims: Mapping[str, object] = field(repr=False)


# (token, time of day in ms) -> the token's principal and expiry, or ValueError: the signed-token path
TokenValidator = Callable[[str, int], OAuthBearerToken]


def _segment(text: str) -> dict[str, object]:
    try:
        doc = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("malformed JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("malformed JSON")
    return doc


def validate_unsecured(token: str, options: OAuthBearerOptions, now_ms: int) -> OAuthBearerToken:
    """The token's principal and expiry; ValueError says why it is not acceptable (the scope check: ``scope:``)."""
    parts = token.split(".")
    if len(parts) != 3 or parts[2]:
        raise ValueError("an unsecured JWS has three parts and an empty signature")
    header, claims = _segment(parts[0]), _segment(parts[1])
    if header.get("alg") != "none":
        raise ValueError("Unsecured JWS must have 'none' for an algorithm")
    principal = claims.get(options.principal_claim)
    if not isinstance(principal, str) or not principal.strip():
        raise ValueError(f"Required claim missing: {options.principal_claim}")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise ValueError("Required claim missing: exp")
    skew = options.clock_skew_ms
    if now_ms - skew >= exp * 1000:
        raise ValueError("the token has expired")
    if iat is not None:
        if not isinstance(iat, int | float) or isinstance(iat, bool) or iat * 1000 > now_ms + skew:
            raise ValueError("the token's iat is in the future or not a number")
        if exp <= iat:
            raise ValueError("the token's exp is not after its iat")
    scope = claims.get(options.scope_claim, [])
    granted = set(scope.split() if isinstance(scope, str) else scope if isinstance(scope, list) else [])
    missing = [s for s in options.required_scope if s not in granted]
    if missing:
        raise ValueError("scope:" + " ".join(options.required_scope))
    return OAuthBearerToken(principal, int(exp * 1000), claims)


def _parse_initial_response(text: str) -> tuple[str, str]:
    """``(authzid, token)`` from the client's message; OAuthBearerError if malformed."""
    gs2, sep, rest = text.partition(",")
    authz, sep2, rest = rest.partition(",")
    if gs2 != "n" or not sep or not sep2 or (authz and not authz.startswith("a=")):
        raise OAuthBearerError("the OAUTHBEARER message must start with the gs2 header 'n,[a=authzid],'")
    if not (rest.startswith("\x01") and rest.endswith("\x01\x01")):
        raise OAuthBearerError("the OAUTHBEARER message's key/value pairs are not framed by 0x01")
    pairs: dict[str, str] = {}
    for kv in rest[1:-2].split("\x01"):
        key, eq, value = kv.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z]+", key) or not re.fullmatch(r"[\x21-\x7e \t\r\n]+", value):
            raise OAuthBearerError("malformed key/value pair in the OAUTHBEARER message")
        pairs[key] = value
    m = _AUTH.fullmatch(pairs.get("auth", ""))
    if m is None:
        raise OAuthBearerError("the OAUTHBEARER message has no 'auth=Bearer <token>'")
    return authz[2:], m.group(1)


class OAuthBearerServer:
    """One OAUTHBEARER exchange: :meth:`step` returns the server's answer, :attr:`token` once it succeeded."""

    __slots__ = ("_error", "_reason", "_validate", "options", "token")

    def __init__(self, options: OAuthBearerOptions, validate: TokenValidator | None = None) -> None:
        """``validate`` checks signed tokens (:mod:`loosely.security.jwt`); without one tokens must be unsecured."""
        self.options = options
        self._validate = validate
        self._error: str | None = None
        self._reason = ""  # why the token was refused, for the log once the client acknowledges
        self.token: OAuthBearerToken | None = None

    def step(self, message: bytes, now_ms: int) -> bytes:
        if message == b"\x01" and self._error is not None:
            raise OAuthBearerError(f"invalid token: {self._reason}", self._error)
        self._error = None
        try:
            authzid, value = _parse_initial_response(message.decode("utf-8"))
        except UnicodeDecodeError:
            raise OAuthBearerError("the OAUTHBEARER message is not UTF-8") from None
        try:
            token = (
                self._validate(value, now_ms)
                if self._validate is not None
                else validate_unsecured(value, self.options, now_ms)
            )
        except ValueError as e:
            self._reason = str(e)
            scope = str(e).removeprefix("scope:") if str(e).startswith("scope:") else None
            status = "insufficient_scope" if scope is not None else "invalid_token"
            # Kafka's exact text (OAuthBearerSaslServer.jsonErrorResponse), shown to the client on failure
            self._error = (
                f'{{"status":"{status}"' + (f', "scope":"[{", ".join(scope.split())}]"' if scope else "") + "}"
            )
            return self._error.encode()
        if authzid and authzid != token.principal:
            message_text = (
                f"Authentication failed: Client requested an authorization id ({authzid}) that is different from "
                f"the token's principal name ({token.principal})"
            )
            raise OAuthBearerError(message_text, message_text)
        self.token = token
        return b""
