"""The Hollow blob format (magic 1030): framing, header, type sections and shard layouts, both directions.

This module owns the format; readers and writers elsewhere only build or consume the values defined here.
All multi-byte integers are big-endian; "VarInt" is the MSB-first 7-bit encoding of ``_encoding``; ``utf`` is
Java's ``writeUTF``.  Reference: ``core/write/HollowBlobWriter.java`` and
``core/read/engine/HollowBlobReader.java``
in Netflix/hollow, and ``shared/reference/hollow-blob-format.md``.

Blob (snapshot, delta or reverse delta)::

    i32     magic = 1030
    i64     origin state tag            (-1 for a first snapshot; a delta must start at the loaded state)
    i64     destination state tag
    VarInt  1 + len(S)                  (0: no schemas and no forward-compat bytes -- pre 2.2 producers)
    S:      VarInt n, n x schema        (_schema.py; every type for a snapshot, changed types for a delta)
    VarInt  k, k bytes                  forward compatibility, skipped (only present when S is)
    i16     number of header tags, then that many (utf key, utf value)
    VarInt  number of type sections
    type sections

Type section::

    schema
    VarInt  1 + size(VarInt numShards)  (0: a pre-2.1 blob, one shard, nothing else follows)
    VarInt  k, k bytes                  forward compatibility, skipped
    VarInt  numShards                   a power of two
    [numShards > 1: VarInt maxOrdinal of the whole type]
    numShards x shard
    [snapshot: populated ordinals = i32 numLongs, numLongs x i64; bit (o & 63) of long (o >> 6) set <=> o]

Shards (``words`` = VarLong n then n x i64 of a bit-packed array, element e of width w at bit e*w; ``gaps`` =
VarLong byte length then VarInts: first ordinal, then differences; ``*`` marks parts only deltas have)::

    OBJECT  VarInt maxShardOrdinal, *gaps removed, *gaps added, nFields x VarInt bitsPerField,
            words records, nFields x (VarLong len, len bytes) pool per field
    LIST    VarInt maxShardOrdinal, *removed, *added, VarInt bitsPerPointer, VarInt bitsPerElement,
            VarLong totalElements, words pointers, words elements
    SET     VarInt maxShardOrdinal, *removed, *added, VarInt bitsPerPointer, VarInt bitsPerSize,
            VarInt bitsPerElement, VarLong totalBuckets, words (pointer | size << bitsPerPointer),
            words buckets
    MAP     as SET with VarInt bitsPerKey, VarInt bitsPerValue instead of bitsPerElement; a bucket is
            key | value << bitsPerKey; an empty bucket has an all-ones key

A record's pointer is the END (exclusive) of its elements/buckets/bytes; its start is the previous record's
end
(0 for shard ordinal 0).  STRING/BYTES fields store the end offset with a null flag in the top bit.  A delta
shard holds only the added records, packed in ascending ordinal order, with pointers relative to the delta's
own arrays; its ``maxShardOrdinal`` and widths describe the target state.  Ordinal o lives in shard
``o & (numShards - 1)`` at shard ordinal ``o >> log2(numShards)``.

Optional blob part (types moved to another file, ``ProducerOptionalBlobPartConfig``)::

    i32 magic = 1031, utf part name, i64 origin tag, i64 destination tag, VarInt n, n x schema,
    VarInt k, k bytes, VarInt number of type sections, type sections

A header blob (``header-<version>``) is a blob header followed by ``VarInt numSchemas`` and no sections.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from loosely.hollow.core._encoding import INT32, INT64, Cursor, Writer, varint_size
from loosely.hollow.core._errors import HollowBlobError
from loosely.hollow.core._schema import (
    ListSchema,
    ObjectSchema,
    Schema,
    SchemaKind,
    SetSchema,
    read_schema,
    write_schema,
)

__all__ = [
    "BLOB_MAGIC",
    "PART_MAGIC",
    "BlobHeader",
    "BlobKind",
    "PartHeader",
    "ShardData",
    "TypeSection",
    "encode_gaps",
    "kind_widths_count",
    "parse_blob_header",
    "read_blob_header",
    "read_part_header",
    "read_type_section",
    "with_header_tags",
    "write_blob_header",
    "write_part_header",
    "write_type_section",
]

BLOB_MAGIC: Final = 1030
PART_MAGIC: Final = 1031
assert INT32.size == 4 and INT64.size == 8

# Limits on counts a blob declares; each is checked before the count is used.
SCHEMAS_PER_BLOB_MAX: Final = 1 << 16
HEADER_TAGS_MAX: Final = 0x7FFF
SHARDS_PER_TYPE_MAX: Final = 1 << 16
FORWARD_COMPAT_BYTES_MAX: Final = 1 << 20
WORD_BYTES: Final = 8


class BlobKind(enum.Enum):
    """A full state (snapshot) or a transition between two states (delta and reverse delta)."""

    SNAPSHOT = "snapshot"
    DELTA = "delta"


@dataclass(frozen=True, slots=True)
class BlobHeader:
    """A blob's header: the state tags it goes from and to, the schemas it lists, and its header tags."""

    origin_tag: int
    destination_tag: int
    schemas: tuple[Schema, ...]
    tags: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PartHeader:
    name: str
    origin_tag: int
    destination_tag: int
    schemas: tuple[Schema, ...]


