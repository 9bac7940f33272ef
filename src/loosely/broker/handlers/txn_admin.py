"""ListTransactions, DescribeTransactions, DescribeProducers and WriteTxnMarkers: what ``kafka-transactions list /
describe / describe-producers / find-hanging / abort`` send.

The first two read the transaction coordinator's table of transactional ids (:mod:`loosely.broker.transactions`),
the third the per-partition producer state (:mod:`loosely.broker.producers`). The filters are Kafka's
(``TransactionStateManager.listTransactionStates``): ids in the transient Dead state are never listed; state names
Kafka does not know come back in ``unknown_state_filters`` (and match nothing); a non-negative duration filter keeps
the transactions that started *more* than that many milliseconds ago, and an id without a transaction (start -1)
counts as having started at the epoch, as in Kafka; the v2 pattern (KIP-1152) must match the whole id.

Patterns are RE2 expressions because Kafka compiles them with RE2/J: the same syntax (no backreferences or
lookaround; an invalid one answers INVALID_REGULAR_EXPRESSION) and matching in time linear in the id, so no pattern
can stall the broker. A transactional id the coordinator does not know answers TRANSACTIONAL_ID_NOT_FOUND; a
partition the broker does not have, UNKNOWN_TOPIC_OR_PARTITION.

WriteTxnMarkers is how a Kafka transaction coordinator tells partition leaders to close a transaction; clients send
it to abort a *hanging* transaction, one the coordinator has forgotten while a partition still holds it open
(``kafka-transactions abort``). Each marker is appended as the coordinator's own are, checked against the
producer's epoch and the coordinator epoch the partition last saw (INVALID_PRODUCER_EPOCH,
TRANSACTION_COORDINATOR_FENCED), and a marker on ``__consumer_offsets`` settles the transaction's offsets as usual.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

import re2

from loosely.broker.acls import allowed
from loosely.broker.context import BrokerContext, Request
from loosely.broker.handlers._util import NO_THROTTLE, Response, build, ms
from loosely.broker.producers import ProducerStateManager, producer_state
from loosely.broker.transactions.coordinator import transaction_coordinator
from loosely.broker.transactions.state import TxnMetadata, TxnState
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader
from loosely.protocol.names import TopicPartition
from loosely.security.authorizer import CLUSTER_NAME, AclOperation, ResourceType
from loosely.storage.log import LogError

__all__ = ["HANDLERS"]

_BY_NAME = {s.kafka_name: s for s in TxnState}
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a client's bad pattern is answered, not logged to stderr by RE2


@dataclass(frozen=True, slots=True)
class _Filters:
    states: frozenset[TxnState]
    producer_ids: frozenset[int]
    duration_ms: int  # < 0: any
    pattern: Callable[[str], object] | None  # a compiled pattern's fullmatch

    def admit(self, txn: TxnMetadata, now_ms: int) -> bool:
        if txn.state is TxnState.DEAD:
            return False
        if self.producer_ids and txn.producer_id not in self.producer_ids:
            return False
        if self.states and txn.state not in self.states:
            return False
        if self.duration_ms >= 0 and now_ms - txn.start_ms <= self.duration_ms:
            return False
        return self.pattern is None or self.pattern(txn.transactional_id) is not None


async def handle_list_transactions(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.LIST_TRANSACTIONS, header.api_version)
    coordinator = transaction_coordinator(ctx)
    names = tuple(request.state_filters)
    unknown = tuple(n for n in names if n not in _BY_NAME)
    states = {_BY_NAME[n] for n in names if n in _BY_NAME}
    raw_pattern = getattr(request, "transactional_id_pattern", None)
    pattern = None
    try:
        pattern = re2.compile(raw_pattern, options=_RE2_OPTIONS).fullmatch if raw_pattern else None
    except re2.error:
        ctx.count_error(ApiKey.LIST_TRANSACTIONS)
        return resp.make(
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.invalid_regular_expression,
            unknown_state_filters=(),
            transaction_states=(),
        )
    if coordinator is None:
        ctx.count_error(ApiKey.LIST_TRANSACTIONS)
        return resp.make(
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.coordinator_not_available,
            unknown_state_filters=unknown,
            transaction_states=(),
        )
    filters = _Filters(
        frozenset(states),
        frozenset(int(p) for p in request.producer_id_filters),
        int(getattr(request, "duration_filter", -1)),
        pattern,
    )
    now = ctx.clock.now_ms()
    listed = tuple(
        build(
            resp.TransactionState, transactional_id=tid, producer_id=t.producer_id, transaction_state=t.state.kafka_name
        )
        for tid, t in sorted(coordinator.txns.items())
        if filters.admit(t, now)
        and allowed(ctx, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, tid, log_denied=False)
    )
    return resp.make(
        throttle_time=NO_THROTTLE, error_code=ErrorCode.none, unknown_state_filters=unknown, transaction_states=listed
    )


def _timestamp(ms_since_epoch: int) -> datetime.datetime:
    # a transaction's start, or -1 (Kafka's "none", as ListTransactions' filters use it), carried like any other
    return datetime.datetime.fromtimestamp(ms_since_epoch / 1000, tz=datetime.UTC)


async def handle_describe_transactions(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DESCRIBE_TRANSACTIONS, header.api_version)
    coordinator = transaction_coordinator(ctx)
    out = []
    for tid in request.transactional_ids:
        txn = coordinator.txns.get(tid) if coordinator is not None else None
        may = allowed(ctx, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, tid)
        if not may or txn is None or txn.state is TxnState.DEAD:
            ctx.count_error(ApiKey.DESCRIBE_TRANSACTIONS)
            code = (
                ErrorCode.transactional_id_authorization_failed
                if not may
                else ErrorCode.transactional_id_not_found
                if coordinator is not None
                else ErrorCode.coordinator_not_available
            )
            out.append(  # as Kafka: the id and the error, every other field its schema default (zero)
                build(
                    resp.TransactionState,
                    error_code=code,
                    transactional_id=tid,
                    transaction_state="",
                    transaction_timeout=ms(0),
                    transaction_start_time=_timestamp(0),
                    producer_id=0,
                    producer_epoch=0,
                    topics=(),
                )
            )
            continue
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(txn.partitions):
            by_topic.setdefault(topic, []).append(partition)
        out.append(
            build(
                resp.TransactionState,
                error_code=ErrorCode.none,
                transactional_id=tid,
                transaction_state=txn.state.kafka_name,
                transaction_timeout=ms(txn.timeout_ms),
                transaction_start_time=_timestamp(txn.start_ms),
                producer_id=txn.producer_id,
                producer_epoch=txn.producer_epoch,
                topics=tuple(build(resp.TopicData, topic=t, partitions=tuple(ps)) for t, ps in by_topic.items()),
            )
        )
    return resp.make(throttle_time=NO_THROTTLE, transaction_states=tuple(out))


async def handle_describe_producers(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DESCRIBE_PRODUCERS, header.api_version)
    state = producer_state(ctx)
    topics = []
    for rt in request.topics:
        t = ctx.logs.get(rt.name)
        may = allowed(ctx, AclOperation.READ, ResourceType.TOPIC, rt.name)  # as Kafka's KafkaApis
        parts = []
        for p in rt.partition_indexes:
            known = may and t is not None and 0 <= p < t.partitions
            if not known:
                ctx.count_error(ApiKey.DESCRIBE_PRODUCERS)
            entries = state.producers(rt.name, p) if known and state is not None else []
            active = tuple(
                build(
                    resp.ProducerState,
                    producer_id=e.producer_id,
                    producer_epoch=e.epoch,
                    last_sequence=e.last_seq,
                    last_timestamp=e.last_timestamp_ms,
                    coordinator_epoch=e.coordinator_epoch,
                    current_txn_start_offset=e.txn_first_offset if e.txn_first_offset is not None else -1,
                )
                for e in entries
            )
            parts.append(
                build(
                    resp.PartitionResponse,
                    partition_index=p,
                    error_code=ErrorCode.none
                    if known
                    else ErrorCode.unknown_topic_or_partition
                    if may
                    else ErrorCode.topic_authorization_failed,
                    error_message=None,
                    active_producers=active,
                )
            )
        topics.append(build(resp.TopicResponse, name=rt.name, partitions=tuple(parts)))
    return resp.make(throttle_time=NO_THROTTLE, topics=tuple(topics))


async def handle_write_txn_markers(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.WRITE_TXN_MARKERS, header.api_version)
    state = producer_state(ctx)
    # Only brokers write markers (CLUSTER_ACTION); `kafka-transactions abort` is an operator acting as one.
    may = allowed(ctx, AclOperation.CLUSTER_ACTION, ResourceType.CLUSTER, CLUSTER_NAME)
    results = []
    for m in request.markers:
        topics = []
        for t in m.topics:
            parts = []
            for p in t.partition_indexes:
                code = _write_marker(ctx, state, t.name, p, m) if may else ErrorCode.cluster_authorization_failed
                if code != ErrorCode.none:
                    ctx.count_error(ApiKey.WRITE_TXN_MARKERS)
                parts.append(build(resp.WritableTxnMarkerPartitionResult, partition_index=p, error_code=code))
            topics.append(build(resp.WritableTxnMarkerTopicResult, name=t.name, partitions=tuple(parts)))
        results.append(build(resp.WritableTxnMarkerResult, producer_id=m.producer_id, topics=tuple(topics)))
    return resp.make(markers=tuple(results))


def _write_marker(
    ctx: BrokerContext, state: ProducerStateManager | None, topic: str, partition: int, marker: Request
) -> ErrorCode:
    plog = ctx.logs.log(topic, partition)
    if plog is None or state is None:
        return ErrorCode.unknown_topic_or_partition
    try:
        state.write_marker(
            topic,
            partition,
            plog,
            producer_id=int(marker.producer_id),
            epoch=int(marker.producer_epoch),
            commit=bool(marker.transaction_result),
            coordinator_epoch=int(marker.coordinator_epoch),
            timestamp_ms=ctx.clock.now_ms(),
            transaction_version=int(getattr(marker, "transaction_version", 0)),  # v2 (KIP-1228)
        )
    except LogError as e:
        return e.error_code
    except OSError as e:  # the disk refused the append
        return plog.storage_error("transaction marker", e).error_code
    ctx.watchers.notify(TopicPartition(topic, partition))
    return ErrorCode.none


HANDLERS = {
    ApiKey.LIST_TRANSACTIONS: handle_list_transactions,
    ApiKey.DESCRIBE_TRANSACTIONS: handle_describe_transactions,
    ApiKey.DESCRIBE_PRODUCERS: handle_describe_producers,
    ApiKey.WRITE_TXN_MARKERS: handle_write_txn_markers,
}
