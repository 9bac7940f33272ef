"""Broker metrics: a Prometheus endpoint on a loopback port and an InfluxDB line-protocol push.

Theory of operation
-------------------
Counters already live on the :class:`~loosely.broker.context.BrokerContext` (bytes and messages per topic,
requests per API, connections); the storage engine knows log sizes and offsets. Nothing here keeps a second copy:
each Prometheus scrape (on ``prometheus_client``'s HTTP thread) asks the broker's event loop for a
:class:`Snapshot` and turns it into metric families, so a scrape never reads state the loop is changing. The one
thing the context cannot derive is a latency *distribution*, so :meth:`BrokerMetrics.observe_request` feeds a
histogram per API from ``Broker.dispatch``. Consumer-group states and lag come from the group coordinator when one
is registered in ``ctx.services["groups"]``; without it those families are simply absent.

The InfluxDB push (what telegraf's kafka input would send) writes the same snapshot as line protocol to
``<url>/write?db=<db>`` every ``influx_interval_ms`` from a task on the loop; the HTTP POST runs in a thread.

Metric names (all prefixed ``loosely_``): ``topic_bytes_in_total``, ``topic_bytes_out_total``,
``topic_messages_in_total`` {topic}; ``requests_total``, ``request_errors_total`` {api};
``request_duration_seconds`` histogram {api}; ``connections_active``, ``connections_total``;
``log_size_bytes``, ``log_start_offset``, ``log_end_offset`` {topic, partition}; ``group_state`` {group, state},
``group_members`` {group}, ``consumer_group_lag`` {group} (summed over partitions), ``consumer_lag`` and
``consumer_committed_offset`` {group, topic, partition} (what ``kafka-consumer-groups --describe`` shows as LAG and
CURRENT-OFFSET; LOG-END-OFFSET is ``log_end_offset``), ``consumer_lag_series_omitted``; ``storage_errors_total``
{operation} (disk errors: append, roll, flush, truncate, read, retention, checkpoint), ``logs_refusing_writes``
(partitions whose failed append could not be undone yet); damage (docs/broker.md, "Damage, recovery
and quarantine files"), only for partitions that have any: ``log_quarantined_files``, ``log_quarantined_bytes``,
``log_damaged_batches_total`` {topic, partition} (InfluxDB: ``loosely_log_damage``); ``log_scrubbed_bytes_total``
(the scrubber's reads); ``sasl_authentications_total`` and ``sasl_authentication_failures_total`` (logins and
re-authentications on SASL listeners; InfluxDB: ``loosely_sasl``, once there has been one);
``tls_handshake_failures_total`` (handshakes that failed or timed out, and TLS sent to a plaintext listener);
``authorization_denials_total`` {operation, resource_type} (requests the ACLs refused, as the audit log records
them; present when the authorizer is on; InfluxDB: ``loosely_security``). Client telemetry (KIP-714, when
exported; :mod:`loosely.broker.client_metrics`): each pushed metric as ``client_<name>`` {client_instance_id,
client_id, the point's attributes}, and per client ``telemetry_pushes_total``, ``telemetry_series``,
``telemetry_series_dropped_total``, ``telemetry_push_age_seconds`` {client_instance_id, client_id,
client_software_name, client_software_version}; bounded by the client store (not in InfluxDB).

Cardinality: the per-partition consumer series exist only for partitions a group has committed an offset on, and a
scrape carries at most ``CONSUMER_PARTITION_SERIES_MAX`` (group, partition) pairs of them, groups in name order;
the pairs past the bound are counted in ``consumer_lag_series_omitted`` and still summed in ``consumer_group_lag``,
whose cardinality is the number of groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server

from loosely.broker.client_metrics import ClientSeries
from loosely.broker.config import parse_listen
from loosely.protocol.messages import API_NAMES

if TYPE_CHECKING:
    from loosely.broker.context import BrokerContext

__all__ = ["BrokerMetrics", "GroupSnapshot", "Snapshot", "line_protocol", "snapshot"]

log = logging.getLogger("loosely.broker.metrics")

SCRAPE_TIMEOUT_S: Final = 5.0
INFLUX_TIMEOUT_S: Final = 5.0
# Request latencies from 0.1 ms (a metadata answer) to 10 s (a long-polling fetch waits up to fetch.max.wait.ms)
LATENCY_BUCKETS_S: Final = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
# (group, partition) pairs with their own lag and committed-offset series per scrape: 10 000 pairs are two 10 000
# series, well within what one Prometheus target is expected to carry (its default sample_limit is unlimited, and
# common guidance keeps a target under ~10^5 series)
CONSUMER_PARTITION_SERIES_MAX: Final = 10_000


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    group: str
    state: str
    members: int
    lag: dict[tuple[str, int], int]
    committed: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Snapshot:
    bytes_in: dict[str, int]
    bytes_out: dict[str, int]
    messages_in: dict[str, int]
    requests: dict[str, tuple[int, int, float]]  # api -> (count, errors, time_ms_total)
    connections_active: int
    connections_total: int
    logs: dict[tuple[str, int], tuple[int, int, int]]  # (topic, partition) -> (size, start, end)
    groups: list[GroupSnapshot] = field(default_factory=list)
    time_ms: int = 0
    storage_errors: dict[str, int] = field(default_factory=dict)  # operation -> disk errors since start
    logs_refusing_writes: int = 0
    # (topic, partition) -> (quarantine files, their bytes, damaged batches found), partitions with damage only
    damage: dict[tuple[str, int], tuple[int, int, int]] = field(default_factory=dict)
    scrubbed_bytes: int = 0
    sasl_authentications: int = 0
    sasl_authentication_failures: int = 0
    tls_handshake_failures: int = 0
    authorization_denials: dict[tuple[str, str], int] | None = None  # (operation, resource type); None: no ACLs
    clients: list[ClientSeries] = field(default_factory=list)  # client telemetry, when exported
    monotonic_ms: int = 0  # the broker's monotonic clock, which ClientSeries.last_push_ms reads


def snapshot(ctx: BrokerContext) -> Snapshot:
    """What the metrics show, read on the loop thread."""
    logs: dict[tuple[str, int], tuple[int, int, int]] = {}
    damage: dict[tuple[str, int], tuple[int, int, int]] = {}
    scrubber = ctx.services.get("scrubber")
    scrub_damage: dict[tuple[str, int], int] = getattr(scrubber, "damaged_batches", {})
    for t in ctx.logs:
        for p, plog in enumerate(t.logs):
            logs[(t.name, p)] = (plog.size_bytes, plog.log_start_offset, plog.high_watermark)
            quarantined = plog.quarantined()
            damaged = plog.damaged_batches + scrub_damage.get((t.name, p), 0)
            if quarantined or damaged:
                damage[(t.name, p)] = (len(quarantined), sum(quarantined.values()), damaged)
    faults = ctx.logs.faults.statistics()
    return Snapshot(
        bytes_in=dict(ctx.bytes_in),
        bytes_out=dict(ctx.bytes_out),
        messages_in=dict(ctx.messages_in),
        requests={API_NAMES.get(k, str(k)): (s.count, s.errors, s.time_ms_total) for k, s in ctx.requests.items()},
        connections_active=ctx.connections_active,
        connections_total=ctx.connections_total,
        logs=logs,
        groups=_groups(ctx, logs),
        time_ms=ctx.clock.now_ms(),
        storage_errors=faults.errors_total,
        logs_refusing_writes=faults.logs_refusing_writes,
        damage=damage,
        scrubbed_bytes=int(getattr(scrubber, "bytes_checked", 0)),
        sasl_authentications=int(getattr(ctx.services.get("sasl"), "succeeded_total", 0)),
        sasl_authentication_failures=int(getattr(ctx.services.get("sasl"), "failed_total", 0)),
        tls_handshake_failures=int(getattr(ctx.services.get("listeners"), "tls_handshake_failures_total", 0)),
        authorization_denials=None if ctx.acls is None else dict(ctx.acls.denied),
        clients=_clients(ctx),
        monotonic_ms=ctx.clock.monotonic_ms(),
    )


def _clients(ctx: BrokerContext) -> list[ClientSeries]:
    """Copies of what clients pushed (the loop keeps changing the originals while a scrape formats these)."""
    telemetry = ctx.client_telemetry
    if telemetry is None or not telemetry.export:
        return []
    telemetry.expire()
    return [dataclasses.replace(c, points=dict(c.points)) for c in telemetry.exported.values()]


def _groups(ctx: BrokerContext, logs: dict[tuple[str, int], tuple[int, int, int]]) -> list[GroupSnapshot]:
    """Group states and lag from the coordinator of issue #3, read through its public methods if it is there."""
    coordinator = ctx.services.get("groups")
    groups = getattr(coordinator, "groups", None)
    if coordinator is None or not isinstance(groups, dict):
        return []
    out = []
    for gid in list(groups):
        try:
            g = coordinator.group(str(gid))  # type: ignore[attr-defined]
            phase = getattr(g, "phase", None)
            state = str(getattr(phase, "name", phase or "UNKNOWN"))
            members = int(coordinator.member_count(str(gid)))  # type: ignore[attr-defined]
            lag, committed = {}, {}
            for tp, offset, _epoch, _meta, error in coordinator.fetch_offsets(  # type: ignore[attr-defined]
                str(gid), None, require_stable=False
            ):
                topic, partition = tp[0], int(tp[1])
                if int(error) == 0 and offset >= 0 and (topic, partition) in logs:
                    lag[(topic, partition)] = max(0, logs[(topic, partition)][2] - offset)
                    committed[(topic, partition)] = int(offset)
        except Exception:  # the coordinator is still taking shape; a scrape must not fail because of it
            log.debug("could not read group %s", gid, exc_info=True)
            continue
        out.append(GroupSnapshot(str(gid), state, members, lag, committed))
    return out


