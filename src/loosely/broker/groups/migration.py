"""Online migration between the classic and the KIP-848 consumer group protocol, as pure conversions.

Theory of operation
-------------------
Kafka 4 converts a group in place (``group.consumer.migration.policy``, default ``bidirectional``):

* **Upgrade.** A ConsumerGroupHeartbeat for a classic group that has members and uses the consumer embedded protocol
  (protocol type ``consumer``) turns it into a consumer group: :func:`to_consumer` keeps the generation as the group
  epoch and the target's epoch, and each classic member as a classic member of the new group at that epoch, STABLE,
  owning what its last SyncGroup gave it and subscribed to what its JoinGroup metadata says. The heartbeat that
  triggered it then joins as usual, bumps the epoch, and the new target takes partitions from the classic members,
  who hear REBALANCE_IN_PROGRESS on their next heartbeat and rejoin. A classic group that cannot be converted (the
  policy says no, another protocol type, unreadable metadata) answers that heartbeat GROUP_ID_NOT_FOUND.
* **Downgrade.** When the last consumer-protocol member leaves (or is fenced, or its session ends) and classic
  members remain, :func:`downgrade_due` says so and :func:`to_classic` builds the classic group: generation = the
  group epoch before the leave, each remaining member with the protocols it joined with and its target assignment
  serialized in its own subscription's version. The shell then starts a rebalance, as Kafka does, so the members
  rejoin under the classic rules.

Committed offsets belong to the group id, not to either protocol, and stay where they are.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace

from loosely.broker.groups import classic
from loosely.broker.groups.consumer import (
    ClassicMetadata,
    ConsumerGroup,
    ConsumerGroupLimits,
    ConsumerMember,
    MemberState,
    TopicInfo,
)
from loosely.broker.groups.embedded import decode_assignment, decode_subscription, encode_assignment
from loosely.protocol.errors import ProtocolError

__all__ = ["can_downgrade", "can_upgrade", "downgrade_due", "to_classic", "to_consumer"]

CONSUMER_PROTOCOL_TYPE = "consumer"


def can_upgrade(policy: str) -> bool:
    return policy in ("bidirectional", "upgrade")


def can_downgrade(policy: str) -> bool:
    return policy in ("bidirectional", "downgrade")


def to_consumer(
    g: classic.Group, topics: Mapping[str, TopicInfo], limits: ConsumerGroupLimits, now_ms: int
) -> ConsumerGroup | None:
    """The consumer group a classic group with members becomes; None when it cannot (Kafka: GROUP_ID_NOT_FOUND).

    ``topics`` are the broker's topics by name (partitions of topics that are gone are dropped)."""
    if g.protocol_type != CONSUMER_PROTOCOL_TYPE or not g.members or g.protocol_name is None:
        return None
    if len(g.members) > limits.members_max:
        return None
    members: dict[str, ConsumerMember] = {}
    target: dict[str, frozenset[tuple[uuid.UUID, int]]] = {}
    for m in g.members.values():
        try:
            sub = decode_subscription(m.metadata(g.protocol_name))
            assigned = frozenset((topics[t].topic_id, p) for t, p in decode_assignment(m.assignment) if t in topics)
        except ProtocolError:
            return None
        members[m.member_id] = ConsumerMember(
            member_id=m.member_id,
            instance_id=m.instance_id,
            rack_id=sub.rack_id,
            client_id=m.client_id,
            client_host=m.client_host,
            subscribed=sub.topics,
            rebalance_timeout_ms=m.rebalance_timeout_ms,
            assignor=None,
            session_deadline_ms=now_ms + m.session_timeout_ms,
            member_epoch=g.generation,
            previous_member_epoch=g.generation,
            state=MemberState.STABLE,
            assigned=assigned,
            partition_epochs=dict.fromkeys(assigned, g.generation),
            classic=ClassicMetadata(m.session_timeout_ms, tuple((p.name, p.metadata) for p in m.protocols)),
        )
        target[m.member_id] = assigned
    names = {t for m in members.values() for t in m.subscribed}
    return ConsumerGroup(
        g.group_id,
        limits,
        group_epoch=g.generation,
        assignment_epoch=g.generation,
        members=members,
        target=target,
        topics={n: topics[n] for n in sorted(names) if n in topics},
    )


def downgrade_due(before: ConsumerGroup, after: ConsumerGroup) -> bool:
    """Whether a change (members leaving) took the last consumer-protocol member away and left classic ones."""
    left_modern = any(m.classic is None for mid, m in before.members.items() if mid not in after.members)
    return left_modern and bool(after.members) and all(m.classic is not None for m in after.members.values())


def to_classic(
    before: ConsumerGroup,
    after: ConsumerGroup,
    names: Mapping[uuid.UUID, str],
    limits: classic.GroupLimits,
    now_ms: int,
) -> classic.Group | None:
    """The classic group (Stable, at the epoch ``before`` the leave) that ``after``'s classic members form; the caller
    starts its rebalance. None when a member's metadata cannot be read (the group stays a consumer group)."""
    if len(after.members) > limits.members_max:
        return None
    members: dict[classic.MemberId, classic.Member] = {}
    for m in after.members.values():
        assert m.classic is not None
        mid = classic.MemberId(m.member_id)
        members[mid] = classic.Member(
            member_id=mid,
            instance_id=classic.InstanceId(m.instance_id) if m.instance_id is not None else None,
            client_id=m.client_id,
            client_host=m.client_host,
            protocol_type=CONSUMER_PROTOCOL_TYPE,
            protocols=tuple(classic.Protocol(n, md) for n, md in m.classic.protocols),
            session_timeout_ms=m.classic.session_timeout_ms,
            rebalance_timeout_ms=m.rebalance_timeout_ms,
            heartbeat_deadline_ms=now_ms + m.classic.session_timeout_ms,
        )
    protocol = classic.select_protocol(members.values())
    if protocol is None:
        return None
    for mid, cm in list(members.items()):
        metadata = cm.metadata(protocol)
        try:
            version = decode_subscription(metadata).version
        except ProtocolError:
            return None
        tps = after.target.get(mid, frozenset())
        assignment = encode_assignment(version, ((names[t], p) for t, p in tps if t in names))
        members[mid] = replace(cm, assignment=assignment)
    return classic.Group(
        classic.GroupId(after.group_id),
        limits,
        phase=classic.Phase.STABLE,
        generation=before.group_epoch,
        protocol_type=CONSUMER_PROTOCOL_TYPE,
        protocol_name=protocol,
        leader=next(iter(members)),
        members=members,
    )
