"""A consumer group member that hands over whole fetched record batches: the views' fast source.

Why it exists: a view's runner built on ``confluent-kafka`` gets a Python object per message, and the interpreter
with confluent-kafka imported holds 22.6 MiB before the first record (issue 18's memory target for the
latest-value view is 25-29 MiB in all). This client imports neither confluent-kafka nor kio: it speaks the few
requests it needs itself, over :mod:`loosely.clients.fastpath`'s blocking connections, and returns each fetched
batch's records section (decompressed) for a compiled loop to fold (:func:`loosely.views._kernel.fold_records`).

Theory of operation. One :class:`BatchConsumer` is either one member of a consumer group (``subscribe``) or reads
the partitions it is given (``assign``). Group membership is Kafka's classic protocol with the eager ``range``
assignor, the one librdkafka also offers by default, so it can share a group with librdkafka consumers:

* ``poll`` first (re)joins when needed: FindCoordinator, then JoinGroup until the coordinator gives a member id
  and a generation; the leader assigns each subscribed topic's partitions in ranges over the members subscribed
  to it (sorted by member id, the first ``partitions % members`` getting one more) and sends every assignment in
  SyncGroup; the others receive theirs. Before a rejoin every partition is revoked (``on_revoke``), after it the
  new ones are announced (``on_assign``, which returns where to start each: an offset, or ``None`` for the
  earliest);
* a heartbeat thread sends Heartbeat every ``heartbeat_ms`` on a connection of its own, so a long sink write
  never costs the membership; an answer that the group is rebalancing, or that the generation or member is
  unknown, makes the next ``poll`` rejoin. FENCED_INSTANCE_ID (a JoinGroup with this member's ``instance_id``
  replaced it), in answer to a Heartbeat, SyncGroup or OffsetCommit, makes every later ``poll`` raise
  :class:`FencedInstanceError`: Fetch does not check membership, so the first of them to say so ends the
  reading. The same thread watches ``max_poll_interval_ms`` (Kafka's ``max.poll.interval.ms``): a caller that has
  not polled for that long (a sink stuck in a write) is taken out of the group as Kafka's consumers take themselves
  out, so its partitions go to the other members instead of waiting with it. A dynamic member sends LeaveGroup and
  forgets its member id; a static one (``instance_id``) only stops heartbeating, so its session runs out (as the
  Java consumer does). The next ``poll`` joins again. ``close`` sends LeaveGroup for a dynamic member
  (a static one keeps its place until its session runs out, as Kafka's static members do);
* ``poll`` sends one Fetch to each leader of the partitions held (read_committed), and returns the batches the
  answers bring, in log order per partition; transaction markers and aborted transactions are passed over (see
  :func:`loosely.clients.fastpath.kept_batches`) and move the position. A partition whose offset is out of range
  restarts at its earliest offset (``auto.offset.reset=earliest``); a leader change or a lost connection refreshes
  the metadata and tries again after ``retry_ms``.

Requests, all in non-flexible versions that Kafka 2.3 to 4.x and loosely's broker serve (request header v1,
response header v0, as in :mod:`loosely.clients.fastpath`, whose Metadata v8, Fetch v11 and ListOffsets v5 are
used as they are there)::

    FindCoordinator v2  key, key_type
    JoinGroup v5        group_id, session_timeout_ms, rebalance_timeout_ms, member_id, group_instance_id,
                        protocol_type "consumer", [protocol name, metadata]
    SyncGroup v3        group_id, generation_id, member_id, group_instance_id, [member_id, assignment]
    Heartbeat v3        group_id, generation_id, member_id, group_instance_id
    LeaveGroup v3       group_id, [member_id, group_instance_id]
    OffsetCommit v7     group_id, generation_id, member_id, group_instance_id,
                        [topic, [partition, offset, leader_epoch, metadata]]

The consumer protocol's member metadata (``Subscription``: INT16 version, [topic], BYTES user data) and
assignment (``Assignment``: INT16 version, [topic, [INT32 partition]], BYTES user data) are written in version 0;
newer versions only append fields, so a librdkafka member's are read by their common prefix.

Only a plain connection: TLS, SASL or any librdkafka setting is the caller's cue to use confluent-kafka instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from loosely.clients.fastpath import (
    API_FETCH,
    API_LIST_OFFSETS,
    API_METADATA,
    FETCH_V,
    ISOLATION_READ_COMMITTED,
    LIST_OFFSETS_V,
    METADATA_V,
    OFFSET_EARLIEST,
    Cluster,
    Connection,
    Unsupported,
    WireError,
    _Part,
    _Reader,
    error_text,
    fetch_answer,
    kept_batches,
    list_offsets_answer,
    list_offsets_request,
    metadata_answer,
    records_section,
)
from loosely.protocol.primitives import I8, I16, I32, I64
from loosely.protocol.primitives import array as _array
from loosely.protocol.primitives import string as _string

__all__ = ["BatchConsumer", "Chunk", "FencedInstanceError", "GroupError"]

log = logging.getLogger(__name__)

API_OFFSET_COMMIT: Final = 8
API_FIND_COORDINATOR: Final = 10
API_JOIN_GROUP: Final = 11
API_HEARTBEAT: Final = 12
API_LEAVE_GROUP: Final = 13
API_SYNC_GROUP: Final = 14
OFFSET_COMMIT_V: Final = 7
FIND_COORDINATOR_V: Final = 2
JOIN_GROUP_V: Final = 5
HEARTBEAT_V: Final = 3
LEAVE_GROUP_V: Final = 3
SYNC_GROUP_V: Final = 3
ASSIGNOR: Final = b"range"

# error codes this client acts on (Kafka's protocol error table)
OFFSET_OUT_OF_RANGE: Final = 1
COORDINATOR_LOAD_IN_PROGRESS: Final = 14
COORDINATOR_NOT_AVAILABLE: Final = 15
NOT_COORDINATOR: Final = 16
ILLEGAL_GENERATION: Final = 22
UNKNOWN_MEMBER_ID: Final = 25
REBALANCE_IN_PROGRESS: Final = 27
MEMBER_ID_REQUIRED: Final = 79
FENCED_INSTANCE_ID: Final = 82
_COORDINATOR_MOVED: Final = frozenset((COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR))
_REJOIN: Final = frozenset((ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS))

TP = tuple[str, int]


class GroupError(Exception):
    """The coordinator refused this member for good (an authorization failure, an invalid session timeout...)."""


class FencedInstanceError(GroupError):
    """A JoinGroup with this member's ``group.instance.id`` replaced it (FENCED_INSTANCE_ID): fatal for this
    consumer, as in librdkafka and Java; a new consumer with the same id can join again."""


class Chunk(NamedTuple):
    """One fetched record batch: its records section (decompressed) and what reading it needs."""

    topic: str
    partition: int
    records: bytes
    record_count: int
    base_offset: int
    base_timestamp: int
    timestamp_override: int  # LogAppendTime batches: every record's timestamp; else -1
    min_offset: int  # records below it were handed over before (a fetch starts at the batch holding the position)


@dataclass
class _Held(_Part):
    topic: str = ""
    high: int = -1


@dataclass
class _Membership:
    member_id: str = ""
    generation: int = -1
    coordinator: tuple[str, int] | None = None
    rejoin: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)


def _bytes(b: bytes | None) -> bytes:
    return I32.pack(-1) if b is None else I32.pack(len(b)) + b


def subscription(topics: Iterable[str]) -> bytes:
    """A ``Subscription`` v0: the member's topics, no user data."""
    return I16.pack(0) + _array([_string(t) for t in sorted(topics)]) + _bytes(None)


