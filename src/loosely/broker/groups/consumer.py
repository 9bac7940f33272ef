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

Classic members (KIP-848's online migration): a group converted from a classic group, or joined by a classic
consumer while it has consumer-protocol members, also holds members that speak JoinGroup, SyncGroup and Heartbeat.
They carry :class:`ClassicMetadata` and follow the same rules through :func:`classic_join` (a subscription change and
a reconciliation, as a heartbeat with all fields), :func:`classic_sync` (hands out the member's assignment) and
:func:`classic_heartbeat`, which answers REBALANCE_IN_PROGRESS whenever the member has something to do: the group
epoch passed it, it must revoke, or partitions it waits for were released. From then on it must rejoin within its
rebalance timeout, and sync within it after joining (``classic_deadline_ms``), or it is removed, as in Kafka.

The state is durable: the shell writes what each step changed to ``__consumer_offsets``
(:mod:`loosely.broker.groups.consumer_records`) before it answers.

Simplifications (said here so nobody has to discover them): a static member's temporary leave (-2) is treated as a
leave. A regular-expression subscription is matched with RE2, the engine (and syntax) Kafka's RE2/J implements, in
time linear in the topic name.
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
    "ClassicJoin",
    "ClassicMetadata",
    "CommitAttempt",
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
    "classic_heartbeat",
    "classic_join",
    "classic_leave",
    "classic_sync",
    "group_state",
    "next_deadline",
    "step",
    "subscription",
    "validate_heartbeat",
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
class ClassicMetadata:
    """What a member speaking the classic protocol joined with (Kafka's ClassicMemberMetadata)."""

    session_timeout_ms: int
    protocols: tuple[tuple[str, bytes], ...]  # (assignor name, ConsumerProtocolSubscription), the client's order

    @property
    def protocol_name(self) -> str:
        """The name a classic member is answered with: the first it listed, as Kafka answers."""
        return self.protocols[0][0]


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
    classic: ClassicMetadata | None = None  # set for a member that speaks JoinGroup/SyncGroup/Heartbeat
    classic_deadline_ms: int | None = None  # a classic member's rejoin or sync must come before this
    # the member epoch at which each partition (assigned or being given up) came to the member: an offset commit
    # with an older epoch than the member's is checked against it, as Kafka 4.4 does
    partition_epochs: Mapping[TP, int] = field(default_factory=dict)


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


def validate_heartbeat(ev: ConsumerHeartbeat) -> ConsumerHeartbeatResponse | None:
    """The answer to a malformed heartbeat (INVALID_REQUEST and Kafka's words, ...), or None. Kafka checks this
    before it looks the group up, so a bad request neither creates nor converts a group."""
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
    invalid = validate_heartbeat(ev)
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
    before = member.assigned
    g, member = _advance(g, member, bump=bump, topics=ev.topics, owned=ev.owned, now=now)
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


def _put(g: ConsumerGroup, member: ConsumerMember) -> ConsumerGroup:
    members = dict(g.members)
    members[member.member_id] = member
    return replace(g, members=members)


def _advance(
    g: ConsumerGroup,
    member: ConsumerMember,
    *,
    bump: bool,
    topics: Mapping[str, TopicInfo],
    owned: frozenset[TP] | None,
    now: int,
) -> tuple[ConsumerGroup, ConsumerMember]:
    """Put the (new or updated) member in, bump the group epoch if asked or the subscribed topics changed, compute the
    new target if the epoch moved, and take the member's next step towards it."""
    g = _put(g, member)
    # Subscribed topics appearing, vanishing or growing change the target too.
    names = {t for m in g.members.values() for t in subscription(m, topics)}
    seen = {n: topics[n] for n in sorted(names) if n in topics}
    if seen != dict(g.topics):
        g = replace(g, topics=seen)
        bump = True
    if bump:
        g = replace(g, group_epoch=g.group_epoch + 1)
    if g.group_epoch > g.assignment_epoch:
        g = _retarget(g)
    member = _reconcile(g, member, owned, now)
    return _put(g, member), member


# --- classic members (JoinGroup / SyncGroup / Heartbeat / LeaveGroup into a consumer group) -------------------------


@dataclass(frozen=True, slots=True)
class ClassicJoin:
    member_id: str  # the shell names new members
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    classic: ClassicMetadata
    subscribed: frozenset[str]
    owned: frozenset[TP]  # from the subscription (v1+): what the member still holds
    topics: Mapping[str, TopicInfo]
    named_by_us: bool = False  # it came without a member id (a static member's new incarnation gets one)


def _classic_member(g: ConsumerGroup, member_id: str, instance_id: str | None) -> ConsumerMember | ErrorCode:
    """Kafka's validateConsumerGroupMember, and a consumer-protocol member is unknown to the classic APIs."""
    if instance_id is not None:
        m = next((x for x in g.members.values() if x.instance_id == instance_id), None)
        if m is None:
            return ErrorCode.unknown_member_id
        if m.member_id != member_id:
            return ErrorCode.fenced_instance_id
    else:
        m = g.members.get(member_id)
        if m is None:
            return ErrorCode.unknown_member_id
    return m if m.classic is not None else ErrorCode.unknown_member_id


def classic_join(g: ConsumerGroup, ev: ClassicJoin, now: int) -> tuple[ConsumerGroup, ConsumerMember | ErrorCode]:
    """A JoinGroup: the member (new or known) with its subscription, reconciled from what it still owns. The answer
    is its epoch as the generation; it then has a rebalance timeout to send SyncGroup."""
    member = g.members.get(ev.member_id)
    if ev.instance_id is not None:
        static = next((x for x in g.members.values() if x.instance_id == ev.instance_id), None)
        if static is not None and static.member_id != ev.member_id:
            if not ev.named_by_us or static.classic is None:
                return g, ErrorCode.fenced_instance_id
            # A static member rejoining under a new id takes its old incarnation's place and partitions.
            members = {(ev.member_id if k == static.member_id else k): v for k, v in g.members.items()}
            members[ev.member_id] = replace(static, member_id=ev.member_id)
            target = {(ev.member_id if k == static.member_id else k): v for k, v in g.target.items()}
            g = replace(g, members=members, target=target)
            member = g.members[ev.member_id]
    if member is not None and member.classic is None:
        return g, ErrorCode.unknown_member_id
    if member is None and len(g.members) >= g.limits.members_max:
        return g, ErrorCode.group_max_size_reached
    deadline = now + ev.rebalance_timeout_ms  # the sync must follow within the rebalance timeout
    if member is None:
        member = ConsumerMember(
            member_id=ev.member_id,
            instance_id=ev.instance_id,
            rack_id=ev.rack_id,
            client_id=ev.client_id,
            client_host=ev.client_host,
            subscribed=ev.subscribed,
            rebalance_timeout_ms=ev.rebalance_timeout_ms,
            assignor=None,
            session_deadline_ms=now + ev.classic.session_timeout_ms,
            classic=ev.classic,
            classic_deadline_ms=deadline,
        )
        bump = True
    else:
        bump = ev.subscribed != member.subscribed or member.regex is not None
        member = replace(
            member,
            rack_id=ev.rack_id if ev.rack_id is not None else member.rack_id,
            client_id=ev.client_id,
            client_host=ev.client_host,
            subscribed=ev.subscribed,
            regex=None,
            rebalance_timeout_ms=ev.rebalance_timeout_ms,
            assignor=None,
            session_deadline_ms=now + ev.classic.session_timeout_ms,
            classic=ev.classic,
            classic_deadline_ms=deadline,
        )
    g, member = _advance(g, member, bump=bump, topics=ev.topics, owned=ev.owned, now=now)
    return g, member


def classic_sync(
    g: ConsumerGroup, member_id: str, instance_id: str | None, generation: int, now: int
) -> tuple[ConsumerGroup, ConsumerMember | ErrorCode]:
    """A SyncGroup: the member's assignment, unless the group moved on since its join (REBALANCE_IN_PROGRESS)."""
    m = _classic_member(g, member_id, instance_id)
    if isinstance(m, ErrorCode):
        return g, m
    if generation != m.member_epoch:
        return g, ErrorCode.illegal_generation
    if g.group_epoch > m.member_epoch and m.state is not MemberState.UNREVOKED_PARTITIONS:
        return _rejoin_by(g, m, now), ErrorCode.rebalance_in_progress
    assert m.classic is not None
    m = replace(m, classic_deadline_ms=None, session_deadline_ms=now + m.classic.session_timeout_ms)
    return _put(g, m), m


def _rejoin_by(g: ConsumerGroup, m: ConsumerMember, now: int) -> ConsumerGroup:
    """Told to rejoin: it has its rebalance timeout to do so (a deadline already running stays)."""
    if m.classic_deadline_ms is not None:
        return g
    return _put(g, replace(m, classic_deadline_ms=now + m.rebalance_timeout_ms))


def _waits_on_unreleased(g: ConsumerGroup, m: ConsumerMember) -> bool:
    target = g.target.get(m.member_id, frozenset())
    return any(g.owner_epoch(tp, m.member_id) != -1 for tp in target - m.assigned)


def classic_heartbeat(
    g: ConsumerGroup, member_id: str, instance_id: str | None, generation: int, now: int
) -> tuple[ConsumerGroup, ErrorCode]:
    m = _classic_member(g, member_id, instance_id)
    if isinstance(m, ErrorCode):
        return g, m
    if generation != m.member_epoch:
        return g, ErrorCode.illegal_generation
    assert m.classic is not None
    m = replace(m, session_deadline_ms=now + m.classic.session_timeout_ms)
    g = _put(g, m)
    if (
        m.member_epoch < g.group_epoch
        or m.state is MemberState.UNREVOKED_PARTITIONS
        or (m.state is MemberState.UNRELEASED_PARTITIONS and not _waits_on_unreleased(g, m))
    ):
        return _rejoin_by(g, m, now), ErrorCode.rebalance_in_progress
    return g, ErrorCode.none


def classic_leave(
    g: ConsumerGroup, members: Iterable[tuple[str, str | None]]
) -> tuple[ConsumerGroup, list[tuple[str, str | None, ErrorCode]]]:
    """LeaveGroup of classic members (an empty member id with an instance id: an admin's removal)."""
    results: list[tuple[str, str | None, ErrorCode]] = []
    gone = 0
    for member_id, instance_id in members:
        if instance_id is not None and not member_id:
            found = next((x for x in g.members.values() if x.instance_id == instance_id), None)
            m: ConsumerMember | ErrorCode = ErrorCode.unknown_member_id if found is None else found
            if isinstance(m, ConsumerMember) and m.classic is None:
                m = ErrorCode.unknown_member_id
        else:
            m = _classic_member(g, member_id, instance_id)
        if isinstance(m, ErrorCode):
            results.append((member_id, instance_id, m))
            continue
        g = replace(
            g,
            members={k: v for k, v in g.members.items() if k != m.member_id},
            target={k: v for k, v in g.target.items() if k != m.member_id},
        )
        gone += 1
        results.append((member_id or m.member_id, instance_id, ErrorCode.none))
    if gone:
        g = replace(g, group_epoch=g.group_epoch + 1)  # one bump for the whole request, as Kafka
    return g, results


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
    kept = {tp: m.partition_epochs.get(tp, m.member_epoch) for tp in keep}
    if revoke and (owned is None or owned & revoke):
        return replace(
            _with_epoch(m, epoch),
            state=MemberState.UNREVOKED_PARTITIONS,
            assigned=keep,
            pending_revocation=revoke,
            partition_epochs=kept | {tp: m.partition_epochs.get(tp, m.member_epoch) for tp in revoke},
        )
    state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE
    # A partition new to the member is assigned at the epoch the member moves to; the ones it keeps keep theirs.
    return replace(
        _with_epoch(m, g.assignment_epoch),
        state=state,
        assigned=keep | give,
        pending_revocation=frozenset(),
        partition_epochs=kept | dict.fromkeys(give, g.assignment_epoch),
    )


def _remove(g: ConsumerGroup, member_id: str) -> ConsumerGroup:
    members = {k: v for k, v in g.members.items() if k != member_id}
    target = {k: v for k, v in g.target.items() if k != member_id}
    return replace(g, members=members, target=target, group_epoch=g.group_epoch + 1)


def _deadlines(m: ConsumerMember) -> list[int]:
    return [d for d in (m.session_deadline_ms, m.revocation_deadline_ms, m.classic_deadline_ms) if d is not None]


def _tick(g: ConsumerGroup, now: int) -> ConsumerGroup:
    for m in list(g.members.values()):
        if min(_deadlines(m)) <= now:
            g = _remove(g, m.member_id)
    return g


def next_deadline(g: ConsumerGroup) -> int | None:
    return min((d for m in g.members.values() for d in _deadlines(m)), default=None)


def group_state(g: ConsumerGroup) -> str:
    """ConsumerGroupDescribe's state: Empty, Assigning, Reconciling or Stable."""
    if not g.members:
        return "Empty"
    if g.group_epoch != g.assignment_epoch:
        return "Assigning"
    if any(m.member_epoch != g.assignment_epoch or m.state is not MemberState.STABLE for m in g.members.values()):
        return "Reconciling"
    return "Stable"


@dataclass(frozen=True, slots=True)
class CommitAttempt:
    """An OffsetCommit or TxnOffsetCommit as a consumer or streams group checks it."""

    member_id: str
    instance_id: str | None
    member_epoch: int
    partitions: tuple[tuple[str, int], ...]  # (topic, partition)
    transactional: bool
    api_version: int

    def needs_no_member(self, members: Mapping[str, object]) -> bool:
        """Kafka's commits from outside the group: an admin's (epoch < 0) to a group without members, and a
        transactional one without a member (epoch -1, no member id, no instance id)."""
        if self.member_epoch < 0 and not members:
            return True
        return self.transactional and self.member_epoch == LEAVE_EPOCH and not self.member_id and (
            self.instance_id is None)


def validate_offset_commit(g: ConsumerGroup, c: CommitAttempt) -> tuple[ErrorCode, str | None]:
    """(Txn)OffsetCommit for a consumer group, Kafka 4.4's rules: a commit from outside the group passes as
    :meth:`CommitAttempt.needs_no_member` says; otherwise the member must exist, a consumer-protocol member use
    OffsetCommit v9 or later, and send its epoch, or an older one that is not older than the epoch at which each
    committed partition came to it. A classic member's epoch is its generation: it is told ILLEGAL_GENERATION, as a
    classic group would tell it. Answers the error for the whole request and why (for the log)."""
    if c.needs_no_member(g.members):
        return ErrorCode.none, None
    member_epoch = c.member_epoch
    m = g.members.get(c.member_id)
    if m is None:
        return ErrorCode.unknown_member_id, f"Member {c.member_id} is not a member of group {g.group_id}."
    if not c.transactional and m.classic is None and c.api_version < 9:
        return ErrorCode.unsupported_version, ("OffsetCommit version 9 or above must be used by members using the "
                                               "consumer group protocol")
    if member_epoch == m.member_epoch:
        return ErrorCode.none, None
    stale, what = ((ErrorCode.illegal_generation, "generation id") if m.classic is not None
                   else (ErrorCode.stale_member_epoch, "member epoch"))
    if member_epoch > m.member_epoch:
        return stale, f"Received {what} {member_epoch} is newer than current member epoch {m.member_epoch}."
    for topic, partition in c.partitions:
        info = g.topics.get(topic)
        assigned_at = None if info is None else m.partition_epochs.get((info.topic_id, partition))
        if assigned_at is None:
            return stale, f"Partition {topic}-{partition} is not assigned or pending revocation for member."
        if member_epoch < assigned_at:
            return stale, (f"Received {what} {member_epoch} is older than assignment epoch {assigned_at} for "
                           f"partition {topic}-{partition}.")
    return ErrorCode.none, None
