"""Produce: validate, append, acknowledge.

``acks`` 0, 1 and -1 (all) are accepted; on a single node "all in-sync replicas" is this broker, so 1 and -1
answer once the batches are in the log (and fsynced, if the topic's flush policy asks for it). With ``acks=0`` no
response is sent, and an error closes the connection, as Kafka does, so the producer notices. Produce never creates
topics: an unknown topic answers UNKNOWN_TOPIC_OR_PARTITION. Before a batch is appended, the producer-state
service (idempotence, transactions) may check it; see ``loosely.broker.producers``. Transactional data for a
partition outside the producer's open transaction answers TRANSACTION_ABORTABLE from v11 (KIP-890) and
INVALID_TXN_STATE before, as Kafka does.

A refused batch answers the error the log chose (``loosely.protocol.validation`` says which for what) with an
``error_message`` (Produce v8+), and, when validation named the records at fault, KIP-467 ``record_errors``: one
(batch index, message) per bad record, so a client can tell its good records from its bad ones.

A disk error while appending (ENOSPC, EIO) answers KAFKA_STORAGE_ERROR (56) for that partition, at every Produce
version, as Kafka does (it never down-converts this code for Produce; v4 only documents that clients must expect
it); the storage layer has already undone the partial append and logged it (once per interval), so nothing else
happens here: the connection stays open and the other partitions of the request are unaffected.
"""

from __future__ import annotations

import datetime
import logging
from typing import Final

from loosely.broker.acls import allowed
from loosely.broker.context import (
    CLOSE_CONNECTION,
    BrokerContext,
    Request,
    current_principal,
    current_throttle_ms,
)
from loosely.broker.handlers._util import NO_THROTTLE, Response
from loosely.broker.quotas import PRODUCE as PRODUCER_BYTE_RATE
from loosely.broker.quotas import quota_user
from loosely.broker.transactions.coordinator import transaction_coordinator
from loosely.broker.transactions.state import TV2
from loosely.protocol.errors import CorruptRecordError, ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader, build
from loosely.protocol.names import TopicPartition
from loosely.protocol.records import read_header
from loosely.security.authorizer import AclOperation as Op
from loosely.security.authorizer import ResourceType as Res
from loosely.storage.log import AppendResult, LogError

__all__ = ["HANDLERS"]

log = logging.getLogger("loosely.broker")


# KIP-890: Produce v11 clients know TRANSACTION_ABORTABLE; older ones hear INVALID_TXN_STATE, as Kafka tells them.
_TRANSACTION_ABORTABLE_SINCE: Final = 11


def _for_version(version: int, error: ErrorCode) -> ErrorCode:
    if error == ErrorCode.transaction_abortable and version < _TRANSACTION_ABORTABLE_SINCE:
        return ErrorCode.invalid_txn_state
    return error


def _append(
    ctx: BrokerContext, topic: str | None, partition: int, records: bytes | None, transactional_id: str | None
) -> AppendResult | LogError:
    if topic is None:
        return LogError(ErrorCode.unknown_topic_id, "unknown topic id")
    plog = ctx.logs.log(topic, partition)
    if plog is None:
        return LogError(ErrorCode.unknown_topic_or_partition, f"unknown topic-partition {topic}-{partition}")
    if ctx.logs.topics[topic].internal and not topic.startswith("__loosely"):
        return LogError(ErrorCode.invalid_topic_exception, f"clients may not produce to internal topic {topic}")
    if not records:
        return LogError(ErrorCode.invalid_record, "no records")
    try:
        first = read_header(records, 0)
    except CorruptRecordError as e:
        return LogError(e.error_code, str(e))
    if first.size < len(records):
        # Kafka's rule for Produce v3+: exactly one batch per partition.
        return LogError(ErrorCode.invalid_record, "a produce request may carry only one record batch per partition")
    producers = ctx.producer_state
    try:
        if producers is not None:
            return producers.append(topic, partition, plog, records, transactional_id)
        return plog.append(records)
    except LogError as e:  # StorageError included: KAFKA_STORAGE_ERROR
        return e
    except OSError as e:  # a disk error outside the log's own append (producer state files, say)
        return plog.storage_error("produce", e)


# KIP-890 part 2: from Produce v12 a transactional batch adds its partition to the producer's transaction itself, as
# an AddPartitionsToTxn would (clients send v12+ only once transaction.version 2 is finalized; tools may at any time)
_IMPLICIT_ADD_VERSION = 12
_IMPLICIT_ADD_ERRORS: Final = {
    ErrorCode.producer_fenced: ErrorCode.invalid_producer_epoch,
    ErrorCode.coordinator_not_available: ErrorCode.not_enough_replicas,
    ErrorCode.not_coordinator: ErrorCode.not_enough_replicas,
}


