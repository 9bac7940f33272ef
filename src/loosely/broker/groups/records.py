"""The records of ``__consumer_offsets``, in Apache Kafka's own schemas, so Kafka's tools decode what loosely writes.

``__consumer_offsets`` is a compacted topic; a group's records all go to partition
``abs(String.hashCode(group)) % partitions`` (see :func:`loosely.broker.internal.partition_for`). Keys and values
start with an int16 that selects the schema; all integers are big-endian, strings are int16-length UTF-8 (flexible
versions: compact), bytes are int32-length::

    key type 0, 1  OffsetCommitKey     string group | string topic | int32 partition
    key type 2     GroupMetadataKey    string group
    key type 3, 5-8  consumer-group (KIP-848) records: string group (| string member for 5, 7, 8); their values are
                   in :mod:`loosely.broker.groups.consumer_records`
    key type 4, 9+ partition metadata (Kafka < 4.1) and share-group records: skipped when loading

    OffsetCommitValue (value = int16 version | fields; null value = the offset was deleted)
      v0  int64 offset | string metadata | int64 commitTimestamp
      v1  int64 offset | string metadata | int64 commitTimestamp | int64 expireTimestamp
      v2  int64 offset | string metadata | int64 commitTimestamp
      v3  int64 offset | int32 leaderEpoch | string metadata | int64 commitTimestamp          <- written
      v4  as v3, flexible (compact string, tagged fields)

    GroupMetadataValue (null value = the group was deleted)
      string protocolType | int32 generation | nullable string protocol | nullable string leader
      | int64 currentStateTimestamp (v2+) | array of members:
          string memberId | nullable string groupInstanceId (v3+) | string clientId | string clientHost
          | int32 rebalanceTimeout (v1+) | int32 sessionTimeout | bytes subscription | bytes assignment
      v3 is written; v4 is v3 flexible.

Kafka writes OffsetCommitValue v1 only when the commit carries an explicit expiry (OffsetCommit v2-v4
``retention_time_ms``), else v3, and GroupMetadataValue v3; loosely does the same. Decoders accept every version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from loosely.protocol.errors import CorruptRecordError
from loosely.protocol.primitives import Reader, Writer

__all__ = [
    "CONSUMER_KEY_TYPES",
    "GROUP_METADATA_KEY_TYPE",
    "OFFSET_COMMIT_KEY_TYPE",
    "ConsumerKey",
    "GroupKey",
    "GroupValue",
    "MemberValue",
    "OffsetKey",
    "OffsetValue",
    "OtherKey",
    "decode_group_value",
    "decode_key",
    "decode_offset_value",
    "encode_consumer_key",
    "encode_group_key",
    "encode_group_value",
    "encode_offset_key",
    "encode_offset_value",
]

OFFSET_COMMIT_KEY_TYPE: Final = 1  # 0 is the legacy type of the same schema
GROUP_METADATA_KEY_TYPE: Final = 2
# ConsumerGroupMetadata, ...MemberMetadata, ...TargetAssignmentMetadata, ...TargetAssignmentMember,
# ...CurrentMemberAssignment; the ones with a member id in the key:
CONSUMER_KEY_TYPES: Final = frozenset({3, 5, 6, 7, 8})
_CONSUMER_MEMBER_KEY_TYPES: Final = frozenset({5, 7, 8})
_OFFSET_VALUE_VERSION: Final = 3
_OFFSET_VALUE_WITH_EXPIRY: Final = 1
_GROUP_VALUE_VERSION: Final = 3
_FLEXIBLE_FROM: Final = 4
NO_TIMESTAMP: Final = -1


@dataclass(frozen=True, slots=True)
class OffsetKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupKey:
    group: str


@dataclass(frozen=True, slots=True)
class ConsumerKey:
    """A KIP-848 consumer group record's key: ``member_id`` for the per-member types (5, 7, 8), else None."""

    key_type: int
    group: str
    member_id: str | None = None


@dataclass(frozen=True, slots=True)
class OtherKey:
    """A record type loosely does not use (KIP-848 consumer groups, share groups)."""

    key_type: int


@dataclass(frozen=True, slots=True)
class OffsetValue:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp_ms: int
    expire_timestamp_ms: int = NO_TIMESTAMP


@dataclass(frozen=True, slots=True)
class MemberValue:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp_ms: int
    members: tuple[MemberValue, ...]


