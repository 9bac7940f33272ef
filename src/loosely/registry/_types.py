"""Schema types: parsing, the forms the registry stores and compares, and compatibility between versions.

Theory of operation
-------------------

A schema arrives as text with a type (``AVRO`` when the request names none, ``JSON``, ``PROTOBUF``). :func:`parse`
turns it into a :class:`ParsedSchema` with two forms (Protobuf's are described in its own module):

- ``text``: what the registry stores in ``_schemas`` and returns: the JSON re-serialised compactly (no
  whitespace), in the writer's key order, as Confluent stores its ``canonicalString()``.
- ``identity``: what "the same schema" means: for Avro, the schema as the Apache ``avro`` package re-emits it
  with keys sorted (so key order and whitespace do not matter, as in Confluent, where equality is on Avro's
  re-serialised form); for JSON Schema, the document with sorted keys. Registering a schema whose identity and
  references equal an existing one's reuses that schema's global id.

Compatibility (:func:`incompatibilities`) is a function of ``(level, candidate, earlier versions)``: ``BACKWARD``
checks that the candidate reads what each earlier version wrote, ``FORWARD`` the reverse, ``FULL`` both; plain
levels compare with the latest version, ``*_TRANSITIVE`` with every live version. An empty list means compatible.

- **Avro**: the Apache ``avro`` package's ``ReaderWriterCompatibilityChecker`` implements the specification's
  schema-resolution rules (promotions int->long->float->double, string<->bytes, defaults for added fields, enum
  symbols, union branches), the same rules Confluent's Java checker applies. We use it as is.
- **JSON Schema**: no maintained Python library checks compatibility between two JSON Schemas, so this module
  does, structurally: the reader must accept every document the writer accepts. Covered: ``type`` (with
  ``integer`` inside ``number``), ``properties`` in open and closed content models (``additionalProperties``),
  ``required``, ``items``, ``enum``, ``const``, and the numeric, length and size bounds. ``$ref`` (to the schema's
  own ``#/definitions/...`` or to a reference by its name) is inlined first, so a change behind a ``$ref`` is
  checked like any other; a recursive ``$ref`` stays one and must be equal on both sides. Any other keyword
  (``oneOf``, ``allOf``, ``patternProperties``, ``dependencies``, ...) that differs between the two
  schemas is reported incompatible, with a message saying the checker does not cover it: a false "incompatible"
  is safe, a false "compatible" would let a breaking change through.
- **Protobuf**: as ``.proto`` text or in the base64 ``FileDescriptorProto`` form confluent-kafka's serializers
  send, with its own descriptor-based checker (see :mod:`loosely.registry._protobuf`).
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from loosely.registry._errors import RegistryError, invalid_schema

__all__ = ["COMPATIBILITY_LEVELS", "SCHEMA_TYPES", "ParsedSchema", "incompatibilities", "parse"]

SCHEMA_TYPES = ("AVRO", "JSON", "PROTOBUF")
"""The types this registry accepts (``GET /schemas/types``)."""

COMPATIBILITY_LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)


@dataclass(frozen=True, slots=True)
class ParsedSchema:
    schema_type: str
    text: str
    identity: str
    parsed: Any  # avro.schema.Schema, or the JSON Schema document


def _compact(doc: object, *, sort_keys: bool = False) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)


Referenced = tuple[tuple[str, str], ...]
"""A schema's references as ``(name, text)``, references of references first."""


def parse(schema_type: str, text: str, referenced: Referenced = ()) -> ParsedSchema:
    """Parse ``text`` as a schema of ``schema_type`` with its references' ``(name, text)``, in order.

    Raises :class:`RegistryError` 42201 for anything that is not a valid schema of that type.

    >>> parse("AVRO", '{ "type" : "string" }').text
    '{"type":"string"}'
    >>> parse("AVRO", '{"type":"record","name":"A","fields":[]}').identity == parse(
    ...     "AVRO", '{"fields": [], "name": "A", "type": "record"}').identity
    True
    """
    if schema_type == "PROTOBUF":
        from loosely.registry._protobuf import parse_protobuf  # noqa: PLC0415 - protobuf loads only when used

        identity, descriptor = parse_protobuf(text, referenced)
        return ParsedSchema("PROTOBUF", text.strip(), identity, descriptor)
    if schema_type not in SCHEMA_TYPES:
        raise RegistryError(422, 42201, f"Invalid schema type {schema_type!r}: expected AVRO, JSON or PROTOBUF")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise invalid_schema(f"not valid JSON: {e}") from None
    if schema_type == "AVRO":
        return _parse_avro(text, doc, referenced)
    return _parse_json_schema(doc, referenced)


