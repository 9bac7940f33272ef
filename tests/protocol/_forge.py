"""Forge record batches that lie: a valid batch whose header fields or records section are replaced, with the CRC
recomputed so only the lie is wrong. Shared by the validator's unit tests and the produce differential tests."""

from __future__ import annotations

import struct

import crc32c

from loosely.protocol.compression import Codec, compress
from loosely.protocol.records import BATCH_HEADER_BYTES, NewRecord, build_batch

_LENGTH_AT = 8
_ATTRIBUTES_AT = 21
_LAST_OFFSET_DELTA_AT = 23
_MAX_TIMESTAMP_AT = 35
_PRODUCER_ID_AT = 43
_BASE_SEQUENCE_AT = 53
_COUNT_AT = 57


def forge(
    batch: bytes,
    *,
    count: int | None = None,
    last_offset_delta: int | None = None,
    attributes: int | None = None,
    body: bytes | None = None,
    max_timestamp: int | None = None,
    base_offset: int | None = None,
    producer_id: int | None = None,
    base_sequence: int | None = None,
) -> bytes:
    b = bytearray(batch)
    if body is not None:
        b = b[:BATCH_HEADER_BYTES] + body
        struct.pack_into(">i", b, _LENGTH_AT, len(b) - 12)
    for at, fmt, value in (
        (0, ">q", base_offset),
        (_ATTRIBUTES_AT, ">h", attributes),
        (_LAST_OFFSET_DELTA_AT, ">i", last_offset_delta),
        (_MAX_TIMESTAMP_AT, ">q", max_timestamp),
        (_PRODUCER_ID_AT, ">q", producer_id),
        (_BASE_SEQUENCE_AT, ">i", base_sequence),
        (_COUNT_AT, ">i", count),
    ):
        if value is not None:
            struct.pack_into(fmt, b, at, value)
    struct.pack_into(">I", b, 17, crc32c.crc32c(bytes(b[21:])))
    return bytes(b)


def varint(value: int) -> bytes:
    raw = ((value << 1) ^ (value >> 63)) & 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while raw >= 0x80:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)
    return bytes(out)


def raw_record(fields: bytes) -> bytes:
    """A record whose fields (after the length) are given as bytes: the length prefix is made to match."""
    return varint(len(fields)) + fields


def records_of(n: int, timestamp: int, keyless: frozenset[int] = frozenset()) -> list[NewRecord]:
    return [NewRecord(None if i in keyless else b"k%d" % i, b"v%d" % i, timestamp) for i in range(n)]


def with_codec(batch: bytes, codec: Codec, body: bytes | None = None) -> bytes:
    """The batch with its records section (or ``body``) compressed by ``codec``."""
    plain = batch[BATCH_HEADER_BYTES:] if body is None else body
    return forge(batch, attributes=int(codec), body=compress(codec, plain))


def bomb(codec: Codec, inflated_bytes: int) -> bytes:
    """A batch claiming one record whose compressed records section is ``inflated_bytes`` zero bytes."""
    return forge(
        build_batch([NewRecord(b"k", b"v", 0)]), attributes=int(codec), body=compress(codec, bytes(inflated_bytes))
    )
