"""loosely.protocol.primitives: every field round-trips, every truncation fails with the reader's error class."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loosely.protocol import primitives
from loosely.protocol.errors import CorruptRecordError
from loosely.protocol.primitives import Reader, Writer, read_varint, write_uvarint, write_varint


def test_doctests() -> None:
    assert doctest.testmod(primitives).failed == 0


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_varint_round_trip(v: int) -> None:
    out = bytearray(b"\x00")
    write_varint(out, v)
    out += b"tail"
    assert read_varint(bytes(out), 1) == (v, len(out) - 4)


@pytest.mark.parametrize(("value", "encoded"), [(0, b"\x00"), (-1, b"\x01"), (1, b"\x02"), (-64, b"\x7f"),
                                                 (64, b"\x80\x01"), (2**63 - 1, b"\xfe" + b"\xff" * 8 + b"\x01")])
def test_zigzag_bytes_are_kafkas(value: int, encoded: bytes) -> None:
    out = bytearray()
    write_varint(out, value)
    assert bytes(out) == encoded


def test_varint_limits() -> None:
    with pytest.raises(CorruptRecordError, match="past the end"):
        read_varint(b"\x80\x80", 0)
    with pytest.raises(CorruptRecordError, match="longer than 10 bytes"):
        read_varint(b"\x80" * 10 + b"\x01", 0)
    with pytest.raises(CorruptRecordError, match="longer than 5 bytes"):
        Reader(b"\x80" * 5 + b"\x01").uvarint()


def _signed(bits: int) -> st.SearchStrategy[int]:
    return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


fields = st.tuples(_signed(8), _signed(16), _signed(32), _signed(64), st.none() | st.text(max_size=40),
                   st.none() | st.binary(max_size=40), st.integers(0, 2**31 - 1), st.booleans())
Fields = tuple[int, int, int, int, str | None, bytes | None, int, bool]


@given(fields)
def test_fields_round_trip_whole_and_truncated(f: Fields) -> None:
    i8, i16, i32, i64, text, data, n, compact = f
    w = Writer().i8(i8).i16(i16).i32(i32).i64(i64).string(text, compact).bytes_(data, compact).uvarint(n)
    raw = w.array_length(-1, compact).no_tagged_fields().done()
    r = Reader(raw)
    got = (r.i8(), r.i16(), r.i32(), r.i64(), r.nullable_string(compact), r.nullable_bytes(compact), r.uvarint(),
           r.array_length(compact))
    r.skip_tagged_fields()
    r.end()
    assert got == (i8, i16, i32, i64, text, data, n, -1)
    for cut in range(len(raw)):  # every prefix fails with the reader's error, never anything else
        short = Reader(raw[:cut])
        with pytest.raises(CorruptRecordError):
            (short.i8(), short.i16(), short.i32(), short.i64(), short.nullable_string(compact),
             short.nullable_bytes(compact), short.uvarint(), short.array_length(compact), short.skip_tagged_fields(),
             short.end())


class _Mine(Exception):
    pass


class _MyReader(Reader):
    __slots__ = ()
    error = _Mine
    text_errors = "replace"


def test_a_subclass_names_its_error_and_text_policy() -> None:
    with pytest.raises(_Mine, match="truncated"):
        _MyReader(b"\x00").i32()
    assert _MyReader(b"\x00\x01\xff").string() == "\ufffd"
    with pytest.raises(CorruptRecordError, match="not UTF-8"):
        Reader(b"\x00\x01\xff").string()
    r = _MyReader(b"\xff\xff\xff\xff\x00\x00\x00\x02ab")
    assert (r.count(), r.nullable_bytes_view()) == (0, memoryview(b"ab"))
    with pytest.raises(_Mine, match="cannot fit"):
        _MyReader(b"\x00\x00\x00\x09").array_length()


def test_limits_of_the_writer() -> None:
    with pytest.raises(ValueError, match="int16 length"):
        primitives.string("x" * 0x8000)
    out = bytearray()
    write_uvarint(out, 300)
    assert bytes(out) == b"\xac\x02"
