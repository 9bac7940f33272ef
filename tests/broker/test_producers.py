"""Idempotent producer state: Kafka's sequence rules as pure functions, a hypothesis model of a producer whose acks
get lost, and the manager over a real partition log (duplicates, markers, LSO, rebuild after restart)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from loosely.broker.producers import (
    BATCHES_RETAINED,
    Origin,
    ProducerEntry,
    ProducerIdAllocator,
    ProducerStateManager,
    after_batch,
    after_marker,
    check_batch,
)
from loosely.protocol.records import BatchHeader, NewRecord, build_batch, decode_records, iter_batches
from loosely.storage.log import LogError
from loosely.storage.manager import LogManager
from loosely.testing import FakeClock

PID = 7
NOW = 1_700_000_000_000


def header(seq: int, n: int = 1, *, epoch: int = 0, offset: int = 0, txn: bool = False, pid: int = PID) -> BatchHeader:
    attributes = 0x10 if txn else 0
    return BatchHeader(offset, 100, 0, 2, 0, attributes, n - 1, NOW, NOW, pid, epoch, seq, n)


def appended(entry: ProducerEntry | None, h: BatchHeader) -> ProducerEntry:
    assert check_batch(entry, h, Origin.CLIENT) is None
    return after_batch(entry, h)[0]


def refused(entry: ProducerEntry | None, h: BatchHeader, origin: Origin = Origin.CLIENT) -> ErrorCode:
    with pytest.raises(LogError) as e:
        check_batch(entry, h, origin)
    return e.value.error_code


def test_sequences_must_continue_and_epochs_must_not_go_back() -> None:
    e = appended(None, header(0, 3, offset=0))
    e = appended(e, header(3, 2, offset=3))
    assert e.last_seq == 4 and e.last_offset == 4
    assert refused(e, header(6)) == ErrorCode.out_of_order_sequence_number  # a gap
    assert refused(e, header(2, 2)) == ErrorCode.out_of_order_sequence_number  # overlaps, not a cached batch
    assert refused(e, header(0)) == ErrorCode.out_of_order_sequence_number  # back to 0 within the epoch
    # A new epoch starts at 0, and then the old epoch is a zombie.
    assert refused(e, header(5, epoch=1)) == ErrorCode.out_of_order_sequence_number
    e = appended(e, header(0, epoch=1, offset=5))
    assert e.batches == (e.batches[-1],), "an epoch bump forgets the old epoch's batches"
    assert refused(e, header(5, epoch=0)) == ErrorCode.invalid_producer_epoch


def test_a_retried_batch_is_a_duplicate_with_its_original_offsets() -> None:
    e = appended(None, header(0, 2, offset=10))
    e = appended(e, header(2, 3, offset=12))
    dup = check_batch(e, header(0, 2, offset=99), Origin.CLIENT)
    assert dup is not None and (dup.first_offset, dup.last_offset) == (10, 11)
    dup = check_batch(e, header(2, 3), Origin.CLIENT)
    assert dup is not None and (dup.first_offset, dup.last_offset) == (12, 14)
    # Only the last five batches are remembered.
    for i in range(BATCHES_RETAINED):
        e = appended(e, header(5 + i, offset=15 + i))
    assert refused(e, header(0, 2)) == ErrorCode.out_of_order_sequence_number


def test_sequence_wraps_at_int32_max() -> None:
    e = appended(None, header(2**31 - 2, 2, offset=0))
    assert e.last_seq == 2**31 - 1
    e = appended(e, header(0, offset=2))
    assert e.last_seq == 0


def test_an_unknown_producer_may_start_anywhere_and_coordinators_skip_sequences() -> None:
    assert check_batch(None, header(12345), Origin.CLIENT) is None
    e = appended(None, header(0))
    assert check_batch(e, header(-1), Origin.COORDINATOR) is None
    assert refused(ProducerEntry(PID, epoch=3), header(-1, epoch=2), Origin.COORDINATOR) == (
        ErrorCode.invalid_producer_epoch
    )


def test_transactions_open_on_data_and_close_on_markers() -> None:
    e, opened = after_batch(None, header(0, 2, offset=4, txn=True))
    assert opened and e.txn_first_offset == 4
    e, opened = after_batch(e, header(2, offset=6, txn=True))
    assert not opened and e.txn_first_offset == 4
    assert refused(e, header(3, offset=7)) == ErrorCode.invalid_txn_state  # non-transactional while open
    e2, aborted = after_marker(
        e, producer_id=PID, epoch=0, coordinator_epoch=0, timestamp_ms=NOW, marker_offset=9, commit=False
    )
    assert aborted is not None and (aborted.first_offset, aborted.last_offset) == (4, 9)
    assert e2.txn_first_offset is None
    e3, nothing = after_marker(
        e, producer_id=PID, epoch=0, coordinator_epoch=0, timestamp_ms=NOW, marker_offset=9, commit=True
    )
    assert nothing is None and e3.txn_first_offset is None


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.sampled_from(["send", "retry", "lost"]), st.integers(1, 4), st.integers(0, 8)), max_size=60)
)
def test_model_a_producer_whose_acks_get_lost_never_duplicates_or_reorders(
    steps: list[tuple[str, int, int]],
) -> None:
    """The producer sends batches in order; some acks are lost and it resends one of its unacknowledged batches
    (never more than five in flight, like max.in.flight=5). The log must hold each record exactly once, in order."""
    log: list[int] = []  # record sequence numbers, in log order
    entry: ProducerEntry | None = None
    next_seq = 0
    unacked: list[tuple[int, int]] = []  # (first seq, count) sent but not acknowledged
    in_log: list[tuple[int, int]] = []  # batches appended, in order
    for action, n, pick in steps:
        if action in ("send", "lost") and len(unacked) < BATCHES_RETAINED:
            batch = (next_seq, n)
            next_seq += n
        elif unacked:
            batch = unacked[pick % len(unacked)]
        else:
            continue
        h = header(batch[0], batch[1], offset=len(log))
        try:
            dup = check_batch(entry, h, Origin.CLIENT)
        except LogError as e:
            # Sent after a batch that never arrived: refused, the producer resends in order later. A retry of one
            # of the last five appended batches must never be refused: it gets its original offsets.
            assert e.error_code == ErrorCode.out_of_order_sequence_number
            assert batch not in in_log[-BATCHES_RETAINED:], "a retry of a recent batch was refused, not deduplicated"
            if batch not in unacked:
                unacked.append(batch)
            unacked.sort()
            continue
        if dup is None:
            entry = after_batch(entry, h)[0]
            log += list(range(batch[0], batch[0] + batch[1]))
            in_log.append(batch)
        else:
            assert log[dup.first_offset : dup.last_offset + 1] == list(range(batch[0], batch[0] + batch[1]))
        if action == "lost":
            if batch not in unacked:
                unacked.append(batch)
                unacked.sort()
        elif batch in unacked:
            unacked.remove(batch)
    assert log == list(range(len(log))), "a record was appended twice or out of order"


# --- the manager over a real log ---------------------------------------------------------------------------------


def batch(seq: int, n: int = 1, *, epoch: int = 0, txn: bool = False, pid: int = PID) -> bytes:
    return build_batch(
        [NewRecord(b"k", b"v%d" % (seq + i), NOW) for i in range(n)],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        transactional=txn,
    )


def open_logs(d: Path, clock: FakeClock) -> LogManager:
    m = LogManager(str(d), clock=clock)
    m.open()
    if m.get("t") is None:
        m.create_topic("t", 1)
    return m


def values(m: LogManager) -> list[bytes | None]:
    plog = m.log("t", 0)
    assert plog is not None
    data = plog.read(0, 1 << 20).read_bytes()
    return [r.value for pos, h in iter_batches(data) if not h.is_control for r in decode_records(data, pos, h, 1 << 20)]


def test_manager_dedups_tracks_transactions_and_rebuilds_after_restart(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    m = open_logs(tmp_path, clock)
    plog = m.log("t", 0)
    assert plog is not None
    mgr = ProducerStateManager(m, expiration_ms=86_400_000)
    assert mgr.append("t", 0, plog, batch(0, 2), None).base_offset == 0
    assert mgr.append("t", 0, plog, batch(2), None).base_offset == 2
    assert mgr.append("t", 0, plog, batch(0, 2), None).base_offset == 0  # a retry: not appended again
    assert mgr.duplicates_total == 1
    with pytest.raises(LogError) as e:
        mgr.append("t", 0, plog, batch(9), None)
    assert e.value.error_code == ErrorCode.out_of_order_sequence_number
    # A transaction of another producer, then an aborted one.
    mgr.append("t", 0, plog, batch(0, 2, txn=True, pid=8), None)
    assert mgr.last_stable_offset("t", 0, plog.high_watermark) == 3
    mgr.write_marker("t", 0, plog, producer_id=8, epoch=0, commit=True, coordinator_epoch=0, timestamp_ms=NOW)
    assert mgr.last_stable_offset("t", 0, plog.high_watermark) == plog.high_watermark
    mgr.append("t", 0, plog, batch(2, 3, txn=True, pid=8), None)
    mgr.write_marker("t", 0, plog, producer_id=8, epoch=0, commit=False, coordinator_epoch=0, timestamp_ms=NOW)
    assert mgr.aborted("t", 0, 0, plog.high_watermark) == [(8, 6)]
    assert mgr.aborted("t", 0, 10, 20) == []
    mgr.append("t", 0, plog, batch(5, txn=True, pid=8), None)  # left open
    lso = mgr.last_stable_offset("t", 0, plog.high_watermark)
    assert lso == 10
    entries = {pid: mgr.entry("t", 0, pid) for pid in (PID, 8)}
    m.close()

    # A restart: the same state comes back from the log alone.
    m = open_logs(tmp_path, clock)
    plog = m.log("t", 0)
    assert plog is not None
    again = ProducerStateManager(m, expiration_ms=86_400_000)
    assert again.rebuild() == 7  # batches and markers read
    assert {pid: again.entry("t", 0, pid) for pid in (PID, 8)} == entries
    assert again.last_stable_offset("t", 0, plog.high_watermark) == lso
    assert again.aborted("t", 0, 0, plog.high_watermark) == [(8, 6)]
    assert again.append("t", 0, plog, batch(2), None).base_offset == 2, "duplicates are still recognised"
    assert values(m) == [b"v0", b"v1", b"v2", b"v0", b"v1", b"v2", b"v3", b"v4", b"v5"]
    m.close()


def test_idle_producers_expire_but_not_while_their_transaction_is_open(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    m = open_logs(tmp_path, clock)
    plog = m.log("t", 0)
    assert plog is not None
    mgr = ProducerStateManager(m, expiration_ms=1000)
    mgr.append("t", 0, plog, batch(0), None)
    mgr.append("t", 0, plog, batch(0, txn=True, pid=9), None)
    assert mgr.expire(NOW + 999) == 0
    assert mgr.expire(NOW + 1000) == 1
    assert mgr.entry("t", 0, PID) is None and mgr.entry("t", 0, 9) is not None
    m.close()


def test_producer_ids_are_never_reused_across_restarts(tmp_path: Path) -> None:
    m = open_logs(tmp_path, FakeClock(NOW))
    ids = ProducerIdAllocator(m.fs, m.data_dir)
    first = [ids.allocate() for _ in range(3)]
    assert first == [0, 1, 2]
    # A crash loses the in-memory counter; the persisted block end is where the next instance starts.
    again = ProducerIdAllocator(m.fs, m.data_dir)
    assert again.allocate() >= 3 and again.allocate() > first[-1]
    assert ProducerIdAllocator(m.fs, m.data_dir, at_least=5000).allocate() == 5000
    m.close()
