"""KIP-848 consumer group state in ``__consumer_offsets``, in Kafka's own record schemas, so membership survives a
restart: a member's heartbeat with its id and epoch is accepted after it, and the group epoch goes on.

Theory of operation
-------------------
Kafka keeps a consumer group as a handful of records per group and per member; loosely writes the same ones.
:func:`changes` compares a group before and after a step and returns only the records whose value changed (a
heartbeat that changes nothing writes nothing), tombstones for members that left, and, when the group goes away
(deleted, expired, converted back to classic), tombstones for all of it. :func:`replay` folds records read back
into :class:`LoadedGroup` values, and :func:`rebuild` turns one into a
:class:`~loosely.broker.groups.consumer.ConsumerGroup` whose members' session timers start over.

Keys (:mod:`loosely.broker.groups.records`) are ``int16 type | string group [| string member]``; every value is
``int16 version (0)`` then a flexible body (compact strings and arrays, UUIDs as 16 bytes, tagged fields)::

    3 ConsumerGroupMetadataValue          int32 epoch
    5 ConsumerGroupMemberMetadataValue    nullable instanceId | nullable rackId | clientId | clientHost
                                          | [subscribedTopicName] | nullable subscribedTopicRegex
                                          | int32 rebalanceTimeoutMs | nullable serverAssignor
                                          | tag 0: ClassicMemberMetadata {int32 sessionTimeoutMs
                                                   | [name | bytes metadata]}   (classic members only)
    6 ConsumerGroupTargetAssignmentMetadataValue  int32 assignmentEpoch
    7 ConsumerGroupTargetAssignmentMemberValue    [uuid topicId | [int32 partition]]
    8 ConsumerGroupCurrentMemberAssignmentValue   int32 memberEpoch | int32 previousMemberEpoch | int8 state
                                          | [uuid topicId | [int32 partition]] assigned
                                          | [uuid topicId | [int32 partition]] pendingRevocation

Kafka before 4.1 also wrote ConsumerGroupPartitionMetadata (4); loosely recomputes the subscribed topics from the
broker's catalog when it loads, so it neither writes nor needs it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from loosely.broker.groups.consumer import (
    ClassicMetadata,
    ConsumerGroup,
    ConsumerGroupLimits,
    ConsumerMember,
    MemberState,
    TopicInfo,
    subscription,
)
from loosely.broker.groups.records import ConsumerKey, encode_consumer_key
from loosely.protocol.errors import CorruptRecordError
from loosely.protocol.primitives import Reader, Writer

__all__ = ["GROUP", "LoadedGroup", "changes", "rebuild", "replay"]

GROUP: Final = 3
MEMBER: Final = 5
TARGET_EPOCH: Final = 6
TARGET: Final = 7
CURRENT: Final = 8
_VERSION: Final = 0
_CLASSIC_TAG: Final = 0
_ASSIGNMENT_EPOCHS_TAG: Final = 0  # TopicPartitions.AssignmentEpochs (Kafka 4.4)
_STATE_CODES: Final = {MemberState.STABLE: 0, MemberState.UNREVOKED_PARTITIONS: 1, MemberState.UNRELEASED_PARTITIONS: 2}

TP = tuple[uuid.UUID, int]
Record = tuple[bytes, bytes | None]


@dataclass(frozen=True, slots=True)
class _Current:
    member_epoch: int
    previous_member_epoch: int
    state: MemberState
    assigned: frozenset[TP]
    pending_revocation: frozenset[TP]
    partition_epochs: Mapping[TP, int]


@dataclass(slots=True)
class LoadedGroup:
    """What replay found of one group, before it is rebuilt."""

    epoch: int | None = None
    assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)  # from member metadata, current not yet in
    targets: dict[str, frozenset[TP]] = field(default_factory=dict)
    currents: dict[str, _Current] = field(default_factory=dict)


# --- values --------------------------------------------------------------------------------------------------------


def _tps(w: Writer, tps: frozenset[TP], epochs: Mapping[TP, int] | None = None) -> None:
    """A TopicPartitions array; with ``epochs``, each topic's AssignmentEpochs (tag 0, one per partition)."""
    by_topic: dict[uuid.UUID, list[int]] = {}
    for tid, p in tps:
        by_topic.setdefault(tid, []).append(p)
    w.array_length(len(by_topic), compact=True)
    for tid in sorted(by_topic, key=str):
        partitions = sorted(by_topic[tid])
        w.raw(tid.bytes).array_length(len(partitions), compact=True)
        for p in partitions:
            w.i32(p)
        if epochs is None:
            w.no_tagged_fields()
            continue
        tagged = Writer().array_length(len(partitions), compact=True)
        for p in partitions:
            tagged.i32(epochs[(tid, p)])
        body = tagged.done()
        w.uvarint(1).uvarint(_ASSIGNMENT_EPOCHS_TAG).uvarint(len(body)).raw(body)


