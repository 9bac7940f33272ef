"""The broker's key_search service, as the web console uses it: real producers, lookups from another thread.

Key search is loosely's own extension (Apache Kafka has no request for it), so there is no Kafka side to compare
with; the reference is what a confluent-kafka consumer scan of the same partition finds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from loosely.broker.server import BrokerThread
from loosely.protocol.errors import ErrorCode
from loosely.storage.keyindex import KEY_INDEX_SUFFIX
from loosely.storage.log import LogError
from loosely.testing import embedded_broker

TOPIC = "orders"
MESSAGES = 3_000


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerThread]:
    with embedded_broker(log_defaults={"log.segment.bytes": "4096"}) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap_servers})
        admin.create_topics([NewTopic(TOPIC, 2, 1)])[TOPIC].result(10)
        p = Producer(
            {
                "bootstrap.servers": b.bootstrap_servers,
                "linger.ms": 5,
                "batch.num.messages": 100,
                "compression.type": "lz4",
            }
        )
        for i in range(MESSAGES):
            p.produce(TOPIC, key=b"customer-%d" % (i % 97), value=b"order %d" % i, partition=i % 2)
        assert p.flush(30) == 0
        yield b


def consumer_scan(bootstrap: str, partition: int, key: bytes) -> list[int]:
    """How other consoles search: read the partition from the start and keep the matching records."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "scan", "enable.auto.commit": False})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(TOPIC, partition), timeout=10)
        c.assign([TopicPartition(TOPIC, partition, 0)])
        found, last = [], -1
        while last < high - 1:
            m = c.poll(10)
            assert m is not None and m.error() is None
            last = m.offset()
            if m.key() == key:
                found.append(m.offset())
        return found[::-1]
    finally:
        c.close()


def test_a_lookup_from_another_thread_finds_what_a_consumer_scan_finds(broker: BrokerThread) -> None:
    for partition, key in [(0, b"customer-4"), (1, b"customer-95"), (1, b"customer-0")]:
        expect = consumer_scan(broker.bootstrap_servers, partition, key)
        assert expect and broker.broker.key_lookup(TOPIC, partition, key, 1000) == expect
        assert broker.broker.key_lookup(TOPIC, partition, key, 3) == expect[:3]
    assert broker.broker.key_lookup(TOPIC, 0, b"customer-97", 10) == []


def test_closed_segments_get_sidecars_in_the_background(broker: BrokerThread) -> None:
    plog = broker.broker.logs.log(TOPIC, 0)
    assert plog is not None and len(plog.segments) > 2
    svc = broker.broker.ctx.services["key_search"]
    # The background task settles one segment per step; run steps until none is left (it may have done them all).
    for _ in range(len(plog.segments) + 1):
        if not broker.call(svc.settle_one):  # type: ignore[attr-defined]
            break
    names = set(os.listdir(plog.dir))
    assert all(s.key_index.settled for s in plog.segments[:-1])
    assert {f"{s.base_offset:020d}{KEY_INDEX_SUFFIX}" for s in plog.segments[:-1]} <= names


def test_concurrent_lookups_agree(broker: BrokerThread) -> None:
    keys = [b"customer-%d" % i for i in range(0, 97, 7)]
    expect = {k: broker.broker.key_lookup(TOPIC, 0, k, 1000) for k in keys}
    with ThreadPoolExecutor(4) as pool:
        got = dict(zip(keys, pool.map(lambda k: broker.broker.key_lookup(TOPIC, 0, k, 1000), keys), strict=True))
    assert got == expect
    assert threading.main_thread() is threading.current_thread()


@pytest.mark.parametrize(
    ("topic", "partition", "limit", "code"),
    [
        ("nope", 0, 10, ErrorCode.unknown_topic_or_partition),
        (TOPIC, 9, 10, ErrorCode.unknown_topic_or_partition),
        (TOPIC, 0, 0, ErrorCode.invalid_request),
        (TOPIC, 0, 10_001, ErrorCode.invalid_request),
    ],
)
def test_bad_lookups_get_a_clear_error(broker: BrokerThread, topic: str, partition: int, limit: int, code: int) -> None:
    with pytest.raises(LogError) as e:
        broker.broker.key_lookup(topic, partition, b"k", limit)
    assert e.value.error_code == code
    assert broker.broker.key_lookup(TOPIC, 0, b"customer-1", 10_000)  # and the broker keeps answering


def test_after_a_restart_lookups_use_the_sidecars_and_read_the_active_segment(tmp_path: Path) -> None:
    settings = {"log_defaults": {"log.segment.bytes": "4096"}}
    with embedded_broker(data_dir=str(tmp_path), **settings) as b:  # type: ignore[arg-type]
        p = Producer({"bootstrap.servers": b.bootstrap_servers, "batch.num.messages": 20})
        for i in range(400):
            p.produce("restart", key=b"k%d" % (i % 9), value=b"v%d" % i)
        assert p.flush(30) == 0
        expect = b.broker.key_lookup("restart", 0, b"k4", 1000)
        assert len(expect) == 44
    with embedded_broker(data_dir=str(tmp_path), **settings) as b:  # type: ignore[arg-type]
        assert b.broker.key_lookup("restart", 0, b"k4", 1000) == expect
        plog = b.broker.logs.log("restart", 0)
        assert plog is not None and all(s.key_index.settled for s in plog.segments[:-1])
