"""Classic consumer-group membership (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) as a pure state machine.

Theory of operation
-------------------
One :class:`Group` value per group id, changed only by :func:`step`, ``step(group, event, now_ms) -> (group,
effects)``. ``now_ms`` is a monotonic clock reading; every timer is a deadline stored in the state (a member's
session, a pending member's join, the join phase, the sync phase) and :func:`next_deadline` tells the asyncio shell
when to deliver the next :class:`Tick`. Nothing here does I/O, reads a clock or draws random numbers: new member ids
come in with the :class:`Join` event. Requests carry a :data:`RequestId` chosen by the shell; a request that cannot
be answered at once (a JoinGroup waiting for the others, a SyncGroup waiting for the leader) is remembered on its
member, and answered later by a :class:`Reply` effect. **Every request gets exactly one reply**, including ones a
later request of the same member supersedes and ones of members that are removed.

The rules are Apache Kafka's classic group protocol (``GroupMetadataManager`` / ``ClassicGroup``):

* Phases: ``Empty -> PreparingRebalance -> CompletingRebalance -> Stable``, back to ``PreparingRebalance`` whenever
  membership or a member's protocols change, to ``Empty`` when the last member goes, and ``Dead`` once deleted.
* **Join.** A member without an id (JoinGroup v4+) gets one with MEMBER_ID_REQUIRED and becomes *pending* until it
  rejoins with it (or its session timeout passes). A static member (``group.instance.id``) needs no such step and
  a rejoin under the same instance id replaces the old member id, fencing the old one (FENCED_INSTANCE_ID). The join
  phase completes when every member has rejoined and no pending member is left, or when the rebalance timeout (the
  largest of the members') passes; then dynamic members that did not rejoin are dropped, the generation goes up,
  the protocol most members prefer among those all support is chosen, and every joined member is answered (the
  leader with everyone's metadata).
* **Initial delay.** The first rebalance of an empty group waits ``group.initial.rebalance.delay.ms`` so that
  members starting together land in one generation; each new member during the wait extends it by the same delay,
  up to the rebalance timeout. 0 (loosely's default) completes the join as soon as the first member arrives.
* **Sync.** Followers wait for the leader's SyncGroup; the leader's assignment is stored (:class:`StoreGroup`) and
  only then propagated, and the group becomes Stable. Members that have not sent SyncGroup within the rebalance
  timeout are removed and the group rebalances.
* **Liveness.** Heartbeats, offset commits, joins and syncs restart a member's session timer. A member whose timer
  runs out is removed, unless it is waiting in a join or sync (which keeps it alive), except for brand-new members,
  whose join gives up after ``new_member_join_timeout_ms`` (Kafka: 5 minutes).

Kafka leaves a superseded JoinGroup/SyncGroup unanswered; here it is answered with REBALANCE_IN_PROGRESS, so no
connection waits forever, and a removed member's waiting request is answered with UNKNOWN_MEMBER_ID.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final, NewType

from loosely.protocol.errors import ErrorCode, ProtocolError
from loosely.protocol.primitives import Reader

__all__ = [
    "GroupId",
    "GroupLimits",
    "Heartbeat",
    "HeartbeatResponse",
    "InstanceId",
    "Join",
    "JoinResponse",
    "JoinResponseMember",
    "Leave",
    "LeaveResponse",
    "Member",
    "MemberId",
    "OffsetCommitTouch",
    "Phase",
    "Protocol",
    "Rebalance",
    "Reply",
    "RequestId",
    "StoreGroup",
    "Stored",
    "Sync",
    "SyncResponse",
    "Tick",
    "describe_members",
    "next_deadline",
    "select_protocol",
    "step",
    "subscribed_topics",
    "validate_delete",
    "validate_offset_commit",
    "validate_offset_delete",
]

GroupId = NewType("GroupId", str)
MemberId = NewType("MemberId", str)
InstanceId = NewType("InstanceId", str)
RequestId = NewType("RequestId", int)

NO_MEMBER_ID: Final = MemberId("")


class Phase(enum.Enum):
    """ClassicGroupState; the values are the names DescribeGroups and ListGroups report."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


# Phases a rebalance may start from (ClassicGroupState.PREPARING_REBALANCE.validPreviousStates).
_CAN_REBALANCE: Final = frozenset({Phase.STABLE, Phase.COMPLETING_REBALANCE, Phase.EMPTY})


@dataclass(frozen=True, slots=True)
class GroupLimits:
    """Broker settings that shape every group (Kafka's names in comments)."""

    initial_rebalance_delay_ms: int = 0  # group.initial.rebalance.delay.ms (Kafka: 3000)
    new_member_join_timeout_ms: int = 300_000  # group.classic.new.member.join.timeout.ms
    members_max: int = 1_000  # group.max.size (Kafka: unbounded); a limit on everything


@dataclass(frozen=True, slots=True)
class Protocol:
    name: str
    metadata: bytes


