"""Kafka's primitive types, read and written in one place, importable without kio.

kio encodes and decodes the protocol's *messages*. Several formats are built from the same primitives but are not
messages kio knows: the records of ``__consumer_offsets`` and ``__transaction_state``, MirrorMaker 2's records, a
consumer's subscription metadata, the fields inside a record batch, and the few requests the command line's fast
path writes itself so that it starts without kio (whose schema package imports hypothesis: about 0.3 s and 300
modules). They all read and write here::

    int8/16/32/64   big-endian, two's complement
    string          int16 length + UTF-8 (length -1: null)
    bytes           int32 length + bytes (length -1: null)
    array           int32 count + elements (count -1: null)
    unsigned varint 7 bits a byte, low group first, high bit set on all bytes but the last (at most 5 bytes here)
    varint          zigzag-encoded (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...) then as above, up to 64 bits (10 bytes):
                    the record format's lengths, deltas and header counts
    compact string  unsigned varint (length + 1) + UTF-8 (0: null)         -- "flexible" versions only
    compact bytes   unsigned varint (length + 1) + bytes (0: null)
    compact array   unsigned varint (count + 1) + elements (0: null)
    tagged fields   unsigned varint count, then per field: unsigned varint tag, unsigned varint size, bytes

:class:`Reader` raises its ``error`` class (:class:`CorruptRecordError` unless a subclass names another: the
fast path's answers fail with its ``WireError``, MirrorMaker's records with their ``Mm2RecordError``) and nothing else
on bytes that do not parse; lengths are checked against what is left before anything is sliced. The record batch
header's layout is in :mod:`loosely.protocol.batch_layout`; the record format on top of these varints in
:mod:`loosely.protocol.records`.

>>> w = Writer().i16(7).string("orders").bytes_(None)
>>> r = Reader(w.done())
>>> (r.i16(), r.string(), r.nullable_bytes())
(7, 'orders', None)
>>> out = bytearray(); write_varint(out, -1); write_varint(out, 300); bytes(out)
b'\\x01\\xd8\\x04'
>>> read_varint(bytes(out), 1)
(300, 3)
"""

from __future__ import annotations

import struct
from typing import ClassVar, Final

from loosely.protocol.errors import CorruptRecordError

__all__ = [
    "I8",
    "I16",
    "I32",
    "I64",
    "U32",
    "Reader",
    "Writer",
    "array",
    "read_varint",
    "string",
    "write_uvarint",
    "write_varint",
]

I8: Final = struct.Struct(">b")
I16: Final = struct.Struct(">h")
I32: Final = struct.Struct(">i")
I64: Final = struct.Struct(">q")
U32: Final = struct.Struct(">I")
assert (I8.size, I16.size, I32.size, I64.size, U32.size) == (1, 2, 4, 8, 4)

_STRING_BYTES_MAX: Final = 0x7FFF  # an int16 length
_U64_MASK: Final = 0xFFFF_FFFF_FFFF_FFFF


# --- varints: plain functions over (buffer, position), for the record format's inner loops ---------------------


def read_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """A zigzag varint (up to 10 bytes) at ``pos``: ``(value, next position)``."""
    shift = 0
    raw = 0
    while True:
        if pos >= len(buf):
            raise CorruptRecordError("varint runs past the end of the records")
        b = buf[pos]
        pos += 1
        raw |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise CorruptRecordError("varint longer than 10 bytes")
    return (raw >> 1) ^ -(raw & 1), pos


def write_uvarint(out: bytearray, value: int) -> None:
    """Append ``value`` (>= 0) as an unsigned varint."""
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def write_varint(out: bytearray, value: int) -> None:
    """Append ``value`` zigzag-encoded (a signed 64-bit value) as a varint."""
    write_uvarint(out, ((value << 1) ^ (value >> 63)) & _U64_MASK)


# --- whole fields as bytes, for requests assembled by concatenation --------------------------------------------


def string(s: str | bytes | None) -> bytes:
    """A STRING (int16 length, -1 for None).

    >>> string("ab"), string(None)
    (b'\\x00\\x02ab', b'\\xff\\xff')
    """
    if s is None:
        return I16.pack(-1)
    b = s.encode("utf-8") if isinstance(s, str) else s
    if len(b) > _STRING_BYTES_MAX:
        raise ValueError(f"string of {len(b)} bytes does not fit an int16 length")
    return I16.pack(len(b)) + b


def array(items: list[bytes]) -> bytes:
    """An ARRAY of already encoded elements (int32 count)."""
    return I32.pack(len(items)) + b"".join(items)


# --- a cursor over one buffer ----------------------------------------------------------------------------------


