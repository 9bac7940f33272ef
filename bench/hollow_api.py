"""Hollow producer and consumer benchmark: loosely's Producer / Consumer against Java Hollow's, same data, same run.

    .venv/bin/python bench/hollow_api.py [--records 1000000] [--cycles 5] [--repeat 3]

Dataset: ``Item(id, a, b, c, d: int, ts: long, name: inline str, scores: list of 3 ints)`` keyed by ``id`` (the
dataset of ``bench/hollow_core.py``).  Cycle 1 adds every item; each later cycle changes 1 % of them (``i % 100 ==
0`` get the cycle number in ``a``), the rest are added again unchanged -- a full populate, as a
``HollowProducer.runCycle`` does: the populate function builds every item object and adds it (Python:
``state.add_all(generator)``; Java: ``state.add(item)`` in a loop).  The cycle ratio is the mean of cycles 2..N.
Both producers publish to a filesystem blob store with their defaults: integrity check on, a snapshot every cycle,
16 MB type shards.

Measured, each side in a fresh process:

* *cycle*: the whole ``run_cycle`` (populate, write the four blobs, publish, integrity check, announce) and, inside
  it, the populate loop; the delta's size; wall time and CPU time (Java's counts every JVM thread: its producer
  writes shards in parallel, JIT compilers and the collector run beside it);
* *consumer refresh*: a consumer holding the last-but-one version refreshes to the last (cold: first delta in
  the process), goes back with the reverse delta, and refreshes again (warm); Python also reports the growth of
  its peak resident memory during the cold refresh, Java the bytes its refresh thread allocated and the heap
  after GC before and after.

Then the physical floors (``bench/_floors.py``), measured after the runs: each Python cycle (mean of cycles 2..N)
against a memcpy of the bytes it published (snapshot, delta and reverse delta) and against writing them to the
blob store's disk with one ``fsync``; the consumer refreshes against a memcpy of the delta and a read of it from
the disk on a cold cache.  The Java cycles are printed against the same floors.

Blob stores go to ``bench/out/api-python`` and ``bench/out/api-java``.  ``--side python|java`` runs one side only;
``--repeat R`` runs both sides R times, alternating, and prints every run (the ratios are per run: on a shared
machine, compare within a run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(REPO / "tests"))

from _floors import (  # noqa: E402 -- bench/_floors.py
    disk_read_bytes_per_s,
    disk_write_bytes_per_s,
    memcpy_bytes_per_s,
    time_ratio,
)
from _needs import require_commands  # noqa: E402 -- bench/_needs.py
from loosely.hollow.core import INLINE, Int64, hollow_type  # noqa: E402


@hollow_type(primary_key=("id",))
@dataclass(slots=True)
class Item:
    id: int
    a: int
    b: int
    c: int
    d: int
    ts: Int64
    name: Annotated[str, INLINE]
    scores: list[int]


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def item(i: int, version: int = 1) -> Item:
    """Keep in step with HollowApiBench.item()."""
    return Item(i, (i * 31) % 1000003 + (version - 1), i % 97, _int32((i * 7) ^ 0x5A5A), -i,
                1_600_000_000_000 + i * 1000, f"item-{i}", [i % 50, (i >> 3) % 50, (i * 11) % 50])


def _peak_rss_reset() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # "5": reset the peak resident set size (VmHWM)
        f.write("5")


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def run_python_producer(store_dir: Path, n: int, cycles: int) -> list[dict[str, float]]:
    from loosely.hollow.api import FilesystemBlobStore, Producer, Version, WriteState

    shutil.rmtree(store_dir, ignore_errors=True)
    store = FilesystemBlobStore(store_dir)
    counter = iter(range(1, 1 << 30))
    minter = type("Minter", (), {"mint": lambda self, last: Version(next(counter))})()
    producer = Producer(publisher=store, announcer=store, data_model=[Item], version_minter=minter)
    out = []
    for cycle in range(1, cycles + 1):
        populate_s = [0.0]

        def populate(state: WriteState, cycle: int = cycle, populate_s: list[float] = populate_s) -> None:
            t0 = time.perf_counter()
            state.add_all(item(i, cycle if cycle > 1 and i % 100 == 0 else 1) for i in range(n))
            populate_s[0] = time.perf_counter() - t0

        t0, cpu0 = time.perf_counter(), time.process_time()
        v = producer.run_cycle(populate)
        took, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        assert v == cycle
        stats = producer.statistics().last_cycle
        assert stats is not None
        out.append({"cycle": cycle, "version": v, "cycle_s": took, "cycle_cpu_s": cpu, "populate_s": populate_s[0],
                    "delta_bytes": stats.delta_bytes, "snapshot_bytes": stats.snapshot_bytes,
                    "reverse_delta_bytes": stats.reverse_delta_bytes,
                    **{f"{k}_ms": ms for k, ms in stats.stage_ms.items()}})
        print(json.dumps(out[-1]), flush=True)
    return out


def run_python_consumer(store_dir: Path, v1: int, v2: int) -> dict[str, float]:
    from loosely.hollow.api import Consumer, FilesystemBlobStore, Version

    store = FilesystemBlobStore(store_dir)
    consumer = Consumer(retriever=store)
    consumer.refresh_to(Version(v1))
    rss0 = _status_kb("VmRSS")
    _peak_rss_reset()
    t0 = time.perf_counter()
    consumer.refresh_to(Version(v2))
    cold = time.perf_counter() - t0
    peak = _status_kb("VmHWM") - rss0
    consumer.refresh_to(Version(v1))
    t0 = time.perf_counter()
    consumer.refresh_to(Version(v2))
    warm = time.perf_counter() - t0
    assert consumer.version == v2 and consumer.statistics().double_snapshots == 0
    result = {"refresh_cold_s": cold, "refresh_warm_s": warm, "refresh_peak_rss_growth_bytes": peak * 1024,
              "rss_before_bytes": rss0 * 1024}
    print(json.dumps(result), flush=True)
    return result


def _java_cp() -> str:
    from hollow.javarun import compile_java

    java = compile_java(OUT / "classes-api")
    return f"{java.classes}{os.pathsep}{java.jar}"


def run_java(cp: str, *args: str) -> list[dict[str, float]]:
    out = subprocess.run(["java", "-Xmx4g", "-cp", cp, "HollowApiBench", *args], capture_output=True, text=True,
                         check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _steady(run: dict[str, object], key: str) -> float:
    """Mean of ``key`` over the cycles after the first, Python over Java."""
    def mean(cycles: object) -> float:
        values = [c[key] for c in cycles[1:]]  # type: ignore[index]
        return float(sum(values) / len(values))

    return mean(run["python_cycles"]) / mean(run["java_cycles"])


def _self(*args: str) -> list[dict[str, float]]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--side", choices=["both", "python", "java"], default="both")
    p.add_argument("--repeat", type=int, default=1, help="runs of both sides, alternating")
    p.add_argument("--child", choices=["producer", "consumer"], help=argparse.SUPPRESS)
    args = p.parse_args()
    n, cycles = args.records, args.cycles
    py_dir, java_dir = OUT / "api-python", OUT / "api-java"
    if args.child == "producer":
        run_python_producer(py_dir, n, cycles)
        return
    if args.child == "consumer":
        run_python_consumer(py_dir, cycles - 1, cycles)
        return
    if args.side in ("both", "java"):
        require_commands("java", "javac", why="the Java side runs Java Hollow on a JDK 17+ (scripts/bootstrap); "
                                              "--side python runs without it")
    OUT.mkdir(exist_ok=True)
    results: dict[str, object] = {"records": n, "cycles": cycles, "runs": []}
    cp = _java_cp() if args.side in ("both", "java") else ""
    for _ in range(args.repeat):  # the sides alternate, so a change of machine load hits both
        run: dict[str, object] = {}
        if args.side in ("both", "python"):
            run["python_cycles"] = _self("--child", "producer", "--records", str(n), "--cycles", str(cycles))
            run["python_consumer"] = _self("--child", "consumer", "--records", str(n), "--cycles", str(cycles))[0]
        if args.side in ("both", "java"):
            shutil.rmtree(java_dir, ignore_errors=True)
            run["java_cycles"] = run_java(cp, "produce", str(java_dir), str(n), str(cycles))
            run["java_consumer"] = run_java(cp, "consume", str(java_dir), str(cycles - 1), str(cycles))[0]
        if args.side == "both":
            py_r, j_r = run["python_consumer"], run["java_consumer"]
            run["ratios"] = {  # cycles 2.. (1 % changed), averaged: the first cycle adds everything
                "cycle_python_over_java": _steady(run, "cycle_s"),
                "cycle_cpu_python_over_java": _steady(run, "cycle_cpu_s"),
                "refresh_cold_python_over_java": py_r["refresh_cold_s"] / j_r["refresh_cold_s"],  # type: ignore[index]
                "refresh_warm_python_over_java": py_r["refresh_warm_s"] / j_r["refresh_warm_s"],  # type: ignore[index]
            }
        results["runs"].append(run)  # type: ignore[attr-defined]
        print(json.dumps(run), file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))
    if args.side in ("both", "python"):
        report_floors(results["runs"], OUT)  # type: ignore[arg-type]


def _mean(cycles: list[dict[str, float]], key: str) -> float:
    later = cycles[1:] or cycles
    return sum(c[key] for c in later) / len(later)


def report_floors(runs: list[dict[str, object]], directory: Path) -> None:
    """Each run's cycle and refreshes against what the machine itself does with the same bytes (bench/_floors.py)."""
    memcpy, write, read = memcpy_bytes_per_s(), disk_write_bytes_per_s(directory), disk_read_bytes_per_s(directory)
    print(f"\nagainst the physical floors (bench/_floors.py):\n  {memcpy}\n  {write}\n  {read}")
    for i, run in enumerate(runs, 1):
        cycles: list[dict[str, float]] = run["python_cycles"]  # type: ignore[assignment]
        published = _mean(cycles, "snapshot_bytes") + _mean(cycles, "delta_bytes") + _mean(cycles,
                                                                                            "reverse_delta_bytes")
        delta = cycles[-1]["delta_bytes"]
        print(f"  run {i}: a cycle publishes {published / 1e6:.1f} MB (snapshot, delta, reverse delta); the last "
              f"delta is {delta / 1e6:.2f} MB")
        sides = [("python", cycles)] + ([("java", run["java_cycles"])] if "java_cycles" in run else [])
        for side, cs in sides:
            took = _mean(cs, "cycle_s")  # type: ignore[arg-type]
            print("    " + time_ratio(f"{side} cycle against a memcpy of those bytes", took,
                                      memcpy.seconds_for(published)))
            print("    " + time_ratio(f"{side} cycle against writing them to the disk", took,
                                      write.seconds_for(published)))
        for side in ("python", "java"):
            c = run.get(f"{side}_consumer")
            if not isinstance(c, dict):
                continue
            for what in ("cold", "warm"):
                print("    " + time_ratio(f"{side} refresh {what} against a memcpy of the delta",
                                          c[f"refresh_{what}_s"], memcpy.seconds_for(delta)))
            print("    " + time_ratio(f"{side} refresh cold against reading the delta from the disk",
                                      c["refresh_cold_s"], read.seconds_for(delta)))


if __name__ == "__main__":
    main()
