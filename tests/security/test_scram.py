"""SCRAM math and message handling against the RFC test vectors, fed whole and with bad input."""

from __future__ import annotations

import base64

import pytest

from loosely.security.scram import (
    SCRAM_MECHANISMS,
    ScramClient,
    ScramError,
    ScramMechanism,
    ScramServer,
    credential_from_password,
    parse_client_first,
)

# RFC 5802 section 5 (SHA-1: the math is the same; the mechanism object is made here only for the vector).
SHA1 = ScramMechanism("SCRAM-SHA-1", "sha1", 0)
RFC5802 = (
    SHA1,
    "fyko+d2lbbFgONRv9qkxdawL",
    "3rfcNHYJY1ZVvWVs7j",
    "QSXCR+Q6sek8bf92",
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
)
# RFC 7677 section 3.
RFC7677 = (
    SCRAM_MECHANISMS["SCRAM-SHA-256"],
    "rOprNGfwEbeRWgbNEkqO",
    "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    "W22ZaJ0SNY7soEsUEjb6gQ==",
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
)


def _server(mech: ScramMechanism, salt_b64: str, snonce: str, password: str = "pencil") -> ScramServer:
    cred = credential_from_password(mech, password, 4096, base64.b64decode(salt_b64))
    return ScramServer(mech, lambda user: cred if user == "user" else None, nonce=lambda: snonce)


@pytest.mark.parametrize("vector", [RFC5802, RFC7677], ids=["rfc5802", "rfc7677"])
def test_rfc_vectors(vector: tuple[ScramMechanism, str, str, str, str, str]) -> None:
    mech, cnonce, snonce, salt, client_final, server_final = vector
    server = _server(mech, salt, snonce)
    first = server.step(f"n,,n=user,r={cnonce}".encode())
    assert first == f"r={cnonce}{snonce},s={salt},i=4096".encode()
    assert server.step(client_final.encode()) == server_final.encode()
    assert server.complete and server.user == "user"


@pytest.mark.parametrize("vector", [RFC5802, RFC7677], ids=["rfc5802", "rfc7677"])
def test_the_client_sends_the_rfc_vectors(vector: tuple[ScramMechanism, str, str, str, str, str]) -> None:
    mech, cnonce, snonce, salt, client_final, server_final = vector
    client = ScramClient(mech, "user", "pencil", nonce=cnonce)
    assert client.first() == f"n,,n=user,r={cnonce}".encode()
    assert client.final(f"r={cnonce}{snonce},s={salt},i=4096".encode()) == client_final.encode()
    client.verify(server_final.encode())
    with pytest.raises(ScramError, match="does not know the password"):
        client.verify(b"v=" + base64.b64encode(b"x" * len(base64.b64decode(server_final[2:]))))


@pytest.mark.parametrize("mechanism", sorted(SCRAM_MECHANISMS))
@pytest.mark.parametrize("user", ["alice", "a,b=c"])
def test_client_and_server_agree(mechanism: str, user: str) -> None:
    mech = SCRAM_MECHANISMS[mechanism]
    cred = credential_from_password(mech, "s3cret", 4096)
    server = ScramServer(mech, lambda name: cred if name == user else None)
    client = ScramClient(mech, user, "s3cret")
    client.verify(server.step(client.final(server.step(client.first()))))
    assert server.complete and server.user == user
    wrong = ScramClient(mech, user, "guess")
    refused = ScramServer(mech, lambda name: cred)
    with pytest.raises(ScramError, match="invalid client credentials"):
        refused.step(wrong.final(refused.step(wrong.first())))


@pytest.mark.parametrize(("server_first", "error"), [
    (b"r=someone-else,s=c2FsdA==,i=4096", "does not extend"),
    (b"r=abc,s=c2FsdA==,i=4096", "does not extend"),  # the client's nonce alone
    (b"r=abcdef,s=c2FsdA==,i=100", "iterations"),
    (b"r=abcdef,s=!!,i=4096", "salt is not base64"),
    (b"garbage", "malformed"),
])
def test_the_client_refuses_bad_server_firsts(server_first: bytes, error: str) -> None:
    with pytest.raises(ScramError, match=error):
        ScramClient(SCRAM_MECHANISMS["SCRAM-SHA-256"], "u", "p", nonce="abc").final(server_first)