def _escape_tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def line_protocol(s: Snapshot, host: str) -> str:
    """InfluxDB line protocol for one snapshot (integers with ``i``, nanosecond timestamps).

    >>> s = Snapshot({"t": 3}, {}, {"t": 1}, {}, 0, 0, {("t", 0): (70, 0, 1)}, time_ms=5)
    >>> print(line_protocol(s, "h"), end="")
    loosely_broker,host=h connections_active=0i,connections_total=0i 5000000
    loosely_topic,host=h,topic=t bytes_in=3i,bytes_out=0i,messages_in=1i 5000000
    loosely_log,host=h,topic=t,partition=0 size_bytes=70i,start_offset=0i,end_offset=1i 5000000
    """
    ts = s.time_ms * 1_000_000
    h = _escape_tag(host)
    lines = [
        f"loosely_broker,host={h} connections_active={s.connections_active}i,"
        f"connections_total={s.connections_total}i {ts}"
    ]
    for topic in sorted(set(s.bytes_in) | set(s.bytes_out) | set(s.messages_in)):
        lines.append(
            f"loosely_topic,host={h},topic={_escape_tag(topic)} bytes_in={s.bytes_in.get(topic, 0)}i,"
            f"bytes_out={s.bytes_out.get(topic, 0)}i,messages_in={s.messages_in.get(topic, 0)}i {ts}"
        )
    for api, (count, errors, time_ms) in sorted(s.requests.items()):
        lines.append(
            f"loosely_request,host={h},api={_escape_tag(api)} count={count}i,errors={errors}i,"
            f"time_ms_total={time_ms} {ts}"
        )
    for (topic, partition), (size, start, end) in sorted(s.logs.items()):
        lines.append(
            f"loosely_log,host={h},topic={_escape_tag(topic)},partition={partition} size_bytes={size}i,"
            f"start_offset={start}i,end_offset={end}i {ts}"
        )
    for operation, n in sorted(s.storage_errors.items()):
        lines.append(f"loosely_storage,host={h},operation={_escape_tag(operation)} errors={n}i {ts}")
    for (topic, partition), (files, nbytes, damaged) in sorted(s.damage.items()):
        lines.append(
            f"loosely_log_damage,host={h},topic={_escape_tag(topic)},partition={partition} quarantined_files={files}i,"
            f"quarantined_bytes={nbytes}i,damaged_batches={damaged}i {ts}"
        )
    if s.sasl_authentications or s.sasl_authentication_failures:
        lines.append(
            f"loosely_sasl,host={h} authentications={s.sasl_authentications}i,"
            f"authentication_failures={s.sasl_authentication_failures}i {ts}"
        )
    if s.tls_handshake_failures or s.authorization_denials:
        lines.append(
            f"loosely_security,host={h} tls_handshake_failures={s.tls_handshake_failures}i,"
            f"authorization_denials={sum((s.authorization_denials or {}).values())}i {ts}"
        )
    for g in s.groups:
        lines.append(f"loosely_group,host={h},group={_escape_tag(g.group)},state={g.state} members={g.members}i {ts}")
        for (topic, partition), lag in sorted(g.lag.items()):
            offset = g.committed.get((topic, partition))
            committed = "" if offset is None else f",committed_offset={offset}i"
            lines.append(
                f"loosely_consumer_lag,host={h},group={_escape_tag(g.group)},topic={_escape_tag(topic)},"
                f"partition={partition} lag={lag}i{committed} {ts}"
            )
    return "".join(line + "\n" for line in lines)