@dataclass(frozen=True, slots=True)
class ShardData:
    """One shard of a type section, as it is in the blob (buffers are zero-copy views when parsed).

    ``widths``: OBJECT one per field; LIST (pointer, element); SET (pointer, size, element); MAP (pointer,
    size, key, value).  ``extras``: OBJECT one pool per field; others ``(elements,)``.  ``total`` is the
    declared element (LIST) or bucket (SET/MAP) count of the target shard; 0 for OBJECT.  ``removed`` and
    ``added`` are the raw gap-encoded lists of a delta, ``None`` in a snapshot.
    """

    max_shard_ordinal: int
    widths: tuple[int, ...]
    fixed: memoryview | bytes
    extras: tuple[memoryview | bytes, ...]
    total: int = 0
    removed: memoryview | bytes | None = None
    added: memoryview | bytes | None = None


@dataclass(frozen=True, slots=True)
class TypeSection:
    schema: Schema
    num_shards: int
    max_ordinal: int
    shards: tuple[ShardData, ...]
    populated: memoryview | bytes | None = None  # snapshot only: the bitset words, without the count


def kind_widths_count(schema: Schema) -> int:
    if isinstance(schema, ObjectSchema):
        return len(schema.fields)
    return {SchemaKind.LIST: 2, SchemaKind.SET: 3, SchemaKind.MAP: 4}[schema.kind]


# --- reading ---------------------------------------------------------------------------------------------


def _read_schemas(cur: Cursor) -> tuple[Schema, ...]:
    n = cur.varint("schema count", SCHEMAS_PER_BLOB_MAX)
    return tuple(read_schema(cur) for _ in range(n))


def _skip_forward_compat(cur: Cursor) -> None:
    cur.skip(cur.varint("forward-compatibility length", FORWARD_COMPAT_BYTES_MAX), "forward-compatibility bytes")


def read_blob_header(cur: Cursor) -> BlobHeader:
    magic = cur.i32("blob magic")
    if magic != BLOB_MAGIC:
        raise HollowBlobError(f"not a Hollow blob: magic {magic}, expected {BLOB_MAGIC}")
    origin = cur.i64("origin tag")
    destination = cur.i64("destination tag")
    envelope = cur.varint("schema envelope length")
    schemas: tuple[Schema, ...] = ()
    if envelope != 0:
        start = cur.pos
        schemas = _read_schemas(cur)
        if cur.pos - start != envelope - 1:
            raise HollowBlobError(
                f"schema envelope declares {envelope - 1} bytes but the schemas took {cur.pos - start}"
            )
        _skip_forward_compat(cur)
    n_tags = cur.i16("header tag count")
    if n_tags < 0:
        raise HollowBlobError(f"negative header tag count {n_tags}")
    tags: dict[str, str] = {}
    for _ in range(n_tags):
        key = cur.utf("header tag name")
        tags[key] = cur.utf("header tag value")
    return BlobHeader(origin, destination, schemas, tags)


def _byte_view(data: object) -> memoryview:
    mv = memoryview(data)  # type: ignore[arg-type]
    return mv if mv.ndim == 1 and mv.itemsize == 1 else mv.cast("B")


def parse_blob_header(data: object) -> tuple[BlobHeader, int]:
    """The header of a snapshot, delta, reverse delta or header blob, and the offset its body starts at.

    >>> from loosely.hollow.core import WriteStateEngine, parse_schemas
    >>> engine = WriteStateEngine(parse_schemas("Point { int x; }"))
    >>> engine.add_header_tag("origin", "doctest")
    >>> header, body_offset = parse_blob_header(engine.write_snapshot())
    >>> header.tags, header.origin_tag
    ({'origin': 'doctest'}, -1)
    """
    cur = Cursor(_byte_view(data))
    header = read_blob_header(cur)
    return header, cur.pos


