"""Online migration between the classic and the consumer group protocol, step by step with raw requests and a fake
clock: what each classic member is told, generations as member epochs, offsets across both conversions, the
migration policy, and timers of classic members inside a consumer group. (Real clients against Apache Kafka:
tests/compat/test_group_migration.py.)"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from broker._raw import Raw
from broker.groups.test_coordinator import commit, consumer_heartbeat, create_topic, fetch, heartbeat
from loosely.broker.config import BrokerConfig
from loosely.broker.groups import migration
from loosely.broker.groups.consumer import ConsumerGroup
from loosely.broker.groups.coordinator import group_coordinator
from loosely.broker.groups.embedded import decode_assignment, decode_subscription, encode_assignment
from loosely.broker.server import BrokerThread
from loosely.protocol.messages import ApiKey, build
from loosely.protocol.primitives import Writer
from loosely.testing import FakeClock

SESSION_MS = 10_000
REBALANCE_MS = 20_000


def subscription(*topics: str, owned: tuple[int, ...] = ()) -> bytes:
    """ConsumerProtocolSubscription v3; an eager consumer owns nothing when it rejoins, a cooperative one what it
    kept (partitions of the first topic)."""
    w = Writer().i16(3).array_length(len(topics))
    for t in topics:
        w.string(t)
    w.bytes_(None).array_length(1 if owned else 0)
    if owned:
        w.string(topics[0]).array_length(len(owned))
        for p in owned:
            w.i32(p)
    return w.i32(-1).string(None).done()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def start(tmp_path: Path, clock: FakeClock, policy: str) -> BrokerThread:
    b = BrokerThread(
        BrokerConfig(
            data_dir=str(tmp_path), port=0, offsets_topic_partitions=2, group_consumer_migration_policy=policy
        ),
        clock=clock,
    )
    b.start()
    create_topic(b, "t", 2)
    return b


@pytest.fixture
def broker(tmp_path: Path, clock: FakeClock) -> Iterator[BrokerThread]:
    b = start(tmp_path, clock, "bidirectional")
    try:
        yield b
    finally:
        b.stop()


def join(
    raw: Raw, group: str, member_id: str, *, owned: tuple[int, ...] = (), instance_id: str | None = None
) -> object:
    from kio.schema.join_group.v7.request import JoinGroupRequest, JoinGroupRequestProtocol

    body = build(
        JoinGroupRequest,
        group_id=group,
        session_timeout=datetime.timedelta(milliseconds=SESSION_MS),
        rebalance_timeout=datetime.timedelta(milliseconds=REBALANCE_MS),
        member_id=member_id,
        group_instance_id=instance_id,
        protocol_type="consumer",
        protocols=(JoinGroupRequestProtocol(name="range", metadata=subscription("t", owned=owned)),),
    )
    return raw.request(ApiKey.JOIN_GROUP, 7, body)


def sync(raw: Raw, group: str, member_id: str, generation: int, assignment: bytes = b"") -> object:
    from kio.schema.sync_group.v5.request import SyncGroupRequest, SyncGroupRequestAssignment

    body = SyncGroupRequest(
        group_id=group,
        generation_id=generation,
        member_id=member_id,
        group_instance_id=None,
        protocol_type="consumer",
        protocol_name="range",
        assignments=(SyncGroupRequestAssignment(member_id=member_id, assignment=assignment),) if assignment else (),
    )
    return raw.request(ApiKey.SYNC_GROUP, 5, body)


def describe_classic(raw: Raw, group: str) -> tuple[ErrorCode, str]:
    from kio.schema.describe_groups.v5.request import DescribeGroupsRequest

    body = DescribeGroupsRequest(groups=(group,), include_authorized_operations=False)
    r = raw.request(ApiKey.DESCRIBE_GROUPS, 5, body)
    g = r.groups[0]  # type: ignore[attr-defined]
    return g.error_code, g.group_state


def describe_consumer(raw: Raw, group: str) -> object:
    from kio.schema.consumer_group_describe.v1.request import ConsumerGroupDescribeRequest

    r = raw.request(
        ApiKey.CONSUMER_GROUP_DESCRIBE,
        1,
        ConsumerGroupDescribeRequest(group_ids=(group,), include_authorized_operations=False),
    )
    return r.groups[0]  # type: ignore[attr-defined]


def classic_member(raw: Raw, group: str) -> tuple[str, int]:
    """A classic consumer that joins alone, leads, and takes both partitions: (member id, generation)."""
    member = join(raw, group, "").member_id  # type: ignore[attr-defined]
    r = join(raw, group, member)
    assert (r.error_code, r.leader) == (ErrorCode.none, member)  # type: ignore[attr-defined]
    gen = r.generation_id  # type: ignore[attr-defined]
    s = sync(raw, group, member, gen, encode_assignment(3, [("t", 0), ("t", 1)]))
    assert s.error_code == ErrorCode.none  # type: ignore[attr-defined]
    return member, gen


def test_a_classic_group_converts_to_a_consumer_group_and_back(broker: BrokerThread) -> None:
    raw = Raw(broker.bootstrap_servers)
    member, gen = classic_member(raw, "g")
    assert commit(raw, "g", member, gen, {("t", 0): 5}) == {("t", 0): ErrorCode.none}

    # The consumer-protocol member converts the group; the classic member keeps both partitions until it rejoins.
    r = consumer_heartbeat(raw, "g", "m1", 0, ("t",))
    assert (r.error_code, r.member_epoch, r.assignment.topic_partitions) == (ErrorCode.none, gen + 1, ())  # type: ignore[attr-defined]
    d = describe_consumer(raw, "g")
    assert (d.error_code, d.group_epoch, d.assignment_epoch) == (ErrorCode.none, gen + 1, gen + 1)  # type: ignore[attr-defined]
    assert sorted((m.member_id, m.member_type) for m in d.members) == sorted([(member, 0), ("m1", 1)])  # type: ignore[attr-defined]
    assert describe_classic(raw, "g") == (ErrorCode.none, "Dead")  # not a classic group now (v5: a Dead group)
    assert heartbeat(raw, "g", member, gen) == ErrorCode.rebalance_in_progress
    assert commit(raw, "g", member, gen, {("t", 0): 6}) == {("t", 0): ErrorCode.none}  # still its epoch

    # It rejoins (having revoked everything, as an eager consumer does) at the group's epoch, with no leader.
    r = join(raw, "g", member)
    assert (r.error_code, r.generation_id, r.protocol_name, r.leader, r.members) == (  # type: ignore[attr-defined]
        ErrorCode.none,
        gen + 1,
        "range",
        "",
        (),
    )
    s = sync(raw, "g", member, gen + 1)
    assert s.error_code == ErrorCode.none  # type: ignore[attr-defined]
    mine = decode_assignment(s.assignment)  # type: ignore[attr-defined]
    assert len(mine) == 1
    assert heartbeat(raw, "g", member, gen + 1) == ErrorCode.none
    assert commit(raw, "g", member, gen, {("t", 0): 7}) == {("t", 0): ErrorCode.illegal_generation}
    r = consumer_heartbeat(raw, "g", "m1", gen + 1, None)
    theirs = [p for t in r.assignment.topic_partitions for p in t.partitions]  # type: ignore[attr-defined]
    assert sorted(theirs + [p for _, p in mine]) == [0, 1]

    # The consumer-protocol member leaves: classic again, rebalancing at the epoch it had, offsets untouched.
    assert consumer_heartbeat(raw, "g", "m1", -1, None).error_code == ErrorCode.none  # type: ignore[attr-defined]
    assert describe_classic(raw, "g") == (ErrorCode.none, "PreparingRebalance")
    assert describe_consumer(raw, "g").error_code == ErrorCode.group_id_not_found  # type: ignore[attr-defined]
    assert heartbeat(raw, "g", member, gen + 1) == ErrorCode.rebalance_in_progress
    r = join(raw, "g", member)
    assert (r.error_code, r.generation_id, r.leader) == (ErrorCode.none, gen + 2, member)  # type: ignore[attr-defined]
    assert fetch(raw, ["g"], "t", [0]) == {"g": {0: 6}}


def test_a_malformed_join_converts_nothing(broker: BrokerThread) -> None:
    """Kafka checks a heartbeat before it looks the group up: a malformed join of a classic group with members is
    INVALID_REQUEST, and the group stays classic, its member undisturbed."""
    from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest

    raw = Raw(broker.bootstrap_servers)
    member, gen = classic_member(raw, "g")
    r = raw.request(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, ConsumerGroupHeartbeatRequest(
        group_id="g", member_id="m1", member_epoch=0, rebalance_timeout=datetime.timedelta(seconds=30),
        subscribed_topic_names=None, topic_partitions=()))  # a first request must name its subscription
    assert (r.error_code, r.error_message) == (  # type: ignore[attr-defined]
        ErrorCode.invalid_request, "SubscribedTopicNames or a regex must be set in first request.")
    assert describe_classic(raw, "g") == (ErrorCode.none, "Stable")
    assert heartbeat(raw, "g", member, gen) == ErrorCode.none


def test_the_migration_policy_decides_which_way_a_group_may_go(tmp_path: Path, clock: FakeClock) -> None:
    for policy in ("disabled", "upgrade", "downgrade"):
        b = start(tmp_path / policy, clock, policy)
        try:
            raw = Raw(b.bootstrap_servers)
            # Classic to consumer: only a joining member (epoch 0) converts, and only if the policy allows.
            member, gen = classic_member(raw, "up")
            assert consumer_heartbeat(raw, "up", "m1", 3, None).error_code == ErrorCode.group_id_not_found  # type: ignore[attr-defined]
            r = consumer_heartbeat(raw, "up", "m1", 0, ("t",))
            if policy == "upgrade":
                assert r.error_code == ErrorCode.none  # type: ignore[attr-defined]
            else:
                assert r.error_code == ErrorCode.group_id_not_found  # type: ignore[attr-defined]
                assert r.error_message == "Group up is not a consumer group."  # type: ignore[attr-defined]
                assert heartbeat(raw, "up", member, gen) == ErrorCode.none
            # Consumer to classic: a classic consumer joins a consumer group (always allowed), the other one leaves.
            consumer_heartbeat(raw, "down", "m1", 0, ("t",))
            classic = join(raw, "down", "")
            classic = join(raw, "down", classic.member_id)  # type: ignore[attr-defined]
            assert classic.error_code == ErrorCode.none  # type: ignore[attr-defined]
            consumer_heartbeat(raw, "down", "m1", -1, None)
            d = describe_consumer(raw, "down")
            if policy == "downgrade":
                assert describe_classic(raw, "down") == (ErrorCode.none, "PreparingRebalance")
            else:  # the classic member stays, alone in a consumer group
                assert [m.member_id for m in d.members] == [classic.member_id]  # type: ignore[attr-defined]
        finally:
            b.stop()


def test_a_classic_member_of_a_consumer_group_must_rejoin_in_time(broker: BrokerThread, clock: FakeClock) -> None:
    raw = Raw(broker.bootstrap_servers)
    member, gen = classic_member(raw, "g")
    consumer_heartbeat(raw, "g", "m1", 0, ("t",))
    coord = group_coordinator(broker.broker.ctx)
    assert coord is not None
    # Told to rejoin, it has its rebalance timeout; its heartbeats do not extend that.
    assert heartbeat(raw, "g", member, gen) == ErrorCode.rebalance_in_progress
    clock.advance(REBALANCE_MS - 1)
    assert heartbeat(raw, "g", member, gen) == ErrorCode.rebalance_in_progress
    consumer_heartbeat(raw, "g", "m1", gen + 1, None)
    clock.advance(1)
    broker.call(coord.consumer.tick_now)
    assert heartbeat(raw, "g", member, gen) == ErrorCode.unknown_member_id
    # The consumer-protocol member, alone now, gets both partitions.
    r = consumer_heartbeat(raw, "g", "m1", gen + 1, None)
    assert sorted(p for t in r.assignment.topic_partitions for p in t.partitions) == [0, 1]  # type: ignore[attr-defined]


def test_a_classic_consumer_may_join_a_consumer_group(broker: BrokerThread) -> None:
    raw = Raw(broker.bootstrap_servers)
    assert consumer_heartbeat(raw, "g", "m1", 0, ("t",)).error_code == ErrorCode.none  # type: ignore[attr-defined]
    r = join(raw, "g", "")
    assert r.error_code == ErrorCode.member_id_required  # type: ignore[attr-defined]
    r = join(raw, "g", r.member_id)  # type: ignore[attr-defined]
    assert (r.error_code, r.generation_id, r.leader) == (ErrorCode.none, 2, "")  # type: ignore[attr-defined]
    # Its partition is still the other member's: nothing yet, and a rejoin once it is free.
    s = sync(raw, "g", r.member_id, 2)  # type: ignore[attr-defined]
    assert decode_assignment(s.assignment) == []  # type: ignore[attr-defined]
    assert heartbeat(raw, "g", r.member_id, 2) == ErrorCode.none  # type: ignore[attr-defined]  # still waits
    from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest, TopicPartitions

    d = describe_consumer(raw, "g")
    tid = d.members[0].assignment.topic_partitions[0].topic_id  # type: ignore[attr-defined]
    m1 = next(m for m in d.members if m.member_id == "m1")  # type: ignore[attr-defined]
    kept = [p for t in m1.target_assignment.topic_partitions for p in t.partitions]
    body = ConsumerGroupHeartbeatRequest(
        group_id="g",
        member_id="m1",
        member_epoch=1,  # it keeps its epoch until it has revoked
        rebalance_timeout=datetime.timedelta(milliseconds=-1),
        subscribed_topic_names=None,
        topic_partitions=(TopicPartitions(topic_id=tid, partitions=tuple(kept)),),
    )
    assert raw.request(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, body).error_code == ErrorCode.none  # type: ignore[attr-defined]
    assert heartbeat(raw, "g", r.member_id, 2) == ErrorCode.rebalance_in_progress  # type: ignore[attr-defined]
    r2 = join(raw, "g", r.member_id)  # type: ignore[attr-defined]
    s = sync(raw, "g", r.member_id, r2.generation_id)  # type: ignore[attr-defined]
    assert len(decode_assignment(s.assignment)) == 1  # type: ignore[attr-defined]


def test_the_embedded_protocol_round_trips() -> None:
    sub = decode_subscription(subscription("a", "b"))
    assert (sub.version, sub.topics, sub.owned, sub.rack_id) == (3, frozenset({"a", "b"}), frozenset(), None)
    assert decode_assignment(encode_assignment(1, [("b", 2), ("a", 0), ("b", 1)])) == [("a", 0), ("b", 1), ("b", 2)]
    assert decode_assignment(b"") == []
    assert not migration.downgrade_due(ConsumerGroup("g"), ConsumerGroup("g"))


# --- KIP-848 membership across a restart -----------------------------------------------------------------------------


def test_consumer_group_membership_survives_kill_9(tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    from broker._brokers import ChildBroker
    from loosely.testing import free_port

    child = ChildBroker(tmp_path / "data", free_port()).start()
    try:
        admin = AdminClient({"bootstrap.servers": child.bootstrap_servers})
        admin.create_topics([NewTopic("t", 2, 1)])["t"].result(30)
        raw = Raw(child.bootstrap_servers)
        member, gen = classic_member(raw, "g")
        consumer_heartbeat(raw, "g", "m1", 0, ("t",))
        join(raw, "g", member)
        sync(raw, "g", member, gen + 1)
        r = consumer_heartbeat(raw, "g", "m1", gen + 1, None)
        assert r.error_code == ErrorCode.none  # type: ignore[attr-defined]
        before = describe_consumer(raw, "g")
        raw.close()
        child.kill()
        child.start()
        raw = Raw(child.bootstrap_servers)
        assert describe_consumer(raw, "g") == before
        # Both members go on with their ids and epochs; the epoch continues from where it was.
        r = consumer_heartbeat(raw, "g", "m1", gen + 1, None)
        assert (r.error_code, r.member_epoch) == (ErrorCode.none, gen + 1)  # type: ignore[attr-defined]
        assert heartbeat(raw, "g", member, gen + 1) == ErrorCode.none
        s = sync(raw, "g", member, gen + 1)
        assert len(decode_assignment(s.assignment)) == 1  # type: ignore[attr-defined]
        assert consumer_heartbeat(raw, "g", "m2", 0, ("t",)).member_epoch == gen + 2  # type: ignore[attr-defined]
        # The conversion back to classic works on the reloaded group, and that too survives.
        consumer_heartbeat(raw, "g", "m2", -1, None)
        consumer_heartbeat(raw, "g", "m1", -1, None)
        assert describe_classic(raw, "g") == (ErrorCode.none, "PreparingRebalance")
        raw.close()
        child.kill()
        child.start()
        raw = Raw(child.bootstrap_servers)
        assert describe_consumer(raw, "g").error_code == ErrorCode.group_id_not_found  # type: ignore[attr-defined]
        assert describe_classic(raw, "g") == (ErrorCode.none, "Stable")
        raw.close()
    finally:
        child.kill()


def test_a_librdkafka_consumer_keeps_its_assignment_across_a_restart(tmp_path: Path) -> None:
    from confluent_kafka import Consumer, Producer

    from broker._brokers import broker_on
    from compat._procs import wait_until
    from loosely.testing import free_port

    port = free_port()
    changes: list[str] = []
    with broker_on(tmp_path, port, offsets_topic_partitions=2) as b:
        create_topic(b, "t", 2)
        bs = b.bootstrap_servers
        c = Consumer(
            {"bootstrap.servers": bs, "group.id": "g", "group.protocol": "consumer", "auto.offset.reset": "earliest"}
        )
        c.subscribe(
            ["t"],
            on_assign=lambda _c, ps: changes.append(f"assign {len(ps)}"),
            on_revoke=lambda _c, ps: changes.append(f"revoke {len(ps)}"),
            on_lost=lambda _c, ps: changes.append(f"lost {len(ps)}"),
        )
        wait_until(lambda: c.poll(0.1) is None and changes == ["assign 2"], 30, "the consumer to own both partitions")
        coord = group_coordinator(b.broker.ctx)
        assert coord is not None
        g = b.call(lambda: coord.consumer.get("g"))
        assert g is not None
        (member,) = g.members.values()
    try:
        with broker_on(tmp_path, port, offsets_topic_partitions=2) as b:
            coord = group_coordinator(b.broker.ctx)
            assert coord is not None
            loaded = b.call(lambda: coord.consumer.get("g"))
            assert loaded is not None
            first = loaded.members[member.member_id].session_deadline_ms

            def heartbeated() -> bool:
                c.poll(0.1)
                now = b.call(lambda: coord.consumer.get("g"))
                return now is not None and now.members[member.member_id].session_deadline_ms != first

            wait_until(heartbeated, 30, "a heartbeat of the consumer after the restart")
            p = Producer({"bootstrap.servers": b.bootstrap_servers})
            p.produce("t", b"after", partition=1)
            assert p.flush(30) == 0
            got: list[bytes] = []
            wait_until(
                lambda: (m := c.poll(0.1)) is None or got.append(m.value() or b"") or b"after" in got, 30, "a record"
            )
            now = b.call(lambda: coord.consumer.get("g"))
            assert now is not None
            assert (now.group_epoch, now.members[member.member_id].member_epoch) == (g.group_epoch, member.member_epoch)
            assert changes == ["assign 2"], "the consumer had to rejoin"
    finally:
        c.close()


def test_only_what_changed_is_written_and_reads_back() -> None:
    import uuid
    from dataclasses import replace

    from loosely.broker.groups import consumer_records
    from loosely.broker.groups.consumer import ClassicMetadata, ConsumerMember, MemberState, TopicInfo
    from loosely.broker.groups.records import ConsumerKey, decode_key

    tid = uuid.uuid4()
    m = ConsumerMember(
        "m",
        None,
        "r1",
        "c",
        "/h",
        frozenset({"t"}),
        30_000,
        None,
        100,
        member_epoch=3,
        previous_member_epoch=2,
        state=MemberState.UNREVOKED_PARTITIONS,
        assigned=frozenset({(tid, 0)}),
        pending_revocation=frozenset({(tid, 1)}),
        classic=ClassicMetadata(10_000, (("range", subscription("t")),)),
        partition_epochs={(tid, 0): 2, (tid, 1): 1},  # written as Kafka 4.4's AssignmentEpochs, read back
    )
    g = ConsumerGroup("g", group_epoch=4, assignment_epoch=4, members={"m": m}, target={"m": frozenset({(tid, 0)})})
    written = consumer_records.changes("g", None, g)
    assert len(written) == 5
    # A heartbeat that only moves the session deadline writes nothing.
    assert consumer_records.changes("g", g, replace(g, members={"m": replace(m, session_deadline_ms=999)})) == []
    loaded: dict[str, consumer_records.LoadedGroup] = {}
    for k, v in written:
        key = decode_key(k)
        assert isinstance(key, ConsumerKey)
        consumer_records.replay(loaded, key, v)
    back = consumer_records.rebuild("g", loaded["g"], g.limits, {"t": TopicInfo(tid, 2)}, 100)
    assert back is not None
    assert replace(back.members["m"], revocation_deadline_ms=None, session_deadline_ms=0) == replace(
        m, session_deadline_ms=0
    )
    assert (back.group_epoch, back.assignment_epoch, back.target) == (4, 4, g.target)
    # Gone: every key of it is tombstoned.
    assert {v for _, v in consumer_records.changes("g", g, None)} == {None}


def test_a_cooperative_classic_member_revokes_before_it_moves_on(broker: BrokerThread) -> None:
    raw = Raw(broker.bootstrap_servers)
    member, gen = classic_member(raw, "g")
    consumer_heartbeat(raw, "g", "m1", 0, ("t",))
    assert heartbeat(raw, "g", member, gen) == ErrorCode.rebalance_in_progress
    # Rejoining while it still owns both, it stays at its generation and is given only what it keeps...
    r = join(raw, "g", member, owned=(0, 1))
    assert (r.error_code, r.generation_id) == (ErrorCode.none, gen)  # type: ignore[attr-defined]
    kept = [p for _, p in decode_assignment(sync(raw, "g", member, gen).assignment)]  # type: ignore[attr-defined]
    assert len(kept) == 1
    # ...and told to rejoin until it has given the other up; then it moves to the group's epoch.
    assert heartbeat(raw, "g", member, gen) == ErrorCode.rebalance_in_progress
    r = join(raw, "g", member, owned=tuple(kept))
    assert (r.error_code, r.generation_id) == (ErrorCode.none, gen + 1)  # type: ignore[attr-defined]
    assert heartbeat(raw, "g", member, gen + 1) == ErrorCode.none
    r = consumer_heartbeat(raw, "g", "m1", gen + 1, None)
    assert [p for t in r.assignment.topic_partitions for p in t.partitions] == [1 - kept[0]]  # type: ignore[attr-defined]


def test_a_static_classic_member_comes_back_under_a_new_id(broker: BrokerThread) -> None:
    raw = Raw(broker.bootstrap_servers)
    assert consumer_heartbeat(raw, "g", "m1", 0, ("t",)).error_code == ErrorCode.none  # type: ignore[attr-defined]
    first = join(raw, "g", "", instance_id="i1")
    assert first.error_code == ErrorCode.none  # type: ignore[attr-defined]
    # Another incarnation with the same instance id takes its place; the old id is fenced.
    second = join(raw, "g", "", instance_id="i1")
    assert second.member_id != first.member_id  # type: ignore[attr-defined]
    assert [m.member_id for m in describe_consumer(raw, "g").members if m.instance_id == "i1"] == [second.member_id]  # type: ignore[attr-defined]
    assert join(raw, "g", first.member_id, instance_id="i1").error_code == ErrorCode.fenced_instance_id  # type: ignore[attr-defined]


def test_a_change_that_cannot_be_stored_changes_nothing(tmp_path: Path, clock: FakeClock) -> None:
    import errno

    from loosely.testing import FaultyFileSystem

    fs = FaultyFileSystem(seed=0)
    b = BrokerThread(BrokerConfig(data_dir=str(tmp_path), port=0, offsets_topic_partitions=1), clock=clock, fs=fs)
    b.start()
    try:
        create_topic(b, "t", 2)
        raw = Raw(b.bootstrap_servers)
        assert consumer_heartbeat(raw, "g", "m1", 0, ("t",)).member_epoch == 1  # type: ignore[attr-defined]
        fs.fail("append", error=errno.ENOSPC, path_contains="__consumer_offsets")
        r = consumer_heartbeat(raw, "g", "m2", 0, ("t",))
        assert r.error_code == ErrorCode.not_coordinator  # type: ignore[attr-defined]
        d = describe_consumer(raw, "g")
        assert (d.group_epoch, [m.member_id for m in d.members]) == (1, ["m1"])  # type: ignore[attr-defined]
        fs.heal()
        assert consumer_heartbeat(raw, "g", "m2", 0, ("t",)).member_epoch == 2  # type: ignore[attr-defined]
    finally:
        b.stop()
