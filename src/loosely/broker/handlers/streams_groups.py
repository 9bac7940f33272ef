"""StreamsGroupHeartbeat, StreamsGroupDescribe and StreamsGroupTopologyDescriptionUpdate: KIP-1071's streams groups.

Kafka Streams opts in with ``group.protocol=streams``; the rules live in :mod:`loosely.broker.groups.streams` and
the groups in :mod:`loosely.broker.groups.streams_shell`, owned by the group coordinator. A group id held by a
group of another type (classic with members, consumer, share) answers GROUP_ID_NOT_FOUND with Kafka's words.

KIP-1331's topology descriptions are kept by a broker plugin in Kafka (``group.streams.topology.description.plugin
.class``), which loosely does not have; loosely answers as Kafka 4.4 without one: heartbeats never ask for a
description, StreamsGroupTopologyDescriptionUpdate is UNSUPPORTED_VERSION with Kafka's sentence, and
StreamsGroupDescribe v1 says none is stored.
"""

from __future__ import annotations

from collections.abc import Iterable

from loosely.broker.acls import allowed, authorized_operations
from loosely.broker.context import BrokerContext, Request
from loosely.broker.groups.coordinator import GroupCoordinator, group_coordinator
from loosely.broker.groups.share_shell import share_groups
from loosely.broker.groups.streams import (
    StreamsGroup,
    StreamsHeartbeat,
    StreamsHeartbeatResponse,
    Subtopology,
    Tasks,
    TopicSpec,
    Topology,
    group_state,
)
from loosely.broker.handlers._util import NO_THROTTLE, Response, ms
from loosely.broker.handlers.groups import NO_AUTHORIZED_OPERATIONS, client_host, td_ms
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader, build
from loosely.protocol.streams_schemas import NOT_REQUESTED, NOT_STORED
from loosely.security.authorizer import AclOperation as Op
from loosely.security.authorizer import ResourceType as Res

__all__ = ["HANDLERS"]


def _spec(t: Request) -> TopicSpec:
    return TopicSpec(str(t.name), int(t.partitions), int(t.replication_factor),
                     tuple((str(kv.key), str(kv.value)) for kv in t.topic_configs))


def _topology(t: Request | None) -> Topology | None:
    if t is None:
        return None
    subs = []
    for s in t.subtopologies:
        sources = tuple(str(x) for x in s.source_topics)
        repartition = tuple(_spec(r) for r in s.repartition_source_topics)
        groups = tuple(
            frozenset([sources[i] for i in c.source_topics if 0 <= i < len(sources)]
                      + [repartition[i].name for i in c.repartition_source_topics if 0 <= i < len(repartition)])
            for c in s.copartition_groups
        )
        subs.append(Subtopology(
            subtopology_id=str(s.subtopology_id),
            source_topics=sources,
            repartition_sink_topics=tuple(str(x) for x in s.repartition_sink_topics),
            state_changelog_topics=tuple(_spec(c) for c in s.state_changelog_topics),
            repartition_source_topics=repartition,
            copartition_groups=groups,
        ))
    return Topology(int(t.epoch), tuple(subs))


def _task_set(ids: Iterable[Request]) -> frozenset[tuple[str, int]]:
    return frozenset((str(t.subtopology_id), int(p)) for t in ids for p in t.partitions)


def _owned(request: Request) -> Tasks | None:
    if request.active_tasks is None and request.standby_tasks is None and request.warmup_tasks is None:
        return None
    return Tasks(_task_set(request.active_tasks or ()), _task_set(request.standby_tasks or ()),
                 _task_set(request.warmup_tasks or ()))


def _offsets(items: Iterable[Request] | None) -> tuple[tuple[str, int, int], ...] | None:
    if items is None:
        return None
    return tuple((str(o.subtopology_id), int(o.partition), int(o.offset)) for o in items)


