"""Finding a key in a big topic: loosely's key index against a consumer scan, side by side in one run.

Kafka consoles (Kafka UI, AKHQ, Redpanda Console, Kafdrop) search by key by consuming the topic and keeping the
matching records. Loosely's log keeps a key index per segment (loosely.storage.keyindex), which the web console
reaches through ``Broker.key_lookup``. This bench fills one partition with ``--messages`` of the talk's records
(key i, value ``{"id":"i", value: "bar"}``; 10M by default, scale down with the argument, the scale is printed) on
an embedded loosely broker, replayed as prepared Produce requests (bench/produce_replay.py), then looks up
``--lookups`` random keys both ways:

* **index**: ``Broker.key_lookup(topic, 0, key, limit)`` from this thread, as the console calls it (every offset
  holding the key, newest first). The first lookup after the produce is reported apart: it may have to finish
  indexing closed segments the background task has not reached yet.
* **scan**: a confluent-kafka consumer in a child process reads the partition from the beginning to the high
  watermark in batches of 10,000 (``Consumer.consume``) and keeps the offsets whose key matches: what the other
  consoles do, and the least a scan must read to list every match.

It prints milliseconds per lookup (median and max) for each and the ratio, the broker's RSS before and after the
key indexes were built, and the index's size on disk. Then the physical floors (``bench/_floors.py``, measured
before the broker starts): a scan cannot list every match faster than the log's bytes can be read once, from
memory (a memcpy) or from the disk (a read on a cold cache); both lookups are printed against that read. Usage::

    .venv/bin/python bench/key_search.py [--messages 10000000] [--lookups 20] [--scans 3] [--segment-mib 1024]

``--produce-cost`` measures instead what the key index costs the produce path: two loosely broker processes, one
running the sources before the key index (``--before-src``, default: the merge base with ``main`` exported into a
temporary directory, its C extensions compiled there) and one running this tree, replay the same prepared batches
(uncompressed and lz4) alternately, ``--repeat`` times each; prints msg/s and the ratio (after / before).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from _floors import disk_read_bytes_per_s, memcpy_bytes_per_s  # bench/_floors.py
from broker import cpu_seconds, start_loosely, stop_brokers  # bench/broker.py
from loosely.protocol.compression import Codec
from loosely.testing import embedded_broker
from produce_replay import create, produce_frames, replay, talk_batches  # bench/produce_replay.py

TOPIC = "search"
SCAN_BATCH = 10_000
IN_FLIGHT = 5
ROOT = Path(__file__).resolve().parents[1]

SCANNER = r"""
import sys, time
from confluent_kafka import Consumer, TopicPartition
bootstrap, topic, key = sys.argv[1], sys.argv[2], sys.argv[3].encode()
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "scan", "enable.auto.commit": False,
              "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760})
_, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
t = time.perf_counter()
c.assign([TopicPartition(topic, 0, 0)])
found, last = [], -1
while last < high - 1:
    for m in c.consume(10000, 10):
        if m.error() is None:
            last = m.offset()
            if m.key() == key:
                found.append(m.offset())
print(time.perf_counter() - t, ",".join(map(str, found[::-1])))
c.close()
"""


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fill(bootstrap: str, topic: str, n: int, codec: Codec) -> float:
    """Produce the talk's first ``n`` records; returns seconds. Batches are built a slice at a time (memory)."""
    create(bootstrap, topic)
    spent = 0.0
    step = 1_000_000
    for first in range(0, n, step):
        batches = talk_batches(min(step, n - first), codec)
        spent += replay(bootstrap, produce_frames(topic, batches), IN_FLIGHT)
    return spent


def scan(bootstrap: str, key: bytes) -> tuple[float, list[int]]:
    out = subprocess.run(
        [sys.executable, "-c", SCANNER, bootstrap, TOPIC, key.decode()], capture_output=True, check=True, text=True
    ).stdout.split()
    return float(out[0]), [int(x) for x in out[1].split(",")] if len(out) > 1 else []


