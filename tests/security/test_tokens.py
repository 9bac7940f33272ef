"""Delegation tokens without a broker: Kafka's rules at chosen instants, the file, and SCRAM logins with a token."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from loosely.protocol.errors import ErrorCode
from loosely.security.sasl import Phase, SaslSession, SaslSettings
from loosely.security.scram import SCRAM_MECHANISMS, ScramClient, ScramServer
from loosely.security.tokens import (
    EXPIRY_TIME_MS_DEFAULT,
    MAX_LIFETIME_MS_DEFAULT,
    DelegationTokens,
    TokenStoreError,
    token_hmac,
)
from loosely.storage.fs import OsFileSystem
from loosely.testing import FaultyFileSystem

NOW = 1_700_000_000_000
HOUR = 3_600_000


def _tokens(tmp_path: Path, secret: str | None = "secret", **kw: int) -> DelegationTokens:
    ids = iter(f"token-{i}" for i in range(100))
    return DelegationTokens(OsFileSystem(), str(tmp_path), secret, new_id=lambda: next(ids), **kw)


def test_hmac_is_hmac_sha512_of_the_id_under_the_key() -> None:
    assert token_hmac("k", "id") == hmac.new(b"k", b"id", hashlib.sha512).digest()


def test_create_takes_kafkas_lifetimes(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path)
    info, mac = tokens.create("User:alice", "User:carol", ("User:bob",), -1, NOW)
    assert mac == token_hmac("secret", info.token_id)
    assert (info.issue_ms, info.expiry_ms, info.max_ms) == (
        NOW, NOW + EXPIRY_TIME_MS_DEFAULT, NOW + MAX_LIFETIME_MS_DEFAULT)
    short, _ = tokens.create("User:alice", "User:alice", (), HOUR, NOW)
    assert (short.expiry_ms, short.max_ms) == (NOW + HOUR, NOW + HOUR)
    (tmp_path / "x").mkdir()
    capped = _tokens(tmp_path / "x", max_lifetime_ms=HOUR).create("User:a", "User:a", (), 10 * HOUR, NOW)[0]
    assert capped.max_ms == NOW + HOUR


def test_renew_and_expire_rules_in_kafkas_order(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path)
    info, mac = tokens.create("User:alice", "User:carol", ("User:bob",), 2 * EXPIRY_TIME_MS_DEFAULT, NOW)
    assert tokens.renew(b"nope", "User:alice", -1, NOW) == (ErrorCode.delegation_token_not_found, 0)
    assert tokens.renew(mac, "User:carol", -1, NOW) == (ErrorCode.delegation_token_owner_mismatch, 0)  # requester
    assert tokens.renew(mac, "User:bob", HOUR, NOW + 1) == (ErrorCode.none, NOW + 1 + HOUR)
    assert tokens.renew(mac, "User:alice", -1, NOW + 2) == (ErrorCode.none, NOW + 2 + EXPIRY_TIME_MS_DEFAULT)
    late = NOW + EXPIRY_TIME_MS_DEFAULT  # before the expiry; renewals stop at the max timestamp
    assert tokens.renew(mac, "User:alice", -1, late) == (ErrorCode.none, info.max_ms)
    after = info.max_ms + 1
    assert tokens.renew(mac, "User:carol", -1, after) == (ErrorCode.delegation_token_expired, 0)  # before owner
    assert tokens.expire(mac, "User:carol", 5, after) == (ErrorCode.delegation_token_owner_mismatch, 0)
    assert tokens.expire(mac, "User:bob", 5, after) == (ErrorCode.delegation_token_expired, 0)
    assert tokens.expire(mac, "User:bob", -1, after) == (ErrorCode.none, after)  # removes even an expired one
    assert tokens.get(info.token_id) is None and tokens.by_hmac(mac) is None


def test_expire_with_a_period_and_the_purge(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path)
    a, mac = tokens.create("User:alice", "User:alice", (), -1, NOW)
    b, _ = tokens.create("User:alice", "User:alice", (), -1, NOW)
    assert tokens.expire(mac, "User:alice", 1000, NOW) == (ErrorCode.none, NOW + 1000)
    assert tokens.purge(NOW + 1000) == []  # expired is strictly after the expiry
    assert [t.token_id for t in tokens.purge(NOW + 1001)] == [a.token_id]
    assert [t.token_id for t in tokens.tokens()] == [b.token_id]
    assert [t.token_id for t in _tokens(tmp_path).tokens()] == [b.token_id]  # durable


def test_a_failed_write_changes_nothing(tmp_path: Path) -> None:
    fs = FaultyFileSystem(seed=1)
    tokens = DelegationTokens(fs, str(tmp_path), "secret")
    info, mac = tokens.create("User:alice", "User:alice", (), -1, NOW)
    fs.fail("write_atomic")
    with pytest.raises(OSError):
        tokens.renew(mac, "User:alice", HOUR, NOW + 5)
    with pytest.raises(OSError):
        tokens.create("User:alice", "User:alice", (), -1, NOW)
    assert tokens.tokens() == [info]
    fs.heal()
    assert DelegationTokens(fs, str(tmp_path), "secret").tokens() == [info]


@pytest.mark.parametrize("content", [b"{", b'{"version": 2, "tokens": []}', b'{"version": 1, "tokens": [{}]}',
                                     b'{"version": 1, "tokens": [{"token_id": "t", "owner": "User:a", '
                                     b'"requester": "User:a", "renewers": "User:b", "issue_ms": 1, "max_ms": 2, '
                                     b'"expiry_ms": 2}]}'])  # fmt: skip
def test_a_damaged_file_is_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "delegation-tokens.json").write_bytes(content)
    with pytest.raises(TokenStoreError, match="is damaged"):
        _tokens(tmp_path)


def _scram(server: ScramServer, client: ScramClient) -> bool:
    final = client.final(server.step(client.first()))
    client.verify(server.step(final))
    return server.complete


def test_a_token_logs_in_as_its_owner_with_either_mechanism(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path)
    info, mac = tokens.create("User:alice", "User:alice", (), HOUR, NOW)
    password = base64.b64encode(mac).decode()
    for name, m in SCRAM_MECHANISMS.items():
        server = ScramServer(m, lambda user: None, token_lookup=lambda tid, name=name: tokens.login(tid, name, NOW))
        assert _scram(server, ScramClient(m, info.token_id, password, tokenauth=True))
        assert server.user == "alice" and server.token is not None and server.token.expiry_ms == NOW + HOUR
    m = SCRAM_MECHANISMS["SCRAM-SHA-256"]
    assert tokens.login(info.token_id, m.name, NOW + HOUR + 1) is None  # expired, not purged yet
    assert _tokens(tmp_path, secret=None).login(info.token_id, m.name, NOW) is None  # disabled
    assert tokens.login("unknown", m.name, NOW) is None


def test_a_sasl_session_with_a_token_is_token_authenticated(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path)
    info, mac = tokens.create("User:alice", "User:alice", (), HOUR, NOW)
    session = SaslSession(SaslSettings(mechanisms=("SCRAM-SHA-256",), token=tokens.login))
    assert session.handshake("SCRAM-SHA-256", 1).error_code == ErrorCode.none
    client = ScramClient(SCRAM_MECHANISMS["SCRAM-SHA-256"], info.token_id, base64.b64encode(mac).decode(),
                         tokenauth=True)
    first = session.authenticate(client.first(), 2, 0, NOW)
    last = session.authenticate(client.final(first.token), 2, 10, NOW)
    client.verify(last.token)
    assert (session.phase, session.principal, session.token_authenticated) == (Phase.AUTHENTICATED, "User:alice",
                                                                                True)
    assert last.session_lifetime_ms == HOUR and session.expired(10 + HOUR) and not session.expired(9 + HOUR)
    wrong = SaslSession(SaslSettings(mechanisms=("SCRAM-SHA-256",), token=tokens.login))
    wrong.handshake("SCRAM-SHA-256", 1)
    bad = ScramClient(SCRAM_MECHANISMS["SCRAM-SHA-256"], info.token_id, "wrong", tokenauth=True)
    r = wrong.authenticate(bad.final(wrong.authenticate(bad.first(), 2, 0, NOW).token), 2, 1, NOW)
    assert r.error_code == ErrorCode.sasl_authentication_failed
    assert not wrong.token_authenticated and wrong.principal is None
