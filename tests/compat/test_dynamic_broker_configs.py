"""Dynamic broker configs (KIP-226) side by side with Apache Kafka (4.1.1, or $LOOSELY_KAFKA_VERSION): ``kafka-configs
--entity-type brokers`` (Kafka's own ConfigCommand) and IncrementalAlterConfigs set the cluster-wide default and this
broker's value, and DescribeConfigs answers the same values and sources for the broker and for a topic without its
own override; a config Kafka cannot change at run time is refused with the same error; deleting falls back. Group
configs (``--entity-type groups``) are stored, described and checked alike, and a KIP-848 group's heartbeat interval
is the one its config sets.

Kafka applies a change a moment after it answers (its controller commits the record, then the broker reads it), so
the checks wait for DescribeConfigs to show it. Each broker is started for this module only: the cluster-wide
defaults changed here would reach every topic of a shared one."""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.describe_configs.v4.request import DescribeConfigsRequest, DescribeConfigsResource
from kio.static.primitive import i8

from broker._raw import Raw
from compat._configs import (
    APPEND,
    BROKER,
    DEFAULT,
    DELETE,
    DYNAMIC_BROKER,
    DYNAMIC_DEFAULT,
    GROUP,
    GROUP_CONFIG,
    INVALID_CONFIG,
    INVALID_REQUEST,
    SET,
    STATIC_BROKER,
    TOPIC,
    alter,
    describe,
    wait_for,
)
from compat._kafka_tools import kafka_class, kafka_command
from loosely.broker.server import BrokerThread
from loosely.protocol.messages import ApiKey
from loosely.testing import ApacheKafka, embedded_broker
from loosely.testing.apache_kafka import KAFKA_VERSION

# Group configs a new group lists at their defaults besides share.session.timeout.ms (docs/broker.md, "Apache Kafka
# releases"): Kafka 4.4 adds assignment, share and streams settings and dead-letter queues to 4.1's; loosely lists
# 4.4's.
GROUP_DEFAULTS_41 = {
    "share.auto.offset.reset", "share.heartbeat.interval.ms", "share.isolation.level", "share.record.lock.duration.ms",
    "share.session.timeout.ms", "streams.heartbeat.interval.ms", "streams.num.standby.replicas",
    "streams.session.timeout.ms"}
GROUP_DEFAULTS = {"4.4.0": GROUP_DEFAULTS_41 | {
    "consumer.assignment.interval.ms", "errors.deadletterqueue.copy.record.enable", "errors.deadletterqueue.topic.name",
    "share.assignment.interval.ms", "share.delivery.count.limit", "share.partition.max.record.locks",
    "share.renew.acknowledge.enable", "streams.assignment.interval.ms", "streams.assignor.name",
    "streams.initial.rebalance.delay.ms", "streams.rack.aware.assignment.tags"}}
LOOSELY_GROUP_DEFAULTS = GROUP_DEFAULTS["4.4.0"]


def release(request: pytest.FixtureRequest) -> str | None:
    """The Apache Kafka release under test, None for loosely."""
    return KAFKA_VERSION if request.node.callspec.params["bootstrap"] == "kafka" else None


def refused(request: pytest.FixtureRequest, names: str) -> str:
    """Kafka 4.1's DynamicBrokerConfig (Scala) names the refused configs as a Scala Set; Kafka 4.4's and loosely's
    as a list."""
    listed = f"Set({names})" if release(request) == "4.1.1" else f"[{names}]"
    return f"Cannot update these configs dynamically: {listed}"


def out_of_range(request: pytest.FixtureRequest, name: str, low: int, high: int, in_41: str) -> str:
    """Kafka 4.4 and loosely give a group config's range by value; Kafka 4.1 named the one bound's broker setting."""
    if release(request) == "4.1.1":
        return f"{name} must be {in_41}"
    return f"{name} must be in the range {low} to {high} inclusive."


