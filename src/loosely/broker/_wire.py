"""Kafka's primitive types, for the coordinator records loosely writes into its internal topics.

The records of ``__consumer_offsets`` and ``__transaction_state`` are not protocol messages kio knows about; they use
the same primitives (Kafka's "data" message format), which this reader and writer implement::

    int8/16/32/64   big-endian, two's complement
    string          int16 length + UTF-8 (length -1: null)
    bytes           int32 length + bytes (length -1: null)
    array           int32 count + elements (count -1: null)
    compact string  unsigned varint (length + 1) + UTF-8 (0: null)         -- "flexible" versions only
    compact bytes   unsigned varint (length + 1) + bytes (0: null)
    compact array   unsigned varint (count + 1) + elements (0: null)
    tagged fields   unsigned varint count, then per field: unsigned varint tag, unsigned varint size, bytes

The reader raises :class:`CorruptRecordError` (never anything else) on bytes that do not parse; lengths are checked
against what is left before anything is sliced.
"""

from __future__ import annotations

import struct
from typing import Final

from loosely.protocol.errors import CorruptRecordError

__all__ = ["Reader", "Writer"]

_I8: Final = struct.Struct(">b")
_I16: Final = struct.Struct(">h")
_I32: Final = struct.Struct(">i")
_I64: Final = struct.Struct(">q")
assert (_I8.size, _I16.size, _I32.size, _I64.size) == (1, 2, 4, 8)


class Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def _fixed(self, s: struct.Struct) -> int:
        if self.pos + s.size > len(self.buf):
            raise CorruptRecordError(f"record truncated at byte {self.pos}")
        (v,) = s.unpack_from(self.buf, self.pos)
        self.pos += s.size
        return int(v)

    def i8(self) -> int:
        return self._fixed(_I8)

    def i16(self) -> int:
        return self._fixed(_I16)

    def i32(self) -> int:
        return self._fixed(_I32)

    def i64(self) -> int:
        return self._fixed(_I64)

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            if self.pos >= len(self.buf):
                raise CorruptRecordError("varint runs past the end of the record")
            b = self.buf[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7
            if shift > 28:
                raise CorruptRecordError("unsigned varint longer than 5 bytes")

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise CorruptRecordError(f"field of {n} bytes runs past the end of the record")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def _text(self, n: int) -> str:
        try:
            return self._take(n).decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorruptRecordError(f"string is not UTF-8: {e}") from e

    def nullable_string(self, compact: bool = False) -> str | None:
        n = self.uvarint() - 1 if compact else self.i16()
        return None if n < 0 else self._text(n)

    def string(self, compact: bool = False) -> str:
        s = self.nullable_string(compact)
        if s is None:
            raise CorruptRecordError("null where a string is required")
        return s

    def nullable_bytes(self, compact: bool = False) -> bytes | None:
        n = self.uvarint() - 1 if compact else self.i32()
        return None if n < 0 else self._take(n)

    def bytes_(self, compact: bool = False) -> bytes:
        return self.nullable_bytes(compact) or b""

    def array_length(self, compact: bool = False) -> int:
        """Element count (-1 for a null array), checked against the bytes left (each element takes one at least)."""
        n = self.uvarint() - 1 if compact else self.i32()
        if n > len(self.buf) - self.pos:
            raise CorruptRecordError(f"array of {n} elements cannot fit in {len(self.buf) - self.pos} bytes")
        return n

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self._take(self.uvarint())

    def end(self) -> None:
        """Nothing may follow the last field of a version we know (trailing bytes mean a misparse)."""
        if self.pos != len(self.buf):
            raise CorruptRecordError(f"{len(self.buf) - self.pos} unexpected bytes after the record's fields")


class Writer:
    """Non-flexible encodings only: loosely writes the newest non-flexible version of each record, as Kafka does."""

    __slots__ = ("out",)

    def __init__(self) -> None:
        self.out = bytearray()

    def i8(self, v: int) -> Writer:
        self.out += _I8.pack(v)
        return self

    def i16(self, v: int) -> Writer:
        self.out += _I16.pack(v)
        return self

    def i32(self, v: int) -> Writer:
        self.out += _I32.pack(v)
        return self

    def i64(self, v: int) -> Writer:
        self.out += _I64.pack(v)
        return self

    def string(self, v: str | None) -> Writer:
        if v is None:
            return self.i16(-1)
        data = v.encode("utf-8")
        if len(data) > 0x7FFF:
            raise ValueError(f"string of {len(data)} bytes does not fit an int16 length")
        self.i16(len(data))
        self.out += data
        return self

    def bytes_(self, v: bytes | None) -> Writer:
        if v is None:
            return self.i32(-1)
        self.i32(len(v))
        self.out += v
        return self

    def array_length(self, n: int) -> Writer:
        return self.i32(n)

    def done(self) -> bytes:
        return bytes(self.out)
