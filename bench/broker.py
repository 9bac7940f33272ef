"""The talk's example against loosely's broker and Apache Kafka, side by side in the same run.

    seq N | awk '{printf "%s,{\\"id\\":\\"%s\\", value: \\"bar\\"}\\n", $1, $1}' | kcat -P -b B -t the-topic -K ','
    kcat -C -b B -t the-topic -o beginning -e

For N in 100k and 1M, prints produce and consume msgs/s for each broker and their ratio (loosely / Kafka), the
broker's CPU seconds for the work, its peak RSS, and the time from process start to the first accepted produce.
Both brokers run at once and every repeat measures each of them on fresh topics, loosely first in even repeats and
Kafka first in odd ones, so a change in the load of a shared machine, or one broker's background work after its
turn, falls on both alike. Each figure is the median of ``--repeat`` runs. Usage::

    .venv/bin/python bench/broker.py [--repeat 3] [--sizes 100000,1000000] [--codecs lz4,zstd,gzip,snappy]
                                     [--loosely-config loosely.fetch.backlog.delay.ms=2]

Three consumers read each topic: kcat with its default settings; kcat with ``queued.min.messages`` raised past N
(see ``QUEUE_FULL_PAUSE``); and confluent-kafka's ``Consumer.consume`` in batches of 10,000, in a child process.
With ``--kafka-tools-jar kafka-tools-4.1.1.jar`` (``mvn dependency:get -Dartifact=org.apache.kafka:kafka-tools:4.1.1``)
Kafka's own ``ConsumerPerformance`` (``kafka-consumer-perf-test``) reads each topic too.

Then, with both brokers still up, the same input is produced again with each of ``--codecs`` (``kcat -z CODEC``:
the broker must decompress and walk every batch to validate it), alternating between the brokers run by run, and
the produce ratio is printed per codec with the broker's and kcat's CPU seconds. Last, the physical floors
(``bench/_floors.py``, measured before the brokers start): produce and consume bytes/s against loopback TCP and
produce against a write+fsync to the benchmark's directory.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _floors import Floor, disk_write_bytes_per_s, loopback_bytes_per_s, message_floors, rate_ratio  # bench/_floors.py
from _needs import KCAT_AND_KAFKA, require_commands  # bench/_needs.py
from loosely.testing import ApacheKafka, ensure_kafka_jars, free_port

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def talk_input(n: int, path: Path) -> None:
    with path.open("wb") as f:
        f.writelines(b'%d,{"id":"%d", value: "bar"}\n' % (i, i) for i in range(1, n + 1))


def produce(bootstrap: str, topic: str, data: Path, *extra: str) -> float:
    t = time.perf_counter()
    with data.open("rb") as f:
        subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", ",", *extra], stdin=f, check=True)
    return time.perf_counter() - t


# librdkafka stops fetching a partition whose local queue holds queued.min.messages (100,000 by default) and, in
# 2.0.2 (Debian's kcat), looks again only at its broker thread's next 1 s wake-up; newer versions wait
# fetch.queue.backoff.ms (1 s). Whenever the fetcher outruns kcat's printing, each such pause costs up to a
# second, whichever broker answers. Raising the threshold past N removes the pause (fetch.error.backoff.ms does
# not: it is for fetch errors), which shows what the broker itself sustains.
QUEUE_FULL_PAUSE = b"queued.min.messages exceeded"


def consume(bootstrap: str, topic: str, n: int, *extra: str) -> tuple[float, int]:
    """Seconds for kcat to print the topic, and how many queue-full pauses librdkafka logged (``-d fetch``)."""
    t = time.perf_counter()
    out = subprocess.run(
        ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-d", "fetch", *extra],
        capture_output=True,
        check=True,
    )
    elapsed = time.perf_counter() - t
    got = out.stdout.count(b"\n")
    if got != n:
        raise RuntimeError(f"consumed {got} of {n}")
    return elapsed, out.stderr.count(QUEUE_FULL_PAUSE)


CONFLUENT_CONSUMER = """
import sys, time
from confluent_kafka import Consumer, TopicPartition
bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = time.perf_counter()
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False})
c.assign([TopicPartition(topic, 0, 0)])
got = 0
while got < n:
    got += sum(1 for m in c.consume(10000, timeout=10) if m.error() is None)
