"""Request semantics that real clients rely on but rarely show: long polls, acks=0, leader epochs, auto-create."""

from __future__ import annotations

import datetime
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from broker._raw import Raw
from compat._support import Cluster, create_topic
from loosely.broker.config import BrokerConfig
from loosely.broker.server import BrokerThread
from loosely.protocol.errors import ProtocolError
from loosely.protocol.messages import ApiKey, decode_request


def fetch(raw: Raw, topic: str, offset: int, *, max_wait_ms: int, min_bytes: int, max_bytes: int = 1 << 20,
          isolation_level: int = 0) -> object:
    from kio.schema.fetch.v11.request import FetchPartition, FetchRequest, FetchTopic

    req = FetchRequest(
        replica_id=-1,
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        isolation_level=isolation_level,
        session_id=0,
        session_epoch=-1,
        topics=(
            FetchTopic(
                topic=topic,
                partitions=(
                    FetchPartition(
                        partition=0,
                        current_leader_epoch=0,
                        fetch_offset=offset,
                        log_start_offset=-1,
                        partition_max_bytes=max_bytes,
                    ),
                ),
            ),
        ),
        forgotten_topics_data=(),
        rack_id="",
    )
    return raw.request(ApiKey.FETCH, 11, req)


def produce_one(bootstrap: str, topic: str, value: bytes = b"x") -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    p.produce(topic, value)
    assert p.flush(10) == 0


def test_long_poll_returns_as_soon_as_data_arrives(loosely: BrokerThread, topic: str) -> None:
    create_topic(loosely.bootstrap_servers, topic, 1)
    raw = Raw(loosely.bootstrap_servers)
    timer = threading.Timer(0.3, produce_one, args=(loosely.bootstrap_servers, topic))
    t0 = time.monotonic()
    timer.start()
    resp = fetch(raw, topic, 0, max_wait_ms=5000, min_bytes=1)
    elapsed = time.monotonic() - t0
    part = resp.responses[0].partitions[0]  # type: ignore[attr-defined]
    assert part.records and part.high_watermark == 1
    assert 0.25 < elapsed < 2.0


def test_min_bytes_waits_for_max_wait_then_answers_with_what_there_is(loosely: BrokerThread, topic: str) -> None:
    create_topic(loosely.bootstrap_servers, topic, 1)
    produce_one(loosely.bootstrap_servers, topic)
    raw = Raw(loosely.bootstrap_servers)
    t0 = time.monotonic()
    resp = fetch(raw, topic, 0, max_wait_ms=700, min_bytes=1_000_000)
    elapsed = time.monotonic() - t0
    assert 0.65 < elapsed < 2.0
    assert resp.responses[0].partitions[0].records  # type: ignore[attr-defined]
    t0 = time.monotonic()
    fetch(raw, topic, 0, max_wait_ms=700, min_bytes=1)
    assert time.monotonic() - t0 < 0.5  # enough bytes already: no wait


def test_read_committed_long_poll_answers_when_the_transaction_commits(cluster: Cluster, topic: str) -> None:
    """A read_committed fetch parked on records of an open transaction answers when the commit marker lands, not
    at its max wait: how soon a committed write reaches a tailing reader (RAW Hollow's clients) depends on it."""
    create_topic(cluster.bootstrap_servers, topic, 1)
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "transactional.id": f"txn-{topic}",
                  "linger.ms": 0})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, b"committed later")
    assert p.flush(10) == 0  # in the log, above the last stable offset
    raw = Raw(cluster.bootstrap_servers)
    answered: list[tuple[float, object]] = []
    parked = threading.Thread(target=lambda: answered.append(
        (time.monotonic(), fetch(raw, topic, 0, max_wait_ms=10_000, min_bytes=1, isolation_level=1))))
    parked.start()
    time.sleep(0.3)  # time for the fetch to park: it must not answer with the open transaction's record
    assert not answered, "a read_committed fetch answered while its only record's transaction was open"
    p.commit_transaction(10)
    committed = time.monotonic()
    parked.join(15)
    at, resp = answered[0]
    part = resp.responses[0].partitions[0]  # type: ignore[attr-defined]
    assert part.records and part.last_stable_offset == 2  # the record and its commit marker
    assert at - committed < 2.0, f"answered {at - committed:.2f} s after the commit, of its 10 s max wait"


def test_a_transactional_append_wakes_only_read_uncommitted_long_polls() -> None:
    """A transaction's records leave the last stable offset where it is, so a parked read_committed fetch woken by
    them would find nothing and park again; only the marker (a stable notify) wakes it."""
    import asyncio

    from loosely.broker.context import PartitionWatchers
    from loosely.protocol.names import TopicPartition

    async def run() -> None:
        watchers = PartitionWatchers()
        tp = TopicPartition("t", 0)
        committed = watchers.watch([tp], committed=True)
        uncommitted = watchers.watch([tp])
        watchers.notify(tp, stable=False)  # a transactional Produce
        assert uncommitted.done() and not committed.done()
        watchers.notify(TopicPartition("t", 1))  # another partition's marker
        assert not committed.done()
        watchers.notify(tp)  # the marker
        assert committed.done()
        watchers.unwatch([tp], committed)
        again = watchers.watch([tp], committed=True)
        watchers.unwatch([tp], again)  # a fetch that timed out: nothing left behind to wake
        watchers.notify(tp)
        assert not again.done()

    asyncio.run(run())


