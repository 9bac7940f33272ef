"""Protobuf: descriptors as confluent-kafka sends them, compatibility, and its serializers end to end."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import DeserializingConsumer, SerializingProducer
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

from loosely.broker.server import BrokerThread
from loosely.registry._errors import RegistryError
from loosely.registry._types import incompatibilities, parse
from loosely.testing import embedded_broker, embedded_schema_registry

F = descriptor_pb2.FieldDescriptorProto


def file(name: str, package: str, messages: dict[str, list[tuple[str, int, int, str]]],
         deps: tuple[str, ...] = ()) -> descriptor_pb2.FileDescriptorProto:
    """A .proto file: ``{message: [(field, number, type, type_name)]}``, proto3."""
    fdp = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3", dependency=list(deps))
    for mname, fields in messages.items():
        m = fdp.message_type.add(name=mname)
        for fname, number, ftype, type_name in fields:
            m.field.add(name=fname, number=number, type=ftype, label=F.LABEL_OPTIONAL, type_name=type_name or None)
    return fdp


def b64(fdp: descriptor_pb2.FileDescriptorProto) -> str:
    return base64.b64encode(fdp.SerializeToString()).decode()


USER = file("user.proto", "t", {"User": [("name", 1, F.TYPE_STRING, ""), ("age", 2, F.TYPE_INT32, "")]})


def user(*fields: tuple[str, int, int, str]) -> str:
    return b64(file("user.proto", "t", {"User": list(fields)}))


VECTORS = [
    ("BACKWARD", user(("name", 1, F.TYPE_STRING, ""), ("age", 2, F.TYPE_INT32, ""), ("x", 3, F.TYPE_BOOL, "")), True),
    ("BACKWARD", user(("name", 1, F.TYPE_STRING, "")), True),  # a removed field is skipped
    ("FULL", user(("name", 1, F.TYPE_STRING, ""), ("years", 2, F.TYPE_INT32, "")), True),  # renamed: same number
    ("BACKWARD", user(("name", 1, F.TYPE_STRING, ""), ("age", 2, F.TYPE_INT64, "")), True),  # int32 -> int64
    ("BACKWARD", user(("name", 1, F.TYPE_BYTES, ""), ("age", 2, F.TYPE_INT32, "")), True),  # string -> bytes
    ("BACKWARD", user(("name", 1, F.TYPE_STRING, ""), ("age", 2, F.TYPE_STRING, "")), False),  # int32 -> string
    ("BACKWARD", user(("name", 1, F.TYPE_STRING, ""), ("age", 2, F.TYPE_SINT32, "")), False),  # zigzag differs
    ("BACKWARD", b64(file("user.proto", "t", {"Person": [("name", 1, F.TYPE_STRING, "")]})), False),  # removed
    ("BACKWARD", b64(file("user.proto", "u", {"User": [("name", 1, F.TYPE_STRING, "")]})), False),  # package
    ("NONE", b64(file("user.proto", "u", {"Other": []})), True),
]


@pytest.mark.parametrize(("level", "candidate", "compatible"), VECTORS)
def test_protobuf_compatibility(level: str, candidate: str, compatible: bool) -> None:
    problems = incompatibilities(level, parse("PROTOBUF", candidate), [parse("PROTOBUF", b64(USER))])
    assert (problems == []) is compatible, problems


@pytest.mark.parametrize(("text", "why"), [
    ('syntax = "proto3";\nmessage A { strin x = 1; }', 'default.proto:2:13: "strin" is not defined.'),
    ('syntax = "proto3"; import "shop/missing.proto"; message A {}', "shop/missing.proto: File not found."),
    ('syntax = "proto3"; message A { int32 x = 1; int32 y = 1; }', "has already been used"),
    (base64.b64encode(b"\xff\xff\xff").decode(), "FileDescriptorProto"),
    (b64(file("a.proto", "t", {"A": [("b", 1, F.TYPE_MESSAGE, ".t.Missing")]})), "a.proto"),
    (b64(file("a.proto", "t", {"A": []}, deps=("other.proto",))), "a.proto"),  # an import without a reference
])
def test_invalid_protobuf_gets_42201(text: str, why: str) -> None:
    with pytest.raises(RegistryError) as e:
        parse("PROTOBUF", text)
    assert e.value.error_code == 42201 and why in e.value.message, e.value.message


def test_identity_is_the_descriptor_not_the_encoding() -> None:
    a = parse("PROTOBUF", b64(USER))
    assert a.identity == parse("PROTOBUF", " " + b64(USER) + "\n").identity
    assert a.identity != parse("PROTOBUF", user(("name", 1, F.TYPE_STRING, ""))).identity


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    with embedded_broker(data_dir=str(tmp_path_factory.mktemp("protobuf-broker"))) as b:
        yield b


def message_classes() -> tuple[type, type]:
    """``Address`` in its own file, and ``Order`` importing it and google.protobuf.Timestamp, built at run time."""
    pool = descriptor_pool.DescriptorPool()
    ts = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(ts)
    pool.Add(ts)
    pool.Add(file("shop/address.proto", "shop", {"Address": [("city", 1, F.TYPE_STRING, "")]}))
    pool.Add(file("shop/order.proto", "shop", {"Order": [
        ("id", 1, F.TYPE_INT64, ""), ("ship_to", 2, F.TYPE_MESSAGE, ".shop.Address"),
        ("at", 3, F.TYPE_MESSAGE, ".google.protobuf.Timestamp")]},
        deps=("shop/address.proto", "google/protobuf/timestamp.proto")))
    order = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))
    address = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Address"))
    return order, address


def round_trip(broker: BrokerThread, url: str, topic: str, sent: Any, conf: dict[str, Any]) -> Any:
    """``sent`` produced through ProtobufSerializer (with ``conf``) and read back through ProtobufDeserializer."""
    cls = type(sent)
    producer = SerializingProducer({"bootstrap.servers": broker.bootstrap_servers, "value.serializer":
                                    ProtobufSerializer(cls, SchemaRegistryClient({"url": url}),
                                                       {"use.deprecated.format": False, **conf})})
    producer.produce(topic, value=sent)
    assert producer.flush(10) == 0
    del producer
    consumer = DeserializingConsumer({
        "bootstrap.servers": broker.bootstrap_servers, "group.id": topic, "auto.offset.reset": "earliest",
        "value.deserializer": ProtobufDeserializer(cls, {"use.deprecated.format": False},
                                                   SchemaRegistryClient({"url": url}))})
    consumer.subscribe([topic])
    try:
        msg = consumer.poll(10)
    finally:
        consumer.close()
    assert msg is not None
    return msg.value()


def test_protobuf_serializer_round_trip_with_references(broker: BrokerThread) -> None:
    order_cls, address_cls = message_classes()
    with embedded_schema_registry(broker.bootstrap_servers) as registry:
        client = SchemaRegistryClient({"url": registry.url})
        sent = order_cls(id=7, ship_to=address_cls(city="Lyon"))
        sent.at.seconds = 1_700_000_000
        assert round_trip(broker, registry.url, "orders", sent, {}) == sent
        # the import was registered under its file name and is a reference of the order's schema
        assert sorted(client.get_subjects()) == ["orders-value", "shop/address.proto"]
        latest = client.get_latest_version("orders-value")
        assert latest.schema.schema_type == "PROTOBUF"
        assert [(r.name, r.subject, r.version) for r in latest.schema.references] == [
            ("shop/address.proto", "shop/address.proto", 1)]


ADDRESS_PROTO = 'syntax = "proto3";\npackage shop;\nmessage Address { string city = 1; }\n'
ORDER_PROTO = """syntax = "proto3";
package shop;
import "shop/address.proto";
import "google/protobuf/timestamp.proto";

