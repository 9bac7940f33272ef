"""Transactions with real clients, against loosely and Apache Kafka: an exactly-once consume-transform-produce loop
(confluent-kafka) whose read_committed readers never see an aborted record, and a transaction that times out. The Java
producer, which uses transactions version 2 on both brokers, is in test_transactions_v2.py."""

from __future__ import annotations

import collections
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from compat._support import Cluster, create_topic


def read_all(bootstrap: str, topic: str, partitions: int, *, committed: bool, settle_s: float = 1.5) -> list[bytes]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "reader",
            "enable.auto.commit": False,
            "isolation.level": "read_committed" if committed else "read_uncommitted",
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[bytes] = []
    quiet_since = time.monotonic()
    deadline = time.monotonic() + 30
    while time.monotonic() - quiet_since < settle_s and time.monotonic() < deadline:
        msgs = [m for m in c.consume(500, timeout=0.3) if m.error() is None]
        if msgs:
            quiet_since = time.monotonic()
        out += [m.value() or b"" for m in msgs]
    c.close()
    return out


def test_consume_transform_produce_is_exactly_once_and_skips_aborts(cluster: Cluster, topic: str) -> None:
    bs = cluster.bootstrap_servers
    out_topic = topic + "-out"
    create_topic(bs, topic, 3)
    create_topic(bs, out_topic, 2)
    p = Producer({"bootstrap.servers": bs, "linger.ms": 5})
    for i in range(300):
        p.produce(topic, b"%d" % i, partition=i % 3)
    assert p.flush(30) == 0

    group = f"g-{topic}"
    consumer = Consumer(
        {
            "bootstrap.servers": bs,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    producer = Producer({"bootstrap.servers": bs, "transactional.id": f"tx-{topic}", "linger.ms": 5})
    producer.init_transactions(30)
    committed_in = 0
    transactions = aborted = 0
    deadline = time.monotonic() + 120
    while committed_in < 300 and time.monotonic() < deadline:
        msgs = [m for m in consumer.consume(40, timeout=1) if m.error() is None]
        if not msgs:
            continue
        producer.begin_transaction()
        for m in msgs:
            producer.produce(out_topic, b"out-" + (m.value() or b""), partition=int(m.value() or b"0") % 2)
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
        )
        transactions += 1
        if transactions % 3 == 0:
            producer.flush(30)  # the records reach the log, so aborting them is a real test
            producer.abort_transaction(30)
            aborted += 1
            # Start again from what was committed: the aborted work is redone in a later transaction.
            positions = consumer.committed(consumer.assignment(), timeout=30)
            for tp in positions:
                consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
        else:
            producer.commit_transaction(30)
            committed_in += len(msgs)
    consumer.close()
    assert committed_in == 300 and aborted >= 1

    visible = read_all(bs, out_topic, 2, committed=True)
    counts = collections.Counter(visible)
    assert sorted(counts) == sorted(b"out-%d" % i for i in range(300)), "a record is missing from the output"
    assert max(counts.values()) == 1, "read_committed saw a record twice (an aborted one leaked)"
    everything = read_all(bs, out_topic, 2, committed=False)
    assert len(everything) > len(visible), "the aborted records were expected in the log for read_uncommitted"

    offsets = Consumer({"bootstrap.servers": bs, "group.id": group}).committed(
        [TopicPartition(topic, p) for p in range(3)], timeout=30
    )
    assert sum(tp.offset for tp in offsets) == 300


def test_a_transaction_left_open_times_out_is_aborted_and_its_producer_fenced(cluster: Cluster, topic: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 1)
    stuck = Producer({"bootstrap.servers": bs, "transactional.id": f"stuck-{topic}", "transaction.timeout.ms": 2000})
    stuck.init_transactions(30)
    stuck.begin_transaction()
    stuck.produce(topic, b"never")
    assert stuck.flush(30) == 0
    ok = Producer({"bootstrap.servers": bs, "transactional.id": f"ok-{topic}"})
    ok.init_transactions(30)
    ok.begin_transaction()
    ok.produce(topic, b"later")
    ok.commit_transaction(30)
    # The open transaction holds the last stable offset back, so "later" is not readable yet; once the coordinator
    # aborts it (Apache Kafka checks every 10 s), both the abort marker and "later" become visible.
    c = Consumer(
        {"bootstrap.servers": bs, "group.id": "r", "isolation.level": "read_committed", "enable.auto.commit": False}
    )
    c.assign([TopicPartition(topic, 0, 0)])
    seen: list[bytes] = []
    deadline = time.monotonic() + 40
    while b"later" not in seen and time.monotonic() < deadline:
        seen += [m.value() or b"" for m in c.consume(10, timeout=0.5) if m.error() is None]
    c.close()
    assert seen == [b"later"], seen
    try:
        stuck.commit_transaction(30)
    except KafkaException as e:
        assert e.args[0].code() != 0
    else:
        raise AssertionError("committing a transaction the coordinator aborted must fail")
