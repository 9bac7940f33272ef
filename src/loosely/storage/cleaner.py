"""Log compaction: keep the latest record per key in the non-active segments of ``cleanup.policy=compact`` logs.

Theory of operation
-------------------
A compacted log is split at the *first dirty offset* (the cleaner checkpoint): below it, every key appears at most
once (the *clean* section); from it up to the *cleanable end* lies the *dirty* section. The cleanable end is the
base offset of the active segment, or earlier: never past the last stable offset (open transactions), and never
into segments holding records younger than ``min.compaction.lag.ms``.

One cleaning pass, in three steps:

1. :func:`plan` (owner thread, pure): picks the cleanable segments and decides whether cleaning is due
   (dirty bytes / cleanable bytes >= ``min.cleanable.dirty.ratio``, or a dirty record older than
   ``max.compaction.lag.ms``).
2. :func:`clean` (worker thread): reads the segment files through its own file handles, builds the *offset map*
   ``key -> last offset`` over the dirty section, then rewrites the cleanable segments, in groups no larger than
   ``segment.bytes``, into ``<base>.log.cleaned`` files (with their indexes). A record survives when its offset is
   the latest for its key (or its key does not occur in the dirty section). Offsets never change; batches keep
   their base offset and offset span, so gaps appear where records went. Unchanged batches are copied byte for
   byte; changed ones are re-encoded (same codec, new CRC). Records of aborted transactions are dropped (an ABORT
   marker aborts its producer's transactional batches since that producer's previous marker). Transaction markers
   are kept. A batch whose records all go but which is the last batch of its producer id is kept empty, so the
   idempotent producer's state can still be rebuilt from the log.
   **Tombstones** (null values) that survive get a *delete horizon* (batch attribute bit 6, horizon stored as the
   base timestamp) of ``now + delete.retention.ms``; a later pass removes them once the horizon has passed, so a
   consumer that reads the log within ``delete.retention.ms`` still sees every deletion.
3. :meth:`PartitionLog.install_cleaned` (owner thread): swaps each group in. The commit point of a group is the
   rename of its ``.cleaned`` log to ``<base>.log.<end>.swap``; recovery finishes any swap it finds (see
   :mod:`loosely.storage.log`), so a crash at any moment leaves either the old segments or the new one.

The worker holds the GIL while decoding records, so produce and fetch slow down during a pass but never wait for
it. The offset map is bounded by ``offset_map_entries_max``; past it, the dirty section is cleaned up to the
segment where the map filled and the rest waits for the next pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from loosely.protocol.compression import Codec
from loosely.protocol.errors import CorruptRecordError
from loosely.protocol.records import (
    CONTROL_KEY,
    BatchHeader,
    ControlType,
    NewRecord,
    Record,
    build_batch,
    decode_records,
    iter_batches,
    read_header,
)
from loosely.storage.config import LogConfig
from loosely.storage.fs import File, FileSystem
from loosely.storage.segment import STORED_BATCH_DECOMPRESSED_BYTES_MAX, Segment

__all__ = [
    "OFFSET_MAP_ENTRIES_MAX",
    "CleanAborted",
    "CleanResult",
    "CleanTask",
    "CleanedGroup",
    "SegmentRef",
    "clean",
    "plan",
]

# Kafka sizes its offset map by log.cleaner.dedupe.buffer.size (128 MiB, ~24 bytes/entry); a Python dict entry
# with a short key costs ~100 bytes, so this keeps the map near 200 MiB at most.
OFFSET_MAP_ENTRIES_MAX: Final = 2_000_000
CLEANED_SUFFIX: Final = ".cleaned"


class CleanAborted(Exception):
    """The segments changed under the cleaner (deleted by retention or with their topic); try again later."""


@dataclass(frozen=True, slots=True)
class SegmentRef:
    base_offset: int
    next_offset: int
    log_path: str
    size_bytes: int
    max_timestamp_ms: int


@dataclass(frozen=True, slots=True)
class CleanTask:
    directory: str
    segments: tuple[SegmentRef, ...]
    first_dirty_offset: int
    config: LogConfig
    now_ms: int
    offset_map_entries_max: int = OFFSET_MAP_ENTRIES_MAX


@dataclass(frozen=True, slots=True)
class CleanedGroup:
    replaces: tuple[int, ...]  # base offsets of the old segments
    base_offset: int
    end_offset: int  # next offset of the last replaced segment


@dataclass(frozen=True, slots=True)
class CleanResult:
    groups: tuple[CleanedGroup, ...]
    first_dirty_offset: int
    records_removed: int
    bytes_before: int
    bytes_after: int


def plan(
    segments: list[SegmentRef],
    first_dirty_offset: int,
    config: LogConfig,
    now_ms: int,
    upper_offset: int,
    *,
    force: bool = False,
) -> CleanTask | None:
    """Choose what to clean, or None when nothing is due. ``segments`` excludes the active segment."""
    if not config.compact:
        return None
    cleanable: list[SegmentRef] = []
    for s in segments:
        if s.next_offset > upper_offset:
            break
        if config.min_compaction_lag_ms > 0 and s.max_timestamp_ms > now_ms - config.min_compaction_lag_ms:
            break
        cleanable.append(s)
    if not cleanable:
        return None
    total = sum(s.size_bytes for s in cleanable)
    dirty = [s for s in cleanable if s.next_offset > first_dirty_offset]
    if not dirty:
        if not force:
            return None
    else:
        dirty_bytes = sum(s.size_bytes for s in dirty)
        overdue = any(
            now_ms - s.max_timestamp_ms > config.max_compaction_lag_ms for s in dirty if s.max_timestamp_ms >= 0
        )
        if not force and not overdue and total > 0 and dirty_bytes / total < config.min_cleanable_dirty_ratio:
            return None
    return CleanTask(
        directory=os.path.dirname(cleanable[0].log_path),
        segments=tuple(cleanable),
        first_dirty_offset=first_dirty_offset,
        config=config,
        now_ms=now_ms,
    )


class _Reader:
    """Batches of a segment file, through the cleaner's own handle."""

    def __init__(self, fs: FileSystem, ref: SegmentRef) -> None:
        try:
            self.file: File = fs.open(ref.log_path, create=False)
        except FileNotFoundError as e:
            raise CleanAborted(f"{ref.log_path} is gone") from e
        self.ref = ref

    def batches(self) -> list[tuple[BatchHeader, bytes]]:
        data = self.file.pread(self.ref.size_bytes, 0)
        try:
            return [(h, data[pos : pos + h.size]) for pos, h in iter_batches(data, allow_partial_tail=True)]
        except CorruptRecordError as e:
            raise CleanAborted(f"{self.ref.log_path}: {e}") from e

    def close(self) -> None:
        self.file.close()


