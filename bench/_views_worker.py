"""The workers of bench/views.py: each builds one view with one implementation, in a process of its own, and prints
its time, CPU and peak RSS as one JSON line. Usage (the driver, bench/views.py, runs it)::

    python bench/_views_worker.py --impl loosely|handwritten|quix --view count|latest --bootstrap HOST:PORT \
        --topic T --db PATH_OR_URL --events N --sink sqlite|postgres

A file of its own, apart from the driver, because a worker's peak RSS is what is measured: it imports only what a
worker needs (the driver's argparse, statistics, subprocess, tempfile, shutil, pathlib and bench/_needs.py cost
3-4 MiB of every worker's RSS when they lived in one file; measured 2026-12-07). The same for all three
implementations; Quix Streams' virtualenv runs it too, so it needs nothing beyond the standard library and the
implementation's own packages.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

# -- workers (run in a child process each) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """What a worker builds: ``view`` of ``events`` records of ``topic`` into ``db`` (a file, or a PostgreSQL URL)."""

    bootstrap: str
    topic: str
    view: str
    db: str
    events: int
    sink: str


# confluent-kafka is imported where it is used, not at the top: the loosely worker's runner reads with its own
# batch consumer and does not import it, and a worker's peak RSS is what is measured.


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-hw"})
    md = c.list_topics(topic, timeout=30).topics[topic]
    out = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in md.partitions}
    c.close()
    return out


def run_loosely(job: Job) -> None:
    # only what this sink needs, as a user's runner would import it: PostgresSink brings in psycopg (12 MiB of RSS)
    from loosely.views import STRING, Runner, RunnerConfig, SqliteSink, count_by_key, latest_by_key

    v = count_by_key("bench", [job.topic]) if job.view == "count" else latest_by_key("bench", [job.topic], value=STRING)
    if job.sink == "sqlite":
        sink = SqliteSink(job.db)
    else:
        from loosely.views import PostgresSink

        sink = PostgresSink(job.db)
    runner = Runner(v, sink, job.bootstrap, RunnerConfig(group_id=f"bench-loosely-{uuid.uuid4().hex[:6]}"))
    stats = runner.run(until_caught_up=True)
    runner.close()
    sink.close()
    assert stats.records == job.events, stats


def handwritten_loop(job: Job, stored: dict[int, int],
                     write: Callable[[list[tuple[str, object]], dict[int, int]], None]) -> None:
    """The consuming half of the hand-written loop: each poll's rows, and every partition's next offset, go to
    ``write``, which stores both in one transaction."""
    bootstrap, topic, view, events = job.bootstrap, job.topic, job.view, job.events
    ends = high_watermarks(bootstrap, topic)
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-hand-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, stored.get(p, 0)) for p in ends])
    positions = {p: stored.get(p, 0) for p in ends}
    seen = 0
    while any(positions[p] < ends[p] for p in ends):
        msgs = c.consume(10_000, 0.1)
        if not msgs:
            continue
        rows: list[tuple[str, object]] = []
        for m in msgs:
            if m.error():
                raise RuntimeError(m.error())
            rows.append((m.key().decode(), 1 if view == "count" else m.value().decode()))
            positions[m.partition()] = m.offset() + 1
        seen += len(msgs)
        write(rows, positions)
    c.close()
    assert seen == events, seen


def run_handwritten(job: Job) -> None:
    if job.sink == "postgres":
        run_handwritten_postgres(job)
        return
    conn = sqlite3.connect(job.db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS v (key TEXT PRIMARY KEY, value)")
    conn.execute("CREATE TABLE IF NOT EXISTS offsets (partition INTEGER PRIMARY KEY, next INTEGER)")
    stored = dict(conn.execute("SELECT partition, next FROM offsets").fetchall())
    if job.view == "count":
        sql = "INSERT INTO v VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = v.value + excluded.value"
    else:
        sql = "INSERT INTO v VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"

    def write(rows: list[tuple[str, object]], positions: dict[int, int]) -> None:
        conn.execute("BEGIN")
        conn.executemany(sql, rows)
        conn.executemany("INSERT OR REPLACE INTO offsets VALUES (?, ?)", list(positions.items()))
        conn.execute("COMMIT")

    handwritten_loop(job, stored, write)
    conn.close()


def run_handwritten_postgres(job: Job) -> None:
    import psycopg

    conn = psycopg.connect(job.db)  # not autocommit: each poll's statements are one transaction, ended by commit()
    value_type = "bigint" if job.view == "count" else "text"
    conn.execute(f"CREATE TABLE IF NOT EXISTS v (key text PRIMARY KEY, value {value_type})")
    conn.execute("CREATE TABLE IF NOT EXISTS offsets (partition integer PRIMARY KEY, next bigint NOT NULL)")
    conn.commit()
    stored = dict(conn.execute("SELECT partition, next FROM offsets").fetchall())
    conn.commit()
    new = "v.value + excluded.value" if job.view == "count" else "excluded.value"
    sql = f"INSERT INTO v VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = {new}"
    store = ("INSERT INTO offsets VALUES (%s, %s) ON CONFLICT (partition) DO UPDATE SET next = excluded.next")

    def write(rows: list[tuple[str, object]], positions: dict[int, int]) -> None:
        with conn.cursor() as cur:
            cur.executemany(sql, rows)
            cur.executemany(store, list(positions.items()))
        conn.commit()

    handwritten_loop(job, stored, write)
    conn.close()


def run_quix(job: Job) -> None:
    assert job.sink == "sqlite", job.sink
    import logging

    bootstrap, topic, view, db, events = job.bootstrap, job.topic, job.view, job.db, job.events

    from quixstreams import Application
    from quixstreams.sinks import BatchingSink, SinkBatch

    class SqliteUpsert(BatchingSink):
        def setup(self) -> None:
            self.conn = sqlite3.connect(db, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("CREATE TABLE IF NOT EXISTS v (key TEXT PRIMARY KEY, value)")

        def write(self, batch: SinkBatch) -> None:
            rows = [(item.key.decode() if isinstance(item.key, bytes) else item.key, item.value) for item in batch]
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT INTO v VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", rows)
            self.conn.execute("COMMIT")

    import shutil
    import tempfile

    state = tempfile.mkdtemp(prefix="quix-state-")
    app = Application(broker_address=bootstrap, consumer_group=f"bench-quix-{uuid.uuid4().hex[:6]}",
                      auto_offset_reset="earliest", state_dir=state, loglevel=logging.WARNING,
                      use_changelog_topics=False, auto_create_topics=False)
    t = app.topic(topic, value_deserializer="bytes", key_deserializer="bytes")
    sdf = app.dataframe(t)
    if view == "count":
        def count(_value: bytes, state: object) -> int:
            n: int = state.get("n", 0) + 1  # type: ignore[attr-defined]
            state.set("n", n)  # type: ignore[attr-defined]
            return n

        sdf = sdf.apply(count, stateful=True)
    else:
        sdf = sdf.apply(lambda v: v.decode())
    sdf.sink(SqliteUpsert())
    try:
        app.run(count=events, collect=False)
    finally:
        shutil.rmtree(state, ignore_errors=True)  # RocksDB's files: not left behind in /tmp


def worker(argv: list[str]) -> None:
    """``--name value`` pairs (see the header), by hand: argparse alone is 0.4 MiB of RSS."""
    args = dict(zip(argv[::2], argv[1::2], strict=True))
    fn = {"loosely": run_loosely, "handwritten": run_handwritten, "quix": run_quix}[args["--impl"]]
    t0, cpu0 = time.perf_counter(), os.times()
    fn(Job(args["--bootstrap"], args["--topic"], args["--view"], args["--db"], int(args["--events"]), args["--sink"]))
    seconds = time.perf_counter() - t0
    cpu1 = os.times()  # every thread of the worker (on a loaded machine the steadier figure of the two)
    cpu_s = cpu1.user + cpu1.system - cpu0.user - cpu0.system
    with open("/proc/self/status") as f:
        rss_mib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    if "confluent_kafka" in sys.modules:
        import confluent_kafka

        clients = f"confluent-kafka {confluent_kafka.__version__}, librdkafka {confluent_kafka.libversion()[0]}"
    else:
        clients = "loosely's batch consumer, no confluent-kafka"
    print(json.dumps({"seconds": seconds, "cpu_s": cpu_s, "rss_mib": rss_mib, "clients": clients}), flush=True)


if __name__ == "__main__":
    worker(sys.argv[1:])
