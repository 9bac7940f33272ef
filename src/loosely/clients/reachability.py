"""What a long-running client says while its cluster is unreachable: one line per interval, and one when it is back.

librdkafka retries a lost connection by itself, logging a FAIL line per attempt (about 20 a second against a
refused port) and reporting nothing when it succeeds. Commands that run for hours (``views run``, ``mirror``) pass
:meth:`Reachability.config` into their clients instead: librdkafka's own log is limited to critical lines, every
client error reaches :meth:`Reachability.on_error`, which logs the first one of a kind and then at most one per
``interval_s`` with a count of the ones it held back, and librdkafka's statistics (every ``stats_interval_ms``) say
whether any broker connection is up, so the return is logged once with how long the outage lasted.

>>> import logging
>>> r = Reachability("the source cluster", logging.getLogger("doc"), clock=iter([0.0, 1.0, 2.0]).__next__)
>>> r.down_since is None
True
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

__all__ = ["Reachability"]

REPORT_INTERVAL_S: Final = 30.0
STATS_INTERVAL_MS: Final = 5_000
_LOG_LEVEL_CRITICAL: Final = 2  # syslog level: librdkafka's FAIL lines (3) stay quiet


class Reachability:
    """Rate-limited reporting of one client's connections to a cluster; thread-safe (librdkafka calls back from
    poll, which may run on any thread)."""

    def __init__(
        self,
        what: str,
        log: logging.Logger,
        *,
        interval_s: float = REPORT_INTERVAL_S,
        stats_interval_ms: int = STATS_INTERVAL_MS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.log = log
        self.interval_s = interval_s
        self.stats_interval_ms = stats_interval_ms
        self.clock = clock
        self.down_since: float | None = None
        self._last_report: dict[str, float] = {}
        self._held_back: dict[str, int] = {}
        self._lock = threading.Lock()

    def config(self) -> dict[str, Any]:
        """Settings to merge into a confluent-kafka client's configuration."""
        return {
            "log_level": _LOG_LEVEL_CRITICAL,
            "error_cb": self.on_error,
            "stats_cb": self.on_stats,
            "statistics.interval.ms": self.stats_interval_ms,
        }

    def on_error(self, err: Any) -> None:
        """confluent-kafka's ``error_cb``: a KafkaError."""
        name = str(err.name()) if hasattr(err, "name") else type(err).__name__
        text = str(err.str()) if hasattr(err, "str") else str(err)
        now = self.clock()
        with self._lock:
            if self.down_since is None and name in ("_TRANSPORT", "_ALL_BROKERS_DOWN", "_RESOLVE"):
                self.down_since = now
            last = self._last_report.get(name)
            if last is not None and now - last < self.interval_s:
                self._held_back[name] = self._held_back.get(name, 0) + 1
                return
            held = self._held_back.pop(name, 0)
            self._last_report[name] = now
        more = f" ({held} more like it in the last {self.interval_s:g} s)" if held else ""
        self.log.warning("%s: %s%s; retrying", self.what, text, more)

    def on_stats(self, stats_json: str) -> None:
        """confluent-kafka's ``stats_cb``: logs the return once a broker connection is up again."""
        try:
            brokers = json.loads(stats_json).get("brokers", {})
        except ValueError:
            return
        up = any(b.get("state") == "UP" for b in brokers.values() if b.get("nodeid", -1) >= 0)
        self.connected(up)

    def connected(self, up: bool) -> None:
        if not up:
            return
        with self._lock:
            since, self.down_since = self.down_since, None
            if since is None:
                return
            self._last_report.clear()
            self._held_back.clear()
        self.log.warning("%s: reachable again after %.0f s", self.what, self.clock() - since)
