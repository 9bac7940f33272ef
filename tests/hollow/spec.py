"""Write-engine scripts ("specs") that both the Python writer and Java's (``HollowInterop spec``) can run.

A spec is a sequence of write-engine calls (format at the top of ``interop/hollow/HollowInterop.java``); the
same spec run by both engines must produce byte-identical blobs.  :func:`random_spec` generates specs from a
seed: random schemas of every kind and field type, several cycles with unchanged, changed, removed and added
records, hash keys (also through references), pinned and size-driven shards, header tags, unicode.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

from loosely.hollow.core import (
    FieldType,
    ListSchema,
    MapSchema,
    ObjectField,
    ObjectSchema,
    Schema,
    SetSchema,
    TypeName,
    parse_schemas,
    schemas_to_text,
)
from loosely.hollow.core._blob import BlobKind
from loosely.hollow.core._encoding import from_utf16_units, to_utf16_units
from loosely.hollow.core._write_state import WriteStateEngine


def hex_string(text: str) -> str:
    return "s" + "".join(f"{u:04x}" for u in to_utf16_units(text))


def unhex_string(token: str) -> str:
    units = [int(token[i : i + 4], 16) for i in range(1, len(token), 4)]
    return from_utf16_units(struct.pack(f"<{len(units)}H", *units))


def _value(schema: ObjectSchema, index: int, token: str, ordinals: list[int]) -> object:
    if token == "_":
        return None
    t = schema.fields[index].type
    if t in (FieldType.INT, FieldType.LONG):
        return int(token)
    if t is FieldType.BOOLEAN:
        return token == "1"
    if t is FieldType.FLOAT:
        return struct.unpack(">f", bytes.fromhex(token))[0]
    if t is FieldType.DOUBLE:
        return struct.unpack(">d", bytes.fromhex(token))[0]
    if t is FieldType.STRING:
        return unhex_string(token)
    if t is FieldType.BYTES:
        return bytes.fromhex(token[1:])
    return ordinals[int(token[1:])]


def run_spec(text: str, engine: WriteStateEngine | None = None) -> dict[str, bytes]:
    """Run a spec with the Python write engine; returns the blobs by Java's file names."""
    out: dict[str, bytes] = {}
    pinned: dict[str, int] = {}
    parts: dict[str, list[str]] = {}
    target = None
    focus = False
    w = engine
    cycle = 0
    ordinals: list[int] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split(" ")
        cmd = tok[0]
        if cmd == "SHARDS":
            pinned[tok[1]] = int(tok[2])
        elif cmd == "TARGET_SHARD_SIZE":
            target = int(tok[1])
        elif cmd == "FOCUS_HOLES":
            focus = True
        elif cmd == "PART":
            parts.setdefault(tok[1], []).extend(tok[2:])
        elif cmd == "SCHEMAS":
            schemas = parse_schemas(bytes.fromhex(tok[1]).decode("utf-8"))
            if w is None:
                w = WriteStateEngine(focus_hole_fill_in_fewest_shards=focus)
            for s in schemas:
                w.add_type(s, pinned.get(s.name))
        elif cmd == "HEADER":
            assert w is not None
            w.add_header_tag(unhex_string(tok[1]), unhex_string(tok[2]))
        elif cmd == "CYCLE":
            assert w is not None
            if cycle > 0:
                w.prepare_for_next_cycle()
            cycle += 1
            w.override_next_tag(int(tok[1]))
            ordinals = []
        elif cmd == "KEEP_ALL":
            assert w is not None
            w.add_all_from_previous_cycle()
        elif cmd == "REC":
            assert w is not None
            schema = w.schema(tok[1])
            args = tok[2:]
            if isinstance(schema, ObjectSchema):
                values = [_value(schema, i, a, ordinals) for i, a in enumerate(args)]
                ordinals.append(w.add_object(tok[1], values))  # type: ignore[arg-type]
            elif isinstance(schema, ListSchema):
                ordinals.append(w.add_list(tok[1], [ordinals[int(a[1:])] for a in args]))
            elif isinstance(schema, SetSchema):
                ordinals.append(w.add_set(tok[1], [ordinals[int(a[1:])] for a in args]))
            else:
                pairs = [(ordinals[int(args[i][1:])], ordinals[int(args[i + 1][1:])]) for i in range(0, len(args), 2)]
                ordinals.append(w.add_map(tok[1], pairs))
        elif cmd == "WRITE":
            assert w is not None
            if target is not None:
                w.target_max_type_shard_size = target
            _write(w, cycle, parts, out)
        else:
            raise ValueError(f"bad spec line {line!r}")
    return out


