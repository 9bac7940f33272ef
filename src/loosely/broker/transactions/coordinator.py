"""The transaction coordinator: the asyncio shell around :mod:`loosely.broker.transactions.state`.

Theory of operation
-------------------
Each transactional id's :class:`~loosely.broker.transactions.state.TxnMetadata` changes only through
:func:`~loosely.broker.transactions.state.step`. The shell carries out the effects in order: ``Persist`` appends
the state to ``__transaction_state`` and feeds the outcome back, ``WriteMarkers`` appends a COMMIT/ABORT control
batch to every partition of the transaction through the producer state (which closes the transaction there and,
for ``__consumer_offsets``, lets the offset store apply or drop the transaction's offsets), ``Reply`` answers the
waiting request. Everything happens on the event loop thread and between two awaits, so a transaction's markers are
all written before its EndTxn is answered, unless a write fails, in which case they are retried.

On start the shell replays ``__transaction_state``: a transaction found in PrepareCommit/PrepareAbort (the broker
died while writing markers) gets its markers written again; one found Ongoing keeps its timeout. One timer per id
fires at the state's next deadline (transaction timeout, marker retry, id expiry).

It also answers two questions other parts of the broker ask: may this producer write transactional data to this
partition (Produce verifies the partition was added, KIP-890's check), and may it commit offsets for this group.
Transactions version 2 (KIP-890 part 2) needs one more thing from the shell: a producer id handed to an EndTxn v5
whose epoch bump exhausts the epochs, allocated before the state machine runs, as for InitProducerId.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from loosely.broker import internal
from loosely.broker._shell import Timers, Waiting
from loosely.broker.context import BrokerContext
from loosely.broker.producers import ProducerStateManager, producer_state
from loosely.broker.transactions.records import (
    TxnLogValue,
    decode_txn_key,
    decode_txn_value,
    encode_txn_key,
    encode_txn_value,
)
from loosely.broker.transactions.state import (
    AddPartitions,
    EndTxn,
    Event,
    Expire,
    InitProducerId,
    MarkersWritten,
    Persist,
    Persisted,
    Reply,
    Tick,
    TransactionalId,
    TxnLimits,
    TxnMetadata,
    TxnRequestId,
    TxnState,
    WriteMarkers,
    end_needs_new_producer_id,
    needs_new_producer_id,
    next_deadline,
    step,
)
from loosely.protocol.errors import CorruptRecordError, ErrorCode
from loosely.protocol.names import TopicPartition
from loosely.protocol.records import NewRecord, build_batch
from loosely.storage.log import LogError

__all__ = ["TransactionCoordinator", "TransactionStatistics", "transaction_coordinator"]

log = logging.getLogger("loosely.broker.transactions")

SERVICE: Final = "transactions"
COORDINATOR_EPOCH: Final = 0  # a single node never changes coordinator


@dataclass(frozen=True, slots=True)
class TransactionStatistics:
    transactional_ids: int
    ongoing: int
    committed_total: int
    aborted_total: int
    timed_out_total: int


class TransactionCoordinator:
    def __init__(self) -> None:
        self._ctx: BrokerContext | None = None
        self._producers: ProducerStateManager | None = None
        self.txns: dict[TransactionalId, TxnMetadata] = {}
        self.limits = TxnLimits()
        self._waiting: Waiting[Reply] = Waiting()
        self._timers: Timers[TransactionalId] = Timers(self._on_timer)
        self._committed = self._aborted = self._timed_out = 0

    @property
    def ctx(self) -> BrokerContext:
        assert self._ctx is not None, "the transaction coordinator is not started"
        return self._ctx

    @property
    def producers(self) -> ProducerStateManager:
        assert self._producers is not None, "the transaction coordinator is not started"
        return self._producers

    # --- lifecycle -----------------------------------------------------------------------------------------

    async def start(self, ctx: BrokerContext) -> None:
        self._ctx = ctx
        producers = producer_state(ctx)
        assert producers is not None, "the producer state service must start first"
        self._producers = producers
        self.limits = TxnLimits(expiration_ms=ctx.config.transactional_id_expiration_ms)
        n = self._load()
        producers.verify_txn = self.verify_produce
        ctx.services[SERVICE] = self
        for tid in list(self.txns):
            self._schedule(tid)
        if n:
            log.info("loaded %d transactional ids from %s", len(self.txns), internal.TRANSACTION_STATE)

    async def stop(self) -> None:
        self._timers.cancel_all()
        self._waiting.cancel_all()

    def _load(self) -> int:
        t = self.ctx.logs.get(internal.TRANSACTION_STATE)
        if t is None:
            return 0
        n = 0
        for plog in t.logs:
            for h, records in internal.read_log(plog):
                if h.is_control:
                    continue
                for r in records:
                    n += 1
                    if r.key is None:
                        continue
                    try:
                        tid = TransactionalId(decode_txn_key(r.key))
                        if r.value is None:
                            self.txns.pop(tid, None)
                            continue
                        v = decode_txn_value(r.value)
                    except CorruptRecordError as e:
                        log.warning("skipping an unreadable transaction record at offset %d: %s", r.offset, e)
                        continue
                    if v.status not in {s.value for s in TxnState} or v.status == TxnState.DEAD:
                        self.txns.pop(tid, None)
                        continue
                    self.txns[tid] = TxnMetadata(
                        tid,
                        v.producer_id,
                        v.producer_epoch,
                        v.timeout_ms,
                        TxnState(v.status),
                        frozenset(TopicPartition(t, p) for t, p in v.partitions),
                        v.start_ms,
                        v.last_update_ms,
                        previous_producer_id=v.previous_producer_id,
                        client_version=v.client_version,
                        next_producer_id=v.next_producer_id,
                    )
        ids = self.producers.ids
        if ids is not None and self.txns:
            ids.reserve_above(max(max(m.producer_id, m.next_producer_id) for m in self.txns.values()))
        return n

    # --- running events ------------------------------------------------------------------------------------

    async def _ask(self, tid: TransactionalId, event: Callable[[TxnRequestId], Event]) -> Reply:
        rid, fut = self._waiting.new()
        self._run(tid, event(TxnRequestId(rid)))
        return await fut

    def _run(self, tid: TransactionalId, event: Event) -> None:
        now = self.ctx.clock.now_ms()
        txn, effects = step(self.txns.get(tid), event, now, limits=self.limits)
        if txn is None:
            self.txns.pop(tid, None)
        else:
            self.txns[tid] = txn
        for eff in effects:
            if isinstance(eff, Reply):
                self._waiting.answer(eff.request, eff)
            elif isinstance(eff, Persist):
                error = self._persist(tid, eff.meta)
                if error == ErrorCode.none:
                    self._count(eff.meta)
                self._run(tid, Persisted(eff.meta, eff.then, error))
            elif isinstance(eff, WriteMarkers):
                if self._write_markers(eff):
                    self._run(tid, MarkersWritten(eff.producer_epoch))
            elif isinstance(eff, Expire):
                self._tombstone(tid)
        self._schedule(tid)

    def _count(self, meta: TxnMetadata) -> None:
        if meta.state is TxnState.COMPLETE_COMMIT:
            self._committed += 1
        elif meta.state is TxnState.COMPLETE_ABORT:
            self._aborted += 1

    def _write(self, tid: TransactionalId, value: bytes | None) -> None:
        t = internal.ensure_topic(self.ctx, internal.TRANSACTION_STATE, self.ctx.config.transaction_state_partitions)
        batch = build_batch([NewRecord(encode_txn_key(tid), value, self.ctx.clock.now_ms())])
        internal.append(self.ctx, t.name, internal.partition_for(tid, t.partitions), batch)

    def _persist(self, tid: TransactionalId, meta: TxnMetadata) -> ErrorCode:
        value = TxnLogValue(
            meta.producer_id,
            meta.producer_epoch,
            meta.timeout_ms,
            meta.state.value,
            tuple(sorted(meta.partitions)),
            meta.last_update_ms,
            meta.start_ms,
            previous_producer_id=meta.previous_producer_id,
            next_producer_id=meta.next_producer_id,
            client_version=meta.client_version,
        )
        try:
            self._write(tid, encode_txn_value(value))
        except LogError as e:
            log.warning("persisting transaction %s failed: %s", tid, e)
            # Kafka's TransactionStateManager: a disk error under the transaction log answers NOT_COORDINATOR.
            if e.error_code == ErrorCode.kafka_storage_error:
                return ErrorCode.not_coordinator
            return ErrorCode.coordinator_not_available
        return ErrorCode.none

    def _tombstone(self, tid: TransactionalId) -> None:
        try:
            self._write(tid, None)
        except LogError as e:
            log.warning("expiring transactional id %s failed: %s", tid, e)

    def _write_markers(self, eff: WriteMarkers) -> bool:
        """True when every partition that still exists has its marker."""
        now = self.ctx.clock.now_ms()
        ok = True
        for topic, partition in sorted(eff.partitions):
            plog = self.ctx.logs.log(topic, partition)
            if plog is None:
                continue  # deleted since: nothing left to mark
            try:
                self.producers.write_marker(
                    topic,
                    partition,
                    plog,
                    producer_id=eff.producer_id,
                    epoch=eff.producer_epoch,
                    commit=eff.commit,
                    coordinator_epoch=COORDINATOR_EPOCH,
                    timestamp_ms=now,
                )
            except LogError as e:
                log.warning("marker for producer %d in %s-%d failed: %s", eff.producer_id, topic, partition, e)
                ok = False
                continue
            self.ctx.watchers.notify(TopicPartition(topic, partition))
        return ok

    def _schedule(self, tid: TransactionalId) -> None:
        due = next_deadline(self.txns.get(tid), self.limits)
        self._timers.set(tid, None if due is None else due - self.ctx.clock.now_ms())

    def _on_timer(self, tid: TransactionalId) -> None:
        before = self.txns.get(tid)
        try:
            self._run(tid, Tick())
        except Exception:
            log.exception("transaction %s timer failed", tid)
            return
        after = self.txns.get(tid)
        if (
            before is not None
            and before.state is TxnState.ONGOING
            and after is not None
            and (after.producer_epoch > before.producer_epoch)
        ):
            self._timed_out += 1
            log.info("transaction %s timed out after %d ms and was aborted", tid, before.timeout_ms)

    def tick_now(self) -> None:
        """Deliver due timers now (tests that move a fake clock)."""
        for tid in list(self.txns):
            self._on_timer(tid)

    # --- the APIs ------------------------------------------------------------------------------------------

    async def init_producer_id(self, transactional_id: str, timeout_ms: int, expected: tuple[int, int] | None) -> Reply:
        tid = TransactionalId(transactional_id)
        fresh = None
        if needs_new_producer_id(self.txns.get(tid), expected):
            fresh = self._allocate()
            if fresh is None:
                return Reply(TxnRequestId(0), ErrorCode.coordinator_not_available)
        return await self._ask(tid, lambda rid: InitProducerId(rid, tid, timeout_ms, expected, fresh))

    def _allocate(self) -> int | None:
        ids = self.producers.ids
        assert ids is not None
        try:
            return ids.allocate()
        except OSError as e:
            log.warning("allocating a producer id failed: %s", e)
            return None

    async def add_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        epoch: int,
        partitions: frozenset[TopicPartition],
        client_version: int = 0,
    ) -> Reply:
        tid = TransactionalId(transactional_id)
        return await self._ask(tid, lambda rid: AddPartitions(rid, producer_id, epoch, partitions, client_version))

    async def end_txn(
        self, transactional_id: str, producer_id: int, epoch: int, commit: bool, client_version: int = 0
    ) -> Reply:
        tid = TransactionalId(transactional_id)
        fresh = None
        if end_needs_new_producer_id(self.txns.get(tid), client_version):
            fresh = self._allocate()
            if fresh is None:
                return Reply(TxnRequestId(0), ErrorCode.coordinator_not_available)
        return await self._ask(tid, lambda rid: EndTxn(rid, producer_id, epoch, commit, client_version, fresh))

    def verify_partitions(
        self, transactional_id: str, producer_id: int, epoch: int, partitions: frozenset[TopicPartition]
    ) -> dict[TopicPartition, ErrorCode]:
        """AddPartitionsToTxn v4+ with ``verify_only``: is each partition in the producer's open transaction?
        Kafka's coordinator answers the producer's error for every partition, else NONE for those in the transaction
        and TRANSACTION_ABORTABLE for the others."""
        txn = self.txns.get(TransactionalId(transactional_id))
        if txn is None or txn.producer_id != producer_id:
            error = ErrorCode.invalid_producer_id_mapping
        elif txn.producer_epoch != epoch:
            error = ErrorCode.producer_fenced
        else:
            return {
                tp: ErrorCode.none
                if txn.state is TxnState.ONGOING and tp in txn.partitions
                else ErrorCode.transaction_abortable
                for tp in partitions
            }
        return dict.fromkeys(partitions, error)

    def verify_produce(
        self, transactional_id: str | None, producer_id: int, epoch: int, topic: str, partition: int
    ) -> ErrorCode:
        """Transactional data may only go to a partition added to the producer's open transaction, under the epoch
        the coordinator gave it: an older one is a fenced producer's, a newer one was never handed out (its batch
        would make the transaction's own markers look stale). Both are INVALID_PRODUCER_EPOCH, as in Kafka. A partition
        outside the open transaction is TRANSACTION_ABORTABLE (KIP-890), which Produce tells clients older than v11 as
        INVALID_TXN_STATE."""
        txn = self.txns.get(TransactionalId(transactional_id)) if transactional_id else None
        if txn is None or txn.producer_id != producer_id:
            return ErrorCode.invalid_producer_id_mapping if txn is not None else ErrorCode.invalid_txn_state
        if epoch != txn.producer_epoch:
            return ErrorCode.invalid_producer_epoch
        if txn.state is not TxnState.ONGOING or (topic, partition) not in txn.partitions:
            return ErrorCode.transaction_abortable
        return ErrorCode.none

    def verify_offsets(self, transactional_id: str, producer_id: int, epoch: int, group_partition: int) -> ErrorCode:
        """TxnOffsetCommit: the producer is current and AddOffsetsToTxn added the group's partition.

        A stale epoch is INVALID_PRODUCER_EPOCH, not PRODUCER_FENCED, at every TxnOffsetCommit version, as Kafka's
        partition verification answers it; a partition not added is TRANSACTION_ABORTABLE (KIP-890), which the
        handler tells clients before v4 as INVALID_TXN_STATE.
        """
        txn = self.txns.get(TransactionalId(transactional_id))
        if txn is None or txn.producer_id != producer_id:
            return ErrorCode.invalid_producer_id_mapping
        if txn.producer_epoch != epoch:
            return ErrorCode.invalid_producer_epoch
        if txn.state is not TxnState.ONGOING or (internal.CONSUMER_OFFSETS, group_partition) not in txn.partitions:
            return ErrorCode.transaction_abortable
        return ErrorCode.none

    def statistics(self) -> TransactionStatistics:
        return TransactionStatistics(
            transactional_ids=len(self.txns),
            ongoing=sum(1 for t in self.txns.values() if t.state is TxnState.ONGOING),
            committed_total=self._committed,
            aborted_total=self._aborted,
            timed_out_total=self._timed_out,
        )


def transaction_coordinator(ctx: BrokerContext) -> TransactionCoordinator | None:
    svc = ctx.services.get(SERVICE)
    return svc if isinstance(svc, TransactionCoordinator) else None
