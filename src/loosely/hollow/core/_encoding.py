"""Primitive encodings of the Hollow blob format: VarInt, ZigZag, Java ``writeUTF`` strings, Java strings.

Theory of operation
-------------------
Everything here is sans-IO: a :class:`Cursor` walks a ``memoryview`` and hands out values or zero-copy
sub-views; a :class:`Writer` appends to a ``bytearray``.  The cursor checks every length against what is left
and raises :class:`HollowBlobTruncatedError` instead of over-reading, and it checks every count against a
limit
before anything is allocated for it, so a corrupt count cannot turn into a huge allocation.

Encodings (``core/memory/encoding/VarInt.java`` and ``ZigZag.java`` in Java Hollow):

* VarInt / VarLong: 7-bit groups, most significant group first, bit 0x80 set on every byte but the last.  The
  lone byte ``0x80`` is "VarNull" (it never starts a normal encoding).  At most 5 bytes (int) or 10 (long).
* ZigZag: ``(v << 1) ^ (v >> 63)``, so small negative numbers stay small.
* ``writeUTF`` strings: ``u16`` byte length, then Java *modified UTF-8*: U+0000 as ``C0 80`` and characters
  outside the BMP as two 3-byte surrogates (CESU-8).
* Java strings are UTF-16.  A Python ``str`` maps to UTF-16 code units with ``surrogatepass`` both ways, so a
  string with unpaired surrogates survives a round trip, and a properly paired surrogate pair read from Java
  becomes one Python code point.
"""

from __future__ import annotations

import struct
from array import array
from typing import Final

from loosely.hollow.core._errors import HollowBlobError, HollowBlobTruncatedError

__all__ = [
    "INT16",
    "INT32",
    "INT64",
    "UINT16",
    "VAR_NULL",
    "Cursor",
    "Writer",
    "from_utf16_units",
    "java_string_hash",
    "to_utf16_units",
    "varint_size",
    "zigzag_decode",
    "zigzag_encode",
]

INT16: Final = struct.Struct(">h")
UINT16: Final = struct.Struct(">H")
INT32: Final = struct.Struct(">i")
INT64: Final = struct.Struct(">q")
UINT64: Final = struct.Struct(">Q")
assert (INT16.size, UINT16.size, INT32.size, INT64.size, UINT64.size) == (2, 2, 4, 8, 8)

VAR_NULL: Final = 0x80
_VARINT_BYTES_MAX: Final = 5
_VARLONG_BYTES_MAX: Final = 10
_INT_MAX: Final = (1 << 31) - 1
_LONG_MAX: Final = (1 << 63) - 1


def zigzag_encode(value: int, bits: int = 64) -> int:
    """ZigZag-encode a signed ``bits``-wide integer into an unsigned one."""
    return ((value << 1) ^ (value >> (bits - 1))) & ((1 << bits) - 1)


def zigzag_decode(value: int) -> int:
    """Inverse of :func:`zigzag_encode` (works for any width)."""
    return (value >> 1) ^ -(value & 1)


def varint_size(value: int) -> int:
    """Number of bytes of the VarInt encoding of a non-negative ``value``."""
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def to_utf16_units(text: str) -> array[int]:
    """The UTF-16 code units Java would hold for ``text`` (lone surrogates pass through)."""
    units = array("H")
    units.frombytes(text.encode("utf-16-le", "surrogatepass"))
    return units


