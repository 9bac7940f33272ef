"""Idempotent and transactional producers: sequence checks, duplicates, open and aborted transactions.

Theory of operation
-------------------
Kafka's exactly-once guarantees rest on per-partition *producer state*: for each producer id that wrote to a
partition, its epoch, the sequence ranges and offsets of its last :data:`BATCHES_RETAINED` batches, and the first
offset of its open transaction, if any (``ProducerStateEntry``). The rules (``ProducerAppendInfo``, ``UnifiedLog``),
implemented by the pure functions :func:`check_batch`, :func:`after_batch` and :func:`after_marker`:

* A batch whose epoch and sequence range equal one of the cached batches is a **duplicate**: the producer retried
  after losing our answer. It is not appended again; the answer is the original batch's offsets.
* An epoch below the producer's current one: INVALID_PRODUCER_EPOCH (a zombie). A new epoch must start at
  sequence 0; within an epoch each batch must continue where the last ended (``lastSeq + 1``, wrapping at
  Int32.MAX to 0): else OUT_OF_ORDER_SEQUENCE_NUMBER. A producer the partition has no state for (never seen, or
  its batches left with retention) may start anywhere.
* A transactional batch opens a transaction at its base offset if none is open; a non-transactional batch while
  one is open is INVALID_TXN_STATE. A transaction marker (control batch, written by the transaction coordinator
  with :meth:`ProducerStateManager.write_marker`) closes it; an ABORT marker records ``(producer, first offset,
  marker offset)`` in the partition's aborted list.
* The **last stable offset** of a partition is the first offset of its earliest open transaction (else the high
  watermark): read_committed consumers read up to it, and skip the aborted ranges :meth:`aborted` lists.

The state lives in memory and is **rebuilt from the log** when the broker starts, by scanning batch headers (and the
one record of each control batch) from the log start offset; the log cleaner keeps the last batch of every producer
for this reason. Producer ids are handed out by :class:`ProducerIdAllocator` in blocks whose end is persisted
before any id of the block is used, so an id is never reused after a restart or crash.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import enum
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Final, NewType, Protocol

from loosely.broker.context import BrokerContext
from loosely.broker.transactions.state import EPOCH_MAX, TV2
from loosely.protocol.errors import CorruptRecordError, ErrorCode
from loosely.protocol.records import (
    CONTROL_KEY,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    BatchHeader,
    ControlType,
    build_control_batch,
    decode_records,
    iter_batches,
)
from loosely.storage.fs import FileSystem
from loosely.storage.log import AppendResult, LogError, PartitionLog
from loosely.storage.manager import LogManager

__all__ = [
    "BATCHES_RETAINED",
    "AbortedTxn",
    "BatchMetadata",
    "Origin",
    "ProducerEntry",
    "ProducerId",
    "ProducerIdAllocator",
    "ProducerStateManager",
    "ProducersService",
    "after_batch",
    "after_marker",
    "check_batch",
    "producer_state",
]

log = logging.getLogger("loosely.broker.producers")

ProducerId = NewType("ProducerId", int)

SERVICE: Final = "producers"
# Kafka: producer.id.expiration.check.interval.ms
EXPIRATION_CHECK_INTERVAL_MS: Final = 600_000
BATCHES_RETAINED: Final = 5  # Kafka's ProducerStateEntry.NUM_BATCHES_TO_RETAIN (and max.in.flight for idempotence)
NO_EPOCH: Final = -1
SEQUENCE_MAX: Final = 0x7FFF_FFFF


class Origin(enum.Enum):
    CLIENT = "client"  # a producer's Produce request: sequences are checked
    COORDINATOR = "coordinator"  # the group or transaction coordinator's own writes: epochs only


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class ProducerEntry:
    producer_id: int
    epoch: int = NO_EPOCH
    batches: tuple[BatchMetadata, ...] = ()
    coordinator_epoch: int = -1
    last_timestamp_ms: int = -1
    txn_first_offset: int | None = None

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    @property
    def last_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else -1


@dataclass(frozen=True, slots=True)
class AbortedTxn:
    producer_id: int
    first_offset: int
    last_offset: int  # the ABORT marker's offset


class SequenceError(LogError):
    """A batch the producer state refuses."""


def _in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == SEQUENCE_MAX)


def check_batch(entry: ProducerEntry | None, h: BatchHeader, origin: Origin) -> BatchMetadata | None:
    """Validate a data batch against its producer's state before it is appended.

    Returns the cached batch it duplicates (do not append; answer with its offsets), or None to append. Raises
    :class:`SequenceError` with the Kafka error code otherwise.
    """
    epoch = h.producer_epoch
    if entry is not None and origin is Origin.CLIENT and epoch == entry.epoch:
        for b in entry.batches:
            if b.first_seq == h.base_sequence and b.last_seq == h.last_sequence:
                return b
    current = entry.epoch if entry is not None else NO_EPOCH
    if epoch < current:
        raise SequenceError(
            ErrorCode.invalid_producer_epoch,
            f"producer {h.producer_id} epoch {epoch} is older than the current epoch {current}",
        )
    if origin is Origin.CLIENT:
        if epoch != current:
            if h.base_sequence != 0 and current != NO_EPOCH:
                raise SequenceError(
                    ErrorCode.out_of_order_sequence_number,
                    f"producer {h.producer_id} starts epoch {epoch} at sequence {h.base_sequence}, not 0",
                )
        elif entry is not None and not _in_sequence(entry.last_seq, h.base_sequence):
            raise SequenceError(
                ErrorCode.out_of_order_sequence_number,
                f"producer {h.producer_id} sent sequence {h.base_sequence} after {entry.last_seq}",
            )
    if entry is not None and entry.txn_first_offset is not None and not h.is_transactional:
        raise SequenceError(
            ErrorCode.invalid_txn_state,
            f"producer {h.producer_id} wrote outside its open transaction",
        )
    return None


def after_batch(entry: ProducerEntry | None, h: BatchHeader) -> tuple[ProducerEntry, bool]:
    """The entry after appending data batch ``h`` (offsets assigned); True if it opened a transaction."""
    e = entry or ProducerEntry(h.producer_id)
    batches = e.batches if h.producer_epoch == e.epoch else ()
    if h.base_sequence != NO_SEQUENCE:
        meta = BatchMetadata(h.base_sequence, h.last_sequence, h.base_offset, h.last_offset, h.max_timestamp)
        batches = (*batches, meta)[-BATCHES_RETAINED:]
    opened = h.is_transactional and e.txn_first_offset is None
    return (
        replace(
            e,
            epoch=h.producer_epoch,
            batches=batches,
            last_timestamp_ms=h.max_timestamp,
            txn_first_offset=h.base_offset if opened else e.txn_first_offset,
        ),
        opened,
    )


def after_marker(
    entry: ProducerEntry | None,
    *,
    producer_id: int,
    epoch: int,
    coordinator_epoch: int,
    timestamp_ms: int,
    marker_offset: int,
    commit: bool,
) -> tuple[ProducerEntry, AbortedTxn | None]:
    """The entry after a transaction marker; the aborted range if it aborted a transaction with data here."""
    e = entry or ProducerEntry(producer_id)
    aborted = None
    if e.txn_first_offset is not None and not commit:
        aborted = AbortedTxn(producer_id, e.txn_first_offset, marker_offset)
    batches = e.batches if epoch == e.epoch else ()
    return (
        replace(
            e,
            epoch=epoch,
            batches=batches,
            coordinator_epoch=coordinator_epoch,
            last_timestamp_ms=timestamp_ms,
            txn_first_offset=None,
        ),
        aborted,
    )


def _check_marker(
    entry: ProducerEntry | None, epoch: int, coordinator_epoch: int, transaction_version: int, open_txn: bool
) -> None:
    """A marker's epoch may not be older than the producer's (transaction version 0-1); from version 2 the
    coordinator bumps the epoch at every end, so the marker must be newer, except that a retried marker of a
    transaction already completed (or of a producer at the last epoch) is written again (Kafka 4.4's
    ProducerAppendInfo, KIP-1228)."""
    if entry is None:
        return
    stale = epoch <= entry.epoch if transaction_version >= TV2 else epoch < entry.epoch
    retry = transaction_version >= TV2 and epoch == entry.epoch and (not open_txn or epoch == EPOCH_MAX)
    if stale and not retry:
        word = "not newer than" if transaction_version >= TV2 else "older than"
        raise SequenceError(ErrorCode.invalid_producer_epoch, f"marker epoch {epoch} is {word} {entry.epoch}")
    if entry is not None and coordinator_epoch < entry.coordinator_epoch:
        raise SequenceError(
            ErrorCode.transaction_coordinator_fenced,
            f"marker from coordinator epoch {coordinator_epoch}, already saw {entry.coordinator_epoch}",
        )


class _Partition:
    """Producer state of one partition log (mutable; owned by the manager)."""

    __slots__ = ("aborted", "entries", "log", "ongoing")

    def __init__(self, plog: PartitionLog) -> None:
        self.log = plog
        self.entries: dict[int, ProducerEntry] = {}
        self.ongoing: dict[int, int] = {}  # producer id -> first offset of its open transaction
        self.aborted: list[AbortedTxn] = []  # in marker (= last offset) order

    def apply_batch(self, h: BatchHeader) -> None:
        entry, opened = after_batch(self.entries.get(h.producer_id), h)
        self.entries[h.producer_id] = entry
        if opened:
            self.ongoing[h.producer_id] = h.base_offset

    def apply_marker(self, h: BatchHeader, coordinator_epoch: int, commit: bool) -> None:
        entry, aborted = after_marker(
            self.entries.get(h.producer_id),
            producer_id=h.producer_id,
            epoch=h.producer_epoch,
            coordinator_epoch=coordinator_epoch,
            timestamp_ms=h.max_timestamp,
            marker_offset=h.base_offset,
            commit=commit,
        )
        self.entries[h.producer_id] = entry
        self.ongoing.pop(h.producer_id, None)
        if aborted is not None:
            self.aborted.append(aborted)


MarkerListener = Callable[[str, int, int, bool], None]
"""Called after a marker is appended: ``(topic, partition, producer_id, committed)``."""


class TxnVerifier(Protocol):
    def __call__(
        self, transactional_id: str | None, producer_id: int, epoch: int, topic: str, partition: int
    ) -> ErrorCode:
        """NONE if the producer's open transaction includes the partition (AddPartitionsToTxn came first)."""
        ...


