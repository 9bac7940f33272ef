"""The background scrubber: damage that appears in a closed segment of a running broker is reported (a WARNING
and a metric) within bounded time, reads stay under ``log.scrub.bytes.per.second``, and 0 turns it off."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from loosely.broker.config import BrokerConfig, split_kafka_settings
from loosely.broker.metrics import families, line_protocol, snapshot
from loosely.broker.server import BrokerThread
from loosely.protocol.records import iter_batches
from storage._helpers import batch

SEGMENT_BYTES = 2000


def wait_for(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def start(tmp_path: Path, rate: str) -> BrokerThread:
    settings, defaults, _ = split_kafka_settings(
        {"log.scrub.bytes.per.second": rate, "log.segment.bytes": str(SEGMENT_BYTES)}
    )
    b = BrokerThread(BrokerConfig(data_dir=str(tmp_path), port=0, log_defaults=defaults, **settings))  # type: ignore[arg-type]
    b.start()
    return b


def fill(b: BrokerThread, n: int) -> list[str]:
    """n one-record batches in topic t; returns the paths of the closed segments."""

    def go() -> list[str]:
        t = b.broker.logs.create_topic("t", 1)
        for i in range(n):
            t.logs[0].append(batch(b"value-%05d" % i, key=b"k", ts=int(time.time() * 1000)))
        return [s.log.path for s in t.logs[0].cleanable_segments()]

    paths: list[str] = b.call(go)
    return paths


def test_damage_in_a_closed_segment_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="loosely.broker.scrubber")
    b = start(tmp_path, "10000000")
    try:
        closed = fill(b, 200)
        assert len(closed) >= 3
        wait_for(lambda: b.broker.statistics().scrubbed_bytes >= sum(Path(p).stat().st_size for p in closed))
        assert b.broker.statistics().damaged_batches == 0
        victim = Path(closed[1])
        pos = [p for p, _ in iter_batches(victim.read_bytes())][2]
        with open(victim, "r+b") as f:
            f.seek(pos + 50)
            f.write(b"\x01\x02\x03\x04")
        wait_for(lambda: b.broker.statistics().damaged_batches == 1)
        warned = [r.getMessage() for r in caplog.records if r.name == "loosely.broker.scrubber"]
        assert len(warned) == 1 and "t-0" in warned[0] and victim.name in warned[0] and f"byte {pos}" in warned[0]
        metrics = {
            (m.name, tuple(sorted(smp.labels.items()))): smp.value
            for m in b.call(lambda: list(families(snapshot(b.broker.ctx))))
            for smp in m.samples
        }
        assert metrics[("loosely_log_damaged_batches", (("partition", "0"), ("topic", "t")))] == 1
        assert metrics[("loosely_log_scrubbed_bytes", ())] > 0
        influx = b.call(lambda: line_protocol(snapshot(b.broker.ctx), "h"))
        assert "loosely_log_damage,host=h,topic=t,partition=0 quarantined_files=0i" in influx
        assert "damaged_batches=1i" in influx
        # Reported once, not once per pass.
        passes = b.broker.scrubber.passes if b.broker.scrubber else 0
        wait_for(lambda: b.broker.scrubber is not None and b.broker.scrubber.passes >= passes + 2)
        assert b.broker.statistics().damaged_batches == 1
        assert len([r for r in caplog.records if r.name == "loosely.broker.scrubber"]) == 1
    finally:
        b.stop()


def test_reads_stay_under_the_rate(tmp_path: Path) -> None:
    rate = 20_000
    b = start(tmp_path, str(rate))
    try:
        fill(b, 1500)  # ~100 KB of closed segments: several seconds of scrubbing at this rate
        started = time.monotonic()
        first = b.broker.statistics().scrubbed_bytes
        time.sleep(1.5)
        read = b.broker.statistics().scrubbed_bytes - first
        elapsed = time.monotonic() - started
        assert 0 < read <= rate * elapsed + 2 * SEGMENT_BYTES
    finally:
        b.stop()


def test_zero_disables_and_negative_is_refused(tmp_path: Path) -> None:
    b = start(tmp_path, "0")
    try:
        assert b.broker.scrubber is None and b.broker.statistics().scrubbed_bytes == 0
    finally:
        b.stop()
    with pytest.raises(ValueError, match=r"log.scrub.bytes.per.second: must be 0 or more"):
        split_kafka_settings({"log.scrub.bytes.per.second": "-1"})


def test_a_deleted_segment_is_let_go(tmp_path: Path) -> None:
    """An open file keeps a deleted segment's space: the scrubber closes it once the segment leaves its log."""
    b = start(tmp_path, "200")  # 10 s per segment: letting go must not wait for the walk to end
    try:
        fill(b, 300)
        wait_for(lambda: b.broker.statistics().scrubbed_bytes > 0)
        assert open_segment_files(tmp_path)
        b.call(b.broker.logs.delete_topic, "t")
        wait_for(lambda: not open_segment_files(tmp_path), timeout_s=5)
    finally:
        b.stop()


def open_segment_files(data_dir: Path) -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(data_dir)) and ".log" in target:
                out.append(target)
    return out
