"""Consumer groups and committed offsets with real clients, against loosely and Apache Kafka.

kcat's balanced consumers (librdkafka 2.0.2: JoinGroup v5 with the MEMBER_ID_REQUIRED round trip), confluent-kafka,
aiokafka and the Java KafkaConsumer with default settings; Kafka's own decoder reading ``__consumer_offsets``.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata
from aiokafka.structs import TopicPartition as AioTP
from confluent_kafka import Consumer, ConsumerGroupState, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.error import KafkaError
from kafka import TopicPartition as KpTP
from kafka.admin import KafkaAdminClient

from compat._java import run_java
from compat._procs import Proc, wait_until
from compat._support import Cluster, create_topic

ASSIGNED = re.compile(r"rebalanced \(memberid [^)]*\): (assigned|revoked): (.*)$")


def produce(bootstrap: str, topic: str, values: list[tuple[int, bytes]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for partition, value in values:
        p.produce(topic, value, partition=partition)
    assert p.flush(30) == 0


def kcat_assignment(proc: Proc) -> set[int]:
    """The partitions a kcat -G consumer holds now, from its rebalance messages."""
    current: set[int] = set()
    for line in proc.err:
        m = ASSIGNED.search(line)
        if m is None:
            continue
        parts = {int(p) for p in re.findall(r"\[(\d+)\]", m.group(2))}
        current = parts if m.group(1) == "assigned" else set()
    return current


def kcat_seen(proc: Proc) -> list[tuple[int, int, str]]:
    out = []
    for line in proc.out:
        p, o, v = line.split(" ", 2)
        out.append((int(p), int(o), v))
    return out


def test_kcat_balanced_consumers_share_partitions_and_take_over_from_a_killed_one(cluster: Cluster, topic: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 6)
    group = f"g-{topic}"
    args = ["kcat", "-u", "-b", bs, "-G", group, "-X", "session.timeout.ms=6000", "-X", "auto.offset.reset=earliest"]
    args += ["-X", "auto.commit.interval.ms=500", "-f", "%p %o %s\\n", topic]
    procs = [Proc(args) for _ in range(3)]
    try:
        wait_until(
            lambda: (
                [len(kcat_assignment(p)) for p in procs] == [2, 2, 2]
                and set().union(*(kcat_assignment(p) for p in procs)) == set(range(6))
            ),
            60,
            "three consumers with two partitions each",
        )
        owners = {part: i for i, p in enumerate(procs) for part in kcat_assignment(p)}
        first = [(i % 6, b"a%d" % i) for i in range(60)]
        produce(bs, topic, first)
        wait_until(lambda: sum(len(kcat_seen(p)) for p in procs) >= 60, 30, "the first 60 records")
        for i, p in enumerate(procs):
            for part, _, value in kcat_seen(p):
                assert owners[part] == i, f"{value} of partition {part} went to a consumer that does not own it"
        assert sorted(v for p in procs for _, _, v in kcat_seen(p)) == sorted(v.decode() for _, v in first)

        procs[0].kill()  # no LeaveGroup: the group must notice the missing heartbeats
        survivors = procs[1:]
        wait_until(
            lambda: (
                [len(kcat_assignment(p)) for p in survivors] == [3, 3]
                and set().union(*(kcat_assignment(p) for p in survivors)) == set(range(6))
            ),
            60,
            "the survivors to take over the killed consumer's partitions",
        )
        second = [(i % 6, b"b%d" % i) for i in range(60)]
        produce(bs, topic, second)
        wanted = {v.decode() for _, v in second}
        wait_until(lambda: wanted <= {v for p in survivors for _, _, v in kcat_seen(p)}, 30, "the second 60 records")
    finally:
        for p in procs:
            p.stop()


def consume_some(c: Consumer, n: int, timeout: float = 30) -> list[tuple[int, int, bytes]]:
    out: list[tuple[int, int, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for m in c.consume(n - len(out), timeout=0.5):
            assert m.error() is None, m.error()
            out.append((m.partition(), m.offset(), m.value() or b""))
    return out


def commit_positions(c: Consumer, seen: list[tuple[int, int, bytes]], topic: str) -> None:
    last: dict[int, int] = {}
    for p, o, _ in seen:
        last[p] = max(last.get(p, -1), o)
    c.commit(offsets=[TopicPartition(topic, p, o + 1) for p, o in last.items()], asynchronous=False)


@pytest.mark.newest_kafka
def test_confluent_consumer_restart_resumes_from_the_committed_offsets(cluster: Cluster, topic: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 3)
    produce(bs, topic, [(i % 3, b"v%d" % i) for i in range(90)])
    conf = {
        "bootstrap.servers": bs,
        "group.id": f"g-{topic}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    c = Consumer(conf)
    c.subscribe([topic])
    first = consume_some(c, 40)
    assert len(first) == 40
    commit_positions(c, first, topic)
    c.close()
    c = Consumer(conf)
    c.subscribe([topic])
    rest = consume_some(c, 50)
    committed = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    c.close()
    assert len(rest) == 50
    seen = {(p, o) for p, o, _ in first} | {(p, o) for p, o, _ in rest}
    assert len(seen) == 90, "a record was read twice or skipped across the restart"
    assert {(p, o) for p, o, _ in first}.isdisjoint({(p, o) for p, o, _ in rest})
    expected = {p: max(o for q, o, _ in first if q == p) + 1 for p in {q for q, _, _ in first}}
    assert {tp.partition: tp.offset for tp in committed if tp.offset >= 0} == expected


@pytest.mark.newest_kafka
def test_aiokafka_group_commits_and_resumes(cluster: Cluster, topic: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 2)
    produce(bs, topic, [(i % 2, b"v%d" % i) for i in range(40)])
    group = f"g-{topic}"

    async def read(n: int) -> list[tuple[int, int]]:
        c = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bs,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10_000,
            heartbeat_interval_ms=500,
        )
        await c.start()
        out: list[tuple[int, int]] = []
        try:
            deadline = time.monotonic() + 30
            while len(out) < n and time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=500, max_records=n - len(out))
                for tp, msgs in batch.items():
                    out += [(tp.partition, m.offset) for m in msgs]
            last: dict[int, int] = {}
            for p, o in out:
                last[p] = max(last.get(p, -1), o)
            await c.commit({AioTP(topic, p): OffsetAndMetadata(o + 1, "") for p, o in last.items()})
            return out
        finally:
            await c.stop()

    first = asyncio.run(read(15))
    rest = asyncio.run(read(25))
    assert len(first) == 15 and len(rest) == 25
    assert sorted(first + rest) == sorted((i % 2, i // 2) for i in range(40))


def java_groups(*args: str) -> list[str]:
    r = run_java("interop/java-clients", "GroupsProbe", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.splitlines()


def test_java_consumer_defaults_commit_resume_and_kafka_decodes_the_offsets_topic(cluster: Cluster, topic: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 2)
    produce(bs, topic, [(i % 2, b"v%d" % i) for i in range(30)])
    group = f"g-{topic}"
    first = [line.split() for line in java_groups("group-consume", bs, topic, group, "10")]
    rest = [line.split() for line in java_groups("group-consume", bs, topic, group, "20")]
    assert len(first) == 10 and len(rest) == 20
    assert sorted((int(p), int(o)) for p, o, _ in first + rest) == sorted((i % 2, i // 2) for i in range(30))
    assert java_groups("committed", bs, topic, group, "2") == ["0 15", "1 15"]
    # Kafka's own decoder (GroupCoordinatorRecordSerde) reads what the broker wrote.
    dump = java_groups("dump-offsets", bs)
    mine = [line for line in dump if f" {group} " in line]
    final = {}
    for line in mine:
        kind, _, *rest_fields = line.split()
        if kind == "offset":
            final[(rest_fields[0], int(rest_fields[1]))] = int(rest_fields[2])
    assert final == {(topic, 0): 15, (topic, 1): 15}
    assert any(line.startswith(f"group {group} consumer ") for line in mine)


@pytest.mark.newest_kafka
def test_admin_lists_describes_and_deletes_groups_and_offsets(cluster: Cluster, topic: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 2)
    produce(bs, topic, [(i % 2, b"v%d" % i) for i in range(10)])
    group = f"g-{topic}"
    admin = AdminClient({"bootstrap.servers": bs})
    c = Consumer(
        {
            "bootstrap.servers": bs,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "client.id": "describe-me",
        }
    )
    c.subscribe([topic])
    seen = consume_some(c, 10)
    commit_positions(c, seen, topic)

    listed = admin.list_consumer_groups().result(30)
    assert group in {g.group_id for g in listed.valid}
    (desc,) = admin.describe_consumer_groups([group]).values()
    d = desc.result(30)
    assert d.state == ConsumerGroupState.STABLE
    assert len(d.members) == 1 and d.members[0].client_id == "describe-me"
    assert {tp.partition for tp in d.members[0].assignment.topic_partitions} == {0, 1}
    assert d.members[0].host.lstrip("/") == "127.0.0.1"

    # A group with members cannot be deleted.
    (fut,) = admin.delete_consumer_groups([group]).values()
    with pytest.raises(KafkaException) as e:
        fut.result(30)
    assert e.value.args[0].code() == KafkaError.NON_EMPTY_GROUP

    from confluent_kafka import ConsumerGroupTopicPartitions

    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(30)
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(0, 5), (1, 5)]
    # OffsetDelete (kafka-python's admin; confluent-kafka has none) refuses a topic the members subscribe to.
    kp_admin = KafkaAdminClient(bootstrap_servers=bs)
    result = kp_admin.delete_group_offsets(group, [KpTP(topic, 1)])
    assert [e.__name__ for e in result.values()] == ["GroupSubscribedToTopicError"]
    c.close()

    # Empty now: offsets can be set by the admin (generation -1), deleted, and the group deleted.
    wait_until(
        lambda: admin.describe_consumer_groups([group])[group].result(30).state == ConsumerGroupState.EMPTY,
        30,
        "the group to be empty",
    )
    altered = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 2)])])[
        group
    ].result(30)
    assert [(tp.partition, tp.offset) for tp in altered.topic_partitions] == [(0, 2)]
    result = kp_admin.delete_group_offsets(group, [KpTP(topic, 1)])
    assert [e.__name__ for e in result.values()] == ["NoError"]
    kp_admin.close()
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(30)
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions if tp.offset >= 0) == [(0, 2)]
    admin.delete_consumer_groups([group])[group].result(30)
    assert group not in {g.group_id for g in admin.list_consumer_groups().result(30).valid}
    (gone,) = admin.describe_consumer_groups([group]).values()
    assert gone.result(30).state in (ConsumerGroupState.DEAD, ConsumerGroupState.UNKNOWN)


@pytest.mark.newest_kafka
def test_commit_for_unknown_partition_and_fetch_of_never_committed(cluster: Cluster, topic: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 1)
    c = Consumer({"bootstrap.servers": bs, "group.id": f"g-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False})
    try:
        out = c.committed([TopicPartition(topic, 0)], timeout=10)
        assert [tp.offset for tp in out] == [-1001]  # librdkafka's "no committed offset"
        with pytest.raises(KafkaException) as e:
            c.commit(offsets=[TopicPartition(topic, 7, 3)], asynchronous=False)
        assert "UNKNOWN_TOPIC_OR_PART" in str(e.value)
    finally:
        c.close()


@pytest.mark.newest_kafka
def test_static_member_restarts_within_its_session_without_a_rebalance(cluster: Cluster, topic: str) -> None:
    """group.instance.id: a static member that restarts gets its partitions back and the others never rebalance."""
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 4)
    group = f"g-{topic}"
    events: dict[str, list[tuple[str, set[int]]]] = {"a": [], "b": [], "a2": []}

    def consumer(instance: str, name: str) -> Consumer:
        c = Consumer(
            {
                "bootstrap.servers": bs,
                "group.id": group,
                "group.instance.id": instance,
                "session.timeout.ms": 15_000,
                "heartbeat.interval.ms": 500,
                "enable.auto.commit": False,
            }
        )
        c.subscribe(
            [topic],
            on_assign=lambda _c, ps: events[name].append(("assign", {p.partition for p in ps})),
            on_revoke=lambda _c, ps: events[name].append(("revoke", {p.partition for p in ps})),
        )
        return c

    def owned(name: str) -> set[int]:
        held: set[int] = set()
        for kind, parts in events[name]:
            held = parts if kind == "assign" else held - parts
        return held

    a, b = consumer("i1", "a"), consumer("i2", "b")
    wait_until(
        lambda: (a.poll(0.1), b.poll(0.1)) and len(owned("a")) == 2 and len(owned("b")) == 2,
        60,
        "two static members with two partitions each",
    )
    before_b = list(events["b"])
    a_parts = owned("a")
    a.close()  # a static member does not leave the group when it closes
    a2 = consumer("i1", "a2")
    wait_until(
        lambda: (a2.poll(0.1), b.poll(0.1)) and owned("a2") == a_parts,
        30,
        "the restarted member to get its partitions back",
    )
    for _ in range(10):
        b.poll(0.1)
    assert events["b"] == before_b, "the other member was made to rebalance"
    admin = AdminClient({"bootstrap.servers": bs})
    d = admin.describe_consumer_groups([group])[group].result(30)
    assert sorted(m.group_instance_id for m in d.members) == ["i1", "i2"]
    a2.close()
    b.close()


def test_a_recreated_topic_does_not_inherit_the_deleted_topics_offsets(cluster: Cluster, topic: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 1)
    group = f"g-{topic}"
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, 0, 42)], asynchronous=False)
    assert [tp.offset for tp in c.committed([TopicPartition(topic, 0)], timeout=10)] == [42]
    admin = AdminClient({"bootstrap.servers": bs})
    admin.delete_topics([topic])[topic].result(30)

    def recreated() -> bool:
        try:
            create_topic(bs, topic, 1)
        except KafkaException:
            return False  # Apache Kafka finishes deleting asynchronously
        return True

    wait_until(recreated, 60, "the topic to be created again")
    wait_until(
        lambda: [tp.offset for tp in c.committed([TopicPartition(topic, 0)], timeout=10)] == [-1001],
        30,
        "the old committed offset to be gone",
    )
    c.close()
