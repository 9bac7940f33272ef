"""MirrorMaker 2's naming and record formats, byte-compatible with Apache Kafka's ``connect/mirror-client``.

Java's ``RemoteClusterUtils``/``MirrorClient`` read what :mod:`loosely.clients.mirror` writes, and this module reads
what a Java MirrorMaker 2 writes.

Names (``DefaultReplicationPolicy``, separator ``.``)::

    remote topic        <source alias>.<topic>            e.g. "us-east.orders"
    heartbeats          heartbeats                        on every cluster; remote copies "<alias>.heartbeats"
    checkpoints         <source alias>.checkpoints.internal        on the target cluster
    offset syncs        mm2-offset-syncs.<target alias>.internal   on the source cluster (the default location)

Records ("protocol types" structs: STRING = int16 length + UTF-8, INT16/32/64 big-endian)::

    OffsetSync  key   topic STRING, partition INT32
                value upstreamOffset INT64, offset INT64
    Checkpoint  key   group STRING, topic STRING, partition INT32          (topic: the *target* topic name)
                value version INT16 (0), upstreamOffset INT64, offset INT64, metadata STRING
    Heartbeat   key   sourceClusterAlias STRING, targetClusterAlias STRING
                value version INT16 (0), timestamp INT64

Offset translation (``OffsetSyncStore``): for a group's upstream offset ``u`` take the latest sync with
``sync.upstream <= u``; the downstream offset is ``sync.downstream`` if ``u == sync.upstream`` and
``sync.downstream + 1`` otherwise, so a consumer that fails over may re-read a few records but never skips one.

>>> sync = OffsetSync("orders", 3, 1200, 1100)
>>> OffsetSync.decode(sync.key(), sync.value()) == sync
True
>>> DefaultReplicationPolicy().format_remote_topic("us-east", "orders")
'us-east.orders'
"""

from __future__ import annotations

import bisect
import re
import struct
from collections import deque
from dataclasses import dataclass
from typing import Final

from loosely.protocol.primitives import I16, I32, I64, Reader
from loosely.protocol.primitives import string as _str

__all__ = [
    "HEARTBEATS_TOPIC",
    "Checkpoint",
    "DefaultReplicationPolicy",
    "Heartbeat",
    "IdentityReplicationPolicy",
    "Mm2RecordError",
    "OffsetSync",
    "OffsetSyncStore",
    "ReplicationPolicy",
    "TopicFilter",
]

VERSION: Final = 0
HEARTBEATS_TOPIC: Final = "heartbeats"
_TWO_INT64: Final = struct.Struct(">qq")
assert _TWO_INT64.size == 16
# OffsetSyncStore keeps this many syncs per partition (MirrorMaker's store keeps 64 in power-of-two buckets)
SYNCS_PER_PARTITION_MAX: Final = 64


class Mm2RecordError(ValueError):
    """Bytes that are not a MirrorMaker 2 record of the expected kind."""


class _Reader(Reader):
    """The primitives' reader, failing with :class:`Mm2RecordError`."""

    __slots__ = ()
    error = Mm2RecordError

    def version(self) -> None:
        v = self.i16()
        if v != VERSION:
            raise Mm2RecordError(f"unsupported version {v}")


@dataclass(frozen=True, slots=True)
class OffsetSync:
    topic: str
    partition: int
    upstream_offset: int
    downstream_offset: int

    def key(self) -> bytes:
        return _str(self.topic) + I32.pack(self.partition)

    def value(self) -> bytes:
        return _TWO_INT64.pack(self.upstream_offset, self.downstream_offset)

    @staticmethod
    def decode(key: bytes, value: bytes) -> OffsetSync:
        k, v = _Reader(key), _Reader(value)
        return OffsetSync(k.string(), k.i32(), v.i64(), v.i64())


@dataclass(frozen=True, slots=True)
class Checkpoint:
    group: str
    topic: str  # the topic on the target cluster
    partition: int
    upstream_offset: int
    downstream_offset: int
    metadata: str = ""

    def key(self) -> bytes:
        return _str(self.group) + _str(self.topic) + I32.pack(self.partition)

    def value(self) -> bytes:
        return I16.pack(VERSION) + _TWO_INT64.pack(self.upstream_offset, self.downstream_offset) + _str(
            self.metadata
        )

    @staticmethod
    def decode(key: bytes, value: bytes) -> Checkpoint:
        k, v = _Reader(key), _Reader(value)
        group, topic, partition = k.string(), k.string(), k.i32()
        v.version()
        return Checkpoint(group, topic, partition, v.i64(), v.i64(), v.string())