@dataclass(frozen=True, slots=True)
class Member:
    member_id: MemberId
    instance_id: InstanceId | None
    client_id: str
    client_host: str
    protocol_type: str
    protocols: tuple[Protocol, ...]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    assignment: bytes = b""
    awaiting_join: RequestId | None = None
    awaiting_sync: RequestId | None = None
    is_new: bool = False
    heartbeat_deadline_ms: int | None = None

    def metadata(self, protocol: str | None) -> bytes:
        for p in self.protocols:
            if p.name == protocol:
                return p.metadata
        return b""

    @property
    def heartbeat_satisfied(self) -> bool:
        """A member waiting in a join or sync needs no heartbeat, unless it is new (its join may give up)."""
        return not self.is_new and (self.awaiting_join is not None or self.awaiting_sync is not None)


@dataclass(frozen=True, slots=True)
class InitialDelay:
    delay_ms: int
    remaining_ms: int
    new_member_added: bool = False


@dataclass(frozen=True, slots=True)
class Group:
    group_id: GroupId
    limits: GroupLimits = GroupLimits()
    phase: Phase = Phase.EMPTY
    previous_phase: Phase = Phase.DEAD
    generation: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: MemberId | None = None
    # Members in join order (the order a new leader is picked in). Mappings are never mutated, only replaced.
    members: Mapping[MemberId, Member] = field(default_factory=dict)
    pending_members: Mapping[MemberId, int] = field(default_factory=dict)  # member id -> give-up deadline
    pending_sync: frozenset[MemberId] = frozenset()
    join_deadline_ms: int | None = None
    initial_delay: InitialDelay | None = None
    sync_deadline_ms: int | None = None

    @property
    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    @property
    def all_members_joined(self) -> bool:
        return not self.pending_members and all(m.awaiting_join is not None for m in self.members.values())

    def static_member(self, instance_id: InstanceId) -> MemberId | None:
        for m in self.members.values():
            if m.instance_id == instance_id:
                return m.member_id
        return None


# --- events --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Join:
    request: RequestId
    member_id: MemberId  # NO_MEMBER_ID for a member without one yet
    instance_id: InstanceId | None
    client_id: str
    client_host: str
    protocol_type: str
    protocols: tuple[Protocol, ...]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    require_known_member_id: bool  # JoinGroup v4+
    supports_skip_assignment: bool  # JoinGroup v9+
    new_member_id: MemberId  # the id to hand out if this member needs one


@dataclass(frozen=True, slots=True)
class Sync:
    request: RequestId
    member_id: MemberId
    instance_id: InstanceId | None
    generation: int
    protocol_type: str | None
    protocol_name: str | None
    assignments: tuple[tuple[MemberId, bytes], ...]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    request: RequestId
    member_id: MemberId
    instance_id: InstanceId | None
    generation: int


@dataclass(frozen=True, slots=True)
class Leave:
    request: RequestId
    members: tuple[tuple[MemberId, InstanceId | None], ...]


@dataclass(frozen=True, slots=True)
class OffsetCommitTouch:
    """A member's accepted OffsetCommit keeps its session alive (Stable and PreparingRebalance only)."""

    member_id: MemberId


@dataclass(frozen=True, slots=True)
class Tick:
    """Deliver every timer due at ``now_ms``."""


@dataclass(frozen=True, slots=True)
class Rebalance:
    """Start a rebalance from outside: a group just converted back from the consumer protocol (KIP-848's downgrade),
    whose members must rejoin under the classic rules."""


@dataclass(frozen=True, slots=True)
class PropagateAssignment:
    generation: int
    assignments: Mapping[MemberId, bytes]


@dataclass(frozen=True, slots=True)
class StaticRejoin:
    """A static member replaced its member id in a Stable group; answer its join once that is stored."""

    generation: int
    request: RequestId
    new_member_id: MemberId
    old_member_id: MemberId
    old_protocols: tuple[Protocol, ...]
    old_session_timeout_ms: int
    old_rebalance_timeout_ms: int
    previous_leader: MemberId | None
    supports_skip_assignment: bool


@dataclass(frozen=True, slots=True)
class NothingAfterStore:
    pass


AfterStore = PropagateAssignment | StaticRejoin | NothingAfterStore


@dataclass(frozen=True, slots=True)
class Stored:
    """The outcome of a :class:`StoreGroup` effect, fed back by the shell."""

    then: AfterStore
    error: ErrorCode = ErrorCode.none


Event = Join | Sync | Heartbeat | Leave | OffsetCommitTouch | Tick | Stored | Rebalance

# --- responses and effects -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JoinResponseMember:
    member_id: MemberId
    instance_id: InstanceId | None
    metadata: bytes


@dataclass(frozen=True, slots=True)
class JoinResponse:
    error: ErrorCode
    member_id: str
    generation: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    members: tuple[JoinResponseMember, ...] = ()
    skip_assignment: bool = False


@dataclass(frozen=True, slots=True)
class SyncResponse:
    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass(frozen=True, slots=True)
class HeartbeatResponse:
    error: ErrorCode


