"""A consumer group of four processing a steady stream while members join and get killed, against loosely and Apache
Kafka: every record is processed at least once, none is skipped, and committed offsets never go backwards."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from compat._procs import Proc, wait_until
from compat._support import Cluster, create_topic

PARTITIONS = 8
WORKER = str(Path(__file__).with_name("_group_worker.py"))


class SteadyProducer(threading.Thread):
    """About 200 records a second, spread over the partitions, until stopped; remembers what was acknowledged."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
        self.topic = topic
        self.stopping = threading.Event()
        self.acked: dict[int, int] = {}  # partition -> acknowledged records
        self._lock = threading.Lock()
        self.errors: list[str] = []

    def _ack(self, err: object, msg: object) -> None:
        with self._lock:
            if err is not None:
                self.errors.append(str(err))
                return
            p = msg.partition()  # type: ignore[attr-defined]
            self.acked[p] = self.acked.get(p, 0) + 1

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            for _ in range(10):
                self.p.produce(self.topic, b"%d" % n, partition=n % PARTITIONS, on_delivery=self._ack)
                n += 1
            self.p.poll(0.05)
        assert self.p.flush(30) == 0


class CommitWatcher(threading.Thread):
    """Polls the group's committed offsets and records every value seen, per partition, in order."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        super().__init__(daemon=True)
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        self.topic = topic
        self.seen: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
        self.stopping = threading.Event()

    def run(self) -> None:
        tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        while not self.stopping.is_set():
            try:
                for tp in self.c.committed(tps, timeout=10):
                    if tp.offset >= 0 and (not self.seen[tp.partition] or self.seen[tp.partition][-1] != tp.offset):
                        self.seen[tp.partition].append(tp.offset)
            except Exception:  # a coordinator hiccup; the next poll tries again
                pass
            time.sleep(0.1)
        self.c.close()


def processed(workers: list[Proc]) -> set[tuple[int, int]]:
    out = set()
    for w in workers:
        for line in w.out:
            if line.startswith("P "):
                _, p, o = line.split()
                out.add((int(p), int(o)))
    return out


def test_group_of_four_under_load_while_members_join_and_die(cluster: Cluster, topic: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, PARTITIONS)
    group = f"g-{topic}"

    def worker() -> Proc:
        return Proc([sys.executable, WORKER, bs, topic, group])

    producer = SteadyProducer(bs, topic)
    watcher = CommitWatcher(bs, topic, group)
    workers = [worker() for _ in range(4)]
    producer.start()
    watcher.start()
    try:
        time.sleep(4)
        workers.append(worker())  # a fifth joins
        time.sleep(3)
        workers[0].kill()  # no LeaveGroup: found missing by its session timeout
        time.sleep(3)
        workers.append(worker())  # a replacement joins
        time.sleep(3)
        workers[1].kill()
        workers[2].stop()  # a clean leave
        time.sleep(3)
        workers.append(worker())
        time.sleep(4)
        producer.stopping.set()
        producer.join(60)
        assert not producer.errors, producer.errors[:3]
        produced = {(p, o) for p, n in producer.acked.items() for o in range(n)}
        assert len(produced) > 1000
        wait_until(lambda: produced <= processed(workers), 90, "every produced record to be processed")
        ends = dict(producer.acked)
        wait_until(
            lambda: all(watcher.seen[p] and watcher.seen[p][-1] == ends[p] for p in ends),
            60,
            "the committed offsets to reach the end of every partition",
        )
    finally:
        watcher.stopping.set()
        for w in workers:
            w.stop()
        watcher.join(30)
    assert produced <= processed(workers), "a record was never processed"
    for p, offsets in watcher.seen.items():
        assert offsets == sorted(offsets), f"the committed offset of partition {p} went backwards: {offsets}"
    # The workers saw rebalances, not just a quiet group: the killed ones' partitions moved to others.
    owners = {
        p: {i for i, w in enumerate(workers) if any(line.startswith(f"P {p} ") for line in w.out)}
        for p in range(PARTITIONS)
    }
    assert sum(len(o) > 1 for o in owners.values()) >= PARTITIONS // 2
