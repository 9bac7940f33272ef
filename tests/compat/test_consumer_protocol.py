"""The KIP-848 consumer group protocol (``group.protocol=consumer``, ConsumerGroupHeartbeat) with librdkafka and the
Java client, against loosely and Apache Kafka 4.1."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, ConsumerGroupState, Producer
from confluent_kafka.admin import AdminClient

from compat._java import run_java
from compat._procs import wait_until
from compat._support import Cluster, create_topic


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
