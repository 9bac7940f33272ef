"""Client telemetry (KIP-714): CLIENT_METRICS subscriptions, the client instances that fetch and push against them,
and the latest values each client pushed, which :mod:`loosely.broker.metrics` exports on the Prometheus endpoint.

**Subscriptions** are CLIENT_METRICS config resources (type 16), set with IncrementalAlterConfigs as
``kafka-client-metrics.sh --alter --name S --metrics P1,P2 --interval 1000 --match client_id=app.*`` or
``kafka-configs --entity-type client-metrics`` send them. Kafka 4.1.1's three names: ``metrics`` (metric name
prefixes, ``*`` for all), ``interval.ms`` (the push interval, 100 ms to one hour, default five minutes) and
``match`` (``selector=regex`` pairs over ``client_id``, ``client_instance_id``, ``client_software_name``,
``client_software_version``, ``client_source_address``, ``client_source_port``; every pair must match the whole
value; none matches every client). :func:`check_subscription` refuses what Kafka's ClientMetricsConfigs refuses,
with its error codes and sentences. They live in ``<data_dir>/client-metrics.json``
(``{"version": 1, "subscriptions": {"<name>": {...}}}``), rewritten atomically before the request is answered and
read at start; deleting a subscription's last config deletes it, as in Kafka.

**Client instances** follow Kafka's ClientMetricsManager. GetTelemetrySubscriptions with the zero UUID assigns a
random instance id; the instance's subscription is the union of the prefixes of every subscription that matches it,
the least of their intervals (five minutes when none matches), and an id that changes when either does
(CRC-32C of the prefixes and interval, XORed with the instance id's hash). A change to any subscription makes each
instance start afresh at its next request (its next fetch is answered at once). Rate limits, in Kafka's order (each
answer is Kafka's error code):

* a GetTelemetrySubscriptions sooner than one push interval after the instance's last request is
  THROTTLING_QUOTA_EXCEEDED, unless its last push failed with UNKNOWN_SUBSCRIPTION_ID or
  UNSUPPORTED_COMPRESSION_TYPE (the client must re-fetch at once);
* a PushTelemetry after one that said ``terminating`` is INVALID_REQUEST; one sooner than the interval after the
  last push is THROTTLING_QUOTA_EXCEEDED (the first push after a fetch is always taken: clients add jitter);
* then UNKNOWN_SUBSCRIPTION_ID for a stale subscription id, UNSUPPORTED_COMPRESSION_TYPE for a codec id Kafka does not
  know, TELEMETRY_TOO_LARGE over ``telemetry.max.bytes``; the payload is decompressed (bounded by the same limit,
  as Kafka since 4.2; INVALID_RECORD when it does not decompress, as in 4.1) and, when telemetry is exported,
  decoded as OTLP ``MetricsData`` (INVALID_RECORD when it does not decode: what a Kafka reporter's failure
  answers).

**What is kept.** At most ``INSTANCES_MAX`` instances (Kafka's cache size), each forgotten after
``max(INSTANCE_EXPIRY_MS, 3 * push interval)`` without a request (Kafka's expiry), and for the
``EXPORTED_CLIENTS_MAX`` instances that pushed last, their latest point per (metric, attributes), at most
``SERIES_PER_CLIENT_MAX`` of them: a bound on what one Prometheus scrape carries. Gauges keep the last value;
monotonic sums pushed as deltas (the temporality this broker asks for, as Kafka does) are added up into counters,
cumulative ones keep the last value; histograms keep their count and sum.
"""

from __future__ import annotations

import random
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import crc32c
from google.protobuf.message import DecodeError
from opentelemetry.proto.metrics.v1 import metrics_pb2

from loosely.broker._named_configs import NamedConfigs
from loosely.protocol.compression import Codec, decompress_bounded
from loosely.protocol.errors import ErrorCode, ProtocolError
from loosely.storage.fs import FileSystem

__all__ = [
    "ACCEPTED_COMPRESSION",
    "CLIENT_METRICS_FILE",
    "CONFIG_DEFS",
    "SOURCE_CLIENT_METRICS",
    "ClientInfo",
    "ClientMetricsError",
    "ClientSeries",
    "ClientTelemetry",
    "Subscriptions",
    "TelemetryAnswer",
    "check_subscription",
]

CLIENT_METRICS_FILE: Final = "client-metrics.json"
SOURCE_CLIENT_METRICS: Final = 7  # Kafka's ConfigSource.CLIENT_METRICS_CONFIG

