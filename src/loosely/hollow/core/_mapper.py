"""Python classes to Hollow schemas and records, the way Java's ``HollowObjectMapper`` maps POJOs.

The same data model written as Java classes and as Python dataclasses (or typed ``NamedTuple``s) yields the
same schemas, registered in the same order, so Python and Java producers and consumers can share a dataset.

Mapping rules (Java on the left)::

    int / long / short / byte / char   int, Int64, Int16, Int8, Char           INT / LONG / INT fields
    float / double / boolean           Float32, float, bool                    FLOAT / DOUBLE / BOOLEAN fields
    Integer, Long, ... (boxed)         int | None, Int64 | None, ...           REFERENCE to type Integer { int value; }
    @HollowInline Integer              Annotated[int | None, INLINE]           nullable INT field
    String                             str                                     REFERENCE to String { string value; }
    @HollowInline String               Annotated[str, INLINE]                  STRING field
    byte[]                             bytes                                   BYTES field
    java.util.Date                     datetime                                REFERENCE to Date { long value; } (ms)
    enum                               enum.Enum subclass                      REFERENCE to <Enum> { string _name; }
    a class                            a dataclass / NamedTuple                REFERENCE to an OBJECT type
    List<X> / Set<X> / Map<K,V>        list[X] / set[X] / dict[K, V]           ListOfX / SetOfX / MapOfKToV
    @HollowPrimaryKey(fields=...)      @hollow_type(primary_key=(...))
    @HollowTypeName(name=...)          @hollow_type(name=...) / Annotated[..., TypeNamed("...")]
    @HollowHashKey(fields=...)         Annotated[set[X], HashKey(...)]
    @HollowShardLargeType(numShards)   @hollow_type(num_shards=...) / Annotated[..., Shards(n)]
    transient / @HollowTransient       Annotated[..., TRANSIENT] or ClassVar

Like Java: fields are mapped in declaration order, a class's own fields before its base classes'; types are
registered referenced-first (depth first, in field order); a SET or MAP without a declared hash key gets the
element's (key's) primary key, or its single non-reference field, as hash key.  Values follow Java's
conventions: a primitive holding its type's minimum value (``Integer.MIN_VALUE``..., ``char`` 0) or a NaN
float is written as null, and a null read back into a primitive gives that minimum value (NaN for floats).
An inline (boxed) value is written as it is: an inline NaN is a NaN in the blob (Hollow's float null is
another bit pattern), None is null; only ``Integer.MIN_VALUE`` and ``Long.MIN_VALUE`` become null, as in Java.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, ClassVar, Final, Generic, TypeVar

from loosely.hollow.core import _writer
from loosely.hollow.core._errors import HollowMappingError
from loosely.hollow.core._index import PrimaryKeyIndex
from loosely.hollow.core._keys import KeyValue
from loosely.hollow.core._read_state import ReadStateEngine
from loosely.hollow.core._schema import (
    FieldType,
    ListSchema,
    MapSchema,
    ObjectField,
    ObjectSchema,
    Schema,
    SetSchema,
    TypeName,
)
from loosely.hollow.core._write_state import ObjectValue, WriteStateEngine

__all__ = [
    "INLINE",
    "TRANSIENT",
    "Char",
    "Float32",
    "Float64",
    "HashKey",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "JavaType",
    "ObjectMapper",
    "Shards",
    "TypeNamed",
    "TypedReader",
    "hollow_type",
]

T = TypeVar("T")


class JavaType(enum.Enum):
    """The Java primitive a Python number stands for (see :data:`Int64` and friends)."""

    INT = ("int", "Integer", FieldType.INT, -(1 << 31), (1 << 31) - 1)
    LONG = ("long", "Long", FieldType.LONG, -(1 << 63), (1 << 63) - 1)
    SHORT = ("short", "Short", FieldType.INT, -(1 << 15), (1 << 15) - 1)
    BYTE = ("byte", "Byte", FieldType.INT, -(1 << 7), (1 << 7) - 1)
    CHAR = ("char", "Character", FieldType.INT, 0, 0xFFFF)
    FLOAT = ("float", "Float", FieldType.FLOAT, 0, 0)
    DOUBLE = ("double", "Double", FieldType.DOUBLE, 0, 0)
    BOOLEAN = ("boolean", "Boolean", FieldType.BOOLEAN, 0, 0)

    def __init__(self, java: str, boxed: str, field_type: FieldType, low: int, high: int) -> None:
        self.java = java
        self.boxed = boxed
        self.field_type = field_type
        self.low = low
        self.high = high


Int32 = Annotated[int, JavaType.INT]
Int64 = Annotated[int, JavaType.LONG]
Int16 = Annotated[int, JavaType.SHORT]
Int8 = Annotated[int, JavaType.BYTE]
Char = Annotated[int, JavaType.CHAR]
Float32 = Annotated[float, JavaType.FLOAT]
Float64 = Annotated[float, JavaType.DOUBLE]


@dataclass(frozen=True, slots=True)
class _Inline:
    """``@HollowInline``: a boxed number or String stored in the field itself (nullable), not referenced."""


@dataclass(frozen=True, slots=True)
class _Transient:
    """``@HollowTransient``: the field is not part of the record."""


INLINE: Final = _Inline()
TRANSIENT: Final = _Transient()


@dataclass(frozen=True, slots=True, init=False)
class HashKey:
    """``@HollowHashKey``: the hash key of a SET or MAP field (field paths on the element / key type)."""

    fields: tuple[str, ...]

    def __init__(self, *fields: str) -> None:
        object.__setattr__(self, "fields", fields)


@dataclass(frozen=True, slots=True)
class TypeNamed:
    """``@HollowTypeName`` on a field: the name of the type the field refers to."""

    name: str


@dataclass(frozen=True, slots=True)
class Shards:
    """``@HollowShardLargeType`` on a field: pin the shard count of the type the field refers to."""

    count: int


@dataclass(frozen=True, slots=True)
class _TypeInfo:
    name: str | None
    primary_key: tuple[str, ...] | None
    num_shards: int | None


_INFO_ATTR: Final = "__hollow_type__"


def hollow_type(
    *, name: str | None = None, primary_key: tuple[str, ...] | None = None, num_shards: int | None = None
) -> Callable[[type[T]], type[T]]:
    """Class decorator: ``@HollowTypeName``, ``@HollowPrimaryKey`` and ``@HollowShardLargeType`` in one.

    >>> from dataclasses import dataclass
    >>> @hollow_type(primary_key=("id",))
    ... @dataclass
    ... class Movie:
    ...     id: int
    ...     title: Annotated[str, INLINE]
    >>> print(ObjectMapper().schema(Movie).to_text())
    Movie @PrimaryKey(id) {
        int id;
        string title;
    }
    """

    def apply(cls: type[T]) -> type[T]:
        setattr(cls, _INFO_ATTR, _TypeInfo(name, primary_key, num_shards))
        return cls

    return apply


def _info(cls: type) -> _TypeInfo:
    info = cls.__dict__.get(_INFO_ATTR)
    return info if isinstance(info, _TypeInfo) else _TypeInfo(None, None, None)


# --- annotations -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Hint:
    """An annotation taken apart: the bare type, whether it allows None, and the markers on it."""

    base: object
    optional: bool = False
    java: JavaType | None = None
    inline: bool = False
    transient: bool = False
    hash_key: tuple[str, ...] | None = None
    type_name: str | None = None
    shards: int | None = None


def _parse_hint(hint: object) -> _Hint:
    optional = False
    java: JavaType | None = None
    inline = transient = False
    hash_key: tuple[str, ...] | None = None
    type_name: str | None = None
    shards: int | None = None
    for _ in range(16):
        origin = typing.get_origin(hint)
        if origin is Annotated:
            args = typing.get_args(hint)
            hint = args[0]
            for meta in args[1:]:
                if isinstance(meta, JavaType):
                    java = meta
                elif isinstance(meta, _Inline):
                    inline = True
                elif isinstance(meta, _Transient):
                    transient = True
                elif isinstance(meta, HashKey):
                    hash_key = meta.fields
                elif isinstance(meta, TypeNamed):
                    type_name = meta.name
                elif isinstance(meta, Shards):
                    shards = meta.count
            continue
        if origin is typing.Union or origin is types.UnionType:
            members = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(members) != len(typing.get_args(hint)) - 1 or len(members) != 1:
                raise HollowMappingError(f"unions other than Optional[X] cannot be mapped: {hint!r}")
            optional = True
            hint = members[0]
            continue
        if origin is ClassVar:
            transient = True
        break
    return _Hint(hint, optional, java, inline, transient, hash_key, type_name, shards)


_DEFAULT_JAVA: Final[dict[object, JavaType]] = {int: JavaType.INT, float: JavaType.DOUBLE, bool: JavaType.BOOLEAN}
_LIST_ORIGINS: Final = (list, tuple)
_SET_ORIGINS: Final = (set, frozenset)


def _is_record_class(t: object) -> bool:
    return isinstance(t, type) and (dataclasses.is_dataclass(t) or (issubclass(t, tuple) and hasattr(t, "_fields")))


def _own_fields(cls: type) -> list[tuple[str, object]]:
    """Fields in Java's order: the class's own declarations first, then each base class's."""
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:  # unresolvable forward references and the like
        raise HollowMappingError(f"cannot resolve the annotations of {cls.__name__}: {exc}") from exc
    if issubclass(cls, tuple):  # NamedTuple: one flat field list
        names: tuple[str, ...] = getattr(cls, "_fields", ())
        return [(name, hints[name]) for name in names]
    assert dataclasses.is_dataclass(cls)
    field_names = {f.name for f in dataclasses.fields(cls)}
    out: list[tuple[str, object]] = []
    seen: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        for name in inspect.get_annotations(klass):
            if name in seen:
                raise HollowMappingError(f"duplicate field name {name!r} in the class hierarchy of {cls.__name__}")
            seen.add(name)
            if name in field_names:
                out.append((name, hints[name]))
    return out


