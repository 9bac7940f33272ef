"""Hollow core: Netflix Hollow's blob format, write and read state engines, in Python.

Byte-compatible with Java Hollow (``com.netflix.hollow:hollow``, blob format 1030): a Python consumer reads
what a Java producer publishes and the other way round.  This package is the engine only; the producer and
consumer lifecycle, blob stores and announcements live in ``loosely.hollow.api``, which builds on it.

The pieces::

    schemas        ObjectSchema / ListSchema / SetSchema / MapSchema, parse_schemas(), schemas_to_text()
    writing        WriteStateEngine (records -> ordinals -> snapshot / delta / reverse delta blobs)
    mapping        ObjectMapper: dataclasses and NamedTuples -> schemas and records, as Java's object mapper
    reading        ReadStateEngine (snapshot from bytes or a mapped file, deltas, checksums, change events)
    access         Records / GenericObject ... (by ordinal and field name), PrimaryKeyIndex, TypedReader,
                   columns() for numpy arrays
    diagnostics    dump_state(), deep_dump(), Checksum
"""

from loosely.hollow.core._access import (
    GenericList,
    GenericMap,
    GenericObject,
    GenericRecord,
    GenericSet,
    Records,
)
from loosely.hollow.core._blob import BlobHeader, BlobKind, parse_blob_header, with_header_tags
from loosely.hollow.core._dump import deep_dump, dump_state
from loosely.hollow.core._errors import (
    HollowBlobError,
    HollowBlobTruncatedError,
    HollowDeltaOriginError,
    HollowError,
    HollowMappingError,
    HollowSchemaError,
    HollowUnsupportedBlobError,
    HollowWriteError,
)
from loosely.hollow.core._hashing import Checksum
from loosely.hollow.core._index import Column, PrimaryKeyIndex, column
from loosely.hollow.core._mapper import (
    INLINE,
    TRANSIENT,
    Char,
    Float32,
    Float64,
    HashKey,
    Int8,
    Int16,
    Int32,
    Int64,
    JavaType,
    ObjectMapper,
    Shards,
    TypedReader,
    TypeNamed,
    hollow_type,
)
from loosely.hollow.core._read_state import (
    ReadStateEngine,
    TypeChanges,
    TypeReadState,
    UpdateEvent,
    UpdateKind,
)
from loosely.hollow.core._schema import (
    FieldType,
    ListSchema,
    MapSchema,
    ObjectField,
    ObjectSchema,
    Schema,
    SchemaKind,
    SetSchema,
    TypeName,
    parse_schemas,
    schema_hash,
    schemas_to_text,
)
from loosely.hollow.core._write_state import BlobParts, WriteStateEngine

__all__ = [
    "INLINE",
    "TRANSIENT",
    "BlobHeader",
    "BlobKind",
    "BlobParts",
    "Char",
    "Checksum",
    "Column",
    "FieldType",
    "Float32",
    "Float64",
    "GenericList",
    "GenericMap",
    "GenericObject",
    "GenericRecord",
    "GenericSet",
    "HashKey",
    "HollowBlobError",
    "HollowBlobTruncatedError",
    "HollowDeltaOriginError",
    "HollowError",
    "HollowMappingError",
    "HollowSchemaError",
    "HollowUnsupportedBlobError",
    "HollowWriteError",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "JavaType",
    "ListSchema",
    "MapSchema",
    "ObjectField",
    "ObjectMapper",
    "ObjectSchema",
    "PrimaryKeyIndex",
    "ReadStateEngine",
    "Records",
    "Schema",
    "SchemaKind",
    "SetSchema",
    "Shards",
    "TypeChanges",
    "TypeName",
    "TypeNamed",
    "TypeReadState",
    "TypedReader",
    "UpdateEvent",
    "UpdateKind",
    "WriteStateEngine",
    "column",
    "deep_dump",
    "dump_state",
    "hollow_type",
    "parse_blob_header",
    "parse_schemas",
    "schema_hash",
    "schemas_to_text",
    "with_header_tags",
]