c.close()
print(time.perf_counter() - t)
"""


def consume_confluent(bootstrap: str, topic: str, n: int) -> float:
    """Seconds for confluent-kafka to receive n messages from offset 0 (it knows n, so no end-of-partition wait)."""
    out = subprocess.run(
        [sys.executable, "-c", CONFLUENT_CONSUMER, bootstrap, topic, str(n)], capture_output=True, check=True, text=True
    )
    return float(out.stdout)


def consumer_performance(bootstrap: str, topic: str, n: int, classpath: str) -> float:
    """Kafka's ConsumerPerformance (kafka-consumer-perf-test): msgs/s over its fetch time (group join left out)."""
    out = subprocess.run(
        [
            "java",
            "-Xmx512m",
            "-cp",
            classpath,
            "org.apache.kafka.tools.ConsumerPerformance",
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--messages",
            str(n),
            "--timeout",
            "60000",
        ],
        capture_output=True,
        check=True,
        text=True,
    )
    fields = [line for line in out.stdout.splitlines() if line[:1].isdigit()][-1].split(",")
    return float(fields[9])  # fetch.nMsg.sec


def first_produce(bootstrap: str, started: float, deadline_s: float = 120) -> float:
    host, port = bootstrap.split(",", maxsplit=1)[0].rsplit(":", 1)
    while time.perf_counter() - started < deadline_s:  # wait for the port first: kcat's own retries are slow
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            break
        except OSError:
            time.sleep(0.01)
    while time.perf_counter() - started < deadline_s:
        r = subprocess.run(
            ["kcat", "-P", "-b", bootstrap, "-t", "warmup", "-m", "1"], input=b"x\n", capture_output=True, check=False
        )
        if r.returncode == 0 and b"ERROR" not in r.stderr:
            return time.perf_counter() - started
        time.sleep(0.02)
    raise TimeoutError("no produce accepted")


@dataclass
class Broker:
    name: str
    bootstrap: str
    pid: int
    start_s: float


@dataclass
class Runs:
    produce_s: list[float] = field(default_factory=list)
    consume_s: list[float] = field(default_factory=list)
    pauses: list[int] = field(default_factory=list)
    consume_nopause_s: list[float] = field(default_factory=list)
    confluent_s: list[float] = field(default_factory=list)
    perf_msgs_per_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)


def one_run(b: Broker, n: int, data: Path, runs: Runs, perf_classpath: str | None) -> None:
    topic = f"the-topic-{uuid.uuid4().hex[:8]}"
    c0 = cpu_seconds(b.pid)
    runs.produce_s.append(produce(b.bootstrap, topic, data))
    seconds, pauses = consume(b.bootstrap, topic, n)
    runs.cpu_s.append(cpu_seconds(b.pid) - c0)  # one produce plus one consume, as before
    runs.consume_s.append(seconds)
    runs.pauses.append(pauses)
    runs.consume_nopause_s.append(consume(b.bootstrap, topic, n, "-X", f"queued.min.messages={2 * n}")[0])
    runs.confluent_s.append(consume_confluent(b.bootstrap, topic, n))
    if perf_classpath is not None:
        runs.perf_msgs_per_s.append(consumer_performance(b.bootstrap, topic, n, perf_classpath))


def rate(n: int, seconds: list[float]) -> float:
    return n / statistics.median(seconds)


def ratio(loosely_s: list[float], kafka_s: list[float]) -> float:
    """loosely throughput / Kafka throughput, from the medians of their times."""
    return statistics.median(kafka_s) / statistics.median(loosely_s)


def report(n: int, b: Broker, r: Runs) -> None:
    print(
        f"  {b.name:8s} n={n:>8d} produce {rate(n, r.produce_s):>10,.0f} msg/s   kcat consume "
        f"{rate(n, r.consume_s):>10,.0f} msg/s (queue-full pauses {r.pauses})   no pause "
        f"{rate(n, r.consume_nopause_s):>10,.0f}   confluent-kafka {rate(n, r.confluent_s):>10,.0f}   "
        f"broker cpu {statistics.median(r.cpu_s):.2f} s"
        + (f"   ConsumerPerformance {statistics.median(r.perf_msgs_per_s):>10,.0f}" if r.perf_msgs_per_s else ""),
        flush=True,
    )


