"""Materialized views: loosely's runner against Quix Streams and a hand-written confluent-kafka loop.

Two views of the same 1M keyed events (100k keys), each written to SQLite:

* **count-by-key**: how many events each key had,
* **latest-value-by-key**: the last value of each key.

Three implementations, each in its own process on the same broker in the same run:

* ``loosely``: :class:`loosely.views.Runner` with :class:`loosely.views.SqliteSink` (exactly-once: offsets stored
  in the same SQLite transaction as the rows);
* ``handwritten``: a plain confluent-kafka loop that upserts each poll's records into SQLite with ``executemany``
  in one transaction that also stores its offsets (what you would write by hand for the same guarantee);
* ``quix``: Quix Streams (RocksDB state for the count, ``at-least-once``), writing to SQLite from a
  ``BatchingSink`` at each checkpoint.

With ``--sink postgres`` the same views go to PostgreSQL instead (a server of its own that the benchmark starts on
127.0.0.1 in a temporary directory and stops, with PostgreSQL's default durability: fsync on): loosely's
:class:`loosely.views.PostgresSink` (``jsonb`` values, offsets in the same transaction) against a hand-written
confluent-kafka + psycopg loop that upserts each poll's records with ``executemany`` into a plain ``text`` (latest
value) or ``bigint`` (count) column and stores its offsets in the same transaction. Quix Streams is left out there.

Prints events/s, the CPU time of each worker (all its threads; on a loaded machine the steadier of the two), peak
RSS (``VmHWM`` of each worker process: not ``ru_maxrss``, which a child started with vfork, as ``subprocess`` does,
inherits from the driver, that had produced the events) and the ratios. The broker is loosely's own, run as a
separate process. Then the physical floors (``bench/_floors.py``): the events' bytes over each worker's time against
loopback TCP, the view's SQLite file against a write+fsync to the same directory.
Without Quix Streams (``--quix-python`` cannot import it) the other two run and the Quix columns say ``-``. Usage::

    .venv/bin/python bench/views.py [--events 1000000] [--keys 100000] [--partitions 4] [--repeat 1] \
        [--quix-python PATH] [--sink sqlite|postgres]

Quix Streams pins confluent-kafka below the version loosely is tested with, so it is best installed in a
virtualenv of its own (``python3.11 -m venv /tmp/qvenv && /tmp/qvenv/bin/pip install quixstreams``) and named
with ``--quix-python /tmp/qvenv/bin/python``; each worker prints the confluent-kafka and librdkafka it ran.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from _needs import importable, postgres_bin  # bench/_needs.py

IMPLS = ("loosely", "handwritten", "quix")
VIEWS = ("count", "latest")
SINKS = ("sqlite", "postgres")


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


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-hw"})
    md = c.list_topics(topic, timeout=30).topics[topic]
    out = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in md.partitions}
    c.close()
    return out


def run_loosely(job: Job) -> None:
    from loosely.views import STRING, PostgresSink, Runner, RunnerConfig, SqliteSink, count_by_key, latest_by_key

    v = count_by_key("bench", [job.topic]) if job.view == "count" else latest_by_key("bench", [job.topic], value=STRING)
    sink = SqliteSink(job.db) if job.sink == "sqlite" else PostgresSink(job.db)
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


def worker(args: argparse.Namespace) -> None:
    fn = {"loosely": run_loosely, "handwritten": run_handwritten, "quix": run_quix}[args.impl]
    t0, cpu0 = time.perf_counter(), os.times()
    fn(Job(args.bootstrap, args.topic, args.view, args.db, args.events, args.sink))
    seconds = time.perf_counter() - t0
    cpu1 = os.times()  # every thread of the worker (on a loaded machine the steadier figure of the two)
    cpu_s = cpu1.user + cpu1.system - cpu0.user - cpu0.system
    with open("/proc/self/status") as f:
        rss_mib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    import confluent_kafka

    clients = f"confluent-kafka {confluent_kafka.__version__}, librdkafka {confluent_kafka.libversion()[0]}"
    print(json.dumps({"seconds": seconds, "cpu_s": cpu_s, "rss_mib": rss_mib, "clients": clients}), flush=True)


# -- the driver -------------------------------------------------------------------------------------------------


def produce(bootstrap: str, topic: str, events: int, keys: int, partitions: int) -> int:
    """Produces the events; returns their key and value bytes (the consumers' payload, before lz4)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(60)
    rng = random.Random(1)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10_000,
                  "compression.type": "lz4"})
    payload_bytes = 0
    for i in range(events):
        value, key = b'{"n":%d,"note":"bar"}' % i, b"k%d" % rng.randrange(keys)
        payload_bytes += len(key) + len(value)
        while True:
            try:
                p.produce(topic, value, key=key)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(120) == 0
    return payload_bytes


