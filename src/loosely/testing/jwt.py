"""Signed JWTs for tests of SASL/OAUTHBEARER: a key pair per algorithm, its JWKS entry, and tokens it signs.

An identity provider in miniature, so tests can hand a client (librdkafka's ``oauth_cb``, the Java client) a real
token and give the broker (loosely or Apache Kafka) the matching JWKS file.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = ["JwtSigner", "jwks_document"]

_HASHES: dict[str, hashes.HashAlgorithm] = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
_CURVES = {
    "ES256": (ec.SECP256R1, "P-256", 32),
    "ES384": (ec.SECP384R1, "P-384", 48),
    "ES512": (ec.SECP521R1, "P-521", 66),
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64int(n: int, size: int | None = None) -> str:
    return _b64(n.to_bytes(size or (n.bit_length() + 7) // 8, "big"))


@dataclass
class JwtSigner:
    """A fresh private key for ``alg`` (RS*, PS*, ES*) named ``kid``."""

    alg: str = "RS256"
    kid: str = "key-1"

    def __post_init__(self) -> None:
        if self.alg.startswith("ES"):
            self._key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = ec.generate_private_key(_CURVES[self.alg][0]())
        else:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, str]:
        """The public key as a JWKS entry."""
        pub = self._key.public_key()
        if isinstance(pub, rsa.RSAPublicKey):
            n = pub.public_numbers()
            return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": self.alg, "n": _b64int(n.n), "e": _b64int(n.e)}
        assert isinstance(pub, ec.EllipticCurvePublicKey)
        _, crv, size = _CURVES[self.alg]
        p = pub.public_numbers()
        return {"kty": "EC", "kid": self.kid, "use": "sig", "alg": self.alg, "crv": crv,
                "x": _b64int(p.x, size), "y": _b64int(p.y, size)}  # fmt: skip

    def sign(self, claims: dict[str, object], header: dict[str, object] | None = None) -> str:
        """A compact JWS of ``claims``; ``header`` adds to (or overrides) ``{"alg", "kid", "typ"}``."""
        head = {"alg": self.alg, "kid": self.kid, "typ": "JWT", **(header or {})}
        signed = f"{_b64(json.dumps(head).encode())}.{_b64(json.dumps(claims).encode())}"
        h = _HASHES[self.alg[2:]]
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(self._key.sign(signed.encode(), ec.ECDSA(h)))
            size = _CURVES[self.alg][2]
            signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        else:
            pad = padding.PKCS1v15() if self.alg.startswith("RS") else padding.PSS(padding.MGF1(h), h.digest_size)
            signature = self._key.sign(signed.encode(), pad, h)
        return f"{signed}.{_b64(signature)}"


def jwks_document(*signers: JwtSigner) -> bytes:
    """The JWKS (RFC 7517) holding the public keys of ``signers``."""
    return json.dumps({"keys": [s.jwk() for s in signers]}).encode()