class ProducerStateManager:
    """Implements the broker's ``ProducerStateService`` (Produce) and ``TransactionView`` (read_committed Fetch)."""

    def __init__(self, logs: LogManager, *, expiration_ms: int, ids: ProducerIdAllocator | None = None) -> None:
        self.logs = logs
        self.ids = ids
        self.expiration_ms = expiration_ms
        self._parts: dict[tuple[str, int], _Partition] = {}
        self.marker_listeners: list[MarkerListener] = []
        self.verify_txn: TxnVerifier | None = None
        self.duplicates_total = 0

    # --- state per partition -------------------------------------------------------------------------------

    def _state(self, topic: str, partition: int, plog: PartitionLog) -> _Partition:
        st = self._parts.get((topic, partition))
        if st is None or st.log is not plog:
            # First sight, or the topic was deleted and created again: nothing of the old state applies.
            st = _Partition(plog)
            self._parts[(topic, partition)] = st
        return st

    def entry(self, topic: str, partition: int, producer_id: int) -> ProducerEntry | None:
        st = self._parts.get((topic, partition))
        return None if st is None else st.entries.get(producer_id)

    def rebuild(self) -> int:
        """Replay every partition's batch headers from its log start offset; returns batches read."""
        n = 0
        for t in self.logs:
            for p, plog in enumerate(t.logs):
                st = self._state(t.name, p, plog)
                for h, marker in _scan(plog):
                    n += 1
                    if marker is None:
                        st.apply_batch(h)
                    else:
                        st.apply_marker(h, marker[1], marker[0] == ControlType.COMMIT)
        return n

    # --- appends -------------------------------------------------------------------------------------------

    def append(
        self, topic: str, partition: int, log: PartitionLog, records: bytes, transactional_id: str | None
    ) -> AppendResult:
        """A client's Produce: sequence checks, duplicate detection, transaction verification."""
        return self._append(topic, partition, log, records, transactional_id=transactional_id, origin=Origin.CLIENT)

    def append_internal(self, topic: str, partition: int, log: PartitionLog, records: bytes) -> AppendResult:
        """A coordinator's own batch (offset commits, transaction state): epochs are checked, sequences are not."""
        return self._append(topic, partition, log, records, transactional_id=None, origin=Origin.COORDINATOR)

    def _append(
        self,
        topic: str,
        partition: int,
        plog: PartitionLog,
        records: bytes,
        *,
        transactional_id: str | None,
        origin: Origin,
    ) -> AppendResult:
        try:
            headers = [h for _, h in iter_batches(records)]
        except CorruptRecordError:
            headers = []  # let the log's own validation answer
        producing = [h for h in headers if h.producer_id != NO_PRODUCER_ID]
        for h in headers:
            if h.is_transactional and h.producer_id == NO_PRODUCER_ID:
                raise LogError(ErrorCode.invalid_record, "a transactional batch needs a producer id")
            if origin is Origin.CLIENT and h.producer_id != NO_PRODUCER_ID and h.base_sequence < 0:
                raise LogError(ErrorCode.invalid_record, f"invalid sequence {h.base_sequence} with a producer id")
        if not producing:
            return plog.append(records, from_client=origin is Origin.CLIENT)
        if len(headers) != 1:
            # Produce v3+ carries one batch per partition; idempotence is defined per batch.
            raise LogError(ErrorCode.invalid_record, "an idempotent produce must hold exactly one record batch")
        st = self._state(topic, partition, plog)
        duplicate: list[BatchMetadata] = []

        def check(buf: bytearray, pos: int, h: BatchHeader) -> None:
            if h.is_transactional and origin is Origin.CLIENT and self.verify_txn is not None:
                code = self.verify_txn(transactional_id, h.producer_id, h.producer_epoch, topic, partition)
                if code != ErrorCode.none:
                    raise LogError(code, f"producer {h.producer_id} has not added {topic}-{partition} to a transaction")
            dup = check_batch(st.entries.get(h.producer_id), h, origin)
            if dup is not None:
                duplicate.append(dup)
                raise _Duplicate()

        try:
            result = plog.append(records, from_client=origin is Origin.CLIENT, check=check)
        except _Duplicate:
            self.duplicates_total += 1
            d = duplicate[0]
            log.info(
                "duplicate batch of producer %d to %s-%d answered with offset %d",
                headers[0].producer_id,
                topic,
                partition,
                d.first_offset,
            )
            return AppendResult(d.first_offset, d.last_offset, -1, plog.log_start_offset)
        for h in result.batches:
            st.apply_batch(h)
        return result

    def write_marker(
        self,
        topic: str,
        partition: int,
        plog: PartitionLog,
        *,
        producer_id: int,
        epoch: int,
        commit: bool,
        coordinator_epoch: int,
        timestamp_ms: int,
        transaction_version: int = 0,
    ) -> AppendResult:
        """Append a COMMIT or ABORT marker for the producer's transaction in this partition. ``transaction_version``:
        what WriteTxnMarkers v2 says the marker ends (KIP-1228); the coordinator's own markers are checked as 0-1."""
        st = self._state(topic, partition, plog)
        open_txn = producer_id in st.ongoing
        _check_marker(st.entries.get(producer_id), epoch, coordinator_epoch, transaction_version, open_txn)
        batch = build_control_batch(
            ControlType.COMMIT if commit else ControlType.ABORT,
            producer_id=producer_id,
            producer_epoch=epoch,
            coordinator_epoch=coordinator_epoch,
            timestamp_ms=timestamp_ms,
        )
        result = plog.append(batch, from_client=False)
        st.apply_marker(result.batches[0], coordinator_epoch, commit)
        for listener in self.marker_listeners:
            listener(topic, partition, producer_id, commit)
        return result

    # --- TransactionView ------------------------------------------------------------------------------------

    def last_stable_offset(self, topic: str, partition: int, high_watermark: int) -> int:
        st = self._parts.get((topic, partition))
        if st is None or not st.ongoing:
            return high_watermark
        return min(*st.ongoing.values(), high_watermark)

    def aborted(self, topic: str, partition: int, start: int, end: int) -> list[tuple[int, int]]:
        st = self._parts.get((topic, partition))
        if st is None or not st.aborted:
            return []
        i = bisect.bisect_left(st.aborted, start, key=lambda a: a.last_offset)
        return [(a.producer_id, a.first_offset) for a in st.aborted[i:] if a.first_offset < end]

    def producers(self, topic: str, partition: int) -> list[ProducerEntry]:
        """Every producer the partition holds state for (DescribeProducers), in producer id order."""
        st = self._parts.get((topic, partition))
        return [] if st is None else [st.entries[pid] for pid in sorted(st.entries)]

    def open_transactions(self, topic: str, partition: int) -> dict[int, int]:
        st = self._parts.get((topic, partition))
        return dict(st.ongoing) if st is not None else {}

    # --- housekeeping ---------------------------------------------------------------------------------------

    def expire(self, now_ms: int) -> int:
        """Forget idle producers (``producer.id.expiration.ms``) and history below each log's start offset.

        Returns the producer entries removed. A producer with an open transaction is never forgotten.
        """
        removed = 0
        for key, st in list(self._parts.items()):
            plog = self.logs.log(*key)
            if plog is not st.log:
                del self._parts[key]
                continue
            start = plog.log_start_offset
            for pid, e in list(st.entries.items()):
                if pid in st.ongoing:
                    continue
                if now_ms - e.last_timestamp_ms >= self.expiration_ms or (0 <= e.last_offset < start):
                    del st.entries[pid]
                    removed += 1
            if st.aborted and st.aborted[0].last_offset < start:
                st.aborted = [a for a in st.aborted if a.last_offset >= start]
        return removed

    def producer_count(self) -> int:
        return sum(len(st.entries) for st in self._parts.values())

    def max_producer_id(self) -> int:
        """The largest producer id any log holds state for (-1: none); a lost id-block file never reuses them."""
        return max((pid for st in self._parts.values() for pid in st.entries), default=-1)