@dataclass(frozen=True, slots=True)
class Heartbeat:
    source: str
    target: str
    timestamp_ms: int

    def key(self) -> bytes:
        return _str(self.source) + _str(self.target)

    def value(self) -> bytes:
        return I16.pack(VERSION) + I64.pack(self.timestamp_ms)

    @staticmethod
    def decode(key: bytes, value: bytes) -> Heartbeat:
        k, v = _Reader(key), _Reader(value)
        source, target = k.string(), k.string()
        v.version()
        return Heartbeat(source, target, v.i64())


class ReplicationPolicy:
    """How topics are named on the target (``DefaultReplicationPolicy`` and ``IdentityReplicationPolicy``)."""

    separator = "."

    def format_remote_topic(self, source_alias: str, topic: str) -> str:
        raise NotImplementedError

    def topic_source(self, topic: str) -> str | None:
        """The alias of the cluster a remote topic came from, or None for a local topic."""
        raise NotImplementedError

    def upstream_topic(self, topic: str) -> str | None:
        raise NotImplementedError

    def heartbeats_topic(self) -> str:
        return HEARTBEATS_TOPIC

    def offset_syncs_topic(self, cluster_alias: str) -> str:
        return f"mm2-offset-syncs.{cluster_alias}.internal"

    def checkpoints_topic(self, cluster_alias: str) -> str:
        return f"{cluster_alias}.checkpoints.internal"

    def is_heartbeats_topic(self, topic: str) -> bool:
        """``heartbeats`` and its remote copies (``a.heartbeats``, ``b.a.heartbeats``): always mirrored."""
        return topic == HEARTBEATS_TOPIC or topic.endswith(self.separator + HEARTBEATS_TOPIC)


class DefaultReplicationPolicy(ReplicationPolicy):
    def __init__(self, separator: str = ".") -> None:
        self.separator = separator

    def format_remote_topic(self, source_alias: str, topic: str) -> str:
        return f"{source_alias}{self.separator}{topic}"

    def topic_source(self, topic: str) -> str | None:
        alias, sep, _ = topic.partition(self.separator)
        return alias if sep else None

    def upstream_topic(self, topic: str) -> str | None:
        _, sep, rest = topic.partition(self.separator)
        return rest if sep else None


class IdentityReplicationPolicy(ReplicationPolicy):
    """Keeps topic names (MirrorMaker 1 behaviour); cycles cannot be detected, so it suits one-way flows only."""

    def format_remote_topic(self, source_alias: str, topic: str) -> str:
        return topic

    def topic_source(self, topic: str) -> str | None:
        return None

    def upstream_topic(self, topic: str) -> str | None:
        return None


@dataclass(frozen=True)
class TopicFilter:
    """MirrorMaker's ``DefaultTopicFilter``: include ``topics`` regexes, exclude ``topics.exclude`` ones."""

    include: str = ".*"
    exclude: str = r".*[\-\.]internal,.*\.replica,__.*"

    def accepts(self, topic: str) -> bool:
        inc = [re.compile(p.strip()) for p in self.include.split(",") if p.strip()]
        exc = [re.compile(p.strip()) for p in self.exclude.split(",") if p.strip()]
        return any(p.fullmatch(topic) for p in inc) and not any(p.fullmatch(topic) for p in exc)


class OffsetSyncStore:
    """The latest offset syncs per partition and MirrorMaker's translation rule.

    >>> store = OffsetSyncStore()
    >>> store.add(OffsetSync("t", 0, 100, 40))
    >>> store.translate("t", 0, 100), store.translate("t", 0, 150), store.translate("t", 0, 99)
    (40, 41, None)
    """

    def __init__(self, per_partition_max: int = SYNCS_PER_PARTITION_MAX) -> None:
        self._max = per_partition_max
        self._syncs: dict[tuple[str, int], deque[tuple[int, int]]] = {}

    def add(self, sync: OffsetSync) -> None:
        q = self._syncs.setdefault((sync.topic, sync.partition), deque(maxlen=self._max))
        entry = (sync.upstream_offset, sync.downstream_offset)
        if q and entry[0] <= q[-1][0]:
            # an older or repeated sync (e.g. after the mirror restarted): drop what it supersedes
            while q and q[-1][0] >= entry[0]:
                q.pop()
        q.append(entry)

    def translate(self, topic: str, partition: int, upstream_offset: int) -> int | None:
        q = self._syncs.get((topic, partition))
        if not q:
            return None
        ups = [u for u, _ in q]
        i = bisect.bisect_right(ups, upstream_offset) - 1
        if i < 0:
            return None
        u, d = q[i]
        return d if u == upstream_offset else d + 1

    def partitions(self) -> list[tuple[str, int]]:
        return sorted(self._syncs)
