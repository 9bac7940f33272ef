"""Produce validation: every batch a client sends is checked whole before a byte of it is appended, sans-IO.

Theory of operation
-------------------
A client can put anything between a valid CRC and a valid length. Apache Kafka's ``LogValidator`` (storage module)
decompresses and walks every record of every produced batch; :func:`validate_client_batch` does the same, at least
as strictly, in this order (the first failure decides the answer):

1. **Size**: the batch is at most ``max.message.bytes``: MESSAGE_TOO_LARGE.
2. **CRC** over attributes..end: CORRUPT_MESSAGE.
3. **Header** (Kafka's ``validateBatch``): baseOffset 0 (the broker assigns offsets), recordsCount >= 1 and equal to
   lastOffsetDelta + 1, not a control batch, a base sequence when a producer id is set: INVALID_RECORD.
4. **Decompression**, bounded: never more than ``decompressed_bytes_max + 1`` bytes are inflated, whatever the
   codec (see :mod:`loosely.protocol.compression`). Data the codec cannot decode, cut short or followed by bytes:
   INVALID_RECORD (Kafka answers UNKNOWN_SERVER_ERROR there; see docs/broker.md).
5. **Record walk** (``_recwalk.c``, whose header documents the algorithm): exactly recordsCount well-formed
   records, offset deltas 0..n-1, every length, varint and header count in range, nothing after the last record:
   INVALID_RECORD. If the walk runs off the end of a prefix cut at the decompression limit, the batch is too
   large: MESSAGE_TOO_LARGE. A structural lie inside the prefix is reported first, as a streaming reader would.
6. **Per-record rules** (Kafka's ``validateRecord``), collected for every record, not only the first, as KIP-467
   ``record_errors``: a key on compacted topics (INVALID_RECORD), a CreateTime timestamp within
   ``[now - message.timestamp.before.max.ms, now + message.timestamp.after.max.ms]`` and not negative other than
   -1 (INVALID_TIMESTAMP), no producer-set LogAppendTime on a LogAppendTime topic (INVALID_TIMESTAMP). Any
   timestamp error makes the whole batch INVALID_TIMESTAMP, otherwise INVALID_RECORD. At most
   ``RECORD_ERRORS_MAX`` records are named (Kafka names all; a 1 MiB batch of keyless records could make a response
   of hundreds of MiB); the message counts them all.

A batch that passes yields :class:`ValidBatch`, whose ``max_timestamp`` is the largest record timestamp: Kafka
stores that as the batch's maxTimestamp whatever the client claimed, and so does the log. It also carries the hash
of every record key, computed by the same walk (see ``_recwalk.c``), which the log's key index
(:mod:`loosely.storage.keyindex`) takes instead of decoding the batch a second time. Nothing here changes
the batch; the log decides what to rewrite.

>>> from loosely.protocol.records import NewRecord, build_batch, read_header
>>> b = build_batch([NewRecord(None, b"v", 1_000)])
>>> policy = ValidationPolicy(now_ms=1_000, max_message_bytes=1 << 20, decompressed_bytes_max=1 << 26,
...                           timestamp_before_max_ms=10, timestamp_after_max_ms=10, compacted=True)
>>> try:
...     validate_client_batch(b, 0, read_header(b), policy, "t-0")
... except BatchRejected as e:
...     print(e.error_code.name, [r.batch_index for r in e.record_errors])
invalid_record [0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from loosely.protocol import _recwalk
from loosely.protocol.compression import decompress_bounded
from loosely.protocol.errors import CorruptRecordError, ErrorCode, ProtocolError
from loosely.protocol.records import BATCH_HEADER_BYTES, BatchHeader, check_batch_crc

__all__ = [
    "RECORD_ERRORS_MAX",
    "BatchRejected",
    "RecordError",
    "ValidBatch",
    "ValidationPolicy",
    "check_size_and_crc",
    "validate_client_batch",
]

LONG_MAX: Final = (1 << 63) - 1
NO_TIMESTAMP: Final = -1

# _recwalk status and per-record error kinds (see _recwalk.c)
_MALFORMED: Final = 1
_OVER_LIMIT: Final = 2
_NO_KEY: Final = 1
_TIMESTAMP_OUT_OF_RANGE: Final = 2
_PRODUCER_LOG_APPEND_TIME: Final = 3
# record_errors named in error_message: as many as a log line can carry
_ERRORS_IN_MESSAGE_MAX: Final = 3
# record_errors in a response (our own bound; Kafka has none): ~100 bytes each, so at most ~1 MiB
RECORD_ERRORS_MAX: Final = 10_000


@dataclass(frozen=True, slots=True)
class ValidationPolicy:
    """The topic's rules for one produce request, at ``now_ms``."""

    now_ms: int
    max_message_bytes: int
    decompressed_bytes_max: int
    timestamp_before_max_ms: int = LONG_MAX
    timestamp_after_max_ms: int = 3_600_000
    log_append_time: bool = False
    compacted: bool = False


@dataclass(frozen=True, slots=True)
class RecordError:
    """One record a batch was refused for (KIP-467): its index in the batch and why."""

    batch_index: int
    message: str


