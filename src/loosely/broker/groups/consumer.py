"""The consumer group protocol of KIP-848 (ConsumerGroupHeartbeat) as a pure state machine.

Theory of operation
-------------------
In this protocol the broker assigns partitions, and members only heartbeat: ``step(group, event, now_ms) ->
(group, effects)`` answers every heartbeat at once. The rules are Kafka's (``GroupMetadataManager
.consumerGroupHeartbeat`` and ``CurrentAssignmentBuilder``):

* The **group epoch** goes up whenever membership, a subscription, or the partitions of a subscribed topic change.
  The **target assignment** is then recomputed by the server-side assignor (``uniform``: balanced and sticky;
  ``range``: contiguous per topic) and stamped with that epoch.
* Each member converges to the target on its own, in steps, and never owns a partition another member still owns:
  first it is told to give up what the target takes away (state UNREVOKED_PARTITIONS; it keeps its epoch until a
  heartbeat shows it no longer owns them), then it moves to the target epoch and gets the target's partitions that
  are free; those still held by others follow once released (UNRELEASED_PARTITIONS).
* A member's epoch must match: an older one is FENCED_MEMBER_EPOCH (unless it is the previous epoch and the member
  owns a subset of its assignment: the answer bumping it was lost), an unknown member is UNKNOWN_MEMBER_ID. A
  fenced member rejoins with epoch 0 and no partitions. Epoch -1 leaves; -2 is a static member's temporary leave.
* A member silent for the session timeout, or that does not revoke within its rebalance timeout, is removed and its
  partitions freed.

Simplifications (said here so nobody has to discover them): the membership is kept in memory only, so after a
broker restart members are told UNKNOWN_MEMBER_ID and rejoin (their committed offsets are durable as always); a
static member's temporary leave (-2) is treated as a leave. A regular-expression subscription is matched with RE2,
the engine (and syntax) Kafka's RE2/J implements, in time linear in the topic name.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

import re2

from loosely.protocol.errors import ErrorCode

__all__ = [
    "ASSIGNORS",
    "ConsumerGroup",
    "ConsumerGroupLimits",
    "ConsumerHeartbeat",
    "ConsumerHeartbeatResponse",
    "ConsumerMember",
    "ConsumerTick",
    "MemberState",
    "TopicInfo",
    "assign_range",
    "assign_uniform",
    "group_state",
    "next_deadline",
    "step",
    "subscription",
    "validate_offset_commit",
]

TP = tuple[uuid.UUID, int]
LEAVE_EPOCH: Final = -1
STATIC_LEAVE_EPOCH: Final = -2
ASSIGNORS: Final = ("uniform", "range")


class MemberState(enum.Enum):
    STABLE = "stable"
    UNREVOKED_PARTITIONS = "unrevoked_partitions"
    UNRELEASED_PARTITIONS = "unreleased_partitions"


@dataclass(frozen=True, slots=True)
class ConsumerGroupLimits:
    session_timeout_ms: int = 45_000  # group.consumer.session.timeout.ms
    heartbeat_interval_ms: int = 5_000  # group.consumer.heartbeat.interval.ms
    members_max: int = 1_000  # group.consumer.max.size (Kafka: unbounded)
    default_assignor: str = "uniform"


@dataclass(frozen=True, slots=True)
class TopicInfo:
    topic_id: uuid.UUID
    partitions: int


@dataclass(frozen=True, slots=True)
class ConsumerMember:
    member_id: str
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    subscribed: frozenset[str]
    rebalance_timeout_ms: int
    assignor: str | None
    session_deadline_ms: int
    regex: str | None = None  # subscribe(Pattern): topics whose whole name matches are subscribed too
    member_epoch: int = 0
    previous_member_epoch: int = -1
    state: MemberState = MemberState.STABLE
    assigned: frozenset[TP] = frozenset()
    pending_revocation: frozenset[TP] = frozenset()
    revocation_deadline_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ConsumerGroup:
    group_id: str
    limits: ConsumerGroupLimits = ConsumerGroupLimits()
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: Mapping[str, ConsumerMember] = field(default_factory=dict)
    target: Mapping[str, frozenset[TP]] = field(default_factory=dict)
    topics: Mapping[str, TopicInfo] = field(default_factory=dict)  # the subscribed topics as last seen

    def owner_epoch(self, tp: TP, besides: str) -> int:
        """The epoch of the member (other than ``besides``) that owns or is revoking ``tp``; -1 if free."""
        for m in self.members.values():
            if m.member_id != besides and (tp in m.assigned or tp in m.pending_revocation):
                return m.member_epoch
        return -1


@dataclass(frozen=True, slots=True)
class ConsumerHeartbeat:
    member_id: str
    member_epoch: int
    instance_id: str | None
    rack_id: str | None
    rebalance_timeout_ms: int  # -1: unchanged
    subscribed: frozenset[str] | None  # None: unchanged
    regex: str | None  # None: unchanged; "": no regex
    assignor: str | None
    owned: frozenset[TP] | None  # None: unchanged since the last heartbeat
    client_id: str
    client_host: str
    topics: Mapping[str, TopicInfo]  # the broker's topics, by name (the shell's view of its catalog)


@dataclass(frozen=True, slots=True)
class ConsumerTick:
    pass


@dataclass(frozen=True, slots=True)
class ConsumerHeartbeatResponse:
    error: ErrorCode
    member_id: str | None = None
    member_epoch: int = -1
    heartbeat_interval_ms: int = 0
    assignment: frozenset[TP] | None = None
    message: str | None = None


Event = ConsumerHeartbeat | ConsumerTick


def _error(code: ErrorCode, message: str) -> ConsumerHeartbeatResponse:
    return ConsumerHeartbeatResponse(code, message=message)


# --- assignors -----------------------------------------------------------------------------------------------------


def _all_partitions(topics: Mapping[str, TopicInfo], names: Iterable[str]) -> list[tuple[str, TP]]:
    out = []
    for name in sorted(set(names)):
        info = topics.get(name)
        if info is not None:
            out += [(name, (info.topic_id, p)) for p in range(info.partitions)]
    return out


def assign_uniform(
    members: Mapping[str, frozenset[str]], topics: Mapping[str, TopicInfo], previous: Mapping[str, frozenset[TP]]
) -> dict[str, frozenset[TP]]:
    """Balanced and sticky: a partition stays with its previous owner unless that makes someone two ahead of
    another member subscribed to the partition's topic."""
    names_of: dict[TP, str] = {}
    for name, tp in _all_partitions(topics, (t for subs in members.values() for t in subs)):
        names_of[tp] = name
    owner: dict[TP, str] = {}
    for mid in sorted(members):
        for tp in previous.get(mid, frozenset()):
            if tp in names_of and names_of[tp] in members[mid] and tp not in owner:
                owner[tp] = mid
    load = {mid: 0 for mid in members}
    for mid in owner.values():
        load[mid] += 1
    for tp in sorted(names_of):
        if tp in owner:
            continue
        candidates = [mid for mid in sorted(members) if names_of[tp] in members[mid]]
        if candidates:
            best = min(candidates, key=lambda m: load[m])
            owner[tp] = best
            load[best] += 1
    moved = True
    while moved:
        moved = False
        for tp in sorted(owner):
            a = owner[tp]
            candidates = [mid for mid in sorted(members) if names_of[tp] in members[mid]]
            b = min(candidates, key=lambda m: load[m])
            if load[a] - load[b] >= 2:
                owner[tp] = b
                load[a] -= 1
                load[b] += 1
                moved = True
    out: dict[str, set[TP]] = {mid: set() for mid in members}
    for tp, mid in owner.items():
        out[mid].add(tp)
    return {mid: frozenset(ps) for mid, ps in out.items()}


