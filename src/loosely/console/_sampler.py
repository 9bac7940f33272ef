"""Samples the cluster every ``interval_ms`` so the pages can draw charts over time.

What it keeps, per sample, bounded to the last ``SAMPLES_MAX``: messages/s in (the growth of the sum of every
partition's high watermark), messages/s out (the growth of the sum of every group's committed offsets) and each
group's total lag, for at most ``GROUPS_MAX`` groups (those whose pages were opened first). A sample is one
metadata request, one batched ListOffsets of every partition's end, ListGroups, and one OffsetFetch per group
coordinator for all the groups at once (:meth:`Cluster.committed`, over loosely's own connection with the
console's TLS and SASL settings): no client handle per group, so sampling fifty groups every few seconds stays
cheap, on a secured cluster as on a plaintext one. Sampling is blocking
cluster calls on a daemon thread of its own, so neither the event loop nor a shutdown ever waits for a sample in
flight; a failed sample (the cluster away) is skipped, not fatal.

Request latencies are what the broker measures, not what the console's own calls take: a Kafka cluster has no API
for them, so they come from the broker's ``loosely_request_duration_seconds`` histogram, read in the broker's
process (``loosely broker --console-listen``) or scraped from its Prometheus endpoint (``loosely console
--broker-metrics URL``). Each sample turns the growth of each API's count and sum into that interval's mean, in
milliseconds, for the ``LATENCY_APIS_MAX`` APIs with the most requests so far.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

from loosely.console._cluster import Cluster, ConsoleError

__all__ = ["LatencySource", "Sampler", "latency_totals", "scraped_latencies"]

log = logging.getLogger(__name__)

SAMPLES_MAX: Final = 360  # 30 minutes at the default 5 s
GROUPS_MAX: Final = 50
INTERVAL_MS_DEFAULT: Final = 5_000
LATENCY_APIS_MAX: Final = 3  # lines on one chart that stay readable (its legend holds about three)
LATENCY_FAMILY: Final = "loosely_request_duration_seconds"
SCRAPE_TIMEOUT_S: Final = 5.0

Series = deque[tuple[float, float]]
# {api: (requests so far, seconds spent on them so far)}: cumulative, as a Prometheus histogram counts
LatencySource = Callable[[], Mapping[str, tuple[float, float]]]


def latency_totals(families: Iterable[Any]) -> dict[str, tuple[float, float]]:
    """``{api: (count, sum)}`` from the metric families of the broker's request-duration histogram.

    >>> from prometheus_client import CollectorRegistry, Histogram
    >>> h = Histogram(LATENCY_FAMILY, "", ["api"], registry=CollectorRegistry())
    >>> h.labels(api="produce").observe(0.002); h.labels(api="produce").observe(0.004)
    >>> latency_totals(h.collect())
    {'produce': (2.0, 0.006)}
    """
    counts: dict[str, float] = {}
    sums: dict[str, float] = {}
    for family in families:
        if family.name != LATENCY_FAMILY:
            continue
        for sample in family.samples:
            api = sample.labels.get("api")
            if api is None:
                continue
            if sample.name.endswith("_count"):
                counts[api] = float(sample.value)
            elif sample.name.endswith("_sum"):
                sums[api] = float(sample.value)
    return {api: (n, sums.get(api, 0.0)) for api, n in counts.items()}


def scraped_latencies(url: str, timeout_s: float = SCRAPE_TIMEOUT_S) -> LatencySource:
    """A latency source reading a loosely broker's Prometheus endpoint (``--metrics-listen``)."""

    def read() -> Mapping[str, tuple[float, float]]:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            text = r.read().decode("utf-8", "replace")
        return latency_totals(text_string_to_metric_families(text))

    return read


