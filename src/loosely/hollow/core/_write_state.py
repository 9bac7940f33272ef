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

Records are given as Python values and normalised at once to the form Java serialises ("payload").

The rooms: :mod:`._payload` (values to payloads, and their hashes), :mod:`._ordinal_map` (payload -> ordinal,
free ordinals, the populated-ordinals bitset), :mod:`._type_states` (one type's records across cycles, measured
and packed per kind), and this module, the engine: cycles, the header and the blobs, restoring from a read state.
"""

import random as _random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from loosely.hollow.core._blob import (
    BlobHeader,
    BlobKind,
    PartHeader,
    write_blob_header,
    write_part_header,
    write_type_section,
)
from loosely.hollow.core._encoding import Writer
from loosely.hollow.core._errors import HollowSchemaError, HollowWriteError
from loosely.hollow.core._hashing import hash_int, to_int32
from loosely.hollow.core._java_order import JavaConcurrentHashMap, java_hash_map_order
from loosely.hollow.core._keys import KeyPath
from loosely.hollow.core._payload import (
    UNHASHABLE_NULLS,
    FieldPayload,
    ObjectPayload,
    ObjectValue,
    P,
    Payload,
    as_int,
    checked_ordinals,
    field_payload,
    null_payload,
    object_payload,
    payload_field_hash,
    signed64,
)
from loosely.hollow.core._read_state import ReadStateEngine, TypeReadState
from loosely.hollow.core._schema import (
    FieldType,
    ObjectSchema,
    Schema,
)
from loosely.hollow.core._type_states import (
    AnyTypeState,
    ListWriteState,
    MapWriteState,
    ObjectWriteState,
    SetWriteState,
    TypeWriteState,
    new_type_state,
)

__all__ = ["BlobParts", "ObjectValue", "WriteStateEngine"]

LONG_MAX: Final = (1 << 63) - 1
ASSIGNED_ORDINAL_CYCLE_MASK: Final = 0xFFFFFFFF00000000


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
        self._types: dict[str, AnyTypeState] = {}
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
        self._types[schema.name] = new_type_state(self, schema, num_shards)

    def has_type(self, name: str) -> bool:
        return name in self._types

    @property
    def schemas(self) -> list[Schema]:
        return [t.schema for t in self._types.values()]

    def schema(self, name: str) -> Schema:
        return self._state(name).schema

    def _state(self, name: str) -> AnyTypeState:
        try:
            return self._types[name]
        except KeyError:
            raise HollowWriteError(f"type {name!r} is not registered") from None

    # -- adding --

    def check_adding(self) -> None:
        """Raise unless records may be added now (the current cycle was not written yet)."""
        if not self._prepared_for_next_cycle:
            raise HollowWriteError("this cycle was already written; call prepare_for_next_cycle() first")

    def _adding(self, name: str) -> AnyTypeState:
        self.check_adding()
        return self._state(name)

    def add_object(self, type_name: str, values: Mapping[str, ObjectValue] | Sequence[ObjectValue]) -> int:
        """Add an OBJECT record (by field name or in schema order); returns its ordinal.

        INT/LONG take ints (their minimum value is Java's null and is rejected), FLOAT/DOUBLE floats,
        BOOLEAN bools, STRING str, BYTES bytes, REFERENCE the ordinal of the referenced record; None is null.
        """
        state = self._adding(type_name)
        if not isinstance(state, ObjectWriteState):
            raise HollowWriteError(f"type {type_name} is not an OBJECT type")
        payload = object_payload(state.schema, values, state.encoders)
        if state.restored_schema is None:
            return state.add(payload)
        return state.add(payload, self._restored_payload(state, payload))

    def add_list(self, type_name: str, element_ordinals: Iterable[int]) -> int:
        state = self._adding(type_name)
        if not isinstance(state, ListWriteState):
            raise HollowWriteError(f"type {type_name} is not a LIST type")
        return state.add(tuple(checked_ordinals(element_ordinals, f"elements of {type_name}")))

    def add_set(self, type_name: str, element_ordinals: Iterable[int]) -> int:
        """Add a SET record of element ordinals (duplicates are kept, as Java's write record does)."""
        state = self._adding(type_name)
        if not isinstance(state, SetWriteState):
            raise HollowWriteError(f"type {type_name} is not a SET type")
        return state.add(tuple(sorted(checked_ordinals(element_ordinals, f"elements of {type_name}"))))

    def add_map(self, type_name: str, entries: Iterable[tuple[int, int]]) -> int:
        """Add a MAP record of ``(key ordinal, value ordinal)`` pairs."""
        state = self._adding(type_name)
        if not isinstance(state, MapWriteState):
            raise HollowWriteError(f"type {type_name} is not a MAP type")
        pairs = []
        for entry in entries:
            k, v = entry
            checked_ordinals((k, v), f"entries of {type_name}")
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
        self.next_tag = signed64(tag)

    def override_previous_tag(self, tag: int) -> None:
        self.previous_tag = signed64(tag)

    def _mint_tag(self) -> int:
        while True:
            tag = self._rng.getrandbits(64)
            high = tag & ASSIGNED_ORDINAL_CYCLE_MASK
            if high not in (0, ASSIGNED_ORDINAL_CYCLE_MASK) and high != (
                self.previous_tag & ASSIGNED_ORDINAL_CYCLE_MASK
            ):
                return signed64(tag)

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
                if not isinstance(state, ObjectWriteState):
                    raise HollowSchemaError(f"hash key path {kp.path} crosses non-OBJECT type {type_name}")
                payload = state.payload(o)
                value = payload[index]
                # Java's hasher walks the serialized record and fails ("Attempting to read null value as int")
                # on a null reference or string/bytes on the path, or on a null string/bytes before the field.
                if value is None and (i < len(kp.hops) - 1 or kp.field_type in UNHASHABLE_NULLS):
                    raise HollowWriteError(f"hash key field {kp.path} of a {type_name} record is null")
                if any(payload[j] is None and state.var_fields[j] for j in range(index)):
                    raise HollowWriteError(
                        f"hash key {kp.path}: a {type_name} record has a null string/bytes field before the key "
                        "field, which Java Hollow's producer cannot hash"
                    )
                if i < len(kp.hops) - 1:
                    o = as_int(value)
            h = to_int32(h * 31) ^ hash_int(payload_field_hash(value, kp.field_type))
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

    def _restored_payload(self, state: ObjectWriteState, payload: ObjectPayload) -> ObjectPayload | None:
        restored = state.restored_schema
        if not isinstance(restored, ObjectSchema) or restored == state.schema:
            return None
        out = []
        for f in restored.fields:
            i = state.schema.position(f.name)
            out.append(payload[i] if i >= 0 else null_payload(f.type))
        return tuple(out)



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


def _restore_type(ws: AnyTypeState, rs: TypeReadState) -> None:
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
    if isinstance(ws, ObjectWriteState):
        read_schema = rs.schema
        assert isinstance(read_schema, ObjectSchema)
        common = ws.schema.common_with(read_schema)
        ws.restored_schema = common
        obj_records = {o: _read_object_payload(rs, o, ws.schema) for o in populated}
        _reserve(ws, populated, obj_records, {_read_object_payload(rs, o, common): o for o in populated})
    elif isinstance(ws, MapWriteState):
        ws.restored_schema = rs.schema
        map_records = {o: tuple(sorted(view.entries(o))) for o in populated}
        _reserve(ws, populated, map_records, {p: o for o, p in map_records.items()})
    else:
        ws.restored_schema = rs.schema
        ordered = isinstance(ws, ListWriteState)
        records = {o: tuple(view.elements(o) if ordered else sorted(view.elements(o))) for o in populated}
        _reserve(ws, populated, records, {p: o for o, p in records.items()})


def _reserve(ws: TypeWriteState[P], populated: list[int], records: dict[int, P], preferred: dict[P, int]) -> None:
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
            out.append(field_payload(schema, i, value))
    return tuple(out)