def assign_range(
    members: Mapping[str, frozenset[str]], topics: Mapping[str, TopicInfo], previous: Mapping[str, frozenset[TP]]
) -> dict[str, frozenset[TP]]:
    """Per topic, contiguous ranges of partitions over the subscribed members in member id order."""
    out: dict[str, set[TP]] = {mid: set() for mid in members}
    for name in sorted({t for subs in members.values() for t in subs}):
        info = topics.get(name)
        subscribers = sorted(mid for mid, subs in members.items() if name in subs)
        if info is None or not subscribers:
            continue
        per, extra = divmod(info.partitions, len(subscribers))
        start = 0
        for i, mid in enumerate(subscribers):
            n = per + (1 if i < extra else 0)
            out[mid] |= {(info.topic_id, p) for p in range(start, start + n)}
            start += n
    return {mid: frozenset(ps) for mid, ps in out.items()}


# --- the transition function ---------------------------------------------------------------------------------------


def step(group: ConsumerGroup, event: Event, now_ms: int) -> tuple[ConsumerGroup, ConsumerHeartbeatResponse | None]:
    """Apply a heartbeat (answered at once) or a tick (expire silent and stuck members)."""
    if isinstance(event, ConsumerTick):
        return _tick(group, now_ms), None
    return _heartbeat(group, event, now_ms)


