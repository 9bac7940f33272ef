"""Protobuf schemas in the form confluent-kafka's serializers send them: a base64 ``FileDescriptorProto``.

Theory of operation
-------------------

confluent-kafka's ``ProtobufSerializer`` registers each ``.proto`` file as the base64 of its serialized
``FileDescriptorProto`` (its imports as references, registered first under their file names; the well-known
``google/protobuf/*.proto`` types are left out), and its deserializer asks for ``format=serialized`` and parses
base64 back. This module accepts that form: it decodes the descriptor, and builds it in a fresh
``DescriptorPool`` together with its references and the well-known types, which checks that every type it uses
resolves. The registry stores the base64 text as sent; its identity (what "the same schema" means) is the
deterministic re-serialisation of the descriptor.

Schemas as ``.proto`` text (what Confluent's Java client and ``curl`` users send, and what Confluent Schema
Registry stores) are not accepted yet: turning text into descriptors needs a ``.proto`` compiler, and no
maintained pure-Python one exists; they get 42201 with a message saying so.

Compatibility (:func:`reader_writer_problems`) compares descriptors message by message (by full name) and field
by field (by number), with the rules of Protobuf's wire format that Confluent's checker also applies: a message
the writer uses must still exist for the reader; a field's type may change only within a wire-compatible group
(``int32 uint32 int64 uint64 bool``, ``sint32 sint64``, ``fixed32 sfixed32``, ``fixed64 sfixed64``, ``string
bytes``, message types of the same name); ``repeated`` may not become singular or back (except packable scalars);
a ``required`` field (proto2) the reader has must be in the writer. Fields only one side has are compatible
(unknown fields are skipped, missing ones take their default). Not covered: enum values, ``oneof`` membership,
``map`` key types, options.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from loosely.registry._errors import invalid_schema

__all__ = ["build_file", "parse_protobuf", "reader_writer_problems"]

WELL_KNOWN_PREFIX = "google/protobuf/"

# FieldDescriptorProto.Type numbers grouped by wire compatibility (descriptor.proto)
_INT32, _INT64, _UINT32, _UINT64, _BOOL = 5, 3, 13, 4, 8
_SINT32, _SINT64, _FIXED32, _SFIXED32, _FIXED64, _SFIXED64 = 17, 18, 7, 15, 6, 16
_STRING, _BYTES, _MESSAGE, _ENUM, _FLOAT, _DOUBLE, _GROUP = 9, 12, 11, 14, 2, 1, 10
_WIRE_GROUPS = [
    frozenset({_INT32, _UINT32, _INT64, _UINT64, _BOOL, _ENUM}),
    frozenset({_SINT32, _SINT64}),
    frozenset({_FIXED32, _SFIXED32}),
    frozenset({_FIXED64, _SFIXED64}),
    frozenset({_STRING, _BYTES}),
]
_LABEL_REQUIRED, _LABEL_REPEATED = 2, 3


def _decode(text: str) -> Any:
    from google.protobuf import descriptor_pb2  # noqa: PLC0415 - the protobuf package loads only for PROTOBUF
    from google.protobuf.message import DecodeError  # noqa: PLC0415

    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise invalid_schema("PROTOBUF schemas are accepted as a base64 FileDescriptorProto (what confluent-kafka's "
                             "ProtobufSerializer sends); .proto text is not supported by this registry yet") from None
    fdp = descriptor_pb2.FileDescriptorProto()
    try:
        fdp.ParseFromString(data)
    except DecodeError as e:
        raise invalid_schema(f"not a FileDescriptorProto: {e}") from None
    if not fdp.name:
        raise invalid_schema("the FileDescriptorProto has no file name")
    return fdp


def _add_well_known(pool: Any, name: str) -> None:
    from google.protobuf import (  # noqa: PLC0415, F401 - importing registers them in the default pool
        any_pb2,
        descriptor_pb2,
        descriptor_pool,
        duration_pb2,
        empty_pb2,
        field_mask_pb2,
        struct_pb2,
        timestamp_pb2,
        wrappers_pb2,
    )

    try:
        found = descriptor_pool.Default().FindFileByName(name)
    except KeyError:
        raise invalid_schema(f"unknown well-known import {name!r}") from None
    for dep in found.dependencies:
        _add_well_known(pool, dep.name)
    fdp = descriptor_pb2.FileDescriptorProto()
    found.CopyToProto(fdp)
    pool.Add(fdp)


def _build(text: str, referenced: tuple[str, ...]) -> tuple[Any, Any]:
    """``(FileDescriptorProto, FileDescriptor)`` of a base64 descriptor built with its references in a fresh pool;
    42201 when it does not build."""
    from google.protobuf import descriptor_pool  # noqa: PLC0415

    fdp = _decode(text)
    pool = descriptor_pool.DescriptorPool()
    try:
        added = set()
        for ref in referenced:
            dep = _decode(ref)
            if dep.name not in added:
                pool.Add(dep)
                added.add(dep.name)
        for name in fdp.dependency:
            if name.startswith(WELL_KNOWN_PREFIX) and name not in added:
                _add_well_known(pool, name)
                added.add(name)
        pool.Add(fdp)
        built = pool.FindFileByName(fdp.name)  # builds it: every type must resolve
    except (TypeError, KeyError, ValueError) as e:
        raise invalid_schema(f"{fdp.name}: {e}") from None
    return fdp, built


def parse_protobuf(text: str, referenced: tuple[str, ...]) -> tuple[str, Any]:
    """``(identity, FileDescriptorProto)`` of a base64 descriptor; 42201 when it does not build."""
    fdp, _ = _build(text, referenced)
    identity = base64.b64encode(fdp.SerializeToString(deterministic=True)).decode()
    return identity, fdp


def build_file(text: str, referenced: tuple[str, ...]) -> Any:
    """The ``FileDescriptor`` of a base64 descriptor and its references (decoders take message classes from it)."""
    return _build(text, referenced)[1]


def _messages(fdp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(prefix: str, messages: Any) -> None:
        for m in messages:
            name = f"{prefix}.{m.name}"
            out[name] = m
            walk(name, m.nested_type)

    walk(f".{fdp.package}" if fdp.package else "", fdp.message_type)
    return out


def _compatible_types(reader: Any, writer: Any) -> bool:
    if reader.type == writer.type:
        return reader.type not in (_MESSAGE, _ENUM, _GROUP) or reader.type_name == writer.type_name
    return any(reader.type in g and writer.type in g for g in _WIRE_GROUPS)


def reader_writer_problems(reader: Any, writer: Any) -> list[str]:
    """Why data written with ``writer`` may not be read with ``reader`` (both ``FileDescriptorProto``)."""
    problems: list[str] = []
    rmsgs, wmsgs = _messages(reader), _messages(writer)
    for name, wm in wmsgs.items():
        rm = rmsgs.get(name)
        if rm is None:
            problems.append(f"message {name.lstrip('.')} removed")
            continue
        rfields = {f.number: f for f in rm.field}
        wfields = {f.number: f for f in wm.field}
        for number, rf in rfields.items():
            wf = wfields.get(number)
            where = f"{name.lstrip('.')}.{rf.name} (field {number})"
            if wf is None:
                if rf.label == _LABEL_REQUIRED:
                    problems.append(f"{where}: required field added")
                continue
            if not _compatible_types(rf, wf):
                problems.append(f"{where}: type changed from {wf.type_name or wf.type} to {rf.type_name or rf.type}")
            if (rf.label == _LABEL_REPEATED) != (wf.label == _LABEL_REPEATED) and (
                    rf.type in (_STRING, _BYTES, _MESSAGE, _GROUP)):
                problems.append(f"{where}: changed between repeated and singular")
    return problems
