"""The key index of a segment: which of its batches hold a record with a given key, found without a scan.

Theory of operation
-------------------
Consoles answer "find the messages with key K" by consuming the whole topic. The log can do better because it sees
every key once, when the produce validator walks the records anyway: :func:`loosely.protocol.validation.
validate_client_batch` hands back the 64-bit hash of every record key (computed by its C record walk, ~2 ns a
record, on the section it has already decompressed), and the segment adds ``(hash, batch position)`` entries here.

* **Entries** are one 64-bit word per keyed record (records with a null key are not indexed; control batches are
  skipped): the top 32 bits of the key's 64-bit hash above the byte position of its batch in the ``.log`` (32 bits:
  the offset index stores positions as int32 too). Sorted words are sorted by hash prefix, a lookup is a binary
  search for the range of one prefix, and sorting is ``np.sort`` of plain integers. A prefix only narrows the
  search: unequal keys may share one (a lookup among 10M entries meets another key's prefix with probability
  10M / 2^32, ~0.2%), so :meth:`PartitionLog.find_key <loosely.storage.log.PartitionLog.find_key>` reads each
  candidate batch and keeps the records whose key is equal. Keeping batch positions rather than offsets means a
  hit costs one ``pread`` and no offset-index lookup.
* **Coverage**: the index covers the segment's bytes ``[0, covered_bytes)``. An append is indexed only when it
  starts exactly at ``covered_bytes``; batches the validator did not walk (the broker's own, a log opened after a
  restart, a segment installed by the cleaner) leave a gap that :meth:`KeyIndex.catch_up` closes at the next lookup
  by reading the uncovered batches (decompressing each once). So the index is never wrong, at worst behind.
* **Active segment**: appends queue the hashes; a lookup sorts what was queued into a run and merges runs of
  similar size (see ``KeyIndex.__init__``), so it is a binary search per run, at most log2(records) runs.
* **Undo**: a failed append truncates the segment (:meth:`Segment.rollback <loosely.storage.segment.Segment.
  rollback>`), which calls :meth:`KeyIndex.truncate`: entries at or past the cut are dropped from every run, and
  coverage goes back to the cut (a batch boundary).
* **Sidecar** ``<base offset>.keyindex``, written by :meth:`KeyIndex.persist` once a segment is closed (rolled) and
  its index is complete: the entries sorted, so a lookup is a binary search. Written to ``.tmp``, fsynced,
  renamed, directory fsynced. It is never trusted blindly: :meth:`KeyIndex.load` checks the magic, version, body
  CRC-32C and a fingerprint of the segment it was built from (base offset, next offset, size, and the CRCs of the
  first and last batch, which tell a cleaned segment from the one it replaced). A missing, torn or mismatching
  sidecar is rebuilt from the segment at its first use, which keeps starts as fast as before. Retention, the
  cleaner and recovery remove it with its segment; a sidecar without a segment is removed on open.

Sidecar layout (little-endian)::

    magic "LKEYIDX1" | uint16 version (1) | uint16 reserved | uint32 crc32c(body)
    | int64 base_offset | int64 next_offset | int64 log_bytes | int64 last_batch_position
    | uint32 first_batch_crc | uint32 last_batch_crc | int64 entries
    body: entries x uint64 (hash >> 32) << 32 | batch position, ascending

An entry takes 8 bytes, in memory as on disk.

Concurrency: the owner's thread appends, truncates and catches up the active segment. A closed segment never changes
in place, so its index may be completed, persisted and searched from a worker thread; a lock makes each step atomic.
"""

from __future__ import annotations

import bisect
import logging
import struct
import threading
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import crc32c

from loosely.protocol import _recwalk
from loosely.protocol.compression import decompress
from loosely.protocol.errors import CorruptRecordError, ProtocolError
from loosely.protocol.records import BATCH_HEADER_BYTES, BatchHeader, read_header
from loosely.storage.fs import File, FileSystem

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    _U64 = npt.NDArray[np.uint64]

__all__ = [
    "KEY_INDEX_HEADER",
    "KEY_INDEX_SUFFIX",
    "KeyIndex",
    "SegmentFingerprint",
    "batch_key_hashes",
    "key_hash",
    "matching_offsets",
]

log = logging.getLogger(__name__)

KEY_INDEX_SUFFIX: Final = ".keyindex"
KEY_INDEX_HEADER: Final = struct.Struct("<8sHHIqqqqIIq")
assert KEY_INDEX_HEADER.size == 64
_MAGIC: Final = b"LKEYIDX1"
_VERSION: Final = 1
_ENTRY_BYTES: Final = 8  # one word: see _POSITION_MASK
# Stored batches were accepted once; read back with the same bound as every other reader of the log.
_DECOMPRESSED_BYTES_MAX: Final = 1 << 30