class SqliteFiles:
    """Where each run's view goes with ``--sink sqlite``: a file in the benchmark's directory."""

    what = "the view's SQLite file (its final size, with the WAL)"

    def __init__(self, d: str) -> None:
        self.d = d

    def new(self, name: str) -> str:
        return f"{self.d}/{name}.db"

    def size(self, db: str) -> int:
        return sum(os.path.getsize(f) for f in (db, f"{db}-wal") if os.path.exists(f))

    def rows(self, db: str, table: str) -> dict[str, object]:
        conn = sqlite3.connect(db)
        rows = dict(conn.execute(f"SELECT key, value FROM {table}").fetchall())
        conn.close()
        if table != "v":  # loosely's SQLite sink stores values as JSON text (numbers as numbers)
            rows = {k: json.loads(v) if isinstance(v, str) else v for k, v in rows.items()}
        return rows

    def drop(self, db: str) -> None:
        for f in (db, f"{db}-wal", f"{db}-shm"):
            if os.path.exists(f):
                os.unlink(f)


class PostgresServer:
    """Where each run's view goes with ``--sink postgres``: a database of its own on one PostgreSQL server, which
    this starts on 127.0.0.1 (a free port, its socket in its own directory) and stops."""

    what = "the view's PostgreSQL database (pg_database_size at the end)"

    def __init__(self, bindir: Path, port: int) -> None:
        self.bindir = bindir
        # not under the benchmark's directory: that is private to root (0700) and the server runs as postgres
        self.home = Path(tempfile.mkdtemp(prefix="bench-views-pg-"))
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(self.home, "postgres")
        self.url = f"postgresql://postgres@127.0.0.1:{port}"
        data = self.home / "data"
        self._ctl = [*self.as_postgres, str(bindir / "pg_ctl"), "-D", str(data)]
        done = subprocess.run([*self.as_postgres, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                               "postgres", "-E", "UTF8", "--no-locale"], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"initdb failed: {done.stderr.strip().splitlines()[-1:]}")
        done = subprocess.run([*self._ctl, "-l", str(self.home / "pg.log"), "-w", "-o",
                               f"-h 127.0.0.1 -p {port} -k {self.home}", "start"],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"PostgreSQL did not start: {(self.home / 'pg.log').read_text()[-500:]}")

    def _admin(self, sql: str) -> object:
        import psycopg

        with psycopg.connect(f"{self.url}/postgres", autocommit=True) as conn:  # CREATE DATABASE needs autocommit
            cur = conn.execute(sql)
            return cur.fetchone() if cur.description is not None else None

    def new(self, name: str) -> str:
        self._admin(f"CREATE DATABASE {name}")
        return f"{self.url}/{name}"

    def size(self, db: str) -> int:
        got = self._admin(f"SELECT pg_database_size('{db.rsplit('/', 1)[1]}')")
        return int(got[0])  # type: ignore[index]

    def rows(self, db: str, table: str) -> dict[str, object]:
        import psycopg

        with psycopg.connect(db) as conn:  # jsonb comes back as the Python value, text as str, bigint as int
            return dict(conn.execute(f"SELECT key, value FROM {table}").fetchall())  # type: ignore[arg-type]

    def drop(self, db: str) -> None:
        self._admin(f"DROP DATABASE {db.rsplit('/', 1)[1]}")

    def stop(self) -> None:
        subprocess.run([*self._ctl, "-m", "fast", "stop"], capture_output=True, check=False)
        shutil.rmtree(self.home, ignore_errors=True)


@contextlib.contextmanager
def view_store(kind: str, d: str) -> Iterator[SqliteFiles | PostgresServer]:
    if kind == "sqlite":
        yield SqliteFiles(d)
        return
    from loosely.testing import free_port

    server = PostgresServer(postgres_bin("the PostgreSQL sink's benchmark runs a real server"), free_port())
    try:
        yield server
    finally:
        server.stop()


def check(store: SqliteFiles | PostgresServer, db: str, view: str, impl: str,
          reference: dict[str, object] | None) -> dict[str, object]:
    rows = store.rows(db, '"bench__v1"' if impl == "loosely" else "v")
    if reference is not None and rows != reference:
        raise SystemExit(f"{impl}/{view}: the view differs from the hand-written loop's ({len(rows)} keys)")
    return rows


