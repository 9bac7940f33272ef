"""Kafka record batches, magic v2: the unit the log stores, sans-IO.

Format (all integers big-endian; apache/kafka ``DefaultRecordBatch``)::

    offset  size  field
         0     8  baseOffset              rewritten by the broker on append (not covered by the CRC)
         8     4  batchLength             bytes after this field: total batch size = batchLength + 12
        12     4  partitionLeaderEpoch    rewritten by the broker (not covered by the CRC)
        16     1  magic                   2
        17     4  crc                     CRC-32C (Castagnoli) of bytes [21, end of batch)
        21     2  attributes              bits 0-2 codec, 3 timestamp type (1 = LogAppendTime),
                                          4 transactional, 5 control, 6 delete horizon set
        23     4  lastOffsetDelta
        27     8  baseTimestamp           the delete horizon instead when attribute bit 6 is set
        35     8  maxTimestamp
        43     8  producerId              -1 when not idempotent
        51     2  producerEpoch
        53     4  baseSequence
        57     4  recordsCount
        61     .  records                 compressed as one block when the codec is not none

    Record (inside the records section; "varint" is zigzag-encoded, protobuf style)::

        varint    length (of what follows)
        int8      attributes (unused, 0)
        varlong   timestampDelta (from baseTimestamp)
        varint    offsetDelta (from baseOffset)
        varint    keyLength (-1 = null) + key bytes
        varint    valueLength (-1 = null) + value bytes
        varint    headerCount, then per header: varint keyLength + UTF-8 key, varint valueLength (-1 = null) + value

A control batch (transaction marker) holds one record whose key is ``int16 version (0) | int16 type`` (0 abort,
1 commit) and whose value is ``int16 version (0) | int32 coordinatorEpoch``.

The broker keeps batches as the producer sent them: it validates the header and CRC, then rewrites only
``baseOffset`` and ``partitionLeaderEpoch`` in place, which leaves the CRC valid. Records are decoded only where the
broker must look inside (compaction, internal topics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from loosely.protocol import _recwalk
from loosely.protocol.batch_layout import (
    ATTRIBUTES_AT,
    BATCH_HEADER,
    BATCH_HEADER_BYTES,
    CODEC_MASK,
    CONTROL_BIT,
    CONTROL_KEY,
    CONTROL_VALUE,
    CRC_AT,
    DELETE_HORIZON_BIT,
    LEADER_EPOCH_AT,
    LOG_OVERHEAD,
    MAGIC_AT,
    MAGIC_V2,
    MAX_TIMESTAMP_AT,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
    ControlType,
)
from loosely.protocol.compression import Codec, compress, decompress
from loosely.protocol.errors import CorruptRecordError, ErrorCode
from loosely.protocol.primitives import I16, I32, I64, U32, read_varint, write_varint

__all__ = [
    "BATCH_HEADER",
    "BATCH_HEADER_BYTES",
    "CONTROL_KEY",
    "CONTROL_VALUE",
    "LOG_OVERHEAD",
    "MAGIC_V2",
    "NO_PRODUCER_EPOCH",
    "NO_PRODUCER_ID",
    "NO_SEQUENCE",
    "BatchHeader",
    "ControlType",
    "NewRecord",
    "Record",
    "batch_crc",
    "build_batch",
    "build_control_batch",
    "check_batch_crc",
    "decode_records",
    "iter_batches",
    "read_header",
    "rewrite_base_offset",
    "set_log_append_time",
    "set_max_timestamp",
]

NO_PRODUCER_ID: Final = -1
NO_PRODUCER_EPOCH: Final = -1
NO_SEQUENCE: Final = -1

_BASE_OFFSET: Final = I64
_LEADER_EPOCH_AT: Final = LEADER_EPOCH_AT
_MAGIC_AT: Final = MAGIC_AT
_CRC_AT: Final = CRC_AT
_ATTRIBUTES_AT: Final = ATTRIBUTES_AT
_MAX_TIMESTAMP_AT: Final = MAX_TIMESTAMP_AT
_I32: Final = I32
_U32: Final = U32
_I16: Final = I16
_I64: Final = I64


_CODEC_MASK: Final = CODEC_MASK
_TIMESTAMP_TYPE_BIT: Final = TIMESTAMP_TYPE_BIT
_TRANSACTIONAL_BIT: Final = TRANSACTIONAL_BIT
_CONTROL_BIT: Final = CONTROL_BIT
_DELETE_HORIZON_BIT: Final = DELETE_HORIZON_BIT


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The 61-byte header of a v2 record batch."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Total bytes of the batch, header included."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def codec(self) -> int:
        return self.attributes & _CODEC_MASK

    @property
    def is_log_append_time(self) -> bool:
        return bool(self.attributes & _TIMESTAMP_TYPE_BIT)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & _TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _CONTROL_BIT)

    @property
    def has_delete_horizon(self) -> bool:
        return bool(self.attributes & _DELETE_HORIZON_BIT)

    @property
    def last_sequence(self) -> int:
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        # Sequences wrap at Int32.MAX back to 0 (ProducerAppendInfo).
        return (self.base_sequence + self.last_offset_delta) % 0x8000_0000


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record, with absolute offset and timestamp."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A record to put into a new batch."""

    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple[tuple[str, bytes | None], ...] = ()
    offset_delta: int | None = None  # None: the record's index in the batch


