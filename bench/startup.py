"""How fast the command line starts: ``loosely produce`` of one message against kcat's, same broker, same run.

kcat starts in milliseconds and the talk runs it in loops, so ``loosely produce`` must too. Three numbers:

- the import of :mod:`loosely.protocol.records` (modules loaded and milliseconds, from ``python -X importtime``):
  the codec every fast path needs, and the one that must not pull in kio (and with it hypothesis);
- ``loosely produce -h`` (parse the command line and print the help: the interpreter's and the CLI's start-up);
- one message produced with ``loosely produce`` and with ``kcat -P`` (start, connect, Metadata, Produce, exit)
  to an embedded loosely broker, alternating, ``--repeat`` times each.

Prints the medians (wall and CPU seconds: on a loaded machine the CPU time is the steadier) and loosely's time as
a multiple of kcat's. Then the physical floors (``bench/_floors.py``): the interpreter's own bare start,
``python -c pass`` and ``python -S -c pass`` (no site module, no ``.pth`` files), measured the same way; both
loosely figures are printed as multiples of them. Usage::

    .venv/bin/python bench/startup.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import uuid

from _floors import interpreter_start_s, time_ratio  # bench/_floors.py
from _needs import KCAT, require_commands  # bench/_needs.py
from loosely.testing import embedded_broker

LOOSELY = [sys.executable, "-m", "loosely.cli.main"]


def import_cost(module: str) -> tuple[int, float]:
    """``(modules imported, total milliseconds)`` for ``import module`` in a fresh interpreter."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                       text=True, check=True)
    rows = [line.split("|") for line in r.stderr.splitlines() if line.startswith("import time:") and "self" not in line]
    top = [row for row in rows if not row[2].startswith("  ")]  # top-level imports: their cumulative time adds up
    return len(rows), sum(int(row[1]) for row in top) / 1000


def wall(argv: list[str], stdin: bytes = b"") -> float:
    """Seconds from start to exit of one run of ``argv``."""
    return timed(argv, stdin)[0]


def timed(argv: list[str], stdin: bytes = b"") -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of one run; on a loaded machine the CPU time is the steadier figure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(argv, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    require_commands("kcat", why=KCAT)
    modules, ms = import_cost("loosely.protocol.records")
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} {platform.node()}, load average {os.getloadavg()[0]:.2f}, "
          f"median of {args.repeat}")
    print(f"import loosely.protocol.records: {modules} modules, {ms:.0f} ms")
    helps = [timed([*LOOSELY, "produce", "-h"]) for _ in range(args.repeat)]
    print(f"loosely produce -h: {statistics.median(w for w, _ in helps) * 1000:.0f} ms, "
          f"CPU {statistics.median(c for _, c in helps) * 1000:.0f} ms")
    with embedded_broker() as broker:
        b = broker.bootstrap_servers
        topic = f"startup-{uuid.uuid4().hex[:8]}"
        wall([*LOOSELY, "produce", "-b", b, "-t", topic], b"warm-up\n")  # the topic exists before the clocks run
        times: dict[str, list[tuple[float, float]]] = {"kcat -P": [], "loosely produce": []}
        for _ in range(args.repeat):
            times["kcat -P"].append(timed(["kcat", "-P", "-b", b, "-t", topic], b"one\n"))
            times["loosely produce"].append(timed([*LOOSELY, "produce", "-b", b, "-t", topic], b"one\n"))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    for k, (w, c) in med.items():
        print(f"one message, {k}: {w * 1000:.0f} ms, CPU {c * 1000:.0f} ms")
    print(f"loosely/kcat start-up and one message: {med['loosely produce'][0] / med['kcat -P'][0]:.2f}x")
    floors = [interpreter_start_s(repeat=args.repeat), interpreter_start_s("-S", repeat=args.repeat)]
    print("\nagainst the physical floors (bench/_floors.py):")
    help_wall = statistics.median(w for w, _ in helps)
    for floor in floors:
        print(f"  {floor}")
        print("    " + time_ratio(f"loosely produce -h against {floor.name}", help_wall, floor.seconds))
        print("    " + time_ratio(f"one message, loosely produce, against {floor.name}", med["loosely produce"][0],
                                  floor.seconds))


if __name__ == "__main__":
    main()
