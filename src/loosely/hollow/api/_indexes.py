"""Consumer-side indexes that stay current across deltas and snapshot swaps (none of them is in the blob).

Every index follows a :class:`Consumer`: built for the state it holds when created, updated from each delta's
added and removed ordinals (removed records are still readable as "ghosts" during that update, which is how
their old keys are found), and rebuilt beside the serving state when the consumer loads a snapshot, then
swapped in with it under the refresh lock.  Reads taken under ``consumer.reading()`` see the index and the state
of the same version.

* :class:`HashIndex` (Java ``HollowHashIndex``): records matching values of one or more field paths; paths may
  go through references and collections, so one record can match many keys.  A select path returns related
  records instead (``select_field="actors.element"`` answers "which actors are in movies of 1999").
* :class:`UniqueKeyIndex` (Java ``HollowUniqueKeyIndex``): the one record with a key (the primary key by
  default), on the core's compiled :class:`PrimaryKeyIndex`.
* :class:`PrefixIndex` (Java ``HollowPrefixIndex``): records whose string field starts with a prefix
  (case-insensitive by default; a tokenizer can index every word).  A sorted array plus a small sorted overlay of
  added keys and a set of removed entries, merged when the overlay grows past ``merge_fraction`` of the array --
  a delta costs its size, not the dataset's.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from loosely.hollow.api._consumer import Consumer
from loosely.hollow.api._paths import FieldPath, Value, bind_path, path_column, path_values
from loosely.hollow.core import (
    FieldType,
    GenericObject,
    GenericRecord,
    HollowSchemaError,
    PrimaryKeyIndex,
    ReadStateEngine,
    Records,
    UpdateEvent,
)

__all__ = ["HashIndex", "PrefixIndex", "UniqueKeyIndex"]

Key: TypeAlias = "Value | tuple[Value, ...]"
_Bucket: TypeAlias = "int | set[int]"
_PREFIX_END: Final = "\U0010ffff"


def _schemas(engine: ReadStateEngine) -> dict[str, object]:
    return {t.name: t.schema for t in engine.types()}


class _Followed:
    """Registration with the consumer; subclasses implement ``_prepare`` / ``_install`` / ``_on_delta``."""

    def __init__(self, consumer: Consumer, type_name: str) -> None:
        self.consumer = consumer
        self.type_name = type_name
        self._engine: ReadStateEngine | None = None

    def _prepare(self, engine: ReadStateEngine) -> object:
        raise NotImplementedError

    def _install(self, engine: ReadStateEngine, prepared: object) -> None:
        raise NotImplementedError

    def _on_delta(self, engine: ReadStateEngine, event: UpdateEvent) -> None:
        raise NotImplementedError

    def _follow(self) -> None:
        self.consumer._register_index(self)

    def close(self) -> None:
        """Stop following the consumer."""
        self.consumer._unregister_index(self)

    def _changes(self, event: UpdateEvent) -> tuple[list[int], list[int]] | None:
        ch = event.changes.get(self.type_name)
        if ch is None:
            return None
        return ch.removed.tolist(), ch.added.tolist()


# -- hash index ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _HashTable:
    paths: tuple[FieldPath, ...]
    select: FieldPath | None
    buckets: dict[Key, _Bucket] = field(default_factory=dict)


class HashIndex(_Followed):
    """Records of ``type_name`` whose ``match_fields`` hold the given values (all of them, in order).

    >>> from dataclasses import dataclass
    >>> from loosely.hollow.api import InMemoryBlobStore, Producer, Consumer
    >>> @dataclass
    ... class Movie:
    ...     id: int
    ...     year: int
    ...     tags: set[str]
    >>> store = InMemoryBlobStore()
    >>> p = Producer(publisher=store, announcer=store, data_model=[Movie])
    >>> movies = [Movie(1, 1999, {"sf"}), Movie(2, 1999, {"drama"}), Movie(3, 2003, {"sf"})]
    >>> _ = p.run_cycle(lambda s: s.add_all(movies))
    >>> c = Consumer(retriever=store, watcher=store); _ = c.refresh()
    >>> by_year, by_tag = HashIndex(c, "Movie", ["year"]), HashIndex(c, "Movie", ["tags.element"])
    >>> [m["id"] for m in by_year.records(1999)], [m["id"] for m in by_tag.records("sf")]
    ([1, 2], [1, 3])
    """

    def __init__(
        self, consumer: Consumer, type_name: str, match_fields: Sequence[str], select_field: str | None = None
    ) -> None:
        super().__init__(consumer, type_name)
        if not match_fields:
            raise HollowSchemaError("a hash index needs at least one match field")
        self.match_fields = tuple(match_fields)
        self.select_field = select_field
        self._table = _HashTable((), None)
        self._follow()

    def _bind(self, engine: ReadStateEngine) -> tuple[tuple[FieldPath, ...], FieldPath | None]:
        schemas = _schemas(engine)
        paths = tuple(bind_path(schemas, self.type_name, p) for p in self.match_fields)  # type: ignore[arg-type]
        select = bind_path(schemas, self.type_name, self.select_field) if self.select_field else None  # type: ignore[arg-type]
        return paths, select

    def _keys(self, engine: ReadStateEngine, paths: tuple[FieldPath, ...], ordinal: int) -> list[Key]:
        values = [path_values(engine, fp, ordinal) for fp in paths]
        if len(values) == 1:
            return list(dict.fromkeys(values[0]))
        return list(dict.fromkeys(itertools.product(*values)))

    def _prepare(self, engine: ReadStateEngine) -> object:
        paths, select = self._bind(engine)
        table = _HashTable(paths, select)
        ordinals = engine.type(self.type_name).populated_ordinals()
        if len(paths) == 1 and not paths[0].multi:  # one column read instead of a walk per record
            values, nulls = path_column(engine, paths[0], ordinals)
            for o, v, n in zip(ordinals.tolist(), values.tolist(), nulls.tolist(), strict=True):
                _add(table.buckets, None if n else v, o)
        else:
            for o in ordinals.tolist():
                for k in self._keys(engine, paths, o):
                    _add(table.buckets, k, o)
        return table

    def _install(self, engine: ReadStateEngine, prepared: object) -> None:
        assert isinstance(prepared, _HashTable)
        self._engine, self._table = engine, prepared

    def _on_delta(self, engine: ReadStateEngine, event: UpdateEvent) -> None:
        changes = self._changes(event)
        if changes is None:
            return
        removed, added = changes
        t = self._table
        for o in removed:  # ghosts: still readable during this update
            for k in self._keys(engine, t.paths, o):
                _discard(t.buckets, k, o)
        for o in added:
            for k in self._keys(engine, t.paths, o):
                _add(t.buckets, k, o)

    def find(self, *values: Value) -> list[int]:
        """Ordinals of the matching records (of the select type when a select field is set), ascending."""
        key: Key = values[0] if len(values) == 1 else tuple(values)
        if len(values) != len(self.match_fields):
            raise TypeError(f"this index matches {len(self.match_fields)} fields, got {len(values)} values")
        bucket = self._table.buckets.get(key)
        roots = [] if bucket is None else [bucket] if isinstance(bucket, int) else sorted(bucket)
        select = self._table.select
        if select is None or self._engine is None:
            return roots
        out: set[int] = set()
        for o in roots:
            out.update(int(v) for v in path_values(self._engine, select, o) if isinstance(v, int))
        return sorted(out)

    def records(self, *values: Value) -> list[GenericRecord]:
        engine = self._engine
        if engine is None:
            return []
        select = self._table.select
        type_name = self.type_name if select is None else select.target_type
        if type_name is None:
            raise HollowSchemaError(f"select field {self.select_field!r} ends on a value, not a record")
        records = Records(engine)
        return [records.record(type_name, o) for o in self.find(*values)]

    def __len__(self) -> int:
        """Number of distinct keys."""
        return len(self._table.buckets)


def _add(buckets: dict[Key, _Bucket], key: Key, o: int) -> None:
    b = buckets.get(key)
    if b is None:
        buckets[key] = o
    elif isinstance(b, int):
        if b != o:
            buckets[key] = {b, o}
    else:
        b.add(o)


def _discard(buckets: dict[Key, _Bucket], key: Key, o: int) -> None:
    b = buckets.get(key)
    if b is None:
        return
    if isinstance(b, int):
        if b == o:
            del buckets[key]
        return
    b.discard(o)
    if len(b) == 1:
        buckets[key] = next(iter(b))


# -- unique key index ---------------------------------------------------------------------------------------


class UniqueKeyIndex(_Followed):
    """The record of ``type_name`` with a key (the type's primary key unless ``fields`` names one).

    >>> from dataclasses import dataclass
    >>> from loosely.hollow.api import InMemoryBlobStore, Producer, Consumer
    >>> from loosely.hollow.core import hollow_type
    >>> @hollow_type(primary_key=("id",))
    ... @dataclass
    ... class Movie:
    ...     id: int
    ...     title: str
    >>> store = InMemoryBlobStore()
    >>> p = Producer(publisher=store, announcer=store, data_model=[Movie])
    >>> _ = p.run_cycle(lambda s: s.add(Movie(7, "Heat")))
    >>> c = Consumer(retriever=store, watcher=store); _ = c.refresh()
    >>> index = UniqueKeyIndex(c, "Movie")
    >>> index.get(7)["title"]["value"], index.find(8)
    ('Heat', -1)
    """

    def __init__(self, consumer: Consumer, type_name: str, fields: Sequence[str] | None = None) -> None:
        super().__init__(consumer, type_name)
        self.fields = None if fields is None else tuple(fields)
        self._index: PrimaryKeyIndex | None = None
        self._follow()

    def _prepare(self, engine: ReadStateEngine) -> object:
        return PrimaryKeyIndex(engine, self.type_name, self.fields)  # follows ``engine``'s deltas by itself

    def _install(self, engine: ReadStateEngine, prepared: object) -> None:
        assert isinstance(prepared, PrimaryKeyIndex)
        if self._index is not None:
            self._index.close()
        self._engine, self._index = engine, prepared

    def _on_delta(self, engine: ReadStateEngine, event: UpdateEvent) -> None:
        pass  # the core index listens to the engine

    def close(self) -> None:
        super().close()
        if self._index is not None:
            self._index.close()

    def find(self, *key: Value) -> int:
        """The ordinal of the record with this key, or -1."""
        return -1 if self._index is None else self._index.find(*key)

    def get(self, *key: Value) -> GenericObject | None:
        return None if self._index is None else self._index.get(*key)

    def __len__(self) -> int:
        return 0 if self._index is None else len(self._index)


# -- prefix index -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _PrefixTable:
    path: FieldPath
    keys: list[str] = field(default_factory=list)  # sorted
    ordinals: list[int] = field(default_factory=list)  # parallel to keys
    extra: list[tuple[str, int]] = field(default_factory=list)  # sorted overlay of added entries
    dropped: set[tuple[str, int]] = field(default_factory=set)  # entries of ``keys`` no longer there


class PrefixIndex(_Followed):
    """Records of ``type_name`` whose string ``field`` (a path) starts with a prefix.

    ``tokenize`` turns a value into the keys to index (default: the whole value); keys and queries are
    case-folded unless ``case_sensitive``.

    >>> from dataclasses import dataclass
    >>> from loosely.hollow.api import InMemoryBlobStore, Producer, Consumer
    >>> @dataclass
    ... class Movie:
    ...     title: str
    >>> store = InMemoryBlobStore()
    >>> p = Producer(publisher=store, announcer=store, data_model=[Movie])
    >>> _ = p.run_cycle(lambda s: s.add_all([Movie("The Matrix"), Movie("Matrix Reloaded"), Movie("Heat")]))
    >>> c = Consumer(retriever=store, watcher=store); _ = c.refresh()
    >>> words = PrefixIndex(c, "Movie", "title", tokenize=str.split)
    >>> sorted(m["title"]["value"] for m in words.records("matr"))   # title is a reference to a String record
    ['Matrix Reloaded', 'The Matrix']
    """

    def __init__(
        self,
        consumer: Consumer,
        type_name: str,
        field: str,
        *,
        tokenize: Callable[[str], Iterable[str]] | None = None,
        case_sensitive: bool = False,
        merge_fraction: float = 0.05,
    ) -> None:
        super().__init__(consumer, type_name)
        if not 0 < merge_fraction <= 1:
            raise ValueError("merge_fraction must be in (0, 1]")
        self.field = field
        self.tokenize = tokenize
        self.case_sensitive = case_sensitive
        self.merge_fraction = merge_fraction
        self._table: _PrefixTable | None = None
        self._follow()

    def _tokens(self, value: Value) -> list[str]:
        if not isinstance(value, str):
            return []
        text = value if self.case_sensitive else value.casefold()
        if self.tokenize is None:
            return [text]
        return list(dict.fromkeys(self.tokenize(text)))

    def _entries(self, engine: ReadStateEngine, path: FieldPath, ordinal: int) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for v in path_values(engine, path, ordinal):
            out.extend((t, ordinal) for t in self._tokens(v))
        return out

    def _prepare(self, engine: ReadStateEngine) -> object:
        path = bind_path(_schemas(engine), self.type_name, self.field)  # type: ignore[arg-type]
        if path.field_type is not FieldType.STRING:
            raise HollowSchemaError(f"prefix index field {self.field!r} is a {path.field_type.value}, not a STRING")
        ordinals = engine.type(self.type_name).populated_ordinals()
        entries: list[tuple[str, int]] = []
        if not path.multi:
            values, nulls = path_column(engine, path, ordinals)
            for o, v, n in zip(ordinals.tolist(), values.tolist(), nulls.tolist(), strict=True):
                if not n:
                    entries.extend((t, o) for t in self._tokens(v))
        else:
            for o in ordinals.tolist():
                entries.extend(self._entries(engine, path, o))
        entries.sort()
        return _PrefixTable(path, [k for k, _ in entries], [o for _, o in entries])

    def _install(self, engine: ReadStateEngine, prepared: object) -> None:
        assert isinstance(prepared, _PrefixTable)
        self._engine, self._table = engine, prepared

    def _on_delta(self, engine: ReadStateEngine, event: UpdateEvent) -> None:
        changes = self._changes(event)
        t = self._table
        if changes is None or t is None:
            return
        removed, added = changes
        extra = set(t.extra)
        for o in removed:
            for e in self._entries(engine, t.path, o):
                if e in extra:
                    extra.discard(e)
                else:
                    t.dropped.add(e)
        for o in added:
            for e in self._entries(engine, t.path, o):
                if e in t.dropped:
                    t.dropped.discard(e)
                else:
                    extra.add(e)
        t.extra = sorted(extra)
        if len(t.extra) + len(t.dropped) > self.merge_fraction * max(len(t.keys), 1):
            self._merge(t)

    @staticmethod
    def _merge(t: _PrefixTable) -> None:
        kept = [(k, o) for k, o in zip(t.keys, t.ordinals, strict=True) if (k, o) not in t.dropped]
        merged = sorted(itertools.chain(kept, t.extra))
        t.keys = [k for k, _ in merged]
        t.ordinals = [o for _, o in merged]
        t.extra, t.dropped = [], set()

    def find(self, prefix: str) -> list[int]:
        """Ordinals of the records with a key starting with ``prefix``, ascending."""
        t = self._table
        if t is None:
            return []
        p = prefix if self.case_sensitive else prefix.casefold()
        lo, hi = bisect.bisect_left(t.keys, p), bisect.bisect_left(t.keys, p + _PREFIX_END)
        out = {o for k, o in zip(t.keys[lo:hi], t.ordinals[lo:hi], strict=True) if (k, o) not in t.dropped}
        elo = bisect.bisect_left(t.extra, (p, -1))
        ehi = bisect.bisect_left(t.extra, (p + _PREFIX_END, -1))
        out.update(o for _, o in t.extra[elo:ehi])
        return sorted(out)

    def records(self, prefix: str) -> list[GenericRecord]:
        engine = self._engine
        if engine is None:
            return []
        records = Records(engine)
        return [records.record(self.type_name, o) for o in self.find(prefix)]

    def __len__(self) -> int:
        t = self._table
        return 0 if t is None else len(t.keys) - len(t.dropped) + len(t.extra)