def subscribed_topics(metadata: bytes) -> list[str]:
    """The topics of any version of a member's ``Subscription``."""
    r = _Reader(metadata)
    r.i16()
    return [r.nullable_string() or "" for _ in range(r.count())]


def assignment(parts: Mapping[str, list[int]]) -> bytes:
    """An ``Assignment`` v0."""
    return I16.pack(0) + _array([_string(t) + _array([I32.pack(p) for p in ps]) for t, ps in sorted(parts.items())]) \
        + _bytes(None)


def assigned_partitions(data: bytes | None) -> list[TP]:
    """The partitions of any version of an ``Assignment`` (empty for none)."""
    if not data:
        return []
    r = _Reader(data)
    r.i16()
    out: list[TP] = []
    for _ in range(r.count()):
        topic = r.nullable_string() or ""
        out.extend((topic, r.i32()) for _ in range(r.count()))
    return out


def range_assign(members: Mapping[str, list[str]], partitions: Mapping[str, int]) -> dict[str, dict[str, list[int]]]:
    """The range assignor: each topic's partitions in contiguous ranges over the members subscribed to it, in member
    id order, the first ``partitions % members`` members one partition more.

    >>> range_assign({"b": ["t"], "a": ["t"]}, {"t": 5})
    {'b': {'t': [3, 4]}, 'a': {'t': [0, 1, 2]}}
    """
    out: dict[str, dict[str, list[int]]] = {m: {} for m in members}
    for topic, n in sorted(partitions.items()):
        subs = sorted(m for m, ts in members.items() if topic in ts)
        if not subs:
            continue
        each, extra = divmod(n, len(subs))
        start = 0
        for i, m in enumerate(subs):
            size = each + (1 if i < extra else 0)
            if size:
                out[m][topic] = list(range(start, start + size))
            start += size
    return out


