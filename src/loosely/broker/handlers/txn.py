"""InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and TxnOffsetCommit.

InitProducerId without a transactional id serves the idempotent producer (Java and kafka-python turn it on by
default): a fresh producer id at epoch 0, every time. With one it goes to the transaction coordinator
(:mod:`loosely.broker.transactions`). AddPartitionsToTxn answers UNKNOWN_TOPIC_OR_PARTITION for partitions the
broker does not have and OPERATION_NOT_ATTEMPTED for the others of that request, as Kafka does. TxnOffsetCommit
checks the producer with the transaction coordinator, then the group membership with the group coordinator, and
writes the offsets as part of the transaction (they apply when its COMMIT marker is written).

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
from loosely.broker.handlers.group_offsets import commit_requests, committed_topics, partition_errors
from loosely.broker.handlers.groups import td_ms
from loosely.broker.producers import producer_state
from loosely.broker.transactions.coordinator import transaction_coordinator
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader, build
from loosely.protocol.names import TopicPartition
from loosely.security.authorizer import CLUSTER_NAME
from loosely.security.authorizer import AclOperation as Op
from loosely.security.authorizer import ResourceType as Res
from loosely.storage.log import LogError

__all__ = ["HANDLERS"]

NO_PRODUCER_ID = -1

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


async def handle_add_partitions_to_txn(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.ADD_PARTITIONS_TO_TXN, header.api_version)
    wanted = [(t.name, [int(p) for p in t.partitions]) for t in request.v3_and_below_topics]
    coord = transaction_coordinator(ctx)
    if not _may_write(ctx, request.v3_and_below_transactional_id):
        errors = {TopicPartition(n, p): ErrorCode.transactional_id_authorization_failed for n, ps in wanted for p in ps}
    else:
        errors = partition_errors(ctx, wanted, Op.WRITE)
    if errors:
        code = {
            tp: errors.get(tp, ErrorCode.operation_not_attempted)
            for name, ps in wanted
            for tp in [TopicPartition(name, p) for p in ps]
        }
    elif coord is None:
        code = {TopicPartition(name, p): ErrorCode.coordinator_not_available for name, ps in wanted for p in ps}
    else:
        r = await coord.add_partitions(
            str(request.v3_and_below_transactional_id),
            int(request.v3_and_below_producer_id),
            int(request.v3_and_below_producer_epoch),
            frozenset(TopicPartition(name, p) for name, ps in wanted for p in ps),
        )
        code = {TopicPartition(name, p): _for_client(header, r.error) for name, ps in wanted for p in ps}
    if any(c != ErrorCode.none for c in code.values()):
        ctx.count_error(ApiKey.ADD_PARTITIONS_TO_TXN)
    results = tuple(
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
    return resp.make(throttle_time=NO_THROTTLE, results_by_topic_v3_and_below=results, error_code=ErrorCode.none)


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
        )
        error = _for_client(header, r.error)
    if error != ErrorCode.none:
        ctx.count_error(ApiKey.END_TXN)
    return resp.make(throttle_time=NO_THROTTLE, error_code=error)


async def handle_txn_offset_commit(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.TXN_OFFSET_COMMIT, header.api_version)
    wanted = [(t.name, [p.partition_index for p in t.partitions]) for t in request.topics]
    errors = partition_errors(ctx, wanted)
    txns = transaction_coordinator(ctx)
    groups = group_coordinator(ctx)
    partition = _offsets_partition(ctx, str(request.group_id))
    error = ErrorCode.none
    if not _may_write(ctx, request.transactional_id):
        error = ErrorCode.transactional_id_authorization_failed
    elif not allowed(ctx, Op.READ, Res.GROUP, request.group_id or ""):
        error = ErrorCode.group_authorization_failed
    elif not request.group_id:
        error = ErrorCode.invalid_group_id
    elif txns is None or groups is None or partition is None:
        error = ErrorCode.coordinator_not_available
    else:
        error = txns.verify_offsets(
            str(request.transactional_id), int(request.producer_id), int(request.producer_epoch), partition
        )
    if error == ErrorCode.none and groups is not None:
        commits = commit_requests(request, errors)
        error, per = groups.commit_transactional_offsets(
            str(request.group_id),
            member_id=str(getattr(request, "member_id", "")),
            instance_id=getattr(request, "group_instance_id", None),
            generation=int(getattr(request, "generation_id", -1)),
            producer_id=int(request.producer_id),
            producer_epoch=int(request.producer_epoch),
            partitions=commits,
        )
        errors.update(per)
    if error != ErrorCode.none:
        ctx.count_error(ApiKey.TXN_OFFSET_COMMIT)
    topics = committed_topics(
        resp, wanted, error, errors, classes=("TxnOffsetCommitResponseTopic", "TxnOffsetCommitResponsePartition")
    )
    return resp.make(throttle_time=NO_THROTTLE, topics=topics)


HANDLERS = {
    ApiKey.INIT_PRODUCER_ID: handle_init_producer_id,
    ApiKey.ADD_PARTITIONS_TO_TXN: handle_add_partitions_to_txn,
    ApiKey.ADD_OFFSETS_TO_TXN: handle_add_offsets_to_txn,
    ApiKey.END_TXN: handle_end_txn,
    ApiKey.TXN_OFFSET_COMMIT: handle_txn_offset_commit,
}