def _aborted_batches(all_batches: list[tuple[BatchHeader, bytes]], output_bytes_max: int) -> set[int]:
    """Base offsets of transactional data batches whose transaction ended with an ABORT marker."""
    open_batches: dict[int, list[int]] = {}
    aborted: set[int] = set()
    for h, data in all_batches:
        if not h.is_transactional or h.producer_id < 0:
            continue
        if h.is_control:
            recs = decode_records(data, 0, h, output_bytes_max)
            pending = open_batches.pop(h.producer_id, [])
            if recs and recs[0].key is not None and len(recs[0].key) >= CONTROL_KEY.size:
                _, kind = CONTROL_KEY.unpack_from(recs[0].key, 0)
                if kind == ControlType.ABORT:
                    aborted.update(pending)
        else:
            open_batches.setdefault(h.producer_id, []).append(h.base_offset)
    return aborted


def clean(fs: FileSystem, task: CleanTask) -> CleanResult:
    """Run one cleaning pass (worker thread). Raises :class:`CleanAborted` when the segments went away."""
    cfg = task.config
    limit = STORED_BATCH_DECOMPRESSED_BYTES_MAX
    readers = [_Reader(fs, ref) for ref in task.segments]
    try:
        per_segment = [r.batches() for r in readers]
    finally:
        for r in readers:
            r.close()
    flat = [b for batches in per_segment for b in batches]
    aborted = _aborted_batches(flat, limit)
    last_batch_of_producer: dict[int, int] = {}
    for h, _ in flat:
        if h.producer_id >= 0:
            last_batch_of_producer[h.producer_id] = h.base_offset

    # 1. The offset map over the dirty section, bounded.
    offset_map: dict[bytes, int] = {}
    clean_end = task.segments[-1].next_offset
    for ref, batches in zip(task.segments, per_segment, strict=True):
        if ref.next_offset <= task.first_dirty_offset:
            continue
        if len(offset_map) >= task.offset_map_entries_max:
            clean_end = ref.base_offset
            break
        for h, data in batches:
            if h.is_control or h.base_offset in aborted or h.last_offset < task.first_dirty_offset:
                continue
            for rec in decode_records(data, 0, h, limit):
                if rec.key is not None and rec.offset >= task.first_dirty_offset:
                    offset_map[rec.key] = rec.offset

    # 2. Rewrite segments below clean_end, grouped up to segment.bytes.
    groups: list[list[int]] = []
    size = 0
    for i, ref in enumerate(task.segments):
        if ref.base_offset >= clean_end:
            break
        if not groups or size + ref.size_bytes > cfg.segment_bytes:
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += ref.size_bytes
    results: list[CleanedGroup] = []
    removed = 0
    bytes_before = bytes_after = 0
    for members in groups:
        first = task.segments[members[0]]
        seg = Segment(
            fs,
            task.directory,
            first.base_offset,
            index_interval_bytes=cfg.index_interval_bytes,
            index_bytes_max=cfg.segment_index_bytes,
            now_ms=task.now_ms,
            suffix=CLEANED_SUFFIX,
        )
        try:
            seg.log.truncate(0)
            seg.offset_index.reset()
            seg.time_index.reset()
            for i in members:
                bytes_before += task.segments[i].size_bytes
                for h, data in per_segment[i]:
                    out, n_removed = _filter_batch(h, data, offset_map, aborted, last_batch_of_producer, task, limit)
                    removed += n_removed
                    if out is not None:
                        seg.append(out, [(0, _header_of(out))])
            bytes_after += seg.size
            seg.flush()
        finally:
            seg.close()
        results.append(
            CleanedGroup(
                replaces=tuple(task.segments[i].base_offset for i in members),
                base_offset=first.base_offset,
                end_offset=task.segments[members[-1]].next_offset,
            )
        )
    return CleanResult(tuple(results), clean_end, removed, bytes_before, bytes_after)


