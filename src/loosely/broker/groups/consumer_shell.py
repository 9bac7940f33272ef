"""The asyncio side of KIP-848 consumer groups: one :class:`~loosely.broker.groups.consumer.ConsumerGroup` per id,
the broker's topics handed to each heartbeat, and one timer per group for session and revocation deadlines.

A group's configs (``consumer.session.timeout.ms``, ``consumer.heartbeat.interval.ms``, set with
IncrementalAlterConfigs on the GROUP resource; :mod:`loosely.broker.group_configs`) replace the broker's values in
its limits from its next heartbeat on, as in Kafka, where the coordinator reads them at each heartbeat.

Heartbeats are answered at once (nothing is parked), so this is only state, a clock and timers; the
:class:`~loosely.broker.groups.coordinator.GroupCoordinator` owns it and settles which protocol a group id uses.
Every change of a group goes through :meth:`ConsumerGroups._apply`: first ``persist(group_id, before, after)``
writes what changed to ``__consumer_offsets`` (a failed write raises LogError and changes nothing, so a member is
never told what a restart would forget), then ``on_change(group_id, before, after)`` lets the coordinator convert
the group back to classic when the last consumer-protocol member has left. Classic members of a consumer group
(JoinGroup, SyncGroup, Heartbeat, LeaveGroup) come through the ``classic_*`` methods.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from loosely.broker._shell import Timers
from loosely.broker.context import BrokerContext
from loosely.broker.groups.consumer import (
    ClassicJoin,
    ClassicMetadata,
    ConsumerGroup,
    ConsumerGroupLimits,
    ConsumerHeartbeat,
    ConsumerHeartbeatResponse,
    ConsumerMember,
    ConsumerTick,
    TopicInfo,
    classic_heartbeat,
    classic_join,
    classic_leave,
    classic_sync,
    next_deadline,
    step,
    subscription,
    validate_heartbeat,
)
from loosely.broker.groups.store import store_error
from loosely.protocol.errors import ErrorCode
from loosely.storage.log import LogError

__all__ = ["ChangeListener", "ConsumerGroups"]

R = TypeVar("R")
ChangeListener = Callable[[str, ConsumerGroup, ConsumerGroup], None]

log = logging.getLogger("loosely.broker.groups")


@dataclass(slots=True)
class _Entry:
    state: ConsumerGroup
    empty_since_ms: int  # wall clock; offsets of an empty group expire counting from here


class ConsumerGroups:
    def __init__(self, ctx: BrokerContext, limits: ConsumerGroupLimits) -> None:
        self.ctx = ctx
        self.limits = limits
        self.groups: dict[str, _Entry] = {}
        self._timers: Timers[str] = Timers(self._on_timer)
        self.rebalances_total = 0
        self.on_change: ChangeListener | None = None
        self.persist: ChangeListener | None = None

    def limits_of(self, group_id: str) -> ConsumerGroupLimits:
        """The broker's limits with the group's own configs over them."""
        own = self.ctx.group_configs.of(group_id) if self.ctx.group_configs is not None else {}
        return dataclasses.replace(
            self.limits,
            session_timeout_ms=int(own.get("consumer.session.timeout.ms", self.limits.session_timeout_ms)),
            heartbeat_interval_ms=int(own.get("consumer.heartbeat.interval.ms", self.limits.heartbeat_interval_ms)),
        )

    def adopt(self, group: ConsumerGroup, empty_since_ms: int) -> None:
        """Take over a group converted from a classic one (or loaded from ``__consumer_offsets``)."""
        self.groups[group.group_id] = _Entry(group, empty_since_ms)
        self._schedule(group.group_id)

    def get(self, group_id: str) -> ConsumerGroup | None:
        entry = self.groups.get(group_id)
        return entry.state if entry is not None else None

    def empty_since(self, group_id: str) -> int:
        return self.groups[group_id].empty_since_ms

    def drop(self, group_id: str) -> None:
        self.groups.pop(group_id, None)
        self._timers.set(group_id, None)

    def stop(self) -> None:
        self._timers.cancel_all()

    def topics(self) -> dict[str, TopicInfo]:
        return {t.name: TopicInfo(t.topic_id, t.partitions) for t in self.ctx.logs if not t.internal}

    def subscribed_topics(self, g: ConsumerGroup) -> frozenset[str]:
        topics = self.topics()
        return frozenset(t for m in g.members.values() for t in subscription(m, topics))

    def topic_names(self) -> dict[uuid.UUID, str]:
        return {t.topic_id: t.name for t in self.ctx.logs}

    def heartbeat(
        self,
        group_id: str,
        *,
        member_id: str,
        member_epoch: int,
        instance_id: str | None,
        rack_id: str | None,
        rebalance_timeout_ms: int,
        subscribed: frozenset[str] | None,
        regex: str | None,
        assignor: str | None,
        owned: frozenset[tuple[uuid.UUID, int]] | None,
        client_id: str,
        client_host: str,
        claim: Callable[[], ErrorCode] | None = None,
    ) -> ConsumerHeartbeatResponse:
        """``claim``: asked once the request is found well formed, before the group is looked up (the coordinator
        converting a classic group of that id); an error it returns is the answer."""
        event = ConsumerHeartbeat(
            member_id=member_id or str(uuid.uuid4()),  # v0: the coordinator names new members
            member_epoch=member_epoch,
            instance_id=instance_id,
            rack_id=rack_id,
            rebalance_timeout_ms=rebalance_timeout_ms,
            subscribed=subscribed,
            regex=regex,
            assignor=assignor,
            owned=owned,
            client_id=client_id,
            client_host=client_host,
            topics=self.topics(),
        )
        invalid = validate_heartbeat(event)
        if invalid is not None:
            return invalid
        if claim is not None and (code := claim()) != ErrorCode.none:
            return ConsumerHeartbeatResponse(code, message=f"Group {group_id} is not a consumer group.")
        # Only a join (epoch 0) creates a group: a member of a group this broker does not know hears
        # GROUP_ID_NOT_FOUND, as from Kafka, and leaves no empty group behind.
        entry = self.groups.get(group_id)
        if entry is None and member_epoch != 0:
            return ConsumerHeartbeatResponse(ErrorCode.group_id_not_found, member_epoch=0,
                                             message=f"Consumer group {group_id} not found.")
        if entry is None:
            entry = _Entry(ConsumerGroup(group_id, self.limits), self.ctx.clock.now_ms())
            self.groups[group_id] = entry
        limits = self.limits_of(group_id)
        if entry.state.limits != limits:
            entry.state = dataclasses.replace(entry.state, limits=limits)
        try:
            response = self._apply(group_id, lambda g, now: step(g, event, now))
        except LogError as e:
            log.warning("storing consumer group %s failed: %s", group_id, e)
            return ConsumerHeartbeatResponse(store_error(e))
        assert response is not None
        return response

    # --- classic members ---------------------------------------------------------------------------------------

    def classic_join(
        self,
        group_id: str,
        *,
        member_id: str,
        instance_id: str | None,
        rack_id: str | None,
        client_id: str,
        client_host: str,
        rebalance_timeout_ms: int,
        classic: ClassicMetadata,
        subscribed: frozenset[str],
        owned: Iterable[tuple[str, int]],
        named_by_us: bool,
    ) -> ConsumerMember | ErrorCode:
        topics = self.topics()
        ids = frozenset((topics[t].topic_id, p) for t, p in owned if t in topics)
        event = ClassicJoin(
            member_id,
            instance_id,
            rack_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            classic,
            subscribed,
            ids,
            topics,
            named_by_us,
        )
        return self._apply(group_id, lambda g, now: classic_join(self._refreshed(g), event, now))

    def classic_sync(
        self, group_id: str, member_id: str, instance_id: str | None, generation: int
    ) -> ConsumerMember | ErrorCode:
        return self._apply(group_id, lambda g, now: classic_sync(g, member_id, instance_id, generation, now))

    def classic_heartbeat(self, group_id: str, member_id: str, instance_id: str | None, generation: int) -> ErrorCode:
        return self._apply(group_id, lambda g, now: classic_heartbeat(g, member_id, instance_id, generation, now))

    def classic_leave(
        self, group_id: str, members: Iterable[tuple[str, str | None]]
    ) -> list[tuple[str, str | None, ErrorCode]]:
        who = list(members)
        return self._apply(group_id, lambda g, now: classic_leave(g, who))

    def _refreshed(self, g: ConsumerGroup) -> ConsumerGroup:
        limits = self.limits_of(g.group_id)
        return g if g.limits == limits else dataclasses.replace(g, limits=limits)

    # --- the one place a group changes ---------------------------------------------------------------------

    def _apply(self, group_id: str, change: Callable[[ConsumerGroup, int], tuple[ConsumerGroup, R]]) -> R:
        entry = self.groups[group_id]
        before = entry.state
        state, result = change(before, self.ctx.clock.monotonic_ms())
        if state is not before and self.persist is not None:
            self.persist(group_id, before, state)
        if state.group_epoch != before.group_epoch:
            self.rebalances_total += 1
        if before.members and not state.members:
            entry.empty_since_ms = self.ctx.clock.now_ms()
        entry.state = state
        self._schedule(group_id)
        if self.on_change is not None and state is not before:
            self.on_change(group_id, before, state)
        return result

    def _schedule(self, group_id: str) -> None:
        entry = self.groups.get(group_id)
        due = next_deadline(entry.state) if entry is not None else None
        self._timers.set(group_id, None if due is None else due - self.ctx.clock.monotonic_ms())

    def _on_timer(self, group_id: str) -> None:
        if group_id in self.groups:
            try:
                self._apply(group_id, lambda g, now: step(g, ConsumerTick(), now))
            except Exception:
                log.exception("consumer group %s timer failed", group_id)
                self._schedule(group_id)  # try again at the same deadline

    def tick_now(self) -> None:
        for gid in list(self.groups):
            self._on_timer(gid)
