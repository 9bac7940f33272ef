"""Signed JWTs for SASL/OAUTHBEARER, checked against a JWKS as Kafka's OAuthBearerValidatorCallbackHandler does
(KIP-768), sans-IO: the key set arrives as bytes, the time as a number.

Theory of operation
-------------------
:func:`parse_jwks` turns a JWKS document (RFC 7517) into :class:`Jwks`: the RSA and EC public keys usable for
signatures, by ``kid``. Keys of other types (``oct``, ``OKP``) or marked for encryption are left out, as Kafka's
selector never picks them. :func:`validate_jwt` then checks one compact JWS:

1. three base64url parts; the header's ``alg`` is one of RS256/384/512, PS256/384/512, ES256/384/512 (``none`` and
   the HMAC algorithms are refused: a key set of public keys cannot verify them, and ``none`` verifies nothing);
2. the key: the header's ``kid`` names one (an unknown ``kid`` raises :class:`UnknownKeyError`, on which the
   broker refreshes the key set, at most once per ``sasl.oauthbearer.jwks.endpoint.retry.backoff.ms``); without a
   ``kid`` the first key of the algorithm's type verifies;
3. the signature over ``header.payload`` (ES*: the JWS ``r || s`` form, turned into DER for ``cryptography``);
4. the claims: ``exp`` and ``iat`` are required (as Kafka's jose4j consumer requires them), ``exp`` not past (no
   slack: Kafka 4.1.1 gives none there), ``iat`` not after ``exp``, ``nbf`` not later than
   ``sasl.oauthbearer.clock.skew.seconds`` from now; ``iss`` equal
   to the expected issuer when one is set; ``aud`` containing one of the expected audiences when they are set, and
   refused when present but none are expected (jose4j's default); the principal claim (``sub`` unless
   ``sasl.oauthbearer.sub.claim.name`` says otherwise) a non-empty string.

Every failure is a :class:`ValueError` whose text names the check, never the token (the broker logs it).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from loosely.security.oauthbearer import OAuthBearerToken

__all__ = ["Jwks", "JwtValidatorOptions", "UnknownKeyError", "parse_jwks", "validate_jwt"]

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

# alg -> (key type, hash, RSA padding "pkcs1"/"pss" or the EC curve's coordinate size in bytes)
_ALGORITHMS: Final[dict[str, tuple[str, type[hashes.HashAlgorithm], str | int]]] = {
    "RS256": ("RSA", hashes.SHA256, "pkcs1"),
    "RS384": ("RSA", hashes.SHA384, "pkcs1"),
    "RS512": ("RSA", hashes.SHA512, "pkcs1"),
    "PS256": ("RSA", hashes.SHA256, "pss"),
    "PS384": ("RSA", hashes.SHA384, "pss"),
    "PS512": ("RSA", hashes.SHA512, "pss"),
    "ES256": ("EC", hashes.SHA256, 32),
    "ES384": ("EC", hashes.SHA384, 48),
    "ES512": ("EC", hashes.SHA512, 66),
}
_CURVES: Final[dict[str, ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}


class UnknownKeyError(ValueError):
    """The token's ``kid`` is not in the key set: the key set may be stale."""


@dataclass(frozen=True, slots=True)
class Jwks:
    """The signature keys of a JWKS: ``(kid, key type, key)`` in the document's order (kid "" when it has none)."""

    keys: tuple[tuple[str, str, PublicKey], ...] = ()

    def find(self, kid: str | None, kty: str) -> PublicKey | None:
        for k, t, key in self.keys:
            if t == kty and (kid is None or k == kid):
                return key
        return None

    def has_kid(self, kid: str) -> bool:
        return any(k == kid for k, _, _ in self.keys)


@dataclass(frozen=True, slots=True)
class JwtValidatorOptions:
    """The broker's sasl.oauthbearer.* validation settings."""

    expected_audience: tuple[str, ...] = ()
    expected_issuer: str | None = None
    sub_claim: str = "sub"
    scope_claim: str = "scope"
    clock_skew_s: int = 30


def _b64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("malformed base64url") from None


def _int(text: object) -> int:
    if not isinstance(text, str):
        raise ValueError("a key parameter is not a string")
    return int.from_bytes(_b64(text), "big")


