"""The group coordinator: the asyncio shell around :mod:`loosely.broker.groups.classic` and the offset store.

Theory of operation
-------------------
Every group is a :class:`~loosely.broker.groups.classic.Group` value. A request becomes an event; :meth:`_run`
feeds it to :func:`~loosely.broker.groups.classic.step` with the monotonic clock, keeps the new state, and carries
out the effects in order: a ``Reply`` completes the future the request's handler awaits (JoinGroup and SyncGroup
may wait for other members), a ``StoreGroup`` writes the group's metadata record to ``__consumer_offsets`` and
feeds the outcome straight back as a ``Stored`` event. Then one timer per group is set for the state's next
deadline; when it fires, a ``Tick`` event delivers every timer that is due. All of this runs on the event loop
thread, one event at a time, so no locks are needed.

A group id is classic (here) or a KIP-848 consumer group
(:class:`~loosely.broker.groups.consumer_shell.ConsumerGroups`), never both. :mod:`loosely.broker.groups.migration`
converts one into the other online: a classic group when a ConsumerGroupHeartbeat arrives
(:meth:`GroupCoordinator.claim_for_consumer_protocol`), a consumer group when its last consumer-protocol member
leaves (:meth:`GroupCoordinator._consumer_changed`). Meanwhile JoinGroup, SyncGroup, Heartbeat and LeaveGroup of a
consumer group's classic members go to the consumer group.

Offsets live in an :class:`~loosely.broker.groups.store.OffsetStore`; commits are validated against the group's
membership (generation, member id) first. Offsets of empty groups expire after ``offsets.retention.ms`` (checked
every ``offsets.retention.check.interval.ms``), and an empty group whose offsets are all gone is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from loosely.broker._shell import Timers, Waiting
from loosely.broker.context import BrokerContext
from loosely.broker.groups import consumer, consumer_records, migration
from loosely.broker.groups.classic import (
    Effect,
    Event,
    Group,
    GroupId,
    GroupLimits,
    Heartbeat,
    HeartbeatResponse,
    InstanceId,
    Join,
    JoinResponse,
    Leave,
    LeaveResponse,
    Member,
    MemberId,
    OffsetCommitTouch,
    Phase,
    Protocol,
    Rebalance,
    Reply,
    RequestId,
    Response,
    Stored,
    StoreGroup,
    Sync,
    SyncResponse,
    Tick,
    next_deadline,
    step,
    subscribed_topics,
    validate_delete,
    validate_offset_commit,
    validate_offset_delete,
)
from loosely.broker.groups.consumer import ClassicMetadata, ConsumerGroup, ConsumerGroupLimits, ConsumerMember
from loosely.broker.groups.consumer_shell import ConsumerGroups
from loosely.broker.groups.embedded import decode_subscription, encode_assignment, subscription_version
from loosely.broker.groups.records import GroupValue, MemberValue, OffsetValue
from loosely.broker.groups.store import OffsetStore, is_expired, store_error
from loosely.broker.groups.streams import StreamsGroupLimits
from loosely.broker.groups.streams import validate_offset_commit as validate_streams_commit
from loosely.broker.groups.streams_shell import StreamsGroups
from loosely.broker.producers import ProducerStateManager
from loosely.protocol.errors import ErrorCode, ProtocolError
from loosely.protocol.names import TopicPartition
from loosely.storage.log import LogError

__all__ = ["CommitRequest", "GroupCoordinator", "GroupStatistics", "group_coordinator"]

log = logging.getLogger("loosely.broker.groups")

SERVICE: Final = "groups"


@dataclass(slots=True)
class _Entry:
    state: Group
    phase_since_ms: int  # wall clock: Kafka's currentStateTimestamp (offset expiry counts from becoming Empty)


@dataclass(frozen=True, slots=True)
class CommitRequest:
    """One partition of an (Txn)OffsetCommit."""

    topic: str
    partition: int
    offset: int
    leader_epoch: int
    metadata: str | None


@dataclass(frozen=True, slots=True)
class GroupStatistics:
    groups: int
    members: int
    offsets: int
    rebalances_total: int
    pending_requests: int


@dataclass(slots=True)
class _Counters:
    rebalances: int = 0


class GroupCoordinator:
    """Started by the broker (:mod:`loosely.broker.extensions`); handlers reach it with :func:`group_coordinator`."""

    def __init__(self) -> None:
        self._ctx: BrokerContext | None = None
        self._store: OffsetStore | None = None
        self._consumer: ConsumerGroups | None = None
        self._streams: StreamsGroups | None = None
        self.groups: dict[GroupId, _Entry] = {}
        self._timers: Timers[GroupId] = Timers(self._on_timer)
        self._waiting: Waiting[Response] = Waiting()
        self._expiry_task: asyncio.Task[None] | None = None
        self._counters = _Counters()
        self.limits = GroupLimits()

    # --- lifecycle -----------------------------------------------------------------------------------------

    @property
    def ctx(self) -> BrokerContext:
        assert self._ctx is not None, "the group coordinator is not started"
        return self._ctx

    @property
    def store(self) -> OffsetStore:
        assert self._store is not None, "the group coordinator is not started"
        return self._store

    @property
    def streams(self) -> StreamsGroups:
        """The KIP-1071 streams groups (StreamsGroupHeartbeat)."""
        assert self._streams is not None, "the group coordinator is not started"
        return self._streams

    @property
    def consumer(self) -> ConsumerGroups:
        """The KIP-848 consumer groups (ConsumerGroupHeartbeat)."""
        assert self._consumer is not None, "the group coordinator is not started"
        return self._consumer

    async def start(self, ctx: BrokerContext) -> None:
        self._ctx = ctx
        cfg = ctx.config
        self.limits = GroupLimits(initial_rebalance_delay_ms=cfg.group_initial_rebalance_delay_ms)
        self._store = OffsetStore(ctx)
        self._consumer = ConsumerGroups(
            ctx,
            ConsumerGroupLimits(
                session_timeout_ms=cfg.group_consumer_session_timeout_ms,
                heartbeat_interval_ms=cfg.group_consumer_heartbeat_interval_ms,
            ),
        )
        self._consumer.on_change = self._consumer_changed
        self._streams = StreamsGroups(
            ctx,
            StreamsGroupLimits(
                session_timeout_ms=cfg.group_streams_session_timeout_ms,
                heartbeat_interval_ms=cfg.group_streams_heartbeat_interval_ms,
                num_standby_replicas=cfg.group_streams_num_standby_replicas,
                initial_rebalance_delay_ms=cfg.group_streams_initial_rebalance_delay_ms,
                assignment_interval_ms=cfg.group_streams_assignment_interval_ms,
            ),
        )
        self._consumer.persist = self._persist_consumer
        self._streams.load()
        n = self.store.load()
        self._restore_consumer_groups()
        self._restore_groups()
        if isinstance(ctx.producer_state, ProducerStateManager):
            ctx.producer_state.marker_listeners.append(self.store.on_marker)
        ctx.services[SERVICE] = self
        self._expiry_task = asyncio.get_running_loop().create_task(self._expire_offsets_periodically())
        if n:
            log.info("loaded %d records of %d groups from %s", n, len(self.groups), "__consumer_offsets")

    async def stop(self) -> None:
        if self._expiry_task is not None:
            self._expiry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry_task
        self._timers.cancel_all()
        self._waiting.cancel_all()
        if self._consumer is not None:
            self._consumer.stop()
        if self._streams is not None:
            self._streams.stop()

    def _restore_consumer_groups(self) -> None:
        now = self.ctx.clock.monotonic_ms()
        topics = self.consumer.topics()
        for gid, loaded in self.store.consumer_groups.items():
            g = consumer_records.rebuild(gid, loaded, self.consumer.limits_of(gid), topics, now)
            if g is not None:
                self.consumer.adopt(g, self.ctx.clock.now_ms())
        self.store.consumer_groups.clear()  # only needed to load

    def _persist_consumer(self, group_id: str, before: ConsumerGroup | None, after: ConsumerGroup | None) -> None:
        """Write what changed of a consumer group (None: it does not exist) to ``__consumer_offsets``."""
        self.store.write_consumer_records(group_id, consumer_records.changes(group_id, before, after))

    def _drop_consumer(self, gid: GroupId) -> None:
        """Forget a consumer group, its records too. Raises LogError (and forgets nothing) if they cannot go."""
        g = self.consumer.get(gid)
        if g is not None:
            self._persist_consumer(gid, g, None)
        self.consumer.drop(gid)

    def _restore_groups(self) -> None:
        now = self.ctx.clock.monotonic_ms()
        wall = self.ctx.clock.now_ms()
        for gid in self.store.group_ids():
            if self.consumer.get(gid) is not None or self.streams.get(gid) is not None:
                continue
            value = self.store.groups.get(gid)
            if value is None:
                self.groups[GroupId(gid)] = _Entry(Group(GroupId(gid), self.limits), wall)
                continue
            members = {
                MemberId(m.member_id): Member(
                    member_id=MemberId(m.member_id),
                    instance_id=InstanceId(m.instance_id) if m.instance_id is not None else None,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    protocol_type=value.protocol_type,
                    protocols=(Protocol(value.protocol or "", m.subscription),),
                    session_timeout_ms=m.session_timeout_ms,
                    rebalance_timeout_ms=m.rebalance_timeout_ms,
                    assignment=m.assignment,
                    heartbeat_deadline_ms=now + m.session_timeout_ms,
                )
                for m in value.members
            }
            g = Group(
                GroupId(gid),
                self.limits,
                phase=Phase.STABLE if members else Phase.EMPTY,
                generation=value.generation,
                protocol_type=value.protocol_type or None,
                protocol_name=value.protocol,
                leader=MemberId(value.leader) if value.leader and members else None,
                members=members,
            )
            since = value.current_state_timestamp_ms if value.current_state_timestamp_ms >= 0 else wall
            self.groups[GroupId(gid)] = _Entry(g, since)
            self._schedule(GroupId(gid))

    def ensure_ready(self) -> None:
        """FindCoordinator for a group: make sure ``__consumer_offsets`` exists."""
        self.store.ensure_topic()

    # --- the event loop of a group -------------------------------------------------------------------------

    def _run(self, gid: GroupId, event: Event, *, may_tick: bool = True) -> None:
        entry = self.groups[gid]
        now = self.ctx.clock.monotonic_ms()
        before = entry.state
        state, effects = step(before, event, now)
        self._set(gid, state)
        self._apply(gid, effects)
        after = self.groups.get(gid)
        if after is None:
            return
        due = next_deadline(after.state)
        if may_tick and due is not None and due <= now:
            # A timer due right away (e.g. the initial rebalance delay of 0): deliver it now, once.
            self._run(gid, Tick(), may_tick=False)
        else:
            self._schedule(gid)

    def _set(self, gid: GroupId, state: Group) -> None:
        entry = self.groups[gid]
        if state.phase is not entry.state.phase:
            entry.phase_since_ms = self.ctx.clock.now_ms()
            if state.phase is Phase.COMPLETING_REBALANCE:
                self._counters.rebalances += 1
        entry.state = state

    def _apply(self, gid: GroupId, effects: list[Effect]) -> None:
        for eff in effects:
            if isinstance(eff, Reply):
                self._waiting.answer(eff.request, eff.response)
            elif isinstance(eff, StoreGroup):
                error = self._store_group(gid, eff)
                self._run(gid, Stored(eff.then, error), may_tick=False)

    def _store_group(self, gid: GroupId, eff: StoreGroup) -> ErrorCode:
        try:
            self.store.store_group(gid, self._group_value(gid, eff.assignments))
        except LogError as e:
            log.warning("storing group %s failed: %s", gid, e)
            return store_error(e)
        return ErrorCode.none

    def _group_value(self, gid: GroupId, assignments: Mapping[MemberId, bytes]) -> GroupValue:
        entry = self.groups[gid]
        g = entry.state
        return GroupValue(
            protocol_type=g.protocol_type or "",
            generation=g.generation,
            protocol=g.protocol_name,
            leader=g.leader,
            current_state_timestamp_ms=entry.phase_since_ms,
            members=tuple(
                MemberValue(
                    m.member_id,
                    m.instance_id,
                    m.client_id,
                    m.client_host,
                    m.rebalance_timeout_ms,
                    m.session_timeout_ms,
                    m.metadata(g.protocol_name),
                    assignments.get(m.member_id, m.assignment),
                )
                for m in g.members.values()
            ),
        )

    def _schedule(self, gid: GroupId) -> None:
        entry = self.groups.get(gid)
        due = next_deadline(entry.state) if entry is not None else None
        self._timers.set(gid, None if due is None else due - self.ctx.clock.monotonic_ms())

    def _on_timer(self, gid: GroupId) -> None:
        if gid in self.groups:
            try:
                self._run(gid, Tick())
            except Exception:
                log.exception("group %s timer failed", gid)
                self._schedule(gid)

    def tick_now(self) -> None:
        """Deliver due timers of every group now (tests that move a fake clock)."""
        for gid in list(self.groups):
            if gid in self.groups:
                self._run(gid, Tick())

    async def _ask(self, gid: GroupId, event: Callable[[RequestId], Event]) -> Response:
        """Run the event made for a new request id; wait for its reply (which may need other members first)."""
        rid, fut = self._waiting.new()
        self._run(gid, event(RequestId(rid)))
        return await fut

    # --- membership APIs -----------------------------------------------------------------------------------

    async def join(
        self,
        group_id: str,
        *,
        member_id: str,
        instance_id: str | None,
        client_id: str,
        client_host: str,
        protocol_type: str,
        protocols: Iterable[tuple[str, bytes]],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        api_version: int,
    ) -> JoinResponse:
        gid = GroupId(group_id)
        modern = self.consumer.get(gid)
        if modern is not None:
            if modern.members:
                # A classic consumer joining a consumer group becomes one of its classic members.
                return self._join_consumer_group(
                    modern,
                    member_id=member_id,
                    instance_id=instance_id,
                    client_id=client_id,
                    client_host=client_host,
                    protocol_type=protocol_type,
                    protocols=tuple(protocols),
                    session_timeout_ms=session_timeout_ms,
                    rebalance_timeout_ms=rebalance_timeout_ms,
                    api_version=api_version,
                )
            try:
                self._drop_consumer(gid)
            except LogError as e:
                return JoinResponse(store_error(e), member_id)
        if gid not in self.groups:
            if member_id:
                return JoinResponse(ErrorCode.unknown_member_id, member_id)
            self.groups[gid] = _Entry(Group(gid, self.limits), self.ctx.clock.now_ms())
            # Kafka writes an empty group record for a group a JoinGroup creates, so it survives a restart.
            try:
                self.store.store_group(gid, GroupValue("", 0, None, None, self.ctx.clock.now_ms(), ()))
            except LogError as e:
                del self.groups[gid]
                return JoinResponse(store_error(e), member_id)
        new_id = f"{instance_id if instance_id is not None else client_id}-{uuid.uuid4()}"
        resp = await self._ask(
            gid,
            lambda rid: Join(
                request=rid,
                member_id=MemberId(member_id),
                instance_id=InstanceId(instance_id) if instance_id is not None else None,
                client_id=client_id,
                client_host=client_host,
                protocol_type=protocol_type,
                protocols=tuple(Protocol(n, m) for n, m in protocols),
                session_timeout_ms=session_timeout_ms,
                rebalance_timeout_ms=rebalance_timeout_ms,
                require_known_member_id=api_version >= 4,
                supports_skip_assignment=api_version >= 9,
                new_member_id=MemberId(new_id),
            ),
        )
        assert isinstance(resp, JoinResponse)
        return resp

    def _join_consumer_group(
        self,
        g: ConsumerGroup,
        *,
        member_id: str,
        instance_id: str | None,
        client_id: str,
        client_host: str,
        protocol_type: str,
        protocols: tuple[tuple[str, bytes], ...],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        api_version: int,
    ) -> JoinResponse:
        """Kafka's classicGroupJoinToConsumerGroup: answered at once, with the member's epoch as the generation and no
        leader (the broker assigns)."""
        classic_members = [m.classic for m in g.members.values() if m.classic is not None]
        names = [n for n, _ in protocols]
        common = set.intersection(*({n for n, _ in c.protocols} for c in classic_members)) if classic_members else None
        if (
            protocol_type != migration.CONSUMER_PROTOCOL_TYPE
            or not names
            or (common is not None and not common & set(names))
        ):
            return JoinResponse(ErrorCode.inconsistent_group_protocol, member_id)
        if not member_id and instance_id is None and api_version >= 4:
            return JoinResponse(ErrorCode.member_id_required, str(uuid.uuid4()))
        try:
            sub = decode_subscription(protocols[0][1])
        except ProtocolError:
            return JoinResponse(ErrorCode.unknown_server_error, member_id)
        meta = ClassicMetadata(session_timeout_ms, protocols)
        try:
            r = self.consumer.classic_join(
                g.group_id,
                member_id=member_id or str(uuid.uuid4()),
                instance_id=instance_id,
                rack_id=sub.rack_id,
                client_id=client_id,
                client_host=client_host,
                rebalance_timeout_ms=rebalance_timeout_ms,
                classic=meta,
                subscribed=sub.topics,
                owned=sub.owned,
                named_by_us=not member_id,
            )
        except LogError as e:
            return JoinResponse(store_error(e), member_id)
        if isinstance(r, ErrorCode):
            return JoinResponse(r, member_id)
        return JoinResponse(
            ErrorCode.none, r.member_id, r.member_epoch, migration.CONSUMER_PROTOCOL_TYPE, meta.protocol_name
        )

    def _classic_assignment(self, m: ConsumerMember) -> bytes:
        assert m.classic is not None
        names = self.consumer.topic_names()
        version = subscription_version(m.classic.protocols[0][1])
        return encode_assignment(version, ((names[t], p) for t, p in m.assigned if t in names))

    async def sync(
        self,
        group_id: str,
        *,
        member_id: str,
        instance_id: str | None,
        generation: int,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: Iterable[tuple[str, bytes]],
    ) -> SyncResponse:
        gid = GroupId(group_id)
        if self.consumer.get(gid) is not None:
            modern = self.consumer.get(gid)
            found = modern.members.get(member_id) if modern is not None else None
            if (
                found is not None
                and found.classic is not None
                and (
                    (protocol_type is not None and protocol_type != migration.CONSUMER_PROTOCOL_TYPE)
                    or (protocol_name is not None and protocol_name != found.classic.protocol_name)
                )
            ):
                return SyncResponse(ErrorCode.inconsistent_group_protocol)
            try:
                r = self.consumer.classic_sync(gid, member_id, instance_id, generation)
            except LogError as e:
                return SyncResponse(store_error(e))
            if isinstance(r, ErrorCode):
                return SyncResponse(r)
            return SyncResponse(ErrorCode.none, protocol_type, protocol_name, self._classic_assignment(r))
        if gid not in self.groups:
            return SyncResponse(ErrorCode.unknown_member_id)
        resp = await self._ask(
            gid,
            lambda rid: Sync(
                request=rid,
                member_id=MemberId(member_id),
                instance_id=InstanceId(instance_id) if instance_id is not None else None,
                generation=generation,
                protocol_type=protocol_type,
                protocol_name=protocol_name,
                assignments=tuple((MemberId(m), a) for m, a in assignments),
            ),
        )
        assert isinstance(resp, SyncResponse)
        return resp

    async def heartbeat(self, group_id: str, member_id: str, instance_id: str | None, generation: int) -> ErrorCode:
        gid = GroupId(group_id)
        if self.consumer.get(gid) is not None:
            try:
                return self.consumer.classic_heartbeat(gid, member_id, instance_id, generation)
            except LogError as e:
                return store_error(e)
        if gid not in self.groups:
            return ErrorCode.unknown_member_id
        iid = InstanceId(instance_id) if instance_id is not None else None
        resp = await self._ask(gid, lambda rid: Heartbeat(rid, MemberId(member_id), iid, generation))
        assert isinstance(resp, HeartbeatResponse)
        return resp.error

    async def leave(self, group_id: str, members: Iterable[tuple[str, str | None]]) -> LeaveResponse:
        gid = GroupId(group_id)
        if self.consumer.get(gid) is not None:
            try:
                results = self.consumer.classic_leave(gid, members)
            except LogError as e:
                return LeaveResponse(store_error(e))
            return LeaveResponse(
                ErrorCode.none,
                tuple((MemberId(m), InstanceId(i) if i is not None else None, e) for m, i, e in results),
            )
        if gid not in self.groups:
            return LeaveResponse(ErrorCode.unknown_member_id)
        who = tuple((MemberId(m), InstanceId(i) if i is not None else None) for m, i in members)
        resp = await self._ask(gid, lambda rid: Leave(rid, who))
        assert isinstance(resp, LeaveResponse)
        return resp

    def claim_for_consumer_protocol(self, group_id: str, member_epoch: int) -> ErrorCode:
        """Before a ConsumerGroupHeartbeat: a classic group with members is converted to a consumer group by a member
        joining (epoch 0) if the migration policy allows and it uses the consumer embedded protocol, else the heartbeat
        hears GROUP_ID_NOT_FOUND, as from Kafka; an empty one, or the simple group of committed offsets, gives the id
        up."""
        gid = GroupId(group_id)
        entry = self.groups.get(gid)
        if entry is None:
            return ErrorCode.none
        old = entry.state
        if not old.members:
            if gid in self.store.groups:
                try:
                    self.store.store_group(gid, None)
                except LogError as e:
                    return store_error(e)
            self._drop(gid)
            return ErrorCode.none
        converted = None
        if member_epoch == 0 and migration.can_upgrade(self.ctx.config.group_consumer_migration_policy):
            converted = migration.to_consumer(
                old, self.consumer.topics(), self.consumer.limits_of(gid), self.ctx.clock.monotonic_ms()
            )
        if converted is None:
            return ErrorCode.group_id_not_found
        try:
            # The consumer group's records first: should the classic tombstone not follow, a restart finds both and
            # takes the consumer group, which is what the members were told.
            self._persist_consumer(gid, None, converted)
            self.store.store_group(gid, None)
        except LogError as e:
            return store_error(e)
        # Whoever waits in a join or sync of the old group rejoins the new one (Kafka completes them so too).
        for m in old.members.values():
            if m.awaiting_join is not None:
                self._waiting.answer(m.awaiting_join, JoinResponse(ErrorCode.rebalance_in_progress, m.member_id))
            if m.awaiting_sync is not None:
                self._waiting.answer(m.awaiting_sync, SyncResponse(ErrorCode.rebalance_in_progress))
        self._drop(gid)
        self.consumer.adopt(converted, self.ctx.clock.now_ms())
        log.info("converted classic group %s (generation %d) to a consumer group", gid, old.generation)
        return ErrorCode.none

    def _consumer_changed(self, group_id: str, before: ConsumerGroup, after: ConsumerGroup) -> None:
        """After every change of a consumer group: the last consumer-protocol member gone, classic members left, the
        group goes back to classic (if the policy allows) and rebalances."""
        if not (
            migration.can_downgrade(self.ctx.config.group_consumer_migration_policy)
            and migration.downgrade_due(before, after)
        ):
            return
        gid = GroupId(group_id)
        g = migration.to_classic(before, after, self.consumer.topic_names(), self.limits, self.ctx.clock.monotonic_ms())
        if g is None:
            return
        self.groups[gid] = _Entry(g, self.ctx.clock.now_ms())
        try:
            # The classic record first: should the consumer group's tombstones not follow, a restart finds both and
            # takes the consumer group, which is what stays in memory here too.
            self.store.store_group(gid, self._group_value(gid, {}))
            self._persist_consumer(gid, after, None)
        except LogError as e:
            del self.groups[gid]
            log.warning("converting consumer group %s back to classic failed: %s", gid, e)
            return
        self.consumer.drop(gid)
        log.info("converted consumer group %s (epoch %d) back to a classic group", gid, before.group_epoch)
        self._run(gid, Rebalance())

    # --- group admin ---------------------------------------------------------------------------------------

    def group(self, group_id: str) -> Group | None:
        entry = self.groups.get(GroupId(group_id))
        return entry.state if entry is not None else None

    def delete_group(self, group_id: str) -> ErrorCode:
        gid = GroupId(group_id)
        streams = self.streams.get(gid)
        if streams is not None:
            if streams.members:
                return ErrorCode.non_empty_group
            try:
                self.store.delete_group(gid)
            except LogError as e:
                return store_error(e)
            self.streams.drop(gid)
            self._drop(gid)
            return ErrorCode.none
        modern = self.consumer.get(gid)
        if modern is not None:
            if modern.members:
                return ErrorCode.non_empty_group
            try:
                self._drop_consumer(gid)
                self.store.delete_group(gid)
            except LogError as e:
                return store_error(e)
            self._drop(gid)
            return ErrorCode.none
        g = self.group(gid)
        error = validate_delete(g)
        if error != ErrorCode.none:
            return error
        try:
            self.store.delete_group(gid)
        except LogError as e:
            return store_error(e)
        self._drop(gid)
        return ErrorCode.none

    def _drop(self, gid: GroupId) -> None:
        self.groups.pop(gid, None)
        self._timers.set(gid, None)

    def take_over_empty(self, group_id: str) -> bool:
        """Let a group of another type take the id of a classic group without members (one that only holds
        committed offsets, or is empty), as Kafka converts it; False when the id is a classic group's with members."""
        g = self.group(group_id)
        if g is not None and g.members:
            return False
        self._drop(GroupId(group_id))
        return True

    # --- offsets -------------------------------------------------------------------------------------------

    def commit_offsets(
        self,
        group_id: str,
        *,
        member_id: str,
        instance_id: str | None,
        generation: int,
        partitions: list[CommitRequest],
        expire_timestamp_ms: int,
        api_version: int,
    ) -> tuple[ErrorCode, dict[TopicPartition, ErrorCode]]:
        """OffsetCommit: ``(error for every partition, or NONE and per-partition errors)``."""
        gid = GroupId(group_id)
        attempt = consumer.CommitAttempt(member_id, instance_id, generation,
                                         tuple((p.topic, p.partition) for p in partitions), False, api_version)
        streams = self.streams.get(gid)
        if streams is not None:
            error, why = validate_streams_commit(streams, attempt)
            if error != ErrorCode.none:
                log.debug("[GroupId %s] OffsetCommit refused: %s", group_id, why)
                return error, {}
            return ErrorCode.none, self._write_offsets(gid, partitions, expire_timestamp_ms, None)
        modern = self.consumer.get(gid)
        if modern is not None:
            error, why = consumer.validate_offset_commit(modern, attempt)
            if error != ErrorCode.none:
                log.debug("[GroupId %s] OffsetCommit refused: %s", group_id, why)
                return error, {}
            return ErrorCode.none, self._write_offsets(gid, partitions, expire_timestamp_ms, None)
        g = self.group(gid)
        error = validate_offset_commit(g, member_id, instance_id, generation, transactional=False)
        if g is None and error == ErrorCode.illegal_generation and api_version >= 9:
            error = ErrorCode.group_id_not_found
        if error != ErrorCode.none:
            return error, {}
        if g is None:
            # A commit outside group management: Kafka makes a "simple" group for it.
            self.groups[gid] = _Entry(Group(gid, self.limits), self.ctx.clock.now_ms())
        else:
            self._run(gid, OffsetCommitTouch(MemberId(member_id)))
        return ErrorCode.none, self._write_offsets(gid, partitions, expire_timestamp_ms, None)

    def commit_transactional_offsets(
        self,
        group_id: str,
        *,
        member_id: str,
        instance_id: str | None,
        generation: int,
        producer_id: int,
        producer_epoch: int,
        partitions: list[CommitRequest],
        api_version: int,
    ) -> tuple[ErrorCode, dict[TopicPartition, ErrorCode]]:
        """TxnOffsetCommit, after the transaction coordinator vouched for the producer."""
        gid = GroupId(group_id)
        # TxnOffsetCommit has STALE_MEMBER_EPOCH from v6 (KIP-1319); Kafka answers ILLEGAL_GENERATION before.
        stale = ErrorCode.stale_member_epoch if api_version >= 6 else ErrorCode.illegal_generation
        attempt = consumer.CommitAttempt(member_id, instance_id, generation,
                                         tuple((p.topic, p.partition) for p in partitions), True, api_version)
        streams = self.streams.get(gid)
        if streams is not None:
            error, why = validate_streams_commit(streams, attempt)
            if error != ErrorCode.none:
                log.debug("[GroupId %s] TxnOffsetCommit refused: %s", group_id, why)
                return (stale if error == ErrorCode.stale_member_epoch else error), {}
            return ErrorCode.none, self._write_offsets(gid, partitions, -1, (producer_id, producer_epoch))
        modern = self.consumer.get(gid)
        if modern is not None:
            error, why = consumer.validate_offset_commit(modern, attempt)
            if error != ErrorCode.none:
                log.debug("[GroupId %s] TxnOffsetCommit refused: %s", group_id, why)
                return (stale if error == ErrorCode.stale_member_epoch else error), {}
            return ErrorCode.none, self._write_offsets(gid, partitions, -1, (producer_id, producer_epoch))
        g = self.group(gid)
        error = validate_offset_commit(g, member_id, instance_id, generation, transactional=True)
        if error != ErrorCode.none:
            return error, {}
        if g is None:
            self.groups[gid] = _Entry(Group(gid, self.limits), self.ctx.clock.now_ms())
        return ErrorCode.none, self._write_offsets(gid, partitions, -1, (producer_id, producer_epoch))

    def _write_offsets(
        self,
        gid: GroupId,
        partitions: list[CommitRequest],
        expire_timestamp_ms: int,
        producer: tuple[int, int] | None,
    ) -> dict[TopicPartition, ErrorCode]:
        now = self.ctx.clock.now_ms()
        errors: dict[TopicPartition, ErrorCode] = {}
        good: list[tuple[TopicPartition, OffsetValue]] = []
        for p in partitions:
            tp = TopicPartition(p.topic, p.partition)
            metadata = p.metadata or ""
            if len(metadata) > self.ctx.config.offset_metadata_bytes_max:
                errors[tp] = ErrorCode.offset_metadata_too_large
                continue
            good.append((tp, OffsetValue(p.offset, p.leader_epoch, metadata, now, expire_timestamp_ms)))
        try:
            if producer is None:
                self.store.commit(gid, good)
            else:
                self.store.commit(gid, good, producer_id=producer[0], producer_epoch=producer[1])
        except LogError as e:
            log.warning("committing offsets of group %s failed: %s", gid, e)
            # A stale producer epoch (the log's own check) is INVALID_PRODUCER_EPOCH, as Kafka's TxnOffsetCommit says.
            stale = e.error_code == ErrorCode.invalid_producer_epoch
            code = ErrorCode.invalid_producer_epoch if stale else ErrorCode.coordinator_not_available
            return {**{tp: code for tp, _ in good}, **errors}
        return {**{tp: ErrorCode.none for tp, _ in good}, **errors}

    def check_fetching_member(self, group_id: str, member_id: str | None, member_epoch: int) -> ErrorCode:
        """OffsetFetch v9 names the asking member of a consumer-protocol group: it must be current."""
        modern = self.consumer.get(group_id) or self.streams.get(group_id)
        if member_id is None or modern is None:
            return ErrorCode.none
        m = modern.members.get(member_id)
        if m is None:
            return ErrorCode.unknown_member_id
        return ErrorCode.none if m.member_epoch == member_epoch else ErrorCode.stale_member_epoch

    def fetch_offsets(
        self, group_id: str, partitions: list[TopicPartition] | None, *, require_stable: bool
    ) -> list[tuple[TopicPartition, int, int, str, ErrorCode]]:
        """OffsetFetch: ``(tp, offset, leader epoch, metadata, error)``; None asks for every committed partition."""
        g = self.group(group_id)
        exists = ((g is not None and g.phase is not Phase.DEAD) or self.consumer.get(group_id) is not None
                  or self.streams.get(group_id) is not None)
        committed = self.store.committed(group_id) if exists else {}
        wanted = sorted(committed) if partitions is None else partitions
        out: list[tuple[TopicPartition, int, int, str, ErrorCode]] = []
        for tp in wanted:
            if require_stable and self.store.has_pending(group_id, tp):
                out.append((tp, -1, -1, "", ErrorCode.unstable_offset_commit))
                continue
            c = committed.get(tp)
            if c is None:
                out.append((tp, -1, -1, "", ErrorCode.none))
            else:
                out.append((tp, c.value.offset, c.value.leader_epoch, c.value.metadata, ErrorCode.none))
        return out

    def delete_offsets(
        self, group_id: str, partitions: list[TopicPartition]
    ) -> tuple[ErrorCode, dict[TopicPartition, ErrorCode]]:
        modern = self.consumer.get(group_id)
        streams = self.streams.get(group_id)
        if modern is not None:
            subscribed = self.consumer.subscribed_topics(modern)
        elif streams is not None:
            subscribed = self.streams.subscribed_topics(streams) if streams.members else frozenset()
        else:
            g = self.group(group_id)
            error = validate_offset_delete(g)
            if error != ErrorCode.none or g is None:
                return error, {}
            subscribed = subscribed_topics(g) or frozenset()
        errors = {tp: ErrorCode.group_subscribed_to_topic for tp in partitions if tp[0] in subscribed}
        doomed = [tp for tp in partitions if tp not in errors]
        try:
            self.store.delete_offsets(group_id, doomed)
        except LogError as e:
            return store_error(e), {}
        return ErrorCode.none, {**{tp: ErrorCode.none for tp in doomed}, **errors}

    # --- retention -----------------------------------------------------------------------------------------

    async def _expire_offsets_periodically(self) -> None:
        interval_s = self.ctx.config.offsets_retention_check_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.expire_offsets()
            except Exception:
                log.exception("offset expiration failed; will retry")

    def _expiry_rule(self, gid: GroupId) -> tuple[int | None, frozenset[str], bool] | None:
        """Kafka's offsetExpirationCondition: ``(base time or None for each commit's own time, subscribed topics,
        group is empty)``, or None when the group's offsets do not expire now."""
        modern = self.consumer.get(gid)
        if modern is not None:
            if not modern.members:
                return self.consumer.empty_since(gid), frozenset(), True
            return None, self.consumer.subscribed_topics(modern), False
        streams = self.streams.get(gid)
        if streams is not None:
            if not streams.members:
                return self.streams.empty_since(gid), frozenset(), True
            return None, self.streams.subscribed_topics(streams), False
        entry = self.groups.get(gid)
        if entry is None:
            return None
        g = entry.state
        if g.protocol_type is None:
            return None, frozenset(), g.phase is Phase.EMPTY  # a simple group: each offset from its commit
        if g.phase is Phase.EMPTY:
            return entry.phase_since_ms, frozenset(), True
        if g.phase is Phase.STABLE and g.protocol_type == "consumer":
            subscribed = subscribed_topics(g)
            return None if subscribed is None else (None, subscribed, False)
        return None

    def expire_offsets(self) -> int:
        """Tombstone expired offsets; delete empty groups left without any. Returns offsets expired."""
        now = self.ctx.clock.now_ms()
        retention = self.ctx.config.offsets_retention_ms
        expired_total = 0
        every = set(self.groups) | set(self.consumer.groups) | set(self.streams.groups)
        for gid in [GroupId(g) for g in sorted(every)]:
            orphans = self.store.orphaned(gid)
            try:
                if orphans:
                    # Offsets of deleted topics go whatever the group's state (Kafka's onPartitionsDeleted).
                    expired_total += self.store.delete_offsets(gid, orphans)
                rule = self._expiry_rule(gid)
                if rule is None:
                    continue
                base, subscribed, empty = rule
                doomed = [
                    tp
                    for tp, c in self.store.committed(gid).items()
                    if tp[0] not in subscribed
                    and not self.store.has_pending(gid, tp)
                    and is_expired(c, now, retention, c.value.commit_timestamp_ms if base is None else base)
                ]
                expired_total += self.store.delete_offsets(gid, doomed)
                if empty and not self.store.committed(gid) and not self.store.has_pending(gid):
                    self._drop_consumer(gid)
                    self.streams.drop(gid)
                    self.store.store_group(gid, None)
                    self._drop(gid)
            except LogError as e:
                log.warning("expiring offsets of group %s failed: %s", gid, e)
        return expired_total

    # --- observability -------------------------------------------------------------------------------------

    def statistics(self) -> GroupStatistics:
        return GroupStatistics(
            groups=len(self.groups),
            members=sum(len(e.state.members) for e in self.groups.values()),
            offsets=sum(len(v) for v in self.store.offsets.values()),
            rebalances_total=self._counters.rebalances,
            pending_requests=len(self._waiting),
        )

    def member_count(self, group_id: str) -> int:
        g = self.group(group_id)
        return len(g.members) if g is not None else 0


def group_coordinator(ctx: BrokerContext) -> GroupCoordinator | None:
    svc = ctx.services.get(SERVICE)
    return svc if isinstance(svc, GroupCoordinator) else None
