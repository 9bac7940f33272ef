"""The ``__consumer_offsets`` record formats: round trips, every version Kafka wrote, and garbage."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loosely.broker.groups.records import (
    ConsumerKey,
    GroupKey,
    GroupValue,
    MemberValue,
    OffsetKey,
    OffsetValue,
    OtherKey,
    decode_group_value,
    decode_key,
    decode_offset_value,
    encode_consumer_key,
    encode_group_key,
    encode_group_value,
    encode_offset_key,
    encode_offset_value,
)
from loosely.broker.internal import java_string_hash, partition_for
from loosely.protocol.errors import CorruptRecordError

names = st.text(max_size=40)
i32 = st.integers(-(2**31), 2**31 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)


@given(names, names, i32)
def test_offset_key_round_trip(group: str, topic: str, partition: int) -> None:
    k = OffsetKey(group, topic, partition)
    data = encode_offset_key(k)
    assert data[:2] == b"\x00\x01"
    assert decode_key(data) == k


@given(names)
def test_group_key_round_trip(group: str) -> None:
    data = encode_group_key(GroupKey(group))
    assert data[:2] == b"\x00\x02"
    assert decode_key(data) == GroupKey(group)


@given(i64, i32, names, i64, st.one_of(st.just(-1), i64))
def test_offset_value_round_trip(offset: int, epoch: int, metadata: str, commit: int, expire: int) -> None:
    v = OffsetValue(offset, epoch, metadata, commit, expire)
    data = encode_offset_value(v)
    version = struct.unpack(">h", data[:2])[0]
    if expire == -1:
        assert version == 3
        assert decode_offset_value(data) == v
    else:
        # v1 has an expiry but no leader epoch, exactly as Kafka writes it
        assert version == 1
        assert decode_offset_value(data) == OffsetValue(offset, -1, metadata, commit, expire)


members = st.builds(
    MemberValue,
    names,
    st.one_of(st.none(), names),
    names,
    names,
    i32,
    i32,
    st.binary(max_size=50),
    st.binary(max_size=50),
)


@given(names, i32, st.one_of(st.none(), names), st.one_of(st.none(), names), i64, st.lists(members, max_size=4))
def test_group_value_round_trip(
    ptype: str, gen: int, proto: str | None, leader: str | None, ts: int, ms: list[MemberValue]
) -> None:
    v = GroupValue(ptype, gen, proto, leader, ts, tuple(ms))
    assert decode_group_value(encode_group_value(v)) == v


def s16(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def compact(s: str) -> bytes:
    b = s.encode()
    return bytes([len(b) + 1]) + b


def test_every_offset_value_version_kafka_wrote() -> None:
    assert decode_offset_value(b"\x00\x00" + struct.pack(">q", 5) + s16("m") + struct.pack(">q", 7)) == OffsetValue(
        5, -1, "m", 7
    )
    v1 = b"\x00\x01" + struct.pack(">q", 5) + s16("m") + struct.pack(">qq", 7, 9)
    assert decode_offset_value(v1) == OffsetValue(5, -1, "m", 7, 9)
    v2 = b"\x00\x02" + struct.pack(">q", 5) + s16("") + struct.pack(">q", 7)
    assert decode_offset_value(v2) == OffsetValue(5, -1, "", 7)
    # v4 is flexible: compact string, then an empty tagged-field section
    v4 = b"\x00\x04" + struct.pack(">qi", 5, 3) + compact("meta") + struct.pack(">q", 7) + b"\x00"
    assert decode_offset_value(v4) == OffsetValue(5, 3, "meta", 7)
    # ... and a tagged field it does not know is skipped
    v4_tagged = v4[:-1] + b"\x01\x05\x02ab"
    assert decode_offset_value(v4_tagged) == OffsetValue(5, 3, "meta", 7)


def test_group_value_v0_uses_the_session_timeout_as_rebalance_timeout() -> None:
    member = s16("m1") + s16("client") + s16("/1.2.3.4") + struct.pack(">i", 6000)
    member += struct.pack(">i", 1) + b"s" + struct.pack(">i", 1) + b"a"
    v0 = b"\x00\x00" + s16("consumer") + struct.pack(">i", 4) + s16("range") + s16("m1")
    v0 += struct.pack(">i", 1) + member
    v = decode_group_value(v0)
    assert v.members == (MemberValue("m1", None, "client", "/1.2.3.4", 6000, 6000, b"s", b"a"),)
    assert (v.generation, v.protocol, v.leader, v.current_state_timestamp_ms) == (4, "range", "m1", -1)


def test_unknown_key_types_are_reported_not_misread() -> None:
    assert decode_key(b"\x00\x04anything") == OtherKey(4)  # Kafka < 4.1's partition metadata
    assert decode_key(b"\x00\x09anything") == OtherKey(9)  # share groups


def test_consumer_group_keys_round_trip() -> None:
    for key in (ConsumerKey(3, "g"), ConsumerKey(5, "g", "m"), ConsumerKey(6, "g"), ConsumerKey(8, "g", "m")):
        assert decode_key(encode_consumer_key(key)) == key


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x00\x01\x00\x05ab",  # string longer than the record
        b"\x00\x01" + s16("g") + s16("t") + b"\x00\x00\x00\x01extra",  # trailing bytes
    ],
)
def test_garbage_keys_raise_corrupt_record_error(data: bytes) -> None:
    with pytest.raises(CorruptRecordError):
        decode_key(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x09" + b"\x00" * 20,  # unknown version
        b"\x00\x03" + b"\x00" * 11,  # truncated
        b"\x00\x03" + b"\x00" * 8 + b"\x00\x00\x00\x00" + b"\x7f\xff",  # string runs off the end
    ],
)
def test_garbage_values_raise_corrupt_record_error(data: bytes) -> None:
    for decode in (decode_offset_value, decode_group_value):
        with pytest.raises(CorruptRecordError):
            decode(data)


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_our_error(data: bytes) -> None:
    for decode in (decode_key, decode_offset_value, decode_group_value):
        try:
            decode(data)
        except CorruptRecordError:
            pass


def test_java_string_hash_and_kafka_partitioning() -> None:
    # Values of Java's String.hashCode
    assert java_string_hash("") == 0
    assert java_string_hash("a") == 97
    assert java_string_hash("g1") == 3242
    assert java_string_hash("€") == 8364  # one UTF-16 code unit
    assert java_string_hash("😀") == 1772899  # a surrogate pair: 0xD83D * 31 + 0xDE00
    assert java_string_hash("polygenelubricants") == -(2**31)
    assert partition_for("polygenelubricants", 50) == 0  # Utils.abs(Integer.MIN_VALUE) is 0
    assert partition_for("g1", 50) == 42
    assert partition_for("hello", 7) == 99162322 % 7
