"""Client telemetry's state (loosely.broker.client_metrics) on its own: subscriptions checked as Kafka checks them,
durable and matched against clients; the rate limits driven by a fake clock; OTLP payloads decoded into points."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from loosely.broker.client_metrics import (
    EXPORTED_CLIENTS_MAX,
    SERIES_PER_CLIENT_MAX,
    ClientInfo,
    ClientMetricsError,
    ClientTelemetry,
    Subscriptions,
    check_subscription,
)
from loosely.broker.config import BrokerConfig, split_kafka_settings
from loosely.protocol.compression import Codec, compress
from loosely.protocol.errors import ErrorCode
from loosely.storage.fs import OsFileSystem

JAVA = ClientInfo("app-1", "apache-kafka-java", "4.1.1", "127.0.0.1", 40000)
RDKAFKA = ClientInfo("other", "confluent-kafka-python", "2.16.0", "127.0.0.1", 40001)


def test_subscriptions_are_refused_as_kafka_refuses_them() -> None:
    def refused(name: str, props: dict[str, str]) -> tuple[int, str]:
        with pytest.raises(ClientMetricsError) as e:
            check_subscription(name, props)
        return int(e.value.error_code), str(e.value)

    assert refused("", {}) == (42, "Subscription name can't be empty")
    assert refused("s", {"foo": "1"}) == (42, "Unknown client metrics configuration: foo")
    assert refused("s", {"interval.ms": "99"})[0] == 42
    assert refused("s", {"interval.ms": "3600001"})[0] == 42
    assert refused("s", {"interval.ms": "x"}) == (40, "Invalid value x for configuration interval.ms: Not a number of "
                                                      "type INT")
    for bad in ("nope=1", "client_id", "client_id=[", "client_id=a=b", "=x"):
        assert refused("s", {"match": bad}) == (40, f"Illegal client matching pattern: {bad}")
    check_subscription("s", {"interval.ms": "100", "match": "client_id=a.*, client_software_name=x", "metrics": "*"})
    check_subscription("s", {"interval.ms": "3600000"})


def test_subscriptions_are_durable_and_match_whole_values(tmp_path: Path) -> None:
    subs = Subscriptions(OsFileSystem(), str(tmp_path))
    subs.replace("java", {"metrics": "org.apache.kafka.producer.,org.apache.kafka.consumer.", "interval.ms": "1000",
                          "match": "client_software_name=apache-kafka-java,client_id=app-.*"})
    subs.replace("all", {"metrics": "org.apache.kafka.producer.", "interval.ms": "2000"})
    subs.replace("gone", {"metrics": "x"})
    subs.replace("gone", {})
    again = Subscriptions(OsFileSystem(), str(tmp_path))
    assert set(again.entries) == {"java", "all"}
    iid = uuid.uuid4()
    assert again.matching(JAVA, iid) == (("org.apache.kafka.consumer.", "org.apache.kafka.producer."), 1000)
    assert again.matching(RDKAFKA, iid) == (("org.apache.kafka.producer.",), 2000)
    # a regex matches the whole value, not a part of it
    again.replace("part", {"metrics": "p.", "match": "client_id=app"})
    assert again.matching(JAVA, iid)[0] == ("org.apache.kafka.consumer.", "org.apache.kafka.producer.")
    again.replace("star", {"metrics": "*", "match": f"client_instance_id={iid}"})
    assert again.matching(JAVA, iid) == (("*",), 1000)
    (tmp_path / "client-metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="is damaged"):
        Subscriptions(OsFileSystem(), str(tmp_path))


def _push(t: ClientTelemetry, instance: uuid.UUID, subscription: int, payload: bytes = b"", *, codec: int = 0,
          terminating: bool = False, info: ClientInfo = JAVA) -> ErrorCode:
    return t.push(instance, info, subscription_id=subscription, terminating=terminating, compression_type=codec,
                  payload=payload)[0]


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def _telemetry(tmp_path: Path, clock: Clock, *, export: bool = True, bytes_max: int = 4096) -> ClientTelemetry:
    subs = Subscriptions(OsFileSystem(), str(tmp_path))
    subs.replace("all", {"metrics": "*", "interval.ms": "1000"})
    return ClientTelemetry(subs, clock, telemetry_bytes_max=bytes_max, export=export, rng=random.Random(7))


def test_pushes_are_rate_limited_and_checked_in_kafkas_order(tmp_path: Path) -> None:
    clock = Clock()
    t = _telemetry(tmp_path, clock)
    got = t.get_subscriptions(None, JAVA)
    assert (got.error_code, got.interval_ms, got.metrics) == (ErrorCode.none, 1000, ("*",))
    iid, sub = got.instance_id, got.subscription_id
    assert t.get_subscriptions(iid, JAVA).error_code == ErrorCode.throttling_quota_exceeded
    assert _push(t, iid, sub) == ErrorCode.none  # the first push after a fetch is taken
    assert _push(t, iid, sub) == ErrorCode.throttling_quota_exceeded
    clock.ms += 1000
    assert _push(t, iid, sub + 1) == ErrorCode.unknown_subscription_id
    clock.ms += 1  # a fetch later than the last push lets the next push through at once
    assert t.get_subscriptions(iid, JAVA).error_code == ErrorCode.none  # at once after an unknown subscription
    assert _push(t, iid, sub, b"x", codec=9) == ErrorCode.unsupported_compression_type
    clock.ms += 1000
    assert _push(t, iid, sub, b"x" * 4097) == ErrorCode.telemetry_too_large
    clock.ms += 1000
    bomb = compress(Codec.GZIP, b"\0" * 10_000)  # small on the wire, over the limit once inflated
    assert _push(t, iid, sub, bomb, codec=Codec.GZIP) == ErrorCode.telemetry_too_large
    clock.ms += 1000
    assert _push(t, iid, sub, b"not gzip", codec=Codec.GZIP) == ErrorCode.invalid_record
    clock.ms += 1000
    assert _push(t, iid, sub, b"\xff\xff\xff garbage") == ErrorCode.invalid_record
    assert _push(t, iid, sub, terminating=True) == ErrorCode.none  # terminating: not rate limited
    assert _push(t, iid, sub, terminating=True) == ErrorCode.invalid_request
    assert _push(t, uuid.UUID(int=0), 0) == ErrorCode.invalid_request
    # a changed subscription changes the id the next fetch hands out, at once
    got = t.get_subscriptions(None, JAVA)
    assert _push(t, got.instance_id, got.subscription_id) == ErrorCode.none
    t.subscriptions.replace("all", {"metrics": "org.", "interval.ms": "500"})
    assert _push(t, got.instance_id, got.subscription_id) == ErrorCode.unknown_subscription_id
    again = t.get_subscriptions(got.instance_id, JAVA)
    assert (again.metrics, again.interval_ms) == (("org.",), 500) and again.subscription_id != got.subscription_id


def _metrics_data(points: int, value: int) -> bytes:
    md = metrics_pb2.MetricsData()
    scope = md.resource_metrics.add().scope_metrics.add()
    gauge = scope.metrics.add(name="org.apache.kafka.producer.queue")
    for i in range(points):
        p = gauge.gauge.data_points.add(as_double=float(i))
        p.attributes.append(KeyValue(key="node.id", value=AnyValue(int_value=i)))
    counter = scope.metrics.add(name="org.apache.kafka.producer.sent")
    counter.sum.is_monotonic = True
    counter.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    counter.sum.data_points.add(as_int=value)
    return md.SerializeToString()


def test_pushed_points_are_kept_bounded_and_deltas_added_up(tmp_path: Path) -> None:
    clock = Clock()
    t = _telemetry(tmp_path, clock, bytes_max=1 << 20)
    got = t.get_subscriptions(None, JAVA)
    for value in (5, 7):
        assert _push(t, got.instance_id, got.subscription_id, compress(Codec.ZSTD, _metrics_data(2, value)),
                     codec=Codec.ZSTD) == ErrorCode.none
        clock.ms += 1000
    (series,) = t.exported.values()
    assert series.pushes == 2 and series.info.client_id == "app-1"
    assert series.points[("org.apache.kafka.producer.sent", ())] == ("counter", 12.0)
    assert series.points[("org.apache.kafka.producer.queue", (("node.id", "1"),))] == ("gauge", 1.0)
    assert _push(t, got.instance_id, got.subscription_id, _metrics_data(SERIES_PER_CLIENT_MAX + 5, 1)) == 0
    assert len(series.points) == SERIES_PER_CLIENT_MAX and series.dropped == 6
    for _ in range(EXPORTED_CLIENTS_MAX + 1):
        other = t.get_subscriptions(None, RDKAFKA)
        assert _push(t, other.instance_id, other.subscription_id, _metrics_data(1, 1), info=RDKAFKA) == 0
    assert len(t.exported) == EXPORTED_CLIENTS_MAX and got.instance_id not in t.exported
    clock.ms += 60_000  # unheard for a minute (and three intervals): forgotten, series and all
    t.expire()
    assert not t.exported and t.statistics()["instances"] == 0


def test_without_export_pushes_are_taken_and_dropped_as_kafka_does(tmp_path: Path) -> None:
    clock = Clock()
    t = _telemetry(tmp_path, clock, export=False)
    got = t.get_subscriptions(None, JAVA)
    assert _push(t, got.instance_id, got.subscription_id, b"\xff garbage") == ErrorCode.none
    assert not t.exported


def test_telemetry_is_on_with_the_prometheus_endpoint_unless_set_otherwise() -> None:
    assert not BrokerConfig(data_dir="d").client_telemetry_exported  # as Kafka without a telemetry reporter
    assert BrokerConfig(data_dir="d", metrics_listen="127.0.0.1:0").client_telemetry_exported
    off, _, _ = split_kafka_settings({"loosely.client.telemetry.enable": "false", "telemetry.max.bytes": "2048"})
    assert off == {"client_telemetry": False, "telemetry_bytes_max": 2048}
    off_with_endpoint = BrokerConfig(data_dir="d", metrics_listen="127.0.0.1:0", client_telemetry=False)
    assert not off_with_endpoint.client_telemetry_exported
    with pytest.raises(ValueError, match=r"telemetry\.max\.bytes"):
        split_kafka_settings({"telemetry.max.bytes": "0"})
