"""The console's one way into a Kafka cluster: blocking confluent-kafka calls that return frozen values.

Everything here is synchronous and may wait on the network for up to ``timeout_s``; the web layer calls it in
worker threads (never on the event loop). Failures come out as :class:`ConsoleError` with one line of text (the
cluster unreachable, an unknown topic, a bad offset), which the pages show as they are.

One ``AdminClient`` is kept for the console's life (librdkafka's handles are thread-safe); consumers are made per
request, assigned (never subscribed: the console joins no group and commits nothing), and closed at once. Groups'
committed offsets come from :class:`loosely.clients.groups.GroupOffsets` (OffsetFetch over loosely's own
connection, many groups per request, connections kept), not from a librdkafka handle per group.

Search is a bounded scan: it reads the chosen partitions from their start and stops at ``records_max`` records or
``time_ms_max``, whichever comes first, and :class:`SearchProgress` says how far it got while it runs and after.
When a ``key_lookup`` is given (loosely's broker keeps a key index per segment), a key search asks it for the
offsets instead and reads only those records.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined,unused-ignore]  # no __all__ in some versions
    AdminClient,
    ConfigResource,
    NewTopic,
    OffsetSpec,
)

from loosely.clients.groups import GroupOffsets
from loosely.clients.wire import WireError
from loosely.console._log_dirs import partition_sizes
from loosely.protocol.errors import ProtocolError

__all__ = [
    "BROWSE_RECORDS_MAX",
    "Cluster",
    "ConsoleError",
    "GroupDetail",
    "GroupPartition",
    "KeyLookup",
    "Member",
    "Overview",
    "PartitionInfo",
    "Record",
    "SearchProgress",
    "SearchQuery",
    "TopicDetail",
    "TopicSummary",
]

KeyLookup = Callable[[str, int, bytes, int], list[int]]
"""``key_lookup(topic, partition, key, limit) -> offsets`` (newest first): an index the broker keeps, when it does.
Called on a search's worker thread, never on an event loop: an implementation that lives on the broker's loop must
hop onto it (``asyncio.run_coroutine_threadsafe``) or be safe to call from another thread."""

BROWSE_RECORDS_MAX: Final = 500
"""Records one page of a partition shows at most (Kafka UI pages by 100; a page is rendered whole)."""

TIMEOUT_S_DEFAULT: Final = 10.0
"""How long one cluster call may take before the page says the cluster did not answer."""

_RETENTION_CONFIGS: Final = ("cleanup.policy", "retention.ms", "retention.bytes", "segment.bytes")


class ConsoleError(Exception):
    """Something the console cannot do, said in one line (shown on the page; never a traceback)."""


def _error_text(e: BaseException) -> str:
    err = e.args[0] if isinstance(e, KafkaException) and e.args else None
    if isinstance(err, KafkaError):
        return str(err.str() or KafkaError(err.code()).str())
    return str(e) or type(e).__name__


@dataclass(frozen=True, slots=True)
class Overview:
    cluster_id: str | None
    controller: int | None
    brokers: tuple[tuple[int, str, int], ...]


@dataclass(frozen=True, slots=True)
class TopicSummary:
    name: str
    partitions: int
    messages: int  # sum over partitions of high watermark minus log start
    size_bytes: int | None  # on disk, from DescribeLogDirs; None when the cluster cannot be asked


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    partition: int
    leader: int | None
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    start: int
    end: int
    size_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class TopicDetail:
    name: str
    partitions: tuple[PartitionInfo, ...]
    configs: tuple[tuple[str, str | None, bool], ...]  # name, value, is the default

    @property
    def retention(self) -> dict[str, str | None]:
        return {n: v for n, v, _ in self.configs if n in _RETENTION_CONFIGS}


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    client_id: str
    host: str
    assignment: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class GroupPartition:
    topic: str
    partition: int
    committed: int | None
    end: int
    owner: str | None

    @property
    def lag(self) -> int | None:
        return None if self.committed is None else max(0, self.end - self.committed)


@dataclass(frozen=True, slots=True)
class GroupDetail:
    group_id: str
    state: str
    members: tuple[Member, ...]
    partitions: tuple[GroupPartition, ...]

    @property
    def lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What to look for: ``field`` is ``key``, ``value`` (a substring) or ``header`` (``name`` or ``name=value``)."""

    topic: str
    field: str
    text: str
    partition: int | None = None
    records_max: int = 100_000
    time_ms_max: int = 10_000
    matches_max: int = 100