_END: Final = object()  # add_all: the end of the iterator

# Compiled writer plan kinds and field encodings (see _writer.c).
_P_OBJECT, _P_BOXED, _P_LIST, _P_SET, _P_PYTHON = 0, 1, 2, 3, 4
_E_INT, _E_LONG, _E_BOOL, _E_FLOAT, _E_DOUBLE, _E_STRING, _E_BYTES, _E_REF = 1, 2, 3, 4, 5, 6, 7, 8
_JAVA_ENCODINGS: Final = {
    JavaType.INT: _E_INT,
    JavaType.SHORT: _E_INT,
    JavaType.BYTE: _E_INT,
    JavaType.CHAR: _E_INT,
    JavaType.LONG: _E_LONG,
    JavaType.BOOLEAN: _E_BOOL,
    JavaType.FLOAT: _E_FLOAT,
    JavaType.DOUBLE: _E_DOUBLE,
}


# --- type mappers ----------------------------------------------------------------------------------------


class _TypeMapper:
    """Maps values of one Python type to records of one Hollow type (Java ``HollowTypeMapper``)."""

    type_name: str

    def schema(self) -> Schema:
        raise NotImplementedError

    def write(self, engine: WriteStateEngine, value: object) -> int:
        raise NotImplementedError

    def read(self, engine: ReadStateEngine, ordinal: int) -> object:
        raise NotImplementedError

    def default_element_hash_key(self) -> tuple[str, ...] | None:
        return None