def _validate(ev: ConsumerHeartbeat) -> ConsumerHeartbeatResponse | None:
    if ev.instance_id == "" or ev.rack_id == "":
        return _error(ErrorCode.invalid_request, "InstanceId and RackId can't be empty.")
    if ev.member_epoch > 0 or ev.member_epoch == LEAVE_EPOCH:
        if not ev.member_id:
            return _error(ErrorCode.invalid_request, "MemberId can't be empty.")
    elif ev.member_epoch == 0:
        if ev.rebalance_timeout_ms == -1:
            return _error(ErrorCode.invalid_request, "RebalanceTimeoutMs must be provided in first request.")
        if ev.owned is None or ev.owned:
            return _error(ErrorCode.invalid_request, "TopicPartitions must be empty when (re-)joining.")
        if not ev.subscribed and not ev.regex:
            return _error(ErrorCode.invalid_request, "SubscribedTopicNames or a regex must be set in first request.")
    elif ev.member_epoch == STATIC_LEAVE_EPOCH:
        if not ev.member_id or ev.instance_id is None:
            return _error(ErrorCode.invalid_request, "MemberId and InstanceId are required to leave temporarily.")
    else:
        return _error(ErrorCode.invalid_request, "MemberEpoch is invalid.")
    if ev.regex:
        try:
            _compile(ev.regex)
        except re2.error as e:
            return _error(ErrorCode.invalid_regular_expression, f"SubscribedTopicRegex {ev.regex!r} is invalid: {e}")
    if ev.assignor is not None and ev.assignor not in ASSIGNORS:
        return _error(ErrorCode.unsupported_assignor, f"ServerAssignor {ev.assignor} is not supported.")
    return None


