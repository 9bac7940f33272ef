"""InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and TxnOffsetCommit.

InitProducerId without a transactional id serves the idempotent producer (Java and kafka-python turn it on by
default): a fresh producer id at epoch 0, every time. With one it goes to the transaction coordinator
(:mod:`loosely.broker.transactions`). AddPartitionsToTxn answers UNKNOWN_TOPIC_OR_PARTITION for partitions the
broker does not have and OPERATION_NOT_ATTEMPTED for the others of that request, as Kafka does. TxnOffsetCommit
checks the producer with the transaction coordinator, then the group membership with the group coordinator, and
writes the offsets as part of the transaction (they apply when its COMMIT marker is written).

Transactions version 2 (KIP-890 part 2, ``transaction.version`` 2, which ApiVersions finalizes): EndTxn v5 bumps
the producer's epoch and answers the id and epoch to go on with; TxnOffsetCommit v5 adds the group's
``__consumer_offsets`` partition to the transaction itself (no AddOffsetsToTxn), as Produce v12 does for its
partitions. AddPartitionsToTxn v4+ is the batched form brokers send each other: it needs CLUSTER_ACTION, may carry
several transactional ids, and with ``verify_only`` asks whether partitions are in a transaction instead of adding
them (Kafka's brokers verify a transactional Produce that way; loosely's Produce asks its coordinator directly).

A fenced producer (its epoch is older than the transactional id's) hears PRODUCER_FENCED (90) only from the request
versions that came with KIP-588 (Kafka 2.7), whose clients know the code: InitProducerId v4+, AddPartitionsToTxn,
AddOffsetsToTxn and EndTxn v2+. Older versions are told INVALID_PRODUCER_EPOCH (47), which their clients already
treat as fatal; Kafka's ``KafkaApis`` downgrades the coordinator's answer the same way. TxnOffsetCommit (like
Produce) answers INVALID_PRODUCER_EPOCH at every version: Kafka checks it by verifying the partition with the
transaction coordinator, and that verification always reports fencing as INVALID_PRODUCER_EPOCH.
"""

from __future__ import annotations

from typing import Final

from loosely.broker import internal
from loosely.broker.acls import allowed
from loosely.broker.context import BrokerContext, Request
from loosely.broker.groups.coordinator import group_coordinator
from loosely.broker.handlers._util import NO_THROTTLE, Response
from loosely.broker.handlers.group_offsets import (
    commit_requests,
    committed_topics,
    named,
    partition_errors,
    requested_topics,
)
from loosely.broker.handlers.groups import td_ms
from loosely.broker.producers import producer_state
from loosely.broker.transactions.coordinator import TransactionCoordinator, transaction_coordinator
from loosely.broker.transactions.state import TV2
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader, build
from loosely.protocol.names import TopicPartition
from loosely.security.authorizer import CLUSTER_NAME
from loosely.security.authorizer import AclOperation as Op
from loosely.security.authorizer import ResourceType as Res
from loosely.storage.log import LogError

__all__ = ["HANDLERS"]

NO_PRODUCER_ID = -1

# The request versions that speak transactions version 2 (Kafka's TransactionVersion.transactionVersionFor*).
_END_TXN_V2_SINCE: Final = 5
_ADD_PARTITIONS_BATCHED_SINCE: Final = 4  # broker to broker; Kafka treats these adds as version 2 too
_TXN_OFFSET_COMMIT_V2_SINCE: Final = 5
_TRANSACTION_ABORTABLE_SINCE: Final = 4  # TxnOffsetCommit v4 knows TRANSACTION_ABORTABLE (KIP-890 part 1)

# The first version of each API whose clients know PRODUCER_FENCED (KIP-588).
_PRODUCER_FENCED_SINCE: Final = {
    ApiKey.INIT_PRODUCER_ID: 4,
    ApiKey.ADD_PARTITIONS_TO_TXN: 2,
    ApiKey.ADD_OFFSETS_TO_TXN: 2,
    ApiKey.END_TXN: 2,
}


def _for_client(header: RequestHeader, error: ErrorCode) -> ErrorCode:
    """The coordinator's answer in the words the request's version knows: PRODUCER_FENCED becomes
    INVALID_PRODUCER_EPOCH for the versions before KIP-588."""
    if error == ErrorCode.producer_fenced and header.api_version < _PRODUCER_FENCED_SINCE[header.api_key]:
        return ErrorCode.invalid_producer_epoch
    return error


