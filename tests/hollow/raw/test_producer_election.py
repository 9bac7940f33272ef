"""One producer per dataset: candidates elect one through the log, the others stand by, a standby continues the
delta chain when the publishing one is killed (kill -9), and one that was only paused (SIGSTOP) announces nothing
once resumed -- the fence. On loosely's broker and on Apache Kafka (the ``bootstrap`` fixture of conftest.py)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hollow.raw.raw_support import Movie, wait_until
from loosely.hollow.api import BlobType, FilesystemBlobStore, Version
from loosely.hollow.raw import Dataset, NotLeaderError, RawClient, RawProducer, Writer

TAKEOVER_S_MAX = 20.0  # the session timeout (6 s) plus fencing, restoring and one cycle, on a loaded machine


class ProducerProcess:
    """``producer_proc.py`` in a process of its own; a thread collects its lines as they come."""

    def __init__(self, dataset: Dataset, cycle_ms: int = 200) -> None:
        store = dataset.blob_store
        assert isinstance(store, FilesystemBlobStore)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("producer_proc.py")), dataset.bootstrap_servers,
             dataset.name, str(store.path), str(cycle_ms)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        self.lines: list[list[str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.split())

    def announced(self) -> list[int]:
        return [int(words[1]) for words in list(self.lines) if words[0] == "announced"]

    def said(self, word: str) -> int:
        return sum(1 for words in list(self.lines) if words[0] == word)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)


@pytest.fixture
def procs(dataset: Dataset) -> Iterator[list[ProducerProcess]]:
    started: list[ProducerProcess] = []
    yield started
    for p in started:
        p.end()


def announcements_on_the_log(dataset: Dataset) -> list[int]:
    """Every announcement committed on the producer topic, in order (read-committed: fenced ones never show)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer({"bootstrap.servers": dataset.bootstrap_servers, "group.id": "raw-test-announcements",
                         "enable.partition.eof": True, "isolation.level": "read_committed",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(dataset.producer_topic, 0, OFFSET_BEGINNING)])
    key = f"{dataset.announce_namespace}/announced".encode()
    out: list[int] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return out
                continue
            if msg.key() == key:
                out.append(int(msg.value()))
        raise AssertionError("the producer topic was not read to its end in time")
    finally:
        consumer.close()


@pytest.mark.parametrize("bootstrap", ["loosely"], indirect=True)  # two session timeouts: the Kafka side of the
# fence is the next test's, and Kafka's session expiry is the killed-writer test's (test_raw.py)
def test_one_producer_publishes_a_standby_continues_the_chain_and_a_paused_one_is_fenced(
        dataset: Dataset, writer: Writer, procs: list[ProducerProcess]) -> None:
    a = ProducerProcess(dataset)
    procs.append(a)
    wait_until(lambda: a.said("leader") == 1)
    b = ProducerProcess(dataset)
    procs.append(b)
    wait_until(lambda: b.said("started") == 1)
    for i in range(10):
        writer.put(Movie(i, f"m{i}"))
    wait_until(lambda: len(a.announced()) >= 1)

    a.signal(signal.SIGSTOP)  # alive but silent: its session times out, b takes over and fences it
    paused = time.monotonic()
    for i in range(10, 20):
        writer.put(Movie(i, f"m{i}"))
    wait_until(lambda: b.said("leader") == 1 and len(b.announced()) >= 1, TAKEOVER_S_MAX)
    assert time.monotonic() - paused < TAKEOVER_S_MAX
    taken_over = min(b.announced())

    a.signal(signal.SIGCONT)  # it had changes pending and believed it led: its next mint or announce is refused
    for i in range(20, 30):
        writer.put(Movie(i, f"m{i}"))
    wait_until(lambda: a.said("standby") == 1 and len(b.announced()) >= 2)
    assert all(v < taken_over for v in a.announced()), (a.lines, b.lines)  # nothing after the takeover

    b.signal(signal.SIGKILL)
    killed = time.monotonic()
    for i in range(30, 40):
        writer.put(Movie(i, f"m{i}"))
    wait_until(lambda: a.said("leader") == 2 and max(a.announced()) > max(b.announced()), TAKEOVER_S_MAX)
    assert time.monotonic() - killed < TAKEOVER_S_MAX

    # the chain on the log is linear: each announced version follows the previous one by a delta, no fork, no reuse
    chain = announcements_on_the_log(dataset)
    assert sorted(set(a.announced()) | set(b.announced())) == chain, (chain, a.lines, b.lines)
    store = dataset.blob_store
    assert isinstance(store, FilesystemBlobStore)
    deltas = {(r.from_version, r.to_version) for r in store.refs() if r.type is BlobType.DELTA}
    assert all((older, newer) in deltas for older, newer in itertools.pairwise(chain)), (chain, sorted(deltas))

    last = writer.put(Movie(40, "m40"))
    wait_until(lambda: max(a.announced()) > chain[-1])
    with RawClient(dataset) as client:  # a fresh client loads the newest version: all 41 records, none lost
        wait_until(lambda: client.consumer.refresh() == Version(max(a.announced())))
        assert sorted(m.id for m in client.records(Movie, after=last.token)) == list(range(41))
        assert client.statistics().overlay == 0


def test_a_producer_fenced_while_it_believes_it_leads_announces_nothing(dataset: Dataset, writer: Writer) -> None:
    """The fence itself, without waiting for a session to time out: a new leader's first step (init_transactions on
    the shared transactional id) while the old one still holds the election's partition and believes it leads.
    Then the old one, still assigned, leads again; closed, it hands over to a standby at once."""
    from confluent_kafka import Producer

    producer = RawProducer(dataset)
    standby = RawProducer(dataset, cycle_interval_ms=50)
    try:
        writer.put(Movie(1, "one"))
        producer.catch_up()
        v1 = producer.run_cycle()
        assert v1 is not None and producer.is_leader()
        usurper = Producer({"bootstrap.servers": dataset.bootstrap_servers,
                            "transactional.id": f"hollow-{dataset.announce_namespace}"})
        usurper.init_transactions(30)  # bumps the epoch: the broker refuses the old holder's transactions
        writer.put(Movie(2, "two"))
        producer.catch_up()
        assert producer.is_leader()  # as far as it knows
        with pytest.raises(NotLeaderError):
            producer._cycle()
        assert producer.statistics().fenced == 1
        assert announcements_on_the_log(dataset) == [v1] and producer.version == v1
        # still assigned the partition, it takes over again (fencing the usurper), from the announced version
        producer.catch_up()
        v2 = producer.run_cycle()
        assert v2 is not None and v2 > v1

        standby.start()
        writer.put(Movie(3, "three"))
        wait_until(lambda: standby.statistics().cycles == 0 and not standby.is_leader())
        producer.close()  # leaves the election: the standby takes over at once and continues the chain from v2
        wait_until(standby.is_leader, 15)
        assert standby.version == v2
        wait_until(lambda: standby.version is not None and standby.version > v2)
        chain = announcements_on_the_log(dataset)
        assert chain[:2] == [v1, v2] and chain[-1] == standby.version
        store = dataset.blob_store
        assert isinstance(store, FilesystemBlobStore)
        delta = store.retrieve_delta(v2)
        assert delta is not None and delta.ref.to_version in chain[2:]
    finally:
        producer.close()
        standby.close()
