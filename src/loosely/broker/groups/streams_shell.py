"""The asyncio side of streams groups (KIP-1071; the rules are in :mod:`loosely.broker.groups.streams`): one
:class:`~loosely.broker.groups.streams.StreamsGroup` per id, the broker's topics handed to each heartbeat, the
internal topics a topology needs created, and one timer per group for session and revocation deadlines.

A group's configs (``streams.session.timeout.ms``, ``streams.heartbeat.interval.ms``,
``streams.num.standby.replicas``, ``streams.initial.rebalance.delay.ms``, ``streams.assignment.interval.ms``, set
with IncrementalAlterConfigs on the GROUP resource) replace the broker's ``group.streams.*`` values from the group's
next heartbeat on, as in Kafka.

Internal topics (repartition and changelog topics) that the topology names and the broker lacks are created here,
as Kafka's request handler creates them when its coordinator answers MISSING_INTERNAL_TOPICS: with the partition
count the topology was configured with, the configs the topology gives them, and the broker's default replication.
The heartbeat that found them missing still answers that status; the next one finds them and assigns tasks.

**Durability.** ``<data_dir>/streams-groups.json`` (``{"version": 1, "groups": {"<group id>":`` what
:func:`~loosely.broker.groups.streams.group_to_json` writes ``}}``: epochs, topology, members with their
assignments, the target assignment) is rewritten atomically (temporary file, fsync, rename) whenever a group's
membership, assignment or topology changes, before the heartbeat is answered; a heartbeat that changes nothing
writes nothing. After a restart the members are still there, each with a new session timeout to heartbeat in, and
go on at their epochs with their tasks, as Kafka keeps them in ``__consumer_offsets``. Committed offsets are the
group coordinator's, in ``__consumer_offsets``, as for every group.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from loosely.broker._shell import Timers
from loosely.broker.context import BrokerContext
from loosely.broker.groups.streams import (
    InternalTopic,
    StreamsGroup,
    StreamsGroupLimits,
    StreamsHeartbeat,
    StreamsHeartbeatResponse,
    StreamsTick,
    group_from_json,
    group_to_json,
    next_deadline,
    step,
    validate_heartbeat,
)
from loosely.protocol.errors import ErrorCode
from loosely.storage.log import LogError

__all__ = ["STATE_FILE", "StreamsGroups"]

STATE_FILE: Final = "streams-groups.json"
FORMAT_VERSION: Final = 1

log = logging.getLogger("loosely.broker.groups")


@dataclass(slots=True)
class _Entry:
    state: StreamsGroup
    empty_since_ms: int  # wall clock; offsets of an empty group expire counting from here


class StreamsGroups:
    def __init__(self, ctx: BrokerContext, limits: StreamsGroupLimits) -> None:
        self.ctx = ctx
        self.limits = limits
        self.groups: dict[str, _Entry] = {}
        self._timers: Timers[str] = Timers(self._on_timer)
        self.rebalances_total = 0
        self.path = os.path.join(ctx.logs.data_dir, STATE_FILE)
        self._written: dict[str, dict[str, object]] = {}  # each group as the state file has it

    def load(self) -> None:
        """Read the groups the state file kept; a damaged file is a ValueError naming it."""
        fs = self.ctx.logs.fs
        if not fs.exists(self.path):
            return
        now, wall = self.ctx.clock.monotonic_ms(), self.ctx.clock.now_ms()
        try:
            doc = json.loads(fs.read_file(self.path))
            if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
                raise ValueError(f"expected {{'version': {FORMAT_VERSION}, 'groups': {{...}}}}")
            for gid, gdoc in doc["groups"].items():
                g = group_from_json(str(gid), gdoc, self.limits_of(str(gid)), now)
                self.groups[g.group_id] = _Entry(g, wall)
                self._written[g.group_id] = group_to_json(g)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
            raise ValueError(f"{self.path} is damaged ({e}); fix or remove it") from None
        for gid in self.groups:
            self._schedule(gid)

    def _save(self, group_id: str) -> None:
        """Write the state file if what it keeps of ``group_id`` changed (an OSError is logged: the group goes on
        in memory, and the next change tries again)."""
        entry = self.groups.get(group_id)
        now = None if entry is None else group_to_json(entry.state)
        if now == self._written.get(group_id):
            return
        if now is None:
            self._written.pop(group_id, None)
        else:
            self._written[group_id] = now
        data = json.dumps({"version": FORMAT_VERSION, "groups": dict(sorted(self._written.items()))},
                          separators=(",", ":")).encode()
        try:
            self.ctx.logs.fs.write_atomic(self.path, data)
        except OSError as e:
            self._written.pop(group_id, None)
            log.warning("writing %s failed: %s", self.path, e)

    def limits_of(self, group_id: str) -> StreamsGroupLimits:
        """The broker's limits with the group's own configs over them."""
        own = self.ctx.group_configs.of(group_id) if self.ctx.group_configs is not None else {}
        return dataclasses.replace(
            self.limits,
            session_timeout_ms=int(own.get("streams.session.timeout.ms", self.limits.session_timeout_ms)),
            heartbeat_interval_ms=int(own.get("streams.heartbeat.interval.ms", self.limits.heartbeat_interval_ms)),
            num_standby_replicas=int(own.get("streams.num.standby.replicas", self.limits.num_standby_replicas)),
            initial_rebalance_delay_ms=int(own.get("streams.initial.rebalance.delay.ms",
                                                   self.limits.initial_rebalance_delay_ms)),
            assignment_interval_ms=int(own.get("streams.assignment.interval.ms", self.limits.assignment_interval_ms)),
        )

    def get(self, group_id: str) -> StreamsGroup | None:
        entry = self.groups.get(group_id)
        return entry.state if entry is not None else None

    def empty_since(self, group_id: str) -> int:
        return self.groups[group_id].empty_since_ms

    def drop(self, group_id: str) -> None:
        self.groups.pop(group_id, None)
        self._timers.set(group_id, None)
        self._save(group_id)

    def stop(self) -> None:
        self._timers.cancel_all()

    def topics(self) -> dict[str, int]:
        return {t.name: t.partitions for t in self.ctx.logs if not t.internal}

    def subscribed_topics(self, g: StreamsGroup) -> frozenset[str]:
        """The topics the group's topology reads (source and repartition topics): their offsets stay while it
        has members."""
        if g.topology is None:
            return frozenset()
        names: set[str] = set()
        for s in g.topology.subtopologies:
            names.update(s.source_topics)
            names.update(r.name for r in s.repartition_source_topics)
        return frozenset(names)

    def heartbeat(self, group_id: str, event: Callable[[dict[str, int]], StreamsHeartbeat],
                  claim: Callable[[], str | None]) -> StreamsHeartbeatResponse:
        """``event`` builds the heartbeat from the broker's topics; ``claim`` answers a message when the group id
        belongs to a group of another type (then nothing changes)."""
        ev = event(self.topics())
        invalid = validate_heartbeat(ev, group_id)
        if invalid is not None:
            return invalid
        other = claim()
        if other is not None:
            return StreamsHeartbeatResponse(ErrorCode.group_id_not_found, message=other)
        entry = self.groups.get(group_id)
        if entry is None and ev.member_epoch != 0:
            return StreamsHeartbeatResponse(ErrorCode.group_id_not_found,
                                            message=f"Streams group {group_id} not found.")
        if entry is None:
            entry = _Entry(StreamsGroup(group_id, self.limits), self.ctx.clock.now_ms())
            self.groups[group_id] = entry
        limits = self.limits_of(group_id)
        if entry.state.limits != limits:
            entry.state = dataclasses.replace(entry.state, limits=limits)
        before = entry.state
        state, response = step(before, ev, self.ctx.clock.monotonic_ms())
        self._changed(group_id, entry, before, state)
        assert response is not None
        if response.create:
            self._create(response.create)
        return response

    def _create(self, topics: tuple[InternalTopic, ...]) -> None:
        for t in topics:
            if self.ctx.logs.get(t.name) is not None:
                continue
            try:
                self.ctx.logs.create_topic(t.name, t.partitions, dict(t.configs))
                log.info("created internal topic %s with %d partitions for a streams group", t.name, t.partitions)
            except LogError as e:
                log.warning("creating internal topic %s failed: %s", t.name, e)

    def _changed(self, group_id: str, entry: _Entry, before: StreamsGroup, state: StreamsGroup) -> None:
        if state.group_epoch != before.group_epoch:
            self.rebalances_total += 1
        if before.members and not state.members:
            entry.empty_since_ms = self.ctx.clock.now_ms()
        entry.state = state
        self._save(group_id)
        self._schedule(group_id)

    def _schedule(self, group_id: str) -> None:
        entry = self.groups.get(group_id)
        due = next_deadline(entry.state) if entry is not None else None
        self._timers.set(group_id, None if due is None else due - self.ctx.clock.monotonic_ms())

    def _on_timer(self, group_id: str) -> None:
        entry = self.groups.get(group_id)
        if entry is None:
            return
        try:
            before = entry.state
            state, _ = step(before, StreamsTick(), self.ctx.clock.monotonic_ms())
            self._changed(group_id, entry, before, state)
        except Exception:
            log.exception("streams group %s timer failed", group_id)
            self._schedule(group_id)

