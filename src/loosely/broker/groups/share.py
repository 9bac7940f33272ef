"""Share groups (KIP-932, "queues for Kafka"): membership, assignment and share-partition record states, pure.

Theory of operation
-------------------
A share group's members all read the same partitions; the broker, not a partition's ownership, keeps two members
from processing one record: each record a member fetches is *acquired* by it for a lock duration
(``share.record.lock.duration.ms``), and the member then *acknowledges* it: ACCEPT (done), RELEASE (give it back for
another delivery) or REJECT (done, unprocessable). A lock that runs out, or a member that leaves, releases what it
holds. Each acquisition counts a delivery; a record released with ``share.delivery.count.limit`` deliveries behind it
is *archived* instead, never delivered again.

**Membership** (:class:`ShareGroup`, ShareGroupHeartbeat) is KIP-848's without revocation: a member joins with epoch
0, leaves with -1, and is told its partitions (moving to the group epoch) at its next heartbeat. Every change of
members, subscriptions or subscribed topics' partitions bumps the group epoch and reassigns: with no more members
than partitions, partition *i* (sorted by topic name, then index) goes to member *i mod M* (members sorted by id);
with more members, member *j* gets partition *j mod P*, so every partition is read by someone and several members
share one.

**A share-partition** (:class:`SharePartition`) keeps the records in flight between its *start offset* (SPSO: below
it every record is done) and its *end offset* (the next offset never delivered). Each in-flight record is AVAILABLE,
ACQUIRED (by a member, until a deadline), ACKNOWLEDGED or ARCHIVED; the start offset moves over done records at the
front. At most ``share.partition.max.record.locks`` offsets are in flight, which bounds the state. The first fetch
sets the start offset from ``share.auto.offset.reset`` (the shell reads the log for it). In a ``read_committed``
group the records of aborted transactions are archived as they are first reached, never delivered.

Nothing here does I/O or reads a clock: the shell (:mod:`.share_shell`) passes ``now_ms`` and persists.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from loosely.protocol.errors import ErrorCode

__all__ = [
    "AckType",
    "Acquired",
    "RecordState",
    "ShareGroup",
    "ShareHeartbeatResult",
    "ShareMember",
    "SharePartition",
    "assign",
    "heartbeat",
    "member_from_json",
    "member_to_json",
]

TopicPartitionId = tuple[str, int]  # (topic name, partition)

LEAVE_EPOCH: Final = -1
JOIN_EPOCH: Final = 0


class RecordState(enum.IntEnum):
    """Kafka's RecordState values (they are what DescribeShareGroupOffsets and the state records carry)."""

    AVAILABLE = 0
    ACQUIRED = 1
    ACKNOWLEDGED = 2
    ARCHIVED = 4


class AckType(enum.IntEnum):
    """ShareFetch / ShareAcknowledge acknowledge types."""

    GAP = 0
    ACCEPT = 1
    RELEASE = 2
    REJECT = 3
    RENEW = 4


@dataclass(slots=True)
class InFlight:
    state: RecordState
    delivery_count: int
    member_id: str = ""
    deadline_ms: int = 0


@dataclass(frozen=True, slots=True)
class Acquired:
    first_offset: int
    last_offset: int
    delivery_count: int


_NEVER = 2**63 - 1
_ACK_TYPES = frozenset(int(t) for t in AckType)