def _may_write(ctx: BrokerContext, transactional_id: str | None) -> bool:
    return allowed(ctx, Op.WRITE, Res.TRANSACTIONAL_ID, transactional_id or "")


def _may_write_idempotently(ctx: BrokerContext) -> bool:
    """Kafka (KIP-679): IDEMPOTENT_WRITE on the cluster, or WRITE on some topic, lets a producer be idempotent."""
    if allowed(ctx, Op.IDEMPOTENT_WRITE, Res.CLUSTER, CLUSTER_NAME, log_denied=False):
        return True
    return ctx.acls is None or ctx.acls.check_any(Op.WRITE, Res.TOPIC)


async def handle_init_producer_id(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.INIT_PRODUCER_ID, header.api_version)

    def answer(error: ErrorCode, pid: int = NO_PRODUCER_ID, epoch: int = -1) -> object:
        if error != ErrorCode.none:
            ctx.count_error(ApiKey.INIT_PRODUCER_ID)
            pid, epoch = NO_PRODUCER_ID, -1  # Kafka names no producer with an error (CONCURRENT_TRANSACTIONS too)
        return resp.make(throttle_time=NO_THROTTLE, error_code=error, producer_id=pid, producer_epoch=epoch)

    producers = producer_state(ctx)
    if producers is None or producers.ids is None:
        return answer(ErrorCode.coordinator_not_available)
    tid = request.transactional_id
    if tid is not None and not _may_write(ctx, tid):
        return answer(ErrorCode.transactional_id_authorization_failed)
    if tid is None and not _may_write_idempotently(ctx):
        return answer(ErrorCode.cluster_authorization_failed)
    if tid is None:
        try:
            return answer(ErrorCode.none, producers.ids.allocate(), 0)
        except OSError:
            return answer(ErrorCode.coordinator_not_available)
    timeout_ms = td_ms(request.transaction_timeout)
    if not tid:
        return answer(ErrorCode.invalid_request)
    if not 0 < timeout_ms <= ctx.config.transaction_timeout_ms_max:
        return answer(ErrorCode.invalid_transaction_timeout)
    coord = transaction_coordinator(ctx)
    if coord is None:
        return answer(ErrorCode.coordinator_not_available)
    pid = int(getattr(request, "producer_id", NO_PRODUCER_ID))
    expected = (pid, int(request.producer_epoch)) if pid != NO_PRODUCER_ID else None
    r = await coord.init_producer_id(str(tid), timeout_ms, expected)
    return answer(_for_client(header, r.error), r.producer_id, r.producer_epoch)


async def _add_partitions(
    ctx: BrokerContext,
    header: RequestHeader,
    coord: TransactionCoordinator | None,
    txn: Request,
    wanted: list[tuple[str, list[int]]],
    *,
    batched: bool,
) -> dict[TopicPartition, ErrorCode]:
    """One transaction's partitions: added (or, for ``verify_only``, checked); the error of each."""
    tid, pid, epoch = (
        (txn.transactional_id, txn.producer_id, txn.producer_epoch)
        if batched
        else (txn.v3_and_below_transactional_id, txn.v3_and_below_producer_id, txn.v3_and_below_producer_epoch)
    )
    every = [TopicPartition(n, p) for n, ps in wanted for p in ps]
    # Kafka checks WRITE on the transactional id for clients only: a broker asking holds CLUSTER_ACTION.
    if not batched and not _may_write(ctx, tid):
        return dict.fromkeys(every, ErrorCode.transactional_id_authorization_failed)
    errors = partition_errors(ctx, wanted, Op.WRITE)
    if errors:
        return {tp: errors.get(tp, ErrorCode.operation_not_attempted) for tp in every}
    if coord is None:
        return dict.fromkeys(every, ErrorCode.coordinator_not_available)
    if batched and bool(txn.verify_only):
        return coord.verify_partitions(str(tid), int(pid), int(epoch), frozenset(every))
    version = TV2 if batched else 0
    r = await coord.add_partitions(str(tid), int(pid), int(epoch), frozenset(every), version)
    return dict.fromkeys(every, _for_client(header, r.error))


