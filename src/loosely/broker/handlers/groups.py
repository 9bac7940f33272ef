"""FindCoordinator and the classic group APIs: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, DescribeGroups,
ListGroups, DeleteGroups.

This node coordinates every group and every transactional id. The handlers translate between kio messages of any
version and :class:`~loosely.broker.groups.coordinator.GroupCoordinator` calls; the rules live in
:mod:`loosely.broker.groups.classic`. Checks Kafka makes before a request reaches the coordinator
(``GroupCoordinatorService``) are made here: an empty group id is INVALID_GROUP_ID, a session timeout outside
``group.min/max.session.timeout.ms`` is INVALID_SESSION_TIMEOUT.
"""

from __future__ import annotations

import datetime
from typing import Final

from loosely.broker import internal
from loosely.broker.acls import allowed, authorized_operations
from loosely.broker.context import BrokerContext, Request, current_peer, not_handling
from loosely.broker.groups.classic import GroupId, JoinResponse, Phase, describe_members
from loosely.broker.groups.consumer import group_state
from loosely.broker.groups.coordinator import GroupCoordinator, group_coordinator
from loosely.broker.groups.share_shell import share_groups
from loosely.broker.groups.streams import group_state as streams_state
from loosely.broker.handlers._util import NO_THROTTLE, Response
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader, build
from loosely.security.authorizer import CLUSTER_NAME
from loosely.security.authorizer import AclOperation as Op
from loosely.security.authorizer import ResourceType as Res
from loosely.storage.log import LogError

__all__ = ["HANDLERS", "NO_AUTHORIZED_OPERATIONS", "client_host", "td_ms"]

GROUP_KEY: Final = 0
TRANSACTION_KEY: Final = 1
NO_AUTHORIZED_OPERATIONS: Final = -(1 << 31)  # Kafka's "not requested" marker (Integer.MIN_VALUE)


def td_ms(td: datetime.timedelta) -> int:
    return td // datetime.timedelta(milliseconds=1)


def client_host() -> str:
    """Kafka reports the client's address as Java's ``InetAddress.toString()``: ``/1.2.3.4``."""
    peer = current_peer.get()
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return "/" + host.strip("[]")


def _may(ctx: BrokerContext, op: Op, group_id: str | None, *, log_denied: bool = True) -> bool:
    return allowed(ctx, op, Res.GROUP, group_id or "", log_denied=log_denied)


# --- FindCoordinator ---------------------------------------------------------------------------------------------


def _coordinator_for(ctx: BrokerContext, key_type: int, key: str) -> ErrorCode:
    if key_type == GROUP_KEY and not allowed(ctx, Op.DESCRIBE, Res.GROUP, key):
        return ErrorCode.group_authorization_failed
    if key_type == TRANSACTION_KEY and not allowed(ctx, Op.DESCRIBE, Res.TRANSACTIONAL_ID, key):
        return ErrorCode.transactional_id_authorization_failed
    try:
        if key_type == GROUP_KEY:
            coord = group_coordinator(ctx)
            if coord is None:
                return ErrorCode.coordinator_not_available
            coord.ensure_ready()
        elif key_type == TRANSACTION_KEY:
            internal.ensure_topic(ctx, internal.TRANSACTION_STATE, ctx.config.transaction_state_partitions)
        else:
            return ErrorCode.invalid_request
    except LogError:
        return ErrorCode.coordinator_not_available
    return ErrorCode.none