def from_utf16_units(data: bytes) -> str:
    """Decode little-endian UTF-16 code units; valid surrogate pairs join, lone surrogates stay."""
    return data.decode("utf-16-le", "surrogatepass")


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode()``: ``s[0]*31^(n-1) + ... + s[n-1]`` over UTF-16 units, as a signed int."""
    h = 0
    if text.isascii():
        for ch in text.encode("ascii"):
            h = (h * 31 + ch) & 0xFFFFFFFF
    else:
        for unit in to_utf16_units(text):
            h = (h * 31 + unit) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def _decode_modified_utf8(raw: bytes) -> str:
    if raw.isascii() and b"\x00" not in raw:
        return raw.decode("ascii")
    # C0 80 is Java's encoding of U+0000; everything else is UTF-8 with surrogates encoded one by one.
    try:
        loose = raw.replace(b"\xc0\x80", b"\x00").decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise HollowBlobError(f"invalid modified UTF-8 string: {exc}") from None
    return from_utf16_units(loose.encode("utf-16-le", "surrogatepass"))


def _encode_modified_utf8(text: str) -> bytes:
    if text.isascii() and "\x00" not in text:
        return text.encode("ascii")
    units = to_utf16_units(text)
    # Encode code unit by code unit so a supplementary character becomes two 3-byte surrogates.
    spread = "".join(map(chr, units))
    return spread.encode("utf-8", "surrogatepass").replace(b"\x00", b"\xc0\x80")


class Cursor:
    """A bounds-checked reader over a buffer; every read either succeeds or raises a HollowBlobError."""

    __slots__ = ("_data", "_end", "pos")

    def __init__(self, data: memoryview, pos: int = 0, end: int | None = None) -> None:
        self._data = data
        self.pos = pos
        self._end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self._end - self.pos

    def _need(self, n: int, what: str) -> int:
        start = self.pos
        if n < 0 or start + n > self._end:
            raise HollowBlobTruncatedError(
                f"blob ends while reading {what}: need {n} bytes at offset {start}, {self._end - start} left"
            )
        self.pos = start + n
        return start

    def u8(self, what: str = "a byte") -> int:
        return self._data[self._need(1, what)]

    def i16(self, what: str = "a short") -> int:
        return int(INT16.unpack_from(self._data, self._need(2, what))[0])

    def u16(self, what: str = "an unsigned short") -> int:
        return int(UINT16.unpack_from(self._data, self._need(2, what))[0])

    def i32(self, what: str = "an int") -> int:
        return int(INT32.unpack_from(self._data, self._need(4, what))[0])

    def i64(self, what: str = "a long") -> int:
        return int(INT64.unpack_from(self._data, self._need(8, what))[0])

    def view(self, n: int, what: str = "a byte range") -> memoryview:
        """A zero-copy view of the next ``n`` bytes."""
        start = self._need(n, what)
        return self._data[start : start + n]

    def skip(self, n: int, what: str = "skipped bytes") -> None:
        self._need(n, what)

    def _var(self, bytes_max: int, value_max: int, what: str) -> int:
        data = self._data
        pos = self.pos
        end = self._end
        if pos >= end:
            raise HollowBlobTruncatedError(f"blob ends while reading {what} at offset {pos}")
        b = data[pos]
        if b == VAR_NULL:
            raise HollowBlobError(f"unexpected VarNull where {what} was expected at offset {pos}")
        value = b & 0x7F
        n = 1
        while b & 0x80:
            if pos + n >= end:
                raise HollowBlobTruncatedError(f"blob ends inside {what} at offset {pos}")
            if n >= bytes_max:
                raise HollowBlobError(f"{what} at offset {pos} is longer than {bytes_max} bytes")
            b = data[pos + n]
            value = (value << 7) | (b & 0x7F)
            n += 1
        if value > value_max:
            raise HollowBlobError(f"{what} at offset {pos} is out of range: {value}")
        self.pos = pos + n
        return value

    def varint(self, what: str = "a VarInt", value_max: int = _INT_MAX) -> int:
        """A non-negative VarInt no larger than ``value_max`` (Java ``int`` range by default)."""
        return self._var(_VARINT_BYTES_MAX, value_max, what)

    def varlong(self, what: str = "a VarLong", value_max: int = _LONG_MAX) -> int:
        """A non-negative VarLong no larger than ``value_max``."""
        return self._var(_VARLONG_BYTES_MAX, value_max, what)

    def utf(self, what: str = "a string") -> str:
        """A Java ``writeUTF`` string."""
        length = self.u16(what)
        return _decode_modified_utf8(bytes(self.view(length, what)))


class Writer:
    """Appends the blob encodings to a ``bytearray``."""

    __slots__ = ("buf",)

    def __init__(self, buf: bytearray | None = None) -> None:
        self.buf = bytearray() if buf is None else buf

    def u8(self, value: int) -> None:
        self.buf.append(value)

    def i16(self, value: int) -> None:
        self.buf += INT16.pack(value)

    def i32(self, value: int) -> None:
        self.buf += INT32.pack(value)

    def i64(self, value: int) -> None:
        self.buf += INT64.pack(value)

    def raw(self, data: bytes | bytearray | memoryview) -> None:
        self.buf += data

    def varint(self, value: int) -> None:
        """VarInt or VarLong (same encoding for non-negative values)."""
        if value < 0:
            raise ValueError(f"VarInts in blobs are non-negative, got {value}")
        if value < 0x80:
            self.buf.append(value)
            return
        groups = []
        while value:
            groups.append(value & 0x7F)
            value >>= 7
        buf = self.buf
        for g in reversed(groups[1:]):
            buf.append(g | 0x80)
        buf.append(groups[0])

    def utf(self, text: str) -> None:
        encoded = _encode_modified_utf8(text)
        if len(encoded) > 0xFFFF:
            raise ValueError(f"string too long for writeUTF: {len(encoded)} bytes")
        self.buf += UINT16.pack(len(encoded))
        self.buf += encoded
