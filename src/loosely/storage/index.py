"""Sparse offset and time indexes of a segment, in Apache Kafka's on-disk format.

``<base offset>.index`` holds 8-byte entries ``int32 relativeOffset | int32 position``: the last offset of a batch
(relative to the segment's base offset) and the byte position of that batch in the ``.log`` file. An entry is
added when more than ``index.interval.bytes`` were appended since the previous one, so a lookup finds the greatest
entry ``<= target`` and scans at most that many bytes of batch headers forward.

``<base offset>.timeindex`` holds 12-byte entries ``int64 timestamp | int32 relativeOffset``: the largest timestamp
seen so far in the segment and the offset of the batch that carried it, appended alongside offset index entries
whenever the max timestamp grew. A lookup finds the greatest entry whose timestamp is ``<= target``; scanning
from there finds the first batch whose max timestamp reaches the target.

Both files hold only whole entries (unlike Kafka we never preallocate them, so no trimming on close is needed);
Kafka's ``DumpLogSegments`` reads them as they are. Entries are kept in memory as well (``array``), and the files are
append-only: a file whose length is not a multiple of the entry size, whose entries go backwards, or which points
past the end of the log is *insane* and is rebuilt from the log during recovery.
"""

from __future__ import annotations

import bisect
import struct
from array import array
from typing import Final

from loosely.storage.fs import File, FileSystem

__all__ = ["OFFSET_ENTRY", "TIME_ENTRY", "IndexCorruptError", "OffsetIndex", "TimeIndex"]

OFFSET_ENTRY: Final = struct.Struct(">ii")
TIME_ENTRY: Final = struct.Struct(">qi")
assert OFFSET_ENTRY.size == 8
assert TIME_ENTRY.size == 12
_INT32_MAX: Final = (1 << 31) - 1  # both entries' relative offset and position are int32


class IndexCorruptError(Exception):
    """An index file that can't be trusted; the caller rebuilds it from the log."""


class OffsetIndex:
    __slots__ = ("_file", "_offsets", "_positions", "base_offset", "entries_max")

    def __init__(self, fs: FileSystem, path: str, base_offset: int, entries_max: int) -> None:
        self.base_offset = base_offset
        self.entries_max = entries_max
        self._file: File = fs.open(path)
        self._offsets = array("q")
        self._positions = array("q")

    @property
    def path(self) -> str:
        return self._file.path

    def __len__(self) -> int:
        return len(self._offsets)

    @property
    def is_full(self) -> bool:
        return len(self._offsets) >= self.entries_max

    def load(self, log_size: int) -> None:
        """Read entries from the file; raises :class:`IndexCorruptError` if they are insane."""
        data = self._file.pread(self._file.size(), 0)
        if len(data) % OFFSET_ENTRY.size:
            raise IndexCorruptError(f"{self.path}: size {len(data)} is not a multiple of {OFFSET_ENTRY.size}")
        offsets = array("q")
        positions = array("q")
        last_rel, last_pos = -1, -1
        for rel, pos in OFFSET_ENTRY.iter_unpack(data):
            if rel <= last_rel or pos <= last_pos or pos >= log_size or rel < 0:
                raise IndexCorruptError(f"{self.path}: entry ({rel}, {pos}) is out of order or past the log")
            offsets.append(self.base_offset + rel)
            positions.append(pos)
            last_rel, last_pos = rel, pos
        self._offsets, self._positions = offsets, positions

    def append(self, last_offset: int, position: int) -> None:
        if self._offsets and (last_offset <= self._offsets[-1] or position <= self._positions[-1]):
            return
        # Both sides of the durable write: the file holds exactly the entries in memory, before and after, and the
        # entry fits its int32 fields.
        count = len(self._offsets)
        assert self._file.size() == count * OFFSET_ENTRY.size, f"{self.path}: {self._file.size()} B, {count} entries"
        assert 0 <= last_offset - self.base_offset <= _INT32_MAX and 0 <= position <= _INT32_MAX, (
            f"{self.path}: entry ({last_offset}, {position}) out of range for base offset {self.base_offset}"
        )
        self._offsets.append(last_offset)
        self._positions.append(position)
        self._file.append(OFFSET_ENTRY.pack(last_offset - self.base_offset, position))
        assert self._file.size() == (count + 1) * OFFSET_ENTRY.size, f"{self.path}: {self._file.size()} bytes"

    def lookup(self, offset: int) -> int:
        """The byte position to start scanning from for ``offset``: of the greatest entry ``<= offset``."""
        i = bisect.bisect_right(self._offsets, offset)
        return 0 if i == 0 else self._positions[i - 1]

    def read_raw(self) -> bytes:
        """The file's bytes as they are (recovery checks them before rebuilding)."""
        return self._file.pread(self._file.size(), 0)

    def reset(self) -> None:
        self._offsets = array("q")
        self._positions = array("q")
        self._file.truncate(0)

    def truncate_entries(self, count: int) -> None:
        """Keep the first ``count`` entries, in memory and on disk (also cutting a torn entry's bytes)."""
        del self._offsets[count:]
        del self._positions[count:]
        self._file.truncate(count * OFFSET_ENTRY.size)

    def truncate_to_position(self, position: int) -> None:
        """Drop entries at or after ``position`` of the log."""
        i = bisect.bisect_left(self._positions, position)
        if i < len(self._positions):
            del self._offsets[i:]
            del self._positions[i:]
            self._file.truncate(i * OFFSET_ENTRY.size)

    def flush(self) -> None:
        self._file.fsync()

    def close(self) -> None:
        self._file.close()


