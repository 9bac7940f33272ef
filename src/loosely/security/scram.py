"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677): the server side as Apache Kafka's ScramSaslServer speaks
them, and the client side loosely's own Kafka connections use (the schema registry's group member).

Theory of operation
-------------------
A credential is what the server keeps per user and mechanism: the salt, the iteration count and two derived keys,
never the password (nor the salted password, which would let anyone who reads it log in)::

    SaltedPassword = PBKDF2-HMAC-H(password, salt, iterations)      (RFC 5802's Hi())
    StoredKey      = H(HMAC(SaltedPassword, "Client Key"))
    ServerKey      = HMAC(SaltedPassword, "Server Key")

The exchange is two round trips, and :class:`ScramServer` is its state machine, sans-IO (tokens in, tokens out)::

    client-first  n,[a=authzid],n=user,r=cnonce[,ext...]        -> server-first  r=cnonce+snonce,s=salt,i=iterations
    client-final  c=biws,r=cnonce+snonce[,ext...],p=proof        -> server-final  v=ServerSignature

The server checks the proof: ``ClientKey = proof XOR HMAC(StoredKey, AuthMessage)`` must hash to StoredKey, compared
in constant time. As in Kafka: only the ``n`` gs2 flag (no channel binding), an authzid must equal the user name,
SASLprep is not applied (names and passwords are compared as UTF-8), a credential under 4096 iterations is refused,
and an unknown user fails on the first message. With Kafka's ``tokenauth=true`` extension the user name is a
delegation token's id, whose credential and owner come from ``token_lookup`` (:mod:`loosely.security.tokens`). A
failure raises :class:`ScramError`, whose text is for the broker's log only: the client is told the generic message
Kafka sends (see :mod:`loosely.security.sasl`).

:class:`ScramClient` is the other half, sans-IO too: ``first()``, then ``final(server_first)``, then
``verify(server_final)``, which checks the server's signature (a server that does not know the password cannot
make it). It refuses fewer than 4096 iterations, as Kafka's client does, and a server nonce that does not extend
its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "SCRAM_MECHANISMS",
    "ScramClient",
    "ScramCredential",
    "ScramError",
    "ScramMechanism",
    "ScramServer",
    "TokenLogin",
    "credential_from_password",
    "credential_from_salted_password",
    "parse_scram_spec",
    "salted_password",
]


@dataclass(frozen=True, slots=True)
class ScramMechanism:
    name: str
    hash_name: str
    type_id: int  # Kafka's ScramMechanism.type, carried by the Describe/AlterUserScramCredentials APIs
    # Kafka's ScramMechanism limits: fewer iterations is refused at login and when altered, more when altered
    iterations_min: int = 4096
    iterations_max: int = 16384

    def hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, self.hash_name).digest()

    def hash(self, data: bytes) -> bytes:
        return hashlib.new(self.hash_name, data).digest()


SCRAM_MECHANISMS: Final = {
    m.name: m for m in (ScramMechanism("SCRAM-SHA-256", "sha256", 1), ScramMechanism("SCRAM-SHA-512", "sha512", 2))
}


@dataclass(frozen=True, slots=True)
class ScramCredential:
    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class TokenLogin:
    """A delegation token's SCRAM login (see :mod:`loosely.security.tokens`): the credential to check, and who the
    client then is."""

    owner_name: str  # the owner principal's name: the session is User:<owner_name>
    credential: ScramCredential = field(repr=False)
    expiry_ms: int  # wall clock: the session ends then (KIP-368)


class ScramError(Exception):
    """The exchange failed; the text says why, for the broker's log (never sent to the client, never a secret)."""