async def handle_add_partitions_to_txn(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.ADD_PARTITIONS_TO_TXN, header.api_version)
    coord = transaction_coordinator(ctx)
    batched = header.api_version >= _ADD_PARTITIONS_BATCHED_SINCE

    def topic_results(wanted: list[tuple[str, list[int]]], code: dict[TopicPartition, ErrorCode]) -> tuple[object, ...]:
        if any(c != ErrorCode.none for c in code.values()):
            ctx.count_error(ApiKey.ADD_PARTITIONS_TO_TXN)
        return tuple(
            build(
                resp.AddPartitionsToTxnTopicResult,
                name=name,
                results_by_partition=tuple(
                    build(
                        resp.AddPartitionsToTxnPartitionResult,
                        partition_index=p,
                        partition_error_code=code[TopicPartition(name, p)],
                    )
                    for p in ps
                ),
            )
            for name, ps in wanted
        )

    def partitions(topics: tuple[Request, ...]) -> list[tuple[str, list[int]]]:
        return [(t.name, [int(p) for p in t.partitions]) for t in topics]

    if not batched:
        wanted = partitions(request.v3_and_below_topics)
        code = await _add_partitions(ctx, header, coord, request, wanted, batched=False)
        return resp.make(throttle_time=NO_THROTTLE, results_by_topic_v3_and_below=topic_results(wanted, code))
    if not allowed(ctx, Op.CLUSTER_ACTION, Res.CLUSTER, CLUSTER_NAME):
        ctx.count_error(ApiKey.ADD_PARTITIONS_TO_TXN)
        return resp.make(
            throttle_time=NO_THROTTLE, error_code=ErrorCode.cluster_authorization_failed, results_by_transaction=()
        )
    results = []
    for txn in request.transactions:
        wanted = partitions(txn.topics)
        code = await _add_partitions(ctx, header, coord, txn, wanted, batched=True)
        results.append(
            build(
                resp.AddPartitionsToTxnResult,
                transactional_id=txn.transactional_id,
                topic_results=topic_results(wanted, code),
            )
        )
    return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, results_by_transaction=tuple(results))


def _offsets_partition(ctx: BrokerContext, group_id: str) -> int | None:
    """The group's partition of ``__consumer_offsets`` (created if need be), or None if it cannot be."""
    coord = group_coordinator(ctx)
    if coord is None:
        return None
    try:
        coord.ensure_ready()
    except LogError:
        return None
    return coord.store.partition_of(group_id)


async def handle_add_offsets_to_txn(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.ADD_OFFSETS_TO_TXN, header.api_version)
    coord = transaction_coordinator(ctx)
    partition = _offsets_partition(ctx, str(request.group_id))
    if not _may_write(ctx, request.transactional_id):
        error = ErrorCode.transactional_id_authorization_failed
    elif not allowed(ctx, Op.READ, Res.GROUP, request.group_id or ""):
        error = ErrorCode.group_authorization_failed
    elif not request.group_id:
        error = ErrorCode.invalid_group_id
    elif coord is None or partition is None:
        error = ErrorCode.coordinator_not_available
    else:
        r = await coord.add_partitions(
            str(request.transactional_id),
            int(request.producer_id),
            int(request.producer_epoch),
            frozenset({TopicPartition(internal.CONSUMER_OFFSETS, partition)}),
        )
        error = _for_client(header, r.error)
    if error != ErrorCode.none:
        ctx.count_error(ApiKey.ADD_OFFSETS_TO_TXN)
    return resp.make(throttle_time=NO_THROTTLE, error_code=error)


async def handle_end_txn(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.END_TXN, header.api_version)
    coord = transaction_coordinator(ctx)
    pid, epoch = NO_PRODUCER_ID, -1
    if not _may_write(ctx, request.transactional_id):
        error = ErrorCode.transactional_id_authorization_failed
    elif coord is None:
        error = ErrorCode.coordinator_not_available
    elif not request.transactional_id:
        error = ErrorCode.invalid_request
    else:
        r = await coord.end_txn(
            str(request.transactional_id),
            int(request.producer_id),
            int(request.producer_epoch),
            bool(request.committed),
            TV2 if header.api_version >= _END_TXN_V2_SINCE else 0,
        )
        error = _for_client(header, r.error)
        if error == ErrorCode.none:
            pid, epoch = r.producer_id, r.producer_epoch  # v5: what the producer goes on with (KIP-890)
    if error != ErrorCode.none:
        ctx.count_error(ApiKey.END_TXN)
    return resp.make(throttle_time=NO_THROTTLE, error_code=error, producer_id=pid, producer_epoch=epoch)


