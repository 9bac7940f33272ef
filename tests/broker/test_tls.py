"""loosely's TLS listeners beyond what the differential tests compare: principals, mapping rules, handshake limits,
certificate reload, inline and encrypted keys, protocol versions, and the command line (--config-file, dev-certs).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from loosely.broker.config import BrokerConfig, split_kafka_settings
from loosely.broker.metrics import families, snapshot
from loosely.broker.server import Broker, BrokerThread
from loosely.cli.main import main as cli_main
from loosely.testing.certs import DevCerts, make_dev_certs

WAIT_S = 20
# ApiVersions v0, correlation id 7, client id "t"
API_VERSIONS = bytes.fromhex("0000000b" "0012" "0000" "00000007" "0001" "74")


def _config(data_dir: Path, settings: dict[str, str]) -> BrokerConfig:
    fields, _, unknown = split_kafka_settings(settings)
    assert not unknown
    return BrokerConfig(data_dir=str(data_dir), **fields)  # type: ignore[arg-type]


def _tls(certs: DevCerts, **more: str) -> dict[str, str]:
    return {
        "listeners": "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,MTLS://127.0.0.1:0",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL",
        "ssl.keystore.location": str(certs.broker.pem),
        "ssl.truststore.location": str(certs.ca_crt),
        "listener.name.mtls.ssl.client.auth": "required",
        **more,
    }


def _client_context(ca: Path, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        ctx.load_cert_chain(str(client[0]), str(client[1]))
    return ctx


def _api_versions_over(ctx: ssl.SSLContext, port: int) -> int:
    """Correlation id of the ApiVersions answer on a TLS connection (the handshake and a request both worked)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as raw, ctx.wrap_socket(
        raw, server_hostname="localhost"
    ) as s:
        s.sendall(API_VERSIONS)
        head = s.recv(8)
        while len(head) < 8:
            more = s.recv(8 - len(head))
            assert more, "closed before answering"
            head += more
        return int(struct.unpack(">ii", head)[1])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return make_dev_certs(tmp_path_factory.mktemp("certs"), clients=["alice", "bob"])


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, certs: DevCerts) -> Iterator[BrokerThread]:
    settings = _tls(
        certs,
        **{
            "listeners": "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,MTLS://127.0.0.1:0,OPT://127.0.0.1:0",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL,OPT:SSL",
            "listener.name.opt.ssl.client.auth": "requested",
            "loosely.ssl.handshake.timeout.ms": "500",
            "listener.name.mtls.ssl.principal.mapping.rules": "RULE:^CN=(b.*?),.*$/$1/U,DEFAULT",
        },
    )
    with BrokerThread(_config(tmp_path_factory.mktemp("data"), settings)) as b:
        yield b


def _principals(b: BrokerThread) -> list[tuple[str, str]]:
    return sorted(b.call(lambda: [(c.listener.name, c.principal) for c in b.broker.connections]))