@dataclass(frozen=True, slots=True)
class LeaveResponse:
    error: ErrorCode
    members: tuple[tuple[MemberId, InstanceId | None, ErrorCode], ...] = ()


Response = JoinResponse | SyncResponse | HeartbeatResponse | LeaveResponse


@dataclass(frozen=True, slots=True)
class Reply:
    request: RequestId
    response: Response


@dataclass(frozen=True, slots=True)
class StoreGroup:
    """Write the group's metadata record (with these assignments) to ``__consumer_offsets``, then feed back
    :class:`Stored` with ``then``."""

    assignments: Mapping[MemberId, bytes]
    then: AfterStore


Effect = Reply | StoreGroup

# --- the transition function ---------------------------------------------------------------------------------------


class _Builder:
    """Collects the next state and the effects of one step. Local to :func:`step`; never escapes it."""

    __slots__ = ("effects", "g", "now")

    def __init__(self, g: Group, now: int) -> None:
        self.g = g
        self.now = now
        self.effects: list[Effect] = []

    def reply(self, request: RequestId | None, response: Response) -> None:
        if request is not None:
            self.effects.append(Reply(request, response))

    def put_member(self, m: Member) -> None:
        members = dict(self.g.members)
        members[m.member_id] = m
        self.g = replace(self.g, members=members)

    def member(self, member_id: MemberId) -> Member:
        return self.g.members[member_id]

    def transition(self, phase: Phase) -> None:
        self.g = replace(self.g, previous_phase=self.g.phase, phase=phase)

    def reschedule_heartbeat(self, member_id: MemberId, timeout_ms: int | None = None) -> None:
        m = self.member(member_id)
        self.put_member(replace(m, heartbeat_deadline_ms=self.now + (timeout_ms or m.session_timeout_ms)))

    # -- membership

    def add_member(self, m: Member) -> None:
        g = self.g
        if not g.members:
            self.g = replace(g, protocol_type=m.protocol_type)
        pending = dict(self.g.pending_members)
        pending.pop(m.member_id, None)
        self.g = replace(self.g, pending_members=pending, leader=self.g.leader or m.member_id)
        self.put_member(m)

    def remove_member(self, member_id: MemberId) -> None:
        g = self.g
        gone = g.members.get(member_id)
        if gone is not None:
            # Whatever it still waits for is over.
            self.reply(gone.awaiting_join, JoinResponse(ErrorCode.unknown_member_id, NO_MEMBER_ID))
            self.reply(gone.awaiting_sync, SyncResponse(ErrorCode.unknown_member_id))
        members = {k: v for k, v in g.members.items() if k != member_id}
        pending = {k: v for k, v in g.pending_members.items() if k != member_id}
        leader = g.leader
        if leader == member_id:
            leader = next(iter(members), None)
        self.g = replace(
            g, members=members, pending_members=pending, leader=leader, pending_sync=g.pending_sync - {member_id}
        )

    def validate_member(self, member_id: MemberId, instance_id: InstanceId | None) -> ErrorCode:
        return _validate_member(self.g, member_id, instance_id)

    def supports(self, protocol_type: str, protocols: tuple[Protocol, ...]) -> bool:
        g = self.g
        names = {p.name for p in protocols}
        if g.phase is Phase.EMPTY:
            return bool(protocol_type) and bool(names)
        return g.protocol_type == protocol_type and bool(names & _common_protocols(g))

    # -- the rebalance protocol

    def maybe_prepare_rebalance_or_complete_join(self) -> None:
        if self.g.phase in _CAN_REBALANCE:
            self.prepare_rebalance()
        else:
            self.maybe_complete_join_phase()

    def maybe_complete_join_phase(self) -> None:
        g = self.g
        if g.phase is Phase.PREPARING_REBALANCE and g.previous_phase is not Phase.EMPTY and g.all_members_joined:
            self.complete_join()

    def prepare_rebalance(self) -> None:
        if self.g.phase is Phase.COMPLETING_REBALANCE:
            self.reset_and_propagate(ErrorCode.rebalance_in_progress)
        self.g = replace(self.g, pending_sync=frozenset(), sync_deadline_ms=None)
        initial = self.g.phase is Phase.EMPTY
        self.transition(Phase.PREPARING_REBALANCE)
        if initial:
            delay = self.g.limits.initial_rebalance_delay_ms
            remaining = max(self.g.rebalance_timeout_ms - delay, 0)
            self.g = replace(self.g, join_deadline_ms=self.now + delay, initial_delay=InitialDelay(delay, remaining))
        elif self.g.all_members_joined:
            self.complete_join()
        else:
            self.g = replace(self.g, join_deadline_ms=self.now + self.g.rebalance_timeout_ms, initial_delay=None)

    def complete_join(self) -> None:
        g = replace(self.g, join_deadline_ms=None, initial_delay=None)
        self.g = g
        for m in list(g.members.values()):
            if m.awaiting_join is None and m.instance_id is None:
                self.remove_member(m.member_id)
        g = self.g
        if g.phase is Phase.DEAD:
            return
        if g.members and not self.elect_joined_leader():
            # Nobody rejoined: wait another rebalance timeout for sessions to expire the silent ones.
            self.g = replace(self.g, join_deadline_ms=self.now + self.g.rebalance_timeout_ms)
            return
        g = self.g
        generation = g.generation + 1
        if not g.members:
            self.g = replace(g, generation=generation, protocol_name=None, pending_sync=frozenset())
            self.transition(Phase.EMPTY)
            self.effects.append(StoreGroup({}, NothingAfterStore()))
            return
        protocol = select_protocol(g.members.values())
        self.g = replace(g, generation=generation, protocol_name=protocol, pending_sync=frozenset(g.members))
        self.transition(Phase.COMPLETING_REBALANCE)
        g = self.g
        everyone = tuple(
            JoinResponseMember(m.member_id, m.instance_id, m.metadata(protocol)) for m in g.members.values()
        )
        for m in list(g.members.values()):
            self.reply(
                m.awaiting_join,
                JoinResponse(
                    ErrorCode.none,
                    m.member_id,
                    generation,
                    g.protocol_type,
                    protocol,
                    g.leader or "",
                    everyone if m.member_id == g.leader else (),
                ),
            )
            self.put_member(
                replace(m, awaiting_join=None, is_new=False, heartbeat_deadline_ms=self.now + m.session_timeout_ms)
            )
        self.g = replace(self.g, sync_deadline_ms=self.now + self.g.rebalance_timeout_ms)

    def elect_joined_leader(self) -> bool:
        g = self.g
        if g.leader is None:
            return False
        if g.members[g.leader].awaiting_join is not None:
            return True
        for m in g.members.values():
            if m.awaiting_join is not None:
                self.g = replace(g, leader=m.member_id)
                return True
        return False

    def reset_and_propagate(self, error: ErrorCode) -> None:
        for m in list(self.g.members.values()):
            self.put_member(replace(m, assignment=b""))
        self.propagate(error)

    def propagate(self, error: ErrorCode) -> None:
        g = self.g
        ok = error == ErrorCode.none
        for m in list(g.members.values()):
            if m.awaiting_sync is None:
                continue
            self.reply(
                m.awaiting_sync,
                SyncResponse(
                    error,
                    g.protocol_type if ok else None,
                    g.protocol_name if ok else None,
                    m.assignment,
                ),
            )
            self.put_member(replace(m, awaiting_sync=None, heartbeat_deadline_ms=self.now + m.session_timeout_ms))

    def await_join(self, m: Member, request: RequestId) -> Member:
        """The member's new JoinGroup supersedes any it still has open."""
        self.reply(m.awaiting_join, JoinResponse(ErrorCode.rebalance_in_progress, m.member_id))
        return replace(m, awaiting_join=request)

    def update_member(self, m: Member, ev: Join) -> None:
        m = self.await_join(m, ev.request)
        self.put_member(
            replace(
                m,
                protocols=ev.protocols,
                session_timeout_ms=ev.session_timeout_ms,
                rebalance_timeout_ms=ev.rebalance_timeout_ms,
            )
        )

    def current_generation_join_response(self, m: Member, *, with_members: bool) -> JoinResponse:
        g = self.g
        return JoinResponse(
            ErrorCode.none,
            m.member_id,
            g.generation,
            g.protocol_type,
            g.protocol_name,
            g.leader or "",
            tuple(
                JoinResponseMember(x.member_id, x.instance_id, x.metadata(g.protocol_name)) for x in g.members.values()
            )
            if with_members
            else (),
        )


