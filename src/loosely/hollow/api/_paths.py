"""Field paths for indexes and tools: ``"title"``, ``"director.name"``, ``"actors.element.name"``.

A path starts at a type and names one hop per segment, the way Java Hollow's ``HollowHashIndex`` and
``FieldPaths`` do:

* on an OBJECT, a segment names a field; a REFERENCE field leads to the referenced record;
* on a LIST or SET, the segment ``element`` leads to each element (so a path can match many values);
* on a MAP, ``key`` or ``value`` leads to each key or value;
* a collection segment may be left out when it is unambiguous (``actors.name`` on a SET of Actor);
* a path that ends on a REFERENCE to an OBJECT type with one field continues into that field (``title`` on a
  ``String`` reference reads ``title.value``), as Java's auto-expansion does; a trailing ``!`` stops that.

A bound path reads values from records with the compiled accessors: :func:`path_values` for one record (a list,
empty when a reference on the way is null), :func:`path_column` for many records at once when no collection is
on the way (numpy arrays, through the core's ``column``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from loosely.hollow.core import (
    FieldType,
    HollowSchemaError,
    ListSchema,
    MapSchema,
    ObjectSchema,
    ReadStateEngine,
    Schema,
    SetSchema,
    column,
)

__all__ = ["FieldPath", "Hop", "HopKind", "Value", "bind_path", "key_of", "path_column", "path_values"]

Value = int | float | bool | str | bytes | None
_HOPS_MAX: Final = 16


class HopKind(enum.Enum):
    FIELD = "field"
    ELEMENT = "element"
    KEY = "key"
    VALUE = "value"


@dataclass(frozen=True, slots=True)
class Hop:
    """One step: from a record of ``type_name``, read field ``index`` (FIELD) or go to elements/keys/values."""

    type_name: str
    kind: HopKind
    index: int = -1


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A path bound to a dataset's schemas; ``field_type`` is the type of the value at its end (REFERENCE when
    the path ends on a record, whose ordinal is then the value)."""

    root: str
    path: str
    hops: tuple[Hop, ...]
    field_type: FieldType
    target_type: str | None

    @property
    def multi(self) -> bool:
        """True when a collection is on the way (a record can have many values)."""
        return any(h.kind is not HopKind.FIELD for h in self.hops)


def _collection_hop(schema: Schema, segment: str, path: str) -> tuple[Hop, str] | None:
    if isinstance(schema, (ListSchema, SetSchema)):
        if segment == "element":
            return Hop(schema.name, HopKind.ELEMENT), schema.element_type
        return None
    if isinstance(schema, MapSchema):
        if segment == "key":
            return Hop(schema.name, HopKind.KEY), schema.key_type
        if segment == "value":
            return Hop(schema.name, HopKind.VALUE), schema.value_type
        raise HollowSchemaError(f"path {path!r}: {schema.name} is a MAP; say 'key' or 'value'")
    return None


def bind_path(schemas: Mapping[str, Schema], root: str, path: str) -> FieldPath:
    """Bind ``path`` on type ``root`` (see the module docstring); raises HollowSchemaError when it does not fit."""
    expand = not path.endswith("!")
    segments = (path[:-1] if not expand else path).split(".") if path.rstrip("!") else []
    hops: list[Hop] = []
    current: str | None = root
    field_type = FieldType.REFERENCE
    i = 0
    while i < len(segments) or current is not None:
        if len(hops) > _HOPS_MAX:
            raise HollowSchemaError(f"path {path!r} is longer than {_HOPS_MAX} hops")
        if current is None:
            raise HollowSchemaError(f"path {path!r}: {segments[i - 1]!r} is not a reference; nothing follows it")
        schema = schemas.get(current)
        if schema is None:
            raise HollowSchemaError(f"path {path!r}: type {current} is not in the dataset")
        if i == len(segments):
            # Auto-expansion at the end: a reference to a one-field OBJECT reads that field.
            if expand and hops and isinstance(schema, ObjectSchema) and len(schema.fields) == 1:
                f = schema.fields[0]
                hops.append(Hop(current, HopKind.FIELD, 0))
                field_type, current = f.type, f.referenced_type
                if current is None:
                    break
                continue
            break
        segment = segments[i]
        if isinstance(schema, ObjectSchema):
            pos = schema.position(segment)
            if pos < 0:
                raise HollowSchemaError(f"path {path!r}: type {current} has no field {segment!r}")
            f = schema.fields[pos]
            hops.append(Hop(current, HopKind.FIELD, pos))
            field_type, current = f.type, f.referenced_type
            i += 1
            if current is None and i < len(segments):
                raise HollowSchemaError(f"path {path!r}: {segment!r} is a {f.type.value}, not a reference")
            continue
        bound = _collection_hop(schema, segment, path)
        if bound is not None:
            i += 1
        else:  # an implicit "element"
            bound = _collection_hop(schema, "element", path)
            assert bound is not None
        hop, current = bound
        hops.append(hop)
        field_type = FieldType.REFERENCE
    target = current if field_type is FieldType.REFERENCE else None
    return FieldPath(root, path, tuple(hops), field_type, target)


def path_values(engine: ReadStateEngine, fp: FieldPath, ordinal: int) -> list[Value]:
    """Every value ``fp`` reaches from record ``ordinal`` of its root type (ordinals for a path ending on a
    record); empty when a reference on the way is null."""
    frontier: list[int] = [ordinal]
    last = len(fp.hops) - 1
    for n, hop in enumerate(fp.hops):
        view = engine.type(hop.type_name).view
        nxt: list[int] = []
        if hop.kind is HopKind.FIELD:
            if n == last and fp.field_type is not FieldType.REFERENCE:
                return [view.get(o, hop.index) for o in frontier]
            for o in frontier:
                v = view.get(o, hop.index)
                if v is not None:
                    nxt.append(int(v))
        elif hop.kind is HopKind.ELEMENT:
            for o in frontier:
                nxt.extend(view.elements(o))
        else:
            k = 0 if hop.kind is HopKind.KEY else 1
            for o in frontier:
                nxt.extend(e[k] for e in view.entries(o))
        frontier = nxt
    return list(frontier)


def path_column(
    engine: ReadStateEngine, fp: FieldPath, ordinals: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.bool_]]:
    """The value of a single-valued path for many records at once: ``(values, nulls)``, one entry per ordinal."""
    if fp.multi:
        raise HollowSchemaError(f"path {fp.path!r} goes through a collection; it has many values per record")
    if not fp.hops:
        return ordinals.copy(), np.zeros(ordinals.size, dtype=np.bool_)
    current = ordinals
    nulls = np.zeros(ordinals.size, dtype=np.bool_)
    values: npt.NDArray[np.generic] = ordinals
    for hop in fp.hops:
        if nulls.all():
            return np.full(ordinals.size, None, dtype=object), nulls
        state = engine.type(hop.type_name)
        schema = state.schema
        assert isinstance(schema, ObjectSchema)
        col = column(state, schema.fields[hop.index].name, np.where(nulls, 0, current) if nulls.any() else current)
        nulls = nulls | col.nulls
        values = col.values
        current = np.where(nulls, 0, col.values).astype(np.int64) if col.values.dtype != object else current
    return values, nulls


def key_of(engine: ReadStateEngine, paths: Sequence[FieldPath], ordinal: int) -> tuple[Value, ...]:
    """The tuple of a single-valued key's field values for one record (None for a null on the way)."""
    out: list[Value] = []
    for fp in paths:
        vals = path_values(engine, fp, ordinal)
        out.append(vals[0] if vals else None)
    return tuple(out)