def _wait_for(cond: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_each_connection_knows_its_listener_and_principal(broker: BrokerThread, certs: DevCerts) -> None:
    alice = (certs.clients["alice"].crt, certs.clients["alice"].key)
    bob = (certs.clients["bob"].crt, certs.clients["bob"].key)
    with socket.create_connection(("127.0.0.1", broker.listener_port("PLAINTEXT"))) as plain:
        plain.sendall(API_VERSIONS)
        assert plain.recv(8)
        ctx_alice, ctx_bob = _client_context(certs.ca_crt, alice), _client_context(certs.ca_crt, bob)
        with socket.create_connection(("127.0.0.1", broker.listener_port("MTLS"))) as raw_a, ctx_alice.wrap_socket(
            raw_a, server_hostname="localhost"
        ) as a, socket.create_connection(("127.0.0.1", broker.listener_port("MTLS"))) as raw_b, ctx_bob.wrap_socket(
            raw_b, server_hostname="localhost"
        ) as bb, socket.create_connection(("127.0.0.1", broker.listener_port("SSL"))) as raw_s, _client_context(
            certs.ca_crt
        ).wrap_socket(raw_s, server_hostname="localhost") as s:
            for conn in (a, bb, s):
                conn.sendall(API_VERSIONS)
                assert conn.recv(8)
            assert _principals(broker) == [
                ("MTLS", "User:BOB"),  # the listener's mapping rule applies to bob
                ("MTLS", "User:CN=alice,O=loosely dev"),  # and not to alice: DEFAULT, the RFC 2253 subject
                ("PLAINTEXT", "User:ANONYMOUS"),
                ("SSL", "User:ANONYMOUS"),  # no client certificate asked for
            ]


def test_requested_client_certificates_are_optional(broker: BrokerThread, certs: DevCerts) -> None:
    port = broker.listener_port("OPT")
    alice = _client_context(certs.ca_crt, (certs.clients["alice"].crt, certs.clients["alice"].key))
    with socket.create_connection(("127.0.0.1", port)) as raw_a, alice.wrap_socket(
        raw_a, server_hostname="localhost"
    ) as a, socket.create_connection(("127.0.0.1", port)) as raw_n, _client_context(certs.ca_crt).wrap_socket(
        raw_n, server_hostname="localhost"
    ) as n:
        for conn in (a, n):
            conn.sendall(API_VERSIONS)
            assert conn.recv(8)
        assert [p for p in _principals(broker) if p[0] == "OPT"] == [
            ("OPT", "User:ANONYMOUS"),
            ("OPT", "User:CN=alice,O=loosely dev"),
        ]


def test_a_stalled_handshake_is_closed_after_the_timeout(
    broker: BrokerThread, caplog: pytest.LogCaptureFixture
) -> None:
    before = broker.broker.tls_handshake_failures_total
    caplog.set_level(logging.WARNING, logger="loosely.broker")
    with socket.create_connection(("127.0.0.1", broker.listener_port("SSL")), timeout=WAIT_S) as s:
        s.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, and then nothing
        started = time.monotonic()
        assert s.recv(100) == b""
        assert 0.3 < time.monotonic() - started < 5
    _wait_for(lambda: broker.broker.tls_handshake_failures_total == before + 1, "the failure is counted")
    scraped = broker.call(snapshot, broker.broker.ctx)
    assert scraped.tls_handshake_failures == before + 1
    exported = {m.name: m.samples[0].value for m in families(scraped) if m.name == "loosely_tls_handshake_failures"}
    assert exported == {"loosely_tls_handshake_failures": before + 1}
    lines = [r.getMessage() for r in caplog.records if "not finished within 500 ms" in r.getMessage()]
    assert len(lines) == 1 and "listener SSL" in lines[0]
    assert _api_versions_over(_client_context(certs_of(broker)), broker.listener_port("SSL")) == 7


def certs_of(b: BrokerThread) -> Path:
    tls = b.broker.tls_contexts["SSL"].settings
    assert tls.truststore_location is not None
    return Path(tls.truststore_location)


def test_tls_to_a_plaintext_port_is_one_line(broker: BrokerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="loosely.broker")
    with socket.create_connection(("127.0.0.1", broker.listener_port("PLAINTEXT")), timeout=WAIT_S) as raw, \
            pytest.raises((ssl.SSLError, ConnectionError)):
        _client_context(certs_of(broker)).wrap_socket(raw, server_hostname="localhost")
    _wait_for(lambda: any("spoke TLS to plaintext listener" in r.getMessage() for r in caplog.records), "logged")
    lines = [r for r in caplog.records if r.name == "loosely.broker"]
    assert len(lines) == 1 and lines[0].exc_info is None


def test_plaintext_to_a_tls_port_is_one_line(broker: BrokerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="loosely.broker")
    with socket.create_connection(("127.0.0.1", broker.listener_port("MTLS")), timeout=WAIT_S) as s:
        s.sendall(API_VERSIONS)
        assert s.recv(100) == b""
    _wait_for(lambda: any("did the client speak plaintext" in r.getMessage() for r in caplog.records), "logged")
    lines = [r for r in caplog.records if r.name == "loosely.broker"]
    assert len(lines) == 1 and lines[0].exc_info is None and "listener MTLS" in lines[0].getMessage()


def test_an_untrusted_client_certificate_is_one_line(
    broker: BrokerThread, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="loosely.broker")
    stranger = make_dev_certs(tmp_path, clients=["mallory"]).clients["mallory"]
    ctx = _client_context(certs_of(broker), (stranger.crt, stranger.key))
    with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
        _api_versions_over(ctx, broker.listener_port("MTLS"))
    _wait_for(lambda: any("listener MTLS" in r.getMessage() for r in caplog.records), "logged")
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.records[-1].getMessage()
    assert all(r.exc_info is None for r in caplog.records)


def test_replaced_certificates_are_used_for_new_connections(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = make_dev_certs(tmp_path / "old")
    new = make_dev_certs(tmp_path / "new")
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(old.broker.pem, live / "broker.pem")
    settings = {"listeners": "SSL://127.0.0.1:0", "ssl.keystore.location": str(live / "broker.pem")}
    caplog.set_level(logging.INFO, logger="loosely.tls")
    with BrokerThread(_config(tmp_path / "data", settings)) as b:
        port = b.listener_port("SSL")
        assert _api_versions_over(_client_context(old.ca_crt), port) == 7
        tmp = live / "broker.pem.tmp"
        shutil.copy(new.broker.pem, tmp)
        os.replace(tmp, live / "broker.pem")  # as a certificate manager replaces it: atomically

        def new_ones_served() -> bool:
            try:
                return _api_versions_over(_client_context(new.ca_crt), port) == 7
            except ssl.SSLError:
                return False

        _wait_for(new_ones_served, "the new certificate is served within a few seconds")
        with pytest.raises(ssl.SSLError):
            _api_versions_over(_client_context(old.ca_crt), port)
    lines = [r.getMessage() for r in caplog.records if "certificate files changed" in r.getMessage()]
    assert len(lines) == 1


def test_inline_pem_with_an_encrypted_key(tmp_path: Path, certs: DevCerts) -> None:
    key = serialization.load_pem_private_key(certs.broker.key.read_bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    ).decode()
    settings = {
        "listeners": "SSL://127.0.0.1:0",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.certificate.chain": certs.broker.crt.read_text(),
        "ssl.keystore.key": encrypted,
        "ssl.key.password": "s3cret",
        "ssl.truststore.certificates": certs.ca_crt.read_text(),
    }
    with BrokerThread(_config(tmp_path / "data", settings)) as b:
        assert _api_versions_over(_client_context(certs.ca_crt), b.listener_port("SSL")) == 7
        assert "s3cret" not in repr(b.broker.config)  # secrets stay out of reprs (and so out of logs)
    with pytest.raises(ValueError, match="cannot load its TLS key"):
        Broker(_config(tmp_path / "data2", settings | {"ssl.key.password": "wrong"}))
    without = {k: v for k, v in settings.items() if k != "ssl.key.password"}
    with pytest.raises(ValueError, match=r"encrypted: set ssl\.key\.password"):  # never a pass phrase prompt
        Broker(_config(tmp_path / "data3", without))


def test_enabled_protocols(tmp_path: Path, certs: DevCerts) -> None:
    settings = {"listeners": "SSL://127.0.0.1:0", "ssl.keystore.location": str(certs.broker.pem),
                "ssl.enabled.protocols": "TLSv1.3"}
    with BrokerThread(_config(tmp_path / "data", settings)) as b:
        old = _client_context(certs.ca_crt)
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            _api_versions_over(old, b.listener_port("SSL"))
        assert _api_versions_over(_client_context(certs.ca_crt), b.listener_port("SSL")) == 7
    with pytest.raises(ValueError, match=r"TLSv1\.2 and TLSv1\.3"):
        _config(tmp_path / "x", settings | {"ssl.enabled.protocols": "TLSv1.1"})


def test_config_file_with_command_line_overrides(tmp_path: Path, certs: DevCerts) -> None:
    props = tmp_path / "server.properties"
    props.write_text(
        "# copied from a Kafka broker\n"
        "listeners=PLAINTEXT://127.0.0.1:0,\\\n    SSL://127.0.0.1:0\n"
        f"ssl.keystore.type=PEM\nssl.keystore.location={certs.broker.pem}\n"
        "num.partitions: 5\n"
    )
    cmd = [sys.executable, "-m", "loosely.cli.main", "broker", "--data-dir", str(tmp_path / "data"),
           "--config-file", str(props), "--config", "num.partitions=2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "PLAINTEXT://127.0.0.1:" in line and "SSL://127.0.0.1:" in line, line
        ssl_port = int(line.split("SSL://127.0.0.1:")[1].split()[0].rstrip(","))
        plain_port = int(line.split("PLAINTEXT://127.0.0.1:")[1].split(",")[0])
        assert _api_versions_over(_client_context(certs.ca_crt), ssl_port) == 7
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{plain_port}", "allow.auto.create.topics": True})
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": f"127.0.0.1:{plain_port}"})
        p.produce("auto", b"x")
        assert p.flush(WAIT_S) == 0
        assert len(admin.list_topics("auto", timeout=WAIT_S).topics["auto"].partitions) == 2  # --config won
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=WAIT_S)
    assert "Traceback" not in err


def test_dev_certs_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["security", "dev-certs", str(tmp_path / "c"), "--client", "alice", "--client", "bob"]) == 0
    out = capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert names == sorted(["ca.crt", "ca.key", *(f"{n}.{e}" for n in ("broker", "alice", "bob")
                                                  for e in ("pem", "crt", "key"))])
    for name in names:
        mode = (tmp_path / "c" / name).stat().st_mode & 0o777
        assert mode == (0o600 if name.endswith((".key", ".pem")) else 0o644), name
    assert f"ssl.keystore.location={tmp_path / 'c' / 'broker.pem'}" in out
    assert f"ssl.ca.location={tmp_path / 'c' / 'ca.crt'}" in out
    assert "User:CN=bob,O=loosely dev" in out


def test_a_kraft_controller_listener_is_not_opened() -> None:
    settings = {
        "listeners": "PLAINTEXT://127.0.0.1:0,CONTROLLER://:9093",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    }
    fields, _, unknown = split_kafka_settings(settings)
    assert not unknown
    assert [s.name for s in fields["listeners"]] == ["PLAINTEXT"]  # type: ignore[attr-defined]


def test_embedded_broker_takes_kafka_settings(certs: DevCerts) -> None:
    from loosely.testing import embedded_broker

    settings = {"listeners": "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
                "ssl.keystore.location": str(certs.broker.pem)}
    with embedded_broker(settings=settings) as b:
        assert b.bootstrap_servers == f"127.0.0.1:{b.port}" != b.bootstrap_servers_for("SSL")
        assert _api_versions_over(_client_context(certs.ca_crt), b.listener_port("SSL")) == 7


def test_a_flood_of_failed_handshakes_costs_nothing_lasting(
    broker: BrokerThread, caplog: pytest.LogCaptureFixture
) -> None:
    """Hundreds of failed handshakes: each connection slot comes back, no task lingers, a few log lines."""
    caplog.set_level(logging.WARNING, logger="loosely.broker")
    before = broker.broker.tls_handshake_failures_total
    port = broker.listener_port("SSL")
    for _ in range(300):
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as s:
            s.sendall(API_VERSIONS)  # plaintext on a TLS port
            s.recv(100)
    _wait_for(lambda: broker.broker.tls_handshake_failures_total == before + 300, "every failure counted")
    _wait_for(lambda: broker.call(lambda: broker.broker.connection_counts.total) == 0, "every slot released")
    assert broker.call(lambda: len(broker.broker._handshakes)) == 0
    lines = [r for r in caplog.records if r.name == "loosely.broker"]
    assert 1 <= len(lines) <= 10, len(lines)  # at most one a second for this kind of failure


def test_stopping_with_handshakes_in_flight(tmp_path: Path, certs: DevCerts) -> None:
    settings = {"listeners": "SSL://127.0.0.1:0", "ssl.keystore.location": str(certs.broker.pem)}
    b = BrokerThread(_config(tmp_path / "data", settings)).start()
    stalled = [socket.create_connection(("127.0.0.1", b.listener_port("SSL"))) for _ in range(5)]
    try:
        _wait_for(lambda: b.call(lambda: len(b.broker._handshakes)) == 5, "five handshakes in flight")
        started = time.monotonic()
        b.stop()
        assert time.monotonic() - started < 5  # not held up by the handshake timeout (10 s)
        assert b.broker.connection_counts.total == 0
    finally:
        for s in stalled:
            s.close()


def test_a_remote_listener_that_authenticates_starts_without_a_warning(
    tmp_path: Path, certs: DevCerts, caplog: pytest.LogCaptureFixture
) -> None:
    settings = {
        "listeners": "PLAINTEXT://127.0.0.1:0,SSL://0.0.0.0:0",
        "advertised.listeners": "SSL://localhost:0",
        "ssl.keystore.location": str(certs.broker.pem),
        "ssl.truststore.location": str(certs.ca_crt),
        "ssl.client.auth": "required",
    }
    caplog.set_level(logging.WARNING, logger="loosely.broker")
    with BrokerThread(_config(tmp_path / "data", settings)) as b:
        assert b.broker.open_listeners == [] and not b.broker.loopback
        alice = _client_context(certs.ca_crt, (certs.clients["alice"].crt, certs.clients["alice"].key))
        assert _api_versions_over(alice, b.listener_port("SSL")) == 7
        assert [(x.name, x.host, x.port) for x in b.broker.listeners][1] == ("SSL", "localhost", b.listener_port("SSL"))
    assert not [r for r in caplog.records if r.name == "loosely.broker"]
    with pytest.raises(ValueError, match="does not authenticate"):
        Broker(_config(tmp_path / "d2", settings | {"ssl.client.auth": "requested"}))