class SharePartition:
    """One share group's view of one partition: the start offset and the records in flight."""

    __slots__ = ("_available", "_expiry_from", "end_offset", "records", "start_offset")

    def __init__(self, start_offset: int, records: Mapping[int, InFlight] | None = None,
                 end_offset: int | None = None) -> None:
        self.start_offset = start_offset
        self.records: dict[int, InFlight] = dict(records or {})
        self.end_offset = max([start_offset, *(o + 1 for o in self.records)]) if end_offset is None else end_offset
        assert self.end_offset >= self.start_offset
        # Kept beside the records so that a fetch does not walk every record in flight: how many are AVAILABLE
        # (none, mostly: only a release or a lock running out makes one), and a time before which no lock runs out.
        self._available = sum(r.state == RecordState.AVAILABLE for r in self.records.values())
        self._expiry_from = min((r.deadline_ms for r in self.records.values() if r.state == RecordState.ACQUIRED),
                                default=_NEVER)

    def _release(self, r: InFlight, delivery_limit: int) -> None:
        r.state = RecordState.ARCHIVED if r.delivery_count >= delivery_limit else RecordState.AVAILABLE
        r.member_id, r.deadline_ms = "", 0
        self._available += r.state == RecordState.AVAILABLE

    def _advance(self) -> None:
        while self.start_offset < self.end_offset:
            r = self.records.get(self.start_offset)
            if r is not None and r.state not in (RecordState.ACKNOWLEDGED, RecordState.ARCHIVED):
                break
            self.records.pop(self.start_offset, None)
            self.start_offset += 1

    def expire(self, now_ms: int, delivery_limit: int) -> bool:
        """Release every lock that has run out; whether any did."""
        if now_ms < self._expiry_from:
            return False
        changed = False
        self._expiry_from = _NEVER
        for r in self.records.values():
            if r.state == RecordState.ACQUIRED:
                if r.deadline_ms <= now_ms:
                    self._release(r, delivery_limit)
                    changed = True
                else:
                    self._expiry_from = min(self._expiry_from, r.deadline_ms)
        if changed:
            self._advance()
        return changed

    def release_member(self, member_id: str, delivery_limit: int) -> bool:
        """Release what ``member_id`` holds (it left the group); whether it held anything."""
        changed = False
        for r in self.records.values():
            if r.state == RecordState.ACQUIRED and r.member_id == member_id:
                self._release(r, delivery_limit)
                changed = True
        if changed:
            self._advance()
        return changed

    def move_start(self, log_start_offset: int) -> None:
        """Records deleted from the log (retention, DeleteRecords) are no longer in flight."""
        if log_start_offset > self.start_offset:
            for o in [o for o in self.records if o < log_start_offset]:
                self._available -= self.records.pop(o).state == RecordState.AVAILABLE
            self.start_offset = log_start_offset
            self.end_offset = max(self.end_offset, log_start_offset)

    def next_fetch_offset(self) -> int:
        """The first offset a fetch could acquire: the first AVAILABLE record in flight, else the end offset."""
        if not self._available:
            return self.end_offset
        return min(o for o, r in self.records.items() if r.state == RecordState.AVAILABLE)

    def acquire(
        self, member_id: str, *, read_to: int, records_max: int, locks_max: int, lock_ms: int, now_ms: int,
        aborted: Sequence[tuple[int, int]] = (), batch_ends: Sequence[int] = (),
    ) -> list[Acquired]:
        """Acquire up to ``records_max`` records below ``read_to`` (the offset after the batches read from the log):
        AVAILABLE ones in flight first, then new ones from the end offset while fewer than ``locks_max`` offsets are
        in flight. Returns the acquired ranges, each of one delivery count.

        ``batch_ends``: the last offsets of the batches read, ascending. New records are then acquired whole
        batches at a time, ``records_max`` and ``locks_max`` checked only where a batch begins, as Kafka's default
        (batch-optimized) acquisition does: the client receives whole batches anyway, and ShareFetch's MaxRecords
        "can be exceeded for alignment of batch boundaries". Without them, every record is a batch of its own.

        ``aborted``: ``(first, last)`` offsets of the aborted transactions' batches among those read (read_committed
        groups). New records in them are archived as they are reached, never delivered, as Kafka 4.4 does."""
        got: list[tuple[int, int]] = []
        skipped = False
        available = sorted(o for o, r in self.records.items()
                           if r.state == RecordState.AVAILABLE and o < read_to) if self._available else []
        for o in available:
            if len(got) >= records_max:
                break
            r = self.records[o]
            r.state, r.delivery_count, r.member_id, r.deadline_ms = (
                RecordState.ACQUIRED, r.delivery_count + 1, member_id, now_ms + lock_ms)
            self._available -= 1
            got.append((o, r.delivery_count))
        self._expiry_from = min(self._expiry_from, now_ms + lock_ms)
        ends = iter(e for e in batch_ends if e >= self.end_offset)
        batch_last = self.end_offset - 1  # the last offset of the batch being acquired
        while self.end_offset < read_to:
            o = self.end_offset
            if o > batch_last:  # a batch begins
                if len(got) >= records_max or o - self.start_offset >= locks_max:
                    break
                batch_last = next(ends, o)
            self.end_offset += 1
            if aborted and any(first <= o <= last for first, last in aborted):
                self.records[o] = InFlight(RecordState.ARCHIVED, 1)
                skipped = True
                continue
            self.records[o] = InFlight(RecordState.ACQUIRED, 1, member_id, now_ms + lock_ms)
            got.append((o, 1))
        if skipped:
            self._advance()
        out: list[Acquired] = []
        for o, n in sorted(got):
            if out and out[-1].last_offset == o - 1 and out[-1].delivery_count == n:
                out[-1] = Acquired(out[-1].first_offset, o, n)
            else:
                out.append(Acquired(o, o, n))
        return out

    def acknowledge(
        self, member_id: str, batches: Iterable[tuple[int, int, tuple[int, ...]]], *, delivery_limit: int,
        lock_ms: int, now_ms: int, renew_allowed: bool,
    ) -> tuple[ErrorCode, str | None, bool]:
        """Apply ``(first, last, types)`` batches (one type for the whole range, or one per offset) all or nothing:
        ``(error, message, released)``; every offset must be ACQUIRED by ``member_id``. ``released``: some record
        became AVAILABLE again (a waiting fetch may take it)."""
        plan: list[tuple[InFlight, int]] = []
        for first, last, types in batches:
            if last < first or not types or (len(types) != 1 and len(types) != last - first + 1):
                return ErrorCode.invalid_request, "Invalid acknowledgement batch.", False
            for i, o in enumerate(range(first, last + 1)):
                t = types[0] if len(types) == 1 else types[i]
                if t not in _ACK_TYPES:
                    return ErrorCode.invalid_request, f"Invalid acknowledge type: {t}", False
                if t == AckType.RENEW and not renew_allowed:
                    return ErrorCode.invalid_request, "Renew acknowledgements are not enabled.", False
                r = self.records.get(o)
                if o < self.start_offset:  # done with already: nothing to do, no error (as Kafka answers)
                    continue
                if o >= self.end_offset:  # never delivered (Kafka: the batch is not in its cache)
                    return (ErrorCode.invalid_request,
                            "Batch record not found. The request batch offsets are not found in the cache.", False)
                if r is None or r.state != RecordState.ACQUIRED or r.member_id != member_id:
                    return (ErrorCode.invalid_record_state,
                            "The record state is invalid. The acknowledgement of delivery could not be completed.",
                            False)
                plan.append((r, t))
        released = False
        for r, t in plan:
            if t == AckType.ACCEPT:
                r.state, r.member_id, r.deadline_ms = RecordState.ACKNOWLEDGED, "", 0
            elif t in (AckType.REJECT, AckType.GAP):
                r.state, r.member_id, r.deadline_ms = RecordState.ARCHIVED, "", 0
            elif t == AckType.RELEASE:
                self._release(r, delivery_limit)
                released = released or r.state == RecordState.AVAILABLE
            else:  # RENEW
                r.deadline_ms = now_ms + lock_ms
        self._advance()
        return ErrorCode.none, None, released

    def next_deadline_ms(self) -> int | None:
        deadlines = [r.deadline_ms for r in self.records.values() if r.state == RecordState.ACQUIRED]
        return min(deadlines) if deadlines else None

    def to_json(self) -> dict[str, object]:
        """What a restart keeps: acquired records come back AVAILABLE with their delivery count, as in Kafka (an
        acquisition is not written; the delivery count already is)."""
        return {
            "start": self.start_offset,
            "end": self.end_offset,
            "records": [[o, int(RecordState.AVAILABLE if r.state == RecordState.ACQUIRED else r.state),
                         r.delivery_count] for o, r in sorted(self.records.items())],
        }

    @staticmethod
    def from_json(doc: Mapping[str, object]) -> SharePartition:
        raw = doc["records"]
        assert isinstance(raw, list)
        records = {int(o): InFlight(RecordState(int(s)), int(n)) for o, s, n in raw}
        start, end = doc["start"], doc["end"]
        assert isinstance(start, int) and isinstance(end, int)
        if any(not start <= o < end for o in records):
            raise ValueError(f"a record in flight outside [{start}, {end})")
        return SharePartition(start, records, end)


