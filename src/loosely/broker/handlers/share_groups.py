"""Share groups (KIP-932): ShareGroupHeartbeat, ShareGroupDescribe, ShareFetch and ShareAcknowledge.

The rules live in :mod:`loosely.broker.groups.share` (membership, record states) and its shell
:mod:`loosely.broker.groups.share_shell` (settings, share sessions, timers, the state file). A ShareFetch first
applies the acknowledgements it carries, then acquires records from every partition of the member's share session
(up to ``max_records`` in all, ``max_bytes`` of batches, and the partition's in-flight limit), waiting up to
``max_wait`` for records to be produced or released when there are none. The batches are sent whole, as Fetch sends
them; ``acquired_records`` tells the client which offsets in them are its own, and with what delivery count. A group
with ``share.isolation.level=read_committed`` reads up to the last stable offset, and the data batches of aborted
transactions among those read are archived instead of acquired (Kafka 4.4's SharePartition does the same walk).
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from loosely.broker.acls import allowed, authorized_operations
from loosely.broker.context import BrokerContext, Request, current_connection_end, not_handling
from loosely.broker.groups.coordinator import group_coordinator
from loosely.broker.groups.share import RecordState, ShareGroup, SharePartition, TopicPartitionId
from loosely.broker.groups.share_shell import ShareGroups, ShareSession, share_groups
from loosely.broker.handlers._util import NO_THROTTLE, Response, ms
from loosely.broker.handlers.groups import NO_AUTHORIZED_OPERATIONS, client_host
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader, build
from loosely.protocol.names import TopicPartition
from loosely.protocol.records import iter_batches
from loosely.security.authorizer import AclOperation as Op
from loosely.security.authorizer import ResourceType as Res
from loosely.storage.log import LogError

__all__ = ["HANDLERS"]

ASSIGNOR = "simple"  # what Kafka's ShareGroupDescribe names its share assignor
FINAL_EPOCH = -1
INITIAL_EPOCH = 0
_EPOCH_MAX = 2**31 - 1


def _topic_partitions(ctx: BrokerContext, resp: Response, tps: Iterable[TopicPartitionId], *,
                      named: bool) -> tuple[object, ...]:
    by_topic: dict[str, list[int]] = {}
    for topic, p in tps:
        by_topic.setdefault(topic, []).append(p)
    out = []
    for topic, ps in sorted(by_topic.items()):
        t = ctx.logs.get(topic)
        if t is None:
            continue
        out.append(build(resp.TopicPartitions, topic_id=t.topic_id, topic_name=topic if named else "",
                         partitions=tuple(sorted(ps))))
    return tuple(out)


async def handle_share_group_heartbeat(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.SHARE_GROUP_HEARTBEAT, header.api_version)
    svc = share_groups(ctx)
    gid = str(request.group_id or "")
    topics = request.subscribed_topic_names

    def refuse(code: ErrorCode, message: str | None = None) -> object:
        ctx.count_error(ApiKey.SHARE_GROUP_HEARTBEAT)
        return resp.make(throttle_time=NO_THROTTLE, error_code=code, error_message=message, member_id=None,
                         member_epoch=0, heartbeat_interval=ms(0), assignment=None)

    if not allowed(ctx, Op.READ, Res.GROUP, gid):
        return refuse(ErrorCode.group_authorization_failed)
    if any(not allowed(ctx, Op.DESCRIBE, Res.TOPIC, t) for t in topics or ()):
        return refuse(ErrorCode.topic_authorization_failed)
    if not gid:
        return refuse(ErrorCode.invalid_request, "GroupId can't be empty.")
    if svc is None:
        return refuse(ErrorCode.coordinator_not_available)
    coord = group_coordinator(ctx)
    if coord is not None and (gid in coord.consumer.groups or gid in coord.groups):
        return refuse(ErrorCode.group_id_not_found, f"Group {gid} is not a share group.")
    r = svc.heartbeat(gid, member_id=str(request.member_id or ""), member_epoch=int(request.member_epoch),
                      rack_id=request.rack_id, subscribed=frozenset(topics) if topics is not None else None,
                      client_id=header.client_id or "", client_host=client_host())
    if r.error != ErrorCode.none:
        return refuse(r.error, r.message)
    assignment = None
    if r.assignment is not None:
        assignment = build(resp.Assignment, topic_partitions=_topic_partitions(ctx, resp, r.assignment, named=False))
    return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, error_message=None, member_id=r.member_id,
                     member_epoch=r.member_epoch, heartbeat_interval=ms(svc.settings(gid).heartbeat_ms),
                     assignment=assignment)


async def handle_share_group_describe(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.SHARE_GROUP_DESCRIBE, header.api_version)
    svc = share_groups(ctx)
    with_ops = bool(getattr(request, "include_authorized_operations", False))
    described = []
    for gid in request.group_ids:
        g = svc.groups.get(gid) if svc is not None and gid else None
        denied = not allowed(ctx, Op.DESCRIBE, Res.GROUP, gid)
        if g is None or denied:
            error = (ErrorCode.group_authorization_failed if denied
                     else ErrorCode.invalid_group_id if not gid else ErrorCode.group_id_not_found)
            message = None if denied else (f"Group {gid} not found." if gid else "GroupId can't be empty.")
            described.append(build(resp.DescribedGroup, error_code=error, error_message=message, group_id=gid,
                                   group_state="Dead", group_epoch=-1, assignment_epoch=-1, assignor_name="",
                                   members=(), authorized_operations=NO_AUTHORIZED_OPERATIONS))
            continue
        members = tuple(
            build(resp.Member, member_id=m.member_id, rack_id=m.rack_id, member_epoch=m.member_epoch,
                  client_id=m.client_id, client_host=m.client_host, subscribed_topic_names=tuple(sorted(m.subscribed)),
                  assignment=build(resp.Assignment,
                                   topic_partitions=_topic_partitions(ctx, resp, m.assigned, named=True)))
            for m in g.members.values()
        )
        described.append(build(
            resp.DescribedGroup, error_code=ErrorCode.none, error_message=None, group_id=gid, group_state=g.state,
            group_epoch=g.group_epoch, assignment_epoch=g.assignment_epoch, assignor_name=ASSIGNOR, members=members,
            authorized_operations=authorized_operations(ctx, Res.GROUP, gid) if with_ops else NO_AUTHORIZED_OPERATIONS,
        ))
    return resp.make(throttle_time=NO_THROTTLE, groups=tuple(described))


# -- share sessions ------------------------------------------------------------------------------------------------


def _session(svc: ShareGroups, gid: str, mid: str, epoch: int, *, wanted: set[tuple[uuid.UUID, int]],
             forgotten: set[tuple[uuid.UUID, int]], fetch: bool) -> tuple[ShareSession | None, ErrorCode]:
    """The member's share session after this request's epoch: opened (epoch 0, ShareFetch only), checked and moved
    on, or (epoch -1) taken out."""
    key = (gid, mid)
    if epoch == INITIAL_EPOCH:
        if not fetch:
            return None, ErrorCode.invalid_share_session_epoch
        s = svc.sessions[key] = ShareSession(1, set(wanted))
        return s, ErrorCode.none
    found = svc.sessions.get(key)
    if found is None:
        return None, ErrorCode.share_session_not_found
    if epoch == FINAL_EPOCH:
        del svc.sessions[key]
        return found, ErrorCode.none
    if epoch != found.epoch:
        return None, ErrorCode.invalid_share_session_epoch
    found.partitions |= wanted
    found.partitions -= forgotten
    found.epoch = found.epoch + 1 if found.epoch < _EPOCH_MAX else 1
    return found, ErrorCode.none


def _acknowledge(ctx: BrokerContext, svc: ShareGroups, gid: str, mid: str,
                 acks: dict[tuple[uuid.UUID, int], list[tuple[int, int, tuple[int, ...]]]]
                 ) -> dict[tuple[uuid.UUID, int], tuple[ErrorCode, str | None]]:
    out: dict[tuple[uuid.UUID, int], tuple[ErrorCode, str | None]] = {}
    s = svc.settings(gid)
    now = ctx.clock.monotonic_ms()
    changed = released = False
    for (tid, p), batches in acks.items():
        t = ctx.logs.by_id(tid)
        sp = svc.partition(gid, t.name, p) if t is not None else None
        if t is None or sp is None:
            out[(tid, p)] = (ErrorCode.unknown_topic_or_partition if t is not None else ErrorCode.unknown_topic_id,
                             None)
            continue
        if not allowed(ctx, Op.READ, Res.TOPIC, t.name):
            out[(tid, p)] = (ErrorCode.topic_authorization_failed, None)
            continue
        code, message, rel = sp.acknowledge(mid, batches, delivery_limit=s.delivery_limit, lock_ms=s.lock_ms,
                                            now_ms=now, renew_allowed=s.renew_allowed)
        out[(tid, p)] = (code, message)
        changed = changed or code == ErrorCode.none
        released = released or rel
    if changed:
        svc.save()
    if released:
        svc.notify_released()
    return out


def _batches(items: Iterable[object]) -> list[tuple[int, int, tuple[int, ...]]]:
    return [(int(b.first_offset), int(b.last_offset), tuple(int(t) for t in b.acknowledge_types))  # type: ignore[attr-defined]
            for b in items]


_Found = tuple[ErrorCode, bytes, tuple[object, ...]]  # a partition's fetch error, batches and acquired ranges


def _leader(ctx: BrokerContext, resp: Response) -> object:
    return build(resp.LeaderIdAndEpoch, leader_id=ctx.node_id, leader_epoch=0)


def _refusal(ctx: BrokerContext, resp: Response, code: ErrorCode, message: str | None) -> object:
    """A ShareFetch or ShareAcknowledge answered as a whole with an error."""
    ctx.count_error(int(resp.cls.__api_key__))  # type: ignore[attr-defined]
    return resp.make(throttle_time=NO_THROTTLE, error_code=code, error_message=message,
                     acquisition_lock_timeout=ms(0), responses=(), node_endpoints=())


@dataclass(frozen=True, slots=True)
class _Call:
    """What a ShareFetch or ShareAcknowledge works from, once its group and member are checked."""

    resp: Response
    svc: ShareGroups
    group_id: str
    member_id: str
    epoch: int  # the share session epoch the request carries


def _start(ctx: BrokerContext, header: RequestHeader, request: Request,
           api_key: int) -> tuple[_Call, None] | tuple[None, object]:
    """The request's :class:`_Call`, or its refusal as a whole: READ on the group is needed, and a group id and a
    member id (Kafka's order)."""
    resp = Response.of(api_key, header.api_version)
    svc = share_groups(ctx)
    gid, mid = str(request.group_id or ""), str(request.member_id or "")
    if not allowed(ctx, Op.READ, Res.GROUP, gid):
        return None, _refusal(ctx, resp, ErrorCode.group_authorization_failed, None)
    if not gid or not mid or svc is None:
        return None, _refusal(ctx, resp, ErrorCode.invalid_request, "Group id and member id are required.")
    return _Call(resp, svc, gid, mid, int(request.share_session_epoch)), None


async def handle_share_fetch(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    call, refusal = _start(ctx, header, request, ApiKey.SHARE_FETCH)
    if call is None:
        return refusal
    resp, svc, gid, mid, epoch = call.resp, call.svc, call.group_id, call.member_id, call.epoch

    def refuse(code: ErrorCode, message: str | None = None) -> object:
        return _refusal(ctx, resp, code, message)
    wanted: set[tuple[uuid.UUID, int]] = set()
    acks: dict[tuple[uuid.UUID, int], list[tuple[int, int, tuple[int, ...]]]] = {}
    for ft in request.topics:
        for fp in ft.partitions:
            wanted.add((ft.topic_id, int(fp.partition_index)))
            if fp.acknowledgement_batches:
                acks[(ft.topic_id, int(fp.partition_index))] = _batches(fp.acknowledgement_batches)
    forgotten = {(ft.topic_id, int(p)) for ft in request.forgotten_topics_data for p in ft.partitions}
    if epoch == INITIAL_EPOCH and acks:
        return refuse(ErrorCode.invalid_request, "Acknowledge data present on initial fetch request.")
    session, code = _session(svc, gid, mid, epoch, wanted=wanted, forgotten=forgotten, fetch=True)
    if session is None:
        return refuse(code)
    end = current_connection_end.get()
    if epoch == INITIAL_EPOCH and end is not None:
        end.on_close(("share session", gid, mid), functools.partial(svc.connection_closed, gid, mid, session))
    acked = _acknowledge(ctx, svc, gid, mid, acks)
    if epoch == FINAL_EPOCH:  # the session closed: what the member still holds goes back (Kafka's releaseSession)
        svc.release_acquired(gid, mid)
    settings = svc.settings(gid)
    found: dict[tuple[uuid.UUID, int], _Found] = {}
    if epoch != FINAL_EPOCH:
        records_max = max(1, int(request.max_records))
        bytes_max = min(int(request.max_bytes), ctx.config.fetch_bytes_max)
        deadline = ctx.clock.monotonic_ms() + max(0, int(request.max_wait.total_seconds() * 1000))
        while True:
            found = _acquire(ctx, resp, svc, gid, mid, session=session, records_max=records_max, bytes_max=bytes_max)
            remaining = deadline - ctx.clock.monotonic_ms()
            if found or remaining <= 0 or svc.sessions.get((gid, mid)) is not session:
                break
            await _wait(ctx, svc, session, remaining)
    parts: dict[uuid.UUID, list[object]] = {}
    for key in sorted(set(found) | set(acked), key=lambda k: (str(k[0]), k[1])):
        ack_code, ack_message = acked.get(key, (ErrorCode.none, None))
        code, records, acquired = found.get(key, (ErrorCode.none, b"", ()))
        parts.setdefault(key[0], []).append(build(
            resp.PartitionData, partition_index=key[1], error_code=code, error_message=None,
            acknowledge_error_code=ack_code, acknowledge_error_message=ack_message,
            current_leader=_leader(ctx, resp), records=records, acquired_records=acquired))
    return resp.make(
        throttle_time=NO_THROTTLE, error_code=ErrorCode.none, error_message=None,
        acquisition_lock_timeout=ms(settings.lock_ms),
        responses=tuple(build(resp.ShareFetchableTopicResponse, topic_id=tid, partitions=tuple(ps))
                        for tid, ps in parts.items()),
        node_endpoints=(),
    )


def _acquire(ctx: BrokerContext, resp: Response, svc: ShareGroups, gid: str, mid: str, *, session: ShareSession,
             records_max: int, bytes_max: int) -> dict[tuple[uuid.UUID, int], _Found]:
    """Acquire records from the session's partitions: the partitions that have some (or an error)."""
    out: dict[tuple[uuid.UUID, int], _Found] = {}
    s = svc.settings(gid)
    now = ctx.clock.monotonic_ms()
    taken = total = 0
    for tid, p in sorted(session.partitions, key=lambda k: (str(k[0]), k[1])):
        if taken >= records_max or (total >= bytes_max and total > 0):
            break
        t = ctx.logs.by_id(tid)
        code = ErrorCode.none
        records = b""
        acquired: list[object] = []
        if t is None:
            code = ErrorCode.unknown_topic_id
        elif not allowed(ctx, Op.READ, Res.TOPIC, t.name):
            code = ErrorCode.topic_authorization_failed
        else:
            sp = svc.partition(gid, t.name, p)
            plog = ctx.logs.log(t.name, p)
            if sp is None or plog is None:
                code = ErrorCode.unknown_topic_or_partition
            else:
                sp.expire(now, s.delivery_limit)
                hw = plog.high_watermark
                if s.read_committed and ctx.transactions is not None:
                    hw = ctx.transactions.last_stable_offset(t.name, p, hw)  # open transactions wait
                start = sp.next_fetch_offset()
                if start >= hw:
                    continue
                try:
                    limit = max(1, min(bytes_max - total, _READ_BYTES_MAX))
                    result = plog.read(start, limit, upper_offset=hw, min_one=total == 0)
                    if not result.slices and bytes_max - total > limit:  # its next batch is larger than a read
                        result = plog.read(start, bytes_max - total, upper_offset=hw, min_one=False)
                    data = result.read_bytes() if result.slices else b""
                except LogError as e:
                    code = e.error_code
                    data = b""
                except OSError as e:
                    code = plog.storage_error("read", e).error_code
                    data = b""
                if code == ErrorCode.none and data:
                    read_to = min(result.slices[-1].next_offset, hw)
                    aborted: list[tuple[int, int]] = []
                    if s.read_committed and ctx.transactions is not None:
                        aborted = _aborted_batches(data, ctx.transactions.aborted(t.name, p, start, read_to))
                    batches = [(pos + h.size, h.last_offset) for pos, h in iter_batches(data, allow_partial_tail=True)]
                    ends = [last for _, last in batches]
                    got = sp.acquire(mid, read_to=read_to, records_max=records_max - taken, locks_max=s.locks_max,
                                     lock_ms=s.lock_ms, now_ms=now, aborted=aborted, batch_ends=ends)
                    if not got:
                        continue
                    svc.lock_acquired()
                    taken += sum(a.last_offset - a.first_offset + 1 for a in got)
                    records = _through(data, batches, max(a.last_offset for a in got))
                    total += len(records)
                    acquired = [build(resp.AcquiredRecords, first_offset=a.first_offset, last_offset=a.last_offset,
                                      delivery_count=a.delivery_count) for a in got]
                elif code == ErrorCode.none:
                    continue
        out[(tid, p)] = (code, records, tuple(acquired))
    return out


# What one partition's read takes from the log at first (Kafka's default max.partition.fetch.bytes): a ShareFetch
# carries only a total byte limit (52 MiB in the Java client), and its records limit (500) applies to the records
# acquired, not to the bytes read.
_READ_BYTES_MAX = 1024 * 1024


def _through(data: bytes, batches: list[tuple[int, int]], last: int) -> bytes:
    """``data`` cut after the batch holding offset ``last`` (``batches``: each one's end in ``data`` and last offset):
    the batches after the last record acquired would only be dropped by the client (records it does not hold), as
    Kafka slices its answer to the acquired records."""
    for end, last_offset in batches:
        if last_offset >= last:
            return data[:end]
    return data


def _aborted_batches(data: bytes, aborted: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(first, last)`` offsets of the data batches in ``data`` that aborted transactions wrote, given ``(producer
    id, first offset)`` of the aborted transactions overlapping them: Kafka's walk, a producer being aborted from its
    transaction's first offset until its marker (a producer's control batch inside an aborted transaction can only be
    that transaction's ABORT marker; the marker itself is delivered, as Kafka delivers it)."""
    pending = sorted(aborted, key=lambda a: a[1])
    active: set[int] = set()
    out: list[tuple[int, int]] = []
    for _, h in iter_batches(data, allow_partial_tail=True):
        while pending and pending[0][1] <= h.last_offset:
            active.add(pending.pop(0)[0])
        if h.is_control:
            active.discard(h.producer_id)
        elif h.is_transactional and h.producer_id in active:
            out.append((h.base_offset, h.last_offset))
    return out


async def _wait(ctx: BrokerContext, svc: ShareGroups, session: ShareSession, remaining_ms: int) -> None:
    """Until a session partition has new records, records are released, or ``remaining_ms`` pass."""
    watch = []
    for tid, p in session.partitions:
        t = ctx.logs.by_id(tid)
        if t is not None:
            watch.append(TopicPartition(t.name, p))
    appended = ctx.watchers.watch(watch)
    released = svc.released()
    try:
        with not_handling():  # the long poll: not this client's handling time
            await asyncio.wait([appended, released], timeout=remaining_ms / 1000,
                               return_when=asyncio.FIRST_COMPLETED)
    finally:
        ctx.watchers.unwatch(watch, appended)


async def handle_share_acknowledge(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    call, refusal = _start(ctx, header, request, ApiKey.SHARE_ACKNOWLEDGE)
    if call is None:
        return refusal
    resp, svc, gid, mid, epoch = call.resp, call.svc, call.group_id, call.member_id, call.epoch
    acks = {(at.topic_id, int(ap.partition_index)): _batches(ap.acknowledgement_batches)
            for at in request.topics for ap in at.partitions}
    session, code = _session(svc, gid, mid, epoch, wanted=set(), forgotten=set(), fetch=False)
    if session is None:
        return _refusal(ctx, resp, code, None)
    acked = _acknowledge(ctx, svc, gid, mid, acks)
    if epoch == FINAL_EPOCH:
        svc.release_acquired(gid, mid)
    parts: dict[uuid.UUID, list[object]] = {}
    for (tid, p), (c, message) in sorted(acked.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        parts.setdefault(tid, []).append(build(resp.PartitionData, partition_index=p, error_code=c,
                                               error_message=message, current_leader=_leader(ctx, resp)))
    return resp.make(
        throttle_time=NO_THROTTLE, error_code=ErrorCode.none, error_message=None,
        acquisition_lock_timeout=ms(svc.settings(gid).lock_ms),
        responses=tuple(build(resp.ShareAcknowledgeTopicResponse, topic_id=tid, partitions=tuple(ps))
                        for tid, ps in parts.items()),
        node_endpoints=(),
    )


# -- share-partition offsets (Admin) -------------------------------------------------------------------------------


def _lag(ctx: BrokerContext, topic: str, p: int, sp: SharePartition) -> int:
    """The records from the start offset to the log end not yet done with (Kafka 4.4's share-partition lag)."""
    plog = ctx.logs.log(topic, p)
    if plog is None:
        return -1
    done = sum(1 for r in sp.records.values() if r.state in (RecordState.ACKNOWLEDGED, RecordState.ARCHIVED))
    return max(0, plog.high_watermark - sp.start_offset - done)


async def handle_describe_share_group_offsets(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DESCRIBE_SHARE_GROUP_OFFSETS, header.api_version)
    svc = share_groups(ctx)
    out = []
    for rg in request.groups:
        gid = str(rg.group_id)
        g = svc.groups.get(gid) if svc is not None else None
        if not allowed(ctx, Op.DESCRIBE, Res.GROUP, gid):
            out.append(build(resp.DescribeShareGroupOffsetsResponseGroup, group_id=gid, topics=(),
                             error_code=ErrorCode.group_authorization_failed, error_message=None))
            continue
        if g is None:
            out.append(build(resp.DescribeShareGroupOffsetsResponseGroup, group_id=gid, topics=(),
                             error_code=ErrorCode.group_id_not_found, error_message=f"Group {gid} not found."))
            continue
        wanted: dict[str, list[int]] = {}
        if rg.topics is None:
            for topic, p in sorted(g.partitions):
                wanted.setdefault(topic, []).append(p)
        else:
            for rt in rg.topics:
                wanted[str(rt.topic_name)] = [int(p) for p in rt.partitions]
        topics = []
        for topic, ps in wanted.items():
            t = ctx.logs.get(topic)
            if t is None or not allowed(ctx, Op.DESCRIBE, Res.TOPIC, topic, log_denied=False):
                continue
            parts = []
            for p in ps:
                sp = g.partitions.get((topic, p))
                parts.append(build(resp.DescribeShareGroupOffsetsResponsePartition, partition_index=p,
                                   start_offset=-1 if sp is None else sp.start_offset, leader_epoch=0,
                                   lag=-1 if sp is None else _lag(ctx, topic, p, sp), error_code=ErrorCode.none,
                                   error_message=None))
            topics.append(build(resp.DescribeShareGroupOffsetsResponseTopic, topic_name=topic, topic_id=t.topic_id,
                                partitions=tuple(parts)))
        out.append(build(resp.DescribeShareGroupOffsetsResponseGroup, group_id=gid, topics=tuple(topics),
                         error_code=ErrorCode.none, error_message=None))
    return resp.make(throttle_time=NO_THROTTLE, groups=tuple(out))


def _empty_group(ctx: BrokerContext, svc: ShareGroups | None, gid: str) -> tuple[ErrorCode, str | None]:
    if not allowed(ctx, Op.READ, Res.GROUP, gid):
        return ErrorCode.group_authorization_failed, None
    if svc is None:
        return ErrorCode.coordinator_not_available, None
    g = svc.groups.get(gid)
    if g is not None and g.members:
        return ErrorCode.non_empty_group, "The group is not empty."
    return ErrorCode.none, None


async def handle_alter_share_group_offsets(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.ALTER_SHARE_GROUP_OFFSETS, header.api_version)
    svc = share_groups(ctx)
    gid = str(request.group_id)
    code, message = _empty_group(ctx, svc, gid)
    if code != ErrorCode.none or svc is None:
        return resp.make(throttle_time=NO_THROTTLE, error_code=code, error_message=message, responses=())
    topics = []
    changed = False
    for rt in request.topics:
        t = ctx.logs.get(str(rt.topic_name))
        parts = []
        for rp in rt.partitions:
            p, offset = int(rp.partition_index), int(rp.start_offset)
            plog = ctx.logs.log(t.name, p) if t is not None else None
            if t is None or plog is None:
                parts.append(build(resp.AlterShareGroupOffsetsResponsePartition, partition_index=p,
                                   error_code=ErrorCode.unknown_topic_or_partition,
                                   error_message="This server does not host this topic-partition."))
                continue
            g = svc.groups.setdefault(gid, ShareGroup(gid))
            g.partitions[(t.name, p)] = SharePartition(max(plog.log_start_offset, min(offset, plog.high_watermark)))
            changed = True
            parts.append(build(resp.AlterShareGroupOffsetsResponsePartition, partition_index=p,
                               error_code=ErrorCode.none, error_message=None))
        topics.append(build(resp.AlterShareGroupOffsetsResponseTopic, topic_name=rt.topic_name,
                            topic_id=t.topic_id if t is not None else uuid.UUID(int=0), partitions=tuple(parts)))
    if changed:
        svc.save()
    return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, error_message=None,
                     responses=tuple(topics))


async def handle_delete_share_group_offsets(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DELETE_SHARE_GROUP_OFFSETS, header.api_version)
    svc = share_groups(ctx)
    gid = str(request.group_id)
    code, message = _empty_group(ctx, svc, gid)
    g = svc.groups.get(gid) if svc is not None else None
    if code == ErrorCode.none and g is None:
        code, message = ErrorCode.group_id_not_found, f"Group {gid} not found."
    if code != ErrorCode.none or g is None or svc is None:
        return resp.make(throttle_time=NO_THROTTLE, error_code=code, error_message=message, responses=())
    topics = []
    for rt in request.topics:
        name = str(rt.topic_name)
        t = ctx.logs.get(name)
        if t is None:
            topics.append(build(resp.DeleteShareGroupOffsetsResponseTopic, topic_name=name, topic_id=uuid.UUID(int=0),
                                error_code=ErrorCode.unknown_topic_or_partition,
                                error_message="This server does not host this topic-partition."))
            continue
        for key in [k for k in g.partitions if k[0] == name]:
            del g.partitions[key]
        topics.append(build(resp.DeleteShareGroupOffsetsResponseTopic, topic_name=name, topic_id=t.topic_id,
                            error_code=ErrorCode.none, error_message=None))
    svc.save()
    return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, error_message=None,
                     responses=tuple(topics))


HANDLERS = {
    ApiKey.DESCRIBE_SHARE_GROUP_OFFSETS: handle_describe_share_group_offsets,
    ApiKey.ALTER_SHARE_GROUP_OFFSETS: handle_alter_share_group_offsets,
    ApiKey.DELETE_SHARE_GROUP_OFFSETS: handle_delete_share_group_offsets,
    ApiKey.SHARE_GROUP_HEARTBEAT: handle_share_group_heartbeat,
    ApiKey.SHARE_GROUP_DESCRIBE: handle_share_group_describe,
    ApiKey.SHARE_FETCH: handle_share_fetch,
    ApiKey.SHARE_ACKNOWLEDGE: handle_share_acknowledge,
}
