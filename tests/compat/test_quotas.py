"""Client quotas side by side with Apache Kafka 4.1.1: ``kafka-configs`` (Kafka's own ConfigCommand) stores and
describes them the same way, a producer or consumer over its byte rate is throttled to it within 10%, and the other
quotas act alike: ``controller_mutation_rate`` (strict for kafka-python's CreateTopics v7, permissive for
librdkafka's v4), ``request_percentage``, an IP's ``connection_creation_rate`` and a listener's
``max.connection.creation.rate``.

Both brokers run with ``quota.window.num=2`` and ``controller.quota.window.num=2`` (Kafka's defaults are 11): a new
client may burst ``num - 1`` windows' worth before it is throttled (a bucket of two mutations per mutation/s), so two
windows keep the throttled part of each run short."""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from broker._raw import Raw
from compat._kafka_tools import kafka_class, kafka_command
from loosely.protocol.messages import ApiKey, encode_request
from loosely.testing import ApacheKafka, embedded_broker

# listener.name.plaintext.max.connection.creation.rate: far above what the other tests open, far below a burst.
# The listener's own limit, not the broker-wide max.connection.creation.rate: Kafka exempts its inter-broker
# listener (PLAINTEXT here) from that one.
CONNECTIONS_PER_S = 20
QUOTA_SETTINGS = {"quota.window.num": "2", "quota.window.size.seconds": "1", "controller.quota.window.num": "2",
                  "controller.quota.window.size.seconds": "1",
                  "listener.name.plaintext.max.connection.creation.rate": str(CONNECTIONS_PER_S)}
RATE = 400_000  # bytes per second
PAYLOAD = 1_600_000  # four seconds' worth at RATE
BURST = RATE * 1  # what a new client may send before it is throttled: (quota.window.num - 1) windows' worth
# Requests of ~20 KB (the quota is measured per request, so a 1 MB request would overshoot a 400 KB/s quota)
SMALL_REQUESTS = {"batch.size": 20_000, "fetch.max.bytes": 20_000, "max.partition.fetch.bytes": 20_000}
RATES: dict[tuple[str, str], float] = {}  # (test, broker) -> bytes/s once throttled, compared across brokers


def throttled_like_kafka(test: str, broker: str, rate: float) -> None:
    """The rate a throttled client reaches, on either broker: never over the quota by more than 10%. Kafka itself
    paces clients of ~20 KB requests well below their quota (measured here: producers at 0.6-0.75x, consumers at
    0.33x; the client waits out each throttle time while the broker mutes it), so the lower bound is loose: a
    client that is throttled at all, and not starved."""
    RATES[(test, broker)] = rate
    print(f"{test} on {broker}: {rate:,.0f} B/s (quota {RATE:,})")
    assert 0.25 * RATE <= rate <= 1.1 * RATE, rate


