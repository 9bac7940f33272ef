"""Share groups: the pure record-state rules (:mod:`loosely.broker.groups.share`) and the state a restart keeps."""

from __future__ import annotations

import datetime
import json
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.share_fetch.v2 import request as fetch_req
from kio.schema.share_group_heartbeat.v1.request import ShareGroupHeartbeatRequest
from kio.static.primitive import i8, i32

from broker._raw import Raw
from loosely.broker.groups.share import (
    AckType,
    Acquired,
    RecordState,
    ShareGroup,
    ShareMember,
    SharePartition,
    heartbeat,
    member_from_json,
    member_to_json,
)
from loosely.broker.groups.share_shell import share_groups
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey
from loosely.testing import embedded_broker

LIMIT, LOCK = 3, 1000


def acquire(sp: SharePartition, member: str, *, now: int = 0, read_to: int = 10, n: int = 100) -> list[Acquired]:
    return sp.acquire(member, read_to=read_to, records_max=n, locks_max=5, lock_ms=LOCK, now_ms=now)


def ack(sp: SharePartition, member: str, first: int, last: int, t: AckType) -> ErrorCode:
    code, _, _ = sp.acknowledge(member, [(first, last, (int(t),))], delivery_limit=LIMIT, lock_ms=LOCK, now_ms=0,
                                renew_allowed=True)
    return code


def test_acquire_accept_and_the_start_offset() -> None:
    sp = SharePartition(2)
    assert acquire(sp, "a", read_to=20) == [Acquired(2, 6, 1)]  # at most locks_max (5) offsets in flight
    assert acquire(sp, "b", read_to=20) == []
    assert ack(sp, "b", 2, 2, AckType.ACCEPT) == ErrorCode.invalid_record_state  # not b's
    assert ack(sp, "a", 2, 3, AckType.ACCEPT) == ErrorCode.none
    assert sp.start_offset == 4 and sp.end_offset == 7
    assert ack(sp, "a", 2, 2, AckType.ACCEPT) == ErrorCode.none  # below the start offset: done already, ignored
    assert ack(sp, "a", 9, 9, AckType.ACCEPT) == ErrorCode.invalid_request  # never delivered
    assert acquire(sp, "b", read_to=20) == [Acquired(7, 8, 1)]


def test_release_redelivers_then_archives_at_the_limit() -> None:
    sp = SharePartition(0)
    for count in range(1, LIMIT + 1):
        assert acquire(sp, "a", read_to=1) == [Acquired(0, 0, count)]
        assert ack(sp, "a", 0, 0, AckType.RELEASE) == ErrorCode.none
    assert sp.start_offset == 1 and not sp.records  # archived at the third delivery's release
    assert acquire(sp, "a", read_to=1) == []


def test_locks_run_out_and_members_leave() -> None:
    sp = SharePartition(0)
    acquire(sp, "a", now=0, read_to=2)
    assert not sp.expire(LOCK - 1, LIMIT)
    assert sp.expire(LOCK, LIMIT)
    assert acquire(sp, "b", now=LOCK, read_to=2) == [Acquired(0, 1, 2)]
    assert sp.release_member("b", LIMIT)
    assert all(r.state == RecordState.AVAILABLE for r in sp.records.values())
    assert ack(sp, "b", 0, 1, AckType.ACCEPT) == ErrorCode.invalid_record_state


def test_reject_and_gap_archive_and_per_offset_types_apply_all_or_nothing() -> None:
    sp = SharePartition(0)
    acquire(sp, "a", read_to=4)
    code, _, _ = sp.acknowledge("a", [(0, 3, (1, 3, 0, 9))], delivery_limit=LIMIT, lock_ms=LOCK, now_ms=0,
                                renew_allowed=True)
    assert code == ErrorCode.invalid_request and all(r.state == RecordState.ACQUIRED for r in sp.records.values())
    code, _, released = sp.acknowledge("a", [(0, 3, (1, 3, 0, 2))], delivery_limit=LIMIT, lock_ms=LOCK, now_ms=0,
                                       renew_allowed=True)
    assert (code, released) == (ErrorCode.none, True)
    assert sp.start_offset == 3 and sp.records[3].state == RecordState.AVAILABLE


def test_the_state_round_trips_and_acquired_records_come_back_available() -> None:
    sp = SharePartition(0)
    acquire(sp, "a", read_to=3)
    ack(sp, "a", 1, 1, AckType.ACCEPT)
    back = SharePartition.from_json(sp.to_json())
    assert (back.start_offset, back.end_offset) == (0, 3)
    assert {o: (r.state, r.delivery_count) for o, r in back.records.items()} == {
        0: (RecordState.AVAILABLE, 1), 1: (RecordState.ACKNOWLEDGED, 1), 2: (RecordState.AVAILABLE, 1)}


def test_records_of_aborted_transactions_are_archived_not_delivered() -> None:
    sp = SharePartition(0)
    got = sp.acquire("a", read_to=10, records_max=100, locks_max=50, lock_ms=LOCK, now_ms=0, aborted=[(2, 4), (7, 7)])
    assert got == [Acquired(0, 1, 1), Acquired(5, 6, 1), Acquired(8, 9, 1)]
    assert {o for o, r in sp.records.items() if r.state == RecordState.ARCHIVED} == {2, 3, 4, 7}
    assert ack(sp, "a", 0, 1, AckType.ACCEPT) == ErrorCode.none
    assert sp.start_offset == 5  # the archived ones at the front are done with too


