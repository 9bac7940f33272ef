"""Compatibility vectors per level, for Avro (Apache avro's checker) and JSON Schema (loosely's structural one).

The Avro cases are the ones Confluent's documentation lists for each level (add or delete a field, with or without
a default; promotions; enum symbols; a change that passes the latest version but not the transitive history).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from loosely.registry._errors import RegistryError
from loosely.registry._types import incompatibilities, parse


def avro(*fields: tuple[str, object] | tuple[str, object, object]) -> str:
    out = []
    for f in fields:
        d: dict[str, object] = {"name": f[0], "type": f[1]}
        if len(f) == 3:
            d["default"] = f[2]
        out.append(d)
    return json.dumps({"type": "record", "name": "User", "fields": out})


V1 = avro(("name", "string"))
ADD_DEFAULT = avro(("name", "string"), ("age", "int", 0))
ADD_NO_DEFAULT = avro(("name", "string"), ("age", "int"))
LIST = json.dumps({"type": "record", "name": "Node", "fields": [
    {"name": "value", "type": "int"}, {"name": "next", "type": ["null", "Node"], "default": None}]})
ENUM2 = json.dumps({"type": "enum", "name": "E", "symbols": ["A", "B"]})
ENUM3 = json.dumps({"type": "enum", "name": "E", "symbols": ["A", "B", "C"]})

# (level, earlier versions oldest first, candidate, compatible?)
AVRO_VECTORS = [
    ("BACKWARD", [V1], ADD_DEFAULT, True),
    ("BACKWARD", [V1], ADD_NO_DEFAULT, False),
    ("BACKWARD", [ADD_DEFAULT], V1, True),  # delete a field: the new reader ignores it
    ("FORWARD", [V1], ADD_NO_DEFAULT, True),  # the old reader ignores the added field
    ("FORWARD", [ADD_NO_DEFAULT], V1, False),  # the old reader needs "age" and has no default for it
    ("FORWARD", [ADD_DEFAULT], V1, True),
    ("FULL", [V1], ADD_DEFAULT, True),
    ("FULL", [V1], ADD_NO_DEFAULT, False),
    ("FULL", [ADD_NO_DEFAULT], V1, False),
    ("NONE", [V1], '"string"', True),
    ("BACKWARD", ['"int"'], '"long"', True),  # promotion int -> long
    ("BACKWARD", ['"long"'], '"int"', False),
    ("FORWARD", ['"int"'], '"long"', False),
    ("BACKWARD", [ENUM2], ENUM3, True),
    ("FORWARD", [ENUM2], ENUM3, False),
    ("BACKWARD", ['"string"'], '"bytes"', True),
    ("BACKWARD", [V1], '"string"', False),
    # transitive: the candidate reads the latest version but not the first one
    ("BACKWARD", [V1, ADD_DEFAULT], ADD_NO_DEFAULT, True),
    ("BACKWARD_TRANSITIVE", [V1, ADD_DEFAULT], ADD_NO_DEFAULT, False),
    ("FORWARD", [ADD_NO_DEFAULT, ADD_DEFAULT], V1, True),
    ("FORWARD_TRANSITIVE", [ADD_NO_DEFAULT, ADD_DEFAULT], V1, False),
    ("FULL_TRANSITIVE", [V1, ADD_DEFAULT], avro(("name", "string"), ("age", "int", 0), ("x", "long", 1)), True),
    ("FULL_TRANSITIVE", [ADD_NO_DEFAULT, ADD_DEFAULT], V1, False),
    ("BACKWARD", ['"string"'], '["null", "string"]', True),  # a union branch the old data fits
    ("FORWARD", ['"string"'], '["null", "string"]', False),  # the old reader cannot read null
    ("BACKWARD", ['{"type": "fixed", "name": "F", "size": 4}'], '{"type": "fixed", "name": "F", "size": 8}', False),
    # recursive types (a linked list) are checked without recursing forever
    ("FULL", [LIST], LIST.replace('"value", "type": "int"', '"value", "type": "long"'), False),
    ("BACKWARD", [LIST], LIST.replace('"value", "type": "int"', '"value", "type": "long"'), True),
]


@pytest.mark.parametrize(("level", "earlier", "candidate", "compatible"), AVRO_VECTORS)
def test_avro_compatibility(level: str, earlier: list[str], candidate: str, compatible: bool) -> None:
    problems = incompatibilities(level, parse("AVRO", candidate), [parse("AVRO", e) for e in earlier])
    assert (problems == []) is compatible, problems


def obj(props: dict[str, object], required: list[str] | None = None, closed: bool = False) -> str:
    d: dict[str, object] = {"type": "object", "properties": props}
    if required:
        d["required"] = required
    if closed:
        d["additionalProperties"] = False
    return json.dumps(d)


J1 = obj({"name": {"type": "string"}})
JSON_VECTORS = [
    ("BACKWARD", [J1], J1, True),
    # adding a property: the old writer's open content model may carry it with any value
    ("BACKWARD", [J1], obj({"name": {"type": "string"}, "age": {"type": "integer"}}), False),
    ("BACKWARD", [obj({"name": {"type": "string"}}, closed=True)],
     obj({"name": {"type": "string"}, "age": {"type": "integer"}}), True),
    ("BACKWARD", [obj({"name": {"type": "string"}, "age": {"type": "integer"}})], J1, True),  # removed, open reader
    ("BACKWARD", [obj({"name": {"type": "string"}, "age": {"type": "integer"}})],
     obj({"name": {"type": "string"}}, closed=True), False),  # removed from a closed content model
    ("BACKWARD", [J1], obj({"name": {"type": "string"}}, required=["name"]), False),
    ("FORWARD", [J1], obj({"name": {"type": "string"}}, required=["name"]), True),
    ("BACKWARD", [obj({"n": {"type": "integer"}})], obj({"n": {"type": "number"}}), True),  # widened
    ("BACKWARD", [obj({"n": {"type": "number"}})], obj({"n": {"type": "integer"}}), False),
    ("FULL", [obj({"n": {"type": "number"}})], obj({"n": {"type": "integer"}}), False),
    ("BACKWARD", [obj({"c": {"enum": ["a"]}})], obj({"c": {"enum": ["a", "b"]}}), True),
    ("FORWARD", [obj({"c": {"enum": ["a"]}})], obj({"c": {"enum": ["a", "b"]}}), False),
    ("BACKWARD", [obj({"s": {"type": "string", "maxLength": 5}})], obj({"s": {"type": "string", "maxLength": 9}}),
     True),
    ("BACKWARD", [obj({"s": {"type": "string", "maxLength": 9}})], obj({"s": {"type": "string", "maxLength": 5}}),
     False),
    ("BACKWARD", [json.dumps({"type": "array", "items": {"type": "integer"}})],
     json.dumps({"type": "array", "items": {"type": "string"}}), False),
    ("BACKWARD", [J1], json.dumps({"type": "object", "description": "people", "properties": {
        "name": {"type": "string", "title": "Name"}}}), True),  # annotations only
    # a keyword the checker does not cover: reported, never waved through
    ("BACKWARD", [obj({"x": {"oneOf": [{"type": "string"}]}})], obj({"x": {"oneOf": [{"type": "integer"}]}}), False),
    ("NONE", [J1], '{"type": "string"}', True),
]


@pytest.mark.parametrize(("level", "earlier", "candidate", "compatible"), JSON_VECTORS)
def test_json_schema_compatibility(level: str, earlier: list[str], candidate: str, compatible: bool) -> None:
    problems = incompatibilities(level, parse("JSON", candidate), [parse("JSON", e) for e in earlier])
    assert (problems == []) is compatible, problems


ADDRESS = json.dumps({"type": "object", "properties": {"city": {"type": "string"}}})


def local_ref(city: dict[str, object]) -> str:
    """An object whose ``home`` is a ``$ref`` to its own definitions, whose ``city`` is ``city``."""
    return json.dumps({"type": "object", "properties": {"home": {"$ref": "#/definitions/Address"}},
                      "definitions": {"Address": {"type": "object", "properties": {"city": city}}}})


REMOTE = json.dumps({"type": "object", "properties": {"home": {"$ref": "address.json"}}})
REF_VECTORS = [
    # a change behind a local $ref is checked where it is used
    (local_ref({"type": "string"}), local_ref({"type": "string", "maxLength": 9}), (), False),
    (local_ref({"type": "string", "maxLength": 9}), local_ref({"type": "string"}), (), True),
    # the same type written inline or behind a $ref is the same
    (local_ref({"type": "string"}), json.dumps({"type": "object", "properties": {"home": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}), (), True),
    # a $ref to a reference, by its name: a narrowed reference is caught
    (REMOTE, REMOTE, ((("address.json", ADDRESS),), (("address.json", json.dumps(
        {"type": "object", "properties": {"city": {"type": "integer"}}})),)), False),
    (REMOTE, REMOTE, ((("address.json", ADDRESS),), (("address.json", ADDRESS),)), True),
    # a $ref by the referenced schema's $id, to a part of it
    (json.dumps({"$ref": "https://ex.com/a.json#/definitions/n"}), json.dumps({"type": "string"}),
     ((("a.json", json.dumps({"$id": "https://ex.com/a.json", "definitions": {"n": {"type": "integer"}}})),), ()),
     False),
    # a recursive schema stays a $ref and compares equal to itself
    (json.dumps({"type": "object", "properties": {"next": {"$ref": "#"}}}),
     json.dumps({"type": "object", "properties": {"next": {"$ref": "#"}}}), (), True),
]


@pytest.mark.parametrize(("old", "new", "refs", "compatible"), REF_VECTORS)
def test_json_schema_ref_compatibility(old: str, new: str, refs: tuple[Any, ...], compatible: bool) -> None:
    old_refs, new_refs = refs or ((), ())
    problems = incompatibilities("BACKWARD", parse("JSON", new, new_refs), [parse("JSON", old, old_refs)])
    assert (problems == []) is compatible, problems


@pytest.mark.parametrize(("text", "refs", "why"), [
    (REMOTE, (), "names no reference"),
    (json.dumps({"$ref": "#/definitions/Nope"}), (), "points at nothing"),
    (json.dumps({"$ref": "address.json#/definitions/Street"}), (("address.json", ADDRESS),), "points at nothing"),
    (json.dumps({"$ref": "#anchor"}), (), "only JSON pointer fragments"),
])
def test_unresolvable_json_refs_get_42201(text: str, refs: tuple[tuple[str, str], ...], why: str) -> None:
    with pytest.raises(RegistryError) as e:
        parse("JSON", text, refs)
    assert e.value.error_code == 42201 and why in e.value.message, e.value.message


def test_different_schema_types_are_incompatible() -> None:
    problems = incompatibilities("BACKWARD", parse("JSON", '{"type": "string"}'), [parse("AVRO", '"string"')])
    assert problems and "different schema type" in problems[0]


@pytest.mark.parametrize(("schema_type", "text"), [
    ("AVRO", "not json"),
    ("AVRO", '{"type": "record", "name": "A"}'),  # no fields
    ("AVRO", '{"type": "nosuchtype"}'),
    ("AVRO", '{"type": "record", "name": "A", "fields": [{"name": "x", "type": "Missing"}]}'),
    ("JSON", '{"type": 12}'),
    ("JSON", "[1, 2]"),
    ("PROTOBUF", 'syntax = "proto3"; message A { int32 x = 0; }'),  # field numbers start at 1
    ("XML", "<a/>"),
])
def test_invalid_schemas_get_42201(schema_type: str, text: str) -> None:
    with pytest.raises(RegistryError) as e:
        parse(schema_type, text)
    assert (e.value.http_status, e.value.error_code) == (422, 42201)


def test_identity_ignores_whitespace_and_key_order_but_text_keeps_the_writers_order() -> None:
    a = parse("AVRO", '{"type": "record", "name": "A", "fields": [{"name": "x", "type": "int"}]}')
    b = parse("AVRO", '{"fields":[{"type":"int","name":"x"}],"name":"A","type":"record"}')
    assert a.identity == b.identity
    assert a.text == '{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}'
    assert parse("AVRO", '{"type":"string"}').identity != parse("AVRO", '"int"').identity
