"""Retention and compaction through the broker, seen by a real client; time comes from a fake clock."""

from __future__ import annotations

import subprocess
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from compat._support import create_topic
from loosely.broker.config import BrokerConfig
from loosely.broker.server import BrokerThread
from loosely.testing import FakeClock

DAY_MS = 86_400_000


def watermarks(bootstrap: str, topic: str) -> tuple[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "w"})
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(lo), int(hi)
    finally:
        c.close()


def test_time_retention_with_the_default_seven_days(tmp_path: Path) -> None:
    clock = FakeClock(now_ms=1_700_000_000_000)
    b = BrokerThread(BrokerConfig(data_dir=str(tmp_path), port=0), clock=clock).start()
    try:
        create_topic(b.bootstrap_servers, "events", 1, **{"segment.bytes": "2000"})
        p = Producer({"bootstrap.servers": b.bootstrap_servers, "linger.ms": 0})
        for i in range(200):
            p.produce("events", b"%d" % i, timestamp=clock.now_ms())
        p.flush(10)
        clock.advance(7 * DAY_MS)
        assert b.call(b.broker.run_housekeeping_now) == 0  # exactly retention.ms old: kept
        for i in range(10):
            p.produce("events", b"late-%d" % i, timestamp=clock.now_ms())
        p.flush(10)
        clock.advance(1)
        deleted = b.call(b.broker.run_housekeeping_now)
        assert deleted > 0
        lo, hi = watermarks(b.bootstrap_servers, "events")
        assert hi == 210 and 0 < lo <= 200
        clock.advance(7 * DAY_MS + 1)
        b.call(b.broker.run_housekeeping_now)
        assert watermarks(b.bootstrap_servers, "events") == (210, 210)
    finally:
        b.stop()


def test_compacted_topic_read_back_with_kcat(tmp_path: Path) -> None:
    b = BrokerThread(BrokerConfig(data_dir=str(tmp_path), port=0, log_cleaner_enable=False)).start()
    try:
        create_topic(b.bootstrap_servers, "profiles", 1, **{"segment.bytes": "1000", "cleanup.policy": "compact"})
        p = Producer({"bootstrap.servers": b.bootstrap_servers, "linger.ms": 0})
        latest: dict[bytes, bytes | None] = {}
        for i in range(400):
            key = b"user-%d" % (i % 17)
            value = None if i % 50 == 49 else b"v%d" % i
            p.produce("profiles", value, key=key)
            latest[key] = value
            p.flush(10)
        assert b.call(lambda: b.broker.clean_now(force=True)) == 1
        out = (
            subprocess.run(
                [
                    "kcat",
                    "-C",
                    "-b",
                    b.bootstrap_servers,
                    "-t",
                    "profiles",
                    "-o",
                    "beginning",
                    "-e",
                    "-Z",
                    "-f",
                    "%o %k %s\n",
                ],
                capture_output=True,
                check=True,
                timeout=30,
            )
            .stdout.decode()
            .splitlines()
        )
        rows = [line.split(" ", 2) for line in out]
        offsets = [int(r[0]) for r in rows]
        assert offsets == sorted(offsets) and offsets[-1] == 399
        assert len(rows) < 400 // 4
        final: dict[str, str] = {}
        for _, k, v in rows:
            final[k] = v
        assert final == {k.decode(): (v.decode() if v is not None else "NULL") for k, v in latest.items()}
    finally:
        b.stop()