class BatchConsumer:
    """Reads ``topics`` as a member of ``group_id`` (:meth:`subscribe`) or the partitions given (:meth:`assign`),
    handing over whole record batches. Not thread-safe: one thread calls everything but :meth:`close`'s helper
    thread. See the module header."""

    pipelined = True  # the next Fetch goes out before the caller folds this one's batches (False: one at a time)

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "loosely",
        fetch_wait_ms: int = 100,
        fetch_bytes_max: int = 4 * 1024 * 1024,
        partition_fetch_bytes_max: int = 32 * 1024,
        session_timeout_ms: int = 10_000,
        rebalance_timeout_ms: int = 300_000,
        max_poll_interval_ms: int = 300_000,
        heartbeat_ms: int = 3_000,
        request_timeout_s: float = 30.0,
        retry_ms: int = 500,
        instance_id: str | None = None,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._fetch_wait_ms = fetch_wait_ms
        self._fetch_bytes_max = fetch_bytes_max
        self._partition_fetch_bytes_max = partition_fetch_bytes_max
        self._session_timeout_ms = session_timeout_ms
        self._rebalance_timeout_ms = rebalance_timeout_ms
        self._heartbeat_ms = min(heartbeat_ms, max(100, session_timeout_ms // 3))
        self._max_poll_interval_s = max_poll_interval_ms / 1000
        self._polled = time.monotonic()  # when the caller last called poll (the heartbeat thread's watchdog)
        self._timeout_s = request_timeout_s
        self._retry_ms = retry_ms
        # static membership (KIP-345, librdkafka's group.instance.id): a member restarted with the same id takes
        # its partitions back at once instead of waiting out its predecessor's session; it does not leave the group
        # on close, as librdkafka's static members do not
        self._instance = instance_id
        self._cluster = Cluster(bootstrap_servers, request_timeout_s)
        self._held: dict[TP, _Held] = {}
        self._queued: deque[Chunk] = deque()
        self._group: str | None = None
        self._topics: list[str] = []
        self._on_assign: Callable[[list[TP]], Mapping[TP, int | None]] | None = None
        self._on_revoke: Callable[[list[TP]], None] | None = None
        self._member = _Membership()
        self._coordinator_conn: Connection | None = None
        self._heartbeat: threading.Thread | None = None
        self._closed = threading.Event()
        self._stale_metadata = True
        self._fenced = False  # another member took this one's instance id: fatal, as in librdkafka
        self._in_flight: list[int] = []  # nodes with a Fetch request not answered yet
        self._failing = False  # the last poll could not reach the cluster
        self._unplaced: list[TP] = []  # assigned and announced, but their start offsets could not be read
        self._asked: dict[TP, int] = {}  # the offsets those requests asked for

    # -- set-up -------------------------------------------------------------------------------------------------

    def subscribe(self, group_id: str, topics: Iterable[str], on_assign: Callable[[list[TP]], Mapping[TP, int | None]],
                  on_revoke: Callable[[list[TP]], None]) -> None:
        """Join ``group_id`` for ``topics`` at the first :meth:`poll`; ``on_assign`` says where each new partition
        starts (``None``: the earliest offset), ``on_revoke`` is told before partitions are taken away."""
        self._group, self._topics = group_id, sorted(set(topics))
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._heartbeat = threading.Thread(target=self._heartbeats, name=f"loosely-heartbeat-{group_id}", daemon=True)
        self._heartbeat.start()

    def assign(self, starts: Mapping[TP, int | None]) -> None:
        """Read exactly these partitions from these offsets (``None``: the earliest), without a group."""
        self._place(starts)

    def partitions_of(self, topic: str) -> list[int]:
        """The partitions of ``topic`` (GroupError if it does not exist)."""
        leaders = self._metadata([topic]).get(topic)
        if leaders is None:
            raise GroupError(f"topic {topic}: {error_text(3)}")
        return sorted(leaders)

    # -- reading ------------------------------------------------------------------------------------------------

    def _fenced_error(self) -> FencedInstanceError:
        return FencedInstanceError(f"group {self._group}: another member took instance id {self._instance}")

    def poll(self) -> list[Chunk]:
        """The record batches of one fetch round (what was handed back with :meth:`unread` first); rejoins the
        group first when needed. Empty when nothing came within the fetch wait."""
        self._polled = time.monotonic()
        if self._fenced:
            raise self._fenced_error()
        if self._queued:
            out = list(self._queued)
            self._queued.clear()
            return out
        try:
            if self._group is not None and self._member.rejoin:
                self._rejoin()
            if not self._held:
                time.sleep(self._fetch_wait_ms / 1000)
                return []
            out = self._fetch()
        except (OSError, WireError, Unsupported) as e:
            # one line when the cluster goes away and one when it is back, not one per retry
            if not self._failing:
                log.warning("cannot read from %s (%s); retrying every %d ms", self._bootstrap, e, self._retry_ms)
            else:
                log.debug("still cannot read: %s", e)
            self._failing = True
            self._in_flight, self._asked = [], {}
            self._cluster.close()
            self._stale_metadata = True
            time.sleep(self._retry_ms / 1000)
            return []
        if self._failing:
            log.warning("reading from %s again", self._bootstrap)
            self._failing = False
        return out

    def unread(self, chunks: Iterable[Chunk]) -> None:
        """Hand chunks back (the caller took part of them): the next :meth:`poll` returns them first."""
        self._queued.extendleft(reversed(list(chunks)))

    def seek(self, tp: TP, offset: int | None) -> None:
        """Read ``tp`` from ``offset`` (``None``: the earliest) on; chunks of it not handed over are dropped."""
        if tp not in self._held:
            return
        self._queued = deque(c for c in self._queued if (c.topic, c.partition) != tp)
        self._place({tp: offset})

    def position(self, tp: TP) -> int | None:
        """The next offset to fetch from ``tp`` (past any transaction markers read), ``None`` if not held."""
        part = self._held.get(tp)
        return None if part is None else part.offset

    def high_watermark(self, tp: TP) -> int:
        """The high watermark the last fetch of ``tp`` brought (-1: none yet)."""
        part = self._held.get(tp)
        return -1 if part is None else part.high

    def list_offsets(self, tps: Iterable[TP], when: int) -> dict[TP, int]:
        """Each partition's earliest (-2) or latest (-1) offset."""
        tps = list(tps)
        self._settle()
        leaders = self._leaders({t for t, _ in tps})
        by_node: dict[int, dict[str, list[int]]] = {}
        for t, p in tps:
            by_node.setdefault(leaders[(t, p)], {}).setdefault(t, []).append(p)
        out: dict[TP, int] = {}
        for node, topics in by_node.items():
            r = self._cluster.conn(node).call(API_LIST_OFFSETS, LIST_OFFSETS_V, list_offsets_request(topics, when))
            out.update(list_offsets_answer(r))
        return out

    def commit(self, offsets: Mapping[TP, int]) -> int:
        """Commit ``offsets`` to the group (0, or the first partition's error code; a connection failure is
        WireError or OSError). FENCED_INSTANCE_ID makes the next :meth:`poll` raise :class:`FencedInstanceError`."""
        if self._group is None or not offsets:
            return 0
        m = self._member
        by_topic: dict[str, list[bytes]] = {}
        for (t, p), off in sorted(offsets.items()):
            by_topic.setdefault(t, []).append(I32.pack(p) + I64.pack(off) + I32.pack(-1) + _string(None))
        body = (_string(self._group) + I32.pack(m.generation) + _string(m.member_id) + _string(self._instance)
                + _array([_string(t) + _array(ps) for t, ps in by_topic.items()]))
        try:
            r = self._coordinator().call(API_OFFSET_COMMIT, OFFSET_COMMIT_V, body)
        except (OSError, WireError):
            self._lost_coordinator()  # found again at the next request
            raise
        r.i32()
        first = 0
        for _ in range(r.count()):
            r.nullable_string()
            for _ in range(r.count()):
                r.i32()
                code = r.i16()
                first = first or code
        if first in _REJOIN:
            self._need_rejoin(m.generation, first)
        elif first == FENCED_INSTANCE_ID:
            # Fetch does not check membership: a replaced member would read on until its next heartbeat
            self._fenced = True
        return first

    def close(self) -> None:
        """Leave the group (a dynamic member: its partitions go to the other members at once; a static one keeps its
        place until its session runs out) and close every connection."""
        self._closed.set()
        if self._group is not None and self._member.member_id and self._instance is None:
            try:
                body = _string(self._group) + _array([_string(self._member.member_id) + _string(None)])
                self._coordinator().call(API_LEAVE_GROUP, LEAVE_GROUP_V, body)
            except (OSError, WireError, Unsupported) as e:
                log.debug("leave group: %s", e)
        if self._heartbeat is not None:
            self._heartbeat.join(5)
        if self._coordinator_conn is not None:
            self._coordinator_conn.close()
            self._coordinator_conn = None
        self._in_flight, self._asked = [], {}
        self._cluster.close()

    # -- fetching -----------------------------------------------------------------------------------------------

    def _place(self, starts: Mapping[TP, int | None]) -> None:
        leaders = self._leaders({t for t, _ in starts})
        earliest = [tp for tp, off in starts.items() if off is None]
        first = self.list_offsets(earliest, OFFSET_EARLIEST) if earliest else {}
        for tp, off in starts.items():
            self._held[tp] = _Held(tp[1], leaders[tp], first[tp] if off is None else off, topic=tp[0])

    def _metadata(self, topics: list[str]) -> dict[str, dict[int, int]]:
        self._settle()
        body = _array([_string(t) for t in topics]) + bytes([0, 0, 0])
        last: Exception | None = None
        nodes = list(self._cluster.brokers)
        for node in [*nodes, None]:
            try:
                if node is None:
                    self._cluster.close()
                    self._cluster.brokers = {}
                    got = self._cluster.bootstrap_metadata(body)
                else:
                    got = metadata_answer(self._cluster.conn(node).call(API_METADATA, METADATA_V, body))
            except (OSError, WireError, Unsupported) as e:
                last = e
                if node is not None:
                    self._drop(node)
                continue
            brokers, answer = got
            self._cluster.brokers = brokers
            return {t: leaders for t, (code, leaders) in answer.items() if code == 0}
        raise WireError(f"no broker answered Metadata: {last}")

    def _leaders(self, topics: set[str]) -> dict[TP, int]:
        deadline = time.monotonic() + self._timeout_s
        while True:
            got = self._metadata(sorted(topics))
            out = {(t, p): leader for t, leaders in got.items() for p, leader in leaders.items()}
            if set(got) >= topics and all(v >= 0 for v in out.values()):
                return out
            if time.monotonic() > deadline:
                raise WireError(f"no leaders for {sorted(topics - set(got)) or sorted(topics)}")
            time.sleep(0.05)

    def _drop(self, node: int) -> None:
        if node in self._in_flight:
            self._in_flight.remove(node)
        c = self._cluster.conns.pop(node, None)
        if c is not None:
            c.close()

    def _fetch(self) -> list[Chunk]:
        """The answers to the Fetch requests in flight (sent now if none are), then the next requests, sent before
        the caller folds these batches: the brokers prepare the next answers meanwhile. An answer for a partition
        that moved since it was asked for (a seek, a new assignment) is dropped."""
        if not self._in_flight:
            self._send_fetches()
        nodes, asked = self._in_flight, self._asked
        self._in_flight, self._asked = [], {}
        out: list[Chunk] = []
        reset: list[TP] = []
        served: list[TP] = []
        for node in nodes:
            for topic, partition, code, high, _stable, aborts, raw in fetch_answer(self._cluster.conn(node).receive()):
                part = self._held.get((topic, partition))
                if part is None or part.offset != asked.get((topic, partition)):
                    continue
                if code == OFFSET_OUT_OF_RANGE:
                    reset.append((topic, partition))
                    continue
                if code:
                    log.info("fetch %s/%s: %s; refreshing metadata", topic, partition, error_text(code))
                    self._stale_metadata = True
                    continue
                part.high = high
                part.pending_aborts.extend(aborts)
                if raw is not None and len(raw):
                    before = len(out)
                    self._chunks(part, raw, out)
                    if len(out) > before:
                        served.append((topic, partition))
        if reset:
            first = self.list_offsets(reset, OFFSET_EARLIEST)
            for tp in reset:
                log.warning("%s/%s: offset %s out of range; restarting at %s", tp[0], tp[1], self._held[tp].offset,
                            first[tp])
                self._held[tp].offset = first[tp]
        # A partition that brought batches goes to the end of the next requests, as the Java consumer does: a broker
        # hands a batch over a partition's byte limit only to the first partition of an answer with data, so a
        # partition never first would wait while the ones before it have data.
        for tp in served:
            self._held[tp] = self._held.pop(tp)
        if self.pipelined and not self._stale_metadata:
            self._send_fetches()
        return out

    def _send_fetches(self) -> None:
        if self._stale_metadata:
            leaders = self._leaders({t for t, _ in self._held})
            for tp, held in self._held.items():
                held.leader = leaders.get(tp, -1)
            self._stale_metadata = False
        by_node: dict[int, list[_Held]] = {}
        for held in self._held.values():
            by_node.setdefault(held.leader, []).append(held)
        for node, parts in by_node.items():
            self._cluster.conn(node).send(API_FETCH, FETCH_V, self._fetch_request(parts))
            self._in_flight.append(node)
            self._asked.update(((p.topic, p.partition), p.offset) for p in parts)

    def _settle(self) -> None:
        """Receive and drop the answers to the Fetch requests in flight, before another request on the same
        connections (answers come back in order)."""
        nodes, self._in_flight, self._asked = self._in_flight, [], {}
        for node in nodes:
            conn = self._cluster.conns.get(node)
            if conn is None:
                continue
            try:
                conn.receive()
            except (OSError, WireError) as e:
                log.debug("fetch answer dropped: %s", e)
                self._drop(node)

    def _fetch_request(self, parts: list[_Held]) -> bytes:
        by_topic: dict[str, list[bytes]] = {}
        for p in parts:
            by_topic.setdefault(p.topic, []).append(I32.pack(p.partition) + I32.pack(-1) + I64.pack(p.offset)
                                                    + I64.pack(-1) + I32.pack(self._partition_fetch_bytes_max))
        return (I32.pack(-1) + I32.pack(self._fetch_wait_ms) + I32.pack(1) + I32.pack(self._fetch_bytes_max)
                + I8.pack(ISOLATION_READ_COMMITTED) + I32.pack(0) + I32.pack(-1)
                + _array([_string(t) + _array(ps) for t, ps in by_topic.items()]) + _array([]) + _string(""))

    @staticmethod
    def _chunks(part: _Held, raw: memoryview, out: list[Chunk]) -> None:
        for header, batch in kept_batches(part, raw):
            base_offset, last_delta, base_ts = header[0], header[6], header[7]
            records, override = records_section(header, batch)
            out.append(Chunk(part.topic, part.partition, records, header[12], base_offset, base_ts, override,
                             part.offset))
            part.offset = base_offset + last_delta + 1

    # -- the group ----------------------------------------------------------------------------------------------

    def _coordinator(self) -> Connection:
        if self._coordinator_conn is None:
            assert self._group is not None
            deadline = time.monotonic() + self._timeout_s
            while True:
                address = self._find_coordinator()
                if address is not None:
                    break
                if time.monotonic() > deadline:
                    raise WireError(f"no coordinator for group {self._group}")
                time.sleep(self._retry_ms / 1000)
            with self._member.lock:
                self._member.coordinator = address
            self._coordinator_conn = Connection(address[0], address[1],
                                                self._timeout_s + self._rebalance_timeout_ms / 1000)
        return self._coordinator_conn

    def _find_coordinator(self) -> tuple[str, int] | None:
        assert self._group is not None
        self._settle()
        body = _string(self._group) + I8.pack(0)
        if not self._cluster.brokers:
            self._metadata(self._topics)
        for node in list(self._cluster.brokers):
            try:
                r = self._cluster.conn(node).call(API_FIND_COORDINATOR, FIND_COORDINATOR_V, body)
            except (OSError, WireError, Unsupported) as e:
                log.debug("find coordinator: %s", e)
                self._drop(node)
                continue
            r.i32()
            code = r.i16()
            r.nullable_string()
            r.i32()
            host, port = r.nullable_string() or "", r.i32()
            if code == 0:
                return host, port
            if code not in _COORDINATOR_MOVED:
                raise GroupError(f"group {self._group}: FindCoordinator: {error_text(code)}")
        self._cluster.brokers = {}  # asked afresh next time
        return None

    def _lost_coordinator(self) -> None:
        if self._coordinator_conn is not None:
            self._coordinator_conn.close()
            self._coordinator_conn = None

    def _need_rejoin(self, generation: int, code: int) -> None:
        with self._member.lock:
            if self._member.generation == generation:
                self._member.rejoin = True
                if code == UNKNOWN_MEMBER_ID:
                    self._member.member_id = ""

    def _rejoin(self) -> None:
        """Revoke what is held, join and sync until the coordinator settles, then announce the new assignment."""
        assert self._on_revoke is not None and self._on_assign is not None
        held = list(self._held) or self._unplaced
        if held:
            self._on_revoke(held)
            self._held.clear()
            self._queued.clear()
            self._unplaced = []
        while not self._closed.is_set():
            try:
                parts = self._join_and_sync()
            except (OSError, WireError, Unsupported):
                self._lost_coordinator()
                raise  # poll says so once, and the next poll tries again (so a stop is not held up)
            if self._fenced:
                raise self._fenced_error()
            if parts is None:
                continue
            break
        else:
            return
        parts.sort()
        starts = self._on_assign(parts) if parts else {}
        try:
            self._place({tp: starts.get(tp) for tp in parts})
        except (OSError, WireError, Unsupported):
            self._unplaced = parts  # revoked at the next rejoin, which the next poll makes
            with self._member.lock:
                self._member.rejoin = True
            raise

    def _join_and_sync(self) -> list[TP] | None:
        """One JoinGroup and SyncGroup; the partitions assigned, or ``None`` to try again."""
        assert self._group is not None
        conn = self._coordinator()
        m = self._member
        meta = subscription(self._topics)
        body = (_string(self._group) + I32.pack(self._session_timeout_ms) + I32.pack(self._rebalance_timeout_ms)
                + _string(m.member_id) + _string(self._instance) + _string("consumer")
                + _array([_string(ASSIGNOR) + _bytes(meta)]))
        r = conn.call(API_JOIN_GROUP, JOIN_GROUP_V, body)
        r.i32()
        code, generation = r.i16(), r.i32()
        r.nullable_string()  # protocol_name
        leader, member_id = r.nullable_string() or "", r.nullable_string() or ""
        members = {}
        for _ in range(r.count()):
            mid = r.nullable_string() or ""
            r.nullable_string()  # group_instance_id
            members[mid] = r.nullable_bytes() or b""
        if code == MEMBER_ID_REQUIRED:
            m.member_id = member_id
            return None
        if code == FENCED_INSTANCE_ID:
            raise self._fenced_error()
        if code == UNKNOWN_MEMBER_ID:
            m.member_id = ""
            return None
        if code in _COORDINATOR_MOVED:
            self._lost_coordinator()
            time.sleep(self._retry_ms / 1000)
            return None
        if code == REBALANCE_IN_PROGRESS:
            return None
        if code:
            raise GroupError(f"group {self._group}: JoinGroup: {error_text(code)}")
        m.member_id = member_id
        assignments: list[bytes] = []
        if leader == member_id:
            subs = {mid: subscribed_topics(meta_) for mid, meta_ in members.items()}
            wanted = sorted({t for ts in subs.values() for t in ts})
            counts = {t: len(ps) for t, ps in self._metadata(wanted).items()}
            plan = range_assign(subs, counts)
            assignments = [_string(mid) + _bytes(assignment(plan[mid])) for mid in sorted(plan)]
        body = (_string(self._group) + I32.pack(generation) + _string(member_id) + _string(self._instance)
                + _array(assignments))
        r = conn.call(API_SYNC_GROUP, SYNC_GROUP_V, body)
        r.i32()
        code = r.i16()
        data = r.nullable_bytes()
        if code == FENCED_INSTANCE_ID:
            self._fenced = True
            return None
        if code in _REJOIN:
            if code == UNKNOWN_MEMBER_ID:
                m.member_id = ""
            return None
        if code in _COORDINATOR_MOVED:
            self._lost_coordinator()
            return None
        if code:
            raise GroupError(f"group {self._group}: SyncGroup: {error_text(code)}")
        with m.lock:
            m.generation = generation
            m.rejoin = False
        mine = set(self._topics)
        return [tp for tp in assigned_partitions(data) if tp[0] in mine]

    def _poll_expired(self, conn: Connection, generation: int, member_id: str) -> None:
        """The caller has not polled within max_poll_interval_ms: out of the group until it polls again."""
        log.warning("group %s: poll not called for over max.poll.interval.ms (%d ms), so this member leaves the "
                    "group and its partitions go to the others; the next poll joins again", self._group,
                    self._max_poll_interval_s * 1000)
        with self._member.lock:
            if self._member.generation != generation:
                return
            self._member.rejoin = True
            if self._instance is not None:
                return  # a static member's session runs out; its instance id takes the partitions back at once
            self._member.member_id = ""
        assert self._group is not None
        conn.call(API_LEAVE_GROUP, LEAVE_GROUP_V, _string(self._group) + _array([_string(member_id) + _string(None)]))

    def _heartbeats(self) -> None:
        """The heartbeat thread: on a connection of its own, every ``heartbeat_ms`` while a member."""
        conn: Connection | None = None
        at: tuple[str, int] | None = None
        while not self._closed.wait(self._heartbeat_ms / 1000):
            m = self._member
            with m.lock:
                generation, member_id, address, rejoin = m.generation, m.member_id, m.coordinator, m.rejoin
            if rejoin or generation < 0 or address is None:
                continue
            try:
                if conn is None or at != address:
                    if conn is not None:
                        conn.close()
                    conn, at = Connection(address[0], address[1], self._timeout_s), address
                if time.monotonic() - self._polled > self._max_poll_interval_s:
                    self._poll_expired(conn, generation, member_id)  # a lost LeaveGroup: the session runs out
                    continue
                assert self._group is not None
                body = (_string(self._group) + I32.pack(generation) + _string(member_id)
                        + _string(self._instance))
                r = conn.call(API_HEARTBEAT, HEARTBEAT_V, body)
                r.i32()
                code = r.i16()
            except (OSError, WireError) as e:
                log.debug("heartbeat: %s", e)
                if conn is not None:
                    conn.close()
                conn = None
                continue
            if code in _REJOIN:
                self._need_rejoin(generation, code)
            elif code in _COORDINATOR_MOVED:
                self._need_rejoin(generation, code)  # the poll loop finds the new coordinator as it rejoins
            elif code == FENCED_INSTANCE_ID:
                self._fenced = True
            elif code:
                log.warning("group %s: heartbeat: %s", self._group, error_text(code))
        if conn is not None:
            conn.close()