def _validate_member(g: Group, member_id: MemberId, instance_id: InstanceId | None) -> ErrorCode:
    if instance_id is not None:
        existing = g.static_member(instance_id)
        if existing is None:
            return ErrorCode.unknown_member_id
        if existing != member_id:
            return ErrorCode.fenced_instance_id
    if member_id not in g.members:
        return ErrorCode.unknown_member_id
    return ErrorCode.none


def _common_protocols(g: Group) -> set[str]:
    members = list(g.members.values())
    if not members:
        return set()
    common = {p.name for p in members[0].protocols}
    for m in members[1:]:
        common &= {p.name for p in m.protocols}
    return common


def select_protocol(members: Iterable[Member]) -> str | None:
    """The protocol all members support that most of them list first among those (ties: the earliest member's)."""
    ms = list(members)
    if not ms:
        return None
    common = {p.name for p in ms[0].protocols}
    for m in ms[1:]:
        common &= {p.name for p in m.protocols}
    votes: dict[str, int] = {}
    for m in ms:
        for p in m.protocols:
            if p.name in common:
                votes[p.name] = votes.get(p.name, 0) + 1
                break
    if not votes:
        return None
    best = max(votes.values())
    return next(name for name, n in votes.items() if n == best)


def step(group: Group, event: Event, now_ms: int) -> tuple[Group, list[Effect]]:
    """Apply one event; returns the new state and what the shell must do (answer requests, store the group)."""
    b = _Builder(group, now_ms)
    match event:
        case Join():
            _join(b, event)
        case Sync():
            _sync(b, event)
        case Heartbeat():
            _heartbeat(b, event)
        case Leave():
            _leave(b, event)
        case OffsetCommitTouch():
            m = b.g.members.get(event.member_id)
            if m is not None and b.g.phase in (Phase.STABLE, Phase.PREPARING_REBALANCE):
                b.reschedule_heartbeat(m.member_id)
        case Tick():
            _tick(b)
        case Rebalance():
            if b.g.members:
                b.maybe_prepare_rebalance_or_complete_join()
        case Stored():
            _stored(b, event)
    return b.g, b.effects


