"""TLS and mutual TLS against loosely and Apache Kafka with the same PEM files and the same client checks.

Both brokers get three listeners: PLAINTEXT, SSL (server certificate only) and MTLS (security protocol SSL with
``listener.name.mtls.ssl.client.auth=required``), configured with the same Kafka settings. kcat, confluent-kafka,
kafka-python, aiokafka and the Java client produce and consume over TLS; a client on each listener is told that
listener's port; untrusted or missing client certificates, plaintext on a TLS port and TLS on a plaintext port are
refused by both, and the broker carries on.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from compat._java import run_java
from loosely.broker.config import BrokerConfig, split_kafka_settings
from loosely.broker.server import BrokerThread
from loosely.testing import ApacheKafka
from loosely.testing.certs import DevCerts, make_dev_certs

WAIT_S = 30
DESCRIBE_TIMEOUT_S = 5  # one describe_consumer_groups while the coordinator loads; retried until WAIT_S


@dataclass(frozen=True)
class Secured:
    kind: str
    bootstrap: dict[str, str]  # listener name -> bootstrap servers
    certs: DevCerts
    stranger: DevCerts  # a client certificate from a CA the brokers do not trust
    broker: BrokerThread | None = None

    def port(self, listener: str) -> int:
        return int(self.bootstrap[listener].rsplit(":", 1)[1])

    def rdkafka(self, listener: str, client: DevCerts | None = None, **extra: str) -> dict[str, str]:
        """librdkafka settings for ``listener`` (a client certificate from ``client``'s files on MTLS)."""
        conf = {"bootstrap.servers": self.bootstrap[listener], **extra}
        if listener != "PLAINTEXT":
            conf |= {"security.protocol": "ssl", "ssl.ca.location": str(self.certs.ca_crt)}
        if client is not None:
            pair = client.clients["client"]
            conf |= {"ssl.certificate.location": str(pair.crt), "ssl.key.location": str(pair.key)}
        return conf


def _tls_settings(certs: DevCerts) -> dict[str, str]:
    return {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs.broker.pem),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs.ca_crt),
        "listener.name.mtls.ssl.client.auth": "required",
    }


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[DevCerts, DevCerts]:
    return make_dev_certs(tmp_path_factory.mktemp("certs")), make_dev_certs(tmp_path_factory.mktemp("stranger"))


@pytest.fixture(scope="module", params=["loosely", pytest.param("kafka", marks=pytest.mark.kafka)])
def secured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, certs: tuple[DevCerts, DevCerts]
) -> Iterator[Secured]:
    mine, stranger = certs
    if request.param == "kafka":
        jars: Path = request.getfixturevalue("jars_dir")
        kafka = ApacheKafka(
            nodes=1,
            base_dir=tmp_path_factory.mktemp("kafka-tls"),
            jars_dir=jars,
            listeners={"SSL": "SSL", "MTLS": "SSL"},
            config=_tls_settings(mine),
        )
        kafka.start()
        try:
            bootstrap = {"PLAINTEXT": kafka.bootstrap_servers, "SSL": kafka.bootstrap("SSL"),
                         "MTLS": kafka.bootstrap("MTLS")}
            yield Secured("kafka", bootstrap, mine, stranger)
        finally:
            kafka.stop()
        return
    settings, _, unknown = split_kafka_settings({
        "listeners": "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,MTLS://127.0.0.1:0",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL",
        **_tls_settings(mine),
    })
    assert not unknown
    config = BrokerConfig(data_dir=str(tmp_path_factory.mktemp("loosely-tls")), **settings)  # type: ignore[arg-type]
    with BrokerThread(config) as b:
        bootstrap = {name: b.bootstrap_servers_for(name) for name in ("PLAINTEXT", "SSL", "MTLS")}
        yield Secured("loosely", bootstrap, mine, stranger, b)


def _topic() -> str:
    return f"tls-{uuid.uuid4().hex[:10]}"


def _produce_consume(conf: dict[str, str], topic: str, n: int = 20) -> list[bytes]:
    p = Producer(conf)
    for i in range(n):
        p.produce(topic, f"v{i}".encode(), partition=0)
    assert p.flush(WAIT_S) == 0
    c = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got: list[bytes] = []
    try:
        while len(got) < n:
            m = c.poll(WAIT_S)
            assert m is not None, f"only {len(got)} of {n} records arrived"
            assert m.error() is None, m.error()
            got.append(m.value())
    finally:
        c.close()
    return got


