"""Checking stored batches and indexes: one walk shared by recovery, ``loosely log verify`` and the scrubber.

Theory of operation
-------------------
:func:`check_batch` judges the bytes at one position of a ``.log`` file: a whole header with magic 2, a length
that fits the file, the CRC-32C, offsets that do not go backwards and, with ``deep``, every record walked
(decompressed, varints and lengths consistent, offsets increasing inside the batch, the count the header
claims). It answers with a :class:`BatchCheck`; whether a walk may go on after a bad batch depends on whether its
length can still be trusted (``resumable``): a CRC mismatch leaves the framing intact, a garbled header does not.

* **Recovery** (:meth:`loosely.storage.segment.Segment.recover`) stops at the first problem: everything from
  there on is cut off and quarantined, as Kafka truncates.
* **verify** (:func:`verify_data_dir`) keeps walking past resumable problems, so its report shows whether
  intact batches follow the damage, and checks both indexes against the batches it walked.
* **The scrubber** (``loosely.broker.scrubber``) re-checks CRCs of closed segments a slice at a time
  (:func:`scrub_slice`).

:class:`IndexChecker` checks the sparse indexes in one merge pass beside the batch walk, without building a map
of all batches: every offset index entry ``(last offset, position)`` must name a batch that starts at that
position and ends at that offset, every time index entry ``(timestamp, offset)`` a batch that ends at that offset
and carries that max timestamp (that is how :meth:`Segment._index_batch` writes them).

Files are opened read-only here (:func:`open_read_only`): verifying a data dir never changes it, even on a
read-only mount.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, Protocol

from loosely.protocol.errors import CorruptRecordError
from loosely.protocol.records import (
    BATCH_HEADER_BYTES,
    CONTROL_KEY,
    BatchHeader,
    check_batch_crc,
    decode_records,
    read_header,
)
from loosely.storage.index import OFFSET_ENTRY, TIME_ENTRY

__all__ = [
    "QUARANTINE_SUFFIX",
    "BatchCheck",
    "IndexChecker",
    "PartitionReport",
    "Problem",
    "Readable",
    "ScrubSlice",
    "SegmentReport",
    "check_batch",
    "open_read_only",
    "scrub_slice",
    "verify_data_dir",
    "verify_partition",
]

# Stored batches were accepted once; a walk decompresses them with this bound (STORED_BATCH_DECOMPRESSED_BYTES_MAX
# in loosely.storage.segment, which imports this module, so the value is repeated and checked there).
DECOMPRESSED_BYTES_MAX: Final = 1 << 30
# A batch declaring more than this is garbage whatever the configs say (Kafka's batch length is an int32).
BATCH_BYTES_MAX: Final = 1 << 31
# Bytes cut off a segment by recovery are kept in "<base>.log.<position>.quarantine" beside it: a name that
# neither Kafka's nor loosely's loader takes for a segment, an index or a swap.
QUARANTINE_SUFFIX: Final = ".quarantine"
# Index entries hold offsets relative to the segment's base as int32 (Kafka's segments split before this).
RELATIVE_OFFSET_MAX: Final = (1 << 31) - 1


class Readable(Protocol):
    def size(self) -> int: ...

    def pread(self, length: int, position: int) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong at byte ``position`` of ``path``."""

    path: str
    position: int
    message: str


@dataclass(frozen=True, slots=True)
class BatchCheck:
    """The verdict on the bytes at one position: ``header`` when one could be read, ``problem`` when bad."""

    header: BatchHeader | None
    problem: str | None = None
    resumable: bool = False  # the walk may go on at position + header.size
    torn: bool = False  # the batch runs past the end of the file: what a crash in the middle of a write leaves
    records: int = 0  # records walked (deep checks only)


def check_batch(
    data_at: Readable,
    position: int,
    end: int,
    expect_min_offset: int,
    *,
    segment_base_offset: int | None = None,
    deep: bool = False,
) -> BatchCheck:
    """Check the batch at ``position`` of a file whose valid bytes end at ``end``.

    With ``segment_base_offset``, a batch whose last offset is too far past it for the indexes' 32-bit relative
    offsets is bad too (the base offset is not covered by the CRC, so a flipped bit there shows only this way).
    """
    remaining = end - position
    if remaining < BATCH_HEADER_BYTES:
        return BatchCheck(None, f"{remaining} bytes at the end are too short for a batch header", torn=True)
    head = data_at.pread(BATCH_HEADER_BYTES, position)
    try:
        h = read_header(head, 0)
    except CorruptRecordError as e:
        return BatchCheck(None, f"unreadable batch header: {e}")
    if h.size > BATCH_BYTES_MAX:
        return BatchCheck(h, f"batch declares {h.size} bytes, more than any batch can hold")
    if h.size > remaining:
        return BatchCheck(h, f"batch declares {h.size} bytes, only {remaining} remain", torn=True)
    data = data_at.pread(h.size, position)
    try:
        check_batch_crc(data, 0, h)
    except CorruptRecordError as e:
        return BatchCheck(h, str(e), resumable=True)
    if h.base_offset < expect_min_offset:
        return BatchCheck(h, f"base offset {h.base_offset} goes back before {expect_min_offset}", resumable=True)
    if segment_base_offset is not None and h.last_offset - segment_base_offset > RELATIVE_OFFSET_MAX:
        return BatchCheck(
            h, f"last offset {h.last_offset} is too far past the segment's base {segment_base_offset}", resumable=True
        )
    if not deep:
        return BatchCheck(h, records=h.records_count)
    problem = _walk_records(data, h)
    if problem is not None:
        return BatchCheck(h, problem, resumable=True)
    return BatchCheck(h, records=h.records_count)


