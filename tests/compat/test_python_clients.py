"""aiokafka and kafka-python against loosely and Apache Kafka: produce and consume by partition, every codec."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTP
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from compat._support import Cluster, create_topic


@pytest.mark.newest_kafka
@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_aiokafka_produce_consume(cluster: Cluster, topic: str, codec: str | None) -> None:
    create_topic(cluster.bootstrap_servers, topic, 2)

    async def run() -> list[tuple[int, bytes, bytes]]:
        p = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap_servers, compression_type=codec, linger_ms=5)
        await p.start()
        try:
            futs = [await p.send(topic, b"v%d" % i, key=b"k%d" % i, partition=i % 2) for i in range(500)]
            metas = [await f for f in futs]
        finally:
            await p.stop()
        assert [m.offset for m in metas if m.partition == 0] == list(range(250))
        c = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap_servers, group_id=None, enable_auto_commit=False)
        await c.start()
        try:
            tp = AioTP(topic, 0)
            c.assign([tp])
            await c.seek_to_beginning(tp)
            out: list[tuple[int, bytes, bytes]] = []
            while len(out) < 250:
                batch = await c.getmany(tp, timeout_ms=5000)
                assert batch, "consumer timed out"
                out += [(m.offset, m.key, m.value) for m in batch[tp]]
            return out
        finally:
            await c.stop()

    got = asyncio.run(run())
    assert got == [(j, b"k%d" % (2 * j), b"v%d" % (2 * j)) for j in range(250)]


@pytest.mark.newest_kafka
@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_kafka_python_produce_consume(cluster: Cluster, topic: str, codec: str | None) -> None:
    create_topic(cluster.bootstrap_servers, topic, 3)
    # Idempotence (kafka-python's default) needs InitProducerId, which the consumer-group issue adds; this test
    # is about produce/consume and codecs.
    p = KafkaProducer(
        bootstrap_servers=cluster.bootstrap_servers,
        compression_type=codec,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
    )
    futs = [
        p.send(topic, value=b"v%d" % i, key=b"k%d" % i, partition=i % 3, headers=[("n", b"%d" % i)]) for i in range(300)
    ]
    metas = [f.get(timeout=30) for f in futs]
    p.close()
    assert sorted(m.offset for m in metas if m.partition == 2) == list(range(100))
    c = KafkaConsumer(
        bootstrap_servers=cluster.bootstrap_servers, group_id=None, enable_auto_commit=False, consumer_timeout_ms=10_000
    )
    tp = TopicPartition(topic, 2)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = []
    for m in c:
        got.append((m.offset, m.key, m.value, m.headers))
        if len(got) == 100:
            break
    c.close()
    assert got == [(j, b"k%d" % (3 * j + 2), b"v%d" % (3 * j + 2), [("n", b"%d" % (3 * j + 2))]) for j in range(100)]


@pytest.mark.parametrize("codec_name", ["gzip", "snappy", "lz4", "zstd"])
def test_batches_we_compress_are_accepted_and_read_by_kafka_and_java(
    cluster: Cluster, topic: str, codec_name: str
) -> None:
    """Batches built by loosely.protocol (the cleaner, topic compression.type) must be readable by every client."""
    import datetime

    from kio.schema.produce.v7.request import PartitionProduceData, ProduceRequest, TopicProduceData

    from broker._raw import Raw
    from compat._java import run_java
    from loosely.protocol.compression import Codec
    from loosely.protocol.records import NewRecord, build_batch

    create_topic(cluster.bootstrap_servers, topic, 1)
    now = int(__import__("time").time() * 1000)
    batch = build_batch(
        [NewRecord(b"key-%d" % i, b"value-%d" % i * 50, now) for i in range(300)], codec=Codec.parse(codec_name)
    )
    req = ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout=datetime.timedelta(seconds=10),
        topic_data=(TopicProduceData(name=topic, partition_data=(PartitionProduceData(index=0, records=batch),)),),
    )
    resp = Raw(cluster.bootstrap_servers).request(0, 7, req)
    assert resp.responses[0].partition_responses[0].error_code.value == 0  # type: ignore[attr-defined]
    r = run_java("interop/java-clients", "ClientsProbe", "consume", cluster.bootstrap_servers, topic, "0", "300")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert len(lines) == 300 and lines[299].startswith("299 key-299 value-299")