METRICS, INTERVAL_MS, MATCH = "metrics", "interval.ms", "match"
INTERVAL_MS_DEFAULT: Final = 300_000  # Kafka's ClientMetricsConfigs: five minutes
INTERVAL_MS_MIN: Final = 100
INTERVAL_MS_MAX: Final = 3_600_000
ALL_METRICS: Final = "*"
MATCH_SELECTORS: Final = frozenset({
    "client_instance_id", "client_id", "client_software_name", "client_software_version", "client_source_address",
    "client_source_port",
})


@dataclass(frozen=True, slots=True)
class ConfigDef:
    name: str
    kind: str  # Kafka's type name
    default: str
    doc: str  # Kafka's own documentation string, which DescribeConfigs answers


CONFIG_DEFS: Final = {d.name: d for d in (
    ConfigDef(INTERVAL_MS, "int", str(INTERVAL_MS_DEFAULT), "Metrics push interval in milliseconds"),
    ConfigDef(MATCH, "list", "", "Client match criteria"),
    ConfigDef(METRICS, "list", "", "Telemetry metric name prefix list"),
)}

# Kafka's preference order (ClientMetricsManager): clients take the first they support
ACCEPTED_COMPRESSION: Final = (Codec.ZSTD, Codec.LZ4, Codec.GZIP, Codec.SNAPPY)
INSTANCES_MAX: Final = 16_384  # Kafka's client instance cache: 16k active client connections per broker
INSTANCE_EXPIRY_MS: Final = 60_000  # Kafka's: an instance is forgotten after max(this, 3 push intervals) unheard
# What one Prometheus scrape carries at most: 100 clients of 1 000 series each, the order of the consumer-lag bound
# (a Java client subscribed to everything pushes a few hundred series)
EXPORTED_CLIENTS_MAX: Final = 100
SERIES_PER_CLIENT_MAX: Final = 1_000
_ZERO: Final = uuid.UUID(int=0)
_RESERVED: Final = frozenset({_ZERO, uuid.UUID(int=1)})  # Kafka's Uuid.RESERVED


class ClientMetricsError(ValueError):
    """A refused subscription change or request: Kafka's error code and sentence."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error_code = code


def _java_list(value: str) -> list[str]:
    """Kafka's ConfigDef LIST parsing: comma-separated, each item trimmed; an empty value is an empty list."""
    value = value.strip()
    return [] if not value else [x.strip() for x in value.split(",")]


def _patterns(items: list[str]) -> dict[str, re.Pattern[str]]:
    """``selector=regex`` pairs, refused as Kafka's parseMatchingPatterns refuses them."""
    out: dict[str, re.Pattern[str]] = {}
    for item in items:
        parts = item.split("=")
        while parts and parts[-1] == "":  # Java's String.split drops trailing empty strings
            parts.pop()
        if len(parts) != 2 or parts[0].strip() not in MATCH_SELECTORS:
            raise ClientMetricsError(ErrorCode.invalid_config, f"Illegal client matching pattern: {item}")
        try:
            out[parts[0].strip()] = re.compile(parts[1].strip())
        except re.error:
            raise ClientMetricsError(ErrorCode.invalid_config, f"Illegal client matching pattern: {item}") from None
    return out


def check_subscription(name: str, props: Mapping[str, str]) -> None:
    """Kafka's ClientMetricsConfigs.validate; raises :class:`ClientMetricsError`.

    >>> check_subscription("s", {"match": "client_id"})
    Traceback (most recent call last):
    ...
    loosely.broker.client_metrics.ClientMetricsError: Illegal client matching pattern: client_id
    """
    if not name:
        raise ClientMetricsError(ErrorCode.invalid_request, "Subscription name can't be empty")
    for key in props:
        if key not in CONFIG_DEFS:
            raise ClientMetricsError(ErrorCode.invalid_request, f"Unknown client metrics configuration: {key}")
    if INTERVAL_MS in props:
        raw = props[INTERVAL_MS]
        try:
            interval = int(raw.strip())
        except ValueError:
            raise ClientMetricsError(ErrorCode.invalid_config,
                                     f"Invalid value {raw} for configuration {INTERVAL_MS}: Not a number of type INT"
                                     ) from None
        if not INTERVAL_MS_MIN <= interval <= INTERVAL_MS_MAX:
            raise ClientMetricsError(
                ErrorCode.invalid_request,
                f"Invalid value {interval} for {INTERVAL_MS}, interval must be between 100 and 3600000 (1 hour)",
            )
    if MATCH in props:
        _patterns(_java_list(props[MATCH]))