@pytest.fixture(scope="module", params=["loosely", "kafka"])
def bootstrap(
    request: pytest.FixtureRequest, jars_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "kafka":
        with ApacheKafka(nodes=1, base_dir=tmp_path_factory.mktemp("kafka-quotas"), jars_dir=jars_dir,
                         config=QUOTA_SETTINGS) as kafka:
            yield kafka.bootstrap_servers
    else:
        with embedded_broker(data_dir=str(tmp_path_factory.mktemp("loosely-quotas")), settings=QUOTA_SETTINGS) as b:
            yield b.bootstrap_servers


def configs(bootstrap: str, *args: str) -> tuple[int, str]:
    done = kafka_class(kafka_command("ConfigCommand"), "--bootstrap-server", bootstrap, *args)
    lines = (done.stdout + done.stderr).splitlines()
    return done.returncode, "\n".join(line for line in lines if not line.startswith("SLF4J:")).strip()


def test_kafka_configs_alters_and_describes_client_quotas(bootstrap: str) -> None:
    app = f"app-{uuid.uuid4().hex[:8]}"
    assert configs(bootstrap, "--alter", "--add-config", "producer_byte_rate=1048576,consumer_byte_rate=2097152",
                   "--entity-type", "clients", "--entity-name", app)[0] == 0
    assert configs(bootstrap, "--alter", "--add-config", "producer_byte_rate=500", "--entity-type", "users",
                   "--entity-name", "alice", "--entity-type", "clients", "--entity-default")[0] == 0
    rc, out = configs(bootstrap, "--describe", "--entity-type", "clients", "--entity-name", app)
    assert rc == 0
    assert out == f"Quota configs for client-id '{app}' are consumer_byte_rate=2097152.0, producer_byte_rate=1048576.0"
    rc, out = configs(bootstrap, "--describe", "--entity-type", "users", "--entity-name", "alice",
                      "--entity-type", "clients", "--entity-default")
    assert rc == 0
    assert out == "Quota configs for user-principal 'alice', the default client-id are producer_byte_rate=500.0"
    assert configs(bootstrap, "--alter", "--delete-config", "consumer_byte_rate", "--entity-type", "clients",
                   "--entity-name", app)[0] == 0
    rc, out = configs(bootstrap, "--describe", "--entity-type", "clients", "--entity-name", app)
    assert out == f"Quota configs for client-id '{app}' are producer_byte_rate=1048576.0"
    assert configs(bootstrap, "--alter", "--delete-config", "producer_byte_rate", "--entity-type", "clients",
                   "--entity-name", app)[0] == 0
    rc, out = configs(bootstrap, "--describe", "--entity-type", "clients", "--entity-name", app)
    assert (rc, out) == (0, "")
    rc, out = configs(bootstrap, "--alter", "--add-config", "producer_byte_rate=-5", "--entity-type", "clients",
                      "--entity-name", app)
    assert rc != 0 and "InvalidRequestException" in out, out


def _quota(bootstrap: str, key: str, client_id: str, value: float = RATE) -> None:
    """Set a client-id quota with an AlterClientQuotas request (what kafka-configs sends, without a JVM start), and
    wait until the broker applies it: Kafka answers once its controller has the change, and its broker applies it a
    moment later (DescribeClientQuotas answers from the broker's view)."""
    from kio.schema.describe_client_quotas.v1.request import ComponentData, DescribeClientQuotasRequest
    from kio.static.primitive import i8

    assert list(_alter(bootstrap, [(("client-id", client_id),)], key, value).values()) == [(0, None)]
    raw = Raw(bootstrap)
    deadline = time.monotonic() + 30
    try:
        while True:
            resp = raw.request(ApiKey.DESCRIBE_CLIENT_QUOTAS, 1, DescribeClientQuotasRequest(
                components=(ComponentData(entity_type="client-id", match_type=i8(0), match=client_id),), strict=True))
            if any(v.key == key for e in resp.entries or () for v in e.values):  # type: ignore[attr-defined]
                return
            assert time.monotonic() < deadline, f"{key} for {client_id} never applied"
            time.sleep(0.05)
    finally:
        raw.close()


def _alter(bootstrap: str, entities: list[tuple[tuple[str, str | None], ...]], key: str,
           value: float) -> dict[str, tuple[int, str | None]]:
    """One AlterClientQuotas request setting ``key`` on each entity; (error code, message) by entity (Kafka answers
    them, and an entity's types, in no particular order), an entity written ``type=name,...`` sorted by type."""
    from kio.schema.alter_client_quotas.v1.request import (
        AlterClientQuotasRequest,
        EntityData,
        EntryData,
        OpData,
    )
    from kio.static.primitive import f64

    raw = Raw(bootstrap)
    try:
        resp = raw.request(ApiKey.ALTER_CLIENT_QUOTAS, 1, AlterClientQuotasRequest(
            entries=tuple(EntryData(entity=tuple(EntityData(entity_type=t, entity_name=n) for t, n in entity),
                                    ops=(OpData(key=key, value=f64(float(value)), remove=False),))
                          for entity in entities),
            validate_only=False))
    finally:
        raw.close()
    return {",".join(sorted(f"{d.entity_type}={d.entity_name}" for d in e.entity)): (int(e.error_code),
                                                                                     e.error_message)
            for e in resp.entries}  # type: ignore[attr-defined]


def test_a_producer_over_its_quota_is_throttled_to_it(bootstrap: str, request: pytest.FixtureRequest) -> None:
    client_id, topic = f"fast-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    _quota(bootstrap, "producer_byte_rate", client_id)
    throttles: list[int] = []
    p = Producer({"bootstrap.servers": bootstrap, "client.id": client_id, "batch.size": SMALL_REQUESTS["batch.size"],
                  "linger.ms": 0, "throttle_cb": lambda e: throttles.append(int(e.throttle_time * 1000))})
    value = b"x" * 10_000
    started = time.monotonic()
    for _ in range(PAYLOAD // len(value)):
        p.produce(topic, value)
        p.poll(0)
    assert p.flush(60) == 0
    rate = (PAYLOAD - BURST) / (time.monotonic() - started)  # the rate once the burst allowance is spent
    throttled_like_kafka("produce", request.node.callspec.params["bootstrap"], rate)
    assert throttles and max(throttles) > 0


def test_a_consumer_over_its_quota_is_throttled_to_it(bootstrap: str, request: pytest.FixtureRequest) -> None:
    client_id, topic = f"reader-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    p = Producer({"bootstrap.servers": bootstrap, "batch.size": SMALL_REQUESTS["batch.size"]})
    for _ in range(PAYLOAD // 10_000):
        p.produce(topic, b"y" * 10_000)
    assert p.flush(30) == 0
    _quota(bootstrap, "consumer_byte_rate", client_id)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": client_id, "client.id": client_id,
                  "enable.auto.commit": False, "fetch.max.bytes": SMALL_REQUESTS["fetch.max.bytes"],
                  "message.max.bytes": SMALL_REQUESTS["fetch.max.bytes"],
                  "max.partition.fetch.bytes": SMALL_REQUESTS["max.partition.fetch.bytes"]})
    c.assign([TopicPartition(topic, 0, 0)])
    got = 0
    started = time.monotonic()
    try:
        while got < PAYLOAD and time.monotonic() - started < 30:
            for m in c.consume(100, timeout=1):
                assert m.error() is None, m.error()
                got += len(m.value() or b"")
    finally:
        c.close()
    rate = (got - BURST) / (time.monotonic() - started)
    assert got == PAYLOAD
    throttled_like_kafka("fetch", request.node.callspec.params["bootstrap"], rate)


def _mutate(bootstrap: str, client_id: str, api_key: int, version: int, topic: object) -> tuple[int, int, str | None]:
    """A CreateTopics, DeleteTopics or CreatePartitions request of one topic (a kio request entry) on a new
    connection (a throttled one is muted): (error code, throttle_time_ms, error message)."""
    import importlib

    from kio.static.primitive import i32Timedelta

    name = {ApiKey.CREATE_TOPICS: "create_topics", ApiKey.DELETE_TOPICS: "delete_topics",
            ApiKey.CREATE_PARTITIONS: "create_partitions"}[api_key]
    schema = importlib.import_module(f"kio.schema.{name}.v{version}.request")
    timeout = i32Timedelta.parse(datetime.timedelta(seconds=30))
    body = (schema.DeleteTopicsRequest(topics=(topic,), timeout=timeout) if api_key == ApiKey.DELETE_TOPICS else
            getattr(schema, "CreateTopicsRequest" if api_key == ApiKey.CREATE_TOPICS else "CreatePartitionsRequest")(
                topics=(topic,), timeout=timeout, validate_only=False))
    raw = Raw(bootstrap, client_id=client_id)
    try:
        resp = raw.request(api_key, version, body)
    finally:
        raw.close()
    (result,) = getattr(resp, "topics", None) or getattr(resp, "responses", None) or resp.results  # type: ignore[attr-defined]
    throttle = resp.throttle_time  # type: ignore[attr-defined]
    return int(result.error_code), round(throttle.total_seconds() * 1000), result.error_message


def _create_topics(bootstrap: str, client_id: str, version: int, partitions: int) -> tuple[int, int, str | None]:
    import importlib

    from kio.static.primitive import i16, i32

    schema = importlib.import_module(f"kio.schema.create_topics.v{version}.request")
    topic = schema.CreatableTopic(name=f"m-{uuid.uuid4().hex[:8]}", num_partitions=i32(partitions),
                                  replication_factor=i16(1), assignments=(), configs=())
    return _mutate(bootstrap, client_id, ApiKey.CREATE_TOPICS, version, topic)


def test_controller_mutations_over_the_rate_are_refused_or_throttled_as_kafka_does(bootstrap: str) -> None:
    """controller_mutation_rate=1 with two windows: a bucket of 2 partitions, which one request may overdraw."""
    from kafka.admin import KafkaAdminClient
    from kio.schema.create_partitions.v3.request import CreatePartitionsTopic
    from kio.schema.delete_topics.v6.request import DeleteTopicState
    from kio.static.primitive import i32

    strict, permissive, fresh = (f"mut-{uuid.uuid4().hex[:8]}" for _ in range(3))
    for client_id in (strict, permissive, fresh):
        _quota(bootstrap, "controller_mutation_rate", client_id, 1)
    # kafka-python sends CreateTopics v7 and DeleteTopics v6: strict. The first request overdraws the bucket to -8
    # unthrottled; then every topic is refused until it has refilled.
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=strict)
    topic = f"m-{uuid.uuid4().hex[:8]}"
    try:
        first = admin.create_topics({topic: {"num_partitions": 10, "replication_factor": 1}}, raise_errors=False)
        assert [t["error_code"] for t in first["topics"]] == [0]
        second = admin.create_topics({f"m-{uuid.uuid4().hex[:8]}": {"num_partitions": 1, "replication_factor": 1}},
                                     raise_errors=False)
        # Kafka's ApiError leaves out the message when it is the error's generic one
        assert [(t["error_code"], t["error_message"]) for t in second["topics"]] == [(89, None)]
    finally:
        admin.close()
    code, throttle_ms, message = _create_topics(bootstrap, strict, 7, 1)
    assert (code, message) == (89, None)
    assert 5000 < throttle_ms <= 8000, throttle_ms  # the time the bucket needs to get back to 0 (-8 at 1/s)
    for api_key, version, entry in ((ApiKey.DELETE_TOPICS, 6, DeleteTopicState(name=topic, topic_id=None)),
                                    (ApiKey.CREATE_PARTITIONS, 3, CreatePartitionsTopic(name=topic, count=i32(12),
                                                                                        assignments=None))):
        code, throttle_ms, message = _mutate(bootstrap, strict, api_key, version, entry)
        assert (code, message) == (89, None) and 5000 < throttle_ms <= 8000, (api_key, code, throttle_ms)
    assert _create_topics(bootstrap, fresh, 7, 10) == (0, 0, None)  # overdrawn without a throttle
    # librdkafka (confluent-kafka) sends CreateTopics v4: permissive, every topic is created and the answer throttled
    assert _create_topics(bootstrap, permissive, 4, 1) == (0, 0, None)  # 2 -> 1 token
    code, throttle_ms, _ = _create_topics(bootstrap, permissive, 4, 10)
    assert code == 0 and 8000 <= throttle_ms <= 9000, throttle_ms  # -9 at 1/s


