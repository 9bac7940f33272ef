"""Disk errors (ENOSPC, EIO) under a log: KAFKA_STORAGE_ERROR, nothing torn, nothing acknowledged lost, quiet logs."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

from loosely.protocol.errors import ErrorCode
from loosely.protocol.records import iter_batches
from loosely.storage.dirlock import DataDirLockedError
from loosely.storage.faults import FAULT_LOG_INTERVAL_MS, StorageFaults
from loosely.storage.log import PartitionLog, StorageError
from loosely.storage.manager import LogManager
from loosely.testing import FakeClock, FaultyFileSystem
from storage._helpers import all_values, batch, clock, small_config

ENOSPC, EIO = errno.ENOSPC, errno.EIO


def open_log(path: Path, fs: FaultyFileSystem, c: FakeClock | None = None, **cfg: object) -> PartitionLog:
    return PartitionLog(fs, c or clock(), str(path), small_config(**cfg))


def files_are_whole(log: PartitionLog) -> None:
    """Every segment file on disk is whole batches with contiguous offsets, and its indexes hold whole entries."""
    expect = log.segments[0].base_offset
    for seg in log.segments:
        data = Path(seg.log.path).read_bytes()
        assert len(data) == seg.size
        end = 0
        for pos, h in iter_batches(data):
            assert pos == end and h.base_offset == expect
            end, expect = pos + h.size, h.next_offset
        assert end == len(data)
        assert os.path.getsize(seg.offset_index.path) == 8 * len(seg.offset_index)
        assert os.path.getsize(seg.time_index.path) == 12 * len(seg.time_index)
    assert expect == log.log_end_offset


def append_until_refused(log: PartitionLog, acked: dict[int, bytes], n: int, tag: str) -> int:
    refused = 0
    for i in range(n):
        v = b"%s-%d" % (tag.encode(), i)
        try:
            acked[log.append(batch(v, key=b"k")).base_offset] = v
        except StorageError as e:
            assert e.error_code == ErrorCode.kafka_storage_error
            refused += 1
    return refused


@pytest.mark.parametrize(
    ("operation", "path", "error", "cfg"),
    [
        pytest.param("append", ".log", ENOSPC, {}, id="short-write-enospc"),
        pytest.param("append", ".log", EIO, {}, id="write-eio"),
        pytest.param("append", ".index", ENOSPC, {}, id="index-write"),
        pytest.param("append", ".timeindex", EIO, {}, id="timeindex-write"),
        pytest.param("fsync", ".log", EIO, {"flush_messages": 1}, id="fsync-flush-messages"),
        pytest.param("open", ".log", ENOSPC, {"segment_bytes": 300}, id="roll-open"),
        pytest.param("fsync", ".log", EIO, {"segment_bytes": 300}, id="roll-fsync"),
    ],
)
def test_a_failed_append_is_undone_and_writes_resume(
    tmp_path: Path, operation: str, path: str, error: int, cfg: dict[str, object]
) -> None:
    fs = FaultyFileSystem(seed=0)
    log = open_log(tmp_path / "t-0", fs, **cfg)
    acked: dict[int, bytes] = {}
    assert append_until_refused(log, acked, 20, "before") == 0
    fs.fail(operation, error=error, path_contains=path, partial=True)
    assert append_until_refused(log, acked, 30, "during") > 0
    assert not log.refusing_writes
    files_are_whole(log)  # no torn batch, no torn index entry left behind
    assert dict(all_values(log)) == acked  # reads keep working and show exactly what was acknowledged
    fs.heal()
    assert append_until_refused(log, acked, 20, "after") == 0
    files_are_whole(log)
    assert dict(all_values(log)) == acked
    log.close()
    for clean in (True, False):
        again = PartitionLog(fs, clock(), str(tmp_path / "t-0"), small_config(**cfg), clean_shutdown=clean)
        assert dict(all_values(again)) == acked
        again.close()


def test_a_failed_undo_refuses_writes_until_the_truncation_succeeds(tmp_path: Path) -> None:
    fs = FaultyFileSystem(seed=0)
    log = open_log(tmp_path / "t-0", fs)
    acked: dict[int, bytes] = {}
    append_until_refused(log, acked, 10, "before")
    fs.fail("append", "truncate", error=EIO, path_contains=".log", partial=True)
    assert append_until_refused(log, acked, 1, "torn") == 1
    assert log.refusing_writes and log.faults.statistics().logs_refusing_writes == 1
    fs.heal()
    fs.fail("truncate", error=EIO)  # the data could be written now, but the torn bytes can't be cut off yet
    with pytest.raises(StorageError) as refused:
        log.append(batch(b"while-torn", key=b"k"))
    assert refused.value.error_code == ErrorCode.kafka_storage_error
    assert dict(all_values(log)) == acked  # readers never see the torn bytes
    assert log.housekeeping() == 0 and log.refusing_writes  # housekeeping retries quietly
    fs.heal()
    log.housekeeping()  # ... and repairs once the disk lets it, without a write
    assert not log.refusing_writes and log.faults.statistics().logs_refusing_writes == 0
    files_are_whole(log)
    append_until_refused(log, acked, 5, "after")
    assert dict(all_values(log)) == acked
    assert sorted(acked) == list(range(15))


def test_a_log_closed_while_refusing_writes_is_recovered_on_the_next_start(tmp_path: Path) -> None:
    fs = FaultyFileSystem(seed=0)
    mgr = LogManager(str(tmp_path / "data"), fs=fs, clock=clock())
    mgr.open()
    plog = mgr.create_topic("t", 1).logs[0]
    acked: dict[int, bytes] = {}
    append_until_refused(plog, acked, 10, "before")
    fs.fail("append", "truncate", "fsync", error=EIO, path_contains="t-0", partial=True)
    append_until_refused(plog, acked, 1, "torn")
    mgr.close()  # reports, does not raise, and releases the lock
    assert not (tmp_path / "data" / ".kafka_cleanshutdown").exists()
    again = LogManager(str(tmp_path / "data"), clock=clock())
    again.open()
    assert not again.was_clean_shutdown
    again_log = again.log("t", 0)
    assert again_log is not None and dict(all_values(again_log)) == acked
    files_are_whole(again_log)
    again.close()


def test_one_line_per_interval_no_traceback_and_a_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fs = FaultyFileSystem(seed=0)
    c = clock()
    log = open_log(tmp_path / "t-0", fs, c)
    fs.fail("append", error=ENOSPC, path_contains=".log", partial=True)
    caplog.set_level(logging.INFO, logger="loosely")
    assert append_until_refused(log, {}, 50, "a") == 50
    lines = [r for r in caplog.records if r.name.startswith("loosely")]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING and lines[0].exc_info is None
    assert "No space left on device" in lines[0].getMessage() and "t-0" in lines[0].getMessage()
    c.advance(FAULT_LOG_INTERVAL_MS - 1)
    append_until_refused(log, {}, 1, "b")
    assert len([r for r in caplog.records if r.name.startswith("loosely")]) == 1  # under the interval: quiet
    c.advance(1)
    append_until_refused(log, {}, 1, "c")  # at the interval: a second line, counting the suppressed ones
    lines = [r for r in caplog.records if r.name.startswith("loosely")]
    assert len(lines) == 2 and "50 more" in lines[1].getMessage()
    fs.heal()
    for i in range(5):
        log.append(batch(b"ok-%d" % i, key=b"k"))
    lines = [r for r in caplog.records if r.name.startswith("loosely")]
    assert len(lines) == 3 and "works again" in lines[2].getMessage()  # once, not per append
    assert log.faults.statistics().errors_total == {"append": 52}


def test_housekeeping_checkpoints_and_close_on_a_failing_disk_never_raise(tmp_path: Path) -> None:
    fs = FaultyFileSystem(seed=0)
    c = clock()
    mgr = LogManager(
        str(tmp_path / "data"),
        fs=fs,
        clock=c,
        broker_defaults={"log.segment.bytes": "300", "log.retention.ms": "1000", "log.flush.interval.ms": "10"},
    )
    mgr.open()
    plog = mgr.create_topic("t", 2).logs[0]
    acked: dict[int, bytes] = {}
    append_until_refused(plog, acked, 30, "a")
    fs.fail("fsync", "open", "remove", "write_atomic", "rename", "truncate", error=EIO)
    c.advance(60_000)
    mgr.flush_due()
    assert mgr.tick() == 0  # retention could not delete; reported, not raised
    assert mgr.write_checkpoints() is False
    stats = mgr.faults.statistics().errors_total
    assert stats["checkpoint"] == 1 and stats["flush"] >= 1
    fs.heal()
    assert mgr.tick() > 0 and mgr.write_checkpoints() is True
    mgr.close()
    assert (tmp_path / "data" / ".kafka_cleanshutdown").exists()


def test_a_failing_open_releases_the_data_dir_lock(tmp_path: Path) -> None:
    mgr = LogManager(str(tmp_path / "data"), clock=clock())
    mgr.open()
    mgr.create_topic("t", 1)
    mgr.close()
    fs = FaultyFileSystem(seed=0)
    fs.fail("open", error=EIO, path_contains=".log")
    with pytest.raises(OSError, match="Input/output error"):
        LogManager(str(tmp_path / "data"), fs=fs, clock=clock()).open()
    again = LogManager(str(tmp_path / "data"), clock=clock())
    again.open()  # not DataDirLockedError: the failed open let go
    again.close()


def test_the_same_process_cannot_open_a_data_dir_twice(tmp_path: Path) -> None:
    first = LogManager(str(tmp_path / "data"), clock=clock())
    first.open()
    with pytest.raises(DataDirLockedError) as e:
        LogManager(str(tmp_path / "data"), clock=clock()).open()
    assert e.value.holder_pid == os.getpid() and str(tmp_path / "data") in str(e.value)
    assert (tmp_path / "data" / ".lock").read_text().strip() == str(os.getpid())
    first.close()
    second = LogManager(str(tmp_path / "data"), clock=clock())
    second.open()
    second.close()


@pytest.mark.parametrize("keys", [2, 3, 4])
def test_the_rate_limiter_remembers_at_most_keys_max_keys(keys: int, caplog: pytest.LogCaptureFixture) -> None:
    """Under the limit every key stays quiet within the interval; over it, the oldest key is forgotten."""
    faults = StorageFaults(clock(), keys_max=3)
    caplog.set_level(logging.WARNING, logger="loosely")
    for k in range(keys):
        faults.report(f"t-{k}", "append", OSError(ENOSPC, "No space left on device"))
    faults.report("t-0", "append", OSError(ENOSPC, "No space left on device"))
    assert len(caplog.records) == keys + (1 if keys > 3 else 0)
    assert len(faults._windows) == min(keys, 3)


def test_topic_admin_on_a_failing_disk_answers_storage_error_and_changes_nothing(tmp_path: Path) -> None:
    fs = FaultyFileSystem(seed=0)
    mgr = LogManager(str(tmp_path / "data"), fs=fs, clock=clock())
    mgr.open()
    mgr.create_topic("t", 1, {"retention.ms": "1000"})
    fs.fail("write_atomic", "makedirs", "open", "remove", error=ENOSPC)
    for attempt in (
        lambda: mgr.create_topic("u", 2),
        lambda: mgr.add_partitions("t", 3),
        lambda: mgr.set_overrides("t", {"retention.ms": "2000"}),
        lambda: mgr.delete_topic("t"),
    ):
        with pytest.raises(StorageError) as e:
            attempt()
        assert e.value.error_code == ErrorCode.kafka_storage_error
    t = mgr.get("t")
    assert mgr.get("u") is None and t is not None and t.partitions == 1 and t.overrides == {"retention.ms": "1000"}
    fs.heal()
    mgr.close()
    again = LogManager(str(tmp_path / "data"), clock=clock())
    again.open()
    t = again.get("t")
    assert again.get("u") is None and t is not None and t.partitions == 1 and t.overrides == {"retention.ms": "1000"}
    assert sorted(p.name for p in (tmp_path / "data").iterdir() if p.is_dir() and not p.name.startswith(".")) == ["t-0"]
    again.close()
