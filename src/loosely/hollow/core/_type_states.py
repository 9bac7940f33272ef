"""Type write states: the records of one type across cycles, and how each kind (OBJECT, LIST, SET, MAP) is
measured and packed into a blob's type section (Java's ``HollowTypeWriteState`` and its subclasses).

A type state owns its type's ordinal map and the populated-ordinals bitsets of this cycle and the previous one
(:mod:`._ordinal_map`).  Preparing a write fixes the max ordinal, the shard count (first cycle only) and the bit
widths over both cycles, so snapshot, delta and reverse delta of one cycle share widths; writing packs the
records of each shard with the compiled loops.  Sets and maps place their elements in buckets by linear probing
from ``hashInt(ordinal)`` or from the element's hash key.

A type state reaches its engine only through :class:`EngineView`, so this module does not import the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeAlias

import numpy as np

from loosely.hollow.core import _native, _writer
from loosely.hollow.core._blob import (
    ShardData,
    TypeSection,
    encode_gaps,
)
from loosely.hollow.core._errors import HollowWriteError
from loosely.hollow.core._hashing import hash_int, hash_table_size
from loosely.hollow.core._keys import KeyPath, bind_key
from loosely.hollow.core._ordinal_map import JavaBitSet, OrdinalMap, last_where, max_shard_ordinals
from loosely.hollow.core._payload import ListPayload, MapPayload, ObjectPayload, P, field_encoder
from loosely.hollow.core._read_state import FieldTypeCodes
from loosely.hollow.core._schema import (
    FieldType,
    ListSchema,
    MapSchema,
    ObjectSchema,
    Schema,
    SetSchema,
)

__all__ = [
    "AnyTypeState",
    "EngineView",
    "ListWriteState",
    "MapWriteState",
    "ObjectWriteState",
    "SetWriteState",
    "TypeWriteState",
    "new_type_state",
]


class EngineView(Protocol):
    """What a type state asks of its engine (:class:`loosely.hollow.core._write_state.WriteStateEngine`)."""

    target_max_type_shard_size: int
    focus_hole_fill_in_fewest_shards: bool

    @property
    def schemas(self) -> list[Schema]: ...

    def _record_hash(self, paths: tuple[KeyPath, ...], ordinal: int) -> int: ...

    def _restored_payload(self, state: ObjectWriteState, payload: ObjectPayload) -> ObjectPayload | None: ...


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


class TypeWriteState(Generic[P]):
    """Records of one type across cycles (Java ``HollowTypeWriteState``)."""

    schema: Schema

    def __init__(self, engine: EngineView, schema: Schema, num_shards: int | None) -> None:
        if num_shards is not None and (num_shards <= 0 or num_shards & (num_shards - 1)):
            raise HollowWriteError(f"type {schema.name}: the number of shards must be a power of two")
        self.engine = engine
        self.schema = schema
        self.num_shards = -1 if num_shards is None else num_shards
        self.rev_num_shards = 0
        self.map: OrdinalMap[P] = OrdinalMap()
        self.cur = JavaBitSet()
        self.prev = JavaBitSet()
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
        self.prev.touch(last_where(~self.cur.bools(m + 1)))

    def sharding(self, projected_size: Callable[[], int]) -> None:
        if self.num_shards == -1:
            target = self.engine.target_max_type_shard_size
            size = projected_size()
            n = 1
            while target * n < size:
                n *= 2
            self.num_shards = n
        self.rev_num_shards = self.num_shards
        self.max_shard_ordinal = max_shard_ordinals(self.max_ordinal, self.num_shards)

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
        merged = JavaBitSet(max(self.cur.segments, self.prev.segments))
        n = max(len(self.cur.flags), len(self.prev.flags))
        merged.flags = bytearray((self.cur.bools(n) | self.prev.bools(n)).astype(np.uint8).tobytes())
        self.cur = merged
        _writer.bump_epoch()

    # -- sections --

    def _delta_sets(self, reverse: bool) -> tuple[JavaBitSet, JavaBitSet, list[int], list[int]]:
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
        frm.touch(last_where(not_added))
        to.touch(last_where(not_added & f))
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
        max_shard = max_shard_ordinals(self.max_ordinal, n)
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


class ObjectWriteState(TypeWriteState[ObjectPayload]):
    schema: ObjectSchema

    def __init__(self, engine: EngineView, schema: ObjectSchema, num_shards: int | None) -> None:
        super().__init__(engine, schema, num_shards)
        self.widths: tuple[int, ...] = ()
        self.var_total = 0
        self.var_fields = tuple(f.type.is_variable_length for f in schema.fields)
        self.encoders = tuple(field_encoder(schema, i) for i in range(len(schema.fields)))
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


class CollectionWriteState(TypeWriteState[P]):
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


class ListWriteState(CollectionWriteState[ListPayload]):
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


class HashedWriteState(CollectionWriteState[P]):
    """SET and MAP: bucketed records and their placement hashes."""

    schema: SetSchema | MapSchema

    def _key_paths(self) -> tuple[KeyPath, ...] | None:
        key = self.schema.hash_key
        if key is None:
            return None
        element = self.schema.element_type if isinstance(self.schema, SetSchema) else self.schema.key_type
        schemas: dict[str, Schema] = {s.name: s for s in self.engine.schemas}
        if element not in schemas:
            return None  # Java: a hash key that cannot be bound falls back to the default hash
        return bind_key(schemas, element, key)

    def _hash_of(self, element: int, paths: tuple[KeyPath, ...] | None) -> int:
        if paths is None:
            return hash_int(element)
        return self.engine._record_hash(paths, element)


class SetWriteState(HashedWriteState[ListPayload]):
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


class MapWriteState(HashedWriteState[MapPayload]):
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


AnyTypeState: TypeAlias = "ObjectWriteState | ListWriteState | SetWriteState | MapWriteState"


def new_type_state(engine: EngineView, schema: Schema, num_shards: int | None) -> AnyTypeState:
    if isinstance(schema, ObjectSchema):
        return ObjectWriteState(engine, schema, num_shards)
    if isinstance(schema, ListSchema):
        return ListWriteState(engine, schema, num_shards)
    if isinstance(schema, SetSchema):
        return SetWriteState(engine, schema, num_shards)
    return MapWriteState(engine, schema, num_shards)

