"""One transactional id's state as a pure state machine (Kafka's TransactionCoordinator and TransactionMetadata).

Theory of operation
-------------------
``step(txn, event, now_ms) -> (txn, effects)``; ``txn`` is None for an id the coordinator has never seen and
``now_ms`` is wall-clock time (transaction timestamps are persisted and outlive the process, as in Kafka). Every
change is first *persisted* (:class:`Persist`, written to ``__transaction_state`` by the shell, which feeds the
outcome back as :class:`Persisted`) and only then takes effect, so a client is never told about a state that a
crash could lose. The rules (transactions version 1: the epoch is bumped by InitProducerId, not by EndTxn):

* ``InitProducerId``: a new id gets a fresh producer id at epoch 0; a known one gets its epoch bumped (fencing any
  older producer instance), or a fresh producer id once the epoch is exhausted. If a transaction is open, it is
  aborted first under a bumped epoch and the client is told CONCURRENT_TRANSACTIONS, to retry.
* ``AddPartitionsToTxn`` (and AddOffsetsToTxn, which adds the group's ``__consumer_offsets`` partition) opens the
  transaction: ``Empty``/``Complete*`` -> ``Ongoing``, starting its timeout clock.
* ``EndTxn``: ``Ongoing`` -> ``PrepareCommit``/``PrepareAbort`` (persisted; the client is answered), then
  :class:`WriteMarkers` puts a COMMIT/ABORT control batch into every partition of the transaction; when all are
  written (:class:`MarkersWritten`), ``Complete*`` is persisted. Markers that could not be written are retried.
* A transaction ``Ongoing`` past its timeout is aborted under a bumped epoch, so the zombie producer is fenced.
* An id idle in ``Empty``/``Complete*`` for ``transactional.id.expiration.ms`` is expired (:class:`Expire`).

Transactions version 2 (KIP-890 part 2), which EndTxn v5 asks for and Produce v12 / TxnOffsetCommit v5 imply:

* ``EndTxn`` bumps the epoch: ``Prepare*`` is persisted at epoch + 1 and its markers carry it, so a late batch of
  the finished transaction can never join the next one. The client is answered with the id and epoch the
  transaction completes with. At an exhausted epoch the next producer id is allocated at once and persisted in
  ``Prepare*`` (``next_producer_id``); ``Complete*`` then moves to it at epoch 0 (``previous_producer_id`` keeps the
  old one, so a retry of that EndTxn is recognised).
* A retried EndTxn carries the epoch before the bump: one less than the current epoch (or the previous producer id
  at epoch ``EPOCH_MAX - 1`` after a rotation). Retries of a completed transaction answer NONE; the same epoch means
  the *next* EndTxn, and an abort with nothing added (``Empty``, ``Complete*``) is allowed and bumps too.
* The client transaction version (0 or 2) is kept with the id and written to the log (TransactionLogValue v1).

Every persisted state names the producer id that preceded it (``previous_producer_id``), as Kafka's does.

Wrong producer id: INVALID_PRODUCER_ID_MAPPING; stale epoch: PRODUCER_FENCED; a request while markers are being
written: CONCURRENT_TRANSACTIONS; EndTxn that contradicts the state: INVALID_TXN_STATE.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Final, NewType

from loosely.protocol.errors import ErrorCode
from loosely.protocol.names import TopicPartition

__all__ = [
    "AddPartitions",
    "EndTxn",
    "Expire",
    "InitProducerId",
    "MarkersWritten",
    "Persist",
    "Persisted",
    "Reply",
    "Tick",
    "TransactionalId",
    "TxnLimits",
    "TxnMetadata",
    "TxnRequestId",
    "TxnState",
    "WriteMarkers",
    "end_needs_new_producer_id",
    "needs_new_producer_id",
    "next_deadline",
    "step",
]

TransactionalId = NewType("TransactionalId", str)
TxnRequestId = NewType("TxnRequestId", int)
NO_PRODUCER_ID: Final = -1
NO_EPOCH: Final = -1
EPOCH_MAX: Final = 0x7FFF  # Short.MAX_VALUE
TV2: Final = 2  # the transaction.version level of KIP-890 part 2; clients before it are level 0


class TxnState(enum.IntEnum):
    """Kafka's TransactionState ids (the ``transactionStatus`` written to the log)."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def kafka_name(self) -> str:
        return "".join(w.capitalize() for w in self.name.split("_"))


_PREPARING: Final = frozenset({TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT})
_IDLE: Final = frozenset({TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT})