def whole_batches(records: bytes) -> list[tuple[int, int]]:
    """``(base offset, size)`` of each whole batch; a trailing partial batch (Kafka sends one) is left out."""
    out, pos = [], 0
    while pos + 12 <= len(records):
        base, length = struct.unpack_from(">qi", records, pos)
        if pos + 12 + length > len(records):
            break
        out.append((base, 12 + length))
        pos += 12 + length
    return out


def test_fetch_answers_at_once_with_every_batch_that_fits(cluster: Cluster, topic: str) -> None:
    """A consumer behind the log gets all the whole batches its bytes allow, now, not after the long poll.

    librdkafka sends one Fetch at a time per broker; an answer held for ``max_wait`` or cut short of the asked
    bytes stalls it (kcat's consume speed depends on it). Kafka fills the asked bytes, ending in a partial
    batch; loosely stops at the last whole batch. Either way the whole batches are the same.
    """
    create_topic(cluster.bootstrap_servers, topic, 1)
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 1000})
    for b in range(6):
        for i in range(50):
            p.produce(topic, b"%d-%d" % (b, i) + b"v" * 1000)
        assert p.flush(10) == 0  # one batch of 50 per flush
    raw = Raw(cluster.bootstrap_servers)
    try:
        everything = fetch(raw, topic, 0, max_wait_ms=0, min_bytes=1, max_bytes=8 << 20)
        batches = whole_batches(everything.responses[0].partitions[0].records)  # type: ignore[attr-defined]
        assert [base for base, _ in batches] == [50 * b for b in range(6)]
        asked = sum(size for _, size in batches[:3]) + batches[3][1] // 2
        t0 = time.monotonic()
        resp = fetch(raw, topic, 0, max_wait_ms=20_000, min_bytes=1, max_bytes=asked)
        elapsed = time.monotonic() - t0
        part = resp.responses[0].partitions[0]  # type: ignore[attr-defined]
        assert elapsed < 10, "the broker held an answer that had data for the long poll"
        assert whole_batches(part.records) == batches[:3]
        assert len(part.records) <= asked
        assert part.high_watermark == 300
        resp = fetch(raw, topic, 150, max_wait_ms=20_000, min_bytes=1, max_bytes=asked)
        assert whole_batches(resp.responses[0].partitions[0].records) == batches[3:6]  # type: ignore[attr-defined]
    finally:
        raw.close()


def test_backlog_delay_holds_only_answers_that_leave_records_behind(tmp_path: Path, topic: str) -> None:
    """loosely.fetch.backlog.delay.ms paces a consumer reading a backlog; one that reaches the end is not held."""
    delay_s = 1.0
    with BrokerThread(BrokerConfig(data_dir=str(tmp_path), port=0, fetch_backlog_delay_ms=int(delay_s * 1000))) as b:
        produce_one(b.bootstrap_servers, topic, b"first")
        produce_one(b.bootstrap_servers, topic, b"second")  # two batches
        raw = Raw(b.bootstrap_servers)
        try:

            def timed(offset: int, max_bytes: int) -> tuple[float, list[tuple[int, int]]]:
                t0 = time.monotonic()
                resp = fetch(raw, topic, offset, max_wait_ms=0, min_bytes=1, max_bytes=max_bytes)
                return time.monotonic() - t0, whole_batches(resp.responses[0].partitions[0].records)  # type: ignore[attr-defined]

            elapsed, batches = timed(0, 1 << 20)
            assert [base for base, _ in batches] == [0, 1]
            assert elapsed < delay_s, "an answer that reaches the high watermark was held"
            elapsed, first = timed(0, batches[0][1])  # room for the first batch only: the second is left behind
            assert first == batches[:1]
            assert elapsed >= delay_s
            elapsed, last = timed(1, 1 << 20)
            assert last == batches[1:]
            assert elapsed < delay_s
        finally:
            raw.close()


def test_fetch_past_the_end_and_before_the_start(loosely: BrokerThread, topic: str) -> None:
    create_topic(loosely.bootstrap_servers, topic, 1)
    produce_one(loosely.bootstrap_servers, topic)
    raw = Raw(loosely.bootstrap_servers)
    part = fetch(raw, topic, 5, max_wait_ms=0, min_bytes=1).responses[0].partitions[0]  # type: ignore[attr-defined]
    assert part.error_code == ErrorCode.offset_out_of_range
    assert (part.high_watermark, part.log_start_offset) == (1, 0)
    part = fetch(raw, topic, 1, max_wait_ms=0, min_bytes=1).responses[0].partitions[0]  # type: ignore[attr-defined]
    assert part.error_code == ErrorCode.none and part.records == b""


