"""The runner's batch consumer (loosely.clients.batch_consumer) against loosely and Apache Kafka, side by side.

A built-in view into SQLite reads with loosely's own batch consumer unless told not to; these tests check that it
is taken (and that confluent-kafka is then not even imported), that it builds the same table and positions as the
confluent-kafka path on the same topic (lz4 batches, tombstones, keyless records, a committed and an aborted
transaction), and that it shares a consumer group with a runner on confluent-kafka, each holding half the
partitions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from compat._support import Cluster, create_topic
from loosely.views import STRING, Runner, RunnerConfig, SqliteSink, TopicPartition, View, count_by_key, latest_by_key

PARTITIONS = 4


def produce(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """Keyed lz4 records with tombstones and keyless ones, then a committed and an aborted transaction; returns
    each partition's end offset."""
    # idempotent, so a retried batch cannot land behind a later one: the expected rows depend on each partition's order
    p = Producer({"bootstrap.servers": bootstrap, "compression.type": "lz4", "linger.ms": 5,
                  "enable.idempotence": True})
    for i in range(3_000):
        key = None if i % 97 == 0 else f"k{i % 211}".encode()
        value = None if i % 31 == 0 else f"v{i}".encode()
        # a key stays in one partition, so its latest value does not depend on how partitions interleave
        p.produce(topic, value, key=key, partition=(i % 211) % PARTITIONS)
    assert p.flush(30) == 0
    txn = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"fast-{uuid.uuid4().hex[:8]}"})
    txn.init_transactions(30)
    for commit in (True, False):
        txn.begin_transaction()
        for i in range(40):
            txn.produce(topic, f"{'kept' if commit else 'aborted'}{i}".encode(), key=f"k{i}".encode(),
                        partition=i % PARTITIONS)
        assert txn.flush(30) == 0  # in the log before the end: an abort purges what was not sent yet
        if commit:
            txn.commit_transaction(30)
        else:
            txn.abort_transaction(30)
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as KTopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "ends"})
    try:
        return {TopicPartition(topic, q): c.get_watermark_offsets(KTopicPartition(topic, q), timeout=30)[1]
                for q in range(PARTITIONS)}
    finally:
        c.close()


def build(cluster: Cluster, view: View[Any, Any], db: Path, fast: bool) -> tuple[dict[str, Any], Any]:
    sink = SqliteSink(str(db))
    runner = Runner(view, sink, cluster.bootstrap_servers,
                    RunnerConfig(fast_source=fast, group_id=f"g-{uuid.uuid4().hex[:8]}", batch_records_max=700))
    try:
        stats = runner.run(until_caught_up=True, timeout_s=120)
    finally:
        runner.close()
    rows = dict(sink.scan(view.name, limit=10**9))
    sink.close()
    return rows, stats


@pytest.mark.parametrize("make", [lambda t: count_by_key("n", [t]), lambda t: latest_by_key("v", [t], value=STRING)],
                         ids=["count", "latest"])
def test_the_batch_consumer_builds_what_confluent_kafka_builds(cluster: Cluster, tmp_path: Path, topic: str,
                                                               make: Any) -> None:
    create_topic(cluster.bootstrap_servers, topic, PARTITIONS)
    ends = produce(cluster.bootstrap_servers, topic)
    view = make(topic)
    fast_rows, fast = build(cluster, view, tmp_path / "fast.db", True)
    slow_rows, slow = build(cluster, view, tmp_path / "slow.db", False)
    assert (fast.source, slow.source) == ("batch-consumer", "confluent-kafka")
    assert fast_rows == slow_rows and len(fast_rows) == (211 if view.name == "n" else 205)
    assert fast.records == slow.records == 3_040  # the aborted transaction's records are not read
    # the stored positions stop after the last record read (the committed transaction's); what follows (its commit
    # marker, the aborted records and the abort marker) counts as read for the lag
    assert dict(fast.positions) == dict(slow.positions) == {tp: end - 12 for tp, end in ends.items()}
    assert fast.lag_total == slow.lag_total == 0
    if view.name == "v":
        assert not any(str(v).startswith("aborted") for v in fast_rows.values())
        assert fast_rows["k0"] == "kept0"


