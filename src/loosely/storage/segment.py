"""One segment of a partition log: ``<base offset>.log`` plus its ``.index``, ``.timeindex`` and ``.keyindex``.

The ``.log`` file is a plain concatenation of v2 record batches exactly as Kafka writes them (so Kafka's
``DumpLogSegments`` reads it). Only the last segment of a log (the *active* one) is appended to; all others are
immutable until deleted by retention or replaced whole by the cleaner, which is what lets readers and the cleaner
work on them without locks.

Appends go to the file through :meth:`File.append` before the producer is acknowledged. An append is all or
nothing: :meth:`Segment.mark` remembers the file sizes and the tail state before it, and when the disk fails half
way (ENOSPC, EIO) :meth:`Segment.rollback` truncates the log and both indexes back to the mark, so no torn batch is
left in the middle of the segment and the next append starts at the same byte. Positions are tracked in
memory; the on-disk size is the truth after a crash, and :meth:`Segment.recover` re-derives everything else
(next offset, max timestamp, indexes) by scanning the batches, stopping at the first one that is truncated, has a
bad magic or CRC, or does not follow its predecessor's offsets (:func:`loosely.storage.verify.check_batch`).
Recovery only reports what it found (:class:`Recovery`); the log decides, logs, and calls :meth:`Segment.cut`, which
copies the bytes from the first bad batch on into ``<base>.log.<position>.quarantine`` (written to a temporary
name, fsynced, renamed, directory fsynced) *before* truncating, so a crash at any point leaves the bytes either
still in the segment or safe in the quarantine file, and the next recovery finds the same cut again.

The key index (:mod:`loosely.storage.keyindex`) follows the log the same way: appends feed it the key hashes the
validator computed, rollback and cut truncate it, and its sidecar goes wherever the segment goes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from loosely.protocol.records import BATCH_HEADER_BYTES, BatchHeader, read_header
from loosely.storage.fs import File, FileSystem
from loosely.storage.index import OFFSET_ENTRY, IndexCorruptError, OffsetIndex, TimeIndex
from loosely.storage.keyindex import KEY_INDEX_SUFFIX, KeyIndex
from loosely.storage.verify import DECOMPRESSED_BYTES_MAX, QUARANTINE_SUFFIX, IndexChecker, check_batch

__all__ = ["STORED_BATCH_DECOMPRESSED_BYTES_MAX", "Recovery", "Segment", "SegmentMark", "SegmentSlice",
           "segment_file_name"]

log = logging.getLogger(__name__)

# Batches in the log were accepted once; they are decompressed with this bound whatever max.message.bytes says
# today, so lowering it never makes stored data unreadable.
STORED_BATCH_DECOMPRESSED_BYTES_MAX: Final = 1 << 30
assert STORED_BATCH_DECOMPRESSED_BYTES_MAX == DECOMPRESSED_BYTES_MAX
# Quarantine files are copied in chunks of this size (a tail can be most of a 1 GiB segment).
_COPY_CHUNK_BYTES: Final = 1 << 20

# How much to read at once while scanning batch headers or recovering.
_SCAN_CHUNK_BYTES = 1 << 20


def segment_file_name(base_offset: int, suffix: str) -> str:
    """Kafka's 20-digit zero-padded base offset file names.

    >>> segment_file_name(42, ".log")
    '00000000000000000042.log'
    """
    return f"{base_offset:020d}{suffix}"


@dataclass(frozen=True, slots=True)
class SegmentMark:
    """A segment's sizes and tail state between appends: what :meth:`Segment.rollback` restores."""

    log_bytes: int
    offset_entries: int
    time_entries: int
    next_offset: int
    max_timestamp: int
    offset_of_max_timestamp: int
    first_batch_timestamp: int
    bytes_since_index: int


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :meth:`Segment.recover` found. Nothing is cut yet: ``keep_bytes < size`` asks for :meth:`Segment.cut`."""

    keep_bytes: int
    size: int
    first_offset: int  # of the first batch kept; -1 when none is
    next_offset: int  # after the last batch kept
    problem: str | None = None  # why the walk stopped before the end of the file
    damaged: bool = False  # a bad batch (not just the torn tail a crash leaves)
    index_problems: tuple[str, ...] = ()  # old index entries that disagreed with the log (both rebuilt anyway)

    @property
    def cut_bytes(self) -> int:
        return self.size - self.keep_bytes


@dataclass(frozen=True, slots=True)
class SegmentSlice:
    """Whole batches of a segment: ``length`` bytes at ``position``, covering offsets up to ``next_offset``."""

    file: File
    position: int
    length: int
    next_offset: int


class Segment:
    __slots__ = (
        "_bytes_since_index",
        "_fs",
        "base_offset",
        "created_ms",
        "dir",
        "first_batch_timestamp",
        "index_interval_bytes",
        "key_index",
        "log",
        "max_timestamp",
        "next_offset",
        "offset_index",
        "offset_of_max_timestamp",
        "time_index",
    )

    def __init__(
        self,
        fs: FileSystem,
        directory: str,
        base_offset: int,
        *,
        index_interval_bytes: int,
        index_bytes_max: int,
        now_ms: int,
        suffix: str = "",
    ) -> None:
        self._fs = fs
        self.dir = directory
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        self.log: File = fs.open(os.path.join(directory, segment_file_name(base_offset, ".log" + suffix)))
        try:
            self.offset_index = OffsetIndex(
                fs,
                os.path.join(directory, segment_file_name(base_offset, ".index" + suffix)),
                base_offset,
                max(1, index_bytes_max // OFFSET_ENTRY.size),
            )
            try:
                self.time_index = TimeIndex(
                    fs, os.path.join(directory, segment_file_name(base_offset, ".timeindex" + suffix)), base_offset
                )
            except BaseException:
                self.offset_index.close()
                raise
        except BaseException:
            # A roll on a full disk (or out of descriptors) must not leak the files it did open.
            self.log.close()
            raise
        self.key_index = KeyIndex(
            fs, os.path.join(directory, segment_file_name(base_offset, KEY_INDEX_SUFFIX + suffix)), base_offset
        )
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = -1
        self.first_batch_timestamp = -1
        self.created_ms = now_ms
        self._bytes_since_index = 0

    # --- size and identity ---------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self.log.size()

    @property
    def is_empty(self) -> bool:
        return self.log.size() == 0

    def __repr__(self) -> str:
        return f"Segment({self.dir}, base={self.base_offset}, next={self.next_offset}, size={self.size})"

    # --- append --------------------------------------------------------------------------------------------

    def append(
        self,
        data: bytes | bytearray | memoryview,
        batches: list[tuple[int, BatchHeader]],
        key_hashes: Sequence[bytes | None] = (),
    ) -> None:
        """Append already-validated batches (offsets assigned) and index them.

        ``key_hashes[i]`` holds the key hashes of ``batches[i]`` when the validator computed them (None or missing:
        the key index reads the batch at the next lookup instead).

        Raises ``OSError`` when the disk fails; the caller undoes the partial append with :meth:`rollback`.
        """
        # Before the write: the batches tile ``data`` back to back from position 0, and their offsets rise from
        # this segment's next offset (gaps allowed: the cleaner appends what compaction kept).
        assert batches, f"{self}: append of no batch"
        at, offset = 0, self.next_offset
        for pos, h in batches:
            assert pos == at, f"{self}: batch at position {pos} of the data, expected {at}"
            assert h.base_offset >= offset, f"{self}: append at offset {h.base_offset} is not contiguous ({offset})"
            at, offset = pos + h.size, h.next_offset
        assert at == len(data), f"{self}: the batches cover {at} of {len(data)} bytes"
        start = self.log.size()
        self.log.append(data)
        # After it: the file grew by exactly the batches, no more, no less.
        assert self.log.size() == start + len(data), f"{self.log.path}: grew {self.log.size() - start} of {len(data)}"
        for i, (pos, h) in enumerate(batches):
            self._index_batch(start + pos, h)
            self.key_index.add(start + pos, h, key_hashes[i] if i < len(key_hashes) else None)
        assert self.next_offset == offset, f"{self}: next offset {self.next_offset} after an append up to {offset}"

    def mark(self) -> SegmentMark:
        return SegmentMark(
            self.log.size(),
            len(self.offset_index),
            len(self.time_index),
            self.next_offset,
            self.max_timestamp,
            self.offset_of_max_timestamp,
            self.first_batch_timestamp,
            self._bytes_since_index,
        )

    def rollback(self, mark: SegmentMark) -> None:
        """Undo everything appended since ``mark``: the tail state first, then the files.

        The in-memory state is restored before any file is touched, so readers never see the undone batches even
        when a truncation fails; that raises ``OSError`` and the caller retries the rollback later (the files may
        then still hold the undone bytes past the mark, which nothing reads).
        """
        self.next_offset = mark.next_offset
        self.max_timestamp = mark.max_timestamp
        self.offset_of_max_timestamp = mark.offset_of_max_timestamp
        self.first_batch_timestamp = mark.first_batch_timestamp
        self._bytes_since_index = mark.bytes_since_index
        self.offset_index.truncate_entries(mark.offset_entries)
        self.time_index.truncate_entries(mark.time_entries)
        self.key_index.truncate(mark.log_bytes)
        # Unconditionally: a short write may have put bytes on disk that the file's own size does not count yet.
        self.log.truncate(mark.log_bytes)
        assert self.log.size() == mark.log_bytes

    def _index_batch(self, position: int, h: BatchHeader) -> None:
        if self.first_batch_timestamp < 0:
            self.first_batch_timestamp = h.max_timestamp
        if h.max_timestamp > self.max_timestamp:
            self.max_timestamp = h.max_timestamp
            self.offset_of_max_timestamp = h.last_offset
        self.next_offset = h.next_offset
        self._bytes_since_index += h.size
        if self._bytes_since_index > self.index_interval_bytes:
            self.offset_index.append(h.last_offset, position)
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
            self._bytes_since_index = 0

    # --- read ----------------------------------------------------------------------------------------------

    def iter_headers(self, start_position: int = 0) -> Iterator[tuple[int, BatchHeader]]:
        """``(position, header)`` of the whole batches from ``start_position`` on, read in chunks."""
        pos = start_position
        end = self.log.size()
        while pos + BATCH_HEADER_BYTES <= end:
            chunk = self.log.pread(min(_SCAN_CHUNK_BYTES, end - pos), pos)
            p = 0
            while p + BATCH_HEADER_BYTES <= len(chunk):
                h = read_header(chunk, p)
                if pos + p + h.size > end:
                    return
                yield pos + p, h
                p += h.size
            if p == 0:
                # A batch bigger than the chunk: its header is at the chunk's start.
                h = read_header(chunk, 0)
                if pos + h.size > end:
                    return
                yield pos, h
                p = h.size
            pos += p

    def find_position(self, offset: int) -> tuple[int, int] | None:
        """``(position, base offset)`` of the first batch whose last offset is ``>= offset``, or None."""
        if offset >= self.next_offset:
            return None
        for pos, h in self.iter_headers(self.offset_index.lookup(offset)):
            if h.last_offset >= offset:
                return pos, h.base_offset
        return None

    def read(self, offset: int, max_bytes: int, upper_offset: int, *, min_one: bool) -> SegmentSlice | None:
        """Whole batches from the one holding ``offset`` on, up to ``max_bytes`` and below ``upper_offset``.

        With ``min_one`` the first batch is returned even when it alone exceeds ``max_bytes`` (KIP-74), so a
        consumer can always make progress.
        """
        found = self.find_position(offset)
        if found is None:
            return None
        start, _ = found
        end = start
        next_offset = offset
        for pos, h in self.iter_headers(start):
            if h.base_offset >= upper_offset:
                break
            if h.last_offset >= upper_offset:
                # A batch straddling the upper bound (the LSO) is withheld whole.
                break
            if end + h.size - start > max_bytes and not (min_one and end == start):
                break
            end = pos + h.size
            next_offset = h.next_offset
        if end == start:
            return None
        return SegmentSlice(self.log, start, end - start, next_offset)

    # --- key index -----------------------------------------------------------------------------------------

    def key_candidates(self, key: bytes, *, closed: bool) -> list[int]:
        """Positions of the batches that may hold a record with ``key``, newest first (see :meth:`index_keys`)."""
        self.index_keys(closed=closed)
        return self.key_index.candidates(key)

    def index_keys(self, *, closed: bool) -> None:
        """Bring the key index up to the end of the log: a closed segment first tries its sidecar (checked against
        the log, never trusted blindly); whatever is still uncovered is read from the log."""
        ki = self.key_index
        size = self.log.size()
        if ki.covered_bytes >= size:
            return
        if closed and ki.covered_bytes == 0:
            problem = ki.load(self.log, self.next_offset)
            if problem is None:
                return
            if problem != "missing":
                log.warning("%s: key index %s not used (%s); rebuilding it from the log", self, ki.path, problem)
        ki.catch_up(self.log, self.iter_headers(ki.covered_bytes))

    def persist_key_index(self) -> bool:
        """Settle a closed segment's key index: its sidecar if it matches, else built and written. True if written."""
        self.index_keys(closed=True)
        return self.key_index.persist(self.next_offset, self.log.size())

    def key_index_alive(self) -> bool:
        """The segment's ``.log`` is still in place (retention or the cleaner may have removed it meanwhile)."""
        return self._fs.exists(self.log.path)

    # --- recovery ------------------------------------------------------------------------------------------

    def load(self) -> Recovery | None:
        """Open a segment that was closed cleanly: trust the log, load indexes, derive the tail state.

        Falls back to :meth:`recover` when an index is insane, and returns what it found (None: all was well).
        """
        try:
            self.offset_index.load(self.log.size())
        except IndexCorruptError as e:
            return self.recover(index_problem=str(e))
        last = None
        for _, h in self.iter_headers(self.offset_index.lookup(1 << 62)):
            last = h
        if last is None and self.log.size() > 0 and len(self.offset_index) == 0:
            return self.recover()
        self.next_offset = last.next_offset if last is not None else self.base_offset
        try:
            self.time_index.load(self.next_offset)
        except IndexCorruptError as e:
            return self.recover(index_problem=str(e))
        entry = self.time_index.last_entry
        if entry is not None:
            self.max_timestamp, self.offset_of_max_timestamp = entry
        # Batches after the last time-index entry may carry a larger timestamp.
        scan_from = self.offset_index.lookup(entry[1]) if entry is not None else 0
        for _, h in self.iter_headers(scan_from):
            if self.first_batch_timestamp < 0:
                self.first_batch_timestamp = h.max_timestamp
            if h.max_timestamp > self.max_timestamp:
                self.max_timestamp, self.offset_of_max_timestamp = h.max_timestamp, h.last_offset
        if self.first_batch_timestamp < 0 and self.log.size() > 0:
            first = next(self.iter_headers(0), None)
            if first is not None:
                self.first_batch_timestamp = first[1].max_timestamp
        return None

    def recover(self, *, index_problem: str | None = None) -> Recovery:
        """Validate every batch and rebuild both indexes from the valid prefix; report where the walk stopped.

        No size bound beyond the file itself: ``max.message.bytes`` may have been lowered since the batches were
        written, and recovery must not mistake them for garbage. The old index entries are checked against the
        batches before they are replaced, so an index that lied is reported, not silently rebuilt.
        """
        checker = IndexChecker(
            self.base_offset,
            self.offset_index.read_raw(),
            self.time_index.read_raw(),
            (self.offset_index.path, self.time_index.path),
        )
        self.offset_index.reset()
        self.time_index.reset()
        self.next_offset = self.base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = -1
        self.first_batch_timestamp = -1
        self._bytes_since_index = 0
        size = self.log.size()
        pos = 0
        first_offset = -1
        stop = None
        while pos < size:
            check = check_batch(self.log, pos, size, self.next_offset, segment_base_offset=self.base_offset)
            if check.problem is not None or check.header is None:
                stop = check
                break
            h = check.header
            checker.batch(pos, h)
            self._index_batch(pos, h)
            first_offset = h.base_offset if first_offset < 0 else first_offset
            pos += h.size
        index_problems = [
            f"{os.path.basename(p.path)}: {p.message}"
            for p in checker.finish(pos, self.next_offset, past_end_is_damage=stop is None)
        ]
        if index_problem is not None:
            index_problems.insert(0, index_problem)
        return Recovery(
            keep_bytes=pos,
            size=size,
            first_offset=first_offset,
            next_offset=self.next_offset,
            problem=None if stop is None else stop.problem,
            damaged=stop is not None and not stop.torn,
            index_problems=tuple(index_problems),
        )

    def cut(self, position: int) -> tuple[str, int]:
        """Quarantine the bytes from ``position`` on, then truncate there. Returns (quarantine path, bytes)."""
        size = self.log.size()
        target = self._quarantine_path(position, size)
        if not self._fs.exists(target):
            tmp = target + ".tmp"
            out = self._fs.open(tmp)
            try:
                out.truncate(0)
                for at in range(position, size, _COPY_CHUNK_BYTES):
                    out.append(self.log.pread(min(_COPY_CHUNK_BYTES, size - at), at))
                out.fsync()
            finally:
                out.close()
            self._fs.rename(tmp, target)
            self._fs.fsync_dir(self.dir)
        # Assert twice before destroying anything: the copy on disk holds exactly the bytes about to be cut.
        if not self._same_bytes(target, position, size):
            raise OSError(f"{target}: the quarantine copy does not match the segment; {self.log.path} left uncut")
        self.log.truncate(position)
        self.log.fsync()
        self.offset_index.truncate_to_position(position)
        self.time_index.truncate_to_offset(self.next_offset)
        self.key_index.truncate(position)
        self.key_index.delete()  # built for the bytes just cut: never to be matched again
        return target, size - position

    def _quarantine_path(self, position: int, size: int) -> str:
        """A free ``<base>.log.<position>[.<n>].quarantine``, or the one that already holds exactly these bytes.

        The same name again is the same cut repeated after a crash between the copy and the truncation; a
        different tail cut at the same position later (a second crash) gets the next free ``n``.
        """
        stem = os.path.join(self.dir, f"{segment_file_name(self.base_offset, '.log')}.{position}")
        n = 0
        while True:
            path = f"{stem}{'' if n == 0 else f'.{n}'}{QUARANTINE_SUFFIX}"
            if not self._fs.exists(path) or self._same_bytes(path, position, size):
                return path
            n += 1

    def _same_bytes(self, path: str, position: int, size: int) -> bool:
        f = self._fs.open(path, create=False)
        try:
            if f.size() != size - position:
                return False
            return all(
                f.pread(_COPY_CHUNK_BYTES, at - position) == self.log.pread(min(_COPY_CHUNK_BYTES, size - at), at)
                for at in range(position, size, _COPY_CHUNK_BYTES)
            )
        finally:
            f.close()

    def quarantine_whole(self) -> tuple[str, int]:
        """Move the whole ``.log`` aside as a quarantine file (a later segment cut off by damage before it)."""
        size = self.log.size()
        target = self._quarantine_path(0, size)
        paths = [self.offset_index.path, self.time_index.path, self.key_index.path]
        src = self.log.path
        self.close()
        self._fs.rename(src, target)
        for p in paths:
            if self._fs.exists(p):
                self._fs.remove(p)
        self._fs.fsync_dir(self.dir)
        return target, size

    # --- lifecycle -----------------------------------------------------------------------------------------

    def truncate_to_position(self, position: int) -> None:
        self.log.truncate(position)
        self.offset_index.truncate_to_position(position)
        self.key_index.truncate(position)

    def flush(self) -> None:
        self.log.fsync()
        self.offset_index.flush()
        self.time_index.flush()

    def close(self) -> None:
        self.log.close()
        self.offset_index.close()
        self.time_index.close()

    def delete(self) -> None:
        paths = [self.log.path, self.offset_index.path, self.time_index.path]
        self.close()
        self.key_index.delete()  # first: a sidecar without its segment is an orphan, removed only at the next open
        for p in paths:
            if self._fs.exists(p):
                self._fs.remove(p)