@dataclass(frozen=True, slots=True)
class ValidBatch:
    records: int
    max_timestamp: int  # the largest record timestamp, -1 if none has one
    key_hashes: bytes = b""  # _recwalk.key_hash of each non-null key, native-endian uint64s


class BatchRejected(ProtocolError):
    """A produced batch that may not be appended; ``record_errors`` names the records at fault, if any."""

    def __init__(self, error_code: ErrorCode, message: str, record_errors: tuple[RecordError, ...] = ()) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.record_errors = record_errors


def validate_client_batch(
    buf: bytes | bytearray | memoryview, pos: int, header: BatchHeader, policy: ValidationPolicy, where: str
) -> ValidBatch:
    """Check the batch at ``pos`` as the steps in the module header say; ``where`` (topic-partition) goes into
    messages. Raises :class:`BatchRejected`."""
    h = header
    check_size_and_crc(buf, pos, h, policy.max_message_bytes, where)
    _check_header(h, where)
    body = memoryview(buf)[pos + BATCH_HEADER_BYTES : pos + h.size]
    over = False
    if h.codec:
        try:
            data, over = decompress_bounded(h.codec, body, policy.decompressed_bytes_max)
        except CorruptRecordError as e:
            raise BatchRejected(ErrorCode.invalid_record, f"{e} ({where})") from e
        except ProtocolError as e:  # an unknown codec id
            raise BatchRejected(e.error_code, f"{e} ({where})") from e
        walked: bytes | memoryview = data
    else:
        walked = body
    lo = max(0, policy.now_ms - policy.timestamp_before_max_ms)
    hi = min(LONG_MAX, policy.now_ms + policy.timestamp_after_max_ms)
    status, detail, max_ts, errors, error_count, timestamp_errors, key_hashes = _recwalk.walk(
        walked,
        h.records_count,
        h.base_timestamp,
        h.max_timestamp if h.is_log_append_time else None,
        not policy.log_append_time,
        lo,
        hi,
        h.is_log_append_time,
        policy.compacted,
        over,
        RECORD_ERRORS_MAX,
    )
    if status == _MALFORMED:
        raise BatchRejected(ErrorCode.invalid_record, f"malformed records: {detail} ({where})")
    if status == _OVER_LIMIT:
        raise BatchRejected(
            ErrorCode.message_too_large,
            f"the batch inflates past {policy.decompressed_bytes_max} bytes: {detail} ({where})",
        )
    if error_count:
        _reject_records(errors, error_count, timestamp_errors, (lo, hi), where)
    return ValidBatch(h.records_count, max_ts, key_hashes)


def check_size_and_crc(
    buf: bytes | bytearray | memoryview, pos: int, h: BatchHeader, max_message_bytes: int, where: str
) -> None:
    """Steps 1 and 2, which the broker's own batches (coordinators, transaction markers) pass too."""
    if h.size > max_message_bytes:
        raise BatchRejected(
            ErrorCode.message_too_large,
            f"batch of {h.size} bytes is over max.message.bytes={max_message_bytes} ({where})",
        )
    try:
        check_batch_crc(buf, pos, h)
    except CorruptRecordError as e:
        raise BatchRejected(ErrorCode.corrupt_message, f"{e} ({where})") from e


def _check_header(h: BatchHeader, where: str) -> None:
    problem = None
    if h.base_offset != 0:
        problem = f"baseOffset is {h.base_offset}; a produced batch must start at 0"
    elif h.records_count <= 0:
        problem = f"the batch declares {h.records_count} records"
    elif h.records_count != h.last_offset_delta + 1:
        problem = f"the batch declares {h.records_count} records but spans {h.last_offset_delta + 1} offsets"
    elif h.is_control:
        problem = "clients may not write control batches"
    elif h.producer_id >= 0 and h.base_sequence < 0:
        problem = f"base sequence {h.base_sequence} with producer id {h.producer_id}"
    if problem is not None:
        raise BatchRejected(ErrorCode.invalid_record, f"{problem} ({where})")


def _reject_records(
    errors: list[tuple[int, int, int]], error_count: int, timestamp_errors: bool, bounds: tuple[int, int], where: str
) -> None:
    lo, hi = bounds
    out = []
    for index, kind, ts in errors:
        if kind == _NO_KEY:
            msg = f"a compacted topic needs a key on every record ({where})"
        elif kind == _TIMESTAMP_OUT_OF_RANGE:
            msg = (
                f"timestamp {ts} is out of range [{lo}, {hi}] "
                f"(message.timestamp.before.max.ms / message.timestamp.after.max.ms, {where})"
            )
        else:
            msg = f"a producer may not set the LogAppendTime timestamp type ({where})"
        out.append(RecordError(index, msg))
    if timestamp_errors:
        code, what = ErrorCode.invalid_timestamp, " (timestamps among the reasons)"
    else:
        code, what = ErrorCode.invalid_record, ""
    first = "; ".join(f"record {e.batch_index}: {e.message}" for e in out[:_ERRORS_IN_MESSAGE_MAX])
    summary = f"{error_count} record(s) of the batch rejected{what}, the first: {first}"
    raise BatchRejected(code, summary, tuple(out))
