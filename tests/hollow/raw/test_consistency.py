"""RAW Hollow under faults, checked: several processes write (compare-and-set included, in-process and over the
writer's HTTP API) and read one dataset on a real loosely broker while the broker restarts, the producer is killed
with SIGKILL and restarted, so is a reading client, and the leading writer is killed with SIGKILL (its standby
takes over); every operation is recorded by the process that ran it and the whole history goes through the
checker (checker.py). Then clients broken on purpose -- one ignoring the overlay, one answering strong reads
without waiting -- must be caught by the same checker.

The processes are in _workers.py.  The broker runs as a child process on a fixed port so that it can restart
where the clients expect it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .checker import Outcome, Rule, check, load_history

pytest.importorskip("loosely.hollow.raw", reason="loosely.hollow.raw (issue 13) is not merged yet")

WORKERS = Path(__file__).with_name("_workers.py")


class Broker:
    def __init__(self, data_dir: Path) -> None:
        from loosely.testing import free_port

        self.data_dir, self.port = data_dir, free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "loosely.cli.main", "broker", "--data-dir",
                                      str(self.data_dir), "--listen", self.bootstrap],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # its first line: it listens

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("raw-broker"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


class Run:
    """The processes of one harness run; they stop when ``finish`` says so, or at ``until_s`` at the latest."""

    def __init__(self, broker: Broker, d: Path, name: str, seconds: float, **cfg: Any) -> None:
        self.dir = d
        self.cfg = {"name": name, "bootstrap": broker.bootstrap, "store": str(d / "store"), "dir": str(d),
                    "keys": 3, "until_s": time.monotonic() + seconds, **cfg}
        self.procs: dict[str, subprocess.Popen[str]] = {}

    def spawn(self, role: str, process: str, **cfg: Any) -> subprocess.Popen[str]:
        argv = [sys.executable, str(WORKERS), role, json.dumps({**self.cfg, **cfg, "process": process})]
        with (self.dir / f"{process}.err").open("w") as err:  # the child holds its own copy of the descriptor
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            p.wait(30)
            raise AssertionError(f"{process} did not start:\n{(self.dir / f'{process}.err').read_text()[-3000:]}")
        self.procs[process] = p
        return p

    def kill(self, process: str) -> None:
        self.procs[process].send_signal(signal.SIGKILL)
        self.procs.pop(process).wait(10)
        (self.dir / f"leader-{process}").unlink(missing_ok=True)  # it cannot clean up after itself

    def leader(self, timeout_s: float = 20) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            marks = [p.name.removeprefix("leader-") for p in self.dir.glob("leader-*")]
            if len(marks) == 1 and marks[0] in self.procs:
                return marks[0]
            time.sleep(0.05)
        raise AssertionError(f"no single leader in {timeout_s} s")

    def finish(self) -> list[Any]:
        (self.dir / "stop").touch()
        for name, p in self.procs.items():
            assert p.wait(max(5.0, self.cfg["until_s"] - time.monotonic() + 30)) == 0, (
                f"{name} failed:\n{(self.dir / f'{name}.err').read_text()[-3000:]}")
        return load_history(sorted(self.dir.glob("*.jsonl")))

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)


def summary(history: list[Any]) -> Counter[str]:
    return Counter(f"{op.kind.value}/{op.outcome.value}" for op in history)


def test_history_under_faults_is_consistent(broker: Broker, tmp_path: Path) -> None:
    """Two writer services (leader and hot standby) behind HTTP, two client processes writing through
    ``RemoteWriter`` and reading back, two writer processes writing in-process, two readers, the producer."""
    from loosely.testing import free_port

    ports = [free_port(), free_port()]
    run = Run(broker, tmp_path, "cells", seconds=90, urls=[f"http://127.0.0.1:{p}" for p in ports], keys=4,
              partitions=2)  # tokens and strong reads span partitions
    try:
        run.spawn("producer", "producer")
        for i, port in enumerate(ports):
            run.spawn("writer", f"s{i + 1}", port=port, threads=1)
        for name in ("c1", "c2"):
            run.spawn("client", name)
        for name in ("r1", "r2"):
            run.spawn("reader", name)
        first = run.leader()
        time.sleep(2)
        run.kill("producer")  # kill -9 mid-cycle, maybe: the restarted one continues the delta chain
        run.spawn("producer", "producer-2")
        run.kill("r2")  # a client dies; its successor loads the newest version and tails from there
        run.spawn("reader", "r3")
        time.sleep(1)
        broker.stop()  # clients keep their state; strong reads and writes fail or wait meanwhile
        time.sleep(1)
        broker.start()
        time.sleep(2)
        run.kill(first)  # the leader dies with its writes in flight: the standby must take over
        second = run.leader()
        assert second != first
        time.sleep(3)  # the new leader and the clients following it write for a while
        history = run.finish()
    finally:
        run.close()
    counts = summary(history)
    violations = check(history)
    assert not violations, "\n".join(str(v) for v in violations[:20]) + f"\n{counts}"
    # the run did what it claims: conditional writes raced, strong and token reads ran, both leaders wrote, and
    # so did the remote clients
    assert counts["cas/ok"] >= 20 and counts["cas/failed"] >= 1, counts
    assert counts["get-strong/ok"] >= 50 and counts["get-after-token/ok"] >= 20, counts
    writers = {op.process.split("-")[0] for op in history if op.kind.is_write and op.outcome is Outcome.OK}
    assert writers == {"s1", "s2", "c1", "c2"}, writers


@pytest.mark.parametrize("broken, caught", [
    ("overlay", {Rule.AFTER_TOKEN, Rule.STALE_STRONG}),
    ("nowait", {Rule.AFTER_TOKEN, Rule.STALE_STRONG}),
])
def test_a_broken_client_is_caught(broker: Broker, tmp_path: Path, broken: str, caught: set[Rule]) -> None:
    """One writer process whose own client is broken reads back every write (strongly, then after its token):
    each read that misses the write it follows breaks a rule."""
    run = Run(broker, tmp_path, f"broken-{broken}", seconds=60, broken=broken, cycle_ms=2_000)
    try:
        run.spawn("producer", "producer")
        run.spawn("writer", "w", threads=1)
        run.leader()
        time.sleep(3)
        history = run.finish()
    finally:
        run.close()
    counts = summary(history)
    assert counts["cas/ok"] + counts["put/ok"] >= 5, counts
    rules = {v.rule for v in check(history)}
    assert rules & caught, (rules, summary(history))
    assert rules <= caught | {Rule.MONOTONIC, Rule.STRONG_ORDER}, rules

