"""The processes of the consistency harness (test_consistency.py); each records its operations for the checker.

    python _workers.py ROLE CONFIG_JSON

Roles:

``writer``    a ``Writer`` candidate, a ``RawClient`` and ``threads`` load threads that read a key strongly and
              write it back conditionally on the version read (compare-and-set), with some unconditional puts and
              deletes, and a read after the write's token; a standby's writes fail with ``NotLeaderError`` until
              it takes over.  ``<dir>/leader-<process>`` exists while it leads.  With ``port``, a
              ``WriterServer`` serves the writer on it, and ``threads`` may be 0 (a writer service).
``client``    the same load through a ``RemoteWriter`` to the writer services at ``urls``.
``reader``    a ``RawClient`` reading random keys, eventual and strong.
``producer``  a ``RawProducer`` publishing a cycle every ``cycle_ms``.

Every role runs until ``<dir>/stop`` exists or the monotonic time ``until_s`` (a cap) has come.  Each load thread
records to ``<dir>/<process>-<thread>.jsonl`` (one recorder per thread: a recorder's process is
one sequential history).  ``broken`` makes the process's client wrong on purpose, for the checker to catch:
``overlay`` reads the Hollow state only (the tail moves on, the overlay stays empty); ``nowait`` answers strong
and after-token reads without waiting.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checker import Kind, Recorder

from loosely.hollow.core import hollow_type


@hollow_type(primary_key=("id",))
@dataclass(frozen=True, slots=True)
class Cell:
    id: int
    value: str


def dataset(cfg: dict[str, Any]) -> Any:
    from loosely.hollow.raw import Dataset

    return Dataset(cfg["name"], [Cell], bootstrap_servers=cfg["bootstrap"], blob_store=cfg["store"],
                   partitions=cfg.get("partitions", 1))


def partition(c: Any, key: int) -> int:
    """The partition of the key's log (a token's offsets are per partition)."""
    ds = c.dataset
    return int(ds.partition_of(ds.key_bytes("Cell", (key,))))


def client(cfg: dict[str, Any]) -> Any:
    from loosely.hollow.raw import RawClient

    broken = cfg.get("broken")

    class Broken(RawClient):  # type: ignore[misc, valid-type]
        def _observe(self, partition: int, offset: int, key: bytes, value: bytes | None) -> None:
            if broken != "overlay":
                super()._observe(partition, offset, key, value)

        def _prepare(self, consistency: str, after: Any, timeout_ms: int | None) -> None:
            if broken != "nowait":
                super()._prepare(consistency, after, timeout_ms)

    cls = Broken if broken else RawClient
    return cls(dataset(cfg), timeout_ms=cfg.get("read_timeout_ms", 8_000), refresh_interval_ms=200).start()


def running(cfg: dict[str, Any]) -> bool:
    return time.monotonic() < cfg["until_s"] and not (Path(cfg["dir"]) / "stop").exists()


def read(rec: Recorder, c: Any, key: int, kind: Kind, token: Any = None) -> Any:
    """A recorded read; returns the version read (None: absent), or raises what the client raised."""
    consistency = "strong" if kind is Kind.GET_STRONG else "eventual"
    extra = {"token": dict(token.offsets)} if token is not None else {}
    with rec.op(kind, str(key), partition=partition(c, key), **extra) as done:
        record, version = c.get_versioned(Cell, key, consistency=consistency, after=token)
        done(value=None if record is None else record.value, version=version)
        return version


def write(rec: Recorder, w: Any, key: int, kind: Kind, value: str | None, expected: Any = None,
          part: int = 0) -> Any:
    """A recorded write; returns its result, or None if it did not happen (for certain or maybe)."""
    from loosely.hollow.raw import ANY, ConditionFailed, NotLeaderError, WriteError

    fields = {"expected": expected} if kind is Kind.CAS else {}
    if_version = expected if kind is Kind.CAS else ANY
    with rec.op(kind, str(key), value, partition=part, **fields) as done:
        try:
            if value is None:
                result = w.delete(Cell, key, if_version=if_version)
            else:
                result = w.put(Cell(key, value), if_version=if_version)
        except (ConditionFailed, NotLeaderError) as e:
            done.failed(error=type(e).__name__)
            return None
        except WriteError as e:
            if not e.uncertain:
                done.failed(error=str(e))
            return None  # uncertain: leaving the context records it as unknown
        done(version=result.version, token=dict(result.token.offsets))
        return result


def load(cfg: dict[str, Any], process: str, c: Any, w: Any, seed: int) -> None:
    from loosely.hollow.raw import ConsistencyTimeout

    rng = random.Random(seed)
    rec = Recorder(Path(cfg["dir"]) / f"{process}.jsonl", process)
    keys, n = cfg["keys"], 0
    while running(cfg):
        key, dice = rng.randrange(keys), rng.random()
        n += 1
        try:
            if w is None:  # a reader
                read(rec, c, key, Kind.GET_STRONG if dice < 0.4 else Kind.GET_EVENTUAL)
                time.sleep(0.002)  # enough reads to race every write, without burning a shared CPU
                continue
            if dice < 0.7:
                version = read(rec, c, key, Kind.GET_STRONG)
                result = write(rec, w, key, Kind.CAS, f"{process}:{n}", expected=version, part=partition(c, key))
            elif dice < 0.85:
                result = write(rec, w, key, Kind.PUT, f"{process}:{n}", part=partition(c, key))
            elif dice < 0.9:
                result = write(rec, w, key, Kind.DELETE, None, part=partition(c, key))
            else:
                read(rec, c, key, Kind.GET_EVENTUAL)
                continue
            if result is None:
                time.sleep(0.05)  # not the leader, or the write failed: do not spin
            else:
                read(rec, c, key, Kind.GET_AFTER, token=result.token)
        except ConsistencyTimeout:
            time.sleep(0.05)  # the broker is away: the read is not in the history (it returned nothing)
    rec.close()


def loads(cfg: dict[str, Any], process: str, c: Any, w: Any, *others: threading.Thread) -> None:
    """Says the process is ready, then runs ``threads`` load threads (and ``others``) to the end."""
    names = [f"{process}-{i}" for i in range(cfg.get("threads", 2))]
    threads = [*others, *(threading.Thread(target=load, args=(cfg, n, c, w, zlib.crc32(n.encode()))) for n in names)]
    print("ready", flush=True)
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run_writer(cfg: dict[str, Any], process: str) -> None:
    from loosely.hollow.raw import Writer, WriterServer

    c = client(cfg)
    # the session timeout bounds the takeover after a kill -9; 6 s is the least Kafka's brokers accept
    # (group.min.session.timeout.ms)
    w = Writer(dataset(cfg), session_timeout_ms=6_000, heartbeat_interval_ms=1_000)
    server = WriterServer(w, port=cfg["port"]).start() if "port" in cfg else None
    w.start()
    marker = Path(cfg["dir"]) / f"leader-{process}"

    def mark() -> None:
        while running(cfg):
            if w.is_leader():
                marker.touch()
            else:
                marker.unlink(missing_ok=True)
            time.sleep(0.05)

    loads(cfg, process, c, w, threading.Thread(target=mark, daemon=True))
    marker.unlink(missing_ok=True)
    if server is not None:
        server.close()
    w.close()
    c.close()


def run_client(cfg: dict[str, Any], process: str) -> None:
    from loosely.hollow.raw import RemoteWriter

    c = client(cfg)
    w = RemoteWriter(cfg["urls"], dataset(cfg), timeout_ms=15_000)  # longer than a takeover after a kill -9
    loads(cfg, process, c, w)
    w.close()
    c.close()


def run_reader(cfg: dict[str, Any], process: str) -> None:
    c = client(cfg)
    print("ready", flush=True)
    load(cfg, process, c, None, zlib.crc32(process.encode()))
    c.close()


def run_producer(cfg: dict[str, Any], process: str) -> None:
    from loosely.hollow.raw import RawProducer

    p = RawProducer(dataset(cfg), cycle_interval_ms=cfg.get("cycle_ms", 300)).start()
    print("ready", flush=True)
    while running(cfg):
        time.sleep(0.1)
    p.close()


if __name__ == "__main__":
    role, config = sys.argv[1], json.loads(sys.argv[2])
    roles = {"writer": run_writer, "client": run_client, "reader": run_reader, "producer": run_producer}
    roles[role](config, config["process"])