def test_a_client_over_its_request_percentage_is_throttled(bootstrap: str) -> None:
    """request_percentage=0.01: 0.1 ms of request handling a second. Metadata requests in a row soon earn a throttle
    (at most one window), and the broker mutes the connection for it (KIP-219)."""
    from kio.schema.metadata.v12.request import MetadataRequest

    client_id = f"busy-{uuid.uuid4().hex[:8]}"
    _quota(bootstrap, "request_percentage", client_id, 0.01)
    raw = Raw(bootstrap, client_id=client_id)
    request = MetadataRequest(topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False)
    try:
        throttles = []
        while not any(throttles) and len(throttles) < 50:
            resp = raw.request(ApiKey.METADATA, 12, request)
            throttles.append(round(resp.throttle_time.total_seconds() * 1000))  # type: ignore[attr-defined]
        assert 0 < throttles[-1] <= 1000, throttles
        started = time.monotonic()
        raw.request(ApiKey.METADATA, 12, request)
        assert time.monotonic() - started >= 0.5 * throttles[-1] / 1000  # muted: read only after the throttle
    finally:
        raw.close()
    other = Raw(bootstrap, client_id=f"calm-{uuid.uuid4().hex[:8]}")
    try:
        assert other.request(ApiKey.METADATA, 12, request).throttle_time.total_seconds() == 0  # type: ignore[attr-defined]
    finally:
        other.close()


