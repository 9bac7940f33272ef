"""The consumer embedded protocol: what classic consumers put in JoinGroup's metadata and SyncGroup's assignment.

The broker never reads these in a classic group (the leader assigns), but a classic member of a KIP-848 consumer
group is assigned by the broker, so the coordinator reads its subscription and writes its assignment (Kafka's
``ConsumerProtocol``). Both start with an int16 version; strings are int16-length UTF-8, arrays int32-counted, bytes
int32-length (-1: null); nothing is flexible::

    ConsumerProtocolSubscription
      v0  int16 version | [string topic] | nullable bytes userData
      v1  ... | [string topic | [int32 partition]] ownedPartitions
      v2  ... | int32 generationId
      v3  ... | nullable string rackId
    ConsumerProtocolAssignment (v0-v3 alike)
      int16 version | [string topic | [int32 partition]] | nullable bytes userData

A version above 3 is read as 3 and its extra bytes ignored (Kafka's forward compatibility); an assignment is written
in the version of the member's subscription, capped at 3, as Kafka writes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from loosely.protocol.errors import ProtocolError
from loosely.protocol.primitives import Reader, Writer

__all__ = ["Subscription", "decode_assignment", "decode_subscription", "encode_assignment", "subscription_version"]

VERSION_MAX: Final = 3


@dataclass(frozen=True, slots=True)
class Subscription:
    version: int
    topics: frozenset[str]
    owned: frozenset[tuple[str, int]]
    rack_id: str | None


def _partitions(r: Reader) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for _ in range(max(r.array_length(), 0)):
        topic = r.string()
        out += [(topic, r.i32()) for _ in range(max(r.array_length(), 0))]
    return out


def subscription_version(data: bytes) -> int:
    """The version of a subscription (or assignment), capped at what loosely writes; 0 when unreadable."""
    if len(data) < 2:
        return 0
    return max(0, min(int.from_bytes(data[:2], "big", signed=True), VERSION_MAX))


def decode_subscription(data: bytes) -> Subscription:
    """Raises ProtocolError when the bytes are not a subscription."""
    r = Reader(data)
    version = r.i16()
    if version < 0:
        raise ProtocolError(f"subscription version {version} is negative")
    topics = frozenset(r.string() for _ in range(max(r.array_length(), 0)))
    r.nullable_bytes()  # user data: only a client-side assignor reads it
    owned = _partitions(r) if version >= 1 else []
    if version >= 2:
        r.i32()  # generation id
    rack = r.nullable_string() if version >= 3 else None
    return Subscription(version, topics, frozenset(owned), rack)


def decode_assignment(data: bytes) -> list[tuple[str, int]]:
    """The partitions of an assignment; empty bytes (a member that has none yet) are no partitions."""
    if not data:
        return []
    r = Reader(data)
    r.i16()
    return _partitions(r)


def encode_assignment(version: int, partitions: Iterable[tuple[str, int]]) -> bytes:
    by_topic: dict[str, list[int]] = {}
    for topic, p in partitions:
        by_topic.setdefault(topic, []).append(p)
    w = Writer().i16(max(0, min(version, VERSION_MAX))).array_length(len(by_topic))
    for topic in sorted(by_topic):
        w.string(topic).array_length(len(by_topic[topic]))
        for p in sorted(by_topic[topic]):
            w.i32(p)
    return w.bytes_(None).done()
