"""The read state engine: a consumer's in-memory dataset, loaded from a snapshot and moved by deltas.

Theory of operation
-------------------
A :class:`ReadStateEngine` holds one :class:`TypeReadState` per type.  A type's records live in its shards
exactly as the blob laid them out (``_blob.py``): bit-packed big-endian words and byte pools, reached through
a compiled :class:`~loosely.hollow.core._native.TypeView`.  Loading a snapshot parses the framing and reads
the reference columns once (below); every shard is a zero-copy view into the blob, so a snapshot in a
memory-mapped file is usable in milliseconds and only the record arrays of types holding references, and the
pages actually read, become resident.

Applying a delta (or a reverse delta, which is encoded the same way) is all-or-nothing:

1. the header's origin tag must equal the loaded state's tag;
2. for every type in the delta, every shard is merged with the delta in C into new buffers (copy-on-write:
   a shard with nothing added and unchanged widths keeps its old buffers, which may be the mapped file);
3. the new populated ordinals are computed and checked against the delta;
4. only when all of that succeeded is anything swapped in.  Any error leaves the old state untouched.

A delta that changes a type's shard count (Java 7.10+ ``allowTypeResharding``) first has the type's records
laid out in the new shard count, then is applied as usual.

Removals are applied one version late, as Java does: a record removed by delta N stays readable (a "ghost",
listed by :meth:`TypeReadState.ghost_ordinals`) until delta N+1 drops it.  Types absent from the delta keep
their data; types unknown to this engine are skipped (a schema change needs a snapshot); fields unknown to
this engine are dropped and fields missing from the delta read as null.

Every reference a readable record holds (OBJECT reference fields, LIST and SET elements, MAP keys and values)
must point at or below the referenced type's max ordinal, or the snapshot or delta is refused with a
:class:`HollowBlobError` -- at load, not at the first read.  A snapshot is scanned once (a compiled pass over
its reference columns); each type then keeps, per reference slot, an upper bound of what it references.  A
delta scans only its added records to raise the bound, and a type is scanned again only when a referenced type
shrinks below its bound.  References to types absent from the state are not checked (nothing can follow them).

Each successful transition produces an :class:`UpdateEvent` with the added and removed ordinals per type;
listeners registered with :meth:`ReadStateEngine.add_listener` receive it (indexes stay current that way).
"""

from __future__ import annotations

import contextlib
import enum
import mmap
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from loosely.hollow.core import _native
from loosely.hollow.core._blob import (
    BlobHeader,
    BlobKind,
    ShardData,
    TypeSection,
    read_blob_header,
    read_part_header,
    read_type_section,
)
from loosely.hollow.core._encoding import Cursor
from loosely.hollow.core._errors import (
    HollowBlobError,
    HollowDeltaOriginError,
    HollowUnsupportedBlobError,
)
from loosely.hollow.core._hashing import Checksum, hash_table_size
from loosely.hollow.core._schema import FieldType, MapSchema, ObjectSchema, Schema, SchemaKind

__all__ = [
    "KIND_CODES",
    "FieldTypeCodes",
    "ReadStateEngine",
    "TypeChanges",
    "TypeReadState",
    "UpdateEvent",
    "UpdateKind",
]

_native.set_error_class(HollowBlobError)

Ordinals = npt.NDArray[np.int64]
Bits = npt.NDArray[np.bool_]

KIND_CODES: Final = {SchemaKind.OBJECT: 0, SchemaKind.LIST: 1, SchemaKind.SET: 2, SchemaKind.MAP: 3}
FieldTypeCodes: Final = {
    FieldType.REFERENCE: 0,
    FieldType.INT: 1,
    FieldType.LONG: 2,
    FieldType.BOOLEAN: 3,
    FieldType.FLOAT: 4,
    FieldType.DOUBLE: 5,
    FieldType.STRING: 6,
    FieldType.BYTES: 7,
}
TYPE_SECTIONS_MAX: Final = 1 << 16
_EMPTY: Final[Ordinals] = np.zeros(0, dtype=np.int64)


class UpdateKind(enum.Enum):
    """How a read state reached its current version."""

    SNAPSHOT = "snapshot"
    DELTA = "delta"


@dataclass(frozen=True, slots=True)
class TypeChanges:
    """Ordinals added and removed in one type by one transition (ascending, whole-type ordinals)."""

    added: Ordinals
    removed: Ordinals


