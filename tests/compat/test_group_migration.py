"""Online group migration (KIP-848): a classic group becomes a consumer group when a consumer-protocol member joins,
and a classic group again when that member leaves, with librdkafka consumers of both protocols, against loosely and
Apache Kafka 4.1 side by side."""

from __future__ import annotations

from confluent_kafka import Consumer, ConsumerGroupState, ConsumerGroupType, Producer
from confluent_kafka.admin import AdminClient, ConsumerGroupDescription

from compat._java import run_java
from compat._procs import wait_until
from compat._support import Cluster, create_topic

PARTITIONS = 4
PER_MEMBER = frozenset({"consumer-member", "consumer-current", "consumer-target"})


class Member:
    """A confluent-kafka consumer that tracks what it owns and what it read, and commits each record it reads."""

    def __init__(self, bs: str, group: str, topic: str, protocol: str) -> None:
        self.owned: set[int] = set()
        self.read: list[tuple[int, bytes]] = []
        conf: dict[str, object] = {
            "bootstrap.servers": bs,
            "group.id": group,
            "group.protocol": protocol,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
        if protocol == "classic":
            conf["heartbeat.interval.ms"] = 300  # so the test hears REBALANCE_IN_PROGRESS soon
        self.c = Consumer(conf)
        self.c.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked)

    def _assigned(self, _c: Consumer, ps: list[object]) -> None:
        self.owned |= {p.partition for p in ps}  # type: ignore[attr-defined]

    def _revoked(self, _c: Consumer, ps: list[object]) -> None:
        self.owned -= {p.partition for p in ps}  # type: ignore[attr-defined]

    def poll(self) -> None:
        m = self.c.poll(0.1)
        if m is not None and m.error() is None:
            self.read.append((m.partition(), m.value() or b""))
            self.c.commit(m, asynchronous=False)


def produce(bs: str, topic: str, tag: str, n: int) -> list[bytes]:
    p = Producer({"bootstrap.servers": bs, "linger.ms": 5})
    values = [f"{tag}{i}".encode() for i in range(n)]
    for i, v in enumerate(values):
        p.produce(topic, v, partition=i % PARTITIONS)
    assert p.flush(30) == 0
    return values


def stored(bs: str, group: str) -> dict[str, dict[str, str]]:
    """The group's state as ``__consumer_offsets`` holds it, read with Kafka's own decoder (GroupCoordinatorRecordSerde)
    and folded: the later record of a key wins, a tombstone removes it."""
    r = run_java("interop/java-clients", "GroupsProbe", "dump-offsets", bs)
    assert r.returncode == 0, r.stderr[-3000:]
    state: dict[str, dict[str, str]] = {}
    for line in r.stdout.splitlines():
        kind, g, *rest = line.split()
        deleted = kind.startswith("delete-")
        kind = kind.removeprefix("delete-")
        if g != group or kind == "offset":
            continue
        name, value = (rest[0], rest[1:]) if kind in PER_MEMBER else ("", rest)
        table = state.setdefault(kind, {})
        if deleted:
            table.pop(name, None)
        else:
            table[name] = " ".join(value)
    return {k: v for k, v in state.items() if v}


def describe(admin: AdminClient, group: str) -> ConsumerGroupDescription:
    d: ConsumerGroupDescription = admin.describe_consumer_groups([group])[group].result(30)
    return d


def test_a_consumer_protocol_member_converts_a_classic_group_and_back(cluster: Cluster, topic: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, PARTITIONS)
    group = f"g-{topic}"
    admin = AdminClient({"bootstrap.servers": bs})
    first = produce(bs, topic, "a", 20)
    classic = Member(bs, group, topic, "classic")
    wait_until(lambda: (classic.poll(), len(classic.read) >= 20)[1], 60, "the classic member to read the first 20")
    assert sorted(v for _, v in classic.read) == sorted(first)
    assert describe(admin, group).type == ConsumerGroupType.CLASSIC

    # A consumer-protocol member joins: the group becomes a consumer group and the partitions are shared.
    modern = Member(bs, group, topic, "consumer")
    members = (classic, modern)
    wait_until(
        lambda: (
            [m.poll() for m in members]
            and len(classic.owned) == 2
            and len(modern.owned) == 2
            and describe(admin, group).state == ConsumerGroupState.STABLE
        ),
        60,
        "both members to own two partitions of a stable group",
    )
    assert not classic.owned & modern.owned
    d = describe(admin, group)
    assert d.type == ConsumerGroupType.CONSUMER
    # Both brokers stored the same consumer group: its epoch, each member reconciled at it with two partitions.
    s = stored(bs, group)
    epoch = s["consumer-epoch"][""]
    assert set(s) == {"consumer-epoch", "consumer-target-epoch"} | PER_MEMBER
    assert sorted(s["consumer-member"].values()) == ["classic", "consumer"]
    assert sorted(s["consumer-current"].values()) == [f"{epoch} 0 2", f"{epoch} 0 2"]
    assert sorted(s["consumer-target"].values()) == ["2", "2"]
    assert "group" not in s, "the classic group's record was not deleted"
    assert sorted(len(m.assignment.topic_partitions) for m in d.members) == [2, 2]
    assert modern.read == [], "the consumer-protocol member read records the classic one had committed"
    second = produce(bs, topic, "b", 20)
    wait_until(
        lambda: [m.poll() for m in members] and len(classic.read) + len(modern.read) >= 40, 60, "the next 20 records"
    )
    assert sorted(v for _, v in classic.read[20:] + modern.read) == sorted(second), "lost or read twice"

    # The consumer-protocol member leaves: the group is classic again and its one member reads everything next.
    modern.c.close()
    wait_until(
        lambda: classic.poll() is None and classic.owned == set(range(PARTITIONS)), 60, "the classic member to own all"
    )
    wait_until(lambda: describe(admin, group).state == ConsumerGroupState.STABLE, 30, "the classic group to be stable")
    d = describe(admin, group)
    assert (d.type, len(d.members), d.partition_assignor) == (ConsumerGroupType.CLASSIC, 1, "range")
    third = produce(bs, topic, "c", 20)
    before = len(classic.read)
    wait_until(lambda: (classic.poll(), len(classic.read) >= before + 20)[1], 30, "the last 20 records")
    classic.poll()  # nothing more may come
    classic.c.close()
    # Offsets committed by the consumer-protocol member are where the classic member goes on from.
    assert sorted(v for _, v in classic.read[before:]) == sorted(third)
    assert len(classic.read) + len(modern.read) == 60, "a record was read twice across the conversions"

