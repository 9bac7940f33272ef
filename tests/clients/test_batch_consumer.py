"""loosely's batch consumer as a static group member, against loosely's broker and Apache Kafka side by side.

The rest of its behaviour against both brokers (what it builds, sharing a group with librdkafka, max.poll.interval.ms)
is tests/compat/test_views_fast_source.py."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from compat._support import Cluster, create_topic
from loosely.clients.batch_consumer import FENCED_INSTANCE_ID, BatchConsumer, FencedInstanceError


def produce(bootstrap: str, topic: str, n: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for _ in range(n):
        p.produce(topic, b"x", key=b"k")
    assert p.flush(30) == 0


def test_a_static_member_whose_commit_says_it_was_replaced_reads_no_more(cluster: Cluster, topic: str) -> None:
    """A JoinGroup with a static member's group.instance.id replaces it. Fetch does not check membership, so the
    replaced member reads on until the coordinator tells it, at its next Heartbeat, SyncGroup or OffsetCommit; an
    OffsetCommit answered FENCED_INSTANCE_ID must end its reading at once, as it ends the Java consumer's, rather than
    leave a second reader of the partition until the next heartbeat (100 s away here, so it cannot be what tells)."""
    b = cluster.bootstrap_servers
    create_topic(b, topic, 1)
    produce(b, topic, 5)
    group = f"g-{uuid.uuid4().hex[:8]}"
    c = BatchConsumer(b, session_timeout_ms=300_000, heartbeat_ms=100_000, instance_id="member-a")
    try:
        c.subscribe(group, [topic], dict.fromkeys, lambda tps: None)
        deadline = time.monotonic() + 30
        while c.position((topic, 0)) != 5:
            assert time.monotonic() < deadline, c.position((topic, 0))
            c.poll()
        other = Consumer({"bootstrap.servers": b, "group.id": group, "group.instance.id": "member-a",
                          "session.timeout.ms": 30_000, "enable.auto.commit": False})
        assigned = threading.Event()
        other.subscribe([topic], on_assign=lambda consumer, ps: assigned.set())
        deadline = time.monotonic() + 30
        while not assigned.is_set():
            assert time.monotonic() < deadline, "the other consumer never joined"
            other.poll(0.2)
        other.close()
        produce(b, topic, 3)  # what the replaced member must not read
        assert c.commit({(topic, 0): 5}) == FENCED_INSTANCE_ID
        with pytest.raises(FencedInstanceError, match="another member took instance id member-a"):
            c.poll()
    finally:
        c.close()