def start_loosely(work: Path, config: Sequence[str] = ()) -> tuple[subprocess.Popen[bytes], Broker]:
    """The loosely broker as users start it, with ``config`` (NAME=VALUE settings), and its first produce time."""
    port = free_port()
    # A normal install has its bytecode compiled; this environment may set PYTHONDONTWRITEBYTECODE, which would make
    # every start recompile every module. Compile once, and start the broker the way users do.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parents[1] / "src")],
        env=env,
        check=True,
    )
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loosely.cli.main",
            "broker",
            "--data-dir",
            str(work / "loosely"),
            "--listen",
            f"127.0.0.1:{port}",
            *(arg for setting in config for arg in ("--config", setting)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    bootstrap = f"127.0.0.1:{port}"
    return proc, Broker("loosely", bootstrap, proc.pid, first_produce(bootstrap, started))


def start_kafka(work: Path) -> tuple[ApacheKafka, Broker]:
    kafka = ApacheKafka(nodes=1, base_dir=work / "kafka", heap_mb=1024)
    kafka.prepare()  # formatting storage is one-time setup, like creating loosely's data directory
    started = time.perf_counter()
    kafka.launch()
    kproc = kafka.node(1).process
    assert kproc is not None
    return kafka, Broker("kafka", kafka.bootstrap_servers, kproc.pid, first_produce(kafka.bootstrap_servers, started))


def stop_brokers(proc: subprocess.Popen[bytes], kafka: ApacheKafka | None, work: Path) -> None:
    """End a benchmark: the loosely broker process, Apache Kafka if it was started, and the work directory."""
    proc.terminate()
    proc.wait()
    if kafka is not None:
        kafka.stop()
    shutil.rmtree(work, ignore_errors=True)


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_codecs(
    brokers: dict[str, tuple[str, int]], sizes: list[int], repeat: int, inputs: dict[int, Path], codecs: list[str]
) -> dict[tuple[str, str, int], float]:
    """Median produce seconds per (broker, codec, size); one consume per broker checks every record arrived.

    ``brokers`` maps a name to (bootstrap, pid); both brokers are up and each repeat runs on one, then the other,
    so a machine shared with other work loads both alike. Prints the broker's and kcat's CPU seconds too: with gzip
    and zstd, kcat's own compression is most of the work, which bounds the ratio any broker can reach on two cores.
    """
    out: dict[tuple[str, str, int], float] = {}
    for codec in codecs:
        for n in sizes:
            runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in brokers}
            for i in range(repeat):
                for name, (bootstrap, pid) in brokers.items():
                    topic = f"the-topic-{codec}-{uuid.uuid4().hex[:8]}"
                    b0, k0 = cpu_seconds(pid), children_cpu_s()
                    wall = produce(bootstrap, topic, inputs[n], "-z", codec)
                    runs[name].append((wall, cpu_seconds(pid) - b0, children_cpu_s() - k0))
                    if i == 0:
                        consume(bootstrap, topic, n)  # every record arrived
            for name, rs in runs.items():
                wall, broker_cpu, kcat_cpu = (statistics.median(r[k] for r in rs) for k in range(3))
                out[name, codec, n] = wall
                print(
                    f"  {name:8s} n={n:>8d} {codec:>6s} produce {n / wall:>10,.0f} msg/s   broker cpu "
                    f"{broker_cpu:.2f} s   kcat cpu {kcat_cpu:.2f} s",
                    flush=True,
                )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument(
        "--kafka-tools-jar",
        type=Path,
        help="kafka-tools-4.x.jar (Maven Central): also time Kafka's ConsumerPerformance against both brokers",
    )
    ap.add_argument("--codecs", default="lz4,zstd,gzip,snappy", help="comma-separated kcat -z codecs; '' for none")
    ap.add_argument(
        "--loosely-config",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the loosely broker (repeatable), e.g. loosely.fetch.backlog.delay.ms=2",
    )
    args = ap.parse_args()
    require_commands("kcat", "java", why=KCAT_AND_KAFKA)
    codecs = [c for c in args.codecs.split(",") if c]
    perf_classpath = None
    if args.kafka_tools_jar is not None:
        perf_classpath = ":".join(
            [*(str(j) for j in sorted(ensure_kafka_jars().glob("*.jar"))), str(args.kafka_tools_jar)]
        )
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-broker-"))
    inputs = {}
    for n in sizes:
        inputs[n] = work / f"input-{n}.txt"
        talk_input(n, inputs[n])

    # the floors (bench/_floors.py) before either broker starts: every byte crosses loopback, and lands in `work`
    floors = loopback_bytes_per_s(), disk_write_bytes_per_s(work)
    input_bytes = {n: path.stat().st_size for n, path in inputs.items()}
    print(f"talk example with Debian's kcat, median of {args.repeat} runs, loosely and Kafka alternating", flush=True)
    if args.loosely_config:
        print(f"loosely broker settings: {' '.join(args.loosely_config)}", flush=True)
    proc, lb = start_loosely(work, args.loosely_config)
    kafka: ApacheKafka | None = None
    try:
        kafka, kb = start_kafka(work)
        results: dict[int, tuple[Runs, Runs]] = {}
        for n in sizes:
            lr, kr = Runs(), Runs()
            for i in range(args.repeat):
                pair = [(lb, lr), (kb, kr)]
                for b, runs in pair if i % 2 == 0 else pair[::-1]:  # each broker goes first in half the repeats
                    one_run(b, n, inputs[n], runs, perf_classpath)
            report(n, lb, lr)
            report(n, kb, kr)
            results[n] = (lr, kr)
        lrss, krss = peak_rss_mib(lb.pid), peak_rss_mib(kb.pid)
        codec_s = run_codecs({"loosely": (lb.bootstrap, lb.pid), "kafka": (kb.bootstrap, kb.pid)}, sizes,
                             args.repeat, inputs, codecs)
    finally:
        stop_brokers(proc, kafka, work)

    print()
    print(
        f"{'n':>8s} {'produce':>8s} {'kcat consume':>13s} {'no pause':>9s} {'confluent-kafka':>16s} "
        f"{'cpu loosely':>12s} {'cpu kafka':>10s}"
    )
    for n, (lr, kr) in results.items():
        print(
            f"{n:>8d} {ratio(lr.produce_s, kr.produce_s):>8.2f} {ratio(lr.consume_s, kr.consume_s):>13.2f} "
            f"{ratio(lr.consume_nopause_s, kr.consume_nopause_s):>9.2f} {ratio(lr.confluent_s, kr.confluent_s):>16.2f} "
            f"{statistics.median(lr.cpu_s):>12.2f} {statistics.median(kr.cpu_s):>10.2f}"
        )
        if lr.perf_msgs_per_s:
            perf = statistics.median(lr.perf_msgs_per_s) / statistics.median(kr.perf_msgs_per_s)
            print(f"{'':>8s} ConsumerPerformance fetch msgs/s ratio {perf:.2f}")
    for codec in codecs:
        for n in sizes:
            r = codec_s["kafka", codec, n] / codec_s["loosely", codec, n]
            print(f"{n:>8d} {codec:>6s} produce ratio {r:>6.2f}")
    print(f"peak RSS: loosely {lrss:.0f} MiB, kafka {krss:.0f} MiB (ratio {lrss / krss:.2f})")
    print(
        f"start to first accepted produce: loosely {lb.start_s:.2f} s, kafka {kb.start_s:.2f} s "
        f"({kb.start_s / lb.start_s:.1f}x faster)"
    )
    print("ratios are loosely throughput / Kafka throughput (>1 means loosely is faster)")
    report_floors({n: (input_bytes[n], lr, kr) for n, (lr, kr) in results.items()}, *floors)


def report_floors(runs: dict[int, tuple[int, Runs, Runs]], loopback: Floor, disk: Floor) -> None:
    """The talk example's input bytes over each median time, against loopback TCP and the disk. Both brokers keep
    the log in the page cache (no fsync per produce), so the disk, with its fsync, is a durable log's floor."""
    print(f"\n{loopback}\n{disk}")
    for n, (nbytes, lr, kr) in runs.items():
        print(f"  n={n}: {message_floors(n, nbytes, loopback, disk)}")
        for name, r in (("loosely", lr), ("kafka", kr)):
            produce = nbytes / statistics.median(r.produce_s)
            print(f"    {rate_ratio(f'{name:7s} produce', produce, loopback)}")
            print(f"    {rate_ratio(f'{name:7s} produce', produce, disk)}")
            consume = nbytes / statistics.median(r.consume_nopause_s)
            print(f"    {rate_ratio(f'{name:7s} kcat consume, no pause', consume, loopback)}")

if __name__ == "__main__":
    main()
