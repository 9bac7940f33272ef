"""``loosely produce``/``consume`` against kcat on the talk's example, same broker, same run.

    seq N | awk '{printf "%s,{\\"id\\":\\"%s\\", value: \\"bar\\"}\\n", $1, $1}' | kcat -P -b B -t the-topic -K ','
    kcat -C -b B -t the-topic -o beginning -e -K ','

One loosely broker (``loosely broker`` in its own process) serves both clients. For each of ``--repeat`` rounds,
kcat and loosely each produce the N lines into a fresh topic, then each consumes one topic (the same one) to the
end. Prints the median seconds and messages per second of each, and loosely's throughput as a fraction of kcat's
(the issue's target: at least 0.8). Then the physical floors (``bench/_floors.py``, measured before the broker
starts): each median's bytes/s (the input file's bytes, which produce sends and consume prints) against loopback
TCP, which every byte crosses, and, for produce, against writing them to the broker's disk. Usage::

    .venv/bin/python bench/cli_vs_kcat.py [--messages 1000000] [--repeat 3] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _floors import disk_write_bytes_per_s, loopback_bytes_per_s, message_floors, rate_ratio  # bench/_floors.py
from _needs import KCAT, require_commands  # bench/_needs.py

LOOSELY = [sys.executable, "-m", "loosely.cli.main"]


def talk_input(n: int, path: Path) -> None:
    with path.open("wb") as f:
        f.writelines(b'%d,{"id":"%d", value: "bar"}\n' % (i, i) for i in range(1, n + 1))


def timed(argv: list[str], stdin: Path | None, expect_lines: int | None = None) -> float:
    t = time.perf_counter()
    with (stdin.open("rb") if stdin else open("/dev/null", "rb")) as f:
        r = subprocess.run(argv, stdin=f, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
    elapsed = time.perf_counter() - t
    if expect_lines is not None:
        lines = r.stdout.count(b"\n")
        assert lines == expect_lines, f"{argv[0]} printed {lines} lines, expected {expect_lines}"
    return elapsed


def start_broker(data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([*LOOSELY, "broker", "--data-dir", data_dir, "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    m = re.search(r"listening on (\S+)", line)
    assert m, line
    return proc, m.group(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bootstrap", help="an already running broker (default: start a loosely broker)")
    args = ap.parse_args()
    require_commands("kcat", why=KCAT)
    tmp = Path(tempfile.mkdtemp(prefix="cli-bench-"))
    proc = None
    try:
        loopback, disk = loopback_bytes_per_s(), disk_write_bytes_per_s(tmp)  # before the broker starts
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            proc, bootstrap = start_broker(str(tmp / "data"))
        data = tmp / "talk.txt"
        talk_input(args.messages, data)
        n = args.messages
        times: dict[str, list[float]] = {k: [] for k in ("kcat produce", "loosely produce", "kcat consume",
                                                          "loosely consume")}
        for _ in range(args.repeat):
            tk, tl = f"bench-kcat-{uuid.uuid4().hex[:8]}", f"bench-loosely-{uuid.uuid4().hex[:8]}"
            times["kcat produce"].append(timed(["kcat", "-P", "-b", bootstrap, "-t", tk, "-K", ","], data))
            times["loosely produce"].append(timed([*LOOSELY, "produce", "-b", bootstrap, "-t", tl, "-K", ","], data))
            consume = ["-C", "-b", bootstrap, "-t", tk, "-o", "beginning", "-e", "-K", ","]
            times["kcat consume"].append(timed(["kcat", *consume], None, n))
            times["loosely consume"].append(timed([*LOOSELY, "kcat", *consume], None, n))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"# {time.strftime('%Y-%m-%d')} {platform.node()} {platform.processor() or platform.machine()}, "
              f"{n} messages, median of {args.repeat}, broker {bootstrap}")
        print(f"{'':18} {'seconds':>8} {'msg/s':>10}")
        for k, v in med.items():
            print(f"{k:18} {v:8.2f} {n / v:10.0f}")
        for what in ("produce", "consume"):
            print(f"loosely/kcat {what} throughput: {med[f'kcat {what}'] / med[f'loosely {what}']:.2f}x")
        nbytes = data.stat().st_size
        print(f"\nagainst the physical floors (bench/_floors.py), {nbytes / 1e6:.1f} MB of input:\n  {loopback}\n"
              f"  {disk}\n  {message_floors(n, nbytes, loopback, disk)}")
        for k, v in med.items():
            print("  " + rate_ratio(k, nbytes / v, loopback))
            if k.endswith("produce"):
                print("  " + rate_ratio(k, nbytes / v, disk))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
