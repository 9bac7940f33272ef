"""Recovery is loud and keeps every byte: what it cuts off lands in quarantine files, logged, counted."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loosely.protocol.records import iter_batches
from loosely.storage.fs import OsFileSystem
from loosely.storage.log import PartitionLog
from storage._helpers import all_values, batch, clock, small_config

N = 60


def open_log(path: Path, *, clean: bool = False, **cfg: object) -> PartitionLog:
    return PartitionLog(OsFileSystem(), clock(), str(path), small_config(**cfg), clean_shutdown=clean)


def fill(path: Path, n: int = N, **cfg: object) -> PartitionLog:
    log = open_log(path, **cfg)
    for i in range(n):
        log.append(batch(b"value-%04d" % i, key=b"k%d" % i))
    return log  # not closed: as if killed


def flip(path: str, position: int, count: int = 4) -> None:
    with open(path, "r+b") as f:
        f.seek(position)
        old = f.read(count)
        f.seek(position)
        f.write(bytes(b ^ 0xFF for b in old))


def positions(path: str) -> list[tuple[int, int]]:
    """(position, base offset) of each batch of a segment file."""
    return [(p, h.base_offset) for p, h in iter_batches(Path(path).read_bytes())]


def quarantine_files(path: Path) -> dict[str, bytes]:
    return {n: (path / n).read_bytes() for n in sorted(os.listdir(path)) if n.endswith(".quarantine")}


def storage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("loosely.storage") and r.levelno >= 30]


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_damage_in_the_active_segment_is_cut_into_quarantine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    d = tmp_path / "t-0"
    log = fill(d, segment_bytes=1 << 20)
    seg = log.active.log.path
    batches = positions(seg)
    k = {"first": 0, "middle": len(batches) // 2, "last": len(batches) - 1}[where]
    pos, base = batches[k]
    flip(seg, pos + 40)  # inside the CRC-covered header fields
    original = Path(seg).read_bytes()
    caplog.set_level(logging.WARNING, logger="loosely.storage")
    again = open_log(d, segment_bytes=1 << 20)
    assert all_values(again) == [(i, b"value-%04d" % i) for i in range(base)]
    assert quarantine_files(d) == {f"{0:020d}.log.{pos}.quarantine": original[pos:]}
    assert Path(seg).read_bytes() == original[:pos]
    assert again.damaged_batches == 1
    assert again.quarantined() == {str(d / f"{0:020d}.log.{pos}.quarantine"): len(original) - pos}
    cut = [m for m in storage_warnings(caplog) if "cut" in m]
    assert len(cut) == 1
    assert "t-0" in cut[0] and f"{0:020d}.log" in cut[0] and f"at byte {pos}" in cut[0]
    assert f"cut {len(original) - pos} bytes (offsets from {base} on)" in cut[0]
    assert any("1 quarantine file(s)" in m for m in storage_warnings(caplog))

    # A second restart is quiet about damage, keeps the quarantine and reminds of it in one line.
    again.close()
    caplog.clear()
    third = open_log(d, segment_bytes=1 << 20)
    assert storage_warnings(caplog) == [m for m in storage_warnings(caplog) if "quarantine file(s)" in m]
    assert len(storage_warnings(caplog)) == 1
    assert quarantine_files(d) == {f"{0:020d}.log.{pos}.quarantine": original[pos:]}
    assert third.log_end_offset == base
    # Once the operator removes the file, the log forgets it.
    os.remove(d / f"{0:020d}.log.{pos}.quarantine")
    assert third.quarantined() == {}


def test_damage_in_an_old_segment_quarantines_the_later_segments_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "t-3"
    log = fill(d, segment_bytes=400)
    assert len(log.segments) > 4
    victim = log.segments[1]
    later = {Path(s.log.path).name: Path(s.log.path).read_bytes() for s in log.segments[2:]}
    pos, base = positions(victim.log.path)[1]
    flip(victim.log.path, pos + 30)
    original = Path(victim.log.path).read_bytes()
    caplog.set_level(logging.WARNING, logger="loosely.storage")
    again = open_log(d, segment_bytes=400)
    assert all_values(again) == [(i, b"value-%04d" % i) for i in range(base)]
    q = quarantine_files(d)
    name = Path(victim.log.path).name
    assert q.pop(f"{name}.{pos}.quarantine") == original[pos:]
    assert q == {f"{n}.0.quarantine": data for n, data in later.items()}
    assert sorted(n for n in os.listdir(d) if n.endswith(".log")) == [Path(s.log.path).name for s in log.segments[:2]]
    moved = [m for m in storage_warnings(caplog) if "follows the damage" in m]
    assert len(moved) == len(later)
    # The log goes on from the cut: new appends take the offsets after the last kept batch.
    assert again.append(batch(b"after")).base_offset == base


def test_a_torn_tail_is_quarantined_not_counted_as_damage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "t-0"
    log = fill(d, 10)
    with open(log.active.log.path, "ab") as f:
        f.write(b"\x00" * 30)
    caplog.set_level(logging.WARNING, logger="loosely.storage")
    again = open_log(d)
    assert again.log_end_offset == 10 and again.damaged_batches == 0
    assert list(quarantine_files(d).values()) == [b"\x00" * 30]
    assert any("too short for a batch header" in m for m in storage_warnings(caplog))


@pytest.mark.parametrize("clean", [True, False])
def test_an_index_that_lies_is_rebuilt_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, clean: bool
) -> None:
    d = tmp_path / "t-0"
    log = fill(d, 80, segment_bytes=1 << 20)
    idx = log.active.offset_index.path
    if clean:
        log.close()
        with open(idx, "ab") as f:
            f.write(b"\x01\x02\x03")  # a partial entry: load() refuses the file
    else:
        with open(idx, "r+b") as f:  # a well-formed entry pointing at the wrong batch: only the check finds it
            f.seek(4)
            f.write((int.from_bytes(f.read(4), "big") + 1).to_bytes(4, "big"))
    caplog.set_level(logging.WARNING, logger="loosely.storage")
    again = open_log(d, clean=clean, segment_bytes=1 << 20)
    assert all_values(again) == [(i, b"value-%04d" % i) for i in range(80)]
    assert again.index_rebuilds == 1
    warned = [m for m in storage_warnings(caplog) if "rebuilt the indexes" in m]
    assert len(warned) == 1 and "t-0" in warned[0] and "offsets 0-79" in warned[0]
    assert quarantine_files(d) == {}
    for start in (0, 37, 79):
        assert all_values(again, start)[0] == (start, b"value-%04d" % start)


def test_a_clean_restart_after_a_kill_is_silent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "t-0"
    fill(d, 30, segment_bytes=300)
    caplog.set_level(logging.WARNING, logger="loosely.storage")
    again = open_log(d, segment_bytes=300)
    assert again.log_end_offset == 30
    assert storage_warnings(caplog) == [] and quarantine_files(d) == {}


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_random_damage_never_destroys_a_byte(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    """Flip bytes anywhere in any segment, restart as after kill -9: what is served is a prefix of what was
    written, and for every segment the bytes kept plus its quarantine file are exactly the bytes it held."""
    d = tmp_path_factory.mktemp("t-0")
    log = fill(d, segment_bytes=700)
    paths = [s.log.path for s in log.segments]
    victim = data.draw(st.sampled_from(paths))
    size = os.path.getsize(victim)
    flip(victim, data.draw(st.integers(0, size - 1)), data.draw(st.integers(1, min(8, size))))
    held = {Path(p).name: Path(p).read_bytes() for p in paths}
    again = open_log(d, segment_bytes=700)
    values = [v for _, v in all_values(again)]
    assert values == [b"value-%04d" % i for i in range(len(values))]
    q = quarantine_files(d)
    for name, original in held.items():
        kept = (d / name).read_bytes() if (d / name).exists() else b""
        rest = q.pop(f"{name}.{len(kept)}.quarantine", b"")
        assert kept + rest == original, name
    assert q == {}


def test_a_flipped_base_offset_is_cut_not_a_crash(tmp_path: Path) -> None:
    """The base offset is outside the CRC: a flipped high byte makes an offset no index can hold."""
    d = tmp_path / "t-0"
    log = fill(d, 10)
    pos, _ = positions(log.active.log.path)[2]
    flip(log.active.log.path, pos + 1, 1)
    again = open_log(d)
    assert [o for o, _ in all_values(again)] == [0, 1]
    assert list(quarantine_files(d)) == [f"{0:020d}.log.{pos}.quarantine"]
