"""DescribeLogDirs and AlterReplicaLogDirs: the data directory as the broker's one log directory
(``kafka-log-dirs --describe``, ``kafka-reassign-partitions`` with ``log_dirs``).

Kafka answers one result per log directory with every partition that lives in it: its size on disk (the sum of its
segment files) and its offset lag, which for a current (not ``future``) replica is how far the log end runs ahead of
the high watermark. loosely acknowledges a write once it is in the log, so the two are equal and the lag is 0.
Partitions asked for that the broker does not have are left out, not reported as errors, as Kafka's
``ReplicaManager.describeLogDirs`` does. v4 (KIP-827) adds the volume's total and usable bytes, read with
``statvfs``; a directory that cannot be read answers KAFKA_STORAGE_ERROR for that directory.

AlterReplicaLogDirs moves replicas between log directories. With one directory every replica is already where it
can be: a move to it is done before it starts (NONE), a move to any other path (compared as given, as Kafka does)
is LOG_DIR_NOT_FOUND, and a partition the broker does not have is UNKNOWN_TOPIC_OR_PARTITION.
"""

from __future__ import annotations

import os

from loosely.broker.acls import allowed
from loosely.broker.context import BrokerContext, Request
from loosely.broker.handlers._util import NO_THROTTLE, Response, build
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader
from loosely.security.authorizer import CLUSTER_NAME, AclOperation, ResourceType
from loosely.storage.manager import Topic

__all__ = ["HANDLERS"]

UNKNOWN_BYTES = -1  # the schema's default for total/usable bytes: "not known"


def _wanted(request: Request, ctx: BrokerContext) -> list[tuple[Topic, list[int]]]:
    asked = request.topics
    if asked is None:
        return [(t, list(range(t.partitions))) for t in ctx.logs]
    out: list[tuple[Topic, list[int]]] = []
    for a in asked:
        t = ctx.logs.get(a.topic)
        if t is not None:
            out.append((t, sorted({int(p) for p in a.partitions if 0 <= p < t.partitions})))
    return out


async def handle_describe_log_dirs(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DESCRIBE_LOG_DIRS, header.api_version)
    if not allowed(ctx, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME):  # as Kafka's KafkaApis
        return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.cluster_authorization_failed, results=())
    topics = []
    for t, partitions in _wanted(request, ctx):
        if not partitions:
            continue
        parts = tuple(
            build(
                resp.DescribeLogDirsPartition,
                partition_index=p,
                partition_size=t.logs[p].size_bytes,
                offset_lag=0,
                is_future_key=False,
            )
            for p in partitions
        )
        topics.append(build(resp.DescribeLogDirsTopic, name=t.name, partitions=parts))
    error, total, usable = ErrorCode.none, UNKNOWN_BYTES, UNKNOWN_BYTES
    try:
        st = os.statvfs(ctx.logs.data_dir)
        total, usable = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    except OSError:
        error = ErrorCode.kafka_storage_error
        ctx.count_error(ApiKey.DESCRIBE_LOG_DIRS)
    result = build(
        resp.DescribeLogDirsResult,
        error_code=error,
        log_dir=ctx.logs.data_dir,
        topics=tuple(topics) if error == ErrorCode.none else (),
        total_bytes=total,
        usable_bytes=usable,
    )
    return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, results=(result,))


async def handle_alter_replica_log_dirs(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.ALTER_REPLICA_LOG_DIRS, header.api_version)
    may = allowed(ctx, AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME)  # as Kafka's KafkaApis
    by_topic: dict[str, dict[int, ErrorCode]] = {}
    for d in request.dirs:
        here = d.path == ctx.logs.data_dir
        for t in d.topics:
            topic = ctx.logs.get(t.name)
            for p in t.partitions:
                if not may:
                    code = ErrorCode.cluster_authorization_failed
                elif topic is None or not 0 <= p < topic.partitions:
                    code = ErrorCode.unknown_topic_or_partition
                else:
                    code = ErrorCode.none if here else ErrorCode.log_dir_not_found
                if code != ErrorCode.none:
                    ctx.count_error(ApiKey.ALTER_REPLICA_LOG_DIRS)
                by_topic.setdefault(t.name, {})[int(p)] = code
    results = tuple(
        build(
            resp.AlterReplicaLogDirTopicResult,
            topic_name=name,
            partitions=tuple(
                build(resp.AlterReplicaLogDirPartitionResult, partition_index=p, error_code=code)
                for p, code in sorted(codes.items())
            ),
        )
        for name, codes in by_topic.items()
    )
    return resp.make(throttle_time=NO_THROTTLE, results=results)


HANDLERS = {
    ApiKey.DESCRIBE_LOG_DIRS: handle_describe_log_dirs,
    ApiKey.ALTER_REPLICA_LOG_DIRS: handle_alter_replica_log_dirs,
}
