"""Hollow schemas: the four record kinds, their binary encoding in blobs and their text form.

Binary form (``HollowSchema.readFrom`` / ``writeTo`` in Java Hollow)::

    u8        kind id: 0 OBJECT, 6 OBJECT with primary key, 2 LIST, 1 SET, 4 SET with hash key,
              3 MAP, 5 MAP with hash key
    writeUTF  type name
    OBJECT:   [kind 6: VarInt n, n x writeUTF key field path]
              i16 numFields, numFields x (writeUTF name, writeUTF FieldType name, [REFERENCE: writeUTF type])
    LIST:     writeUTF element type
    SET:      writeUTF element type, [kind 4: VarInt n, n x writeUTF hash key field path]
    MAP:      writeUTF key type, writeUTF value type, [kind 5: VarInt n, n x writeUTF hash key field path]

Text form (``toString`` and ``HollowSchemaParser``)::

    Movie @PrimaryKey(id) {
        int id;
        string title;        // inline STRING; "String title;" would be a REFERENCE to type String
        SetOfActor actors;
    }
    SetOfActor Set<Actor> @HashKey(name);
    MapOfStringToInteger Map<String,Integer>;
    ListOfInteger List<Integer>;

The parser accepts ``//`` and ``/* */`` comments and any whitespace, like Java's ``StreamTokenizer`` setup.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, NewType

from loosely.hollow.core._encoding import Cursor, Writer, to_utf16_units
from loosely.hollow.core._errors import HollowBlobError, HollowSchemaError
from loosely.hollow.core._hashing import murmur3

__all__ = [
    "FieldType",
    "ListSchema",
    "MapSchema",
    "ObjectField",
    "ObjectSchema",
    "Schema",
    "SchemaKind",
    "SetSchema",
    "TypeName",
    "parse_schemas",
    "read_schema",
    "schema_hash",
    "schemas_to_text",
    "write_schema",
]

TypeName = NewType("TypeName", str)

# Limits on what a blob may declare, checked before anything is allocated.
FIELDS_PER_OBJECT_MAX: Final = 0x7FFF  # the field count is a Java short
KEY_FIELDS_MAX: Final = 1024


class SchemaKind(enum.Enum):
    """The four kinds of Hollow record types."""

    OBJECT = "OBJECT"
    LIST = "LIST"
    SET = "SET"
    MAP = "MAP"


class FieldType(enum.Enum):
    """OBJECT field types; the value is the name used in blobs."""

    REFERENCE = "REFERENCE"
    INT = "INT"
    LONG = "LONG"
    BOOLEAN = "BOOLEAN"
    FLOAT = "FLOAT"
    DOUBLE = "DOUBLE"
    STRING = "STRING"
    BYTES = "BYTES"

    @property
    def is_variable_length(self) -> bool:
        return self in (FieldType.STRING, FieldType.BYTES)


_TEXT_FIELD_TYPES: Final = {
    "int": FieldType.INT,
    "long": FieldType.LONG,
    "float": FieldType.FLOAT,
    "double": FieldType.DOUBLE,
    "boolean": FieldType.BOOLEAN,
    "string": FieldType.STRING,
    "bytes": FieldType.BYTES,
}


@dataclass(frozen=True, slots=True)
class ObjectField:
    name: str
    type: FieldType
    referenced_type: TypeName | None = None

    def __post_init__(self) -> None:
        if (self.type is FieldType.REFERENCE) != (self.referenced_type is not None):
            raise HollowSchemaError(f"field {self.name!r}: a referenced type is given exactly for REFERENCE fields")

    def text_type(self) -> str:
        return self.referenced_type if self.referenced_type is not None else self.type.value.lower()


@dataclass(frozen=True, slots=True)
class ObjectSchema:
    """An OBJECT type: named fields, optionally a primary key (field paths, dot separated)."""

    name: TypeName
    fields: tuple[ObjectField, ...]
    primary_key: tuple[str, ...] | None = None
    _positions: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        positions = {f.name: i for i, f in enumerate(self.fields)}
        if len(positions) != len(self.fields):
            raise HollowSchemaError(f"type {self.name}: duplicate field names")
        if len(self.fields) > FIELDS_PER_OBJECT_MAX:
            raise HollowSchemaError(f"type {self.name}: more than {FIELDS_PER_OBJECT_MAX} fields")
        if self.primary_key is not None and not self.primary_key:
            object.__setattr__(self, "primary_key", None)
        object.__setattr__(self, "_positions", positions)

    @property
    def kind(self) -> SchemaKind:
        return SchemaKind.OBJECT

    def position(self, field_name: str) -> int:
        """Index of ``field_name``, or -1."""
        return self._positions.get(field_name, -1)

    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def common_with(self, other: ObjectSchema) -> ObjectSchema:
        """``findCommonSchema``: the fields of ``self`` also present in ``other``, in ``self``'s order."""
        common = []
        for f in self.fields:
            i = other.position(f.name)
            if i >= 0:
                o = other.fields[i]
                if o.type is not f.type or o.referenced_type != f.referenced_type:
                    raise HollowSchemaError(
                        f"type {self.name}: field {f.name} is {f.text_type()} here but {o.text_type()} there"
                    )
                common.append(f)
        key = self.primary_key if self.primary_key == other.primary_key else None
        return ObjectSchema(self.name, tuple(common), key)

    def to_text(self) -> str:
        head: str = self.name
        if self.primary_key is not None:
            head += " @PrimaryKey(" + ", ".join(self.primary_key) + ")"
        body = "".join(f"\t{f.text_type()} {f.name};\n" for f in self.fields)
        return f"{head} {{\n{body}}}"