@dataclass(slots=True)
class ShareMember:
    member_id: str
    member_epoch: int
    client_id: str
    client_host: str
    rack_id: str | None
    subscribed: frozenset[str]
    assigned: frozenset[TopicPartitionId] = frozenset()  # what the member was last told, at its member epoch
    target: frozenset[TopicPartitionId] = frozenset()  # what it is told at its next heartbeat, at the group epoch
    deadline_ms: int = 0  # the session: a member not heard from by then is removed


def member_to_json(m: ShareMember) -> dict[str, object]:
    """What a restart keeps of a member (Kafka's ShareGroupMemberMetadata and CurrentMemberAssignment records);
    its session starts again at load."""
    return {"epoch": m.member_epoch, "client_id": m.client_id, "client_host": m.client_host, "rack_id": m.rack_id,
            "subscribed": sorted(m.subscribed), "assigned": sorted(m.assigned), "target": sorted(m.target)}


def member_from_json(member_id: str, doc: Mapping[str, object], deadline_ms: int) -> ShareMember:
    def tps(key: str) -> frozenset[TopicPartitionId]:
        raw = doc[key]
        assert isinstance(raw, list)
        return frozenset((str(t), int(p)) for t, p in raw)

    subscribed, epoch, rack = doc["subscribed"], doc["epoch"], doc["rack_id"]
    assert isinstance(subscribed, list) and isinstance(epoch, int) and (rack is None or isinstance(rack, str))
    return ShareMember(member_id, epoch, str(doc["client_id"]), str(doc["client_host"]), rack,
                       frozenset(str(t) for t in subscribed), tps("assigned"), tps("target"), deadline_ms)