@dataclass(slots=True)
class SearchProgress:
    """Where a search is; written by the scanning thread, read by the pages (plain ints and lists: a read sees a
    moment's values, never a torn one under the GIL)."""

    query: SearchQuery
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    scanned: int = 0
    total: int = 0
    matches: list[Record] = field(default_factory=list)
    done: bool = False
    stopped: str = ""  # why it ended: "end of the partitions", "records limit", "time limit", "index", an error
    started: float = field(default_factory=time.monotonic)
    elapsed_ms: int = 0
    positions: dict[int, int] = field(default_factory=dict)  # partition -> next offset to read


def _bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


def _matches(q: SearchQuery, key: bytes, r: Record) -> bool:
    if q.field == "key":
        return r.key == key
    if q.field == "value":
        return r.value is not None and key in r.value
    name, sep, value = q.text.partition("=")
    return any(h == name and (not sep or (v or b"") == value.encode()) for h, v in r.headers)


class Cluster:
    """A Kafka cluster as the console sees it; every method blocks for at most about ``timeout_s``."""

    def __init__(self, bootstrap: str, client_config: dict[str, str] | None = None,
                 *, timeout_s: float = TIMEOUT_S_DEFAULT) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self._conf: dict[str, Any] = {**(client_config or {}), "bootstrap.servers": bootstrap}
        self._admin: AdminClient | None = None
        self._producer: Producer | None = None
        self._fetcher: Consumer | None = None
        self._group_offsets: GroupOffsets | None = None
        self._lock = threading.Lock()
        self._fetch_lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------------------------------

    def admin(self) -> AdminClient:
        with self._lock:
            if self._admin is None:
                self._admin = AdminClient({**self._conf, "log_level": 0})
            return self._admin

    def _consumer(self) -> Consumer:
        # fetch.wait.max.ms: a fetch parked at a partition's end (500 ms by default) would hold up the next
        # assign's first records by as long; the console's reads are short and interactive
        return Consumer({**self._conf, "group.id": "loosely-console", "enable.auto.commit": False,
                         "enable.partition.eof": True, "fetch.wait.max.ms": 10, "log_level": 0})

    def _wait(self, future: Any, what: str) -> Any:
        try:
            return future.result(self.timeout_s)
        except KafkaException as e:
            raise ConsoleError(f"{what}: {_error_text(e)}") from None
        except TimeoutError:
            raise ConsoleError(f"{what}: the cluster did not answer within {self.timeout_s:g} s") from None

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(self.timeout_s)
            self._admin = self._producer = None
            if self._group_offsets is not None:
                self._group_offsets.close()
            self._group_offsets = None
        with self._fetch_lock:
            if self._fetcher is not None:
                self._fetcher.close()
            self._fetcher = None

    def committed(self, group_ids: Sequence[str]) -> dict[str, dict[tuple[str, int], int]]:
        """``{group: {(topic, partition): committed offset}}`` for the groups that answered, in one OffsetFetch
        per coordinator."""
        with self._lock:
            if self._group_offsets is None:
                try:
                    self._group_offsets = GroupOffsets(self._conf, client_id="loosely-console")
                except ValueError as e:  # a SASL mechanism loosely's own connection does not speak
                    raise ConsoleError(f"committed offsets: {e}") from None
            reader = self._group_offsets
        try:
            return reader.committed(group_ids, self.timeout_s)
        except TimeoutError as e:
            raise ConsoleError(f"committed offsets: {e}") from None
        except (OSError, WireError, ProtocolError) as e:
            raise ConsoleError(f"committed offsets: cannot ask the cluster at {self.bootstrap}: {e}") from None

    def _metadata(self, topic: str | None = None) -> Any:
        try:
            md = self.admin().list_topics(topic, timeout=self.timeout_s)
        except KafkaException as e:
            raise ConsoleError(f"cannot reach the cluster at {self.bootstrap}: {_error_text(e)}") from None
        return md

    def offsets(self, parts: Sequence[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, int]]:
        """``{(topic, partition): (log start, high watermark)}`` in two batched ListOffsets requests."""
        if not parts:
            return {}
        out: dict[tuple[str, int], list[int]] = {p: [0, 0] for p in parts}
        for i, spec in enumerate((OffsetSpec.earliest(), OffsetSpec.latest())):  # type: ignore[no-untyped-call]
            futures = self.admin().list_offsets({TopicPartition(t, p): spec for t, p in parts},
                                                request_timeout=self.timeout_s)
            for tp, f in futures.items():
                # a partition without a leader right now: shown as 0, the page still renders
                with contextlib.suppress(KafkaException, TimeoutError):
                    out[(tp.topic, tp.partition)][i] = max(0, f.result(self.timeout_s).offset)
        return {k: (v[0], v[1]) for k, v in out.items()}

    # -- cluster and topics -------------------------------------------------------------------------------

    def overview(self) -> Overview:
        md = self._metadata()
        brokers = tuple(sorted((b.id, b.host, b.port) for b in md.brokers.values()))
        return Overview(md.cluster_id, md.controller_id if md.controller_id >= 0 else None, brokers)

    def topic_names(self) -> dict[str, int]:
        md = self._metadata()
        return {n: len(t.partitions) for n, t in md.topics.items() if t.error is None}

    def sizes(self) -> dict[tuple[str, int], int] | None:
        """Bytes on disk per partition (DescribeLogDirs to every broker), None when the cluster cannot be asked."""
        brokers = [(b.id, b.host, b.port) for b in self._metadata().brokers.values()]
        return partition_sizes(brokers, self._conf, self.timeout_s)  # with the console's TLS and SASL settings

    def topics(self) -> list[TopicSummary]:
        names = self.topic_names()
        marks = self.offsets([(n, p) for n, count in names.items() for p in range(count)])
        totals: dict[str, int] = dict.fromkeys(names, 0)
        for (t, _), (lo, hi) in marks.items():
            totals[t] += hi - lo
        sizes = self.sizes()
        size: dict[str, int] = {}
        for (t, _), n in (sizes or {}).items():
            size[t] = size.get(t, 0) + n
        return [TopicSummary(n, names[n], totals[n], None if sizes is None else size.get(n, 0))
                for n in sorted(names)]

    def topic(self, name: str) -> TopicDetail:
        futures = self.admin().describe_topics(TopicCollection([name]), request_timeout=self.timeout_s)
        desc = self._wait(futures[name], f"topic {name}")
        marks = self.offsets([(name, p.id) for p in desc.partitions])
        sizes = self.sizes()
        parts = tuple(
            PartitionInfo(p.id, p.leader.id if p.leader is not None else None, tuple(r.id for r in p.replicas),
                          tuple(r.id for r in p.isr), *marks[(name, p.id)],
                          None if sizes is None else sizes.get((name, p.id), 0))
            for p in sorted(desc.partitions, key=lambda p: p.id)
        )
        res = ConfigResource(ConfigResource.Type.TOPIC, name)
        entries = self._wait(self.admin().describe_configs([res], request_timeout=self.timeout_s)[res],
                             f"configs of {name}")
        configs = tuple(sorted((e.name, None if e.is_sensitive else e.value, bool(e.is_default))
                               for e in entries.values()))
        return TopicDetail(name, parts, configs)

    def create_topic(self, name: str, partitions: int, replication: int, configs: dict[str, str]) -> None:
        if not name:
            raise ConsoleError("a topic needs a name")
        futures = self.admin().create_topics([NewTopic(name, partitions, replication, config=configs)],
                                             request_timeout=self.timeout_s)
        self._wait(futures[name], f"create topic {name}")

    def delete_topic(self, name: str) -> None:
        futures = self.admin().delete_topics([name], request_timeout=self.timeout_s)
        self._wait(futures[name], f"delete topic {name}")

    def partitions(self, topic: str) -> int:
        count = self.topic_names().get(topic)
        if count is None:
            raise ConsoleError(f"no topic {topic} in the cluster")
        return count

    # -- messages -----------------------------------------------------------------------------------------

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        """The first offset at or after ``timestamp_ms`` (the partition's end when there is none)."""
        c = self._consumer()
        try:
            found = c.offsets_for_times([TopicPartition(topic, partition, timestamp_ms)], timeout=self.timeout_s)
            if found[0].offset >= 0:
                return int(found[0].offset)
            return int(c.get_watermark_offsets(TopicPartition(topic, partition), timeout=self.timeout_s)[1])
        except KafkaException as e:
            raise ConsoleError(f"offset for time {timestamp_ms} in {topic}/{partition}: {_error_text(e)}") from None
        finally:
            c.close()

    def browse(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        """Up to ``limit`` records of one partition from ``offset`` (from the start when it is before it)."""
        if partition < 0 or partition >= self.partitions(topic):
            raise ConsoleError(f"{topic} has no partition {partition}")
        if offset < 0:
            raise ConsoleError(f"offset {offset} is negative")
        lo, hi = self.offsets([(topic, partition)])[(topic, partition)]
        if offset > hi:
            raise ConsoleError(f"offset {offset} is past the end of {topic}/{partition} (next offset {hi})")
        offset = max(offset, lo)
        limit = min(max(limit, 1), BROWSE_RECORDS_MAX)
        return self._read(topic, {partition: offset}, {partition: min(hi, offset + limit)}, limit)

    @staticmethod
    def _record(m: Any) -> Record:
        ts_type, ts = m.timestamp()
        raw = m.headers() or []
        pairs = raw.items() if isinstance(raw, dict) else raw
        headers = tuple((str(k), _bytes(v)) for k, v in pairs)
        return Record(int(m.partition()), int(m.offset() or 0), ts if ts_type != 0 else None, _bytes(m.key()),
                      _bytes(m.value()), headers)

    def _read(self, topic: str, start: dict[int, int], end: dict[int, int], limit: int, *,
              on_record: Callable[[Record], bool] | None = None, deadline: float | None = None) -> list[Record]:
        """Reads each partition from ``start`` to just before ``end``; ``on_record`` returning False stops."""
        todo = {p for p in start if start[p] < end[p]}
        out: list[Record] = []
        if not todo:
            return out
        c = self._consumer()
        try:
            c.assign([TopicPartition(topic, p, start[p]) for p in todo])
            give_up = deadline if deadline is not None else time.monotonic() + self.timeout_s
            while todo and time.monotonic() < give_up:
                for m in c.consume(500, timeout=0.2):
                    err = m.error()
                    p = m.partition()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            todo.discard(p)
                            continue
                        raise ConsoleError(f"reading {topic}/{p}: {err.str()}")
                    if p not in todo:
                        continue
                    r = self._record(m)
                    if r.offset + 1 >= end[p]:
                        todo.discard(p)
                    if on_record is None:
                        out.append(r)
                        if len(out) >= limit:
                            return out
                    elif not on_record(r):
                        return out
        finally:
            c.close()
        return sorted(out, key=lambda r: (r.partition, r.offset))

    def fetch(self, topic: str, partition: int, offsets: Sequence[int]) -> list[Record]:
        """The records at ``offsets`` of one partition, in the order asked; an offset whose record is gone
        (retention, compaction) is left out. One consumer, moved from offset to offset."""
        got: list[Record] = []
        lo, hi = self.offsets([(topic, partition)])[(topic, partition)]
        offsets = [o for o in offsets if lo <= o < hi]  # outside: gone already, or never there
        if not offsets:
            return got
        with self._fetch_lock:  # one consumer kept for these point reads: connected once, then milliseconds each
            if self._fetcher is None:
                self._fetcher = self._consumer()
            return self._fetch(self._fetcher, topic, partition, offsets)

    def _fetch(self, c: Consumer, topic: str, partition: int, offsets: Sequence[int]) -> list[Record]:
        got: list[Record] = []
        try:
            for o in offsets:
                c.assign([TopicPartition(topic, partition, o)])
                give_up = time.monotonic() + self.timeout_s
                while time.monotonic() < give_up:
                    m = c.poll(0.2)
                    if m is None:
                        continue
                    if m.error() is not None:
                        break  # the end of the partition (EOF), or an error: the record is not there
                    if m.offset() == o:
                        got.append(self._record(m))
                    break
        except KafkaException as e:
            raise ConsoleError(f"reading {topic}/{partition}: {_error_text(e)}") from None
        finally:
            c.unassign()
        return got

    def produce(self, topic: str, partition: int | None, key: bytes | None, value: bytes | None,
                headers: list[tuple[str, bytes]]) -> tuple[int, int]:
        """Produces one record and waits for it to be acknowledged; returns ``(partition, offset)``."""
        with self._lock:
            if self._producer is None:
                self._producer = Producer({**self._conf, "log_level": 0, "linger.ms": 0})
            producer = self._producer
        result: list[Any] = []
        kwargs: dict[str, Any] = {"key": key, "value": value, "headers": headers or None,
                                  "on_delivery": lambda err, msg: result.append((err, msg))}
        if partition is not None:
            kwargs["partition"] = partition
        try:
            producer.produce(topic, **kwargs)
        except (KafkaException, BufferError) as e:
            raise ConsoleError(f"produce to {topic}: {_error_text(e)}") from None
        producer.flush(self.timeout_s)
        if not result:
            raise ConsoleError(f"produce to {topic}: not acknowledged within {self.timeout_s:g} s")
        err, msg = result[0]
        if err is not None:
            raise ConsoleError(f"produce to {topic}: {err.str()}")
        return int(msg.partition()), int(msg.offset())

    def search(self, progress: SearchProgress, key_lookup: KeyLookup | None = None) -> None:
        """Runs ``progress.query`` to its end, updating ``progress`` as it goes (call it in a thread)."""
        q = progress.query
        try:
            count = self.partitions(q.topic)
            parts = [q.partition] if q.partition is not None else list(range(count))
            if q.partition is not None and not 0 <= q.partition < count:
                raise ConsoleError(f"{q.topic} has no partition {q.partition}")
            needle = q.text.encode()
            if q.field == "key" and key_lookup is not None:
                for p in parts:
                    room = q.matches_max - len(progress.matches)
                    if room <= 0:
                        break
                    offsets = key_lookup(q.topic, p, needle, room)[:room]
                    progress.matches.extend(self.fetch(q.topic, p, offsets))
                progress.stopped = "answered from the broker's key index"
                return
            marks = self.offsets([(q.topic, p) for p in parts])
            start = {p: marks[(q.topic, p)][0] for p in parts}
            end = {p: marks[(q.topic, p)][1] for p in parts}
            progress.total = sum(end[p] - start[p] for p in parts)
            progress.positions = dict(start)
            deadline = progress.started + q.time_ms_max / 1000
            progress.stopped = "the end of the partitions"

            def on_record(r: Record) -> bool:
                progress.scanned += 1
                progress.positions[r.partition] = r.offset + 1
                if _matches(q, needle, r):
                    progress.matches.append(r)
                if len(progress.matches) >= q.matches_max:
                    progress.stopped = f"{q.matches_max} matches"
                    return False
                if progress.scanned >= q.records_max:
                    progress.stopped = f"the limit of {q.records_max} records scanned"
                    return False
                return True

            self._read(q.topic, start, end, 0, on_record=on_record, deadline=deadline)
            if progress.stopped == "the end of the partitions" and progress.scanned < progress.total:
                progress.stopped = f"the time limit of {q.time_ms_max} ms"
        except ConsoleError as e:
            progress.stopped = f"error: {e}"
        except Exception as e:
            progress.stopped = f"error: {_error_text(e)}"
        finally:
            progress.elapsed_ms = int((time.monotonic() - progress.started) * 1000)
            progress.done = True

    # -- consumer groups ------------------------------------------------------------------------------------

    def groups(self) -> list[tuple[str, str]]:
        result = self._wait(self.admin().list_consumer_groups(request_timeout=self.timeout_s), "list groups")
        return sorted((g.group_id, g.state.name if g.state is not None else "UNKNOWN") for g in result.valid)

    def group(self, group_id: str) -> GroupDetail:
        futures = self.admin().describe_consumer_groups([group_id], request_timeout=self.timeout_s)
        d = self._wait(futures[group_id], f"group {group_id}")
        members = tuple(
            Member(m.member_id, m.client_id, m.host,
                   tuple(sorted((tp.topic, tp.partition) for tp in (m.assignment.topic_partitions
                                                                       if m.assignment else []))))
            for m in d.members
        )
        owners = {tp: m.client_id or m.member_id for m in members for tp in m.assignment}
        names = self.topic_names()
        committed = {tp: o for tp, o in self.committed([group_id]).get(group_id, {}).items()
                     if tp[0] in names and not tp[0].startswith("__")}
        wanted = sorted(set(committed) | set(owners))
        marks = self.offsets(wanted)
        parts = tuple(GroupPartition(t, p, committed.get((t, p)),
                                     marks[(t, p)][1], owners.get((t, p))) for t, p in wanted)
        state = d.state.name if d.state is not None else "UNKNOWN"
        return GroupDetail(group_id, state, members, parts)

    def reset_offsets(self, group_id: str, topic: str, to: str) -> dict[int, int]:
        """Moves the group's committed offsets on every partition of ``topic`` to ``earliest``, ``latest`` or a
        number; refused while the group has members (Kafka's kafka-consumer-groups.sh refuses too)."""
        detail = self.group(group_id)
        if detail.members:
            raise ConsoleError(f"group {group_id} has {len(detail.members)} active member(s); stop its consumers "
                               "before resetting its offsets")
        count = self.partitions(topic)
        marks = self.offsets([(topic, p) for p in range(count)])
        if to in ("earliest", "latest"):
            targets = {p: marks[(topic, p)][0 if to == "earliest" else 1] for p in range(count)}
        else:
            try:
                n = int(to)
            except ValueError:
                raise ConsoleError(f"reset to {to!r}: give earliest, latest or an offset") from None
            bad = [p for p in range(count) if not marks[(topic, p)][0] <= n <= marks[(topic, p)][1]]
            if bad:
                lo, hi = marks[(topic, bad[0])]
                raise ConsoleError(f"offset {n} is outside {topic}/{bad[0]} ({lo}..{hi})")
            targets = dict.fromkeys(range(count), n)
        req = ConsumerGroupTopicPartitions(group_id, [TopicPartition(topic, p, o) for p, o in targets.items()])
        futures = self.admin().alter_consumer_group_offsets([req], request_timeout=self.timeout_s)
        self._wait(next(iter(futures.values())), f"reset offsets of {group_id}")
        return targets
