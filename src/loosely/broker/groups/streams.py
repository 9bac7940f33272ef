"""Streams groups (KIP-1071, StreamsGroupHeartbeat) as a pure state machine.

Theory of operation
-------------------
A Kafka Streams application with ``group.protocol=streams`` sends its *topology* with its first heartbeat: the
subtopologies, each with its source topics, the repartition topics it writes and reads, and its state changelog
topics. The broker then does what the Streams client used to do for itself in the classic protocol:

* **It configures the topology** against the broker's topics (:func:`configure`, Kafka's ``InternalTopicManager``):
  a subtopology has as many tasks as its source topics have partitions (the most of them); a repartition topic
  without a fixed count takes the count of the subtopologies that write it, a changelog topic its subtopology's
  task count. A missing source topic is status MISSING_SOURCE_TOPICS; missing internal topics are status
  MISSING_INTERNAL_TOPICS and are created by the broker (the shell does that, as Kafka's request handler does);
  an internal topic that exists with another partition count is INCORRECTLY_PARTITIONED_TOPICS. Until the
  topology is configured the group is NotReady and nobody gets tasks.
* **It assigns tasks** (:func:`assign_sticky`, after Kafka's default ``sticky`` assignor): a task is a
  (subtopology, partition) pair. Active tasks are spread evenly over the members, each keeping what it had
  while that stays balanced; with ``num.standby.replicas`` > 0 each task also gets that many standby replicas on
  members of *other* processes than its active one, where there are such.
* **Members converge** to the target as in KIP-848 (Kafka's streams ``CurrentAssignmentBuilder``): a member first
  gives up what the target takes away (UNREVOKED_TASKS, keeping its epoch until a heartbeat shows it no longer
  owns those tasks), then moves to the target epoch and gets the target's tasks that are free; active tasks still
  owned by another member follow once released (UNRELEASED_TASKS).
* **A group without members waits before assigning** (Kafka's initial rebalance delay,
  ``initial_rebalance_delay_ms``, 3 s): the member that joins it and those that follow within the delay get no
  tasks (status ASSIGNMENT_DELAYED) until the delay is over, then one assignment for them all.
* Epochs: 0 joins, -1 leaves, -2 is a static member's temporary leave; a wrong epoch is FENCED_MEMBER_EPOCH, an
  unknown member UNKNOWN_MEMBER_ID. A member silent for the session timeout, or that does not revoke within its
  rebalance timeout, is removed and its tasks freed.

A group's state (members, epochs, assignments, target, topology) round-trips through :func:`group_to_json` and
:func:`group_from_json`, which the shell writes to a file so that a restart keeps it (Kafka writes the same facts to
``__consumer_offsets``).

No warm-up tasks and no rack-aware standby placement (client tags are kept and described, not used): Kafka 4.4's
only assignor, ``sticky``, has neither. The target is computed at most every ``assignment_interval_ms`` (Kafka's
``streams.assignment.interval.ms``): changes within it hear ASSIGNMENT_DELAYED and wait for the next. Simplification
(said here so nobody has to discover it): a static member's temporary leave is a leave.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from loosely.broker.groups.consumer import CommitAttempt
from loosely.protocol.errors import ErrorCode

__all__ = [
    "ConfiguredTopology",
    "HeartbeatStatus",
    "InternalTopic",
    "StreamsGroup",
    "StreamsGroupLimits",
    "StreamsHeartbeat",
    "StreamsHeartbeatResponse",
    "StreamsMember",
    "StreamsTick",
    "Subtopology",
    "Tasks",
    "TopicSpec",
    "Topology",
    "assign_sticky",
    "configure",
    "group_from_json",
    "group_state",
    "group_to_json",
    "next_deadline",
    "step",
    "validate_heartbeat",
    "validate_offset_commit",
]

Task = tuple[str, int]  # (subtopology id, partition)
LEAVE_EPOCH: Final = -1
STATIC_LEAVE_EPOCH: Final = -2


class HeartbeatStatus(enum.IntEnum):
    """StreamsGroupHeartbeatResponse's status codes (Kafka's ``StreamsGroupHeartbeatResponse.Status``)."""

    STALE_TOPOLOGY = 0
    MISSING_SOURCE_TOPICS = 1
    INCORRECTLY_PARTITIONED_TOPICS = 2
    MISSING_INTERNAL_TOPICS = 3
    SHUTDOWN_APPLICATION = 4
    ASSIGNMENT_DELAYED = 5
    MISSING_CLIENT_TAGS = 6


class MemberState(enum.Enum):
    STABLE = "stable"
    UNREVOKED_TASKS = "unrevoked_tasks"
    UNRELEASED_TASKS = "unreleased_tasks"


@dataclass(frozen=True, slots=True)
class StreamsGroupLimits:
    session_timeout_ms: int = 45_000  # group.streams.session.timeout.ms
    heartbeat_interval_ms: int = 5_000  # group.streams.heartbeat.interval.ms
    num_standby_replicas: int = 0  # group.streams.num.standby.replicas
    acceptable_recovery_lag: int = 10_000  # group.streams.acceptable.recovery.lag
    task_offset_interval_ms: int = 60_000  # group.streams.task.offset.interval.ms
    members_max: int = 1_000  # group.streams.max.size (Kafka: unbounded)
    initial_rebalance_delay_ms: int = 3_000  # group.streams.initial.rebalance.delay.ms
    assignment_interval_ms: int = 1_000  # group.streams.assignment.interval.ms


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """An internal topic as the topology asks for it: 0 partitions or replicas means "the broker decides"."""

    name: str
    partitions: int
    replication_factor: int
    configs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Subtopology:
    subtopology_id: str
    source_topics: tuple[str, ...]
    repartition_sink_topics: tuple[str, ...] = ()
    state_changelog_topics: tuple[TopicSpec, ...] = ()
    repartition_source_topics: tuple[TopicSpec, ...] = ()
    copartition_groups: tuple[frozenset[str], ...] = ()  # topic names that must have equal partition counts


@dataclass(frozen=True, slots=True)
class Topology:
    epoch: int
    subtopologies: tuple[Subtopology, ...]


@dataclass(frozen=True, slots=True)
class InternalTopic:
    """An internal topic the broker must create: name, partitions and the topology's configs for it."""

    name: str
    partitions: int
    configs: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ConfiguredTopology:
    """The topology measured against the broker's topics: tasks per subtopology when ready, else why not."""

    tasks: Mapping[str, int]  # subtopology id -> number of tasks; empty unless ready
    missing: tuple[InternalTopic, ...] = ()  # internal topics to create
    status: tuple[tuple[HeartbeatStatus, str], ...] = ()

    @property
    def ready(self) -> bool:
        return not self.status