def _parse_avro(text: str, doc: object, referenced: Referenced) -> ParsedSchema:
    import avro.errors  # noqa: PLC0415 - the avro package is the registry extra's; imported where needed
    import avro.name  # noqa: PLC0415
    import avro.schema  # noqa: PLC0415

    names = avro.name.Names()
    try:
        for _, ref in referenced:  # named types a reference defines become visible to the schema that uses them
            avro.schema.make_avsc_object(json.loads(ref), names)
        parsed = avro.schema.make_avsc_object(doc, names)
    except (avro.errors.AvroException, ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
        raise invalid_schema(str(e) or type(e).__name__) from None
    return ParsedSchema("AVRO", _compact(doc), _compact(parsed.to_json(), sort_keys=True), parsed)


def _parse_json_schema(doc: object, referenced: Referenced) -> ParsedSchema:
    import jsonschema.exceptions  # noqa: PLC0415
    import jsonschema.validators  # noqa: PLC0415

    if not isinstance(doc, dict | bool):
        raise invalid_schema("a JSON Schema is an object or a boolean")
    try:
        jsonschema.validators.validator_for(doc).check_schema(doc)
    except jsonschema.exceptions.SchemaError as e:
        raise invalid_schema(f"{e.message} at {'/'.join(map(str, e.absolute_path)) or 'the root'}") from None
    docs: dict[str, object] = {}
    for name, ref in referenced:
        try:
            ref_doc = json.loads(ref)
        except (ValueError, RecursionError):
            raise invalid_schema(f"reference {name!r} is not a JSON Schema") from None
        docs[name] = ref_doc
        if isinstance(ref_doc, dict) and isinstance(ref_doc.get("$id"), str):
            docs.setdefault(ref_doc["$id"], ref_doc)
    try:
        inlined = _inline(doc, "", {**docs, "": doc}, ())
    except RecursionError:
        raise invalid_schema("$ref chains nest too deeply") from None
    return ParsedSchema("JSON", _compact(doc), _compact(doc, sort_keys=True), inlined)


def _pointer(doc: object, fragment: str) -> object:
    """The part of ``doc`` a JSON pointer fragment (``/definitions/a``) names; ``KeyError`` when none."""
    node = doc
    for raw in fragment.split("/")[1:]:
        part = urllib.parse.unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(fragment)
    return node


def _inline(node: object, base: str, docs: dict[str, object], seen: tuple[str, ...]) -> object:
    """``node`` with every ``$ref`` replaced by what it names, for the structural checker.

    A ``$ref`` names a part of the schema it is in (``#/definitions/a``), or a reference by its name (or the
    referenced schema's ``$id``), optionally with a fragment (``address.json#/definitions/street``), as Confluent
    resolves them. A ``$ref`` that comes back to one being inlined (a recursive schema) stays a ``$ref`` (made
    absolute), which the checker compares as it is. One that names nothing is 42201."""
    if isinstance(node, list):
        return [_inline(item, base, docs, seen) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _inline(v, base, docs, seen) for k, v in node.items() if k != "$ref"}
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return out if ref is None else {**out, "$ref": ref}
    name, _, fragment = ref.partition("#")
    name = name or base
    key = f"{name}#{fragment}"
    if key in seen:
        return {**out, "$ref": key}
    if name not in docs:
        raise invalid_schema(f"$ref {ref!r} names no reference: register {name!r} first and name it in the "
                             "schema's references")
    if fragment and not fragment.startswith("/"):
        raise invalid_schema(f"$ref {ref!r}: only JSON pointer fragments (#/...) are resolved")
    try:
        target = _pointer(docs[name], fragment)
    except KeyError:
        raise invalid_schema(f"$ref {ref!r} points at nothing in {name or 'the schema'}") from None
    inlined = _inline(target, name, docs, (*seen, key))
    if not out:
        return inlined
    if isinstance(inlined, dict) and not set(inlined) & set(out):
        return {**inlined, **out}
    earlier = out.get("allOf")
    return {**out, "allOf": [inlined, *(earlier if isinstance(earlier, list) else [])]}


def incompatibilities(level: str, candidate: ParsedSchema, earlier: list[ParsedSchema]) -> list[str]:
    """Why ``candidate`` may not follow ``earlier`` (oldest first) under ``level``; empty when it may."""
    if level == "NONE" or not earlier:
        return []
    against = earlier if level.endswith("_TRANSITIVE") else earlier[-1:]
    base = level.removesuffix("_TRANSITIVE")
    problems: list[str] = []
    for old in reversed(against):
        if old.schema_type != candidate.schema_type:
            problems.append(f"Incompatible because of different schema type: {old.schema_type} -> "
                            f"{candidate.schema_type}")
            continue
        if base in ("BACKWARD", "FULL"):
            problems += [f"{base}: {p}" for p in _reader_writer(candidate, old)]
        if base in ("FORWARD", "FULL"):
            problems += [f"{base}: {p}" for p in _reader_writer(old, candidate)]
    return problems


def _reader_writer(reader: ParsedSchema, writer: ParsedSchema) -> list[str]:
    if reader.schema_type == "AVRO":
        from avro.compatibility import (  # noqa: PLC0415
            ReaderWriterCompatibilityChecker,
            SchemaCompatibilityType,
        )

        checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
        result = checker.get_compatibility(reader.parsed, writer.parsed)
        if result.compatibility is SchemaCompatibilityType.compatible:
            return []
        where = ", ".join(sorted(result.locations)) or "/"
        return [f"reader cannot read writer's data at {where}: {', '.join(sorted(map(str, result.messages)))}"]
    if reader.schema_type == "PROTOBUF":
        from loosely.registry._protobuf import reader_writer_problems  # noqa: PLC0415

        return reader_writer_problems(reader.parsed, writer.parsed)
    return _json_accepts(reader.parsed, writer.parsed, "#")


# Keywords that only annotate: a change in them never changes which documents a schema accepts.
_ANNOTATIONS = frozenset({"title", "description", "$schema", "$id", "id", "$comment", "default", "examples",
                          "format", "readOnly", "writeOnly", "deprecated",
                          "definitions", "$defs"})  # compared where a $ref uses them: they are inlined there
# Keywords the structural checker below understands.
_CHECKED = frozenset({"type", "properties", "required", "additionalProperties", "items", "enum", "const",
                      "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                      "minItems", "maxItems", "minProperties", "maxProperties", "pattern"}) | _ANNOTATIONS
_LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
_UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")


def _accepts_anything(schema: object) -> bool:
    return schema is True or (isinstance(schema, dict) and set(schema) <= _ANNOTATIONS)


def _types(schema: dict[str, Any]) -> set[str] | None:
    t = schema.get("type")
    if t is None:
        return None
    return set(t) if isinstance(t, list) else {t}


def _json_accepts(reader: object, writer: object, path: str) -> list[str]:
    """Why ``reader`` may reject a document ``writer`` accepts (JSON Schema), as readable messages."""
    if writer is False or _accepts_anything(reader) or reader == writer:
        return []
    if reader is False:
        return [f"{path}: the reader accepts nothing"]
    if writer is True or not isinstance(writer, dict):
        writer = {}
    if not isinstance(reader, dict):
        return [f"{path}: unexpected schema {reader!r}"]
    problems: list[str] = []
    for keyword in sorted((set(reader) | set(writer)) - _CHECKED):
        if reader.get(keyword) != writer.get(keyword):
            problems.append(f"{path}: keyword {keyword!r} changed; loosely's JSON Schema checker does not cover it")
    rt, wt = _types(reader), _types(writer)
    if rt is not None:
        widened = rt | ({"integer"} if "number" in rt else set())
        if wt is None or not wt <= widened:
            problems.append(f"{path}: type narrowed from {sorted(wt) if wt else 'any'} to {sorted(rt)}")
    for key in ("enum", "const", "pattern"):
        if key in reader and reader[key] != writer.get(key):
            if key == "enum" and "enum" in writer and all(v in reader["enum"] for v in writer["enum"]):
                continue
            problems.append(f"{path}: {key} narrowed")
    for key in _LOWER_BOUNDS:
        if key in reader and (key not in writer or writer[key] < reader[key]):
            problems.append(f"{path}: {key} raised to {reader[key]}")
    for key in _UPPER_BOUNDS:
        if key in reader and (key not in writer or writer[key] > reader[key]):
            problems.append(f"{path}: {key} lowered to {reader[key]}")
    added = set(reader.get("required", [])) - set(writer.get("required", []))
    if added:
        problems.append(f"{path}: required property added: {', '.join(sorted(added))}")
    problems += _json_properties(reader, writer, path)
    if "items" in reader or "items" in writer:
        ri, wi = reader.get("items", True), writer.get("items", True)
        if isinstance(ri, dict | bool) and isinstance(wi, dict | bool):
            problems += _json_accepts(ri, wi, f"{path}/items")
        elif ri != wi:
            problems.append(f"{path}/items: tuple items changed; loosely's JSON Schema checker does not cover it")
    return problems


def _json_properties(reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
    problems: list[str] = []
    rprops, wprops = reader.get("properties", {}), writer.get("properties", {})
    radd, wadd = reader.get("additionalProperties", True), writer.get("additionalProperties", True)
    for name, rprop in rprops.items():
        where = f"{path}/properties/{name}"
        if name in wprops:
            problems += _json_accepts(rprop, wprops[name], where)
        elif wadd is not False and not _accepts_anything(rprop):
            # the writer's open content model may carry this property with any value
            problems += [f"{where}: property added to an open content model ({p})"
                         for p in _json_accepts(rprop, wadd, where)]
    for name, wprop in wprops.items():
        if name not in rprops and radd is not True:
            if radd is False:
                problems.append(f"{path}/properties/{name}: property removed from a closed content model")
            else:
                problems += _json_accepts(radd, wprop, f"{path}/properties/{name}")
    if radd is not True and wadd is not False:
        problems += [f"{path}/additionalProperties: {p}" for p in _json_accepts(radd, wadd, path)]
    return problems
