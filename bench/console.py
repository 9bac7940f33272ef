"""The web console: how long its main pages take, against loosely's broker and Apache Kafka side by side, and the
memory it adds to ``loosely broker``.

Measured in one run:

- page time: the median and 95th percentile of ``--n`` GETs of each main page (HTTP, one kept-alive connection:
  the server's whole work, rendering included), for the same console against an embedded loosely broker and
  against Apache Kafka 4.1.1 (KRaft, one node) holding the same data; the ratio is loosely / Kafka. The data: a
  topic of ``--messages`` records over 4 partitions, a group 1,000 records behind, a Hollow store of two versions
  of 2,000 records;
- browser time: what a person waits for, the navigation's ``loadEventEnd`` in Debian's headless chromium, for
  the overview and the messages page (median of 5), against both clusters;
- memory: the resident set of a ``loosely broker`` process after the same pages were loaded 10 times each, with
  ``--console-listen`` and without it (pages then asked of a console in another process), and the difference;
- the physical floors (``bench/_floors.py``, measured before any server starts): each page's p50 against one
  TCP round trip of a small request over 127.0.0.1 plus the page's bytes at loopback TCP throughput, the least
  any server on this machine takes to answer that page.

Usage::

    .venv/bin/python bench/console.py [--n 30] [--messages 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from _floors import loopback_bytes_per_s, tcp_round_trip_s, time_ratio  # bench/_floors.py
from _needs import require_commands, require_modules  # bench/_needs.py
from loosely.console import ConsoleServer, create_app
from loosely.hollow.api import FilesystemBlobStore
from loosely.hollow.api import Producer as HollowProducer
from loosely.hollow.core import hollow_type
from loosely.testing import ApacheKafka, embedded_broker, ensure_kafka_jars, free_port

TOPIC = "bench-orders"
GROUP = "bench-billing"


@hollow_type(primary_key=("id",))
@dataclass
class Movie:
    id: int
    title: str
    year: int


def hollow_store(path: Path) -> tuple[int, int]:
    store = FilesystemBlobStore(path, create=True)
    producer = HollowProducer(publisher=store, announcer=store, data_model=[Movie])
    v1 = producer.run_cycle(lambda s: s.add_all([Movie(i, f"movie {i}", 1950 + i % 70) for i in range(2000)]))
    v2 = producer.run_cycle(lambda s: s.add_all([Movie(i, f"movie {i}", 1950 + (i + (i % 10 == 0)) % 70)
                                                 for i in range(2000)]))
    assert v1 is not None and v2 is not None
    return int(v1), int(v2)


def populate(bootstrap: str, messages: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, 4, 1)])[TOPIC].result(30)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i in range(messages):
        p.produce(TOPIC, f'{{"order": {i}, "customer": "c{i % 97}", "total": {i % 500}}}'.encode(),
                  f"order-{i}".encode(), partition=i % 4)
        if i % 10_000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False})
    per = messages // 4
    for attempt in range(60):  # a fresh Kafka answers NOT_COORDINATOR until it has loaded __consumer_offsets
        try:
            c.commit(offsets=[TopicPartition(TOPIC, q, max(0, per - 250)) for q in range(4)], asynchronous=False)
            break
        except KafkaException as e:
            if attempt == 59 or not e.args[0].retriable():
                raise
            time.sleep(0.5)
    c.close()


def pages(versions: tuple[int, int]) -> dict[str, str]:
    return {
        "overview": "/",
        "topic": f"/topics/{TOPIC}",
        "messages (100)": f"/topics/{TOPIC}/messages?partition=1&offset=0&limit=100",
        "group": f"/groups/{GROUP}",
        "hollow diff": f"/hollow/diff?from={versions[0]}&to={versions[1]}",
    }


def page_times(url: str, path: str, n: int) -> list[float]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    out = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            out.append((time.perf_counter() - t) * 1000)
            assert r.status == 200, (path, body[:300])
    finally:
        conn.close()
    return out


def page_bytes(url: str, path: str) -> int:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("GET", path)
        return len(conn.getresponse().read())
    finally:
        conn.close()


def browser_times(url: str, paths: dict[str, str]) -> dict[str, float]:
    from loosely.testing.browser import chromium

    out = {}
    with chromium() as b:
        for name, path in paths.items():
            ms = []
            for _ in range(5):
                b.get(url + path)
                ms.append(float(b.execute_script(
                    "const t = performance.getEntriesByType('navigation')[0]; return t.loadEventEnd - t.startTime;")))
            out[name] = statistics.median(ms)
    return out


def p95(ms: list[float]) -> float:
    ms = sorted(ms)
    return ms[min(len(ms) - 1, int(len(ms) * 0.95))]


@contextlib.contextmanager
def broker_process(data: Path, console: bool) -> Iterator[tuple[subprocess.Popen[str], str, str | None]]:
    port = free_port()
    cmd = [sys.executable, "-m", "loosely.cli.main", "broker", "--data-dir", str(data), "--listen",
           f"127.0.0.1:{port}"]
    if console:
        cmd += ["--console-listen", "127.0.0.1:0", "--console-hollow", str(data.parent / "hollow")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            if line.startswith("loosely broker listening") and not console:
                break
            if line.startswith("console on"):
                url = line.split()[-1]
                break
        yield proc, f"127.0.0.1:{port}", url
    finally:
        proc.terminate()
        proc.wait(30)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def memory(workdir: Path, messages: int, versions: tuple[int, int]) -> tuple[float, float]:
    """RSS of `loosely broker` without and with its console, after the same page loads."""
    out = []
    for console in (False, True):
        data = workdir / f"mem-{console}" / "data"
        data.mkdir(parents=True)
        (data.parent / "hollow").symlink_to(workdir / "hollow")
        with broker_process(data, console) as (proc, bootstrap, inside):
            populate(bootstrap, messages)
            with contextlib.ExitStack() as stack:
                # without --console-listen the console runs in this process: the broker serves only Kafka requests
                url = inside or stack.enter_context(ConsoleServer(create_app(bootstrap,
                                                                             hollow=str(workdir / "hollow")))).url
                for path in pages(versions).values():
                    page_times(url, path, 10)
                time.sleep(1)
                out.append(rss_mib(proc.pid))
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--messages", type=int, default=20_000)
    args = ap.parse_args()
    require_commands("java", os.environ.get("LOOSELY_CHROMIUM", "chromium"),
                     os.environ.get("LOOSELY_CHROMEDRIVER", "chromedriver"),
                     why="Apache Kafka needs Java 17+, the browser times Debian's chromium and its driver "
                         "(scripts/bootstrap --dev)")
    require_modules("selenium", why="the browser times drive chromium through selenium (the dev extra)")
    round_trip, loopback = tcp_round_trip_s(), loopback_bytes_per_s()  # before any server starts
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        work = Path(tmp)
        versions = hollow_store(work / "hollow")
        results: dict[str, dict[str, list[float]]] = {}
        browsers: dict[str, dict[str, float]] = {}
        sizes: dict[str, int] = {}
        with contextlib.ExitStack() as stack:
            broker = stack.enter_context(embedded_broker(data_dir=str(work / "loosely")))
            kafka = stack.enter_context(ApacheKafka(nodes=1, base_dir=work / "kafka", jars_dir=ensure_kafka_jars()))
            for name, bootstrap in (("loosely", broker.bootstrap_servers), ("kafka", kafka.bootstrap_servers)):
                populate(bootstrap, args.messages)
                server = stack.enter_context(ConsoleServer(create_app(bootstrap, hollow=str(work / "hollow"))))
                results[name] = {page: page_times(server.url, path, args.n)
                                 for page, path in pages(versions).items()}
                if name == "loosely":
                    sizes = {page: page_bytes(server.url, path) for page, path in pages(versions).items()}
                browsers[name] = browser_times(server.url, {"overview": "/", "messages (100)":
                                                            pages(versions)["messages (100)"]})
        print(f"page time over HTTP, ms (n={args.n}, {args.messages} messages)")
        print(f"{'page':<16} {'loosely p50':>12} {'p95':>8} {'Kafka p50':>10} {'p95':>8} {'ratio p50':>10}")
        for page in pages(versions):
            lo, ka = results["loosely"][page], results["kafka"][page]
            print(f"{page:<16} {statistics.median(lo):12.1f} {p95(lo):8.1f} {statistics.median(ka):10.1f} "
                  f"{p95(ka):8.1f} {statistics.median(lo) / statistics.median(ka):10.2f}")
        print("\nbrowser load (loadEventEnd), ms, median of 5")
        for page in browsers["loosely"]:
            lo_b, ka_b = browsers["loosely"][page], browsers["kafka"][page]
            print(f"{page:<16} loosely {lo_b:8.1f}   Kafka {ka_b:8.1f}   ratio {lo_b / ka_b:.2f}")
        print(f"\nagainst the physical floors (bench/_floors.py):\n  {round_trip}\n  {loopback}")
        for page in pages(versions):
            floor_s = round_trip.seconds + loopback.seconds_for(sizes[page])
            for name in ("loosely", "kafka"):
                print("  " + time_ratio(f"{page} ({sizes[page]:,} B), {name} p50, against a round trip carrying it",
                                        statistics.median(results[name][page]) / 1000, floor_s))
        without, with_console = memory(work, args.messages, versions)
        print(f"\nloosely broker RSS after the page loads: {without:.1f} MiB without the console, "
              f"{with_console:.1f} MiB with it: +{with_console - without:.1f} MiB ({with_console / without:.2f}x)")


if __name__ == "__main__":
    main()
