"""The talk's example against loosely's broker and Apache Kafka, side by side in the same run.

    seq N | awk '{printf "%s,{\\"id\\":\\"%s\\", value: \\"bar\\"}\\n", $1, $1}' | kcat -P -b B -t the-topic -K ','
    kcat -C -b B -t the-topic -o beginning -e

For N in 100k and 1M, prints produce and consume msgs/s for each broker and their ratio (loosely / Kafka), the
broker's CPU seconds for the work, its peak RSS, and the time from process start to the first accepted produce.
Then, with both brokers up, the same input is produced again with each of ``--codecs`` (``kcat -z CODEC``: the broker
must decompress and walk every batch to validate it), alternating between the brokers run by run, and the produce
ratio is printed per codec. Peak RSS is taken before the codec runs. Each measurement is the median of
``--repeat`` runs on a fresh topic. Usage::

    .venv/bin/python bench/broker.py [--repeat 3] [--sizes 100000,1000000] [--codecs lz4,zstd,gzip,snappy]
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
from dataclasses import dataclass
from pathlib import Path

from loosely.testing import ApacheKafka, free_port

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


def consume(bootstrap: str, topic: str, n: int, *extra: str) -> float:
    t = time.perf_counter()
    out = subprocess.run(
        ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", *extra],
        capture_output=True,
        check=True,
    )
    elapsed = time.perf_counter() - t
    got = out.stdout.count(b"\n")
    if got != n:
        raise RuntimeError(f"consumed {got} of {n}")
    return elapsed


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
class Result:
    produce_s: float
    consume_s: float
    cpu_s: float
    consume_nobackoff_s: float


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
                        consume(bootstrap, topic, n)
            for name, rs in runs.items():
                wall, broker_cpu, kcat_cpu = (statistics.median(r[k] for r in rs) for k in range(3))
                out[name, codec, n] = wall
                print(
                    f"  {name:8s} n={n:>8d} {codec:>6s} produce {n / wall:>10,.0f} msg/s   broker cpu "
                    f"{broker_cpu:.2f} s   kcat cpu {kcat_cpu:.2f} s",
                    flush=True,
                )
    return out


def run_suite(  # noqa: PLR0917 - a script helper
    name: str, bootstrap: str, pid: int, sizes: list[int], repeat: int, inputs: dict[int, Path]
) -> dict[int, Result]:
    out: dict[int, Result] = {}
    for n in sizes:
        ps, cs, cpus, nb = [], [], [], []
        for _ in range(repeat):
            topic = f"the-topic-{uuid.uuid4().hex[:8]}"
            c0 = cpu_seconds(pid)
            ps.append(produce(bootstrap, topic, inputs[n]))
            cs.append(consume(bootstrap, topic, n))
            cpus.append(cpu_seconds(pid) - c0)
            # librdkafka 2.0.2 pauses fetching for fetch.error.backoff.ms (500 ms) whenever its local queue holds
            # queued.min.messages; a broker that answers faster than kcat prints hits that pause more often. This
            # variant removes the pause, to show what the broker itself sustains.
            nb.append(consume(bootstrap, topic, n, "-X", "fetch.error.backoff.ms=0"))
        out[n] = Result(statistics.median(ps), statistics.median(cs), statistics.median(cpus), statistics.median(nb))
        print(
            f"  {name:8s} n={n:>8d} produce {n / out[n].produce_s:>10,.0f} msg/s   consume "
            f"{n / out[n].consume_s:>10,.0f} msg/s   (no backoff {n / out[n].consume_nobackoff_s:>10,.0f})   "
            f"broker cpu {out[n].cpu_s:.2f} s",
            flush=True,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--codecs", default="lz4,zstd,gzip,snappy", help="comma-separated kcat -z codecs; '' for none")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    codecs = [c for c in args.codecs.split(",") if c]
    work = Path(tempfile.mkdtemp(prefix="bench-broker-"))
    inputs = {}
    for n in sizes:
        inputs[n] = work / f"input-{n}.txt"
        talk_input(n, inputs[n])

    print(f"talk example with Debian's kcat, median of {args.repeat} runs", flush=True)

    # loosely
    port = free_port()
    # A normal install has its bytecode compiled; this environment may set PYTHONDONTWRITEBYTECODE, which would make
    # every start recompile every module. Compile once, and start the broker the way users do.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parents[1] / "src")],
        env=env,
        check=True,
    )
    # kio imports hypothesis when it is installed (it registers test strategies), which a runtime install does not
    # have; hide it so start-up is measured as users get it.
    launcher = (
        "import sys; sys.modules['hypothesis'] = None; from loosely.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            launcher,
            "broker",
            "--data-dir",
            str(work / "loosely"),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    loosely_start = first_produce(f"127.0.0.1:{port}", started)
    try:
        lres = run_suite("loosely", f"127.0.0.1:{port}", proc.pid, sizes, args.repeat, inputs)
        lrss = peak_rss_mib(proc.pid)
    except BaseException:
        proc.terminate()
        proc.wait()
        raise

    # Apache Kafka
    kafka = ApacheKafka(nodes=1, base_dir=work / "kafka", heap_mb=1024)
    kafka.prepare()  # formatting storage is one-time setup, like creating loosely's data directory
    started = time.perf_counter()
    kafka.launch()
    kproc = kafka.node(1).process
    assert kproc is not None
    try:
        kafka_start = first_produce(kafka.bootstrap_servers, started)
        kres = run_suite("kafka", kafka.bootstrap_servers, kproc.pid, sizes, args.repeat, inputs)
        krss = peak_rss_mib(kproc.pid)
        brokers = {"loosely": (f"127.0.0.1:{port}", proc.pid), "kafka": (kafka.bootstrap_servers, kproc.pid)}
        codec_s = run_codecs(brokers, sizes, args.repeat, inputs, codecs)
    finally:
        kafka.stop()
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        f"{'n':>8s} {'produce ratio':>14s} {'consume ratio':>14s} {'consume, no backoff':>20s} "
        f"{'cpu loosely':>12s} {'cpu kafka':>10s}"
    )
    for n in sizes:
        lr, kr = lres[n], kres[n]
        print(
            f"{n:>8d} {kr.produce_s / lr.produce_s:>14.2f} {kr.consume_s / lr.consume_s:>14.2f} "
            f"{kr.consume_nobackoff_s / lr.consume_nobackoff_s:>20.2f} {lr.cpu_s:>12.2f} {kr.cpu_s:>10.2f}"
        )
    for codec in codecs:
        for n in sizes:
            ratio = codec_s["kafka", codec, n] / codec_s["loosely", codec, n]
            print(f"{n:>8d} {codec:>6s} produce ratio {ratio:>6.2f}")
    print(f"peak RSS: loosely {lrss:.0f} MiB, kafka {krss:.0f} MiB (ratio {lrss / krss:.2f})")
    print(
        f"start to first accepted produce: loosely {loosely_start:.2f} s, kafka {kafka_start:.2f} s "
        f"({kafka_start / loosely_start:.1f}x faster)"
    )
    print("ratios are loosely throughput / Kafka throughput (>1 means loosely is faster)")


if __name__ == "__main__":
    main()
