"""SASL behaviour only loosely's side can show: re-authentication timing, session expiry, SaslHandshake v0's bare
tokens, thousands of failed logins, and credentials across restarts (the client-facing checks against Apache Kafka
are in tests/compat/test_sasl.py)."""

from __future__ import annotations

import asyncio
import datetime
import gc
import logging
import struct
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion
from kio.index import load_request_schema

from broker._raw import Raw
from loosely.broker.config import BrokerConfig, split_kafka_settings
from loosely.broker.metrics import line_protocol, snapshot
from loosely.broker.server import BrokerThread
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, build, encode_request
from loosely.security.scram import parse_scram_spec
from loosely.testing.certs import make_dev_certs

PLAIN_JAAS = 'org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret";'
REAUTH_MS = 1500


def _config(data_dir: Path, port: int = 0, scram: bool = True, **extra: object) -> BrokerConfig:
    settings, _, unknown = split_kafka_settings(
        {
            "listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
        }
    )
    assert not unknown
    user, m, cred = parse_scram_spec("SCRAM-SHA-256=[name=alice,password=alice-secret]")
    return BrokerConfig(
        data_dir=str(data_dir),
        initial_scram_credentials=((user, m.name, cred),) if scram else (),
        **settings,  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    with BrokerThread(_config(tmp_path_factory.mktemp("sasl"), connections_max_reauth_ms=REAUTH_MS)) as b:
        yield b


def _req(api_key: int, version: int, **fields: object) -> object:
    return build(load_request_schema(api_key, version), **fields)


def _plain_login(raw: Raw, version: int) -> object:
    assert raw.request(ApiKey.SASL_HANDSHAKE, 1, _req(ApiKey.SASL_HANDSHAKE, 1, mechanism="PLAIN")).error_code == 0  # type: ignore[attr-defined]
    return raw.request(ApiKey.SASL_AUTHENTICATE, version, _req(ApiKey.SASL_AUTHENTICATE, version, auth_bytes=b"\0alice\0alice-secret"))  # fmt: skip  # noqa: E501


def _metadata(raw: Raw) -> object:
    fields = {"topics": None, "allow_auto_topic_creation": False, "include_topic_authorized_operations": False}
    return raw.request(ApiKey.METADATA, 12, _req(ApiKey.METADATA, 12, **fields))


def _wait(condition: object, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_confluent_kafka_reauthenticates_and_keeps_producing(broker: BrokerThread) -> None:
    gate = broker.broker.sasl_gate
    assert broker.broker.statistics().sasl_authentications_total == gate.succeeded_total
    p = Producer({"bootstrap.servers": broker.bootstrap_servers, "security.protocol": "sasl_plaintext",
                  "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "alice", "sasl.password": "alice-secret",
                  "linger.ms": 0})  # fmt: skip
    errors: list[object] = []
    before = gate.succeeded_total
    deadline = time.monotonic() + 3 * REAUTH_MS / 1000
    sent = 0
    while time.monotonic() < deadline:
        p.produce("reauth", b"x", on_delivery=lambda e, m: errors.append(e) if e else None)
        sent += 1
        p.poll(0.1)
    assert p.flush(20) == 0 and errors == []
    # librdkafka re-authenticates its connections before each session ends: several logins, no lost records
    assert gate.succeeded_total - before >= 4, (before, gate.succeeded_total)
    assert sent > 10


def test_session_lifetime_and_expiry_without_reauthentication(broker: BrokerThread) -> None:
    raw = Raw(broker.bootstrap_servers)
    r = _plain_login(raw, 1)
    assert r.error_code == 0 and r.session_lifetime == datetime.timedelta(milliseconds=REAUTH_MS)  # type: ignore[attr-defined]
    assert _metadata(raw) is not None
    time.sleep(REAUTH_MS / 1000 + 0.2)  # the session's own lifetime: nothing to wait on but the clock
    raw.send(encode_request(ApiKey.METADATA, 12, 99, _req(ApiKey.METADATA, 12, topics=None,
             allow_auto_topic_creation=False, include_topic_authorized_operations=False)))  # fmt: skip
    assert raw.closed_by_peer()


def test_reauthentication_on_a_raw_connection(broker: BrokerThread) -> None:
    raw = Raw(broker.bootstrap_servers)
    assert _plain_login(raw, 2).error_code == 0  # type: ignore[attr-defined]
    assert _plain_login(raw, 2).error_code == 0  # type: ignore[attr-defined]  # again: a KIP-368 re-authentication
    assert _metadata(raw) is not None


def test_v0_client_gets_illegal_sasl_state_for_a_second_handshake(broker: BrokerThread) -> None:
    raw = Raw(broker.bootstrap_servers)
    assert _plain_login(raw, 0).error_code == 0  # type: ignore[attr-defined]
    r = raw.request(ApiKey.SASL_HANDSHAKE, 1, _req(ApiKey.SASL_HANDSHAKE, 1, mechanism="PLAIN"))
    assert r.error_code == ErrorCode.illegal_sasl_state  # type: ignore[attr-defined]


def test_handshake_v0_then_bare_tokens(broker: BrokerThread) -> None:
    raw = Raw(broker.bootstrap_servers)
    r = raw.request(ApiKey.SASL_HANDSHAKE, 0, _req(ApiKey.SASL_HANDSHAKE, 0, mechanism="PLAIN"))
    assert r.error_code == 0  # type: ignore[attr-defined]
    token = b"\0alice\0alice-secret"
    raw.send(struct.pack(">i", len(token)) + token)
    assert raw.recv_frame() == b""  # PLAIN's empty server token, framed by its size only
    assert _metadata(raw) is not None
    raw = Raw(broker.bootstrap_servers)
    raw.request(ApiKey.SASL_HANDSHAKE, 0, _req(ApiKey.SASL_HANDSHAKE, 0, mechanism="PLAIN"))
    raw.send(struct.pack(">i", 5) + b"\0a\0bc")
    assert raw.closed_by_peer()


def test_sasl_apis_on_a_plaintext_broker(tmp_path: Path) -> None:
    with BrokerThread(BrokerConfig(data_dir=str(tmp_path), port=0)) as b:
        raw = Raw(b.bootstrap_servers)
        r = raw.request(ApiKey.SASL_HANDSHAKE, 1, _req(ApiKey.SASL_HANDSHAKE, 1, mechanism="PLAIN"))
        assert r.error_code == ErrorCode.illegal_sasl_state  # type: ignore[attr-defined]
        assert _metadata(raw) is not None


async def _fail_once(host: str, port: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(encode_request(ApiKey.SASL_HANDSHAKE, 1, 1, _req(ApiKey.SASL_HANDSHAKE, 1, mechanism="PLAIN")))
        body = _req(ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=b"\0alice\0wrong")
        writer.write(encode_request(ApiKey.SASL_AUTHENTICATE, 2, 2, body))
        while await reader.read(65536):  # both answers, then the broker closes
            pass
    finally:
        writer.close()


def test_thousands_of_failed_logins_cost_no_memory_and_few_log_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with BrokerThread(_config(tmp_path)) as b:
        host, port = b.bootstrap_servers.rsplit(":", 1)

        async def fail(n: int, parallel: int = 100) -> None:
            for i in range(0, n, parallel):
                await asyncio.gather(*(_fail_once(host, int(port)) for _ in range(min(parallel, n - i))))

        asyncio.run(fail(200))  # warm-up: caches, the loop's buffers
        _wait(lambda: b.broker.ctx.connections_active == 0)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            with caplog.at_level(logging.WARNING, logger="loosely.broker.sasl"):
                started = time.monotonic()
                asyncio.run(fail(2000))
                took_s = time.monotonic() - started
            _wait(lambda: b.broker.ctx.connections_active == 0)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert b.broker.statistics().sasl_authentication_failures_total == 2200
        s = b.call(snapshot, b.broker.ctx)
        assert (s.sasl_authentications, s.sasl_authentication_failures) == (0, 2200)
        assert "loosely_sasl,host=h authentications=0i,authentication_failures=2200i" in line_protocol(s, "h")
        assert grown < 512 * 1024, f"{grown} bytes more after 2,000 failed logins"
        lines = [r for r in caplog.records if "failed SASL authentication" in r.getMessage()]
        assert 1 <= len(lines) <= 2 + took_s / 10, len(lines)  # one line per 10 s interval


def test_credentials_survive_a_restart(tmp_path: Path) -> None:
    conf = {"security.protocol": "sasl_plaintext", "sasl.mechanism": "SCRAM-SHA-512"}
    with BrokerThread(_config(tmp_path)) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap_servers, "security.protocol": "sasl_plaintext",
                             "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "alice",
                             "sasl.password": "alice-secret"})  # fmt: skip
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
        futures = admin.alter_user_scram_credentials([UserScramCredentialUpsertion("bob", info, b"bob-secret")])
        futures["bob"].result(timeout=30)
        port = b.port
    with BrokerThread(_config(tmp_path, port, scram=False)) as b:
        bob = AdminClient({"bootstrap.servers": b.bootstrap_servers, **conf, "sasl.username": "bob",
                           "sasl.password": "bob-secret"})  # fmt: skip
        assert bob.list_topics(timeout=20) is not None
        described = bob.describe_user_scram_credentials(["bob"])["bob"].result(timeout=20)
        assert [(i.mechanism, i.iterations) for i in described.scram_credential_infos] == [
            (ScramMechanism.SCRAM_SHA_512, 8192)
        ]
    assert b"bob-secret" not in (tmp_path / "scram-credentials.json").read_bytes()


def test_sasl_ssl_and_per_listener_plain_users(tmp_path: Path) -> None:
    certs = make_dev_certs(tmp_path / "certs")
    settings, _, unknown = split_kafka_settings(
        {
            "listeners": "SASL_SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
            "ssl.keystore.location": str(certs.broker.pem),
            "listener.name.sasl_ssl.plain.sasl.jaas.config": PLAIN_JAAS.replace("alice", "tls-alice"),
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "PLAIN",
        }
    )
    assert not unknown
    user, m, cred = parse_scram_spec("SCRAM-SHA-512=[name=alice,password=alice-secret]")
    config = BrokerConfig(data_dir=str(tmp_path / "data"), initial_scram_credentials=((user, m.name, cred),),
                          **settings)  # type: ignore[arg-type]  # fmt: skip
    with BrokerThread(config) as b:
        ports = {bound.name: bound.bound_port for bound in b.broker.listeners}
        tls = {"security.protocol": "sasl_ssl", "ssl.ca.location": str(certs.ca_crt)}

        def logs_in(listener: str, mechanism: str, user: str, password: str) -> bool:
            extra = tls if listener == "SASL_SSL" else {"security.protocol": "sasl_plaintext"}
            errors: list[object] = []
            admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{ports[listener]}", "sasl.mechanism": mechanism,
                                 "sasl.username": user, "sasl.password": password, "error_cb": errors.append,
                                 **extra})  # fmt: skip
            try:
                admin.list_topics(timeout=10)
                return True
            except Exception:
                return False

        assert logs_in("SASL_SSL", "SCRAM-SHA-512", "alice", "alice-secret")  # SCRAM users serve every listener
        assert logs_in("SASL_SSL", "PLAIN", "tls-alice", "tls-alice-secret")
        assert not logs_in("SASL_SSL", "PLAIN", "alice", "alice-secret")  # PLAIN users are the listener's own
        assert logs_in("SASL_PLAINTEXT", "PLAIN", "alice", "alice-secret")
        assert not logs_in("SASL_PLAINTEXT", "SCRAM-SHA-512", "alice", "alice-secret")  # its own mechanism list
        raw = Raw(f"127.0.0.1:{ports['SASL_PLAINTEXT']}")
        r = raw.request(ApiKey.SASL_HANDSHAKE, 1, _req(ApiKey.SASL_HANDSHAKE, 1, mechanism="SCRAM-SHA-512"))
        assert (r.error_code, r.mechanisms) == (ErrorCode.unsupported_sasl_mechanism, ("PLAIN",))  # type: ignore[attr-defined]