def _join(b: _Builder, ev: Join) -> None:
    g = b.g
    if ev.member_id == NO_MEMBER_ID:
        if not _accepts_joining_member(g, ev.member_id):
            b.reply(ev.request, JoinResponse(ErrorCode.group_max_size_reached, NO_MEMBER_ID))
        elif g.phase is Phase.DEAD:
            b.reply(ev.request, JoinResponse(ErrorCode.coordinator_not_available, NO_MEMBER_ID))
        elif not b.supports(ev.protocol_type, ev.protocols):
            b.reply(ev.request, JoinResponse(ErrorCode.inconsistent_group_protocol, NO_MEMBER_ID))
        elif ev.instance_id is not None:
            existing = g.static_member(ev.instance_id)
            if existing is not None:
                _replace_static_member(b, ev, existing)
            else:
                _add_member_and_rebalance(b, ev, ev.new_member_id)
        elif ev.require_known_member_id:
            pending = dict(g.pending_members)
            pending[ev.new_member_id] = b.now + ev.session_timeout_ms
            b.g = replace(g, pending_members=pending)
            b.reply(ev.request, JoinResponse(ErrorCode.member_id_required, ev.new_member_id))
        else:
            _add_member_and_rebalance(b, ev, ev.new_member_id)
        return
    if not _accepts_joining_member(g, ev.member_id):
        b.reply(ev.request, JoinResponse(ErrorCode.group_max_size_reached, NO_MEMBER_ID))
        return
    if g.phase is Phase.DEAD:
        b.reply(ev.request, JoinResponse(ErrorCode.coordinator_not_available, ev.member_id))
        return
    if not b.supports(ev.protocol_type, ev.protocols):
        b.reply(ev.request, JoinResponse(ErrorCode.inconsistent_group_protocol, ev.member_id))
        return
    if ev.member_id in g.pending_members:
        _add_member_and_rebalance(b, ev, ev.member_id)
        return
    error = b.validate_member(ev.member_id, ev.instance_id)
    if error != ErrorCode.none:
        b.reply(ev.request, JoinResponse(error, ev.member_id))
        return
    m = b.member(ev.member_id)
    same = m.protocols == ev.protocols
    if g.phase is Phase.PREPARING_REBALANCE:
        b.update_member(m, ev)
        b.maybe_prepare_rebalance_or_complete_join()
    elif g.phase is Phase.COMPLETING_REBALANCE:
        if same:
            # A retry of a join whose answer got lost: answer it again for the current generation.
            b.reply(ev.request, b.current_generation_join_response(m, with_members=m.member_id == g.leader))
        else:
            b.update_member(m, ev)
            b.maybe_prepare_rebalance_or_complete_join()
    elif g.phase is Phase.STABLE:
        if m.member_id == g.leader or not same:
            # The leader rejoining asks for a new assignment (e.g. the topics' partitions changed).
            b.update_member(m, ev)
            b.maybe_prepare_rebalance_or_complete_join()
        else:
            b.reply(ev.request, b.current_generation_join_response(m, with_members=False))
    else:
        b.reply(ev.request, JoinResponse(ErrorCode.unknown_member_id, ev.member_id))


def _accepts_joining_member(g: Group, member_id: MemberId) -> bool:
    cap = g.limits.members_max
    if g.phase in (Phase.EMPTY, Phase.DEAD):
        return True
    if g.phase is Phase.PREPARING_REBALANCE:
        m = g.members.get(member_id)
        awaiting = sum(1 for x in g.members.values() if x.awaiting_join is not None)
        return (m is not None and m.awaiting_join is not None) or awaiting < cap
    return member_id in g.members or len(g.members) < cap


def _add_member_and_rebalance(b: _Builder, ev: Join, member_id: MemberId) -> None:
    g = b.g
    m = Member(
        member_id=member_id,
        instance_id=ev.instance_id,
        client_id=ev.client_id,
        client_host=ev.client_host,
        protocol_type=ev.protocol_type,
        protocols=ev.protocols,
        session_timeout_ms=ev.session_timeout_ms,
        rebalance_timeout_ms=ev.rebalance_timeout_ms,
        awaiting_join=ev.request,
        is_new=True,
        # A new member cannot heartbeat while its join is parked, so its join gives up after this long instead.
        heartbeat_deadline_ms=b.now + g.limits.new_member_join_timeout_ms,
    )
    if g.phase is Phase.PREPARING_REBALANCE and g.previous_phase is Phase.EMPTY and g.initial_delay is not None:
        b.g = replace(g, initial_delay=replace(g.initial_delay, new_member_added=True))
    b.add_member(m)
    b.maybe_prepare_rebalance_or_complete_join()