@dataclass(frozen=True, slots=True)
class TxnLimits:
    expiration_ms: int = 604_800_000  # transactional.id.expiration.ms
    marker_retry_ms: int = 1_000  # how soon markers that failed to write are tried again


@dataclass(frozen=True, slots=True)
class TxnMetadata:
    transactional_id: TransactionalId
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState
    partitions: frozenset[TopicPartition]
    start_ms: int  # when the current transaction began (-1: none)
    last_update_ms: int
    last_producer_epoch: int = NO_EPOCH  # in memory only, as in Kafka: lets a retried InitProducerId succeed
    previous_producer_id: int = NO_PRODUCER_ID  # the id before the last transition (a rotation changes it)
    marker_retry_ms: int | None = None  # in memory only: markers are due again
    client_version: int = 0  # the transaction version the client last used (0, or TV2)
    next_producer_id: int = NO_PRODUCER_ID  # Prepare* of a TV2 EndTxn at an exhausted epoch: the id to move to


def is_epoch_exhausted(epoch: int) -> bool:
    return epoch >= EPOCH_MAX - 1


# --- events --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitProducerId:
    request: TxnRequestId
    transactional_id: TransactionalId
    timeout_ms: int
    expected: tuple[int, int] | None  # (producer id, epoch) the client had, KIP-360; None for a fresh start
    new_producer_id: int | None  # handed in when needs_new_producer_id() said so


@dataclass(frozen=True, slots=True)
class AddPartitions:
    request: TxnRequestId
    producer_id: int
    producer_epoch: int
    partitions: frozenset[TopicPartition]
    client_version: int = 0  # TV2 for the implicit adds of Produce v12 and TxnOffsetCommit v5


@dataclass(frozen=True, slots=True)
class EndTxn:
    request: TxnRequestId
    producer_id: int
    producer_epoch: int
    commit: bool
    client_version: int = 0  # TV2 from EndTxn v5
    new_producer_id: int | None = None  # handed in when end_needs_new_producer_id() said so


@dataclass(frozen=True, slots=True)
class MarkersWritten:
    """Every partition of the transaction has its marker (fed back by the shell after :class:`WriteMarkers`)."""

    producer_epoch: int


@dataclass(frozen=True, slots=True)
class Tick:
    pass


@dataclass(frozen=True, slots=True)
class Persisted:
    """The outcome of a :class:`Persist` effect."""

    written: TxnMetadata
    then: AfterPersist
    error: ErrorCode = ErrorCode.none


Event = InitProducerId | AddPartitions | EndTxn | MarkersWritten | Tick | Persisted

# --- what to do once a state is persisted ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnswerInit:
    request: TxnRequestId


@dataclass(frozen=True, slots=True)
class AnswerOk:
    request: TxnRequestId


@dataclass(frozen=True, slots=True)
class StartMarkers:
    """A Prepare* state is on disk: answer the request that caused it (if any) and write the markers."""

    request: TxnRequestId | None
    answer: ErrorCode  # NONE for EndTxn; CONCURRENT_TRANSACTIONS for an InitProducerId that had to abort first


@dataclass(frozen=True, slots=True)
class Done:
    pass


AfterPersist = AnswerInit | AnswerOk | StartMarkers | Done

# --- effects -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    request: TxnRequestId
    error: ErrorCode
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_EPOCH


@dataclass(frozen=True, slots=True)
class Persist:
    """Write ``meta`` to ``__transaction_state``, then feed back :class:`Persisted`."""

    meta: TxnMetadata
    then: AfterPersist


@dataclass(frozen=True, slots=True)
class WriteMarkers:
    producer_id: int
    producer_epoch: int
    commit: bool
    partitions: frozenset[TopicPartition]


@dataclass(frozen=True, slots=True)
class Expire:
    """Write the id's tombstone and forget it."""

    transactional_id: TransactionalId


Effect = Reply | Persist | WriteMarkers | Expire

# --- transitions ---------------------------------------------------------------------------------------------------


def needs_new_producer_id(txn: TxnMetadata | None, expected: tuple[int, int] | None) -> bool:
    """Whether an InitProducerId must be handed a fresh producer id (new id, or the epoch is used up)."""
    if txn is None:
        return True
    return (
        txn.state in _IDLE
        and is_epoch_exhausted(txn.producer_epoch)
        and (expected is None or expected[1] == txn.producer_epoch)
    )


def end_needs_new_producer_id(txn: TxnMetadata | None, client_version: int) -> bool:
    """Whether a version 2 EndTxn must be handed the next producer id: its epoch bump would exhaust the epochs."""
    return client_version >= TV2 and txn is not None and is_epoch_exhausted(txn.producer_epoch)


