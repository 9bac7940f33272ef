"""The newest request versions Kafka 4.1.1 serves, served by loosely too: ApiVersions advertises the same maxima
for every API both implement, and a request at each raised version gets the same answer from both brokers.

The module also runs against the newest Kafka (``newest_kafka``): where that release advertises more than 4.1.1
(``KAFKA_NEWEST``), the test holds it to its own answer and loosely to 4.1.1's; docs/broker.md lists the gaps."""

from __future__ import annotations

import datetime
import sys
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer
from kafka import KafkaAdminClient

from broker._raw import Raw
from compat._support import Cluster, create_topic
from loosely.protocol.messages import SUPPORTED_VERSIONS, ApiKey, load_request_schema
from loosely.protocol.records import NewRecord, build_batch

# what Kafka 4.1.1 advertises for the APIs whose newest version loosely raised to it
NEWEST = {
    ApiKey.PRODUCE: 13,
    ApiKey.FETCH: 18,
    ApiKey.LIST_OFFSETS: 10,
    ApiKey.METADATA: 13,
    ApiKey.DESCRIBE_GROUPS: 6,
    ApiKey.DESCRIBE_CLUSTER: 2,
    # transactions version 2 (KIP-890); InitProducerId v6 (KIP-939) is still unstable in 4.1, so 5 is advertised
    ApiKey.INIT_PRODUCER_ID: 5,
    ApiKey.ADD_PARTITIONS_TO_TXN: 5,
    ApiKey.ADD_OFFSETS_TO_TXN: 4,
    ApiKey.END_TXN: 5,
    ApiKey.TXN_OFFSET_COMMIT: 5,
}
# the same maxima as newer Kafka releases advertise them: Kafka 4.4.0 lists by the earliest offset pending upload
# to tiered storage (ListOffsets v11, KIP-1023) and names topics by id in TxnOffsetCommit v6, which loosely does not
# serve yet (docs/broker.md, "Apache Kafka releases")
KAFKA_NEWEST = {"4.4.0": {**NEWEST, ApiKey.LIST_OFFSETS: 11, ApiKey.TXN_OFFSET_COMMIT: 6}}
# the release kafka-python infers from each broker's ApiVersions answer (loosely's is Kafka 4.1's)
INFERRED = {"4.1.1": (4, 1), "4.4.0": (4, 3)}

pytestmark = pytest.mark.newest_kafka


def _request(api_key: int, version: int) -> tuple[Any, Any]:
    """The request class of one version and the module of its nested classes."""
    cls = load_request_schema(api_key, version)
    return cls, sys.modules[cls.__module__]


def _ms(n: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=n)


def test_the_newest_versions_are_advertised_alike(cluster: Cluster) -> None:
    raw = Raw(cluster.bootstrap_servers)
    try:
        cls, _ = _request(ApiKey.API_VERSIONS, 3)
        answer: Any = raw.request(ApiKey.API_VERSIONS, 3, cls(client_software_name="t", client_software_version="1"))
    finally:
        raw.close()
    advertised = {int(k.api_key): int(k.max_version) for k in answer.api_keys}
    expected = KAFKA_NEWEST.get(cluster.version or "", NEWEST) if cluster.kind == "kafka" else NEWEST
    assert {k: advertised[k] for k in NEWEST} == expected
    finalized = {f.name: (int(f.min_version_level), int(f.max_version_level)) for f in answer.finalized_features}
    assert finalized["transaction.version"] == (2, 2)
    assert all(SUPPORTED_VERSIONS[k][1] == v for k, v in NEWEST.items())