def salted_password(mechanism: ScramMechanism, password: bytes, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac(mechanism.hash_name, password, salt, iterations)


def credential_from_salted_password(
    mechanism: ScramMechanism, salt: bytes, salted: bytes, iterations: int
) -> ScramCredential:
    """What AlterUserScramCredentials turns the client's salted password into (the salted password is not kept)."""
    client_key = mechanism.hmac(salted, b"Client Key")
    return ScramCredential(salt, iterations, mechanism.hash(client_key), mechanism.hmac(salted, b"Server Key"))


def credential_from_password(
    mechanism: ScramMechanism, password: str, iterations: int = 4096, salt: bytes | None = None
) -> ScramCredential:
    """A fresh credential; the salt is random unless given (Kafka's ScramFormatter uses a random salt too).

    >>> m = SCRAM_MECHANISMS["SCRAM-SHA-256"]
    >>> credential_from_password(m, "pencil", 4096, b"salt").iterations
    4096
    """
    salt = secrets.token_bytes(32) if salt is None else salt
    return credential_from_salted_password(
        mechanism, salt, salted_password(mechanism, password.encode(), salt, iterations), iterations
    )


# RFC 5802 section 7 (one-letter names), and Kafka's extensions (``tokenauth=true``: longer names). No value holds
# ',' (saslnames escape it), so a plain split on ',' is exact.
_ATTR: Final = re.compile(r"[\x21-\x2b\x2d-\x3c\x3e-\x7e]+=[^,]*")
_NONCE: Final = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # printable ASCII except ','


def _sasl_name(raw: str) -> str:
    """RFC 5802 saslname: ``=2C`` is ',' and ``=3D`` is '='; any other '=' is malformed."""
    if re.search(r"=(?!2C|3D)", raw):
        raise ScramError("invalid escape in user name")
    return raw.replace("=2C", ",").replace("=3D", "=")


def _attrs(parts: list[str], what: str) -> list[tuple[str, str]]:
    for p in parts:
        if not _ATTR.fullmatch(p):
            raise ScramError(f"malformed attribute in the {what}")
    return [(k, v) for k, _, v in (p.partition("=") for p in parts)]


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ScramError(f"{what} is not base64") from None


@dataclass(frozen=True, slots=True)
class ClientFirst:
    gs2_header: str
    authzid: str
    user: str
    nonce: str
    extensions: dict[str, str]
    bare: str


def parse_client_first(text: str) -> ClientFirst:
    parts = text.split(",")
    if len(parts) < 4 or parts[0] != "n":
        raise ScramError("client-first message must start with the gs2 header 'n,' (no channel binding)")
    authzid = ""
    if parts[1]:
        if not parts[1].startswith("a="):
            raise ScramError("malformed authzid in the gs2 header")
        authzid = _sasl_name(parts[1][2:])
    rest = parts[2:]
    if rest[0].startswith("m="):
        raise ScramError("mandatory extension in the client-first message is not supported")
    attrs = _attrs(rest, "client-first message")
    if attrs[0][0] != "n" or attrs[1][0] != "r":
        raise ScramError("client-first message must hold n= then r=")
    nonce = attrs[1][1]
    if not _NONCE.fullmatch(nonce):
        raise ScramError("invalid client nonce")
    return ClientFirst(
        gs2_header=f"{parts[0]},{parts[1]},",
        authzid=authzid,
        user=_sasl_name(attrs[0][1]),
        nonce=nonce,
        extensions=dict(attrs[2:]),
        bare=",".join(rest),
    )


class ScramServer:
    """One SCRAM exchange on the server side.

    ``lookup(user)`` returns the user's credential for this mechanism or None; ``nonce`` makes the server's half of
    the nonce (random by default; tests inject RFC vectors). ``token_lookup(token_id)`` serves a client-first
    message with Kafka's ``tokenauth=true`` extension (a delegation token: the user name is the token id, the
    password its base64 HMAC); without it such a login fails. After a token login, :attr:`user` is the token's
    owner and :attr:`token` says when the token expires.
    """

    __slots__ = (
        "_credential", "_first", "_lookup", "_nonce", "_server_first", "_token_lookup", "complete", "mechanism",
        "token",
    )  # fmt: skip

    def __init__(
        self,
        mechanism: ScramMechanism,
        lookup: Callable[[str], ScramCredential | None],
        nonce: Callable[[], str] | None = None,
        token_lookup: Callable[[str], TokenLogin | None] | None = None,
    ) -> None:
        self.mechanism = mechanism
        self._lookup = lookup
        self._token_lookup = token_lookup
        self._nonce = nonce or (lambda: secrets.token_urlsafe(24))
        self._first: ClientFirst | None = None
        self._credential: ScramCredential | None = None
        self._server_first = ""
        self.complete = False
        self.token: TokenLogin | None = None

    @property
    def user(self) -> str:
        """Who authenticated: the user, or a token's owner (Kafka's authorization id)."""
        assert self.complete and self._first is not None
        return self._first.user if self.token is None else self.token.owner_name

    def step(self, token: bytes) -> bytes:
        """The response to the client's next message; raises :class:`ScramError` when the exchange fails."""
        if self.complete:
            raise ScramError("the SCRAM exchange is already complete")
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            raise ScramError("SCRAM message is not UTF-8") from None
        if self._first is None:
            return self._on_client_first(text)
        return self._on_client_final(text)

    def _on_client_first(self, text: str) -> bytes:
        first = parse_client_first(text)
        if first.extensions.get("tokenauth", "false").lower() == "true":
            token = self._token_lookup(first.user) if self._token_lookup is not None else None
            if token is None:
                raise ScramError(f"no delegation token {first.user[:64]!r} (unknown, expired, or tokens disabled)")
            credential: ScramCredential | None = token.credential
            self.token = token
        else:
            credential = self._lookup(first.user)
        if credential is None:
            raise ScramError(f"no {self.mechanism.name} credential for user {first.user!r}")
        if first.authzid and first.authzid != first.user:
            raise ScramError("the client requested an authorization id that is different from the user name")
        if credential.iterations < self.mechanism.iterations_min:
            raise ScramError(
                f"iterations {credential.iterations} is less than the minimum {self.mechanism.iterations_min}"
            )
        self._first = first
        self._credential = credential
        salt = base64.b64encode(credential.salt).decode()
        self._server_first = f"r={first.nonce}{self._nonce()},s={salt},i={credential.iterations}"
        return self._server_first.encode()

    def _on_client_final(self, text: str) -> bytes:
        assert self._first is not None and self._credential is not None
        without_proof, sep, proof_text = text.rpartition(",p=")
        if not sep:
            raise ScramError("client-final message has no proof")
        attrs = _attrs(without_proof.split(","), "client-final message")
        if len(attrs) < 2 or attrs[0][0] != "c" or attrs[1][0] != "r":
            raise ScramError("client-final message must hold c= then r=")
        _b64(attrs[0][1], "channel binding")
        # RFC 5802: the nonce must be the server-first message's (client's + server's part), exactly. Kafka 4 checks
        # it so (CVE-2024-56128; 3.8.1 had accepted any nonce ending with it), which refuses librdkafka before 2.6.1:
        # those repeat the client's part (confluentinc/librdkafka#4895).
        server_nonce = self._server_first.split(",", 1)[0][2:]
        if attrs[1][1] != server_nonce:
            raise ScramError("invalid client nonce in the final client message")
        proof = _b64(proof_text, "client proof")
        m, cred = self.mechanism, self._credential
        auth_message = f"{self._first.bare},{self._server_first},{without_proof}".encode()
        signature = m.hmac(cred.stored_key, auth_message)
        if len(proof) != len(signature):
            raise ScramError("invalid client credentials")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(m.hash(client_key), cred.stored_key):
            raise ScramError("invalid client credentials")
        self.complete = True
        return b"v=" + base64.b64encode(m.hmac(cred.server_key, auth_message))


def _escape_name(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


class ScramClient:
    """One SCRAM exchange on the client side; raises :class:`ScramError` when the server's answers are wrong."""

    __slots__ = ("_auth_message", "_bare", "_nonce", "_password", "_salted", "mechanism", "user")

    def __init__(
        self, mechanism: ScramMechanism, user: str, password: str, nonce: str | None = None, *, tokenauth: bool = False
    ) -> None:
        self.mechanism = mechanism
        self.user = user
        self._password = password.encode()
        self._nonce = nonce or secrets.token_urlsafe(24)
        # tokenauth: log in with a delegation token (user: the token id, password: its base64 HMAC), as Kafka's
        # ScramLoginModule's tokenauth="true" option does
        self._bare = f"n={_escape_name(user)},r={self._nonce}" + (",tokenauth=true" if tokenauth else "")
        self._salted = b""
        self._auth_message = b""

    def first(self) -> bytes:
        return f"n,,{self._bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode("utf-8", "replace")
        attrs = dict(_attrs(text.split(","), "server-first message"))
        nonce, salt_text, iterations_text = attrs.get("r", ""), attrs.get("s", ""), attrs.get("i", "")
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise ScramError("the server's nonce does not extend the client's")
        if not iterations_text.isdigit() or int(iterations_text) < self.mechanism.iterations_min:
            raise ScramError(f"the server asks for {iterations_text!r} iterations (at least "
                             f"{self.mechanism.iterations_min})")
        m = self.mechanism
        self._salted = salted_password(m, self._password, _b64(salt_text, "salt"), int(iterations_text))
        without_proof = f"c=biws,r={nonce}"
        self._auth_message = f"{self._bare},{text},{without_proof}".encode()
        client_key = m.hmac(self._salted, b"Client Key")
        signature = m.hmac(m.hash(client_key), self._auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        text = server_final.decode("utf-8", "replace")
        attrs = dict(_attrs(text.split(","), "server-final message"))
        if "e" in attrs:
            raise ScramError(f"the server refused the login: {attrs['e']}")
        m = self.mechanism
        expected = m.hmac(m.hmac(self._salted, b"Server Key"), self._auth_message)
        if not hmac.compare_digest(_b64(attrs.get("v", ""), "server signature"), expected):
            raise ScramError("the server's signature is wrong: it does not know the password")


def parse_scram_spec(spec: str) -> tuple[str, ScramMechanism, ScramCredential]:
    """``MECHANISM=[name=USER,password=PASSWORD[,iterations=N][,salt=B64]]``, the syntax of Kafka's
    ``kafka-storage format --add-scram`` and of ``kafka-configs --add-config``; ValueError names what is wrong
    (never the password).

    >>> user, m, cred = parse_scram_spec("SCRAM-SHA-256=[name=alice,password=alice-secret,iterations=8192]")
    >>> user, m.name, cred.iterations
    ('alice', 'SCRAM-SHA-256', 8192)
    """
    name, sep, rest = spec.partition("=")
    mechanism = SCRAM_MECHANISMS.get(name.strip())
    if not sep or mechanism is None:
        raise ValueError(f"expected SCRAM-SHA-256=[...] or SCRAM-SHA-512=[...], got {name.strip()[:40]!r}")
    rest = rest.strip()
    if not (rest.startswith("[") and rest.endswith("]")):
        raise ValueError(f"{mechanism.name}: the settings go in brackets: [name=USER,password=PASSWORD]")
    options: dict[str, str] = {}
    for item in filter(None, rest[1:-1].split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"{mechanism.name}: expected key=value, got {key.strip()[:40]!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        options[key.strip().lower()] = value
    unknown = set(options) - {"name", "password", "iterations", "salt"}
    if unknown:
        raise ValueError(f"{mechanism.name}: unknown setting(s) {', '.join(sorted(unknown))}")
    if not options.get("name") or not options.get("password"):
        raise ValueError(f"{mechanism.name}: name and password are required")
    try:
        iterations = int(options.get("iterations", mechanism.iterations_min))
        salt = base64.b64decode(options["salt"], validate=True) if "salt" in options else None
    except (ValueError, binascii.Error):
        raise ValueError(f"{mechanism.name}: iterations must be a number and salt base64") from None
    if not mechanism.iterations_min <= iterations <= mechanism.iterations_max:
        raise ValueError(
            f"{mechanism.name}: iterations must be {mechanism.iterations_min} to {mechanism.iterations_max}"
        )
    return options["name"], mechanism, credential_from_password(mechanism, options["password"], iterations, salt)
