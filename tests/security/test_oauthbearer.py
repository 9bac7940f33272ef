"""OAUTHBEARER with unsecured JWTs: the checks of Kafka's unsecured validator, and the error round trip."""

from __future__ import annotations

import base64
import json

import pytest

from loosely.protocol.errors import ErrorCode
from loosely.security.oauthbearer import OAuthBearerError, OAuthBearerOptions, OAuthBearerServer
from loosely.security.sasl import SaslSession, SaslSettings

NOW_MS = 1_800_000_000_000


def _b64(doc: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def _jwt(claims: dict[str, object], header: dict[str, object] | None = None, signature: str = "") -> str:
    return f"{_b64(header or {'alg': 'none'})}.{_b64(claims)}.{signature}"


def _message(token: str, authzid: str = "") -> bytes:
    return f"n,{'a=' + authzid if authzid else ''},\x01auth=Bearer {token}\x01\x01".encode()


GOOD = {"sub": "alice", "exp": NOW_MS // 1000 + 60, "iat": NOW_MS // 1000, "scope": "read write"}


def test_valid_token_names_the_principal_and_ends_the_session_at_exp() -> None:
    s = SaslSession(SaslSettings(mechanisms=("OAUTHBEARER",)))
    s.handshake("OAUTHBEARER", 1)
    r = s.authenticate(_message(_jwt(GOOD)), 1, 0, NOW_MS)
    assert (r.error_code, r.token, r.session_lifetime_ms) == (ErrorCode.none, b"", 60_000)
    assert s.principal == "User:alice" and s.expired(60_000) and not s.expired(59_999)


def test_reauth_ms_shorter_than_the_token_wins() -> None:
    s = SaslSession(SaslSettings(mechanisms=("OAUTHBEARER",), reauth_ms=10_000))
    s.handshake("OAUTHBEARER", 1)
    assert s.authenticate(_message(_jwt(GOOD)), 1, 0, NOW_MS).session_lifetime_ms == 10_000


@pytest.mark.parametrize(
    ("claims", "header", "signature", "options"),
    [
        ({**GOOD, "exp": NOW_MS // 1000 - 1}, None, "", OAuthBearerOptions()),
        ({k: v for k, v in GOOD.items() if k != "exp"}, None, "", OAuthBearerOptions()),
        ({**GOOD, "sub": ""}, None, "", OAuthBearerOptions()),
        (GOOD, {"alg": "HS256"}, "", OAuthBearerOptions()),
        (GOOD, None, "c2ln", OAuthBearerOptions()),
        ({**GOOD, "iat": NOW_MS // 1000 + 30}, None, "", OAuthBearerOptions()),
        (GOOD, None, "", OAuthBearerOptions(principal_claim="user")),
    ],
)
def test_invalid_tokens_get_kafkas_json_challenge_then_fail(
    claims: dict[str, object], header: dict[str, object] | None, signature: str, options: OAuthBearerOptions
) -> None:
    server = OAuthBearerServer(options)
    assert server.step(_message(_jwt(claims, header, signature)), NOW_MS) == b'{"status":"invalid_token"}'
    with pytest.raises(OAuthBearerError) as e:
        server.step(b"\x01", NOW_MS)
    assert e.value.client_message == '{"status":"invalid_token"}'


def test_required_scope() -> None:
    server = OAuthBearerServer(OAuthBearerOptions(required_scope=("read", "admin")))
    assert server.step(_message(_jwt(GOOD)), NOW_MS) == b'{"status":"insufficient_scope", "scope":"[read, admin]"}'
    ok = OAuthBearerServer(OAuthBearerOptions.from_jaas({"unsecuredValidatorRequiredScope": "read,write"}))
    assert ok.step(_message(_jwt(GOOD)), NOW_MS) == b"" and ok.token is not None


def test_clock_skew_allows_a_just_expired_token() -> None:
    expired = {"sub": "alice", "exp": NOW_MS // 1000 - 1}
    server = OAuthBearerServer(OAuthBearerOptions.from_jaas({"unsecuredValidatorAllowableClockSkewMs": "5000"}))
    assert server.step(_message(_jwt(expired)), NOW_MS) == b""


@pytest.mark.parametrize(
    "message",
    [b"garbage", b"n,,auth=Bearer x", b"y,,\x01auth=Bearer x\x01\x01", b"n,,\x01auth=Basic x\x01\x01",
     b"n,,\x01\x01\x01", b"\xff", b"n,,\x01k\x01\x01"],
)  # fmt: skip
def test_malformed_messages_fail_with_the_generic_message(message: bytes) -> None:
    s = SaslSession(SaslSettings(mechanisms=("OAUTHBEARER",)))
    s.handshake("OAUTHBEARER", 1)
    r = s.authenticate(message, 1, 0, NOW_MS)
    assert r.error_code == ErrorCode.sasl_authentication_failed
    assert r.message == (
        "Authentication failed during authentication due to invalid credentials with SASL mechanism OAUTHBEARER"
    )


def test_authzid_must_be_the_principal() -> None:
    server = OAuthBearerServer(OAuthBearerOptions())
    assert server.step(_message(_jwt(GOOD), authzid="alice"), NOW_MS) == b""
    with pytest.raises(OAuthBearerError, match="different from the token's principal name"):
        OAuthBearerServer(OAuthBearerOptions()).step(_message(_jwt(GOOD), authzid="bob"), NOW_MS)
