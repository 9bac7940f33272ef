"""The write state engine: records in, ordinals assigned, snapshot / delta / reverse delta blobs out.

Theory of operation
-------------------
A :class:`WriteStateEngine` alternates between two phases, exactly like Java's ``HollowWriteStateEngine``:

1. *adding*: every record of the new state is added (``add_object``, ``add_list``, ...).  A record identical to
   one already known keeps that record's ordinal, so unchanged records keep their ordinals from cycle to cycle;
   a new record takes the lowest free ordinal (ordinals freed by the previous cycle are reused first), then the
   next never-used one.
2. *writing*: the first ``write_*`` call freezes the cycle (``prepare_for_write``): per type it finds the
   max ordinal, the field/element bit widths over the records of this cycle *and* the previous one (so snapshot,
   delta and reverse delta of one cycle share widths) and, on the first cycle only, the shard count.

``prepare_for_next_cycle()`` then forgets the records that were not re-added (their ordinals become free) and
starts the next cycle.  The blobs are byte-identical to Java's for the same sequence of calls, which needs some
of Java's bookkeeping reproduced exactly: the free-ordinal stack and its sorting, the set/map bucket placement
(linear probing from ``hashInt(ordinal)`` or from the element's hash key), the sizes of Java's
``ThreadSafeBitSet`` (the populated-ordinals bitset is written with every segment Java ever allocated), and
the iteration order of the header tags' ``ConcurrentHashMap``.

Records are given as Python values and normalised at once to the form Java serialises ("payload"): INT and
LONG are zig-zag encoded, FLOAT and DOUBLE are their canonical IEEE bits (null is the special null bits),
STRING is its VarInt-per-UTF-16-unit encoding.  Two records are the same record exactly when their payloads are
equal, which is Java's rule (it compares serialized bytes).
"""

from __future__ import annotations

import math
import random as _random
import struct
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, TypeAlias, TypeVar

import numpy as np

from loosely.hollow.core import _native, _writer
from loosely.hollow.core._blob import (
    BlobHeader,
    BlobKind,
    PartHeader,
    ShardData,
    TypeSection,
    encode_gaps,
    write_blob_header,
    write_part_header,
    write_type_section,
)
from loosely.hollow.core._encoding import Writer, to_utf16_units, zigzag_decode
from loosely.hollow.core._errors import HollowSchemaError, HollowWriteError
from loosely.hollow.core._hashing import hash_int, hash_table_size, murmur3, to_int32
from loosely.hollow.core._java_order import JavaConcurrentHashMap, java_hash_map_order
from loosely.hollow.core._keys import KeyPath, bind_key
from loosely.hollow.core._read_state import FieldTypeCodes, ReadStateEngine, TypeReadState
from loosely.hollow.core._schema import (
    FieldType,
    ListSchema,
    MapSchema,
    ObjectSchema,
    Schema,
    SetSchema,
)

__all__ = ["BlobParts", "ObjectValue", "WriteStateEngine"]

LONG_MAX: Final = (1 << 63) - 1
INT_MIN: Final = -(1 << 31)
LONG_MIN: Final = -(1 << 63)
NULL_FLOAT_BITS: Final = 0x7FC00001
NULL_DOUBLE_BITS: Final = 0x7FF8000000000001
CANONICAL_NAN_FLOAT: Final = 0x7FC00000
CANONICAL_NAN_DOUBLE: Final = 0x7FF8000000000000
ORDINAL_MAX: Final = (1 << 29) - 1  # ByteArrayOrdinalMap: 29-bit ordinals
ASSIGNED_ORDINAL_CYCLE_MASK: Final = 0xFFFFFFFF00000000
_SEGMENT_SHIFT: Final = 14  # ThreadSafeBitSet: 16384-bit segments ...
_LONGS_PER_SEGMENT: Final = 256  # ... of 256 longs
_F32: Final = struct.Struct(">f")
_U32: Final = struct.Struct(">I")
_F64: Final = struct.Struct(">d")
_U64: Final = struct.Struct(">Q")

ObjectValue: TypeAlias = int | float | bool | str | bytes | None
FieldPayload: TypeAlias = int | bytes | None
ObjectPayload: TypeAlias = tuple[FieldPayload, ...]
ListPayload: TypeAlias = tuple[int, ...]
MapPayload: TypeAlias = tuple[tuple[int, int], ...]
Payload: TypeAlias = ObjectPayload | ListPayload | MapPayload
P = TypeVar("P", ObjectPayload, ListPayload, MapPayload)


# --- value normalisation ---------------------------------------------------------------------------------


def float_bits(value: float) -> int:
    """Java ``Float.floatToIntBits((float) value)``: round to float32, NaN canonical."""
    if math.isnan(value):
        return CANONICAL_NAN_FLOAT
    try:
        return int(_U32.unpack(_F32.pack(value))[0])
    except OverflowError:  # beyond float32: Java's cast gives an infinity
        return 0x7F800000 if value > 0 else 0xFF800000


def double_bits(value: float) -> int:
    """Java ``Double.doubleToLongBits``: NaN canonical."""
    if math.isnan(value):
        return CANONICAL_NAN_DOUBLE
    return int(_U64.unpack(_F64.pack(value))[0])


def encode_string(text: str) -> bytes:
    """Hollow's string encoding: each UTF-16 code unit as a VarInt."""
    if text.isascii():
        return text.encode("ascii")
    out = bytearray()
    for unit in to_utf16_units(text):
        if unit >= 1 << 14:
            out.append(0x80 | (unit >> 14))
        if unit >= 1 << 7:
            out.append(0x80 | ((unit >> 7) & 0x7F))
        out.append(unit & 0x7F)
    return bytes(out)


def _decode_string_units(data: bytes) -> list[int]:
    units = []
    value = 0
    for b in data:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            units.append(value)
            value = 0
    return units


FieldEncoder = Callable[[ObjectValue], FieldPayload]


def _type_error(where: str, expected: str, value: ObjectValue) -> HollowWriteError:
    return HollowWriteError(f"{where} is {expected}, got {type(value).__name__}")


