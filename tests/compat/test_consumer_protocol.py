"""The KIP-848 consumer group protocol (``group.protocol=consumer``, ConsumerGroupHeartbeat) with librdkafka and the
Java client, against loosely and Apache Kafka 4.1 (offset commit epochs: Kafka 4.4, whose rules they are)."""

from __future__ import annotations

import datetime
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, Producer
from confluent_kafka.admin import AdminClient
from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest
from kio.schema.consumer_group_heartbeat.v1.request import TopicPartitions as CghTopicPartitions
from kio.schema.find_coordinator.v4.request import FindCoordinatorRequest
from kio.schema.offset_commit.v9 import request as oc
from kio.static.primitive import i8, i32, i64

from broker._raw import Raw
from compat._java import run_java
from compat._procs import wait_until
from compat._support import Cluster, create_topic
from loosely.protocol.messages import ApiKey
from loosely.testing.apache_kafka import KAFKA_VERSION_NEWEST

STALE_MEMBER_EPOCH = 113


def test_members_share_partitions_and_a_leaving_member_hands_them_over(cluster: Cluster, topic: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 4)
    group = f"g-{topic}"
    owned: dict[str, set[int]] = {"a": set(), "b": set()}
    overlaps: list[set[int]] = []

    def consumer(name: str) -> Consumer:
        def assigned(_c: Consumer, ps: list[object]) -> None:
            owned[name] |= {p.partition for p in ps}  # type: ignore[attr-defined]
            other = owned["b" if name == "a" else "a"]
            if owned[name] & other:
                overlaps.append(owned[name] & other)

        def revoked(_c: Consumer, ps: list[object]) -> None:
            owned[name] -= {p.partition for p in ps}  # type: ignore[attr-defined]

        c = Consumer(
            {
                "bootstrap.servers": bs,
                "group.id": group,
                "group.protocol": "consumer",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        c.subscribe([topic], on_assign=assigned, on_revoke=revoked)
        return c

    a = consumer("a")
    wait_until(lambda: a.poll(0.1) is None and owned["a"] == {0, 1, 2, 3}, 60, "the first member to get everything")
    b = consumer("b")
    wait_until(
        lambda: (a.poll(0.1), b.poll(0.1)) and len(owned["a"]) == 2 and len(owned["b"]) == 2,
        60,
        "the partitions to be shared two and two",
    )
    assert not overlaps, f"a partition was assigned to both members at once: {overlaps}"
    admin = AdminClient({"bootstrap.servers": bs})
    wait_until(
        lambda: (
            (a.poll(0.1), b.poll(0.1))
            and admin.describe_consumer_groups([group])[group].result(30).state == ConsumerGroupState.STABLE
        ),
        30,
        "the group to be stable",
    )
    d = admin.describe_consumer_groups([group])[group].result(30)
    assert sorted(len(m.assignment.topic_partitions) for m in d.members) == [2, 2]
    a.close()
    wait_until(lambda: b.poll(0.1) is None and owned["b"] == {0, 1, 2, 3}, 60, "the remaining member to get all")
    # Consumption works on the new protocol too.
    p = Producer({"bootstrap.servers": bs})
    for i in range(8):
        p.produce(topic, b"v%d" % i, partition=i % 4)
    assert p.flush(30) == 0
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < 8 and time.monotonic() < deadline:
        m = b.poll(0.2)
        if m is not None and m.error() is None:
            got.append(m.value() or b"")
    b.close()
    assert sorted(got) == sorted(b"v%d" % i for i in range(8))


def test_java_consumer_on_the_new_protocol_commits_and_resumes(cluster: Cluster, topic: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 3)
    p = Producer({"bootstrap.servers": bs})
    for i in range(30):
        p.produce(topic, b"v%d" % i, partition=i % 3)
    assert p.flush(30) == 0
    group = f"g-{topic}"
    rows = []
    for n in ("10", "20"):
        r = run_java("interop/java-clients", "GroupsProbe", "group-consume", bs, topic, group, n, "consumer")
        assert r.returncode == 0, r.stderr[-3000:]
        rows += [tuple(map(int, line.split()[:2])) for line in r.stdout.splitlines()]
    assert sorted(rows) == sorted((i % 3, i // 3) for i in range(30)), "read twice or skipped across the restart"
    r = run_java("interop/java-clients", "GroupsProbe", "committed", bs, topic, group, "3")
    assert r.stdout.split() == ["0", "10", "1", "10", "2", "10"]


def test_a_heartbeat_past_epoch_zero_for_an_unknown_group_is_refused_and_creates_nothing(cluster: Cluster) -> None:
    """Only a join (member epoch 0) may create a group: a stray heartbeat from a member of a group the coordinator
    does not know is refused the same way on both brokers, and no empty group is left behind."""
    import datetime
    import uuid

    from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest
    from kio.schema.find_coordinator.v4.request import FindCoordinatorRequest
    from kio.static.primitive import i8

    from broker._raw import Raw
    from loosely.protocol.messages import ApiKey

    group = f"ghost-{uuid.uuid4().hex[:8]}"
    raw = Raw(cluster.bootstrap_servers)
    try:
        raw.request(ApiKey.FIND_COORDINATOR, 4, FindCoordinatorRequest(key_type=i8(0), coordinator_keys=(group,)))
        deadline = time.monotonic() + 30
        while (r := raw.request(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, ConsumerGroupHeartbeatRequest(
                group_id=group, member_id=str(uuid.uuid4()), member_epoch=5, rebalance_timeout=datetime.timedelta(
                    seconds=30), subscribed_topic_names=("t",), topic_partitions=()))).error_code in (14, 15, 16):
            assert time.monotonic() < deadline, r  # Kafka answers "not coordinator" until __consumer_offsets exists
            time.sleep(0.1)
    finally:
        raw.close()
    assert (r.error_code, r.error_message, r.member_epoch) == (  # type: ignore[attr-defined]
        69, f"Consumer group {group} not found.", 0), r  # GROUP_ID_NOT_FOUND
    groups = AdminClient({"bootstrap.servers": cluster.bootstrap_servers}).list_consumer_groups().result(30)
    assert group not in {g.group_id for g in groups.valid}


@pytest.mark.parametrize("cluster", ["loosely", f"kafka-{KAFKA_VERSION_NEWEST}"], indirect=True)
def test_an_older_epoch_commits_only_what_the_member_had_at_that_epoch(cluster: Cluster) -> None:
    """Kafka 4.4's offset commit check for a consumer-protocol member (Kafka 4.1 takes only the current epoch): the
    current epoch commits, a newer one is STALE_MEMBER_EPOCH, and an older one commits a partition only if it was
    assigned to the member at that epoch or before: here the partition it kept when a second member came."""
    group, topic = f"ep-{uuid.uuid4().hex[:8]}", f"ep-{uuid.uuid4().hex[:8]}"
    create_topic(cluster.bootstrap_servers, topic, 2)
    raw = Raw(cluster.bootstrap_servers)

    def beat(member: str, epoch: int, owned: tuple[int, ...] | None) -> Any:
        deadline = time.monotonic() + 30
        while True:
            r: Any = raw.request(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, ConsumerGroupHeartbeatRequest(
                group_id=group, member_id=member, member_epoch=i32(epoch),
                rebalance_timeout=datetime.timedelta(milliseconds=30_000 if epoch == 0 else -1),
                subscribed_topic_names=(topic,) if epoch == 0 else None, topic_partitions=None if owned is None else (
                    (CghTopicPartitions(topic_id=topic_id[0], partitions=tuple(i32(p) for p in owned)),)
                    if owned else ())))
            if r.error_code not in (14, 15, 16) or time.monotonic() > deadline:
                assert r.error_code == 0, r
                return r
            time.sleep(0.1)

    def commit(member: str, epoch: int, *partitions: int) -> set[int]:
        r: Any = raw.request(ApiKey.OFFSET_COMMIT, 9, oc.OffsetCommitRequest(
            group_id=group, generation_id_or_member_epoch=i32(epoch), member_id=member, group_instance_id=None,
            topics=(oc.OffsetCommitRequestTopic(name=topic, partitions=tuple(oc.OffsetCommitRequestPartition(
                partition_index=i32(p), committed_offset=i64(0), committed_metadata="") for p in partitions)),)))
        return {p.error_code for t in r.topics for p in t.partitions}

    def until(member: str, epoch: int, owned: tuple[int, ...], done: Any) -> Any:
        """Heartbeats (every 0.2 s) until ``done(response)``: Kafka may hold an assignment back a moment."""
        deadline = time.monotonic() + 30
        while not done(r := beat(member, epoch, owned)):
            assert time.monotonic() < deadline, r
            time.sleep(0.2)
        return r

    topic_id: list[uuid.UUID] = []
    try:
        raw.request(ApiKey.FIND_COORDINATOR, 4, FindCoordinatorRequest(key_type=i8(0), coordinator_keys=(group,)))
        m1, m2 = str(uuid.uuid4()), str(uuid.uuid4())
        r1 = beat(m1, 0, ())
        if not r1.assignment or not r1.assignment.topic_partitions:
            r1 = until(m1, r1.member_epoch, (), lambda r: r.assignment and r.assignment.topic_partitions)
        topic_id.append(r1.assignment.topic_partitions[0].topic_id)
        assert sorted(r1.assignment.topic_partitions[0].partitions) == [0, 1], r1
        first = r1.member_epoch
        assert commit(m1, first, 0, 1) == {0}
        assert commit(m1, first + 1, 0) == {STALE_MEMBER_EPOCH}
        assert commit(m1, first - 1, 0) == {STALE_MEMBER_EPOCH}  # both partitions came at ``first``
        r2 = beat(m2, 0, ())
        # m1 is told to give up one partition, gives it up, and moves to the new epoch keeping the other
        r1 = until(m1, first, (0, 1), lambda r: r.assignment is not None and len(r.assignment.topic_partitions[
            0].partitions if r.assignment.topic_partitions else ()) == 1)
        kept = r1.assignment.topic_partitions[0].partitions[0]
        r1 = until(m1, r1.member_epoch, (kept,), lambda r: r.member_epoch > first)
        now, other = r1.member_epoch, 1 - kept
        assert commit(m1, now, kept) == {0}
        assert commit(m1, first, kept) == {0}  # kept: assigned at ``first``
        assert commit(m1, first, kept, other) == {STALE_MEMBER_EPOCH}  # given up: no longer m1's
        assert commit(m1, now + 1, kept) == {STALE_MEMBER_EPOCH}
        beat(m2, -1, None)
        beat(m1, -1, None)
        assert r2.error_code == 0
    finally:
        raw.close()