def _walk_records(data: bytes, h: BatchHeader) -> str | None:
    try:
        records = decode_records(data, 0, h, DECOMPRESSED_BYTES_MAX)
    except CorruptRecordError as e:
        return f"records do not parse: {e}"
    last = h.base_offset - 1
    for r in records:
        if r.offset <= last or r.offset > h.last_offset:
            return f"record offset {r.offset} is out of order or outside [{h.base_offset}, {h.last_offset}]"
        last = r.offset
    if h.is_control and (len(records) != 1 or records[0].key is None or len(records[0].key) != CONTROL_KEY.size):
        return "a control batch must hold one record with a 4-byte key"
    return None


class IndexChecker:
    """Checks a segment's index entries against its batches in one merge pass (see the module header)."""

    __slots__ = ("_base", "_i", "_j", "_offsets", "_paths", "_times", "problems")

    def __init__(self, base_offset: int, offset_index: bytes, time_index: bytes, paths: tuple[str, str]) -> None:
        self._base = base_offset
        self.problems: list[Problem] = []
        offsets = self._entries(offset_index, OFFSET_ENTRY.size, paths[0])
        times = self._entries(time_index, TIME_ENTRY.size, paths[1])
        self._offsets = [(base_offset + rel, pos) for rel, pos in OFFSET_ENTRY.iter_unpack(offsets)]
        self._times = [(ts, base_offset + rel) for ts, rel in TIME_ENTRY.iter_unpack(times)]
        self._i = self._j = 0
        self._paths = paths

    def _entries(self, data: bytes, entry_bytes: int, path: str) -> bytes:
        whole = len(data) - len(data) % entry_bytes
        if whole != len(data):
            self.problems.append(Problem(path, whole, f"{len(data) - whole} bytes of a partial entry at the end"))
        return data[:whole]

    def batch(self, position: int, h: BatchHeader) -> None:
        """Feed the next valid batch of the walk, in file order."""
        offsets, times = self._offsets, self._times
        while self._i < len(offsets) and offsets[self._i][1] <= position:
            off, pos = offsets[self._i]
            if pos < position or off != h.last_offset:
                self._bad(0, self._i, f"entry ({off}, {pos}) names no batch ending at {off} that starts at {pos}")
            self._i += 1
        while self._j < len(times) and times[self._j][1] <= h.last_offset:
            ts, off = times[self._j]
            if off != h.last_offset or ts != h.max_timestamp:
                self._bad(1, self._j, f"entry ({ts}, {off}) names no batch ending at {off} with max timestamp {ts}")
            self._j += 1

    def finish(self, walked_to: int, next_offset: int, *, past_end_is_damage: bool = True) -> list[Problem]:
        """Entries beyond the last batch walked; returns every problem found.

        ``past_end_is_damage`` false: the log is about to be cut there, and entries past the cut go with it.
        """
        if past_end_is_damage:
            for k in range(self._i, len(self._offsets)):
                self._bad(0, k, f"entry {self._offsets[k]} points past the valid log (which ends at byte {walked_to})")
            for k in range(self._j, len(self._times)):
                self._bad(1, k, f"entry {self._times[k]} points past the valid log (ending at offset {next_offset})")
        self._i, self._j = len(self._offsets), len(self._times)
        return self.problems

    def _bad(self, which: int, k: int, message: str) -> None:
        size = OFFSET_ENTRY.size if which == 0 else TIME_ENTRY.size
        self.problems.append(Problem(self._paths[which], k * size, message))


# --- offline verification ---------------------------------------------------------------------------------


class _ReadOnlyFile:
    __slots__ = ("_fd", "_size")

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._size = os.fstat(self._fd).st_size

    def size(self) -> int:
        return self._size

    def pread(self, length: int, position: int) -> bytes:
        return os.pread(self._fd, length, position)

    def close(self) -> None:
        os.close(self._fd)


def open_read_only(path: str) -> _ReadOnlyFile:
    """A file opened ``O_RDONLY`` (raises ``OSError`` when it is missing)."""
    return _ReadOnlyFile(path)


