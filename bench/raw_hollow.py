"""RAW Hollow (loosely.hollow.raw, issue 13) against Redis, the store users pick instead when data must be consistent
across servers; side by side in one run, on loopback.

    .venv/bin/python bench/raw_hollow.py [--seconds 5] [--records 10000] [--overlay 1000] [--side both|redis|raw]
                                         [--phases paced,unpaced,reads,memory] [--stages DIR] [--follow wait|poll]

``--stages DIR`` prints, after the results, where the writes of the paced and unpaced phases spent their time
(``bench/_stages.py``: every RAW process stamps each step of a write).

At the issue's memory scale (1M records, 100k in-flight changes) only the memory comparison is worth its time:

    .venv/bin/python bench/raw_hollow.py --side raw --phases memory --records 1000000 --overlay 100000 --size 1000

Measured, each figure on both sides in the same run, every role in its own process:

* *write-to-visible latency across processes* (p50, p99, p99.9): records of ``--size`` bytes (10 KB: RAW Hollow's
  published figure) written at ``--rate`` writes/s (1,000) for ``--seconds``; a follower process waits for each of
  writer 0's records in turn and takes, for each, the time from the start of its write (carried in the record) to
  the moment it reads it.  Redis: one writer process ``SET``s, the follower polls with ``GET`` (each poll one
  round trip).  RAW Hollow: writes must go through the one elected ``Writer``, so ``--raw-threads`` threads of the
  writer's process share the rate (each ``put`` returns once its transaction is committed; the group commit folds
  concurrent ones together); the follower polls its ``RawClient`` with eventual ``get``s (a local read of the
  overlay, which tails the log).  ``time.monotonic_ns`` is one clock for every process of the machine.
* the same, unpaced, with 1 KB records: ``--max-writers`` Redis writer processes, ``--raw-max-threads`` threads on
  the RAW writer; the highest rate sustained with every write acknowledged before that writer's next (the issue's
  target: 10,000 writes/s of 1 KB), or with ``--window`` writes in flight per writer (Redis pipelines a window at
  a time; RAW Hollow keeps a sliding window of ``Writer.put_async`` futures, which the group commit batches).
  A follower polling every record would measure its own lag, so a probe writer
  adds ``--probe-rate`` records/s among them and the follower follows the probe;
* *read latency*: ``--records`` records of 10 KB loaded, then random reads one at a time: Redis ``GET`` over the
  network; RAW Hollow eventual (overlay then state), strong (waits for the log end), after a token, and plain
  Hollow (a ``hollow.api`` consumer's primary-key index on the same published version, no overlay);
* *memory* of a client holding ``--records`` records plus ``--overlay`` in-flight changes against a plain Hollow
  consumer of the same records (RSS growth of a fresh process after reading every record once), and the growth
  of Redis's ``used_memory`` for the records.

The writer and follower processes of both sides freeze what their start-up loaded out of Python's collector
once they are ready (``gc.collect(); gc.freeze()``), as ``docs/raw-hollow.md`` advises latency-sensitive services
to do and as ``loosely broker`` does itself; ``--gc default`` leaves the collector as it comes. On a 2-vCPU
machine a full collection walks the 45,000-65,000 objects these processes hold in 30-80 ms, and at 1,000 writes/s
one comes every few seconds in each of them.

Last, the physical floors (``bench/_floors.py``): each read p50 against one random access over the records' bytes
plus a memcpy of one record, the unpaced writes' bytes against loopback TCP and a write+fsync.

The issue asks for 1M records and 100k in-flight changes; the defaults are scaled down so a run takes under three
minutes on a small shared machine, and the scale is printed.  Redis runs with ``--appendonly yes --appendfsync
everysec`` (durable to the page cache, as the broker's acks=all is) and no RDB snapshots.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _stages  # bench/_stages.py
from _floors import (  # bench/_floors.py
    Floor,
    disk_write_bytes_per_s,
    loopback_bytes_per_s,
    memcpy_bytes_per_s,
    random_access_ns,
    rate_ratio,
)
from _needs import importable, require_commands, require_modules  # bench/_needs.py

HERE = Path(__file__).resolve().parent
REDIS_SERVER = "the anchor is Debian's redis-server (scripts/bootstrap installs it)"
REDIS_PY = "it is driven by redis-py (the dev extra)"
HEADER = 20  # the write's start, monotonic ns, in ASCII digits at the head of every record's payload


def payload(size: int, start_ns: int) -> str:
    head = f"{start_ns:0{HEADER}d}"
    return head + "x" * max(0, size - HEADER)


def started_ns(text: str | bytes) -> int:
    return int(text[:HEADER])


def percentiles(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"n": 0}
    s = sorted(ms)

    def at(q: float) -> float:
        return s[min(len(s) - 1, int(q * len(s)))]

    return {"n": len(s), "p50": at(0.50), "p99": at(0.99), "p99.9": at(0.999), "max": s[-1]}


def pace(rate: float, seconds: float) -> Iterator[int]:
    """Sequence numbers on an absolute schedule (a late write is not followed by a pause); unpaced if rate <= 0."""
    t0 = time.monotonic()
    seq = 0
    while time.monotonic() - t0 < seconds:
        if rate > 0:
            due = t0 + seq / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield seq
        seq += 1


def settle(args: argparse.Namespace) -> None:
    """A writer or follower is ready: with ``--gc freeze``, take what it loaded out of the collector's way, as
    loosely's own long-running commands do."""
    if args.gc == "freeze":
        from loosely.cli._heap import freeze_startup

        freeze_startup()


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


