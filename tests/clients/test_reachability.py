"""A long-running client whose broker goes away: one line per interval while it is gone, one when it is back.
A real confluent-kafka consumer against loosely's broker, stopped and started again on the same port."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from broker._brokers import broker_on
from loosely.clients.reachability import Reachability
from loosely.testing import free_port


def test_an_outage_is_reported_once_per_interval_and_the_return_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    log = logging.getLogger("test.reachability")
    reach = Reachability("the cluster", log, interval_s=2.0, stats_interval_ms=200)
    with broker_on(tmp_path / "data", port):
        c = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "g", **reach.config()})
        c.subscribe(["t"])
        c.poll(1)
    caplog.set_level(logging.WARNING, logger="test.reachability")
    try:
        outage_started = time.monotonic()
        while time.monotonic() - outage_started < 5:  # librdkafka retries ~20 times a second meanwhile
            c.poll(0.1)
        assert reach.down_since is not None
        lines = [r.getMessage() for r in caplog.records]
        # per kind of error: the first, then at most one per 2 s interval
        assert 1 <= len(lines) <= 2 * 3, lines
        assert all(line.startswith("the cluster: ") and line.endswith("; retrying") for line in lines), lines
        caplog.clear()
        with broker_on(tmp_path / "data", port):
            deadline = time.monotonic() + 30
            while reach.down_since is not None and time.monotonic() < deadline:
                c.poll(0.1)
            assert reach.down_since is None
            back = [r.getMessage() for r in caplog.records if "reachable again" in r.getMessage()]
            assert len(back) == 1 and back[0].startswith("the cluster: reachable again after "), back
    finally:
        c.close()