def _visible(txn: TxnMetadata) -> tuple[int, int]:
    """The producer id and epoch the client is to use once ``txn`` (a Prepare* state) completes."""
    if txn.next_producer_id != NO_PRODUCER_ID:
        return txn.next_producer_id, 0
    return txn.producer_id, txn.producer_epoch


def step(
    txn: TxnMetadata | None, event: Event, now_ms: int, *, limits: TxnLimits = TxnLimits()
) -> tuple[TxnMetadata | None, list[Effect]]:
    """Apply one event to a transactional id's state (None: unknown id)."""
    after, effects = _step(txn, event, now_ms, limits)
    # Each state written names the producer id before it, as Kafka's TxnTransitMetadata does.
    return after, [
        replace(e, meta=replace(e.meta, previous_producer_id=txn.producer_id if txn else e.meta.producer_id))
        if isinstance(e, Persist)
        else e
        for e in effects
    ]


def _step(
    txn: TxnMetadata | None, event: Event, now_ms: int, limits: TxnLimits
) -> tuple[TxnMetadata | None, list[Effect]]:
    match event:
        case InitProducerId():
            return txn, _init(txn, event, now_ms)
        case AddPartitions():
            return txn, _add_partitions(txn, event, now_ms)
        case EndTxn():
            return txn, _end(txn, event, now_ms)
        case MarkersWritten():
            if txn is None or txn.state not in _PREPARING or event.producer_epoch != txn.producer_epoch:
                return txn, []
            state = TxnState.COMPLETE_COMMIT if txn.state is TxnState.PREPARE_COMMIT else TxnState.COMPLETE_ABORT
            pid, epoch = _visible(txn)
            done = replace(
                # The start time stays, as in Kafka: DescribeTransactions reports it and ListTransactions filters on it.
                txn,
                state=state,
                producer_id=pid,
                producer_epoch=epoch,
                next_producer_id=NO_PRODUCER_ID,
                partitions=frozenset(),
                last_update_ms=now_ms,
                marker_retry_ms=None,
            )
            return txn, [Persist(done, Done())]
        case Tick():
            return _tick(txn, now_ms, limits)
        case Persisted():
            return _persisted(txn, event, now_ms, limits)


def _init(txn: TxnMetadata | None, ev: InitProducerId, now: int) -> list[Effect]:
    if txn is None:
        assert ev.new_producer_id is not None
        fresh = TxnMetadata(
            ev.transactional_id, ev.new_producer_id, 0, ev.timeout_ms, TxnState.EMPTY, frozenset(), -1, now
        )
        return [Persist(fresh, AnswerInit(ev.request))]
    if ev.expected is not None:
        pid, epoch = ev.expected
        # KIP-360: a producer recovering from an error may bump its own epoch, not another instance's.
        valid = (
            txn.producer_epoch == NO_EPOCH
            or pid == txn.producer_id
            or (pid == txn.previous_producer_id and is_epoch_exhausted(epoch))
        )
        if not valid:
            return [Reply(ev.request, ErrorCode.producer_fenced)]
    if txn.state in _PREPARING:
        return [Reply(ev.request, ErrorCode.concurrent_transactions)]
    if txn.state is TxnState.ONGOING:
        # Abort what the previous instance left open, under an epoch it cannot use; the client retries.
        if txn.producer_epoch >= EPOCH_MAX:
            return [Reply(ev.request, ErrorCode.concurrent_transactions)]
        fenced = replace(
            txn,
            producer_epoch=txn.producer_epoch + 1,
            state=TxnState.PREPARE_ABORT,
            last_update_ms=now,
            last_producer_epoch=NO_EPOCH,
        )
        return [Persist(fenced, StartMarkers(ev.request, ErrorCode.concurrent_transactions))]
    if needs_new_producer_id(txn, ev.expected):
        assert ev.new_producer_id is not None
        rotated = replace(
            txn,
            previous_producer_id=txn.producer_id,
            producer_id=ev.new_producer_id,
            producer_epoch=0,
            last_producer_epoch=txn.producer_epoch if ev.expected is not None else NO_EPOCH,
            timeout_ms=ev.timeout_ms,
            state=TxnState.EMPTY,
            partitions=frozenset(),
            start_ms=-1,
            last_update_ms=now,
        )
        return [Persist(rotated, AnswerInit(ev.request))]
    if ev.expected is None:
        epoch, last = txn.producer_epoch + 1, NO_EPOCH
    elif txn.producer_epoch == NO_EPOCH or ev.expected[1] == txn.producer_epoch:
        epoch, last = txn.producer_epoch + 1, txn.producer_epoch
    elif ev.expected[1] == txn.last_producer_epoch:
        # A retry of an InitProducerId that succeeded: answer the epoch it got.
        return [Reply(ev.request, ErrorCode.none, txn.producer_id, txn.producer_epoch)]
    else:
        return [Reply(ev.request, ErrorCode.producer_fenced)]
    bumped = replace(
        txn,
        producer_epoch=epoch,
        last_producer_epoch=last,
        timeout_ms=ev.timeout_ms,
        state=TxnState.EMPTY,
        partitions=frozenset(),
        start_ms=-1,
        last_update_ms=now,
    )
    return [Persist(bumped, AnswerInit(ev.request))]