def _read_tps(r: Reader) -> frozenset[TP]:
    return frozenset(_read_tps_with_epochs(r))


def _read_tps_with_epochs(r: Reader) -> dict[TP, int | None]:
    """A TopicPartitions array: each partition with its AssignmentEpochs entry (None where Kafka wrote none)."""
    out: dict[TP, int | None] = {}
    for _ in range(max(r.array_length(compact=True), 0)):
        tid = uuid.UUID(bytes=r.take(16))
        partitions = [r.i32() for _ in range(max(r.array_length(compact=True), 0))]
        epochs: list[int] = []
        for _ in range(r.uvarint()):
            tag = r.uvarint()
            body = r.take(r.uvarint())
            if tag == _ASSIGNMENT_EPOCHS_TAG:
                t = Reader(body)
                epochs = [t.i32() for _ in range(max(t.array_length(compact=True), 0))]
        if len(epochs) != len(partitions):
            epochs = []  # as Kafka: without one epoch per partition, the member's epoch stands for all
        for i, p in enumerate(partitions):
            out[(tid, p)] = epochs[i] if epochs else None
    return out


def _epoch_value(epoch: int) -> bytes:
    return Writer().i16(_VERSION).i32(epoch).no_tagged_fields().done()


def _member_value(m: ConsumerMember) -> bytes:
    w = Writer().i16(_VERSION).string(m.instance_id, compact=True).string(m.rack_id, compact=True)
    w.string(m.client_id, compact=True).string(m.client_host, compact=True)
    w.array_length(len(m.subscribed), compact=True)
    for t in sorted(m.subscribed):
        w.string(t, compact=True)
    w.string(m.regex, compact=True).i32(m.rebalance_timeout_ms).string(m.assignor, compact=True)
    if m.classic is None:
        return w.no_tagged_fields().done()
    inner = Writer().i32(m.classic.session_timeout_ms).array_length(len(m.classic.protocols), compact=True)
    for name, metadata in m.classic.protocols:
        inner.string(name, compact=True).bytes_(metadata, compact=True).no_tagged_fields()
    body = inner.no_tagged_fields().done()
    return w.uvarint(1).uvarint(_CLASSIC_TAG).uvarint(len(body)).raw(body).done()


def _read_member(member_id: str, data: bytes) -> ConsumerMember:
    r = Reader(data)
    _version(r)
    instance_id = r.nullable_string(compact=True)
    rack_id = r.nullable_string(compact=True)
    client_id = r.string(compact=True)
    client_host = r.string(compact=True)
    subscribed = frozenset(r.string(compact=True) for _ in range(max(r.array_length(compact=True), 0)))
    regex = r.nullable_string(compact=True)
    rebalance_timeout_ms = r.i32()
    assignor = r.nullable_string(compact=True)
    classic = None
    for _ in range(r.uvarint()):
        tag = r.uvarint()
        body = r.take(r.uvarint())
        if tag == _CLASSIC_TAG:
            c = Reader(body)
            session_ms = c.i32()
            protocols = []
            for _ in range(max(c.array_length(compact=True), 0)):
                protocols.append((c.string(compact=True), c.bytes_(compact=True)))
                c.skip_tagged_fields()
            c.skip_tagged_fields()
            classic = ClassicMetadata(session_ms, tuple(protocols))
    r.end()
    return ConsumerMember(
        member_id=member_id,
        instance_id=instance_id,
        rack_id=rack_id,
        client_id=client_id,
        client_host=client_host,
        subscribed=subscribed,
        rebalance_timeout_ms=rebalance_timeout_ms,
        assignor=assignor,
        session_deadline_ms=0,
        regex=regex,
        classic=classic,
    )


def _target_value(tps: frozenset[TP]) -> bytes:
    w = Writer().i16(_VERSION)
    _tps(w, tps)
    return w.no_tagged_fields().done()


def _current_value(m: ConsumerMember) -> bytes:
    w = Writer().i16(_VERSION).i32(m.member_epoch).i32(m.previous_member_epoch).i8(_STATE_CODES[m.state])
    epochs = {tp: m.partition_epochs.get(tp, m.member_epoch) for tp in m.assigned | m.pending_revocation}
    _tps(w, m.assigned, epochs)
    _tps(w, m.pending_revocation, epochs)
    return w.no_tagged_fields().done()


def _read_current(data: bytes) -> _Current:
    r = Reader(data)
    _version(r)
    epoch, previous, code = r.i32(), r.i32(), r.i8()
    states = {v: k for k, v in _STATE_CODES.items()}
    if code not in states:
        raise CorruptRecordError(f"unknown member state {code}")
    assigned, pending = _read_tps_with_epochs(r), _read_tps_with_epochs(r)
    r.skip_tagged_fields()
    r.end()
    epochs = {tp: epoch if e is None else e for tp, e in (assigned | pending).items()}
    return _Current(epoch, previous, states[code], frozenset(assigned), frozenset(pending), epochs)