class _Kind(enum.Enum):
    PRIMITIVE = "primitive"  # non-null Java primitive
    INLINE = "inline"  # nullable number/boolean/string in the field
    BYTES = "bytes"
    REFERENCE = "reference"
    ENUM_NAME = "enum name"  # the _name field of an enum type
    DATE = "date"  # the value field of Date


@dataclass(slots=True)
class _MappedField:
    name: str
    kind: _Kind
    field_type: FieldType
    java: JavaType | None = None
    mapper: _TypeMapper | None = None
    default: Callable[[], object] | None = None


def _primitive_in(java: JavaType, value: object, where: str, *, boxed: bool = False) -> ObjectValue:
    """A Python value for a Java number or boolean, as Java's mapper writes it.

    A primitive holding its type's minimum or NaN is written as null.  A boxed (inline) value is written as it
    is -- a NaN stays NaN, a ``Short`` keeps -32768 -- except ``Integer.MIN_VALUE`` and ``Long.MIN_VALUE``,
    which Hollow's INT and LONG fields reserve for null whoever writes them.
    """
    if java is JavaType.BOOLEAN:
        if not isinstance(value, bool):
            raise HollowMappingError(f"{where}: expected bool, got {value!r}")
        return value
    if java in (JavaType.FLOAT, JavaType.DOUBLE):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise HollowMappingError(f"{where}: expected float, got {value!r}")
        return None if math.isnan(value) and not boxed else float(value)
    if not isinstance(value, int) or isinstance(value, bool) or not java.low <= value <= java.high:
        raise HollowMappingError(f"{where}: expected a Java {java.java}, got {value!r}")
    reserved = value == java.low and (not boxed or java in (JavaType.INT, JavaType.LONG))
    return None if reserved else value


def _primitive_out(java: JavaType, value: object) -> object:
    """A read value for a Java primitive field: null becomes the type minimum, NaN, or False."""
    if value is not None:
        return value
    if java in (JavaType.FLOAT, JavaType.DOUBLE):
        return math.nan
    if java is JavaType.BOOLEAN:
        return False
    return java.low