@dataclass(frozen=True, slots=True)
class UpdateEvent:
    """One successful transition of a :class:`ReadStateEngine`.

    ``changes`` lists, per type the delta touched, the ordinals added and removed; it is empty for a
    snapshot, where every record is new.
    """

    kind: UpdateKind
    origin_tag: int
    destination_tag: int
    changes: Mapping[str, TypeChanges]


@dataclass(frozen=True, slots=True)
class ShardState:
    """One shard's data: the blob layout (see ``_blob.ShardData``) plus the removals not yet dropped."""

    max_shard_ordinal: int
    widths: tuple[int, ...]
    fixed: memoryview | bytes | bytearray
    extras: tuple[memoryview | bytes | bytearray | None, ...]
    pending_removals: Ordinals

    def spec(
        self,
    ) -> tuple[
        int,
        tuple[int, ...],
        memoryview | bytes | bytearray,
        tuple[memoryview | bytes | bytearray | None, ...],
    ]:
        return (self.max_shard_ordinal, self.widths, self.fixed, self.extras)

    @property
    def nbytes(self) -> int:
        return len(self.fixed) + sum(len(x) for x in self.extras if x is not None)


def _field_codes(schema: Schema) -> bytes:
    if isinstance(schema, ObjectSchema):
        return bytes(FieldTypeCodes[f.type] for f in schema.fields)
    return b""


def _new_view(schema: Schema) -> _native.TypeView:
    return _native.TypeView(KIND_CODES[schema.kind], _field_codes(schema))


def _ordinals(data: memoryview | bytes | None) -> Ordinals:
    if data is None or len(data) == 0:
        return _EMPTY
    return np.frombuffer(_native.gap_decode(data), dtype=np.int64)


def _reference_slots(schema: Schema) -> tuple[tuple[int, str, str], ...]:
    """``(slot, what, referenced type)`` of each reference the records of ``schema`` hold (``TypeView.ref_max``)."""
    if isinstance(schema, ObjectSchema):
        return tuple(
            (i, f"field {f.name}", f.referenced_type) for i, f in enumerate(schema.fields) if f.referenced_type
        )
    if isinstance(schema, MapSchema):
        return ((0, "a map key", schema.key_type), (1, "a map value", schema.value_type))
    return ((0, "an element", schema.element_type),)


def _bits_from_words(words: memoryview | bytes, length: int, type_name: str) -> Bits:
    """Java's bitset words (big-endian longs, bit o of long o>>6) -> a bool array of ``length`` entries.

    The array is the only large allocation: a load leaves no freed megabytes behind in the process's heap
    (the C allocator keeps such holes resident, and a snapshot's memory is measured against Java's heap).
    """
    as_le = np.frombuffer(words, dtype=">u8").astype("<u8")  # an eighth of a byte per ordinal
    last, bit = divmod(length, 64)
    if last < as_le.size and (int(as_le[last]) >> bit or as_le[last + 1 :].any()):
        raise HollowBlobError(f"type {type_name}: populated ordinals beyond the type's max ordinal")
    n = min(length, as_le.size * 64)
    bits = np.unpackbits(as_le.view(np.uint8), count=n, bitorder="little").view(np.bool_)
    if n == length:
        return bits
    out = np.zeros(length, dtype=np.bool_)
    out[:n] = bits
    return out