def test_describe_filters_are_refused_as_kafka_refuses_them(bootstrap: str) -> None:
    from kio.schema.describe_client_quotas.v1.request import ComponentData, DescribeClientQuotasRequest
    from kio.static.primitive import i8

    def describe(*components: tuple[str, int, str | None]) -> tuple[int, str | None]:
        resp = raw.request(ApiKey.DESCRIBE_CLIENT_QUOTAS, 1, DescribeClientQuotasRequest(
            components=tuple(ComponentData(entity_type=t, match_type=i8(m), match=n) for t, m, n in components),
            strict=False))
        return int(resp.error_code), resp.error_message  # type: ignore[attr-defined]

    raw = Raw(bootstrap)
    try:
        assert describe(("ip", 2, None), ("user", 1, None)) == (42, "Invalid entity filter component combination. "
                                                                   "IP filter component should not be used with user "
                                                                   "or clientId filter component.")
        assert describe(("user", 0, "a"), ("user", 2, None)) == (
            42, "Entity type user cannot appear more than once in the filter.")
        assert describe(("group", 0, "g")) == (35, "Unsupported entity type group")
        assert describe(("client-id", 0, None)) == (
            42, "Request specified MATCH_TYPE_EXACT, but set match string to null.")
        assert describe(("client-id", 1, "x")) == (
            42, "Request specified MATCH_TYPE_DEFAULT, but also specified a match string.")
        assert describe(("ip", 2, None)) == (0, "")  # the schema default, not null
    finally:
        raw.close()


