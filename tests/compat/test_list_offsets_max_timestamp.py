"""ListOffsets MAX_TIMESTAMP (-3) against loosely and Apache Kafka: an empty partition, plain records, and a
partition whose newest batch is a transaction marker (Kafka answers the marker's offset)."""

from __future__ import annotations

import time

from confluent_kafka import IsolationLevel, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from compat._support import Cluster, create_topic


def list_offset(bootstrap: str, topic: str, spec: OffsetSpec, *, committed: bool = False) -> tuple[int, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    level = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    futures = admin.list_offsets({TopicPartition(topic, 0): spec}, isolation_level=level, request_timeout=30)
    info = next(iter(futures.values())).result(30)
    return info.offset, info.timestamp


def max_timestamp(bootstrap: str, topic: str, *, committed: bool = False) -> tuple[int, int]:
    return list_offset(bootstrap, topic, OffsetSpec.max_timestamp(), committed=committed)


def wait_for_end_offset(bootstrap: str, topic: str, end: int) -> None:
    """Kafka writes transaction markers after EndTxn has answered; wait until the marker is in the log."""
    deadline = time.monotonic() + 30
    while list_offset(bootstrap, topic, OffsetSpec.latest())[0] < end:
        assert time.monotonic() < deadline, "the commit marker never reached the log"
        time.sleep(0.05)


def test_max_timestamp_on_empty_plain_and_transactional_partitions(cluster: Cluster, topic: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 1)
    assert max_timestamp(bs, topic) == (-1, -1)

    p = Producer({"bootstrap.servers": bs, "linger.ms": 0})
    for i, ts in enumerate([1_700_000_000_500, 1_700_000_000_900, 1_700_000_000_100]):
        p.produce(topic, b"%d" % i, partition=0, timestamp=ts)
        p.flush(30)
    # The largest timestamp, not the newest record.
    assert max_timestamp(bs, topic) == (1, 1_700_000_000_900)

    tx = Producer({"bootstrap.servers": bs, "transactional.id": f"tx-{topic}", "linger.ms": 0})
    tx.init_transactions(30)
    tx.begin_transaction()
    tx.produce(topic, b"in-tx", partition=0, timestamp=1_700_000_000_950)
    tx.commit_transaction(30)
    wait_for_end_offset(bs, topic, 5)
    # The commit marker (offset 4) carries the broker's clock, later than every record's timestamp.
    offset, ts = max_timestamp(bs, topic)
    assert offset == 4
    assert ts > 1_700_000_000_950


def test_read_committed_max_timestamp_stays_below_the_last_stable_offset(cluster: Cluster, topic: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 1)
    p = Producer({"bootstrap.servers": bs, "linger.ms": 0})
    p.produce(topic, b"plain", partition=0, timestamp=1_700_000_000_000)
    p.flush(30)
    tx = Producer({"bootstrap.servers": bs, "transactional.id": f"tx-{topic}", "linger.ms": 0})
    tx.init_transactions(30)
    tx.begin_transaction()
    tx.produce(topic, b"open", partition=0, timestamp=1_700_000_000_500)
    tx.flush(30)
    # The open transaction's record has the largest timestamp: read_uncommitted sees it, read_committed does not.
    assert max_timestamp(bs, topic) == (1, 1_700_000_000_500)
    assert max_timestamp(bs, topic, committed=True) == (-1, -1)
    assert list_offset(bs, topic, OffsetSpec.for_timestamp(1_700_000_000_100), committed=True) == (-1, -1)
    assert list_offset(bs, topic, OffsetSpec.for_timestamp(1_700_000_000_000), committed=True) == (0, 1_700_000_000_000)
    tx.abort_transaction(30)