def _replace_static_member(b: _Builder, ev: Join, old_id: MemberId) -> None:
    old = b.member(old_id)
    previous_leader = b.g.leader
    # Fence whoever still waits under the old member id.
    b.reply(old.awaiting_join, JoinResponse(ErrorCode.fenced_instance_id, old_id))
    b.reply(old.awaiting_sync, SyncResponse(ErrorCode.fenced_instance_id))
    new = replace(old, member_id=ev.new_member_id, awaiting_join=None, awaiting_sync=None)
    _swap_member(b, old_id, new)
    b.reschedule_heartbeat(new.member_id)
    b.update_member(b.member(new.member_id), ev)
    g = b.g
    if g.phase is Phase.STABLE:
        if select_protocol(g.members.values()) == g.protocol_name:
            # Same protocol: no rebalance needed, just remember the new member id.
            b.effects.append(
                StoreGroup(
                    {m.member_id: m.assignment for m in g.members.values()},
                    StaticRejoin(
                        g.generation,
                        ev.request,
                        new.member_id,
                        old_id,
                        old.protocols,
                        old.session_timeout_ms,
                        old.rebalance_timeout_ms,
                        previous_leader,
                        ev.supports_skip_assignment,
                    ),
                )
            )
        else:
            b.maybe_prepare_rebalance_or_complete_join()
    elif g.phase is Phase.COMPLETING_REBALANCE:
        # The leader may already be assigning to the old member id: start over.
        b.prepare_rebalance()
    else:
        b.maybe_complete_join_phase()


def _swap_member(b: _Builder, old_id: MemberId, new: Member) -> None:
    g = b.g
    members = {(new.member_id if k == old_id else k): (new if k == old_id else v) for k, v in g.members.items()}
    b.g = replace(
        g,
        members=members,
        leader=new.member_id if g.leader == old_id else g.leader,
        pending_sync=(g.pending_sync - {old_id}) | ({new.member_id} if old_id in g.pending_sync else set()),
    )


def _sync(b: _Builder, ev: Sync) -> None:
    g = b.g
    if g.phase is Phase.EMPTY:
        b.reply(ev.request, SyncResponse(ErrorCode.unknown_member_id))
        return
    if g.phase is Phase.DEAD:
        b.reply(ev.request, SyncResponse(ErrorCode.coordinator_not_available))
        return
    error = b.validate_member(ev.member_id, ev.instance_id)
    if error == ErrorCode.none and ev.generation != g.generation:
        error = ErrorCode.illegal_generation
    if error == ErrorCode.none and (
        (ev.protocol_type is not None and ev.protocol_type != g.protocol_type)
        or (ev.protocol_name is not None and ev.protocol_name != g.protocol_name)
    ):
        error = ErrorCode.inconsistent_group_protocol
    if error != ErrorCode.none:
        b.reply(ev.request, SyncResponse(error))
        return
    if g.phase is Phase.PREPARING_REBALANCE:
        b.reply(ev.request, SyncResponse(ErrorCode.rebalance_in_progress))
        return
    m = b.member(ev.member_id)
    pending_sync = g.pending_sync - {ev.member_id}
    b.g = replace(g, pending_sync=pending_sync, sync_deadline_ms=g.sync_deadline_ms if pending_sync else None)
    if g.phase is Phase.STABLE:
        b.reply(ev.request, SyncResponse(ErrorCode.none, g.protocol_type, g.protocol_name, m.assignment))
        return
    # CompletingRebalance: wait for the leader's assignment.
    b.reply(m.awaiting_sync, SyncResponse(ErrorCode.rebalance_in_progress))
    b.put_member(replace(m, awaiting_sync=ev.request))
    if ev.member_id == g.leader:
        given = dict(ev.assignments)
        assignments = {mid: given.get(mid, b"") for mid in b.g.members}
        b.effects.append(StoreGroup(assignments, PropagateAssignment(g.generation, assignments)))


