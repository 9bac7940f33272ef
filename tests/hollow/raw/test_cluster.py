"""RAW Hollow unchanged on a 3-node Apache Kafka cluster (KRaft, combined nodes, replication factor 3,
``min.insync.replicas=2``, as ``scripts/kafka-cluster`` starts it): a writer, a producer and a client; puts, a
strong read, a read-your-write by token; then one broker that is not the KRaft quorum's leader is killed (kill -9):
reads keep answering, and a write after it is acknowledged by the two replicas left and read back.

The brokers fence a dead broker after ``broker.session.timeout.ms`` (set to 3 s here, 9 s by default): until then
the partitions it led take no writes, so the write after the kill may be refused once (the writer then takes
over again from a fresh read of the log) and is retried within a bound.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from kio.index import load_request_schema

from hollow.raw.raw_support import Movie, wait_until
from loosely.clients.wire import KafkaConnection
from loosely.hollow.api import KafkaAnnouncer
from loosely.hollow.raw import Dataset, NotLeaderError, RawClient, RawProducer, WriteError, Writer
from loosely.protocol.messages import ApiKey
from loosely.testing import ApacheKafka

WRITE_AFTER_KILL_S_MAX = 45.0


@pytest.fixture(scope="module")
def three_nodes(jars_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    kafka = ApacheKafka(nodes=3, base_dir=tmp_path_factory.mktemp("raw-kafka3"), jars_dir=jars_dir, heap_mb=320,
                        config={"min.insync.replicas": "2", "broker.session.timeout.ms": "3000",
                                "broker.heartbeat.interval.ms": "500", "replica.lag.time.max.ms": "5000",
                                # the first transaction creates this topic: 50 partitions x 3 replicas by default
                                "transaction.state.log.num.partitions": "4"})
    kafka.start(timeout_s=180)
    try:
        yield kafka
    finally:
        for node_id in (1, 2, 3):  # nothing to keep: SIGKILL spares each node's orderly shutdown (seconds)
            kafka.kill(node_id)
        kafka.stop()


def quorum_leader(kafka: ApacheKafka) -> int:
    """The node leading the KRaft quorum (the active controller), as DescribeQuorum tells (a broker forwards it to
    the controllers; confluent-kafka cannot send it, so loosely's own connection does)."""
    request_cls = load_request_schema(ApiKey.DESCRIBE_QUORUM, 1)
    kinds = sys.modules[request_cls.__module__]
    request = request_cls(topics=(kinds.TopicData(topic_name="__cluster_metadata",
                                                  partitions=(kinds.PartitionData(partition_index=0),)),))
    with KafkaConnection("127.0.0.1", kafka.node(1).port, 30) as conn:
        answer = conn.call(ApiKey.DESCRIBE_QUORUM, 1, request, 30)
    leader = int(answer.topics[0].partitions[0].leader_id)
    assert leader in (1, 2, 3), answer
    return leader


@pytest.mark.kafka
def test_writer_producer_and_client_on_three_nodes_survive_a_broker_kill(three_nodes: ApacheKafka,
                                                                         tmp_path: Path) -> None:
    boot = three_nodes.bootstrap_servers
    ds = Dataset(f"raw3-{uuid.uuid4().hex[:8]}", [Movie], bootstrap_servers=boot,
                 blob_store=str(tmp_path / "blobs"), partitions=2, replication_factor=3)
    ds.ensure_topics()
    admin = AdminClient({"bootstrap.servers": boot})

    def replicas(topic: str) -> list[int] | None:
        """Replicas per partition, once the broker asked knows the topic (Kafka answers a create before every
        broker's metadata has it)."""
        found = admin.list_topics(topic, timeout=30).topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return None
        return [len(p.replicas) for _, p in sorted(found.partitions.items())]

    for topic, partitions in ((ds.changes_topic, 2), (ds.writer_topic, 1), (ds.producer_topic, 1)):
        wait_until(lambda topic=topic: replicas(topic) is not None)
        assert replicas(topic) == [3] * partitions, topic
    # plain Hollow's announcer makes its topic with the cluster's default replication factor too, not 1
    announcer = KafkaAnnouncer(boot, f"{ds.name}.announce", ds.name)
    announcer.start()
    announcer.stop()
    wait_until(lambda: replicas(f"{ds.name}.announce") is not None)
    assert replicas(f"{ds.name}.announce") == [3]

    with Writer(ds) as writer, RawProducer(ds, cycle_interval_ms=200) as producer, \
            RawClient(ds, timeout_ms=20_000) as client:
        assert writer.wait_for_leadership(60_000)
        for i in range(20):
            writer.put(Movie(i, f"m{i}", 1990 + i))
        assert client.get(Movie, 7, consistency="strong") == Movie(7, "m7", 1997)
        mine = writer.put(Movie(7, "seven"))
        assert client.get(Movie, 7, after=mine.token) == Movie(7, "seven")
        wait_until(lambda: producer.version is not None and client.version == producer.version, 30)

        victim = next(n for n in (1, 2, 3) if n != quorum_leader(three_nodes))
        three_nodes.kill(victim)
        # eventual reads answer from memory while the cluster moves the dead broker's partitions
        assert [client.get(Movie, i) for i in (0, 7, 19)] == [Movie(0, "m0", 1990), Movie(7, "seven"),
                                                              Movie(19, "m19", 2009)]
        started = time.monotonic()
        refusals = []
        while True:
            try:
                assert writer.wait_for_leadership(int(WRITE_AFTER_KILL_S_MAX * 1000))
                after = writer.put(Movie(7, "after the kill"))
                break
            except (NotLeaderError, WriteError) as e:  # the first may meet the dead broker's partitions
                refusals.append(type(e).__name__)
                assert time.monotonic() - started < WRITE_AFTER_KILL_S_MAX, refusals
        assert client.get(Movie, 7, after=after.token) == Movie(7, "after the kill")
        assert client.get(Movie, 19, consistency="strong") == Movie(19, "m19", 2009)
        # the producer folds on over the two replicas left, and the client loads what it published
        wait_until(lambda: all(producer.statistics().positions.get(p, 0) >= o for p, o in after.token.offsets.items()),
                   30)
        wait_until(lambda: client.version == producer.version and client.statistics().overlay == 0, 30)
        assert client.get_versioned(Movie, 7) == (Movie(7, "after the kill"), after.version)
        assert len(refusals) <= 3, refusals
