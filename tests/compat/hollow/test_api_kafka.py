"""Announcements on the log, leader election and fencing, against loosely's broker and Apache Kafka.

In one process: candidates join and leave the election, a standby takes over the chain, and a deposed leader --
one that still believes it leads -- is refused by the broker (fenced), whatever it tries to write.  The
multi-process version, with SIGKILL and SIGSTOP, is in ``test_api_e2e.py``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer as KafkaProducer

from compat._support import Cluster
from hollow.api.models import Catalog, Movie
from loosely.hollow.api import (
    Consumer,
    InMemoryBlobStore,
    KafkaAnnouncementWatcher,
    KafkaAnnouncer,
    NotLeaderError,
    Producer,
    Version,
)

SESSION_MS = 6_000  # the brokers' default group.min.session.timeout.ms


@pytest.fixture
def names() -> tuple[str, str]:
    return f"hollow-{uuid.uuid4().hex[:8]}", f"ns{uuid.uuid4().hex[:6]}"


@pytest.fixture
def candidates(cluster: Cluster, names: tuple[str, str]) -> Iterator[list[KafkaAnnouncer]]:
    topic, ns = names
    made = [KafkaAnnouncer(cluster.bootstrap_servers, topic, ns, session_timeout_ms=SESSION_MS,
                           heartbeat_interval_ms=500) for _ in range(2)]
    try:
        yield made
    finally:
        for c in made:
            c.stop()


def _producer(store: InMemoryBlobStore, announcer: KafkaAnnouncer) -> Producer:
    return Producer(publisher=store, announcer=announcer, retriever=store, watcher=announcer, leader=announcer,
                    version_minter=announcer, data_model=[Movie])


def test_one_leader_a_standby_that_follows_and_takes_over(
    cluster: Cluster, names: tuple[str, str], candidates: list[KafkaAnnouncer]
) -> None:
    topic, ns = names
    a, b = candidates
    a.start()
    assert a.wait_for_leadership(30_000)
    b.start()
    time.sleep(2)  # a rebalance happened (b joined): the sticky assignor left leadership with a
    assert a.is_leader() and not b.is_leader()
    store = InMemoryBlobStore()
    pa, pb = _producer(store, a), _producer(store, b)
    cat = Catalog()
    versions = []
    for _ in range(3):
        v = pa.run_cycle(cat.populate)
        assert v is not None
        versions.append(v)
        assert pb.run_cycle(cat.populate) in (versions[-1], *versions[:-1], None)  # skipped: not the leader
        cat.advance()
    assert pb.statistics().not_leader == 3 and store.latest_version() is None  # announcements are on the log
    watcher = KafkaAnnouncementWatcher(cluster.bootstrap_servers, topic, ns)
    try:
        consumer = Consumer(retriever=store, watcher=watcher)
        assert consumer.wait_for_version(versions[-1], 10_000)
        a.stop()  # leaves the group: the partition moves now
        assert b.wait_for_leadership(30_000)
        v4 = pb.run_cycle(cat.populate)
        assert v4 is not None and v4 > versions[-1]
        assert consumer.wait_for_version(v4, 10_000)  # the watcher polls the topic
        assert consumer.version == v4 and consumer.statistics().double_snapshots == 0
        assert b.statistics().terms_acquired == 1 and pb.statistics().restores == 1
    finally:
        watcher.close()


def test_a_deposed_leader_is_fenced_by_the_broker(
    cluster: Cluster, names: tuple[str, str], candidates: list[KafkaAnnouncer]
) -> None:
    topic, ns = names
    a, b = candidates
    a.start()
    assert a.wait_for_leadership(30_000)
    a.announce(Version(100))
    zombie_minted = a.mint(Version(100))  # a minted version it may publish blobs for, then it "pauses"
    paused_producer = a._producer
    a.stop()  # its session ends (as a paused process's would)...
    b.start()
    assert b.wait_for_leadership(30_000)
    assert b.latest_version() == 100
    assert b.mint(Version(100)) > zombie_minted  # the new leader mints above what the old one could publish
    a._producer, a._leader = paused_producer, True  # ... and it wakes up still believing it leads
    with pytest.raises(NotLeaderError, match="fenced"):
        a.announce(Version(zombie_minted))
    assert not a.is_leader() and a.statistics().fenced == 1
    b.announce(Version(zombie_minted + 100))
    watcher = KafkaAnnouncementWatcher(cluster.bootstrap_servers, topic, ns)
    try:
        assert watcher.latest_version() == zombie_minted + 100
    finally:
        watcher.close()


def test_an_aborted_announcement_is_never_seen(cluster: Cluster, names: tuple[str, str]) -> None:
    topic, ns = names
    a = KafkaAnnouncer(cluster.bootstrap_servers, topic, ns, session_timeout_ms=SESSION_MS, heartbeat_interval_ms=500)
    a.start()
    try:
        assert a.wait_for_leadership(30_000)
        a.announce(Version(1))
        raw = KafkaProducer({"bootstrap.servers": cluster.bootstrap_servers, "transactional.id": f"other-{ns}"})
        raw.init_transactions(30)
        raw.begin_transaction()
        raw.produce(topic, key=f"{ns}/announced".encode(), value=b"999", partition=0)
        raw.flush(30)
        raw.abort_transaction(30)
        a.announce(Version(2))
        watcher = KafkaAnnouncementWatcher(cluster.bootstrap_servers, topic, ns)
        try:
            assert watcher.latest_version() == 2
        finally:
            watcher.close()
    finally:
        a.stop()


def test_a_watcher_started_beside_a_live_leader_is_ready_at_once(cluster: Cluster, names: tuple[str, str]) -> None:
    """While a leader announces every 100 ms the partition never ends for long enough for the client to report its
    end; the first read stops at the end offset the watcher saw when it started instead of waiting it out."""
    topic, ns = names
    a = KafkaAnnouncer(cluster.bootstrap_servers, topic, ns, session_timeout_ms=SESSION_MS, heartbeat_interval_ms=500)
    a.start()
    stop = threading.Event()
    announced: list[int] = []

    def announce() -> None:
        v = 1
        while not stop.is_set():
            a.announce(Version(v))
            announced.append(v)
            v += 1
            time.sleep(0.1)

    announcing = threading.Thread(target=announce)
    try:
        assert a.wait_for_leadership(30_000)
        announcing.start()
        while len(announced) < 5:
            time.sleep(0.05)
        floor = announced[-1]
        started = time.monotonic()
        watcher = KafkaAnnouncementWatcher(cluster.bootstrap_servers, topic, ns, initial_wait_ms=60_000)
        took_s = time.monotonic() - started
        try:
            latest = watcher.latest_version()
            assert latest is not None and latest >= floor, (latest, floor)
            assert took_s < 20, f"the first read took {took_s:.1f} s: it waited for a partition end that never came"
        finally:
            watcher.close()
    finally:
        stop.set()
        if announcing.is_alive():
            announcing.join(30)
        a.stop()