# --- the Redis side -------------------------------------------------------------------------------------------------


@contextmanager
def redis_server() -> Iterator[int]:
    from loosely.testing import free_port

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as d:
        proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--save", "",
                                 "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "no"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            import redis

            client = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.02)
            client.close()
            yield port
        finally:
            proc.terminate()
            proc.wait(10)


def redis_writer(args: argparse.Namespace) -> dict[str, Any]:
    import redis

    r = redis.Redis(port=int(args.addr))
    acks: list[float] = []
    n = 0
    window = args.window if args.rate <= 0 else 1
    pipe = r.pipeline(transaction=False)
    settle(args)
    for seq in pace(args.rate, args.seconds):
        t = time.monotonic_ns()
        if window > 1:  # pipelined: a round trip per window of writes
            pipe.set(f"{args.prefix}{seq}", payload(args.size, t))
            if seq % window == window - 1:
                pipe.execute()
                n = seq + 1
            continue
        r.set(f"{args.prefix}{seq}", payload(args.size, t))
        acks.append((time.monotonic_ns() - t) / 1e6)
        n = seq + 1
    return {"writes": n, "ack_ms": percentiles(acks)}


def redis_follow(args: argparse.Namespace) -> tuple[Callable[[str], bytes | None], None, None]:
    import redis

    r = redis.Redis(port=int(args.addr))
    return r.get, None, None  # type: ignore[return-value]  # polls: each GET is a round trip


def redis_reads(args: argparse.Namespace) -> dict[str, Any]:
    import redis

    r = redis.Redis(port=int(args.addr))
    used0 = int(r.info("memory")["used_memory"])  # type: ignore[index]
    pipe = r.pipeline(transaction=False)
    for i in range(args.records):
        pipe.set(f"rec{i}", payload(args.size, i))
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    used = int(r.info("memory")["used_memory"]) - used0  # type: ignore[index]
    rng = random.Random(1)
    ms = []
    for _ in range(args.reads):
        key = f"rec{rng.randrange(args.records)}"
        t = time.perf_counter_ns()
        assert r.get(key) is not None
        ms.append((time.perf_counter_ns() - t) / 1e6)
    return {"get": percentiles(ms), "used_memory_growth_bytes": used}


# --- the RAW Hollow side --------------------------------------------------------------------------------------------
# Writes must go through the one elected Writer, so the RAW writer is one process whose load threads share it (its
# group commit folds concurrent writes into one transaction); Redis's writers are processes of their own.


@functools.cache  # one class: the dataset knows its types by identity
def _raw_types() -> Any:
    from dataclasses import dataclass

    from loosely.hollow.core import hollow_type

    @hollow_type(name="Rec", primary_key=("id",))
    @dataclass(frozen=True, slots=True)
    class Rec:
        id: str
        payload: str

    return Rec