def search(args: argparse.Namespace) -> None:
    n = args.messages
    print(
        f"scale: {n:,} messages in one partition ({n / 10_000_000:.2%} of the issue's 10M), "
        f"{args.lookups} index lookups, {args.scans} consumer scans; load average {os.getloadavg()[0]:.1f}"
    )
    defaults = {"log.segment.bytes": str(args.segment_mib << 20)} if args.segment_mib else None
    memcpy, disk_read = memcpy_bytes_per_s(), disk_read_bytes_per_s(tempfile.gettempdir())  # before the broker
    with embedded_broker(log_defaults=defaults) as b:
        rss0 = rss_mib()
        produce_s = fill(b.bootstrap_servers, TOPIC, n, Codec.LZ4)
        # talk_batches numbers each slice from 1: the key "i" is in every slice that reaches i
        slices = (n + 999_999) // 1_000_000
        print(f"produced in {produce_s:.1f} s ({n / produce_s:,.0f} msg/s, lz4, with the key index)", flush=True)
        plog = b.broker.logs.log(TOPIC, 0)
        assert plog is not None
        rng = random.Random(7)
        keys = [b"%d" % rng.randint(1, min(n, 1_000_000)) for _ in range(args.lookups)]
        t = time.perf_counter()
        first_hits = b.broker.key_lookup(TOPIC, 0, keys[0], 1000)
        first_ms = (time.perf_counter() - t) * 1000
        index_ms = []
        answers = {}
        for k in keys:
            t = time.perf_counter()
            answers[k] = b.broker.key_lookup(TOPIC, 0, k, 1000)
            index_ms.append((time.perf_counter() - t) * 1000)
        assert answers[keys[0]] == first_hits
        assert all(len(v) == slices or len(v) == slices - 1 for v in answers.values()), "a key went missing"
        rss1 = rss_mib()
        sidecar_mib = sum(
            os.path.getsize(os.path.join(plog.dir, f)) for f in os.listdir(plog.dir) if f.endswith(".keyindex")
        ) / (1 << 20)
        log_mib = plog.size_bytes / (1 << 20)
        scan_ms = []
        for k in keys[: args.scans]:
            secs, found = scan(b.bootstrap_servers, k)
            assert found == answers[k], f"the scan and the index disagree on {k!r}: {found[:5]} / {answers[k][:5]}"
            scan_ms.append(secs * 1000)
    print(
        f"  log {log_mib:,.0f} MiB in {len(plog.segments)} segments; key index sidecars {sidecar_mib:,.1f} MiB; "
        f"broker process RSS {rss0:,.0f} -> {rss1:,.0f} MiB"
    )
    print(f"  {'':24s} {'median ms':>10s} {'max ms':>10s}")
    print(f"  {'index, first lookup':24s} {first_ms:>10.2f} {first_ms:>10.2f}")
    print(f"  {'index (key_lookup)':24s} {statistics.median(index_ms):>10.2f} {max(index_ms):>10.2f}")
    print(f"  {'consumer scan':24s} {statistics.median(scan_ms):>10.1f} {max(scan_ms):>10.1f}")
    print(
        f"ratio: the index answers {statistics.median(scan_ms) / statistics.median(index_ms):,.0f}x faster "
        f"(median scan / median lookup); every answer checked equal to the scan's"
    )
    log_bytes = log_mib * (1 << 20)
    print(f"\nagainst the physical floors (bench/_floors.py): one read of the log's {log_mib:,.0f} MiB\n  {memcpy}\n"
          f"  {disk_read}")
    for floor in (memcpy, disk_read):
        floor_ms = floor.seconds_for(log_bytes) * 1000
        scan_med, index_med = statistics.median(scan_ms), statistics.median(index_ms)
        print(f"  {floor.name}: the log in {floor_ms:,.1f} ms; the consumer scan takes {scan_med / floor_ms:,.1f}x "
              f"that, an index lookup {index_med / floor_ms:.4f}x ({floor_ms / index_med:,.1f}x less)")