def _task_ids(cls: type[object], tasks: frozenset[tuple[str, int]]) -> tuple[object, ...]:
    by: dict[str, list[int]] = {}
    for sid, p in tasks:
        by.setdefault(sid, []).append(p)
    return tuple(build(cls, subtopology_id=sid, partitions=tuple(sorted(ps))) for sid, ps in sorted(by.items()))


def _claim(ctx: BrokerContext, coord: GroupCoordinator, group_id: str, joining: bool) -> str | None:
    """Kafka's words when the group id is another type's group; a join takes over an empty classic group."""
    g = coord.group(group_id)
    shares = share_groups(ctx)
    if ((g is not None and g.members) or coord.consumer.get(group_id) is not None
            or (shares is not None and group_id in shares.groups)):
        return f"Group {group_id} is not a streams group."
    if g is not None and joining and coord.streams.get(group_id) is None:
        coord.take_over_empty(group_id)
    return None


def _endpoints(resp: Response, g: StreamsGroup) -> tuple[object, ...]:
    """For Interactive Queries: the source partitions each member with a user endpoint runs, active and standby."""
    sources: dict[str, list[str]] = {}
    if g.topology is not None:
        for s in g.topology.subtopologies:
            sources[s.subtopology_id] = list(s.source_topics) + [r.name for r in s.repartition_source_topics]

    def partitions(tasks: frozenset[tuple[str, int]]) -> tuple[object, ...]:
        by: dict[str, set[int]] = {}
        for sid, p in tasks:
            for topic in sources.get(sid, ()):
                by.setdefault(topic, set()).add(p)
        return tuple(build(resp.TopicPartition, topic=t, partitions=tuple(sorted(ps))) for t, ps in sorted(by.items()))

    return tuple(
        build(resp.EndpointToPartitions,
              user_endpoint=build(resp.Endpoint, host=m.user_endpoint[0], port=m.user_endpoint[1]),
              active_partitions=partitions(m.assigned.active), standby_partitions=partitions(m.assigned.standby))
        for m in sorted(g.members.values(), key=lambda m: m.member_id)
        if m.user_endpoint is not None
    )