def _encoder(schema: ObjectSchema, index: int) -> FieldEncoder:
    """The function turning a Python value of one field into its payload (checked), made once per field."""
    f = schema.fields[index]
    t = f.type
    where = f"{schema.name}.{f.name}"
    if t is FieldType.INT or t is FieldType.LONG:
        bits = 32 if t is FieldType.INT else 64
        low, high, mask = -(1 << (bits - 1)), (1 << (bits - 1)) - 1, (1 << bits) - 1

        def encode_int(value: ObjectValue) -> FieldPayload:
            if value is None:
                return None
            if value.__class__ is not int and (not isinstance(value, int) or isinstance(value, bool)):
                raise _type_error(where, t.value, value)
            if not low < value <= high:
                raise HollowWriteError(f"{where}: {value} is outside {t.value} (its minimum is reserved for null)")
            return ((value << 1) ^ (value >> (bits - 1))) & mask

        return encode_int
    if t is FieldType.REFERENCE:

        def encode_ref(value: ObjectValue) -> FieldPayload:
            if value is None:
                return None
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= ORDINAL_MAX:
                raise HollowWriteError(f"{where} is a reference: give the ordinal add_*() returned, got {value!r}")
            return value

        return encode_ref
    if t is FieldType.BOOLEAN:

        def encode_bool(value: ObjectValue) -> FieldPayload:
            if value is None:
                return None
            if not isinstance(value, bool):
                raise _type_error(where, "BOOLEAN", value)
            return 1 if value else 0

        return encode_bool
    if t is FieldType.FLOAT or t is FieldType.DOUBLE:
        null = NULL_FLOAT_BITS if t is FieldType.FLOAT else NULL_DOUBLE_BITS
        to_bits = float_bits if t is FieldType.FLOAT else double_bits

        def encode_float(value: ObjectValue) -> FieldPayload:
            if value is None:
                return null
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise _type_error(where, t.value, value)
            return to_bits(float(value))

        return encode_float
    if t is FieldType.STRING:

        def encode_str(value: ObjectValue) -> FieldPayload:
            if value is None:
                return None
            if not isinstance(value, str):
                raise _type_error(where, "STRING", value)
            return encode_string(value)

        return encode_str

    def encode_bytes(value: ObjectValue) -> FieldPayload:
        if value is None:
            return None
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise _type_error(where, "BYTES", value)
        return bytes(value)

    return encode_bytes


def _field_payload(schema: ObjectSchema, index: int, value: ObjectValue) -> FieldPayload:
    return _encoder(schema, index)(value)


def object_payload(
    schema: ObjectSchema,
    values: Mapping[str, ObjectValue] | Sequence[ObjectValue],
    encoders: Sequence[FieldEncoder] | None = None,
) -> ObjectPayload:
    if encoders is None:
        encoders = [_encoder(schema, i) for i in range(len(schema.fields))]
    if isinstance(values, Mapping):
        unknown = set(values) - set(schema.field_names())
        if unknown:
            raise HollowWriteError(f"type {schema.name} has no fields {sorted(unknown)}")
        return tuple(enc(values.get(f.name)) for enc, f in zip(encoders, schema.fields, strict=True))
    if len(values) != len(schema.fields):
        raise HollowWriteError(f"type {schema.name} has {len(schema.fields)} fields, got {len(values)} values")
    return tuple(enc(v) for enc, v in zip(encoders, values, strict=True))


def _ordinals(values: Iterable[int], what: str) -> list[int]:
    out = []
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= ORDINAL_MAX:
            raise HollowWriteError(f"{what} must be ordinals returned by add_*(), got {v!r}")
        out.append(v)
    return out


# --- Java bookkeeping ------------------------------------------------------------------------------------


class _JavaBitSet:
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

    def equals(self, other: _JavaBitSet) -> bool:
        n = max(len(self.flags), len(other.flags))
        return bool(np.array_equal(self.bools(n), other.bools(n)))

    def serialize(self) -> bytes:
        n_longs = self.segments * _LONGS_PER_SEGMENT
        bits = self.bools(n_longs * 64)
        packed = np.packbits(bits, bitorder="little").view("<u8")
        return packed.astype(">u8").tobytes()


_writer.set_bitset_type(_JavaBitSet)


def _last_where(mask: np.ndarray) -> int:
    nz = np.flatnonzero(mask)
    return int(nz[-1]) if nz.size else -1


class _OrdinalMap(Generic[P]):
    """``ByteArrayOrdinalMap`` + ``FreeOrdinalTracker``: payload -> ordinal, and which ordinal comes next."""

    __slots__ = ("free", "next_empty", "ordinal_of", "preferred", "records", "unused_previous")

    def __init__(self) -> None:
        self.ordinal_of: dict[P, int] = {}
        self.records: list[P | None] = []
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
        self.ordinal_of.setdefault(payload, o)
        if o >= len(self.records):
            self.records.extend([None] * (o + 1 - len(self.records)))
        self.records[o] = payload

    def max_ordinal(self) -> int:
        recs = self.records
        i = len(recs) - 1
        while i >= 0 and recs[i] is None:
            i -= 1
        del recs[i + 1 :]
        return i

    def compact(self, used: _JavaBitSet, num_shards: int, focus_hole_fill: bool) -> None:
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


def _max_shard_ordinals(max_ordinal: int, num_shards: int) -> list[int]:
    """``HollowTypeWriteState.calcMaxShardOrdinal``: -1 marks an empty shard."""
    per = (max_ordinal + 1) // num_shards
    rem = (max_ordinal + 1) & (num_shards - 1)
    return [per if i < rem else per - 1 for i in range(num_shards)]


def _bitlen(v: int) -> int:
    return v.bit_length()


def _num_longs(count: int, bits_each: int) -> int:
    """Java's long count for ``count`` elements of ``bits_each`` (``((count * bits) - 1) / 64 + 1``)."""
    if count <= 0:
        return 0
    total = count * bits_each
    return 1 if total == 0 else (total - 1) // 64 + 1


def _pack(n: int, widths: tuple[int, ...], columns: Sequence[Sequence[int]], n_longs: int) -> bytes:
    cols = tuple(np.asarray(c, dtype=np.uint64) for c in columns)
    data = _native.pack(n, widths, cols) if n else b""
    need = n_longs * 8
    if len(data) < need:
        data += bytes(need - len(data))
    return data[:need] if len(data) > need else data


def _fit(data: bytes, n_longs: int) -> bytes:
    """Words packed by the compiled loops, padded or cut to the long count Java writes."""
    need = n_longs * 8
    if len(data) < need:
        return data + bytes(need - len(data))
    return data[:need] if len(data) > need else data


# --- type write states -----------------------------------------------------------------------------------


