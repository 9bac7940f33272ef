"""Primary keys and hash keys: binding field paths to schemas, and hashing key values as Java does.

A key is a tuple of field paths such as ``("id",)`` or ``("actor.name", "year")``.  Binding a path follows
``FieldPaths.createFieldPathForPrimaryKey``: each dot-separated segment names a field of an OBJECT type; a path
that ends on a REFERENCE is *auto-expanded* into the referenced type when that type has a single field, or a
single-field primary key (so ``title`` on a ``String`` reference becomes ``title.value``).  A trailing ``!``
turns expansion off.

Hashes are those of SET and MAP bucket placement: ``h = 0; for each field: h = h * 31 ^ fieldHash`` where
``fieldHash`` is ``hashInt`` of: the value (INT, REFERENCE ordinal), ``(int)(v ^ v >>> 32)`` (LONG),
``String.hashCode()`` (STRING), 1231/1237 (BOOLEAN), the raw bits folded like a long (DOUBLE), the raw bits
(FLOAT), murmur3 (BYTES).  ``HollowWriteStateEnginePrimaryKeyHasher`` on the producer and ``SetMapKeyHasher``
on the consumer agree on these; a producer-side null INT/LONG/BOOLEAN hashes as 0.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from loosely.hollow.core._encoding import java_string_hash
from loosely.hollow.core._errors import HollowSchemaError
from loosely.hollow.core._hashing import hash_int, murmur3, to_int32
from loosely.hollow.core._schema import FieldType, ObjectSchema, Schema, TypeName

__all__ = ["KeyPath", "KeyValue", "bind_key", "bind_key_path", "field_hash", "key_hash"]

KeyValue = int | float | bool | str | bytes | None
_PATH_HOPS_MAX: Final = 8
_FLOAT: Final = struct.Struct("<f")
_UINT32: Final = struct.Struct("<I")
_DOUBLE: Final = struct.Struct("<d")
_UINT64: Final = struct.Struct("<Q")


@dataclass(frozen=True, slots=True)
class KeyPath:
    """A bound field path: ``(type name, field index)`` per hop; every hop but the last is a REFERENCE."""

    path: str
    hops: tuple[tuple[TypeName, int], ...]
    field_type: FieldType


def _object_schema(schemas: Mapping[str, Schema], name: str, path: str) -> ObjectSchema:
    schema = schemas.get(name)
    if schema is None:
        raise HollowSchemaError(f"key path {path!r}: type {name} is not in the dataset")
    if not isinstance(schema, ObjectSchema):
        raise HollowSchemaError(f"key path {path!r}: type {name} is a {schema.kind.value}, not an OBJECT")
    return schema


def bind_key_path(schemas: Mapping[str, Schema], type_name: str, path: str, _depth: int = 0) -> KeyPath:
    """Bind one field path of a key on ``type_name`` (see the module docstring)."""
    expand = not path.endswith("!")
    bare = path if expand else path[:-1]
    hops: list[tuple[TypeName, int]] = []
    current: str | None = type_name
    for segment in bare.split(".") if bare else []:
        if current is None:
            raise HollowSchemaError(f"key path {path!r} on {type_name}: {segment!r} follows a non-reference field")
        schema = _object_schema(schemas, current, path)
        index = schema.position(segment)
        if index < 0:
            raise HollowSchemaError(f"key path {path!r} on {type_name}: type {current} has no field {segment!r}")
        hops.append((schema.name, index))
        current = schema.fields[index].referenced_type
    while expand and current is not None:
        schema = _object_schema(schemas, current, path)
        if len(schema.fields) == 1:
            hops.append((schema.name, 0))
            current = schema.fields[0].referenced_type
        elif schema.primary_key is not None and len(schema.primary_key) == 1 and _depth < _PATH_HOPS_MAX:
            inner = bind_key_path(schemas, schema.name, schema.primary_key[0], _depth + 1)
            hops.extend(inner.hops)
            current = None
        else:
            raise HollowSchemaError(f"key path {path!r} on {type_name} ends on type {current}, which cannot expand")
    if not hops or len(hops) > _PATH_HOPS_MAX:
        raise HollowSchemaError(f"key path {path!r} on {type_name} has {len(hops)} hops")
    last_type, last_index = hops[-1]
    last = _object_schema(schemas, last_type, path).fields[last_index]
    return KeyPath(path, tuple(hops), last.type)


def bind_key(schemas: Mapping[str, Schema], type_name: str, paths: tuple[str, ...]) -> tuple[KeyPath, ...]:
    return tuple(bind_key_path(schemas, type_name, p) for p in paths)


def field_hash(value: KeyValue, field_type: FieldType) -> int:
    """The mixed hash of one key field (``SetMapKeyHasher.hash``); None hashes like Java's producer (0)."""
    if value is None:
        if field_type is FieldType.STRING or field_type is FieldType.BYTES:
            raise HollowSchemaError("a STRING or BYTES key field is null")
        return hash_int(0)
    if field_type is FieldType.INT or field_type is FieldType.REFERENCE:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"key value {value!r} is not an int")
        return hash_int(value)
    if field_type is FieldType.LONG:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"key value {value!r} is not an int")
        v = value & 0xFFFFFFFFFFFFFFFF
        return hash_int(to_int32(v ^ (v >> 32)))
    if field_type is FieldType.STRING:
        if not isinstance(value, str):
            raise TypeError(f"key value {value!r} is not a str")
        return hash_int(java_string_hash(value))
    if field_type is FieldType.BOOLEAN:
        if not isinstance(value, bool):
            raise TypeError(f"key value {value!r} is not a bool")
        return hash_int(1231 if value else 1237)
    if field_type is FieldType.DOUBLE:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"key value {value!r} is not a float")
        bits = _UINT64.unpack(_DOUBLE.pack(float(value)))[0]
        return hash_int(to_int32(bits ^ (bits >> 32)))
    if field_type is FieldType.FLOAT:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"key value {value!r} is not a float")
        return hash_int(_UINT32.unpack(_FLOAT.pack(float(value)))[0])
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"key value {value!r} is not bytes")
    return hash_int(murmur3(bytes(value)))


def key_hash(values: tuple[KeyValue, ...], paths: tuple[KeyPath, ...]) -> int:
    """``h = h * 31 ^ fieldHash`` over the key's fields, as a signed 32-bit int."""
    h = 0
    for value, kp in zip(values, paths, strict=True):
        h = to_int32(h * 31) ^ field_hash(value, kp.field_type)
    return h
