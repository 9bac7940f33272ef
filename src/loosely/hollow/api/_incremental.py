"""Incremental cycles: a populate function that gives only changes, by primary key (Java ``Incremental``).

Theory of operation
-------------------
:meth:`Producer.run_incremental_cycle <loosely.hollow.api.Producer.run_incremental_cycle>` hands the caller an
:class:`IncrementalWriteState`, which records changes keyed by (type, primary key): add or replace, add if absent,
delete.  The cycle itself is an ordinary one whose populate step is :func:`apply_changes`: the write engine keeps
every record of the previous cycle, the records the changes replace or delete are removed together with what only
they reference (Java's ``TransitiveSetTraverser``: everything reachable from them, except records that something
outside the removal still references), then the new and replacing objects are added.  Records are found by
primary key indexes over the producer's prior read state (:class:`PriorKeyIndexes`, built on first use and
closed when that state changes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from loosely.hollow.core import (
    HollowWriteError,
    ListSchema,
    MapSchema,
    ObjectMapper,
    ObjectSchema,
    PrimaryKeyIndex,
    ReadStateEngine,
    Schema,
    SetSchema,
    WriteStateEngine,
    column,
)

__all__ = ["IncrementalWriteState", "PriorKeyIndexes", "apply_changes"]


class IncrementalWriteState:
    """What an incremental populate function gets: changes by primary key; everything else is kept.

    >>> from dataclasses import dataclass
    >>> from loosely.hollow.api import InMemoryBlobStore, Producer
    >>> from loosely.hollow.core import TypedReader, hollow_type
    >>> @hollow_type(primary_key=("id",))
    ... @dataclass
    ... class Movie:
    ...     id: int
    ...     title: str
    >>> store = InMemoryBlobStore()
    >>> producer = Producer(publisher=store, announcer=store, data_model=[Movie])
    >>> _ = producer.run_cycle(lambda state: state.add_all([Movie(1, "The Matrix"), Movie(2, "Alien")]))
    >>> def changes(state: IncrementalWriteState) -> None:
    ...     state.add_or_modify(Movie(2, "Aliens"))
    ...     state.delete(Movie(1, ""))  # only the primary key counts
    >>> _ = producer.run_incremental_cycle(changes)
    >>> sorted(m.title for m in TypedReader(producer.read_state, Movie))
    ['Aliens']
    """

    def __init__(self, mapper: ObjectMapper) -> None:
        self._mapper = mapper
        self.changes: dict[tuple[str, tuple[object, ...]], object | None] = {}
        self.if_absent: set[tuple[str, tuple[object, ...]]] = set()
        self.header_tags: dict[str, str] = {}

    def add_header_tag(self, name: str, value: str) -> None:
        """Set a header tag of the version this cycle writes (as ``state.engine.add_header_tag`` in a full
        cycle; Java ``getStateEngine().addHeaderTag``)."""
        self.header_tags[name] = value

    def _key(self, obj: object) -> tuple[str, tuple[object, ...]]:
        schema = self._mapper.schema(type(obj))
        if not schema.primary_key:
            raise HollowWriteError(f"type {schema.name} has no primary key; incremental cycles need one")
        return schema.name, tuple(_attr_path(obj, p) for p in schema.primary_key)

    def add_or_modify(self, obj: object) -> None:
        """Add ``obj``, replacing the record with the same primary key if there is one."""
        key = self._key(obj)
        self.changes[key] = obj
        self.if_absent.discard(key)

    def add_if_absent(self, obj: object) -> None:
        """Add ``obj`` unless a record with its primary key exists."""
        key = self._key(obj)
        self.changes[key] = obj
        self.if_absent.add(key)

    def delete(self, obj: object) -> None:
        """Delete the record with ``obj``'s primary key (no-op when there is none)."""
        self.delete_key(*self._key(obj))

    def delete_key(self, type_name: str, key: tuple[object, ...]) -> None:
        self.changes[(type_name, tuple(key))] = None
        self.if_absent.discard((type_name, tuple(key)))


def _attr_path(obj: object, path: str) -> object:
    value = obj
    for part in path.split("."):
        value = getattr(value, part)
    return value


