"""The registry end to end: confluent-kafka's SchemaRegistryClient and serializers through the broker.

Differential: every test runs with the registry stored in loosely's broker and in Apache Kafka (the registry is a
Kafka client, so both must give the same answers). One broker and one registry per module and target; each test
uses subjects of its own; on the shared Apache Kafka the registry gets a topic of its own.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Consumer, DeserializingConsumer, SerializingProducer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer

from loosely.registry import SchemaRegistry
from loosely.testing import embedded_broker, embedded_schema_registry

USER = json.dumps({"type": "record", "name": "User", "namespace": "t", "fields": [{"name": "name", "type": "string"}]})
USER_AGE = json.dumps({"type": "record", "name": "User", "namespace": "t", "fields": [
    {"name": "name", "type": "string"}, {"name": "age", "type": "int", "default": 0}]})
USER_BAD = json.dumps({"type": "record", "name": "User", "namespace": "t", "fields": [
    {"name": "name", "type": "string"}, {"name": "email", "type": "string"}]})
PERSON_JSON = json.dumps({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                          "required": ["name"]})


@dataclass(frozen=True)
class Target:
    name: str
    bootstrap_servers: str
    topic: str


@pytest.fixture(scope="module", params=["loosely", "kafka"])
def broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    if request.param == "kafka":
        kafka = request.getfixturevalue("apache_kafka")
        yield Target("kafka", kafka.bootstrap_servers, f"_schemas-{uuid.uuid4().hex[:8]}")
        return
    with embedded_broker(data_dir=str(tmp_path_factory.mktemp("registry-broker"))) as b:
        yield Target("loosely", b.bootstrap_servers, "_schemas")


@pytest.fixture(scope="module")
def registry(broker: Target) -> Iterator[SchemaRegistry]:
    with embedded_schema_registry(broker.bootstrap_servers, topic=broker.topic) as r:
        yield r


@pytest.fixture(scope="module")
def client(registry: SchemaRegistry) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry.url})


def sr_error(fn: Any) -> tuple[int, int]:
    with pytest.raises(SchemaRegistryError) as e:
        fn()
    return e.value.http_status_code, e.value.error_code


def end_offset(broker: Target) -> int:
    c = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "probe"})
    try:
        return int(c.get_watermark_offsets(TopicPartition(broker.topic, 0), timeout=10)[1])
    finally:
        c.close()


def raw(registry: SchemaRegistry, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, r.getheader("Content-Type") or "", json.loads(data) if data else None
    finally:
        conn.close()


def test_every_client_endpoint(client: SchemaRegistryClient) -> None:
    s = "endpoints-value"
    assert client.get_schema_types() == ["AVRO", "JSON", "PROTOBUF"]
    sid = client.register_schema(s, Schema(USER, "AVRO"))
    assert client.register_schema(s, Schema(json.dumps(json.loads(USER), indent=2), "AVRO")) == sid  # idempotent
    assert SchemaRegistryClient({"url": client._rest_client.base_urls[0]}).register_schema(
        "endpoints-other", Schema(USER, "AVRO")) == sid  # same schema, other subject: same id
    sid2 = client.register_schema(s, Schema(USER_AGE, "AVRO"))
    assert sid2 == sid + 1
    assert json.loads(client.get_schema(sid).schema_str) == json.loads(USER)
    latest = client.get_latest_version(s)
    assert (latest.schema_id, latest.version, latest.subject) == (sid2, 2, s)
    assert client.get_version(s, 1).schema_id == sid
    assert client.get_versions(s) == [1, 2]
    assert s in client.get_subjects() and "endpoints-other" in client.get_subjects()
    found = client.lookup_schema(s, Schema(USER_AGE, "AVRO"))
    assert (found.schema_id, found.version) == (sid2, 2)
    assert sorted((v.subject, v.version) for v in client.get_schema_versions(sid)) == [
        ("endpoints-other", 1), (s, 1)]
    assert client.get_subjects_by_schema_id(sid) == ["endpoints-other", s]
    # compatibility
    assert client.test_compatibility(s, Schema(USER_AGE, "AVRO")) is True
    assert client.test_compatibility(s, Schema(USER_BAD, "AVRO")) is False
    assert client.test_compatibility_all_versions(s, Schema(USER_BAD, "AVRO")) is False
    assert sr_error(lambda: client.register_schema(s, Schema(USER_BAD, "AVRO"))) == (409, 409)
    assert client.set_compatibility(s, "NONE") == {"compatibility": "NONE"}
    assert client.get_compatibility(s) == "NONE"
    assert client.get_config(s).compatibility_level.value == "NONE"
    assert client.get_compatibility() == "BACKWARD"
    assert client.register_schema(s, Schema(USER_BAD, "AVRO")) == sid2 + 1
    assert client.delete_config(s).compatibility_level.value == "NONE"
    assert sr_error(lambda: client.get_compatibility(s)) == (404, 40408)
    # modes
    assert client.get_global_mode() == "READWRITE"
    assert client.update_mode(s, "READONLY") == "READONLY"
    assert client.get_mode(s) == "READONLY"
    assert sr_error(lambda: client.register_schema(s, Schema('"string"', "AVRO"))) == (422, 42205)
    assert client.delete_mode(s) == "READONLY"
    # deletes
    assert client.delete_version(s, 3) == 3
    assert client.get_versions(s) == [1, 2]
    assert sr_error(lambda: client.get_version(s, 3)) == (404, 40402)
    assert client.get_version(s, 3, deleted=True).version == 3
    assert client.delete_version(s, 3, permanent=True) == 3
    assert sr_error(lambda: client.delete_subject(s, permanent=True)) == (404, 40405)
    assert client.delete_subject(s) == [1, 2]
    assert s not in client.get_subjects()
    assert sr_error(lambda: client.get_versions(s)) == (404, 40401)
    assert client.delete_subject(s, permanent=True) == [1, 2]
    assert client.get_schema(sid).schema_str  # still used by endpoints-other
    assert sr_error(lambda: client.get_latest_version("never-registered")) == (404, 40401)


def test_avro_serializer_round_trip(broker: Target, client: SchemaRegistryClient) -> None:
    topic = f"avro-users-{uuid.uuid4().hex[:8]}"
    producer = SerializingProducer({"bootstrap.servers": broker.bootstrap_servers,
                                    "value.serializer": AvroSerializer(client, USER_AGE)})
    people = [{"name": "ada", "age": 36}, {"name": "grace", "age": 45}]
    for p in people:
        producer.produce(topic, value=p)
    assert producer.flush(10) == 0
    del producer  # librdkafka's handle goes now, not after the module's broker has stopped
    consumer = DeserializingConsumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "avro-rt",
                                      "auto.offset.reset": "earliest",
                                      "value.deserializer": AvroDeserializer(SchemaRegistryClient(
                                          {"url": client._rest_client.base_urls[0]}))})
    consumer.subscribe([topic])
    got = []
    try:
        while len(got) < len(people):
            msg = consumer.poll(10)
            assert msg is not None, f"timed out after {got}"
            got.append(msg.value())
    finally:
        consumer.close()
    assert got == people
    assert client.get_latest_version(f"{topic}-value").schema.schema_type == "AVRO"


def test_json_schema_serializer_round_trip(broker: Target, client: SchemaRegistryClient) -> None:
    topic = f"json-people-{uuid.uuid4().hex[:8]}"
    producer = SerializingProducer({"bootstrap.servers": broker.bootstrap_servers,
                                    "value.serializer": JSONSerializer(PERSON_JSON, client)})
    producer.produce(topic, value={"name": "ada", "age": 36})
    assert producer.flush(10) == 0
    del producer
    consumer = DeserializingConsumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "json-rt",
                                      "auto.offset.reset": "earliest",
                                      "value.deserializer": JSONDeserializer(None, schema_registry_client=client)})
    consumer.subscribe([topic])
    try:
        msg = consumer.poll(10)
    finally:
        consumer.close()
    assert msg is not None and msg.value() == {"name": "ada", "age": 36}
    latest = client.get_latest_version(f"{topic}-value")
    assert latest.schema.schema_type == "JSON"
    assert json.loads(latest.schema.schema_str) == json.loads(PERSON_JSON)


def test_schemas_records_are_confluents(broker: Target, client: SchemaRegistryClient) -> None:
    start = end_offset(broker)
    sid = client.register_schema("records-value", Schema(USER, "AVRO"))
    jid = client.register_schema("records-json", Schema('{"type":"string"}', "JSON"))
    client.set_compatibility("records-value", "FULL")
    client.update_mode("records-value", "READWRITE")
    client.delete_subject("records-json")
    c = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "records-probe"})
    c.assign([TopicPartition(broker.topic, 0, start)])
    got = []
    try:
        while len(got) < 5:
            msg = c.poll(10)
            assert msg is not None, got
            got.append((msg.key(), msg.value()))
    finally:
        c.close()
    keys = [json.loads(k) for k, _ in got]
    values = [json.loads(v) if v else None for _, v in got]
    assert [list(k) for k in keys] == [["keytype", "subject", "version", "magic"]] * 2 + [
        ["keytype", "subject", "magic"]] * 3  # Confluent's field order, which Karapace checks
    assert keys[0] == {"keytype": "SCHEMA", "subject": "records-value", "version": 1, "magic": 1}
    assert values[0] == {"subject": "records-value", "version": 1, "id": sid, "schema": json.dumps(
        json.loads(USER), separators=(",", ":")), "deleted": False}  # no schemaType for AVRO
    assert values[1] == {"subject": "records-json", "version": 1, "id": jid, "schema": '{"type":"string"}',
                         "schemaType": "JSON", "deleted": False}
    assert (keys[2], values[2]) == ({"keytype": "CONFIG", "subject": "records-value", "magic": 0},
                                    {"compatibilityLevel": "FULL"})
    assert (keys[3], values[3]) == ({"keytype": "MODE", "subject": "records-value", "magic": 0},
                                    {"mode": "READWRITE"})
    assert (keys[4], values[4]) == ({"keytype": "DELETE_SUBJECT", "subject": "records-json", "magic": 0},
                                    {"subject": "records-json", "version": 1})
    assert got[0][0] == b'{"keytype":"SCHEMA","subject":"records-value","version":1,"magic":1}'  # compact


def test_a_restarted_registry_keeps_every_schema_and_id(broker: Target, registry: SchemaRegistry,
                                                        client: SchemaRegistryClient) -> None:
    sid = client.register_schema("restart-value", Schema(USER, "AVRO"))
    client.register_schema("restart-value", Schema(USER_AGE, "AVRO"))
    client.delete_version("restart-value", 1)
    client.set_compatibility(None, "FULL")
    try:
        before = {s: client.get_versions(s, deleted=True) for s in client.get_subjects(deleted=True)}
        with SchemaRegistry(broker.bootstrap_servers, topic=broker.topic) as second:  # rebuilt from the log alone
            c2 = SchemaRegistryClient({"url": second.url})
            assert {s: c2.get_versions(s, deleted=True) for s in c2.get_subjects(deleted=True)} == before
            assert c2.get_version("restart-value", 1, deleted=True).schema_id == sid
            assert json.loads(c2.get_schema(sid).schema_str) == json.loads(USER)
            assert c2.get_compatibility() == "FULL"
            assert registry.store.read(lambda s: s.max_id) == second.store.read(lambda s: s.max_id)
    finally:
        client.set_compatibility(None, "BACKWARD")


BAD_BODIES = [
    # (what, path, body, headers, status, error_code)
    ("invalid avro", "/subjects/bad-value/versions", json.dumps({"schema": '{"type":"record","name":"A"}'}),
     {}, 422, 42201),
    ("not json schema", "/subjects/bad-value/versions", json.dumps({"schema": "{not json"}), {}, 422, 42201),
    ("protobuf", "/subjects/bad-value/versions",
     json.dumps({"schema": 'syntax = "proto3"; message A { strin x = 1; }', "schemaType": "PROTOBUF"}), {}, 422,
     42201),
    ("bad rule set", "/subjects/bad-value/versions",
     json.dumps({"schema": '"string"', "ruleSet": {"domainRules": [{"kind": "CONDITION"}]}}), {}, 422, 42201),
    ("empty schema", "/subjects/bad-value/versions", json.dumps({"schema": ""}), {}, 422, 42201),
    ("body not json", "/subjects/bad-value/versions", "{{{", {}, 400, 400),
    ("wrong content type", "/subjects/bad-value/versions", json.dumps({"schema": '"string"'}),
     {"Content-Type": "text/plain"}, 415, 415),
    ("bad version", "/subjects/bad-value/versions", json.dumps({"schema": '"string"', "version": 0}), {}, 422, 42202),
    ("bad level", "/config", json.dumps({"compatibility": "SOMETIMES"}), {}, 422, 42203),
    ("bad mode", "/mode", json.dumps({"mode": "SIDEWAYS"}), {}, 422, 42204),
]


@pytest.mark.parametrize(("what", "path", "body", "headers", "status", "error_code"), BAD_BODIES,
                         ids=[b[0] for b in BAD_BODIES])
def test_bad_input_gets_confluents_error_and_stores_nothing(broker: Target, registry: SchemaRegistry,
                                                            what: str, path: str, body: str,
                                                            headers: dict[str, str], status: int,
                                                            error_code: int) -> None:
    before = end_offset(broker)
    method = "POST" if "versions" in path else "PUT"
    got_status, ctype, answer = raw(registry, method, path, body.encode(),
                                    {"Content-Type": "application/vnd.schemaregistry.v1+json", **headers})
    assert (got_status, answer["error_code"]) == (status, error_code), answer
    assert isinstance(answer["message"], str) and answer["message"]
    assert ctype == "application/vnd.schemaregistry.v1+json"
    assert end_offset(broker) == before  # nothing written
    assert raw(registry, "GET", "/subjects")[0] == 200  # and the server is still there


def test_huge_body_is_refused_before_it_is_read(broker: Target) -> None:
    with SchemaRegistry(broker.bootstrap_servers, topic=broker.topic, request_bytes_max=1024) as small:
        before = end_offset(broker)
        body = json.dumps({"schema": json.dumps({"type": "enum", "name": "E", "symbols": [f"S{i}" for i in
                                                                                       range(500)]})}).encode()
        status, _, answer = raw(small, "POST", "/subjects/huge-value/versions", body,
                                {"Content-Type": "application/json"})
        assert (status, answer["error_code"]) == (413, 413)
        assert "1024" in answer["message"]
        assert end_offset(broker) == before
        ok = json.dumps({"schema": '"string"'}).encode()  # under the limit: accepted
        assert raw(small, "POST", "/subjects/huge-value/versions", ok, {"Content-Type": "application/json"})[0] == 200


def test_rest_details(registry: SchemaRegistry) -> None:
    status, _, answer = raw(registry, "GET", "/nowhere")
    assert (status, answer) == (404, {"error_code": 404, "message": "HTTP 404 Not Found"})
    assert raw(registry, "GET", "/subjects", headers={"Accept": "application/json"})[1] == "application/json"
    assert raw(registry, "DELETE", "/schemas/types")[0] == 405
    assert raw(registry, "GET", "/subjects/none/versions/latest")[2]["error_code"] == 40401
    assert raw(registry, "GET", "/subjects/none/versions/x")[2]["error_code"] == 42202
    assert raw(registry, "GET", "/schemas/ids/999999")[2]["error_code"] == 40403
    subject = urllib.parse.quote("with/slash-value", safe="")
    body = json.dumps({"schema": '"string"'}).encode()
    assert raw(registry, "POST", f"/subjects/{subject}/versions", body)[0] == 200
    assert "with/slash-value" in raw(registry, "GET", "/subjects")[2]
    assert raw(registry, "GET", f"/subjects/{subject}/versions/1/schema")[2] == "string"
    compat = raw(registry, "POST", f"/compatibility/subjects/{subject}/versions/latest?verbose=true",
                 json.dumps({"schema": '"int"'}).encode())[2]
    assert compat["is_compatible"] is False and compat["messages"]


def test_an_unreadable_record_in_the_topic_is_skipped_and_the_registry_goes_on(broker: Target,
                                                                              client: SchemaRegistryClient,
                                                                              registry: SchemaRegistry) -> None:
    from confluent_kafka import Producer

    skipped = registry.statistics().store.records_skipped
    p = Producer({"bootstrap.servers": broker.bootstrap_servers})
    p.produce(broker.topic, key=b"not json", value=b"{}", partition=0)
    p.produce(broker.topic, key=b'{"keytype":"SCHEMA","subject":"x","version":1,"magic":1}', value=b'{"id":1}',
              partition=0)
    assert p.flush(10) == 0
    del p
    sid = client.register_schema("after-garbage-value", Schema('{"type":"enum","name":"G","symbols":["A"]}', "AVRO"))
    assert client.get_schema(sid).schema_str  # written and read back past the garbage
    assert registry.statistics().store.records_skipped == skipped + 2
    with SchemaRegistry(broker.bootstrap_servers, topic=broker.topic) as second:  # a fresh start reads past it too
        assert SchemaRegistryClient({"url": second.url}).get_latest_version("after-garbage-value").schema_id == sid


def test_concurrent_registrations_get_one_id_per_schema(registry: SchemaRegistry) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def enum(i: int) -> str:
        return json.dumps({"type": "enum", "name": f"C{i}", "symbols": ["A"]})

    def register(i: int) -> tuple[int, int]:
        c = SchemaRegistryClient({"url": registry.url})  # no shared client cache
        return c.register_schema(f"concurrent-{i % 4}", Schema(enum(i % 6), "AVRO")), i % 6

    for k in range(4):  # unrelated enums follow each other in a subject
        SchemaRegistryClient({"url": registry.url}).set_compatibility(f"concurrent-{k}", "NONE")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(register, range(24)))
    ids_by_schema: dict[int, set[int]] = {}
    for schema_id, which in results:
        ids_by_schema.setdefault(which, set()).add(schema_id)
    assert all(len(ids) == 1 for ids in ids_by_schema.values()), ids_by_schema  # the same schema, one id
    assert len({next(iter(ids)) for ids in ids_by_schema.values()}) == 6  # six schemas, six ids
    client = SchemaRegistryClient({"url": registry.url})
    for k in range(4):  # no duplicate versions: each subject holds each of its schemas once
        versions = [client.get_version(f"concurrent-{k}", v) for v in client.get_versions(f"concurrent-{k}")]
        assert len({v.schema_id for v in versions}) == len(versions)


def test_connections_over_the_limit_get_503_and_idle_ones_are_closed(broker: Target) -> None:
    import time

    with SchemaRegistry(broker.bootstrap_servers, topic=broker.topic, connections_max=1, idle_ms_max=500) as small:
        held = http.client.HTTPConnection("127.0.0.1", small.port, timeout=10)
        try:
            held.request("GET", "/subjects")  # at the limit: served, and kept alive afterwards
            assert held.getresponse().read() is not None
            status, _, answer = raw(small, "GET", "/subjects")
            assert (status, answer["error_code"]) == (503, 503)  # one over the limit
            assert small.statistics().http.connections_refused == 1
            assert held.sock is not None
            assert held.sock.recv(1) == b""  # idle past idle_ms_max: the server closed it
        finally:
            held.close()
        deadline = time.monotonic() + 10
        while raw(small, "GET", "/subjects")[0] != 200:  # its slot is free again once its thread has ended
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_schema_larger_than_a_record_may_be_gets_50001_and_nothing_stored(broker: Target,
                                                                          registry: SchemaRegistry) -> None:
    before = end_offset(broker)
    big = json.dumps({"type": "enum", "name": "Big", "symbols": [f"S{i:07d}" for i in range(150_000)]})
    assert 1_000_000 < len(big) < 16 * 1024 * 1024  # over a record's limit, under the request's
    status, _, answer = raw(registry, "POST", "/subjects/big-value/versions", json.dumps({"schema": big}).encode(),
                            {"Content-Type": "application/json"})
    assert (status, answer["error_code"]) == (500, 50001), answer
    assert "size" in answer["message"].lower() or "large" in answer["message"].lower(), answer["message"]
    assert end_offset(broker) == before
    assert raw(registry, "GET", "/subjects/big-value/versions")[2]["error_code"] == 40401


def test_the_registry_rides_out_a_broker_restart(tmp_path) -> None:
    from loosely.testing import free_port

    port = free_port()
    with embedded_broker(data_dir=str(tmp_path), port=port) as b:
        registry = SchemaRegistry(b.bootstrap_servers).start()
        client = SchemaRegistryClient({"url": registry.url})
        assert client.register_schema("before", Schema('"string"', "AVRO")) == 1
    with embedded_broker(data_dir=str(tmp_path), port=port):  # same log, same port: the clients reconnect
        try:
            assert client.register_schema("after", Schema('"int"', "AVRO")) == 2
            assert registry.statistics().store.write_failures == 0
        finally:
            registry.stop()
