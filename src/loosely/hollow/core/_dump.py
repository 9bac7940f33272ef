"""A canonical text dump of a read state, identical to the one the Java interop program prints.

Two implementations (this one and ``interop/hollow/HollowInterop.java``) printing the same text from the same
blobs is the core of the interoperability proof: it shows every ordinal, every field's bits, every SET/MAP
bucket, the ghosts of the last delta, that every element is found again by the reader's own lookups (a key
with a null field counts as a failed lookup, as Java cannot look it up), and the ``HollowChecksum``.  The
format is described at the top of the Java program; change both together.

:func:`deep_dump` prints one type's records with references, lists, sets and maps expanded (sets and maps
sorted), so two states holding the same data under different ordinals compare equal.
"""

from __future__ import annotations

from loosely.hollow.core._access import GenericMap, GenericSet, Records, record_key
from loosely.hollow.core._encoding import to_utf16_units
from loosely.hollow.core._read_state import ReadStateEngine, TypeReadState
from loosely.hollow.core._schema import FieldType, ListSchema, MapSchema, ObjectSchema, SetSchema

__all__ = ["deep_dump", "dump_state"]


def _quote(text: str) -> str:
    out = ['"']
    for unit in to_utf16_units(text):
        if unit in (0x22, 0x5C):
            out.append("\\" + chr(unit))
        elif unit < 0x20 or unit > 0x7E:
            out.append(f"\\u{unit:04x}")
        else:
            out.append(chr(unit))
    out.append('"')
    return "".join(out)


def _java_order(text: str) -> bytes:
    # Java compares strings by UTF-16 code units.
    return text.encode("utf-16-be", "surrogatepass")


def _ordinal_list(ordinals: list[int]) -> str:
    return ",".join(map(str, ordinals)) if ordinals else "-"


def _field(state: TypeReadState, ordinal: int, index: int, ftype: FieldType) -> str:
    value = state.view.get(ordinal, index)
    if value is None:
        return "null"
    if ftype is FieldType.FLOAT:
        return f"f{state.view.raw(ordinal, index) & 0xFFFFFFFF:08x}"
    if ftype is FieldType.DOUBLE:
        return f"d{state.view.raw(ordinal, index):016x}"
    if ftype is FieldType.BOOLEAN:
        return "true" if value else "false"
    if ftype is FieldType.STRING:
        assert isinstance(value, str)
        return _quote(value)
    if ftype is FieldType.BYTES:
        assert isinstance(value, bytes)
        return "x" + value.hex()
    return f"@{value!s}" if ftype is FieldType.REFERENCE else str(value)


def _record(state: TypeReadState, ordinal: int) -> str:
    schema = state.schema
    view = state.view
    if isinstance(schema, ObjectSchema):
        parts = [f"{f.name}={_field(state, ordinal, i, f.type)}" for i, f in enumerate(schema.fields)]
        return "{" + ",".join(parts) + "}"
    if isinstance(schema, ListSchema):
        return "[" + ",".join(str(e) for e in view.elements(ordinal)) + "]"
    if isinstance(schema, SetSchema):
        return "{" + ",".join(f"{b}:{e}" for b, e in view.buckets(ordinal)) + "}"
    return "{" + ",".join(f"{b}:{k}={v}" for b, k, v in view.map_buckets(ordinal)) + "}"


def _lookups(records: Records, state: TypeReadState, ordinal: int) -> tuple[int, int]:
    ok = failed = 0
    schema = state.schema
    if isinstance(schema, SetSchema):
        s = GenericSet(records, state, ordinal)
        paths = records.hash_key(schema)
        for e in s.ordinals():
            if paths:
                key = record_key(records, paths, e)
                found = None if None in key else s.find(*key)
                hit = found is not None and found.ordinal == e
            else:
                hit = s.contains_ordinal(e)
            ok, failed = (ok + 1, failed) if hit else (ok, failed + 1)
    elif isinstance(schema, MapSchema):
        m = GenericMap(records, state, ordinal)
        paths = records.hash_key(schema)
        for k, v in m.entry_ordinals():
            if paths:
                key = record_key(records, paths, k)
                if None in key:  # like Java, a key with a null field cannot be looked up
                    failed += 1
                    continue
                value, key_rec = m.find(*key), m.find_key(*key)
                hit = value is not None and value.ordinal == v and key_rec is not None and key_rec.ordinal == k
            else:
                hit = m.get_ordinal(k) == v
            ok, failed = (ok + 1, failed) if hit else (ok, failed + 1)
    return ok, failed


def dump_state(engine: ReadStateEngine) -> str:
    """Every type, ordinal, record, ghost and the checksum, in the interop program's text format."""
    records = Records(engine)
    lines = [f"STATE tag={engine.current_tag}"]
    for key in sorted(engine.header_tags, key=_java_order):
        lines.append(f"HEADER {_quote(key)} {_quote(engine.header_tags[key])}")
    ok = failed = 0
    for name in sorted(engine.type_names(), key=_java_order):
        state = engine.type(name)
        lines.append(f"TYPE {name} shards={state.num_shards} maxOrdinal={state.max_ordinal}")
        lines.append(f"SCHEMA {_quote(state.schema.to_text())}")
        populated = state.populated_ordinals().tolist()
        ghosts = state.ghost_ordinals().tolist()
        lines.append(f"POPULATED {_ordinal_list(populated)}")
        lines.append(f"GHOSTS {_ordinal_list(ghosts)}")
        for o in populated:
            lines.append(f"R {o} {_record(state, o)}")
            a, b = _lookups(records, state, o)
            ok += a
            failed += b
        lines.extend(f"G {o} {_record(state, o)}" for o in ghosts)
    lines.append(f"LOOKUPS ok={ok} failed={failed}")
    lines.append(f"CHECKSUM {engine.checksum().hex()}")
    return "\n".join(lines) + "\n"


def _deep(engine: ReadStateEngine, state: TypeReadState, ordinal: int) -> str:
    schema = state.schema
    view = state.view
    if isinstance(schema, ObjectSchema):
        parts = []
        for i, f in enumerate(schema.fields):
            if f.referenced_type is not None:
                ref = view.get(ordinal, i)
                text = "null" if ref is None else _deep(engine, engine.type(f.referenced_type), int(ref))
            else:
                text = _field(state, ordinal, i, f.type)
            parts.append(f"{f.name}={text}")
        return f"{schema.name}{{" + ",".join(parts) + "}"
    if isinstance(schema, ListSchema):
        et = engine.type(schema.element_type)
        return "[" + ",".join(_deep(engine, et, e) for e in view.elements(ordinal)) + "]"
    if isinstance(schema, SetSchema):
        et = engine.type(schema.element_type)
        items = sorted(_deep(engine, et, e) for e in view.elements(ordinal))
        return "<" + ",".join(items) + ">"
    assert isinstance(schema, MapSchema)
    kt, vt = engine.type(schema.key_type), engine.type(schema.value_type)
    entries = sorted(_deep(engine, kt, k) + "=>" + _deep(engine, vt, v) for k, v in view.entries(ordinal))
    return "(" + ",".join(entries) + ")"


def deep_dump(engine: ReadStateEngine, type_name: str) -> str:
    """The records of ``type_name`` fully expanded, one per line, sorted (Java ``deep`` command)."""
    state = engine.type(type_name)
    lines = sorted(_deep(engine, state, o) for o in state.populated_ordinals().tolist())
    return "".join(line + "\n" for line in lines)