// an order, as a user writes it and registers it with curl
message Order {
  int64 id = 1;
  Address ship_to = 2;
  google.protobuf.Timestamp at = 3;
}
"""


def test_proto_text_schemas_serve_the_serializers(broker: BrokerThread) -> None:
    """Schemas registered as .proto text (with a reference) are what confluent-kafka's serializer looks up and its
    deserializer reads (as ``format=serialized``), and the text is checked for compatibility."""
    order_cls, address_cls = message_classes()
    with embedded_schema_registry(broker.bootstrap_servers, topic="_schemas_text") as registry:
        client = SchemaRegistryClient({"url": registry.url})
        addr_id = client.register_schema("shop/address.proto", Schema(ADDRESS_PROTO, "PROTOBUF"))
        ref = SchemaReference("shop/address.proto", "shop/address.proto", 1)
        order_id = client.register_schema("texts-value", Schema(ORDER_PROTO, "PROTOBUF", [ref]))
        assert client.get_schema(order_id).schema_str == ORDER_PROTO.strip()  # stored and returned as sent
        # the serializer does not register: it looks its descriptor up, which must be the text's schema
        sent = order_cls(id=9, ship_to=address_cls(city="Oslo"))
        assert round_trip(broker, registry.url, "texts", sent, {"auto.register.schemas": False}) == sent
        assert client.get_versions("texts-value") == [1] and addr_id != order_id
        # compatibility runs on the compiled text: a field's type changed to another wire type is refused
        bad = ORDER_PROTO.replace("int64 id = 1", "string id = 1")
        with pytest.raises(SchemaRegistryError) as e:
            client.register_schema("texts-value", Schema(bad, "PROTOBUF", [ref]))
        assert e.value.error_code == 409 and "shop.Order.id" in e.value.error_message
        with pytest.raises(SchemaRegistryError) as e:
            client.register_schema("texts-value", Schema(ORDER_PROTO.replace("Address", "Adress"), "PROTOBUF",
                                                         [ref]))
        assert e.value.error_code == 42201 and '"Adress" is not defined' in e.value.error_message
