"""The same views, unchanged, on a 3-node Apache Kafka cluster (KRaft, replication factor 3, from Maven Central
jars): two runners in one group keep the view exact while a broker is SIGKILLed and restarted, producers keep
writing during the outage, and a runner is killed too.

Event count: ``LOOSELY_VIEWS_CLUSTER_EVENTS`` (default 40 000).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from loosely.testing import ApacheKafka
from loosely.views import SqliteSink, TopicPartition
from views.crashkit import (
    CRASH_TIMEOUT_S,
    ROOT,
    CrashReport,
    Runners,
    compare,
    expected_rows,
    produce_events,
    record_result,
    reference,
)


@pytest.fixture(scope="module")
def three_nodes(jars_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    kafka = ApacheKafka(nodes=3, base_dir=tmp_path_factory.mktemp("kafka3"), jars_dir=jars_dir, heap_mb=384)
    kafka.start(timeout_s=180)
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(CRASH_TIMEOUT_S)
@pytest.mark.parametrize("view", ["combined", "counts"])  # counts: the built-in view, on the batch consumer
def test_views_survive_a_broker_kill_and_restart(three_nodes: ApacheKafka, tmp_path: Path, topic: str,
                                                 view: str) -> None:
    events = int(os.environ.get("LOOSELY_VIEWS_CLUSTER_EVENTS", "40000"))
    boot = three_nodes.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": boot})
    admin.create_topics([NewTopic(topic, 6, 3, config={"min.insync.replicas": "2"})])[topic].result(60)
    md = admin.list_topics(topic, timeout=30).topics[topic]
    assert all(len(p.replicas) == 3 for p in md.partitions.values())
    produce_events(boot, topic, events // 2, keys=max(10, events // 10), seed=1)

    db = tmp_path / "views.db"
    procs = Runners([f"views.crash_views:{view}", "--sink", f"sqlite://{db}", "-b", boot,
                     "--batch-records", "2000", "--session-timeout-ms", "6000"],
                    2, {"LOOSELY_CRASH_TOPIC": topic, "LOOSELY_CRASH_VIEW": "cluster"}, tmp_path)
    t0 = time.monotonic()
    procs.start(0)
    procs.start(1)
    try:
        time.sleep(3)
        three_nodes.kill(2)
        # producers keep writing while a broker is down: the topic is the buffer
        writer = threading.Thread(target=produce_events, args=(boot, topic, events - events // 2),
                                  kwargs={"keys": max(10, events // 10), "seed": 2})
        writer.start()
        time.sleep(5)
        procs.kill(0)
        procs.start(0)
        three_nodes.restart(2)
        three_nodes.wait_ready(180)
        writer.join(300)
        assert not writer.is_alive()
        ref = reference(boot, topic)
        assert ref.records >= events

        def done() -> bool:
            if not db.exists():
                return False
            s = SqliteSink(str(db))
            try:
                infos = s.versions("cluster")
                return bool(infos) and all(infos[0].positions.get(TopicPartition(t, p), 0) >= o
                                           for (t, p), o in ref.ends.items() if o > 0)
            finally:
                s.close()

        deadline = time.monotonic() + 600
        while not done():
            assert time.monotonic() < deadline, "the views did not catch up on the cluster"
            procs.check_alive()
            time.sleep(1)
    finally:
        procs.stop()
    record_result(f"sqlite@apache-kafka-3-nodes/{view}", ref.records, 2,
                  CrashReport(1, procs.starts, time.monotonic() - t0), "broker-kills=1")
    s = SqliteSink(str(db))
    rows = dict(s.scan("cluster", limit=10**9, version=1))
    s.close()
    if view == "combined":
        compare(rows, expected_rows(ref))
    else:
        assert rows == dict(ref.counts)


def test_kafka_cluster_script_prints_how_to_reach_it() -> None:
    """The script the README names: --help works without Java (starting a cluster is the test above's job)."""
    r = subprocess.run([str(ROOT / "scripts" / "kafka-cluster"), "--help"], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0 and "--nodes" in r.stdout, r.stderr
