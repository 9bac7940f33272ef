"""The generic object API: records of any type read by ordinal and field name, without generated code.

It is the Python counterpart of Java's ``GenericHollowObject`` / ``GenericHollowList`` / ``...Set`` / ``...Map``:
a record is a light handle ``(type state, ordinal)``; reading a field goes straight to the compiled accessor.
REFERENCE fields come back as handles of the referenced record, so a path through the data reads naturally::

    movie = records.object("Movie", 3)
    movie["title"]                       # a str (inline STRING field)
    movie["director"]["name"]            # follow a reference
    [a["name"] for a in movie["cast"]]   # iterate a SET
    movie["cast"].find("Keanu")          # SET lookup by its hash key
    movie["ratings"].find("imdb")        # MAP value by its key type's hash key

Handles stay valid across deltas only for ordinals that stay populated (or are ghosts of the last delta).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, TypeAlias

from loosely.hollow.core._errors import HollowSchemaError
from loosely.hollow.core._hashing import hash_int
from loosely.hollow.core._keys import KeyPath, KeyValue, bind_key, key_hash
from loosely.hollow.core._read_state import ReadStateEngine, TypeReadState
from loosely.hollow.core._schema import FieldType, ListSchema, MapSchema, ObjectSchema, Schema, SetSchema

__all__ = [
    "GenericList",
    "GenericMap",
    "GenericObject",
    "GenericRecord",
    "GenericSet",
    "Records",
    "record_key",
]

FieldValue: TypeAlias = "int | float | bool | str | bytes | GenericRecord | None"
_NO_KEY: Final[tuple[KeyPath, ...]] = ()


class Records:
    """Entry point of the generic API over one :class:`ReadStateEngine`; caches bound hash keys."""

    __slots__ = ("_keys", "engine")

    def __init__(self, engine: ReadStateEngine) -> None:
        self.engine = engine
        self._keys: dict[str, tuple[KeyPath, ...]] = {}

    def record(self, type_name: str, ordinal: int) -> GenericRecord:
        return _wrap(self, self.engine.type(type_name), ordinal)

    def object(self, type_name: str, ordinal: int) -> GenericObject:
        rec = self.record(type_name, ordinal)
        if not isinstance(rec, GenericObject):
            raise TypeError(f"{type_name} is not an OBJECT type")
        return rec

    def all(self, type_name: str) -> Iterator[GenericRecord]:
        """Every populated record of a type, in ordinal order."""
        state = self.engine.type(type_name)
        for o in state.populated_ordinals().tolist():
            yield _wrap(self, state, o)

    def hash_key(self, schema: Schema) -> tuple[KeyPath, ...]:
        """The bound hash key of a SET or MAP type (empty when it has none)."""
        cached = self._keys.get(schema.name)
        if cached is None:
            if isinstance(schema, (SetSchema, MapSchema)) and schema.hash_key is not None:
                element = schema.element_type if isinstance(schema, SetSchema) else schema.key_type
                schemas = {t.name: t.schema for t in self.engine.types()}
                cached = bind_key(schemas, element, schema.hash_key)
            else:
                cached = _NO_KEY
            self._keys[schema.name] = cached
        return cached


def record_key(records: Records, paths: tuple[KeyPath, ...], ordinal: int) -> tuple[KeyValue, ...]:
    """The values of a key's fields read from record ``ordinal`` (following references)."""
    values: list[KeyValue] = []
    engine = records.engine
    for kp in paths:
        o: int | None = ordinal
        value: KeyValue = None
        for i, (type_name, field) in enumerate(kp.hops):
            assert o is not None
            view = engine.type(type_name).view
            if i < len(kp.hops) - 1:
                ref = view.get(o, field)
                if ref is None:
                    o = None
                    break
                o = int(ref)
            else:
                value = view.get(o, field)
        values.append(value if o is not None else None)
    return tuple(values)


class GenericRecord:
    """A record handle: a type state and an ordinal."""

    __slots__ = ("_records", "ordinal", "state")

    def __init__(self, records: Records, state: TypeReadState, ordinal: int) -> None:
        self._records = records
        self.state = state
        self.ordinal = ordinal

    @property
    def type_name(self) -> str:
        return self.state.name

    @property
    def schema(self) -> Schema:
        return self.state.schema

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenericRecord) and other.state is self.state and other.ordinal == self.ordinal

    def __hash__(self) -> int:
        return hash((id(self.state), self.ordinal))

    def __repr__(self) -> str:
        return f"<{self.state.name} #{self.ordinal}>"


