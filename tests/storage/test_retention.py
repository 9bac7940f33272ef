from __future__ import annotations

from pathlib import Path

import pytest

from loosely.storage.config import LogConfig
from loosely.storage.fs import OsFileSystem
from loosely.storage.log import PartitionLog
from loosely.storage.retention import SegmentInfo, deletable_prefix, should_roll
from loosely.testing import FakeClock
from storage._helpers import all_values, batch, small_config

NOW = 1_700_000_000_000


def seg(base: int, nxt: int, size: int, ts: int) -> SegmentInfo:
    return SegmentInfo(base, nxt, size, ts, ts, ts)


def test_time_retention_deletes_expired_segments_from_the_front_only() -> None:
    cfg = LogConfig(retention_ms=1000)
    segs = [seg(0, 10, 100, NOW - 5000), seg(10, 20, 100, NOW - 10), seg(20, 30, 100, NOW - 5000), seg(30, 30, 0, -1)]
    assert deletable_prefix(segs, cfg, 0, NOW) == 1


@pytest.mark.parametrize(("age", "deleted"), [(999, 0), (1000, 0), (1001, 1)])
def test_retention_ms_at_under_over(age: int, deleted: int) -> None:
    segs = [seg(0, 10, 100, NOW - age), seg(10, 10, 0, -1)]
    assert deletable_prefix(segs, LogConfig(retention_ms=1000), 0, NOW) == deleted


@pytest.mark.parametrize(("limit", "deleted"), [(300, 0), (201, 0), (200, 1), (199, 1), (100, 2), (0, 3)])
def test_size_retention(limit: int, deleted: int) -> None:
    segs = [seg(0, 10, 100, NOW), seg(10, 20, 100, NOW), seg(20, 30, 100, NOW), seg(30, 30, 0, -1)]
    assert deletable_prefix(segs, LogConfig(retention_bytes=limit), 0, NOW) == deleted


def test_compact_only_topics_keep_old_segments_but_honour_the_log_start_offset() -> None:
    cfg = LogConfig(retention_ms=1, retention_bytes=1, delete=False, compact=True)
    segs = [seg(0, 10, 100, NOW - 9999), seg(10, 20, 100, NOW - 9999), seg(20, 20, 0, -1)]
    assert deletable_prefix(segs, cfg, 0, NOW) == 0
    assert deletable_prefix(segs, cfg, 10, NOW) == 1


def test_infinite_retention() -> None:
    segs = [seg(0, 10, 100, 0), seg(10, 10, 0, -1)]
    assert deletable_prefix(segs, LogConfig(retention_ms=-1, retention_bytes=-1), 0, NOW) == 0


@pytest.mark.parametrize(("size", "incoming", "roll"), [(900, 99, False), (900, 100, False), (900, 101, True)])
def test_roll_by_size_at_under_over(size: int, incoming: int, roll: bool) -> None:
    active = SegmentInfo(0, 5, size, NOW, NOW, NOW)
    assert should_roll(active, incoming, 10, LogConfig(segment_bytes=1000), NOW) is roll


def test_roll_by_age_and_never_an_empty_segment() -> None:
    cfg = LogConfig(segment_ms=1000)
    active = SegmentInfo(0, 5, 10, NOW - 2000, NOW - 2000, NOW - 2000)
    assert should_roll(active, 1, 6, cfg, NOW)
    assert not should_roll(SegmentInfo(0, 0, 0, -1, -1, NOW - 99999), 1, 1, cfg, NOW)


def test_log_level_retention_with_a_fake_clock(tmp_path: Path) -> None:
    clock = FakeClock(now_ms=NOW)
    log = PartitionLog(OsFileSystem(), clock, str(tmp_path / "p"), small_config(segment_bytes=300, retention_ms=60_000))
    for i in range(30):
        log.append(batch(b"%d" % i, key=b"k", ts=clock.now_ms()))
        clock.advance(1000)
    n_before = len(log.segments)
    assert log.apply_retention() == 0
    clock.advance(60_000 - 25_000)
    deleted = log.apply_retention()
    assert 0 < deleted < n_before
    assert log.log_start_offset == log.segments[0].base_offset > 0
    assert all_values(log)[0][0] == log.log_start_offset
    clock.advance(1_000_000)
    log.apply_retention()
    # Everything expired: the log keeps an empty active segment at the log end offset.
    assert log.log_start_offset == log.log_end_offset == 30
    assert len(log.segments) == 1
    assert log.append(batch(b"new", key=b"k", ts=clock.now_ms())).base_offset == 30


def test_delete_records_advances_the_log_start_offset(tmp_path: Path) -> None:
    log = PartitionLog(OsFileSystem(), FakeClock(now_ms=NOW), str(tmp_path / "p"), small_config(segment_bytes=300))
    for i in range(30):
        log.append(batch(b"%d" % i, key=b"k"))
    assert log.delete_records_before(17) == 17
    assert all_values(log)[0][0] <= 17
    assert log.segments[0].base_offset <= 17 < log.segments[0].next_offset
    from loosely.storage.log import LogError

    with pytest.raises(LogError):
        log.read(16, 100)
    with pytest.raises(LogError):
        log.delete_records_before(31)
    assert log.delete_records_before(-1) == 30