async def _add_implicitly(
    ctx: BrokerContext, transactional_id: str, topic: str, partition: int, records: bytes | None
) -> LogError | None:
    """Add the partition a v12+ transactional batch goes to to its transaction; the error if that fails, None to
    append (also when there is nothing to add: the append then answers as for any version)."""
    coordinator = transaction_coordinator(ctx)
    if coordinator is None or not records:
        return None
    try:
        header = read_header(records, 0)
    except CorruptRecordError:
        return None  # the append refuses it with its own error
    if not header.is_transactional:
        return None
    pid, epoch = header.producer_id, header.producer_epoch
    if coordinator.verify_produce(transactional_id, pid, epoch, topic, partition) != ErrorCode.transaction_abortable:
        return None  # already in the transaction, or refused for the producer itself: the append says which
    wanted = frozenset({TopicPartition(topic, partition)})
    reply = await coordinator.add_partitions(transactional_id, pid, epoch, wanted, TV2)
    if reply.error == ErrorCode.none:
        return None
    # Produce has no PRODUCER_FENCED (KIP-588 left it out): a fenced producer hears INVALID_PRODUCER_EPOCH here too;
    # a coordinator that cannot write is NOT_ENOUGH_REPLICAS, which producers retry (Kafka's ReplicaManager).
    code = _IMPLICIT_ADD_ERRORS.get(reply.error, reply.error)
    return LogError(code, f"adding {topic}-{partition} to transaction {transactional_id}: {reply.error.name}")


# KIP-467: Produce v8 added record_errors and error_message.
_RECORD_ERRORS_VERSION = 8


def _record_errors(resp: Response, error: LogError) -> tuple[object, ...]:
    return tuple(
        build(resp.BatchIndexAndErrorMessage, batch_index=e.batch_index, batch_index_error_message=e.message)
        for e in error.record_errors
    )


async def handle_produce(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    v = header.api_version
    resp = Response.of(ApiKey.PRODUCE, v)
    acks = int(request.acks)
    transactional_id = getattr(request, "transactional_id", None)
    # Kafka refuses the whole request when a transactional producer may not WRITE its transactional id, then
    # each topic the principal may not WRITE.
    denied: LogError | None = None
    if transactional_id is not None and not allowed(ctx, Op.WRITE, Res.TRANSACTIONAL_ID, transactional_id):
        denied = LogError(ErrorCode.transactional_id_authorization_failed, "Transactional Id authorization failed.")
    failed = False
    topics: list[object] = []
    for td in request.topic_data:
        name = getattr(td, "name", None)
        tid = getattr(td, "topic_id", None)
        if name is None and tid is not None:
            t = ctx.logs.by_id(tid)
            name = t.name if t is not None else None
        parts: list[object] = []
        topic_denied = denied
        if topic_denied is None and name is not None and not allowed(ctx, Op.WRITE, Res.TOPIC, name):
            topic_denied = LogError(ErrorCode.topic_authorization_failed, "Topic authorization failed.")
        for pd in td.partition_data:
            if topic_denied is not None:
                result: AppendResult | LogError = topic_denied
            elif acks not in (-1, 0, 1):
                result = LogError(ErrorCode.invalid_required_acks, f"acks={acks}")
            else:
                added = None
                if v >= _IMPLICIT_ADD_VERSION and transactional_id is not None and name is not None:
                    added = await _add_implicitly(ctx, transactional_id, name, pd.index, pd.records)
                result = added or _append(ctx, name, pd.index, pd.records, transactional_id)
            if isinstance(result, LogError):
                failed = True
                ctx.count_error(ApiKey.PRODUCE)
                log.debug("produce to %s-%s refused: %s", name, pd.index, result)
                parts.append(
                    build(
                        resp.PartitionProduceResponse,
                        index=pd.index,
                        error_code=_for_version(v, result.error_code),
                        base_offset=-1,
                        log_append_time=None,
                        log_start_offset=-1,
                        record_errors=_record_errors(resp, result) if v >= _RECORD_ERRORS_VERSION else (),
                        error_message=str(result),
                    )
                )
                continue
            assert name is not None
            ctx.record_produced(name, pd.index, result, len(pd.records or b""))
            lat = (
                datetime.datetime.fromtimestamp(result.log_append_time_ms / 1000, tz=datetime.UTC)
                if result.log_append_time_ms >= 0
                else None
            )
            parts.append(
                build(
                    resp.PartitionProduceResponse,
                    index=pd.index,
                    error_code=ErrorCode.none,
                    base_offset=result.base_offset,
                    log_append_time=lat,
                    log_start_offset=result.log_start_offset,
                    record_errors=(),
                    error_message=None,
                )
            )
        topics.append(build(resp.TopicProduceResponse, name=name or "", topic_id=tid, partition_responses=tuple(parts)))
    throttle = _throttle(ctx, header, sum(len(pd.records or b"") for td in request.topic_data
                                          for pd in td.partition_data))
    if acks == 0:
        return CLOSE_CONNECTION if failed else None
    return resp.make(responses=tuple(topics), throttle_time=throttle)


def _throttle(ctx: BrokerContext, header: RequestHeader, nbytes: int) -> datetime.timedelta:
    """Record the request's bytes against the client's producer_byte_rate; the throttle to answer with (KIP-219:
    the client is answered now and its connection muted for that long)."""
    if ctx.quotas is None:
        return NO_THROTTLE
    ms = ctx.quotas.throttle_ms(PRODUCER_BYTE_RATE, quota_user(current_principal.get()), header.client_id or "",
                                nbytes)
    if ms <= 0:
        return NO_THROTTLE
    current_throttle_ms.set(ms)
    return datetime.timedelta(milliseconds=ms)


HANDLERS = {ApiKey.PRODUCE: handle_produce}
