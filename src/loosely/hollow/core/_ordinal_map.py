"""Java's ordinal bookkeeping, reproduced exactly because the blobs depend on it.

:class:`OrdinalMap` is ``ByteArrayOrdinalMap`` with ``FreeOrdinalTracker``: payload -> ordinal, the records by
ordinal, and which ordinal a new record takes -- the lowest free one (ordinals freed by the previous cycle are
reused first, in the order Java's free-ordinal stack and its sorting give), then the next never-used one.
:class:`JavaBitSet` holds the populated ordinals of a cycle and the number of 16384-bit segments Java's
``ThreadSafeBitSet`` would have allocated (a snapshot writes every segment Java ever allocated).  Both are shared
with the compiled loops (_writer.c reads a bitset's slots in place).
"""

from __future__ import annotations

from typing import Final, Generic

import numpy as np

from loosely.hollow.core import _writer
from loosely.hollow.core._errors import HollowWriteError
from loosely.hollow.core._payload import ORDINAL_MAX, P

__all__ = ["JavaBitSet", "OrdinalMap", "last_where", "max_shard_ordinals"]

_SEGMENT_SHIFT: Final = 14  # ThreadSafeBitSet: 16384-bit segments ...
_LONGS_PER_SEGMENT: Final = 256  # ... of 256 longs


class JavaBitSet:
    """Populated ordinals, and the number of 16384-bit segments Java's ``ThreadSafeBitSet`` would hold.

    Java grows a bitset on every ``set``/``get``/``clear`` beyond its end and never shrinks it, and a snapshot
    writes all of its segments; :meth:`touch` records those accesses.
    """

    __slots__ = ("flags", "segments")

    def __init__(self, segments: int = 1) -> None:
        self.flags = bytearray()
        self.segments = segments

    def touch(self, position: int) -> None:
        if position >= 0:
            self.segments = max(self.segments, (position >> _SEGMENT_SHIFT) + 1)

    def set(self, o: int) -> None:
        if o >= len(self.flags):
            self.flags.extend(bytes(max(o + 1 - len(self.flags), len(self.flags))))
        self.flags[o] = 1
        self.touch(o)

    def unset(self, o: int) -> None:
        self.touch(o)
        if o < len(self.flags):
            self.flags[o] = 0

    def get(self, o: int) -> bool:
        return o < len(self.flags) and self.flags[o] == 1

    def clear_all(self) -> None:
        self.flags = bytearray(len(self.flags))

    def bools(self, n: int) -> np.ndarray:
        arr = np.zeros(n, dtype=np.bool_)
        m = min(n, len(self.flags))
        if m:
            arr[:m] = np.frombuffer(bytes(self.flags[:m]), dtype=np.uint8).astype(np.bool_)
        return arr

    def ordinals(self) -> list[int]:
        return np.flatnonzero(np.frombuffer(bytes(self.flags), dtype=np.uint8)).tolist() if self.flags else []

    def equals(self, other: JavaBitSet) -> bool:
        n = max(len(self.flags), len(other.flags))
        return bool(np.array_equal(self.bools(n), other.bools(n)))

    def serialize(self) -> bytes:
        n_longs = self.segments * _LONGS_PER_SEGMENT
        bits = self.bools(n_longs * 64)
        packed = np.packbits(bits, bitorder="little").view("<u8")
        return packed.astype(">u8").tobytes()


_writer.set_bitset_type(JavaBitSet)


def last_where(mask: np.ndarray) -> int:
    nz = np.flatnonzero(mask)
    return int(nz[-1]) if nz.size else -1


