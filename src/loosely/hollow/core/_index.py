"""Indexes over a read state that follow it through deltas, and vectorised column reads.

:class:`PrimaryKeyIndex` is the counterpart of Java's ``HollowPrimaryKeyIndex``: an open-addressing table of
ordinals (the compiled ``KeyIndex``), keyed by field values read from the records themselves, so it costs a
few bytes per record.  It is built when created and updated from each :class:`UpdateEvent` of the engine:
removed ordinals are located through their still-readable ghost records, added ones inserted, and the table
is rebuilt when deleted slots pile up.  A directly addressed table (dense integer ids) grows to cover added
ids past its range rather than being rebuilt, as long as it stays dense.  ``field_reader`` returns a compiled
callable doing key lookup and one field read in a single call, ``record_reader`` one reading the whole record
(lists of boxed values included), for hot paths; how they keep the lookup's cache misses short is told in
``_native.c`` ("compiled readers").

:func:`column` reads one field of many records into numpy arrays in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from loosely.hollow.core import _native
from loosely.hollow.core._access import GenericObject, Records
from loosely.hollow.core._errors import HollowSchemaError
from loosely.hollow.core._keys import KeyValue, bind_key
from loosely.hollow.core._read_state import ReadStateEngine, TypeReadState, UpdateEvent
from loosely.hollow.core._schema import FieldType, ListSchema, ObjectSchema, SetSchema

__all__ = ["Column", "PrimaryKeyIndex", "column"]

FieldValue = int | float | bool | str | bytes | None


class PrimaryKeyIndex:
    """Ordinals of one OBJECT type by primary key, kept current as the engine applies deltas.

    >>> from loosely.hollow.core import WriteStateEngine, parse_schemas
    >>> w = WriteStateEngine(parse_schemas("Movie @PrimaryKey(id) { int id; string title; }"))
    >>> w.add_object("Movie", {"id": 42, "title": "Hollow"})
    0
    >>> index = PrimaryKeyIndex(ReadStateEngine.from_snapshot(w.write_snapshot()), "Movie")
    >>> index.find(42), index.find(7)
    (0, -1)
    >>> index.field_reader("title")(42)
    'Hollow'
    """

    def __init__(self, engine: ReadStateEngine, type_name: str, fields: Sequence[str] | None = None) -> None:
        state = engine.type(type_name)
        schema = state.schema
        if not isinstance(schema, ObjectSchema):
            raise HollowSchemaError(f"type {type_name} is a {schema.kind.value}; a primary key needs an OBJECT type")
        paths = tuple(fields) if fields is not None else schema.primary_key
        if not paths:
            raise HollowSchemaError(f"type {type_name} has no primary key; name the key fields")
        schemas = {t.name: t.schema for t in engine.types()}
        self.engine = engine
        self.type_name = type_name
        self.key_paths = bind_key(schemas, type_name, paths)
        self._state = state
        self._native = _native.KeyIndex(
            tuple(tuple((engine.type(t).view, f) for t, f in kp.hops) for kp in self.key_paths)
        )
        self._native.build(state.populated_ordinals())
        engine.add_listener(self._on_update)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(kp.path for kp in self.key_paths)

    def _on_update(self, event: UpdateEvent) -> None:
        changes = event.changes.get(self.type_name)
        if changes is not None:
            # The populated mask, not its ordinals: only a rebuild needs them (the C side makes them then).
            self._native.update(changes.removed, changes.added, self._state._populated)

    def close(self) -> None:
        """Stop following the engine's updates."""
        self.engine.remove_listener(self._on_update)

    def find(self, *key: KeyValue) -> int:
        """The ordinal of the record with this key, or -1."""
        return self._native.find(key[0] if len(key) == 1 else key)

    def get(self, *key: KeyValue) -> GenericObject | None:
        o = self.find(*key)
        return None if o < 0 else Records(self.engine).object(self.type_name, o)

    def field_reader(self, field: str) -> Callable[[object], FieldValue]:
        """A compiled ``reader(key) -> value of field`` (None when no record has the key)."""
        schema = self._state.schema
        assert isinstance(schema, ObjectSchema)
        i = schema.position(field)
        if i < 0:
            raise HollowSchemaError(f"type {self.type_name} has no field {field!r}")
        reader: Callable[[object], FieldValue] = self._native.reader(self._state.view, i)
        return reader

    def record_reader(self, expand: Sequence[str] = ()) -> Callable[[object], tuple[object, ...] | None]:
        """A compiled ``reader(key) -> tuple of every field`` (None when no record has the key).

        The fields come in schema order as :meth:`GenericObject.values` gives them, REFERENCE fields as
        ordinals, except the fields named in ``expand``, which are followed in the same call: a reference to a
        boxed record (an OBJECT type of one field that is not a reference, like Java's ``Integer`` or
        ``String``) reads as that field's value, a reference to a LIST or SET of boxed records as the list of
        their values (a SET's in its bucket order).

        >>> from loosely.hollow.core import WriteStateEngine, parse_schemas
        >>> w = WriteStateEngine(parse_schemas(
        ...     "Integer { int value; } ListOfInteger List<Integer>;"
        ...     "Item @PrimaryKey(id) { int id; string name; ListOfInteger scores; }"))
        >>> scores = w.add_list("ListOfInteger", [w.add_object("Integer", {"value": v}) for v in (3, 1)])
        >>> _ = w.add_object("Item", {"id": 7, "name": "seven", "scores": scores})
        >>> index = PrimaryKeyIndex(ReadStateEngine.from_snapshot(w.write_snapshot()), "Item")
        >>> index.record_reader(expand=["scores"])(7)
        (7, 'seven', [3, 1])
        """
        schema = self._state.schema
        assert isinstance(schema, ObjectSchema)
        spec: list[tuple[_native.TypeView | None, _native.TypeView, int] | None] = [None] * len(schema.fields)
        for name in expand:
            i = schema.position(name)
            if i < 0:
                raise HollowSchemaError(f"type {self.type_name} has no field {name!r}")
            spec[i] = self._expansion(schema.fields[i].referenced_type, name)
        reader: Callable[[object], tuple[object, ...] | None] = self._native.record_reader(
            self._state.view, tuple(spec)
        )
        return reader

    def _expansion(self, referenced: str | None, name: str) -> tuple[_native.TypeView | None, _native.TypeView, int]:
        """(collection view or None, boxed view, its field) for an expanded REFERENCE field."""
        if referenced is None or not self.engine.has_type(referenced):
            raise HollowSchemaError(f"{self.type_name}.{name} is not a reference to a type of this state")
        target = self.engine.type(referenced)
        collection: _native.TypeView | None = None
        if isinstance(target.schema, ListSchema | SetSchema):
            collection = target.view
            element = target.schema.element_type
            if not self.engine.has_type(element):
                raise HollowSchemaError(f"{self.type_name}.{name}: element type {element} is not in this state")
            target = self.engine.type(element)
        boxed = target.schema
        if not (isinstance(boxed, ObjectSchema) and len(boxed.fields) == 1
                and boxed.fields[0].type is not FieldType.REFERENCE):
            raise HollowSchemaError(
                f"{self.type_name}.{name} cannot be expanded: it must reference a record of one non-reference field, "
                "or a LIST or SET of such records"
            )
        return (collection, target.view, 0)

    def __len__(self) -> int:
        return self._native.count()

    @property
    def nbytes(self) -> int:
        return self._native.nbytes()