class _ObjectMapper(_TypeMapper):
    """An OBJECT type: a record class, a boxed primitive, String, Date or an enum."""

    def __init__(
        self, type_name: str, cls: type | None, fields: list[_MappedField], info: _TypeInfo, special: str = ""
    ) -> None:
        self.type_name = type_name
        self.cls = cls
        self.fields = fields
        self.info = info
        self.special = special  # "", "boxed", "string", "date", "enum"
        self._schema = ObjectSchema(
            TypeName(type_name),
            tuple(
                ObjectField(f.name, f.field_type, TypeName(f.mapper.type_name) if f.mapper is not None else None)
                for f in fields
            ),
            info.primary_key,
        )
        self._positions: dict[int, tuple[int, ...]] = {}

    def schema(self) -> ObjectSchema:
        return self._schema

    def default_element_hash_key(self) -> tuple[str, ...] | None:
        if self.info.primary_key is not None:
            return self.info.primary_key
        if len(self.fields) == 1 and self.fields[0].kind is not _Kind.REFERENCE:
            return (self.fields[0].name,)
        return None

    # -- writing --

    def _field_value(self, engine: WriteStateEngine, f: _MappedField, value: object) -> ObjectValue:
        where = f"{self.type_name}.{f.name}"
        if f.kind is _Kind.PRIMITIVE:
            assert f.java is not None
            if value is None:
                raise HollowMappingError(f"{where} is a Java {f.java.java}: None cannot be written")
            return _primitive_in(f.java, value, where)
        if value is None:
            return None
        if f.kind is _Kind.INLINE:
            if f.java is None:
                if not isinstance(value, str):
                    raise HollowMappingError(f"{where}: expected str, got {value!r}")
                return value
            return _primitive_in(f.java, value, where, boxed=True)
        if f.kind is _Kind.BYTES:
            if not isinstance(value, (bytes, bytearray)):
                raise HollowMappingError(f"{where}: expected bytes, got {value!r}")
            return bytes(value)
        assert f.mapper is not None
        return f.mapper.write(engine, value)

    def write(self, engine: WriteStateEngine, value: object) -> int:
        if self.special in {"boxed", "string"}:
            values: list[ObjectValue] = [self._field_value(engine, self.fields[0], value)]
        elif self.special == "date":
            if not isinstance(value, _dt.datetime):
                raise HollowMappingError(f"{self.type_name}: expected a datetime, got {value!r}")
            values = [_to_millis(value)]
        elif self.special == "enum":
            if not isinstance(value, enum.Enum):
                raise HollowMappingError(f"{self.type_name}: expected an enum member, got {value!r}")
            values = [value.name]
        else:
            assert self.cls is not None
            if not isinstance(value, self.cls):
                raise HollowMappingError(f"{self.type_name}: expected {self.cls.__name__}, got {type(value).__name__}")
            values = [self._field_value(engine, f, getattr(value, f.name)) for f in self.fields]
        return engine.add_object(self.type_name, values)

    # -- reading --

    def _read_positions(self, engine: ReadStateEngine) -> tuple[int, ...]:
        schema = engine.type(self.type_name).schema
        key = id(schema)
        cached = self._positions.get(key)
        if cached is None:
            assert isinstance(schema, ObjectSchema)
            cached = tuple(schema.position(f.name) for f in self.fields)
            self._positions[key] = cached
        return cached

    def _field_out(self, engine: ReadStateEngine, f: _MappedField, raw: object) -> object:
        if f.kind is _Kind.PRIMITIVE:
            assert f.java is not None
            return _primitive_out(f.java, raw)
        if raw is None or f.kind is not _Kind.REFERENCE:
            return raw
        assert f.mapper is not None and isinstance(raw, int)
        if not engine.has_type(f.mapper.type_name):
            return None
        return f.mapper.read(engine, raw)

    def read(self, engine: ReadStateEngine, ordinal: int) -> object:
        state = engine.type(self.type_name)
        record = state.view.record(ordinal)
        positions = self._read_positions(engine)
        if self.special:
            raw = record[positions[0]] if positions[0] >= 0 else None
            if self.special == "date":
                return _from_millis(raw) if isinstance(raw, int) else None
            if self.special == "enum":
                assert self.cls is not None and issubclass(self.cls, enum.Enum)
                return self.cls.__members__.get(raw) if isinstance(raw, str) else None
            return raw
        values = []
        for f, pos in zip(self.fields, positions, strict=True):
            if pos < 0:
                values.append(f.default() if f.default is not None else None)
            else:
                values.append(self._field_out(engine, f, record[pos]))
        assert self.cls is not None
        return _construct(self.cls, [f.name for f in self.fields], values)


def _construct(cls: type, names: list[str], values: list[object]) -> object:
    if issubclass(cls, tuple):
        make: Callable[[list[object]], object] = getattr(cls, "_make")  # noqa: B009 (NamedTuple API)
        return make(values)
    obj = cls.__new__(cls)  # like Java's allocateInstance: no __init__ / __post_init__
    for name, value in zip(names, values, strict=True):
        object.__setattr__(obj, name, value)
    assert dataclasses.is_dataclass(cls)
    for f in dataclasses.fields(cls):
        if f.name not in names:
            default: object = f.default
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            object.__setattr__(obj, f.name, None if default is dataclasses.MISSING else default)
    return obj


_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def _to_millis(value: _dt.datetime) -> int:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=_dt.UTC)
    return (aware - _EPOCH) // _dt.timedelta(milliseconds=1)