def read_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """The batch header at ``pos``; checks only that 61 bytes are there and the magic is 2.

    Raises :class:`CorruptRecordError` otherwise.
    """
    if pos < 0 or len(buf) - pos < BATCH_HEADER_BYTES:
        raise CorruptRecordError(f"record batch header truncated at position {pos}")
    h = BatchHeader(*BATCH_HEADER.unpack_from(buf, pos))
    if h.magic != MAGIC_V2:
        raise CorruptRecordError(f"unsupported record batch magic {h.magic} (only v2 is supported)")
    if h.batch_length < BATCH_HEADER_BYTES - LOG_OVERHEAD:
        raise CorruptRecordError(f"record batch length {h.batch_length} is shorter than its header")
    if h.last_offset_delta < 0 or h.records_count < 0:
        raise CorruptRecordError(
            f"negative lastOffsetDelta ({h.last_offset_delta}) or recordsCount ({h.records_count})",
            # Kafka's validateBatch calls a produced batch's offset range or count invalid, not corrupt.
            error_code=ErrorCode.invalid_record,
        )
    return h


def iter_batches(
    buf: bytes | bytearray | memoryview, *, allow_partial_tail: bool = False
) -> Iterator[tuple[int, BatchHeader]]:
    """``(position, header)`` of each batch in a concatenation of batches.

    A trailing fragment (shorter than a header or than its declared length) is an error unless
    ``allow_partial_tail`` is set, in which case iteration stops before it (a fetch response may end with one).
    """
    pos = 0
    end = len(buf)
    while pos < end:
        if end - pos < BATCH_HEADER_BYTES:
            if allow_partial_tail:
                return
            raise CorruptRecordError(f"{end - pos} trailing bytes do not form a record batch")
        h = read_header(buf, pos)
        if pos + h.size > end:
            if allow_partial_tail:
                return
            raise CorruptRecordError(f"record batch at {pos} declares {h.size} bytes, only {end - pos} remain")
        yield pos, h
        pos += h.size


def batch_crc(buf: bytes | bytearray | memoryview, pos: int, size: int) -> int:
    """The CRC-32C a batch of ``size`` bytes at ``pos`` should carry."""
    crc32c = _crc32c or _load_crc32c()
    return int(crc32c(memoryview(buf)[pos + _ATTRIBUTES_AT : pos + size]))


# Loaded on the first CRC, not with this module: the crc32c package's __init__ reads its own version through
# importlib.metadata and loads its command line, about half of this module's import time, and the command line's
# paths import this module without ever checking a CRC. (An import statement in batch_crc would cost 0.3 us a batch.)
_crc32c: Callable[..., int] | None = None  # (data, crc so far=0) -> crc


def _load_crc32c() -> Callable[..., int]:
    global _crc32c  # noqa: PLW0603 - the one-time load described above
    from crc32c import crc32c  # noqa: PLC0415

    _crc32c = crc32c
    return crc32c


def check_batch_crc(buf: bytes | bytearray | memoryview, pos: int, header: BatchHeader) -> None:
    actual = batch_crc(buf, pos, header.size)
    if actual != header.crc:
        raise CorruptRecordError(
            f"record batch at offset {header.base_offset} has CRC {header.crc:#010x}, computed {actual:#010x}"
        )


def rewrite_base_offset(buf: bytearray | memoryview, pos: int, base_offset: int, leader_epoch: int) -> None:
    """Set baseOffset and partitionLeaderEpoch in place; neither is covered by the CRC."""
    _BASE_OFFSET.pack_into(buf, pos, base_offset)
    _I32.pack_into(buf, pos + _LEADER_EPOCH_AT, leader_epoch)


