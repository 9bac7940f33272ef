"""Samples the cluster every ``interval_ms`` so the pages can draw charts over time.

What it keeps, per sample, bounded to the last ``SAMPLES_MAX``: messages/s in (the growth of the sum of every
partition's high watermark), messages/s out (the growth of the sum of every group's committed offsets) and each
group's total lag, for at most ``GROUPS_MAX`` groups (those whose pages were opened first). Sampling is blocking
cluster calls on a daemon thread of its own, so neither the event loop nor a shutdown ever waits for a sample in
flight; a failed sample (the cluster away) is skipped, not fatal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Final

from loosely.console._cluster import Cluster, ConsoleError

__all__ = ["Sampler"]

log = logging.getLogger(__name__)

SAMPLES_MAX: Final = 360  # 30 minutes at the default 5 s
GROUPS_MAX: Final = 50
INTERVAL_MS_DEFAULT: Final = 5_000

Series = deque[tuple[float, float]]


class Sampler:
    def __init__(self, cluster: Cluster, *, interval_ms: int = INTERVAL_MS_DEFAULT) -> None:
        self.cluster = cluster
        self.interval_ms = interval_ms
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
            for group_id in [*watched, *sorted(existing - set(watched))][:GROUPS_MAX]:
                positions = self.cluster.group_positions(group_id)
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
            for gone in set(self.lag) - set(lags):
                del self.lag[gone]
            self.samples += 1

    def rates(self) -> dict[str, list[tuple[float, float]]]:
        with self._lock:
            return {"in msg/s": list(self.rate_in), "out msg/s": list(self.rate_out)}

    def group_lag(self, group_id: str) -> dict[str, list[tuple[float, float]]]:
        with self._lock:
            return {f"lag of {group_id}": list(self.lag.get(group_id, ()))}

