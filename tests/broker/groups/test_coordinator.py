"""The group coordinator's asyncio shell and handlers, with raw requests and a fake clock (no sleeps): timers,
errors for bad input, offset validation and expiry."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from broker._raw import Raw
from loosely.broker.config import BrokerConfig
from loosely.broker.groups.coordinator import GroupCoordinator, group_coordinator
from loosely.broker.server import BrokerThread
from loosely.protocol.messages import ApiKey, build
from loosely.testing import FakeClock

SESSION_MS = 6000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(tmp_path: Path, clock: FakeClock) -> Iterator[BrokerThread]:
    b = BrokerThread(BrokerConfig(data_dir=str(tmp_path), port=0, offsets_topic_partitions=4), clock=clock)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def coordinator(b: BrokerThread) -> GroupCoordinator:
    c = group_coordinator(b.broker.ctx)
    assert c is not None
    return c


def join(
    raw: Raw,
    group: str,
    member_id: str = "",
    *,
    session_ms: int = SESSION_MS,
    protocol_type: str = "consumer",
    version: int = 5,
) -> object:
    mod = __import__(f"kio.schema.join_group.v{version}.request", fromlist=["x"])
    body = build(
        mod.JoinGroupRequest,
        group_id=group,
        session_timeout=datetime.timedelta(milliseconds=session_ms),
        rebalance_timeout=datetime.timedelta(milliseconds=30_000),
        member_id=member_id,
        group_instance_id=None,
        protocol_type=protocol_type,
        protocols=(mod.JoinGroupRequestProtocol(name="range", metadata=b"\x00\x01\x00\x00\x00\x01\x00\x01t"),),
    )
    return raw.request(ApiKey.JOIN_GROUP, version, body)


def sync(raw: Raw, group: str, member_id: str, generation: int, assignment: bytes = b"a") -> object:
    from kio.schema.sync_group.v3.request import SyncGroupRequest, SyncGroupRequestAssignment

    body = SyncGroupRequest(
        group_id=group,
        generation_id=generation,
        member_id=member_id,
        group_instance_id=None,
        assignments=(SyncGroupRequestAssignment(member_id=member_id, assignment=assignment),),
    )
    return raw.request(ApiKey.SYNC_GROUP, 3, body)


def heartbeat(raw: Raw, group: str, member_id: str, generation: int) -> ErrorCode:
    from kio.schema.heartbeat.v3.request import HeartbeatRequest

    resp = raw.request(
        ApiKey.HEARTBEAT,
        3,
        HeartbeatRequest(group_id=group, generation_id=generation, member_id=member_id, group_instance_id=None),
    )
    return resp.error_code  # type: ignore[attr-defined, no-any-return]


def commit(
    raw: Raw, group: str, member_id: str, generation: int, offsets: dict[tuple[str, int], int], version: int = 7
) -> dict[tuple[str, int], ErrorCode]:
    mod = __import__(f"kio.schema.offset_commit.v{version}.request", fromlist=["x"])
    topics: dict[str, list[object]] = {}
    for (t, p), o in offsets.items():
        topics.setdefault(t, []).append(
            mod.OffsetCommitRequestPartition(
                partition_index=p, committed_offset=o, committed_leader_epoch=-1, committed_metadata="m"
            )
        )
    body = mod.OffsetCommitRequest(
        group_id=group,
        generation_id_or_member_epoch=generation,
        member_id=member_id,
        group_instance_id=None,
        topics=tuple(mod.OffsetCommitRequestTopic(name=t, partitions=tuple(ps)) for t, ps in topics.items()),
    )
    resp = raw.request(ApiKey.OFFSET_COMMIT, version, body)
    return {(t.name, p.partition_index): p.error_code for t in resp.topics for p in t.partitions}  # type: ignore[attr-defined]


def fetch(raw: Raw, groups: list[str], topic: str, partitions: list[int]) -> dict[str, dict[int, int]]:
    from kio.schema.offset_fetch.v8.request import OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopics

    body = OffsetFetchRequest(
        groups=tuple(
            OffsetFetchRequestGroup(
                group_id=g, topics=(OffsetFetchRequestTopics(name=topic, partition_indexes=tuple(partitions)),)
            )
            for g in groups
        ),
        require_stable=True,
    )
    resp = raw.request(ApiKey.OFFSET_FETCH, 8, body)
    return {
        g.group_id: {p.partition_index: p.committed_offset for t in g.topics for p in t.partitions}
        for g in resp.groups  # type: ignore[attr-defined]
    }


def create_topic(b: BrokerThread, name: str, partitions: int) -> None:
    b.call(lambda: b.broker.logs.create_topic(name, partitions))


def test_join_sync_heartbeat_then_the_session_expires_on_the_fake_clock(broker: BrokerThread, clock: FakeClock) -> None:
    raw = Raw(broker.bootstrap_servers)
    first = join(raw, "g")
    assert first.error_code == ErrorCode.member_id_required  # type: ignore[attr-defined]
    member = first.member_id  # type: ignore[attr-defined]
    assert member.startswith("loosely-")  # the client id, then a UUID, as Kafka makes them
    joined = join(raw, "g", member)
    assert (joined.error_code, joined.generation_id, joined.leader) == (  # type: ignore[attr-defined]
        ErrorCode.none,
        1,
        member,
    )
    synced = sync(raw, "g", member, 1, b"my-partitions")
    assert (synced.error_code, synced.assignment) == (ErrorCode.none, b"my-partitions")  # type: ignore[attr-defined]
    clock.advance(SESSION_MS - 1)
    broker.call(coordinator(broker).tick_now)
    assert heartbeat(raw, "g", member, 1) == ErrorCode.none  # which restarts the session timer
    clock.advance(SESSION_MS - 1)
    broker.call(coordinator(broker).tick_now)
    assert heartbeat(raw, "g", member, 1) == ErrorCode.none
    clock.advance(SESSION_MS)
    broker.call(coordinator(broker).tick_now)
    assert heartbeat(raw, "g", member, 1) == ErrorCode.unknown_member_id
    g = broker.call(lambda: coordinator(broker).group("g"))
    assert (g.phase.value, g.generation, len(g.members)) == ("Empty", 2, 0)


def test_bad_join_and_sync_requests_get_kafkas_errors(broker: BrokerThread) -> None:
    raw = Raw(broker.bootstrap_servers)
    assert join(raw, "g", session_ms=10).error_code == ErrorCode.invalid_session_timeout  # type: ignore[attr-defined]
    assert join(raw, "g", session_ms=3_600_000).error_code == ErrorCode.invalid_session_timeout  # type: ignore[attr-defined]
    assert join(raw, "").error_code == ErrorCode.invalid_group_id  # type: ignore[attr-defined]
    assert join(raw, "g", protocol_type="").error_code == ErrorCode.inconsistent_group_protocol  # type: ignore[attr-defined]
    assert join(raw, "nope", "some-member").error_code == ErrorCode.unknown_member_id  # type: ignore[attr-defined]
    assert sync(raw, "nope", "m", 1).error_code == ErrorCode.unknown_member_id  # type: ignore[attr-defined]
    assert heartbeat(raw, "nope", "m", 1) == ErrorCode.unknown_member_id
    assert heartbeat(raw, "", "m", 1) == ErrorCode.invalid_group_id
    # JoinGroup v0-v3 have no MEMBER_ID_REQUIRED step.
    assert join(raw, "old", version=3).error_code == ErrorCode.none  # type: ignore[attr-defined]
    # The broker is still fine.
    first = join(raw, "g2")
    assert join(raw, "g2", first.member_id).error_code == ErrorCode.none  # type: ignore[attr-defined]


def test_offset_commit_validation(broker: BrokerThread) -> None:
    create_topic(broker, "t", 2)
    raw = Raw(broker.bootstrap_servers)
    member = join(raw, "g").member_id  # type: ignore[attr-defined]
    gen = join(raw, "g", member).generation_id  # type: ignore[attr-defined]
    sync(raw, "g", member, gen)
    assert commit(raw, "g", member, gen, {("t", 0): 5}) == {("t", 0): ErrorCode.none}
    assert commit(raw, "g", member, gen + 1, {("t", 0): 6}) == {("t", 0): ErrorCode.illegal_generation}
    assert commit(raw, "g", "stranger", gen, {("t", 0): 6}) == {("t", 0): ErrorCode.unknown_member_id}
    # A commit outside group management is refused while the group has members...
    assert commit(raw, "g", "", -1, {("t", 0): 6}) == {("t", 0): ErrorCode.unknown_member_id}
    # ...unknown partitions are refused one by one...
    assert commit(raw, "g", member, gen, {("t", 1): 1, ("t", 9): 1, ("zz", 0): 1}) == {
        ("t", 1): ErrorCode.none,
        ("t", 9): ErrorCode.unknown_topic_or_partition,
        ("zz", 0): ErrorCode.unknown_topic_or_partition,
    }
    # ...a generation for a group that does not exist is ILLEGAL_GENERATION before v9, GROUP_ID_NOT_FOUND after.
    assert commit(raw, "ghost", "m", 3, {("t", 0): 1}) == {("t", 0): ErrorCode.illegal_generation}
    assert commit(raw, "ghost", "m", 3, {("t", 0): 1}, version=9) == {("t", 0): ErrorCode.group_id_not_found}
    # ...and a simple commit (no member, generation -1) of an unknown group creates it.
    assert commit(raw, "simple", "", -1, {("t", 0): 11}) == {("t", 0): ErrorCode.none}
    assert fetch(raw, ["g", "simple", "never"], "t", [0, 1]) == {
        "g": {0: 5, 1: 1},
        "simple": {0: 11, 1: -1},
        "never": {0: -1, 1: -1},
    }


def test_offsets_of_empty_groups_expire_after_the_retention(broker: BrokerThread, clock: FakeClock) -> None:
    create_topic(broker, "t", 1)
    raw = Raw(broker.bootstrap_servers)
    assert commit(raw, "simple", "", -1, {("t", 0): 3}) == {("t", 0): ErrorCode.none}
    member = join(raw, "busy").member_id  # type: ignore[attr-defined]
    gen = join(raw, "busy", member).generation_id  # type: ignore[attr-defined]
    sync(raw, "busy", member, gen)
    assert commit(raw, "busy", member, gen, {("t", 0): 4}) == {("t", 0): ErrorCode.none}
    coord = coordinator(broker)
    retention = broker.broker.config.offsets_retention_ms
    clock.advance(retention - 1)
    assert heartbeat(raw, "busy", member, gen) == ErrorCode.none
    assert broker.call(coord.expire_offsets) == 0
    clock.advance(1)
    assert heartbeat(raw, "busy", member, gen) == ErrorCode.none
    # The simple group's offset is due; the live consumer group's offset of a subscribed topic is not.
    assert broker.call(coord.expire_offsets) == 1
    assert fetch(raw, ["simple", "busy"], "t", [0]) == {"simple": {0: -1}, "busy": {0: 4}}
    assert broker.call(lambda: coord.group("simple")) is None


def test_offsets_of_a_deleted_topic_are_hidden_then_tombstoned(broker: BrokerThread) -> None:
    create_topic(broker, "t", 1)
    raw = Raw(broker.bootstrap_servers)
    assert commit(raw, "simple", "", -1, {("t", 0): 9}) == {("t", 0): ErrorCode.none}
    broker.call(lambda: broker.broker.logs.delete_topic("t"))
    create_topic(broker, "t", 1)
    assert fetch(raw, ["simple"], "t", [0]) == {"simple": {0: -1}}
    coord = coordinator(broker)
    assert broker.call(coord.expire_offsets) == 1
    assert broker.call(lambda: coord.store.orphaned("simple")) == []


def consumer_heartbeat(raw: Raw, group: str, member: str, epoch: int, topics: tuple[str, ...] | None) -> object:
    from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest

    body = ConsumerGroupHeartbeatRequest(
        group_id=group,
        member_id=member,
        member_epoch=epoch,
        rebalance_timeout=datetime.timedelta(seconds=30 if epoch == 0 else -0.001),
        subscribed_topic_names=topics,
        topic_partitions=() if epoch == 0 else None,
    )
    return raw.request(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, body)


def test_the_two_protocols_keep_to_their_own_groups(broker: BrokerThread, clock: FakeClock) -> None:
    create_topic(broker, "t", 2)
    raw = Raw(broker.bootstrap_servers)
    # A classic group whose members' metadata is no ConsumerProtocolSubscription (this one is cut short) cannot be
    # converted (tests/broker/groups/test_migration.py converts good ones): it keeps its id...
    member = join(raw, "classic").member_id  # type: ignore[attr-defined]
    join(raw, "classic", member)
    r = consumer_heartbeat(raw, "classic", "m1", 0, ("t",))
    assert r.error_code == ErrorCode.group_id_not_found  # type: ignore[attr-defined]
    # ...and a consumer group with a member takes only classic members of the consumer embedded protocol.
    r = consumer_heartbeat(raw, "modern", "m1", 0, ("t",))
    assert (r.error_code, r.member_epoch) == (ErrorCode.none, 1)  # type: ignore[attr-defined]
    assert join(raw, "modern", protocol_type="connect").error_code == ErrorCode.inconsistent_group_protocol  # type: ignore[attr-defined]
    # Only a join creates a group: a member of a group the broker does not know hears GROUP_ID_NOT_FOUND, as from
    # Kafka (tests/compat/test_consumer_protocol.py), and nothing is left behind.
    r = consumer_heartbeat(raw, "forgotten", "m9", 7, None)
    assert r.error_code == ErrorCode.group_id_not_found  # type: ignore[attr-defined]
    assert "forgotten" not in coordinator(broker).consumer.groups
    # Its session runs on the fake clock like everything else.
    session = broker.broker.config.group_consumer_session_timeout_ms
    clock.advance(session)
    broker.call(coordinator(broker).consumer.tick_now)
    assert consumer_heartbeat(raw, "modern", "m1", 1, None).error_code == ErrorCode.unknown_member_id  # type: ignore[attr-defined]
    # Empty now: the classic protocol may have the id back.
    assert join(raw, "modern").error_code == ErrorCode.member_id_required  # type: ignore[attr-defined]
