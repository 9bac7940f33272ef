"""OffsetCommit, OffsetFetch and OffsetDelete: consumer positions kept in ``__consumer_offsets``.

As in Kafka, a commit for a partition the broker does not have answers UNKNOWN_TOPIC_OR_PARTITION for that
partition and writes nothing for it, and a fetch of an offset never committed answers offset -1. OffsetFetch v8+
asks about several groups at once; ``require_stable`` (v7+) answers UNSTABLE_OFFSET_COMMIT for a partition whose
offset an open transaction is about to change, so the consumer retries instead of reading a stale position.

OffsetCommit and OffsetFetch v10 and TxnOffsetCommit v6 name topics by id only (Kafka 4.2-4.4). The ids are turned
into names on the way in (:func:`requested_topics`) and back on the way out; an id no topic has answers
UNKNOWN_TOPIC_ID on each of its partitions, and an all-topics OffsetFetch v10 leaves out committed topics that no
longer exist (they have no id to name them by). A commit's answer lists the partitions refused before the
coordinator saw them first, topic by topic, and then the rest, in the order Kafka's response builder gathers them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from loosely.broker.acls import allowed
from loosely.broker.context import BrokerContext, Request
from loosely.broker.groups.coordinator import CommitRequest, group_coordinator
from loosely.broker.groups.records import NO_TIMESTAMP
from loosely.broker.handlers._util import NO_THROTTLE, Response
from loosely.broker.handlers.groups import td_ms
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader, build
from loosely.protocol.names import TopicPartition
from loosely.security.authorizer import AclOperation as Op
from loosely.security.authorizer import ResourceType as Res

__all__ = [
    "HANDLERS",
    "RequestedTopic",
    "commit_requests",
    "committed_topics",
    "named",
    "partition_errors",
    "requested_topics",
]

_TOPIC_IDS_SINCE = 10  # OffsetCommit and OffsetFetch name topics by id only
DEFAULT_RETENTION = -1  # OffsetCommit v2-v4 retention_time_ms: use the broker's offsets.retention


def partition_errors(
    ctx: BrokerContext, topics: list[tuple[str, list[int]]], op: Op = Op.READ
) -> dict[TopicPartition, ErrorCode]:
    """TOPIC_AUTHORIZATION_FAILED for partitions of topics the principal may not READ (or ``op``), then
    UNKNOWN_TOPIC_OR_PARTITION for requested partitions the broker does not have."""
    out: dict[TopicPartition, ErrorCode] = {}
    for name, parts in topics:
        if not allowed(ctx, op, Res.TOPIC, name):
            out.update((TopicPartition(name, p), ErrorCode.topic_authorization_failed) for p in parts)
            continue
        for p in parts:
            if ctx.logs.log(name, p) is None:
                out[TopicPartition(name, p)] = ErrorCode.unknown_topic_or_partition
    return out


@dataclass(frozen=True, slots=True)
class RequestedTopic:
    """One topic of a request that names topics by name or (v10 and TxnOffsetCommit v6) by id."""

    name: str | None  # None: no topic has ``topic_id``
    topic_id: uuid.UUID | None  # None: named by name
    entry: Request  # the request's own topic entry, for its partitions


def requested_topics(ctx: BrokerContext, topics: Iterable[Request]) -> list[RequestedTopic]:
    """A request's topics with their names, looked up by id where the version names them by id."""
    out = []
    for t in topics:
        tid: uuid.UUID | None = getattr(t, "topic_id", None)
        if tid is None:
            out.append(RequestedTopic(str(t.name), None, t))
            continue
        found = ctx.logs.by_id(tid)
        out.append(RequestedTopic(None if found is None else found.name, tid, t))
    return out


def _partitions(t: RequestedTopic) -> list[Request]:
    return list(t.entry.partitions)


def named(topics: list[RequestedTopic]) -> list[tuple[str, list[int]]]:
    """``(name, partitions)`` of the topics that exist by the name or id the request gives."""
    return [(t.name, [int(p.partition_index) for p in _partitions(t)]) for t in topics if t.name is not None]


def commit_requests(topics: list[RequestedTopic], errors: dict[TopicPartition, ErrorCode]) -> list[CommitRequest]:
    """The partitions of an (Txn)OffsetCommit request, minus those already refused."""
    return [
        CommitRequest(
            t.name,
            p.partition_index,
            int(p.committed_offset),
            int(getattr(p, "committed_leader_epoch", -1)),
            p.committed_metadata,
        )
        for t in topics
        if t.name is not None
        for p in _partitions(t)
        if TopicPartition(t.name, p.partition_index) not in errors
    ]