class _Duplicate(Exception):
    pass


def _scan(plog: PartitionLog) -> Iterator[tuple[BatchHeader, tuple[int, int] | None]]:
    """``(header, None)`` for each producer data batch; ``(header, (control type, coordinator epoch))`` for markers."""
    start = plog.log_start_offset
    for seg in list(plog.segments):
        if seg.next_offset <= start:
            continue
        for pos, h in seg.iter_headers():
            if h.last_offset < start or h.producer_id == NO_PRODUCER_ID:
                continue
            if not h.is_control:
                yield h, None
                continue
            if h.records_count == 0:
                continue  # the cleaner emptied it: the transaction it ended is gone too
            data = seg.log.pread(h.size, pos)
            try:
                recs = decode_records(data, 0, h, 1 << 20)
                key = recs[0].key if recs else None
                value = recs[0].value if recs else None
                if key is None or len(key) < CONTROL_KEY.size:
                    continue
                _, control_type = CONTROL_KEY.unpack_from(key, 0)
                coordinator_epoch = int.from_bytes(value[2:6], "big", signed=True) if value and len(value) >= 6 else 0
            except CorruptRecordError:
                log.warning("unreadable control batch at offset %d of %s", h.base_offset, plog.dir)
                continue
            yield h, (int(control_type), coordinator_epoch)


