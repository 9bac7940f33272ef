"""The public surface of loosely.hollow.core is exactly this list; changing it is a deliberate act."""

from __future__ import annotations

from loosely.hollow import core

PUBLIC = [
    "BlobKind",
    "BlobParts",
    "Checksum",
    "FieldType",
    "GenericList",
    "GenericMap",
    "GenericObject",
    "GenericRecord",
    "GenericSet",
    "HollowBlobError",
    "HollowBlobTruncatedError",
    "HollowDeltaOriginError",
    "HollowError",
    "HollowMappingError",
    "HollowSchemaError",
    "HollowUnsupportedBlobError",
    "HollowWriteError",
    "ListSchema",
    "MapSchema",
    "ObjectField",
    "ObjectSchema",
    "ReadStateEngine",
    "Records",
    "Schema",
    "SchemaKind",
    "SetSchema",
    "TypeChanges",
    "TypeName",
    "TypeReadState",
    "UpdateEvent",
    "UpdateKind",
    "WriteStateEngine",
    "deep_dump",
    "dump_state",
    "parse_schemas",
    "schema_hash",
    "schemas_to_text",
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