class PriorKeyIndexes:
    """Primary key indexes over the producer's prior read state, one per type, built on first use."""

    def __init__(self) -> None:
        self._indexes: dict[str, PrimaryKeyIndex] = {}

    def get(self, prior: ReadStateEngine | None, type_name: str) -> PrimaryKeyIndex | None:
        """The index of ``type_name`` over ``prior`` (None when there is no such type); :meth:`close` when
        ``prior`` is replaced."""
        if prior is None or not prior.has_type(type_name):
            return None
        idx = self._indexes.get(type_name)
        if idx is None:
            idx = PrimaryKeyIndex(prior, type_name)
            self._indexes[type_name] = idx
        return idx

    def close(self) -> None:
        for idx in self._indexes.values():
            idx.close()
        self._indexes.clear()


def apply_changes(
    w: WriteStateEngine,
    add: Callable[[object], object],
    prior: ReadStateEngine | None,
    indexes: PriorKeyIndexes,
    changes: IncrementalWriteState,
) -> None:
    """The populate step of an incremental cycle: keep the previous records, remove what the changes replace or
    delete (with what only they reference), add the new objects with ``add``."""
    w.add_all_from_previous_cycle()
    removals: dict[str, set[int]] = {}
    skip: set[tuple[str, tuple[object, ...]]] = set()
    for (type_name, key), _obj in changes.changes.items():
        idx = indexes.get(prior, type_name)
        o = -1 if idx is None else idx.find(*key)  # type: ignore[arg-type]
        if o < 0:
            continue
        if (type_name, key) in changes.if_absent:
            skip.add((type_name, key))
        else:
            removals.setdefault(type_name, set()).add(o)
    if prior is not None and removals:
        for type_name, ordinals in _closure(prior, removals).items():
            for o in sorted(ordinals):
                w.remove_ordinal_from_this_cycle(type_name, o)
    for k, obj in changes.changes.items():
        if obj is not None and k not in skip:
            add(obj)


def _children(schema: Schema) -> list[tuple[str, int]]:
    """(referenced type, field index or -1 for elements / -2 map keys / -3 map values)."""
    if isinstance(schema, ObjectSchema):
        return [(f.referenced_type, i) for i, f in enumerate(schema.fields) if f.referenced_type is not None]
    if isinstance(schema, (ListSchema, SetSchema)):
        return [(schema.element_type, -1)]
    assert isinstance(schema, MapSchema)
    return [(schema.key_type, -2), (schema.value_type, -3)]


def _referenced(engine: ReadStateEngine, type_name: str, how: int, ordinals: Iterable[int]) -> Iterable[int]:
    view = engine.type(type_name).view
    for o in ordinals:
        if how >= 0:
            v = view.get(o, how)
            if v is not None:
                yield int(v)
        elif how == -1:
            yield from view.elements(o)
        else:
            k = 0 if how == -2 else 1
            for e in view.entries(o):
                yield e[k]


def _topological(engine: ReadStateEngine) -> list[str]:
    """Type names, every type before the types it references (records only reference records of other types)."""
    schemas = {t.name: t.schema for t in engine.types()}
    seen: set[str] = set()
    post: list[str] = []

    def visit(name: str) -> None:
        if name in seen or name not in schemas:
            return
        seen.add(name)
        for child, _ in _children(schemas[name]):
            visit(child)
        post.append(name)

    for name in schemas:
        visit(name)
    return post[::-1]


def _closure(engine: ReadStateEngine, roots: dict[str, set[int]]) -> dict[str, set[int]]:
    """Java ``TransitiveSetTraverser``: the records to remove with ``roots`` -- everything they reference,
    except records that something outside the removal still references."""
    order = _topological(engine)
    marked = {t: set(v) for t, v in roots.items()}
    for name in order:  # parents first: mark what the marked records reference
        for child, how in _children(engine.type(name).schema):
            if marked.get(name) and engine.has_type(child):
                marked.setdefault(child, set()).update(_referenced(engine, name, how, marked[name]))
    for name in order:  # parents first: keep children that unmarked records still reference
        for child, how in _children(engine.type(name).schema):
            candidates = marked.get(child)
            if not candidates:
                continue
            outside = np.setdiff1d(
                engine.type(name).populated_ordinals(), np.fromiter(marked.get(name, ()), np.int64)
            )
            if how >= 0:  # a REFERENCE field: one vectorised column read
                schema = engine.type(name).schema
                assert isinstance(schema, ObjectSchema)
                col = column(engine.type(name), schema.fields[how].name, outside)
                still = np.unique(col.values[~col.nulls].astype(np.int64))
                candidates.difference_update(still.tolist())
                continue
            for ref in _referenced(engine, name, how, outside.tolist()):
                candidates.discard(ref)
                if not candidates:
                    break
    return marked