@dataclass(frozen=True, slots=True)
class ListSchema:
    name: TypeName
    element_type: TypeName

    @property
    def kind(self) -> SchemaKind:
        return SchemaKind.LIST

    def to_text(self) -> str:
        return f"{self.name} List<{self.element_type}>;"


def _hash_key_text(hash_key: tuple[str, ...] | None) -> str:
    return "" if hash_key is None else " @HashKey(" + ", ".join(hash_key) + ")"


@dataclass(frozen=True, slots=True)
class SetSchema:
    name: TypeName
    element_type: TypeName
    hash_key: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.hash_key is not None and not self.hash_key:
            object.__setattr__(self, "hash_key", None)

    @property
    def kind(self) -> SchemaKind:
        return SchemaKind.SET

    def to_text(self) -> str:
        return f"{self.name} Set<{self.element_type}>{_hash_key_text(self.hash_key)};"


@dataclass(frozen=True, slots=True)
class MapSchema:
    name: TypeName
    key_type: TypeName
    value_type: TypeName
    hash_key: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.hash_key is not None and not self.hash_key:
            object.__setattr__(self, "hash_key", None)

    @property
    def kind(self) -> SchemaKind:
        return SchemaKind.MAP

    def to_text(self) -> str:
        return f"{self.name} Map<{self.key_type},{self.value_type}>{_hash_key_text(self.hash_key)};"


Schema = ObjectSchema | ListSchema | SetSchema | MapSchema

_KIND_OBJECT, _KIND_SET, _KIND_LIST, _KIND_MAP = 0, 1, 2, 3
_KIND_SET_KEYED, _KIND_MAP_KEYED, _KIND_OBJECT_KEYED = 4, 5, 6


def _read_key(cur: Cursor, what: str) -> tuple[str, ...]:
    n = cur.varint(f"{what} field count", KEY_FIELDS_MAX)
    return tuple(cur.utf(f"{what} field path") for _ in range(n))