def _header_of(batch: bytes) -> BatchHeader:
    return read_header(batch, 0)


def _filter_batch(  # noqa: PLR0917 - a private step of clean(), called once
    h: BatchHeader,
    data: bytes,
    offset_map: dict[bytes, int],
    aborted: set[int],
    last_batch_of_producer: dict[int, int],
    task: CleanTask,
    limit: int,
) -> tuple[bytes | None, int]:
    """The batch to write (None: drop it) and how many records went."""
    if h.is_control:
        return data, 0
    keep_empty = h.producer_id >= 0 and last_batch_of_producer.get(h.producer_id) == h.base_offset
    if h.base_offset in aborted:
        return (_empty_like(h) if keep_empty else None), h.records_count
    records = decode_records(data, 0, h, limit)
    horizon_passed = h.has_delete_horizon and h.base_timestamp <= task.now_ms
    kept: list[Record] = []
    needs_horizon = False
    for r in records:
        latest = offset_map.get(r.key, -1) if r.key is not None else -1
        if r.offset < latest:
            continue
        if r.value is None:
            if horizon_passed:
                continue
            if not h.has_delete_horizon:
                needs_horizon = True
        kept.append(r)
    n_removed = len(records) - len(kept)
    if not kept:
        return (_empty_like(h) if keep_empty else None), n_removed
    if n_removed == 0 and not needs_horizon:
        return data, 0
    horizon = h.base_timestamp if h.has_delete_horizon else None
    if needs_horizon:
        horizon = task.now_ms + task.config.delete_retention_ms
    out = build_batch(
        [NewRecord(r.key, r.value, r.timestamp, r.headers, offset_delta=r.offset - h.base_offset) for r in kept],
        base_offset=h.base_offset,
        codec=Codec(h.codec),
        producer_id=h.producer_id,
        producer_epoch=h.producer_epoch,
        base_sequence=h.base_sequence,
        transactional=h.is_transactional,
        log_append_time=h.is_log_append_time,
        partition_leader_epoch=h.partition_leader_epoch,
        delete_horizon_ms=horizon,
        last_offset_delta=h.last_offset_delta,
    )
    return out, n_removed


def _empty_like(h: BatchHeader) -> bytes:
    return build_batch(
        [],
        base_offset=h.base_offset,
        producer_id=h.producer_id,
        producer_epoch=h.producer_epoch,
        base_sequence=h.base_sequence,
        transactional=h.is_transactional,
        partition_leader_epoch=h.partition_leader_epoch,
        base_timestamp=h.base_timestamp,
        last_offset_delta=h.last_offset_delta,
    )
