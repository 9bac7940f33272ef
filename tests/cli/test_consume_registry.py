"""``loosely consume -s value=avro -r URL``: Confluent-framed records printed as kcat prints them, decoded with the
registry's schemas.

Records are written by confluent-kafka's serializers through loosely's own registry, then read back by ``loosely
consume`` and compared with what confluent-kafka's deserializers decode, turned into avro-c's JSON encoding
(:func:`avro_c_json`, written here from the Avro specification and avro-c's rules, independently of the code under
test). Differential: on loosely's broker and on Apache Kafka, one broker, registry and topic per module and target.
Debian's kcat is built without Avro, so it cannot be the oracle here; its error lines and exit codes come from kcat's
and libserdes's source (see docs/tutorial.md).
"""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

from loosely.testing import embedded_broker, embedded_schema_registry

LOOSELY = [sys.executable, "-m", "loosely.cli.main", "consume"]
BOUND_S = 30  # interpreter start-up on a loaded machine, plus the client's own timeouts

USER = {"type": "record", "name": "User", "namespace": "shop", "fields": [
    {"name": "name", "type": "string"},
    {"name": "age", "type": ["null", "int"]},
    {"name": "blob", "type": "bytes"},
    {"name": "score", "type": "float"},
    {"name": "ratio", "type": "double"},
    {"name": "tags", "type": {"type": "map", "values": "long"}},
    {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}},
    {"name": "address", "type": ["null", "string", {"type": "record", "name": "Address", "fields": [
        {"name": "city", "type": "string"}]}]},
    {"name": "ids", "type": {"type": "array", "items": "long"}},
    {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 2}},
    {"name": "ok", "type": "boolean"},
]}
USERS = [
    {"name": "Ada", "age": 36, "blob": b"\x00\xff", "score": 1.1, "ratio": 1e20, "tags": {"a": 1},
     "colour": "GREEN", "address": {"city": "Zürich"}, "ids": [1, -2], "hash": b"\x01\x7f", "ok": True},
    {"name": "Bob \"the\" builder\n", "age": None, "blob": b"", "score": 0.0, "ratio": -0.25, "tags": {},
     "colour": "RED", "address": "somewhere", "ids": [], "hash": b"ab", "ok": False},
]
PERSON_JSON = {"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "number"}}}
F = descriptor_pb2.FieldDescriptorProto


def avro_c_json(schema: Any, value: Any, named: dict[str, Any] | None = None) -> Any:
    """``value`` as avro-c's JSON encoding of ``schema`` (what kcat prints), as Python data: a union's non-null
    branch as ``{type name: value}``, bytes and fixed as one code point per byte."""
    named = {} if named is None else named
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        if value is None:
            return None
        for branch in schema:
            b = named.get(branch, branch) if isinstance(branch, str) else branch
            kind = b if isinstance(b, str) else b["type"]
            fits = {"string": isinstance(value, str), "int": isinstance(value, int), "record": isinstance(value, dict)}
            if fits.get(kind, False):
                return {b["name"] if isinstance(b, dict) else kind: avro_c_json(b, value, named)}
        raise AssertionError(f"no branch of {schema} for {value!r}")
    kind = schema if isinstance(schema, str) else schema["type"]
    if isinstance(schema, dict) and "name" in schema:
        named[schema["name"]] = schema
    if kind == "record":
        return {f["name"]: avro_c_json(f["type"], value[f["name"]], named) for f in schema["fields"]}
    if kind == "map":
        return {k: avro_c_json(schema["values"], v, named) for k, v in value.items()}
    if kind == "array":
        return [avro_c_json(schema["items"], v, named) for v in value]
    if kind in ("bytes", "fixed"):
        return value.decode("latin-1")
    return value


@dataclass(frozen=True)
class Target:
    name: str
    bootstrap: str
    registry_url: str
    avro_topic: str
    other_topic: str  # JSON Schema and Protobuf values, and records that are not framed


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for k, v in records:
        p.produce(topic, v, k, partition=0)
    assert p.flush(30) == 0


@functools.cache
def protobuf_class() -> Any:
    fdp = descriptor_pb2.FileDescriptorProto(name="shop/item.proto", package="shop", syntax="proto3")
    m = fdp.message_type.add(name="Item")
    m.field.add(name="item_name", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    m.field.add(name="count", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Item"))


@pytest.fixture(scope="module", params=["loosely", "kafka"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    suffix = uuid.uuid4().hex[:8]
    with contextlib.ExitStack() as stack:
        if request.param == "kafka":  # the session's Apache Kafka: the registry gets a topic of its own
            bootstrap, schemas_topic = request.getfixturevalue("apache_kafka").bootstrap_servers, f"_schemas-{suffix}"
        else:
            broker = stack.enter_context(embedded_broker(data_dir=str(tmp_path_factory.mktemp("consume-registry"))))
            bootstrap, schemas_topic = broker.bootstrap_servers, "_schemas"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        avro_topic, other_topic = f"users-{suffix}", f"other-{suffix}"
        for f in admin.create_topics([NewTopic(avro_topic, 1, 1), NewTopic(other_topic, 1, 1)]).values():
            f.result(30)
        registry = stack.enter_context(embedded_schema_registry(bootstrap, topic=schemas_topic))
        client = SchemaRegistryClient({"url": registry.url})
        value = AvroSerializer(client, json.dumps(USER))
        key = AvroSerializer(client, '"string"')
        ctx_v, ctx_k = (SerializationContext(avro_topic, f) for f in (MessageField.VALUE, MessageField.KEY))
        produce(bootstrap, avro_topic, [(key(f"k{i}", ctx_k), value(u, ctx_v)) for i, u in enumerate(USERS)])
        ctx = SerializationContext(other_topic, MessageField.VALUE)
        as_json = JSONSerializer(json.dumps(PERSON_JSON), client)
        as_protobuf = ProtobufSerializer(protobuf_class(), client, {"use.deprecated.format": False})
        produce(bootstrap, other_topic, [
            (b"j", as_json({"name": "\u00dcnal", "n": 2.5}, ctx)),
            # registered under a subject of its own: a subject holds one schema type
            (b"p", as_protobuf(protobuf_class()(item_name="pen", count=3), SerializationContext(
                f"items-{suffix}", MessageField.VALUE))),
            (b"plain", b"not framed"),
            (b"unknown", b"\x00\x00\x01\x00\x00{}"),  # schema id 65536: never registered
        ])
        yield Target(request.param, bootstrap, registry.url, avro_topic, other_topic)


def consume(target: Target, topic: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*LOOSELY, "-b", target.bootstrap, "-t", topic, "-e", "-q", *args],
                          capture_output=True, timeout=BOUND_S * 2, check=False)


def test_avro_values_print_as_avro_c_json(target: Target) -> None:
    r = consume(target, target.avro_topic, "-s", "value=avro", "-r", target.registry_url)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    client = SchemaRegistryClient({"url": target.registry_url})
    raw = subprocess.run([*LOOSELY, "-b", target.bootstrap, "-t", target.avro_topic, "-e", "-q", "-f", "%R%s"],
                         capture_output=True, timeout=BOUND_S * 2, check=True).stdout
    values = []
    while raw:
        n = int.from_bytes(raw[:4], "big")
        values.append(raw[4 : 4 + n])
        raw = raw[4 + n :]
    ctx = SerializationContext(target.avro_topic, MessageField.VALUE)
    expected = [avro_c_json(USER, AvroDeserializer(client)(v, ctx)) for v in values]
    assert [json.loads(line) for line in lines] == expected
    # the text itself is avro-c's (jansson's): spaces after , and :, upper-case \u escapes, shortest floats
    assert lines[0] == ('{"name": "Ada", "age": {"int": 36}, "blob": "\\u0000\\u00FF", "score": 1.100000023841858, '
                        '"ratio": 1e20, "tags": {"a": 1}, "colour": "GREEN", "address": {"Address": {"city": '
                        '"Z\\u00FCrich"}}, "ids": [1, -2], "hash": "\\u0001\x7f", "ok": true}')
    assert lines[1].startswith('{"name": "Bob \\"the\\" builder\\n", "age": null, "blob": "", "score": 0.0, ')


def test_avro_keys_and_values_in_the_json_envelope(target: Target) -> None:
    r = consume(target, target.avro_topic, "-s", "avro", "-r", target.registry_url + "/", "-J")
    assert r.returncode == 0, r.stderr
    docs = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert [d["key"] for d in docs] == ["k0", "k1"]
    assert docs[0]["payload"]["address"] == {"Address": {"city": "Zürich"}}
    key_id, value_id = docs[0]["key_schema_id"], docs[0]["value_schema_id"]
    assert key_id != value_id and all((d["key_schema_id"], d["value_schema_id"]) == (key_id, value_id) for d in docs)
    # with -s key=avro and no -K, kcat prints the key right before the value
    plain = consume(target, target.avro_topic, "-s", "key=avro", "-r", target.registry_url, "-c", "1")
    assert plain.stdout.startswith(b'"k0"\x00\x00\x00\x00'), plain.stdout


def test_json_schema_and_protobuf_values(target: Target) -> None:
    client = SchemaRegistryClient({"url": target.registry_url})
    r = consume(target, target.other_topic, "-s", "value=json", "-r", target.registry_url, "-c", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b'{"name": "\\u00DCnal", "n": 2.5}\n'
    raw = consume(target, target.other_topic, "-c", "1", "-f", "%s").stdout
    assert json.loads(r.stdout) == JSONDeserializer(json.dumps(PERSON_JSON))(
        raw, SerializationContext(target.other_topic, MessageField.VALUE))
    raw = consume(target, target.other_topic, "-o", "1", "-c", "1", "-f", "%s").stdout
    message = ProtobufDeserializer(protobuf_class(), {"use.deprecated.format": False})(
        raw, SerializationContext(target.other_topic, MessageField.VALUE))
    r = consume(target, target.other_topic, "-s", "value=protobuf", "-r", target.registry_url, "-o", "1", "-c", "1",
                "-J")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["payload"] == json_format.MessageToDict(message, preserving_proto_field_name=True) == {
        "item_name": "pen", "count": "3"}
    assert client.get_schema(doc["value_schema_id"]).schema_type == "PROTOBUF"
    # a JSON Schema value read as Avro: the schema's type is said, nothing is guessed
    r = consume(target, target.other_topic, "-s", "value=avro", "-r", target.registry_url, "-c", "1")
    assert r.returncode == 1 and b"is a JSON Schema schema, not Avro: terminating" in r.stderr, r.stderr


def test_a_record_that_cannot_be_decoded_ends_the_command_as_kcat(target: Target) -> None:
    t = target.other_topic
    r = consume(target, t, "-s", "value=avro", "-r", target.registry_url, "-o", "2")
    assert (r.returncode, r.stdout) == (1, b"")
    assert r.stderr.decode() == (
        f"% ERROR: Failed to format message in {t} [0] at offset 2: Avro/Schema-registry message deserialization: "
        "Invalid CP1 magic byte 110, expected 0: message not produced with Schema-Registry Avro framing: "
        "terminating\n")
    # -E: the line without ": terminating", and the next record is tried
    r = consume(target, t, "-s", "value=avro", "-r", target.registry_url, "-o", "2", "-E")
    assert r.returncode == 0
    assert r.stderr.decode().splitlines() == [
        f"% ERROR: Failed to format message in {t} [0] at offset 2: Avro/Schema-registry message deserialization: "
        "Invalid CP1 magic byte 110, expected 0: message not produced with Schema-Registry Avro framing",
        f"% ERROR: Failed to format message in {t} [0] at offset 3: Avro/Schema-registry message deserialization: "
        'REST request failed (code 404): {"error_code":40403,"message":"Schema 65536 not found"}']
    r = consume(target, t, "-s", "value=avro", "-r", target.registry_url, "-o", "3", "-E", "-J")
    doc = json.loads(r.stdout)
    assert (doc["payload"], doc["payload_error"]) == (
        None, 'REST request failed (code 404): {"error_code":40403,"message":"Schema 65536 not found"}')


def test_an_unreachable_registry_is_one_line_in_bounded_time(target: Target) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    started = time.monotonic()
    r = consume(target, target.avro_topic, "-s", "value=avro", "-r", f"http://127.0.0.1:{port}", "-J")
    assert time.monotonic() - started < BOUND_S
    assert (r.returncode, r.stdout) == (1, b"")
    assert r.stderr.decode() == (
        f"% ERROR: Failed to deserialize value in message in {target.avro_topic} [0] at offset 0: REST request "
        "failed (code -1): HTTP request failed: Couldn't connect to server: terminating\n")


@pytest.mark.parametrize(("args", "error"), [
    (["-C", "-s", "value=avro"], "% ERROR: -s avro requires -r <sr_url>\n"),
    (["-P", "-s", "value=avro", "-r", "http://x"], "% ERROR: -s serdes only available in the consumer\n"),
    (["-C", "-s", "value=avro", "-r", ""], "% ERROR: -r url must not be empty\n"),
    (["-C", "-s", "value=Z", "-r", "http://x"], "% ERROR: Invalid token 'Z' in value pack-format, see -s usage.\n"),
    (["-C", "-s", "avro", "-X", "schema.registry.nope=1"], "% ERROR: Unknown configuration property nope\n"),
])
def test_bad_serdes_options_are_kcats_errors(args: list[str], error: str) -> None:
    r = subprocess.run([sys.executable, "-m", "loosely.cli.main", "kcat", "-b", "127.0.0.1:1", "-t", "t", *args],
                       capture_output=True, timeout=BOUND_S, check=False, input=b"")
    assert (r.returncode, r.stderr.decode()) == (1, error)


def test_the_schema_registry_url_property_works_like_r(target: Target) -> None:
    r = consume(target, target.avro_topic, "-s", "value=avro", "-X", f"schema.registry.url={target.registry_url}",
                "-c", "1")
    assert r.returncode == 0 and r.stdout.startswith(b'{"name": "Ada", '), r.stderr
