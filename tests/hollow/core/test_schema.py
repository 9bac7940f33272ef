"""Schemas: text form as Java prints and parses it, binary form, validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hollow.golden_fixtures import GOLDEN
from loosely.hollow.core import (
    FieldType,
    HollowSchemaError,
    ListSchema,
    MapSchema,
    ObjectField,
    ObjectSchema,
    Schema,
    SetSchema,
    TypeName,
    parse_schemas,
    schema_hash,
    schemas_to_text,
)
from loosely.hollow.core._encoding import Cursor, Writer
from loosely.hollow.core._schema import read_schema, write_schema


@pytest.mark.parametrize("chain", ["rich", "evolve"])
def test_java_printed_schemas_parse_and_print_back_identically(chain: str) -> None:
    text = (GOLDEN / chain / "schemas-1.txt").read_text()
    schemas = parse_schemas(text)
    assert schemas_to_text(schemas) == text


def test_parser_accepts_comments_and_layout() -> None:
    schemas = parse_schemas(
        """
        // a movie
        Movie @PrimaryKey(id, title.value) { /* inline */ int id; String title; }
        SetOfActor Set<Actor> @HashKey(name, born);  MapOfAToB Map<A,B>;
        """
    )
    assert schemas == [
        ObjectSchema(
            TypeName("Movie"),
            (ObjectField("id", FieldType.INT), ObjectField("title", FieldType.REFERENCE, TypeName("String"))),
            ("id", "title.value"),
        ),
        SetSchema(TypeName("SetOfActor"), TypeName("Actor"), ("name", "born")),
        MapSchema(TypeName("MapOfAToB"), TypeName("A"), TypeName("B")),
    ]


@pytest.mark.parametrize(
    "text",
    ["A { int x }", "A { int; }", "A List<B", "A Set<B> @PrimaryKey(x);", "A @HashKey(x) { int x; }", "{", "A ?"],
)
def test_parse_errors(text: str) -> None:
    with pytest.raises(HollowSchemaError):
        parse_schemas(text)


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
fields = st.lists(
    st.tuples(names, st.sampled_from(list(FieldType)), names), min_size=0, max_size=6, unique_by=lambda f: f[0]
)


@st.composite
def schemas(draw: st.DrawFn) -> Schema:
    name = TypeName(draw(names))
    kind = draw(st.sampled_from(["object", "list", "set", "map"]))
    key = draw(st.none() | st.lists(names, min_size=1, max_size=3).map(tuple))
    if kind == "object":
        fs = tuple(ObjectField(n, t, TypeName(r) if t is FieldType.REFERENCE else None) for n, t, r in draw(fields))
        return ObjectSchema(name, fs, key)
    if kind == "list":
        return ListSchema(name, TypeName(draw(names)))
    if kind == "set":
        return SetSchema(name, TypeName(draw(names)), key)
    return MapSchema(name, TypeName(draw(names)), TypeName(draw(names)), key)


@given(st.lists(schemas(), max_size=5))
def test_text_round_trip(generated: list[Schema]) -> None:
    assert parse_schemas(schemas_to_text(generated)) == generated


@given(schemas())
def test_binary_round_trip(schema: Schema) -> None:
    w = Writer()
    write_schema(w, schema)
    cur = Cursor(memoryview(bytes(w.buf)))
    assert read_schema(cur) == schema
    assert cur.remaining == 0


def test_schema_hash_is_order_independent() -> None:
    a = parse_schemas("A { int x; } B List<A>;")
    assert schema_hash(a) == schema_hash(list(reversed(a)))
    assert schema_hash(a) != schema_hash(parse_schemas("A { long x; } B List<A>;"))


def test_duplicate_field_names_are_rejected() -> None:
    with pytest.raises(HollowSchemaError, match="duplicate"):
        parse_schemas("A { int x; long x; }")