async def handle_find_coordinator(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    v = header.api_version
    resp = Response.of(ApiKey.FIND_COORDINATOR, v)
    key_type = int(getattr(request, "key_type", GROUP_KEY))
    if v < 4:
        error = _coordinator_for(ctx, key_type, str(request.key))
        ok = error == ErrorCode.none
        return resp.make(
            throttle_time=NO_THROTTLE,
            error_code=error,
            error_message=None if ok else error.name,
            node_id=ctx.node_id if ok else -1,
            host=ctx.host if ok else "",
            port=ctx.port if ok else -1,
        )
    coordinators = []
    for key in request.coordinator_keys:
        error = _coordinator_for(ctx, key_type, str(key))
        ok = error == ErrorCode.none
        coordinators.append(
            build(
                resp.Coordinator,
                key=key,
                node_id=ctx.node_id if ok else -1,
                host=ctx.host if ok else "",
                port=ctx.port if ok else -1,
                error_code=error,
                error_message=None if ok else error.name,
            )
        )
    return resp.make(throttle_time=NO_THROTTLE, coordinators=tuple(coordinators))


# --- JoinGroup / SyncGroup / Heartbeat / LeaveGroup ---------------------------------------------------------------


def _join_response(resp: Response, r: JoinResponse) -> object:
    v = resp.version
    return resp.make(
        throttle_time=NO_THROTTLE,
        error_code=r.error,
        generation_id=r.generation,
        protocol_type=r.protocol_type,
        # Before v7 the protocol name is not nullable.
        protocol_name=r.protocol_name if v >= 7 else (r.protocol_name or ""),
        leader=r.leader,
        skip_assignment=r.skip_assignment,
        member_id=r.member_id,
        members=tuple(
            build(
                resp.JoinGroupResponseMember,
                member_id=m.member_id,
                group_instance_id=m.instance_id,
                metadata=m.metadata,
            )
            for m in r.members
        ),
    )


async def handle_join_group(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    v = header.api_version
    resp = Response.of(ApiKey.JOIN_GROUP, v)
    member_id = str(request.member_id)
    session_ms = td_ms(request.session_timeout)
    # v0 has no rebalance timeout: the session timeout served for both.
    rebalance_ms = td_ms(request.rebalance_timeout) if v >= 1 else session_ms
    coord = group_coordinator(ctx)
    cfg = ctx.config
    error = ErrorCode.none
    if not _may(ctx, Op.READ, request.group_id):
        error = ErrorCode.group_authorization_failed
    elif not request.group_id:
        error = ErrorCode.invalid_group_id
    elif coord is None:
        error = ErrorCode.coordinator_not_available
    elif not cfg.group_session_timeout_ms_min <= session_ms <= cfg.group_session_timeout_ms_max:
        error = ErrorCode.invalid_session_timeout
    elif (shares := share_groups(ctx)) is not None and request.group_id in shares.groups:
        error = ErrorCode.inconsistent_group_protocol  # the id is a share group's, as Kafka answers
    elif coord.streams.get(request.group_id) is not None:
        error = ErrorCode.inconsistent_group_protocol  # a streams group's, likewise
    if error != ErrorCode.none or coord is None:
        ctx.count_error(ApiKey.JOIN_GROUP)
        return _join_response(resp, JoinResponse(error, member_id))
    with not_handling():  # waiting for the other members is not this client's handling time
        r = await coord.join(
            str(request.group_id),
            member_id=member_id,
            instance_id=getattr(request, "group_instance_id", None),
            client_id=header.client_id or "",
            client_host=client_host(),
            protocol_type=str(request.protocol_type),
            protocols=[(p.name, bytes(p.metadata)) for p in request.protocols],
            session_timeout_ms=session_ms,
            rebalance_timeout_ms=rebalance_ms,
            api_version=v,
        )
    if r.error != ErrorCode.none:
        ctx.count_error(ApiKey.JOIN_GROUP)
    return _join_response(resp, r)


async def handle_sync_group(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.SYNC_GROUP, header.api_version)
    coord = group_coordinator(ctx)
    error = ErrorCode.none
    if not _may(ctx, Op.READ, request.group_id):
        error = ErrorCode.group_authorization_failed
    elif not request.group_id or coord is None:
        error = ErrorCode.invalid_group_id if not request.group_id else ErrorCode.coordinator_not_available
    if error != ErrorCode.none or coord is None:
        return resp.make(
            throttle_time=NO_THROTTLE, error_code=error, protocol_type=None, protocol_name=None, assignment=b""
        )
    with not_handling():  # waiting for the other members is not this client's handling time
        r = await coord.sync(
            str(request.group_id),
            member_id=str(request.member_id),
            instance_id=getattr(request, "group_instance_id", None),
            generation=int(request.generation_id),
            protocol_type=getattr(request, "protocol_type", None),
            protocol_name=getattr(request, "protocol_name", None),
            assignments=[(a.member_id, bytes(a.assignment)) for a in request.assignments],
        )
    if r.error != ErrorCode.none:
        ctx.count_error(ApiKey.SYNC_GROUP)
    return resp.make(
        throttle_time=NO_THROTTLE,
        error_code=r.error,
        protocol_type=r.protocol_type,
        protocol_name=r.protocol_name,
        assignment=r.assignment,
    )


async def handle_heartbeat(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.HEARTBEAT, header.api_version)
    coord = group_coordinator(ctx)
    if not _may(ctx, Op.READ, request.group_id):
        error = ErrorCode.group_authorization_failed
    elif not request.group_id:
        error = ErrorCode.invalid_group_id
    elif coord is None:
        error = ErrorCode.coordinator_not_available
    else:
        error = await coord.heartbeat(
            str(request.group_id),
            str(request.member_id),
            getattr(request, "group_instance_id", None),
            int(request.generation_id),
        )
    if error != ErrorCode.none:
        ctx.count_error(ApiKey.HEARTBEAT)
    return resp.make(throttle_time=NO_THROTTLE, error_code=error)


async def handle_leave_group(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    v = header.api_version
    resp = Response.of(ApiKey.LEAVE_GROUP, v)
    if v >= 3:
        identities = [(str(m.member_id), m.group_instance_id) for m in request.members]
    else:
        identities = [(str(request.member_id), None)]
    coord = group_coordinator(ctx)
    if not _may(ctx, Op.READ, request.group_id):
        return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.group_authorization_failed, members=())
    if not request.group_id or coord is None:
        error = ErrorCode.invalid_group_id if not request.group_id else ErrorCode.coordinator_not_available
        return resp.make(throttle_time=NO_THROTTLE, error_code=error, members=())
    r = await coord.leave(str(request.group_id), identities)
    if v >= 3:
        members = tuple(
            build(resp.MemberResponse, member_id=m, group_instance_id=i, error_code=e) for m, i, e in r.members
        )
        return resp.make(throttle_time=NO_THROTTLE, error_code=r.error, members=members)
    # Before v3 one member leaves and its error is the response's.
    error = r.error
    if error == ErrorCode.none and r.members:
        error = r.members[0][2]
    return resp.make(throttle_time=NO_THROTTLE, error_code=error)


# --- DescribeGroups / ListGroups / DeleteGroups --------------------------------------------------------------------


# KIP-1043: from DescribeGroups v6 a group that does not exist is GROUP_ID_NOT_FOUND, before it a Dead group
_GROUP_NOT_FOUND_VERSION = 6


def _not_found(coord: GroupCoordinator | None, gid: str) -> str:
    """Kafka's words for a group DescribeGroups v6+ does not describe: a KIP-848 group is named as such."""
    if coord is not None and (coord.consumer.get(GroupId(gid)) is not None or coord.streams.get(gid) is not None):
        return f"Group {gid} is not a classic group."
    return f"Group {gid} not found."


async def handle_describe_groups(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DESCRIBE_GROUPS, header.api_version)
    coord = group_coordinator(ctx)
    described = []
    with_ops = bool(getattr(request, "include_authorized_operations", False))
    for gid in request.groups:
        if not _may(ctx, Op.DESCRIBE, gid):
            described.append(
                build(
                    resp.DescribedGroup,
                    error_code=ErrorCode.group_authorization_failed,
                    group_id=gid,
                    group_state="",
                    protocol_type="",
                    protocol_data="",
                    members=(),
                    authorized_operations=NO_AUTHORIZED_OPERATIONS,
                )
            )
            continue
        g = coord.group(gid) if coord is not None and gid else None
        if not gid:
            error, state = ErrorCode.invalid_group_id, Phase.DEAD.value
        elif coord is None:
            error, state = ErrorCode.coordinator_not_available, Phase.DEAD.value
        elif g is None and header.api_version >= _GROUP_NOT_FOUND_VERSION:
            error, state = ErrorCode.group_id_not_found, Phase.DEAD.value
        else:
            error, state = ErrorCode.none, (g.phase.value if g is not None else Phase.DEAD.value)
        members: tuple[object, ...] = ()
        if g is not None:
            members = tuple(
                build(
                    resp.DescribedGroupMember,
                    member_id=m.member_id,
                    group_instance_id=m.instance_id,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    member_metadata=metadata,
                    member_assignment=assignment,
                )
                for m, metadata, assignment in describe_members(g)
            )
        described.append(
            build(
                resp.DescribedGroup,
                error_code=error,
                group_id=gid,
                error_message=_not_found(coord, gid) if error is ErrorCode.group_id_not_found else None,
                group_state=state,
                protocol_type=(g.protocol_type or "") if g is not None else "",
                protocol_data=(g.protocol_name or "") if g is not None and g.phase is Phase.STABLE else "",
                members=members,
                authorized_operations=authorized_operations(ctx, Res.GROUP, gid)
                if with_ops
                else NO_AUTHORIZED_OPERATIONS,
            )
        )
    return resp.make(throttle_time=NO_THROTTLE, groups=tuple(described))


async def handle_list_groups(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.LIST_GROUPS, header.api_version)
    coord = group_coordinator(ctx)
    if coord is None:
        return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.coordinator_not_available, groups=())
    states = {s.lower() for s in getattr(request, "states_filter", ())}
    types = {t.lower() for t in getattr(request, "types_filter", ())}
    rows: list[tuple[str, str, str, str]] = [
        (gid, e.state.protocol_type or "", e.state.phase.value, "Classic") for gid, e in coord.groups.items()
    ]
    rows += [(gid, "consumer", group_state(e.state), "Consumer") for gid, e in coord.consumer.groups.items()]
    # a streams group's type is in lower case, as Kafka 4.4 lists it
    rows += [(gid, "streams", streams_state(e.state), "streams") for gid, e in coord.streams.groups.items()]
    shares = share_groups(ctx)
    if shares is not None:
        rows += [(gid, "share", g.state, "Share") for gid, g in shares.groups.items()]
    if not allowed(ctx, Op.DESCRIBE, Res.CLUSTER, CLUSTER_NAME, log_denied=False):
        rows = [r for r in rows if _may(ctx, Op.DESCRIBE, r[0], log_denied=False)]
    listed = [
        build(resp.ListedGroup, group_id=gid, protocol_type=ptype, group_state=state, group_type=gtype)
        for gid, ptype, state, gtype in sorted(rows)
        if (not states or state.lower() in states) and (not types or gtype.lower() in types)
    ]
    return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, groups=tuple(listed))


