"""Shared by the console's tests: a small Hollow store with two versions, and Kafka helpers."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from loosely.hollow.api import FilesystemBlobStore
from loosely.hollow.api import Producer as HollowProducer
from loosely.hollow.core import hollow_type


@hollow_type(primary_key=("id",))
@dataclass
class Movie:
    id: int
    title: str
    year: int


def hollow_store(path: Path) -> tuple[int, int]:
    """Two versions: Alien's year changes between them, Up is added. Returns (v1, v2)."""
    store = FilesystemBlobStore(path, create=True)
    producer = HollowProducer(publisher=store, announcer=store, data_model=[Movie])
    v1 = producer.run_cycle(lambda s: s.add_all([Movie(1, "Heat", 1995), Movie(2, "Alien", 1978)]))
    v2 = producer.run_cycle(lambda s: s.add_all([Movie(1, "Heat", 1995), Movie(2, "Alien", 1979),
                                                 Movie(3, "Up", 2009)]))
    assert v1 is not None and v2 is not None and v1 != v2
    return int(v1), int(v2)


def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    """Creates ``topic`` and waits until its partitions have leaders: Apache Kafka answers a create before its
    metadata says so, and a page asked at once would find no such topic."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    deadline = time.monotonic() + 30
    while True:
        found = admin.list_topics(topic, timeout=10).topics.get(topic)
        if (found is not None and found.error is None and len(found.partitions) == partitions
                and all(p.leader >= 0 for p in found.partitions.values())):
            return
        assert time.monotonic() < deadline, f"{topic} has no leaders after 30 s"
        time.sleep(0.05)


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]], partition: int = 0,
            headers: list[tuple[str, bytes]] | None = None) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for k, v in records:
        p.produce(topic, v, k, partition=partition, headers=headers)
    assert p.flush(30) == 0


def commit(bootstrap: str, group: str, topic: str, offset: int, partition: int = 0) -> None:
    """Commits ``offset`` for ``group`` without joining it (an empty group, as after its consumers stopped)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    finally:
        c.close()


def printed_url(proc: subprocess.Popen[str], marker: str) -> str:
    """Reads ``proc``'s stdout until the line holding ``marker``; returns the http(s) URL on it."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if marker in line:
            m = re.search(r"https?://[\d.]+:\d+", line)
            assert m, line
            return m.group(0)
    stderr = proc.stderr.read() if proc.stderr else ""
    raise AssertionError(f"exited ({proc.wait(10)}) before printing {marker!r}: {stderr}")