async def _add_offsets_implicitly(txns: TransactionCoordinator, request: Request, partition: int) -> ErrorCode:
    """TxnOffsetCommit v5 does AddOffsetsToTxn's work: the group's partition joins the transaction. A producer the
    coordinator refuses hears INVALID_PRODUCER_EPOCH for PRODUCER_FENCED, as verification answers in Kafka."""
    tid, pid, epoch = str(request.transactional_id), int(request.producer_id), int(request.producer_epoch)
    offsets = TopicPartition(internal.CONSUMER_OFFSETS, partition)
    if txns.verify_partitions(tid, pid, epoch, frozenset({offsets}))[offsets] != ErrorCode.transaction_abortable:
        return ErrorCode.none  # already added, or refused: verify_offsets says which
    r = await txns.add_partitions(tid, pid, epoch, frozenset({offsets}), TV2)
    return ErrorCode.invalid_producer_epoch if r.error == ErrorCode.producer_fenced else r.error


async def handle_txn_offset_commit(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.TXN_OFFSET_COMMIT, header.api_version)
    requested = requested_topics(ctx, request.topics)
    refused: dict[TopicPartition, ErrorCode] | None = partition_errors(ctx, named(requested))
    errors = dict(refused or {})
    txns = transaction_coordinator(ctx)
    groups = group_coordinator(ctx)
    partition = _offsets_partition(ctx, str(request.group_id))
    error = ErrorCode.none
    if not _may_write(ctx, request.transactional_id):
        error, refused = ErrorCode.transactional_id_authorization_failed, None
    elif not allowed(ctx, Op.READ, Res.GROUP, request.group_id or ""):
        error, refused = ErrorCode.group_authorization_failed, None
    elif not request.group_id:
        error, refused = ErrorCode.invalid_group_id, None
    elif txns is None or groups is None or partition is None:
        error, refused = ErrorCode.coordinator_not_available, None
    else:
        if header.api_version >= _TXN_OFFSET_COMMIT_V2_SINCE:
            error = await _add_offsets_implicitly(txns, request, partition)
        if error == ErrorCode.none:
            error = txns.verify_offsets(
                str(request.transactional_id), int(request.producer_id), int(request.producer_epoch), partition
            )
        if error == ErrorCode.transaction_abortable and header.api_version < _TRANSACTION_ABORTABLE_SINCE:
            error = ErrorCode.invalid_txn_state  # the code clients before KIP-890 know
    if error == ErrorCode.none and groups is not None:
        commits = commit_requests(requested, errors)
        error, per = groups.commit_transactional_offsets(
            str(request.group_id),
            member_id=str(getattr(request, "member_id", "")),
            instance_id=getattr(request, "group_instance_id", None),
            # v6 renames the field: a consumer-protocol member sends its epoch, as it did before under the old name
            generation=int(getattr(request, "generation_id", getattr(request, "generation_id_or_member_epoch", -1))),
            producer_id=int(request.producer_id),
            producer_epoch=int(request.producer_epoch),
            partitions=commits,
            api_version=header.api_version,
        )
        errors.update(per)
    if error != ErrorCode.none:
        ctx.count_error(ApiKey.TXN_OFFSET_COMMIT)
    topics = committed_topics(
        resp, requested, error, refused, errors,
        classes=("TxnOffsetCommitResponseTopic", "TxnOffsetCommitResponsePartition"),
    )
    return resp.make(throttle_time=NO_THROTTLE, topics=topics)


HANDLERS = {
    ApiKey.INIT_PRODUCER_ID: handle_init_producer_id,
    ApiKey.ADD_PARTITIONS_TO_TXN: handle_add_partitions_to_txn,
    ApiKey.ADD_OFFSETS_TO_TXN: handle_add_offsets_to_txn,
    ApiKey.END_TXN: handle_end_txn,
    ApiKey.TXN_OFFSET_COMMIT: handle_txn_offset_commit,
}