def _stored(b: _Builder, ev: Stored) -> None:
    g = b.g
    then = ev.then
    if isinstance(then, PropagateAssignment):
        if g.phase is not Phase.COMPLETING_REBALANCE or g.generation != then.generation:
            return
        if ev.error != ErrorCode.none:
            b.reset_and_propagate(ev.error)
            b.maybe_prepare_rebalance_or_complete_join()
            return
        for m in list(g.members.values()):
            b.put_member(replace(m, assignment=then.assignments.get(m.member_id, b"")))
        b.propagate(ErrorCode.none)
        b.transition(Phase.STABLE)
    elif isinstance(then, StaticRejoin):
        found = g.members.get(then.new_member_id)
        if found is None or found.awaiting_join != then.request:
            return
        m = found
        if ev.error != ErrorCode.none:
            # Undo the replacement; the old member id stays the valid one.
            reverted = replace(
                m,
                member_id=then.old_member_id,
                awaiting_join=None,
                protocols=then.old_protocols,
                session_timeout_ms=then.old_session_timeout_ms,
                rebalance_timeout_ms=then.old_rebalance_timeout_ms,
            )
            _swap_member(b, then.new_member_id, reverted)
            b.reschedule_heartbeat(then.old_member_id)
            b.reply(
                then.request,
                JoinResponse(
                    ev.error,
                    NO_MEMBER_ID,
                    g.generation,
                    g.protocol_type,
                    g.protocol_name,
                    then.previous_leader or "",
                ),
            )
            return
        b.put_member(replace(m, awaiting_join=None))
        is_leader = g.leader == m.member_id
        if then.supports_skip_assignment:
            # The leader learns who is in the group but must not compute a new assignment.
            resp = replace(b.current_generation_join_response(m, with_members=is_leader), skip_assignment=is_leader)
        else:
            resp = replace(b.current_generation_join_response(m, with_members=False), leader=then.previous_leader or "")
        b.reply(then.request, resp)


def _heartbeat(b: _Builder, ev: Heartbeat) -> None:
    g = b.g
    if g.phase is Phase.DEAD:
        b.reply(ev.request, HeartbeatResponse(ErrorCode.coordinator_not_available))
        return
    error = b.validate_member(ev.member_id, ev.instance_id)
    if error == ErrorCode.none and ev.generation != g.generation:
        error = ErrorCode.illegal_generation
    if error == ErrorCode.none and g.phase is Phase.EMPTY:
        error = ErrorCode.unknown_member_id
    if error != ErrorCode.none:
        b.reply(ev.request, HeartbeatResponse(error))
        return
    b.reschedule_heartbeat(ev.member_id)
    if g.phase is Phase.PREPARING_REBALANCE:
        b.reply(ev.request, HeartbeatResponse(ErrorCode.rebalance_in_progress))
    else:
        b.reply(ev.request, HeartbeatResponse(ErrorCode.none))


def _leave(b: _Builder, ev: Leave) -> None:
    if b.g.phase is Phase.DEAD:
        b.reply(ev.request, LeaveResponse(ErrorCode.coordinator_not_available))
        return
    results: list[tuple[MemberId, InstanceId | None, ErrorCode]] = []
    left = False
    for member_id, instance_id in ev.members:
        g = b.g
        if member_id == NO_MEMBER_ID:
            # Administrative removal of a static member by instance id.
            existing = g.static_member(instance_id) if instance_id is not None else None
            if existing is None:
                results.append((member_id, instance_id, ErrorCode.unknown_member_id))
                continue
            b.remove_member(existing)
        elif member_id in g.pending_members:
            b.remove_member(member_id)
        else:
            error = b.validate_member(member_id, instance_id)
            if error != ErrorCode.none:
                results.append((member_id, instance_id, error))
                continue
            b.remove_member(member_id)
        results.append((member_id, instance_id, ErrorCode.none))
        left = True
    if left:
        if b.g.phase in (Phase.STABLE, Phase.COMPLETING_REBALANCE):
            b.maybe_prepare_rebalance_or_complete_join()
        elif b.g.phase is Phase.PREPARING_REBALANCE:
            b.maybe_complete_join_phase()
    b.reply(ev.request, LeaveResponse(ErrorCode.none, tuple(results)))


# --- timers --------------------------------------------------------------------------------------------------------


def next_deadline(g: Group) -> int | None:
    """The earliest timer of the group, or None when nothing is scheduled."""
    candidates = [m.heartbeat_deadline_ms for m in g.members.values() if m.heartbeat_deadline_ms is not None]
    candidates += list(g.pending_members.values())
    if g.join_deadline_ms is not None:
        candidates.append(g.join_deadline_ms)
    if g.sync_deadline_ms is not None:
        candidates.append(g.sync_deadline_ms)
    return min(candidates, default=None)


def _tick(b: _Builder) -> None:
    """Fire the timers that were due when the tick began, earliest first; timers they set wait for the next tick."""
    g = b.g
    now = b.now
    due: list[tuple[int, int, str]] = []
    for m in g.members.values():
        if m.heartbeat_deadline_ms is not None and m.heartbeat_deadline_ms <= now:
            due.append((m.heartbeat_deadline_ms, 0, m.member_id))
    for mid, deadline in g.pending_members.items():
        if deadline <= now:
            due.append((deadline, 1, mid))
    if g.join_deadline_ms is not None and g.join_deadline_ms <= now:
        due.append((g.join_deadline_ms, 2, ""))
    if g.sync_deadline_ms is not None and g.sync_deadline_ms <= now:
        due.append((g.sync_deadline_ms, 3, ""))
    for deadline, kind, key in sorted(due):
        g = b.g
        if kind == 0:
            expiring = g.members.get(MemberId(key))
            if expiring is not None and expiring.heartbeat_deadline_ms == deadline:
                _expire_heartbeat(b, expiring)
        elif kind == 1:
            if g.pending_members.get(MemberId(key)) == deadline:
                b.remove_member(MemberId(key))
                if b.g.phase is Phase.PREPARING_REBALANCE and b.g.all_members_joined:
                    b.complete_join()
        elif kind == 2:
            if g.join_deadline_ms == deadline:
                _join_deadline(b)
        elif g.sync_deadline_ms == deadline:
            _expire_pending_sync(b)