@pytest.mark.parametrize("listener", ["PLAINTEXT", "SSL", "MTLS"])
def test_metadata_names_the_listener_the_client_came_in_on(secured: Secured, listener: str) -> None:
    """Metadata, DescribeCluster and FindCoordinator all answer with the port of the client's listener."""
    client = secured.certs if listener == "MTLS" else None
    admin = AdminClient(secured.rdkafka(listener, client))
    here = ("127.0.0.1", secured.port(listener))
    md = admin.list_topics(timeout=WAIT_S)
    assert [(b.host, b.port) for b in md.brokers.values()] == [here]
    cluster = admin.describe_cluster().result(WAIT_S)
    assert [(n.host, n.port) for n in cluster.nodes] == [here]
    group = f"g-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + WAIT_S
    while True:  # Kafka answers NOT_COORDINATOR and LOAD_IN_PROGRESS until __consumer_offsets is loaded
        try:
            # A short request timeout: on a new Kafka 4.4 node librdkafka's first describe can wait on the
            # coordinator for its whole default (60 s) and then fail _TIMED_OUT, where 4.1 answered NOT_COORDINATOR
            # at once; the next request, once __consumer_offsets is up, is answered at once.
            future = admin.describe_consumer_groups([group], request_timeout=DESCRIBE_TIMEOUT_S)[group]
            described = future.result(WAIT_S)
            break
        except KafkaException as e:
            loading = e.args[0].code() in (
                KafkaError.NOT_COORDINATOR,
                KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                KafkaError.COORDINATOR_NOT_AVAILABLE,
                KafkaError._TIMED_OUT,
            )
            if not loading or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert (described.coordinator.host, described.coordinator.port) == here