@pytest.fixture(scope="module", params=["loosely", pytest.param("kafka", marks=pytest.mark.kafka)])
def bootstrap(
    request: pytest.FixtureRequest, jars_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "kafka":
        with ApacheKafka(nodes=1, base_dir=tmp_path_factory.mktemp("kafka-dyn"), jars_dir=jars_dir) as kafka:
            yield kafka.bootstrap_servers
    else:
        with embedded_broker(data_dir=str(tmp_path_factory.mktemp("loosely-dyn")), node_id=1) as b:
            yield b.bootstrap_servers


def configs(bootstrap: str, *args: str) -> tuple[int, str]:
    done = kafka_class(kafka_command("ConfigCommand"), "--bootstrap-server", bootstrap, *args)
    lines = (done.stdout + done.stderr).splitlines()
    return done.returncode, "\n".join(line for line in lines if not line.startswith("SLF4J:")).strip()


def new_topic(bootstrap: str) -> str:
    name = f"dyn-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the topic is made
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    return name


def test_default_and_per_broker_configs_reach_topics_with_kafkas_sources(bootstrap: str) -> None:
    topic = new_topic(bootstrap)
    assert configs(bootstrap, "--alter", "--entity-type", "brokers", "--entity-default",
                   "--add-config", "log.retention.ms=3600000")[0] == 0
    assert alter(bootstrap, "1", [("log.retention.ms", SET, "7200000"), ("log.segment.bytes", SET, "2000000")]) \
        == (0, None)
    wait_for(bootstrap, BROKER, "1", "log.retention.ms", "7200000", DYNAMIC_BROKER)
    wait_for(bootstrap, BROKER, "", "log.retention.ms", "3600000", DYNAMIC_DEFAULT)

    broker = describe(bootstrap, BROKER, "1", ("log.retention.ms", "log.segment.bytes", "node.id", "log.dirs"))
    assert broker["log.retention.ms"][:3] == ("7200000", DYNAMIC_BROKER, False)
    assert broker["log.retention.ms"][3][:2] == [DYNAMIC_BROKER, DYNAMIC_DEFAULT]
    assert broker["log.segment.bytes"][:3] == ("2000000", DYNAMIC_BROKER, False)
    assert broker["node.id"][:3] == ("1", STATIC_BROKER, True)
    assert broker["log.dirs"][1:3] == (STATIC_BROKER, True)
    default = describe(bootstrap, BROKER, "", ("log.retention.ms", "log.segment.bytes"))
    assert default == {"log.retention.ms": ("3600000", DYNAMIC_DEFAULT, False, [DYNAMIC_DEFAULT])}
    rc, out = configs(bootstrap, "--describe", "--entity-type", "brokers", "--entity-default")
    assert rc == 0 and "log.retention.ms=3600000 sensitive=false" in out, out

    # A topic without an override takes the broker's value and says where it comes from.
    seen = describe(bootstrap, TOPIC, topic, ("retention.ms", "segment.bytes"))
    assert seen["retention.ms"][:2] == ("7200000", DYNAMIC_BROKER)
    assert seen["segment.bytes"][:2] == ("2000000", DYNAMIC_BROKER)

    # Deleting falls back: this broker's value to the default, the default to Kafka's own.
    assert configs(bootstrap, "--alter", "--entity-type", "brokers", "--entity-name", "1",
                   "--delete-config", "log.retention.ms,log.segment.bytes")[0] == 0
    wait_for(bootstrap, TOPIC, topic, "retention.ms", "3600000", DYNAMIC_DEFAULT)
    wait_for(bootstrap, TOPIC, topic, "segment.bytes", "1073741824", DEFAULT)
    assert alter(bootstrap, "", [("log.retention.ms", DELETE, None)]) == (0, None)
    wait_for(bootstrap, TOPIC, topic, "retention.ms", "604800000", DEFAULT)
    wait_for(bootstrap, BROKER, "", "log.retention.ms", None, 0)


def test_configs_kafka_cannot_change_at_run_time_are_refused_alike(bootstrap: str,
                                                                   request: pytest.FixtureRequest) -> None:
    rc, out = configs(bootstrap, "--alter", "--entity-type", "brokers", "--entity-default",
                      "--add-config", "log.dirs=/elsewhere")
    assert rc != 0 and refused(request, "log.dirs") in out, out
    # The whole resource is refused, the dynamic name beside it too.
    assert alter(bootstrap, "1", [("node.id", SET, "7"), ("log.retention.ms", SET, "5")]) \
        == (INVALID_REQUEST, refused(request, "node.id"))
    assert alter(bootstrap, "7", [("log.retention.ms", SET, "5")]) \
        == (INVALID_REQUEST, "Unexpected broker id, expected 1, but received 7")
    assert alter(bootstrap, "x", [("log.retention.ms", SET, "5")]) \
        == (INVALID_REQUEST, "Node id must be an integer, but it is: x")
    code, message = alter(bootstrap, "", [("log.retention.ms", SET, "abc")])
    assert code == INVALID_REQUEST and message is not None
    assert message.startswith("Invalid value abc for configuration log.retention.ms: "), message
    # validate_only checks and changes nothing.
    assert alter(bootstrap, "", [("log.retention.ms", SET, "5")], validate_only=True) == (0, None)
    time.sleep(0.5)  # Kafka would have applied a change by now (the waits above take ~0.1 s)
    assert "log.retention.ms" not in describe(bootstrap, BROKER, "", ("log.retention.ms",))


def test_the_cleaner_pause_and_producer_expiry_change_at_run_time_alike(bootstrap: str) -> None:
    assert alter(bootstrap, "", [("producer.id.expiration.ms", SET, "0")]) == (
        INVALID_REQUEST, "Invalid value 0 for configuration producer.id.expiration.ms: Value must be at least 1")
    assert alter(bootstrap, "", [("log.cleaner.backoff.ms", SET, "soon")]) == (
        INVALID_REQUEST, "Invalid value soon for configuration log.cleaner.backoff.ms: Not a number of type LONG")
    assert alter(bootstrap, "", [("log.cleaner.backoff.ms", SET, "700"),
                                 ("producer.id.expiration.ms", SET, "90000")]) == (0, None)
    wait_for(bootstrap, BROKER, "", "producer.id.expiration.ms", "90000", DYNAMIC_DEFAULT)
    assert describe(bootstrap, BROKER, "", ("log.cleaner.backoff.ms",))["log.cleaner.backoff.ms"][:2] == (
        "700", DYNAMIC_DEFAULT)
    assert alter(bootstrap, "", [("log.cleaner.backoff.ms", DELETE, None),
                                 ("producer.id.expiration.ms", DELETE, None)]) == (0, None)  # back to the defaults
    wait_for(bootstrap, BROKER, "", "producer.id.expiration.ms", None, 0)  # the default resource lists only its own


def test_an_unknown_topic_is_described_alike(bootstrap: str) -> None:
    raw = Raw(bootstrap)
    try:
        resp = raw.request(ApiKey.DESCRIBE_CONFIGS, 4, DescribeConfigsRequest(
            resources=(DescribeConfigsResource(resource_type=i8(TOPIC), resource_name=f"none-{uuid.uuid4().hex[:8]}",
                                               configuration_keys=None),),
            include_synonyms=False, include_documentation=False))
    finally:
        raw.close()
    (result,) = resp.results  # type: ignore[attr-defined]
    assert (result.error_code, result.error_message, result.configs) == (3, "", ())  # UNKNOWN_TOPIC_OR_PARTITION


def test_settings_left_at_their_default_say_so_alike(bootstrap: str) -> None:
    """Neither broker was given these at start: DEFAULT_CONFIG (5) with Kafka's value, read-only; node.id was
    given: STATIC_BROKER_CONFIG (4)."""
    keys = ("auto.create.topics.enable", "socket.request.max.bytes", "connections.max.idle.ms",
            "socket.listen.backlog.size", "log.retention.check.interval.ms", "fetch.max.bytes",
            "transaction.max.timeout.ms", "group.min.session.timeout.ms", "group.max.session.timeout.ms",
            "group.consumer.session.timeout.ms", "group.consumer.heartbeat.interval.ms", "node.id")
    seen = describe(bootstrap, BROKER, "1", keys)
    assert {k: seen[k][:3] for k in keys} == {
        "auto.create.topics.enable": ("true", DEFAULT, True),
        "socket.request.max.bytes": ("104857600", DEFAULT, True),
        "connections.max.idle.ms": ("600000", DEFAULT, True),
        "socket.listen.backlog.size": ("50", DEFAULT, True),
        "log.retention.check.interval.ms": ("300000", DEFAULT, True),
        "fetch.max.bytes": ("57671680", DEFAULT, True),
        "transaction.max.timeout.ms": ("900000", DEFAULT, True),
        "group.min.session.timeout.ms": ("6000", DEFAULT, True),
        "group.max.session.timeout.ms": ("1800000", DEFAULT, True),
        "group.consumer.session.timeout.ms": ("45000", DEFAULT, True),
        "group.consumer.heartbeat.interval.ms": ("5000", DEFAULT, True),
        "node.id": ("1", STATIC_BROKER, True),
    }


def _answered(bootstrap: str, source_ip: str) -> Raw | None:
    """A connection from ``source_ip`` that the broker answers (ApiVersions), or None when it closes it."""
    from kio.schema.api_versions.v0.request import ApiVersionsRequest

    raw = Raw(bootstrap, source_ip=source_ip)
    try:
        raw.request(ApiKey.API_VERSIONS, 0, ApiVersionsRequest())
    except (AssertionError, OSError):
        raw.close()
        return None
    return raw


def test_connection_limits_change_at_run_time_alike(bootstrap: str) -> None:
    """max.connections.per.ip.overrides set dynamically holds new connections from that address at once, and a
    raised one lets them in; connections already open stay. From 127.0.0.2, so nothing else is limited."""
    assert configs(bootstrap, "--alter", "--entity-type", "brokers", "--entity-default",
                   "--add-config", "max.connections.per.ip.overrides=[127.0.0.2:2]")[0] == 0
    wait_for(bootstrap, BROKER, "", "max.connections.per.ip.overrides", "127.0.0.2:2", DYNAMIC_DEFAULT)
    seen = describe(bootstrap, BROKER, "1", ("max.connections.per.ip.overrides",))
    assert seen["max.connections.per.ip.overrides"][:3] == ("127.0.0.2:2", DYNAMIC_DEFAULT, False)
    held = [_answered(bootstrap, "127.0.0.2") for _ in range(3)]
    try:
        assert [r is not None for r in held] == [True, True, False]
        assert alter(bootstrap, "", [("max.connections.per.ip.overrides", SET, "127.0.0.2:3")]) == (0, None)
        wait_for(bootstrap, BROKER, "", "max.connections.per.ip.overrides", "127.0.0.2:3", DYNAMIC_DEFAULT)
        deadline = time.monotonic() + 10  # Kafka reconfigures its acceptors a moment after DescribeConfigs shows it
        while (third := _answered(bootstrap, "127.0.0.2")) is None:
            assert time.monotonic() < deadline, "the raised limit never let a third connection in"
            time.sleep(0.1)
        held.append(third)
        assert _answered(bootstrap, "127.0.0.2") is None  # the fourth is over the new limit
    finally:
        for r in held:
            if r is not None:
                r.close()
    for name, value in (("max.connections", "-1"), ("max.connection.creation.rate", "many")):
        code, message = alter(bootstrap, "", [(name, SET, value)])
        assert code == INVALID_REQUEST and message is not None
        assert message.startswith(f"Invalid value {value} for configuration {name}: "), message
    assert alter(bootstrap, "", [("max.connections.per.ip.overrides", DELETE, None)]) == (0, None)
    wait_for(bootstrap, BROKER, "", "max.connections.per.ip.overrides", None, 0)


def test_group_configs_are_stored_checked_and_used_alike(bootstrap: str, request: pytest.FixtureRequest) -> None:
    from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest
    from kio.schema.find_coordinator.v4.request import FindCoordinatorRequest

    group, topic = f"g-{uuid.uuid4().hex[:8]}", new_topic(bootstrap)
    assert configs(bootstrap, "--alter", "--entity-type", "groups", "--entity-name", group, "--add-config",
                   "consumer.session.timeout.ms=50000,consumer.heartbeat.interval.ms=6000")[0] == 0
    wait_for(bootstrap, GROUP, group, "consumer.heartbeat.interval.ms", "6000", GROUP_CONFIG)
    seen = describe(bootstrap, GROUP, group, ())
    # Kafka 4.4 lists the broker's default (group.consumer.session.timeout.ms) after the group's own value
    synonyms = [GROUP_CONFIG] if release(request) == "4.1.1" else [GROUP_CONFIG, DEFAULT]
    assert seen["consumer.session.timeout.ms"] == ("50000", GROUP_CONFIG, False, synonyms)
    assert seen["share.session.timeout.ms"] == ("45000", DEFAULT, False, [DEFAULT])
    kafka = release(request)
    defaults = LOOSELY_GROUP_DEFAULTS if kafka is None else GROUP_DEFAULTS.get(kafka, GROUP_DEFAULTS_41)
    assert {n for n, v in seen.items() if v[1] == DEFAULT} == defaults

    assert alter(bootstrap, group, [("consumer.session.timeout.ms", SET, "5")], rtype=GROUP) == (
        INVALID_CONFIG, out_of_range(request, "consumer.session.timeout.ms", 45000, 60000, "greater than or equal to "
                                     "group.consumer.min.session.timeout.ms"))
    assert alter(bootstrap, group, [("consumer.heartbeat.interval.ms", SET, "99999")], rtype=GROUP) == (
        INVALID_CONFIG, out_of_range(request, "consumer.heartbeat.interval.ms", 5000, 15000, "less than or equal to "
                                     "group.consumer.max.heartbeat.interval.ms"))
    assert alter(bootstrap, group, [("no.such.config", SET, "1")], rtype=GROUP) == (
        INVALID_CONFIG, "Unknown group config name: no.such.config")
    assert alter(bootstrap, group, [("consumer.session.timeout.ms", APPEND, "1")], rtype=GROUP) == (
        INVALID_CONFIG, "Can't APPEND to key consumer.session.timeout.ms because its type is not LIST.")

    # The KIP-848 coordinator tells a joining member the group's own heartbeat interval.
    raw = Raw(bootstrap)
    deadline = time.monotonic() + 30
    try:
        # Kafka creates __consumer_offsets on the first FindCoordinator and answers "not coordinator" meanwhile.
        raw.request(ApiKey.FIND_COORDINATOR, 4, FindCoordinatorRequest(key_type=i8(0), coordinator_keys=(group,)))
        while (r := raw.request(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, ConsumerGroupHeartbeatRequest(
                group_id=group, member_id=str(uuid.uuid4()), member_epoch=0, rebalance_timeout=datetime.timedelta(
                    seconds=30), subscribed_topic_names=(topic,), topic_partitions=()))).error_code in (14, 15, 16):
            assert time.monotonic() < deadline, r
            time.sleep(0.1)
    finally:
        raw.close()
    assert (r.error_code, r.heartbeat_interval) == (0, datetime.timedelta(seconds=6))  # type: ignore[attr-defined]

    assert configs(bootstrap, "--alter", "--entity-type", "groups", "--entity-name", group,
                   "--delete-config", "consumer.heartbeat.interval.ms")[0] == 0
    wait_for(bootstrap, GROUP, group, "consumer.heartbeat.interval.ms", "5000", DEFAULT)


def test_dynamic_retention_applies_at_once_and_survives_a_restart(tmp_path: Path) -> None:
    """loosely only: the storage engine deletes segments by the new default without a restart, and the default (and
    a group's config and a connection limit) is still there and in force after one."""
    settings = {"log.retention.check.interval.ms": "50"}
    with embedded_broker(data_dir=str(tmp_path), settings=settings) as b:
        topic = f"dyn-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": b.bootstrap_servers})
        admin.create_topics([NewTopic(topic, 1, 1, config={"segment.bytes": "300"})])[topic].result(30)
        p = Producer({"bootstrap.servers": b.bootstrap_servers, "linger.ms": 0})
        for i in range(20):
            p.produce(topic, b"x" * 100, key=str(i).encode())
            p.flush(10)
        c = Consumer({"bootstrap.servers": b.bootstrap_servers, "group.id": "unused"})
        try:
            tp = TopicPartition(topic, 0)
            assert c.get_watermark_offsets(tp, timeout=10) == (0, 20)
            assert alter(b.bootstrap_servers, "", [("log.retention.ms", SET, "1")]) == (0, None)
            assert alter(b.bootstrap_servers, "g", [("consumer.session.timeout.ms", SET, "50000")], rtype=GROUP) \
                == (0, None)
            assert alter(b.bootstrap_servers, "1", [("max.connections.per.ip.overrides", SET, "127.0.0.2:1")]) \
                == (0, None)
            deadline = time.monotonic() + 10
            while (low := c.get_watermark_offsets(tp, timeout=10)[0]) < 18:  # the active segment stays
                assert time.monotonic() < deadline, f"retention never followed the dynamic default: start {low}"
                time.sleep(0.05)
        finally:
            c.close()
    with embedded_broker(data_dir=str(tmp_path), settings=settings) as b:
        assert describe(b.bootstrap_servers, BROKER, "", ("log.retention.ms",)) \
            == {"log.retention.ms": ("1", DYNAMIC_DEFAULT, False, [DYNAMIC_DEFAULT])}
        assert describe(b.bootstrap_servers, TOPIC, topic, ("retention.ms",))["retention.ms"][:2] \
            == ("1", DYNAMIC_DEFAULT)
        assert describe(b.bootstrap_servers, GROUP, "g", ("consumer.session.timeout.ms",)) \
            == {"consumer.session.timeout.ms": ("50000", GROUP_CONFIG, False, [GROUP_CONFIG, DEFAULT])}
        first = _answered(b.bootstrap_servers, "127.0.0.2")  # the restarted broker applies the stored limit
        assert first is not None and _answered(b.bootstrap_servers, "127.0.0.2") is None
        first.close()


