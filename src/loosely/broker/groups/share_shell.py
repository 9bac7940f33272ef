"""The asyncio side of share groups (:mod:`.share`): the groups, the share sessions, lock and session timers, and
the state file that outlives a restart.

**Settings.** A group's configs (IncrementalAlterConfigs on its GROUP resource; :mod:`loosely.broker.group_configs`)
override the broker's ``group.share.*`` values: ``share.record.lock.duration.ms``, ``share.delivery.count.limit``,
``share.partition.max.record.locks``, ``share.heartbeat.interval.ms``, ``share.session.timeout.ms``,
``share.auto.offset.reset`` (``latest``, ``earliest``, ``by_duration:<ISO 8601 duration>``),
``share.renew.acknowledge.enable`` and ``share.isolation.level``, each read when it is used, as in Kafka.

**Share sessions** (ShareFetch / ShareAcknowledge): one per (group, member), opened by epoch 0 with the partitions
the request names, each later request carrying the next epoch (the wrong one answers INVALID_SHARE_SESSION_EPOCH,
none open SHARE_SESSION_NOT_FOUND), closed by epoch -1. A session lists the partitions every fetch of it reads.

**Timers.** One task wakes at the earliest lock or member-session deadline (and at least every second): it
releases run-out locks, removes members not heard from within their session timeout (releasing what they hold),
and wakes fetches waiting for records.

**Durability.** ``<data_dir>/share-groups.json`` (``{"version": 1, "groups": {"<group id>": {"epoch": N,
"assignment_epoch": N, "members": {"<member id>": {"epoch", "client_id", "client_host", "rack_id", "subscribed",
"assigned", "target"}}, "partitions": {"<topic id>:<partition>": {"start", "end", "records": [[offset, state,
delivery count]]}}}}}``), rewritten atomically (temporary file, fsync, rename) when membership changes, a
share-partition starts, records are acknowledged, released or archived, or a group is deleted or its offsets
altered, before the request is answered. An acquisition is not written (as in Kafka), so after a restart the records
that were acquired are AVAILABLE again with the delivery count they had. Members are kept, each given a new session
at load (as Kafka's coordinator does when it loads them from ``__consumer_offsets``), so they heartbeat on at their
epochs; a share-partition of a deleted topic is dropped at load. Files written before members were kept load with
none. Kafka writes the share-partitions as records of ``__share_group_state``; loosely's file holds the same facts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from loosely.broker.context import BrokerContext
from loosely.broker.group_configs import auto_offset_reset
from loosely.broker.groups.share import (
    ShareGroup,
    ShareHeartbeatResult,
    SharePartition,
    heartbeat,
    member_from_json,
    member_to_json,
)
from loosely.protocol.errors import ErrorCode

__all__ = ["SERVICE", "STATE_FILE", "ShareGroups", "ShareSession", "ShareSettings", "share_groups"]

SERVICE: Final = "share_groups"
STATE_FILE: Final = "share-groups.json"
FORMAT_VERSION: Final = 1
_TICK_MS_MAX: Final = 1000

log = logging.getLogger("loosely.broker.groups.share")


@dataclass(frozen=True, slots=True)
class ShareSettings:
    lock_ms: int
    delivery_limit: int
    locks_max: int
    heartbeat_ms: int
    session_ms: int
    auto_reset: str  # "latest", "earliest" or "by_duration"
    auto_reset_ms: int  # by_duration's duration
    renew_allowed: bool
    read_committed: bool  # share.isolation.level


@dataclass(slots=True)
class ShareSession:
    epoch: int  # the epoch the next request must carry
    partitions: set[tuple[uuid.UUID, int]] = field(default_factory=set)


class ShareGroups:
    """Every share group of the broker (one event-loop thread); registered as ``ctx.services["share_groups"]``."""

    def __init__(self) -> None:
        self._ctx: BrokerContext | None = None
        self.groups: dict[str, ShareGroup] = {}
        self.sessions: dict[tuple[str, str], ShareSession] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._released: asyncio.Future[None] | None = None
        self.path = ""

    @property
    def ctx(self) -> BrokerContext:
        assert self._ctx is not None
        return self._ctx

    async def start(self, ctx: BrokerContext) -> None:
        self._ctx = ctx
        self.path = os.path.join(ctx.logs.data_dir, STATE_FILE)
        self._load()
        ctx.services[SERVICE] = self
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._timers())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- settings -----------------------------------------------------------------------------------------------

    def settings(self, group_id: str) -> ShareSettings:
        cfg = self.ctx.config
        own = self.ctx.group_configs.of(group_id) if self.ctx.group_configs is not None else {}
        reset, reset_ms = auto_offset_reset(own.get("share.auto.offset.reset", "latest"))
        return ShareSettings(
            lock_ms=int(own.get("share.record.lock.duration.ms", cfg.group_share_record_lock_duration_ms)),
            delivery_limit=int(own.get("share.delivery.count.limit", cfg.group_share_delivery_count_limit)),
            locks_max=int(own.get("share.partition.max.record.locks", cfg.group_share_partition_max_record_locks)),
            heartbeat_ms=int(own.get("share.heartbeat.interval.ms", cfg.group_share_heartbeat_interval_ms)),
            session_ms=int(own.get("share.session.timeout.ms", cfg.group_share_session_timeout_ms)),
            auto_reset=reset,
            auto_reset_ms=reset_ms,
            renew_allowed=own.get("share.renew.acknowledge.enable", "true").strip().lower() == "true",
            read_committed=own.get("share.isolation.level", "read_uncommitted").strip() == "read_committed",
        )

    # -- membership ---------------------------------------------------------------------------------------------

    def partitions_of(self, topics: Iterable[str]) -> dict[str, int]:
        out = {}
        for name in topics:
            t = self.ctx.logs.get(name)
            if t is not None:
                out[name] = t.partitions
        return out

    def heartbeat(self, group_id: str, *, member_id: str, member_epoch: int, rack_id: str | None,
                  subscribed: frozenset[str] | None, client_id: str, client_host: str) -> ShareHeartbeatResult:
        g = self.groups.get(group_id)
        new = g is None
        if g is None and member_epoch != 0:  # only a join creates a group (Kafka's GroupIdNotFoundException)
            return ShareHeartbeatResult(ErrorCode.group_id_not_found, f"Group {group_id} not found.")
        if g is None:
            g = ShareGroup(group_id)
        s = self.settings(group_id)
        topics = set(g.subscribed()) | set(subscribed or ())
        epoch_before = g.group_epoch
        r = heartbeat(g, member_id=member_id, member_epoch=member_epoch, rack_id=rack_id, subscribed=subscribed,
                      client_id=client_id, client_host=client_host, partitions_of=self.partitions_of(topics),
                      session_ms=s.session_ms, now_ms=self.ctx.clock.monotonic_ms())
        if new and r.member_id is not None and r.error == 0:
            self.groups[group_id] = g
        if r.error == 0 and (new or r.left or r.assignment is not None or g.group_epoch != epoch_before):
            self.save()  # membership, as Kafka writes it to __consumer_offsets
        if r.left:
            self._member_gone(g, member_id)
        self._wake.set()
        return r

    def _member_gone(self, g: ShareGroup, member_id: str) -> None:
        self.sessions.pop((g.group_id, member_id), None)
        self.release_acquired(g.group_id, member_id)

    def release_acquired(self, group_id: str, member_id: str) -> None:
        """Make what ``member_id`` acquired in ``group_id`` available again (archived past the delivery limit):
        it left, or its share session closed (Kafka's ``releaseSession``)."""
        g = self.groups.get(group_id)
        if g is None:
            return
        limit = self.settings(group_id).delivery_limit
        if any([sp.release_member(member_id, limit) for sp in g.partitions.values()]):
            self.save()
            self.notify_released()

    def connection_closed(self, group_id: str, member_id: str, session: ShareSession) -> None:
        """The connection ``session`` was opened on closed: the session goes, and what its member acquired is
        released at once, not when the locks run out, as Kafka 4.4 does (a consumer killed or crashed). A session
        opened since, on another connection, stays."""
        if self.sessions.get((group_id, member_id)) is session:
            del self.sessions[(group_id, member_id)]
            self.release_acquired(group_id, member_id)

    def is_member(self, group_id: str, member_id: str) -> bool:
        g = self.groups.get(group_id)
        return g is not None and member_id in g.members

    # -- share-partitions ---------------------------------------------------------------------------------------

    def partition(self, group_id: str, topic: str, partition: int) -> SharePartition | None:
        """The group's share-partition, started from ``share.auto.offset.reset`` on first use; None when the topic
        or partition does not exist."""
        plog = self.ctx.logs.log(topic, partition)
        if plog is None:
            return None
        g = self.groups.get(group_id)
        if g is None:
            g = self.groups[group_id] = ShareGroup(group_id)
        sp = g.partitions.get((topic, partition))
        if sp is None:
            s = self.settings(group_id)
            start = plog.high_watermark
            if s.auto_reset == "earliest":
                start = plog.log_start_offset
            elif s.auto_reset == "by_duration":
                # the first record at or after (now - duration); none: the log end, as for latest
                found = plog.offset_for_timestamp(self.ctx.clock.now_ms() - s.auto_reset_ms)
                if found is not None:
                    start = min(found[0], plog.high_watermark)
            sp = g.partitions[(topic, partition)] = SharePartition(start)
            self.save()
        sp.move_start(plog.log_start_offset)
        return sp

    def lock_acquired(self) -> None:
        """A fetch took locks: the timer task may have to wake earlier."""
        self._wake.set()

    def notify_released(self) -> None:
        """Records became AVAILABLE again: wake the fetches waiting for records."""
        fut, self._released = self._released, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def released(self) -> asyncio.Future[None]:
        """A future done when records are next released."""
        if self._released is None or self._released.done():
            self._released = asyncio.get_running_loop().create_future()
        return self._released

    # -- groups as a whole --------------------------------------------------------------------------------------

    def delete(self, group_id: str) -> None:
        self.groups.pop(group_id, None)
        for key in [k for k in self.sessions if k[0] == group_id]:
            del self.sessions[key]
        self.save()

    # -- timers -------------------------------------------------------------------------------------------------

    async def _timers(self) -> None:
        while True:
            now = self.ctx.clock.monotonic_ms()
            self._tick(now)
            deadlines = [d for g in self.groups.values() for d in self._deadlines(g)]
            wait_ms = min([_TICK_MS_MAX, *(d - now for d in deadlines)])
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait_ms, 1) / 1000)

    @staticmethod
    def _deadlines(g: ShareGroup) -> list[int]:
        out = [m.deadline_ms for m in g.members.values()]
        for sp in g.partitions.values():
            d = sp.next_deadline_ms()
            if d is not None:
                out.append(d)
        return out

    def _tick(self, now_ms: int) -> None:
        changed = False
        for g in list(self.groups.values()):
            for m in [m for m in g.members.values() if m.deadline_ms <= now_ms]:
                log.info("share group %s: member %s left (no heartbeat within its session)", g.group_id, m.member_id)
                heartbeat(g, member_id=m.member_id, member_epoch=-1, rack_id=None, subscribed=None, client_id="",
                          client_host="", partitions_of=self.partitions_of(g.subscribed()), session_ms=0,
                          now_ms=now_ms)
                self._member_gone(g, m.member_id)
                changed = True
            limit = self.settings(g.group_id).delivery_limit
            for sp in g.partitions.values():
                changed = sp.expire(now_ms, limit) or changed
        if changed:
            self.save()
            self.notify_released()

    # -- durability ---------------------------------------------------------------------------------------------

    def save(self) -> None:
        """Write every group's state before it counts (an OSError propagates): in the kernel, so a crash of the
        broker (``kill -9``) keeps it, not fsynced, as Kafka's share coordinator appends it to its
        ``__share_group_state`` topic without an fsync. An fsync on every acknowledgement made each ShareFetch
        wait for the disk twice."""
        groups: dict[str, object] = {}
        for gid, g in sorted(self.groups.items()):
            parts: dict[str, object] = {}
            for (topic, p), sp in sorted(g.partitions.items()):
                t = self.ctx.logs.get(topic)
                if t is not None:
                    parts[f"{t.topic_id}:{p}"] = sp.to_json()
            groups[gid] = {"epoch": g.group_epoch, "assignment_epoch": g.assignment_epoch, "partitions": parts,
                           "members": {mid: member_to_json(m) for mid, m in sorted(g.members.items())}}
        data = json.dumps({"version": FORMAT_VERSION, "groups": groups}, separators=(",", ":")).encode()
        assert json.loads(data)["version"] == FORMAT_VERSION
        self.ctx.logs.fs.write_atomic(self.path, data, durable=False)

    def _load(self) -> None:
        fs = self.ctx.logs.fs
        if not fs.exists(self.path):
            return
        now = self.ctx.clock.monotonic_ms()
        try:
            doc = json.loads(fs.read_file(self.path))
            if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
                raise ValueError(f"expected {{'version': {FORMAT_VERSION}, 'groups': {{...}}}}")
            for gid, gdoc in doc["groups"].items():
                g = ShareGroup(str(gid), group_epoch=int(gdoc["epoch"]),
                               assignment_epoch=int(gdoc.get("assignment_epoch", gdoc["epoch"])))
                session_ms = self.settings(g.group_id).session_ms
                for mid, mdoc in gdoc.get("members", {}).items():
                    g.members[str(mid)] = member_from_json(str(mid), mdoc, now + session_ms)
                for key, pdoc in gdoc["partitions"].items():
                    tid, _, p = str(key).rpartition(":")
                    t = self.ctx.logs.by_id(uuid.UUID(tid))
                    if t is not None and int(p) < t.partitions:
                        g.partitions[(t.name, int(p))] = SharePartition.from_json(pdoc)
                self.groups[g.group_id] = g
        except (ValueError, TypeError, KeyError, AttributeError, AssertionError) as e:
            raise ValueError(f"{self.path} is damaged ({e}); fix or remove it") from None


def share_groups(ctx: BrokerContext) -> ShareGroups | None:
    svc = ctx.services.get(SERVICE)
    return svc if isinstance(svc, ShareGroups) else None