def raw_dataset(args: argparse.Namespace) -> Any:
    from loosely.hollow.raw import Dataset

    return Dataset(args.dataset, [_raw_types()], bootstrap_servers=args.addr,
                   blob_store=os.path.join(args.store, args.dataset))


def raw_writer(args: argparse.Namespace) -> dict[str, Any]:
    import threading

    from loosely.hollow.raw import Writer

    rec = _raw_types()
    if args.stages:
        _stages.writer(args.stages)
    writer = Writer(raw_dataset(args)).start()
    if not writer.wait_for_leadership(60_000):
        raise SystemExit("the RAW writer did not win the election")
    threads = max(1, args.threads)
    acks: list[list[float]] = [[] for _ in range(threads)]
    settle(args)
    counts = [0] * threads

    def load(i: int) -> None:
        probe = i == 0 and args.probe_rate > 0
        rate = args.probe_rate if probe else args.rate / threads
        window = args.window if rate <= 0 else 1
        in_flight: collections.deque[Any] = collections.deque()
        for seq in pace(rate, args.seconds):
            t = time.monotonic_ns()
            key = f"{args.prefix}{seq}" if i == 0 else f"{args.prefix}t{i}-{seq}"
            if window > 1:  # pipelined: up to `window` writes of this thread wait for their commit at once
                in_flight.append(writer.put_async(rec(key, payload(args.size, t))))
                while len(in_flight) >= window or (in_flight and in_flight[0].done()):
                    in_flight.popleft().result()
                    counts[i] += 1
                continue
            if args.stages and i == 0:  # the same as put, keeping the future's stamps
                future = writer.put_async(rec(key, payload(args.size, t)))
                future.result()
                _stages.writer_done(key, t, future)
            else:
                writer.put(rec(key, payload(args.size, t)))
            acks[i].append((time.monotonic_ns() - t) / 1e6)
            counts[i] = seq + 1
        while in_flight:
            in_flight.popleft().result()
            counts[i] += 1

    ts = [threading.Thread(target=load, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    writer.close()
    return {"writes": sum(counts), "ack_ms": percentiles(acks[0])}


def raw_follow(args: argparse.Namespace) -> tuple[Callable[[str], Any], Callable[[], Any], Callable[[Any], Any]]:
    """The RAW follower reads its client's memory, and between two reads waits for the client's view to move
    (``RawClient.wait_for_change``) unless ``--follow poll``: a reader spinning on ``get`` would take a core
    from the writer and the broker on a 2-core machine, and the visibility it measures is the overlay's."""
    from loosely.hollow.raw import RawClient

    rec = _raw_types()
    if args.stages:
        _stages.follower(args.stages)
    client = RawClient(raw_dataset(args)).start()

    def get(key: str) -> str | None:
        r = client.get(rec, key)
        return None if r is None else r.payload  # type: ignore[no-any-return]

    return get, client.reached, lambda seen: client.wait_for_change(seen, 50)


def _timed(n: int, variants: dict[str, tuple[list[str], Callable[[str], Any]]],
           chunk: int = 50) -> dict[str, dict[str, float]]:
    """``n`` random reads of each variant, taken in turns of ``chunk`` reads: on a loaded machine the load drifts
    within seconds, and a ratio of two figures measured one after the other would measure the drift."""
    rng = random.Random(2)
    ms: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(0, n, chunk):
        for name, (keys, read) in variants.items():
            for _ in range(chunk):
                key = keys[rng.randrange(len(keys))]
                t = time.perf_counter_ns()
                assert read(key) is not None, key
                ms[name].append((time.perf_counter_ns() - t) / 1e6)
    return {name: percentiles(v) for name, v in ms.items()}


def _catch_up_ms(args: argparse.Namespace) -> int:
    """How long a fresh client may take to load the version and tail the in-flight changes: at the issue's scale
    (100k changes) more than a read's default 5 s on a loaded machine."""
    return 5_000 + args.overlay


def raw_reads(args: argparse.Namespace) -> dict[str, Any]:
    """Loads the records through the writer, publishes one Hollow version, leaves ``overlay`` changes unpublished;
    then reads: plain Hollow (the state's primary-key index), RAW eventual and strong, state and overlay keys."""
    from loosely.hollow.api import Consumer, UniqueKeyIndex
    from loosely.hollow.raw import Put, RawClient, RawProducer, Writer

    rec = _raw_types()
    ds = raw_dataset(args)
    writer = Writer(ds).start()
    assert writer.wait_for_leadership(60_000)
    keys = [f"rec{i}" for i in range(args.records)]
    for i in range(0, len(keys), 500):
        # distinct payloads: Hollow keeps one copy of equal strings, which would flatter its memory
        writer.bulk([Put(rec(k, payload(args.size, i + j))) for j, k in enumerate(keys[i:i + 500])])
    producer = RawProducer(ds)
    producer.catch_up()
    producer.run_cycle()
    changed = keys[:args.overlay]
    token = None
    for i in range(0, len(changed), 500):
        token = writer.bulk([Put(rec(k, payload(args.size, args.records + i + j)))
                             for j, k in enumerate(changed[i:i + 500])]).token
    writer.close()
    producer.close()

    plain = Consumer(retriever=ds.blob_store, watcher=ds.blob_store)
    plain.refresh()
    index = UniqueKeyIndex(plain, "Rec")

    def plain_get(key: str) -> Any:
        with plain.lock.reading():
            o = index.find(key)
            return None if o < 0 else ds.mapper.read(plain.engine, rec, o)

    client = RawClient(ds, timeout_ms=_catch_up_ms(args)).start()
    assert client.get(rec, changed[0], after=token).payload == payload(args.size, args.records)  # the overlay
    out: dict[str, Any] = _timed(args.reads, {
        "plain_hollow": (keys[args.overlay:], plain_get),
        "raw_eventual": (keys[args.overlay:], lambda k: client.get(rec, k)),
        "raw_eventual_overlay": (changed, lambda k: client.get(rec, k)),
        "raw_after_token": (keys, lambda k: client.get(rec, k, after=token))})
    stats = client.statistics()
    out["overlay_entries"] = stats.overlay
    out.update(_timed(min(args.reads, 1_000), {"raw_strong": (keys, lambda k: client.get(rec, k,
                                                                                      consistency="strong"))}))
    client.close()
    return out


def raw_memory(args: argparse.Namespace) -> dict[str, Any]:
    """Resident memory this process gained holding the dataset, every record read once (the blobs' pages are
    faulted in): a plain Hollow consumer, or a RAW client (the same state, the overlay, the log tail's buffers).
    Both import the same modules first, so the figure is the data and the machinery that holds it."""
    import gc

    import confluent_kafka  # noqa: F401

    from loosely.hollow.api import Consumer, UniqueKeyIndex
    from loosely.hollow.raw import RawClient

    rec = _raw_types()
    ds = raw_dataset(args)
    keys = [f"rec{i}" for i in range(args.records)]
    gc.collect()
    rss0 = _status_kb("VmRSS")
    overlay = 0
    if args.child == "memory-plain":
        plain = Consumer(retriever=ds.blob_store, watcher=ds.blob_store)
        plain.refresh()
        index = UniqueKeyIndex(plain, "Rec")
        with plain.lock.reading():
            assert all(ds.mapper.read(plain.engine, rec, index.find(k)) is not None for k in keys)
        held: Any = (plain, index)
    else:
        client = RawClient(ds, timeout_ms=_catch_up_ms(args)).start()
        deadline = time.monotonic() + _catch_up_ms(args) / 1000
        while client.statistics().overlay < args.overlay and time.monotonic() < deadline:
            time.sleep(0.05)
        overlay = client.statistics().overlay
        assert all(client.get(rec, k) is not None for k in keys)
        held = client
    gc.collect()
    grown = (_status_kb("VmRSS") - rss0) * 1024
    del held
    return {"rss_growth_bytes": grown, "records": args.records, "overlay": overlay}


ROLES: dict[tuple[str, str], Callable[[argparse.Namespace], dict[str, Any]]] = {
    ("redis", "writer"): redis_writer,
    ("redis", "reads"): redis_reads,
    ("raw", "writer"): raw_writer,
    ("raw", "reads"): raw_reads,
    ("raw", "memory-plain"): raw_memory,
    ("raw", "memory-raw"): raw_memory,
}
FOLLOWERS: dict[str, Callable[[argparse.Namespace], tuple[Any, Any, Any]]] = {"redis": redis_follow, "raw": raw_follow}


def follower(args: argparse.Namespace) -> dict[str, Any]:
    """Waits for each of writer 0's records in turn; the time from its write's start to its first sight."""
    get, mark, wait = FOLLOWERS[args.side](args)
    if args.follow == "poll":
        mark = wait = None
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))  # unpaced runs: the driver says when writer 0 is done
    settle(args)
    print("ready", flush=True)
    ms: list[float] = []
    missed = 0
    for seq in range(args.count):
        key = f"{args.prefix}{seq}"
        t_wait = time.monotonic()
        # the first record waits for the writer to start (an election, on a loaded machine well over 10 s)
        deadline_s = 10.0 if seq else 120.0
        seen = mark() if mark is not None else None
        while (value := get(key)) is None:
            if stop or time.monotonic() - t_wait > deadline_s:
                missed += not stop
                stop.append(1)  # the writer has stopped: nothing more will come
                break
            if wait is not None:
                seen = wait(seen)
            else:  # let the process's other threads run; sleep(0) gives the GIL up for an instant
                time.sleep(args.poll_sleep_us / 1e6)
        else:
            ms.append((time.monotonic_ns() - started_ns(value)) / 1e6)
            if args.stages:
                _stages.follower_saw(key, started_ns(value))
        if stop:
            break
    return {"visible_ms": percentiles(ms), "missed": missed}