class TypeReadState:
    """All records of one type in a :class:`ReadStateEngine`.

    ``view`` is the compiled accessor of the records; it stays the same object across deltas (its content is
    swapped), so indexes built on it stay valid.
    """

    __slots__ = ("_populated", "_previous", "_ref_max", "_ref_slots", "_shards", "max_ordinal", "schema", "view")

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.view = _new_view(schema)
        self._ref_slots = _reference_slots(schema)
        self._ref_max: tuple[int, ...] = (-1,) * len(self._ref_slots)  # per slot, >= any readable reference
        self._shards: tuple[ShardState, ...] = ()
        self._populated: Bits = np.zeros(0, dtype=np.bool_)
        self._previous: Bits = np.zeros(0, dtype=np.bool_)
        self.max_ordinal = -1

    @property
    def name(self) -> str:
        return self.schema.name

    @property
    def kind(self) -> SchemaKind:
        return self.schema.kind

    @property
    def num_shards(self) -> int:
        return len(self._shards)

    @property
    def shards(self) -> tuple[ShardState, ...]:
        return self._shards

    def populated_ordinals(self) -> Ordinals:
        """Ordinals of the records in the current state, ascending (computed on each call, not kept)."""
        return np.flatnonzero(self._populated).astype(np.int64)

    def previous_ordinals(self) -> Ordinals:
        """Ordinals populated before the last transition (empty right after a snapshot)."""
        return np.flatnonzero(self._previous).astype(np.int64)

    def ghost_ordinals(self) -> Ordinals:
        """Records removed by the last delta: no longer populated, still readable until the next delta."""
        n = min(self._previous.size, self._populated.size)
        ghosts = self._previous.copy()
        ghosts[:n] &= ~self._populated[:n]
        return np.flatnonzero(ghosts).astype(np.int64)

    def is_populated(self, ordinal: int) -> bool:
        return 0 <= ordinal < self._populated.size and bool(self._populated[ordinal])

    def is_readable(self, ordinal: int) -> bool:
        """Populated now, or a ghost of the previous state."""
        return self.is_populated(ordinal) or (0 <= ordinal < self._previous.size and bool(self._previous[ordinal]))

    def record_count(self) -> int:
        return int(np.count_nonzero(self._populated))

    @property
    def nbytes(self) -> int:
        """Bytes of record data referenced by this type (mapped or in memory)."""
        return sum(s.nbytes for s in self._shards)

    def checksum(self, common_with: Schema | None = None) -> int:
        """This type's ``HollowChecksum`` value (Java ``HollowTypeReadState.getChecksum``)."""
        order: tuple[int, ...] = ()
        if isinstance(self.schema, ObjectSchema):
            schema = self.schema
            if isinstance(common_with, ObjectSchema):
                schema = self.schema.common_with(common_with)
            names = sorted(f.name for f in schema.fields)
            order = tuple(self.schema.position(n) for n in names)
        return self.view.checksum(self.populated_ordinals(), order)

    # -- state transitions (called by the engine) --

    def _install(self, shards: tuple[ShardState, ...], populated: Bits, previous: Bits, max_ordinal: int) -> None:
        self._shards = shards
        self._populated = populated
        self._previous = previous
        self.max_ordinal = max_ordinal


@dataclass(slots=True)
class _PreparedType:
    state: TypeReadState
    staged_view: _native.TypeView
    shards: tuple[ShardState, ...]
    populated: Bits
    max_ordinal: int
    changes: TypeChanges
    ref_max: tuple[int, ...]  # upper bounds of the references of the records readable after the delta

    def readable(self) -> Bits:
        """Records readable after the delta: populated, or removed by it (ghosts)."""
        mask = self.populated.copy()
        n = min(mask.size, self.state._populated.size)
        mask[:n] |= self.state._populated[:n]
        return mask


def _as_bytes_view(data: object) -> memoryview:
    try:
        mv = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"expected a bytes-like object, got {type(data).__name__}") from None
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    return mv


Listener = Callable[[UpdateEvent], None]