def _from_millis(ms: int) -> _dt.datetime:
    return _EPOCH + _dt.timedelta(milliseconds=ms)


class _ListMapper(_TypeMapper):
    def __init__(self, type_name: str, element: _TypeMapper, as_tuple: bool, ignore_ordering: bool) -> None:
        self.type_name = type_name
        self.element = element
        self.as_tuple = as_tuple
        self.ignore_ordering = ignore_ordering

    def schema(self) -> ListSchema:
        return ListSchema(TypeName(self.type_name), TypeName(self.element.type_name))

    def write(self, engine: WriteStateEngine, value: object) -> int:
        if not isinstance(value, (list, tuple)):
            raise HollowMappingError(f"{self.type_name}: expected a list, got {type(value).__name__}")
        ordinals = [self.element.write(engine, _non_null(e, self.type_name, "element")) for e in value]
        if self.ignore_ordering:
            ordinals.sort()
        return engine.add_list(self.type_name, ordinals)

    def read(self, engine: ReadStateEngine, ordinal: int) -> object:
        items = [self.element.read(engine, e) for e in engine.type(self.type_name).view.elements(ordinal)]
        return tuple(items) if self.as_tuple else items


def _non_null(value: object, type_name: str, what: str) -> object:
    if value is None:
        raise HollowMappingError(f"{type_name} cannot hold a null {what}")
    return value


class _SetMapper(_TypeMapper):
    def __init__(self, type_name: str, element: _TypeMapper, hash_key: tuple[str, ...] | None, frozen: bool) -> None:
        self.type_name = type_name
        self.element = element
        self.hash_key = hash_key
        self.frozen = frozen

    def schema(self) -> SetSchema:
        return SetSchema(TypeName(self.type_name), TypeName(self.element.type_name), self.hash_key)

    def write(self, engine: WriteStateEngine, value: object) -> int:
        if not isinstance(value, (set, frozenset)):
            raise HollowMappingError(f"{self.type_name}: expected a set, got {type(value).__name__}")
        ordinals = [self.element.write(engine, _non_null(e, self.type_name, "element")) for e in value]
        return engine.add_set(self.type_name, ordinals)

    def read(self, engine: ReadStateEngine, ordinal: int) -> object:
        items = [self.element.read(engine, e) for e in engine.type(self.type_name).view.elements(ordinal)]
        try:
            return frozenset(items) if self.frozen else set(items)
        except TypeError as exc:
            raise HollowMappingError(f"{self.type_name}: set elements must be hashable ({exc})") from None


class _MapMapper(_TypeMapper):
    def __init__(self, type_name: str, key: _TypeMapper, value: _TypeMapper, hash_key: tuple[str, ...] | None) -> None:
        self.type_name = type_name
        self.key = key
        self.value = value
        self.hash_key = hash_key

    def schema(self) -> MapSchema:
        return MapSchema(
            TypeName(self.type_name), TypeName(self.key.type_name), TypeName(self.value.type_name), self.hash_key
        )

    def write(self, engine: WriteStateEngine, value: object) -> int:
        if not isinstance(value, Mapping):
            raise HollowMappingError(f"{self.type_name}: expected a mapping, got {type(value).__name__}")
        entries = []
        for k, v in value.items():
            ko = self.key.write(engine, _non_null(k, self.type_name, "key"))
            vo = self.value.write(engine, _non_null(v, self.type_name, "value"))
            entries.append((ko, vo))
        return engine.add_map(self.type_name, entries)

    def read(self, engine: ReadStateEngine, ordinal: int) -> object:
        out = {}
        for k, v in engine.type(self.type_name).view.entries(ordinal):
            try:
                out[self.key.read(engine, k)] = self.value.read(engine, v)
            except TypeError as exc:
                raise HollowMappingError(f"{self.type_name}: map keys must be hashable ({exc})") from None
        return out


# --- the mapper ------------------------------------------------------------------------------------------


