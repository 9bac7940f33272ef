"""Crash safety: whatever state a crash leaves on disk, reopening recovers every acknowledged batch."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loosely.storage.fs import OsFileSystem
from loosely.storage.log import LogError, PartitionLog
from loosely.storage.manager import LogManager
from loosely.testing import FaultyFileSystem, InjectedFault
from storage._helpers import all_values, batch, clock, small_config


def reopen(path: Path, **cfg: object) -> PartitionLog:
    # clean_shutdown=False: what a restart after kill -9 sees.
    return PartitionLog(OsFileSystem(), clock(), str(path), small_config(**cfg), clean_shutdown=False)


def fill(path: Path, n: int, **cfg: object) -> PartitionLog:
    log = PartitionLog(OsFileSystem(), clock(), str(path), small_config(**cfg))
    for i in range(n):
        log.append(batch(b"value-%04d" % i, key=b"k%d" % i))
    return log  # not closed: as if killed


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(min_value=1, max_value=200))
def test_a_torn_tail_is_truncated_at_the_last_whole_batch(tmp_path_factory: pytest.TempPathFactory, cut: int) -> None:
    path = tmp_path_factory.mktemp("log")
    log = fill(path, 30, segment_bytes=10_000)
    active = log.active.log.path
    size = os.path.getsize(active)
    with open(active, "r+b") as f:
        f.truncate(size - cut)
    again = reopen(path, segment_bytes=10_000)
    values = all_values(again)
    assert values == [(i, b"value-%04d" % i) for i in range(len(values))]
    assert len(values) >= 30 - (cut // 60 + 1)
    assert again.append(batch(b"after")).base_offset == len(values)


def test_garbage_appended_after_a_crash_is_dropped(tmp_path: Path) -> None:
    log = fill(tmp_path / "p", 10)
    with open(log.active.log.path, "ab") as f:
        f.write(os.urandom(333))
    again = reopen(tmp_path / "p")
    assert again.log_end_offset == 10
    assert again.truncated_bytes_on_recovery == 333


def test_a_corrupt_batch_in_an_old_segment_truncates_there_and_drops_what_follows(tmp_path: Path) -> None:
    log = fill(tmp_path / "p", 60, segment_bytes=400)
    victim = log.segments[2]
    with open(victim.log.path, "r+b") as f:
        f.seek(victim.size - 5)
        f.write(b"\xff\xff\xff\xff\xff")
    again = reopen(tmp_path / "p", segment_bytes=400)
    values = all_values(again)
    assert values == [(i, b"value-%04d" % i) for i in range(len(values))]
    assert len(values) < 60
    assert again.log_end_offset == len(values)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete", "backwards"])
def test_damaged_indexes_are_rebuilt(tmp_path: Path, damage: str) -> None:
    log = fill(tmp_path / "p", 80, segment_bytes=2000)
    log.close()
    idx = log.segments[0].offset_index.path
    if damage == "truncate":
        with open(idx, "r+b") as f:
            f.truncate(os.path.getsize(idx) - 3)
    elif damage == "garbage":
        with open(idx, "r+b") as f:
            f.write(os.urandom(16))
    elif damage == "delete":
        os.remove(idx)
    else:
        with open(idx, "ab") as f:
            f.write(b"\x00\x00\x00\x01\x00\x00\x00\x01")
    again = PartitionLog(
        OsFileSystem(),
        clock(),
        str(tmp_path / "p"),
        small_config(segment_bytes=2000),
        recovery_point=80,
        clean_shutdown=True,
    )
    for start in range(80):
        assert all_values(again, start)[0][0] <= start < all_values(again, start)[0][0] + 1 or start == 0
        assert all_values(again, start)[0] == (start, b"value-%04d" % start)


@pytest.mark.parametrize("seed", range(8))
def test_faulty_disk_never_loses_an_acknowledged_batch(tmp_path: Path, seed: int) -> None:
    """Random I/O failures and torn writes; every append that returned must survive the reopen."""
    rng = random.Random(seed)
    acked: dict[int, bytes] = {}
    path = tmp_path / "data"
    for _round in range(5):
        fs = FaultyFileSystem(seed=rng.randrange(1 << 30), failure_probability=0.02, torn_write_probability=0.02)
        try:
            mgr = LogManager(str(path), fs=fs, clock=clock(), broker_defaults={"log.segment.bytes": "600"})
            mgr.open()
            t = mgr.get("t") or mgr.create_topic("t", 1)
            for i in range(200):
                v = b"r%d-%d" % (_round, i)
                res = t.logs[0].append(batch(v, key=b"k"))
                acked[res.base_offset] = v
        except (InjectedFault, LogError, OSError):
            pass  # the "process" died here; whatever was acknowledged must still be there
        mgr.lock.release()  # as the kernel does for a process that dies
        mgr = LogManager(str(path), clock=clock(), broker_defaults={"log.segment.bytes": "600"})
        mgr.open()
        t = mgr.get("t")
        if t is None:
            assert not acked
            continue
        got = dict(all_values(t.logs[0]))
        for off, v in acked.items():
            assert got.get(off) == v, f"acknowledged offset {off} lost after round {_round}"
        offsets = sorted(got)
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))) if offsets else True
        mgr.close()


def test_interrupted_cleaner_swap_is_completed_on_restart(tmp_path: Path) -> None:
    """A committed "<base>.log.<end>.swap" replaces the segments in its range when the log reopens."""
    log = fill(tmp_path / "p", 40, segment_bytes=300)
    log.roll()
    first, second = log.segments[0], log.segments[1]
    # A "cleaned" replacement of the first two segments: just the first segment's bytes, renamed as a swap.
    data = Path(first.log.path).read_bytes()
    swap = tmp_path / "p" / f"{first.base_offset:020d}.log.{second.next_offset}.swap"
    swap.write_bytes(data)
    (tmp_path / "p" / f"{first.base_offset:020d}.log.cleaned").write_bytes(b"never installed")
    again = reopen(tmp_path / "p", segment_bytes=300)
    names = sorted(os.listdir(tmp_path / "p"))
    assert not any(n.endswith((".swap", ".cleaned")) for n in names)
    assert f"{second.base_offset:020d}.log" not in names
    offsets = [o for o, _ in all_values(again)]
    assert offsets[: first.next_offset] == list(range(first.next_offset))
    assert second.base_offset not in offsets  # replaced by the (shorter) swap
    assert offsets[-1] == 39


def test_recovery_keeps_batches_larger_than_a_since_lowered_max_message_bytes(tmp_path: Path) -> None:
    cfg = {"max_message_bytes": 2_000_000, "segment_bytes": 10_000_000}
    log = PartitionLog(OsFileSystem(), clock(), str(tmp_path / "p"), small_config(**cfg))
    log.append(batch(b"x" * 1_500_000, key=b"big"))
    log.append(batch(b"small", key=b"s"))
    again = reopen(tmp_path / "p", max_message_bytes=1000, segment_bytes=10_000_000)  # lowered, then a crash
    assert [o for o, _ in all_values(again)] == [0, 1]
