"""Metadata, DescribeTopicPartitions and DescribeCluster: one broker that leads every partition, epoch 0, in-sync
with itself.

Unknown topics named in a Metadata request are created when the request and the broker both allow it
(``allow.auto.create.topics`` / ``auto.create.topics.enable``), which is how producers such as kcat create topics.
In Metadata v0 an empty topic list means "all topics"; from v1 on, null means all and empty means none.

With ACLs on, topics the caller may not DESCRIBE are left out of a listing and TOPIC_AUTHORIZATION_FAILED
when named, in both APIs, as Kafka does.

DescribeTopicPartitions (KIP-966, what Kafka 4's ``kafka-topics --describe`` sends) never creates topics and pages
through partitions: topics in name order from the cursor's topic (and, in it, the cursor's partition), at most
``min(response_partition_limit, 2000)`` partitions (at least 1) per answer. When the budget runs out the answer's
cursor names the first partition left out, or the next topic at partition 0 when a topic ended exactly at the limit.
A cursor whose topic is not among those asked for, or whose partition is negative, is INVALID_REQUEST for every
topic, as in Kafka's ``DescribeTopicPartitionsRequestHandler``. Eligible leader replicas (KIP-966's ELR) are empty:
with one replica, the leader is the whole ISR.
"""

from __future__ import annotations

import uuid

from loosely.broker.acls import allowed, authorized_operations
from loosely.broker.context import BrokerContext, Request
from loosely.broker.handlers._util import NO_THROTTLE, Response
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader, build
from loosely.security.authorizer import CLUSTER_NAME
from loosely.security.authorizer import AclOperation as Op
from loosely.security.authorizer import ResourceType as Res
from loosely.storage.log import LogError
from loosely.storage.manager import Topic, validate_topic_name

__all__ = ["HANDLERS"]

_NULL_UUID = uuid.UUID(int=0)
_NOT_ASKED = -2147483648  # the authorized-operations fields' default: not requested (Int32.MIN_VALUE)
PARTITIONS_PER_RESPONSE_MAX = 2000  # Kafka's max.request.partition.size.limit