class ObjectMapper:
    """Derives schemas from Python classes and writes / reads object graphs (Java ``HollowObjectMapper``).

    With a :class:`WriteStateEngine`, :meth:`add` writes an object and everything it references and returns
    its ordinal; types are registered with the engine on first use (or ahead with :meth:`initialize_type`).
    Without an engine it still derives schemas and reads records (:meth:`read`, :class:`TypedReader`).
    """

    def __init__(
        self,
        engine: WriteStateEngine | None = None,
        *,
        use_default_hash_keys: bool = True,
        ignore_list_ordering: bool = False,
    ) -> None:
        self.engine = engine
        self.use_default_hash_keys = use_default_hash_keys
        self.ignore_list_ordering = ignore_list_ordering
        self._mappers: dict[str, _TypeMapper] = {}
        self._by_class: dict[type, _TypeMapper] = {}
        self._plans: dict[str, _writer.Plan] = {}
        self._class_plans: dict[type, _writer.Plan] = {}
        self._order: list[str] = []

    # -- schemas --

    def initialize_type(self, cls: type) -> str:
        """Register ``cls`` and every type it references; returns its type name."""
        return self._class_mapper(cls).type_name

    def schema(self, cls: type) -> ObjectSchema:
        mapper = self._class_mapper(cls)
        assert isinstance(mapper, _ObjectMapper)
        return mapper.schema()

    @property
    def schemas(self) -> list[Schema]:
        """Every schema derived so far, in registration order (referenced types first)."""
        return [self._mappers[n].schema() for n in self._order]

    def _class_mapper(self, cls: type) -> _TypeMapper:
        mapper = self._by_class.get(cls)
        if mapper is None:
            if not (_is_record_class(cls) or (isinstance(cls, type) and issubclass(cls, enum.Enum))):
                raise HollowMappingError(f"{cls!r} is not a dataclass, NamedTuple or Enum")
            mapper = self._mapper_for(_Hint(cls), None, None, None, ())
        return mapper

    def _register(self, mapper: _TypeMapper, num_shards: int | None) -> _TypeMapper:
        existing = self._mappers.get(mapper.type_name)
        if existing is not None:
            return existing
        self._mappers[mapper.type_name] = mapper
        self._order.append(mapper.type_name)
        if self.engine is not None:
            schema = mapper.schema()
            if self.engine.has_type(schema.name):
                if self.engine.schema(schema.name) != schema:
                    raise HollowMappingError(
                        f"type {schema.name} is already registered with another schema:\n"
                        f"{self.engine.schema(schema.name).to_text()}\nversus\n{schema.to_text()}"
                    )
            else:
                self.engine.add_type(schema, num_shards)
        return mapper

    def _default_name(self, hint: _Hint) -> str:
        t = hint.base
        origin = typing.get_origin(t)
        args = typing.get_args(t)
        if origin in _LIST_ORIGINS:
            return "ListOf" + self._default_name(_element_hint(args[0]))
        if origin in _SET_ORIGINS:
            return "SetOf" + self._default_name(_element_hint(args[0]))
        if origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
            return (
                "MapOf" + self._default_name(_element_hint(args[0])) + "To" + self._default_name(_element_hint(args[1]))
            )
        if t in _DEFAULT_JAVA or hint.java is not None:
            java = hint.java or _DEFAULT_JAVA[t]
            return java.boxed
        if t is str:
            return "String"
        if t is _dt.datetime:
            return "Date"
        if isinstance(t, type):
            return _info(t).name or t.__name__
        raise HollowMappingError(f"cannot map {t!r}")

    def _mapper_for(
        self,
        hint: _Hint,
        declared_name: str | None,
        hash_key: tuple[str, ...] | None,
        num_shards: int | None,
        visiting: tuple[object, ...],
    ) -> _TypeMapper:
        """Java ``getTypeMapper``: reuse the mapper of the type name, or build (and register) it."""
        name = declared_name or self._default_name(hint)
        existing = self._mappers.get(name)
        if existing is not None:
            return existing
        t = hint.base
        origin = typing.get_origin(t)
        args = typing.get_args(t)
        mapper: _TypeMapper
        if origin in _LIST_ORIGINS:
            if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
                raise HollowMappingError(f"only variadic tuples (tuple[X, ...]) map to lists: {t!r}")
            element = self._mapper_for(_element_hint(args[0]), None, None, None, visiting)
            mapper = _ListMapper(name, element, origin is tuple, self.ignore_list_ordering)
        elif origin in _SET_ORIGINS:
            element = self._mapper_for(_element_hint(args[0]), None, None, None, visiting)
            if hash_key is None and self.use_default_hash_keys:
                hash_key = element.default_element_hash_key()
            mapper = _SetMapper(name, element, hash_key, origin is frozenset)
        elif origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
            key = self._mapper_for(_element_hint(args[0]), None, None, None, visiting)
            value = self._mapper_for(_element_hint(args[1]), None, None, None, visiting)
            if hash_key is None and self.use_default_hash_keys:
                hash_key = key.default_element_hash_key()
            mapper = _MapMapper(name, key, value, hash_key)
        else:
            mapper = self._object_mapper(name, hint, visiting)
            if isinstance(t, type):
                self._by_class.setdefault(t, mapper)
                if num_shards is None:
                    num_shards = _info(t).num_shards
        return self._register(mapper, num_shards)

    def _object_mapper(self, name: str, hint: _Hint, visiting: tuple[object, ...]) -> _TypeMapper:
        t = hint.base
        if t in _DEFAULT_JAVA or hint.java is not None:
            java = hint.java or _DEFAULT_JAVA[t]
            f = _MappedField("value", _Kind.PRIMITIVE, java.field_type, java)
            return _ObjectMapper(name, None, [f], _TypeInfo(None, None, None), "boxed")
        if t is str:
            return _ObjectMapper(
                name,
                str,
                [_MappedField("value", _Kind.INLINE, FieldType.STRING)],
                _TypeInfo(None, None, None),
                "string",
            )
        if t is _dt.datetime:
            return _ObjectMapper(
                name,
                _dt.datetime,
                [_MappedField("value", _Kind.DATE, FieldType.LONG)],
                _TypeInfo(None, None, None),
                "date",
            )
        if isinstance(t, type) and issubclass(t, enum.Enum):
            return _ObjectMapper(name, t, [_MappedField("_name", _Kind.ENUM_NAME, FieldType.STRING)], _info(t), "enum")
        if not _is_record_class(t):
            raise HollowMappingError(f"cannot map {t!r}: not a dataclass, NamedTuple, Enum, number, str or bytes")
        assert isinstance(t, type)
        if t in visiting:
            raise HollowMappingError(f"circular reference through {t.__name__}; Hollow cannot map it")
        fields = []
        for field_name, field_hint in _own_fields(t):
            mapped = self._field(t, field_name, _parse_hint(field_hint), (*visiting, t))
            if mapped is not None:
                fields.append(mapped)
        return _ObjectMapper(name, t, fields, _info(t))

    def _field(self, owner: type, name: str, hint: _Hint, visiting: tuple[object, ...]) -> _MappedField | None:
        if hint.transient:
            return None
        where = f"{owner.__name__}.{name}"
        t = hint.base
        default = _default_of(owner, name)
        if t is bytes or t is bytearray:
            return _MappedField(name, _Kind.BYTES, FieldType.BYTES, default=default)
        numeric = t in _DEFAULT_JAVA or hint.java is not None
        if numeric and not hint.optional and not hint.inline:
            java = hint.java or _DEFAULT_JAVA[t]
            return _MappedField(name, _Kind.PRIMITIVE, java.field_type, java, default=default)
        if hint.inline:
            if numeric:
                java = hint.java or _DEFAULT_JAVA[t]
                return _MappedField(name, _Kind.INLINE, java.field_type, java, default=default)
            if t is str:
                return _MappedField(name, _Kind.INLINE, FieldType.STRING, default=default)
            raise HollowMappingError(f"{where}: INLINE applies to numbers, bool and str only")
        mapper = self._mapper_for(hint, hint.type_name, hint.hash_key, hint.shards, visiting)
        return _MappedField(name, _Kind.REFERENCE, FieldType.REFERENCE, mapper=mapper, default=default)

    # -- writing and reading --

    def add(self, obj: object) -> int:
        """Write ``obj`` (a dataclass / NamedTuple instance) and all it references; returns its ordinal."""
        if self.engine is None:
            raise HollowMappingError("this ObjectMapper has no WriteStateEngine to add to")
        plan = self._class_plans.get(type(obj))
        if plan is None:
            plan = self._class_plans[type(obj)] = self._plan(self._class_mapper(type(obj)))
        self.engine.check_adding()
        ordinal = _writer.write(plan, obj)
        return self._class_mapper(type(obj)).write(self.engine, obj) if ordinal is None else ordinal

    def add_all(self, objs: Iterable[object]) -> int:
        """Write every object of ``objs`` (as :meth:`add`, in order, in one compiled loop); returns how many.

        An iterator (a generator) is written as it yields, one object at a time: each is released before the next
        is drawn."""
        if self.engine is None:
            raise HollowMappingError("this ObjectMapper has no WriteStateEngine to add to")
        self.engine.check_adding()
        if isinstance(objs, (list, tuple)):
            return self._add_sequence(objs)
        # one at a time, not in chunks: the allocator then reuses the same few hot blocks (write_iter in _writer.c)
        total = 0
        it = iter(objs)
        pending = next(it, _END)
        while pending is not _END:
            cls = type(pending)
            self.add(pending)  # the first object, or one the compiled loop left to Python (another class...)
            del pending
            done, pending = _writer.write_iter(self._class_plans[cls], it, _END)
            total += 1 + done
        return total

    def _add_sequence(self, seq: Sequence[object]) -> int:
        i = 0
        while i < len(seq):
            cls = type(seq[i])
            plan = self._class_plans.get(cls)
            if plan is None:
                plan = self._class_plans[cls] = self._plan(self._class_mapper(cls))
            done = _writer.write_all(plan, seq, i)
            if done >= 0:
                break
            i = -done - 1  # a value the compiled writer leaves to Python (another class, an unusual value)
            self.add(seq[i])
            i += 1
        return len(seq)

    # -- compiled writers (loosely.hollow.core._writer) --

    def _plan(self, mapper: _TypeMapper) -> _writer.Plan:
        """The compiled writer of ``mapper``'s type: what ``add`` runs in C; the Python mappers remain the
        reference (a plan hands every value it does not cover back to them)."""
        plan = self._plans.get(mapper.type_name)
        if plan is not None:
            return plan
        assert self.engine is not None
        engine = self.engine
        state = engine._state(mapper.type_name)

        def python(value: object) -> int:
            return mapper.write(engine, value)

        if isinstance(mapper, _ListMapper):
            plan = _writer.Plan(_P_LIST, state, None, (), self._plan(mapper.element), mapper.ignore_ordering, python)
        elif isinstance(mapper, _SetMapper):
            plan = _writer.Plan(_P_SET, state, None, (), self._plan(mapper.element), False, python)
        elif isinstance(mapper, _ObjectMapper) and mapper.special in ("", "boxed", "string"):
            planned = [self._plan_field(f) for f in mapper.fields]
            fields = tuple(f for f in planned if f is not None)
            if len(fields) == len(planned):
                kind = _P_OBJECT if mapper.special == "" else _P_BOXED
                plan = _writer.Plan(kind, state, mapper.cls if kind == _P_OBJECT else None, fields, None, False, python)
        if plan is None:
            plan = _writer.Plan(_P_PYTHON, state, None, (), None, False, python)
        self._plans[mapper.type_name] = plan
        return plan

    def _plan_field(self, f: _MappedField) -> tuple[str, int, bool, int, int, _writer.Plan | None] | None:
        if f.kind in (_Kind.PRIMITIVE, _Kind.INLINE):
            if f.java is None:
                return (f.name, _E_STRING, False, 0, 0, None)
            return (f.name, _JAVA_ENCODINGS[f.java], f.kind is _Kind.PRIMITIVE, f.java.low, f.java.high, None)
        if f.kind is _Kind.BYTES:
            return (f.name, _E_BYTES, False, 0, 0, None)
        if f.kind is _Kind.REFERENCE:
            assert f.mapper is not None
            return (f.name, _E_REF, False, 0, 0, self._plan(f.mapper))
        return None  # enum names and dates: the Python mapper writes those types

    def read(self, engine: ReadStateEngine, cls: type[T], ordinal: int) -> T:
        """Build a ``cls`` instance from record ``ordinal`` of its type (and everything it references)."""
        value = self._class_mapper(cls).read(engine, ordinal)
        assert isinstance(value, cls)
        return value

    def type_name(self, cls: type) -> str:
        return self._class_mapper(cls).type_name