def encode_offset_key(key: OffsetKey) -> bytes:
    return Writer().i16(OFFSET_COMMIT_KEY_TYPE).string(key.group).string(key.topic).i32(key.partition).done()


def encode_group_key(key: GroupKey) -> bytes:
    return Writer().i16(GROUP_METADATA_KEY_TYPE).string(key.group).done()


def encode_consumer_key(key: ConsumerKey) -> bytes:
    w = Writer().i16(key.key_type).string(key.group)
    if key.key_type in _CONSUMER_MEMBER_KEY_TYPES:
        w.string(key.member_id or "")
    return w.done()


def decode_key(data: bytes) -> OffsetKey | GroupKey | ConsumerKey | OtherKey:
    r = Reader(data)
    key_type = r.i16()
    if key_type in (0, OFFSET_COMMIT_KEY_TYPE):
        key: OffsetKey | GroupKey | ConsumerKey = OffsetKey(r.string(), r.string(), r.i32())
    elif key_type == GROUP_METADATA_KEY_TYPE:
        key = GroupKey(r.string())
    elif key_type in CONSUMER_KEY_TYPES:
        group = r.string()
        key = ConsumerKey(key_type, group, r.string() if key_type in _CONSUMER_MEMBER_KEY_TYPES else None)
    else:
        return OtherKey(key_type)
    r.end()
    return key


def encode_offset_value(v: OffsetValue) -> bytes:
    if v.expire_timestamp_ms != NO_TIMESTAMP:
        w = Writer().i16(_OFFSET_VALUE_WITH_EXPIRY).i64(v.offset).string(v.metadata)
        return w.i64(v.commit_timestamp_ms).i64(v.expire_timestamp_ms).done()
    w = Writer().i16(_OFFSET_VALUE_VERSION).i64(v.offset).i32(v.leader_epoch).string(v.metadata)
    return w.i64(v.commit_timestamp_ms).done()


def decode_offset_value(data: bytes) -> OffsetValue:
    r = Reader(data)
    version = r.i16()
    if not 0 <= version <= _FLEXIBLE_FROM:
        raise CorruptRecordError(f"unknown OffsetCommitValue version {version}")
    flexible = version >= _FLEXIBLE_FROM
    offset = r.i64()
    epoch = r.i32() if version >= 3 else -1
    metadata = r.string(flexible)
    commit = r.i64()
    expire = r.i64() if version == 1 else NO_TIMESTAMP
    if flexible:
        r.skip_tagged_fields()
    r.end()
    return OffsetValue(offset, epoch, metadata, commit, expire)


def encode_group_value(v: GroupValue) -> bytes:
    w = Writer().i16(_GROUP_VALUE_VERSION).string(v.protocol_type).i32(v.generation)
    w.string(v.protocol).string(v.leader).i64(v.current_state_timestamp_ms).array_length(len(v.members))
    for m in v.members:
        w.string(m.member_id).string(m.instance_id).string(m.client_id).string(m.client_host)
        w.i32(m.rebalance_timeout_ms).i32(m.session_timeout_ms).bytes_(m.subscription).bytes_(m.assignment)
    return w.done()


def decode_group_value(data: bytes) -> GroupValue:
    r = Reader(data)
    version = r.i16()
    if not 0 <= version <= _FLEXIBLE_FROM:
        raise CorruptRecordError(f"unknown GroupMetadataValue version {version}")
    fx = version >= _FLEXIBLE_FROM
    protocol_type = r.string(fx)
    generation = r.i32()
    protocol = r.nullable_string(fx)
    leader = r.nullable_string(fx)
    state_ts = r.i64() if version >= 2 else NO_TIMESTAMP
    members: list[MemberValue] = []
    for _ in range(max(r.array_length(fx), 0)):
        member_id = r.string(fx)
        instance_id = r.nullable_string(fx) if version >= 3 else None
        client_id = r.string(fx)
        client_host = r.string(fx)
        rebalance = r.i32() if version >= 1 else None
        session = r.i32()
        subscription = r.bytes_(fx)
        assignment = r.bytes_(fx)
        if fx:
            r.skip_tagged_fields()
        members.append(
            # v0 had no rebalance timeout: Kafka used the session timeout for both.
            MemberValue(
                member_id,
                instance_id,
                client_id,
                client_host,
                session if rebalance is None else rebalance,
                session,
                subscription,
                assignment,
            )
        )
    if fx:
        r.skip_tagged_fields()
    r.end()
    return GroupValue(protocol_type, generation, protocol, leader, state_ts, tuple(members))
