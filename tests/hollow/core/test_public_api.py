"""The public surface of loosely.hollow.core is exactly this list; changing it is a deliberate act."""

from __future__ import annotations

from loosely.hollow import core

PUBLIC = [
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
    "INLINE",
    "Int16",
    "Int32",
    "Int64",
    "Int8",
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
    "TRANSIENT",
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


def test_all_is_pinned() -> None:
    assert sorted(core.__all__) == sorted(PUBLIC)


def test_every_public_name_resolves_and_is_documented() -> None:
    for name in core.__all__:
        obj = getattr(core, name)
        assert obj is not None
        if callable(obj) and not isinstance(obj, type(core.TypeName)):
            assert obj.__doc__, f"{name} has no docstring"


def test_no_private_module_leaks_into_the_namespace_as_public() -> None:
    assert all(not n.startswith("_") for n in core.__all__)
