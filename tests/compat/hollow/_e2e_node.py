"""A producer or consumer process for the multi-process end-to-end tests (``test_api_e2e.py``).

    python -m compat.hollow._e2e_node producer --store STORE [--kafka BOOTSTRAP,TOPIC,NS] [--every-ms N]
    python -m compat.hollow._e2e_node consumer --store STORE [--kafka BOOTSTRAP,TOPIC,NS]

STORE is ``fs:<dir>`` or ``s3:<endpoint>,<bucket>,<prefix>``.  Every event is one JSON line on stdout:

* producer: ``{"event": "announced", "version", "checksum", "records"}`` per cycle, ``leader`` when it takes
  over, ``standby`` when it lost it, ``error`` when a cycle fails (``fenced`` when the broker refused it as a deposed
  leader).  Without
  ``--every-ms`` it runs a cycle per ``cycle`` line on stdin (``cycle corrupt`` flips a byte of the delta it
  publishes, after the digest was computed, and saves the good bytes next to the store as ``<name>.good``).
* consumer: ``{"event": "version", "version", "checksum", "snapshots", "double_snapshots", "deltas"}`` after each
  refresh, and ``{"event": "serving", "version", "records"}`` every 100 ms from a reader thread that reads the
  whole state under the refresh lock -- it keeps answering while the store is away.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

from hollow.api.models import Catalog, Movie
from loosely.hollow.api import (
    BlobRef,
    BlobType,
    Consumer,
    FilesystemBlobStore,
    KafkaAnnouncementWatcher,
    KafkaAnnouncer,
    NotLeaderError,
    Producer,
    RefreshEvent,
    RefreshSucceeded,
    S3BlobStore,
    Version,
)
from loosely.hollow.core import HollowError, TypedReader

_lock = threading.Lock()


def emit(**fields: object) -> None:
    with _lock:
        sys.stdout.write(json.dumps({"t": time.time(), "pid": os.getpid(), **fields}) + "\n")
        sys.stdout.flush()


def open_store(spec: str) -> Any:
    kind, _, rest = spec.partition(":")
    if kind == "fs":
        return FilesystemBlobStore(rest, create=False)
    endpoint, bucket, prefix = rest.split(",")
    return S3BlobStore(bucket, prefix, endpoint_url=endpoint, access_key="x", secret_key="x", read_timeout_s=5)


class CorruptingPublisher:
    """Publishes like the store, but flips a byte of the next delta when asked (a bad disk, a bad upload)."""

    def __init__(self, store: Any, good_dir: str) -> None:
        self.store = store
        self.good_dir = good_dir
        self.corrupt_next = False

    def publish(self, ref: BlobRef, data: bytes) -> None:
        if self.corrupt_next and ref.type is BlobType.DELTA:
            self.corrupt_next = False
            with open(os.path.join(self.good_dir, ref.name + ".good"), "wb") as f:
                f.write(data)
            bad = bytearray(data)
            bad[len(bad) // 2] ^= 0x20
            data = bytes(bad)
        self.store.publish(ref, data)


def run_producer(args: argparse.Namespace) -> None:
    store = open_store(args.store)
    kafka = args.kafka.split(",") if args.kafka else None
    publisher = CorruptingPublisher(store, args.good_dir or ".")
    if kafka:
        bootstrap, topic, ns = kafka
        announcer = KafkaAnnouncer(bootstrap, topic, ns, session_timeout_ms=args.session_timeout_ms,
                                   heartbeat_interval_ms=max(100, args.session_timeout_ms // 10))
        producer = Producer(publisher=publisher, announcer=announcer, retriever=store, watcher=announcer,
                            leader=announcer, version_minter=announcer, data_model=[Movie],
                            snapshot_every_cycles=args.snapshot_every)
        announcer.start()
    else:
        producer = Producer(publisher=publisher, announcer=store, retriever=store, watcher=store, data_model=[Movie],
                            snapshot_every_cycles=args.snapshot_every)
    cat = Catalog(seed=args.seed, size=200, changes=8)
    synced: list[Version | None] = [None]
    was_leader = False
    emit(event="started", role="producer")

    def populate(state: Any) -> None:
        if state.prior is not None and synced[0] != producer.version:  # restored, or took over: carry on from it
            cat.movies = {m.id: m for m in TypedReader(state.prior, Movie)}
        cat.advance()
        cat.populate(state)

    def cycle() -> None:
        nonlocal was_leader
        try:
            leader = producer.leader.is_leader()
            if leader and not was_leader:
                emit(event="leader", term=producer.leader.term())
            elif was_leader and not leader:
                emit(event="standby")
            was_leader = leader
            v = producer.run_cycle(populate)
            if not leader:
                return  # skipped; a standby follows the announced version
            synced[0] = v
            rs = producer.read_state
            assert rs is not None
            emit(event="announced", version=v, checksum=rs.checksum().hex(), records=rs.type("Movie").record_count())
        except NotLeaderError as e:
            was_leader = False
            emit(event="fenced" if "fenced" in str(e) else "not-leader", error=str(e))
        except (HollowError, OSError) as e:
            emit(event="error", error=f"{type(e).__name__}: {e}")

    if args.every_ms:
        while True:
            cycle()
            time.sleep(args.every_ms / 1000)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "exit":
            break
        if cmd[0] == "cycle":
            publisher.corrupt_next = len(cmd) > 1 and cmd[1] == "corrupt"
            cycle()


def run_consumer(args: argparse.Namespace) -> None:
    store = open_store(args.store)
    watcher: Any = store
    if args.kafka:
        bootstrap, topic, ns = args.kafka.split(",")
        watcher = KafkaAnnouncementWatcher(bootstrap, topic, ns)

    consumer: Consumer

    def on_refresh(event: RefreshEvent) -> None:
        if isinstance(event, RefreshSucceeded):
            s = consumer.statistics()
            assert consumer.engine is not None
            emit(event="version", version=event.to_version, checksum=consumer.engine.checksum().hex(),
                 snapshots=s.snapshots_loaded, double_snapshots=s.double_snapshots, deltas=s.deltas_applied,
                 failures=s.refresh_failures)

    consumer = Consumer(retriever=store, watcher=watcher, listeners=[on_refresh], poll_interval_ms=100,
                        backoff_ms_min=100, backoff_ms_max=1_000, failed_transition_ttl_ms=args.failed_ttl_ms)
    consumer.start()
    emit(event="started", role="consumer")
    while True:
        time.sleep(0.1)
        if consumer.engine is None:
            continue
        with consumer.reading() as engine:
            records = sum(1 for _ in TypedReader(engine, Movie))
            version = consumer.version
        s = consumer.statistics()
        emit(event="serving", version=version, records=records, last_error=s.last_error)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["producer", "consumer"])
    p.add_argument("--store", required=True)
    p.add_argument("--kafka")
    p.add_argument("--every-ms", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--snapshot-every", type=int, default=1)
    p.add_argument("--session-timeout-ms", type=int, default=3_000)
    p.add_argument("--good-dir")
    p.add_argument("--failed-ttl-ms", type=int, default=2_000)
    args = p.parse_args()
    if args.role == "producer":
        run_producer(args)
    else:
        run_consumer(args)


if __name__ == "__main__":
    main()
