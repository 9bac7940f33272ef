"""Tools over Hollow states: JSON records, diffs between versions, and the history of one record.

* :func:`record_json` expands a record into plain JSON values: OBJECT -> dict, LIST and SET -> list (a SET in
  a stable order), MAP -> list of ``[key, value]`` pairs, BYTES -> hex, references followed (Hollow data has no
  cycles: a record can only reference records that exist independently of it).
* :func:`dump_records` yields every record of the top-level types (those no other type references), or of the
  types asked for, as ``{"type", "ordinal", "record"}`` (Java ``HollowRecordJsonStringifier``).
* :func:`diff_states` compares two states type by type (Java ``HollowDiff``): records are matched by primary key
  when the type has one in both states (added, removed and changed keys, with the fields that changed), else
  compared as multisets of their JSON.  :func:`diff_versions` does the same between two versions of a blob
  store, and when a delta chain links them it only looks at the records the deltas touched.
* :func:`record_history` walks a blob store's versions and reports each change of one record (Java
  ``HollowHistory``, computed on demand: the walk applies the deltas and looks the key up after each).

>>> from loosely.hollow.core import WriteStateEngine, parse_schemas
>>> w = WriteStateEngine(parse_schemas("Movie @PrimaryKey(id) { int id; string title; }"))
>>> _ = w.add_object("Movie", {"id": 1, "title": "Heat"}), w.add_object("Movie", {"id": 2, "title": "Alien"})
>>> before = ReadStateEngine.from_snapshot(w.write_snapshot())
>>> w.prepare_for_next_cycle()
>>> _ = w.add_object("Movie", {"id": 1, "title": "Heat (1995)"}), w.add_object("Movie", {"id": 3, "title": "Up"})
>>> after = ReadStateEngine.from_snapshot(w.write_snapshot())
>>> d = diff_states(before, after)["Movie"]
>>> d.added, d.removed, [(c.key, c.fields) for c in d.changed]
([[3]], [[2]], [([1], ['title'])])
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from loosely.hollow.api._blobs import BlobType, Version
from loosely.hollow.api._interfaces import BlobRetriever
from loosely.hollow.api._paths import bind_path, key_of
from loosely.hollow.api._planning import fetch, load_version, plan_update
from loosely.hollow.core import (
    FieldType,
    HollowError,
    HollowWriteError,
    ListSchema,
    MapSchema,
    ObjectSchema,
    PrimaryKeyIndex,
    ReadStateEngine,
    Schema,
    SetSchema,
    WriteStateEngine,
)

__all__ = [
    "Change",
    "HistoryEntry",
    "Json",
    "TypeDiff",
    "add_json",
    "diff_states",
    "diff_versions",
    "dump_records",
    "record_history",
    "record_json",
    "top_level_types",
]

Json: TypeAlias = "bool | int | float | str | list[Json] | dict[str, Json] | None"
_DEPTH_MAX: Final = 64


def _scalar(value: object) -> Json:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and math.isnan(value):  # NaN has no JSON form
        return None
    assert value is None or isinstance(value, (bool, int, float, str))
    return value


def record_json(engine: ReadStateEngine, type_name: str, ordinal: int, *, collapse: bool = True) -> Json:
    """Record ``ordinal`` of ``type_name`` with everything it references, as JSON values.

    ``collapse``: a referenced OBJECT with a single field is written as that field's value (``"Heat"`` rather
    than ``{"value": "Heat"}`` for a ``String`` record), as Java's JSON stringifier does by default.
    """
    return _record_json(engine, type_name, ordinal, collapse, 0)


def _record_json(engine: ReadStateEngine, type_name: str, ordinal: int, collapse: bool, depth: int) -> Json:
    if depth > _DEPTH_MAX:
        raise HollowError(f"records nest deeper than {_DEPTH_MAX} levels")
    state = engine.type(type_name)
    schema = state.schema
    view = state.view

    def sub(name: str, o: int) -> Json:
        return _record_json(engine, name, o, collapse, depth + 1)

    if isinstance(schema, ObjectSchema):
        out: dict[str, Json] = {}
        for i, f in enumerate(schema.fields):
            v = view.get(ordinal, i)
            if f.referenced_type is not None and v is not None:
                out[f.name] = sub(f.referenced_type, int(v))
            else:
                out[f.name] = _scalar(v)
        if collapse and depth > 0 and len(schema.fields) == 1:
            return out[schema.fields[0].name]
        return out
    if isinstance(schema, ListSchema):
        return [sub(schema.element_type, e) for e in view.elements(ordinal)]
    if isinstance(schema, SetSchema):
        items = [sub(schema.element_type, e) for e in view.elements(ordinal)]
        return sorted(items, key=lambda j: json.dumps(j, sort_keys=True))
    assert isinstance(schema, MapSchema)
    pairs: list[Json] = [[sub(schema.key_type, k), sub(schema.value_type, v)] for k, v in view.entries(ordinal)]
    return sorted(pairs, key=lambda j: json.dumps(j, sort_keys=True))


def _referenced(schema: Schema) -> list[str]:
    if isinstance(schema, ObjectSchema):
        return [f.referenced_type for f in schema.fields if f.referenced_type is not None]
    if isinstance(schema, (ListSchema, SetSchema)):
        return [schema.element_type]
    return [schema.key_type, schema.value_type]


def top_level_types(engine: ReadStateEngine) -> list[str]:
    """Types no other type references (a dataset's entry points), in the state's order."""
    referenced = {r for t in engine.types() for r in _referenced(t.schema)}
    return [t.name for t in engine.types() if t.name not in referenced]


def dump_records(engine: ReadStateEngine, type_names: Sequence[str] | None = None) -> Iterator[dict[str, Json]]:
    """Every record of the given types (default: the top-level types) as ``{"type", "ordinal", "record"}``."""
    for name in type_names if type_names is not None else top_level_types(engine):
        for o in engine.type(name).populated_ordinals().tolist():
            yield {"type": name, "ordinal": o, "record": record_json(engine, name, o)}


def add_json(engine: WriteStateEngine, type_name: str, value: Json) -> int:
    """Add a record given as JSON (the form :func:`record_json` gives) and everything it references; returns its
    ordinal.  A scalar stands for a one-field OBJECT (``"Heat"`` for a ``String`` record); a MAP is a list of
    ``[key, value]`` pairs or, when its keys are such one-field records, a JSON object; BYTES are hex."""
    schema = engine.schema(type_name)
    if isinstance(schema, ObjectSchema):
        if not isinstance(value, dict):
            if len(schema.fields) != 1:
                raise HollowWriteError(f"{type_name} needs a JSON object, got {type(value).__name__}")
            value = {schema.fields[0].name: value}
        unknown = set(value) - set(schema.field_names())
        if unknown:
            raise HollowWriteError(f"type {type_name} has no fields {sorted(unknown)}")
        values: dict[str, int | float | bool | str | bytes | None] = {}
        for f in schema.fields:
            v = value.get(f.name)
            if f.referenced_type is not None and v is not None:
                values[f.name] = add_json(engine, f.referenced_type, v)
            elif f.type is FieldType.BYTES and isinstance(v, str):
                values[f.name] = bytes.fromhex(v)
            elif isinstance(v, (list, dict)):
                raise HollowWriteError(f"{type_name}.{f.name} is a {f.type.value}, not a nested value")
            else:
                values[f.name] = v
        return engine.add_object(type_name, values)
    if isinstance(schema, (ListSchema, SetSchema)):
        if not isinstance(value, list):
            raise HollowWriteError(f"{type_name} needs a JSON array, got {type(value).__name__}")
        elements = [add_json(engine, schema.element_type, e) for e in value]
        return engine.add_list(type_name, elements) if isinstance(schema, ListSchema) else engine.add_set(
            type_name, elements)
    pairs: list[tuple[Json, Json]] = []
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
        pairs = [(p[0], p[1]) for p in value if isinstance(p, list)]
    else:
        raise HollowWriteError(f"{type_name} needs [key, value] pairs or a JSON object")
    entries = [(add_json(engine, schema.key_type, k), add_json(engine, schema.value_type, v)) for k, v in pairs]
    return engine.add_map(type_name, entries)


# -- diff ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """A record present in both states under one key whose content differs; ``fields`` names what changed."""

    key: list[Json]
    fields: list[str]
    before: Json
    after: Json


@dataclass(slots=True)
class TypeDiff:
    """How one type differs: keys (lists of key field values) added, removed and changed; for a type without a
    primary key, ``added`` and ``removed`` hold records and ``changed`` is empty."""

    type_name: str
    keyed: bool
    added: list[Json] = field(default_factory=list)
    removed: list[Json] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def as_json(self) -> dict[str, Json]:
        changed: list[Json] = [
            {"key": c.key, "fields": list(c.fields), "before": c.before, "after": c.after} for c in self.changed
        ]
        return {"type": self.type_name, "keyed": self.keyed, "added": list(self.added),
                "removed": list(self.removed), "changed": changed}


def _primary_key(a: ReadStateEngine, b: ReadStateEngine, name: str) -> tuple[str, ...] | None:
    sa, sb = a.type(name).schema, b.type(name).schema
    if isinstance(sa, ObjectSchema) and isinstance(sb, ObjectSchema) and sa.primary_key == sb.primary_key:
        return sa.primary_key
    return None


def _keys(
    engine: ReadStateEngine, name: str, pk: tuple[str, ...], ordinals: Iterable[int]
) -> dict[tuple[Json, ...], int]:
    schemas = {t.name: t.schema for t in engine.types()}
    paths = [bind_path(schemas, name, p) for p in pk]
    out: dict[tuple[Json, ...], int] = {}
    for o in ordinals:
        out[tuple(_scalar(v) for v in key_of(engine, paths, o))] = o
    return out


def _sorted_keys(keys: Iterable[tuple[Json, ...]]) -> list[tuple[Json, ...]]:
    """Keys in their natural order (numbers as numbers), by their text when their types do not compare."""
    items = list(keys)
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=repr)


def _changed_fields(before: Json, after: Json) -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return []


def _diff_keyed(
    a: ReadStateEngine, b: ReadStateEngine, name: str, pk: tuple[str, ...],
    ordinals: tuple[Iterable[int], Iterable[int]],
) -> TypeDiff:
    a_ordinals, b_ordinals = ordinals
    ka, kb = _keys(a, name, pk, a_ordinals), _keys(b, name, pk, b_ordinals)
    d = TypeDiff(name, True)
    d.added = [list(k) for k in _sorted_keys(kb.keys() - ka.keys())]
    d.removed = [list(k) for k in _sorted_keys(ka.keys() - kb.keys())]
    for k in _sorted_keys(ka.keys() & kb.keys()):
        before, after = record_json(a, name, ka[k]), record_json(b, name, kb[k])
        if before != after:
            d.changed.append(Change(list(k), _changed_fields(before, after), before, after))
    return d


def _diff_unkeyed(a: ReadStateEngine, b: ReadStateEngine, name: str) -> TypeDiff:
    def bag(e: ReadStateEngine) -> Counter[str]:
        return Counter(json.dumps(record_json(e, name, o), sort_keys=True)
                       for o in e.type(name).populated_ordinals().tolist())

    ba, bb = bag(a), bag(b)
    d = TypeDiff(name, False)
    d.added = [json.loads(r) for r in sorted((bb - ba).elements())]
    d.removed = [json.loads(r) for r in sorted((ba - bb).elements())]
    return d


def diff_states(
    a: ReadStateEngine, b: ReadStateEngine, type_names: Sequence[str] | None = None
) -> dict[str, TypeDiff]:
    """Per type (default: top-level types of ``b`` and of ``a``), how ``b`` differs from ``a``."""
    names = list(type_names) if type_names is not None else list(
        dict.fromkeys([*top_level_types(b), *top_level_types(a)])
    )
    out: dict[str, TypeDiff] = {}
    for name in names:
        if not a.has_type(name) or not b.has_type(name):
            present = b if b.has_type(name) else a
            d = TypeDiff(name, False)
            records = [record_json(present, name, o) for o in present.type(name).populated_ordinals().tolist()]
            (d.added if present is b else d.removed).extend(records)
            out[name] = d
            continue
        pk = _primary_key(a, b, name)
        if pk is None:
            out[name] = _diff_unkeyed(a, b, name)
        else:
            out[name] = _diff_keyed(a, b, name, pk, (a.type(name).populated_ordinals().tolist(),
                                                     b.type(name).populated_ordinals().tolist()))
    return out


def diff_versions(
    retriever: BlobRetriever, from_version: Version, to_version: Version, type_names: Sequence[str] | None = None,
    *, require_digest: bool = True,
) -> dict[str, TypeDiff]:
    """:func:`diff_states` of two versions of a store; along a forward delta chain only touched records are read."""
    a = load_version(retriever, from_version, require_digest=require_digest)
    plan = plan_update(retriever, from_version, to_version, deltas_max=1 << 20, allow_snapshot=False)
    if plan.destination != to_version or not plan.blobs or plan.blobs[0].ref.type is not BlobType.DELTA:
        return diff_states(a, load_version(retriever, to_version, require_digest=require_digest), type_names)
    b = load_version(retriever, from_version, require_digest=require_digest)
    names = list(type_names) if type_names is not None else top_level_types(a)
    keyed = {n: _primary_key(a, b, n) for n in names if a.has_type(n)}
    touched: dict[str, set[tuple[Json, ...]]] = {n: set() for n, pk in keyed.items() if pk}
    for blob in plan.blobs:
        event = b.apply_delta(fetch(blob, require_digest=require_digest).data)
        for n, keys in touched.items():
            ch = event.changes.get(n)
            if ch is None:
                continue
            pk = keyed[n]
            assert pk is not None
            keys.update(_keys(b, n, pk, ch.removed.tolist()))  # ghosts: still readable now
            keys.update(_keys(b, n, pk, ch.added.tolist()))
    out: dict[str, TypeDiff] = {}
    for n in names:
        pk = keyed.get(n)
        if not pk or not b.has_type(n):
            out.update(diff_states(a, b, [n]))
            continue
        ka = {k: o for k, o in _keys(a, n, pk, a.type(n).populated_ordinals().tolist()).items() if k in touched[n]}
        kb = {k: o for k, o in _keys(b, n, pk, b.type(n).populated_ordinals().tolist()).items() if k in touched[n]}
        out[n] = _diff_keyed(a, b, n, pk, (ka.values(), kb.values()))
    return out


# -- history ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """The record with a key at ``version``: ``change`` is present (the first version looked at), added, modified
    or removed (``record`` None)."""

    version: Version
    change: str
    record: Json


def record_history(
    retriever: BlobRetriever, type_name: str, key: Sequence[object], from_version: Version, to_version: Version,
    *, require_digest: bool = True,
) -> list[HistoryEntry]:
    """Each change of the record of ``type_name`` with primary key ``key`` from ``from_version`` (its state there
    is the first entry, if it exists) to ``to_version``, following the store's delta chain."""
    engine = load_version(retriever, from_version, require_digest=require_digest)
    if not engine.has_type(type_name):
        raise HollowError(f"no type {type_name} at version {from_version}")
    index = PrimaryKeyIndex(engine, type_name)
    k = tuple(key)
    out: list[HistoryEntry] = []
    o = index.find(*k)  # type: ignore[arg-type]
    last = record_json(engine, type_name, o) if o >= 0 else None
    if o >= 0:
        out.append(HistoryEntry(from_version, "present", last))
    plan = plan_update(retriever, from_version, to_version, deltas_max=1 << 20, allow_snapshot=False)
    if plan.destination != to_version:
        raise HollowError(f"no delta chain from {from_version} to {to_version} in the store")
    for blob in plan.blobs:
        engine.apply_delta(fetch(blob, require_digest=require_digest).data)
        o = index.find(*k)  # type: ignore[arg-type]
        now = record_json(engine, type_name, o) if o >= 0 else None
        if now != last:
            change = "added" if last is None else "removed" if now is None else "modified"
            out.append(HistoryEntry(blob.ref.to_version, change, now))
            last = now
    index.close()
    return out