async def handle_streams_group_heartbeat(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.STREAMS_GROUP_HEARTBEAT, header.api_version)
    coord = group_coordinator(ctx)
    group_id = str(request.group_id or "")
    topology = _topology(request.topology)
    if not allowed(ctx, Op.READ, Res.GROUP, group_id):
        r = StreamsHeartbeatResponse(ErrorCode.group_authorization_failed)
    elif topology is not None and any(
        not allowed(ctx, Op.DESCRIBE, Res.TOPIC, t) for s in topology.subtopologies for t in s.source_topics
    ):
        r = StreamsHeartbeatResponse(ErrorCode.topic_authorization_failed)
    elif coord is None:
        r = StreamsHeartbeatResponse(ErrorCode.coordinator_not_available)
    else:
        endpoint = request.user_endpoint
        tags = request.client_tags
        r = coord.streams.heartbeat(
            group_id,
            lambda topics: StreamsHeartbeat(
                member_id=str(request.member_id),
                member_epoch=int(request.member_epoch),
                instance_id=request.instance_id,
                rack_id=request.rack_id,
                rebalance_timeout_ms=td_ms(request.rebalance_timeout),
                topology=topology,
                owned=_owned(request),
                process_id=request.process_id,
                user_endpoint=None if endpoint is None else (str(endpoint.host), int(endpoint.port)),
                client_tags=None if tags is None else tuple((str(kv.key), str(kv.value)) for kv in tags),
                task_offsets=_offsets(request.task_offsets),
                task_end_offsets=_offsets(request.task_end_offsets),
                shutdown_application=bool(request.shutdown_application),
                client_id=header.client_id or "",
                client_host=client_host(),
                topics=topics,
            ),
            lambda: _claim(ctx, coord, group_id, int(request.member_epoch) == 0),
        )
    if r.error != ErrorCode.none:
        ctx.count_error(ApiKey.STREAMS_GROUP_HEARTBEAT)
        return resp.make(throttle_time=NO_THROTTLE, error_code=r.error, error_message=r.message, member_id="",
                         member_epoch=-1, heartbeat_interval=ms(0), acceptable_recovery_lag=0,
                         task_offset_interval=ms(0), status=None, active_tasks=None, standby_tasks=None,
                         warmup_tasks=None, endpoint_information_epoch=0, partitions_by_user_endpoint=None)
    assert coord is not None
    g = coord.streams.get(group_id)
    limits = g.limits if g is not None else coord.streams.limits
    a = r.assignment
    endpoint_epoch = g.assignment_epoch if g is not None else 0
    endpoints = None
    if g is not None and r.member_epoch > 0 and int(request.endpoint_information_epoch) != endpoint_epoch:
        endpoints = _endpoints(resp, g)
    return resp.make(
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        error_message=None,
        member_id=r.member_id,
        member_epoch=r.member_epoch,
        heartbeat_interval=ms(r.heartbeat_interval_ms),
        acceptable_recovery_lag=limits.acceptable_recovery_lag,
        task_offset_interval=ms(limits.task_offset_interval_ms),
        status=tuple(build(resp.Status, status_code=int(code), status_detail=detail) for code, detail in r.status)
        or None,
        active_tasks=None if a is None else _task_ids(resp.TaskIds, a.active),
        standby_tasks=None if a is None else _task_ids(resp.TaskIds, a.standby),
        warmup_tasks=None if a is None else _task_ids(resp.TaskIds, a.warmup),
        topology_description_required=False,  # as Kafka without a topology description plugin (the default)
        endpoint_information_epoch=endpoint_epoch,
        partitions_by_user_endpoint=endpoints,
    )


def _described_topology(resp: Response, t: Topology | None) -> object | None:
    if t is None:
        return None

    def info(x: TopicSpec) -> object:
        return build(resp.TopicInfo, name=x.name, partitions=x.partitions, replication_factor=x.replication_factor,
                     topic_configs=tuple(build(resp.KeyValue, key=k, value=v) for k, v in x.configs))

    return build(resp.Topology, epoch=t.epoch, subtopologies=tuple(
        build(resp.Subtopology, subtopology_id=s.subtopology_id, source_topics=s.source_topics,
              repartition_sink_topics=s.repartition_sink_topics,
              state_changelog_topics=tuple(info(c) for c in s.state_changelog_topics),
              repartition_source_topics=tuple(info(r) for r in s.repartition_source_topics))
        for s in sorted(t.subtopologies, key=lambda s: s.subtopology_id)))


def _assignment(resp: Response, tasks: Tasks) -> object:
    return build(resp.Assignment, active_tasks=_task_ids(resp.TaskIds, tasks.active),
                 standby_tasks=_task_ids(resp.TaskIds, tasks.standby),
                 warmup_tasks=_task_ids(resp.TaskIds, tasks.warmup))