def set_log_append_time(buf: bytearray | memoryview, pos: int, header: BatchHeader, timestamp_ms: int) -> None:
    """Mark a batch LogAppendTime with ``timestamp_ms`` as its max timestamp, recomputing the CRC."""
    set_max_timestamp(buf, pos, header, timestamp_ms, log_append_time=True)


def set_max_timestamp(
    buf: bytearray | memoryview, pos: int, header: BatchHeader, timestamp_ms: int, *, log_append_time: bool
) -> int:
    """Set the batch's timestamp type and max timestamp, recomputing the CRC; returns the new attributes."""
    attributes = (
        header.attributes | _TIMESTAMP_TYPE_BIT if log_append_time else header.attributes & ~_TIMESTAMP_TYPE_BIT
    )
    _I16.pack_into(buf, pos + _ATTRIBUTES_AT, attributes)
    _I64.pack_into(buf, pos + _MAX_TIMESTAMP_AT, timestamp_ms)
    _U32.pack_into(buf, pos + _CRC_AT, batch_crc(buf, pos, header.size))
    return attributes


# --- varint-length fields (the varints themselves: loosely.protocol.primitives) ---------------------------------------


def _read_bytes(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    n, pos = read_varint(buf, pos)
    if n < 0:
        return None, pos
    end = pos + n
    if end > len(buf):
        raise CorruptRecordError(f"field of {n} bytes runs past the end of the records")
    return buf[pos:end], end


def _write_bytes(out: bytearray, value: bytes | None) -> None:
    if value is None:
        write_varint(out, -1)
    else:
        write_varint(out, len(value))
        out += value


def decode_records(
    buf: bytes | bytearray | memoryview, pos: int, header: BatchHeader, output_bytes_max: int
) -> list[Record]:
    """Decode (and decompress) the records of the batch at ``pos``. CRC is the caller's business."""
    body = memoryview(buf)[pos + BATCH_HEADER_BYTES : pos + header.size]
    data = decompress(header.codec, body, output_bytes_max) if header.codec else bytes(body)
    out: list[Record] = []
    p = 0
    for _ in range(header.records_count):
        length, p = read_varint(data, p)
        end = p + length
        if length < 0 or end > len(data):
            raise CorruptRecordError(f"record of {length} bytes runs past the end of its batch")
        p += 1  # attributes
        ts_delta, p = read_varint(data, p)
        off_delta, p = read_varint(data, p)
        key, p = _read_bytes(data, p)
        value, p = _read_bytes(data, p)
        n_headers, p = read_varint(data, p)
        if n_headers < 0 or n_headers > length:
            raise CorruptRecordError(f"impossible header count {n_headers}")
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(n_headers):
            hk, p = _read_bytes(data, p)
            hv, p = _read_bytes(data, p)
            if hk is None:
                raise CorruptRecordError("null header key")
            try:
                headers.append((hk.decode("utf-8"), hv))
            except UnicodeDecodeError as e:
                raise CorruptRecordError(f"header key is not UTF-8: {e}") from e
        if p != end:
            raise CorruptRecordError(f"record length {length} disagrees with its fields")
        timestamp = header.max_timestamp if header.is_log_append_time else header.base_timestamp + ts_delta
        out.append(Record(header.base_offset + off_delta, timestamp, key, value, tuple(headers)))
    if p != len(data):
        raise CorruptRecordError(f"{len(data) - p} bytes after the last record of the batch")
    return out


_PIECE_BYTES_MIN: Final = 512  # build_batch: a value over this is a piece of its own, not copied into its record


def build_batch(
    records: Sequence[NewRecord],
    *,
    base_offset: int = 0,
    codec: Codec = Codec.NONE,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    transactional: bool = False,
    control: bool = False,
    log_append_time: bool = False,
    partition_leader_epoch: int = 0,
    base_timestamp: int | None = None,
    delete_horizon_ms: int | None = None,
    last_offset_delta: int | None = None,
) -> bytes:
    """Encode a v2 batch. Offsets are deltas from ``base_offset`` (record index unless set per record).

    ``delete_horizon_ms`` sets attribute bit 6 and stores the horizon as the base timestamp (how the log
    cleaner remembers when a tombstone may go); record timestamps stay exact because their deltas are
    computed against it.
    """
    if not records and last_offset_delta is None:
        raise ValueError("an empty batch needs an explicit last_offset_delta")
    first_ts = min((r.timestamp for r in records), default=0) if base_timestamp is None else base_timestamp
    if delete_horizon_ms is not None:
        first_ts = delete_horizon_ms
    max_ts = max((r.timestamp for r in records), default=first_ts)
    # records without headers or explicit offsets (a producer's): in C, ~10x the loop below (_recwalk.c)
    body = _recwalk.build_records(records, first_ts)
    if body is not None:
        last_delta = max(0, len(records) - 1)
    else:
        body, last_delta = _records_section(records, first_ts)
    if last_offset_delta is not None:
        last_delta = last_offset_delta
    return _finish_batch(body, count=len(records), base_offset=base_offset, codec=codec, producer_id=producer_id,
                         producer_epoch=producer_epoch, base_sequence=base_sequence, transactional=transactional,
                         control=control, log_append_time=log_append_time,
                         partition_leader_epoch=partition_leader_epoch, first_ts=first_ts, max_ts=max_ts,
                         delete_horizon_ms=delete_horizon_ms, last_delta=last_delta)


def _records_section(records: Sequence[NewRecord], first_ts: int) -> tuple[bytes, int]:
    """The records section in Python (headers, explicit offset deltas...) and the largest offset delta.

    Pieces joined once: a large value is copied twice in all (the join, the header put in front), where appending it
    to a record buffer and that to the batch's copied it four times."""
    pieces: list[bytes | bytearray] = []
    last_delta = 0
    for i, r in enumerate(records):
        delta = i if r.offset_delta is None else r.offset_delta
        last_delta = max(last_delta, delta)
        rec = bytearray(b"\0")  # the record's attributes
        write_varint(rec, r.timestamp - first_ts)
        write_varint(rec, delta)
        _write_bytes(rec, r.key)
        value = r.value
        large = value is not None and len(value) > _PIECE_BYTES_MIN
        if large:
            assert value is not None
            write_varint(rec, len(value))
            after = bytearray()
        else:
            _write_bytes(rec, value)
            after = rec
        write_varint(after, len(r.headers))
        for hk, hv in r.headers:
            _write_bytes(after, hk.encode("utf-8"))
            _write_bytes(after, hv)
        length = bytearray()
        write_varint(length, len(rec) + (len(value) + len(after) if large else 0))  # type: ignore[arg-type]
        pieces += (length, rec, value, after) if large else (length, rec)  # type: ignore[arg-type]
    return b"".join(pieces), last_delta


def _finish_batch(body: bytes, *, count: int, base_offset: int, codec: Codec, producer_id: int, producer_epoch: int,
                  base_sequence: int, transactional: bool, control: bool, log_append_time: bool,
                  partition_leader_epoch: int, first_ts: int, max_ts: int, delete_horizon_ms: int | None,
                  last_delta: int) -> bytes:
    """The batch around a records section: compressed, its header, its CRC."""
    payload = compress(codec, body) if codec is not Codec.NONE else body
    attributes = int(codec)
    if log_append_time:
        attributes |= _TIMESTAMP_TYPE_BIT
    if transactional:
        attributes |= _TRANSACTIONAL_BIT
    if control:
        attributes |= _CONTROL_BIT
    if delete_horizon_ms is not None:
        attributes |= _DELETE_HORIZON_BIT
    header = bytearray(BATCH_HEADER_BYTES)
    BATCH_HEADER.pack_into(
        header,
        0,
        base_offset,
        BATCH_HEADER_BYTES + len(payload) - LOG_OVERHEAD,
        partition_leader_epoch,
        MAGIC_V2,
        0,
        attributes,
        last_delta,
        first_ts,
        max_ts,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    )
    crc32c = _crc32c or _load_crc32c()
    if len(payload) <= _PIECE_BYTES_MIN:  # small: one buffer, one CRC call
        header += payload
        _U32.pack_into(header, _CRC_AT, crc32c(memoryview(header)[_ATTRIBUTES_AT:]))
        return bytes(header)
    _U32.pack_into(header, _CRC_AT, crc32c(payload, crc32c(memoryview(header)[_ATTRIBUTES_AT:])))
    return bytes(header) + payload


def build_control_batch(
    control_type: int,
    *,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    timestamp_ms: int,
    base_offset: int = 0,
) -> bytes:
    """A transaction marker: one control record, in a transactional control batch."""
    rec = NewRecord(
        key=CONTROL_KEY.pack(0, control_type),
        value=CONTROL_VALUE.pack(0, coordinator_epoch),
        timestamp=timestamp_ms,
    )
    return build_batch(
        [rec],
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        transactional=True,
        control=True,
    )