@dataclass(frozen=True, slots=True)
class Tasks:
    """What one member runs (or is to run): active, standby and warm-up tasks."""

    active: frozenset[Task] = frozenset()
    standby: frozenset[Task] = frozenset()
    warmup: frozenset[Task] = frozenset()

    def __sub__(self, other: Tasks) -> Tasks:
        return Tasks(self.active - other.active, self.standby - other.standby, self.warmup - other.warmup)

    def __and__(self, other: Tasks) -> Tasks:
        return Tasks(self.active & other.active, self.standby & other.standby, self.warmup & other.warmup)

    def __or__(self, other: Tasks) -> Tasks:
        return Tasks(self.active | other.active, self.standby | other.standby, self.warmup | other.warmup)

    def __bool__(self) -> bool:
        return bool(self.active or self.standby or self.warmup)


NO_TASKS: Final = Tasks()


@dataclass(frozen=True, slots=True)
class StreamsMember:
    member_id: str
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    process_id: str
    user_endpoint: tuple[str, int] | None
    client_tags: tuple[tuple[str, str], ...]
    topology_epoch: int
    rebalance_timeout_ms: int
    session_deadline_ms: int
    member_epoch: int = 0
    previous_member_epoch: int = -1
    state: MemberState = MemberState.STABLE
    assigned: Tasks = NO_TASKS
    pending_revocation: Tasks = NO_TASKS
    revocation_deadline_ms: int | None = None
    task_offsets: tuple[tuple[str, int, int], ...] = ()
    task_end_offsets: tuple[tuple[str, int, int], ...] = ()
    # the member epoch at which each active task (assigned or being given up) came to the member: an offset commit
    # with an older epoch than the member's is checked against it, as Kafka 4.4 does
    active_epochs: Mapping[Task, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamsGroup:
    group_id: str
    limits: StreamsGroupLimits = StreamsGroupLimits()
    group_epoch: int = 0
    assignment_epoch: int = 0
    topology: Topology | None = None
    configured: ConfiguredTopology | None = None
    partitions_seen: Mapping[str, int] = field(default_factory=dict)  # the topology's topics as last measured
    members: Mapping[str, StreamsMember] = field(default_factory=dict)
    target: Mapping[str, Tasks] = field(default_factory=dict)
    shutdown_requested: bool = False
    # the initial rebalance delay: when the assignment of a group that had no members is due (monotonic ms)
    first_assignment_due_ms: int | None = None
    last_assignment_ms: int | None = None  # when the target was last computed (monotonic ms)

    def active_owner(self, task: Task, besides: str) -> bool:
        """Whether a member other than ``besides`` owns or is revoking ``task`` as an active task."""
        return any(
            m.member_id != besides and (task in m.assigned.active or task in m.pending_revocation.active)
            for m in self.members.values()
        )


@dataclass(frozen=True, slots=True)
class StreamsHeartbeat:
    member_id: str
    member_epoch: int
    instance_id: str | None
    rack_id: str | None
    rebalance_timeout_ms: int  # -1: unchanged
    topology: Topology | None  # only on a join
    owned: Tasks | None  # None: unchanged since the last heartbeat
    process_id: str | None  # None: unchanged
    user_endpoint: tuple[str, int] | None
    client_tags: tuple[tuple[str, str], ...] | None
    task_offsets: tuple[tuple[str, int, int], ...] | None
    task_end_offsets: tuple[tuple[str, int, int], ...] | None
    shutdown_application: bool
    client_id: str
    client_host: str
    topics: Mapping[str, int]  # the broker's topics: name -> partitions


@dataclass(frozen=True, slots=True)
class StreamsTick:
    pass


@dataclass(frozen=True, slots=True)
class StreamsHeartbeatResponse:
    error: ErrorCode
    member_id: str = ""
    member_epoch: int = -1
    heartbeat_interval_ms: int = 0
    assignment: Tasks | None = None  # None: unchanged since the last answer
    status: tuple[tuple[HeartbeatStatus, str], ...] = ()
    message: str | None = None
    create: tuple[InternalTopic, ...] = ()  # internal topics the shell must create


def _error(code: ErrorCode, message: str) -> StreamsHeartbeatResponse:
    return StreamsHeartbeatResponse(code, message=message)


# --- configuring the topology --------------------------------------------------------------------------------------


def configure(topology: Topology, topics: Mapping[str, int]) -> ConfiguredTopology:
    """Kafka's InternalTopicManager.configureTopics: task counts, and the internal topics to create, or a status."""
    missing_sources = sorted(
        {t for s in topology.subtopologies for t in s.source_topics if t not in topics}
    )
    if missing_sources:
        return ConfiguredTopology({}, (), ((HeartbeatStatus.MISSING_SOURCE_TOPICS,
                                            f"Source topics {', '.join(missing_sources)} are missing."),))
    repartition: dict[str, int] = {}
    specs: dict[str, TopicSpec] = {}
    for s in topology.subtopologies:
        for r in s.repartition_source_topics:
            specs[r.name] = r
            if r.partitions > 0:
                repartition[r.name] = r.partitions
    # A repartition topic without a fixed count gets the task count of the subtopologies writing to it (the most of
    # them); those may read other repartition topics, so iterate until nothing changes.
    for _ in range(len(specs) + 1):
        changed = False
        for s in topology.subtopologies:
            n = _task_count(s, topics, repartition)
            if n is None:
                continue
            for sink in s.repartition_sink_topics:
                if sink in specs and specs[sink].partitions <= 0 and repartition.get(sink, 0) < n:
                    repartition[sink] = n
                    changed = True
        if not changed:
            break
    tasks: dict[str, int] = {}
    for s in topology.subtopologies:
        n = _task_count(s, topics, repartition)
        if n is None:
            return ConfiguredTopology({}, (), ((HeartbeatStatus.MISSING_SOURCE_TOPICS,
                                                "Failed to compute number of partitions for all repartition topics, "
                                                "because a repartition source topic is never used as a sink topic."),))
        tasks[s.subtopology_id] = n
    wanted: list[InternalTopic] = []
    for s in topology.subtopologies:
        for r in s.repartition_source_topics:
            wanted.append(InternalTopic(r.name, repartition[r.name], r.configs))
        for c in s.state_changelog_topics:
            wanted.append(InternalTopic(c.name, tasks[s.subtopology_id], c.configs))
    create = tuple(t for t in wanted if t.name not in topics)
    wrong = [t for t in wanted if t.name in topics and topics[t.name] != t.partitions]
    if wrong:
        t = wrong[0]
        return ConfiguredTopology({}, create, ((
            HeartbeatStatus.INCORRECTLY_PARTITIONED_TOPICS,
            f"Existing topic {t.name} has different number of partitions: expected {t.partitions}, "
            f"found {topics[t.name]}"),))
    for s in topology.subtopologies:
        for group in s.copartition_groups:
            counts = {topics.get(t, repartition.get(t)) for t in group}
            if len(counts) > 1:
                return ConfiguredTopology({}, create, ((
                    HeartbeatStatus.INCORRECTLY_PARTITIONED_TOPICS,
                    f"Following topics do not have the same number of partitions: [{', '.join(sorted(group))}]"),))
    if create:
        names = ", ".join(t.name for t in create)
        return ConfiguredTopology({}, create, ((HeartbeatStatus.MISSING_INTERNAL_TOPICS,
                                                f"Internal topics are missing: [{names}]"),))
    return ConfiguredTopology(tasks)


def _task_count(s: Subtopology, topics: Mapping[str, int], repartition: Mapping[str, int]) -> int | None:
    counts = [topics[t] for t in s.source_topics if t in topics]
    for r in s.repartition_source_topics:
        if r.name not in repartition:
            return None
        counts.append(repartition[r.name])
    return max(counts) if counts else None


def _topology_topics(t: Topology) -> frozenset[str]:
    names: set[str] = set()
    for s in t.subtopologies:
        names.update(s.source_topics)
        names.update(r.name for r in s.repartition_source_topics)
        names.update(c.name for c in s.state_changelog_topics)
    return frozenset(names)


# --- the assignor --------------------------------------------------------------------------------------------------


def assign_sticky(
    members: Mapping[str, str],
    tasks: Mapping[str, int],
    previous: Mapping[str, Tasks],
    standby_replicas: int,
) -> dict[str, Tasks]:
    """Active tasks spread evenly over ``members`` (member id -> process id), a task staying with its previous
    owner while that owner is under its share; then up to ``standby_replicas`` standbys of each task on the
    least-loaded members of processes other than its active one's."""
    all_tasks = sorted((sid, p) for sid, n in tasks.items() for p in range(n))
    order = sorted(members)
    if not order:
        return {}
    quota = math.ceil(len(all_tasks) / len(order))
    valid = frozenset(all_tasks)
    active: dict[str, set[Task]] = {m: set() for m in order}
    owner: dict[Task, str] = {}
    for mid in order:
        for t in sorted(previous.get(mid, NO_TASKS).active):
            if t in valid and t not in owner and len(active[mid]) < quota:
                owner[t] = mid
                active[mid].add(t)
    for t in all_tasks:
        if t not in owner:
            best = min(order, key=lambda m: (len(active[m]), order.index(m)))
            owner[t] = best
            active[best].add(t)
    standby: dict[str, set[Task]] = {m: set() for m in order}
    if standby_replicas > 0:
        for t in all_tasks:
            placed = {members[owner[t]]}
            for _ in range(standby_replicas):
                candidates = [m for m in order if members[m] not in placed]
                if not candidates:
                    break
                best = min(candidates, key=lambda m: (len(active[m]) + len(standby[m]), order.index(m)))
                standby[best].add(t)
                placed.add(members[best])
    return {m: Tasks(frozenset(active[m]), frozenset(standby[m])) for m in order}


# --- the transition function ---------------------------------------------------------------------------------------


def step(group: StreamsGroup, event: StreamsHeartbeat | StreamsTick,
         now_ms: int) -> tuple[StreamsGroup, StreamsHeartbeatResponse | None]:
    """Apply a heartbeat (answered at once) or a tick (expire silent and stuck members)."""
    if isinstance(event, StreamsTick):
        return _tick(group, now_ms), None
    return _heartbeat(group, event, now_ms)


def validate_heartbeat(ev: StreamsHeartbeat, group_id: str) -> StreamsHeartbeatResponse | None:
    """Kafka's throwIfStreamsGroupHeartbeatRequestIsInvalid, in its order and words (INVALID_REQUEST, and
    STREAMS_INVALID_TOPOLOGY for a changelog topic given a partition count)."""
    if not ev.member_id:
        return _error(ErrorCode.invalid_request, "MemberId can't be empty.")
    if not group_id:
        return _error(ErrorCode.invalid_request, "GroupId can't be empty.")
    if ev.instance_id == "":
        return _error(ErrorCode.invalid_request, "InstanceId can't be empty.")
    if ev.rack_id == "":
        return _error(ErrorCode.invalid_request, "RackId can't be empty.")
    if ev.member_epoch == 0:
        if ev.rebalance_timeout_ms == -1:
            return _error(ErrorCode.invalid_request, "RebalanceTimeoutMs must be provided in first request.")
        if ev.owned is not None:
            for kind, got in (("ActiveTasks", ev.owned.active), ("StandbyTasks", ev.owned.standby),
                              ("WarmupTasks", ev.owned.warmup)):
                if got:
                    return _error(ErrorCode.invalid_request, f"{kind} must be empty when (re-)joining.")
        if ev.topology is None:
            return _error(ErrorCode.invalid_request, "Topology must be non-null when (re-)joining.")
        for s in ev.topology.subtopologies:
            for c in s.state_changelog_topics:
                if c.partitions != 0:
                    return _error(ErrorCode.streams_invalid_topology,
                                  f"Changelog topic {c.name} must have an undefined partition count, but it is set "
                                  f"to {c.partitions}.")
    elif ev.member_epoch == STATIC_LEAVE_EPOCH:
        if ev.instance_id is None:
            return _error(ErrorCode.invalid_request, "InstanceId can't be null.")
    elif ev.member_epoch < STATIC_LEAVE_EPOCH:
        return _error(ErrorCode.invalid_request,
                      f"MemberEpoch is {ev.member_epoch}, but must be greater than or equal to -2.")
    if ev.member_epoch != 0 and ev.topology is not None:
        return _error(ErrorCode.invalid_request, "Topology can only be provided when (re-)joining.")
    return None


def _heartbeat(g: StreamsGroup, ev: StreamsHeartbeat, now: int) -> tuple[StreamsGroup, StreamsHeartbeatResponse]:
    member = g.members.get(ev.member_id)
    if ev.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
        if member is None:
            return g, _error(ErrorCode.unknown_member_id,
                             f"Member {ev.member_id} is not a member of group {g.group_id}.")
        return _remove(g, ev.member_id), StreamsHeartbeatResponse(ErrorCode.none, ev.member_id, ev.member_epoch)
    bump = False
    if ev.member_epoch == 0:
        assert ev.topology is not None  # validate_heartbeat
        if member is None and len(g.members) >= g.limits.members_max:
            return g, _error(ErrorCode.group_max_size_reached,
                             f"The streams group has reached its maximum capacity of {g.limits.members_max} members.")
        if g.topology is None or not g.members:
            # The first member (of an empty group too) sets the topology; Kafka 4.4 supports no topology updates
            # of a group with members.
            if g.topology != ev.topology:
                g = replace(g, topology=ev.topology, configured=None, partitions_seen={})
                bump = True
        elif ev.topology.epoch >= g.topology.epoch and _in_order(ev.topology) != _in_order(g.topology):
            # Kafka 4.4: a member with an older topology epoch joins (and hears STALE_TOPOLOGY); any other topology
            # than the group's is an update, which it does not support yet
            return g, _error(ErrorCode.invalid_request, "Topology updates are not supported yet.")
        if ev.instance_id is not None:
            for other in list(g.members.values()):
                if other.instance_id == ev.instance_id and other.member_id != ev.member_id:
                    g = _remove(g, other.member_id)
        if member is not None:
            g = _remove(g, member.member_id)  # a rejoin starts again with nothing
        member = StreamsMember(
            member_id=ev.member_id,
            instance_id=ev.instance_id,
            rack_id=ev.rack_id,
            client_id=ev.client_id,
            client_host=ev.client_host,
            process_id=ev.process_id or "",
            user_endpoint=ev.user_endpoint,
            client_tags=ev.client_tags or (),
            topology_epoch=ev.topology.epoch,
            rebalance_timeout_ms=ev.rebalance_timeout_ms,
            session_deadline_ms=now + g.limits.session_timeout_ms,
        )
        bump = True
    else:
        if member is None:
            return g, _error(ErrorCode.unknown_member_id,
                             f"Member {ev.member_id} is not a member of group {g.group_id}.")
        if ev.member_epoch > member.member_epoch:
            return g, _error(ErrorCode.fenced_member_epoch,
                             f"The streams group member has a greater member epoch ({ev.member_epoch}) than the one "
                             f"known by the group coordinator ({member.member_epoch}). The member must abandon all "
                             "its partitions and rejoin.")
        if ev.member_epoch < member.member_epoch and (
            ev.member_epoch != member.previous_member_epoch
            or not _subset(ev.owned, member.assigned)
        ):
            return g, _error(ErrorCode.fenced_member_epoch,
                             f"The streams group member has a smaller member epoch ({ev.member_epoch}) than the one "
                             f"known by the group coordinator ({member.member_epoch}). The member must abandon all "
                             "its partitions and rejoin.")
        updated = replace(
            member,
            rack_id=ev.rack_id if ev.rack_id is not None else member.rack_id,
            rebalance_timeout_ms=ev.rebalance_timeout_ms if ev.rebalance_timeout_ms != -1
            else member.rebalance_timeout_ms,
            process_id=ev.process_id if ev.process_id is not None else member.process_id,
            user_endpoint=ev.user_endpoint if ev.user_endpoint is not None else member.user_endpoint,
            client_tags=ev.client_tags if ev.client_tags is not None else member.client_tags,
            task_offsets=ev.task_offsets if ev.task_offsets is not None else member.task_offsets,
            task_end_offsets=ev.task_end_offsets if ev.task_end_offsets is not None else member.task_end_offsets,
            client_id=ev.client_id,
            client_host=ev.client_host,
            session_deadline_ms=now + g.limits.session_timeout_ms,
        )
        bump = updated.process_id != member.process_id
        member = updated
    if ev.shutdown_application:
        g = replace(g, shutdown_requested=True)
    before = member.assigned
    if not g.members and g.limits.initial_rebalance_delay_ms > 0 and g.first_assignment_due_ms is None:
        g = replace(g, first_assignment_due_ms=now + g.limits.initial_rebalance_delay_ms)
    g = _put(g, member)
    g, status, create = _measure(g, ev.topics, bump)
    g, delayed = _delay_first_assignment(g, now)
    if delayed:
        status += ((HeartbeatStatus.ASSIGNMENT_DELAYED, "Assignment delayed due to the configured initial "
                    "rebalance delay."),)
    elif g.group_epoch > g.assignment_epoch:
        if _assignment_due(g, now) <= now:
            g = _retarget(g, now)
        else:
            status += ((HeartbeatStatus.ASSIGNMENT_DELAYED, "Assignment delayed due to the configured assignment "
                        "interval."),)
    member = _reconcile(g, g.members[member.member_id], ev.owned, now)
    g = _put(g, member)
    if g.topology is not None and member.topology_epoch < g.topology.epoch:
        status += ((HeartbeatStatus.STALE_TOPOLOGY,
                    f"The member's topology epoch {member.topology_epoch} is behind the group's topology epoch "
                    f"{g.topology.epoch}."),)
    if g.shutdown_requested:
        status += ((HeartbeatStatus.SHUTDOWN_APPLICATION,
                    f"Streams group member {member.member_id} encountered a fatal error and requested a shutdown "
                    "for the entire application."),)
    full = ev.member_epoch == 0
    return g, StreamsHeartbeatResponse(
        ErrorCode.none,
        member.member_id,
        member.member_epoch,
        g.limits.heartbeat_interval_ms,
        member.assigned if full or member.assigned != before else None,
        status,
        create=create,
    )


def _in_order(t: Topology) -> Topology:
    """The topology with its subtopologies by id: Kafka compares them as a map."""
    return replace(t, subtopologies=tuple(sorted(t.subtopologies, key=lambda s: s.subtopology_id)))


def _subset(owned: Tasks | None, assigned: Tasks) -> bool:
    if owned is None:
        return True
    return owned.active <= assigned.active and owned.standby <= assigned.standby and owned.warmup <= assigned.warmup


def _measure(g: StreamsGroup, topics: Mapping[str, int],
             bump: bool) -> tuple[StreamsGroup, tuple[tuple[HeartbeatStatus, str], ...], tuple[InternalTopic, ...]]:
    """Configure the topology again when its topics changed (or on a bump); a change bumps the group epoch."""
    if g.topology is None:
        return replace(g, group_epoch=g.group_epoch + 1) if bump else g, (), ()
    names = _topology_topics(g.topology)
    seen = {n: topics[n] for n in sorted(names) if n in topics}
    if seen != dict(g.partitions_seen) or g.configured is None:
        configured = configure(g.topology, topics)
        if configured != g.configured:
            bump = True
        g = replace(g, configured=configured, partitions_seen=seen)
    if bump:
        g = replace(g, group_epoch=g.group_epoch + 1)
    assert g.configured is not None
    return g, g.configured.status, g.configured.missing


def _delay_first_assignment(g: StreamsGroup, now: int) -> tuple[StreamsGroup, bool]:
    """Kafka's initial rebalance delay: when a member joins a group without members, the assignment waits
    ``initial_rebalance_delay_ms``, so that members starting together share one assignment instead of rebalancing
    once per member. Meanwhile every member gets no tasks at the group's epoch (status ASSIGNMENT_DELAYED); when
    the delay is over the group epoch moves on and the target is computed."""
    if g.first_assignment_due_ms is None:
        return g, False
    if not g.members:
        return replace(g, first_assignment_due_ms=None), False
    if now < g.first_assignment_due_ms:
        return replace(g, target={}, assignment_epoch=g.group_epoch), True
    return replace(g, first_assignment_due_ms=None, group_epoch=g.group_epoch + 1), False


def _put(g: StreamsGroup, member: StreamsMember) -> StreamsGroup:
    members = dict(g.members)
    members[member.member_id] = member
    return replace(g, members=members)


def _assignment_due(g: StreamsGroup, now: int) -> int:
    """When the target may be computed again: Kafka computes it at most every ``assignment_interval_ms``; a member
    that joins or changes meanwhile hears ASSIGNMENT_DELAYED and is assigned when the interval is over."""
    return now if g.last_assignment_ms is None else g.last_assignment_ms + g.limits.assignment_interval_ms


def _retarget(g: StreamsGroup, now: int) -> StreamsGroup:
    tasks = g.configured.tasks if g.configured is not None and g.configured.ready else {}
    processes = {mid: m.process_id for mid, m in g.members.items()}
    target = assign_sticky(processes, tasks, g.target, g.limits.num_standby_replicas)
    return replace(g, target=target, assignment_epoch=g.group_epoch, last_assignment_ms=now)


def _reconcile(g: StreamsGroup, m: StreamsMember, owned: Tasks | None, now: int) -> StreamsMember:
    """Kafka's streams CurrentAssignmentBuilder: the member's next step towards the target assignment."""
    if m.state is MemberState.STABLE:
        if m.member_epoch == g.assignment_epoch:
            return m
        nxt = _next_assignment(g, m, m.member_epoch, owned)
    elif m.state is MemberState.UNREVOKED_TASKS:
        if owned is None or bool(owned & m.pending_revocation):
            return m  # still holds what it must give up
        nxt = _next_assignment(g, m, m.member_epoch + 1, owned)
    else:
        nxt = _next_assignment(g, m, m.member_epoch, owned)
    deadline = now + nxt.rebalance_timeout_ms if nxt.state is MemberState.UNREVOKED_TASKS else None
    return replace(nxt, revocation_deadline_ms=deadline)


def _with_epoch(m: StreamsMember, epoch: int) -> StreamsMember:
    if epoch == m.member_epoch:
        return m
    return replace(m, previous_member_epoch=m.member_epoch, member_epoch=epoch)


def _next_assignment(g: StreamsGroup, m: StreamsMember, epoch: int, owned: Tasks | None) -> StreamsMember:
    target = g.target.get(m.member_id, NO_TASKS)
    keep = m.assigned & target
    revoke = m.assigned - keep
    wanted = target - keep
    unreleased = frozenset(t for t in wanted.active if g.active_owner(t, m.member_id))
    give = Tasks(wanted.active - unreleased, wanted.standby, wanted.warmup)
    kept = {t: m.active_epochs.get(t, m.member_epoch) for t in keep.active}
    if revoke and (owned is None or bool(owned & revoke)):
        revoking = {t: m.active_epochs.get(t, m.member_epoch) for t in revoke.active}
        return replace(_with_epoch(m, epoch), state=MemberState.UNREVOKED_TASKS, assigned=keep,
                       pending_revocation=revoke, active_epochs=kept | revoking)
    state = MemberState.UNRELEASED_TASKS if unreleased else MemberState.STABLE
    # A task new to the member is assigned at the epoch the member moves to; the ones it keeps keep theirs.
    return replace(_with_epoch(m, g.assignment_epoch), state=state, assigned=keep | give,
                   pending_revocation=NO_TASKS, active_epochs=kept | dict.fromkeys(give.active, g.assignment_epoch))


def _remove(g: StreamsGroup, member_id: str) -> StreamsGroup:
    members = {k: v for k, v in g.members.items() if k != member_id}
    target = {k: v for k, v in g.target.items() if k != member_id}
    # The shutdown request ends with the application: a group that empties forgets it.
    return replace(g, members=members, target=target, group_epoch=g.group_epoch + 1,
                   shutdown_requested=g.shutdown_requested and bool(members))


def _deadlines(m: StreamsMember) -> Iterable[int]:
    return [d for d in (m.session_deadline_ms, m.revocation_deadline_ms) if d is not None]


def _tick(g: StreamsGroup, now: int) -> StreamsGroup:
    gone = [m.member_id for m in g.members.values() if min(_deadlines(m)) <= now]
    for mid in gone:
        g = _remove(g, mid)
    g, delayed = _delay_first_assignment(g, now)
    if g.group_epoch > g.assignment_epoch and g.members and not delayed and _assignment_due(g, now) <= now:
        # Free expired members' tasks for the others, make the first assignment once its delay is over, and the
        # one the assignment interval held back.
        g = _retarget(g, now)
    return g


def next_deadline(g: StreamsGroup) -> int | None:
    due = [g.first_assignment_due_ms] if g.first_assignment_due_ms is not None and g.members else []
    if g.first_assignment_due_ms is None and g.members and g.group_epoch > g.assignment_epoch:
        due.append(g.last_assignment_ms + g.limits.assignment_interval_ms if g.last_assignment_ms is not None else 0)
    return min([d for m in g.members.values() for d in _deadlines(m)] + due, default=None)


def group_state(g: StreamsGroup) -> str:
    """StreamsGroupDescribe's and ListGroups' state: Empty, NotReady, Assigning, Reconciling or Stable."""
    if not g.members:
        return "Empty"
    if g.configured is None or not g.configured.ready:
        return "NotReady"
    if g.group_epoch != g.assignment_epoch:
        return "Assigning"
    if any(m.member_epoch != g.assignment_epoch or m.state is not MemberState.STABLE for m in g.members.values()):
        return "Reconciling"
    return "Stable"


def validate_offset_commit(g: StreamsGroup, c: CommitAttempt) -> tuple[ErrorCode, str | None]:
    """(Txn)OffsetCommit for a streams group, Kafka 4.4's rules: a commit from outside the group passes as
    :meth:`~loosely.broker.groups.consumer.CommitAttempt.needs_no_member` says; otherwise the member must exist, use
    OffsetCommit v9 or later (TxnOffsetCommit: any version), and send its epoch, or an older one that is not older
    than the epoch at which each committed partition's task came to it. Answers the error for the whole request and
    why (for the log)."""
    if c.needs_no_member(g.members):
        return ErrorCode.none, None
    member_epoch = c.member_epoch
    m = g.members.get(c.member_id)
    if m is None:
        return ErrorCode.unknown_member_id, f"Member {c.member_id} is not a member of streams group {g.group_id}."
    if not c.transactional and c.api_version < 9:
        return ErrorCode.unsupported_version, ("OffsetCommit version 9 or above must be used by members using the "
                                               "streams group protocol")
    if member_epoch == m.member_epoch:
        return ErrorCode.none, None
    if member_epoch > m.member_epoch:
        return ErrorCode.stale_member_epoch, (f"Received member epoch {member_epoch} is newer than current member "
                                              f"epoch {m.member_epoch}.")
    if g.topology is None:
        return ErrorCode.stale_member_epoch, "Topology is not available for offset commit validation."
    subtopology_of = {t: s.subtopology_id for s in g.topology.subtopologies
                      for t in (*s.source_topics, *(r.name for r in s.repartition_source_topics))}
    for topic, partition in c.partitions:
        sid = subtopology_of.get(topic)
        if sid is None:
            return ErrorCode.stale_member_epoch, f"Topic {topic} is not in the topology."
        assigned_at = m.active_epochs.get((sid, partition))
        if assigned_at is None:
            return ErrorCode.stale_member_epoch, (f"Task {sid}-{partition} is not assigned or pending revocation "
                                                  f"for member.")
        if member_epoch < assigned_at:
            return ErrorCode.stale_member_epoch, (f"Received member epoch {member_epoch} is older than assignment "
                                                  f"epoch {assigned_at} for task {sid}-{partition}.")
    return ErrorCode.none, None


# --- the state a restart keeps ---------------------------------------------------------------------------------------
# A group as JSON (the shell writes it to ``<data-dir>/streams-groups.json``): everything but the deadlines, which
# are monotonic-clock instants of the process that wrote them. Loading gives every member a new session timeout and
# a member revoking tasks a new rebalance timeout, as Kafka's coordinator does when it loads a group.

_JsonTasks = dict[str, list[list[object]]]


def _tasks_json(t: Tasks) -> _JsonTasks:
    return {"active": sorted([s, p] for s, p in t.active), "standby": sorted([s, p] for s, p in t.standby),
            "warmup": sorted([s, p] for s, p in t.warmup)}


def _tasks_from(doc: _JsonTasks) -> Tasks:
    def one(key: str) -> frozenset[Task]:
        return frozenset((str(s), int(p)) for s, p in doc.get(key, ()))  # type: ignore[call-overload]

    return Tasks(one("active"), one("standby"), one("warmup"))


def _spec_json(t: TopicSpec) -> list[object]:
    return [t.name, t.partitions, t.replication_factor, [list(kv) for kv in t.configs]]


def _spec_from(doc: list[object]) -> TopicSpec:
    name, partitions, replicas, configs = doc
    return TopicSpec(str(name), int(partitions), int(replicas),  # type: ignore[call-overload]
                     tuple((str(k), str(v)) for k, v in configs))  # type: ignore[attr-defined]


def group_to_json(g: StreamsGroup) -> dict[str, object]:
    """The facts of a group that a restart keeps (no deadlines, no limits: those come from the broker's settings)."""
    topology = None if g.topology is None else {"epoch": g.topology.epoch, "subtopologies": [
        {"id": s.subtopology_id, "sources": list(s.source_topics), "sinks": list(s.repartition_sink_topics),
         "changelogs": [_spec_json(c) for c in s.state_changelog_topics],
         "repartition": [_spec_json(r) for r in s.repartition_source_topics],
         "copartition": [sorted(c) for c in s.copartition_groups]}
        for s in g.topology.subtopologies]}
    configured = None if g.configured is None else {
        "tasks": dict(sorted(g.configured.tasks.items())),
        "missing": [[t.name, t.partitions, [list(kv) for kv in t.configs]] for t in g.configured.missing],
        "status": [[int(code), detail] for code, detail in g.configured.status]}
    members = {mid: {
        "instance_id": m.instance_id, "rack_id": m.rack_id, "client_id": m.client_id, "client_host": m.client_host,
        "process_id": m.process_id, "user_endpoint": None if m.user_endpoint is None else list(m.user_endpoint),
        "client_tags": [list(kv) for kv in m.client_tags], "topology_epoch": m.topology_epoch,
        "rebalance_timeout_ms": m.rebalance_timeout_ms, "epoch": m.member_epoch,
        "previous_epoch": m.previous_member_epoch, "state": m.state.value, "assigned": _tasks_json(m.assigned),
        "revoking": _tasks_json(m.pending_revocation), "revocation_due": m.revocation_deadline_ms is not None,
        "task_offsets": [list(o) for o in m.task_offsets], "task_end_offsets": [list(o) for o in m.task_end_offsets],
        "active_epochs": sorted([s, p, e] for (s, p), e in m.active_epochs.items()),
    } for mid, m in sorted(g.members.items())}
    return {"epoch": g.group_epoch, "assignment_epoch": g.assignment_epoch, "topology": topology,
            "configured": configured, "partitions_seen": dict(sorted(g.partitions_seen.items())),
            "members": members, "target": {mid: _tasks_json(t) for mid, t in sorted(g.target.items())},
            "shutdown_requested": g.shutdown_requested, "first_assignment_due": g.first_assignment_due_ms is not None}


def group_from_json(group_id: str, doc: Mapping[str, object], limits: StreamsGroupLimits,
                    now_ms: int) -> StreamsGroup:
    """A group written by :func:`group_to_json`, its members' deadlines counted from ``now_ms``. Raises KeyError,
    TypeError or ValueError for a document that is not one."""
    d: dict = dict(doc)  # type: ignore[type-arg]
    topology = None
    if d["topology"] is not None:
        topology = Topology(int(d["topology"]["epoch"]), tuple(
            Subtopology(str(s["id"]), tuple(map(str, s["sources"])), tuple(map(str, s["sinks"])),
                        tuple(_spec_from(c) for c in s["changelogs"]), tuple(_spec_from(r) for r in s["repartition"]),
                        tuple(frozenset(map(str, c)) for c in s["copartition"]))
            for s in d["topology"]["subtopologies"]))
    configured = None
    if d["configured"] is not None:
        c = d["configured"]
        configured = ConfiguredTopology(
            {str(k): int(v) for k, v in c["tasks"].items()},
            tuple(InternalTopic(str(n), int(p), tuple((str(k), str(v)) for k, v in kvs)) for n, p, kvs in c["missing"]),
            tuple((HeartbeatStatus(int(code)), str(detail)) for code, detail in c["status"]))
    members = {}
    for mid, m in d["members"].items():
        endpoint = m["user_endpoint"]
        assigned, revoking = _tasks_from(m["assigned"]), _tasks_from(m["revoking"])
        # A file from before the epochs were kept: every task counts as assigned at the member's epoch.
        epochs = dict.fromkeys(assigned.active | revoking.active, int(m["epoch"]))
        epochs.update({(str(s), int(p)): int(e) for s, p, e in m.get("active_epochs", ())})
        members[str(mid)] = StreamsMember(
            member_id=str(mid), instance_id=m["instance_id"], rack_id=m["rack_id"], client_id=str(m["client_id"]),
            client_host=str(m["client_host"]), process_id=str(m["process_id"]),
            user_endpoint=None if endpoint is None else (str(endpoint[0]), int(endpoint[1])),
            client_tags=tuple((str(k), str(v)) for k, v in m["client_tags"]),
            topology_epoch=int(m["topology_epoch"]), rebalance_timeout_ms=int(m["rebalance_timeout_ms"]),
            session_deadline_ms=now_ms + limits.session_timeout_ms, member_epoch=int(m["epoch"]),
            previous_member_epoch=int(m["previous_epoch"]), state=MemberState(m["state"]),
            assigned=assigned, pending_revocation=revoking, active_epochs=epochs,
            revocation_deadline_ms=now_ms + int(m["rebalance_timeout_ms"]) if m["revocation_due"] else None,
            task_offsets=tuple((str(s), int(p), int(o)) for s, p, o in m["task_offsets"]),
            task_end_offsets=tuple((str(s), int(p), int(o)) for s, p, o in m["task_end_offsets"]),
        )
    return StreamsGroup(
        group_id, limits, group_epoch=int(d["epoch"]), assignment_epoch=int(d["assignment_epoch"]),
        topology=topology, configured=configured,
        partitions_seen={str(k): int(v) for k, v in d["partitions_seen"].items()}, members=members,
        target={str(k): _tasks_from(v) for k, v in d["target"].items()},
        shutdown_requested=bool(d["shutdown_requested"]),
        first_assignment_due_ms=now_ms + limits.initial_rebalance_delay_ms if d["first_assignment_due"] else None)