def test_members_round_trip_with_a_new_session() -> None:
    m = ShareMember("m", 4, "c", "/h", None, frozenset({"t"}), frozenset({("t", 0)}), frozenset({("t", 1)}), 5)
    back = member_from_json("m", json.loads(json.dumps(member_to_json(m))), 900)
    assert back == ShareMember("m", 4, "c", "/h", None, frozenset({"t"}), frozenset({("t", 0)}),
                               frozenset({("t", 1)}), 900)


def test_membership_epochs_and_errors() -> None:
    g = ShareGroup("g")
    kw = {"rack_id": None, "client_id": "c", "client_host": "/h", "partitions_of": {"t": 2}, "session_ms": 100,
          "now_ms": 0}
    a = heartbeat(g, member_id="a", member_epoch=0, subscribed=frozenset({"t"}), **kw)  # type: ignore[arg-type]
    assert (a.error, a.member_epoch, a.assignment) == (ErrorCode.none, 1, frozenset({("t", 0), ("t", 1)}))
    b = heartbeat(g, member_id="b", member_epoch=0, subscribed=frozenset({"t"}), **kw)  # type: ignore[arg-type]
    assert (b.member_epoch, b.assignment) == (2, frozenset({("t", 1)}))
    # a is told of b only at its next heartbeat, at the epoch it had
    moved = heartbeat(g, member_id="a", member_epoch=1, subscribed=None, **kw)  # type: ignore[arg-type]
    assert (moved.error, moved.member_epoch, moved.assignment) == (ErrorCode.none, 2, frozenset({("t", 0)}))
    assert heartbeat(g, member_id="a", member_epoch=2, subscribed=None, **kw).assignment is None  # type: ignore[arg-type]
    stale = heartbeat(g, member_id="a", member_epoch=1, subscribed=None, **kw)  # type: ignore[arg-type]
    assert stale.error == ErrorCode.fenced_member_epoch
    assert heartbeat(g, member_id="z", member_epoch=2, subscribed=None, **kw).error == (  # type: ignore[arg-type]
        ErrorCode.unknown_member_id)
    assert heartbeat(g, member_id="", member_epoch=0, subscribed=None, **kw).error == (  # type: ignore[arg-type]
        ErrorCode.invalid_request)


def _fetch(raw: Raw, member: str, epoch: int, tid: uuid.UUID, acks: tuple[tuple[int, int, int], ...] = ()) -> object:
    return raw.request(ApiKey.SHARE_FETCH, 2, fetch_req.ShareFetchRequest(
        group_id="g", member_id=member, share_session_epoch=i32(epoch), max_wait=datetime.timedelta(milliseconds=500),
        min_bytes=i32(1), max_records=i32(100), batch_size=i32(100),
        topics=(fetch_req.FetchTopic(topic_id=tid, partitions=(fetch_req.FetchPartition(
            partition_index=i32(0), acknowledgement_batches=tuple(
                fetch_req.AcknowledgementBatch(first_offset=f, last_offset=last, acknowledge_types=(i8(t),))
                for f, last, t in acks)),)),),
        forgotten_topics_data=()))


def _acquired(resp: object) -> list[tuple[int, int, int]]:
    return [(r.first_offset, r.last_offset, r.delivery_count)
            for t in resp.responses for p in t.partitions for r in p.acquired_records]  # type: ignore[attr-defined]


def _member(raw: Raw) -> tuple[str, uuid.UUID]:
    member = str(uuid.uuid4())
    r = raw.request(ApiKey.SHARE_GROUP_HEARTBEAT, 1, ShareGroupHeartbeatRequest(
        group_id="g", member_id=member, member_epoch=i32(0), subscribed_topic_names=("t",)))
    return member, r.assignment.topic_partitions[0].topic_id  # type: ignore[attr-defined]


def test_share_partition_state_survives_a_restart(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    with embedded_broker(data_dir=data) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap_servers})  # kept alive until the topic is made
        admin.create_topics([NewTopic("t", 1)])["t"].result(30)
        raw = Raw(b.bootstrap_servers)
        member, tid = _member(raw)
        assert _acquired(_fetch(raw, member, 0, tid)) == []  # starts the share-partition at the log end (latest)
        p = Producer({"bootstrap.servers": b.bootstrap_servers})
        for i in range(6):
            p.produce("t", f"v{i}".encode())
        assert p.flush(30) == 0
        assert _acquired(_fetch(raw, member, 1, tid)) == [(0, 5, 1)]
        # 0-1 accepted, 2 released (its delivery counted) and acquired again by the same fetch, 3 rejected; 4-5
        # stay acquired, never acknowledged
        assert _acquired(_fetch(raw, member, 2, tid, acks=((0, 1, 1), (2, 2, 2), (3, 3, 3)))) == [(2, 2, 2)]
        raw.close()  # the connection's share session closes: 2 and 4-5 are released, their deliveries counted
        svc = share_groups(b.broker.ctx)
        assert svc is not None
        deadline = time.monotonic() + 10
        while b.call(lambda: ("g", member) in svc.sessions):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    sys.stderr.flush()
    with embedded_broker(data_dir=data) as b:
        raw = Raw(b.bootstrap_servers)
        member, tid = _member(raw)
        assert _acquired(_fetch(raw, member, 0, tid)) == [(2, 2, 3), (4, 5, 2)]
        raw.close()
