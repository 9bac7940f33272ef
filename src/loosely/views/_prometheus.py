"""A Prometheus endpoint as a sink: the view's numbers live in this process, rebuilt from the log on every start.

Theory of operation. An :class:`Exporter` is one HTTP endpoint (``/metrics``) and the in-memory state of every view
version exported there. Each :class:`PrometheusSink` is one runner's handle on the exporter of its address: sinks
opened on the same host and port in one process share it, so a new version of a view can be built beside the
serving one and switched to while Prometheus keeps scraping the same target.

A version's state is its values, its source positions and its record count, changed together under the exporter's
lock, so a scrape always sees one batch applied completely or not at all. A crash loses the state, and the next
start rebuilds it from the beginning of the log (guarantee ``REBUILT``; every runner reads every partition, so run
one per view, or several that each export the whole view).

Blue/green: only a *serving* version's values are exported (``loosely_view_value{view, version, key}``). A version
starts *building*; the runner switches the first version of a view to serving once it has caught up, so after a
restart the endpoint exports nothing for the view until the rebuild is complete, never a half-built view.
:func:`loosely.views.rebuild` with a second sink on the same address builds version N+1 while N is exported,
switches (one assignment under the lock: a scrape sees N or N+1, never both or a mix) and drops N, which frees its
memory. Every version's progress is exported whatever its state: ``loosely_view_position{view, version, topic,
partition}``, ``loosely_view_records{view, version}``, and ``loosely_view_serving_version{view}``. Across
processes, deploy the new version as a new process on another port: it exports its values only once it has caught
up, then stop the old one.

Limits: ``series_max`` bounds a version's keys: a batch that would exceed it is refused (the runner stops with an
error) rather than exhausting memory. Values must be numbers. A scrape renders about 8 us and 60 bytes per series
in ``prometheus_client`` (200k series: 1.6 s), so large views need a scrape timeout to match; scrapes run one at a
time, so one that outlasts Prometheus' timeout delays the next rather than running beside it.

>>> sink = PrometheusSink("127.0.0.1", 0)
>>> from loosely.views import View, Batch, Add, TopicPartition
>>> sink.open(View("hits", 1, ("t",), lambda r: None))
>>> sink.apply(Batch.build([(TopicPartition("t", 0), 0, 0, Add("a", 2))]))
>>> sink.serving_version("hits") is None, sink.get("hits", "a", version=1)
(True, 2)
>>> sink.switch("hits", 1)
>>> import urllib.request
>>> 'loosely_view_value{key="a",version="1",view="hits"} 2.0' in urllib.request.urlopen(
...     f"http://127.0.0.1:{sink.port}/metrics").read().decode()
True
>>> sink.close()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from loosely.views._batch import Batch, net_changes
from loosely.views._model import Add, Delete, Json, Put, TopicPartition, View, ViewError
from loosely.views._sink import Guarantee, SinkError, SinkStatistics, VersionInfo, VersionState, read_version

__all__ = ["Exporter", "PrometheusSink"]


@dataclass(slots=True)
class _Version:
    topics: tuple[str, ...]
    created_ms: int
    values: dict[str, float | int] = field(default_factory=dict)
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    last_timestamp_ms: int | None = None
    records: int = 0


class Exporter:
    """One ``/metrics`` endpoint and the state of every view version it exports (see the module docstring).

    Shared by the sinks of one address in one process; :meth:`attach` finds or starts it, the last
    :meth:`detach` stops its HTTP server."""

    _lock_all: ClassVar[threading.Lock] = threading.Lock()
    _by_address: ClassVar[dict[tuple[str, int], Exporter]] = {}

    def __init__(self, host: str, port: int) -> None:
        self.lock = threading.Lock()
        # One scrape at a time. Rendering costs about 8 us and 60 bytes per series (measured: 200k series, 1.6 s,
        # 12 MB of text); when scrapes take longer than Prometheus waits, it scrapes again while the first still
        # renders, and with one thread each they piled up until a runner of a 200k-series view was killed for 8 GB.
        self.scrape_lock = threading.Lock()
        self.versions: dict[tuple[str, int], _Version] = {}
        self.serving: dict[str, int] = {}
        self.users = 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise SinkError(f"prometheus: cannot listen on {host}:{port}: {e}") from e
        self.address = (host, int(self._server.server_address[1]))

    @classmethod
    def attach(cls, host: str, port: int) -> Exporter:
        with cls._lock_all:
            exporter = cls._by_address.get((host, port)) if port else None
            if exporter is None:
                exporter = cls(host, port)
                cls._by_address[exporter.address] = exporter
            exporter.users += 1
            return exporter

    def detach(self) -> None:
        with self._lock_all:
            self.users -= 1
            if self.users > 0:
                return
            self._by_address.pop(self.address, None)
        self._server.shutdown()
        self._server.server_close()

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Called by ``prometheus_client`` on each scrape: one consistent snapshot of every version."""
        with self.scrape_lock:
            yield from self._families()

    def _families(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        with self.lock:
            serving = dict(self.serving)
            # copied here, once per scrape, so batches can change the values in place
            snapshot = [(name, version, dict(s.values) if serving.get(name) == version else None,
                         dict(s.positions), s.records) for (name, version), s in self.versions.items()]
        g = GaugeMetricFamily("loosely_view_value", "Value of each key of the serving version of a view",
                              labels=["view", "version", "key"])
        p = GaugeMetricFamily("loosely_view_position", "Next source offset a view version will apply",
                              labels=["view", "version", "topic", "partition"])
        r = CounterMetricFamily("loosely_view_records", "Source records a view version applied in this process",
                                labels=["view", "version"])
        for name, version, values, positions, records in snapshot:
            v = str(version)
            for k, x in (values or {}).items():
                g.add_metric([name, v, k], x)
            for tp, off in positions.items():
                p.add_metric([name, v, tp.topic, str(tp.partition)], off)
            r.add_metric([name, v], records)
        yield g
        yield p
        yield r
        s = GaugeMetricFamily("loosely_view_serving_version", "The version of each view whose values are exported",
                              labels=["view"])
        for name, version in serving.items():
            s.add_metric([name], version)
        yield s


class PrometheusSink:
    """One runner's handle on the :class:`Exporter` of ``host:port`` (port 0: a new endpoint on a free port)."""

    guarantee = Guarantee.REBUILT
    wants_positions = False

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, series_max: int = 1_000_000) -> None:
        self.series_max = series_max
        self._exporter = Exporter.attach(host, port)
        self.port = self._exporter.address[1]
        self._view: View[object, object] | None = None
        self._batches = self._written = self._apply_ms = self._failures = 0
        self._closed = False

    # -- writing ------------------------------------------------------------------------------------------------

    def open(self, view: View[object, object]) -> None:
        ex = self._exporter
        with ex.lock:
            ex.versions.setdefault((view.name, view.version), _Version(view.topics, int(time.time() * 1000)))
        self._view = view

    def _mine(self) -> _Version:
        v = self._view
        if v is None:
            raise SinkError("the sink is not open: call open(view) first")
        state = self._exporter.versions.get((v.name, v.version))
        if state is None:
            raise SinkError(f"{v.id} was dropped from this endpoint; its runner must stop")
        return state

    def stored_positions(self) -> dict[TopicPartition, int]:
        with self._exporter.lock:
            return dict(self._mine().positions)

    def apply(self, batch: Batch) -> None:
        t0 = time.monotonic()
        net = net_changes(batch)
        with self._exporter.lock:
            state = self._mine()
            values = state.values
            # Checked before anything changes: a refused batch leaves the version as it was.
            for k, c in net.items():
                if type(c) is Put and (isinstance(c.value, bool) or not isinstance(c.value, int | float)):
                    self._failures += 1
                    raise ViewError(f"Prometheus views hold numbers; key {k!r} got {c.value!r}")
            added = sum(1 for k, c in net.items() if k not in values and type(c) is not Delete)
            if len(values) + added > self.series_max:
                self._failures += 1
                raise SinkError(f"the view would have {len(values) + added} keys, over series_max={self.series_max}")
            for k, c in net.items():  # checked above, so the whole batch applies
                if type(c) is Delete:
                    values.pop(k, None)
                elif type(c) is Add:
                    values[k] = values.get(k, 0) + c.amount
                elif type(c) is Put:
                    values[k] = c.value  # type: ignore[assignment]  # a number, checked above
            state.positions.update(batch.ends)
            if batch.last_timestamp_ms:
                state.last_timestamp_ms = max(batch.last_timestamp_ms.values())
            state.records += batch.records
        self._batches += 1
        self._written += len(net)
        self._apply_ms += int((time.monotonic() - t0) * 1000)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._exporter.detach()

    def statistics(self) -> SinkStatistics:
        return SinkStatistics(self._batches, self._written, self._apply_ms, self._failures)

    # -- catalog: reading and blue/green ------------------------------------------------------------------------

    def names(self) -> list[str]:
        with self._exporter.lock:
            return sorted({name for name, _ in self._exporter.versions})

    def versions(self, name: str) -> list[VersionInfo]:
        ex = self._exporter
        with ex.lock:
            serving = ex.serving.get(name)
            out = []
            for (n, version), s in sorted(ex.versions.items()):
                if n != name:
                    continue
                state = (VersionState.SERVING if version == serving else
                         VersionState.BUILDING if serving is None or version > serving else VersionState.RETIRED)
                out.append(VersionInfo(name, version, s.topics, state, s.created_ms, dict(s.positions),
                                       s.last_timestamp_ms))
            return out

    def serving_version(self, name: str) -> int | None:
        with self._exporter.lock:
            return self._exporter.serving.get(name)

    def switch(self, name: str, version: int) -> None:
        ex = self._exporter
        with ex.lock:
            if (name, version) not in ex.versions:
                have = sorted(v for n, v in ex.versions if n == name)
                raise ViewError(f"{name}@{version} is not on this endpoint (versions here: {have})")
            ex.serving[name] = version

    def drop(self, name: str, version: int) -> None:
        ex = self._exporter
        with ex.lock:
            if ex.serving.get(name) == version:
                raise ViewError(f"{name}@{version} is serving; switch to another version before dropping it")
            ex.versions.pop((name, version), None)

    def get(self, name: str, key: str, version: int | None = None) -> Json | None:
        resolved = read_version(self, name, version)
        with self._exporter.lock:
            s = None if resolved is None else self._exporter.versions.get((name, resolved))
            return None if s is None else s.values.get(key)

    def scan(self, name: str, *, after: str = "", limit: int = 100, version: int | None = None) -> list[
        tuple[str, Json]
    ]:
        resolved = read_version(self, name, version)
        with self._exporter.lock:
            s = None if resolved is None else self._exporter.versions.get((name, resolved))
            values = {} if s is None else dict(s.values)  # batches change it in place
        return [(k, values[k]) for k in sorted(k for k in values if k > after)[:limit]]