def read_schema(cur: Cursor) -> Schema:
    """Read one schema in its binary form."""
    kind = cur.u8("schema kind")
    name = TypeName(cur.utf("schema type name"))
    if kind in (_KIND_OBJECT, _KIND_OBJECT_KEYED):
        key = _read_key(cur, "primary key") if kind == _KIND_OBJECT_KEYED else None
        n = cur.i16("field count")
        if n < 0:
            raise HollowBlobError(f"type {name}: negative field count {n}")
        fields = []
        for _ in range(n):
            fname = cur.utf("field name")
            tname = cur.utf("field type")
            try:
                ftype = FieldType(tname)
            except ValueError:
                raise HollowBlobError(f"type {name}: unknown field type {tname!r} for field {fname!r}") from None
            ref = TypeName(cur.utf("referenced type")) if ftype is FieldType.REFERENCE else None
            fields.append(ObjectField(fname, ftype, ref))
        try:
            return ObjectSchema(name, tuple(fields), key)
        except HollowSchemaError as exc:
            raise HollowBlobError(str(exc)) from None
    if kind == _KIND_LIST:
        return ListSchema(name, TypeName(cur.utf("list element type")))
    if kind in (_KIND_SET, _KIND_SET_KEYED):
        element = TypeName(cur.utf("set element type"))
        key = _read_key(cur, "hash key") if kind == _KIND_SET_KEYED else None
        return SetSchema(name, element, key)
    if kind in (_KIND_MAP, _KIND_MAP_KEYED):
        ktype = TypeName(cur.utf("map key type"))
        vtype = TypeName(cur.utf("map value type"))
        key = _read_key(cur, "hash key") if kind == _KIND_MAP_KEYED else None
        return MapSchema(name, ktype, vtype, key)
    raise HollowBlobError(f"unknown schema kind {kind} for type {name!r}")


def _write_key(w: Writer, key: tuple[str, ...]) -> None:
    w.varint(len(key))
    for path in key:
        w.utf(path)


def write_schema(w: Writer, schema: Schema) -> None:
    """Write one schema in its binary form."""
    if isinstance(schema, ObjectSchema):
        w.u8(_KIND_OBJECT if schema.primary_key is None else _KIND_OBJECT_KEYED)
        w.utf(schema.name)
        if schema.primary_key is not None:
            _write_key(w, schema.primary_key)
        w.i16(len(schema.fields))
        for f in schema.fields:
            w.utf(f.name)
            w.utf(f.type.value)
            if f.referenced_type is not None:
                w.utf(f.referenced_type)
    elif isinstance(schema, ListSchema):
        w.u8(_KIND_LIST)
        w.utf(schema.name)
        w.utf(schema.element_type)
    elif isinstance(schema, SetSchema):
        w.u8(_KIND_SET if schema.hash_key is None else _KIND_SET_KEYED)
        w.utf(schema.name)
        w.utf(schema.element_type)
        if schema.hash_key is not None:
            _write_key(w, schema.hash_key)
    else:
        w.u8(_KIND_MAP if schema.hash_key is None else _KIND_MAP_KEYED)
        w.utf(schema.name)
        w.utf(schema.key_type)
        w.utf(schema.value_type)
        if schema.hash_key is not None:
            _write_key(w, schema.hash_key)


def schemas_to_text(schemas: Iterable[Schema]) -> str:
    """The text form of several schemas, one after the other (each as Java's ``toString``)."""
    return "\n".join(s.to_text() for s in schemas) + "\n"


def schema_hash(schemas: Iterable[Schema]) -> str:
    """``HollowSchemaHash``: murmur3 of the schemas' text sorted by name, as Java's decimal string.

    Java hashes a String by writing each UTF-16 code unit as a VarInt, then murmur3 over those bytes.
    """
    text = "".join(s.to_text() for s in sorted(schemas, key=lambda s: s.name))
    w = Writer()
    if text.isascii():
        w.raw(text.encode("ascii"))
    else:
        for unit in to_utf16_units(text):
            w.varint(unit)
    return str(murmur3(w.buf))


