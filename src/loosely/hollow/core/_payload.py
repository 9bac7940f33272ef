"""Payloads: a record's Python values normalised, at once, to the form Java serialises.

INT and LONG are zig-zag encoded, FLOAT and DOUBLE are their canonical IEEE bits (null is the special null bits),
STRING is its VarInt-per-UTF-16-unit encoding, BYTES its bytes, REFERENCE an ordinal; an OBJECT record is the
tuple of its fields' payloads, a LIST or SET record the tuple of its element ordinals, a MAP record the tuple of
its (key, value) ordinal pairs.  Two records are the same record exactly when their payloads are equal, which is
Java's rule (it compares serialized bytes), so payloads are the keys of the ordinal map (:mod:`._ordinal_map`).
The compiled loops (_writer.c) read and build the same payloads.

The hash of a stored payload (``payload_field_hash``) is the producer-side hasher's ``fieldHashCode``: sets and
maps with a hash key place their elements by it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final, TypeAlias, TypeVar

from loosely.hollow.core._encoding import to_utf16_units, zigzag_decode
from loosely.hollow.core._errors import HollowWriteError
from loosely.hollow.core._hashing import murmur3, to_int32
from loosely.hollow.core._schema import (
    FieldType,
    ObjectSchema,
)

__all__ = [
    "CANONICAL_NAN_DOUBLE",
    "CANONICAL_NAN_FLOAT",
    "INT_MIN",
    "LONG_MIN",
    "NULL_DOUBLE_BITS",
    "NULL_FLOAT_BITS",
    "ORDINAL_MAX",
    "UNHASHABLE_NULLS",
    "FieldEncoder",
    "FieldPayload",
    "ListPayload",
    "MapPayload",
    "ObjectPayload",
    "ObjectValue",
    "P",
    "Payload",
    "as_int",
    "checked_ordinals",
    "double_bits",
    "encode_string",
    "field_encoder",
    "field_payload",
    "float_bits",
    "null_payload",
    "object_payload",
    "payload_field_hash",
    "signed64",
]

INT_MIN: Final = -(1 << 31)
LONG_MIN: Final = -(1 << 63)
NULL_FLOAT_BITS: Final = 0x7FC00001
NULL_DOUBLE_BITS: Final = 0x7FF8000000000001
CANONICAL_NAN_FLOAT: Final = 0x7FC00000
CANONICAL_NAN_DOUBLE: Final = 0x7FF8000000000000
ORDINAL_MAX: Final = (1 << 29) - 1  # ByteArrayOrdinalMap: 29-bit ordinals
_F32: Final = struct.Struct(">f")
_U32: Final = struct.Struct(">I")
_F64: Final = struct.Struct(">d")
_U64: Final = struct.Struct(">Q")

ObjectValue: TypeAlias = int | float | bool | str | bytes | None
FieldPayload: TypeAlias = int | bytes | None
ObjectPayload: TypeAlias = tuple[FieldPayload, ...]
ListPayload: TypeAlias = tuple[int, ...]
MapPayload: TypeAlias = tuple[tuple[int, int], ...]
Payload: TypeAlias = ObjectPayload | ListPayload | MapPayload
P = TypeVar("P", ObjectPayload, ListPayload, MapPayload)


# --- value normalisation ---------------------------------------------------------------------------------


def float_bits(value: float) -> int:
    """Java ``Float.floatToIntBits((float) value)``: round to float32, NaN canonical."""
    if math.isnan(value):
        return CANONICAL_NAN_FLOAT
    try:
        return int(_U32.unpack(_F32.pack(value))[0])
    except OverflowError:  # beyond float32: Java's cast gives an infinity
        return 0x7F800000 if value > 0 else 0xFF800000


def double_bits(value: float) -> int:
    """Java ``Double.doubleToLongBits``: NaN canonical."""
    if math.isnan(value):
        return CANONICAL_NAN_DOUBLE
    return int(_U64.unpack(_F64.pack(value))[0])


def encode_string(text: str) -> bytes:
    """Hollow's string encoding: each UTF-16 code unit as a VarInt."""
    if text.isascii():
        return text.encode("ascii")
    out = bytearray()
    for unit in to_utf16_units(text):
        if unit >= 1 << 14:
            out.append(0x80 | (unit >> 14))
        if unit >= 1 << 7:
            out.append(0x80 | ((unit >> 7) & 0x7F))
        out.append(unit & 0x7F)
    return bytes(out)


def _decode_string_units(data: bytes) -> list[int]:
    units = []
    value = 0
    for b in data:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            units.append(value)
            value = 0
    return units


FieldEncoder = Callable[[ObjectValue], FieldPayload]


def _type_error(where: str, expected: str, value: ObjectValue) -> HollowWriteError:
    return HollowWriteError(f"{where} is {expected}, got {type(value).__name__}")