def test_acks_zero_is_fire_and_forget_but_lands(loosely: BrokerThread, topic: str) -> None:
    create_topic(loosely.bootstrap_servers, topic, 1)
    body = b"".join(b"m%d\n" % i for i in range(1000))
    r = subprocess.run(
        ["kcat", "-P", "-b", loosely.bootstrap_servers, "-t", topic, "-X", "acks=0"],
        input=body,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 10
    out = b""
    while time.monotonic() < deadline and out.count(b"\n") < 1000:
        out = subprocess.run(
            ["kcat", "-C", "-b", loosely.bootstrap_servers, "-t", topic, "-o", "beginning", "-e"],
            capture_output=True,
            timeout=30,
            check=False,
        ).stdout
    assert out == body


def test_offset_for_leader_epoch(loosely: BrokerThread, topic: str) -> None:
    from kio.schema.offset_for_leader_epoch.v4.request import (
        OffsetForLeaderEpochRequest,
        OffsetForLeaderPartition,
        OffsetForLeaderTopic,
    )

    create_topic(loosely.bootstrap_servers, topic, 1)
    for _ in range(3):
        produce_one(loosely.bootstrap_servers, topic)
    raw = Raw(loosely.bootstrap_servers)

    def ask(epoch: int, current: int = -1) -> tuple[int, int, int]:
        req = OffsetForLeaderEpochRequest(
            replica_id=-1,
            topics=(
                OffsetForLeaderTopic(
                    topic=topic,
                    partitions=(
                        OffsetForLeaderPartition(partition=0, current_leader_epoch=current, leader_epoch=epoch),
                    ),
                ),
            ),
        )
        p = raw.request(ApiKey.OFFSET_FOR_LEADER_EPOCH, 4, req).topics[0].partitions[0]  # type: ignore[attr-defined]
        return p.error_code.value, p.leader_epoch, p.end_offset

    assert ask(0) == (0, 0, 3)
    assert ask(5) == (0, -1, -1)
    assert ask(0, current=9)[0] == ErrorCode.unknown_leader_epoch.value


def test_auto_create_can_be_turned_off(tmp_path: Path) -> None:
    with BrokerThread(BrokerConfig(data_dir=str(tmp_path), port=0, auto_create_topics=False)) as b:
        r = subprocess.run(
            ["kcat", "-P", "-b", b.bootstrap_servers, "-t", "nope", "-X", "message.timeout.ms=2000"],
            input=b"x\n",
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert r.returncode != 0, r.stderr
        assert b.broker.logs.get("nope") is None


def test_the_shipped_pytest_fixture(loosely_broker: BrokerThread) -> None:
    """``loosely_broker`` is registered for users through the pytest11 entry point."""
    produce_one(loosely_broker.bootstrap_servers, "from-fixture", b"hello")
    assert loosely_broker.broker.logs.log("from-fixture", 0).log_end_offset == 1  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from([0, 1, 2, 3, 9, 18, 19, 20, 32]), version=st.integers(0, 18), body=st.binary(max_size=120))
def test_fuzz_request_decoder_raises_only_protocol_errors(key: int, version: int, body: bytes) -> None:
    """Invariant: decode_request returns a value or raises ProtocolError, never anything else."""
    frame = struct.pack(">hhi", key, version, 1) + body
    try:
        decode_request(frame)
    except ProtocolError:
        pass


@pytest.mark.parametrize("topic_cfg", ["LogAppendTime", "CreateTime"])
def test_timestamp_types_differential(cluster: Cluster, topic: str, topic_cfg: str) -> None:
    from confluent_kafka import Consumer, TopicPartition

    create_topic(cluster.bootstrap_servers, topic, 1, **{"message.timestamp.type": topic_cfg})
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    before = int(time.time() * 1000)
    p.produce(topic, b"v", timestamp=1_600_000_000_000)
    p.flush(10)
    c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "ts", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    m = c.consume(1, timeout=10)[0]
    c.close()
    kind, ts = m.timestamp()
    if topic_cfg == "LogAppendTime":
        assert kind == 2 and before - 1000 <= ts <= int(time.time() * 1000) + 1000  # TIMESTAMP_LOG_APPEND_TIME
    else:
        assert (kind, ts) == (1, 1_600_000_000_000)


def test_idle_connections_are_closed_but_long_polls_are_not(tmp_path: Path) -> None:
    from loosely.testing import FakeClock

    clock = FakeClock()
    cfg = BrokerConfig(data_dir=str(tmp_path), port=0, connection_idle_ms_max=60_000)
    with BrokerThread(cfg, clock=clock) as b:
        create_topic(b.bootstrap_servers, "t", 1)
        idle = Raw(b.bootstrap_servers)
        polling = Raw(b.bootstrap_servers)
        from kio.schema.api_versions.v3.request import ApiVersionsRequest

        idle.request(18, 3, ApiVersionsRequest(client_software_name="t", client_software_version="1"))
        result: list[object] = []
        t = threading.Thread(target=lambda: result.append(fetch(polling, "t", 0, max_wait_ms=4000, min_bytes=1)))
        t.start()
        time.sleep(0.3)
        clock.advance(60_001)
        assert idle.closed_by_peer()  # housekeeping runs every second
        t.join(timeout=10)
        assert result, "the long poll was cut off"
