"""ListOffsets, OffsetForLeaderEpoch and DeleteRecords: questions and commands about a partition's offsets.

ListOffsets special timestamps: -2 earliest (log start offset), -1 latest (high watermark, or the last stable
offset for read_committed), -3 the record with the largest timestamp (KIP-734), -4 earliest local (= earliest:
there is no tiered storage), -5 latest tiered (none: offset -1), -6 the earliest offset still to be uploaded to tiered
storage (KIP-1023; none: offset -1). A timestamp ``>= 0`` finds the first record with a timestamp at or after it, or
offset -1 when there is none. As in Kafka, each special timestamp needs the request version that brought it, and an
older version, or a negative timestamp Kafka does not know, answers UNSUPPORTED_VERSION for that partition.

Every record on a single node was written in leader epoch 0, so OffsetForLeaderEpoch answers epoch 0 with the log
end offset, and any later epoch as undefined.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Final

from loosely.broker.acls import allowed
from loosely.broker.context import BrokerContext, Request
from loosely.broker.handlers._util import NO_THROTTLE, Response
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader, build
from loosely.security.authorizer import AclOperation as Op
from loosely.security.authorizer import ResourceType as Res
from loosely.storage.log import LogError, PartitionLog

__all__ = ["HANDLERS"]

EARLIEST = -2
LATEST = -1
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
LATEST_TIERED = -5
EARLIEST_PENDING_UPLOAD = -6
# the first ListOffsets version that may ask for each special timestamp (Kafka's ListOffsetsRequest.Builder)
_SPECIAL_SINCE: Final = {
    EARLIEST: 0, LATEST: 0, MAX_TIMESTAMP: 7, EARLIEST_LOCAL: 8, LATEST_TIERED: 9, EARLIEST_PENDING_UPLOAD: 11,
}


def _look_up(
    plog: PartitionLog, find: Callable[[], tuple[int, int] | None]
) -> tuple[tuple[int, int] | None, ErrorCode]:
    """A lookup that reads the log: a disk error (EIO) answers KAFKA_STORAGE_ERROR for this partition, as Kafka."""
    try:
        return find(), ErrorCode.none
    except OSError as e:
        return None, plog.storage_error("read", e).error_code


def _leader_epoch_error(current_leader_epoch: int) -> ErrorCode:
    return ErrorCode.unknown_leader_epoch if current_leader_epoch > 0 else ErrorCode.none


async def handle_list_offsets(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.LIST_OFFSETS, header.api_version)
    committed = int(getattr(request, "isolation_level", 0)) == 1
    topics: list[object] = []
    for t in request.topics:
        parts: list[object] = []
        denied = not allowed(ctx, Op.DESCRIBE, Res.TOPIC, t.name)
        for p in t.partitions:
            code = ErrorCode.none
            ts = offset = -1
            plog = None if denied else ctx.logs.log(t.name, p.partition_index)
            if denied:
                code = ErrorCode.topic_authorization_failed
            elif plog is None:
                code = ErrorCode.unknown_topic_or_partition
            else:
                code = _leader_epoch_error(int(getattr(p, "current_leader_epoch", -1)))
            if plog is not None and code == ErrorCode.none:
                want = int(p.timestamp)
                if want < 0 and header.api_version < _SPECIAL_SINCE.get(want, sys.maxsize):
                    code = ErrorCode.unsupported_version
                elif want in (EARLIEST, EARLIEST_LOCAL):
                    offset = plog.log_start_offset
                elif want == LATEST:
                    offset = plog.high_watermark
                    if committed and ctx.transactions is not None:
                        offset = ctx.transactions.last_stable_offset(t.name, p.partition_index, offset)
                elif want in (LATEST_TIERED, EARLIEST_PENDING_UPLOAD):
                    offset = -1  # nothing is tiered
                elif want >= 0 or want == MAX_TIMESTAMP:
                    found, code = _look_up(
                        plog,
                        plog.max_timestamp_offset
                        if want == MAX_TIMESTAMP
                        else lambda: plog.offset_for_timestamp(want),  # noqa: B023 - called now
                    )
                    # Kafka answers only offsets a read_committed consumer could fetch: below the last stable offset.
                    if found is not None and committed and ctx.transactions is not None:
                        lso = ctx.transactions.last_stable_offset(t.name, p.partition_index, plog.high_watermark)
                        found = found if found[0] < lso else None
                    if found is not None:
                        offset, ts = found
            parts.append(
                build(
                    resp.ListOffsetsPartitionResponse,
                    partition_index=p.partition_index,
                    error_code=code,
                    old_style_offsets=(),
                    timestamp=ts,
                    offset=offset,
                    leader_epoch=0 if offset >= 0 else -1,
                )
            )
        topics.append(build(resp.ListOffsetsTopicResponse, name=t.name, partitions=tuple(parts)))
    return resp.make(throttle_time=NO_THROTTLE, topics=tuple(topics))


async def handle_offset_for_leader_epoch(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.OFFSET_FOR_LEADER_EPOCH, header.api_version)
    topics: list[object] = []
    for t in request.topics:
        parts: list[object] = []
        denied = not allowed(ctx, Op.DESCRIBE, Res.TOPIC, t.topic)
        for p in t.partitions:
            plog = None if denied else ctx.logs.log(t.topic, p.partition)
            code = ErrorCode.none
            epoch = end = -1
            if denied:
                code = ErrorCode.topic_authorization_failed
            elif plog is None:
                code = ErrorCode.unknown_topic_or_partition
            else:
                code = _leader_epoch_error(int(getattr(p, "current_leader_epoch", -1)))
                if code == ErrorCode.none and p.leader_epoch == 0:
                    epoch, end = 0, plog.log_end_offset
            parts.append(
                build(resp.EpochEndOffset, error_code=code, partition=p.partition, leader_epoch=epoch, end_offset=end)
            )
        topics.append(build(resp.OffsetForLeaderTopicResult, topic=t.topic, partitions=tuple(parts)))
    return resp.make(throttle_time=NO_THROTTLE, topics=tuple(topics))


async def handle_delete_records(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DELETE_RECORDS, header.api_version)
    topics: list[object] = []
    for t in request.topics:
        parts: list[object] = []
        denied = not allowed(ctx, Op.DELETE, Res.TOPIC, t.name)
        for p in t.partitions:
            plog = None if denied else ctx.logs.log(t.name, p.partition_index)
            code = ErrorCode.none
            low = -1
            if denied:
                code = ErrorCode.topic_authorization_failed
            elif plog is None:
                code = ErrorCode.unknown_topic_or_partition
            else:
                try:
                    low = plog.delete_records_before(int(p.offset))
                except LogError as e:
                    code = e.error_code
                except OSError as e:  # deleting segment files on a failing disk
                    code = plog.storage_error("delete records", e).error_code
            parts.append(
                build(
                    resp.DeleteRecordsPartitionResult,
                    partition_index=p.partition_index,
                    low_watermark=low,
                    error_code=code,
                )
            )
        topics.append(build(resp.DeleteRecordsTopicResult, name=t.name, partitions=tuple(parts)))
    return resp.make(throttle_time=NO_THROTTLE, topics=tuple(topics))


HANDLERS = {
    ApiKey.LIST_OFFSETS: handle_list_offsets,
    ApiKey.OFFSET_FOR_LEADER_EPOCH: handle_offset_for_leader_epoch,
    ApiKey.DELETE_RECORDS: handle_delete_records,
}