def _write(w: WriteStateEngine, cycle: int, parts: dict[str, list[str]], out: dict[str, bytes]) -> None:
    def put(name: str, kind: BlobKind, reverse: bool) -> None:
        blob = w.write(kind, reverse=reverse, parts=parts or None)
        out[name] = blob.data
        head, tail = name.split("-", 1)
        for part, data in blob.parts.items():
            out[f"{head}_{part}-{tail}"] = data

    put(f"snapshot-{cycle}", BlobKind.SNAPSHOT, False)
    if cycle > 1:
        put(f"delta-{cycle - 1}-{cycle}", BlobKind.DELTA, False)
        put(f"reversedelta-{cycle}-{cycle - 1}", BlobKind.DELTA, True)


def chain_ops(blobs: dict[str, bytes]) -> list[str]:
    """A replay order covering every blob of a spec's output: forward through the deltas, then back."""
    cycles = max(int(n.split("-")[1]) for n in blobs if n.startswith("snapshot-"))
    ops = ["snapshot:snapshot-1"] + [f"delta:delta-{c - 1}-{c}" for c in range(2, cycles + 1)]
    ops += [f"delta:reversedelta-{c}-{c - 1}" for c in range(cycles, 1, -1)]
    ops += [f"snapshot:snapshot-{cycles}"]
    return ops


# --- random specs ----------------------------------------------------------------------------------------

_WORDS = ["", "a", "café", "emoji\U0001f600", "nul\x00char", "lone\ud800x", "\udc00", "日本", 'quote"\\', "long " * 9]


@dataclass
class _Gen:
    rnd: random.Random
    schemas: list[Schema] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def _float_token(rnd: random.Random, double: bool) -> str:
    pick = rnd.random()
    if double:
        if pick < 0.1:
            return rnd.choice(["7ff8000000000000", "7ff0000000000000", "8000000000000000", "fff0000000000001"])
        value = struct.pack(">d", rnd.choice([0.5, -1.25, 1e300, 3.0, rnd.uniform(-1e6, 1e6)]))
        return value.hex() if pick < 0.8 else f"{rnd.getrandbits(64):016x}"
    if pick < 0.1:
        return rnd.choice(["7fc00000", "7f800000", "80000000", "7f800001"])
    return f"{rnd.getrandbits(32):08x}" if pick > 0.7 else struct.pack(">f", rnd.choice([0.5, -2.0, 7.0])).hex()


def _int_token(rnd: random.Random, bits: int) -> str:
    lo, hi = -(1 << (bits - 1)) + 1, (1 << (bits - 1)) - 1
    pick = rnd.random()
    if pick < 0.5:
        return str(rnd.randint(-5, 40))
    if pick < 0.6:
        return str(rnd.choice([lo, hi]))
    return str(rnd.randint(lo, hi) >> rnd.randint(0, bits - 1))


