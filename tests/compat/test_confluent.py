"""confluent-kafka (librdkafka 2.x): produce, consume and administer, against loosely and Apache Kafka."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

from compat._support import Cluster, create_topic

# the everyday client's produce, consume and admin calls: checked against the newest Kafka release too
pytestmark = pytest.mark.newest_kafka


def consume_partition(
    bootstrap: str, topic: str, partition: int, n: int, start: int = 0
) -> list[tuple[int, bytes | None, bytes | None]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "assign-only", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, start)])
    out: list[tuple[int, bytes | None, bytes | None]] = []
    deadline = time.monotonic() + 30
    while len(out) < n and time.monotonic() < deadline:
        for m in c.consume(n - len(out), timeout=1):
            assert m.error() is None, m.error()
            out.append((m.offset(), m.key(), m.value()))
    c.close()
    return out


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_consume_each_codec(cluster: Cluster, topic: str, codec: str) -> None:
    create_topic(cluster.bootstrap_servers, topic, 2)
    # Idempotence keeps order across librdkafka retries under load; without it a retried batch may land later.
    p = Producer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "compression.type": codec,
            "linger.ms": 5,
            "enable.idempotence": True,
        }
    )
    for i in range(2000):
        p.produce(
            topic,
            value=b"value-%d" % i * 3,
            key=b"k%d" % i,
            partition=i % 2,
            headers=[("h", b"%d" % i), ("null", None)],
        )
    assert p.flush(30) == 0
    got = consume_partition(cluster.bootstrap_servers, topic, 1, 1000)
    assert [(o, k, v) for o, k, v in got] == [
        (j, b"k%d" % (2 * j + 1), b"value-%d" % (2 * j + 1) * 3) for j in range(1000)
    ]


def test_delivery_reports_carry_offsets(cluster: Cluster, topic: str) -> None:
    create_topic(cluster.bootstrap_servers, topic, 1)
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all"})
    offsets: list[int] = []
    for i in range(10):
        p.produce(topic, b"%d" % i, on_delivery=lambda err, msg: offsets.append(msg.offset()))
    p.flush(30)
    assert offsets == list(range(10))


def test_admin_topic_lifecycle(cluster: Cluster, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    admin.create_topics([NewTopic(topic, 2, 1, config={"retention.ms": "3600000", "cleanup.policy": "compact"})])[
        topic
    ].result(30)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    cfg = admin.describe_configs([res])[res].result(30)
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["cleanup.policy"].value == "compact"
    assert cfg["segment.bytes"].value == "1073741824"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    alter = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.APPEND),
        ],
    )
    admin.incremental_alter_configs([alter])[alter].result(30)
    # Kafka answers the alter once its controller has the change; the broker that answers DescribeConfigs applies
    # it from the metadata log a moment later (a read right after the alter can still see the old value)
    deadline = time.monotonic() + 10
    while (cfg := admin.describe_configs([res])[res].result(30))["retention.ms"].value != "7200000":
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert cfg["retention.ms"].value == "7200000"
    assert set(cfg["cleanup.policy"].value.split(",")) == {"compact", "delete"}
    admin.create_partitions([NewPartitions(topic, 5)])[topic].result(30)
    md = admin.list_topics(topic, timeout=10)
    assert len(md.topics[topic].partitions) == 5
    with pytest.raises(Exception, match=r"(?i)partition"):
        admin.create_partitions([NewPartitions(topic, 3)])[topic].result(30)
    admin.delete_topics([topic])[topic].result(30)
    deadline = time.monotonic() + 10
    while topic in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.2)
    assert topic not in admin.list_topics(timeout=10).topics


def test_invalid_config_and_replication_factor(cluster: Cluster, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    with pytest.raises(Exception) as e:
        admin.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "banana"})])[topic].result(30)
    assert e.value.args[0].name() == "INVALID_CONFIG"
    with pytest.raises(Exception) as e:
        admin.create_topics([NewTopic(topic + "x", 1, 3)])[topic + "x"].result(30)
    assert e.value.args[0].name() == "INVALID_REPLICATION_FACTOR"


def test_delete_records_and_list_offsets(cluster: Cluster, topic: str) -> None:
    create_topic(cluster.bootstrap_servers, topic, 1)
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    t0 = int(time.time() * 1000)
    for i in range(100):
        p.produce(topic, b"%d" % i, timestamp=t0 + i)
    p.flush(30)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    tp = TopicPartition(topic, 0, 40)
    res = admin.delete_records([tp])[tp].result(30)
    assert res.low_watermark == 40
    offs = admin.list_offsets(
        {
            TopicPartition(topic, 0): OffsetSpec.earliest(),
        }
    )
    assert offs[TopicPartition(topic, 0)].result(30).offset == 40
    assert (
        admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.latest()})[TopicPartition(topic, 0)].result(30).offset
        == 100
    )
    mx = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.max_timestamp()})[TopicPartition(topic, 0)].result(30)
    assert (mx.offset, mx.timestamp) == (99, t0 + 99)
    at = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.for_timestamp(t0 + 70)})[
        TopicPartition(topic, 0)
    ].result(30)
    assert at.offset == 70
    c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "x"})
    assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (40, 100)
    got = c.offsets_for_times([TopicPartition(topic, 0, t0 + 55)], timeout=10)
    assert got[0].offset == 55
    c.close()
    assert [o for o, _, _ in consume_partition(cluster.bootstrap_servers, topic, 0, 60, start=40)] == list(
        range(40, 100)
    )


def test_describe_cluster(cluster: Cluster) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    desc = admin.describe_cluster().result(30)
    assert len(desc.nodes) == 1
    assert desc.controller is not None
    assert desc.cluster_id
