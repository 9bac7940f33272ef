"""Metrics sinks: a Prometheus endpoint (rebuilt in memory on every start) and InfluxDB points (idempotent).

**Prometheus** (:class:`PrometheusSink`): the view's numeric values live in this process and are served at
``/metrics`` as ``loosely_view_value{view, version, key}``, with ``loosely_view_position{topic, partition}`` and
``loosely_view_records_total``. The state and the positions change together under one lock, so they always agree;
a crash loses both, and the next start rebuilds from the beginning of the log (guarantee ``REBUILT``; every runner
reads every partition, so run one per view, or several that each export the whole view). Prometheus treats the
restart like any process restart. ``series_max`` bounds the keys: a view that exceeds it stops with an error
rather than exhausting memory.

**InfluxDB** (:class:`InfluxSink`): every change becomes one point, written with the 1.x ``/write`` line protocol
API: measurement = view name, tags ``key``, ``version`` and ``partition``, fields from the value (a number becomes
``value``; an object's numbers, booleans and strings become fields; ``Add`` writes ``amount``; ``Delete`` writes
``deleted=true``), time = the record's timestamp in ms times 10^6 plus the offset modulo 10^6, in ns. A point's
identity is (measurement, tags, time), so replaying a record rewrites the same point: the guarantee is
``IDEMPOTENT`` (offsets are committed to the consumer group after the write returns).

>>> line_protocol("orders", {"key": "a b", "version": "1"}, {"value": 3, "ok": True, "note": 'say "hi"'}, 5)
'orders,key=a\\\\ b,version=1 value=3i,ok=true,note="say \\\\"hi\\\\"" 5'
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from loosely.views._batch import Batch, net_changes
from loosely.views._model import Add, Delete, Json, Put, TopicPartition, View, ViewError
from loosely.views._sink import Guarantee, SinkError, SinkStatistics

__all__ = ["InfluxSink", "PrometheusSink", "line_protocol"]


class PrometheusSink:
    guarantee = Guarantee.REBUILT
    wants_positions = False

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, series_max: int = 1_000_000) -> None:
        self.series_max = series_max
        self._lock = threading.Lock()
        self._values: dict[str, float] = {}
        self._positions: dict[TopicPartition, int] = {}
        self._records = 0
        self._view: View[object, object] | None = None
        self._batches = self._written = self._apply_ms = 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = int(self._server.server_address[1])

    def open(self, view: View[object, object]) -> None:
        self._view = view

    def stored_positions(self) -> dict[TopicPartition, int]:
        with self._lock:
            return dict(self._positions)

    def apply(self, batch: Batch) -> None:
        t0 = time.monotonic()
        net = net_changes(batch)
        with self._lock:
            values = dict(self._values)  # applied to a copy and swapped in: all of the batch or none of it
            for k, c in net.items():
                if type(c) is Delete:
                    values.pop(k, None)
                elif type(c) is Add:
                    values[k] = values.get(k, 0) + c.amount
                else:
                    assert type(c) is Put
                    v = c.value
                    if isinstance(v, bool) or not isinstance(v, int | float):
                        raise ViewError(f"Prometheus views hold numbers; key {k!r} got {v!r}")
                    values[k] = v
            if len(values) > self.series_max:
                raise SinkError(f"the view has {len(values)} keys, over series_max={self.series_max}")
            self._values = values
            self._positions.update(batch.ends)
            self._records += batch.records
        self._batches += 1
        self._written += len(net)
        self._apply_ms += int((time.monotonic() - t0) * 1000)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Called by ``prometheus_client`` on each scrape: one consistent snapshot."""
        v = self._view
        name, version = (v.name, str(v.version)) if v is not None else ("", "0")
        with self._lock:
            values = self._values
            positions = dict(self._positions)
            records = self._records
        g = GaugeMetricFamily("loosely_view_value", "Value of each key of a materialized view",
                              labels=["view", "version", "key"])
        for k, x in values.items():
            g.add_metric([name, version, k], x)
        yield g
        p = GaugeMetricFamily("loosely_view_position", "Next source offset the view will apply",
                              labels=["view", "topic", "partition"])
        for tp, off in positions.items():
            p.add_metric([name, tp.topic, str(tp.partition)], off)
        yield p
        r = CounterMetricFamily("loosely_view_records", "Source records applied since this process started",
                                labels=["view"])
        r.add_metric([name], records)
        yield r

    def get(self, name: str, key: str, version: int | None = None) -> Json | None:
        with self._lock:
            return self._values.get(key)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def statistics(self) -> SinkStatistics:
        return SinkStatistics(self._batches, self._written, self._apply_ms, 0)