def test_a_dynamic_producer_expiry_and_cleaner_pause_take_effect_and_survive_a_restart(tmp_path: Path) -> None:
    """loosely only: an idempotent producer's state is forgotten by the next expiry pass under the new
    producer.id.expiration.ms; a compacted topic is cleaned within the new log.cleaner.backoff.ms, not the 15 s
    default; both are in force again after a restart."""
    topic = f"dyn-{uuid.uuid4().hex[:8]}"

    def cleaned_within(b: BrokerThread, seconds: float) -> None:
        p = Producer({"bootstrap.servers": b.bootstrap_servers, "linger.ms": 0, "enable.idempotence": True})
        for i in range(30):
            p.produce(topic, b"v%d" % i, key=b"k%d" % (i % 3))
            p.flush(10)
        mgr = b.broker.ctx.producer_state
        assert mgr is not None and b.call(lambda: len(mgr.producers(topic, 0))) >= 1  # type: ignore[attr-defined]
        time.sleep(0.01)  # the producer's last write is older than the 1 ms expiry now
        assert b.call(lambda: mgr.expire(b.broker.clock.now_ms())) >= 1  # type: ignore[attr-defined]
        assert b.call(lambda: mgr.producers(topic, 0)) == []  # type: ignore[attr-defined]
        c = Consumer({"bootstrap.servers": b.bootstrap_servers, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        deadline = time.monotonic() + seconds
        try:
            while True:
                c.assign([TopicPartition(topic, 0, 0)])
                values = []
                while (m := c.poll(1)) is not None:
                    values.append(m.value())
                if len(values) < 30:  # compacted: the older values of each key are gone (30 were just written)
                    return
                assert time.monotonic() < deadline, "the cleaner did not run within its new pause"
        finally:
            c.close()

    with embedded_broker(data_dir=str(tmp_path)) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap_servers})
        admin.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "compact", "segment.bytes": "400",
                                                           "min.cleanable.dirty.ratio": "0.01"})])[topic].result(30)
        assert alter(b.bootstrap_servers, "1", [("log.cleaner.backoff.ms", SET, "100"),
                                                ("producer.id.expiration.ms", SET, "1")]) == (0, None)
        cleaned_within(b, 10)
    with embedded_broker(data_dir=str(tmp_path)) as b:
        cleaned_within(b, 10)