def with_header_tags(data: object, tags: Mapping[str, str]) -> bytes:
    """A copy of a blob whose header also carries ``tags`` (a tag already present takes the new value in place;
    new tags follow the existing ones).  The body is copied unchanged, so readers see the same records."""
    view = _byte_view(data)
    header, body_offset = parse_blob_header(view)
    merged = dict(header.tags)
    order = list(header.tags) + [k for k in tags if k not in header.tags]
    merged.update(tags)
    w = Writer()
    write_blob_header(w, BlobHeader(header.origin_tag, header.destination_tag, header.schemas, merged), order)
    return b"".join((w.buf, view[body_offset:]))


def read_part_header(cur: Cursor) -> PartHeader:
    magic = cur.i32("blob part magic")
    if magic != PART_MAGIC:
        raise HollowBlobError(f"not a Hollow blob part: magic {magic}, expected {PART_MAGIC}")
    name = cur.utf("blob part name")
    origin = cur.i64("origin tag")
    destination = cur.i64("destination tag")
    schemas = _read_schemas(cur)
    _skip_forward_compat(cur)
    return PartHeader(name, origin, destination, schemas)


def _words(cur: Cursor, what: str) -> memoryview:
    n = cur.varlong(f"{what} word count")
    return cur.view(n * WORD_BYTES, what)


def _gaps(cur: Cursor, what: str) -> memoryview:
    n = cur.varlong(f"{what} byte length")
    return cur.view(n, what)


def _width(cur: Cursor, what: str) -> int:
    w = cur.varint(what)
    if w > 64:
        raise HollowBlobError(f"{what} is {w} bits, more than 64")
    return w


def _read_max_ordinal(cur: Cursor, what: str) -> int:
    """A max ordinal: Java writes -1 (an empty shard or type) as the 5-byte VarInt 8f ff ff ff 7f."""
    value = cur.varint(what, (1 << 32) - 1)
    if value == 0xFFFFFFFF:
        return -1
    if value > (1 << 31) - 1:
        raise HollowBlobError(f"{what} out of range: {value}")
    return value


def read_type_section(cur: Cursor, kind: BlobKind) -> TypeSection:
    schema = read_schema(cur)
    delta = kind is BlobKind.DELTA
    compat = cur.varint("shard envelope length")
    if compat == 0:
        num_shards = 1
    else:
        _skip_forward_compat(cur)
        num_shards = cur.varint("shard count", SHARDS_PER_TYPE_MAX)
    if num_shards <= 0 or num_shards & (num_shards - 1):
        raise HollowBlobError(f"type {schema.name}: shard count {num_shards} is not a power of two")
    max_ordinal = _read_max_ordinal(cur, "max ordinal") if num_shards > 1 else None
    shards = []
    for _ in range(num_shards):
        shards.append(_read_shard_with_max(cur, schema, delta))
    if max_ordinal is None:
        max_ordinal = shards[0].max_shard_ordinal
    populated = None
    if not delta:
        n_longs = cur.i32("populated ordinals word count")
        if n_longs < 0:
            raise HollowBlobError(f"type {schema.name}: negative populated ordinals length {n_longs}")
        populated = cur.view(n_longs * WORD_BYTES, "populated ordinals")
    return TypeSection(schema, num_shards, max_ordinal, tuple(shards), populated)


def _read_shard_with_max(cur: Cursor, schema: Schema, delta: bool) -> ShardData:
    max_shard_ordinal = _read_max_ordinal(cur, "max shard ordinal")
    removed = _gaps(cur, "removed ordinals") if delta else None
    added = _gaps(cur, "added ordinals") if delta else None
    body = _read_shard_body(cur, schema)
    return ShardData(max_shard_ordinal, body[0], body[1], body[2], body[3], removed, added)