class TimeIndex:
    __slots__ = ("_file", "_offsets", "_timestamps", "base_offset")

    def __init__(self, fs: FileSystem, path: str, base_offset: int) -> None:
        self.base_offset = base_offset
        self._file: File = fs.open(path)
        self._timestamps = array("q")
        self._offsets = array("q")

    @property
    def path(self) -> str:
        return self._file.path

    def __len__(self) -> int:
        return len(self._timestamps)

    def load(self, next_offset: int) -> None:
        data = self._file.pread(self._file.size(), 0)
        if len(data) % TIME_ENTRY.size:
            raise IndexCorruptError(f"{self.path}: size {len(data)} is not a multiple of {TIME_ENTRY.size}")
        ts_arr = array("q")
        off_arr = array("q")
        last_ts, last_rel = -(1 << 63), -1
        for ts, rel in TIME_ENTRY.iter_unpack(data):
            if ts <= last_ts or rel < last_rel or self.base_offset + rel >= next_offset:
                raise IndexCorruptError(f"{self.path}: entry ({ts}, {rel}) is out of order or past the log")
            ts_arr.append(ts)
            off_arr.append(self.base_offset + rel)
            last_ts, last_rel = ts, rel
        self._timestamps, self._offsets = ts_arr, off_arr

    def maybe_append(self, timestamp: int, offset: int) -> None:
        if self._timestamps and timestamp <= self._timestamps[-1]:
            return
        count = len(self._timestamps)
        assert self._file.size() == count * TIME_ENTRY.size, f"{self.path}: {self._file.size()} bytes, {count} entries"
        assert 0 <= offset - self.base_offset <= _INT32_MAX and (not self._offsets or offset >= self._offsets[-1]), (
            f"{self.path}: entry ({timestamp}, {offset}) out of range or order for base offset {self.base_offset}"
        )
        self._timestamps.append(timestamp)
        self._offsets.append(offset)
        self._file.append(TIME_ENTRY.pack(timestamp, offset - self.base_offset))
        assert self._file.size() == (count + 1) * TIME_ENTRY.size, f"{self.path}: {self._file.size()} bytes"

    def lookup(self, timestamp: int) -> int:
        """An offset at or before the first record with a timestamp ``>= timestamp``."""
        i = bisect.bisect_left(self._timestamps, timestamp)
        return self.base_offset if i == 0 else self._offsets[i - 1]

    @property
    def last_entry(self) -> tuple[int, int] | None:
        if not self._timestamps:
            return None
        return self._timestamps[-1], self._offsets[-1]

    def read_raw(self) -> bytes:
        """The file's bytes as they are (recovery checks them before rebuilding)."""
        return self._file.pread(self._file.size(), 0)

    def reset(self) -> None:
        self._timestamps = array("q")
        self._offsets = array("q")
        self._file.truncate(0)

    def truncate_entries(self, count: int) -> None:
        """Keep the first ``count`` entries, in memory and on disk (also cutting a torn entry's bytes)."""
        del self._timestamps[count:]
        del self._offsets[count:]
        self._file.truncate(count * TIME_ENTRY.size)

    def truncate_to_offset(self, offset: int) -> None:
        """Drop entries pointing at ``offset`` or later."""
        i = bisect.bisect_left(self._offsets, offset)
        if i < len(self._offsets):
            del self._timestamps[i:]
            del self._offsets[i:]
            self._file.truncate(i * TIME_ENTRY.size)

    def flush(self) -> None:
        self._file.fsync()

    def close(self) -> None:
        self._file.close()