def _check_producer(txn: TxnMetadata | None, producer_id: int, epoch: int) -> ErrorCode:
    if txn is None or txn.producer_id != producer_id:
        return ErrorCode.invalid_producer_id_mapping
    if txn.producer_epoch != epoch:
        return ErrorCode.producer_fenced
    return ErrorCode.none


def _add_partitions(txn: TxnMetadata | None, ev: AddPartitions, now: int) -> list[Effect]:
    error = _check_producer(txn, ev.producer_id, ev.producer_epoch)
    if error != ErrorCode.none or txn is None:
        return [Reply(ev.request, error)]
    if txn.state in _PREPARING:
        return [Reply(ev.request, ErrorCode.concurrent_transactions)]
    if txn.state is TxnState.ONGOING and ev.partitions <= txn.partitions:
        return [Reply(ev.request, ErrorCode.none)]
    ongoing = replace(
        txn,
        state=TxnState.ONGOING,
        partitions=txn.partitions | ev.partitions,
        start_ms=now if txn.state in _IDLE else txn.start_ms,
        last_update_ms=now,
        client_version=ev.client_version,
    )
    return [Persist(ongoing, AnswerOk(ev.request))]


def _end(txn: TxnMetadata | None, ev: EndTxn, now: int) -> list[Effect]:
    if ev.client_version >= TV2:
        return _end_v2(txn, ev, now)
    error = _check_producer(txn, ev.producer_id, ev.producer_epoch)
    if error != ErrorCode.none or txn is None:
        return [Reply(ev.request, error)]
    prepare = TxnState.PREPARE_COMMIT if ev.commit else TxnState.PREPARE_ABORT
    complete = TxnState.COMPLETE_COMMIT if ev.commit else TxnState.COMPLETE_ABORT
    if txn.state is TxnState.ONGOING:
        return [Persist(replace(txn, state=prepare, last_update_ms=now), StartMarkers(ev.request, ErrorCode.none))]
    if txn.state is complete:
        return [Reply(ev.request, ErrorCode.none, txn.producer_id, txn.producer_epoch)]  # a retry
    if txn.state is prepare:
        return [Reply(ev.request, ErrorCode.concurrent_transactions)]
    return [Reply(ev.request, ErrorCode.invalid_txn_state)]


def _end_v2(txn: TxnMetadata | None, ev: EndTxn, now: int) -> list[Effect]:
    """EndTxn v5: Kafka's table for transactions version 2 (a retry carries the epoch before the bump)."""
    if txn is None:
        return [Reply(ev.request, ErrorCode.invalid_producer_id_mapping)]
    retry_on_overflow = (
        txn.previous_producer_id == ev.producer_id and ev.producer_epoch == EPOCH_MAX - 1 and txn.producer_epoch == 0
    )
    retry_on_bump = txn.producer_epoch == ev.producer_epoch + 1
    if txn.producer_id != ev.producer_id and not retry_on_overflow:
        return [Reply(ev.request, ErrorCode.invalid_producer_id_mapping)]
    current = ev.producer_epoch == txn.producer_epoch
    if txn.state in _PREPARING:
        valid = retry_on_bump
    elif txn.state in (TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT):
        valid = retry_on_bump or retry_on_overflow or current
    else:
        valid = current
    if not valid:
        return [Reply(ev.request, ErrorCode.producer_fenced)]
    retry = retry_on_bump or retry_on_overflow
    done = TxnState.COMPLETE_COMMIT if ev.commit else TxnState.COMPLETE_ABORT
    prepare = TxnState.PREPARE_COMMIT if ev.commit else TxnState.PREPARE_ABORT
    if txn.state is TxnState.ONGOING:
        return _prepare_v2(txn, ev, now, nothing_added=False)
    if txn.state is done and retry:
        return [Reply(ev.request, ErrorCode.none, txn.producer_id, txn.producer_epoch)]
    if not ev.commit and not retry and txn.state in _IDLE:
        return _prepare_v2(txn, ev, now, nothing_added=True)  # an abort with nothing added still bumps the epoch
    if txn.state is prepare:
        return [Reply(ev.request, ErrorCode.concurrent_transactions)]
    return [Reply(ev.request, ErrorCode.invalid_txn_state)]