# An entry is one word: the top 32 bits of the key's 64-bit hash above the batch's 32-bit position.
_POSITION_MASK: Final = 0xFFFF_FFFF


def key_hash(key: bytes) -> int:
    """The 64-bit hash the index files a key under (``_recwalk.key_hash``, documented in _recwalk.c).

    >>> key_hash(b"user-1") == key_hash(b"user-1") != key_hash(b"user-2")
    True
    """
    return _recwalk.key_hash(key)


@dataclass(frozen=True, slots=True)
class SegmentFingerprint:
    """What a sidecar must agree with to be used: the segment as it was when the index was built."""

    base_offset: int
    next_offset: int
    log_bytes: int
    last_batch_position: int
    first_batch_crc: int
    last_batch_crc: int


class KeyIndex:
    """The key index of one segment; see the module header."""

    __slots__ = (
        "_batch_crcs",
        "_batch_positions",
        "_fingerprint",
        "_fs",
        "_generation",
        "_lock",
        "_pending",
        "_runs",
        "_sorted",
        "_truncations",
        "base_offset",
        "covered_bytes",
        "path",
    )

    def __init__(self, fs: FileSystem, path: str, base_offset: int) -> None:
        self._fs = fs
        self.path = path
        self.base_offset = base_offset
        self._lock = threading.Lock()
        self.covered_bytes = 0
        # Appends only queue the validator's hash bytes with their batch's position (a list append: growing one
        # array a batch at a time made the produce path copy it over and over). A lookup folds the queue into a
        # run sorted by hash, and merges the newest runs while the older is at most twice the newer's size, so a
        # segment of n records has at most log2(n) runs, each record is re-sorted at most log2(n) times, and a
        # lookup is a binary search per run rather than a comparison with every hash of the segment.
        self._pending: list[tuple[int, bytes]] = []
        self._runs: list[_U64] = []
        self._generation = 0  # bumped whenever _runs changes: a fold outside the lock installs only if unchanged
        self._truncations = 0
        # Every covered batch (position, CRC): the undo point of a truncation and the sidecar's fingerprint.
        self._batch_positions = array("q")
        self._batch_crcs = array("L")
        self._sorted: _U64 | None = None  # all entries sorted (persisted or loaded); the runs are then empty
        self._fingerprint: SegmentFingerprint | None = None  # of the sidecar in use

    @property
    def settled(self) -> bool:
        """Sorted by hash: persisted to, or loaded from, a sidecar; nothing more to do for a closed segment."""
        return self._sorted is not None

    def __len__(self) -> int:
        if self._sorted is not None:
            return len(self._sorted)
        return sum(len(r) for r in self._runs) + sum(len(h) // 8 for _, h in self._pending)

    # --- building ------------------------------------------------------------------------------------------

    def add(self, position: int, header: BatchHeader, hashes: bytes | None) -> None:
        """Index the batch at ``position`` with the key hashes the validator computed (None: not computed).

        Ignored unless the batch starts where coverage ends; a later :meth:`catch_up` reads it instead.
        """
        if position != self.covered_bytes or hashes is None or self._sorted is not None:
            return
        with self._lock:
            if position == self.covered_bytes:  # again: a catch-up in a worker thread may have moved it
                self._add(position, header, hashes)

    def _add(self, position: int, header: BatchHeader, hashes: bytes) -> None:
        assert 0 <= position < 1 << 32, f"{self.path}: batch position {position} does not fit the index"
        if hashes:
            self._pending.append((position, hashes))
        self._batch_positions.append(position)
        self._batch_crcs.append(header.crc)
        self.covered_bytes = position + header.size

    def catch_up(self, log_file: File, batches: Iterable[tuple[int, BatchHeader]]) -> int:
        """Index ``batches`` (the segment's, from ``covered_bytes`` on) by reading them; returns batches read."""
        read = 0
        with self._lock:
            if self._sorted is not None:
                return 0
            for pos, h in batches:
                if pos != self.covered_bytes:
                    continue  # before coverage (a racing append indexed it), or not contiguous
                self._add(pos, h, _hashes_of(log_file, pos, h))
                read += 1
        return read

    def truncate(self, position: int) -> None:
        """Forget batches at or after byte ``position``, a batch boundary (the segment was cut, an append undone)."""
        with self._lock:
            if position >= self.covered_bytes:
                return
            if self._sorted is not None:
                self._reset()  # rebuilt at the next lookup
                return
            self._fold_pending()
            runs = [r[(r & _POSITION_MASK) < position] for r in self._runs]
            self._runs = [r for r in runs if len(r)]
            self._generation += 1
            self._truncations += 1
            i = bisect.bisect_left(self._batch_positions, position)
            del self._batch_positions[i:]
            del self._batch_crcs[i:]
            self.covered_bytes = position if i else 0

    def _reset(self) -> None:
        self._generation += 1
        self._truncations += 1
        self._sorted = self._fingerprint = None
        self._clear_entries()
        self.covered_bytes = 0

    def _clear_entries(self) -> None:
        self._generation += 1
        self._runs, self._pending = [], []
        self._batch_positions, self._batch_crcs = array("q"), array("L")

    def _fold_pending(self) -> None:
        if self._pending:
            self._runs = _folded(self._runs, self._pending)
            self._pending = []
            self._generation += 1

    def fold(self) -> None:
        """Sort what appends queued into the runs, holding the lock only to copy the queue and to install the
        result: a worker thread calls this so the owner's appends and lookups never wait for a sort. The queue
        stays in place while it is sorted, so a lookup meanwhile still finds its entries."""
        with self._lock:
            if not self._pending or self._sorted is not None:
                return
            taken = len(self._pending)
            pending, runs = self._pending[:taken], self._runs
            generation, truncations = self._generation, self._truncations
        folded = _folded(runs, pending)
        with self._lock:
            # A truncation, reset or fold meanwhile changed the runs or the queue itself; they are already right.
            if self._generation == generation and self._truncations == truncations:
                self._runs = folded
                del self._pending[:taken]  # only appends happened meanwhile, after the entries taken
                self._generation += 1

    # --- lookup --------------------------------------------------------------------------------------------

    def candidates(self, key: bytes) -> list[int]:
        """Positions of the covered batches that may hold ``key`` (hash equal), newest first, each once."""
        import numpy as np  # noqa: PLC0415 - numpy (0.3 s, 16 MiB) only once something sorts or searches

        h = key_hash(key)
        with self._lock:
            self._fold_pending()
            found: list[int] = []
            first = np.uint64(h >> 32 << 32)
            last = np.uint64(h >> 32 << 32 | _POSITION_MASK)
            for run in [self._sorted] if self._sorted is not None else self._runs:
                lo, hi = int(np.searchsorted(run, first, "left")), int(np.searchsorted(run, last, "right"))
                found += (run[lo:hi] & _POSITION_MASK).tolist()
        return sorted(set(found), reverse=True)

    # --- the sidecar ---------------------------------------------------------------------------------------

    def fingerprint(self, next_offset: int) -> SegmentFingerprint | None:
        """This index's view of its segment, once it covers at least one batch."""
        if self._fingerprint is not None:
            return self._fingerprint
        if not self._batch_positions:
            return None
        return SegmentFingerprint(
            self.base_offset,
            next_offset,
            self.covered_bytes,
            self._batch_positions[-1],
            self._batch_crcs[0],
            self._batch_crcs[-1],
        )

    def persist(self, next_offset: int, log_bytes: int) -> bool:
        """Write the sidecar of a closed segment whose index covers all ``log_bytes``; False if it does not."""
        with self._lock:
            fp = self.fingerprint(next_offset)
            if fp is None or self.covered_bytes != log_bytes or self._sorted is not None:
                return False
            self._fold_pending()
            import numpy as np  # noqa: PLC0415 - see candidates()

            entries = np.sort(np.concatenate([*self._runs, np.empty(0, np.uint64)]))
            body = entries.astype("<u8").tobytes()
            header = KEY_INDEX_HEADER.pack(
                _MAGIC,
                _VERSION,
                0,
                crc32c.crc32c(body),
                fp.base_offset,
                fp.next_offset,
                fp.log_bytes,
                fp.last_batch_position,
                fp.first_batch_crc,
                fp.last_batch_crc,
                len(entries),
            )
            self._fs.write_atomic(self.path, header + body)
            # Sorted arrays answer faster than the append-order ones and take the same memory.
            self._sorted, self._fingerprint = entries, fp
            self._clear_entries()
            return True

    def load(self, log_file: File, next_offset: int) -> str | None:
        """Use the sidecar if it matches the segment; returns why not (None: loaded, or nothing to load)."""
        if not self._fs.exists(self.path):
            return "missing"
        try:
            data = self._fs.read_file(self.path)
            problem, entries = _check_sidecar(data, self.base_offset, log_file, next_offset)
        except OSError as e:
            return f"unreadable: {e}"
        if problem is not None or entries is None:
            return problem
        import numpy as np  # noqa: PLC0415 - see candidates()

        words = np.frombuffer(data, dtype="<u8", count=entries, offset=KEY_INDEX_HEADER.size)
        f = KEY_INDEX_HEADER.unpack_from(data)
        with self._lock:
            self._reset()
            self._sorted = words.astype(np.uint64)
            self._fingerprint = SegmentFingerprint(f[4], f[5], f[6], f[7], f[8], f[9])
            self.covered_bytes = f[6]
        return None

    def delete(self) -> None:
        """Remove the sidecar (its segment is going)."""
        for p in (self.path, self.path + ".tmp"):
            if self._fs.exists(p):
                self._fs.remove(p)


def _folded(runs: list[_U64], pending: list[tuple[int, bytes]]) -> list[_U64]:
    """``runs`` with the queued ``(position, hash bytes)`` added as a new sorted run, the newest runs merged while
    the older is at most twice the newer's size. A new list: ``runs`` is left as it was.

    One word an entry, so sorting is ``np.sort`` of plain integers (12 ns an entry measured on 3M, where an
    ``argsort`` of hashes carrying positions took 66 ns with quicksort and 200 with timsort); the merge of two
    sorted runs uses timsort, which finds the two runs and merges them in linear time.
    """
    import numpy as np  # noqa: PLC0415 - see KeyIndex.candidates()

    hashes = np.frombuffer(b"".join(h for _, h in pending), dtype=np.uint64)
    positions = np.repeat(np.array([p for p, _ in pending], dtype=np.uint64), [len(h) // 8 for _, h in pending])
    out = [*runs, np.sort((hashes >> np.uint64(32) << np.uint64(32)) | positions)]
    while len(out) > 1 and len(out[-2]) <= 2 * len(out[-1]):
        older, newer = out.pop(-2), out.pop()
        out.append(np.sort(np.concatenate((older, newer)), kind="stable"))
    return out


def _check_sidecar(data: bytes, base_offset: int, log_file: File, next_offset: int) -> tuple[str | None, int | None]:
    if len(data) < KEY_INDEX_HEADER.size:
        return f"{len(data)} bytes, shorter than its header", None
    magic, version, _, body_crc, base, nxt, log_bytes, last_pos, first_crc, last_crc, entries = (
        KEY_INDEX_HEADER.unpack_from(data)
    )
    if magic != _MAGIC or version != _VERSION:
        return f"magic {magic!r} version {version}, expected {_MAGIC!r} version {_VERSION}", None
    if entries < 0 or len(data) != KEY_INDEX_HEADER.size + entries * _ENTRY_BYTES:
        return f"{len(data)} bytes for {entries} entries", None
    if crc32c.crc32c(data[KEY_INDEX_HEADER.size :]) != body_crc:
        return "the body's CRC-32C does not match", None
    size = log_file.size()
    if base != base_offset or nxt != next_offset or log_bytes != size:
        return (
            f"built for segment base {base}, next offset {nxt}, {log_bytes} bytes; "
            f"the segment has base {base_offset}, next offset {next_offset}, {size} bytes",
            None,
        )
    if not 0 <= last_pos <= size - BATCH_HEADER_BYTES:
        return f"last batch position {last_pos} is outside the segment", None
    first, last = (
        read_header(log_file.pread(BATCH_HEADER_BYTES, 0)),
        read_header(log_file.pread(BATCH_HEADER_BYTES, last_pos)),
    )
    if first.crc != first_crc or last.crc != last_crc or last_pos + last.size != size:
        return "the segment's first or last batch is not the one the index was built from", None
    return None, entries


def _hashes_of(log_file: File, pos: int, h: BatchHeader) -> bytes:
    body = log_file.pread(h.size - BATCH_HEADER_BYTES, pos + BATCH_HEADER_BYTES)
    return batch_key_hashes(body, h, f"the batch at byte {pos} of {log_file.path}")


def matching_offsets(body: bytes | bytearray | memoryview, h: BatchHeader, key: bytes) -> list[int]:
    """Offsets of the records of a stored batch (``body``: its bytes after the header) whose key equals ``key``,
    ascending. The check behind every index hit, in C (``_recwalk.key_offsets``): decoding a 10,000-record batch in
    Python to find one record took ~30 ms."""
    if h.is_control:
        return []
    section = decompress(h.codec, memoryview(body), _DECOMPRESSED_BYTES_MAX) if h.codec else body
    return [h.base_offset + d for d in _recwalk.key_offsets(section, h.records_count, key)]


def batch_key_hashes(body: bytes | bytearray | memoryview, h: BatchHeader, where: str) -> bytes:
    """The key hashes of a batch whose records section (after the header) is ``body``, decompressed once.

    b"" for a control batch, and for one that does not parse: damage is recovery's and the scrubber's business,
    the index just cannot name its keys (logged).
    """
    if h.is_control:
        return b""
    try:
        section = decompress(h.codec, memoryview(body), _DECOMPRESSED_BYTES_MAX) if h.codec else body
        return _recwalk.key_hashes(section, h.records_count)
    except (CorruptRecordError, ProtocolError, ValueError) as e:
        log.warning("key index: %s (offset %d) does not parse, its keys are not indexed: %s", where, h.base_offset, e)
        return b""