def parse_jwks(document: bytes) -> Jwks:
    """The RSA and EC signature keys of a JWKS document; ValueError if it is not one."""
    try:
        doc = json.loads(document)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the JWKS is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError('the JWKS has no "keys" list')
    keys: list[tuple[str, str, PublicKey]] = []
    for jwk in doc["keys"]:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid", "")
        kty = jwk.get("kty")
        try:
            if kty == "RSA":
                key: PublicKey = rsa.RSAPublicNumbers(_int(jwk.get("e")), _int(jwk.get("n"))).public_key()
            elif kty == "EC" and jwk.get("crv") in _CURVES:
                curve = _CURVES[str(jwk["crv"])]
                key = ec.EllipticCurvePublicNumbers(_int(jwk.get("x")), _int(jwk.get("y")), curve).public_key()
            else:
                continue
        except ValueError as e:
            raise ValueError(f"the JWKS key {str(kid)[:64]!r} is malformed: {e}") from None
        keys.append((str(kid), kty, key))
    return Jwks(tuple(keys))


def _json_segment(text: str, what: str) -> dict[str, object]:
    try:
        doc = json.loads(_b64(text))
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"the token's {what} is not base64url JSON") from None
    if not isinstance(doc, dict):
        raise ValueError(f"the token's {what} is not a JSON object")
    return doc


def _verify(alg: str, key: PublicKey, signature: bytes, signed: bytes) -> None:
    _, hash_type, how = _ALGORITHMS[alg]
    try:
        if isinstance(key, rsa.RSAPublicKey):
            pad = (
                padding.PKCS1v15()
                if how == "pkcs1"
                else padding.PSS(mgf=padding.MGF1(hash_type()), salt_length=hash_type().digest_size)
            )
            key.verify(signature, signed, pad, hash_type())
        else:
            assert isinstance(how, int)
            if len(signature) != 2 * how:
                raise InvalidSignature
            r, s = int.from_bytes(signature[:how], "big"), int.from_bytes(signature[how:], "big")
            key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hash_type()))
    except InvalidSignature:
        raise ValueError("the token's signature does not verify") from None


def _number(claims: Mapping[str, object], name: str) -> float | None:
    v = claims.get(name)
    if v is None:
        return None
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise ValueError(f"the token's {name} is not a number")
    return float(v)


def validate_jwt(token: str, jwks: Jwks, options: JwtValidatorOptions, now_ms: int) -> OAuthBearerToken:
    """The principal and expiry of a signed token; ValueError (or :class:`UnknownKeyError`) says why not."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("a signed JWT has three parts")
    header = _json_segment(parts[0], "header")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in _ALGORITHMS:
        raise ValueError(f"the token's algorithm {str(alg)[:16]!r} is not accepted (signed tokens only)")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValueError("the token's kid is not a string")
    kty = _ALGORITHMS[alg][0]
    key = jwks.find(kid, kty)
    if key is None:
        if kid is not None and not jwks.has_kid(kid):
            raise UnknownKeyError(f"no key with the token's kid {kid[:64]!r} in the JWKS")
        raise ValueError(f"no {kty} key in the JWKS for the token's {alg}")
    _verify(alg, key, _b64(parts[2]), f"{parts[0]}.{parts[1]}".encode("ascii"))
    claims = _json_segment(parts[1], "payload")
    skew_ms = options.clock_skew_s * 1000
    exp, iat, nbf = _number(claims, "exp"), _number(claims, "iat"), _number(claims, "nbf")
    if exp is None or iat is None:
        raise ValueError("the token lacks the required exp or iat claim")
    # Kafka 4.1.1 observed (tests/compat/test_sasl_jwt.py): exp gets no slack, an iat in the future is accepted as
    # long as it precedes exp, nbf gets the skew.
    if now_ms >= exp * 1000:
        raise ValueError("the token has expired")
    if iat > exp:
        raise ValueError("the token's iat is after its exp")
    if nbf is not None and nbf * 1000 > now_ms + skew_ms:
        raise ValueError("the token is not valid yet (nbf)")
    if options.expected_issuer is not None and claims.get("iss") != options.expected_issuer:
        raise ValueError("the token's iss is not the expected issuer")
    aud = claims.get("aud")
    if aud is not None:
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(a in options.expected_audience for a in audiences):
            raise ValueError("the token's aud holds none of the expected audiences")
    elif options.expected_audience:
        raise ValueError("the token has no aud claim")
    principal = claims.get(options.sub_claim)
    if not isinstance(principal, str) or not principal.strip():
        raise ValueError(f"the token's {options.sub_claim} claim is missing or empty")
    return OAuthBearerToken(principal, int(exp * 1000), claims)
