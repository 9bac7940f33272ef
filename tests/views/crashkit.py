"""The kill -9 harness shared by every sink's crash test.

``produce_events`` writes keyed JSON events; ``reference`` reads the topic back with a plain consumer and computes
what the views must contain; ``crash_loop`` runs ``loosely views run`` processes, SIGKILLs one of them at random
moments, restarts it, and finally lets them catch up. The event count comes from ``LOOSELY_VIEWS_CRASH_EVENTS``
(default small enough for CI; the 1M-event runs recorded in docs/views.md set it to 1000000).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
WORDS = ("red", "green", "blue", "shoes", "boots", "socks", "wool", "cotton", "linen", "silk", "leather", "canvas")


# pytest-timeout's limit for one crash test: CI's small default runs, or an hour for hand-made big runs.
CRASH_TIMEOUT_S = int(os.environ.get("LOOSELY_VIEWS_CRASH_TIMEOUT_S",
                                     "3600" if "LOOSELY_VIEWS_CRASH_EVENTS" in os.environ else "900"))


def pythonpath() -> str:
    """``PYTHONPATH`` for the processes a test starts: tests/ (the view modules), then the test run's own (a
    worktree's src/ comes before the installed package)."""
    return os.pathsep.join(p for p in (str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")) if p)


def view_group(view: str, sink_url: str) -> str:
    """The consumer group ``loosely views run`` uses for version 1 of ``view`` in the sink at ``sink_url``."""
    from loosely.views import default_groups, open_sink

    sink = open_sink(sink_url)
    try:
        return default_groups(view, 1, sink)[0]
    finally:
        sink.close()


def crash_events(default: int) -> int:
    return int(os.environ.get("LOOSELY_VIEWS_CRASH_EVENTS", default))


def crash_kills(default: int) -> int:
    return int(os.environ.get("LOOSELY_VIEWS_CRASH_KILLS", default))


def crash_keys(events: int) -> int:
    """Distinct keys: ``LOOSELY_VIEWS_CRASH_KEYS``, else one key per 10 events."""
    return int(os.environ.get("LOOSELY_VIEWS_CRASH_KEYS", max(10, events // 10)))


def crash_batch(default: int) -> str:
    """Records per sink call for the runners: ``LOOSELY_VIEWS_CRASH_BATCH``."""
    return os.environ.get("LOOSELY_VIEWS_CRASH_BATCH", str(default))


def create_topic(bootstrap: str, topic: str, partitions: int, replication: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([NewTopic(topic, partitions, replication)])
    fs[topic].result(60)


def produce_events(bootstrap: str, topic: str, n: int, keys: int, *, seed: int = 7) -> None:
    rng = random.Random(seed)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10_000,
                  "compression.type": "lz4", "acks": "all"})
    for seq in range(n):
        k = rng.randrange(keys)
        value = {"seq": seq, "title": f"{WORDS[k % 12]} {WORDS[seq % 12]}", "body": f"item {k} event {seq}"}
        while True:
            try:
                p.produce(topic, json.dumps(value).encode(), key=b"k%d" % k)
                break
            except BufferError:
                p.poll(0.05)
        if seq % 10_000 == 0:
            p.poll(0)
    assert p.flush(120) == 0


@dataclass
class Reference:
    counts: Counter[str] = field(default_factory=Counter)
    last: dict[str, dict[str, object]] = field(default_factory=dict)
    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    records: int = 0


def end_offsets(bootstrap: str, topic: str) -> dict[tuple[str, int], int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "crashkit-ends"})
    try:
        md = c.list_topics(topic, timeout=30).topics[topic]
        return {(topic, p): c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in md.partitions}
    finally:
        c.close()


def reference(bootstrap: str, topic: str) -> Reference:
    """What every view must end with, computed straight from the topic."""
    ref = Reference(ends=end_offsets(bootstrap, topic))
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "crashkit-ref", "enable.auto.commit": False})
    c.assign([TopicPartition(t, p, 0) for (t, p) in ref.ends])
    want = sum(ref.ends.values())
    deadline = time.monotonic() + 600
    while ref.records < want:
        assert time.monotonic() < deadline, f"reference read only {ref.records} of {want}"
        for m in c.consume(10_000, 1.0):
            assert m.error() is None, m.error()
            k = m.key().decode()
            ref.counts[k] += 1
            ref.last[k] = json.loads(m.value())
            ref.records += 1
    c.close()
    return ref


def expected_rows(ref: Reference) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, n in ref.counts.items():
        out[f"{k}#n"] = n
        out[f"{k}#last"] = ref.last[k]["seq"]
    return out


def committed(bootstrap: str, group: str, topic: str) -> dict[tuple[str, int], int]:
    """The offsets ``group`` committed on each partition of ``topic``."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        ends = end_offsets(bootstrap, topic)
        return {(t.topic, t.partition): t.offset
                for t in c.committed([TopicPartition(t, p) for t, p in ends], timeout=30)}
    finally:
        c.close()


def compare(rows: dict[str, object], expected: dict[str, object]) -> None:
    missing = expected.keys() - rows.keys()
    extra = rows.keys() - expected.keys()
    wrong = {k: (rows[k], v) for k, v in expected.items() if k in rows and rows[k] != v}
    assert not missing and not extra and not wrong, (
        f"{len(missing)} missing, {len(extra)} extra, {len(wrong)} wrong, e.g. {list(wrong.items())[:5]}"
    )


def loosely_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loosely.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": pythonpath(), **env}, timeout=600, check=False)


@dataclass
class CrashReport:
    kills: int
    restarts: int
    seconds: float


class Runners:
    """``count`` ``loosely views run`` processes for one view; each can be SIGKILLed and restarted."""

    def __init__(self, argv: Sequence[str], count: int, env: dict[str, str], log_dir: Path,
                 own: Sequence[Sequence[str]] = ()) -> None:
        self.argv = list(argv)
        self.own = [list(a) for a in own]  # runner i's own arguments (after the shared ones), if any
        self.env = {**os.environ, "PYTHONPATH": pythonpath(), **env}
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self.starts = 0

    def start(self, i: int) -> None:
        out = open(self.log_dir / f"runner-{i}.log", "ab")  # noqa: SIM115 - the child keeps it
        # Static membership: runner i restarted after a kill -9 takes its partitions back at once. Without it the
        # restarted runner waits out its predecessor's session, and a kill every few seconds would mostly hit
        # runners that never got partitions.
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "loosely.cli.main", "views", "run", *self.argv,
             *(self.own[i] if i < len(self.own) else []), "--instance-id", f"runner-{i}"],
            env=self.env, stdout=out, stderr=subprocess.STDOUT,
        )
        out.close()
        self.starts += 1

    def kill(self, i: int) -> None:
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()

    def check_alive(self) -> None:
        for i, p in enumerate(self.procs):
            if p is not None and p.poll() is not None:
                log = (self.log_dir / f"runner-{i}.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"runner {i} exited with {p.returncode}:\n{log}")

    def stop(self) -> None:
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            if p is not None:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def crash_loop(
    runners: Runners,
    *,
    kills: int,
    done: Callable[[], bool],
    seed: int = 1,
    pause_s: tuple[float, float] = (0.5, 3.0),
    timeout_s: float = CRASH_TIMEOUT_S - 120,
) -> CrashReport:
    """Start every runner; ``kills`` times, wait a random pause and SIGKILL a random runner, then restart it.
    Then wait until ``done()``, and stop them."""
    rng = random.Random(seed)
    t0 = time.monotonic()
    for i in range(len(runners.procs)):
        runners.start(i)
    killed = 0
    try:
        while killed < kills:
            time.sleep(rng.uniform(*pause_s))
            runners.check_alive()
            i = rng.randrange(len(runners.procs))
            runners.kill(i)
            killed += 1
            runners.start(i)
        while not done():
            assert time.monotonic() - t0 < timeout_s, "the view did not catch up in time"
            runners.check_alive()
            time.sleep(0.5)
    finally:
        runners.stop()
    return CrashReport(killed, runners.starts, time.monotonic() - t0)


def record_result(sink: str, events: int, runners: int, report: CrashReport, extra: str = "") -> None:
    """Print one line for docs/views.md (run pytest with -s to see it)."""
    print(f"\nCRASH-RESULT sink={sink} events={events} runners={runners} kills={report.kills} "
          f"starts={report.restarts} seconds={report.seconds:.1f} {extra}", flush=True)
