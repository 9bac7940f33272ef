"""The per-connection SASL state machine, PLAIN, JAAS lines and the credential store, without a broker."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import pytest

from loosely.protocol.errors import ErrorCode
from loosely.security.credentials import CredentialStore, CredentialStoreError
from loosely.security.jaas import parse_jaas, plain_users
from loosely.security.plain import PlainError, authenticate_plain
from loosely.security.sasl import Phase, SaslSession, SaslSettings
from loosely.security.scram import SCRAM_MECHANISMS, credential_from_password
from loosely.storage.fs import OsFileSystem

CRED = credential_from_password(SCRAM_MECHANISMS["SCRAM-SHA-512"], "alice-secret", 4096)
SETTINGS = SaslSettings(
    plain_users={"alice": "alice-secret"},
    scram=lambda user, mech: CRED if (user, mech) == ("alice", "SCRAM-SHA-512") else None,
    reauth_ms=60_000,
)


def _scram_client_final(server_first: bytes, password: str, client_first_bare: str) -> tuple[bytes, bytes]:
    """A minimal SCRAM-SHA-512 client (for the test only): the final message and the expected server signature."""
    attrs = dict(p.split("=", 1) for p in server_first.decode().split(","))
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha512").digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth = f"{client_first_bare},{server_first.decode()},{without_proof}".encode()
    sig = hmac.new(hashlib.sha512(client_key).digest(), auth, "sha512").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig, strict=True))
    server_sig = hmac.new(hmac.new(salted, b"Server Key", "sha512").digest(), auth, "sha512").digest()
    return f"{without_proof},p={base64.b64encode(proof).decode()}".encode(), b"v=" + base64.b64encode(server_sig)


def _scram_login(s: SaslSession, password: str, version: int = 2) -> tuple[int, str | None]:
    assert s.handshake("SCRAM-SHA-512", 1).error_code == ErrorCode.none
    first = s.authenticate(b"n,,n=alice,r=cn0nce", version, 0)
    if first.error_code:
        return first.error_code, first.message
    final, server_sig = _scram_client_final(first.token, password, "n=alice,r=cn0nce")
    r = s.authenticate(final, version, 1000)
    if r.error_code == ErrorCode.none:
        assert r.token == server_sig
    return r.error_code, r.message


def test_gate_before_authentication() -> None:
    s = SaslSession(SETTINGS)
    assert s.allows(18) and s.allows(17) and not s.allows(36) and not s.allows(3) and not s.allows(0)
    s.handshake("PLAIN", 1)
    assert s.allows(36) and not s.allows(18) and not s.allows(3)


def test_plain_success_sets_principal_and_session_lifetime() -> None:
    s = SaslSession(SETTINGS)
    r = s.handshake("PLAIN", 1)
    assert r.error_code == ErrorCode.none and r.mechanisms == ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
    out = s.authenticate(b"\0alice\0alice-secret", 1, 5_000)
    assert (out.error_code, out.session_lifetime_ms) == (ErrorCode.none, 60_000)
    assert s.principal == "User:alice" and s.phase is Phase.AUTHENTICATED
    assert s.allows(3) and not s.expired(64_999) and s.expired(65_000)


def test_unknown_mechanism() -> None:
    r = SaslSession(SaslSettings(mechanisms=("PLAIN",))).handshake("SCRAM-SHA-256", 1)
    assert (r.error_code, r.mechanisms) == (ErrorCode.unsupported_sasl_mechanism, ("PLAIN",))


def test_scram_success_and_wrong_password() -> None:
    assert _scram_login(SaslSession(SETTINGS), "alice-secret") == (ErrorCode.none, None)
    code, message = _scram_login(SaslSession(SETTINGS), "wrong")
    assert code == ErrorCode.sasl_authentication_failed
    assert message == (
        "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
    )


def test_reauthentication_same_principal_and_mechanism() -> None:
    s = SaslSession(SETTINGS)
    assert _scram_login(s, "alice-secret")[0] == ErrorCode.none
    assert s.takes_handshake() and s.reauth_capable
    assert _scram_login(s, "alice-secret")[0] == ErrorCode.none
    # a different mechanism on re-authentication: Kafka accepts the handshake, then fails the token
    assert s.handshake("PLAIN", 1).error_code == ErrorCode.none
    r = s.authenticate(b"\0alice\0alice-secret", 1, 0)
    assert r.error_code == ErrorCode.sasl_authentication_failed and "re-authentication of mechanism" in str(r.message)


def test_reauthentication_as_another_user_fails() -> None:
    settings = SaslSettings(plain_users={"alice": "a", "bob": "b"})
    s = SaslSession(settings)
    s.handshake("PLAIN", 1)
    s.authenticate(b"\0alice\0a", 1, 0)
    s.handshake("PLAIN", 1)
    r = s.authenticate(b"\0bob\0b", 1, 0)
    assert r.message == "Cannot change principals during re-authentication from User.alice: User.bob"


def test_v0_client_cannot_reauthenticate() -> None:
    s = SaslSession(SETTINGS)
    s.handshake("PLAIN", 1)
    s.authenticate(b"\0alice\0alice-secret", 0, 0)
    assert not s.takes_handshake()


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (b"\0alice\0wrong", "Authentication failed: Invalid username or password"),
        (b"\0nobody\0x", "Authentication failed: Invalid username or password"),
        (b"\0\0x", "Authentication failed: username not specified"),
        (b"\0alice\0", "Authentication failed: password not specified"),
        (b"alice\0x", "Invalid SASL/PLAIN response: expected 3 tokens, got 2"),
        (b"a\0b\0c\0d", "Invalid SASL/PLAIN response: expected 3 tokens, got 4"),
        (b"bob\0alice\0alice-secret", "Authentication failed: Client requested an authorization id"),
        (b"\xff\0\xfe", "not UTF-8"),
    ],
)
def test_plain_failures(token: bytes, message: str) -> None:
    with pytest.raises(PlainError, match=message.replace("(", r"\(")):
        authenticate_plain(token, {"alice": "alice-secret"})


def test_plain_authzid_equal_to_user() -> None:
    assert authenticate_plain(b"alice\0alice\0alice-secret", {"alice": "alice-secret"}) == "alice"


def test_jaas() -> None:
    m = parse_jaas(
        'org.apache.kafka.common.security.plain.PlainLoginModule required\n  username="admin" password="a\\"b"'
        ' user_admin="admin-secret" user_alice=plainword;'
    )
    assert plain_users(m) == {"admin": "admin-secret", "alice": "plainword"}
    assert m.options["password"] == 'a"b' and "admin-secret" not in repr(m)
    for bad, why in [
        ("", "LoginModuleClass"),
        ("x.Module required user_a=", "end with|missing value|expected name"),
        ("x.Module always;", "control flag"),
        ('x.Module required user_a="unterminated;', "unterminated"),
        ("x.Module required user_a=1", "end with"),
        ("x.Module required; y.Module required;", "exactly one"),
        ("x.Module required = 1;", "expected name=value"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_jaas(bad)
    with pytest.raises(ValueError, match="PlainLoginModule"):
        plain_users(parse_jaas("org.apache.kafka.common.security.scram.ScramLoginModule required;"))


def test_credential_store_round_trip_and_damage(tmp_path: object) -> None:
    d = str(tmp_path)
    fs = OsFileSystem()
    store = CredentialStore(fs, d)
    store.put("alice", "SCRAM-SHA-512", CRED)
    store.put("bob", "SCRAM-SHA-256", credential_from_password(SCRAM_MECHANISMS["SCRAM-SHA-256"], "pw", 8192))
    again = CredentialStore(fs, d)
    assert again.get("alice", "SCRAM-SHA-512") == CRED and list(again.users()) == ["alice", "bob"]
    with open(store.path, "rb") as f:
        data = f.read()
    assert b"alice-secret" not in data and b'pw"' not in data
    assert again.remove("bob", "SCRAM-SHA-256") and not again.remove("bob", "SCRAM-SHA-256")
    assert list(CredentialStore(fs, d).users()) == ["alice"]
    with open(store.path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(CredentialStoreError, match="damaged"):
        CredentialStore(fs, d)
    assert os.path.exists(store.path)