# --- text parser -------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*.*?\*/)
  | (?P<word>[^\W\d][\w.$!-]*)
  | (?P<punct>[{};<>,@()])
  """,
    re.VERBOSE | re.DOTALL,
)


class _Tokens:
    def __init__(self, text: str) -> None:
        self.items: list[str] = []
        self.kinds: list[str] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                line = text.count("\n", 0, pos) + 1
                raise HollowSchemaError(f"unexpected character {text[pos]!r} on line {line} of schema text")
            pos = m.end()
            kind = m.lastgroup
            assert kind is not None
            if kind in ("word", "punct"):
                self.items.append(m.group())
                self.kinds.append(kind)
        self.i = 0

    def peek(self) -> str | None:
        return self.items[self.i] if self.i < len(self.items) else None

    def next(self, expected: str) -> str:
        if self.i >= len(self.items):
            raise HollowSchemaError(f"schema text ends where {expected} was expected")
        tok = self.items[self.i]
        self.i += 1
        return tok

    def word(self, expected: str) -> str:
        is_word = self.i < len(self.kinds) and self.kinds[self.i] == "word"
        tok = self.next(expected)
        if not is_word:
            raise HollowSchemaError(f"expected {expected}, found {tok!r}")
        return tok

    def expect(self, punct: str, context: str) -> None:
        tok = self.next(f"{punct!r} {context}")
        if tok != punct:
            raise HollowSchemaError(f"expected {punct!r} {context}, found {tok!r}")


def _parse_key(tokens: _Tokens, annotation: str, type_name: str) -> tuple[str, ...] | None:
    if tokens.peek() != "@":
        return None
    tokens.next("@")
    found = tokens.word(f"@{annotation}")
    if found != annotation:
        raise HollowSchemaError(f"type {type_name}: expected @{annotation}, found @{found}")
    tokens.expect("(", f"after @{annotation} of {type_name}")
    paths: list[str] = []
    while tokens.peek() != ")":
        paths.append(tokens.word(f"a field path in @{annotation} of {type_name}"))
        if tokens.peek() == ",":
            tokens.next(",")
        elif tokens.peek() != ")":
            raise HollowSchemaError(f"type {type_name}: expected ',' or ')' in @{annotation}")
    tokens.next(")")
    return tuple(paths) if paths else None


def _parse_one(tokens: _Tokens) -> Schema:
    name = TypeName(tokens.word("a type name"))
    nxt = tokens.peek()
    if nxt in ("List", "Set", "Map"):
        tokens.next(nxt)
        tokens.expect("<", f"after {nxt} in type {name}")
        first = TypeName(tokens.word(f"the element type of {name}"))
        if nxt == "Map":
            tokens.expect(",", f"between the key and value types of {name}")
            second = TypeName(tokens.word(f"the value type of {name}"))
            tokens.expect(">", f"after the value type of {name}")
            key = _parse_key(tokens, "HashKey", name)
            tokens.expect(";", f"after the declaration of {name}")
            return MapSchema(name, first, second, key)
        tokens.expect(">", f"after the element type of {name}")
        if nxt == "List":
            tokens.expect(";", f"after the declaration of {name}")
            return ListSchema(name, first)
        key = _parse_key(tokens, "HashKey", name)
        tokens.expect(";", f"after the declaration of {name}")
        return SetSchema(name, first, key)
    pkey = _parse_key(tokens, "PrimaryKey", name)
    tokens.expect("{", f"to open the fields of {name}")
    fields: list[ObjectField] = []
    while tokens.peek() != "}":
        ftype = tokens.word(f"a field type in {name}")
        fname = tokens.word(f"a field name in {name}")
        tokens.expect(";", f"after field {name}.{fname}")
        basic = _TEXT_FIELD_TYPES.get(ftype)
        if basic is not None:
            fields.append(ObjectField(fname, basic))
        else:
            fields.append(ObjectField(fname, FieldType.REFERENCE, TypeName(ftype)))
    tokens.next("}")
    return ObjectSchema(name, tuple(fields), pkey)


def parse_schemas(text: str) -> list[Schema]:
    """Parse the text form of any number of schemas (``HollowSchemaParser.parseCollectionOfSchemas``).

    >>> [s.name for s in parse_schemas("A { int x; }  ListOfA List<A>;")]
    ['A', 'ListOfA']
    """
    tokens = _Tokens(text)
    schemas: list[Schema] = []
    while tokens.peek() is not None:
        schemas.append(_parse_one(tokens))
    return schemas


def validate_schemas(schemas: Sequence[Schema]) -> None:
    """Check that type names are unique and every referenced type exists."""
    by_name: dict[str, Schema] = {}
    for s in schemas:
        if s.name in by_name:
            raise HollowSchemaError(f"type {s.name} is declared twice")
        by_name[s.name] = s
    for s in schemas:
        if isinstance(s, ObjectSchema):
            refs = [f.referenced_type for f in s.fields if f.referenced_type is not None]
        elif isinstance(s, MapSchema):
            refs = [s.key_type, s.value_type]
        else:
            refs = [s.element_type]
        for r in refs:
            if r not in by_name:
                raise HollowSchemaError(f"type {s.name} refers to undeclared type {r}")
