"""Signed OAUTHBEARER tokens checked against a JWKS (Kafka's OAuthBearerValidatorCallbackHandler), sans-IO."""

from __future__ import annotations

import functools

import pytest

from loosely.protocol.errors import ErrorCode
from loosely.security.jwt import JwtValidatorOptions, UnknownKeyError, parse_jwks, validate_jwt
from loosely.security.sasl import SaslSession, SaslSettings
from loosely.testing.jwt import JwtSigner, jwks_document

NOW_MS = 1_800_000_000_000
NOW = NOW_MS // 1000
OPTIONS = JwtValidatorOptions(expected_audience=("kafka",), expected_issuer="https://idp.example")
GOOD: dict[str, object] = {"sub": "alice", "iss": "https://idp.example", "aud": "kafka", "iat": NOW, "exp": NOW + 60}


@functools.cache
def _signer(alg: str) -> JwtSigner:
    return JwtSigner(alg, kid=f"kid-{alg}")


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512"])
def test_each_algorithm_family_verifies(alg: str) -> None:
    jwks = parse_jwks(jwks_document(_signer("RS256"), _signer(alg)))
    token = validate_jwt(_signer(alg).sign(GOOD), jwks, OPTIONS, NOW_MS)
    assert (token.principal, token.expires_ms) == ("alice", (NOW + 60) * 1000)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({**GOOD, "exp": NOW - 1}, "expired"),
        ({**GOOD, "nbf": NOW + 31}, "not valid yet"),
        ({**GOOD, "iat": NOW + 61}, "iat is after its exp"),
        ({**GOOD, "aud": "other"}, "expected audiences"),
        ({**GOOD, "aud": ["a", "b"]}, "expected audiences"),
        ({k: v for k, v in GOOD.items() if k != "aud"}, "no aud"),
        ({**GOOD, "iss": "https://evil.example"}, "expected issuer"),
        ({k: v for k, v in GOOD.items() if k != "exp"}, "exp or iat"),
        ({k: v for k, v in GOOD.items() if k != "iat"}, "exp or iat"),
        ({**GOOD, "sub": ""}, "sub claim"),
    ],
)
def test_claims_are_checked(claims: dict[str, object], reason: str) -> None:
    jwks = parse_jwks(jwks_document(_signer("RS256")))
    with pytest.raises(ValueError, match=reason):
        validate_jwt(_signer("RS256").sign(claims), jwks, OPTIONS, NOW_MS)


def test_clock_skew_applies_to_nbf_and_not_to_exp_and_a_future_iat_is_accepted() -> None:
    jwks = parse_jwks(jwks_document(_signer("ES256")))
    claims = {**GOOD, "nbf": NOW + 29, "iat": NOW + 29}  # as Kafka 4.1.1 accepts them
    assert validate_jwt(_signer("ES256").sign(claims), jwks, OPTIONS, NOW_MS).principal == "alice"
    with pytest.raises(ValueError, match="not valid yet"):
        validate_jwt(_signer("ES256").sign(claims), jwks, JwtValidatorOptions(clock_skew_s=0), NOW_MS)
    with pytest.raises(ValueError, match="expired"):
        validate_jwt(_signer("ES256").sign({**GOOD, "exp": NOW}), jwks, OPTIONS, NOW_MS)


def test_a_token_with_aud_needs_an_expected_audience_and_the_sub_claim_name_is_configurable() -> None:
    jwks = parse_jwks(jwks_document(_signer("RS256")))
    with pytest.raises(ValueError, match="expected audiences"):
        validate_jwt(_signer("RS256").sign(GOOD), jwks, JwtValidatorOptions(), NOW_MS)
    claims = {"client_id": "svc", "iat": NOW, "exp": NOW + 5}
    opts = JwtValidatorOptions(sub_claim="client_id")
    assert validate_jwt(_signer("RS256").sign(claims), jwks, opts, NOW_MS).principal == "svc"


def test_wrong_key_unknown_kid_tampering_and_alg_none_are_refused() -> None:
    jwks = parse_jwks(jwks_document(_signer("RS256")))
    impostor = JwtSigner("RS256", kid="kid-RS256")  # same kid, another key
    with pytest.raises(ValueError, match="signature does not verify"):
        validate_jwt(impostor.sign(GOOD), jwks, OPTIONS, NOW_MS)
    with pytest.raises(UnknownKeyError):
        validate_jwt(JwtSigner("RS256", kid="rotated").sign(GOOD), jwks, OPTIONS, NOW_MS)
    head, _, sig = _signer("RS256").sign(GOOD).split(".")
    forged = _signer("RS256").sign({**GOOD, "sub": "admin"}).split(".")[1]
    with pytest.raises(ValueError, match="signature does not verify"):
        validate_jwt(f"{head}.{forged}.{sig}", jwks, OPTIONS, NOW_MS)
    none = _signer("RS256").sign(GOOD, {"alg": "none"}).rsplit(".", 1)[0] + "."
    with pytest.raises(ValueError, match="not accepted"):
        validate_jwt(none, jwks, OPTIONS, NOW_MS)
    with pytest.raises(ValueError, match="not accepted"):  # HMAC with the public key as secret: the classic confusion
        validate_jwt(_signer("RS256").sign(GOOD, {"alg": "HS256"}), jwks, OPTIONS, NOW_MS)
    with pytest.raises(ValueError, match="no EC key"):  # an RSA key cannot verify ES256
        validate_jwt(JwtSigner("ES256", kid="x").sign(GOOD, {"kid": None}), jwks, OPTIONS, NOW_MS)


def test_malformed_jwks_is_refused_and_unusable_keys_are_skipped() -> None:
    for bad in (b"not json", b"[]", b'{"keys": 1}', b'{"keys": [{"kty": "RSA", "n": 5, "e": "AQAB"}]}'):
        with pytest.raises(ValueError, match="JWKS"):
            parse_jwks(bad)
    assert parse_jwks(b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}, {"kty": "RSA", "use": "enc"}]}').keys == ()


def test_session_fails_with_kafkas_json_challenge_and_ends_at_exp() -> None:
    jwks = parse_jwks(jwks_document(_signer("RS256")))
    settings = SaslSettings(
        mechanisms=("OAUTHBEARER",), oauthbearer_validate=lambda t, now: validate_jwt(t, jwks, OPTIONS, now)
    )

    def message(token: str) -> bytes:
        return f"n,,\x01auth=Bearer {token}\x01\x01".encode()

    s = SaslSession(settings)
    s.handshake("OAUTHBEARER", 1)
    r = s.authenticate(message(_signer("RS256").sign(GOOD)), 1, 0, NOW_MS)
    assert (r.error_code, r.session_lifetime_ms, s.principal) == (ErrorCode.none, 60_000, "User:alice")
    s = SaslSession(settings)
    s.handshake("OAUTHBEARER", 1)
    token = JwtSigner("RS256", kid="kid-RS256").sign(GOOD)
    r = s.authenticate(message(token), 1, 0, NOW_MS)
    assert (r.error_code, r.token) == (ErrorCode.none, b'{"status":"invalid_token"}')
    r = s.authenticate(b"\x01", 1, 0, NOW_MS)
    assert r.error_code == ErrorCode.sasl_authentication_failed and s.principal is None
    assert r.message == '{"status":"invalid_token"}'
    assert token not in str(r.log_reason) and "signature" in str(r.log_reason)