def _wrap(records: Records, state: TypeReadState, ordinal: int) -> GenericRecord:
    schema = state.schema
    if isinstance(schema, ObjectSchema):
        return GenericObject(records, state, ordinal)
    if isinstance(schema, ListSchema):
        return GenericList(records, state, ordinal)
    if isinstance(schema, SetSchema):
        return GenericSet(records, state, ordinal)
    return GenericMap(records, state, ordinal)


class GenericObject(GenericRecord):
    """An OBJECT record: ``obj["field"]`` reads a field; REFERENCE fields return record handles."""

    __slots__ = ()

    def _index(self, field: str) -> int:
        schema = self.state.schema
        assert isinstance(schema, ObjectSchema)
        i = schema.position(field)
        if i < 0:
            raise KeyError(f"type {schema.name} has no field {field!r}")
        return i

    def __getitem__(self, field: str) -> FieldValue:
        i = self._index(field)
        value = self.state.view.get(self.ordinal, i)
        schema = self.state.schema
        assert isinstance(schema, ObjectSchema)
        ref = schema.fields[i].referenced_type
        if ref is None or value is None:
            return value
        return _wrap(self._records, self._records.engine.type(ref), int(value))

    def get(self, field: str, default: FieldValue = None) -> FieldValue:
        schema = self.state.schema
        assert isinstance(schema, ObjectSchema)
        if schema.position(field) < 0:
            return default
        return self[field]

    def ordinal_of(self, field: str) -> int | None:
        """The ordinal a REFERENCE field points to (None when null)."""
        i = self._index(field)
        schema = self.state.schema
        assert isinstance(schema, ObjectSchema)
        if schema.fields[i].type is not FieldType.REFERENCE:
            raise HollowSchemaError(f"{schema.name}.{field} is not a REFERENCE field")
        value = self.state.view.get(self.ordinal, i)
        return None if value is None else int(value)

    def is_null(self, field: str) -> bool:
        return self.state.view.get(self.ordinal, self._index(field)) is None

    def fields(self) -> tuple[str, ...]:
        schema = self.state.schema
        assert isinstance(schema, ObjectSchema)
        return schema.field_names()

    def values(self) -> tuple[int | float | bool | str | bytes | None, ...]:
        """All fields in schema order, REFERENCE fields as ordinals (one call into the compiled reader)."""
        return self.state.view.record(self.ordinal)


class GenericList(GenericRecord):
    """A LIST record: a sequence of element records."""

    __slots__ = ()

    def _element_state(self) -> TypeReadState:
        schema = self.state.schema
        assert isinstance(schema, ListSchema)
        return self._records.engine.type(schema.element_type)

    def ordinals(self) -> list[int]:
        return self.state.view.elements(self.ordinal)

    def __len__(self) -> int:
        return self.state.view.size(self.ordinal)

    def __getitem__(self, index: int) -> GenericRecord:
        ordinals = self.ordinals()
        return _wrap(self._records, self._element_state(), ordinals[index])

    def __iter__(self) -> Iterator[GenericRecord]:
        element_state = self._element_state()
        for o in self.ordinals():
            yield _wrap(self._records, element_state, o)