def _heartbeat(g: ConsumerGroup, ev: ConsumerHeartbeat, now: int) -> tuple[ConsumerGroup, ConsumerHeartbeatResponse]:
    invalid = _validate(ev)
    if invalid is not None:
        return g, invalid
    member = g.members.get(ev.member_id)
    if ev.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
        if member is None:
            return g, _error(ErrorCode.unknown_member_id, f"member {ev.member_id} is not in the group")
        return _remove(g, ev.member_id), ConsumerHeartbeatResponse(ErrorCode.none, ev.member_id, ev.member_epoch)
    bump = False
    if ev.member_epoch == 0:
        if member is None and len(g.members) >= g.limits.members_max:
            return g, _error(ErrorCode.group_max_size_reached, "the group is full")
        if ev.instance_id is not None:
            # A static member coming back under a new member id takes the place of its old incarnation.
            for other in list(g.members.values()):
                if other.instance_id == ev.instance_id and other.member_id != ev.member_id:
                    g = _remove(g, other.member_id)
        if member is not None:
            # A rejoin (after being fenced, or a restart with the same id): it starts again with nothing.
            g = _remove(g, member.member_id)
        member = ConsumerMember(
            member_id=ev.member_id,
            instance_id=ev.instance_id,
            rack_id=ev.rack_id,
            client_id=ev.client_id,
            client_host=ev.client_host,
            subscribed=ev.subscribed or frozenset(),
            regex=ev.regex or None,
            rebalance_timeout_ms=ev.rebalance_timeout_ms,
            assignor=ev.assignor,
            session_deadline_ms=now + g.limits.session_timeout_ms,
        )
        bump = True
    else:
        if member is None:
            return g, _error(ErrorCode.unknown_member_id, f"member {ev.member_id} is not in the group")
        if ev.member_epoch > member.member_epoch or (
            ev.member_epoch < member.member_epoch
            and (ev.member_epoch != member.previous_member_epoch or not (ev.owned or frozenset()) <= member.assigned)
        ):
            return g, _error(
                ErrorCode.fenced_member_epoch,
                f"epoch {ev.member_epoch} is not the member's epoch {member.member_epoch}: rejoin with epoch 0",
            )
        updated = replace(
            member,
            rack_id=ev.rack_id if ev.rack_id is not None else member.rack_id,
            rebalance_timeout_ms=ev.rebalance_timeout_ms
            if ev.rebalance_timeout_ms != -1
            else member.rebalance_timeout_ms,
            assignor=ev.assignor if ev.assignor is not None else member.assignor,
            subscribed=ev.subscribed if ev.subscribed is not None else member.subscribed,
            regex=(ev.regex or None) if ev.regex is not None else member.regex,
            client_id=ev.client_id,
            client_host=ev.client_host,
            session_deadline_ms=now + g.limits.session_timeout_ms,
        )
        bump = updated.subscribed != member.subscribed or updated.regex != member.regex
        member = updated
    members = dict(g.members)
    members[member.member_id] = member
    g = replace(g, members=members)
    # Subscribed topics appearing, vanishing or growing change the target too.
    names = {t for m in g.members.values() for t in subscription(m, ev.topics)}
    topics = {n: ev.topics[n] for n in sorted(names) if n in ev.topics}
    if topics != dict(g.topics):
        g = replace(g, topics=topics)
        bump = True
    if bump:
        g = replace(g, group_epoch=g.group_epoch + 1)
    if g.group_epoch > g.assignment_epoch:
        g = _retarget(g)
    before = member.assigned
    member = _reconcile(g, member, ev.owned, now)
    members = dict(g.members)
    members[member.member_id] = member
    g = replace(g, members=members)
    full = ev.member_epoch == 0 or (
        ev.rebalance_timeout_ms != -1 and ev.subscribed is not None and ev.owned is not None
    )
    return g, ConsumerHeartbeatResponse(
        ErrorCode.none,
        member.member_id,
        member.member_epoch,
        g.limits.heartbeat_interval_ms,
        member.assigned if full or member.assigned != before else None,
    )


def subscription(m: ConsumerMember, topics: Mapping[str, object]) -> frozenset[str]:
    """The topics a member subscribes to: its names, and those of ``topics`` its regex matches whole."""
    if m.regex is None:
        return m.subscribed
    pattern = _compile(m.regex)
    return m.subscribed | {t for t in topics if pattern.fullmatch(t)}


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a client's bad pattern is answered, not logged to stderr by RE2


def _compile(regex: str) -> re2._Regexp:
    """RE2, as Kafka (RE2/J): matching time is linear in the topic name, so no client's pattern can stall the
    broker's loop (Python's ``re`` backtracks: ``(a*)*b`` against a long name of a's runs for ever)."""
    return re2.compile(regex, options=_RE2_OPTIONS)


def _retarget(g: ConsumerGroup) -> ConsumerGroup:
    subscriptions = {mid: subscription(m, g.topics) for mid, m in g.members.items()}
    chosen = next((m.assignor for m in g.members.values() if m.assignor), None) or g.limits.default_assignor
    assignor = assign_range if chosen == "range" else assign_uniform
    return replace(g, target=assignor(subscriptions, g.topics, g.target), assignment_epoch=g.group_epoch)