def _prepare_v2(txn: TxnMetadata, ev: EndTxn, now: int, *, nothing_added: bool) -> list[Effect]:
    exhausted = is_epoch_exhausted(txn.producer_epoch)
    if exhausted and ev.new_producer_id is None:
        return [Reply(ev.request, ErrorCode.coordinator_not_available)]  # the shell could not allocate one
    prepared = replace(
        txn,
        state=TxnState.PREPARE_COMMIT if ev.commit else TxnState.PREPARE_ABORT,
        producer_epoch=min(txn.producer_epoch + 1, EPOCH_MAX),
        last_producer_epoch=txn.producer_epoch,
        next_producer_id=ev.new_producer_id if exhausted and ev.new_producer_id is not None else NO_PRODUCER_ID,
        client_version=ev.client_version,
        # Kafka: an abort with no partitions has no start time of its own, so it starts now.
        start_ms=now if nothing_added else txn.start_ms,
        last_update_ms=now,
    )
    return [Persist(prepared, StartMarkers(ev.request, ErrorCode.none))]


def _tick(txn: TxnMetadata | None, now: int, limits: TxnLimits) -> tuple[TxnMetadata | None, list[Effect]]:
    if txn is None:
        return None, []
    if txn.state is TxnState.ONGOING and txn.start_ms + txn.timeout_ms <= now:
        if txn.producer_epoch >= EPOCH_MAX:
            return txn, []
        fenced = replace(
            txn,
            producer_epoch=txn.producer_epoch + 1,
            state=TxnState.PREPARE_ABORT,
            last_update_ms=now,
            # Kafka's version 2 abort keeps the epoch before it, so that producer may recover (KIP-890)
            last_producer_epoch=txn.producer_epoch if txn.client_version >= TV2 else NO_EPOCH,
        )
        return txn, [Persist(fenced, StartMarkers(None, ErrorCode.none))]
    if txn.state in _PREPARING and (txn.marker_retry_ms is None or txn.marker_retry_ms <= now):
        # Markers not (all) written yet, or never tried since a restart found the Prepare* state.
        again = replace(txn, marker_retry_ms=now + limits.marker_retry_ms)
        return again, [_markers(txn)]
    if txn.state in _IDLE and txn.last_update_ms + limits.expiration_ms <= now:
        return None, [Expire(txn.transactional_id)]
    return txn, []


def _markers(txn: TxnMetadata) -> WriteMarkers:
    return WriteMarkers(txn.producer_id, txn.producer_epoch, txn.state is TxnState.PREPARE_COMMIT, txn.partitions)


def _persisted(
    txn: TxnMetadata | None, ev: Persisted, now: int, limits: TxnLimits
) -> tuple[TxnMetadata | None, list[Effect]]:
    then = ev.then
    if ev.error != ErrorCode.none:
        # Nothing changed; whoever asked hears why.
        if isinstance(then, AnswerInit | AnswerOk) or (isinstance(then, StartMarkers) and then.request is not None):
            assert then.request is not None
            return txn, [Reply(then.request, ev.error)]
        return txn, []
    new = ev.written
    match then:
        case AnswerInit():
            return new, [Reply(then.request, ErrorCode.none, new.producer_id, new.producer_epoch)]
        case AnswerOk():
            return new, [Reply(then.request, ErrorCode.none)]
        case StartMarkers():
            new = replace(new, marker_retry_ms=now + limits.marker_retry_ms)
            effects: list[Effect] = []
            if then.request is not None:
                effects.append(Reply(then.request, then.answer, *_visible(new)))
            effects.append(_markers(new))
            return new, effects
        case Done():
            return new, []


def next_deadline(txn: TxnMetadata | None, limits: TxnLimits) -> int | None:
    if txn is None:
        return None
    if txn.state is TxnState.ONGOING:
        return txn.start_ms + txn.timeout_ms
    if txn.state in _PREPARING:
        return txn.marker_retry_ms if txn.marker_retry_ms is not None else txn.last_update_ms
    if txn.state in _IDLE:
        return txn.last_update_ms + limits.expiration_ms
    return None