class Reader:
    """Reads fields in order from ``buf``; every overrun or malformed field raises ``error`` (see the header)."""

    __slots__ = ("buf", "pos")

    error: ClassVar[type[Exception]] = CorruptRecordError
    text_errors: ClassVar[str] = "strict"  # how UTF-8 is decoded ("replace": text shown to people, never refused)

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def _fixed(self, s: struct.Struct) -> int:
        if self.pos + s.size > len(self.buf):
            raise self.error(f"record truncated at byte {self.pos}")
        (v,) = s.unpack_from(self.buf, self.pos)
        self.pos += s.size
        return int(v)

    def i8(self) -> int:
        return self._fixed(I8)

    def i16(self) -> int:
        return self._fixed(I16)

    def i32(self) -> int:
        return self._fixed(I32)

    def i64(self) -> int:
        return self._fixed(I64)

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            if self.pos >= len(self.buf):
                raise self.error("varint runs past the end of the record")
            b = self.buf[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7
            if shift > 28:
                raise self.error("unsigned varint longer than 5 bytes")

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes."""
        if n < 0 or self.pos + n > len(self.buf):
            raise self.error(f"field of {n} bytes runs past the end of the record")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def _text(self, n: int) -> str:
        try:
            return self.take(n).decode("utf-8", self.text_errors)
        except UnicodeDecodeError as e:
            raise self.error(f"string is not UTF-8: {e}") from e

    def nullable_string(self, compact: bool = False) -> str | None:
        n = self.uvarint() - 1 if compact else self.i16()
        return None if n < 0 else self._text(n)

    def string(self, compact: bool = False) -> str:
        s = self.nullable_string(compact)
        if s is None:
            raise self.error("null where a string is required")
        return s

    def nullable_bytes(self, compact: bool = False) -> bytes | None:
        n = self.uvarint() - 1 if compact else self.i32()
        return None if n < 0 else self.take(n)

    def bytes_(self, compact: bool = False) -> bytes:
        return self.nullable_bytes(compact) or b""

    def nullable_bytes_view(self) -> memoryview | None:
        """BYTES without a copy (a fetch answer's records stay in the answer's buffer)."""
        n = self.i32()
        if n < 0:
            return None
        if self.pos + n > len(self.buf):
            raise self.error(f"field of {n} bytes runs past the end of the record")
        out = memoryview(self.buf)[self.pos : self.pos + n]
        self.pos += n
        return out

    def array_length(self, compact: bool = False) -> int:
        """Element count (-1 for a null array), checked against the bytes left (each element takes one at least)."""
        n = self.uvarint() - 1 if compact else self.i32()
        if n > len(self.buf) - self.pos:
            raise self.error(f"array of {n} elements cannot fit in {len(self.buf) - self.pos} bytes")
        return n

    def count(self, compact: bool = False) -> int:
        """Element count, a null array counting as empty."""
        return max(self.array_length(compact), 0)

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())

    def end(self) -> None:
        """Nothing may follow the last field of a version we know (trailing bytes mean a misparse)."""
        if self.pos != len(self.buf):
            raise self.error(f"{len(self.buf) - self.pos} unexpected bytes after the record's fields")


class Writer:
    """Appends fields to one buffer; each method returns the writer, so fields chain."""

    __slots__ = ("out",)

    def __init__(self) -> None:
        self.out = bytearray()

    def i8(self, v: int) -> Writer:
        self.out += I8.pack(v)
        return self

    def i16(self, v: int) -> Writer:
        self.out += I16.pack(v)
        return self

    def i32(self, v: int) -> Writer:
        self.out += I32.pack(v)
        return self

    def i64(self, v: int) -> Writer:
        self.out += I64.pack(v)
        return self

    def uvarint(self, v: int) -> Writer:
        write_uvarint(self.out, v)
        return self

    def string(self, v: str | None, compact: bool = False) -> Writer:
        if not compact:
            self.out += string(v)
        elif v is None:
            write_uvarint(self.out, 0)
        else:
            data = v.encode("utf-8")
            write_uvarint(self.out, len(data) + 1)
            self.out += data
        return self

    def bytes_(self, v: bytes | None, compact: bool = False) -> Writer:
        if v is None:
            return self.uvarint(0) if compact else self.i32(-1)
        if compact:
            write_uvarint(self.out, len(v) + 1)
        else:
            self.i32(len(v))
        self.out += v
        return self

    def array_length(self, n: int, compact: bool = False) -> Writer:
        """``n`` elements follow (-1: a null array)."""
        return self.uvarint(n + 1) if compact else self.i32(n)

    def no_tagged_fields(self) -> Writer:
        return self.uvarint(0)

    def raw(self, data: bytes) -> Writer:
        """Bytes as they are, with no length: a fixed-size field such as a UUID's 16."""
        self.out += data
        return self

    def done(self) -> bytes:
        return bytes(self.out)