@contextlib.contextmanager
def before_sources(given: str | None) -> Iterator[Path]:
    """The ``src`` of the tree before the key index: given, or the merge base with main, C extensions compiled."""
    if given:
        yield Path(given)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-before-"))
    try:
        base = subprocess.run(
            ["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], capture_output=True, text=True, check=True
        ).stdout.strip()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", base, "src"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
        include = sysconfig.get_paths()["include"]
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        for c_file in (tmp / "src").rglob("*.c"):
            out = c_file.with_name(c_file.stem + suffix)
            subprocess.run(
                [
                    "cc",
                    "-O3",
                    "-std=gnu11",
                    "-shared",
                    "-fPIC",
                    f"-I{include}",
                    f"-I{c_file.parent}",
                    str(c_file),
                    "-o",
                    str(out),
                ],
                check=True,
            )
        print(f"before: {base[:10]} (the merge base with main), exported to {tmp}", flush=True)
        yield tmp / "src"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def python_path(src: Path) -> Iterator[None]:
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src)
    try:
        yield
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


def produce_cost(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-keyindex-"))
    with before_sources(args.before_src) as before_src:
        with python_path(before_src):
            p_before, b_before = start_loosely(work / "before")
        with python_path(ROOT / "src"):
            p_after, b_after = start_loosely(work / "after")
        try:
            print(
                f"{args.records:,} talk records in batches of 10,000, Produce v9 acks=1, {IN_FLIGHT} in flight, "
                f"median of {args.repeat}; load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            for codec in (Codec.NONE, Codec.LZ4):
                batches = talk_batches(args.records, codec)
                walls: dict[str, list[float]] = {"before": [], "after": []}
                cpus: dict[str, list[float]] = {"before": [], "after": []}
                for i in range(args.repeat):
                    pairs = [("before", b_before), ("after", b_after)]
                    for name, b in pairs if i % 2 == 0 else pairs[::-1]:
                        topic = f"cost-{uuid.uuid4().hex[:8]}"
                        create(b.bootstrap, topic)
                        c0 = cpu_seconds(b.pid)
                        walls[name].append(replay(b.bootstrap, produce_frames(topic, batches), IN_FLIGHT))
                        cpus[name].append(cpu_seconds(b.pid) - c0)
                for name in ("before", "after"):
                    w = statistics.median(walls[name])
                    print(
                        f"  {name:6s} {codec.name.lower():>5s} {args.records / w:>12,.0f} msg/s   broker cpu "
                        f"{statistics.median(cpus[name]):.2f} s   walls {' '.join(f'{x:.2f}' for x in walls[name])}"
                    )
                r = statistics.median(walls["before"]) / statistics.median(walls["after"])
                rc = statistics.median(cpus["after"]) / statistics.median(cpus["before"])
                print(
                    f"  {codec.name.lower()}: throughput after/before {r:.3f}, broker CPU after/before {rc:.3f}",
                    flush=True,
                )
        finally:
            stop_brokers(p_before, None, work / "before")
            stop_brokers(p_after, None, work)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10_000_000)
    ap.add_argument("--lookups", type=int, default=20)
    ap.add_argument("--scans", type=int, default=3)
    ap.add_argument("--segment-mib", type=int, default=0, help="log.segment.bytes in MiB (default: the broker's)")
    ap.add_argument("--produce-cost", action="store_true")
    ap.add_argument("--records", type=int, default=1_000_000, help="per run, with --produce-cost")
    ap.add_argument("--repeat", type=int, default=5, help="with --produce-cost")
    ap.add_argument("--before-src", help="with --produce-cost: the src directory to compare against")
    args = ap.parse_args()
    if args.produce_cost:
        produce_cost(args)
    else:
        search(args)


if __name__ == "__main__":
    main()