RUNNER = """
import json, sys
from loosely.views import Runner, RunnerConfig, SqliteSink, count_by_key
sink = SqliteSink(sys.argv[3])
r = Runner(count_by_key("n", [sys.argv[2]]), sink, sys.argv[1], RunnerConfig(group_id=sys.argv[4]))
stats = r.run(until_caught_up=True, timeout_s=120)
r.close()
print(json.dumps({"confluent_kafka": "confluent_kafka" in sys.modules, "source": stats.source,
                  "records": stats.records}))
"""


def test_a_runner_on_the_batch_consumer_never_imports_confluent_kafka(cluster: Cluster, tmp_path: Path,
                                                                     topic: str) -> None:
    create_topic(cluster.bootstrap_servers, topic, PARTITIONS)
    produce(cluster.bootstrap_servers, topic)
    out = subprocess.run([sys.executable, "-c", RUNNER, cluster.bootstrap_servers, topic, str(tmp_path / "v.db"),
                          f"g-{uuid.uuid4().hex[:8]}"], check=False, capture_output=True, text=True, timeout=180,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"confluent_kafka": False, "source": "batch-consumer", "records": 3_040}


def stored_positions(db: Path, view: str) -> dict[TopicPartition, int]:
    if not db.exists():
        return {}
    s = SqliteSink(str(db))
    try:
        infos = s.versions(view)
        return dict(infos[0].positions) if infos else {}
    finally:
        s.close()


def test_a_batch_consumer_and_a_confluent_kafka_runner_share_a_group(cluster: Cluster, tmp_path: Path,
                                                                     topic: str) -> None:
    create_topic(cluster.bootstrap_servers, topic, PARTITIONS)
    ends = produce(cluster.bootstrap_servers, topic)
    view = count_by_key("n", [topic])
    group = f"g-{uuid.uuid4().hex[:8]}"
    db = tmp_path / "v.db"
    sinks = [SqliteSink(str(db)), SqliteSink(str(db))]
    runners = [Runner(view, sinks[i], cluster.bootstrap_servers,
                      RunnerConfig(fast_source=i == 0, group_id=group, session_timeout_ms=6_000,
                                   batch_records_max=500))
               for i in range(2)]
    errors: list[BaseException] = []

    def run(r: Runner) -> None:
        try:
            r.run()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(r,)) for r in runners]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while True:  # until both hold their half and the view has read everything
            stats = [r.statistics() for r in runners]
            held = [len(s.positions) for s in stats]
            stored = stored_positions(db, "n")
            if held == [2, 2] and all(stored.get(tp, 0) >= end - 12 for tp, end in ends.items()):
                break
            assert not errors, errors
            assert time.monotonic() < deadline, (held, stored, ends)
            time.sleep(0.2)
        assert [s.source for s in stats] == ["batch-consumer", "confluent-kafka"]
        assert set(stats[0].positions).isdisjoint(stats[1].positions)
    finally:
        for r in runners:
            r.stop()
        for t in threads:
            t.join(60)
        for r in runners:
            r.close()
    assert not errors, errors
    rows = dict(sinks[0].scan("n", limit=10**9))
    for s in sinks:
        s.close()
    assert len(rows) == 211
    assert sum(rows.values()) == 3_040 - sum(1 for i in range(3_000) if i % 97 == 0)


def test_a_partition_behind_a_busy_one_gets_its_large_batch(cluster: Cluster, topic: str) -> None:
    """A broker hands a batch over a partition's byte limit only to the first partition of an answer with data;
    the consumer moves a partition that brought batches to the end of its next request, so one whose only batch is
    large is served while the partition before it still has data (without that, it waited for it to drain)."""
    from loosely.clients.batch_consumer import BatchConsumer

    create_topic(cluster.bootstrap_servers, topic, 2)
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "batch.size": 1_200, "linger.ms": 0})
    for i in range(300):  # ~300 KB in batches of one record each: about ten answers at 32 KiB a partition
        p.produce(topic, b"x" * 1_000, key=b"%d" % i, partition=0)
    p.produce(topic, b"y" * 100_000, key=b"big", partition=1)
    assert p.flush(30) == 0
    c = BatchConsumer(cluster.bootstrap_servers, partition_fetch_bytes_max=32 * 1024, fetch_wait_ms=50)
    try:
        c.assign({(topic, 0): None, (topic, 1): None})
        deadline = time.monotonic() + 30
        while True:
            chunks = c.poll()
            if any(ch.partition == 1 for ch in chunks):
                break
            assert time.monotonic() < deadline, c.position((topic, 0))
        assert c.position((topic, 1)) == 1
        assert c.position((topic, 0)) is not None and c.position((topic, 0)) < 150, "partition 0 had drained first"
    finally:
        c.close()


