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
with ``--quix-python /tmp/qvenv/bin/python``; each worker prints the confluent-kafka and librdkafka it ran. The
workers' code is in ``bench/_views_worker.py``, which imports only what a worker needs (its peak RSS is measured).
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
from collections.abc import Iterator
from pathlib import Path

from _needs import importable, postgres_bin  # bench/_needs.py

IMPLS = ("loosely", "handwritten", "quix")
WORKER = Path(__file__).with_name("_views_worker.py")  # each worker's code, in a file that imports little
VIEWS = ("count", "latest")
SINKS = ("sqlite", "postgres")


# -- the driver -------------------------------------------------------------------------------------------------


def produce(bootstrap: str, topic: str, events: int, keys: int, partitions: int) -> int:
    """Produces the events; returns their key and value bytes (the consumers' payload, before lz4)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

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
                    [python, str(WORKER), "--impl", impl, "--view", view, "--bootstrap", boot, "--topic", topic,
                     "--db", db, "--events", str(args.events), "--sink", args.sink],
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
    args = ap.parse_args()
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