def _reconcile(g: ConsumerGroup, m: ConsumerMember, owned: frozenset[TP] | None, now: int) -> ConsumerMember:
    """Kafka's CurrentAssignmentBuilder: the member's next step towards the target assignment."""
    target_epoch = g.assignment_epoch
    if m.state is MemberState.STABLE:
        if m.member_epoch == target_epoch:
            return m
        nxt = _next_assignment(g, m, m.member_epoch, owned)
    elif m.state is MemberState.UNREVOKED_PARTITIONS:
        if owned is None or owned & m.pending_revocation:
            return m  # still holds what it must give up
        nxt = _next_assignment(g, m, m.member_epoch + 1, owned)
    else:
        nxt = _next_assignment(g, m, m.member_epoch, owned)
    # A new round of revocation gets a full rebalance timeout (Kafka reschedules the member's timer whenever its
    # assignment changes); a member still holding what it was told to give up keeps its deadline (returned above).
    deadline = now + nxt.rebalance_timeout_ms if nxt.state is MemberState.UNREVOKED_PARTITIONS else None
    return replace(nxt, revocation_deadline_ms=deadline)


def _with_epoch(m: ConsumerMember, epoch: int) -> ConsumerMember:
    if epoch == m.member_epoch:
        return m
    return replace(m, previous_member_epoch=m.member_epoch, member_epoch=epoch)


def _next_assignment(g: ConsumerGroup, m: ConsumerMember, epoch: int, owned: frozenset[TP] | None) -> ConsumerMember:
    target = g.target.get(m.member_id, frozenset())
    keep = m.assigned & target
    revoke = m.assigned - keep
    wanted = target - keep
    unreleased = {tp for tp in wanted if g.owner_epoch(tp, m.member_id) != -1}
    give = wanted - unreleased
    if revoke and (owned is None or owned & revoke):
        return replace(
            _with_epoch(m, epoch),
            state=MemberState.UNREVOKED_PARTITIONS,
            assigned=keep,
            pending_revocation=revoke,
        )
    state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE
    return replace(
        _with_epoch(m, g.assignment_epoch), state=state, assigned=keep | give, pending_revocation=frozenset()
    )


def _remove(g: ConsumerGroup, member_id: str) -> ConsumerGroup:
    members = {k: v for k, v in g.members.items() if k != member_id}
    target = {k: v for k, v in g.target.items() if k != member_id}
    return replace(g, members=members, target=target, group_epoch=g.group_epoch + 1)


def _tick(g: ConsumerGroup, now: int) -> ConsumerGroup:
    for m in list(g.members.values()):
        if m.session_deadline_ms <= now or (m.revocation_deadline_ms is not None and m.revocation_deadline_ms <= now):
            g = _remove(g, m.member_id)
    return g


def next_deadline(g: ConsumerGroup) -> int | None:
    deadlines = [m.session_deadline_ms for m in g.members.values()]
    deadlines += [m.revocation_deadline_ms for m in g.members.values() if m.revocation_deadline_ms is not None]
    return min(deadlines, default=None)


def group_state(g: ConsumerGroup) -> str:
    """ConsumerGroupDescribe's state: Empty, Assigning, Reconciling or Stable."""
    if not g.members:
        return "Empty"
    if g.group_epoch != g.assignment_epoch:
        return "Assigning"
    if any(m.member_epoch != g.assignment_epoch or m.state is not MemberState.STABLE for m in g.members.values()):
        return "Reconciling"
    return "Stable"


def validate_offset_commit(g: ConsumerGroup, member_id: str, member_epoch: int) -> ErrorCode:
    """OffsetCommit for a consumer group: an admin commit (epoch < 0) needs an empty group; a member's, its epoch."""
    if member_epoch < 0 and not g.members:
        return ErrorCode.none
    m = g.members.get(member_id)
    if m is None:
        return ErrorCode.unknown_member_id
    if member_epoch != m.member_epoch:
        return ErrorCode.stale_member_epoch
    return ErrorCode.none
