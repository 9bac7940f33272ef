from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loosely.protocol.compression import Codec
from loosely.protocol.errors import CorruptRecordError, ProtocolError
from loosely.protocol.records import (
    BATCH_HEADER_BYTES,
    ControlType,
    NewRecord,
    build_batch,
    build_control_batch,
    check_batch_crc,
    decode_records,
    iter_batches,
    read_header,
    rewrite_base_offset,
    set_log_append_time,
)

maybe_bytes = st.one_of(st.none(), st.binary(max_size=50))
records_st = st.lists(
    st.builds(
        NewRecord,
        key=maybe_bytes,
        value=maybe_bytes,
        timestamp=st.integers(0, 2**41),
        headers=st.lists(st.tuples(st.text(max_size=5), maybe_bytes), max_size=3).map(tuple),
    ),
    min_size=1,
    max_size=20,
)


@given(records_st, st.sampled_from(list(Codec)), st.integers(0, 2**40))
def test_build_then_decode_round_trip(records: list[NewRecord], codec: Codec, base: int) -> None:
    batch = build_batch(records, base_offset=base, codec=codec)
    ((pos, h),) = list(iter_batches(batch))
    check_batch_crc(batch, pos, h)
    assert h.records_count == len(records)
    assert h.last_offset == base + len(records) - 1
    assert h.codec == codec
    got = decode_records(batch, pos, h, 1 << 20)
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in got] == [
        (base + i, r.timestamp, r.key, r.value, r.headers) for i, r in enumerate(records)
    ]


def test_rewriting_the_base_offset_keeps_the_crc_valid() -> None:
    batch = bytearray(build_batch([NewRecord(b"k", b"v", 1000)]))
    rewrite_base_offset(batch, 0, 12345, 7)
    h = read_header(batch)
    assert (h.base_offset, h.partition_leader_epoch) == (12345, 7)
    check_batch_crc(batch, 0, h)


def test_log_append_time_rewrite_recomputes_the_crc() -> None:
    batch = bytearray(build_batch([NewRecord(b"k", b"v", 1000), NewRecord(b"k", b"w", 1001)]))
    h = read_header(batch)
    set_log_append_time(batch, 0, h, 5555)
    h2 = read_header(batch)
    check_batch_crc(batch, 0, h2)
    assert h2.is_log_append_time and h2.max_timestamp == 5555
    assert [r.timestamp for r in decode_records(batch, 0, h2, 1 << 20)] == [5555, 5555]


@given(st.integers(BATCH_HEADER_BYTES, 200), st.integers(0, 255))
def test_any_flipped_byte_under_the_crc_is_detected(pos: int, xor: int) -> None:
    batch = bytearray(build_batch([NewRecord(b"key", b"value" * 30, 1000)]))
    if pos >= len(batch) or xor == 0:
        return
    batch[pos] ^= xor
    with pytest.raises(CorruptRecordError):
        check_batch_crc(batch, 0, read_header(batch))


def test_partial_tail() -> None:
    one = build_batch([NewRecord(None, b"a", 1)])
    two = one + one[:30]
    with pytest.raises(CorruptRecordError):
        list(iter_batches(two))
    assert len(list(iter_batches(two, allow_partial_tail=True))) == 1


def test_wrong_magic() -> None:
    batch = bytearray(build_batch([NewRecord(None, b"a", 1)]))
    batch[16] = 1
    with pytest.raises(CorruptRecordError, match="magic"):
        read_header(batch)


def test_control_batch() -> None:
    b = build_control_batch(ControlType.COMMIT, producer_id=5, producer_epoch=1, coordinator_epoch=3, timestamp_ms=9)
    h = read_header(b)
    assert h.is_control and h.is_transactional and h.producer_id == 5
    (r,) = decode_records(b, 0, h, 1000)
    assert r.key == b"\x00\x00\x00\x01"


@pytest.mark.parametrize("size", [0, 511, 512, 513, 10_000])
def test_values_around_the_piece_size_round_trip(size: int) -> None:
    # build_batch keeps a value over 512 bytes as a piece of its own, joined once, instead of copying it into its record
    records = [NewRecord(b"k", bytes(range(256)) * (size // 256) + b"v" * (size % 256), 5, (("h", b"x"),)),
               NewRecord(None, None, 7), NewRecord(b"last", b"w" * size, 9)]
    batch = build_batch(records, producer_id=3, producer_epoch=1, base_sequence=4, transactional=True)
    ((pos, h),) = list(iter_batches(batch))
    check_batch_crc(batch, pos, h)
    assert h.size == len(batch)
    got = decode_records(batch, pos, h, 1 << 20)
    assert [(r.timestamp, r.key, r.value, r.headers) for r in got] == [
        (r.timestamp, r.key, r.value, r.headers) for r in records
    ]


@given(st.binary(max_size=400))
def test_fuzz_decoders_raise_only_our_errors(data: bytes) -> None:
    """Invariant: the record decoders return a value or raise ProtocolError, never anything else."""
    try:
        for pos, h in iter_batches(data):
            decode_records(data, pos, h, 1 << 16)
    except ProtocolError:
        pass


@given(records_st, st.data())
def test_fuzz_mutated_batches(records: list[NewRecord], data: st.DataObject) -> None:
    batch = bytearray(build_batch(records, codec=data.draw(st.sampled_from(list(Codec)))))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(batch) - 1))
        batch[i] = data.draw(st.integers(0, 255))
    try:
        for pos, h in iter_batches(batch):
            decode_records(batch, pos, h, 1 << 16)
    except ProtocolError:
        pass


_plain_records = st.lists(
    st.builds(
        NewRecord,
        key=st.one_of(st.none(), st.binary(max_size=50)),
        value=st.one_of(st.none(), st.binary(max_size=50), st.binary(min_size=500, max_size=700)),
        timestamp=st.integers(-(2**63), 2**63 - 1),
    ),
    max_size=20,
)


@given(_plain_records, st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), st.booleans())
def test_the_compiled_records_section_is_the_python_one(
    records: list[NewRecord], base_timestamp: int | None, transactional: bool
) -> None:
    # records without headers or offsets are written by _recwalk.build_records; giving each its own index as an
    # explicit offset delta (the same bytes) takes the Python loop: both batches must be equal, byte for byte
    # (timestamps over the whole int64 range: deltas that do not fit 64 bits are left to Python too)
    explicit = [NewRecord(r.key, r.value, r.timestamp, offset_delta=i) for i, r in enumerate(records)]
    last = None if records else 0
    options = {"base_timestamp": base_timestamp, "transactional": transactional, "producer_id": 7,
               "producer_epoch": 1, "base_sequence": 3, "last_offset_delta": last}
    assert build_batch(records, **options) == build_batch(explicit, **options)  # type: ignore[arg-type]