async def handle_delete_groups(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DELETE_GROUPS, header.api_version)
    coord = group_coordinator(ctx)
    results = []
    for gid in request.groups_names:
        if not _may(ctx, Op.DELETE, gid):
            error = ErrorCode.group_authorization_failed
        elif (shares := share_groups(ctx)) is not None and gid in shares.groups:
            error = ErrorCode.non_empty_group if shares.groups[gid].members else ErrorCode.none
            if error == ErrorCode.none:
                shares.delete(gid)
        elif coord is None:
            error = ErrorCode.coordinator_not_available
        else:  # the empty group id too, which no group has (Kafka keeps it for old clients: GROUP_ID_NOT_FOUND)
            error = coord.delete_group(gid)
        # v3 carries an error message per group; Kafka 4.4 leaves it null for every error this coordinator answers
        results.append(build(resp.DeletableGroupResult, group_id=gid, error_code=error))
    return resp.make(throttle_time=NO_THROTTLE, results=tuple(results))


HANDLERS = {
    ApiKey.FIND_COORDINATOR: handle_find_coordinator,
    ApiKey.JOIN_GROUP: handle_join_group,
    ApiKey.SYNC_GROUP: handle_sync_group,
    ApiKey.HEARTBEAT: handle_heartbeat,
    ApiKey.LEAVE_GROUP: handle_leave_group,
    ApiKey.DESCRIBE_GROUPS: handle_describe_groups,
    ApiKey.LIST_GROUPS: handle_list_groups,
    ApiKey.DELETE_GROUPS: handle_delete_groups,
}