def _expire_heartbeat(b: _Builder, m: Member) -> None:
    if b.g.phase is Phase.DEAD:
        return
    if m.heartbeat_satisfied:
        # Waiting in a join or sync counts as alive; the timer is re-armed when that wait ends.
        b.put_member(replace(m, heartbeat_deadline_ms=None))
        return
    b.remove_member(m.member_id)
    g = b.g
    if g.phase in (Phase.STABLE, Phase.COMPLETING_REBALANCE):
        b.maybe_prepare_rebalance_or_complete_join()
    elif g.phase is Phase.PREPARING_REBALANCE and g.all_members_joined:
        b.complete_join()


def _join_deadline(b: _Builder) -> None:
    g = b.g
    delay = g.initial_delay
    if delay is not None and delay.new_member_added and delay.remaining_ms != 0:
        # Members are still arriving for the first generation: wait a little longer.
        wait = min(delay.delay_ms, delay.remaining_ms)
        b.g = replace(
            g,
            join_deadline_ms=b.now + wait,
            initial_delay=InitialDelay(wait, max(delay.remaining_ms - delay.delay_ms, 0)),
        )
        return
    b.complete_join()


def _expire_pending_sync(b: _Builder) -> None:
    g = b.g
    b.g = replace(g, sync_deadline_ms=None)
    if g.phase not in (Phase.COMPLETING_REBALANCE, Phase.STABLE) or not g.pending_sync:
        return
    for mid in sorted(g.pending_sync):
        b.remove_member(mid)
    b.prepare_rebalance()


# --- questions the other APIs ask ----------------------------------------------------------------------------------


def validate_offset_commit(
    g: Group | None, member_id: str, instance_id: str | None, generation: int, *, transactional: bool
) -> ErrorCode:
    """Whether this (Txn)OffsetCommit may write (ClassicGroup.validateOffsetCommit). ``g`` None: no such group."""
    if g is None:
        # A commit outside group management creates a "simple" group; anything else refers to a group we lost.
        return ErrorCode.none if generation < 0 else ErrorCode.illegal_generation
    if g.phase is Phase.DEAD:
        return ErrorCode.coordinator_not_available
    if generation < 0 and g.phase is Phase.EMPTY:
        return ErrorCode.none
    if generation >= 0 or member_id or instance_id is not None:
        error = _validate_member(g, MemberId(member_id), InstanceId(instance_id) if instance_id is not None else None)
        if error != ErrorCode.none:
            return error
        if generation != g.generation:
            return ErrorCode.illegal_generation
    elif not transactional and g.phase is not Phase.EMPTY:
        return ErrorCode.unknown_member_id
    if not transactional and g.phase is Phase.COMPLETING_REBALANCE:
        return ErrorCode.rebalance_in_progress
    return ErrorCode.none


def validate_delete(g: Group | None) -> ErrorCode:
    """DeleteGroups: only an existing, empty group may go."""
    if g is None or g.phase is Phase.DEAD:
        return ErrorCode.group_id_not_found
    if g.phase is not Phase.EMPTY:
        return ErrorCode.non_empty_group
    return ErrorCode.none


def validate_offset_delete(g: Group | None) -> ErrorCode:
    """OffsetDelete: the group must exist; a non-empty one only if it uses the consumer protocol."""
    if g is None or g.phase is Phase.DEAD:
        return ErrorCode.group_id_not_found
    if g.phase is not Phase.EMPTY and g.protocol_type != "consumer":
        return ErrorCode.non_empty_group
    return ErrorCode.none


def subscribed_topics(g: Group) -> frozenset[str] | None:
    """Topics the members subscribe to, from ConsumerProtocolSubscription metadata; None if unknown.

    Every version of that format starts with ``int16 version | int32 count | count x (int16 length | UTF-8)``.
    """
    if g.protocol_type != "consumer":
        return None
    if not g.members:
        return frozenset()
    if g.protocol_name is None:
        return None
    topics: set[str] = set()
    for m in g.members.values():
        r = Reader(m.metadata(g.protocol_name))
        try:
            r.i16()  # version
            count = r.array_length()
            if count < 0:
                return None
            for _ in range(count):
                topic = r.nullable_string()
                if topic is None:
                    return None
                topics.add(topic)
        except ProtocolError:
            return None
    return frozenset(topics)


def describe_members(g: Group) -> tuple[tuple[Member, bytes, bytes], ...]:
    """``(member, metadata, assignment)`` as DescribeGroups reports them: both empty unless the group is Stable."""
    stable = g.phase is Phase.STABLE
    return tuple(
        (m, m.metadata(g.protocol_name) if stable else b"", m.assignment if stable else b"") for m in g.members.values()
    )