def _read_all(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


@dataclass(frozen=True, slots=True)
class SegmentReport:
    path: str
    base_offset: int
    size: int
    batches: int
    records: int
    first_offset: int  # -1 when no batch is valid
    last_offset: int  # -1 when no batch is valid
    problems: tuple[Problem, ...]


@dataclass(frozen=True, slots=True)
class PartitionReport:
    directory: str
    segments: tuple[SegmentReport, ...]
    quarantined: tuple[tuple[str, int], ...] = ()  # (file name, bytes) of quarantine files beside the segments
    problems: tuple[Problem, ...] = field(default_factory=tuple)  # offsets that overlap between segments

    @property
    def damaged(self) -> bool:
        return bool(self.problems) or any(s.problems for s in self.segments)


def _verify_segment(directory: str, base: int) -> SegmentReport:
    path = os.path.join(directory, f"{base:020d}.log")
    stem = os.path.join(directory, f"{base:020d}")
    checker = IndexChecker(
        base, _read_all(stem + ".index"), _read_all(stem + ".timeindex"), (stem + ".index", stem + ".timeindex")
    )
    f = open_read_only(path)
    try:
        size = f.size()
        problems: list[Problem] = []
        pos, expect, batches, records = 0, base, 0, 0
        first = last = -1
        while pos < size:
            check = check_batch(f, pos, size, expect, segment_base_offset=base, deep=True)
            h = check.header
            if check.problem is not None:
                problems.append(Problem(path, pos, check.problem))
                if not check.resumable or h is None:
                    break
                checker.batch(pos, h)  # its framing holds: index entries naming it are not a second problem
            else:
                assert h is not None
                checker.batch(pos, h)
                batches += 1
                records += check.records
                first = h.base_offset if first < 0 else first
                last = h.last_offset
            expect = max(expect, h.next_offset)
            pos += h.size
        problems += checker.finish(pos, expect)
        return SegmentReport(path, base, size, batches, records, first, last, tuple(problems))
    finally:
        f.close()


def verify_partition(directory: str) -> PartitionReport:
    """Check every segment of one partition directory (read-only)."""
    names = sorted(os.listdir(directory))
    bases = sorted(int(n[:-4]) for n in names if n.endswith(".log") and n[:-4].isdigit())
    segments = tuple(_verify_segment(directory, b) for b in bases)
    problems = []
    for prev, seg in itertools.pairwise(segments):
        if prev.last_offset >= seg.base_offset:
            problems.append(
                Problem(
                    seg.path, 0, f"base offset {seg.base_offset} overlaps the previous segment (to {prev.last_offset})"
                )
            )
    quarantined = tuple(
        (n, os.path.getsize(os.path.join(directory, n))) for n in names if n.endswith(QUARANTINE_SUFFIX)
    )
    return PartitionReport(directory, segments, quarantined, tuple(problems))


def verify_data_dir(data_dir: str, topic: str | None = None) -> Iterator[PartitionReport]:
    """Every partition directory (``<topic>-<n>``) of a data dir, or of one topic, in name order.

    Raises ``OSError`` when ``data_dir`` can't be listed.
    """
    for name in sorted(os.listdir(data_dir)):
        t, sep, part = name.rpartition("-")
        path = os.path.join(data_dir, name)
        if not sep or not part.isdigit() or not os.path.isdir(path) or (topic is not None and t != topic):
            continue
        yield verify_partition(path)


# --- scrubbing --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScrubSlice:
    next_position: int  # where the next slice starts
    bytes_checked: int
    done: bool  # the end of the file, or damage the walk can't get past
    problem: str | None = None  # what is wrong with the batch at ``problem_position``
    problem_position: int = -1


class _Window:
    """Reads served from one chunk read ahead (one system call per slice, not two per batch), else the file."""

    __slots__ = ("_chunk", "_file", "_start")

    def __init__(self, f: Readable, start: int, chunk: bytes) -> None:
        self._file, self._start, self._chunk = f, start, chunk

    def size(self) -> int:
        return self._file.size()

    def pread(self, length: int, position: int) -> bytes:
        at = position - self._start
        if at >= 0 and at + length <= len(self._chunk):
            return self._chunk[at : at + length]
        return self._file.pread(length, position)


def scrub_slice(f: Readable, position: int, bytes_max: int) -> ScrubSlice:
    """CRC-check whole batches of ``f`` from ``position`` until about ``bytes_max`` bytes were read.

    Stops at the first bad batch; ``done`` is false when the walk can go on after it (its framing held).
    """
    size = f.size()
    pos = position
    window = _Window(f, position, f.pread(min(bytes_max, size - position), position))
    while pos < size and pos - position < bytes_max:
        check = check_batch(window, pos, size, -1)
        h = check.header
        if check.problem is not None or h is None:
            resumable = check.resumable and h is not None
            after = pos + h.size if resumable and h is not None else size
            return ScrubSlice(after, after - position, not resumable, check.problem or "unreadable batch", pos)
        pos += h.size
    return ScrubSlice(pos, pos - position, pos >= size)