@dataclass(slots=True)
class ShareGroup:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ShareMember] = field(default_factory=dict)
    # every share-partition this group has started reading, kept when members come and go
    partitions: dict[TopicPartitionId, SharePartition] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return "Stable" if self.members else "Empty"

    def subscribed(self) -> frozenset[str]:
        return frozenset(t for m in self.members.values() for t in m.subscribed)


def assign(members: Iterable[str], partitions: Iterable[TopicPartitionId]) -> dict[str, frozenset[TopicPartitionId]]:
    """Every partition to at least one member (see the module's header).

    >>> sorted(assign(["a", "b", "c"], [("t", 0)]).items())
    [('a', frozenset({('t', 0)})), ('b', frozenset({('t', 0)})), ('c', frozenset({('t', 0)}))]
    >>> sorted((m, sorted(ps)) for m, ps in assign(["a", "b"], [("t", 0), ("t", 1), ("t", 2)]).items())
    [('a', [('t', 0), ('t', 2)]), ('b', [('t', 1)])]
    """
    ms, ps = sorted(members), sorted(partitions)
    out: dict[str, set[TopicPartitionId]] = {m: set() for m in ms}
    if not ms or not ps:
        return {m: frozenset(v) for m, v in out.items()}
    if len(ms) <= len(ps):
        for i, p in enumerate(ps):
            out[ms[i % len(ms)]].add(p)
    else:
        for j, m in enumerate(ms):
            out[m].add(ps[j % len(ps)])
    return {m: frozenset(v) for m, v in out.items()}