class OrdinalMap(Generic[P]):
    """``ByteArrayOrdinalMap`` + ``FreeOrdinalTracker``: payload -> ordinal, and which ordinal comes next."""

    __slots__ = ("exact", "free", "next_empty", "ordinal_of", "preferred", "records", "unused_previous")

    def __init__(self) -> None:
        self.ordinal_of: dict[P, int] = {}
        self.records: list[P | None] = []
        # No payload is held at two ordinals: ``ordinal_of`` maps every held record to its own ordinal. The
        # compiled writers' next-ordinal guess relies on it (_writer.c); only a restored state breaks it.
        self.exact = True
        self.free: list[int] = []  # a stack: pop() hands out the next free ordinal
        self.next_empty = 0
        self.preferred: dict[P, int] | None = None  # restored state: payload -> its old ordinal
        self.unused_previous: set[int] | None = None

    def get_or_assign(self, payload: P, preferred_payload: P | None = None) -> int:
        o = self.ordinal_of.get(payload)
        if o is not None:
            return o
        o = -1
        if self.preferred is not None and self.unused_previous is not None:
            p = self.preferred.get(payload if preferred_payload is None else preferred_payload, -1)
            if p in self.unused_previous:
                self.unused_previous.discard(p)
                o = p
        if o < 0:
            if self.free:
                o = self.free.pop()
            else:
                o = self.next_empty
                self.next_empty += 1
        if o > ORDINAL_MAX:
            raise HollowWriteError(f"ordinal {o} exceeds the {ORDINAL_MAX} Java Hollow supports per type")
        self.put(payload, o)
        return o

    def put(self, payload: P, o: int) -> None:
        # Like Java's ordinal map, two ordinals may hold equal records (a restored record next to its copy);
        # lookups then find the first one.
        if o >= len(self.records):
            self.records.extend([None] * (o + 1 - len(self.records)))
        held_twice = self.ordinal_of.setdefault(payload, o) != o or self.records[o] is not None
        if held_twice and self.exact:
            self.exact = False
            _writer.bump_epoch()  # the compiled writers' guess must now ask the dict
        self.records[o] = payload

    def max_ordinal(self) -> int:
        recs = self.records
        i = len(recs) - 1
        while i >= 0 and recs[i] is None:
            i -= 1
        del recs[i + 1 :]
        return i

    def compact(self, used: JavaBitSet, num_shards: int, focus_hole_fill: bool) -> None:
        """Forget records not in ``used``; their ordinals become free, handed out lowest first."""
        _writer.bump_epoch()  # ordinals are about to be forgotten: compiled writers' caches are stale
        recs = self.records
        held = np.frombuffer(_writer.held(recs), dtype=np.int64)
        if held.size:
            used.touch(int(held[-1]))
        freed = held[~used.bools(len(recs))[held]].tolist()
        for o in freed:
            payload = recs[o]
            assert payload is not None
            if self.ordinal_of.get(payload) == o:
                del self.ordinal_of[payload]
            recs[o] = None
        self.free.extend(freed)
        # every dict entry points at a held record of its payload; as many entries as held records: one each
        self.exact = len(self.ordinal_of) == held.size - len(freed)
        if focus_hole_fill and num_shards > 1:
            self.free = _sort_free_focused(self.free, num_shards)
        else:
            self.free.sort(reverse=True)
        self.preferred = None
        self.unused_previous = None

    def held(self) -> list[int]:
        """Ordinals of every record in the map, ascending."""
        held: list[int] = np.frombuffer(_writer.held(self.records), dtype=np.int64).tolist()
        return held


def _sort_free_focused(free: list[int], num_shards: int) -> list[int]:
    """``FreeOrdinalTracker.sort(numShards)``: fill the holes of the shards with the most holes first."""
    mask = num_shards - 1
    counts = [0] * num_shards
    for o in free:
        counts[o & mask] += 1
    # Java sorts shard descriptors by count, descending, with a stable sort.
    order = sorted(range(num_shards), key=lambda s: -counts[s])
    pos = [0] * num_shards
    running = 0
    for s in order:
        pos[s] = running
        running += counts[s]
    out = [0] * len(free)
    for o in sorted(free):
        s = o & mask
        out[pos[s]] = o
        pos[s] += 1
    out.reverse()
    return out


def max_shard_ordinals(max_ordinal: int, num_shards: int) -> list[int]:
    """``HollowTypeWriteState.calcMaxShardOrdinal``: -1 marks an empty shard."""
    per = (max_ordinal + 1) // num_shards
    rem = (max_ordinal + 1) & (num_shards - 1)
    return [per if i < rem else per - 1 for i in range(num_shards)]