# --- the driver -----------------------------------------------------------------------------------------------------


def child(side: str, role: str, addr: str, **opts: Any) -> subprocess.Popen[str]:
    argv = [sys.executable, __file__, "--child", role, "--side", side, "--addr", addr]
    for k, v in opts.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen[str], timeout_s: float = 300) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout_s)
    if proc.returncode != 0:
        raise SystemExit(f"a child failed ({proc.args}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def write_to_visible(side: str, addr: str, *, rate: float, size: int, seconds: float, writers: int,
                     probe_rate: float, **extra: Any) -> dict[str, Any]:
    """Writer processes (rate split between them; unpaced if 0) and one follower of a probe writer's records.

    Paced, the probe is writer 0.  Unpaced, a follower that polls every record falls behind and measures its own
    lag, so a separate probe writes ``probe_rate`` records/s of the same size among the unpaced writers' load."""
    prefix = f"v{time.monotonic_ns()}-"
    probe = f"{prefix}probe-"
    paced = rate > 0
    count = int((rate / writers if paced else probe_rate) * seconds)
    follow = child(side, "follower", addr, prefix=f"{prefix}0-" if paced else probe, count=count, **extra)
    assert follow.stdout is not None
    if follow.stdout.readline().strip() != "ready":
        raise SystemExit(f"the follower did not start:\n{follow.communicate()[1][-3000:]}")
    if side == "raw":  # one process, the elected writer: its thread 0 is writer 0 or the probe
        ws = [child(side, "writer", addr, prefix=f"{prefix}0-" if paced else probe, rate=rate, size=size,
                    seconds=seconds, threads=writers + (not paced), probe_rate=probe_rate, **extra)]
    else:
        ws = [child(side, "writer", addr, prefix=f"{prefix}{i}-", rate=rate / writers, size=size, seconds=seconds,
                    **extra) for i in range(writers)]
        if not paced:
            ws.append(child(side, "writer", addr, prefix=probe, rate=probe_rate, size=size, seconds=seconds, **extra))
    outs = [result(w) for w in ws]
    try:  # the follower expects what the writers were asked to write; whatever they fell short of, it never sees
        follow.wait(5)
    except subprocess.TimeoutExpired:
        follow.terminate()
    seen = result(follow)
    total = sum(o["writes"] for o in outs)
    return {"writes_per_s": total / seconds, "writes": total, "ack_ms": outs[0]["ack_ms"], **seen}