def _make_schemas(g: _Gen) -> None:
    rnd = g.rnd
    names: list[TypeName] = []
    objects: list[ObjectSchema] = []
    for t in range(rnd.randint(2, 6)):
        kind = "OBJECT" if t < 2 or rnd.random() < 0.5 else rnd.choice(["LIST", "SET", "MAP"])
        name = TypeName(f"T{t}")
        if kind == "OBJECT":
            fields = []
            for f in range(rnd.randint(1, 7)):
                ftype = rnd.choice(list(FieldType))
                if ftype is FieldType.REFERENCE and not names:
                    ftype = FieldType.INT
                ref = TypeName(rnd.choice(names)) if ftype is FieldType.REFERENCE else None
                fields.append(ObjectField(f"f{f}", ftype, ref))
            key = None
            simple = [f.name for f in fields if f.type in (FieldType.INT, FieldType.LONG, FieldType.STRING)]
            if simple and rnd.random() < 0.5:
                key = tuple(rnd.sample(simple, rnd.randint(1, len(simple))))
            schema: Schema = ObjectSchema(name, tuple(fields), key)
            objects.append(schema)
        elif kind == "LIST":
            schema = ListSchema(name, rnd.choice(names))
        else:
            element = rnd.choice(names)
            hash_key = _hash_key(rnd, g.schemas, element)
            if kind == "SET":
                schema = SetSchema(name, element, hash_key)
            else:
                schema = MapSchema(name, element, rnd.choice(names), hash_key)
        g.schemas.append(schema)
        names.append(name)


def _hash_key(rnd: random.Random, schemas: list[Schema], element: str) -> tuple[str, ...] | None:
    target = next(s for s in schemas if s.name == element)
    if not isinstance(target, ObjectSchema) or rnd.random() < 0.4:
        return None
    paths = []
    for f in target.fields:
        if f.type is FieldType.REFERENCE:
            ref = next(s for s in schemas if s.name == f.referenced_type)
            if isinstance(ref, ObjectSchema):
                inner = [g.name for g in ref.fields if g.type not in (FieldType.REFERENCE, FieldType.BYTES)]
                paths += [f"{f.name}.{n}" for n in inner]
        elif f.type is not FieldType.BYTES:
            paths.append(f.name)
    if not paths:
        return None
    return tuple(rnd.sample(paths, rnd.randint(1, min(3, len(paths)))))


# A generated record is a tree: (type, content), where REFERENCE fields and collection elements are trees
# themselves.  Emitting a tree writes its children first (REC lines refer to earlier lines), so a record kept
# from the previous cycle is emitted again with identical content and must keep its ordinal.
Tree = tuple[str, tuple[object, ...]]


def _fresh(rnd: random.Random, schema: Schema, pools: dict[str, list[Tree]]) -> Tree:
    if isinstance(schema, ObjectSchema):
        content: list[object] = []
        for f in schema.fields:
            if rnd.random() < 0.12 and f.type is not FieldType.BYTES:
                content.append(None)
                continue
            t = f.type
            if t is FieldType.INT:
                content.append(_int_token(rnd, 32))
            elif t is FieldType.LONG:
                content.append(_int_token(rnd, 64))
            elif t is FieldType.BOOLEAN:
                content.append(rnd.choice("01"))
            elif t is FieldType.FLOAT:
                content.append(_float_token(rnd, False))
            elif t is FieldType.DOUBLE:
                content.append(_float_token(rnd, True))
            elif t is FieldType.STRING:
                content.append(hex_string(rnd.choice(_WORDS) + str(rnd.randint(0, 30))))
            elif t is FieldType.BYTES:
                content.append("x" + rnd.randbytes(rnd.randint(0, 6)).hex() if rnd.random() > 0.1 else None)
            else:
                assert f.referenced_type is not None
                pool = pools[f.referenced_type]
                content.append(rnd.choice(pool) if pool else None)
        return schema.name, tuple(content)
    if isinstance(schema, (ListSchema, SetSchema)):
        pool = pools[schema.element_type]
        elements = [rnd.choice(pool) for _ in range(rnd.randint(0, 6))] if pool else []
        return schema.name, tuple(elements)
    kpool, vpool = pools[schema.key_type], pools[schema.value_type]
    entries: list[tuple[Tree, Tree]] = []
    if kpool and vpool:
        for _ in range(rnd.randint(0, 5)):
            entries.append((rnd.choice(kpool), rnd.choice(vpool)))
    return schema.name, tuple(entries)


