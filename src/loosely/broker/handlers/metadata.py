"""Metadata and DescribeCluster: one broker that leads every partition, epoch 0, in-sync with itself.

Unknown topics named in a Metadata request are created when the request and the broker both allow it
(``allow.auto.create.topics`` / ``auto.create.topics.enable``), which is how producers such as kcat create topics.
In Metadata v0 an empty topic list means "all topics"; from v1 on, null means all and empty means none.
"""

from __future__ import annotations

import uuid

from loosely.broker.context import BrokerContext, Request
from loosely.broker.handlers._util import NO_THROTTLE, Response
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader, build
from loosely.storage.log import LogError
from loosely.storage.manager import Topic

__all__ = ["HANDLERS"]

_NULL_UUID = uuid.UUID(int=0)


async def handle_metadata(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    v = header.api_version
    resp = Response.of(ApiKey.METADATA, v)
    requested = getattr(request, "topics", None)
    allow_create = bool(getattr(request, "allow_auto_topic_creation", True))
    results: list[object] = []
    if requested is None or (v == 0 and not requested):
        for t in ctx.logs:
            results.append(_topic(resp, ctx, t))
    else:
        for rt in requested:
            name = getattr(rt, "name", None)
            if name is None:
                tid = getattr(rt, "topic_id", None)
                found = ctx.logs.by_id(tid) if tid is not None else None
                if found is None:
                    results.append(_error_topic(resp, None, tid, ErrorCode.unknown_topic_id))
                else:
                    results.append(_topic(resp, ctx, found))
                continue
            got = ctx.topic_for_metadata(name, allow_create)
            if isinstance(got, LogError):
                results.append(_error_topic(resp, name, None, got.error_code))
            else:
                results.append(_topic(resp, ctx, got))
    return resp.make(
        throttle_time=NO_THROTTLE,
        brokers=(_make(resp.MetadataResponseBroker, node_id=ctx.node_id, host=ctx.host, port=ctx.port, rack=None),),
        cluster_id=ctx.cluster_id,
        controller_id=ctx.node_id,
        topics=tuple(results),
        cluster_authorized_operations=-2147483648,
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


def _topic(resp: Response, ctx: BrokerContext, t: Topic) -> object:
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
    )


def _make(cls: type[object], **values: object) -> object:
    return build(cls, **values)


async def handle_describe_cluster(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DESCRIBE_CLUSTER, header.api_version)
    return resp.make(
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        error_message=None,
        endpoint_type=1,
        cluster_id=ctx.cluster_id,
        controller_id=ctx.node_id,
        brokers=(_make(resp.DescribeClusterBroker, broker_id=ctx.node_id, host=ctx.host, port=ctx.port, rack=None),),
        cluster_authorized_operations=-2147483648,
    )


HANDLERS = {
    ApiKey.METADATA: handle_metadata,
    ApiKey.DESCRIBE_CLUSTER: handle_describe_cluster,
}