class GenericSet(GenericRecord):
    """A SET record: element records in bucket order; lookups by element ordinal or by hash key."""

    __slots__ = ()

    def _element_state(self) -> TypeReadState:
        schema = self.state.schema
        assert isinstance(schema, SetSchema)
        return self._records.engine.type(schema.element_type)

    def ordinals(self) -> list[int]:
        return self.state.view.elements(self.ordinal)

    def buckets(self) -> list[tuple[int, int]]:
        """``(bucket, element ordinal)`` for the occupied buckets."""
        return self.state.view.buckets(self.ordinal)

    def __len__(self) -> int:
        return self.state.view.size(self.ordinal)

    def __iter__(self) -> Iterator[GenericRecord]:
        element_state = self._element_state()
        for o in self.ordinals():
            yield _wrap(self._records, element_state, o)

    def contains_ordinal(self, element: int) -> bool:
        """Whether the set holds the record with this ordinal.

        A set with a hash key placed its elements by the key's hash, so the element's key is read and probed
        for; otherwise the probe starts at ``hashInt(element)`` (Java ``contains(ordinal, value)``).
        """
        paths = self._records.hash_key(self.state.schema)
        if paths:
            key = record_key(self._records, paths, element)
            if None in key:
                return element in self.state.view.elements(self.ordinal)
            return element in self.state.view.probe(self.ordinal, key_hash(key, paths))
        return element in self.state.view.probe(self.ordinal, hash_int(element))

    def __contains__(self, item: object) -> bool:
        if isinstance(item, GenericRecord):
            return self.contains_ordinal(item.ordinal)
        if isinstance(item, int):
            return self.contains_ordinal(item)
        return False

    def find(self, *key: KeyValue) -> GenericRecord | None:
        """The element whose hash key equals ``key`` (Java ``findElement``), or None."""
        paths = self._records.hash_key(self.state.schema)
        if not paths:
            raise HollowSchemaError(f"type {self.state.name} has no hash key")
        if len(key) != len(paths):
            return None
        h = key_hash(key, paths)
        for candidate in self.state.view.probe(self.ordinal, h):
            if record_key(self._records, paths, candidate) == key:
                return _wrap(self._records, self._element_state(), candidate)
        return None


class GenericMap(GenericRecord):
    """A MAP record: entries in bucket order; lookups by key ordinal or by the key type's hash key."""

    __slots__ = ()

    def _states(self) -> tuple[TypeReadState, TypeReadState]:
        schema = self.state.schema
        assert isinstance(schema, MapSchema)
        engine = self._records.engine
        return engine.type(schema.key_type), engine.type(schema.value_type)

    def entry_ordinals(self) -> list[tuple[int, int]]:
        return self.state.view.entries(self.ordinal)

    def buckets(self) -> list[tuple[int, int, int]]:
        """``(bucket, key ordinal, value ordinal)`` for the occupied buckets."""
        return self.state.view.map_buckets(self.ordinal)

    def __len__(self) -> int:
        return self.state.view.size(self.ordinal)

    def items(self) -> Iterator[tuple[GenericRecord, GenericRecord]]:
        ks, vs = self._states()
        for k, v in self.entry_ordinals():
            yield _wrap(self._records, ks, k), _wrap(self._records, vs, v)

    def keys(self) -> Iterator[GenericRecord]:
        return (k for k, _ in self.items())

    def values(self) -> Iterator[GenericRecord]:
        return (v for _, v in self.items())

    def get_ordinal(self, key_ordinal: int) -> int | None:
        """The value ordinal for a key ordinal, or None (Java ``get(ordinal, keyOrdinal)``).

        A map with a hash key placed its entries by the key record's hash key, so that is what is probed for.
        """
        paths = self._records.hash_key(self.state.schema)
        h = hash_int(key_ordinal)
        if paths:
            key = record_key(self._records, paths, key_ordinal)
            if None in key:
                return dict(self.entry_ordinals()).get(key_ordinal)
            h = key_hash(key, paths)
        for k, v in self.state.view.map_probe(self.ordinal, h):
            if k == key_ordinal:
                return v
        return None

    def _find_entry(self, key: tuple[KeyValue, ...]) -> tuple[int, int] | None:
        paths = self._records.hash_key(self.state.schema)
        if not paths:
            raise HollowSchemaError(f"type {self.state.name} has no hash key")
        if len(key) != len(paths):
            return None
        for k, v in self.state.view.map_probe(self.ordinal, key_hash(key, paths)):
            if record_key(self._records, paths, k) == key:
                return k, v
        return None

    def find(self, *key: KeyValue) -> GenericRecord | None:
        """The value whose key's hash key equals ``key`` (Java ``findValue``), or None."""
        entry = self._find_entry(key)
        return None if entry is None else _wrap(self._records, self._states()[1], entry[1])

    def find_key(self, *key: KeyValue) -> GenericRecord | None:
        """The key record whose hash key equals ``key`` (Java ``findKey``), or None."""
        entry = self._find_entry(key)
        return None if entry is None else _wrap(self._records, self._states()[0], entry[0])