def field_encoder(schema: ObjectSchema, index: int) -> FieldEncoder:
    """The function turning a Python value of one field into its payload (checked), made once per field."""
    f = schema.fields[index]
    t = f.type
    where = f"{schema.name}.{f.name}"
    if t is FieldType.INT or t is FieldType.LONG:
        bits = 32 if t is FieldType.INT else 64
        low, high, mask = -(1 << (bits - 1)), (1 << (bits - 1)) - 1, (1 << bits) - 1

        def encode_int(value: ObjectValue) -> FieldPayload:
            if value is None:
                return None
            if value.__class__ is not int and (not isinstance(value, int) or isinstance(value, bool)):
                raise _type_error(where, t.value, value)
            if not low < value <= high:
                raise HollowWriteError(f"{where}: {value} is outside {t.value} (its minimum is reserved for null)")
            return ((value << 1) ^ (value >> (bits - 1))) & mask

        return encode_int
    if t is FieldType.REFERENCE:

        def encode_ref(value: ObjectValue) -> FieldPayload:
            if value is None:
                return None
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= ORDINAL_MAX:
                raise HollowWriteError(f"{where} is a reference: give the ordinal add_*() returned, got {value!r}")
            return value

        return encode_ref
    if t is FieldType.BOOLEAN:

        def encode_bool(value: ObjectValue) -> FieldPayload:
            if value is None:
                return None
            if not isinstance(value, bool):
                raise _type_error(where, "BOOLEAN", value)
            return 1 if value else 0

        return encode_bool
    if t is FieldType.FLOAT or t is FieldType.DOUBLE:
        null = NULL_FLOAT_BITS if t is FieldType.FLOAT else NULL_DOUBLE_BITS
        to_bits = float_bits if t is FieldType.FLOAT else double_bits

        def encode_float(value: ObjectValue) -> FieldPayload:
            if value is None:
                return null
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise _type_error(where, t.value, value)
            return to_bits(float(value))

        return encode_float
    if t is FieldType.STRING:

        def encode_str(value: ObjectValue) -> FieldPayload:
            if value is None:
                return None
            if not isinstance(value, str):
                raise _type_error(where, "STRING", value)
            return encode_string(value)

        return encode_str

    def encode_bytes(value: ObjectValue) -> FieldPayload:
        if value is None:
            return None
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise _type_error(where, "BYTES", value)
        return bytes(value)

    return encode_bytes


def field_payload(schema: ObjectSchema, index: int, value: ObjectValue) -> FieldPayload:
    return field_encoder(schema, index)(value)


def object_payload(
    schema: ObjectSchema,
    values: Mapping[str, ObjectValue] | Sequence[ObjectValue],
    encoders: Sequence[FieldEncoder] | None = None,
) -> ObjectPayload:
    if encoders is None:
        encoders = [field_encoder(schema, i) for i in range(len(schema.fields))]
    if isinstance(values, Mapping):
        unknown = set(values) - set(schema.field_names())
        if unknown:
            raise HollowWriteError(f"type {schema.name} has no fields {sorted(unknown)}")
        return tuple(enc(values.get(f.name)) for enc, f in zip(encoders, schema.fields, strict=True))
    if len(values) != len(schema.fields):
        raise HollowWriteError(f"type {schema.name} has {len(schema.fields)} fields, got {len(values)} values")
    return tuple(enc(v) for enc, v in zip(encoders, values, strict=True))


def checked_ordinals(values: Iterable[int], what: str) -> list[int]:
    out = []
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= ORDINAL_MAX:
            raise HollowWriteError(f"{what} must be ordinals returned by add_*(), got {v!r}")
        out.append(v)
    return out



def null_payload(t: FieldType) -> FieldPayload:
    return NULL_FLOAT_BITS if t is FieldType.FLOAT else NULL_DOUBLE_BITS if t is FieldType.DOUBLE else None


UNHASHABLE_NULLS: Final = (FieldType.STRING, FieldType.BYTES, FieldType.REFERENCE)


def as_int(value: FieldPayload) -> int:
    if not isinstance(value, int):
        raise HollowWriteError(f"expected a numeric field value, found {value!r}")
    return value


def payload_field_hash(value: FieldPayload, field_type: FieldType) -> int:
    """``fieldHashCode`` of the producer-side hasher, from a stored payload."""
    if isinstance(value, bytes) or field_type in (FieldType.STRING, FieldType.BYTES):
        data = value if isinstance(value, bytes) else b""
        if field_type is FieldType.BYTES:
            return murmur3(data)
        h = 0
        for unit in _decode_string_units(data):
            h = (h * 31 + unit) & 0xFFFFFFFF
        return to_int32(h)
    if value is None:
        return 0  # Java's hasher reads a null INT/LONG/BOOLEAN/REFERENCE as 0
    if field_type is FieldType.INT:
        return to_int32(zigzag_decode(value))
    if field_type is FieldType.LONG:
        v = zigzag_decode(value) & 0xFFFFFFFFFFFFFFFF
        return to_int32(v ^ (v >> 32))
    if field_type is FieldType.BOOLEAN:
        return 1231 if value == 1 else 1237
    if field_type is FieldType.DOUBLE:
        return to_int32(value ^ (value >> 32))
    return to_int32(value)  # REFERENCE ordinal, FLOAT bits


def signed64(v: int) -> int:
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v & (1 << 63) else v