async def handle_streams_group_describe(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.STREAMS_GROUP_DESCRIBE, header.api_version)
    coord = group_coordinator(ctx)
    described = []
    with_ops = bool(getattr(request, "include_authorized_operations", False))
    with_description = bool(getattr(request, "include_topology_description", False))
    for gid in request.group_ids:
        g = coord.streams.get(gid) if coord is not None and gid else None
        denied = not allowed(ctx, Op.DESCRIBE, Res.GROUP, gid)
        if g is None or denied:
            if denied:
                error, message = ErrorCode.group_authorization_failed, None
            elif not gid:
                error, message = ErrorCode.invalid_group_id, "GroupId can't be empty."
            else:
                error = ErrorCode.group_id_not_found
                other = coord is not None and (coord.group(gid) is not None or coord.consumer.get(gid) is not None)
                message = f"Group {gid} is not a streams group." if other else f"Group {gid} not found."
            described.append(build(resp.DescribedGroup, error_code=error, error_message=message, group_id=gid,
                                   group_state="", group_epoch=0, assignment_epoch=0, topology=None,
                                   members=(), authorized_operations=NO_AUTHORIZED_OPERATIONS,
                                   **_v1_fields(header.api_version, False, None)))
            continue
        members = tuple(
            build(
                resp.Member,
                member_id=m.member_id,
                member_epoch=m.member_epoch,
                instance_id=m.instance_id,
                rack_id=m.rack_id,
                client_id=m.client_id,
                client_host=m.client_host,
                topology_epoch=m.topology_epoch,
                process_id=m.process_id,
                user_endpoint=None if m.user_endpoint is None
                else build(resp.Endpoint, host=m.user_endpoint[0], port=m.user_endpoint[1]),
                client_tags=tuple(build(resp.KeyValue, key=k, value=v) for k, v in m.client_tags),
                task_offsets=tuple(build(resp.TaskOffset, subtopology_id=s, partition=p, offset=o)
                                   for s, p, o in m.task_offsets),
                task_end_offsets=tuple(build(resp.TaskOffset, subtopology_id=s, partition=p, offset=o)
                                       for s, p, o in m.task_end_offsets),
                assignment=_assignment(resp, m.assigned),
                target_assignment=_assignment(resp, g.target.get(m.member_id, Tasks())),
                is_classic=False,
            )
            for m in g.members.values()
        )
        described.append(build(
            resp.DescribedGroup,
            error_code=ErrorCode.none,
            error_message=None,
            group_id=gid,
            group_state=group_state(g),
            group_epoch=g.group_epoch,
            assignment_epoch=g.assignment_epoch,
            topology=_described_topology(resp, g.topology),
            members=members,
            authorized_operations=authorized_operations(ctx, Res.GROUP, gid) if with_ops
            else NO_AUTHORIZED_OPERATIONS,
            **_v1_fields(header.api_version, with_description, STREAMS_ASSIGNOR),
        ))
    return resp.make(throttle_time=NO_THROTTLE, groups=tuple(described))


# The assignor a streams group uses: Kafka 4.4 has one, its sticky task assignor, and so does loosely.
STREAMS_ASSIGNOR = "sticky"


def _v1_fields(version: int, with_description: bool, assignor: str | None) -> dict[str, object]:
    """A described group's v1 fields: no description is ever stored (no plugin), and the assignor's name."""
    if version < 1:
        return {}
    return {"topology_description": None, "topology_description_status": NOT_STORED if with_description
            else NOT_REQUESTED, "assignor_name": assignor}


async def handle_streams_group_topology_description_update(
    ctx: BrokerContext, header: RequestHeader, request: Request
) -> object:
    resp = Response.of(ApiKey.STREAMS_GROUP_TOPOLOGY_DESCRIPTION_UPDATE, header.api_version)
    if not allowed(ctx, Op.READ, Res.GROUP, str(request.group_id or "")):
        error, message = ErrorCode.group_authorization_failed, None
    else:  # Kafka's answer without a topology description plugin, before it looks at the request
        error = ErrorCode.unsupported_version
        message = "The broker has no streams group topology description plugin configured."
    ctx.count_error(ApiKey.STREAMS_GROUP_TOPOLOGY_DESCRIPTION_UPDATE)
    return resp.make(throttle_time=NO_THROTTLE, error_code=error, error_message=message)


HANDLERS = {
    ApiKey.STREAMS_GROUP_HEARTBEAT: handle_streams_group_heartbeat,
    ApiKey.STREAMS_GROUP_DESCRIBE: handle_streams_group_describe,
    ApiKey.STREAMS_GROUP_TOPOLOGY_DESCRIPTION_UPDATE: handle_streams_group_topology_description_update,
}