def test_a_member_that_stops_polling_leaves_its_partitions_to_the_group(cluster: Cluster, topic: str) -> None:
    """max.poll.interval.ms, as Kafka's consumers keep it: a batch consumer whose caller stops polling (a sink stuck
    in a write) leaves the group although its heartbeat thread is alive, and joins again at its next poll."""
    from loosely.clients.batch_consumer import BatchConsumer

    create_topic(cluster.bootstrap_servers, topic, 2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    held: list[set[tuple[str, int]]] = [set(), set()]
    polling = [threading.Event(), threading.Event()]
    stop = threading.Event()
    errors: list[BaseException] = []

    def member(i: int) -> None:
        c = BatchConsumer(cluster.bootstrap_servers, session_timeout_ms=6_000, max_poll_interval_ms=2_000,
                          rebalance_timeout_ms=10_000)
        try:
            c.subscribe(group, [topic], lambda tps: (held[i].update(tps), {})[1], lambda tps: held[i].clear())
            while not stop.is_set():
                if polling[i].wait(0.1):
                    c.poll()
        except BaseException as e:
            errors.append(e)
        finally:
            c.close()

    def wait_until(what: str, cond: Any) -> None:
        deadline = time.monotonic() + 60
        while not cond():
            assert not errors, errors
            assert time.monotonic() < deadline, (what, held)
            time.sleep(0.1)

    threads = [threading.Thread(target=member, args=(i,)) for i in range(2)]
    for e in polling:
        e.set()
    for t in threads:
        t.start()
    try:
        wait_until("one partition each", lambda: len(held[0]) == len(held[1]) == 1)
        polling[0].clear()  # member 0 stops polling; its heartbeats go on
        wait_until("member 1 takes both", lambda: len(held[1]) == 2)
        polling[0].set()
        wait_until("one each again", lambda: len(held[0]) == len(held[1]) == 1 and held[0] != held[1])
    finally:
        stop.set()
        for e in polling:
            e.set()
        for t in threads:
            t.join(30)
    assert not errors, errors


def test_a_session_timeout_the_broker_refuses_is_named_as_librdkafka_names_it(cluster: Cluster, topic: str) -> None:
    """Below group.min.session.timeout.ms (6 s by default on both brokers) the JoinGroup is refused; the batch
    consumer's error says why in librdkafka's words, as confluent-kafka's consumer does."""
    from confluent_kafka import Consumer, KafkaException

    from loosely.clients.batch_consumer import BatchConsumer, GroupError

    create_topic(cluster.bootstrap_servers, topic, 1)
    ours = BatchConsumer(cluster.bootstrap_servers, session_timeout_ms=3_000)
    try:
        ours.subscribe(f"g-{uuid.uuid4().hex[:8]}", [topic], lambda tps: {}, lambda tps: None)
        with pytest.raises(GroupError) as refused:
            ours.poll()
    finally:
        ours.close()
    theirs = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": f"g-{uuid.uuid4().hex[:8]}",
                       "session.timeout.ms": 3_000})
    try:
        theirs.subscribe([topic])
        deadline = time.monotonic() + 30
        error = None
        while error is None and time.monotonic() < deadline:
            try:
                m = theirs.poll(0.2)
            except KafkaException as e:
                error = e.args[0]
            else:
                if m is not None and m.error() is not None:
                    error = m.error()
        assert error is not None, "confluent-kafka's consumer was not refused"
    finally:
        theirs.close()
    assert error.code() == 26 and error.str() == "JoinGroup failed: Broker: Invalid session timeout", error
    assert str(refused.value).endswith("JoinGroup: Broker: Invalid session timeout"), refused.value