@dataclass(frozen=True, slots=True)
class _Subscription:
    metrics: frozenset[str]
    interval_ms: int
    match: dict[str, re.Pattern[str]]

    @staticmethod
    def of(props: Mapping[str, str]) -> _Subscription:
        return _Subscription(
            frozenset(_java_list(props.get(METRICS, ""))),
            int(props.get(INTERVAL_MS, INTERVAL_MS_DEFAULT)),
            _patterns(_java_list(props.get(MATCH, ""))),
        )


class Subscriptions(NamedConfigs):
    """Every CLIENT_METRICS subscription, loaded from and saved to the data directory (one event-loop thread)."""

    def __init__(self, fs: FileSystem, data_dir: str) -> None:
        super().__init__(fs, data_dir, CLIENT_METRICS_FILE, "subscriptions")
        try:
            for name, props in self.entries.items():
                check_subscription(name, props)
        except ClientMetricsError as e:
            raise ValueError(f"{self.path} is damaged ({e}); fix or remove it") from None
        self._parsed = {n: _Subscription.of(p) for n, p in self.entries.items()}
        self.version = 0  # bumped by every change: instances re-evaluate when theirs is older

    def replace(self, name: str, props: Mapping[str, str]) -> None:
        """Make ``props`` the subscription's whole config (none: delete it), durable before it counts."""
        super().replace(name, props)
        self._parsed = {n: _Subscription.of(p) for n, p in self.entries.items()}
        self.version += 1

    def matching(self, info: ClientInfo, instance_id: uuid.UUID) -> tuple[tuple[str, ...], int]:
        """The requested metric prefixes and push interval of a client: every subscription that matches it."""
        attributes = info.attributes(instance_id)
        metrics: set[str] = set()
        interval = INTERVAL_MS_DEFAULT
        for sub in self._parsed.values():
            if all(attributes.get(k) is not None and p.fullmatch(attributes[k] or "") for k, p in sub.match.items()):
                metrics |= sub.metrics
                interval = min(interval, sub.interval_ms)
        if ALL_METRICS in metrics:
            return (ALL_METRICS,), interval
        return tuple(sorted(metrics)), interval


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What the broker knows of the client behind a request: what ``match`` selectors are matched against."""

    client_id: str
    software_name: str | None
    software_version: str | None
    source_address: str | None
    source_port: int | None

    def attributes(self, instance_id: uuid.UUID) -> dict[str, str | None]:
        return {
            "client_instance_id": str(instance_id),
            "client_id": self.client_id,
            "client_software_name": self.software_name,
            "client_software_version": self.software_version,
            "client_source_address": self.source_address,
            "client_source_port": None if self.source_port is None else str(self.source_port),
        }


@dataclass(frozen=True, slots=True)
class TelemetryAnswer:
    """What GetTelemetrySubscriptions answers (on an error only ``error_code`` and ``message`` count)."""

    error_code: ErrorCode
    message: str | None = None
    instance_id: uuid.UUID = _ZERO
    subscription_id: int = 0
    interval_ms: int = 0
    metrics: tuple[str, ...] = ()


@dataclass(slots=True)
class ClientSeries:
    """One client instance as exported: who it is and its latest points."""

    instance_id: uuid.UUID
    info: ClientInfo
    pushes: int = 0
    last_push_ms: int = 0
    # (metric name, sorted point attributes) -> (kind, value); kind: "gauge", "counter"
    points: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, float]] = field(default_factory=dict)
    dropped: int = 0  # points left out past SERIES_PER_CLIENT_MAX


@dataclass(slots=True)
class _Instance:
    info: ClientInfo
    subscription_id: int
    subscription_version: int
    metrics: tuple[str, ...]
    interval_ms: int
    last_get_ms: int | None = None
    last_push_ms: int | None = None
    last_seen_ms: int = 0
    terminating: bool = False
    last_error: ErrorCode = ErrorCode.none


def _too_soon(instance_id: uuid.UUID) -> str:
    return f"Request from the client [{instance_id}] arrived before the next push interval time"


def _subscription_id(metrics: tuple[str, ...], interval_ms: int, instance_id: uuid.UUID) -> int:
    crc = crc32c.crc32c(f"{list(metrics)}{interval_ms}".encode())
    h = (instance_id.int >> 64) ^ (instance_id.int & 0xFFFF_FFFF_FFFF_FFFF)  # Kafka's Uuid.hashCode, folded
    value = (crc ^ (h >> 32) ^ h) & 0xFFFF_FFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class ClientTelemetry:
    """The client instances and their pushed metrics. ``now_ms`` is injected (the broker's monotonic clock), so
    the rate limits are tested without sleeping."""

    def __init__(self, subscriptions: Subscriptions, now_ms: Callable[[], int], *, telemetry_bytes_max: int,
                 export: bool, rng: random.Random | None = None) -> None:
        self.subscriptions = subscriptions
        self._now_ms = now_ms
        self.telemetry_bytes_max = telemetry_bytes_max
        self.export = export  # decode and keep pushed metrics (the APIs are advertised); else take and drop them
        self._rng = rng or random.SystemRandom()
        self._instances: OrderedDict[uuid.UUID, _Instance] = OrderedDict()
        self.exported: OrderedDict[uuid.UUID, ClientSeries] = OrderedDict()  # least recently pushed first
        self.pushes_total = 0
        self.push_errors_total = 0

    def _new_id(self) -> uuid.UUID:
        while True:
            found = uuid.UUID(int=self._rng.getrandbits(128), version=4)
            if found not in self._instances:
                return found

    def _instance(self, instance_id: uuid.UUID, info: ClientInfo, now: int) -> _Instance:
        """The instance, made or re-evaluated against changed subscriptions; expired ones are dropped first."""
        self._expire(now)
        inst = self._instances.get(instance_id)
        version = self.subscriptions.version
        if inst is None or inst.subscription_version < version:
            metrics, interval = self.subscriptions.matching(info if inst is None else inst.info, instance_id)
            # a re-evaluated instance starts afresh, as Kafka's: its next fetch is answered at once
            inst = _Instance(info if inst is None else inst.info, _subscription_id(metrics, interval, instance_id),
                             version, metrics, interval)
            self._instances[instance_id] = inst
        self._instances.move_to_end(instance_id)
        inst.last_seen_ms = now
        while len(self._instances) > INSTANCES_MAX:
            gone, _ = self._instances.popitem(last=False)
            self.exported.pop(gone, None)
        return inst

    def expire(self) -> None:
        """Forget the instances unheard for too long, and what they pushed (a scrape calls it, so the series of
        clients that went away leave ``/metrics`` even when no other client sends telemetry)."""
        self._expire(self._now_ms())

    def _expire(self, now: int) -> None:
        while self._instances:
            oldest_id, oldest = next(iter(self._instances.items()))
            if now - oldest.last_seen_ms < max(INSTANCE_EXPIRY_MS, 3 * oldest.interval_ms):
                return
            del self._instances[oldest_id]
            self.exported.pop(oldest_id, None)

    def get_subscriptions(self, instance_id: uuid.UUID | None, info: ClientInfo) -> TelemetryAnswer:
        now = self._now_ms()
        if instance_id is None or instance_id == _ZERO:
            instance_id = self._new_id()
        inst = self._instance(instance_id, info, now)
        stamps = [t for t in (inst.last_get_ms, inst.last_push_ms) if t is not None]
        last = max(stamps) if stamps else None
        if last is not None and now - last < inst.interval_ms and inst.last_error not in (
            ErrorCode.unknown_subscription_id, ErrorCode.unsupported_compression_type
        ):
            return TelemetryAnswer(ErrorCode.throttling_quota_exceeded, _too_soon(instance_id))
        inst.last_get_ms = now
        inst.last_error = ErrorCode.none
        return TelemetryAnswer(ErrorCode.none, None, instance_id, inst.subscription_id, inst.interval_ms, inst.metrics)

    def push(self, instance_id: uuid.UUID | None, info: ClientInfo, *, subscription_id: int, terminating: bool,
             compression_type: int, payload: bytes) -> tuple[ErrorCode, str | None]:
        """Check and take one push; ``(error code, message)``."""
        if instance_id is None or instance_id in _RESERVED:
            return ErrorCode.invalid_request, (
                f"Invalid request from the client [{instance_id}], invalid client instance id")
        now = self._now_ms()
        inst = self._instance(instance_id, info, now)
        try:
            error = self._check_push(inst, instance_id, subscription_id=subscription_id, terminating=terminating,
                                     compression_type=compression_type, payload_bytes=len(payload), now=now)
        finally:
            inst.terminating = terminating
        if error is None and payload:
            error = self._take(instance_id, inst, compression_type, payload, now)
        inst.last_error = ErrorCode.none if error is None else error.error_code
        if error is not None:
            self.push_errors_total += 1
            return error.error_code, str(error)
        self.pushes_total += 1
        return ErrorCode.none, None

    def _check_push(self, inst: _Instance, instance_id: uuid.UUID, *, subscription_id: int, terminating: bool,
                    compression_type: int, payload_bytes: int, now: int) -> ClientMetricsError | None:
        if inst.terminating:
            return ClientMetricsError(ErrorCode.invalid_request, (
                f"Client [{instance_id}] sent the previous request with state terminating to TRUE, can not accept"
                "any requests after that"))
        after_get = inst.last_get_ms is not None and (inst.last_push_ms is None or inst.last_get_ms > inst.last_push_ms)
        if after_get or inst.last_push_ms is None or now - inst.last_push_ms >= inst.interval_ms:
            inst.last_push_ms = now
        elif not terminating:
            return ClientMetricsError(ErrorCode.throttling_quota_exceeded, _too_soon(instance_id))
        if subscription_id != inst.subscription_id:
            return ClientMetricsError(ErrorCode.unknown_subscription_id,
                                      f"Unknown client subscription id for the client [{instance_id}]")
        if compression_type not in tuple(Codec):
            return ClientMetricsError(ErrorCode.unsupported_compression_type, (
                f"Unknown compression type [{compression_type}] is received in telemetry request from [{instance_id}]"))
        if payload_bytes > self.telemetry_bytes_max:
            return ClientMetricsError(ErrorCode.telemetry_too_large, (
                f"Telemetry request from [{instance_id}] is larger than the maximum allowed size "
                f"[{self.telemetry_bytes_max}]"))
        return None

    def _take(self, instance_id: uuid.UUID, inst: _Instance, compression_type: int, payload: bytes,
              now: int) -> ClientMetricsError | None:
        try:
            data, over = decompress_bounded(compression_type, payload, self.telemetry_bytes_max)
        except ProtocolError as e:
            return ClientMetricsError(ErrorCode.invalid_record, f"cannot decompress the metrics: {e}")
        if over:
            return ClientMetricsError(ErrorCode.telemetry_too_large, (
                f"Telemetry request from [{instance_id}] decompresses to more than the maximum allowed size "
                f"[{self.telemetry_bytes_max}]"))
        if not self.export:
            return None
        try:
            points = decode_points(data)
        except DecodeError as e:
            return ClientMetricsError(ErrorCode.invalid_record, f"the metrics are not OTLP MetricsData: {e}")
        series = self.exported.pop(instance_id, None) or ClientSeries(instance_id, inst.info)
        self.exported[instance_id] = series
        while len(self.exported) > EXPORTED_CLIENTS_MAX:
            self.exported.popitem(last=False)
        series.pushes += 1
        series.last_push_ms = now
        for key, kind, value, delta in points:
            if key not in series.points and len(series.points) >= SERIES_PER_CLIENT_MAX:
                series.dropped += 1
                continue
            series.points[key] = (kind, value + series.points.get(key, (kind, 0.0))[1] if delta else value)
        return None

    def statistics(self) -> dict[str, int]:
        return {"instances": len(self._instances), "exported_clients": len(self.exported),
                "pushes_total": self.pushes_total, "push_errors_total": self.push_errors_total}


_Point = tuple[tuple[str, tuple[tuple[str, str], ...]], str, float, bool]
_DELTA: Final = 1  # OTLP AggregationTemporality


def _value(v: object) -> str:
    which = v.WhichOneof("value")  # type: ignore[attr-defined]
    return "" if which is None else str(getattr(v, which))


def decode_points(data: bytes) -> list[_Point]:
    """The number points of an OTLP ``MetricsData``: ``((name, attributes), kind, value, is_delta)``; histograms as
    ``<name>.count`` and ``<name>.sum`` counters. Raises ``DecodeError`` for bytes that are not one."""
    md = metrics_pb2.MetricsData()
    md.ParseFromString(data)
    out: list[_Point] = []
    for rm in md.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                which = m.WhichOneof("data")
                if which in {"gauge", "sum"}:
                    body = getattr(m, which)
                    counter = which == "sum" and body.is_monotonic
                    delta = counter and body.aggregation_temporality == _DELTA
                    for p in body.data_points:
                        attrs = tuple(sorted((a.key, _value(a.value)) for a in p.attributes))
                        v = float(p.as_double if p.WhichOneof("value") == "as_double" else p.as_int)
                        out.append(((m.name, attrs), "counter" if counter else "gauge", v, delta))
                elif which == "histogram":
                    delta = m.histogram.aggregation_temporality == _DELTA
                    for hp in m.histogram.data_points:
                        attrs = tuple(sorted((a.key, _value(a.value)) for a in hp.attributes))
                        out.append(((f"{m.name}.count", attrs), "counter", float(hp.count), delta))
                        out.append(((f"{m.name}.sum", attrs), "counter", float(hp.sum), delta))
    return out