def test_ip_quotas_are_validated_and_connections_over_the_rate_are_closed_unanswered(bootstrap: str) -> None:
    """connection_creation_rate=2 for 127.0.0.2 (a loopback address of its own, so nothing else is limited): of six
    connections opened at once two are served; the others are held unread and closed within a window."""
    from kio.schema.api_versions.v3.request import ApiVersionsRequest

    assert _alter(bootstrap, [(("ip", "127.0.0.2"),), (("ip", "127.0.0.2"), ("user", "u")),
                              (("ip", "no-such-host.invalid"),)], "connection_creation_rate", 2.5) == {
        "ip=127.0.0.2": (42, "connection_creation_rate cannot be a fractional value."),
        "ip=127.0.0.2,user=u": (42, "Invalid quota entity combination, IP entity shouldnot be combined with User or "
                                    "ClientId"),
        "ip=no-such-host.invalid": (42, "no-such-host.invalid is not a valid IP or resolvable host."),
    }
    assert configs(bootstrap, "--alter", "--add-config", "connection_creation_rate=2", "--entity-type", "ips",
                   "--entity-name", "127.0.0.2")[0] == 0
    assert configs(bootstrap, "--describe", "--entity-type", "ips", "--entity-name", "127.0.0.2") == (
        0, "Quota configs for ip '127.0.0.2' are connection_creation_rate=2.0")
    conns = [Raw(bootstrap, source_ip="127.0.0.2") for _ in range(6)]
    try:
        for c in conns:
            c.corr += 1
            c.send(encode_request(ApiKey.API_VERSIONS, 3, c.corr, ApiVersionsRequest(
                client_software_name="quota-test", client_software_version="1")))
        started = time.monotonic()
        answered = [c.recv_frame() is not None for c in conns]
        assert answered == [True, True, False, False, False, False]
        assert time.monotonic() - started < 5  # closed after at most a window (and Kafka's acceptor poll)
    finally:
        for c in conns:
            c.close()
    assert list(_alter(bootstrap, [(("ip", "127.0.0.2"),)], "connection_creation_rate", 1000).values()) == [(0, None)]


def test_connections_over_the_listener_rate_wait_to_be_accepted(bootstrap: str) -> None:
    """max.connection.creation.rate=20 on the listener, over windows of 1 s: of 30 connections opened at once (the
    kernel completes them; the broker takes them from its backlog) about 20 are taken at once and each further one
    waits ~50 ms; every one is served."""
    from kio.schema.api_versions.v3.request import ApiVersionsRequest

    # The connections of the tests before count too, and so does the time since the oldest of them (a rate over a
    # longer span allows more): let the two windows lapse first. A lapse of time is nothing one can poll for.
    time.sleep(2.1)
    conns = [Raw(bootstrap, source_ip="127.0.0.3") for _ in range(30)]
    started = time.monotonic()
    try:
        for c in conns:
            c.corr += 1
            c.send(encode_request(ApiKey.API_VERSIONS, 3, c.corr, ApiVersionsRequest(
                client_software_name="quota-test", client_software_version="1")))
        assert all(c.recv_frame() is not None for c in conns)
    finally:
        for c in conns:
            c.close()
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 5, elapsed  # unlimited, both brokers answer the 30 in well under 0.1 s