@dataclass(frozen=True, slots=True)
class ShareHeartbeatResult:
    error: ErrorCode
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    assignment: frozenset[TopicPartitionId] | None = None  # None: unchanged, not sent
    left: bool = False  # the member left (its records are to be released)


def _reassign(g: ShareGroup, partitions_of: Mapping[str, int], *, force: bool) -> None:
    """Reassign, bumping the group epoch, if the members changed (``force``) or their subscriptions now cover
    other partitions."""
    wanted = {m.member_id: frozenset((t, p) for t in m.subscribed for p in range(partitions_of.get(t, 0)))
              for m in g.members.values()}
    # each member is assigned only partitions of topics it subscribes to
    everything = sorted({tp for tps in wanted.values() for tp in tps})
    by_topic: dict[str, list[TopicPartitionId]] = {}
    for tp in everything:
        by_topic.setdefault(tp[0], []).append(tp)
    target: dict[str, set[TopicPartitionId]] = {m: set() for m in g.members}
    for topic, tps in by_topic.items():
        subscribers = [m for m, w in wanted.items() if any(tp[0] == topic for tp in w)]
        for m, got in assign(subscribers, tps).items():
            target[m] |= got
    if not force and all(frozenset(target[m]) == g.members[m].target for m in g.members):
        return
    g.group_epoch += 1
    g.assignment_epoch = g.group_epoch
    for m, chosen in target.items():
        g.members[m].target = frozenset(chosen)


def heartbeat(
    g: ShareGroup, *, member_id: str, member_epoch: int, rack_id: str | None, subscribed: frozenset[str] | None,
    client_id: str, client_host: str, partitions_of: Mapping[str, int], session_ms: int, now_ms: int,
) -> ShareHeartbeatResult:
    """One ShareGroupHeartbeat: join (epoch 0), stay (the member's epoch), leave (-1). ``partitions_of``: the
    partition count of each existing topic."""
    if not member_id:
        return ShareHeartbeatResult(ErrorCode.invalid_request, "MemberId can't be empty.")
    if member_epoch == LEAVE_EPOCH:
        if member_id not in g.members:
            return ShareHeartbeatResult(ErrorCode.unknown_member_id,
                                        f"Member {member_id} is not a member of group {g.group_id}.")
        del g.members[member_id]
        _reassign(g, partitions_of, force=True)
        return ShareHeartbeatResult(ErrorCode.none, member_id=member_id, member_epoch=LEAVE_EPOCH, left=True)
    m = g.members.get(member_id)
    changed = False
    if member_epoch == JOIN_EPOCH:
        if m is None and not subscribed:
            return ShareHeartbeatResult(ErrorCode.invalid_request,
                                        "SubscribedTopicNames must be set in first request.")
        if m is None:
            m = g.members[member_id] = ShareMember(member_id, 0, client_id, client_host, rack_id,
                                                   subscribed or frozenset())
            changed = True
    elif m is None:
        return ShareHeartbeatResult(ErrorCode.unknown_member_id,
                                    f"Member {member_id} is not a member of group {g.group_id}.")
    elif member_epoch != m.member_epoch:
        return ShareHeartbeatResult(
            ErrorCode.fenced_member_epoch,
            f"The share group member has a smaller member epoch ({member_epoch}) than the one known by the group "
            f"coordinator ({m.member_epoch}). The member must abandon all its partitions and rejoin.")
    if subscribed is not None and subscribed != m.subscribed:
        m.subscribed = subscribed
        changed = True
    if rack_id is not None:
        m.rack_id = rack_id
    m.deadline_ms = now_ms + session_ms
    _reassign(g, partitions_of, force=changed)
    # the member moves to the group epoch, and is told its partitions, only now: a member that has not heartbeated
    # since others joined still heartbeats at the epoch it was last told, and that is its epoch
    send = m.member_epoch != g.group_epoch or member_epoch == JOIN_EPOCH
    m.member_epoch, m.assigned = g.group_epoch, m.target
    return ShareHeartbeatResult(ErrorCode.none, member_id=member_id, member_epoch=m.member_epoch,
                                assignment=m.assigned if send else None)