def test_the_raw_writers_own_transactions_commit_over_mutual_tls(secured: Secured) -> None:
    """The RAW Hollow writer's own connections (loosely.hollow.raw._txn) on a TLS socket: their commit goes through
    Python's SSL object, not the C exchange of plain sockets, and lands where its offsets say."""
    from loosely.clients.wire import KafkaConnection
    from loosely.hollow.raw._txn import Outgoing, WireTransactions, open_transactions

    topic = _topic()
    conf = secured.rdkafka("MTLS", secured.certs)
    admin = AdminClient(conf)
    for f in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        f.result(WAIT_S)
    txn = open_transactions(conf, f"tid-{topic}", transaction_timeout_ms=10_000, client_id="t", timeout_s=WAIT_S)
    try:
        assert isinstance(txn, WireTransactions)
        offsets = [o for i in range(3) for o in txn.commit([Outgoing(topic, 0, b"k", f"v{i}".encode())], WAIT_S)]
        assert txn.exchanged == 0  # every commit went the plain way
        conns = [c for c in txn._pool._connections.values() if isinstance(c, KafkaConnection)]
        assert conns and all(c._plain_fd() is None for c in conns)
    finally:
        txn.close()
    c = Consumer({**conf, "group.id": f"g-{topic}", "isolation.level": "read_committed", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    try:
        got = [m for m in (c.poll(WAIT_S) for _ in range(3))]
    finally:
        c.close()
    assert [(m.offset(), m.value()) for m in got if m is not None] == [(o, f"v{i}".encode())
                                                                       for i, o in enumerate(offsets)]


@pytest.mark.parametrize("listener", ["SSL", "MTLS"])
def test_confluent_kafka_produces_and_consumes_over_tls(secured: Secured, listener: str) -> None:
    topic = _topic()
    conf = secured.rdkafka(listener, secured.certs if listener == "MTLS" else None)
    assert _produce_consume(conf, topic) == [f"v{i}".encode() for i in range(20)]


def test_kcat_produces_and_consumes_over_mutual_tls(secured: Secured) -> None:
    topic = _topic()
    pair = secured.certs.clients["client"]
    tls = ["-X", "security.protocol=ssl", "-X", f"ssl.ca.location={secured.certs.ca_crt}",
           "-X", f"ssl.certificate.location={pair.crt}", "-X", f"ssl.key.location={pair.key}"]
    lines = b"".join(f"line {i}\n".encode() for i in range(50))
    p = subprocess.run(["kcat", "-P", "-b", secured.bootstrap["MTLS"], "-t", topic, *tls], input=lines,
                       capture_output=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    c = subprocess.run(["kcat", "-C", "-b", secured.bootstrap["MTLS"], "-t", topic, "-o", "beginning", "-e", *tls],
                       capture_output=True, timeout=60, check=False)
    assert c.returncode == 0, c.stderr
    assert c.stdout == lines


def test_kafka_python_produces_and_consumes_over_mutual_tls(secured: Secured) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = _topic()
    pair = secured.certs.clients["client"]
    tls = {"security_protocol": "SSL", "ssl_cafile": str(secured.certs.ca_crt), "ssl_certfile": str(pair.crt),
           "ssl_keyfile": str(pair.key), "bootstrap_servers": secured.bootstrap["MTLS"]}
    producer = KafkaProducer(**tls)
    for i in range(10):
        producer.send(topic, f"kp{i}".encode(), partition=0).get(timeout=WAIT_S)
    producer.close()
    consumer = KafkaConsumer(**tls, consumer_timeout_ms=WAIT_S * 1000)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    got = []
    for m in consumer:
        got.append(m.value)
        if len(got) == 10:
            break
    consumer.close()
    assert got == [f"kp{i}".encode() for i in range(10)]


def test_aiokafka_produces_and_consumes_over_mutual_tls(secured: Secured) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.helpers import create_ssl_context

    topic = _topic()
    pair = secured.certs.clients["client"]

    async def run() -> list[bytes]:
        ctx = create_ssl_context(cafile=str(secured.certs.ca_crt), certfile=str(pair.crt), keyfile=str(pair.key))
        common = {"bootstrap_servers": secured.bootstrap["MTLS"], "security_protocol": "SSL", "ssl_context": ctx}
        producer = AIOKafkaProducer(**common)
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(topic, f"ak{i}".encode(), partition=0)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(**common, auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            got: list[bytes] = []
            async with asyncio.timeout(WAIT_S):
                while len(got) < 10:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    got += [m.value for m in batch.get(tp, []) if m.value is not None]
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == [f"ak{i}".encode() for i in range(10)]


def test_java_client_produces_and_consumes_over_mutual_tls(secured: Secured, tmp_path: Path) -> None:
    topic = _topic()
    props = tmp_path / "client.properties"
    props.write_text(
        f"bootstrap.servers={secured.bootstrap['MTLS']}\nsecurity.protocol=SSL\n"
        f"ssl.truststore.type=PEM\nssl.truststore.location={secured.certs.ca_crt}\n"
        f"ssl.keystore.type=PEM\nssl.keystore.location={secured.certs.clients['client'].pem}\n"
    )
    r = run_java("interop/java-clients", "ConfiguredProbe", "roundtrip", str(props), topic, "5")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.splitlines() == [f"produced {i}" for i in range(5)] + [f"consumed {i} value-{i}" for i in range(5)]


def _refused(conf: dict[str, str]) -> None:
    """A client that must not get through: it reports a TLS failure, and its metadata request fails."""
    errors: list[KafkaError] = []
    admin = AdminClient({**conf, "error_cb": errors.append})
    deadline = time.monotonic() + WAIT_S
    while not errors:
        admin.poll(0.05)
        assert time.monotonic() < deadline, "the client saw no error"
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=1)


def test_client_certificates_are_required_on_mtls(secured: Secured) -> None:
    _refused(secured.rdkafka("MTLS"))  # no certificate
    _refused(secured.rdkafka("MTLS", secured.stranger))  # signed by a CA the broker does not trust
    # the broker carries on for clients that do have a trusted certificate
    md = AdminClient(secured.rdkafka("MTLS", secured.certs)).list_topics(timeout=WAIT_S)
    assert len(md.brokers) == 1


def test_a_client_refuses_a_broker_it_does_not_trust(secured: Secured) -> None:
    conf = secured.rdkafka("SSL") | {"ssl.ca.location": str(secured.stranger.ca_crt)}
    _refused(conf)


def _closed_without_answer(sock: socket.socket) -> bool:
    """The peer closes (EOF or reset) without sending a Kafka response."""
    sock.settimeout(WAIT_S)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return not received.startswith(b"\x00\x00")  # whatever came (a TLS alert) is not a Kafka frame


def test_plaintext_to_a_tls_port_is_closed(secured: Secured) -> None:
    # an ApiVersions v0 request (api 18, version 0, correlation 1, client id "x") spoken in plain
    api_versions = bytes.fromhex("0000000b" "0012" "0000" "00000001" "0001" "78")
    with socket.create_connection(("127.0.0.1", secured.port("SSL")), timeout=WAIT_S) as s:
        s.sendall(api_versions)
        assert _closed_without_answer(s)
    md = AdminClient(secured.rdkafka("SSL")).list_topics(timeout=WAIT_S)
    assert len(md.brokers) == 1


def test_tls_to_a_plaintext_port_fails_and_the_broker_carries_on(secured: Secured) -> None:
    ctx = ssl.create_default_context(cafile=str(secured.certs.ca_crt))
    with socket.create_connection(("127.0.0.1", secured.port("PLAINTEXT")), timeout=WAIT_S) as raw, pytest.raises(
        (ssl.SSLError, ConnectionError, TimeoutError)
    ):
        ctx.wrap_socket(raw, server_hostname="localhost").do_handshake()
    md = AdminClient(secured.rdkafka("PLAINTEXT")).list_topics(timeout=WAIT_S)
    assert len(md.brokers) == 1