class ReadStateEngine:
    """A Hollow dataset in memory, byte-compatible with Java Hollow's ``HollowReadStateEngine``.

    >>> from loosely.hollow.core import WriteStateEngine, parse_schemas
    >>> w = WriteStateEngine(parse_schemas("Point { int x; int y; }"))
    >>> w.add_object("Point", {"x": 1, "y": 2})
    0
    >>> engine = ReadStateEngine.from_snapshot(w.write_snapshot())
    >>> engine.type("Point").view.record(0)
    (1, 2)
    """

    def __init__(self) -> None:
        self._types: dict[str, TypeReadState] = {}
        self.current_tag = 0
        self.origin_tag = 0
        self.header_tags: dict[str, str] = {}
        self._listeners: list[Listener] = []
        self.last_update: UpdateEvent | None = None
        self._keepalive: object = None

    # -- loading --

    @classmethod
    def from_snapshot(cls, data: object, parts: Mapping[str, object] | None = None) -> ReadStateEngine:
        """Load a snapshot blob from any bytes-like object (bytes, bytearray, memoryview, mmap), zero-copy.

        ``parts`` maps optional blob part names to their part blobs.
        """
        engine = cls()
        engine._load_snapshot(_as_bytes_view(data), parts)
        engine._keepalive = data
        return engine

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], parts: Mapping[str, str | os.PathLike[str]] | None = None
    ) -> ReadStateEngine:
        """Memory-map a snapshot file read-only and load it in place (pages are read on first access)."""
        mapped = _map_file(path)
        mapped_parts = {name: _map_file(p) for name, p in (parts or {}).items()}
        engine = cls()
        engine._load_snapshot(memoryview(mapped), {k: memoryview(v) for k, v in mapped_parts.items()})
        engine._keepalive = (mapped, mapped_parts)
        return engine

    def _load_snapshot(self, data: memoryview, parts: Mapping[str, object] | None) -> None:
        cur = Cursor(data)
        header = read_blob_header(cur)
        sections = _read_sections(cur, parts, header, BlobKind.SNAPSHOT)
        types: dict[str, TypeReadState] = {}
        for sec in sections:
            if sec.schema.name in types:
                raise HollowBlobError(f"type {sec.schema.name} appears twice in the snapshot")
            state = TypeReadState(sec.schema)
            shards = tuple(ShardState(s.max_shard_ordinal, s.widths, s.fixed, s.extras, _EMPTY) for s in sec.shards)
            self._check_shards(sec)
            state.view.set_shards([s.spec() for s in shards])
            assert sec.populated is not None
            if sec.max_ordinal >= len(sec.populated) * 8:
                # Java's bitset always covers the max ordinal; this also bounds what a corrupt count allocates.
                raise HollowBlobError(
                    f"type {sec.schema.name}: max ordinal {sec.max_ordinal} beyond its populated-ordinals bitset"
                )
            populated = _bits_from_words(sec.populated, sec.max_ordinal + 1, sec.schema.name)
            state._install(shards, populated, np.zeros(0, dtype=np.bool_), sec.max_ordinal)
            state._ref_max = tuple(state.view.ref_max(slot, populated) for slot, _, _ in state._ref_slots)
            types[sec.schema.name] = state
        _check_references(types.values(), {n: t.max_ordinal for n, t in types.items()}, {})
        self._types = types
        self.current_tag = header.destination_tag
        self.origin_tag = header.origin_tag
        self.header_tags = dict(header.tags)
        # Everything is new after a snapshot; the event lists no per-record changes.
        self._notify(UpdateEvent(UpdateKind.SNAPSHOT, header.origin_tag, header.destination_tag, {}))

    @staticmethod
    def _check_shards(sec: TypeSection) -> None:
        n = sec.num_shards
        for i, s in enumerate(sec.shards):
            expected = (sec.max_ordinal + 1 - i + n - 1) // n - 1 if sec.max_ordinal >= 0 else -1
            if n > 1 and s.max_shard_ordinal != expected:
                raise HollowBlobError(
                    f"type {sec.schema.name}: shard {i} has max shard ordinal {s.max_shard_ordinal}, "
                    f"expected {expected} for max ordinal {sec.max_ordinal}"
                )

    # -- deltas --

    def apply_delta(self, data: object, parts: Mapping[str, object] | None = None) -> UpdateEvent:
        """Apply a delta or reverse delta blob; on any error the loaded state is left exactly as it was."""
        mv = _as_bytes_view(data)
        cur = Cursor(mv)
        header = read_blob_header(cur)
        if header.origin_tag != self.current_tag:
            raise HollowDeltaOriginError(self.current_tag, header.origin_tag)
        sections = _read_sections(cur, parts, header, BlobKind.DELTA)
        prepared: list[_PreparedType] = []
        seen: set[str] = set()
        for sec in sections:
            if sec.schema.name in seen:
                raise HollowBlobError(f"type {sec.schema.name} appears twice in the delta")
            seen.add(sec.schema.name)
            state = self._types.get(sec.schema.name)
            if state is None:
                continue  # a type this state does not know: skipped, as Java does
            prepared.append(_prepare_type_delta(state, sec))
        by_name = {p.state.name: p for p in prepared}
        max_ordinals = {n: by_name[n].max_ordinal if n in by_name else t.max_ordinal for n, t in self._types.items()}
        ref_max = _check_references(self._types.values(), max_ordinals, by_name)
        # Commit: nothing below can fail on valid input.
        changes: dict[str, TypeChanges] = {}
        touched = {p.state.name for p in prepared}
        for st in self._types.values():
            if st.name not in touched:
                st._install(st._shards, st._populated, st._populated.copy(), st.max_ordinal)
        replaced: list[ShardState] = []
        for p in prepared:
            replaced.extend(p.state._shards)
            p.state.view.swap(p.staged_view)
            p.state._install(p.shards, p.populated, p.state._populated, p.max_ordinal)
            changes[p.state.name] = p.changes
        for st in self._types.values():
            st._ref_max = ref_max[st.name]
        self.origin_tag = header.origin_tag
        self.current_tag = header.destination_tag
        self.header_tags = dict(header.tags)
        self._release_mapped(replaced)
        event = UpdateEvent(UpdateKind.DELTA, header.origin_tag, header.destination_tag, changes)
        self._notify(event)
        return event

    def _release_mapped(self, replaced: Iterable[ShardState]) -> None:
        """Drop from this process's resident memory the pages of the snapshot file (``from_file``) that only the
        shards a delta replaced used.  The mapping stays: a page read again (through an old ``ShardState``
        someone kept) comes back from the page cache, so nothing changes but the resident size, which no longer
        holds both the old and the new copy of every rebuilt shard."""
        if not isinstance(self._keepalive, tuple):
            return  # not from_file: the caller's buffer, not ours to advise
        main, parts = self._keepalive
        maps = {id(m): m for m in (main, *parts.values()) if isinstance(m, mmap.mmap)}
        in_use = {id(b) for t in self._types.values() for s in t._shards for b in (s.fixed, *s.extras)}
        page = mmap.PAGESIZE
        for shard in replaced:
            for buf in (shard.fixed, *shard.extras):
                if not isinstance(buf, memoryview) or id(buf.obj) not in maps or id(buf) in in_use or not buf.nbytes:
                    continue
                mapped = maps[id(buf.obj)]
                offset = np.frombuffer(buf, dtype=np.uint8).ctypes.data - np.frombuffer(mapped, np.uint8).ctypes.data
                start = -(-offset // page) * page  # whole pages inside the buffer: neighbours keep theirs
                end = (offset + buf.nbytes) // page * page
                if end > start:
                    # A hint, after the commit: if the kernel refuses it, the pages simply stay resident.
                    with contextlib.suppress(OSError):
                        mapped.madvise(mmap.MADV_DONTNEED, start, end - start)

    # -- access --

    def type(self, name: str) -> TypeReadState:
        try:
            return self._types[name]
        except KeyError:
            raise KeyError(f"no type {name!r} in this state") from None

    def types(self) -> Iterator[TypeReadState]:
        return iter(self._types.values())

    def type_names(self) -> list[str]:
        return list(self._types)

    def has_type(self, name: str) -> bool:
        return name in self._types

    @property
    def schemas(self) -> list[Schema]:
        return [t.schema for t in self._types.values()]

    def checksum(self, common_with: ReadStateEngine | None = None) -> Checksum:
        """``HollowChecksum.forStateEngine`` (or ``...WithCommonSchemas`` when ``common_with`` is given)."""
        total = Checksum()
        for name in sorted(self._types):
            other = None
            if common_with is not None:
                if not common_with.has_type(name):
                    continue
                other = common_with.type(name).schema
            total.apply_int(self._types[name].checksum(other))
        return total

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self._types.values())

    # -- listeners --

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` after every successful snapshot load or delta (in registration order)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def _notify(self, event: UpdateEvent) -> None:
        self.last_update = event
        for listener in list(self._listeners):
            listener(event)


def _check_references(
    states: Iterable[TypeReadState],
    max_ordinals: Mapping[str, int],
    prepared: Mapping[str, _PreparedType],
) -> dict[str, tuple[int, ...]]:
    """Per type, the bounds of its references in the state about to be installed (``prepared`` holds the types a
    delta changes); a bound past the referenced type's max ordinal is made exact by scanning the readable records,
    and a reference that is still past it refuses the blob."""
    out: dict[str, tuple[int, ...]] = {}
    for st in states:
        p = prepared.get(st.name)
        bounds = list(p.ref_max if p is not None else st._ref_max)
        for k, (slot, what, target) in enumerate(st._ref_slots):
            limit = max_ordinals.get(target)
            if limit is None or bounds[k] <= limit:
                continue
            if p is not None:
                bounds[k] = p.staged_view.ref_max(slot, p.readable())
            else:
                bounds[k] = st.view.ref_max(slot, st._populated)
            if bounds[k] > limit:
                raise HollowBlobError(
                    f"type {st.name}: {what} references {target} ordinal {bounds[k]}, "
                    f"past that type's max ordinal {limit}"
                )
        out[st.name] = tuple(bounds)
    return out


def _part_cursors(parts: Mapping[str, object] | None, origin: int, destination: int) -> list[Cursor]:
    cursors = []
    for name, blob in (parts or {}).items():
        c = Cursor(_as_bytes_view(blob))
        ph = read_part_header(c)
        if ph.name != name:
            raise HollowBlobError(f"blob part {name!r} is named {ph.name!r} inside")
        if (ph.origin_tag, ph.destination_tag) != (origin, destination):
            raise HollowBlobError(f"blob part {name!r} does not belong to this blob (state tags differ)")
        cursors.append(c)
    return cursors


def _read_sections(
    cur: Cursor, parts: Mapping[str, object] | None, header: BlobHeader, kind: BlobKind
) -> list[TypeSection]:
    """The type sections of a blob and its optional parts; no bytes may follow the last section."""
    sections: list[TypeSection] = []
    for c in [cur, *_part_cursors(parts, header.origin_tag, header.destination_tag)]:
        n = c.varint("type section count", TYPE_SECTIONS_MAX)
        sections.extend(read_type_section(c, kind) for _ in range(n))
        if c.remaining:
            raise HollowBlobError(f"{c.remaining} unexpected bytes after the last type section")
    return sections


def _map_file(path: str | os.PathLike[str]) -> mmap.mmap | bytes:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _field_map(state: TypeReadState, delta_schema: Schema) -> tuple[int, ...]:
    mine = state.schema
    if mine.kind is not delta_schema.kind:
        raise HollowUnsupportedBlobError(
            f"type {mine.name} is {mine.kind.value} here but {delta_schema.kind.value} in the delta"
        )
    if not isinstance(mine, ObjectSchema):
        return ()
    assert isinstance(delta_schema, ObjectSchema)
    mapping = []
    for f in mine.fields:
        i = delta_schema.position(f.name)
        if i >= 0 and delta_schema.fields[i].type is not f.type:
            raise HollowUnsupportedBlobError(
                f"type {mine.name}: field {f.name} changed from {f.type.value} to {delta_schema.fields[i].type.value}"
            )
        mapping.append(i)
    return tuple(mapping)


def _prepare_type_delta(state: TypeReadState, sec: TypeSection) -> _PreparedType:
    name = state.name
    fmap = _field_map(state, sec.schema)
    old_view = state.view
    old_shards = state.shards
    if sec.num_shards != state.num_shards:
        # Java 7.10+ producers may re-shard a type within a delta chain (allowTypeResharding); like Java's
        # consumer, lay the records out in the new shard count first, then apply the delta to that.
        old_shards = _reshard(state, sec.num_shards)
        old_view = _new_view(state.schema)
        old_view.set_shards([sh.spec() for sh in old_shards])
    ReadStateEngine._check_shards(sec)
    n = sec.num_shards
    removed_lists = [_ordinals(ds.removed) for ds in sec.shards]
    added_lists = [_ordinals(ds.added) for ds in sec.shards]
    max_added = max((int(a[-1]) * n + i for i, a in enumerate(added_lists) if a.size), default=-1)
    if sec.max_ordinal > max(state.max_ordinal, max_added):
        # A producer's max ordinal is that of the records of both states; a larger one is corrupt (and would
        # make us allocate for records that do not exist).
        raise HollowBlobError(f"type {name}: delta max ordinal {sec.max_ordinal} exceeds every known or added ordinal")
    # A delta shard holds only its added records, so its record count is the number of additions.
    delta_view = _new_view(sec.schema)
    delta_view.set_shards(
        [(a.size - 1, s.widths, s.fixed, s.extras) for a, s in zip(added_lists, sec.shards, strict=True)]
    )
    old_populated = state._populated
    new_len = sec.max_ordinal + 1
    populated = np.zeros(new_len, dtype=np.bool_)
    keep = min(new_len, old_populated.size)
    populated[:keep] = old_populated[:keep]
    added_all: list[Ordinals] = []
    removed_all: list[Ordinals] = []
    new_shards: list[ShardState] = []
    for i, (old, ds) in enumerate(zip(old_shards, sec.shards, strict=True)):
        removed = removed_lists[i]
        added = added_lists[i]
        g_removed = removed * n + i
        g_added = added * n + i
        if g_removed.size and (g_removed[-1] >= old_populated.size or not old_populated[g_removed].all()):
            raise HollowBlobError(f"type {name}: the delta removes records that are not in the loaded state")
        if g_added.size and g_added[-1] > sec.max_ordinal:
            raise HollowBlobError(f"type {name}: the delta adds ordinals beyond its max ordinal")
        if g_removed.size:
            populated[g_removed[g_removed < new_len]] = False
        if g_added.size:
            if populated[g_added].any():
                raise HollowBlobError(f"type {name}: the delta adds records that are already present")
            populated[g_added] = True
        added_all.append(g_added)
        removed_all.append(g_removed)
        new_shards.append(
            _merge_shard(
                state,
                old_view,
                index=i,
                old=old,
                delta_view=delta_view,
                ds=ds,
                fmap=fmap,
                removed=removed,
                added=added,
            )
        )
    if old_populated.size > new_len:
        tail = old_populated[new_len:].copy()
        for r in removed_all:
            tail[r[r >= new_len] - new_len] = False
        if tail.any():
            raise HollowBlobError(f"type {name}: the delta shrinks the type below records it keeps")
    staged = _new_view(state.schema)
    staged.set_shards([s.spec() for s in new_shards])
    added_cat = np.sort(np.concatenate(added_all)) if added_all else _EMPTY
    removed_cat = np.sort(np.concatenate(removed_all)) if removed_all else _EMPTY
    # The records readable after the delta are the old readable ones and the added ones (in the delta's layout).
    ref_max = []
    for bound, (slot, _, _) in zip(state._ref_max, state._ref_slots, strict=True):
        delta_slot = fmap[slot] if fmap else slot  # a field the delta lacks reads as null
        ref_max.append(max(bound, delta_view.ref_max(delta_slot, None)) if delta_slot >= 0 else bound)
    changes = TypeChanges(added_cat, removed_cat)
    return _PreparedType(state, staged, tuple(new_shards), populated, sec.max_ordinal, changes, tuple(ref_max))


def _target_widths(state: TypeReadState, old: ShardState, ds: ShardData, fmap: tuple[int, ...]) -> tuple[int, ...]:
    if not isinstance(state.schema, ObjectSchema):
        return ds.widths
    return tuple(ds.widths[j] if j >= 0 else old.widths[i] for i, j in enumerate(fmap))


def _merge_shard(
    state: TypeReadState,
    old_view: _native.TypeView,
    *,
    index: int,
    old: ShardState,
    delta_view: _native.TypeView,
    ds: ShardData,
    fmap: tuple[int, ...],
    removed: Ordinals,
    added: Ordinals,
) -> ShardState:
    widths = _target_widths(state, old, ds, fmap)
    if added.size == 0 and widths == old.widths and ds.max_shard_ordinal == old.max_shard_ordinal:
        # Copy-on-write: nothing new in this shard, keep its buffers (possibly the mapped file).
        pending = np.union1d(old.pending_removals, removed).astype(np.int64)
        return ShardState(old.max_shard_ordinal, old.widths, old.fixed, old.extras, pending)
    fixed, extras = _native.merge_shard(
        old_view, index, old.pending_removals, delta_view, index, added, ds.max_shard_ordinal, widths, fmap
    )
    # (the merge's large outputs are buffers in memory of their own, see _native.c: viewed as memoryviews)
    return ShardState(
        ds.max_shard_ordinal,
        widths,
        memoryview(fixed),
        tuple(None if x is None else memoryview(x) for x in extras),
        removed,
    )


def _shard_max_ordinals(max_ordinal: int, n: int) -> list[int]:
    return [(max_ordinal + 1 - i + n - 1) // n - 1 if max_ordinal >= 0 else -1 for i in range(n)]


def _reshard(state: TypeReadState, n: int) -> tuple[ShardState, ...]:
    """The populated records of ``state`` laid out in ``n`` shards (ordinal o in shard o & (n - 1)).

    Record by record through the accessor: re-sharding is rare (an opt-in of Java producers), and this keeps
    the bit-level code in one place.  Bit widths stay as they are, except pointers, which are sized anew.
    """
    schema = state.schema
    populated = state._populated
    widths = state.shards[0].widths
    shards = []
    for j, max_so in enumerate(_shard_max_ordinals(state.max_ordinal, n)):
        ordinals = [so * n + j for so in range(max_so + 1)]
        live = [bool(populated[o]) for o in ordinals]
        if isinstance(schema, ObjectSchema):
            shard_widths, fixed, extras = _reshard_objects(state, ordinals, live, widths)
        else:
            shard_widths, fixed, extras = _reshard_collection(state, ordinals, live, widths)
        shards.append(ShardState(max_so, shard_widths, fixed, extras, _EMPTY))
    return tuple(shards)


def _words(n: int, widths: tuple[int, ...], columns: list[list[int]]) -> bytes:
    cols = tuple(np.asarray(c, dtype=np.uint64) for c in columns)
    return _native.pack(n, widths, cols) if n else b""


def _reshard_objects(
    state: TypeReadState, ordinals: list[int], live: list[bool], widths: tuple[int, ...]
) -> tuple[tuple[int, ...], bytes, tuple[bytes | None, ...]]:
    schema = state.schema
    assert isinstance(schema, ObjectSchema)
    view = state.view
    var = [f.type.is_variable_length for f in schema.fields]
    pools = [bytearray() for _ in schema.fields]
    cols: list[list[int]] = [[] for _ in schema.fields]
    for o, present in zip(ordinals, live, strict=True):
        for f in range(len(schema.fields)):
            if var[f]:
                data = view.var_bytes(o, f) if present else None
                if data is None:
                    cols[f].append(-1 - len(pools[f]))  # null: the flag is added below, once the width is known
                else:
                    pools[f] += data
                    cols[f].append(len(pools[f]))
            else:
                cols[f].append(view.raw(o, f) if present else (1 << widths[f]) - 1)
    new_widths = list(widths)
    for f in range(len(schema.fields)):
        if var[f]:
            new_widths[f] = max(widths[f], len(pools[f]).bit_length() + 1)
            flag = 1 << (new_widths[f] - 1)
            cols[f] = [flag | (-1 - v) if v < 0 else v for v in cols[f]]
    fixed = _words(len(ordinals), tuple(new_widths), cols)
    return tuple(new_widths), fixed, tuple(bytes(p) for p in pools)


def _reshard_collection(
    state: TypeReadState, ordinals: list[int], live: list[bool], widths: tuple[int, ...]
) -> tuple[tuple[int, ...], bytes, tuple[bytes | None, ...]]:
    view = state.view
    kind = state.kind
    pointers: list[int] = []
    sizes: list[int] = []
    units: list[list[int]] = [[], []]
    if kind is SchemaKind.LIST:
        ew = widths[1]
        for o, present in zip(ordinals, live, strict=True):
            if present:
                units[0].extend(view.elements(o))
            pointers.append(len(units[0]))
        pw = max(1, pointers[-1].bit_length() if pointers else 0)
        fixed = _words(len(pointers), (pw,), [pointers])
        return (pw, ew), fixed, (_words(len(units[0]), (ew,), [units[0]]),)
    key_w = widths[2]
    empty = (1 << key_w) - 1
    for o, present in zip(ordinals, live, strict=True):
        if present:
            size = view.size(o)
            buckets = [empty] * hash_table_size(size)
            values = [0] * len(buckets)
            if kind is SchemaKind.SET:
                for b, e in view.buckets(o):
                    buckets[b] = e
            else:
                for b, k, v in view.map_buckets(o):
                    buckets[b] = k
                    values[b] = v
            units[0].extend(buckets)
            units[1].extend(values)
            sizes.append(size)
        else:
            sizes.append(0)
        pointers.append(len(units[0]))
    pw = pointers[-1].bit_length() if pointers else 0
    fixed = _words(len(pointers), (pw, widths[1]), [pointers, sizes])
    if kind is SchemaKind.SET:
        return (pw, widths[1], key_w), fixed, (_words(len(units[0]), (key_w,), [units[0]]),)
    data = _words(len(units[0]), (key_w, widths[3]), units)
    return (pw, widths[1], key_w, widths[3]), fixed, (data,)