def test_wrong_password_fails_the_proof() -> None:
    mech, cnonce, snonce, salt, client_final, _ = RFC7677
    server = _server(mech, salt, snonce, password="not-pencil")
    server.step(f"n,,n=user,r={cnonce}".encode())
    with pytest.raises(ScramError, match="invalid client credentials"):
        server.step(client_final.encode())
    assert not server.complete


def test_nonce_must_be_the_servers() -> None:
    mech, cnonce, snonce, salt, client_final, _ = RFC7677
    server = _server(mech, salt, snonce + "x")
    server.step(f"n,,n=user,r={cnonce}".encode())
    with pytest.raises(ScramError, match="nonce"):
        server.step(client_final.encode())


def test_nonce_repeating_the_clients_part_is_refused_as_kafka_4_does() -> None:
    """librdkafka before 2.6.1 sends r=cnonce+cnonce+snonce; the message's proof is right, the nonce is not."""
    mech, cnonce, snonce, salt, _, _ = RFC7677
    client = ScramClient(mech, "user", "pencil", nonce=cnonce)
    server = _server(mech, salt, snonce)
    server.step(client.first())
    client_final = client.final(f"r={cnonce}{cnonce}{snonce},s={salt},i=4096".encode())
    with pytest.raises(ScramError, match="invalid client nonce"):
        server.step(client_final)
    assert not server.complete


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("n,,n=nobody,r=abc", "no SCRAM-SHA-256 credential"),
        ("n,a=other,n=user,r=abc", "authorization id"),
        ("y,,n=user,r=abc", "gs2 header"),
        ("p=tls-unique,,n=user,r=abc", "gs2 header"),
        ("n,,r=abc,n=user", "n= then r="),
        ("n,,m=ext,n=user,r=abc", "mandatory extension"),
        ("n,,n=us=er,r=abc", "escape"),
        ("n,,n=user,r=abc,tokenauth=true", "no delegation token"),
        ("n,,n=user", "gs2 header"),
        ("", "gs2 header"),
    ],
)
def test_bad_client_first(message: str, error: str) -> None:
    mech, _, snonce, salt, _, _ = RFC7677
    with pytest.raises(ScramError, match=error):
        _server(mech, salt, snonce).step(message.encode())


def test_authzid_equal_to_user_and_escaped_names() -> None:
    assert parse_client_first("n,a=a=2Cb,n=a=2Cb,r=x").user == "a,b"
    mech, cnonce, snonce, salt, _, _ = RFC7677
    assert _server(mech, salt, snonce).step(f"n,a=user,n=user,r={cnonce}".encode()).startswith(b"r=")


@pytest.mark.parametrize(
    "final",
    ["c=biws,r=N", "garbage", "c=biws,p=AAAA", "c=!!,r=N,p=AAAA", "c=biws,r=N,p=!!", "c=biws,r=N,p=AAAA"],
)
def test_bad_client_final(final: str) -> None:
    mech, cnonce, snonce, salt, _, _ = RFC7677
    server = _server(mech, salt, snonce)
    server.step(f"n,,n=user,r={cnonce}".encode())
    with pytest.raises(ScramError):
        server.step(final.replace("N", cnonce + snonce).encode())


def test_too_few_iterations_refused_at_login() -> None:
    mech = SCRAM_MECHANISMS["SCRAM-SHA-512"]
    cred = credential_from_password(mech, "x", 4095)
    with pytest.raises(ScramError, match="less than the minimum 4096"):
        ScramServer(mech, lambda user: cred).step(b"n,,n=u,r=abc")


def test_not_utf8_and_after_completion() -> None:
    mech, cnonce, snonce, salt, client_final, _ = RFC7677
    with pytest.raises(ScramError, match="UTF-8"):
        _server(mech, salt, snonce).step(b"\xff\xfe")
    server = _server(mech, salt, snonce)
    server.step(f"n,,n=user,r={cnonce}".encode())
    server.step(client_final.encode())
    with pytest.raises(ScramError, match="complete"):
        server.step(b"n,,n=user,r=x")


def test_credential_keeps_no_password() -> None:
    cred = credential_from_password(SCRAM_MECHANISMS["SCRAM-SHA-256"], "pencil")
    assert b"pencil" not in repr(cred).encode() and "stored_key" not in repr(cred)
    assert len(cred.salt) == 32 and len(cred.stored_key) == 32 == len(cred.server_key)
