"""Metadata and DescribeCluster: one broker that leads every partition, epoch 0, in-sync with itself.

Unknown topics named in a Metadata request are created when the request and the broker both allow it
(``allow.auto.create.topics`` / ``auto.create.topics.enable``), which is how producers such as kcat create topics.
In Metadata v0 an empty topic list means "all topics"; from v1 on, null means all and empty means none.
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
from loosely.storage.manager import Topic

__all__ = ["HANDLERS"]

_NULL_UUID = uuid.UUID(int=0)
_NOT_ASKED = -2147483648  # the authorized-operations fields' default: not requested


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


def _topic(resp: Response, ctx: BrokerContext, t: Topic, with_ops: bool = False) -> object:
    me = (ctx.node_id,)
    parts = tuple(
        _make(
            resp.MetadataResponsePartition,
            error_code=ErrorCode.none,
            partition_index=p,
            leader_id=ctx.node_id,
            leader_epoch=0,
            replica_nodes=me,
            isr_nodes=me,
            offline_replicas=(),
        )
        for p in range(t.partitions)
    )
    return _make(
        resp.MetadataResponseTopic,
        error_code=ErrorCode.none,
        name=t.name,
        topic_id=t.topic_id,
        is_internal=t.internal,
        partitions=parts,
        topic_authorized_operations=authorized_operations(ctx, Res.TOPIC, t.name) if with_ops else _NOT_ASKED,
    )


def _make(cls: type[object], **values: object) -> object:
    return build(cls, **values)


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
        brokers=(_make(resp.DescribeClusterBroker, broker_id=ctx.node_id, host=ctx.host, port=ctx.port, rack=None),),
        cluster_authorized_operations=_cluster_operations(ctx)
        if getattr(request, "include_cluster_authorized_operations", False)
        else _NOT_ASKED,
    )


HANDLERS = {
    ApiKey.METADATA: handle_metadata,
    ApiKey.DESCRIBE_CLUSTER: handle_describe_cluster,
}