def _escape_key(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _field(v: object) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return None  # nested values are not fields


def line_protocol(measurement: str, tags: Mapping[str, str], fields: Mapping[str, object], time_ns: int) -> str:
    tag_part = "".join(f",{_escape_key(k)}={_escape_key(v)}" for k, v in sorted(tags.items()) if v != "")
    field_part = ",".join(f"{_escape_key(k)}={f}" for k, v in fields.items() if (f := _field(v)) is not None)
    return f"{_escape_key(measurement)}{tag_part} {field_part} {time_ns}"


class InfluxSink:
    guarantee = Guarantee.IDEMPOTENT
    wants_positions = True

    # InfluxDB 1.x's recommended batch: 5,000 points per write request.
    points_per_request_max = 5_000

    def __init__(self, url: str, database: str, *, create_database: bool = True, timeout_s: float = 30) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.timeout_s = timeout_s
        self._view: View[object, object] | None = None
        self._batches = self._written = self._apply_ms = self._failures = 0
        if create_database:
            self._post("/query", urllib.parse.urlencode({"q": f'CREATE DATABASE "{database}"'}).encode(),
                       "application/x-www-form-urlencoded")

    def _post(self, path: str, body: bytes, content_type: str, query: str = "") -> None:
        req = urllib.request.Request(f"{self.url}{path}{query}", data=body, method="POST",
                                     headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                r.read()
        except urllib.error.HTTPError as e:
            raise SinkError(f"InfluxDB {path}: HTTP {e.code}: {e.read()[:500]!r}") from e
        except OSError as e:
            raise SinkError(f"InfluxDB {path}: {e}") from e

    def open(self, view: View[object, object]) -> None:
        self._view = view

    def stored_positions(self) -> dict[TopicPartition, int]:
        return {}  # the consumer group holds them

    def apply(self, batch: Batch) -> None:
        v = self._view
        if v is None:
            raise SinkError("the sink is not open: call open(view) first")
        t0 = time.monotonic()
        version = str(v.version)
        lines = []
        for c, tp, off, ts in zip(batch.changes, batch.sources, batch.offsets, batch.timestamps_ms, strict=True):
            if type(c) is Put:
                val = c.value
                fields: Mapping[str, object] = val if isinstance(val, dict) else {"value": val}
            elif type(c) is Add:
                fields = {"amount": c.amount}
            else:
                fields = {"deleted": True}
            if not any(_field(x) is not None for x in fields.values()):
                raise ViewError(f"{v.id}: key {c.key!r} has no number, boolean or string to write as a field")
            tags = {"key": c.key, "version": version, "partition": str(tp.partition)}
            lines.append(line_protocol(v.name, tags, fields, ts * 1_000_000 + off % 1_000_000))
        q = "?" + urllib.parse.urlencode({"db": self.database, "precision": "ns"})
        try:
            for i in range(0, len(lines), self.points_per_request_max):
                body = "\n".join(lines[i:i + self.points_per_request_max]).encode()
                self._post("/write", body, "text/plain; charset=utf-8", q)
        except SinkError:
            self._failures += 1
            raise
        self._batches += 1
        self._written += len(lines)
        self._apply_ms += int((time.monotonic() - t0) * 1000)

    def close(self) -> None:
        pass

    def statistics(self) -> SinkStatistics:
        return SinkStatistics(self._batches, self._written, self._apply_ms, self._failures)