@dataclass(frozen=True, slots=True)
class Column:
    """One field of many records: ``values[i]`` belongs to ``ordinals[i]``; ``nulls[i]`` marks nulls.

    INT -> int32, LONG -> int64, REFERENCE -> int32 (-1 when null), BOOLEAN -> bool, FLOAT -> float32 and
    DOUBLE -> float64 (NaN when null), STRING / BYTES -> object arrays of str / bytes (None when null).
    """

    ordinals: npt.NDArray[np.int64]
    values: npt.NDArray[np.generic]
    nulls: npt.NDArray[np.bool_]


_DTYPES: dict[FieldType, type[np.generic]] = {
    FieldType.INT: np.int32,
    FieldType.LONG: np.int64,
    FieldType.REFERENCE: np.int32,
    FieldType.BOOLEAN: np.bool_,
    FieldType.FLOAT: np.float32,
    FieldType.DOUBLE: np.float64,
}


def column(state: TypeReadState, field: str, ordinals: npt.ArrayLike | None = None) -> Column:
    """Read ``field`` of the given records (default: every populated record, ascending) into numpy arrays."""
    schema = state.schema
    if not isinstance(schema, ObjectSchema):
        raise HollowSchemaError(f"type {state.name} is not an OBJECT type")
    i = schema.position(field)
    if i < 0:
        raise HollowSchemaError(f"type {state.name} has no field {field!r}")
    ords = state.populated_ordinals() if ordinals is None else np.ascontiguousarray(ordinals, dtype=np.int64)
    ftype = schema.fields[i].type
    nulls = np.zeros(ords.size, dtype=np.bool_)
    dtype = _DTYPES.get(ftype)
    if dtype is None:
        out = np.empty(ords.size, dtype=object)
        view = state.view
        for k, o in enumerate(ords.tolist()):
            v = view.get(o, i)
            out[k] = v
            nulls[k] = v is None
        return Column(ords, out, nulls)
    values: npt.NDArray[np.generic] = np.empty(ords.size, dtype=dtype)
    state.view.column(i, ords, values, nulls)
    return Column(ords, values, nulls)
