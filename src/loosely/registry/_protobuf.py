"""Protobuf schemas as ``.proto`` text and in the form confluent-kafka's serializers send: a base64 descriptor.

Theory of operation
-------------------

confluent-kafka's ``ProtobufSerializer`` registers each ``.proto`` file as the base64 of its serialized
``FileDescriptorProto`` (its imports as references, registered first under their file names; the well-known
``google/protobuf/*.proto`` types are left out), and its deserializer asks for ``format=serialized`` and parses
base64 back. This module accepts that form: it decodes the descriptor, and builds it in a fresh
``DescriptorPool`` together with its references and the well-known types, which checks that every type it uses
resolves.

Schemas as ``.proto`` text (what Confluent's Java client and ``curl`` users send, and what Confluent Schema
Registry stores) are compiled into the same descriptor by ``protoc`` itself, the copy grpcio-tools bundles as a
Python extension (in process, about a millisecond): a hand-written parser would have to follow protoc on every
corner of the language (groups, extensions, options, proto2 defaults, editions) and would drift from it; protoc's
own error messages are clear (``a.proto:3:5: "strin" is not defined.``) and become the 42201 message. The text is
written to a private temporary directory as ``default.proto`` (the name Confluent gives a schema's own file), each
reference under its name (the import path, as in Confluent), next to the well-known ``google/protobuf/*`` files
grpcio-tools ships; its generated module carries each compiled file as a serialized ``FileDescriptorProto``, which
is read back from that module's source without running it. References of a text schema must be text too.

Either way the registry stores the text as sent; its identity (what "the same schema" means) is the deterministic
re-serialisation of the descriptor without its file name, so a schema registered as text and looked up as a
serializer's descriptor is the same schema. :func:`serialized` gives the base64 form of either, for readers that
ask for ``format=serialized`` (confluent-kafka's deserializers).

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

import ast
import base64
import binascii
import os
import tempfile
import threading
from typing import Any

from loosely.registry._errors import invalid_schema

__all__ = ["build_file", "is_serialized", "parse_protobuf", "reader_writer_problems", "serialized"]

MAIN_FILE = "default.proto"
_PROTOC = threading.Lock()  # protoc's in-process compiler keeps global state: one compile at a time

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


def is_serialized(text: str) -> bool:
    """Whether a Protobuf schema is in the base64 descriptor form (else it is ``.proto`` text)."""
    try:
        base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _compile(files: list[tuple[str, str]], target: str) -> list[Any]:
    """The ``FileDescriptorProto`` of ``target`` among ``files`` (``(name, .proto text)``) and of what it imports,
    ``target``'s last."""
    import grpc_tools  # noqa: PLC0415 - protoc loads only for .proto text
    from google.protobuf import descriptor_pb2  # noqa: PLC0415
    from grpc_tools import _protoc_compiler  # noqa: PLC0415

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory(prefix="loosely-proto-") as tmp:
        for name, ref in files:
            path = os.path.normpath(os.path.join(tmp, name))
            if not path.startswith(tmp + os.sep) or not name.endswith(".proto"):
                raise invalid_schema(f"reference name {name!r} is not a relative .proto path")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(ref)
        with _PROTOC:
            try:
                generated = _protoc_compiler.get_protos(target.encode(), [tmp.encode(), well_known.encode()])
            except _protoc_compiler.ProtocErrors as e:
                raise invalid_schema("; ".join(_protoc_message(x) for x in e.errors())) from None
    out = []
    for _, code in generated:
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr == "AddSerializedFile" and node.args and \
                    isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, bytes):
                fdp = descriptor_pb2.FileDescriptorProto()
                fdp.ParseFromString(node.args[0].value)
                out.append(fdp)
    main = [f for f in out if f.name == target]
    if len(main) != 1:
        raise invalid_schema(f"protoc compiled {target} but gave no descriptor for it")
    return [f for f in out if f.name != target] + main


def _descriptors(text: str, referenced: tuple[tuple[str, str], ...]) -> list[Any]:
    """The descriptors of a schema and of its references (either form each), the schema's own last."""
    texts = [(name, ref) for name, ref in referenced if not is_serialized(ref)]
    main_is_text = not is_serialized(text)
    if len(texts) < len(referenced) and (texts or main_is_text):
        raise invalid_schema("the references of a .proto text schema (and of its references) must be .proto text "
                             "too")
    if main_is_text:
        return _compile([*texts, (MAIN_FILE, text)], MAIN_FILE)
    out: dict[str, Any] = {}
    for name, ref in referenced:
        if is_serialized(ref):
            dep = _decode(ref)
            out.setdefault(dep.name, dep)
        elif name not in out:  # a text reference of a serializer's descriptor: compiled under its import path
            for dep in _compile(texts, name):
                out.setdefault(dep.name, dep)
    return [*out.values(), _decode(text)]


def _protoc_message(error: Any) -> str:
    """One protoc error as ``file:line:column: message`` (protoc counts lines and columns from 0 here)."""
    def text(v: object) -> str:
        return v.decode(errors="replace") if isinstance(v, bytes) else str(v)
    where = text(error.filename)
    if error.line >= 0:
        where += f":{error.line + 1}:{error.column + 1}"
    return f"{where}: {text(error.message)}"


def _decode(text: str) -> Any:
    from google.protobuf import descriptor_pb2  # noqa: PLC0415 - the protobuf package loads only for PROTOBUF
    from google.protobuf.message import DecodeError  # noqa: PLC0415

    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise invalid_schema("neither a base64 FileDescriptorProto nor .proto text") from None
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


def _build(text: str, referenced: tuple[tuple[str, str], ...]) -> tuple[Any, Any]:
    """``(FileDescriptorProto, FileDescriptor)`` of a base64 descriptor or ``.proto`` text built with its
    references (``(name, text)`` each, references of references first) in a fresh pool; 42201 when it does not
    build."""
    from google.protobuf import descriptor_pool  # noqa: PLC0415

    *deps, fdp = _descriptors(text, referenced)
    pool = descriptor_pool.DescriptorPool()
    try:
        added = set()
        for dep in deps:
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


def parse_protobuf(text: str, referenced: tuple[tuple[str, str], ...]) -> tuple[str, Any]:
    """``(identity, FileDescriptorProto)`` of a base64 descriptor or ``.proto`` text; 42201 when it does not build."""
    fdp, _ = _build(text, referenced)
    nameless = type(fdp)()
    nameless.CopyFrom(fdp)
    nameless.ClearField("name")
    identity = base64.b64encode(nameless.SerializeToString(deterministic=True)).decode()
    return identity, fdp


def build_file(text: str, referenced: tuple[tuple[str, str], ...]) -> Any:
    """The ``FileDescriptor`` of a schema and its references (decoders take message classes from it)."""
    return _build(text, referenced)[1]


def serialized(fdp: Any) -> str:
    """The base64 ``FileDescriptorProto`` of a parsed schema: what ``format=serialized`` returns."""
    return base64.b64encode(fdp.SerializeToString(deterministic=True)).decode()


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
