"""The runner against a real (embedded) broker: poison records, dead letters, a failing sink, backpressure."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from compat._support import Cluster
from loosely.broker.server import BrokerThread
from loosely.views import (
    JSON,
    Add,
    Batch,
    PoisonRecord,
    Put,
    Record,
    Runner,
    RunnerConfig,
    SinkError,
    SqliteSink,
    TopicPartition,
    View,
    count_by_key,
)
from loosely.views._policy import RetryLimits
from views.crashkit import create_topic


def produce(bootstrap: str, topic: str, values: list[bytes], key: bytes = b"k") -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for v in values:
        p.produce(topic, v, key=key)
    assert p.flush(30) == 0


def totals(r: Record[bytes, dict[str, int]]) -> Add | None:
    return None if r.value is None else Add("sum", r.value["n"])


def test_poison_record_stops_at_its_offset_and_loses_nothing(loosely: BrokerThread, tmp_path: Path,
                                                             topic: str) -> None:
    create_topic(loosely.bootstrap_servers, topic, 1)
    produce(loosely.bootstrap_servers, topic, [b'{"n": 1}', b'{"n": 2}', b"not json", b'{"n": 4}'])
    view = View("sums", 1, (topic,), totals, value=JSON)
    sink = SqliteSink(str(tmp_path / "v.db"))
    runner = Runner(view, sink, loosely.bootstrap_servers)
    with pytest.raises(PoisonRecord, match=rf"{topic}/0@2") as e:
        runner.run(until_caught_up=True, timeout_s=60)
    assert e.value.offset == 2
    runner.close()
    # the records before it are applied and the stored position names the poison record: a restart stops there
    assert sink.stored_positions() == {TopicPartition(topic, 0): 2}
    assert sink.get("sums", "sum", version=1) == 3
    again = Runner(view, sink, loosely.bootstrap_servers)
    with pytest.raises(PoisonRecord, match=rf"{topic}/0@2"):
        again.run(until_caught_up=True, timeout_s=60)
    again.close()
    assert sink.get("sums", "sum", version=1) == 3
    sink.close()


def test_dead_letter_policy_moves_bad_records_aside(loosely: BrokerThread, tmp_path: Path, topic: str) -> None:
    create_topic(loosely.bootstrap_servers, topic, 1)
    dlt = f"{topic}-dead"
    create_topic(loosely.bootstrap_servers, dlt, 1)
    produce(loosely.bootstrap_servers, topic, [b'{"n": 1}', b"\xff garbage", b'{"n": 4}'])
    sink = SqliteSink(str(tmp_path / "v.db"))
    runner = Runner(View("sums", 1, (topic,), totals, value=JSON), sink, loosely.bootstrap_servers,
                    RunnerConfig(on_poison="dead-letter", dead_letter_topic=dlt))
    stats = runner.run(until_caught_up=True, timeout_s=60)
    runner.close()
    assert (stats.records, stats.dead_lettered) == (3, 1)
    assert sink.get("sums", "sum", version=1) == 5
    c = Consumer({"bootstrap.servers": loosely.bootstrap_servers, "group.id": "dlt-check",
                  "auto.offset.reset": "earliest"})
    c.subscribe([dlt])
    m = None
    deadline = time.monotonic() + 30
    while m is None and time.monotonic() < deadline:
        m = c.poll(1)
    c.close()
    assert m is not None and m.value() == b"\xff garbage"
    headers = dict(m.headers() or [])
    assert headers["loosely.source.offset"] == b"1" and headers["loosely.source.topic"] == topic.encode()
    assert b"UnicodeDecodeError" in headers["loosely.error"]
    sink.close()


class FlakySink(SqliteSink):
    """Fails the first ``failures`` batches, then works; or sleeps in every batch (a slow sink)."""

    def __init__(self, path: str, failures: int = 0, delay_s: float = 0.0) -> None:
        super().__init__(path)
        self.failures = failures
        self.delay_s = delay_s

    def prepare(self, batch: Batch) -> Callable[[], None]:
        write = super().prepare(batch)

        def flaky_write() -> None:  # runs in the runner's writer thread, and again for each retry
            time.sleep(self.delay_s)
            if self.failures > 0:
                self.failures -= 1
                raise SinkError("disk on fire")
            write()

        return flaky_write


def test_a_failing_sink_is_retried_then_stops_the_runner_with_nothing_committed(
    loosely: BrokerThread, tmp_path: Path, topic: str
) -> None:
    create_topic(loosely.bootstrap_servers, topic, 1)
    produce(loosely.bootstrap_servers, topic, [b"x"] * 10)
    sink = FlakySink(str(tmp_path / "v.db"), failures=2)
    fast = RetryLimits(attempts_max=3, backoff_ms=10, backoff_ms_max=20)
    runner = Runner(count_by_key("c", [topic]), sink, loosely.bootstrap_servers, RunnerConfig(retry=fast))
    stats = runner.run(until_caught_up=True, timeout_s=60)
    runner.close()
    assert stats.retries == 2 and sink.get("c", "k", version=1) == 10
    broken = FlakySink(str(tmp_path / "w.db"), failures=100)
    runner = Runner(count_by_key("c", [topic]), broken, loosely.bootstrap_servers, RunnerConfig(retry=fast))
    with pytest.raises(SinkError, match=r"disk on fire.*after 3 attempts"):
        runner.run(until_caught_up=True, timeout_s=60)
    runner.close()
    assert broken.stored_positions() == {}  # nothing committed: a restart replays everything


def test_a_slow_sink_slows_the_view_not_the_producer(loosely: BrokerThread, tmp_path: Path, topic: str) -> None:
    create_topic(loosely.bootstrap_servers, topic, 1)
    sink = FlakySink(str(tmp_path / "v.db"), delay_s=0.2)
    runner = Runner(count_by_key("c", [topic]), sink, loosely.bootstrap_servers, RunnerConfig(batch_records_max=100))
    t = threading.Thread(target=runner.run, daemon=True)
    t.start()
    t0 = time.monotonic()
    produce(loosely.bootstrap_servers, topic, [b"x"] * 5_000)
    produce_s = time.monotonic() - t0
    # 5000 records at 100 per 0.2 s batch need about 10 s; the producer finished long before
    applied = runner.statistics().records
    assert produce_s < 5 and applied < 5_000, (produce_s, applied)
    deadline = time.monotonic() + 120
    while runner.statistics().records < 5_000:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    runner.stop()
    t.join(30)
    runner.close()
    assert sink.get("c", "k", version=1) == 5_000


def test_views_must_return_changes(loosely: BrokerThread, tmp_path: Path, topic: str) -> None:
    create_topic(loosely.bootstrap_servers, topic, 1)
    produce(loosely.bootstrap_servers, topic, [b"a"])
    view = View("bad", 1, (topic,), lambda r: [Put("a", 1), "oops"])  # type: ignore[arg-type,list-item]
    runner = Runner(view, SqliteSink(str(tmp_path / "v.db")), loosely.bootstrap_servers)
    with pytest.raises(PoisonRecord, match="not a Put, Add or Delete"):
        runner.run(until_caught_up=True, timeout_s=60)
    runner.close()


def test_a_view_of_an_empty_topic_is_caught_up_and_its_first_batch_applies_at_once(
        loosely: BrokerThread, tmp_path: Path, topic: str) -> None:
    create_topic(loosely.bootstrap_servers, topic, 2)
    sink = SqliteSink(str(tmp_path / "v.db"))
    runner = Runner(count_by_key("hits", [topic]), sink, loosely.bootstrap_servers)
    empty = runner.run(until_caught_up=True, timeout_s=60)
    assert (empty.records, empty.lag_total) == (0, 0)
    assert sink.stored_positions() == {}  # nothing read, nothing stored
    produce(loosely.bootstrap_servers, topic, [b"x"] * 5, key=b"a")
    done = threading.Event()
    worker = threading.Thread(target=lambda: (runner.run(), done.set()))
    worker.start()
    deadline = time.monotonic() + 60
    while sink.get("hits", "a", version=1) != 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.stop()
    worker.join(30)
    runner.close()
    assert done.is_set()
    assert sink.get("hits", "a", version=1) == 5
    # the empty partitions' "caught up at 0" is not a stored position: the batch's start matched the sink's
    assert runner.statistics().fenced == 0
    sink.close()


class InterferedSink(SqliteSink):
    """On its ``at``-th write, another writer (a second connection, as another runner would be) applies the next
    ``steal`` records first: the write, started from positions that no longer hold, must be fenced."""

    def __init__(self, path: str, topic: str, at: int, steal: int) -> None:
        super().__init__(path)
        self.topic, self.at, self.steal = topic, at, steal
        self.writes = 0

    def prepare(self, batch: Batch) -> Callable[[], None]:
        write = super().prepare(batch)

        def interfered() -> None:
            self.writes += 1
            if self.writes == self.at:
                tp = TopicPartition(self.topic, 0)
                start = self.stored_positions()[tp]
                other = SqliteSink(self.path)
                other.open(self._bound())
                other.apply(Batch.build([(tp, o, 0, Add(f"k{o % 10}", 1)) for o in range(start, start + self.steal)],
                                        starts={tp: start}))
                other.close()
            write()

        return interfered


@pytest.mark.parametrize("pipeline", [True, False])
def test_a_runner_whose_positions_moved_is_fenced_and_continues_from_the_stored_ones(
        loosely: BrokerThread, tmp_path: Path, topic: str, pipeline: bool) -> None:
    create_topic(loosely.bootstrap_servers, topic, 1)
    p = Producer({"bootstrap.servers": loosely.bootstrap_servers, "linger.ms": 5})
    for i in range(3_000):
        p.produce(topic, b"", key=f"k{i % 10}".encode())
    assert p.flush(30) == 0
    sink = InterferedSink(str(tmp_path / "v.db"), topic, at=3, steal=250)
    runner = Runner(count_by_key("c", [topic]), sink, loosely.bootstrap_servers,
                    RunnerConfig(poll_records_max=100, batch_records_max=200, pipeline=pipeline))
    stats = runner.run(until_caught_up=True, timeout_s=60)
    runner.close()
    assert stats.fenced == 1
    assert sink.stored_positions() == {TopicPartition(topic, 0): 3_000}
    # every record counted once: the stolen ones by the other writer, the rest by the runner after reseeking
    assert {k: sink.get("c", k, version=1) for k in (f"k{i}" for i in range(10))} == {f"k{i}": 300 for i in range(10)}
    sink.close()


def test_a_view_of_a_topic_written_in_transactions_catches_up_past_the_commit_markers(
        cluster: Cluster, tmp_path: Path, topic: str) -> None:
    """A transactional topic ends with a commit marker, which no consumer is handed: the view must still count
    as caught up (served, lag 0) once it has read every committed record, on loosely's broker as on Kafka's."""
    create_topic(cluster.bootstrap_servers, topic, 1)
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "transactional.id": f"tx-{topic}"})
    p.init_transactions(30)
    for values in ([b'{"n": 1}', b'{"n": 2}'], [b'{"n": 40}']):  # two transactions: markers at 2 and 4
        p.begin_transaction()
        for v in values:
            p.produce(topic, v, key=b"k")
        p.commit_transaction(30)
    sink = SqliteSink(str(tmp_path / "v.db"))
    runner = Runner(View("totals", 1, (topic,), totals, value=JSON), sink, cluster.bootstrap_servers)
    stats = runner.run(until_caught_up=True, timeout_s=60)
    runner.close()
    assert (stats.records, stats.lag_total, sink.get("totals", "sum", version=1)) == (3, 0, 43)
    assert sink.serving_version("totals") == 1
    assert sink.stored_positions() == {TopicPartition(topic, 0): 4}  # after the last record, before its marker
    sink.close()


@pytest.mark.parametrize("source", ["librdkafka", "batch consumer"])
@pytest.mark.parametrize("fences_max", [3, 1], ids=["joins again", "stops"])
def test_a_runner_fenced_by_its_instance_id_joins_again_or_stops_when_it_keeps_happening(
        cluster: Cluster, tmp_path: Path, topic: str, source: str, fences_max: int,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A JoinGroup with the runner's group.instance.id fences it (after a broker kill, that can be the runner's own
    retry): it joins again and reads on, as often as it happens; fenced more than FENCES_MAX times within the window
    (1 here: at the second intruder), another runner has its id, and it stops with a sentence that says so.

    Each intruder comes once the runner's new consumer holds the partition. Records applied prove nothing there: a
    replaced member reads on until its next Heartbeat or OffsetCommit tells it, and an intruder that joins before
    the runner's new consumer does is replaced by it in turn, so the runner is fenced once, not twice."""
    from loosely.views import _runner

    monkeypatch.setattr(_runner, "FENCES_MAX", fences_max)
    caplog.set_level(logging.INFO, logger=_runner.__name__)
    b = cluster.bootstrap_servers
    create_topic(b, topic, 1)
    produce(b, topic, [b"x"] * 5)
    if source == "librdkafka":  # a view in Python reads through confluent-kafka
        view: View[object, object] = View("c", 1, (topic,), lambda r: Add(r.key.decode(), 1))  # type: ignore[union-attr]
        consumer = {"group.instance.id": "runner-a", "heartbeat.interval.ms": "300"}
    else:  # a built-in view into SQLite reads through loosely's batch consumer
        view, consumer = count_by_key("c", [topic]), {"group.instance.id": "runner-a"}
    runner = Runner(view, SqliteSink(str(tmp_path / "v.db")), b, RunnerConfig(session_timeout_ms=6000,
                                                                                consumer=consumer))
    assert runner.fast_source_ok() == (source == "batch consumer")
    failure: list[BaseException] = []
    fenced, assigned = "fenced this one; joining the group again", f"{view.id}: assigned"

    def run() -> None:
        try:
            runner.run()
        except BaseException as e:  # the thread's end is the test's to look at
            failure.append(e)

    def count() -> object:
        reader = SqliteSink(str(tmp_path / "v.db"))
        try:
            return reader.get("c", "k", version=1)
        except sqlite3.OperationalError:  # the runner has not created the view's table yet
            return None
        finally:
            reader.close()

    def applied(n: int) -> None:
        deadline = time.monotonic() + 60
        while count() != n:
            assert not failure, failure
            assert time.monotonic() < deadline, (count(), n)
            time.sleep(0.1)

    def logged(text: str, times: int) -> None:
        deadline = time.monotonic() + 30
        while caplog.text.count(text) < times:
            assert not failure, failure
            assert time.monotonic() < deadline, f"{text!r} logged {caplog.text.count(text)} times, not {times}"
            time.sleep(0.1)

    def intrude(fences: int) -> None:
        """Another consumer joins with the runner's group.instance.id, and polls until the runner is fenced for the
        ``fences``-th time (or stops); whether it is assigned the partition before the runner's new consumer takes
        the id back does not matter."""
        other = Consumer({"bootstrap.servers": b, "group.id": runner.group_id, "group.instance.id": "runner-a",
                          "session.timeout.ms": 30_000, "enable.auto.commit": False})
        other.subscribe([topic])
        deadline = time.monotonic() + 30
        while caplog.text.count(fenced) < fences and t.is_alive():
            assert time.monotonic() < deadline, f"the runner was not fenced by intruder {fences}"
            other.poll(0.2)
        other.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    applied(5)
    logged(assigned, 1)
    intrude(1)
    logged(assigned, 2)  # its new consumer joined and holds the partition
    produce(b, topic, [b"x"] * 3)
    applied(8)  # and reads on
    intrude(2)
    if fences_max > 1:
        logged(assigned, 3)
        produce(b, topic, [b"x"] * 3)
        applied(11)
        runner.stop()
        t.join(60)
        assert not failure, failure
    else:
        t.join(60)
        assert len(failure) == 1 and isinstance(failure[0], SinkError), failure
        assert "fenced 2 times" in str(failure[0]), failure[0]
        assert "another runner uses group.instance.id 'runner-a'" in str(failure[0]), failure[0]
    assert not t.is_alive()
    runner.close()
    assert caplog.text.count(fenced) == (2 if fences_max > 1 else 1)
    assert count() == (11 if fences_max > 1 else 8)