def fmt(p: dict[str, float]) -> str:
    if not p.get("n"):
        return "no samples"
    return f"p50 {p['p50']:7.3f}  p99 {p['p99']:7.3f}  p99.9 {p['p99.9']:7.3f}  max {p['max']:7.3f} ms  (n={p['n']})"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def run_side(side: str, addr: str, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    phases = set(args.phases.split(","))
    if "paced" in phases:
        _paced(side, addr, args, out, extra)
    if "unpaced" in phases:
        _unpaced(side, addr, args, out, extra)
    reads = {**extra, "dataset": "reads"} if side == "raw" else extra
    if "reads" in phases or (side == "raw" and "memory" in phases):  # the memory phase reads the loaded dataset
        # a child's time grows with the records loaded: ~1 ms each on a loaded 2-core machine, Hollow cycle included
        timeout_s = 300 + args.records / 1_000
        n = args.reads if "reads" in phases else 0
        print(f"[{side}] {'reads' if n else 'loading'} of {args.records:,} records of {args.size:,} B", flush=True)
        out["reads"] = result(child(side, "reads", addr, records=args.records, size=args.size, reads=n,
                                    overlay=args.overlay, **reads), timeout_s)
        for name, v in out["reads"].items():
            print(f"  {name:20} {fmt(v) if isinstance(v, dict) else f'{v:,}'}", flush=True)
        if side == "raw" and "memory" in phases:
            print(f"[{side}] memory of a client: {args.records:,} records, {args.overlay:,} of them changed since the "
                  "loaded version", flush=True)
            for kind in ("plain", "raw"):
                out[f"memory_{kind}"] = result(child(side, f"memory-{kind}", addr, records=args.records,
                                                     overlay=args.overlay, **reads), timeout_s)
                print(f"  {kind:6} {out[f'memory_{kind}']}", flush=True)
            grown = {kind: out[f"memory_{kind}"]["rss_growth_bytes"] for kind in ("raw", "plain")}
            print(f"  RAW client / plain Hollow client: {ratio(grown['raw'], grown['plain'])}", flush=True)
    return out


def _paced(side: str, addr: str, args: argparse.Namespace, out: dict[str, Any], extra: dict[str, Any]) -> None:
    print(f"\n[{side}] write-to-visible, {args.rate:,.0f} writes/s of {args.size:,} B, {args.seconds:g} s",
          flush=True)
    out["paced"] = write_to_visible(side, addr, rate=args.rate, size=args.size, seconds=args.seconds,
                                    writers=args.raw_threads if side == "raw" else 1, probe_rate=0,
                                    poll_sleep_us=args.poll_sleep_us, follow=args.follow, gc=args.gc,
                                    **_stages_opt(args, side, "paced"), **extra)
    print(f"  visible {fmt(out['paced']['visible_ms'])}\n  ack     {fmt(out['paced']['ack_ms'])}  "
          f"({out['paced']['writes_per_s']:,.0f}/s achieved, {out['paced']['missed']} missed)", flush=True)


def _unpaced(side: str, addr: str, args: argparse.Namespace, out: dict[str, Any], extra: dict[str, Any]) -> None:
    writers = args.raw_max_threads if side == "raw" else args.max_writers
    print(f"[{side}] unpaced, {writers} writers of {args.max_size:,} B ({args.window} in flight each) and a probe at "
          f"{args.probe_rate:g}/s, {args.seconds:g} s", flush=True)
    out["max"] = write_to_visible(side, addr, rate=0, size=args.max_size, seconds=args.seconds,
                                  writers=writers, probe_rate=args.probe_rate, window=args.window,
                                  poll_sleep_us=args.poll_sleep_us, follow=args.follow, gc=args.gc,
                                  **_stages_opt(args, side, "unpaced"), **extra)
    print(f"  {out['max']['writes_per_s']:,.0f} writes/s; visible {fmt(out['max']['visible_ms'])}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--side", choices=["both", "redis", "raw"], default="both")
    p.add_argument("--rate", type=float, default=1000.0, help="paced writes/s")
    p.add_argument("--size", type=int, default=10_000, help="bytes per record (paced writes, reads)")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--max-writers", type=int, default=2, help="writer processes for the unpaced run")
    p.add_argument("--raw-threads", type=int, default=16,
                   help="threads sharing the RAW writer in the paced run (one put waits for its commit)")
    p.add_argument("--raw-max-threads", type=int, default=16,
                   help="threads sharing the RAW writer in the unpaced run (its group commit batches them)")
    p.add_argument("--probe-rate", type=float, default=200.0, help="the unpaced run's probe writes/s")
    p.add_argument("--window", type=int, default=1,
                   help="unpaced writes each writer keeps in flight (1: none, each waits for its ack; more: Redis "
                        "pipelines, RAW Hollow's Writer.put_async)")
    p.add_argument("--max-size", type=int, default=1_000, help="bytes per record in the unpaced run")
    p.add_argument("--poll-sleep-us", type=float, default=0.0,
                   help="a polling follower's pause between two reads of a record not yet visible (0: a bare yield)")
    p.add_argument("--follow", choices=["wait", "poll"], default="wait",
                   help="poll: the RAW follower polls its client as the Redis one polls (spinning); wait: between "
                        "two reads it waits for its client's view to move (RawClient.wait_for_change)")
    p.add_argument("--gc", choices=["freeze", "default"], default="freeze",
                   help="freeze: writers and followers take what they loaded out of Python's collector once ready "
                        "(gc.freeze(), as docs/raw-hollow.md advises); default: the collector as it comes")
    p.add_argument("--records", type=int, default=10_000, help="records loaded for reads and memory")
    p.add_argument("--overlay", type=int, default=1_000, help="in-flight changes in the memory comparison")
    p.add_argument("--reads", type=int, default=5_000)
    p.add_argument("--stages", default="",
                   help="a directory: RAW Hollow's processes stamp each stage of a write there (bench/_stages.py), "
                        "and each write phase prints where its writes' time went")
    p.add_argument("--phases", default="paced,unpaced,reads,memory",
                   help="which to run, comma-separated: paced, unpaced, reads, memory (memory loads the records)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--addr", help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--dataset", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        role = follower if args.child == "follower" else ROLES[(args.side, args.child)]
        print(json.dumps(role(args)), flush=True)
        return
    print(f"scale: {args.records:,} records and {args.overlay:,} in-flight changes (the issue: 1M and 100k); "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    # the floors (bench/_floors.py) before any server starts, in the directory the brokers' and Redis's files go to
    floors = {"loopback": loopback_bytes_per_s(), "disk": disk_write_bytes_per_s(tempfile.gettempdir()),
              "memcpy": memcpy_bytes_per_s(),
              "access": random_access_ns(max(args.records * args.size, 1 << 20))}
    results: dict[str, Any] = {}
    redis_side = args.side in ("both", "redis")
    if redis_side and (shutil.which("redis-server") is None or not importable("redis")):
        if args.side == "redis":  # nothing else to run: say why and stop
            require_commands("redis-server", why=REDIS_SERVER)
            require_modules("redis", why=REDIS_PY)
        print(f"the Redis side is left out: {REDIS_SERVER}, and {REDIS_PY}", flush=True)
        redis_side = False
    if redis_side:
        with redis_server() as port:
            results["redis"] = run_side("redis", str(port), args)
    if args.side in ("both", "raw"):
        results["raw"] = run_raw(args)
    if "redis" in results and "raw" in results:
        print_ratios(results["raw"], results["redis"])
    print_floors(results, args, floors)
    print(json.dumps(results), file=sys.stderr)


def run_raw(args: argparse.Namespace) -> dict[str, Any]:
    try:
        import loosely.hollow.raw  # noqa: F401
    except ImportError:
        print("\n[raw] loosely.hollow.raw is not there yet: RAW Hollow side skipped", flush=True)
        return {}
    from loosely.testing import free_port

    with tempfile.TemporaryDirectory(prefix="bench-raw-") as d:
        addr = f"127.0.0.1:{free_port()}"
        # with --stages the broker runs under bench/_stages.py, which stamps its requests
        command = [str(HERE / "_stages.py")] if args.stages else ["-m", "loosely.cli.main"]
        broker = subprocess.Popen([sys.executable, *command, "broker", "--data-dir", f"{d}/data", "--listen", addr],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_stages_env(args, "broker"))
        assert broker.stdout is not None
        broker.stdout.readline()
        try:
            out = run_side("raw", addr, args, store=f"{d}/store", dataset="writes")
        finally:
            broker.terminate()
            try:
                broker.wait(60)
            except subprocess.TimeoutExpired:  # a big log takes its time to close: nothing in it is needed
                broker.kill()
                broker.wait(30)
    for phase in ("paced", "unpaced"):
        if args.stages and (Path(args.stages) / phase).is_dir():
            print(f"\n[raw] {phase}: where a write of writer 0 (the probe, unpaced) spent its time", flush=True)
            _stages.report(str(Path(args.stages) / phase), str(Path(args.stages) / "broker"))
    return out


def _stages_opt(args: argparse.Namespace, side: str, phase: str) -> dict[str, str]:
    """The option that makes a phase's RAW writer and follower stamp their stages (nothing for Redis)."""
    return {"stages": str(Path(args.stages) / phase)} if args.stages and side == "raw" else {}


def _stages_env(args: argparse.Namespace, where: str) -> dict[str, str] | None:
    """The environment of a RAW process that stamps its stages in ``--stages``/``where``."""
    if not args.stages:
        return None
    path = Path(args.stages) / where
    path.mkdir(parents=True, exist_ok=True)
    return {**os.environ, _stages.ENV: str(path)}


def print_floors(results: dict[str, Any], args: argparse.Namespace, floors: dict[str, Floor]) -> None:
    """Reads against one random access into a region the size of the records plus a memcpy of one record; the
    unpaced writes' bytes against loopback TCP (every write crosses it) and the disk (a durable log's floor)."""
    print("\nagainst the physical floors (bench/_floors.py):")
    for f in floors.values():
        print(f"  {f}")
    read_ms = (floors["access"].value * 1e-9 + floors["memcpy"].seconds_for(args.size)) * 1e3
    print(f"  a read's floor: one random access and a memcpy of {args.size:,} B = {read_ms * 1e3:.2f} us")
    reads = {"Redis GET": results.get("redis", {}).get("reads", {}).get("get", {})}
    raw = results.get("raw", {}).get("reads", {})
    reads |= {name: raw.get(name, {}) for name in ("plain_hollow", "raw_eventual", "raw_eventual_overlay")}
    for name, p in reads.items():
        if p.get("p50"):
            print(f"    {name:20} p50 {p['p50'] * 1e3:8.2f} us: {p['p50'] / read_ms:,.1f}x the floor")
    for side in ("redis", "raw"):
        if "max" not in results.get(side, {}):
            continue
        rate = results[side]["max"]["writes_per_s"] * args.max_size
        for f in (floors["loopback"], floors["disk"]):
            print(f"    {rate_ratio(f'{side} unpaced writes of {args.max_size:,} B', rate, f)}")


def print_ratios(raw: dict[str, Any], redis: dict[str, Any]) -> None:
    if not {"paced", "max", "reads", "memory_raw"} <= raw.keys() or not {"paced", "max", "reads"} <= redis.keys():
        return  # some phases left out (--phases)
    print("\nRAW Hollow / Redis (below 1: RAW Hollow is faster or smaller)")
    for phase in ("paced", "max"):
        for q in ("p50", "p99", "p99.9"):
            a, b = raw[phase]["visible_ms"].get(q), redis[phase]["visible_ms"].get(q)
            print(f"  {phase:5} write-to-visible {q:6} {ratio(a, b)}")
    print(f"  unpaced writes/s             {ratio(raw['max']['writes_per_s'], redis['max']['writes_per_s'])}")
    rr, get = raw["reads"], redis["reads"]["get"]
    for name in ("raw_eventual", "raw_eventual_overlay", "raw_strong"):
        for q in ("p50", "p99"):
            print(f"  {name} read {q} / Redis GET {q}: {ratio(rr[name].get(q), get.get(q))}")
    print("RAW Hollow / plain Hollow (the issue's target: eventual read within 1.2x)")
    for name in ("raw_eventual", "raw_eventual_overlay"):
        for q in ("p50", "p99"):
            print(f"  {name} {q}: {ratio(rr[name].get(q), rr['plain_hollow'].get(q))}")
    mem_raw, mem_plain = raw["memory_raw"]["rss_growth_bytes"], raw["memory_plain"]["rss_growth_bytes"]
    print(f"  client memory growth: {ratio(mem_raw, mem_plain)} "
          f"({mem_raw / 2**20:,.0f} vs {mem_plain / 2**20:,.0f} MiB; "
          "Redis server's used_memory growth for the records: "
          f"{redis['reads']['used_memory_growth_bytes'] / 2**20:,.0f} MiB)")


if __name__ == "__main__":
    main()
