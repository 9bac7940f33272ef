"""Client telemetry (KIP-714) side by side with Apache Kafka 4.1.1, then into loosely's Prometheus metrics.

Differential: CLIENT_METRICS subscriptions made with Kafka's own tools (``kafka-configs --entity-type
client-metrics``, i.e. ConfigCommand, and ``kafka-client-metrics.sh``, i.e. ClientMetricsCommand) and
IncrementalAlterConfigs are described, listed and refused alike; and GetTelemetrySubscriptions / PushTelemetry get
the same answers, bad input included. Neither broker advertises the two APIs by default (Kafka only does with a
ClientTelemetry metrics reporter), yet both answer them.

Then loosely with its Prometheus endpoint on, where it advertises them: confluent-kafka (librdkafka pushes by
default) and the Java clients push under a subscription made by Kafka's tool, and what they pushed shows on
``/metrics``; a push that is not OTLP is INVALID_RECORD and the broker keeps serving.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from kio.schema.describe_configs.v4.request import DescribeConfigsRequest, DescribeConfigsResource
from kio.schema.incremental_alter_configs.v1.request import (
    AlterableConfig,
    AlterConfigsResource,
    IncrementalAlterConfigsRequest,
)
from kio.static.primitive import i8

from broker._raw import Raw
from compat._java import run_java
from compat._kafka_tools import kafka_class, kafka_command, kafka_tool
from loosely.broker.server import BrokerThread
from loosely.cli.top import parse_scrape, render
from loosely.protocol.messages import ApiKey, load_request_schema
from loosely.testing import ApacheKafka, embedded_broker

CLIENT_METRICS, SET, DELETE, APPEND = 16, 0, 1, 2
DEFAULT, CLIENT_METRICS_CONFIG = 5, 7
ZERO = uuid.UUID(int=0)
WAIT_S = 30


@pytest.fixture(scope="module", params=["loosely", pytest.param("kafka", marks=pytest.mark.kafka)])
def bootstrap(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "kafka":
        kafka: ApacheKafka = request.getfixturevalue("apache_kafka")
        yield kafka.bootstrap_servers
    else:
        with embedded_broker(data_dir=str(tmp_path_factory.mktemp("loosely-telemetry"))) as b:
            yield b.bootstrap_servers


def _tool(*args: str, tool: str | None = None, bootstrap: str) -> tuple[int, str]:
    done = kafka_tool(tool, "--bootstrap-server", bootstrap, *args) if tool else \
        kafka_class(kafka_command("ConfigCommand"), "--bootstrap-server", bootstrap, *args)
    lines = (done.stdout + done.stderr).splitlines()
    return done.returncode, "\n".join(line for line in lines if not line.startswith("SLF4J:")).strip()


def _describe(bootstrap: str, name: str) -> tuple[int, str | None, dict[str, tuple[Any, ...]]]:
    raw = Raw(bootstrap)
    try:
        resp: Any = raw.request(ApiKey.DESCRIBE_CONFIGS, 4, DescribeConfigsRequest(
            resources=(DescribeConfigsResource(resource_type=i8(CLIENT_METRICS), resource_name=name,
                                               configuration_keys=None),),
            include_synonyms=True, include_documentation=True))
    finally:
        raw.close()
    (r,) = resp.results
    return int(r.error_code), r.error_message or None, {
        e.name: (e.value, e.config_source, e.read_only, [(s.value, s.source) for s in e.synonyms], e.config_type,
                 e.documentation) for e in r.configs}


def _alter(bootstrap: str, name: str, ops: list[tuple[str, int, str | None]]) -> tuple[int, str | None]:
    raw = Raw(bootstrap)
    try:
        resp: Any = raw.request(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1, IncrementalAlterConfigsRequest(
            resources=(AlterConfigsResource(resource_type=i8(CLIENT_METRICS), resource_name=name, configs=tuple(
                AlterableConfig(name=n, config_operation=i8(op), value=v) for n, op, v in ops)),),
            validate_only=False))
    finally:
        raw.close()
    (r,) = resp.responses
    return int(r.error_code), r.error_message


def _listed(bootstrap: str) -> set[str]:
    raw = Raw(bootstrap)
    try:
        cls = load_request_schema(ApiKey.LIST_CONFIG_RESOURCES, 1)
        resp: Any = raw.request(ApiKey.LIST_CONFIG_RESOURCES, 1, cls(resource_types=(i8(CLIENT_METRICS),)))
    finally:
        raw.close()
    return {r.resource_name for r in resp.config_resources}


def _wait_for(bootstrap: str, name: str, config: str, value: str) -> dict[str, tuple[Any, ...]]:
    deadline = time.monotonic() + WAIT_S  # Kafka applies a change a moment after it answers
    while (seen := _describe(bootstrap, name)[2])[config][0] != value:
        assert time.monotonic() < deadline, f"{config} of {name} is {seen[config]}, never {value}"
        time.sleep(0.1)
    return seen


def test_subscriptions_are_made_described_listed_and_refused_alike(bootstrap: str) -> None:
    name, other = f"tele-{uuid.uuid4().hex[:8]}", f"tele-{uuid.uuid4().hex[:8]}"
    try:
        assert _tool("--alter", "--entity-type", "client-metrics", "--entity-name", name, "--add-config",
                     "metrics=[org.apache.kafka.producer.,org.apache.kafka.consumer.],interval.ms=1000,"
                     "match=[client_id=abc.*]", bootstrap=bootstrap) == (
            0, f"Completed updating config for client-metric {name}.")
        seen = _wait_for(bootstrap, name, "interval.ms", "1000")
        assert seen == {
            "interval.ms": ("1000", CLIENT_METRICS_CONFIG, False, [("1000", CLIENT_METRICS_CONFIG)], 3,
                            "Metrics push interval in milliseconds"),
            "match": ("client_id=abc.*", CLIENT_METRICS_CONFIG, False, [("client_id=abc.*", CLIENT_METRICS_CONFIG)], 7,
                      "Client match criteria"),
            "metrics": ("org.apache.kafka.producer.,org.apache.kafka.consumer.", CLIENT_METRICS_CONFIG, False,
                        [("org.apache.kafka.producer.,org.apache.kafka.consumer.", CLIENT_METRICS_CONFIG)], 7,
                        "Telemetry metric name prefix list"),
        }
        # a subscription that does not exist is all defaults; no name is refused
        assert _describe(bootstrap, "no-such-subscription")[2] == {
            "interval.ms": ("300000", DEFAULT, False, [], 3, "Metrics push interval in milliseconds"),
            "match": ("", DEFAULT, False, [], 7, "Client match criteria"),
            "metrics": ("", DEFAULT, False, [], 7, "Telemetry metric name prefix list"),
        }
        assert _describe(bootstrap, "")[:2] == (42, "Client metrics subscription name must not be empty")

        assert _tool("--alter", "--name", other, "--metrics", "org.apache.kafka.", "--interval", "2000", "--match",
                     "client_software_name=apache-kafka-java", tool="ClientMetricsCommand", bootstrap=bootstrap) == (
            0, f"Altered client metrics config for {other}.")
        _wait_for(bootstrap, other, "interval.ms", "2000")
        assert {name, other} <= _listed(bootstrap)
        rc, out = _tool("--list", tool="ClientMetricsCommand", bootstrap=bootstrap)
        assert rc == 0 and {name, other} <= set(out.splitlines()), out

        assert _alter(bootstrap, name, [("foo", SET, "1")]) == (42, "Unknown client metrics configuration: foo")
        assert _alter(bootstrap, name, [("interval.ms", SET, "50")]) == (
            42, "Invalid value 50 for interval.ms, interval must be between 100 and 3600000 (1 hour)")
        assert _alter(bootstrap, name, [("interval.ms", SET, "abc")]) == (
            40, "Invalid value abc for configuration interval.ms: Not a number of type INT")
        for bad in ("nope=1", "client_id=[", "client_id"):
            assert _alter(bootstrap, name, [("match", SET, bad)]) == (40, f"Illegal client matching pattern: {bad}")
        assert _alter(bootstrap, name, [("metrics", APPEND, "a"), ("metrics", APPEND, "b")]) == (
            42, "Error due to duplicate config keys")
        assert _alter(bootstrap, name, [("metrics", APPEND, "c")]) == (
            40, "Can't APPEND to key metrics because its type is not LIST.")
        assert _alter(bootstrap, "", [("metrics", SET, "a")]) == (42, "Subscription name can't be empty")
    finally:  # deleting every config deletes a subscription; the shared Kafka must not keep these for other tests
        for sub in (name, other):
            assert _alter(bootstrap, sub, [(n, DELETE, None) for n in ("metrics", "interval.ms", "match")]) == (0, None)
        deadline = time.monotonic() + WAIT_S
        while {name, other} & _listed(bootstrap):
            assert time.monotonic() < deadline, "deleted subscriptions are still listed"
            time.sleep(0.1)


def _get(raw: Raw, instance: uuid.UUID = ZERO) -> Any:
    cls = load_request_schema(ApiKey.GET_TELEMETRY_SUBSCRIPTIONS, 0)
    return raw.request(ApiKey.GET_TELEMETRY_SUBSCRIPTIONS, 0, cls(client_instance_id=instance))


def _push(raw: Raw, instance: uuid.UUID, subscription: int, data: bytes = b"", codec: int = 0,
          terminating: bool = False) -> int:
    cls = load_request_schema(ApiKey.PUSH_TELEMETRY, 0)
    resp: Any = raw.request(ApiKey.PUSH_TELEMETRY, 0, cls(
        client_instance_id=instance, subscription_id=subscription, terminating=terminating, compression_type=codec,
        metrics=data))
    return int(resp.error_code)


def _advertised(raw: Raw) -> set[int]:
    cls = load_request_schema(ApiKey.API_VERSIONS, 3)
    resp: Any = raw.request(ApiKey.API_VERSIONS, 3, cls(client_software_name="t", client_software_version="1"))
    return {int(k.api_key) for k in resp.api_keys}


def test_telemetry_requests_get_the_same_answers(bootstrap: str) -> None:
    raw = Raw(bootstrap, client_id="tele-raw")
    try:
        assert not _advertised(raw) & {ApiKey.GET_TELEMETRY_SUBSCRIPTIONS, ApiKey.PUSH_TELEMETRY}
        got = _get(raw)
        assert (int(got.error_code), tuple(got.accepted_compression_types), got.push_interval.total_seconds(),
                got.telemetry_max_bytes, got.delta_temporality) == (0, (4, 3, 1, 2), 300, 1048576, True)
        iid, sub = got.client_instance_id, got.subscription_id
        assert iid != ZERO
        assert _push(raw, iid, sub, b"\xff\xff\xff not OTLP") == 0  # taken unread: no reporter, nothing exported
        assert _push(raw, iid, sub) == 89  # THROTTLING_QUOTA_EXCEEDED: sooner than the push interval
        assert int(_get(raw, iid).error_code) == 89
        got = _get(raw)
        assert _push(raw, got.client_instance_id, got.subscription_id + 1) == 117  # UNKNOWN_SUBSCRIPTION_ID
        assert int(_get(raw, got.client_instance_id).error_code) == 0  # re-fetched at once after that
        got = _get(raw)
        assert _push(raw, got.client_instance_id, got.subscription_id, b"x" * (1048576 + 1)) == 118  # too large
        got = _get(raw)
        assert _push(raw, got.client_instance_id, got.subscription_id, b"x", codec=9) == 76
        got = _get(raw)
        assert _push(raw, got.client_instance_id, got.subscription_id, b"not gzip", codec=1) == 87
        assert _push(raw, ZERO, 0) == 42
        assert _push(raw, uuid.uuid4(), 0) == 117
        got = _get(raw)
        assert _push(raw, got.client_instance_id, got.subscription_id, terminating=True) == 0
        assert _push(raw, got.client_instance_id, got.subscription_id, terminating=True) == 42
    finally:
        raw.close()


@pytest.fixture(scope="module")
def exporting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerThread, str]]:
    with embedded_broker(data_dir=str(tmp_path_factory.mktemp("loosely-telemetry-on")),
                         metrics_listen="127.0.0.1:0") as b:
        assert b.broker.metrics is not None
        yield b, f"http://127.0.0.1:{b.broker.metrics.port}/metrics"


def _scrape_until(url: str, *wanted: str) -> str:
    deadline = time.monotonic() + WAIT_S
    while True:
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        lines = text.splitlines()
        if all(any(w in line for line in lines) for w in wanted):
            return text
        assert time.monotonic() < deadline, f"never on /metrics: {wanted}"
        time.sleep(0.2)


def test_pushed_client_metrics_reach_prometheus(exporting: tuple[BrokerThread, str], tmp_path: Path) -> None:
    b, url = exporting
    bootstrap = b.bootstrap_servers
    assert _tool("--alter", "--entity-type", "client-metrics", "--entity-name", "everything", "--add-config",
                 "metrics=*,interval.ms=500", bootstrap=bootstrap)[0] == 0
    raw = Raw(bootstrap)
    try:
        assert {ApiKey.GET_TELEMETRY_SUBSCRIPTIONS, ApiKey.PUSH_TELEMETRY} <= _advertised(raw)
        got = _get(raw)
        assert (tuple(got.requested_metrics), got.push_interval.total_seconds()) == (("*",), 0.5)
        # what no OTLP decoder takes is INVALID_RECORD, what is too large TELEMETRY_TOO_LARGE; the broker stays up
        assert _push(raw, got.client_instance_id, got.subscription_id, b"\xff\xff\xff not OTLP") == 87
        got = _get(raw)
        assert _push(raw, got.client_instance_id, got.subscription_id, b"\0" * (1048576 + 1)) == 118
    finally:
        raw.close()

    producer = Producer({"bootstrap.servers": bootstrap, "client.id": "tele-rdkafka"})  # enable.metrics.push: on
    deadline = time.monotonic() + WAIT_S
    text = ""
    while "tele-rdkafka" not in text:
        producer.produce("tele-topic", b"v")
        producer.poll(0.2)
        with urllib.request.urlopen(url, timeout=10) as r:
            text = "\n".join(line for line in r.read().decode().splitlines() if line.startswith("loosely_client_"))
        assert time.monotonic() < deadline, "librdkafka's metrics never reached /metrics"
    producer.flush(10)
    assert 'loosely_client_org_apache_kafka_producer_node_request_latency_max{client_id="tele-rdkafka",' in text, text

    props = tmp_path / "client.properties"
    props.write_text(f"bootstrap.servers={bootstrap}\nclient.id=tele-java\n")
    r = run_java("interop/java-clients", "ConfiguredProbe", "roundtrip", str(props), "tele-java-topic", "3")
    assert r.returncode == 0, r.stderr[-3000:]
    text = _scrape_until(url, 'client_id="tele-java"', 'client_software_name="apache-kafka-java"')
    pushes = [line for line in text.splitlines()
              if line.startswith("loosely_telemetry_pushes_total") and 'client_id="tele-java"' in line]
    assert pushes and all(float(line.rsplit(" ", 1)[1]) >= 1 for line in pushes), pushes
    assert any(line.startswith("loosely_client_org_apache_kafka_") and 'client_id="tele-java"' in line
               for line in text.splitlines())

    # `loosely top` shows a line per pushing client
    screen = render(parse_scrape(text, time.time()), None, url)
    rows = [line for line in screen.splitlines() if line.startswith("tele-java ")]  # its producer and consumer
    assert rows and all("apache-kafka-java" in row for row in rows), screen
    assert any(line.startswith("tele-rdkafka ") for line in screen.splitlines()), screen
