"""End to end, in separate OS processes: a producer and three consumers (``_e2e_node.py``) on the filesystem
store and on SeaweedFS; a producer killed and restarted, a blob store that goes away and comes back, a corrupt
blob, and two producers racing for leadership on loosely's broker (killed, and paused with SIGSTOP).

Consumers report every version they reach with the state's checksum; the producer reports the checksum of every
version it announces; the tests compare them, so "the consumers caught up" means "with exactly the data".
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from compat.hollow._services import Broker, Weed

TESTS = Path(__file__).resolve().parents[2]
TIMEOUT_S = 90  # generous: the suite shares two cores with others
SESSION_MS = 3_000


class Node:
    """One ``_e2e_node`` process; its JSON events are collected as they come."""

    def __init__(self, role: str, store: str, *extra: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
        self.p = subprocess.Popen(
            [sys.executable, "-m", "compat.hollow._e2e_node", role, "--store", store, *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._lock = threading.Lock()
        for stream, sink in ((self.p.stdout, self._event), (self.p.stderr, self.stderr.append)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    def _pump(self, stream: IO[str] | None, sink: Callable[[str], None]) -> None:
        assert stream is not None
        for line in stream:
            sink(line.rstrip("\n"))

    def _event(self, line: str) -> None:
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            return
        with self._lock:
            self.events.append(e)

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["event"] == kind]

    def send(self, line: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def signal(self, sig: int) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, sig)

    def stop(self) -> None:
        self.signal(signal.SIGKILL)
        self.p.wait(30)

    def describe(self) -> str:
        with self._lock:
            tail = self.events[-5:]
        return f"pid {self.p.pid}: last events {tail}\nstderr: {' | '.join(self.stderr[-10:])}"


def wait_until(cond: Callable[[], bool], what: str, nodes: list[Node], timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n" + "\n".join(n.describe() for n in nodes))
        time.sleep(0.1)


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for n in started:
        n.stop()


def _start(nodes: list[Node], role: str, store: str, *extra: str) -> Node:
    n = Node(role, store, *extra)
    nodes.append(n)
    wait_until(lambda: bool(n.of("started")), f"{role} to start", [n])
    return n


def _cycle(producer: Node, all_nodes: list[Node], arg: str = "") -> dict[str, Any]:
    before = len(producer.of("announced")) + len(producer.of("error"))
    producer.send(f"cycle {arg}".strip())
    wait_until(lambda: len(producer.of("announced")) + len(producer.of("error")) > before, "a cycle", all_nodes)
    errors = producer.of("error")
    last = producer.of("announced")[-1] if producer.of("announced") else None
    assert last is not None and (not errors or errors[-1]["t"] < last["t"]), producer.describe()
    return last


def _caught_up(consumers: list[Node], announced: dict[str, Any]) -> Callable[[], bool]:
    def check() -> bool:
        return all(c.of("version") and c.of("version")[-1]["version"] == announced["version"] for c in consumers)

    return check


def _assert_consistent(consumers: list[Node], producers: list[Node], killed: Node | None = None) -> None:
    """Every version a consumer reached has the checksum its producer announced; nobody double-snapshotted.

    A producer killed with SIGKILL while it cycles on its own timer may die between announcing a version and
    printing it. One version nobody reported is therefore accepted, and only between the killed producer's last
    report and the next producer's first announcement (that producer carried on from it, and its own checksums
    are checked)."""
    truth = {e["version"]: e["checksum"] for p in producers for e in p.of("announced")}
    gap: tuple[int, int] | None = None
    if killed is not None:
        last = max((e["version"] for e in killed.of("announced")), default=0)
        gap = (last, min((v for v in truth if v > last), default=1 << 62))
    unreported: set[int] = set()
    for c in consumers:
        reached = c.of("version")
        assert reached, c.describe()
        for e in reached:
            if e["version"] not in truth and gap is not None and gap[0] < e["version"] < gap[1]:
                unreported.add(e["version"])
                continue
            assert truth.get(e["version"]) == e["checksum"], (e, c.describe())
        assert reached[-1]["snapshots"] == 1 and reached[-1]["double_snapshots"] == 0, c.describe()
    assert len(unreported) <= 1, f"versions no producer announced: {sorted(unreported)}"


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Weed]:
    w = Weed(tmp_path_factory.mktemp("weed-e2e")).start()
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture(params=["filesystem", "seaweedfs"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """(store spec, take the store away, bring it back)."""
    if request.param == "filesystem":
        d = tmp_path / "store"
        d.mkdir()
        off = tmp_path / "store.away"
        yield f"fs:{d}", lambda: os.rename(d, off), lambda: os.rename(off, d)
    else:
        w: Weed = request.getfixturevalue("weed")
        yield f"s3:{w.endpoint},{Weed.BUCKET},{uuid.uuid4().hex[:8]}", w.stop, lambda: w.start() and None


def test_kill_and_restart_the_producer(store: tuple[str, Any, Any], nodes: list[Node]) -> None:
    spec, _, _ = store
    consumers = [_start(nodes, "consumer", spec) for _ in range(3)]
    producer = _start(nodes, "producer", spec)
    for _ in range(3):
        last = _cycle(producer, nodes)
    wait_until(_caught_up(consumers, last), "consumers to reach the first producer's last version", nodes)
    producer.signal(signal.SIGKILL)
    restarted = _start(nodes, "producer", spec, "--seed", "2")
    for _ in range(3):
        last = _cycle(restarted, nodes)
    first_new = restarted.of("announced")[0]["version"]
    assert first_new > producer.of("announced")[-1]["version"]
    wait_until(_caught_up(consumers, last), "consumers to follow the restarted producer", nodes)
    _assert_consistent(consumers, [producer, restarted])  # one snapshot each: the restart continued the chain


def test_the_blob_store_goes_away_and_comes_back(store: tuple[str, Any, Any], nodes: list[Node]) -> None:
    spec, take_away, bring_back = store
    consumers = [_start(nodes, "consumer", spec) for _ in range(3)]
    producer = _start(nodes, "producer", spec)
    before = _cycle(producer, nodes)
    wait_until(_caught_up(consumers, before), "consumers to load", nodes)
    take_away()
    try:
        away_at = time.time()
        producer.send("cycle")  # fails: the store is away; the producer rolls back
        wait_until(lambda: bool(producer.of("error")), "the producer's cycle to fail", nodes)
        time.sleep(2.0)
        for c in consumers:  # still answering from memory, from the version they had
            serving = [e for e in c.of("serving") if e["t"] > away_at + 0.5]
            assert len(serving) >= 5, c.describe()
            assert all(e["version"] == before["version"] and e["records"] == before["records"] for e in serving)
    finally:
        bring_back()
    after = _cycle(producer, nodes)
    wait_until(_caught_up(consumers, after), "consumers to catch up after the outage", nodes)
    _assert_consistent(consumers, [producer])


def test_a_corrupt_blob_is_refused_until_repaired(tmp_path: Path, nodes: list[Node]) -> None:
    d = tmp_path / "store"
    d.mkdir()
    spec = f"fs:{d}"
    consumers = [_start(nodes, "consumer", spec, "--failed-ttl-ms", "1500") for _ in range(3)]
    producer = _start(nodes, "producer", spec, "--snapshot-every", "1000", "--good-dir", str(tmp_path))
    v1 = _cycle(producer, nodes)
    wait_until(_caught_up(consumers, v1), "consumers to load v1", nodes)
    v2 = _cycle(producer, nodes, "corrupt")  # announced, but its delta has a flipped byte (no snapshot of v2)
    time.sleep(3.0)
    for c in consumers:
        assert c.of("version")[-1]["version"] == v1["version"], c.describe()
        latest = c.of("serving")[-1]
        assert latest["version"] == v1["version"] and "CRC-32C is" in (latest["last_error"] or ""), c.describe()
    (good,) = tmp_path.glob("delta-*.good")
    repaired = d / ".repair"
    shutil.copyfile(good, repaired)
    os.replace(repaired, d / good.name.removesuffix(".good"))  # an operator restores the blob from a backup
    wait_until(_caught_up(consumers, v2), "consumers to take the repaired delta", nodes)
    _assert_consistent(consumers, [producer])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker", "group.min.session.timeout.ms=500").start()
    try:
        yield b
    finally:
        b.stop()


def test_two_producers_race_one_announces_the_standby_takes_over(
    tmp_path: Path, broker: Broker, nodes: list[Node]
) -> None:
    d = tmp_path / "store"
    d.mkdir()
    spec = f"fs:{d}"
    kafka = f"{broker.bootstrap_servers},hollow-announce,movies"
    common = ("--kafka", kafka, "--every-ms", "300", "--session-timeout-ms", str(SESSION_MS))
    a = _start(nodes, "producer", spec, *common, "--seed", "1")
    wait_until(lambda: bool(a.of("announced")), "the first producer to lead and announce", nodes)
    b = _start(nodes, "producer", spec, *common, "--seed", "2")
    consumers = [_start(nodes, "consumer", spec, "--kafka", kafka) for _ in range(3)]
    time.sleep(4.0)
    assert a.of("leader") and not b.of("leader") and not b.of("announced")  # only the leader announces
    wait_until(lambda: all(c.of("version") for c in consumers), "consumers to load", nodes)

    # kill -9 the leader: the standby takes over after the session timeout, and the chain continues
    last_a = a.of("announced")[-1]["version"]
    killed_at = time.time()
    a.signal(signal.SIGKILL)
    wait_until(lambda: bool(b.of("announced")), "the standby to take over and announce", nodes)
    takeover_s = b.of("leader")[0]["t"] - killed_at
    print(f"takeover after SIGKILL of the leader: {takeover_s:.2f} s (session timeout {SESSION_MS} ms)")
    assert takeover_s < SESSION_MS / 1000 + 5.0, f"takeover took {takeover_s:.1f}s"
    assert b.of("announced")[0]["version"] > last_a
    wait_until(_caught_up(consumers, b.of("announced")[-1]), "consumers to follow the new leader", nodes)
    time.sleep(1.0)
    _assert_consistent(consumers, [a, b], killed=a)

    # pause the leader with SIGSTOP: a standby takes over; the old leader wakes up, is fenced, announces nothing
    c = _start(nodes, "producer", spec, *common, "--seed", "3")
    time.sleep(2.0)
    stopped_at = time.time()
    b.signal(signal.SIGSTOP)
    wait_until(lambda: bool(c.of("announced")), "the third producer to take over from the paused one", nodes)
    print(f"takeover after SIGSTOP of the leader: {c.of('leader')[0]['t'] - stopped_at:.2f} s")
    b.signal(signal.SIGCONT)
    wait_until(lambda: bool(b.of("fenced") or b.of("not-leader") or b.of("standby")),
               "the paused leader to find it was deposed", nodes)
    count = len(c.of("announced"))
    wait_until(lambda: len(c.of("announced")) > count + 2, "the new leader to keep announcing", nodes)
    first_c = c.of("announced")[0]["version"]
    late = [e for e in b.of("announced") if e["version"] > first_c]
    assert late == [], f"the paused leader announced after losing leadership: {late}"
    wait_until(_caught_up(consumers, c.of("announced")[-1]), "consumers to follow the third producer", nodes)
    _assert_consistent(consumers, [a, b, c], killed=a)