def _element_hint(hint: object) -> _Hint:
    """A collection element: Java generics hold boxed types, so numbers map to Integer, Long, ..."""
    h = _parse_hint(hint)
    if h.optional:
        raise HollowMappingError(f"collection elements cannot be Optional: {hint!r}")
    return _Hint(h.base, True, h.java, False, False, None, h.type_name, None)


def _default_of(owner: type, name: str) -> Callable[[], object] | None:
    if not dataclasses.is_dataclass(owner):
        defaults = getattr(owner, "_field_defaults", {})
        if name in defaults:
            value = defaults[name]
            return lambda: value
        return None
    for f in dataclasses.fields(owner):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                value = f.default
                return lambda: value
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory
    return None


class TypedReader(Generic[T]):
    """Records of one type read as instances of a Python class.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Point:
    ...     x: int
    ...     y: int
    >>> w = WriteStateEngine()
    >>> ObjectMapper(w).add(Point(1, 2))
    0
    >>> reader = TypedReader(ReadStateEngine.from_snapshot(w.write_snapshot()), Point)
    >>> list(reader)
    [Point(x=1, y=2)]
    """

    def __init__(self, engine: ReadStateEngine, cls: type[T], mapper: ObjectMapper | None = None) -> None:
        self.engine = engine
        self.cls = cls
        self.mapper = mapper if mapper is not None else ObjectMapper()
        self.type_name = self.mapper.type_name(cls)
        self._index: PrimaryKeyIndex | None = None

    def get(self, ordinal: int) -> T:
        return self.mapper.read(self.engine, self.cls, ordinal)

    def find(self, *key: KeyValue) -> T | None:
        """The instance whose primary key is ``key`` (the index is built on first use and follows deltas)."""
        if self._index is None:
            self._index = PrimaryKeyIndex(self.engine, self.type_name)
        o = self._index.find(*key)
        return None if o < 0 else self.get(o)

    def __iter__(self) -> Iterator[T]:
        for o in self.engine.type(self.type_name).populated_ordinals().tolist():
            yield self.get(o)

    def __len__(self) -> int:
        return self.engine.type(self.type_name).record_count()
