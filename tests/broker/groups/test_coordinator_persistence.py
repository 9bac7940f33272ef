"""Committed offsets and groups survive a broker restart and a ``kill -9`` (loosely only: the Apache Kafka fixture is
shared by the session and is not restarted)."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from broker._brokers import ChildBroker, broker_on
from loosely.broker.groups.coordinator import group_coordinator
from loosely.testing import free_port


def setup_topic(bs: str, topic: str, partitions: int, n: int) -> None:
    a = AdminClient({"bootstrap.servers": bs})
    a.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    p = Producer({"bootstrap.servers": bs})
    for i in range(n):
        p.produce(topic, b"v%d" % i, partition=i % partitions)
    assert p.flush(30) == 0


def committed(bs: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bs, "group.id": group})
    try:
        return {
            tp.partition: tp.offset
            for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        }
    finally:
        c.close()


def commit(bs: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    c = Consumer({"bootstrap.servers": bs, "group.id": group})
    try:
        c.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    finally:
        c.close()


def test_offsets_and_groups_survive_a_clean_restart(tmp_path: Path) -> None:
    port = free_port()
    with broker_on(tmp_path, port) as b:
        bs = b.bootstrap_servers
        setup_topic(bs, "t", 3, 30)
        commit(bs, "standalone", {("t", 0): 4, ("t", 1): 7})
        c = Consumer(
            {
                "bootstrap.servers": bs,
                "group.id": "live",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 30_000,
            }
        )
        c.subscribe(["t"])
        got = 0
        deadline = time.monotonic() + 30
        while got < 30 and time.monotonic() < deadline:
            got += len([m for m in c.consume(30, timeout=0.5) if m.error() is None])
        c.commit(asynchronous=False)
        coord = group_coordinator(b.broker.ctx)
        assert coord is not None
        before = b.call(lambda: coord.group("live"))
        assert before is not None and len(before.members) == 1
    with broker_on(tmp_path, port) as b:
        bs = b.bootstrap_servers
        assert committed(bs, "standalone", "t", 3) == {0: 4, 1: 7, 2: -1001}
        coord = group_coordinator(b.broker.ctx)
        assert coord is not None
        after = b.call(lambda: coord.group("live"))
        assert after is not None
        assert (after.phase.value, after.generation, set(after.members)) == (
            "Stable",
            before.generation,
            set(before.members),
        )
        # The member that was in the group before the restart carries on without a rebalance.
        p = Producer({"bootstrap.servers": bs})
        for i in range(6):
            p.produce("t", b"after-%d" % i, partition=i % 3)
        assert p.flush(30) == 0
        more: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(more) < 6 and time.monotonic() < deadline:
            more += [m.value() or b"" for m in c.consume(6, timeout=0.5) if m.error() is None]
        assert sorted(more) == sorted(b"after-%d" % i for i in range(6))
        assert b.call(lambda: coord.group("live")).generation == before.generation
        c.close()


def test_offsets_survive_kill_9(tmp_path: Path) -> None:
    child = ChildBroker(tmp_path / "data", free_port()).start()
    bs = child.bootstrap_servers
    try:
        setup_topic(bs, "t", 2, 20)
        for i in range(1, 6):
            commit(bs, "g", {("t", 0): i, ("t", 1): 10 * i})
        child.kill()
        child.start()
        assert committed(bs, "g", "t", 2) == {0: 5, 1: 50}
    finally:
        child.kill()
