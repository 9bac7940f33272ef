"""Offset and time index appends assert on both sides of the write: the file holds exactly the entries in memory,
and an entry fits its int32 fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from loosely.storage.fs import OsFileSystem
from loosely.storage.index import OFFSET_ENTRY, TIME_ENTRY, OffsetIndex, TimeIndex


def test_entries_append_in_memory_and_on_disk(tmp_path: Path) -> None:
    idx = OffsetIndex(OsFileSystem(), str(tmp_path / "0.index"), 100, 10)
    times = TimeIndex(OsFileSystem(), str(tmp_path / "0.timeindex"), 100)
    for i in range(3):
        idx.append(100 + 10 * i, 1000 * (i + 1))
        times.maybe_append(5 + i, 100 + 10 * i)
    assert len(idx) == 3 and len(times) == 3 and idx.lookup(115) == 2000
    assert (tmp_path / "0.index").stat().st_size == 3 * OFFSET_ENTRY.size
    assert (tmp_path / "0.timeindex").stat().st_size == 3 * TIME_ENTRY.size
    idx.close()
    times.close()


def test_a_file_out_of_step_with_memory_is_not_appended_to(tmp_path: Path) -> None:
    idx = OffsetIndex(OsFileSystem(), str(tmp_path / "0.index"), 0, 10)
    idx.append(5, 100)
    with open(tmp_path / "0.index", "ab") as f:
        f.write(b"\0\0\0")  # bytes the index did not write: a torn entry
    idx2 = OffsetIndex(OsFileSystem(), str(tmp_path / "0.index"), 0, 10)
    with pytest.raises(AssertionError):
        idx2.append(9, 200)
    assert (tmp_path / "0.index").stat().st_size == OFFSET_ENTRY.size + 3
    idx.close()
    idx2.close()


@pytest.mark.parametrize(("offset", "position"), [(99, 10), (100 + (1 << 31), 10), (150, 1 << 31)])
def test_an_entry_outside_its_int32_fields_is_refused(tmp_path: Path, offset: int, position: int) -> None:
    idx = OffsetIndex(OsFileSystem(), str(tmp_path / "0.index"), 100, 10)
    with pytest.raises(AssertionError):
        idx.append(offset, position)
    assert len(idx) == 0 and (tmp_path / "0.index").stat().st_size == 0
    idx.close()
