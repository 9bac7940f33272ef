from __future__ import annotations

import os
from pathlib import Path

from loosely.protocol.records import ControlType, NewRecord, build_batch, build_control_batch
from loosely.storage.cleaner import SegmentRef, clean, plan
from loosely.storage.fs import OsFileSystem
from loosely.storage.log import PartitionLog
from loosely.testing import FakeClock
from storage._helpers import all_values, small_config

NOW = 1_700_000_000_000


def kv(key: bytes, value: bytes | None, ts: int = NOW) -> bytes:
    return build_batch([NewRecord(key, value, ts)])


def refs(log: PartitionLog) -> list[SegmentRef]:
    return [
        SegmentRef(s.base_offset, s.next_offset, s.log.path, s.size, s.max_timestamp) for s in log.cleanable_segments()
    ]


def run_cleaner(log: PartitionLog, first_dirty: int, clock: FakeClock, *, force: bool = True) -> int:
    task = plan(refs(log), first_dirty, log.config, clock.now_ms(), log.high_watermark, force=force)
    if task is None:
        return first_dirty
    result = clean(log.fs, task)
    assert log.install_cleaned(log.cleanable_segments(), result)
    return result.first_dirty_offset


def make(tmp_path: Path, clock: FakeClock, **cfg: object) -> PartitionLog:
    return PartitionLog(
        OsFileSystem(), clock, str(tmp_path / "p"), small_config(compact=True, delete=False, segment_bytes=400, **cfg)
    )


def latest(log: PartitionLog) -> dict[bytes, tuple[int, bytes | None]]:
    from loosely.protocol.records import decode_records, iter_batches

    out = {}
    data = log.read(log.log_start_offset, 1 << 30).read_bytes()
    for pos, h in iter_batches(data):
        for r in decode_records(data, pos, h, 1 << 24):
            if not h.is_control:
                out.setdefault(r.key, []).append((r.offset, r.value))
    return out  # type: ignore[return-value]


def test_keeps_the_latest_record_per_key_with_its_offset(tmp_path: Path) -> None:
    clock = FakeClock(now_ms=NOW)
    log = make(tmp_path, clock)
    expected: dict[bytes, tuple[int, bytes]] = {}
    for i in range(300):
        key = b"k%d" % (i % 7)
        r = log.append(kv(key, b"v%d" % i))
        expected[key] = (r.base_offset, b"v%d" % i)
    active_before = (log.active.base_offset, log.active.size)
    size_before = sum(s.size for s in log.segments)
    run_cleaner(log, 0, clock)
    got = latest(log)
    active_keys = {k for k, (o, _) in expected.items() if o >= log.active.base_offset}
    for k, (off, v) in expected.items():
        assert got[k][-1] == (off, v)
        if k not in active_keys:
            assert len(got[k]) == 1, f"{k!r} kept older versions"
    assert (log.active.base_offset, log.active.size) == active_before  # the active segment is untouched
    assert sum(s.size for s in log.segments) < size_before / 5
    offsets = [o for o, _ in all_values(log)]
    assert offsets == sorted(offsets)
    assert log.log_end_offset == 300


def test_tombstones_survive_delete_retention_then_go(tmp_path: Path) -> None:
    clock = FakeClock(now_ms=NOW)
    log = make(tmp_path, clock, delete_retention_ms=10_000)
    log.append(kv(b"a", b"1"))
    log.append(kv(b"b", b"1"))
    log.append(kv(b"a", None))
    for i in range(60):
        log.append(kv(b"filler%d" % (i % 3), b"x" * 20))
    dirty = run_cleaner(log, 0, clock)
    got = latest(log)
    assert got[b"a"] == [(2, None)]  # the tombstone stays, the value it deleted is gone
    clock.advance(9_999)
    dirty = run_cleaner(log, dirty, clock)
    assert latest(log)[b"a"] == [(2, None)]
    clock.advance(2)
    run_cleaner(log, dirty, clock)
    after = latest(log)
    assert b"a" not in after
    assert after[b"b"] == [(1, b"1")]


def test_aborted_transaction_records_are_removed(tmp_path: Path) -> None:
    clock = FakeClock(now_ms=NOW)
    log = make(tmp_path, clock)

    def txn_batch(pid: int, key: bytes, value: bytes) -> bytes:
        return build_batch(
            [NewRecord(key, value, NOW)], producer_id=pid, producer_epoch=0, base_sequence=0, transactional=True
        )

    log.append(kv(b"k", b"committed-before"))
    log.append(txn_batch(7, b"k", b"aborted"))
    log.append(
        build_control_batch(ControlType.ABORT, producer_id=7, producer_epoch=0, coordinator_epoch=0, timestamp_ms=NOW),
        from_client=False,
    )
    log.append(txn_batch(8, b"j", b"committed"))
    log.append(
        build_control_batch(ControlType.COMMIT, producer_id=8, producer_epoch=0, coordinator_epoch=0, timestamp_ms=NOW),
        from_client=False,
    )
    for _i in range(40):
        log.append(kv(b"filler", b"x" * 30))
    run_cleaner(log, 0, clock)
    got = latest(log)
    assert [v for _, v in got[b"k"]] == [b"committed-before"]
    assert [v for _, v in got[b"j"]] == [b"committed"]


def test_not_due_below_the_dirty_ratio(tmp_path: Path) -> None:
    clock = FakeClock(now_ms=NOW)
    log = make(tmp_path, clock, min_cleanable_dirty_ratio=0.5)
    for i in range(100):
        log.append(kv(b"k%d" % i, b"unique"))
    dirty = run_cleaner(log, 0, clock, force=True)
    assert plan(refs(log), dirty, log.config, clock.now_ms(), log.high_watermark) is None


def test_min_compaction_lag_holds_young_segments_back(tmp_path: Path) -> None:
    clock = FakeClock(now_ms=NOW)
    log = make(tmp_path, clock, min_compaction_lag_ms=60_000)
    for i in range(100):
        log.append(kv(b"k", b"%d" % i, ts=clock.now_ms()))
    assert plan(refs(log), 0, log.config, clock.now_ms(), log.high_watermark, force=True) is None
    clock.advance(60_001)
    assert plan(refs(log), 0, log.config, clock.now_ms(), log.high_watermark, force=True) is not None


def test_cleaning_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock(now_ms=NOW)
    log = make(tmp_path, clock)
    for i in range(200):
        log.append(kv(b"k%d" % (i % 5), b"v%d" % i))
    run_cleaner(log, 0, clock)
    before = all_values(log)
    log.close()
    again = PartitionLog(OsFileSystem(), clock, str(tmp_path / "p"), log.config, clean_shutdown=False)
    assert all_values(again) == before
    assert not [n for n in os.listdir(tmp_path / "p") if n.endswith((".cleaned", ".swap"))]
    assert again.append(kv(b"k0", b"next")).base_offset == 200