def committed_topics(
    resp: Response,
    topics: list[RequestedTopic],
    group_error: ErrorCode,
    refused: dict[TopicPartition, ErrorCode] | None,
    errors: dict[TopicPartition, ErrorCode],
    *,
    classes: tuple[str, str],
) -> tuple[object, ...]:
    """The topics of an (Txn)OffsetCommit answer (``classes``: the response's nested topic and partition class
    names). The partitions ``refused`` before the coordinator saw the request (unknown ids among them) come first
    with their own errors, then the others with the group's error, else each one's own; topics with a refused
    partition first, as Kafka's response builder gathers them. ``refused`` None: the whole request was refused
    before its topics were looked at, and every partition carries the group's error in request order."""
    answer: dict[int, list[object]] = {}
    part_cls = getattr(resp, classes[1])
    early = {} if refused is None else refused

    def first_pass(t: RequestedTopic, p: int) -> ErrorCode | None:
        if refused is None:
            return None
        return ErrorCode.unknown_topic_id if t.name is None else early.get(TopicPartition(t.name, p))

    for pass_ in (0, 1):
        for i, t in enumerate(topics):
            for p in (int(p.partition_index) for p in _partitions(t)):
                code = first_pass(t, p)
                if (code is None) == (pass_ == 0):
                    continue
                if code is None:
                    own = errors.get(TopicPartition(t.name, p)) if t.name is not None else None
                    code = group_error if group_error != ErrorCode.none else own or ErrorCode.none
                answer.setdefault(i, []).append(build(part_cls, partition_index=p, error_code=code))
    return tuple(
        build(getattr(resp, classes[0]), name=topics[i].name or "", topic_id=topics[i].topic_id, partitions=tuple(ps))
        for i, ps in answer.items()
    )