class _TypeWriteState(Generic[P]):
    """Records of one type across cycles (Java ``HollowTypeWriteState``)."""

    schema: Schema

    def __init__(self, engine: WriteStateEngine, schema: Schema, num_shards: int | None) -> None:
        if num_shards is not None and (num_shards <= 0 or num_shards & (num_shards - 1)):
            raise HollowWriteError(f"type {schema.name}: the number of shards must be a power of two")
        self.engine = engine
        self.schema = schema
        self.num_shards = -1 if num_shards is None else num_shards
        self.rev_num_shards = 0
        self.map: _OrdinalMap[P] = _OrdinalMap()
        self.cur = _JavaBitSet()
        self.prev = _JavaBitSet()
        self.max_ordinal = -1
        self.max_shard_ordinal: list[int] = []
        self.restored_schema: Schema | None = None
        self.restored_records: dict[int, P] = {}
        self.wrote_data = False

    # -- adding --

    def add(self, payload: P, preferred_payload: P | None = None) -> int:
        o = self.map.get_or_assign(payload, preferred_payload)
        self.cur.set(o)
        return o

    def add_new(self, payload: P) -> int:
        """Add a payload the compiled writer did not find in the ordinal map (``_writer.c``)."""
        return self.add(payload)

    def payload(self, o: int) -> P:
        p = self.map.records[o] if o < len(self.map.records) else None
        if p is None:
            raise HollowWriteError(f"type {self.schema.name} has no record with ordinal {o}")
        return p

    def live(self) -> list[int]:
        """Ordinals populated in this cycle or the previous one, ascending (the records the map holds)."""
        return self.map.held()

    # -- cycle --

    def prepare_for_write(self) -> None:
        if self.map.unused_previous is not None and not self.wrote_data:
            self._restore_unused_previous()
        self.max_ordinal = self.map.max_ordinal()
        self._touch_union_loop()
        self.wrote_data = True

    def _touch_union_loop(self) -> None:
        # for (i = 0..maxOrdinal) if (cur.get(i) || prev.get(i)): touches cur everywhere, prev where !cur
        m = self.max_ordinal
        if m < 0:
            return
        self.cur.touch(m)
        self.prev.touch(_last_where(~self.cur.bools(m + 1)))

    def sharding(self, projected_size: Callable[[], int]) -> None:
        if self.num_shards == -1:
            target = self.engine.target_max_type_shard_size
            size = projected_size()
            n = 1
            while target * n < size:
                n *= 2
            self.num_shards = n
        self.rev_num_shards = self.num_shards
        self.max_shard_ordinal = _max_shard_ordinals(self.max_ordinal, self.num_shards)

    def has_changed(self) -> bool:
        if not self.cur.equals(self.prev):
            return True
        return self.rev_num_shards not in (self.num_shards, 0)

    def prepare_for_next_cycle(self) -> None:
        self.map.compact(self.cur, self.num_shards, self.engine.focus_hole_fill_in_fewest_shards)
        self.cur, self.prev = self.prev, self.cur
        _writer.bump_epoch()  # compiled writers cache ``cur`` and ordinals
        self.cur.clear_all()
        self.restored_schema = None
        self.restored_records = {}

    def reset_to_last_prepare_for_next_cycle(self) -> None:
        self.cur.clear_all()
        self.map.compact(self.prev, self.num_shards, self.engine.focus_hole_fill_in_fewest_shards)
        self.wrote_data = False

    def add_all_from_previous_cycle(self) -> None:
        merged = _JavaBitSet(max(self.cur.segments, self.prev.segments))
        n = max(len(self.cur.flags), len(self.prev.flags))
        merged.flags = bytearray((self.cur.bools(n) | self.prev.bools(n)).astype(np.uint8).tobytes())
        self.cur = merged
        _writer.bump_epoch()

    # -- sections --

    def _delta_sets(self, reverse: bool) -> tuple[_JavaBitSet, _JavaBitSet, list[int], list[int]]:
        """(from, to, added ordinals, removed ordinals) and the bitset touches of Java's delta loop."""
        frm, to = (self.cur, self.prev) if reverse else (self.prev, self.cur)
        m = self.max_ordinal
        if m < 0:
            return frm, to, [], []
        f = frm.bools(m + 1)
        t = to.bools(m + 1)
        added = t & ~f
        removed = f & ~t
        not_added = ~added
        frm.touch(_last_where(not_added))
        to.touch(_last_where(not_added & f))
        return frm, to, np.flatnonzero(added).tolist(), np.flatnonzero(removed).tolist()

    def snapshot_section(self) -> TypeSection:
        n = self.num_shards
        populated = self.cur.bools(self.max_ordinal + 1)
        shards = []
        for s in range(n):
            count = max(self.max_shard_ordinal[s] + 1, 0)
            at = np.arange(s, s + count * n, n, dtype=np.int64)
            ordinals = np.where(populated[at], at, -1)  # -1: an empty slot
            body = self._encode_shard(s, ordinals, snapshot=True)
            shards.append(ShardData(self.max_shard_ordinal[s], body[0], body[1], body[2], body[3]))
        return TypeSection(self.schema, n, self.max_ordinal, tuple(shards), self.cur.serialize())

    def _encode_shard(
        self, shard: int, ordinals: np.ndarray, snapshot: bool
    ) -> tuple[tuple[int, ...], bytes, tuple[bytes, ...], int]:
        """The records at ``ordinals`` (-1: empty) packed: in C when the type allows, else ``_encode``."""
        body = self._encode_fast(shard, np.ascontiguousarray(ordinals, dtype=np.int64), snapshot)
        if body is not None:
            return body
        recs = self.map.records
        entries = [recs[o] if o >= 0 else None for o in ordinals.tolist()]
        return self._encode(shard, entries, snapshot)

    def _encode_fast(
        self, shard: int, ordinals: np.ndarray, snapshot: bool
    ) -> tuple[tuple[int, ...], bytes, tuple[bytes, ...], int] | None:
        return None

    def delta_section(self, reverse: bool) -> TypeSection:
        n = self.rev_num_shards if reverse else self.num_shards
        _, _, added, removed = self._delta_sets(reverse)
        max_shard = _max_shard_ordinals(self.max_ordinal, n)
        shards = []
        added_arr = np.asarray(added, dtype=np.int64)
        for s in range(n):
            a = [o // n for o in added if o & (n - 1) == s]
            r = [o // n for o in removed if o & (n - 1) == s]
            body = self._encode_shard(s, added_arr[(added_arr & (n - 1)) == s], snapshot=False)
            shards.append(ShardData(max_shard[s], body[0], body[1], body[2], body[3], encode_gaps(r), encode_gaps(a)))
        return TypeSection(self.schema, n, self.max_ordinal, tuple(shards))

    def _encode(
        self, shard: int, entries: list[P | None], snapshot: bool
    ) -> tuple[tuple[int, ...], bytes, tuple[bytes, ...], int]:
        raise NotImplementedError

    def _restore_unused_previous(self) -> None:
        """Java ``prepareForWrite`` of a restored state: previous records not added again keep their ordinal
        in the map, so the delta can remove them and the reverse delta can bring them back."""
        unused = self.map.unused_previous
        assert unused is not None
        for o in sorted(unused):
            self.map.put(self.restored_records[o], o)


class _ObjectWriteState(_TypeWriteState[ObjectPayload]):
    schema: ObjectSchema

    def __init__(self, engine: WriteStateEngine, schema: ObjectSchema, num_shards: int | None) -> None:
        super().__init__(engine, schema, num_shards)
        self.widths: tuple[int, ...] = ()
        self.var_total = 0
        self.var_fields = tuple(f.type.is_variable_length for f in schema.fields)
        self.encoders = tuple(_encoder(schema, i) for i in range(len(schema.fields)))
        self.kinds = bytes(FieldTypeCodes[f.type] for f in schema.fields)  # the compiled loops' field codes

    def add_new(self, payload: ObjectPayload) -> int:
        if self.restored_schema is None:
            return self.add(payload)
        return self.add(payload, self.engine._restored_payload(self, payload))

    def prepare_for_write(self) -> None:
        super().prepare_for_write()
        schema = self.schema
        nf = len(schema.fields)
        # per field over every record held: the bits its values need, the pool bytes of STRING/BYTES (in C)
        widths, totals = _writer.object_stats(self.map.records, self.kinds)
        var = [f.type.is_variable_length for f in schema.fields]
        for i in range(nf):
            if var[i]:
                widths[i] = _bitlen(totals[i] + 1) + 1
        self.widths = tuple(widths)
        self.var_total = sum(totals)
        self.sharding(lambda: sum(self.widths) * (self.max_ordinal + 1) // 8 + self.var_total)

    def _encode(
        self, shard: int, entries: list[ObjectPayload | None], snapshot: bool
    ) -> tuple[tuple[int, ...], bytes, tuple[bytes, ...], int]:
        schema = self.schema
        nf = len(schema.fields)
        widths = self.widths
        cols: list[list[int]] = [[0] * len(entries) for _ in range(nf)]
        pools = [bytearray() for _ in range(nf)]
        kinds = [f.type for f in schema.fields]
        nulls = [(1 << w) - 1 if w < 64 else (1 << 64) - 1 for w in widths]
        for r, payload in enumerate(entries):
            if payload is None:  # a hole: var-length fields still carry the current pool length
                for i in range(nf):
                    if kinds[i].is_variable_length:
                        cols[i][r] = len(pools[i])
                continue
            assert isinstance(payload, tuple)
            for i in range(nf):
                v = payload[i]
                k = kinds[i]
                if k is FieldType.STRING or k is FieldType.BYTES:
                    if v is None:
                        cols[i][r] = len(pools[i]) | (1 << (widths[i] - 1))
                    else:
                        assert isinstance(v, bytes)
                        pools[i] += v
                        cols[i][r] = len(pools[i])
                elif v is None:
                    cols[i][r] = 3 if k is FieldType.BOOLEAN else nulls[i]
                else:
                    assert isinstance(v, int)
                    cols[i][r] = v
        bits = sum(widths) * len(entries)
        n_longs = 0 if bits == 0 else (bits - 1) // 64 + 1
        fixed = _pack(len(entries), widths, cols, n_longs)
        return widths, fixed, tuple(bytes(p) for p in pools), 0

    def _encode_fast(
        self, shard: int, ordinals: np.ndarray, snapshot: bool
    ) -> tuple[tuple[int, ...], bytes, tuple[bytes, ...], int] | None:
        fixed, pools = _writer.encode_objects(self.map.records, ordinals, self.widths, self.kinds)
        return self.widths, fixed, pools, 0


class _CollectionWriteState(_TypeWriteState[P]):
    """Shared statistics of LIST, SET and MAP types."""

    shard_totals: list[int]

    def _slots(self, payload: P) -> int:
        """Elements (LIST) or buckets (SET/MAP) a record takes."""
        raise NotImplementedError

    kind_code = 0  # how the compiled loops count this kind's slots: 0 LIST elements, 1 SET / 2 MAP buckets

    def prepare_for_write(self) -> None:
        super().prepare_for_write()
        self._gather(_writer.collection_stats(self.map.records, self.kind_code))
        self.sharding(self._projected_size)
        self.shard_totals = _writer.shard_slots(self.map.records, self.num_shards, self.kind_code)

    def _gather(self, stats: tuple[int, int, int, int]) -> None:
        """Take (max element or key, max value, total slots, max size) over the records held."""
        raise NotImplementedError

    def _projected_size(self) -> int:
        raise NotImplementedError


class _ListWriteState(_CollectionWriteState[ListPayload]):
    schema: ListSchema

    def _slots(self, payload: ListPayload) -> int:
        return len(payload)

    def _gather(self, stats: tuple[int, int, int, int]) -> None:
        max_element, _, total, _ = stats
        self.max_element = max_element
        self.total = total
        self.bits_per_element = 1 if max_element == 0 else _bitlen(max_element)

    def _projected_size(self) -> int:
        bits_per_pointer = 1 if self.total == 0 else _bitlen(self.total)
        # Java: (bitsPerElement * total) / 8 + (bitsPerListPointer * maxOrdinal + 1) / 8
        return (self.bits_per_element * self.total) // 8 + (bits_per_pointer * self.max_ordinal + 1) // 8

    @property
    def bits_per_pointer(self) -> int:
        m = max(self.shard_totals) if self.shard_totals else 0
        return 1 if m == 0 else _bitlen(m)

    def _encode(
        self, shard: int, entries: list[ListPayload | None], snapshot: bool
    ) -> tuple[tuple[int, ...], bytes, tuple[bytes, ...], int]:
        pw = self.bits_per_pointer
        ew = self.bits_per_element
        pointers = []
        elements: list[int] = []
        for payload in entries:
            if payload is not None:
                elements.extend(payload)
            pointers.append(len(elements))
        total = self.shard_totals[shard]
        n_elements = total if snapshot else len(elements)
        fixed = _pack(len(entries), (pw,), [pointers], _num_longs(len(entries), pw))
        padded = elements + [0] * (n_elements - len(elements))
        data = _pack(len(padded), (ew,), [padded], _num_longs(n_elements, ew))
        return (pw, ew), fixed, (data,), total

    def _encode_fast(
        self, shard: int, ordinals: np.ndarray, snapshot: bool
    ) -> tuple[tuple[int, ...], bytes, tuple[bytes, ...], int] | None:
        pw, ew = self.bits_per_pointer, self.bits_per_element
        total = self.shard_totals[shard]
        fixed, data, count = _writer.encode_lists(self.map.records, ordinals, pw, ew, total if snapshot else 0)
        n_elements = total if snapshot else count
        return (pw, ew), _fit(fixed, _num_longs(len(ordinals), pw)), (_fit(data, _num_longs(n_elements, ew)),), total


def _bucket_layout(elements: Sequence[int], hashes: Sequence[int], num_buckets: int, empty: int) -> list[int]:
    """Place elements (in the given order) by linear probing from ``hash & (num_buckets - 1)``."""
    buckets = [empty] * num_buckets
    mask = num_buckets - 1
    for e, h in zip(elements, hashes, strict=True):
        b = h & mask
        while buckets[b] != empty:
            b = (b + 1) & mask
        buckets[b] = e
    return buckets


class _HashedWriteState(_CollectionWriteState[P]):
    """SET and MAP: bucketed records and their placement hashes."""

    schema: SetSchema | MapSchema

    def _key_paths(self) -> tuple[KeyPath, ...] | None:
        key = self.schema.hash_key
        if key is None:
            return None
        element = self.schema.element_type if isinstance(self.schema, SetSchema) else self.schema.key_type
        schemas: dict[str, Schema] = {t.schema.name: t.schema for t in self.engine._types.values()}
        if element not in schemas:
            return None  # Java: a hash key that cannot be bound falls back to the default hash
        return bind_key(schemas, element, key)

    def _hash_of(self, element: int, paths: tuple[KeyPath, ...] | None) -> int:
        if paths is None:
            return hash_int(element)
        return self.engine._record_hash(paths, element)


class _SetWriteState(_HashedWriteState[ListPayload]):
    schema: SetSchema

    def _slots(self, payload: ListPayload) -> int:
        return hash_table_size(len(payload))

    kind_code = 1

    def _gather(self, stats: tuple[int, int, int, int]) -> None:
        max_element, _, total, max_size = stats
        self.bits_per_element = _bitlen(max_element + 1)
        self.bits_per_size = _bitlen(max_size)
        self.total = total

    def _projected_size(self) -> int:
        pointer = _bitlen(self.total)
        return (self.bits_per_size + pointer) * (self.max_ordinal + 1) // 8 + (self.bits_per_element * self.total) // 8

    def _encode(
        self, shard: int, entries: list[ListPayload | None], snapshot: bool
    ) -> tuple[tuple[int, ...], bytes, tuple[bytes, ...], int]:
        pw = _bitlen(max(self.shard_totals))
        sw = self.bits_per_size
        ew = self.bits_per_element
        empty = (1 << ew) - 1
        paths = self._key_paths()
        pointers: list[int] = []
        sizes: list[int] = []
        buckets: list[int] = []
        for payload in entries:
            if payload is not None:
                elements = list(payload)  # already sorted by ordinal: Java's insertion order
                nb = hash_table_size(len(elements))
                hashes = [self._hash_of(e, paths) for e in elements]
                buckets.extend(_bucket_layout(elements, hashes, nb, empty))
                sizes.append(len(elements))
            else:
                sizes.append(0)
            pointers.append(len(buckets))
        total = self.shard_totals[shard]
        n_buckets = total if snapshot else len(buckets)
        fixed = _pack(len(entries), (pw, sw), [pointers, sizes], _num_longs(len(entries), pw + sw))
        padded = buckets + [0] * (n_buckets - len(buckets))
        data = _pack(len(padded), (ew,), [padded], _num_longs(n_buckets, ew))
        return (pw, sw, ew), fixed, (data,), total

    def _encode_fast(
        self, shard: int, ordinals: np.ndarray, snapshot: bool
    ) -> tuple[tuple[int, ...], bytes, tuple[bytes, ...], int] | None:
        if self._key_paths() is not None:
            return None  # placement by a hash key reads the elements' fields: the Python path does it
        pw, sw, ew = _bitlen(max(self.shard_totals)), self.bits_per_size, self.bits_per_element
        total = self.shard_totals[shard]
        fixed, data, count = _writer.encode_sets(self.map.records, ordinals, pw, sw, ew, total if snapshot else 0)
        n_buckets = total if snapshot else count
        return (
            (pw, sw, ew),
            _fit(fixed, _num_longs(len(ordinals), pw + sw)),
            (_fit(data, _num_longs(n_buckets, ew)),),
            total,
        )


class _MapWriteState(_HashedWriteState[MapPayload]):
    schema: MapSchema

    def _slots(self, payload: MapPayload) -> int:
        return hash_table_size(len(payload))

    kind_code = 2

    def _gather(self, stats: tuple[int, int, int, int]) -> None:
        max_key, max_value, total, max_size = stats
        self.bits_per_key = _bitlen(max_key + 1)
        self.bits_per_value = 1 if max_value == 0 else _bitlen(max_value)
        self.bits_per_size = _bitlen(max_size)
        self.total = total

    def _projected_size(self) -> int:
        pointer = _bitlen(self.total)
        entry = self.bits_per_key + self.bits_per_value
        return (self.bits_per_size + pointer) * (self.max_ordinal + 1) // 8 + (entry * self.total) // 8

    def _encode(
        self, shard: int, entries: list[MapPayload | None], snapshot: bool
    ) -> tuple[tuple[int, ...], bytes, tuple[bytes, ...], int]:
        pw = _bitlen(max(self.shard_totals))
        sw = self.bits_per_size
        kw, vw = self.bits_per_key, self.bits_per_value
        empty = (1 << kw) - 1
        paths = self._key_paths()
        pointers: list[int] = []
        sizes: list[int] = []
        keys: list[int] = []
        values: list[int] = []
        for payload in entries:
            if payload is not None:
                pairs = list(payload)
                nb = hash_table_size(len(pairs))
                hashes = [self._hash_of(k, paths) for k, _ in pairs]
                slot_of = dict(enumerate(pairs))
                layout = _bucket_layout(list(range(len(pairs))), hashes, nb, -1)
                for idx in layout:
                    if idx < 0:
                        keys.append(empty)
                        values.append(0)
                    else:
                        k, v = slot_of[idx]
                        keys.append(k)
                        values.append(v)
                sizes.append(len(pairs))
            else:
                sizes.append(0)
            pointers.append(len(keys))
        total = self.shard_totals[shard]
        n_buckets = total if snapshot else len(keys)
        fixed = _pack(len(entries), (pw, sw), [pointers, sizes], _num_longs(len(entries), pw + sw))
        pad = n_buckets - len(keys)
        data = _pack(n_buckets, (kw, vw), [keys + [0] * pad, values + [0] * pad], _num_longs(n_buckets, kw + vw))
        return (pw, sw, kw, vw), fixed, (data,), total


_AnyState: TypeAlias = "_ObjectWriteState | _ListWriteState | _SetWriteState | _MapWriteState"


def _new_type_state(engine: WriteStateEngine, schema: Schema, num_shards: int | None) -> _AnyState:
    if isinstance(schema, ObjectSchema):
        return _ObjectWriteState(engine, schema, num_shards)
    if isinstance(schema, ListSchema):
        return _ListWriteState(engine, schema, num_shards)
    if isinstance(schema, SetSchema):
        return _SetWriteState(engine, schema, num_shards)
    return _MapWriteState(engine, schema, num_shards)


# --- the engine ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlobParts:
    """A blob and its optional parts (``{part name: part blob}``; empty unless parts were configured)."""

    data: bytes
    parts: Mapping[str, bytes] = field(default_factory=dict)


class WriteStateEngine:
    """The producer side of Hollow: cycles of records in, blobs out (Java ``HollowWriteStateEngine``).

    ``target_max_type_shard_size`` (bytes) splits large types into shards on the first cycle, as Java does
    (Java's producer defaults to 16 MiB, the bare engine to no limit).  ``num_shards`` pins shard counts per
    type.  ``rng`` draws the random state tags (inject a seeded ``random.Random`` in tests).

    >>> from loosely.hollow.core import parse_schemas
    >>> engine = WriteStateEngine(parse_schemas("Movie @PrimaryKey(id) { int id; string title; }"))
    >>> engine.add_object("Movie", {"id": 1, "title": "The Matrix"})
    0
    >>> snapshot = engine.write_snapshot()
    >>> snapshot[:4]
    b'\\x00\\x00\\x04\\x06'
    """

    def __init__(
        self,
        schemas: Iterable[Schema] = (),
        *,
        target_max_type_shard_size: int = LONG_MAX,
        num_shards: Mapping[str, int] | None = None,
        focus_hole_fill_in_fewest_shards: bool = False,
        rng: _random.Random | None = None,
    ) -> None:
        if target_max_type_shard_size < 0:
            raise ValueError("target_max_type_shard_size must not be negative")
        self.target_max_type_shard_size = target_max_type_shard_size
        self.focus_hole_fill_in_fewest_shards = focus_hole_fill_in_fewest_shards
        self._rng = rng if rng is not None else _random.SystemRandom()
        self._types: dict[str, _AnyState] = {}
        self._header_tags = JavaConcurrentHashMap()
        self._previous_header_tags = JavaConcurrentHashMap()
        self._prepared_for_next_cycle = True
        self.previous_tag = -1
        self.next_tag = self._mint_tag()
        pinned = dict(num_shards or {})
        for schema in schemas:
            self.add_type(schema, pinned.pop(schema.name, None))
        if pinned:
            raise HollowSchemaError(f"num_shards names unknown types {sorted(pinned)}")

    # -- data model --

    def add_type(self, schema: Schema, num_shards: int | None = None) -> None:
        """Register a type; blobs list types in registration order (Java's object mapper: referenced first)."""
        if schema.name in self._types:
            raise HollowSchemaError(f"type {schema.name} is already registered")
        self._types[schema.name] = _new_type_state(self, schema, num_shards)

    def has_type(self, name: str) -> bool:
        return name in self._types

    @property
    def schemas(self) -> list[Schema]:
        return [t.schema for t in self._types.values()]

    def schema(self, name: str) -> Schema:
        return self._state(name).schema

    def _state(self, name: str) -> _AnyState:
        try:
            return self._types[name]
        except KeyError:
            raise HollowWriteError(f"type {name!r} is not registered") from None

    # -- adding --

    def check_adding(self) -> None:
        """Raise unless records may be added now (the current cycle was not written yet)."""
        if not self._prepared_for_next_cycle:
            raise HollowWriteError("this cycle was already written; call prepare_for_next_cycle() first")

    def _adding(self, name: str) -> _AnyState:
        self.check_adding()
        return self._state(name)

    def add_object(self, type_name: str, values: Mapping[str, ObjectValue] | Sequence[ObjectValue]) -> int:
        """Add an OBJECT record (by field name or in schema order); returns its ordinal.

        INT/LONG take ints (their minimum value is Java's null and is rejected), FLOAT/DOUBLE floats,
        BOOLEAN bools, STRING str, BYTES bytes, REFERENCE the ordinal of the referenced record; None is null.
        """
        state = self._adding(type_name)
        if not isinstance(state, _ObjectWriteState):
            raise HollowWriteError(f"type {type_name} is not an OBJECT type")
        payload = object_payload(state.schema, values, state.encoders)
        if state.restored_schema is None:
            return state.add(payload)
        return state.add(payload, self._restored_payload(state, payload))

    def add_list(self, type_name: str, element_ordinals: Iterable[int]) -> int:
        state = self._adding(type_name)
        if not isinstance(state, _ListWriteState):
            raise HollowWriteError(f"type {type_name} is not a LIST type")
        return state.add(tuple(_ordinals(element_ordinals, f"elements of {type_name}")))

    def add_set(self, type_name: str, element_ordinals: Iterable[int]) -> int:
        """Add a SET record of element ordinals (duplicates are kept, as Java's write record does)."""
        state = self._adding(type_name)
        if not isinstance(state, _SetWriteState):
            raise HollowWriteError(f"type {type_name} is not a SET type")
        return state.add(tuple(sorted(_ordinals(element_ordinals, f"elements of {type_name}"))))

    def add_map(self, type_name: str, entries: Iterable[tuple[int, int]]) -> int:
        """Add a MAP record of ``(key ordinal, value ordinal)`` pairs."""
        state = self._adding(type_name)
        if not isinstance(state, _MapWriteState):
            raise HollowWriteError(f"type {type_name} is not a MAP type")
        pairs = []
        for entry in entries:
            k, v = entry
            _ordinals((k, v), f"entries of {type_name}")
            pairs.append((k, v))
        return state.add(tuple(sorted(pairs)))

    def add_all_from_previous_cycle(self) -> None:
        """Keep every record of the previous cycle (Java ``addAllObjectsFromPreviousCycle``)."""
        for state in self._types.values():
            self._adding(state.schema.name)
            state.add_all_from_previous_cycle()

    def add_ordinal_from_previous_cycle(self, type_name: str, ordinal: int) -> None:
        state = self._adding(type_name)
        if not state.prev.get(ordinal):
            raise HollowWriteError(f"{type_name} ordinal {ordinal} was not present in the previous cycle")
        state.cur.set(ordinal)

    def remove_ordinal_from_this_cycle(self, type_name: str, ordinal: int) -> None:
        self._adding(type_name).cur.unset(ordinal)

    def record(self, type_name: str, ordinal: int) -> Payload:
        """The stored form of a record this engine holds (mostly for tests and diagnostics)."""
        return self._state(type_name).payload(ordinal)

    def ordinals(self, type_name: str) -> list[int]:
        """Ordinals added in the current cycle, ascending."""
        return self._state(type_name).cur.ordinals()

    # -- header tags and state tags --

    def add_header_tag(self, name: str, value: str) -> None:
        self._header_tags.put(name, value)

    def remove_header_tag(self, name: str) -> None:
        """Forget a header tag (Java ``getHeaderTags().remove``); no-op when absent."""
        self._header_tags.remove(name)

    def add_header_tags(self, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self._header_tags.put(k, v)

    @property
    def header_tags(self) -> dict[str, str]:
        return self._header_tags.as_dict()

    @property
    def previous_header_tags(self) -> dict[str, str]:
        return self._previous_header_tags.as_dict()

    def override_next_tag(self, tag: int) -> None:
        """Use ``tag`` as the randomized tag of the state being built (Java ``overrideNextStateRandomizedTag``)."""
        self.next_tag = _signed64(tag)

    def override_previous_tag(self, tag: int) -> None:
        self.previous_tag = _signed64(tag)

    def _mint_tag(self) -> int:
        while True:
            tag = self._rng.getrandbits(64)
            high = tag & ASSIGNED_ORDINAL_CYCLE_MASK
            if high not in (0, ASSIGNED_ORDINAL_CYCLE_MASK) and high != (
                self.previous_tag & ASSIGNED_ORDINAL_CYCLE_MASK
            ):
                return _signed64(tag)

    # -- cycles --

    def prepare_for_write(self) -> None:
        """Freeze the current cycle (done by the first ``write_*``); no-op when already frozen."""
        if not self._prepared_for_next_cycle:
            return
        for state in self._types.values():
            state.prepare_for_write()
        self._prepared_for_next_cycle = False

    def prepare_for_next_cycle(self) -> None:
        """Start the next cycle; no-op unless the current one was written (prepared for write)."""
        if self._prepared_for_next_cycle:
            return
        self.previous_tag = self.next_tag
        self.next_tag = self._mint_tag()
        self._previous_header_tags.clear()
        self._previous_header_tags.put_all(self._header_tags)
        for state in self._types.values():
            state.prepare_for_next_cycle()
        self._prepared_for_next_cycle = True

    def reset_to_last_prepare_for_next_cycle(self) -> None:
        """Drop everything added since the cycle started (the producer's rollback)."""
        for state in self._types.values():
            state.reset_to_last_prepare_for_next_cycle()
        self.next_tag = self._mint_tag()
        self._prepared_for_next_cycle = True

    def has_changed_since_last_cycle(self) -> bool:
        return any(state.has_changed() for state in self._types.values())

    # -- writing --

    def write_snapshot(self) -> bytes:
        return self.write(BlobKind.SNAPSHOT).data

    def write_delta(self) -> bytes:
        return self.write(BlobKind.DELTA).data

    def write_reverse_delta(self) -> bytes:
        return self.write(BlobKind.DELTA, reverse=True).data

    def write(
        self, kind: BlobKind, *, reverse: bool = False, parts: Mapping[str, Collection[str]] | None = None
    ) -> BlobParts:
        """Write a snapshot, delta or reverse delta; ``parts`` moves types to optional blob parts."""
        if kind is BlobKind.SNAPSHOT and reverse:
            raise ValueError("a snapshot has no reverse")
        self.prepare_for_write()
        part_of = _part_index(parts, self._types)
        if kind is BlobKind.SNAPSHOT:
            states = list(self._types.values())
            sections = [s.snapshot_section() for s in states]
        else:
            states = [s for s in self._types.values() if s.has_changed()]
            sections = [s.delta_section(reverse) for s in states]
        if reverse:
            tags, origin, destination = self._previous_header_tags, self.next_tag, self.previous_tag
        else:
            tags, origin, destination = self._header_tags, self.previous_tag, self.next_tag
        main_schemas = tuple(s.schema for s in states if s.schema.name not in part_of)
        w = Writer()
        write_blob_header(w, BlobHeader(origin, destination, main_schemas, tags.as_dict()), list(tags))
        part_writers: dict[str, Writer] = {}
        for name in parts or {}:
            pw = Writer()
            schemas = tuple(s.schema for s in states if part_of.get(s.schema.name) == name)
            write_part_header(pw, PartHeader(name, origin, destination, schemas))
            pw.varint(len(schemas))
            part_writers[name] = pw
        w.varint(len(main_schemas))
        for state, section in zip(states, sections, strict=True):
            target = part_writers.get(part_of.get(state.schema.name, ""), w)
            write_type_section(target, section, kind)
        return BlobParts(bytes(w.buf), {name: bytes(pw.buf) for name, pw in part_writers.items()})

    def write_header(self) -> bytes:
        """The header-only blob of the current state (``header-<version>``)."""
        self.prepare_for_write()
        w = Writer()
        tags = self._header_tags
        schemas = tuple(self.schemas)
        write_blob_header(w, BlobHeader(self.previous_tag, self.next_tag, schemas, tags.as_dict()), list(tags))
        w.varint(len(schemas))
        return bytes(w.buf)

    # -- hashing records by key (SET/MAP bucket placement) --

    def _record_hash(self, paths: tuple[KeyPath, ...], ordinal: int) -> int:
        """``HollowWriteStateEnginePrimaryKeyHasher.getRecordHash``."""
        h = 0
        for kp in paths:
            o = ordinal
            value: FieldPayload = None
            for i, (type_name, index) in enumerate(kp.hops):
                state = self._types[type_name]
                if not isinstance(state, _ObjectWriteState):
                    raise HollowSchemaError(f"hash key path {kp.path} crosses non-OBJECT type {type_name}")
                payload = state.payload(o)
                value = payload[index]
                # Java's hasher walks the serialized record and fails ("Attempting to read null value as int")
                # on a null reference or string/bytes on the path, or on a null string/bytes before the field.
                if value is None and (i < len(kp.hops) - 1 or kp.field_type in _UNHASHABLE_NULLS):
                    raise HollowWriteError(f"hash key field {kp.path} of a {type_name} record is null")
                if any(payload[j] is None and state.var_fields[j] for j in range(index)):
                    raise HollowWriteError(
                        f"hash key {kp.path}: a {type_name} record has a null string/bytes field before the key "
                        "field, which Java Hollow's producer cannot hash"
                    )
                if i < len(kp.hops) - 1:
                    o = _as_int(value)
            h = to_int32(h * 31) ^ hash_int(_payload_field_hash(value, kp.field_type))
        return h

    # -- restore --

    def restore_from(self, read: ReadStateEngine) -> None:
        """Continue the delta chain of ``read`` (Java ``restoreFrom``): its records keep their ordinals.

        Call with the data model registered and before adding records; ``read`` must hold the state the next
        delta will start from.  Records whose type changed are matched on the fields both schemas share.
        """
        for type_state in read.types():
            ws = self._types.get(type_state.name)
            if ws is None:
                continue
            n = type_state.num_shards
            if ws.num_shards == -1:
                ws.num_shards = n
            elif n and ws.num_shards != n:
                raise HollowWriteError(
                    f"type {ws.schema.name} has {n} shards in the restored state, {ws.num_shards} here"
                )
        for type_state in read.types():
            ws = self._types.get(type_state.name)
            if ws is not None:
                _restore_type(ws, type_state)
        self.previous_tag = read.current_tag
        self.next_tag = self._mint_tag()
        self._previous_header_tags.clear()
        ordered = java_hash_map_order(list(read.header_tags.items()))
        self._previous_header_tags.put_all(dict(ordered))

    def _restored_payload(self, state: _ObjectWriteState, payload: ObjectPayload) -> ObjectPayload | None:
        restored = state.restored_schema
        if not isinstance(restored, ObjectSchema) or restored == state.schema:
            return None
        out = []
        for f in restored.fields:
            i = state.schema.position(f.name)
            out.append(payload[i] if i >= 0 else _null_payload(f.type))
        return tuple(out)


def _null_payload(t: FieldType) -> FieldPayload:
    return NULL_FLOAT_BITS if t is FieldType.FLOAT else NULL_DOUBLE_BITS if t is FieldType.DOUBLE else None


_UNHASHABLE_NULLS: Final = (FieldType.STRING, FieldType.BYTES, FieldType.REFERENCE)


def _as_int(value: FieldPayload) -> int:
    if not isinstance(value, int):
        raise HollowWriteError(f"expected a numeric field value, found {value!r}")
    return value


def _payload_field_hash(value: FieldPayload, field_type: FieldType) -> int:
    """``fieldHashCode`` of the producer-side hasher, from a stored payload."""
    if isinstance(value, bytes) or field_type in (FieldType.STRING, FieldType.BYTES):
        data = value if isinstance(value, bytes) else b""
        if field_type is FieldType.BYTES:
            return murmur3(data)
        h = 0
        for unit in _decode_string_units(data):
            h = (h * 31 + unit) & 0xFFFFFFFF
        return to_int32(h)
    if value is None:
        return 0  # Java's hasher reads a null INT/LONG/BOOLEAN/REFERENCE as 0
    if field_type is FieldType.INT:
        return to_int32(zigzag_decode(value))
    if field_type is FieldType.LONG:
        v = zigzag_decode(value) & 0xFFFFFFFFFFFFFFFF
        return to_int32(v ^ (v >> 32))
    if field_type is FieldType.BOOLEAN:
        return 1231 if value == 1 else 1237
    if field_type is FieldType.DOUBLE:
        return to_int32(value ^ (value >> 32))
    return to_int32(value)  # REFERENCE ordinal, FLOAT bits


def _signed64(v: int) -> int:
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v & (1 << 63) else v


def _part_index(parts: Mapping[str, Collection[str]] | None, types: Mapping[str, object]) -> dict[str, str]:
    index: dict[str, str] = {}
    for name, type_names in (parts or {}).items():
        for t in type_names:
            if t not in types:
                raise HollowWriteError(f"blob part {name!r} names unknown type {t!r}")
            if t in index:
                raise HollowWriteError(f"type {t!r} is in two blob parts")
            index[t] = name
    return index


def _restore_type(ws: _AnyState, rs: TypeReadState) -> None:
    """Fill a write type state from a read type state (Java ``HollowTypeWriteState.restoreFrom``).

    The read state's records become the previous cycle: each keeps its ordinal when added again, and the
    free ordinals are the holes below the highest one, handed out highest first (Java does not sort them).
    """
    if ws.cur.flags.count(1) or ws.prev.flags.count(1):
        raise HollowWriteError(f"cannot restore type {ws.schema.name} into a non-empty write state")
    if ws.schema.kind is not rs.schema.kind:
        raise HollowWriteError(f"type {ws.schema.name} changed kind; it cannot be restored")
    populated = rs.populated_ordinals().tolist()
    view = rs.view
    if isinstance(ws, _ObjectWriteState):
        read_schema = rs.schema
        assert isinstance(read_schema, ObjectSchema)
        common = ws.schema.common_with(read_schema)
        ws.restored_schema = common
        obj_records = {o: _read_object_payload(rs, o, ws.schema) for o in populated}
        _reserve(ws, populated, obj_records, {_read_object_payload(rs, o, common): o for o in populated})
    elif isinstance(ws, _MapWriteState):
        ws.restored_schema = rs.schema
        map_records = {o: tuple(sorted(view.entries(o))) for o in populated}
        _reserve(ws, populated, map_records, {p: o for o, p in map_records.items()})
    else:
        ws.restored_schema = rs.schema
        ordered = isinstance(ws, _ListWriteState)
        records = {o: tuple(view.elements(o) if ordered else sorted(view.elements(o))) for o in populated}
        _reserve(ws, populated, records, {p: o for o, p in records.items()})


def _reserve(ws: _TypeWriteState[P], populated: list[int], records: dict[int, P], preferred: dict[P, int]) -> None:
    for o in populated:
        ws.prev.set(o)
    m = ws.map
    m.preferred = preferred
    m.unused_previous = set(populated)
    length = (populated[-1] + 1) if populated else 0
    present = set(populated)
    m.free = [o for o in range(length) if o not in present]
    m.next_empty = length
    ws.restored_records = records


def _read_object_payload(rs: TypeReadState, o: int, schema: ObjectSchema) -> ObjectPayload:
    """A read record as a payload of ``schema`` (fields it lacks are null; FLOAT/DOUBLE keep their bits)."""
    read_schema = rs.schema
    assert isinstance(read_schema, ObjectSchema)
    view = rs.view
    out: list[FieldPayload] = []
    for i, f in enumerate(schema.fields):
        j = read_schema.position(f.name)
        value = None if j < 0 else view.get(o, j)
        if value is not None and f.type is FieldType.FLOAT:
            out.append(view.raw(o, j) & 0xFFFFFFFF)
        elif value is not None and f.type is FieldType.DOUBLE:
            out.append(view.raw(o, j))
        else:
            out.append(_field_payload(schema, i, value))
    return tuple(out)