async def handle_metadata(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    v = header.api_version
    resp = Response.of(ApiKey.METADATA, v)
    requested = getattr(request, "topics", None)
    allow_create = bool(getattr(request, "allow_auto_topic_creation", True))
    with_ops = bool(getattr(request, "include_topic_authorized_operations", False))
    results: list[object] = []
    if requested is None or (v == 0 and not requested):
        for t in ctx.logs:  # topics the principal may not describe are left out, not reported
            if allowed(ctx, Op.DESCRIBE, Res.TOPIC, t.name, log_denied=False):
                results.append(_topic(resp, ctx, t, with_ops))
    else:
        may_create = None  # CREATE on the cluster, asked once, only if some topic would be auto-created
        for rt in requested:
            name = getattr(rt, "name", None)
            if name is None:
                tid = getattr(rt, "topic_id", None)
                found = ctx.logs.by_id(tid) if tid is not None else None
                if found is None:
                    results.append(_error_topic(resp, None, tid, ErrorCode.unknown_topic_id))
                elif not allowed(ctx, Op.DESCRIBE, Res.TOPIC, found.name):
                    results.append(_error_topic(resp, None, tid, ErrorCode.topic_authorization_failed))
                else:
                    results.append(_topic(resp, ctx, found, with_ops))
                continue
            if not allowed(ctx, Op.DESCRIBE, Res.TOPIC, name):
                results.append(_error_topic(resp, name, None, ErrorCode.topic_authorization_failed))
                continue
            create = allow_create
            if create and ctx.config.auto_create_topics and ctx.logs.get(name) is None:
                if may_create is None:
                    may_create = allowed(ctx, Op.CREATE, Res.CLUSTER, CLUSTER_NAME, log_denied=False)
                if not (may_create or allowed(ctx, Op.CREATE, Res.TOPIC, name)):
                    results.append(_error_topic(resp, name, None, ErrorCode.topic_authorization_failed))
                    continue
            got = ctx.topic_for_metadata(name, create)
            if isinstance(got, LogError):
                results.append(_error_topic(resp, name, None, got.error_code))
            else:
                results.append(_topic(resp, ctx, got, with_ops))
    cluster_ops = _NOT_ASKED
    if 8 <= v <= 10 and getattr(request, "include_cluster_authorized_operations", False):
        cluster_ops = _cluster_operations(ctx)
    return resp.make(
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,  # v13 (KIP-1102): a top-level error, never set by a one-node broker
        brokers=(_make(resp.MetadataResponseBroker, node_id=ctx.node_id, host=ctx.host, port=ctx.port, rack=None),),
        cluster_id=ctx.cluster_id,
        controller_id=ctx.node_id,
        topics=tuple(results),
        cluster_authorized_operations=cluster_ops,
    )


def _error_topic(resp: Response, name: str | None, tid: uuid.UUID | None, code: ErrorCode) -> object:
    return _make(
        resp.MetadataResponseTopic,
        error_code=code,
        name=name,
        topic_id=tid or _NULL_UUID,
        is_internal=False,
        partitions=(),
    )


def _cluster_operations(ctx: BrokerContext) -> int:
    """Kafka answers 0 to a caller that may not even DESCRIBE the cluster."""
    if not allowed(ctx, Op.DESCRIBE, Res.CLUSTER, CLUSTER_NAME, log_denied=False):
        return 0
    return authorized_operations(ctx, Res.CLUSTER, CLUSTER_NAME)


def _led_here(cls: type[object], ctx: BrokerContext, partitions: range) -> tuple[object, ...]:
    """Partitions this broker leads at epoch 0, the only replica and the whole ISR (no eligible leader replicas)."""
    me = (ctx.node_id,)
    return tuple(
        _make(
            cls,
            error_code=ErrorCode.none,
            partition_index=p,
            leader_id=ctx.node_id,
            leader_epoch=0,
            replica_nodes=me,
            isr_nodes=me,
            eligible_leader_replicas=(),
            last_known_elr=(),
            offline_replicas=(),
        )
        for p in partitions
    )


def _topic(resp: Response, ctx: BrokerContext, t: Topic, with_ops: bool = False) -> object:
    return _make(
        resp.MetadataResponseTopic,
        error_code=ErrorCode.none,
        name=t.name,
        topic_id=t.topic_id,
        is_internal=t.internal,
        partitions=_led_here(resp.MetadataResponsePartition, ctx, range(t.partitions)),
        topic_authorized_operations=authorized_operations(ctx, Res.TOPIC, t.name) if with_ops else _NOT_ASKED,
    )


def _make(cls: type[object], **values: object) -> object:
    return build(cls, **values)


def _described_topic(
    resp: Response,
    ctx: BrokerContext,
    name: str,
    t: Topic | None,
    *,
    partitions: range = range(0),
    error: ErrorCode = ErrorCode.none,
) -> object:
    return _make(
        resp.DescribeTopicPartitionsResponseTopic,
        error_code=error,
        name=name,
        topic_id=t.topic_id if t is not None else None,
        is_internal=t.internal if t is not None else False,
        partitions=_led_here(resp.DescribeTopicPartitionsResponsePartition, ctx, partitions),
        topic_authorized_operations=_NOT_ASKED
        if error in (ErrorCode.invalid_request, ErrorCode.topic_authorization_failed)
        else authorized_operations(ctx, Res.TOPIC, name),
    )


async def handle_describe_topic_partitions(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DESCRIBE_TOPIC_PARTITIONS, header.api_version)
    cursor = request.cursor
    after = cursor.topic_name if cursor is not None else ""
    asked = [t.name for t in request.topics]
    everything = not asked
    names = sorted({n for n in ([t.name for t in ctx.logs] if everything else asked) if n >= after})
    if everything:  # a listing leaves out what the caller may not describe
        names = [n for n in names if allowed(ctx, Op.DESCRIBE, Res.TOPIC, n, log_denied=False)]
    if cursor is not None and (cursor.partition_index < 0 or cursor.topic_name not in names):
        ctx.count_error(ApiKey.DESCRIBE_TOPIC_PARTITIONS)
        invalid = tuple(_described_topic(resp, ctx, n, None, error=ErrorCode.invalid_request) for n in asked)
        return resp.make(throttle_time=NO_THROTTLE, topics=invalid, next_cursor=None)
    remaining = max(min(PARTITIONS_PER_RESPONSE_MAX, int(request.response_partition_limit)), 1)
    topics: list[object] = []
    next_cursor = None
    for name in names:
        if remaining == 0:
            next_cursor = _make(resp.Cursor, topic_name=name, partition_index=0)
            break
        if not everything and not allowed(ctx, Op.DESCRIBE, Res.TOPIC, name):
            topics.append(_described_topic(resp, ctx, name, None, error=ErrorCode.topic_authorization_failed))
            continue
        t = ctx.logs.get(name)
        if t is None:
            if not everything:
                try:
                    validate_topic_name(name)
                    error = ErrorCode.unknown_topic_or_partition
                except LogError as e:
                    error = e.error_code
                topics.append(_described_topic(resp, ctx, name, None, error=error))
            continue
        first = cursor.partition_index if cursor is not None and name == cursor.topic_name else 0
        end = min(t.partitions, first + remaining)
        topics.append(_described_topic(resp, ctx, name, t, partitions=range(first, end)))
        if end < t.partitions:
            next_cursor = _make(resp.Cursor, topic_name=name, partition_index=end)
            break
        remaining -= max(end - first, 0)
    return resp.make(throttle_time=NO_THROTTLE, topics=tuple(topics), next_cursor=next_cursor)


async def handle_describe_cluster(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    # Kafka's brokers answer DescribeCluster to anyone (only its controllers want ALTER on the cluster).
    resp = Response.of(ApiKey.DESCRIBE_CLUSTER, header.api_version)
    return resp.make(
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        error_message=None,
        endpoint_type=1,
        cluster_id=ctx.cluster_id,
        controller_id=ctx.node_id,
        brokers=(_make(resp.DescribeClusterBroker, broker_id=ctx.node_id, host=ctx.host, port=ctx.port, rack=None,
                       is_fenced=False),),  # v2: this node serves, so it is never fenced
        cluster_authorized_operations=_cluster_operations(ctx)
        if getattr(request, "include_cluster_authorized_operations", False)
        else _NOT_ASKED,
    )


HANDLERS = {
    ApiKey.METADATA: handle_metadata,
    ApiKey.DESCRIBE_CLUSTER: handle_describe_cluster,
    ApiKey.DESCRIBE_TOPIC_PARTITIONS: handle_describe_topic_partitions,
}