def _version(r: Reader) -> None:
    version = r.i16()
    if version != _VERSION:
        raise CorruptRecordError(f"unknown consumer group record value version {version}")


def _read_epoch(data: bytes) -> int:
    r = Reader(data)
    _version(r)
    epoch = r.i32()
    r.skip_tagged_fields()
    r.end()
    return epoch


# --- what changed --------------------------------------------------------------------------------------------------


def changes(group_id: str, before: ConsumerGroup | None, after: ConsumerGroup | None) -> list[Record]:
    """The records that take what is stored of ``before`` to ``after`` (None: the group does not exist), in Kafka's
    order: member metadata, group epoch, target, target epoch, current assignments; tombstones the other way."""

    def key(kind: int, mid: str | None = None) -> bytes:
        return encode_consumer_key(ConsumerKey(kind, group_id, mid))

    out: list[Record] = []
    gone = [mid for mid in (before.members if before is not None else {}) if after is None or mid not in after.members]
    for mid in gone:
        out += [(key(CURRENT, mid), None), (key(TARGET, mid), None), (key(MEMBER, mid), None)]
    if after is None:
        if before is not None:
            out += [(key(TARGET_EPOCH), None), (key(GROUP), None)]
        return out
    for mid, m in after.members.items():
        old = before.members.get(mid) if before is not None else None
        if old is None or _member_value(old) != _member_value(m):
            out.append((key(MEMBER, mid), _member_value(m)))
    if before is None or before.group_epoch != after.group_epoch:
        out.append((key(GROUP), _epoch_value(after.group_epoch)))
    for mid in after.members:
        tps = after.target.get(mid, frozenset())
        if before is None or mid not in before.members or before.target.get(mid, frozenset()) != tps:
            out.append((key(TARGET, mid), _target_value(tps)))
    if before is None or before.assignment_epoch != after.assignment_epoch:
        out.append((key(TARGET_EPOCH), _epoch_value(after.assignment_epoch)))
    for mid, m in after.members.items():
        old = before.members.get(mid) if before is not None else None
        if old is None or _current_value(old) != _current_value(m):
            out.append((key(CURRENT, mid), _current_value(m)))
    return out


# --- loading -------------------------------------------------------------------------------------------------------


def replay(groups: dict[str, LoadedGroup], k: ConsumerKey, value: bytes | None) -> None:
    """Fold one record into ``groups``. Raises CorruptRecordError for a value it cannot read."""
    if k.key_type == GROUP and value is None:
        groups.pop(k.group, None)
        return
    g = groups.setdefault(k.group, LoadedGroup())
    mid = k.member_id or ""
    if k.key_type == GROUP:
        assert value is not None
        g.epoch = _read_epoch(value)
    elif k.key_type == TARGET_EPOCH:
        g.assignment_epoch = _read_epoch(value) if value is not None else 0
    elif k.key_type == MEMBER:
        if value is None:
            g.members.pop(mid, None)
        else:
            g.members[mid] = _read_member(mid, value)
    elif k.key_type == TARGET:
        if value is None:
            g.targets.pop(mid, None)
        else:
            r = Reader(value)
            _version(r)
            g.targets[mid] = _read_tps(r)
    elif k.key_type == CURRENT:
        if value is None:
            g.currents.pop(mid, None)
        else:
            g.currents[mid] = _read_current(value)


def rebuild(
    group_id: str, loaded: LoadedGroup, limits: ConsumerGroupLimits, topics: Mapping[str, TopicInfo], now_ms: int
) -> ConsumerGroup | None:
    """The group as it was stored, each member's session starting over at ``now_ms``; None if it has no epoch."""
    if loaded.epoch is None:
        return None
    members: dict[str, ConsumerMember] = {}
    for mid, stored in loaded.members.items():
        c = loaded.currents.get(mid)
        session_ms = stored.classic.session_timeout_ms if stored.classic is not None else limits.session_timeout_ms
        m = replace(stored, session_deadline_ms=now_ms + session_ms)
        if c is not None:
            m = replace(
                m,
                member_epoch=c.member_epoch,
                previous_member_epoch=c.previous_member_epoch,
                state=c.state,
                assigned=c.assigned,
                pending_revocation=c.pending_revocation,
                partition_epochs=c.partition_epochs,
                # A revocation in progress gets a full rebalance timeout again, as Kafka reschedules it on load.
                revocation_deadline_ms=now_ms + m.rebalance_timeout_ms
                if c.state is MemberState.UNREVOKED_PARTITIONS
                else None,
            )
        members[mid] = m
    names = {t for m in members.values() for t in subscription(m, topics)}
    return ConsumerGroup(
        group_id,
        limits,
        group_epoch=loaded.epoch,
        assignment_epoch=loaded.assignment_epoch,
        members=members,
        target={mid: tps for mid, tps in loaded.targets.items() if mid in members},
        topics={n: topics[n] for n in sorted(names) if n in topics},
    )
