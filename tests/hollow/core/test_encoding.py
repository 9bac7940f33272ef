"""VarInt, ZigZag, Java modified UTF-8 and the bounds-checked cursor."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loosely.hollow.core import HollowBlobError, HollowBlobTruncatedError
from loosely.hollow.core._encoding import Cursor, Writer, java_string_hash, zigzag_decode, zigzag_encode

# Examples from shared/reference/hollow-blob-format.md (checked against Java's VarInt.java)
VARINTS = [(0, b"\x00"), (127, b"\x7f"), (128, b"\x81\x00"), (575, b"\x84\x3f"), (2**31 - 1, b"\x87\xff\xff\xff\x7f")]


@pytest.mark.parametrize(("value", "encoded"), VARINTS)
def test_varint_known_encodings(value: int, encoded: bytes) -> None:
    w = Writer()
    w.varint(value)
    assert bytes(w.buf) == encoded
    assert Cursor(memoryview(encoded)).varint() == value


@given(st.integers(0, 2**63 - 1))
def test_varlong_round_trip(value: int) -> None:
    w = Writer()
    w.varint(value)
    cur = Cursor(memoryview(bytes(w.buf)))
    assert cur.varlong() == value
    assert cur.remaining == 0


def test_varint_errors() -> None:
    with pytest.raises(HollowBlobError, match="VarNull"):
        Cursor(memoryview(b"\x80")).varint()
    with pytest.raises(HollowBlobTruncatedError):
        Cursor(memoryview(b"\x81\x82")).varint()
    with pytest.raises(HollowBlobError, match="longer than 5"):
        Cursor(memoryview(b"\x81\x81\x81\x81\x81\x01")).varint()
    with pytest.raises(HollowBlobError, match="out of range"):
        Cursor(memoryview(b"\x8f\xff\xff\xff\x7f")).varint()  # -1 as Java writes it: not a count


@given(st.integers(-(2**63), 2**63 - 1))
def test_zigzag_round_trip(value: int) -> None:
    encoded = zigzag_encode(value)
    assert 0 <= encoded < 2**64
    assert zigzag_decode(encoded) == value
    assert (abs(value) <= 1) == (encoded <= 2)


@given(st.text(st.characters(codec=None, exclude_categories=())))
def test_modified_utf8_round_trip(text: str) -> None:
    w = Writer()
    w.utf(text)
    cur = Cursor(memoryview(bytes(w.buf)))
    assert cur.utf() == text
    assert b"\x00" not in bytes(w.buf)[2:]


def test_modified_utf8_is_java_cesu8() -> None:
    w = Writer()
    w.utf("a\x00\U0001f600")
    # NUL as C0 80; the emoji as two 3-byte surrogates (DataOutputStream.writeUTF)
    assert bytes(w.buf) == b"\x00\x09a\xc0\x80\xed\xa0\xbd\xed\xb8\x80"


def test_java_string_hash_of_known_strings() -> None:
    # Values of java.lang.String.hashCode()
    assert java_string_hash("") == 0
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("\U0001f600") == 1772899  # over the two UTF-16 units d83d de00


def test_cursor_never_reads_past_its_end() -> None:
    cur = Cursor(memoryview(b"\x00\x01\x02"))
    with pytest.raises(HollowBlobTruncatedError):
        cur.i32()
    assert cur.pos == 0
    assert cur.view(3).tobytes() == b"\x00\x01\x02"
    with pytest.raises(HollowBlobTruncatedError):
        cur.u8()