class ProducerIdAllocator:
    """Hands out producer ids; the end of the current block is persisted before any of its ids is used.

    File ``<data>/producer-id-block.json``: ``{"next_block_start": N}``. A block holds :attr:`block_size` ids
    (Kafka's ProducerIdsRecord blocks are 1000 long too).
    """

    block_size: Final = 1000

    def __init__(self, fs: FileSystem, data_dir: str, *, at_least: int = 0) -> None:
        self.fs = fs
        self.path = os.path.join(data_dir, "producer-id-block.json")
        start = 0
        if fs.exists(self.path):
            start = int(json.loads(fs.read_file(self.path))["next_block_start"])
        self._next = max(start, at_least)
        self._block_end = self._next  # nothing reserved yet

    def reserve_above(self, producer_id: int) -> None:
        """Never hand out ``producer_id`` or anything below it (ids another record already names)."""
        if self._next <= producer_id:
            self._next = producer_id + 1

    def allocate(self) -> ProducerId:
        if self._next >= self._block_end:
            end = self._next + self.block_size
            self.fs.write_atomic(self.path, json.dumps({"next_block_start": end}).encode())
            self._block_end = end
        pid = self._next
        self._next += 1
        return ProducerId(pid)


class ProducersService:
    """Broker extension: rebuilds producer state on start, then serves Produce and read_committed Fetch."""

    def __init__(self) -> None:
        self.manager: ProducerStateManager | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, ctx: BrokerContext) -> None:
        mgr = ProducerStateManager(ctx.logs, expiration_ms=ctx.config.producer_id_expiration_ms)
        n = mgr.rebuild()
        # Ids found in the logs are never handed out again, even if the block file was lost.
        mgr.ids = ProducerIdAllocator(ctx.logs.fs, ctx.logs.data_dir, at_least=mgr.max_producer_id() + 1)
        if n:
            log.info("rebuilt the state of %d producers from %d batches", mgr.producer_count(), n)
        self.manager = mgr
        ctx.producer_state = mgr
        ctx.transactions = mgr
        ctx.services[SERVICE] = mgr
        self._task = asyncio.get_running_loop().create_task(self._expire_periodically(ctx, mgr))

    async def _expire_periodically(self, ctx: BrokerContext, mgr: ProducerStateManager) -> None:
        while True:
            await asyncio.sleep(EXPIRATION_CHECK_INTERVAL_MS / 1000)
            try:
                mgr.expire(ctx.clock.now_ms())
            except Exception:
                log.exception("producer expiration failed; will retry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def producer_state(ctx: BrokerContext) -> ProducerStateManager | None:
    svc = ctx.services.get(SERVICE)
    return svc if isinstance(svc, ProducerStateManager) else None
