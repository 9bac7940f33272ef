"""``loosely mirror`` against a plain kcat pipe between two brokers, same run.

    kcat -C -b A -t the-topic -o beginning -e -K '\\t' | kcat -P -b B -t copy -K '\\t'      (the baseline)
    loosely mirror --source A --source-alias a --target B --target-alias b --topics the-topic

Two loosely brokers (``loosely broker`` processes) hold the source and the targets. The source topic gets the
talk's N lines (key, value). Each round times the kcat pipe to its end and the mirror from its start until the
target partition holds all N records (the mirror also writes its progress, offset syncs and heartbeats, and keeps
headers and timestamps, which the pipe does not). Prints median seconds and records per second, and both as
bytes/s against the physical floors (``bench/_floors.py``: loopback TCP, a write+fsync). Usage::

    .venv/bin/python bench/mirror.py [--messages 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from _floors import disk_write_bytes_per_s, loopback_bytes_per_s, message_floors, rate_ratio  # bench/_floors.py
from _needs import KCAT, require_commands  # bench/_needs.py

LOOSELY = [sys.executable, "-m", "loosely.cli.main"]


def start_broker(data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([*LOOSELY, "broker", "--data-dir", data_dir, "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    m = re.search(r"listening on (\S+)", proc.stdout.readline().decode())
    assert m
    return proc, m.group(1)


def high_watermark(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "log_level": 0})
    try:
        return int(c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    except Exception:
        return 0
    finally:
        c.close()


def kcat_pipe(source: str, target: str, topic: str, copy: str) -> float:
    t = time.perf_counter()
    c = subprocess.Popen(["kcat", "-C", "-b", source, "-t", topic, "-o", "beginning", "-e", "-q", "-K", "\t"],
                         stdout=subprocess.PIPE)
    p = subprocess.run(["kcat", "-P", "-b", target, "-t", copy, "-K", "\t"], stdin=c.stdout, check=True)
    assert c.wait() == 0 and p.returncode == 0
    return time.perf_counter() - t


def loosely_mirror(source: str, target: str, topic: str, n: int) -> float:
    alias = f"a{uuid.uuid4().hex[:6]}"
    t = time.perf_counter()
    proc = subprocess.Popen([*LOOSELY, "mirror", "--source", source, "--source-alias", alias, "--target", target,
                             "--target-alias", "b", "--topics", topic], stderr=subprocess.DEVNULL)
    try:
        while high_watermark(target, f"{alias}.{topic}") < n:
            time.sleep(0.05)
        return time.perf_counter() - t
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    require_commands("kcat", why=KCAT)
    tmp = Path(tempfile.mkdtemp(prefix="mirror-bench-"))
    procs = []
    try:
        # the floors (bench/_floors.py) before the brokers start: a copy crosses loopback twice (out of the source,
        # into the target) and lands in the target's log, in this directory
        loopback, disk = loopback_bytes_per_s(), disk_write_bytes_per_s(tmp)
        src_proc, source = start_broker(str(tmp / "a"))
        dst_proc, target = start_broker(str(tmp / "b"))
        procs = [src_proc, dst_proc]
        n = args.messages
        topic = "the-topic"
        data = b"".join(b'%d,{"id":"%d", value: "bar"}\n' % (i, i) for i in range(1, n + 1))
        subprocess.run([*LOOSELY, "produce", "-b", source, "-t", topic, "-K", ","], input=data, check=True)
        pipe, mirror = [], []
        for _ in range(args.repeat):
            pipe.append(kcat_pipe(source, target, topic, f"copy-{uuid.uuid4().hex[:8]}"))
            mirror.append(loosely_mirror(source, target, topic, n))
        p, m = statistics.median(pipe), statistics.median(mirror)
        print(f"# {time.strftime('%Y-%m-%d')} {platform.node()} {platform.machine()}, {n} records, "
              f"median of {args.repeat}, loosely -> loosely")
        print(f"kcat pipe       {p:8.2f} s {n / p:10.0f} rec/s")
        print(f"loosely mirror  {m:8.2f} s {n / m:10.0f} rec/s")
        print(f"loosely mirror / kcat pipe throughput: {p / m:.2f}x")
        print(f"{loopback}\n{disk}\n  the talk's lines: {message_floors(n, len(data), loopback, disk)}")
        for name, seconds in (("kcat pipe", p), ("loosely mirror", m)):
            print(f"    {rate_ratio(name, len(data) / seconds, loopback)}")
            print(f"    {rate_ratio(name, len(data) / seconds, disk)}")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