def test_requests_at_the_newest_versions(cluster: Cluster, topic: str) -> None:
    create_topic(cluster.bootstrap_servers, topic, 1)
    raw = Raw(cluster.bootstrap_servers)
    try:
        cls, m = _request(ApiKey.METADATA, 13)
        deadline = time.monotonic() + 20
        while True:  # Kafka's brokers learn of a new topic a moment after CreateTopics answers
            meta: Any = raw.request(ApiKey.METADATA, 13, cls(
                topics=(m.MetadataRequestTopic(topic_id=None, name=topic),), allow_auto_topic_creation=False,
                include_topic_authorized_operations=False))
            if [int(t.error_code) for t in meta.topics] != [3] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert int(meta.error_code) == 0 and [int(t.error_code) for t in meta.topics] == [0]
        topic_id = meta.topics[0].topic_id
        assert topic_id is not None and topic_id != uuid.UUID(int=0)

        # Produce v13 names the topic by its id; an id no topic has is UNKNOWN_TOPIC_ID
        cls, m = _request(ApiKey.PRODUCE, 13)
        batch = build_batch([NewRecord(key=b"k", value=b"v", timestamp=1_700_000_000_000)])

        def produce(tid: uuid.UUID) -> list[tuple[int, int]]:
            data = m.TopicProduceData(topic_id=tid, partition_data=(m.PartitionProduceData(index=0, records=batch),))
            answer: Any = raw.request(ApiKey.PRODUCE, 13, cls(transactional_id=None, acks=-1,
                                                               timeout=_ms(10_000), topic_data=(data,)))
            return [(int(p.error_code), int(p.base_offset)) for t in answer.responses for p in t.partition_responses]

        deadline = time.monotonic() + 20
        while (first := produce(topic_id)) == [(6, -1)] and time.monotonic() < deadline:
            time.sleep(0.1)  # Kafka's partition is created before its leader is known: a client retries
        assert first == [(0, 0)]
        assert produce(uuid.uuid4()) == [(100, -1)]

        cls, m = _request(ApiKey.LIST_OFFSETS, 10)
        offsets: Any = raw.request(ApiKey.LIST_OFFSETS, 10, cls(
            replica_id=-1, isolation_level=0, timeout=_ms(1_000), topics=(m.ListOffsetsTopic(name=topic, partitions=(
                m.ListOffsetsPartition(partition_index=0, current_leader_epoch=-1, timestamp=-1),)),)))
        assert [(int(p.error_code), int(p.offset)) for t in offsets.topics for p in t.partitions] == [(0, 1)]

        cls, m = _request(ApiKey.FETCH, 18)
        fetched: Any = raw.request(ApiKey.FETCH, 18, cls(
            max_wait=_ms(100), min_bytes=1, max_bytes=1 << 20, isolation_level=0, session_id=0, session_epoch=-1,
            topics=(m.FetchTopic(topic_id=topic_id, partitions=(m.FetchPartition(
                partition=0, current_leader_epoch=-1, fetch_offset=0, last_fetched_epoch=-1, log_start_offset=-1,
                partition_max_bytes=1 << 20),)),),
            forgotten_topics_data=(), rack_id=""))
        (part,) = [p for t in fetched.responses for p in t.partitions]
        assert (int(part.error_code), int(part.high_watermark)) == (0, 1) and b"v" in bytes(part.records)

        cls, m = _request(ApiKey.DESCRIBE_CLUSTER, 2)
        described: Any = raw.request(ApiKey.DESCRIBE_CLUSTER, 2, cls(
            include_cluster_authorized_operations=False, endpoint_type=1, include_fenced_brokers=True))
        assert int(described.error_code) == 0 and [b.is_fenced for b in described.brokers] == [False]

        # DescribeGroups v6 (KIP-1043): a group that does not exist is an error, no longer a Dead group
        find, _ = _request(ApiKey.FIND_COORDINATOR, 4)
        cls, m = _request(ApiKey.DESCRIBE_GROUPS, 6)
        deadline = time.monotonic() + 30
        while True:  # Kafka creates its offsets topic on the first FindCoordinator, then loads it
            raw.request(ApiKey.FIND_COORDINATOR, 4, find(key_type=0, coordinator_keys=("no-such-group",)))
            groups: Any = raw.request(ApiKey.DESCRIBE_GROUPS, 6, cls(groups=("no-such-group",),
                                                                     include_authorized_operations=False))
            got = [(int(g.error_code), g.error_message, g.group_state) for g in groups.groups]
            if got[0][0] not in (14, 15, 16) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert got == [(69, "Group no-such-group not found.", "Dead")]
    finally:
        raw.close()


def test_kafka_python_infers_each_brokers_release(cluster: Cluster) -> None:
    """kafka-python infers the broker's release from its ApiVersions answer and caps its requests to it: loosely is
    taken for Kafka 4.1, each Kafka for its own release."""
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    try:
        (node,) = admin.describe_cluster()["brokers"]
        expected = INFERRED[cluster.version] if cluster.version else (4, 1)
        assert admin.get_broker_version_data(node["broker_id"]).broker_version == expected
    finally:
        admin.close()


def test_describe_groups_of_a_consumer_protocol_group(cluster: Cluster, topic: str) -> None:
    """A KIP-848 group asked for with the classic DescribeGroups, before and from v6 (KIP-1043)."""
    create_topic(cluster.bootstrap_servers, topic, 1)
    group = f"g-{topic}"
    member = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": group,
                       "group.protocol": "consumer"})
    raw = Raw(cluster.bootstrap_servers)
    try:
        member.subscribe([topic])
        deadline = time.monotonic() + 60
        while not member.assignment():
            assert time.monotonic() < deadline, "never assigned"
            member.poll(0.1)
        answers = {}
        for version in (5, 6):
            cls, _ = _request(ApiKey.DESCRIBE_GROUPS, version)
            got: Any = raw.request(ApiKey.DESCRIBE_GROUPS, version, cls(groups=(group,),
                                                                         include_authorized_operations=False))
            answers[version] = [(int(g.error_code), getattr(g, "error_message", None), g.group_state,
                                 g.protocol_type, len(g.members)) for g in got.groups]
        assert answers == {5: [(0, None, "Dead", "", 0)],
                           6: [(69, f"Group {group} is not a classic group.", "Dead", "", 0)]}
    finally:
        raw.close()
        member.close()
