"""Data contracts, ``.proto`` text and JSON Schema ``$ref`` through loosely's registry, with confluent-kafka's client.

The store is the one the other registry tests check against Apache Kafka; what is new here is the registry's own
logic, so one loosely broker and one registry serve the whole module.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import DeserializingConsumer, SerializingProducer
from confluent_kafka.schema_registry import (
    Metadata,
    MetadataProperties,
    MetadataTags,
    Rule,
    RuleKind,
    RuleMode,
    RuleParams,
    RuleSet,
    Schema,
    SchemaReference,
    SchemaRegistryClient,
    ServerConfig,
)
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer

from loosely.broker.server import BrokerThread
from loosely.registry import SchemaRegistry
from loosely.testing import embedded_broker, embedded_schema_registry

USER = json.dumps({"type": "record", "name": "User", "namespace": "t", "fields": [{"name": "name", "type": "string"}]})


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    with embedded_broker(data_dir=str(tmp_path_factory.mktemp("contracts"))) as b:
        yield b


@pytest.fixture(scope="module")
def registry(broker: BrokerThread) -> Iterator[SchemaRegistry]:
    with embedded_schema_registry(broker.bootstrap_servers) as r:
        yield r


@pytest.fixture(scope="module")
def client(registry: SchemaRegistry) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry.url})


def post(registry: SchemaRegistry, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def get(registry: SchemaRegistry, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        assert r.status == 200
        return json.loads(r.read())
    finally:
        conn.close()


def sr_error(fn: Any) -> tuple[int, int, str]:
    with pytest.raises(SchemaRegistryError) as e:
        fn()
    return e.value.http_status_code, e.value.error_code, e.value.error_message


METADATA = Metadata(MetadataTags({"User.name": ["PII"]}), MetadataProperties({"owner": "ana", "team": "shop"}),
                    ["owner"])
RULES = RuleSet(
    migration_rules=[], encoding_rules=[],
    domain_rules=[Rule("checkName", "names are short", RuleKind.CONDITION, RuleMode.WRITE, "CEL", None,
                       RuleParams({"k": "v"}), "size(message.name) < 100", None, "DLQ", False)])


def test_metadata_and_rule_set_round_trip(client: SchemaRegistryClient, registry: SchemaRegistry) -> None:
    s = "contract-value"
    v1 = client.register_schema(s, Schema(USER, "AVRO"))
    v2 = client.register_schema(s, Schema(USER, "AVRO", metadata=METADATA, rule_set=RULES))
    assert v2 != v1  # the same schema with a contract is a new version with an id of its own, as in Confluent
    assert client.get_versions(s) == [1, 2]
    latest = client.get_latest_version(s)
    assert (latest.version, latest.schema_id) == (2, v2)
    assert latest.schema.metadata == METADATA and latest.schema.rule_set == RULES
    by_id = get(registry, f"/schemas/ids/{v2}")
    assert by_id["metadata"] == METADATA.to_dict() and by_id["ruleSet"] == RULES.to_dict()
    assert "metadata" not in get(registry, f"/schemas/ids/{v1}")
    # registering it again, or the bare schema (which keeps the latest version's contract), writes nothing
    assert client.register_schema(s, Schema(USER, "AVRO", metadata=METADATA, rule_set=RULES)) == v2
    assert SchemaRegistryClient({"url": registry.url}).register_schema(s, Schema(USER, "AVRO")) == v2
    assert client.get_versions(s) == [1, 2]
    # lookup: with the contract it finds that version; without, the newest version of the schema
    found = client.lookup_schema(s, Schema(USER, "AVRO", metadata=METADATA, rule_set=RULES))
    assert (found.version, found.schema.metadata) == (2, METADATA)
    assert client.lookup_schema(s, Schema(USER, "AVRO")).version == 2
    other = Metadata(MetadataTags({}), MetadataProperties({"owner": "bo"}), [])
    assert sr_error(lambda: client.lookup_schema(s, Schema(USER, "AVRO", metadata=other)))[:2] == (404, 40403)
    # another contract: another version
    v3 = client.register_schema(s, Schema(USER, "AVRO", metadata=other))
    assert client.get_version(s, 3).schema.metadata == other and client.get_version(s, 3).schema.rule_set == RULES
    assert v3 not in (v1, v2)
    # the newest version whose metadata properties hold the pairs: what use.latest.with.metadata asks for
    assert client.get_latest_with_metadata(s, {"team": "shop"}).version == 2
    assert client.get_latest_with_metadata(s, {"owner": "bo"}).version == 3
    assert sr_error(lambda: client.get_latest_with_metadata(s, {"owner": "cy"}))[:2] == (404, 40403)


def test_config_defaults_and_overrides_merge_into_new_versions(client: SchemaRegistryClient,
                                                              registry: SchemaRegistry) -> None:
    s = "merged-value"
    default = Metadata(None, MetadataProperties({"owner": "platform", "tier": "gold"}), ["owner"])
    override = Metadata(None, MetadataProperties({"tier": "silver"}), [])
    forced = RuleSet([], [Rule("mustHaveName", None, RuleKind.CONDITION, RuleMode.WRITE, "CEL", None, None,
                                 "message.name != ''", None, None, False)], [])
    client.set_config(s, ServerConfig(default_metadata=default, override_metadata=override,
                                      override_rule_set=forced))
    got = client.get_config(s)
    assert (got.default_metadata, got.override_metadata, got.override_rule_set) == (default, override, forced)
    client.register_schema(s, Schema(USER, "AVRO", metadata=Metadata(None, MetadataProperties({"team": "x"}), None)))
    v1 = client.get_version(s, 1).schema
    # the request's properties over the default's, the override's over both; the forced rule added
    assert v1.metadata.properties.to_dict() == {"owner": "platform", "team": "x", "tier": "silver"}
    assert v1.metadata.sensitive == ["owner"]
    assert [r.name for r in v1.rule_set.domain_rules] == ["mustHaveName"]
    # the bare schema again: the latest version's contract, merged the same way, is the same version
    client.register_schema(s, Schema(USER, "AVRO"))
    assert client.get_versions(s) == [1]
    client.delete_config(s)
    assert sr_error(lambda: client.get_config(s))[:2] == (404, 40408)


@pytest.mark.parametrize(("extra", "why"), [
    ({"metadata": []}, "metadata must be a JSON object"),
    ({"metadata": {"properties": {"a": 1}}}, "properties must map names to strings"),
    ({"metadata": {"tags": {"a": "PII"}}}, "tags must map each path"),
    ({"ruleSet": {"domainRules": [{"kind": "CONDITION"}]}}, "needs a name"),
    ({"ruleSet": {"domainRules": [{"name": "r", "mode": "SOMETIMES"}]}}, "must be one of WRITE, READ, WRITEREAD"),
    ({"ruleSet": {"migrationRules": [{"name": "r", "mode": "WRITE"}]}}, "UPGRADE, DOWNGRADE, UPDOWN"),
    ({"ruleSet": {"domainRules": [{"name": "r"}], "encodingRules": [{"name": "r"}]}}, "duplicate name 'r'"),
])
def test_malformed_contracts_get_42201(registry: SchemaRegistry, extra: dict[str, Any], why: str) -> None:
    status, body = post(registry, "/subjects/bad-contract/versions", {"schema": '"string"', **extra})
    assert (status, body["error_code"]) == (422, 42201) and why in body["message"], body


ADDRESS_JSON = json.dumps({"$id": "https://example.com/address.json", "type": "object",
                           "properties": {"city": {"type": "string"}}, "required": ["city"]})


def person_json(city: dict[str, Any] | None = None) -> str:
    """A person whose ``home`` is the ``address.json`` reference and whose ``work`` is a local definition."""
    return json.dumps({"type": "object", "properties": {
        "name": {"type": "string"}, "home": {"$ref": "address.json"}, "work": {"$ref": "#/definitions/Place"}},
        "definitions": {"Place": {"type": "object", "properties": {"city": city or {"type": "string"}}}}})


def test_json_schema_refs_through_the_serializers(broker: BrokerThread, registry: SchemaRegistry,
                                                  client: SchemaRegistryClient) -> None:
    client.register_schema("address.json", Schema(ADDRESS_JSON, "JSON"))
    ref = SchemaReference("address.json", "address.json", 1)
    person = Schema(person_json(), "JSON", [ref])
    sid = client.register_schema("people-value", person)
    producer = SerializingProducer({"bootstrap.servers": broker.bootstrap_servers,
                                    "value.serializer": JSONSerializer(person, client)})
    sent = {"name": "ana", "home": {"city": "Porto"}, "work": {"city": "Braga"}}
    producer.produce("people", value=sent)
    assert producer.flush(10) == 0
    del producer
    consumer = DeserializingConsumer({
        "bootstrap.servers": broker.bootstrap_servers, "group.id": "people", "auto.offset.reset": "earliest",
        "value.deserializer": JSONDeserializer(None, schema_registry_client=SchemaRegistryClient(
            {"url": registry.url}))})
    consumer.subscribe(["people"])
    try:
        msg = consumer.poll(10)
    finally:
        consumer.close()
    assert msg is not None and msg.value() == sent
    assert client.get_versions("people-value") == [1] and client.get_latest_version("people-value").schema_id == sid
    # a narrowing behind the local $ref is caught; an unknown $ref is 42201
    status, error, message = sr_error(lambda: client.register_schema(
        "people-value", Schema(person_json({"type": "string", "maxLength": 3}), "JSON", [ref])))
    assert (status, error) == (409, 409) and "work" in message
    status, error, message = sr_error(lambda: client.register_schema("people-value", Schema(person_json(), "JSON")))
    assert (status, error) == (422, 42201) and "address.json" in message