def run_all(args: argparse.Namespace, boot: str, store: SqliteFiles | PostgresServer, impls: list[str]) -> tuple[
    int, list[str], dict[tuple[str, str], list[dict[str, float]]]
]:
    """Produces the events, then builds each view with each implementation; the payload's bytes and the results."""
    topic = "events"
    t0 = time.perf_counter()
    payload_bytes = produce(boot, topic, args.events, args.keys, args.partitions)
    print(f"produced {args.events:,} events over {args.keys:,} keys in {time.perf_counter() - t0:.1f}s",
          flush=True)
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    views = args.views.split(",")
    for view in views:
        reference = None
        for rep in range(args.repeat):
            for impl in sorted(impls, key=lambda i: i != "handwritten"):
                db = store.new(f"{impl}_{view}_{rep}")
                python = args.quix_python if impl == "quix" else sys.executable
                out = subprocess.run(
                    [python, __file__, "--worker", "--impl", impl, "--view", view, "--bootstrap",
                     boot, "--topic", topic, "--db", db, "--events", str(args.events), "--sink", args.sink],
                    capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    raise SystemExit(f"{impl}/{view} failed:\n{out.stderr[-3000:]}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                r["events_per_s"] = args.events / r["seconds"]
                results.setdefault((impl, view), []).append(r)
                r["db_bytes"] = store.size(db)
                rows = check(store, db, view, impl, reference)
                if impl == "handwritten":
                    reference = rows
                store.drop(db)
                print(f"  {view:6} {impl:11} {r['events_per_s']:>10,.0f} events/s  {r['cpu_s']:6.2f} s CPU  "
                      f"{r['rss_mib']:6.0f} MiB peak RSS  ({r['clients']})", flush=True)
    return payload_bytes, views, results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--views", default=",".join(VIEWS))
    ap.add_argument("--quix-python", default=sys.executable, help="the interpreter that has quixstreams")
    ap.add_argument("--sink", choices=SINKS, default="sqlite", help="where the views go (default: sqlite)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl")
    ap.add_argument("--view")
    ap.add_argument("--bootstrap")
    ap.add_argument("--topic")
    ap.add_argument("--db")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    impls = [i for i in args.impls.split(",") if i]
    unknown = sorted(set(impls) - set(IMPLS))
    if unknown:
        raise SystemExit(f"unknown implementation {', '.join(unknown)}: choose among {', '.join(IMPLS)}")
    if "quix" in impls and args.sink != "sqlite":
        print("Quix Streams is measured with SQLite only: the quix column is left out", flush=True)
        impls.remove("quix")
    if args.sink == "postgres":
        postgres_bin("the PostgreSQL sink's benchmark runs a real server")  # before any server starts
    if "quix" in impls and not importable("quixstreams", args.quix_python):
        print(f"Quix Streams is not importable by {args.quix_python}: the quix column is left out (install it in a "
              "virtualenv of its own and pass --quix-python, see this file's header)", flush=True)
        impls.remove("quix")
    if not impls:
        raise SystemExit("nothing to run: no implementation left")
    # here, not at the top: workers must not import them (the floors need numpy, which Quix Streams' virtualenv
    # need not have; loosely.testing imports the broker)
    from _floors import disk_write_bytes_per_s, loopback_bytes_per_s, rate_ratio  # bench/_floors.py
    from loosely.testing import free_port

    with tempfile.TemporaryDirectory(prefix="bench-views-") as d:

        # Floors (bench/_floors.py), before the broker starts: the events reach each worker over loopback TCP and
        # the view goes to SQLite files in this directory (or to PostgreSQL's, on the same disk).
        loopback, disk = loopback_bytes_per_s(), disk_write_bytes_per_s(d)
        print(f"{loopback}\n{disk}", flush=True)

        port = free_port()
        broker = subprocess.Popen([sys.executable, "-m", "loosely.cli.main", "broker", "--data-dir", f"{d}/data",
                                   "--listen", f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert broker.stdout is not None
        broker.stdout.readline()
        boot = f"127.0.0.1:{port}"
        try:
            with view_store(args.sink, d) as store:
                payload_bytes, views, results = run_all(args, boot, store, impls)
                stored_in = store.what
        finally:
            broker.terminate()
            broker.wait(30)
    floors: dict[str, dict[str, dict[str, float]]] = {}
    print("\nview    impl         events/s    CPU   peak RSS   vs quix (speed, memory)   "
          "vs hand-written (speed, CPU used)")
    for view in views:
        med = {i: {k: statistics.median(r[k] for r in results[(i, view)])
                   for k in ("events_per_s", "cpu_s", "rss_mib", "seconds", "db_bytes")} for i in impls}
        for i in impls:
            m = med[i]
            vq = (f"{m['events_per_s'] / med['quix']['events_per_s']:.2f}x, "
                  f"{m['rss_mib'] / med['quix']['rss_mib']:.2f}x") if "quix" in med else "-"
            vh = (f"{m['events_per_s'] / med['handwritten']['events_per_s']:.2f}x, "
                  f"{m['cpu_s'] / med['handwritten']['cpu_s']:.2f}x") if "handwritten" in med else "-"
            print(f"{view:7} {i:11} {m['events_per_s']:>10,.0f} {m['cpu_s']:5.1f} s {m['rss_mib']:5.0f} MiB   "
                  f"{vq:24}  {vh}")
        floors[view] = med
    print(f"\nagainst the floors: the events' key and value bytes ({payload_bytes:,} B, lz4 on the wire) over the "
          f"worker's time, against loopback TCP; {stored_in} over the same time, against the disk")
    for view, med in floors.items():
        for i, m in med.items():
            print(f"  {rate_ratio(f'{view:6} {i:11} events in ', payload_bytes / m['seconds'], loopback)}")
            print(f"  {rate_ratio(f'{view:6} {i:11} view out  ', m['db_bytes'] / m['seconds'], disk)}")


if __name__ == "__main__":
    main()