async def handle_offset_commit(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    v = header.api_version
    resp = Response.of(ApiKey.OFFSET_COMMIT, v)
    requested = requested_topics(ctx, request.topics)
    coord = group_coordinator(ctx)
    group_error = ErrorCode.none
    refused: dict[TopicPartition, ErrorCode] | None = partition_errors(ctx, named(requested))
    errors = dict(refused or {})
    if not allowed(ctx, Op.READ, Res.GROUP, request.group_id or ""):
        group_error, refused = ErrorCode.group_authorization_failed, None
    elif not request.group_id:
        group_error, refused = ErrorCode.invalid_group_id, None
    elif coord is None:
        group_error, refused = ErrorCode.coordinator_not_available, None
    else:
        commits = commit_requests(requested, errors)
        retention = getattr(request, "retention_time", None)
        retention_ms = td_ms(retention) if retention is not None else DEFAULT_RETENTION
        expire = ctx.clock.now_ms() + retention_ms if retention_ms != DEFAULT_RETENTION else NO_TIMESTAMP
        group_error, per = coord.commit_offsets(
            str(request.group_id),
            member_id=str(request.member_id),
            instance_id=getattr(request, "group_instance_id", None),
            generation=int(request.generation_id_or_member_epoch),
            partitions=commits,
            expire_timestamp_ms=expire,
            api_version=v,
        )
        errors.update(per)
    if group_error != ErrorCode.none:
        ctx.count_error(ApiKey.OFFSET_COMMIT)
    topics = committed_topics(
        resp, requested, group_error, refused, errors,
        classes=("OffsetCommitResponseTopic", "OffsetCommitResponsePartition"),
    )
    return resp.make(throttle_time=NO_THROTTLE, topics=topics)


# (topic name, topic id: v10 only) -> [(partition, offset, leader epoch, metadata, error)]
_Fetched = dict[tuple[str, uuid.UUID | None], list[tuple[int, int, int, str, ErrorCode]]]


def _fetch_group(
    ctx: BrokerContext,
    group_id: str,
    topics: Iterable[Request] | None,
    require_stable: bool,
    member: tuple[str | None, int] | None = None,
    *,
    by_id: bool = False,
) -> tuple[ErrorCode, _Fetched]:
    """``(group error, topic -> [(partition, offset, leader epoch, metadata, error)])`` in request order.

    Kafka's authorization: DESCRIBE on the group; a named topic the principal may not DESCRIBE answers
    TOPIC_AUTHORIZATION_FAILED per partition, and such a topic is left out of an all-topics answer."""
    coord = group_coordinator(ctx)
    if not allowed(ctx, Op.DESCRIBE, Res.GROUP, group_id):
        return ErrorCode.group_authorization_failed, {}
    if coord is None:
        return ErrorCode.coordinator_not_available, {}
    if member is not None:
        error = coord.check_fetching_member(group_id, member[0], member[1])
        if error != ErrorCode.none:
            return error, {}
    wanted: list[TopicPartition] | None = None
    by_topic: _Fetched = {}
    ids: dict[str, uuid.UUID | None] = {}
    if topics is not None:
        wanted = []
        for t in requested_topics(ctx, topics):
            parts = [int(p) for p in t.entry.partition_indexes]
            if t.name is None:
                by_topic[("", t.topic_id)] = [(p, -1, -1, "", ErrorCode.unknown_topic_id) for p in parts]
                continue
            ids[t.name] = t.topic_id
            by_topic.setdefault((t.name, t.topic_id), [])
            wanted.extend(TopicPartition(t.name, p) for p in parts)
    for (name, p), offset, epoch, metadata, error in coord.fetch_offsets(
        group_id, wanted, require_stable=require_stable
    ):
        if by_id and name not in ids:
            known = ctx.logs.topics.get(name)
            if known is None:
                continue  # a committed topic that no longer exists has no id to be named by
            ids[name] = known.topic_id
        by_topic.setdefault((name, ids.get(name)), []).append((p, offset, epoch, metadata, error))
    for key in list(by_topic):
        name = key[0]
        if not name or allowed(ctx, Op.DESCRIBE, Res.TOPIC, name, log_denied=topics is not None):
            continue
        if topics is None:
            del by_topic[key]
        else:
            by_topic[key] = [(p, -1, -1, "", ErrorCode.topic_authorization_failed) for p, *_ in by_topic[key]]
    return ErrorCode.none, by_topic


def _fetched_topics(resp: Response, by_topic: _Fetched, topic_cls: str, partition_cls: str) -> tuple[object, ...]:
    """The topics of an OffsetFetch answer (the nested classes are named differently before and after v8)."""
    return tuple(
        build(
            getattr(resp, topic_cls),
            name=name,
            topic_id=tid,
            partitions=tuple(
                build(
                    getattr(resp, partition_cls),
                    partition_index=p,
                    committed_offset=offset,
                    committed_leader_epoch=epoch,
                    metadata=metadata,
                    error_code=perr,
                )
                for p, offset, epoch, metadata, perr in parts
            ),
        )
        for (name, tid), parts in by_topic.items()
    )


async def handle_offset_fetch(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    v = header.api_version
    resp = Response.of(ApiKey.OFFSET_FETCH, v)
    require_stable = bool(getattr(request, "require_stable", False))
    if v < 8:
        error, by_topic = _fetch_group(ctx, str(request.group_id), request.topics, require_stable)
        topics = _fetched_topics(resp, by_topic, "OffsetFetchResponseTopic", "OffsetFetchResponsePartition")
        # v1 has no top-level error: a group-level problem shows on every partition.
        return resp.make(throttle_time=NO_THROTTLE, topics=topics, error_code=error)
    groups = []
    for rg in request.groups:
        # v9: a member of a consumer-protocol group says who it is, and must be current.
        member = (rg.member_id, int(rg.member_epoch)) if getattr(rg, "member_id", None) is not None else None
        error, by_topic = _fetch_group(
            ctx, str(rg.group_id), rg.topics, require_stable, member, by_id=v >= _TOPIC_IDS_SINCE
        )
        topics = _fetched_topics(resp, by_topic, "OffsetFetchResponseTopics", "OffsetFetchResponsePartitions")
        groups.append(build(resp.OffsetFetchResponseGroup, group_id=rg.group_id, error_code=error, topics=topics))
    return resp.make(throttle_time=NO_THROTTLE, groups=tuple(groups))


async def handle_offset_delete(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.OFFSET_DELETE, header.api_version)
    wanted = [(t.name, [p.partition_index for p in t.partitions]) for t in request.topics]
    coord = group_coordinator(ctx)
    errors = partition_errors(ctx, wanted)
    if not allowed(ctx, Op.DELETE, Res.GROUP, request.group_id or ""):
        group_error = ErrorCode.group_authorization_failed
    elif not request.group_id:
        group_error = ErrorCode.invalid_group_id
    elif coord is None:
        group_error = ErrorCode.coordinator_not_available
    else:
        doomed = [TopicPartition(name, p) for name, parts in wanted for p in parts if (name, p) not in errors]
        group_error, per = coord.delete_offsets(str(request.group_id), doomed)
        errors.update(per)
    topics = tuple(
        build(
            resp.OffsetDeleteResponseTopic,
            name=name,
            partitions=tuple(
                build(
                    resp.OffsetDeleteResponsePartition,
                    partition_index=p,
                    error_code=errors.get(TopicPartition(name, p), ErrorCode.none),
                )
                for p in parts
            ),
        )
        for name, parts in wanted
    )
    if group_error != ErrorCode.none:
        topics = ()
    return resp.make(throttle_time=NO_THROTTLE, error_code=group_error, topics=topics)


HANDLERS = {
    ApiKey.OFFSET_COMMIT: handle_offset_commit,
    ApiKey.OFFSET_FETCH: handle_offset_fetch,
    ApiKey.OFFSET_DELETE: handle_offset_delete,
}