class Sampler:
    def __init__(self, cluster: Cluster, *, interval_ms: int = INTERVAL_MS_DEFAULT,
                 latencies: LatencySource | None = None) -> None:
        self.cluster = cluster
        self.interval_ms = interval_ms
        self.latency_source = latencies
        self.latency: dict[str, Series] = {}
        self._latency_last: dict[str, tuple[float, float]] = {}
        self.latency_failures = 0
        self._lock = threading.Lock()
        self._last: tuple[float, int, int] | None = None  # time, produced total, committed total
        self.rate_in: Series = deque(maxlen=SAMPLES_MAX)
        self.rate_out: Series = deque(maxlen=SAMPLES_MAX)
        self.lag: dict[str, Series] = {}
        self.samples = 0
        self.failures = 0
        self.started = time.monotonic()
        self._watched: dict[str, None] = {}  # groups whose pages were opened, most recent last
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="loosely-console-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_ms / 1000)

    def watch(self, group_id: str) -> None:
        """Sample this group first from now on (its page is open)."""
        with self._lock:
            self._watched.pop(group_id, None)
            self._watched[group_id] = None
            while len(self._watched) > GROUPS_MAX:
                del self._watched[next(iter(self._watched))]

    def sample(self) -> None:
        """One sample (blocking); errors are counted and logged, never raised."""
        self._sample_latencies()
        try:
            now = time.monotonic()
            names = self.cluster.topic_names()
            marks = self.cluster.offsets([(n, p) for n, count in names.items() for p in range(count)])
            produced = sum(hi for _, hi in marks.values())
            committed = 0
            lags: dict[str, int] = {}
            existing = {g for g, _ in self.cluster.groups()}
            with self._lock:
                watched = [g for g in reversed(self._watched) if g in existing]
            chosen = [*watched, *sorted(existing - set(watched))][:GROUPS_MAX]
            # one OffsetFetch per coordinator for all of them; the ends are this sample's high watermarks
            for group_id, offsets in self.cluster.committed(chosen).items():
                positions = [(c, marks[tp][1]) for tp, c in offsets.items()
                             if tp in marks and not tp[0].startswith("__")]
                committed += sum(c for c, _ in positions)
                lags[group_id] = sum(max(0, end - c) for c, end in positions)
        except ConsoleError as e:
            self.failures += 1
            log.debug("console sample failed: %s", e)
            return
        t = now - self.started
        with self._lock:
            if self._last is not None:
                dt = max(now - self._last[0], 1e-3)
                self.rate_in.append((t, max(0.0, (produced - self._last[1]) / dt)))
                self.rate_out.append((t, max(0.0, (committed - self._last[2]) / dt)))
            self._last = (now, produced, committed)
            for group_id, lag in lags.items():
                self.lag.setdefault(group_id, deque(maxlen=SAMPLES_MAX)).append((t, float(lag)))
            for gone in set(self.lag) - set(chosen):  # a group that did not answer this time keeps its series
                del self.lag[gone]
            self.samples += 1

    def _sample_latencies(self) -> None:
        if self.latency_source is None:
            return
        try:
            totals = self.latency_source()
        except Exception as e:  # the metrics endpoint away, a page that is not Prometheus text: skip this sample
            self.latency_failures += 1
            log.debug("console latency sample failed: %s", e)
            return
        t = time.monotonic() - self.started
        with self._lock:
            busiest = sorted(totals, key=lambda api: -totals[api][0])[:LATENCY_APIS_MAX]
            for api in busiest:
                count, total = totals[api]
                before = self._latency_last.get(api)
                if before is not None and count > before[0]:
                    mean_ms = (total - before[1]) / (count - before[0]) * 1000
                    self.latency.setdefault(api, deque(maxlen=SAMPLES_MAX)).append((t, round(mean_ms, 3)))
            for gone in set(self.latency) - set(busiest):
                del self.latency[gone]
            self._latency_last = dict(totals)

    def latencies(self) -> dict[str, list[tuple[float, float]]]:
        """Mean request latency per API (ms) over each sampling interval, for the busiest APIs."""
        with self._lock:
            return {f"{api} ms": list(s) for api, s in sorted(self.latency.items())}

    def rates(self) -> dict[str, list[tuple[float, float]]]:
        with self._lock:
            return {"in msg/s": list(self.rate_in), "out msg/s": list(self.rate_out)}

    def group_lag(self, group_id: str) -> dict[str, list[tuple[float, float]]]:
        with self._lock:
            return {f"lag of {group_id}": list(self.lag.get(group_id, ()))}