class _Collector:
    def __init__(self, metrics: BrokerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        s = self._metrics.snapshot_from_any_thread()
        if s is None:
            return
        yield from families(s)


def families(s: Snapshot) -> Iterator[Metric]:
    for name, values, what in (
        ("loosely_topic_bytes_in", s.bytes_in, "Bytes produced to the topic"),
        ("loosely_topic_bytes_out", s.bytes_out, "Bytes fetched from the topic"),
        ("loosely_topic_messages_in", s.messages_in, "Records produced to the topic"),
    ):
        c = CounterMetricFamily(name, what, labels=["topic"])
        for topic, v in sorted(values.items()):
            c.add_metric([topic], v)
        yield c
    req = CounterMetricFamily("loosely_requests", "Requests handled", labels=["api"])
    err = CounterMetricFamily("loosely_request_errors", "Requests answered with an error", labels=["api"])
    for api, (count, errors, _) in sorted(s.requests.items()):
        req.add_metric([api], count)
        err.add_metric([api], errors)
    yield req
    yield err
    yield GaugeMetricFamily("loosely_connections_active", "Open client connections", value=s.connections_active)
    yield CounterMetricFamily("loosely_connections", "Client connections accepted", value=s.connections_total)
    size = GaugeMetricFamily("loosely_log_size_bytes", "Bytes of the partition's log", labels=["topic", "partition"])
    start = GaugeMetricFamily("loosely_log_start_offset", "First offset kept", labels=["topic", "partition"])
    end = GaugeMetricFamily("loosely_log_end_offset", "High watermark", labels=["topic", "partition"])
    for (topic, partition), (nbytes, first, last) in sorted(s.logs.items()):
        labels = [topic, str(partition)]
        size.add_metric(labels, nbytes)
        start.add_metric(labels, first)
        end.add_metric(labels, last)
    yield size
    yield start
    yield end
    storage = CounterMetricFamily(
        "loosely_storage_errors", "Disk errors (ENOSPC, EIO, ...) by operation", labels=["operation"]
    )
    for operation, n in sorted(s.storage_errors.items()):
        storage.add_metric([operation], n)
    yield storage
    yield GaugeMetricFamily(
        "loosely_logs_refusing_writes",
        "Partitions refusing writes until a failed append is cut off",
        value=s.logs_refusing_writes,
    )
    yield from _damage_families(s)
    yield from client_families(s)
    if s.groups:
        state = GaugeMetricFamily("loosely_group_state", "1 for the group's current state", labels=["group", "state"])
        members = GaugeMetricFamily("loosely_group_members", "Members of the group", labels=["group"])
        group_lag = GaugeMetricFamily("loosely_consumer_group_lag", "Lag summed over the group's partitions",
                                      labels=["group"])
        per_partition = ["group", "topic", "partition"]
        lag = GaugeMetricFamily("loosely_consumer_lag", "Log end offset minus committed offset", labels=per_partition)
        committed = GaugeMetricFamily("loosely_consumer_committed_offset", "The group's committed offset",
                                      labels=per_partition)
        room = CONSUMER_PARTITION_SERIES_MAX
        omitted = 0
        for g in sorted(s.groups, key=lambda g: g.group):
            state.add_metric([g.group, g.state], 1)
            members.add_metric([g.group], g.members)
            group_lag.add_metric([g.group], sum(g.lag.values()))
            for (topic, partition), n in sorted(g.lag.items()):
                if room <= 0:
                    omitted += 1
                    continue
                room -= 1
                lag.add_metric([g.group, topic, str(partition)], n)
                if (topic, partition) in g.committed:
                    committed.add_metric([g.group, topic, str(partition)], g.committed[(topic, partition)])
        yield state
        yield members
        yield group_lag
        yield lag
        yield committed
        yield GaugeMetricFamily("loosely_consumer_lag_series_omitted",
                                "(group, partition) pairs left out of consumer_lag past the series bound",
                                value=omitted)


def _damage_families(s: Snapshot) -> Iterator[Metric]:
    labels = ["topic", "partition"]
    files = GaugeMetricFamily("loosely_log_quarantined_files", "Quarantine files beside the log", labels=labels)
    nbytes = GaugeMetricFamily("loosely_log_quarantined_bytes", "Bytes in quarantine files", labels=labels)
    damaged = CounterMetricFamily(
        "loosely_log_damaged_batches", "Bad batches found by recovery or the scrubber since start", labels=labels
    )
    for (topic, partition), (n, b, d) in sorted(s.damage.items()):
        files.add_metric([topic, str(partition)], n)
        nbytes.add_metric([topic, str(partition)], b)
        damaged.add_metric([topic, str(partition)], d)
    yield files
    yield nbytes
    yield damaged
    yield CounterMetricFamily(
        "loosely_log_scrubbed_bytes", "Bytes of closed segments the scrubber has CRC-checked", value=s.scrubbed_bytes
    )
    yield CounterMetricFamily(
        "loosely_sasl_authentications",
        "SASL logins and re-authentications that succeeded",
        value=s.sasl_authentications,
    )
    yield CounterMetricFamily(
        "loosely_sasl_authentication_failures",
        "SASL authentications that failed (wrong password, unknown mechanism, bad token)",
        value=s.sasl_authentication_failures,
    )
    yield CounterMetricFamily(
        "loosely_tls_handshake_failures",
        "TLS handshakes that failed or timed out, and TLS sent to a plaintext listener",
        value=s.tls_handshake_failures,
    )
    if s.authorization_denials is not None:
        denials = CounterMetricFamily(
            "loosely_authorization_denials",
            "Requests the ACLs refused (what the audit log records)",
            labels=["operation", "resource_type"],
        )
        for (operation, resource_type), n in sorted(s.authorization_denials.items()):
            denials.add_metric([operation, resource_type], n)
        yield denials


def _prometheus_name(name: str) -> str:
    """A metric or label name as Prometheus allows it: ``[a-zA-Z0-9_]``, not starting with a digit."""
    out = _NOT_NAME.sub("_", name)
    return out if out and not out[0].isdigit() else f"_{out}"


_NOT_NAME: Final = re.compile(r"[^a-zA-Z0-9_]")
_CLIENT_LABELS: Final = ("client_instance_id", "client_id")


def client_families(s: Snapshot) -> Iterator[Metric]:
    """What clients pushed (KIP-714): each metric as ``loosely_client_<name>`` labelled with the client instance,
    its client id and the point's own attributes; and per client its pushes, series and the age of its last push."""
    if not s.clients:
        return
    # prometheus name -> (kind, attribute label names, [(label values by name, value)])
    found: dict[str, tuple[str, set[str], list[tuple[dict[str, str], float]]]] = {}
    for c in s.clients:
        for (name, attributes), (kind, value) in c.points.items():
            family = f"loosely_client_{_prometheus_name(name)}"
            known = found.setdefault(family, (kind, set(), []))
            if known[0] != kind:  # the same name pushed as two kinds: the first one seen is kept
                continue
            labels = {"client_instance_id": str(c.instance_id), "client_id": c.info.client_id}
            for k, v in attributes:
                label = _prometheus_name(k)
                labels[f"attribute_{label}" if label in _CLIENT_LABELS or label.startswith("__") else label] = v
            known[1].update(n for n in labels if n not in _CLIENT_LABELS)
            known[2].append((labels, value))
    for family, (kind, names, samples) in sorted(found.items()):
        label_names = [*_CLIENT_LABELS, *sorted(names)]
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        m = cls(family, "Pushed by clients (KIP-714)", labels=label_names)
        for labels, value in samples:
            m.add_metric([labels.get(n, "") for n in label_names], value)
        yield m
    who = [*_CLIENT_LABELS, "client_software_name", "client_software_version"]
    pushes = CounterMetricFamily("loosely_telemetry_pushes", "Telemetry pushes taken from the client", labels=who)
    series = GaugeMetricFamily("loosely_telemetry_series", "Series the client pushed, as kept", labels=who)
    dropped = CounterMetricFamily("loosely_telemetry_series_dropped",
                                  "Points left out past the bound of series per client", labels=who)
    age = GaugeMetricFamily("loosely_telemetry_push_age_seconds", "Seconds since the client's last push", labels=who)
    for c in s.clients:
        values = [str(c.instance_id), c.info.client_id, c.info.software_name or "", c.info.software_version or ""]
        pushes.add_metric(values, c.pushes)
        series.add_metric(values, len(c.points))
        dropped.add_metric(values, c.dropped)
        age.add_metric(values, max(0, s.monotonic_ms - c.last_push_ms) / 1000)
    yield pushes
    yield series
    yield dropped
    yield age


class BrokerMetrics:
    """The broker's metrics service: started by ``Broker.start`` when ``metrics_listen`` or ``influx_url`` is set."""

    def __init__(self, ctx: BrokerContext, loop: asyncio.AbstractEventLoop) -> None:
        self._ctx = ctx
        self._loop = loop
        self.registry = CollectorRegistry(auto_describe=False)
        self._latency = Histogram(
            "loosely_request_duration_seconds",
            "Time from decoded request to response, per API",
            labelnames=["api"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._latency_by_key: dict[int, Histogram] = {}
        self.registry.register(_Collector(self))
        self._http: object | None = None
        self._http_thread: threading.Thread | None = None
        self.port: int | None = None
        self._push: asyncio.Task[None] | None = None
        self.influx_pushes = 0
        self.influx_failures = 0

    async def start(self) -> None:
        cfg = self._ctx.config
        if cfg.metrics_listen:
            host, port = parse_listen(cfg.metrics_listen)
            server, thread = start_http_server(port, addr=host, registry=self.registry)
            self._http, self._http_thread = server, thread
            self.port = int(server.server_address[1])
            log.info("metrics on http://%s:%d/metrics", host, self.port)
        if cfg.influx_url:
            self._push = self._loop.create_task(self._push_loop(cfg.influx_url, cfg.influx_db, cfg.influx_interval_ms))

    async def stop(self) -> None:
        if self._push is not None:
            self._push.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._push
            self._push = None
        if self._http is not None:
            self._http.shutdown()  # type: ignore[attr-defined]
            self._http.server_close()  # type: ignore[attr-defined]
            if self._http_thread is not None:
                self._http_thread.join(timeout=5)
            self._http = None

    def request_latency_families(self) -> Iterable[Metric]:
        """The request-duration histogram's families, safe to read from any thread (the web console charts
        them)."""
        return self._latency.collect()

    def observe_request(self, api_key: int, seconds: float) -> None:
        h = self._latency_by_key.get(api_key)
        if h is None:
            h = self._latency.labels(api=API_NAMES.get(api_key, str(api_key)))
            self._latency_by_key[api_key] = h
        h.observe(seconds)

    def snapshot_from_any_thread(self) -> Snapshot | None:
        if self._loop.is_closed():
            return None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            return snapshot(self._ctx)

        async def take() -> Snapshot:
            return snapshot(self._ctx)

        try:
            return asyncio.run_coroutine_threadsafe(take(), self._loop).result(SCRAPE_TIMEOUT_S)
        except Exception:
            log.warning("metrics snapshot failed", exc_info=True)
            return None

    async def _push_loop(self, url: str, db: str, interval_ms: int) -> None:
        target = f"{url.rstrip('/')}/write?{urllib.parse.urlencode({'db': db, 'precision': 'ns'})}"
        host = f"{self._ctx.host}:{self._ctx.port}"
        while True:
            body = line_protocol(snapshot(self._ctx), host).encode()
            try:
                await asyncio.to_thread(_post, target, body)
                self.influx_pushes += 1
            except Exception as e:  # the broker keeps serving while InfluxDB is away
                self.influx_failures += 1
                log.warning("InfluxDB push to %s failed: %s", url, e)
            await asyncio.sleep(interval_ms / 1000)


def _post(url: str, body: bytes) -> None:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "text/plain"})
    started = time.monotonic()
    with urllib.request.urlopen(req, timeout=INFLUX_TIMEOUT_S) as resp:
        if resp.status >= 300:
            raise OSError(f"InfluxDB answered {resp.status} after {time.monotonic() - started:.3f}s")
