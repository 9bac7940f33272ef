"""Java Hollow's hash functions (``core/memory/encoding/HashCodes.java``) and ``HollowChecksum``.

They decide where SET and MAP elements sit in their hash buckets and what a state's checksum is, so they must
match Java bit for bit: all arithmetic wraps at 32 or 64 bits and ``>>>`` is a logical shift.  The compiled
extension (``_native``) has the same functions for the hot loops; these pure-Python versions serve the
writer's per-record work and are the reference the extension is tested against.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "HASH_TABLE_ELEMENTS_MAX",
    "MURMUR_SEED",
    "Checksum",
    "hash_int",
    "hash_long",
    "hash_table_size",
    "murmur3",
    "to_int32",
]

MURMUR_SEED: Final = 0xEAB524B9
_M32: Final = 0xFFFFFFFF
_M64: Final = 0xFFFFFFFFFFFFFFFF
# HollowConstants.HASH_TABLE_MAX_SIZE: (1 << 30) * 0.7 elements in one set or map.
HASH_TABLE_ELEMENTS_MAX: Final = int((1 << 30) * 0.7)


def to_int32(value: int) -> int:
    """Wrap to a signed 32-bit Java ``int``."""
    value &= _M32
    return value - (1 << 32) if value & 0x80000000 else value


def hash_int(key: int) -> int:
    """``HashCodes.hashInt``: Thomas Wang's 32-bit integer mix, as a signed int."""
    key &= _M32
    key = (~key + (key << 15)) & _M32
    key ^= key >> 12
    key = (key + (key << 2)) & _M32
    key ^= key >> 4
    key = (key * 2057) & _M32
    key ^= key >> 16
    return to_int32(key)


def hash_long(key: int) -> int:
    """``HashCodes.hashLong``: the 64-bit mix truncated to a signed int."""
    key &= _M64
    key = (~key + (key << 18)) & _M64
    key ^= key >> 31
    key = (key * 21) & _M64
    key ^= key >> 11
    key = (key + (key << 6)) & _M64
    key ^= key >> 22
    return to_int32(key)


def murmur3(data: bytes | bytearray | memoryview) -> int:
    """MurmurHash3 x86_32 with Hollow's seed, as a signed int."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = MURMUR_SEED
    n = len(data)
    rounded = n & ~3
    mv = memoryview(data)
    for i in range(0, rounded, 4):
        k = mv[i] | (mv[i + 1] << 8) | (mv[i + 2] << 16) | (mv[i + 3] << 24)
        k = (k * c1) & _M32
        k = ((k << 15) | (k >> 17)) & _M32
        k = (k * c2) & _M32
        h ^= k
        h = ((h << 13) | (h >> 19)) & _M32
        h = (h * 5 + 0xE6546B64) & _M32
    tail = n & 3
    if tail:
        k = 0
        if tail == 3:
            k = mv[rounded + 2] << 16
        if tail >= 2:
            k |= mv[rounded + 1] << 8
        k |= mv[rounded]
        k = (k * c1) & _M32
        k = ((k << 15) | (k >> 17)) & _M32
        k = (k * c2) & _M32
        h ^= k
    h ^= n
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    h ^= h >> 16
    return to_int32(h)


def hash_table_size(num_elements: int) -> int:
    """``HashCodes.hashTableSize``: buckets for a set/map of ``num_elements`` (load factor <= 0.7)."""
    if num_elements < 0 or num_elements > HASH_TABLE_ELEMENTS_MAX:
        raise ValueError(f"set/map size out of range: {num_elements}")
    if num_elements == 0:
        return 1
    if num_elements < 3:
        return num_elements * 2
    after_load_factor = num_elements * 10 // 7
    return 1 << (after_load_factor - 1).bit_length()


class Checksum:
    """``HollowChecksum``: an order-dependent running hash of ints and longs."""

    __slots__ = ("value",)

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def apply_int(self, v: int) -> None:
        self.value = hash_int(self.value ^ hash_int(v))

    def apply_long(self, v: int) -> None:
        self.value = hash_int(self.value ^ hash_long(v))

    def hex(self) -> str:
        """Java's ``Integer.toHexString``: unsigned, lower case, no leading zeros."""
        return format(self.value & _M32, "x")
