"""A partition's log: an ordered list of segments with one active segment at the end.

Theory of operation
-------------------
* **Append** validates every batch a client sends as Kafka's LogValidator does (framing, size, CRC, header
  counts, then every record decompressed within a bound and walked: see :mod:`loosely.protocol.validation`),
  assigns offsets by rewriting each batch's ``baseOffset`` in place (the CRC does not cover it), rolls the active
  segment when :func:`should_roll` says so, writes, and only then reports success. A batch that fails validation
  rejects the whole request and nothing of it is written. A valid batch is stored as sent, except baseOffset,
  partitionLeaderEpoch and, as Kafka does, a maxTimestamp that is not the largest record timestamp (or a
  LogAppendTime stamp on a LogAppendTime topic).
* **Read** returns :class:`SegmentSlice` s: byte ranges of whole batches in segment files, never decoded. The
  broker copies them into a Fetch response as they are.
* **Offsets**: ``log_start_offset`` (first readable offset; advanced by retention and DeleteRecords),
  ``log_end_offset`` (next offset to assign). A single node's high watermark is the log end offset.
* **Disk errors**: an ``OSError`` while appending (ENOSPC, EIO) undoes the append (the segment and its indexes
  are truncated back to their size before it, see :meth:`Segment.rollback`) and raises :class:`StorageError`
  (KAFKA_STORAGE_ERROR), reported to :class:`~loosely.storage.faults.StorageFaults` (counted, logged at most once
  per interval). The next append starts at the same byte, so writes resume by themselves when space returns. If
  the undo itself fails, the partition refuses every write (KAFKA_STORAGE_ERROR) and retries the undo before each
  append and on each housekeeping tick until it succeeds; reads are unaffected, because the tail state in memory
  was restored first. A log closed in that state is not closed cleanly (see ``LogManager.close``), so the next
  start re-validates its tail.
* **Durability**: appends reach the kernel before the producer is acknowledged, so they survive ``kill -9``.
  For power loss, ``flush.messages`` / ``flush.ms`` fsync the active segment; rolled segments are fsynced on
  roll. ``recovery_point`` is the offset below which everything is known to be on disk: after an unclean
  shutdown, segments from the recovery point on are re-validated and a torn tail truncated.
* **Recovery is loud and keeps every byte.** Whatever recovery cuts off (a torn tail, a damaged batch and all
  that follows it, later segments behind a damaged one) is moved into ``*.quarantine`` files beside the segments
  (see :meth:`Segment.cut`), never deleted; each cut and each index rebuild is logged as a WARNING naming the
  partition, segment, offsets and bytes, and a partition with quarantine files says so in one line at every
  start until an operator removes them. Like Kafka, recovery truncates at the first bad batch rather than skipping
  it: skipping would serve offsets past a hole whose extent a garbled header can't tell, and consumers would
  pass over lost records without an error.
* **Key search**: :meth:`PartitionLog.find_key` answers "which offsets hold key K" from each segment's key index
  (:mod:`loosely.storage.keyindex`), newest first, reading only the batches whose key hashes match and keeping the
  records whose key is equal. Appends feed the active segment's index with the hashes validation computed;
  :meth:`PartitionLog.persist_key_indexes` writes closed segments' sidecars (the broker runs it off its loop).
* **Concurrency**: every method runs on the owner's thread. Non-active segments never change in place, so the
  cleaner may read their files from another thread; it hands back replacement segments that the owner installs
  with :meth:`PartitionLog.install_cleaned`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from loosely.protocol.batch_layout import TIMESTAMP_TYPE_BIT
from loosely.protocol.compression import Codec
from loosely.protocol.errors import CorruptRecordError, ErrorCode
from loosely.protocol.records import (
    BATCH_HEADER_BYTES,
    BatchHeader,
    NewRecord,
    build_batch,
    decode_records,
    iter_batches,
    read_header,
    rewrite_base_offset,
    set_log_append_time,
    set_max_timestamp,
)
from loosely.protocol.validation import (
    BatchRejected,
    RecordError,
    ValidationPolicy,
    check_size_and_crc,
    validate_client_batch,
)
from loosely.storage.cleaner import CleanResult
from loosely.storage.clock import Clock
from loosely.storage.config import LogConfig
from loosely.storage.faults import StorageFaults, describe
from loosely.storage.fs import FileSystem
from loosely.storage.keyindex import KEY_INDEX_SUFFIX, batch_key_hashes, matching_offsets
from loosely.storage.retention import SegmentInfo, deletable_prefix, should_roll
from loosely.storage.segment import (
    STORED_BATCH_DECOMPRESSED_BYTES_MAX,
    Recovery,
    Segment,
    SegmentMark,
    SegmentSlice,
    segment_file_name,
)
from loosely.storage.verify import QUARANTINE_SUFFIX

log = logging.getLogger(__name__)

# A produce request is refused when a batch inflates past 64x max.message.bytes (a decompression bomb); stored
# batches are read back with STORED_BATCH_DECOMPRESSED_BYTES_MAX (see loosely.storage.segment).
PRODUCE_INFLATION_MAX: Final = 64

# Topic compression.type -> the codec batches are stored with ("producer": as sent).
_TOPIC_CODECS: dict[str, Codec] = {
    "uncompressed": Codec.NONE,
    "gzip": Codec.GZIP,
    "snappy": Codec.SNAPPY,
    "lz4": Codec.LZ4,
    "zstd": Codec.ZSTD,
}

__all__ = [
    "AppendResult",
    "LogError",
    "PartitionLog",
    "ReadResult",
    "StorageError",
]

LEADER_EPOCH = 0  # a single node is always the leader of epoch 0


class LogError(Exception):
    """A request the log refuses; ``error_code`` is the Kafka error to answer with, ``record_errors`` the records
    at fault (KIP-467) when validation names them."""

    def __init__(self, error_code: ErrorCode, message: str, record_errors: tuple[RecordError, ...] = ()) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.record_errors = record_errors


class StorageError(LogError):
    """The disk failed under a log (ENOSPC, EIO, any ``OSError``): answered as KAFKA_STORAGE_ERROR."""

    def __init__(self, subject: str, operation: str, cause: OSError, detail: str = "") -> None:
        super().__init__(ErrorCode.kafka_storage_error, f"{operation} failed on {subject}: {describe(cause)}{detail}")
        self.operation = operation
        self.cause = cause


@dataclass(frozen=True, slots=True)
class AppendResult:
    base_offset: int
    last_offset: int
    log_append_time_ms: int  # -1 unless the topic uses LogAppendTime
    log_start_offset: int
    batches: tuple[BatchHeader, ...] = ()  # as written, offsets assigned


@dataclass(frozen=True, slots=True)
class ReadResult:
    slices: tuple[SegmentSlice, ...]
    log_start_offset: int
    high_watermark: int

    @property
    def size(self) -> int:
        return sum(s.length for s in self.slices)

    def read_bytes(self) -> bytes:
        return b"".join(s.file.pread(s.length, s.position) for s in self.slices)


_T = TypeVar("_T")

BatchCheck = Callable[[bytearray, int, BatchHeader], None]


class PartitionLog:
    def __init__(
        self,
        fs: FileSystem,
        clock: Clock,
        directory: str,
        config: LogConfig,
        *,
        recovery_point: int = 0,
        log_start_offset: int = 0,
        clean_shutdown: bool = False,
        faults: StorageFaults | None = None,
    ) -> None:
        self.fs = fs
        self.clock = clock
        self.dir = directory
        self.faults = faults if faults is not None else StorageFaults(clock)
        # A failed append whose undo failed too: (segment, its state before the append). While set, writes refuse.
        self._torn: tuple[Segment, SegmentMark] | None = None
        self.config = config
        self.recovery_point = recovery_point
        self._unflushed_messages = 0
        self._last_flush_ms = clock.monotonic_ms()
        fs.makedirs(directory)
        self.segments: list[Segment] = []
        self.truncated_bytes_on_recovery = 0
        self.damaged_batches = 0  # found by recovery since this log was opened
        self.index_rebuilds = 0  # indexes found insane or disagreeing with the log, and rebuilt
        self._quarantine: dict[str, int] = {}  # quarantine file path -> bytes, until an operator removes it
        self._load(clean_shutdown)
        self.log_start_offset = max(log_start_offset, self.segments[0].base_offset)
        self.log_start_offset = min(self.log_start_offset, self.log_end_offset)

    # --- loading -------------------------------------------------------------------------------------------

    def _new_segment(self, base_offset: int) -> Segment:
        return Segment(
            self.fs,
            self.dir,
            base_offset,
            index_interval_bytes=self.config.index_interval_bytes,
            index_bytes_max=self.config.segment_index_bytes,
            now_ms=self.clock.now_ms(),
        )

    def _load(self, clean_shutdown: bool) -> None:
        names = self.fs.listdir(self.dir)
        for name in names:
            # Leftovers of an interrupted cleaner swap (see loosely.storage.cleaner): ".cleaned" files were never
            # installed, so they go; a "<base>.log.<end>.swap" had been committed, so its install completes.
            if name.endswith(".cleaned"):
                self.fs.remove(os.path.join(self.dir, name))
        for name in names:
            if name.endswith(".swap") and ".log." in name:
                self._complete_swap(name)
        names = self.fs.listdir(self.dir)
        bases = sorted(int(n[:-4]) for n in names if n.endswith(".log") and n[:-4].isdigit())
        for n in names:
            if n.endswith(KEY_INDEX_SUFFIX + ".tmp"):
                self.fs.remove(os.path.join(self.dir, n))  # a sidecar write cut short
        for suffix in (".index", ".timeindex", KEY_INDEX_SUFFIX):
            for n in names:
                if n.endswith(suffix) and n[: -len(suffix)].isdigit() and int(n[: -len(suffix)]) not in bases:
                    self.fs.remove(os.path.join(self.dir, n))
        for n in names:
            if n.endswith(QUARANTINE_SUFFIX):
                path = os.path.join(self.dir, n)
                self._quarantine[path] = self._file_size(path)
        for i, base in enumerate(bases):
            seg = self._new_segment(base)
            is_last = i == len(bases) - 1
            needs_recovery = not clean_shutdown and (is_last or seg_next_known(bases, i) > self.recovery_point)
            found = seg.recover() if needs_recovery else seg.load()
            if found is not None and self._after_recovery(seg, found, later=bases[i + 1 :]):
                is_last = True  # the segments after a cut were quarantined
            if self.segments and seg.base_offset < self.segments[-1].next_offset:
                self._keep(*seg.quarantine_whole())
                log.warning(
                    "%s: segment %s overlaps the previous one (which ends before offset %d); moved it aside",
                    self.name,
                    segment_file_name(base, ".log"),
                    self.segments[-1].next_offset,
                )
                continue
            if seg.is_empty and not is_last:
                seg.delete()
                continue
            self.segments.append(seg)
            if is_last:
                break
        if not self.segments:
            self.segments.append(self._new_segment(0))
        if self._quarantine:
            log.warning(
                "%s: %d quarantine file(s), %d bytes, beside the log (%s); inspect with `loosely log verify`, "
                "remove when done (docs/broker.md, 'Damage, recovery and quarantine files')",
                self.name,
                len(self._quarantine),
                sum(self._quarantine.values()),
                ", ".join(os.path.basename(p) for p in sorted(self._quarantine)),
            )
        self.recovery_point = min(self.recovery_point, self.log_end_offset)
        if not clean_shutdown:
            # Everything is validated now; make it durable before trusting it as the new recovery point.
            self.segments[-1].flush()
            self.recovery_point = self.log_end_offset

    def _file_size(self, path: str) -> int:
        f = self.fs.open(path, create=False)
        try:
            return f.size()
        finally:
            f.close()

    def _keep(self, path: str, size: int) -> None:
        self._quarantine[path] = size

    def _after_recovery(self, seg: Segment, found: Recovery, *, later: Sequence[int] = ()) -> bool:
        """Log what recovery found and carry out its cut; True when bytes were cut (and ``later`` moved aside)."""
        name = segment_file_name(seg.base_offset, ".log")
        if found.index_problems:
            self.index_rebuilds += 1
            log.warning(
                "%s: rebuilt the indexes of segment %s (offsets %d-%d, %d bytes) from the log: %s%s",
                self.name,
                name,
                seg.base_offset,
                found.next_offset - 1,
                found.keep_bytes,
                "; ".join(found.index_problems[:3]),
                f" (and {len(found.index_problems) - 3} more)" if len(found.index_problems) > 3 else "",
            )
        if not found.cut_bytes:
            return False
        # Later segments first: until the damaged segment itself is cut, a crash makes the next start redo it all.
        for base in later:
            path, size = self._new_segment(base).quarantine_whole()
            self._keep(path, size)
            self.truncated_bytes_on_recovery += size
            log.warning(
                "%s: segment %s (offsets from %d) follows the damage in %s; moved whole (%d bytes) to %s",
                self.name,
                segment_file_name(base, ".log"),
                base,
                name,
                size,
                os.path.basename(path),
            )
        path, size = seg.cut(found.keep_bytes)
        self._keep(path, size)
        self.truncated_bytes_on_recovery += size
        if found.damaged:
            self.damaged_batches += 1
        kept = f"offsets {found.first_offset}-{found.next_offset - 1}" if found.first_offset >= 0 else "no batch"
        log.warning(
            "%s: segment %s: %s at byte %d; kept %s (%d bytes), cut %d bytes (offsets from %d on) into %s",
            self.name,
            name,
            found.problem,
            found.keep_bytes,
            kept,
            found.keep_bytes,
            size,
            found.next_offset,
            os.path.basename(path),
        )
        return True

    @property
    def name(self) -> str:
        """``<topic>-<partition>``: the directory's name, as log lines and metrics name the partition."""
        return os.path.basename(self.dir)

    def quarantined(self) -> dict[str, int]:
        """Quarantine files (path -> bytes) still beside the log; forgets those an operator removed."""
        for path in [p for p in self._quarantine if not self.fs.exists(p)]:
            del self._quarantine[path]
        return dict(self._quarantine)

    def _complete_swap(self, swap_name: str) -> None:
        """Finish installing a cleaned segment whose ``<base>.log.<end>.swap`` was committed before a crash.

        The swap replaces every segment whose base offset lies in ``[base, end)``: their files (indexes of the
        swap's own base included) are removed, and the swap becomes ``<base>.log``. Indexes are rebuilt on load.
        """
        stem = swap_name[: -len(".swap")]
        base_s, _, end_s = stem.partition(".log.")
        base, end = int(base_s), int(end_s)
        for n in self.fs.listdir(self.dir):
            head, _, suffix = n.partition(".")
            if head.isdigit() and suffix in ("log", "index", "timeindex", "keyindex") and base <= int(head) < end:
                self.fs.remove(os.path.join(self.dir, n))
        self.fs.rename(os.path.join(self.dir, swap_name), os.path.join(self.dir, segment_file_name(base, ".log")))
        self.fs.fsync_dir(self.dir)

    # --- offsets -------------------------------------------------------------------------------------------

    @property
    def active(self) -> Segment:
        return self.segments[-1]

    @property
    def log_end_offset(self) -> int:
        return self.segments[-1].next_offset

    @property
    def high_watermark(self) -> int:
        return self.log_end_offset

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    # --- append --------------------------------------------------------------------------------------------

    def append(
        self,
        records: bytes | bytearray | memoryview,
        *,
        from_client: bool = True,
        check: BatchCheck | None = None,
    ) -> AppendResult:
        """Validate and append the batches in ``records``; all or nothing.

        ``check`` runs on each batch after validation and before offsets are assigned (the idempotent
        producer's sequence check hooks in here); it raises :class:`LogError` to refuse the request.
        """
        now = self.clock.now_ms()
        buf = bytearray(records)
        try:
            found = list(iter_batches(buf))
        except CorruptRecordError as e:
            raise LogError(e.error_code, str(e)) from e
        if not found:
            raise LogError(ErrorCode.invalid_record, "the request holds no record batch")
        cfg = self.config
        key_hashes: list[bytes | None] = []
        for i, (pos, sent) in enumerate(found):
            h, hashes = self._validate(buf, pos, sent, now, from_client)
            found[i] = (pos, h)
            key_hashes.append(hashes)
            if check is not None:
                check(buf, pos, h)
        target = _TOPIC_CODECS.get(cfg.compression_type)
        if target is not None and any(h.codec != target and not h.is_control for _, h in found):
            buf, found = self._recompress(buf, found, target)
        offset = self.log_end_offset
        written: list[tuple[int, BatchHeader]] = []
        for pos, h in found:
            rewrite_base_offset(buf, pos, offset, LEADER_EPOCH)
            new_h = dataclasses.replace(h, base_offset=offset, partition_leader_epoch=LEADER_EPOCH)
            if cfg.log_append_time and not h.is_control:
                set_log_append_time(buf, pos, new_h, now)
                new_h = dataclasses.replace(new_h, attributes=new_h.attributes | TIMESTAMP_TYPE_BIT, max_timestamp=now)
            written.append((pos, new_h))
            offset = new_h.next_offset
        last_offset = offset - 1
        self.repair()
        if should_roll(self._info(self.active), len(buf), last_offset, cfg, now):
            try:
                self.roll()
            except OSError as e:
                raise self.storage_error("roll", e) from e
        seg = self.active
        mark = seg.mark()
        unflushed = self._unflushed_messages
        try:
            seg.append(buf, written, key_hashes)
            self._unflushed_messages += sum(h.last_offset_delta + 1 for _, h in written)
            self._maybe_flush_after_append()  # the fsync flush.messages asks for is part of the append
        except OSError as e:
            self._unflushed_messages = unflushed
            raise self._undo_append(seg, mark, e) from e
        # Both sides of the durable write: contiguous offsets, and the segment grew by exactly the request.
        assert written[0][1].base_offset == mark.next_offset and self.log_end_offset == last_offset + 1
        assert seg.size == mark.log_bytes + len(buf), f"{seg}: grew {seg.size - mark.log_bytes} of {len(buf)} bytes"
        self.faults.resolved(self.name, "append")
        return AppendResult(
            base_offset=written[0][1].base_offset,
            last_offset=last_offset,
            log_append_time_ms=now if cfg.log_append_time else -1,
            log_start_offset=self.log_start_offset,
            batches=tuple(h for _, h in written),
        )

    def _validate(
        self, buf: bytearray, pos: int, h: BatchHeader, now: int, from_client: bool
    ) -> tuple[BatchHeader, bytes]:
        """Raise :class:`LogError` for a batch the log refuses; returns the header as it will be stored and the
        hashes of its record keys (for the key index)."""
        cfg = self.config
        where = os.path.basename(self.dir)
        if from_client:
            policy = ValidationPolicy(
                now_ms=now,
                max_message_bytes=cfg.max_message_bytes,
                decompressed_bytes_max=cfg.max_message_bytes * PRODUCE_INFLATION_MAX,
                timestamp_before_max_ms=cfg.timestamp_before_max_ms,
                timestamp_after_max_ms=cfg.timestamp_after_max_ms,
                log_append_time=cfg.log_append_time,
                compacted=cfg.compact,
            )
            try:
                valid = validate_client_batch(buf, pos, h, policy, where)
            except BatchRejected as e:
                raise LogError(e.error_code, str(e), e.record_errors) from e
            if not cfg.log_append_time and (h.max_timestamp != valid.max_timestamp or h.is_log_append_time):
                # Kafka stores the largest record timestamp as CreateTime, whatever the producer claimed.
                attributes = set_max_timestamp(buf, pos, h, valid.max_timestamp, log_append_time=False)
                h = dataclasses.replace(h, attributes=attributes, max_timestamp=valid.max_timestamp)
            return h, valid.key_hashes
        # The broker's own batches (coordinators, transaction markers): size and CRC, no client rules.
        try:
            check_size_and_crc(buf, pos, h, cfg.max_message_bytes, where)
        except BatchRejected as e:
            raise LogError(e.error_code, str(e)) from e
        return h, batch_key_hashes(memoryview(buf)[pos + BATCH_HEADER_BYTES : pos + h.size], h, where)

    def _recompress(
        self, buf: bytearray, found: list[tuple[int, BatchHeader]], target: Codec
    ) -> tuple[bytearray, list[tuple[int, BatchHeader]]]:
        """Re-encode batches with the topic's ``compression.type`` (Kafka's LogValidator does the same).

        Producer id, epoch, sequence, timestamps and offset deltas are kept, so idempotence still holds.
        """
        out = bytearray()
        limit = self.config.max_message_bytes * PRODUCE_INFLATION_MAX
        for pos, h in found:
            if h.is_control or h.codec == target:
                out += buf[pos : pos + h.size]
                continue
            recs = decode_records(buf, pos, h, limit)
            out += build_batch(
                [
                    NewRecord(r.key, r.value, r.timestamp, r.headers, offset_delta=r.offset - h.base_offset)
                    for r in recs
                ],
                codec=target,
                producer_id=h.producer_id,
                producer_epoch=h.producer_epoch,
                base_sequence=h.base_sequence,
                transactional=h.is_transactional,
                base_timestamp=h.base_timestamp,
                last_offset_delta=h.last_offset_delta,
            )
        try:
            return out, list(iter_batches(out))
        except CorruptRecordError as e:  # pragma: no cover - we just built these
            raise LogError(ErrorCode.corrupt_message, str(e)) from e

    # --- disk errors ---------------------------------------------------------------------------------------

    def storage_error(self, operation: str, error: OSError, consequence: str = "") -> StorageError:
        """Report a disk failure under this log (counted, logged sparingly) and the error to answer with."""
        self.faults.report(self.name, operation, error, consequence)
        return StorageError(self.name, operation, error)

    def _undo_append(self, seg: Segment, mark: SegmentMark, error: OSError) -> StorageError:
        try:
            seg.rollback(mark)
        except OSError as e:
            self._torn = (seg, mark)
            self.faults.refusing_writes.add(self.dir)
            self.storage_error("truncate", e, "; the partition refuses writes until the torn append is cut off")
        return self.storage_error("append", error)

    @property
    def refusing_writes(self) -> bool:
        """A failed append could not be undone yet; every write answers KAFKA_STORAGE_ERROR until it is."""
        return self._torn is not None

    def repair(self) -> None:
        """Retry cutting off a failed append that could not be undone; raises :class:`StorageError` while it fails.

        Called before every append and roll, and by housekeeping, so the partition takes writes again as soon as
        the disk allows the truncation, without a restart.
        """
        if self._torn is None:
            return
        seg, mark = self._torn
        try:
            seg.rollback(mark)
        except OSError as e:
            raise self.storage_error(
                "truncate", e, "; the partition refuses writes until the torn append is cut off"
            ) from e
        self._torn = None
        self.faults.refusing_writes.discard(self.dir)
        self.faults.resolved(self.name, "truncate")

    def _maybe_flush_after_append(self) -> None:
        if self._unflushed_messages >= self.config.flush_messages:
            self.flush()

    def maybe_flush(self) -> bool:
        """fsync if ``flush.ms`` has passed since the last flush and something is unflushed."""
        if self._unflushed_messages and self.clock.monotonic_ms() - self._last_flush_ms >= self.config.flush_ms:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        self.active.flush()
        self.recovery_point = self.log_end_offset
        self._unflushed_messages = 0
        self._last_flush_ms = self.clock.monotonic_ms()

    def roll(self) -> Segment:
        """Close the active segment (fsynced) and open a new one at the log end offset."""
        self.repair()  # never freeze a segment that still holds the bytes of a failed append
        old = self.active
        if old.is_empty:
            return old
        old.flush()
        self.recovery_point = max(self.recovery_point, old.next_offset)
        seg = self._new_segment(old.next_offset)
        self.segments.append(seg)
        return seg

    # --- read ----------------------------------------------------------------------------------------------

    def check_offset(self, offset: int) -> None:
        if offset < self.log_start_offset or offset > self.log_end_offset:
            raise LogError(
                ErrorCode.offset_out_of_range,
                f"offset {offset} is outside [{self.log_start_offset}, {self.log_end_offset}]",
            )

    def read(self, offset: int, max_bytes: int, *, upper_offset: int | None = None, min_one: bool = True) -> ReadResult:
        """Whole batches from ``offset`` on, at most ``max_bytes`` (but one batch at least when ``min_one``).

        ``upper_offset`` bounds the read (the last stable offset for read_committed); default the high
        watermark. Raises :class:`LogError` OFFSET_OUT_OF_RANGE outside ``[log start, log end]``.
        """
        self.check_offset(offset)
        upper = self.high_watermark if upper_offset is None else min(upper_offset, self.high_watermark)
        slices: list[SegmentSlice] = []
        remaining = max_bytes
        pos = offset
        for seg in self._segments_from(offset):
            if pos >= upper or (remaining <= 0 and not (min_one and not slices)):
                break
            sl = seg.read(pos, remaining, upper, min_one=min_one and not slices)
            if sl is None:
                if not seg.is_empty and seg.next_offset > pos:
                    break  # this segment has data that did not fit; later segments must wait their turn
                continue
            slices.append(sl)
            remaining -= sl.length
            pos = sl.next_offset
            if pos < seg.next_offset:
                break  # the rest of this segment did not fit: a later segment's batches must not jump the queue
        return ReadResult(tuple(slices), self.log_start_offset, self.high_watermark)

    def _segments_from(self, offset: int) -> Sequence[Segment]:
        segs = self.segments
        lo, hi = 0, len(segs) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if segs[mid].base_offset <= offset:
                lo = mid
            else:
                hi = mid - 1
        return segs[lo:]

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """``(offset, timestamp)`` of the first record with a timestamp ``>= timestamp``, or None."""
        for seg in self.segments:
            if seg.max_timestamp < timestamp or seg.next_offset <= self.log_start_offset:
                continue
            start = max(seg.time_index.lookup(timestamp), self.log_start_offset)
            found = seg.find_position(start)
            if found is None:
                continue
            for pos, h in seg.iter_headers(found[0]):
                if h.max_timestamp < timestamp or h.is_control:
                    continue
                data = seg.log.pread(h.size, pos)
                for r in decode_records(data, 0, h, STORED_BATCH_DECOMPRESSED_BYTES_MAX):
                    if r.timestamp >= timestamp and r.offset >= self.log_start_offset:
                        return r.offset, r.timestamp
        return None

    def max_timestamp_offset(self) -> tuple[int, int] | None:
        """ListOffsets MAX_TIMESTAMP: ``(offset, timestamp)`` of the first record carrying the log's largest timestamp.

        Kafka's semantics (``UnifiedLog.fetchOffsetByTimestamp``): the first segment with the largest max
        timestamp, the first batch in it whose max timestamp equals it, and in that batch the first record with
        that timestamp. Control batches count like any other, so when a transaction marker is the newest batch
        the answer is the marker's offset.
        """
        best: Segment | None = None
        for seg in self.segments:
            if seg.next_offset > self.log_start_offset and (best is None or seg.max_timestamp > best.max_timestamp):
                best = seg
        if best is None or best.max_timestamp < 0:
            return None
        ts = best.max_timestamp
        for pos, h in best.iter_headers(best.offset_index.lookup(best.offset_of_max_timestamp)):
            if h.max_timestamp != ts:
                continue
            data = best.log.pread(h.size, pos)
            for r in decode_records(data, 0, h, STORED_BATCH_DECOMPRESSED_BYTES_MAX):
                if r.timestamp == ts:
                    return r.offset, ts
            return None
        return None

    # --- key search ----------------------------------------------------------------------------------------

    def find_key(self, key: bytes, *, limit: int) -> list[int]:
        """Offsets of the records whose key equals ``key``, newest first, at most ``limit``.

        Each segment's key index names the batches that may hold the key; only those are read, and a record counts
        only if its key is equal (hashes collide). Control batches and records below the log start offset are
        never returned; records with a null key are never found.

        >>> import tempfile
        >>> from loosely.protocol.records import NewRecord, build_batch
        >>> from loosely.storage.clock import SystemClock
        >>> from loosely.storage.fs import OsFileSystem
        >>> log = PartitionLog(OsFileSystem(), SystemClock(), tempfile.mkdtemp(), LogConfig())
        >>> _ = log.append(build_batch([NewRecord(k, b"v", 0) for k in (b"a", b"b", b"a", None)]))
        >>> log.find_key(b"a", limit=10), log.find_key(b"a", limit=1), log.find_key(b"c", limit=10)
        ([2, 0], [2], [])
        """
        out: list[int] = []
        if limit <= 0:
            return out
        segments = list(self.segments)
        for i in range(len(segments) - 1, -1, -1):
            seg = segments[i]
            if seg.next_offset <= self.log_start_offset:
                break
            for pos in seg.key_candidates(key, closed=i < len(segments) - 1):
                if pos + BATCH_HEADER_BYTES > seg.size:
                    continue  # never, unless the segment was cut under the index; the index is a hint
                h = read_header(seg.log.pread(BATCH_HEADER_BYTES, pos))
                body = seg.log.pread(h.size - BATCH_HEADER_BYTES, pos + BATCH_HEADER_BYTES)
                for offset in reversed(matching_offsets(body, h, key)):
                    if offset >= self.log_start_offset:
                        out.append(offset)
                        if len(out) >= limit:
                            return out
        return out

    def key_index_backlog(self) -> list[Segment]:
        """Closed segments whose key index is not settled yet (see :meth:`persist_key_indexes`), oldest first."""
        return [s for s in self.segments[:-1] if not s.key_index.settled]

    @staticmethod
    def persist_key_indexes(segments: Sequence[Segment]) -> int:
        """Settle the key index of each closed segment: use a matching sidecar, or build one and write it.

        Closed segments never change in place, so this may run in a worker thread (the broker does so). A segment
        deleted meanwhile (retention, the cleaner) is skipped. Returns how many sidecars were written.
        """
        written = 0
        for seg in segments:
            try:
                if seg.persist_key_index():
                    written += 1
                    if not seg.key_index_alive():
                        seg.key_index.delete()  # the segment went while its sidecar was written
            except (OSError, ValueError, struct.error, CorruptRecordError):
                continue  # its file was closed under us: the segment is gone
        return written

    # --- retention -----------------------------------------------------------------------------------------

    @staticmethod
    def _info(seg: Segment) -> SegmentInfo:
        return SegmentInfo(
            base_offset=seg.base_offset,
            next_offset=seg.next_offset,
            size_bytes=seg.size,
            max_timestamp_ms=seg.max_timestamp,
            first_batch_timestamp_ms=seg.first_batch_timestamp,
            created_ms=seg.created_ms,
            index_full=seg.offset_index.is_full,
        )

    def segment_infos(self) -> list[SegmentInfo]:
        return [self._info(s) for s in self.segments]

    def maybe_roll_for_time(self) -> bool:
        """Roll an idle active segment past ``segment.ms`` (Kafka checks this on append only; we also tick)."""
        if should_roll(self._info(self.active), 0, self.log_end_offset, self.config, self.clock.now_ms()):
            self.roll()
            return True
        return False

    def apply_retention(self) -> int:
        """Delete the segments retention allows; returns how many were deleted."""
        now = self.clock.now_ms()
        n = deletable_prefix(self.segment_infos(), self.config, self.log_start_offset, now)
        if n == 0:
            return 0
        if n == len(self.segments):
            self.roll()
        doomed = self.segments[:n]
        self.segments = self.segments[n:]
        self.log_start_offset = max(self.log_start_offset, self.segments[0].base_offset)
        for seg in doomed:
            seg.delete()
        return n

    def delete_records_before(self, offset: int) -> int:
        """DeleteRecords: make ``offset`` the log start offset (-1 = the high watermark)."""
        target = self.high_watermark if offset == -1 else offset
        if target < 0 or target > self.high_watermark:
            raise LogError(
                ErrorCode.offset_out_of_range,
                f"cannot delete records before {offset}: the high watermark is {self.high_watermark}",
            )
        if target > self.log_start_offset:
            self.log_start_offset = target
            self.apply_retention()
        return self.log_start_offset

    # --- cleaner support -----------------------------------------------------------------------------------

    def cleanable_segments(self) -> list[Segment]:
        """The non-active segments, oldest first: what the cleaner may read (they never change in place)."""
        return self.segments[:-1]

    def install_cleaned(self, old: list[Segment], result: CleanResult) -> bool:
        """Swap the cleaner's output in for the segments it read; False (nothing changed) if they are gone.

        Per group: rename ``<base>.log.cleaned`` to ``<base>.log.<end>.swap`` (the commit point), delete the
        replaced segments, rename the new indexes and log into place, open the new segment.
        """
        by_base = {s.base_offset: s for s in old}
        for g in result.groups:
            if any(b not in by_base or by_base[b] not in self.segments for b in g.replaces):
                self._discard_cleaned(result)
                return False
        for g in result.groups:
            d = self.dir
            cleaned = os.path.join(d, segment_file_name(g.base_offset, ".log.cleaned"))
            swap = os.path.join(d, f"{segment_file_name(g.base_offset, '.log')}.{g.end_offset}.swap")
            self.fs.rename(cleaned, swap)
            self.fs.fsync_dir(d)
            replaced = [by_base[b] for b in g.replaces]
            i = self.segments.index(replaced[0])
            for seg in replaced:
                seg.delete()
            for suffix in (".index", ".timeindex"):
                self.fs.rename(
                    os.path.join(d, segment_file_name(g.base_offset, suffix + ".cleaned")),
                    os.path.join(d, segment_file_name(g.base_offset, suffix)),
                )
            self.fs.rename(swap, os.path.join(d, segment_file_name(g.base_offset, ".log")))
            self.fs.fsync_dir(d)
            new = self._new_segment(g.base_offset)
            found = new.load()
            if found is not None:
                self._after_recovery(new, found)
            self.segments[i : i + len(replaced)] = [new]
        return True

    def _discard_cleaned(self, result: CleanResult) -> None:
        for g in result.groups:
            for suffix in (".log", ".index", ".timeindex"):
                p = os.path.join(self.dir, segment_file_name(g.base_offset, suffix + ".cleaned"))
                if self.fs.exists(p):
                    self.fs.remove(p)

    # --- lifecycle -----------------------------------------------------------------------------------------

    def housekeeping(self) -> int:
        """Time-based work: undo a torn append, roll an idle segment, retention, ``flush.ms``.

        Returns segments deleted. Disk errors are reported (counted, logged sparingly) and the step is retried on
        the next call; they never escape, so one failing partition does not stop the others' housekeeping.
        """
        self._quietly("truncate", self.repair)
        self._quietly("roll", self.maybe_roll_for_time)
        deleted = self._quietly("retention", self.apply_retention)
        self._quietly("flush", self.maybe_flush)
        return deleted or 0

    def housekeeping_flush(self) -> None:
        """``flush.ms`` alone (run more often than the rest of :meth:`housekeeping`); disk errors are reported."""
        self._quietly("flush", self.maybe_flush)

    def _quietly(self, operation: str, step: Callable[[], _T]) -> _T | None:
        try:
            return step()
        except StorageError:
            return None  # already reported where it was raised
        except OSError as e:
            self.storage_error(operation, e)
            return None

    def close(self) -> bool:
        """fsync and close the segments. False when the disk failed: the next start must re-validate the tail."""
        clean = True
        try:
            self.repair()
            self.flush()
        except StorageError:
            clean = False
        except OSError as e:
            self.storage_error("flush", e, "; the next start re-validates this log")
            clean = False
        for s in self.segments:
            s.close()
        return clean

    def delete(self) -> None:
        for s in self.segments:
            s.close()
        self.fs.rmtree(self.dir)


def seg_next_known(bases: list[int], i: int) -> int:
    """The offset the segment at ``bases[i]`` ends before, as far as file names tell."""
    return bases[i + 1] if i + 1 < len(bases) else 1 << 62
