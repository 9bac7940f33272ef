"""The produce validator: valid batches pass whole, every lie gets the error Kafka gives for it."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loosely.protocol import _recwalk
from loosely.protocol.compression import Codec
from loosely.protocol.errors import ErrorCode, ProtocolError
from loosely.protocol.records import BATCH_HEADER_BYTES, NewRecord, build_batch, read_header
from loosely.protocol.validation import (
    RECORD_ERRORS_MAX,
    BatchRejected,
    ValidationPolicy,
    ValidBatch,
    validate_client_batch,
)
from protocol._forge import bomb, forge, raw_record, records_of, varint, with_codec

NOW = 1_700_000_000_000
POLICY = ValidationPolicy(now_ms=NOW, max_message_bytes=1 << 20, decompressed_bytes_max=1 << 22)
COMPACTED = ValidationPolicy(now_ms=NOW, max_message_bytes=1 << 20, decompressed_bytes_max=1 << 22, compacted=True)
CODECS = [Codec.GZIP, Codec.SNAPPY, Codec.LZ4, Codec.ZSTD]


def check(batch: bytes, policy: ValidationPolicy = POLICY) -> ValidBatch:
    return validate_client_batch(batch, 0, read_header(batch), policy, "t-0")


def rejected(batch: bytes, policy: ValidationPolicy = POLICY) -> BatchRejected:
    with pytest.raises(BatchRejected) as e:
        check(batch, policy)
    return e.value


def ten(codec: Codec = Codec.NONE) -> bytes:
    return build_batch(records_of(10, NOW), codec=codec)


maybe_bytes = st.one_of(st.none(), st.binary(max_size=40))
records_st = st.lists(
    st.builds(
        NewRecord,
        key=st.binary(max_size=20),
        value=maybe_bytes,
        timestamp=st.integers(NOW - 10**9, NOW + 3_600_000),
        headers=st.lists(st.tuples(st.text(max_size=5), maybe_bytes), max_size=3).map(tuple),
    ),
    min_size=1,
    max_size=30,
)


@given(records_st, st.sampled_from(list(Codec)), st.booleans())
def test_valid_batches_pass_whole(records: list[NewRecord], codec: Codec, compacted: bool) -> None:
    batch = build_batch(records, codec=codec)
    got = check(batch, COMPACTED if compacted else POLICY)
    # the walk also hands back the hash of every non-null key, in record order, for the storage key index
    hashes = b"".join(struct.pack("=Q", _recwalk.key_hash(r.key)) for r in records if r.key is not None)
    assert got == ValidBatch(len(records), max(r.timestamp for r in records), hashes)


def test_the_header_max_timestamp_is_not_trusted() -> None:
    assert check(forge(ten(), max_timestamp=NOW - 5)).max_timestamp == NOW


@pytest.mark.parametrize(
    ("lie", "code"),
    [
        (lambda: forge(ten(), count=1_000_000, last_offset_delta=999_999), ErrorCode.invalid_record),
        (lambda: forge(ten(), count=1_000_000), ErrorCode.invalid_record),
        (lambda: forge(ten(), count=3, last_offset_delta=2), ErrorCode.invalid_record),
        (lambda: forge(ten(), count=0), ErrorCode.invalid_record),
        (lambda: forge(ten(), base_offset=5), ErrorCode.invalid_record),
        (lambda: forge(ten(), attributes=0x20), ErrorCode.invalid_record),
        (lambda: forge(ten(), producer_id=7, base_sequence=-1), ErrorCode.invalid_record),
        (lambda: forge(ten(), body=ten()[BATCH_HEADER_BYTES:] + b"\x00"), ErrorCode.invalid_record),
        (lambda: bytes(ten()[:-1]) + b"\xff", ErrorCode.corrupt_message),
    ],
    ids=[
        "count-1M",
        "count-1M-span-10",
        "count-3-of-10",
        "count-0",
        "base-offset",
        "control",
        "no-sequence",
        "trailing-byte",
        "crc",
    ],
)
def test_batch_lies(lie: object, code: ErrorCode) -> None:
    e = rejected(lie())  # type: ignore[operator]
    assert e.error_code == code
    assert e.record_errors == ()


def _record(
    ts_delta: int = 0,
    offset_delta: int = 0,
    key: bytes = varint(1) + b"k",
    value: bytes = varint(-1),
    headers: bytes = varint(0),
) -> bytes:
    return raw_record(b"\x00" + varint(ts_delta) + varint(offset_delta) + key + value + headers)


def _one(body: bytes) -> bytes:
    return forge(build_batch([NewRecord(b"k", None, NOW)]), body=body)


@pytest.mark.parametrize(
    "body",
    [
        _record(offset_delta=1),
        _record(key=varint(-2)),
        _record(value=varint(-7)),
        _record(key=varint(50) + b"short"),
        _record(headers=varint(-1)),
        _record(headers=varint(1) + varint(-1) + varint(-1)),  # null header key
        _record(headers=varint(1) + varint(1) + b"h" + varint(-2)),
        _record(headers=varint(1000)),
        _record() + b"\x00",
        varint(0),
        varint(-3) + b"\x00" * 10,
        b"\xff\xff\xff\xff\xff\x01" + b"\x00" * 10,  # a 6-byte varint length
        varint(100) + b"\x00" * 10,
        varint(len(_record())) + _record()[1:] + b"\x00",  # a length one more than its fields take
        b"",
    ],
    ids=[
        "offset-delta",
        "key-len",
        "value-len",
        "key-past-end",
        "header-count",
        "null-header-key",
        "header-value-len",
        "header-count-huge",
        "trailing",
        "zero-length",
        "negative-length",
        "long-varint",
        "length-past-end",
        "length-mismatch",
        "empty",
    ],
)
@pytest.mark.parametrize("codec", [Codec.NONE, Codec.ZSTD])
def test_record_lies_are_invalid_record(body: bytes, codec: Codec) -> None:
    batch = _one(body) if codec is Codec.NONE else with_codec(_one(body), codec)
    e = rejected(batch)
    assert e.error_code == ErrorCode.invalid_record, str(e)
    assert e.record_errors == ()


def test_out_of_order_offset_deltas() -> None:
    batch = build_batch([NewRecord(b"k", b"v", NOW, offset_delta=d) for d in (1, 0, 2, 3)])
    assert rejected(batch).error_code == ErrorCode.invalid_record


@pytest.mark.parametrize("codec", CODECS)
def test_codec_garbage_is_invalid_record(codec: Codec) -> None:
    batch = forge(ten(), attributes=int(codec), body=bytes(range(200)))
    assert rejected(batch).error_code == ErrorCode.invalid_record


@pytest.mark.parametrize("codec", CODECS)
def test_compressed_payload_must_be_consumed_exactly(codec: Codec) -> None:
    whole = ten(codec)
    cut = forge(whole, body=whole[BATCH_HEADER_BYTES:-3])
    assert rejected(cut).error_code == ErrorCode.invalid_record
    if codec is not Codec.SNAPPY:  # raw snappy has no end marker: extra bytes are more (bad) data
        extra = forge(whole, body=whole[BATCH_HEADER_BYTES:] + b"\x00\x01\x02\x03")
        assert rejected(extra).error_code == ErrorCode.invalid_record


@pytest.mark.parametrize("codec", CODECS)
def test_a_zero_bomb_is_refused_for_its_first_record(codec: Codec) -> None:
    policy = ValidationPolicy(now_ms=NOW, max_message_bytes=1 << 20, decompressed_bytes_max=1 << 16)
    e = rejected(bomb(codec, 1 << 20), policy)
    # What Kafka, streaming, says of the first record. A raw snappy block declares its length up front, so it is
    # refused by that, before any of it is inflated (snappy inflates at most ~21x: under the default limit of
    # 64 x max.message.bytes it cannot get there).
    expected = ErrorCode.message_too_large if codec is Codec.SNAPPY else ErrorCode.invalid_record
    assert e.error_code == expected, str(e)


@pytest.mark.parametrize("codec", CODECS)
def test_decompressed_limit_at_under_and_over(codec: Codec) -> None:
    batch = build_batch([NewRecord(b"k", bytes(5000), NOW)], codec=codec)
    size = len(build_batch([NewRecord(b"k", bytes(5000), NOW)])) - BATCH_HEADER_BYTES
    for limit, ok in ((size + 1, True), (size, True), (size - 1, False)):
        policy = ValidationPolicy(now_ms=NOW, max_message_bytes=1 << 20, decompressed_bytes_max=limit)
        if ok:
            check(batch, policy)
        else:
            assert rejected(batch, policy).error_code == ErrorCode.message_too_large


def test_max_message_bytes_at_and_over() -> None:
    batch = ten()
    check(batch, ValidationPolicy(now_ms=NOW, max_message_bytes=len(batch), decompressed_bytes_max=1 << 20))
    policy = ValidationPolicy(now_ms=NOW, max_message_bytes=len(batch) - 1, decompressed_bytes_max=1 << 20)
    assert rejected(batch, policy).error_code == ErrorCode.message_too_large


def test_keyless_records_on_a_compacted_topic_are_each_named() -> None:
    keyless = frozenset(range(5, 100, 10))
    e = rejected(build_batch(records_of(100, NOW, keyless)), COMPACTED)
    assert e.error_code == ErrorCode.invalid_record
    assert [r.batch_index for r in e.record_errors] == sorted(keyless)
    assert "compacted" in e.record_errors[0].message


def test_record_timestamps_are_checked_not_only_the_header() -> None:
    policy = ValidationPolicy(
        now_ms=NOW,
        max_message_bytes=1 << 20,
        decompressed_bytes_max=1 << 20,
        timestamp_before_max_ms=1000,
        timestamp_after_max_ms=1000,
    )
    stamps = [NOW, NOW - 1000, NOW - 1001, NOW + 1000, NOW + 1001, -1, -5]
    batch = forge(build_batch([NewRecord(b"k", b"v", t) for t in stamps], base_timestamp=NOW), max_timestamp=NOW)
    e = rejected(batch, policy)
    assert e.error_code == ErrorCode.invalid_timestamp
    assert [r.batch_index for r in e.record_errors] == [2, 4, 6]


def test_a_key_error_and_a_timestamp_error_make_invalid_timestamp() -> None:
    policy = ValidationPolicy(
        now_ms=NOW, max_message_bytes=1 << 20, decompressed_bytes_max=1 << 20, timestamp_after_max_ms=0, compacted=True
    )
    batch = build_batch([NewRecord(None, b"v", NOW), NewRecord(b"k", b"v", NOW + 1)])
    e = rejected(batch, policy)
    assert e.error_code == ErrorCode.invalid_timestamp
    assert [r.batch_index for r in e.record_errors] == [0, 1]


def test_producer_set_log_append_time() -> None:
    batch = forge(ten(), attributes=0x08)
    check(batch)  # a CreateTime topic takes it, as Kafka does
    lat = ValidationPolicy(now_ms=NOW, max_message_bytes=1 << 20, decompressed_bytes_max=1 << 20, log_append_time=True)
    e = rejected(batch, lat)
    assert e.error_code == ErrorCode.invalid_timestamp
    assert len(e.record_errors) == 10


def test_unknown_codec_id() -> None:
    assert rejected(forge(ten(), attributes=6)).error_code == ErrorCode.unsupported_compression_type


@settings(max_examples=300)
@given(st.data())
def test_any_mutation_passes_or_is_refused_with_our_error(data: st.DataObject) -> None:
    codec = data.draw(st.sampled_from(list(Codec)))
    batch = bytearray(build_batch(records_of(5, NOW), codec=codec))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(BATCH_HEADER_BYTES - 4, len(batch) - 1))  # the count and the records
        batch[at] = data.draw(st.integers(0, 255))
    forged = forge(bytes(batch))
    with contextlib.suppress(ProtocolError):  # BatchRejected, or read_header's CorruptRecordError
        check(forged)


def test_a_huge_declared_count_costs_nothing() -> None:
    batch = forge(ten(), count=2**31 - 1, last_offset_delta=2**31 - 2)
    assert rejected(batch).error_code == ErrorCode.invalid_record


@given(st.one_of(st.binary(max_size=12), st.text(max_size=6).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_header_keys_must_be_utf8_exactly_as_python_decodes(key: bytes) -> None:
    """The cleaner and every loosely reader decode header keys strictly, so the walk refuses what they would."""
    body = _record(headers=varint(1) + varint(len(key)) + key + varint(-1))
    try:
        key.decode("utf-8")
    except UnicodeDecodeError:
        assert rejected(_one(body)).error_code == ErrorCode.invalid_record
    else:
        check(_one(body))


@pytest.mark.parametrize("bad", [RECORD_ERRORS_MAX - 1, RECORD_ERRORS_MAX, RECORD_ERRORS_MAX + 1])
def test_record_errors_are_capped_but_counted(bad: int) -> None:
    e = rejected(build_batch(records_of(bad, NOW, frozenset(range(bad)))), COMPACTED)
    assert [r.batch_index for r in e.record_errors] == list(range(min(bad, RECORD_ERRORS_MAX)))
    assert str(e).startswith(f"{bad} record(s)")


def test_a_timestamp_error_past_the_cap_still_makes_invalid_timestamp() -> None:
    records = records_of(RECORD_ERRORS_MAX, NOW, frozenset(range(RECORD_ERRORS_MAX)))
    records.append(NewRecord(b"k", b"v", NOW + 2 * 3_600_000))
    e = rejected(build_batch(records, base_timestamp=NOW), COMPACTED)
    assert e.error_code == ErrorCode.invalid_timestamp
    assert len(e.record_errors) == RECORD_ERRORS_MAX
