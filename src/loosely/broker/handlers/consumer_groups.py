"""ConsumerGroupHeartbeat and ConsumerGroupDescribe: the consumer group protocol of KIP-848.

Clients opt in (Java ``group.protocol=consumer``, librdkafka ``group.protocol=consumer``); the rules live in
:mod:`loosely.broker.groups.consumer`. Assignments travel by topic id. A heartbeat for a group id that a classic group
with members holds converts that group to a consumer group (:mod:`loosely.broker.groups.migration`), or answers
GROUP_ID_NOT_FOUND when it cannot be converted, as Kafka does; ConsumerGroupDescribe of a classic group answers
GROUP_ID_NOT_FOUND too, which makes admin clients fall back to DescribeGroups.
"""

from __future__ import annotations

import uuid

from loosely.broker.acls import allowed, authorized_operations
from loosely.broker.context import BrokerContext, Request
from loosely.broker.groups.consumer import ConsumerHeartbeatResponse, group_state
from loosely.broker.groups.coordinator import group_coordinator
from loosely.broker.groups.share_shell import share_groups
from loosely.broker.handlers._util import NO_THROTTLE, Response, ms
from loosely.broker.handlers.groups import NO_AUTHORIZED_OPERATIONS, client_host, td_ms
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader, build
from loosely.security.authorizer import AclOperation as Op
from loosely.security.authorizer import ResourceType as Res

__all__ = ["HANDLERS"]

CLASSIC_MEMBER_TYPE = 0  # ConsumerGroupDescribe v1 member_type
CONSUMER_MEMBER_TYPE = 1


def _partitions(
    resp: Response, tps: frozenset[tuple[uuid.UUID, int]], names: dict[uuid.UUID, str] | None
) -> tuple[object, ...]:
    by_topic: dict[uuid.UUID, list[int]] = {}
    for tid, p in tps:
        by_topic.setdefault(tid, []).append(p)
    return tuple(
        build(
            resp.TopicPartitions,
            topic_id=tid,
            topic_name=(names or {}).get(tid, ""),
            partitions=tuple(sorted(ps)),
        )
        for tid, ps in sorted(by_topic.items(), key=lambda kv: str(kv[0]))
    )


async def handle_consumer_group_heartbeat(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.CONSUMER_GROUP_HEARTBEAT, header.api_version)
    coord = group_coordinator(ctx)
    if not allowed(ctx, Op.READ, Res.GROUP, request.group_id or ""):
        r = ConsumerHeartbeatResponse(ErrorCode.group_authorization_failed)
    elif any(not allowed(ctx, Op.DESCRIBE, Res.TOPIC, t) for t in request.subscribed_topic_names or ()):
        r = ConsumerHeartbeatResponse(ErrorCode.topic_authorization_failed)
    elif not request.group_id:
        r = ConsumerHeartbeatResponse(ErrorCode.invalid_request, message="GroupId can't be empty.")
    elif coord is None:
        r = ConsumerHeartbeatResponse(ErrorCode.coordinator_not_available)
    elif (((shares := share_groups(ctx)) is not None and request.group_id in shares.groups)
          or coord.streams.get(request.group_id) is not None):
        r = ConsumerHeartbeatResponse(ErrorCode.group_id_not_found,
                                      message=f"Group {request.group_id} is not a consumer group.")
    else:
        owned = request.topic_partitions
        names = request.subscribed_topic_names
        r = coord.consumer.heartbeat(
            str(request.group_id),
            member_id=str(request.member_id),
            member_epoch=int(request.member_epoch),
            instance_id=request.instance_id,
            rack_id=request.rack_id,
            rebalance_timeout_ms=td_ms(request.rebalance_timeout),
            subscribed=frozenset(names) if names is not None else None,
            regex=getattr(request, "subscribed_topic_regex", None),
            assignor=request.server_assignor,
            owned=None if owned is None else frozenset((t.topic_id, int(p)) for t in owned for p in t.partitions),
            client_id=header.client_id or "",
            client_host=client_host(),
            claim=lambda: coord.claim_for_consumer_protocol(str(request.group_id), request.member_epoch),
        )
    if r.error != ErrorCode.none:
        ctx.count_error(ApiKey.CONSUMER_GROUP_HEARTBEAT)
    assignment = None
    if r.assignment is not None:
        assignment = build(resp.Assignment, topic_partitions=_partitions(resp, r.assignment, None))
    return resp.make(
        throttle_time=NO_THROTTLE,
        error_code=r.error,
        error_message=r.message,
        member_id=r.member_id,
        member_epoch=r.member_epoch,
        heartbeat_interval=ms(r.heartbeat_interval_ms),
        assignment=assignment,
    )


async def handle_consumer_group_describe(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.CONSUMER_GROUP_DESCRIBE, header.api_version)
    coord = group_coordinator(ctx)
    names = coord.consumer.topic_names() if coord is not None else {}
    described = []
    with_ops = bool(getattr(request, "include_authorized_operations", False))
    for gid in request.group_ids:
        g = coord.consumer.get(gid) if coord is not None and gid else None
        denied = not allowed(ctx, Op.DESCRIBE, Res.GROUP, gid)
        if g is None or denied:
            if denied:
                error = ErrorCode.group_authorization_failed
            else:
                error = ErrorCode.invalid_group_id if not gid else ErrorCode.group_id_not_found
            described.append(
                build(
                    resp.DescribedGroup,
                    error_code=error,
                    error_message=None
                    if denied
                    else (f"Group {gid} is not a consumer group." if gid else "GroupId can't be empty."),
                    group_id=gid,
                    group_state="Dead",
                    group_epoch=-1,
                    assignment_epoch=-1,
                    assignor_name="",
                    members=(),
                    authorized_operations=NO_AUTHORIZED_OPERATIONS,
                )
            )
            continue
        members = tuple(
            build(
                resp.Member,
                member_id=m.member_id,
                instance_id=m.instance_id,
                rack_id=m.rack_id,
                member_epoch=m.member_epoch,
                client_id=m.client_id,
                client_host=m.client_host,
                subscribed_topic_names=tuple(sorted(m.subscribed)),
                subscribed_topic_regex=m.regex,
                assignment=build(resp.Assignment, topic_partitions=_partitions(resp, m.assigned, names)),
                target_assignment=build(
                    resp.Assignment, topic_partitions=_partitions(resp, g.target.get(m.member_id, frozenset()), names)
                ),
                member_type=CLASSIC_MEMBER_TYPE if m.classic is not None else CONSUMER_MEMBER_TYPE,
            )
            for m in g.members.values()
        )
        assignor = next((m.assignor for m in g.members.values() if m.assignor), None) or g.limits.default_assignor
        described.append(
            build(
                resp.DescribedGroup,
                error_code=ErrorCode.none,
                error_message=None,
                group_id=gid,
                group_state=group_state(g),
                group_epoch=g.group_epoch,
                assignment_epoch=g.assignment_epoch,
                assignor_name=assignor,
                members=members,
                authorized_operations=authorized_operations(ctx, Res.GROUP, gid)
                if with_ops
                else NO_AUTHORIZED_OPERATIONS,
            )
        )
    return resp.make(throttle_time=NO_THROTTLE, groups=tuple(described))


HANDLERS = {
    ApiKey.CONSUMER_GROUP_HEARTBEAT: handle_consumer_group_heartbeat,
    ApiKey.CONSUMER_GROUP_DESCRIBE: handle_consumer_group_describe,
}