def _emit(tree: Tree, by_name: dict[str, Schema], lines: list[str], counter: list[int]) -> int:
    name, content = tree
    schema = by_name[name]
    tokens: list[str] = []
    if isinstance(schema, ObjectSchema):
        for f, v in zip(schema.fields, content, strict=True):
            if v is None:
                tokens.append("_")
            elif f.type is FieldType.REFERENCE:
                tokens.append(f"#{_emit(v, by_name, lines, counter)}")  # type: ignore[arg-type]
            else:
                tokens.append(str(v))
    elif isinstance(schema, MapSchema):
        seen: set[int] = set()
        for k, v in content:  # type: ignore[misc]
            ki = _emit(k, by_name, lines, counter)
            vi = _emit(v, by_name, lines, counter)
            if ki not in seen:  # a map has one value per key
                seen.add(ki)
                tokens += [f"#{ki}", f"#{vi}"]
    else:
        indices = [_emit(e, by_name, lines, counter) for e in content]  # type: ignore[arg-type]
        if isinstance(schema, SetSchema):
            indices = sorted(set(indices))
        tokens = [f"#{i}" for i in indices]
    lines.append(f"REC {name} {' '.join(tokens)}".rstrip())
    counter[0] += 1
    return counter[0] - 1


def _cycle(g: _Gen, previous: dict[str, list[Tree]], size: int) -> dict[str, list[Tree]]:
    rnd = g.rnd
    pools: dict[str, list[Tree]] = {s.name: [] for s in g.schemas}
    for schema in g.schemas:
        old = previous.get(schema.name, [])
        for _ in range(rnd.randint(0, size)):
            tree = rnd.choice(old) if old and rnd.random() < 0.6 else _fresh(rnd, schema, pools)
            pools[schema.name].append(tree)
    by_name = {s.name: s for s in g.schemas}
    counter = [0]
    for schema in g.schemas:
        for tree in pools[schema.name]:
            _emit(tree, by_name, g.lines, counter)
    return pools


def random_spec(seed: int, cycles: int = 4, size: int = 12, *, extras: bool = False) -> str:
    """A random script; ``extras`` also uses KEEP_ALL and FOCUS_HOLES (not in the golden fixtures)."""
    rnd = random.Random(seed)
    g = _Gen(rnd)
    _make_schemas(g)
    if extras and rnd.random() < 0.5:
        g.lines.append("FOCUS_HOLES")
    if rnd.random() < 0.3:
        g.lines.append(f"TARGET_SHARD_SIZE {rnd.choice([16, 64, 256])}")
    for s in g.schemas:
        if rnd.random() < 0.15:
            g.lines.append(f"SHARDS {s.name} {rnd.choice([2, 4])}")
    if rnd.random() < 0.2 and len(g.schemas) > 2:
        g.lines.append(f"PART extra {g.schemas[-1].name}")
    g.lines.append("SCHEMAS " + schemas_to_text(g.schemas).encode("utf-8").hex())
    for i in range(rnd.randint(0, 14)):
        g.lines.append(f"HEADER {hex_string(f'tag{i}{rnd.choice(_WORDS)}')} {hex_string(rnd.choice(_WORDS))}")
    previous: dict[str, list[Tree]] = {}
    for c in range(1, cycles + 1):
        g.lines.append(f"CYCLE {rnd.getrandbits(64) - (1 << 63)}")
        if extras and c > 1 and rnd.random() < 0.3:
            g.lines.append("KEEP_ALL")
        previous = _cycle(g, previous, size)
        if rnd.random() < 0.2:
            g.lines.append(f"HEADER {hex_string('cycle')} {hex_string(str(c))}")
        g.lines.append("WRITE")
    return "\n".join(g.lines) + "\n"
