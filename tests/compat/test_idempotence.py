"""The idempotent producer, as real clients use it, against loosely and Apache Kafka.

The Java KafkaProducer and kafka-python turn idempotence on by default (InitProducerId, then sequence numbers on
every batch). The duplicate-produce test loses acknowledgements on purpose (a proxy hangs up after the broker
appended) so the producers retry: with idempotence the log holds every record once; without it, the same test
finds the duplicates, which shows it can fail.
"""

from __future__ import annotations

import collections
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaProducer

from compat._ackloss import AckLossProxy
from compat._java import run_java
from compat._support import Cluster, create_topic
from loosely.broker.producers import producer_state


def read_values(bootstrap: str, topic: str, partitions: int, expect_at_least: int) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[bytes] = []
    deadline = time.monotonic() + 30
    idle_until = None
    while time.monotonic() < deadline:
        msgs = c.consume(500, timeout=0.5)
        out += [m.value() or b"" for m in msgs if m.error() is None]
        if len(out) >= expect_at_least:
            # Keep reading a little: duplicates would come after.
            idle_until = idle_until or time.monotonic() + 1.0
            if time.monotonic() > idle_until:
                break
    c.close()
    return out


def test_java_producer_with_default_settings_is_idempotent(cluster: Cluster, topic: str) -> None:
    create_topic(cluster.bootstrap_servers, topic, 3)
    r = run_java(
        "interop/java-clients", "ClientsProbe", "produce", cluster.bootstrap_servers, topic, "500", "lz4", "default"
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [tuple(map(str, line.split())) for line in r.stdout.splitlines()]
    assert len(rows) == 500
    by_part = collections.defaultdict(list)
    for part, off, _ in rows:
        by_part[int(part)].append(int(off))
    assert all(sorted(offs) == list(range(len(offs))) for offs in by_part.values())
    values = read_values(cluster.bootstrap_servers, topic, 3, 500)
    assert sorted(values) == sorted(b"value-%d" % i for i in range(500))


def test_kafka_python_producer_with_default_settings_is_idempotent(cluster: Cluster, topic: str) -> None:
    create_topic(cluster.bootstrap_servers, topic, 2)
    p = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers, linger_ms=5)
    futs = [p.send(topic, value=b"v%d" % i, partition=i % 2) for i in range(300)]
    offsets = [f.get(timeout=30).offset for f in futs]
    p.close()
    assert sorted(offsets[0::2]) == list(range(150)) and sorted(offsets[1::2]) == list(range(150))
    assert sorted(read_values(cluster.bootstrap_servers, topic, 2, 300)) == sorted(b"v%d" % i for i in range(300))


def produce_confluent(bootstrap: str, topic: str, n: int, idempotent: bool) -> None:
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": idempotent,
            "linger.ms": 20,
            "retry.backoff.ms": 50,
            "reconnect.backoff.ms": 50,
            "message.timeout.ms": 60_000,
        }
    )
    for i in range(n):
        p.produce(topic, b"r%d" % i, partition=i % 2)
        if i % 50 == 49:
            p.poll(0.05)  # several produce requests, so acks get lost mid-stream
    assert p.flush(60) == 0


def produce_java(bootstrap: str, topic: str, n: int, idempotent: bool) -> None:
    r = run_java(
        "interop/java-clients",
        "ClientsProbe",
        "produce",
        bootstrap,
        topic,
        str(n),
        "none",
        "default" if idempotent else "false",
        timeout=180,
    )
    assert r.returncode == 0, r.stderr[-3000:]


def produce_kafka_python(bootstrap: str, topic: str, n: int, idempotent: bool) -> None:
    p = KafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        enable_idempotence=idempotent,
        retries=10,
        retry_backoff_ms=50,
        request_timeout_ms=10_000,
    )
    futs = [p.send(topic, value=b"r%d" % i, partition=i % 2) for i in range(n)]
    for f in futs:
        f.get(timeout=60)
    p.close()


PRODUCERS = {"confluent": produce_confluent, "java": produce_java, "kafka-python": produce_kafka_python}


@pytest.mark.parametrize("client", sorted(PRODUCERS))
def test_lost_acks_are_retried_and_the_log_holds_each_record_once(cluster: Cluster, topic: str, client: str) -> None:
    create_topic(cluster.bootstrap_servers, topic, 2)
    proxy = AckLossProxy(cluster.bootstrap_servers, drops=3)
    try:
        PRODUCERS[client](proxy.bootstrap_servers, topic, 400, True)
    finally:
        proxy.close()
    assert proxy.dropped == 3, "the proxy did not get to lose any acknowledgement"
    values = read_values(cluster.bootstrap_servers, topic, 2, 400)
    expected = [b"r%d" % i for i in range(400)] if client != "java" else [b"value-%d" % i for i in range(400)]
    dups = [v for v, n in collections.Counter(values).items() if n > 1]
    assert not dups, f"{len(dups)} records appended twice"
    assert sorted(values) == sorted(expected)
    if cluster.broker is not None:
        # loosely answered at least one retry from its duplicate cache rather than appending it again
        ctx = cluster.broker.broker.ctx
        assert cluster.broker.call(lambda: producer_state(ctx).duplicates_total) >= 1  # type: ignore[union-attr]


def test_without_idempotence_lost_acks_do_duplicate(cluster: Cluster, topic: str) -> None:
    """The control experiment: the same lost acks, idempotence off; the retries land twice."""
    create_topic(cluster.bootstrap_servers, topic, 2)
    proxy = AckLossProxy(cluster.bootstrap_servers, drops=3)
    try:
        produce_confluent(proxy.bootstrap_servers, topic, 400, False)
    finally:
        proxy.close()
    values = read_values(cluster.bootstrap_servers, topic, 2, 400)
    assert set(values) == {b"r%d" % i for i in range(400)}
    assert len(values) > 400, "lost acks were expected to cause duplicates without idempotence"
