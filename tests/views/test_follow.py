"""Followers and pinned runners when versions switch and drop under them, in one process (the command line's
behaviour is tested in tests/compat/test_views_lifecycle.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer

from loosely.broker.server import BrokerThread
from loosely.views import (
    Add,
    Batch,
    Follower,
    Runner,
    RunnerConfig,
    SqliteSink,
    TopicPartition,
    VersionDropped,
    count_by_key,
)
from loosely.views._documents import DirectoryStore, DocumentSink
from views.crashkit import create_topic

NEVER_MS = 3_600_000  # a catalog check interval no test outlives: only a write can find the version gone


def produce(bootstrap: str, topic: str, n: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, b"", key=b"k%d" % (i % 7))
    assert p.flush(30) == 0


def wait_for(what: str, cond: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what}"
        time.sleep(0.05)


def in_thread(run: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """``run`` started in a thread, and the list that receives what it raised."""
    raised: list[BaseException] = []

    def body() -> None:
        try:
            run()
        except BaseException as e:
            raised.append(e)

    t = threading.Thread(target=body)
    t.start()
    return t, raised


def total(sink: SqliteSink, version: int) -> int:
    return sum(v for _, v in sink.scan("f", limit=100, version=version))  # type: ignore[misc]


def test_a_follower_whose_version_is_dropped_before_it_noticed_the_switch_moves_on(
        loosely: BrokerThread, tmp_path: Path, topic: str) -> None:
    bootstrap = loosely.bootstrap_servers
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 100)
    view = count_by_key("f", [topic])
    sink = SqliteSink(str(tmp_path / "v.db"))
    follower = Follower(lambda: view, sink, bootstrap, RunnerConfig(catalog_check_ms=NEVER_MS))
    t, failure = in_thread(follower.run)
    try:
        wait_for("v1 serves, complete", lambda: sink.serving_version("f") == 1 and total(sink, 1) == 100)
        other = SqliteSink(str(tmp_path / "v.db"))  # the rebuild, as another process would do it
        v2 = Runner(view.with_version(2), other, bootstrap, RunnerConfig(serve_when_caught_up=False))
        v2.run(until_caught_up=True, timeout_s=60)
        v2.close()
        other.switch("f", 2)
        other.drop("f", 1)
        other.close()
        produce(bootstrap, topic, 10)  # the follower's next write into v1 finds it dropped
        wait_for("v2 has the new records", lambda: total(sink, 2) == 110)
        assert follower.handovers == 1 and not failure
        assert follower.runner is not None and follower.runner.view.version == 2
    finally:
        follower.stop()
        t.join(60)
    assert not failure, failure
    sink.close()


def test_a_pinned_runner_stops_when_its_version_is_dropped(loosely: BrokerThread, tmp_path: Path,
                                                           topic: str) -> None:
    bootstrap = loosely.bootstrap_servers
    create_topic(bootstrap, topic, 1)
    produce(bootstrap, topic, 20)
    view = count_by_key("f", [topic])
    sink = SqliteSink(str(tmp_path / "v.db"))
    runner = Runner(view, sink, bootstrap, RunnerConfig(catalog_check_ms=100))
    t, done = in_thread(runner.run)
    wait_for("v1 serves", lambda: sink.serving_version("f") == 1 and total(sink, 1) == 20)
    other = SqliteSink(str(tmp_path / "v.db"))
    other.open(view.with_version(2))
    other.switch("f", 2)
    time.sleep(0.5)  # several catalog checks: a retired version keeps its pinned runner
    assert t.is_alive() and not done
    other.drop("f", 1)  # idle: the catalog check finds it
    t.join(30)
    runner.close()
    assert len(done) == 1 and isinstance(done[0], VersionDropped), done
    assert str(done[0]) == "f@1 was dropped from the sink"
    with pytest.raises(VersionDropped, match="was dropped"):  # a write into it is refused, not retried
        sink.apply(Batch.build([(TopicPartition(topic, 0), 20, 0, Add("k0", 1))]))
    other.close()
    sink.close()


@pytest.mark.parametrize("when", ["mid-batch", "after-the-writes"])
def test_a_document_version_dropped_under_a_batch_is_reported_dropped_and_left_empty(tmp_path: Path,
                                                                                     when: str) -> None:
    """A drop that lands while a runner writes a batch of documents (a rebuild's drop beside a runner that is still
    catching up) must read as the drop it is, not as a failed write, and leave no orphan documents behind."""
    root = tmp_path / "docs"
    dropper = DocumentSink(DirectoryStore(str(root)))
    view = count_by_key("d", ["t"])
    writes = [0]

    class DroppingStore(DirectoryStore):
        def write(self, path: str, data: bytes) -> None:
            if path.endswith(".json") and "/v1/" in path and not path.endswith("_meta.json"):
                writes[0] += 1
                if when == "mid-batch" and writes[0] == 3:
                    dropper.drop("d", 1)
            super().write(path, data)

        def sync_dir(self, prefix: str) -> None:
            if when == "after-the-writes":
                dropper.drop("d", 1)
            super().sync_dir(prefix)

    sink = DocumentSink(DroppingStore(str(root), fsync=False))
    sink.open(view)
    dropper.open(view.with_version(2))
    dropper.switch("d", 2)
    tp = TopicPartition("t", 0)
    with pytest.raises(VersionDropped, match="d@1 was dropped"):
        sink.apply(Batch.build([(tp, i, 0, Add(f"k{i}", 1)) for i in range(10)]))
    assert writes[0] >= 3
    assert not (root / "d" / "v1").exists()  # nothing the batch wrote is left
    assert [v.version for v in dropper.versions("d")] == [2]
    sink.close()
    dropper.close()