def _read_shard_body(cur: Cursor, schema: Schema) -> tuple[tuple[int, ...], memoryview, tuple[memoryview, ...], int]:
    if isinstance(schema, ObjectSchema):
        widths = tuple(_width(cur, f"bits of field {f.name}") for f in schema.fields)
        fixed = _words(cur, "record data")
        pools = []
        for f in schema.fields:
            n = cur.varlong(f"length of the {f.name} pool")
            pools.append(cur.view(n, f"the {f.name} pool"))
        return widths, fixed, tuple(pools), 0
    if isinstance(schema, ListSchema):
        widths = (_width(cur, "bits per list pointer"), _width(cur, "bits per list element"))
    elif isinstance(schema, SetSchema):
        widths = (
            _width(cur, "bits per set pointer"),
            _width(cur, "bits per set size"),
            _width(cur, "bits per set element"),
        )
    else:
        widths = (
            _width(cur, "bits per map pointer"),
            _width(cur, "bits per map size"),
            _width(cur, "bits per map key"),
            _width(cur, "bits per map value"),
        )
    total = cur.varlong("element/bucket total")
    fixed = _words(cur, "record pointers")
    elements = _words(cur, "elements")
    return widths, fixed, (elements,), total


# --- writing ---------------------------------------------------------------------------------------------


def _write_schemas(w: Writer, schemas: Sequence[Schema]) -> None:
    w.varint(len(schemas))
    for s in schemas:
        write_schema(w, s)


def write_blob_header(w: Writer, header: BlobHeader, tag_order: Sequence[str] | None = None) -> None:
    """Write a blob header.  ``tag_order`` fixes the order of the header tags (Java writes them in its
    ``ConcurrentHashMap`` iteration order; see ``_java_order``)."""
    w.i32(BLOB_MAGIC)
    w.i64(header.origin_tag)
    w.i64(header.destination_tag)
    inner = Writer()
    _write_schemas(inner, header.schemas)
    w.varint(len(inner.buf) + 1)
    w.raw(inner.buf)
    w.varint(0)
    keys = list(header.tags) if tag_order is None else list(tag_order)
    if sorted(keys) != sorted(header.tags):
        raise ValueError("tag_order must name each header tag once")
    if len(keys) > HEADER_TAGS_MAX:
        raise ValueError(f"too many header tags: {len(keys)}")
    w.i16(len(keys))
    for k in keys:
        w.utf(k)
        w.utf(header.tags[k])


def write_part_header(w: Writer, header: PartHeader) -> None:
    w.i32(PART_MAGIC)
    w.utf(header.name)
    w.i64(header.origin_tag)
    w.i64(header.destination_tag)
    _write_schemas(w, header.schemas)
    w.varint(0)


def encode_gaps(ordinals: Sequence[int]) -> bytes:
    """Gap-encode ascending ordinals (first value, then differences) as VarInts."""
    w = Writer()
    prev = 0
    for o in ordinals:
        w.varint(o - prev)
        prev = o
    return bytes(w.buf)


def _write_words(w: Writer, data: memoryview | bytes) -> None:
    if len(data) % WORD_BYTES:
        raise ValueError("a bit array must be a whole number of 8-byte words")
    w.varint(len(data) // WORD_BYTES)
    w.raw(data)


def _write_max_ordinal(w: Writer, value: int) -> None:
    if value == -1:
        w.raw(b"\x8f\xff\xff\xff\x7f")  # Java's VarInt.writeVInt(-1)
    else:
        w.varint(value)


def write_type_section(w: Writer, section: TypeSection, kind: BlobKind) -> None:
    delta = kind is BlobKind.DELTA
    write_schema(w, section.schema)
    w.varint(1 + varint_size(section.num_shards))
    w.varint(0)
    w.varint(section.num_shards)
    if section.num_shards > 1:
        _write_max_ordinal(w, section.max_ordinal)
    for shard in section.shards:
        _write_max_ordinal(w, shard.max_shard_ordinal)
        if delta:
            for gaps in (shard.removed, shard.added):
                data = b"" if gaps is None else gaps
                w.varint(len(data))
                w.raw(data)
        if isinstance(section.schema, ObjectSchema):
            for width in shard.widths:
                w.varint(width)
            _write_words(w, shard.fixed)
            for pool in shard.extras:
                w.varint(len(pool))
                w.raw(pool)
        else:
            for width in shard.widths:
                w.varint(width)
            w.varint(shard.total)
            _write_words(w, shard.fixed)
            _write_words(w, shard.extras[0])
    if not delta:
        populated = b"" if section.populated is None else section.populated
        if len(populated) % WORD_BYTES:
            raise ValueError("the populated bitset must be a whole number of words")
        w.i32(len(populated) // WORD_BYTES)
        w.raw(populated)
