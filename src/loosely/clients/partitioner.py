"""Partitioners: which partition a keyed record goes to.

Apache Kafka's Java producer hashes keys with murmur2 (``Utils.murmur2``, seed ``0x9747b28c``), clears the sign bit
and takes the result modulo the partition count. librdkafka, and so kcat, defaults to ``consistent_random``:
CRC32 of the key modulo the count. The same key therefore lands on different partitions depending on the client.
loosely's command line defaults to murmur2 so its records sit where Java services expect them; kcat's behaviour is
one ``-X topic.partitioner=consistent_random`` away. librdkafka does the partitioning itself (``murmur2_random``
is the same function); these pure functions exist to check it and to plan partitions without a client.

>>> murmur2(b"key-1")
193331640
>>> murmur2_partition(b"key-1", 6), crc32_partition(b"key-1", 6)
(0, 2)
"""

from __future__ import annotations

import zlib
from typing import Final

__all__ = ["DEFAULT_PARTITIONER", "KCAT_PARTITIONER", "crc32_partition", "murmur2", "murmur2_partition"]

# librdkafka's names for the two behaviours (the ``partitioner`` topic property).
DEFAULT_PARTITIONER: Final = "murmur2_random"
KCAT_PARTITIONER: Final = "consistent_random"

_M: Final = 0x5BD1E995
_SEED: Final = 0x9747B28C
_MASK: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 of ``data`` as an unsigned int (Java's int, seen unsigned)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    n4 = length // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = data[4 * n4 :]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def murmur2_partition(key: bytes, partitions: int) -> int:
    """Apache Kafka's ``BuiltInPartitioner.partitionForKey``: ``toPositive(murmur2(key)) % partitions``."""
    if partitions <= 0:
        raise ValueError("a topic has at least one partition")
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def crc32_partition(key: bytes, partitions: int) -> int:
    """librdkafka's ``consistent`` partitioner (kcat's default for keyed records): ``crc32(key) % partitions``."""
    if partitions <= 0:
        raise ValueError("a topic has at least one partition")
    return zlib.crc32(key) % partitions
