"""``__transaction_state`` values: TransactionLogValue v1 round trips with its tagged fields, and v0 and unknown tags
are read as Kafka's serde reads them (tests/compat/test_transactions_v2.py has Kafka's serde read ours)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loosely.broker.transactions.records import TxnLogValue, decode_txn_value, encode_txn_value
from loosely.protocol.errors import CorruptRecordError
from loosely.protocol.primitives import Writer

ONGOING = TxnLogValue(7, 3, 60_000, 1, (("a", 0), ("a", 2), ("b", 1)), 1_700_000_000_123, 1_700_000_000_000)


def test_round_trip_with_and_without_tagged_fields() -> None:
    assert decode_txn_value(encode_txn_value(ONGOING)) == ONGOING
    tagged = TxnLogValue(8, 0, 1_000, 4, (), 5, 4, previous_producer_id=7, next_producer_id=-1, client_version=2)
    assert decode_txn_value(encode_txn_value(tagged)) == tagged
    rotating = TxnLogValue(8, 0x7FFF, 1_000, 2, (("a", 0),), 5, 4, previous_producer_id=8, next_producer_id=9)
    assert decode_txn_value(encode_txn_value(rotating)) == rotating
    empty = TxnLogValue(7, 0, 1_000, 0, (), 5, -1)
    data = encode_txn_value(empty)
    assert data[:2] == b"\x00\x01" and data[-1:] == b"\x00", "v1, and no tagged fields at their defaults"
    assert decode_txn_value(data) == empty


def test_version_0_and_a_later_tag() -> None:
    v0 = Writer().i16(0).i64(7).i16(3).i32(60_000).i8(0).array_length(-1).i64(5).i64(-1).done()
    assert decode_txn_value(v0) == TxnLogValue(7, 3, 60_000, 0, (), 5, -1)
    later = bytearray(encode_txn_value(TxnLogValue(7, 0, 1_000, 0, (), 5, -1, client_version=2)))
    assert later[-5:] == bytearray([1, 2, 2, 0, 2])  # one tag: 2 (client version), 2 bytes, 2
    later[-5:] = bytearray([2, 2, 2, 0, 2, 3, 2, 0, 9])  # and tag 3 (KIP-939's next epoch), which loosely skips
    assert decode_txn_value(bytes(later)).client_version == 2
    with pytest.raises(CorruptRecordError):
        decode_txn_value(bytes(later[:-1]))


@given(st.binary(max_size=120), st.integers(0, 80), st.integers(0, 255))
def test_any_bytes_decode_or_raise_our_error(tail: bytes, at: int, byte: int) -> None:
    """Whatever the log holds, the decoder returns a value or raises CorruptRecordError (the coordinator skips it)."""
    mangled = bytearray(encode_txn_value(ONGOING))
    mangled[at % len(mangled)] = byte
    for data in (tail, bytes(mangled), bytes(mangled[: at % len(mangled)]) + tail):
        try:
            decode_txn_value(data)
        except CorruptRecordError:
            pass
