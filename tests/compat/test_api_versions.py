"""The newest request versions Kafka 4.4.0 serves, served by loosely too: ApiVersions advertises the same maxima
for every API both implement, and a request at each raised version gets the same answer from both brokers.

The module runs against loosely, Kafka 4.1.1 and the newest Kafka (``newest_kafka``). Kafka 4.1.1 is held to its
own, older maxima (``KAFKA_OLDER``); the versions new in Kafka 4.2-4.4 are asked of loosely and Kafka 4.4.0 only."""

from __future__ import annotations

import datetime
import sys
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as ConfluentTP
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.protocol.consumer.group import OffsetCommitRequest, OffsetFetchRequest
from kafka.protocol.consumer.offsets import ListOffsetsRequest
from kafka.structs import OffsetAndMetadata

from broker._raw import Raw
from compat._java import run_java
from compat._support import Cluster, create_topic
from loosely.protocol.messages import SUPPORTED_VERSIONS, ApiKey, build, load_request_schema
from loosely.protocol.records import NewRecord, build_batch
from loosely.testing.apache_kafka import KAFKA_VERSION_NEWEST, ensure_kafka_jars

# the newest versions loosely serves, Kafka 4.4.0's, for the APIs whose maxima moved since Kafka 4.0
NEWEST = {
    ApiKey.PRODUCE: 13,
    ApiKey.FETCH: 18,
    ApiKey.LIST_OFFSETS: 11,  # 4.2: -6, the earliest offset pending upload to tiered storage (KIP-1023)
    ApiKey.METADATA: 13,
    ApiKey.OFFSET_COMMIT: 10,  # topics by id
    ApiKey.OFFSET_FETCH: 10,
    ApiKey.DESCRIBE_GROUPS: 6,
    ApiKey.DESCRIBE_CLUSTER: 2,
    ApiKey.API_VERSIONS: 5,  # the cluster and node the client means (KIP-1242)
    ApiKey.DELETE_GROUPS: 3,  # an error message per group
    ApiKey.DESCRIBE_LOG_DIRS: 5,  # 4.3: whether a directory is cordoned
    ApiKey.WRITE_TXN_MARKERS: 2,  # each marker's transaction version (KIP-1228)
    # transactions version 2 (KIP-890); InitProducerId v6 (KIP-939) is still unstable, so 5 is advertised
    ApiKey.INIT_PRODUCER_ID: 5,
    ApiKey.ADD_PARTITIONS_TO_TXN: 5,
    ApiKey.ADD_OFFSETS_TO_TXN: 4,
    ApiKey.END_TXN: 5,
    ApiKey.TXN_OFFSET_COMMIT: 6,  # topics by id (KIP-1319)
}
# the same maxima as older Kafka releases advertise them: loosely serves Kafka 4.4.0's as one release set
KAFKA_OLDER = {"4.1.1": {**NEWEST, ApiKey.LIST_OFFSETS: 10, ApiKey.OFFSET_COMMIT: 9, ApiKey.OFFSET_FETCH: 9,
                         ApiKey.API_VERSIONS: 4, ApiKey.DELETE_GROUPS: 2, ApiKey.DESCRIBE_LOG_DIRS: 4,
                         ApiKey.WRITE_TXN_MARKERS: 1, ApiKey.TXN_OFFSET_COMMIT: 5}}
# the release kafka-python infers from each broker's ApiVersions answer (4.3, its newest, for loosely and Kafka 4.4)
INFERRED = {"4.1.1": (4, 1), "4.4.0": (4, 3)}
LOOSELY_INFERRED = (4, 3)
# loosely and Kafka KAFKA_VERSION_NEWEST (the cluster parameter conftest names it by), not Kafka 4.1.1
NEWEST_ONLY = pytest.mark.parametrize("cluster", ["loosely", f"kafka-{KAFKA_VERSION_NEWEST}"], indirect=True)

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
    expected = KAFKA_OLDER.get(cluster.version or "", NEWEST) if cluster.kind == "kafka" else NEWEST
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
    taken for Kafka 4.4 (which kafka-python, knowing 4.3 as its newest, calls 4.3), each Kafka for its own release."""
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    try:
        (node,) = admin.describe_cluster()["brokers"]
        expected = INFERRED[cluster.version] if cluster.version else LOOSELY_INFERRED
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


COORDINATOR_NOT_YET = frozenset({14, 15, 16})  # loading, not available, not the coordinator (yet)


def _settled(send: Any, retry: frozenset[int], code: Any) -> Any:
    """The first answer whose code is not one that only says "not yet" (a coordinator loading, a new topic)."""
    deadline = time.monotonic() + 30
    while (answer := send()) is not None and code(answer) in retry and time.monotonic() < deadline:
        time.sleep(0.1)
    return answer


def _call(raw: Raw, api: int, version: int, **fields: Any) -> Any:
    return raw.request(api, version, build(load_request_schema(api, version), **fields))


@NEWEST_ONLY
def test_requests_new_in_kafka_4_4(cluster: Cluster, topic: str) -> None:
    """Every version Kafka 4.2-4.4 added, asked of loosely and Kafka 4.4.0 with the same assertions: topics by id in
    the offset APIs (an id no topic has: UNKNOWN_TOPIC_ID), refused partitions listed first, ListOffsets -6 and its
    version gate, WriteTxnMarkers v2's epoch rule, ApiVersions v5's target checks, DeleteGroups v3 and
    DescribeLogDirs v5."""
    create_topic(cluster.bootstrap_servers, topic, 1)
    raw = Raw(cluster.bootstrap_servers)
    group, txn_id, nobody = f"g-{topic}", f"tx-{topic}", uuid.UUID(int=12345)
    try:
        cls, m = _request(ApiKey.METADATA, 13)
        meta = _settled(lambda: raw.request(ApiKey.METADATA, 13, cls(
            topics=(m.MetadataRequestTopic(topic_id=None, name=topic),), allow_auto_topic_creation=False,
            include_topic_authorized_operations=False)), frozenset({3}), lambda a: int(a.topics[0].error_code))
        tid = meta.topics[0].topic_id
        _settled(lambda: _call(raw, ApiKey.FIND_COORDINATOR, 4, key_type=0, coordinator_keys=(group,)).coordinators[0],
                 COORDINATOR_NOT_YET, lambda c: int(c.error_code))

        def list_offsets(version: int, ts: int) -> tuple[int, int, int, int]:
            _, lm = _request(ApiKey.LIST_OFFSETS, version)
            a = _call(raw, ApiKey.LIST_OFFSETS, version, replica_id=-1, isolation_level=0, timeout=_ms(1_000),
                      topics=(lm.ListOffsetsTopic(name=topic, partitions=(lm.ListOffsetsPartition(
                          partition_index=0, current_leader_epoch=-1, timestamp=ts),)),))
            (p,) = a.topics[0].partitions
            return int(p.error_code), int(p.offset), int(p.timestamp), int(p.leader_epoch)

        # nothing is tiered: no offset pending upload; -6 needs v11, and an unknown timestamp is never served
        assert (list_offsets(11, -6), list_offsets(10, -6), list_offsets(11, -7)[0]) == ((0, -1, -1, -1),
                                                                                        (35, -1, -1, -1), 35)

        _, m = _request(ApiKey.OFFSET_COMMIT, 10)
        commit = _settled(lambda: _call(
            raw, ApiKey.OFFSET_COMMIT, 10, group_id=group, generation_id_or_member_epoch=-1, member_id="",
            group_instance_id=None, topics=(
                m.OffsetCommitRequestTopic(topic_id=tid, partitions=tuple(m.OffsetCommitRequestPartition(
                    partition_index=p, committed_offset=5, committed_leader_epoch=-1, committed_metadata="md")
                    for p in (0, 7))),
                m.OffsetCommitRequestTopic(topic_id=nobody, partitions=(m.OffsetCommitRequestPartition(
                    partition_index=0, committed_offset=5, committed_leader_epoch=-1, committed_metadata=None),)))),
            COORDINATOR_NOT_YET, lambda a: int(a.topics[0].partitions[1].error_code))
        assert [(t.topic_id, [(p.partition_index, int(p.error_code)) for p in t.partitions]) for t in commit.topics] \
            == [(tid, [(7, 3), (0, 0)]), (nobody, [(0, 100)])]

        _, m = _request(ApiKey.OFFSET_FETCH, 10)
        fetched = _call(raw, ApiKey.OFFSET_FETCH, 10, require_stable=False, groups=tuple(
            m.OffsetFetchRequestGroup(group_id=g, member_id=None, member_epoch=-1, topics=topics)
            for g, topics in ((group, (m.OffsetFetchRequestTopics(topic_id=tid, partition_indexes=(0, 1)),
                                       m.OffsetFetchRequestTopics(topic_id=nobody, partition_indexes=(0,)))),
                              (group, None), (f"no-{group}", None))))
        assert [(g.group_id, int(g.error_code), [(t.topic_id, [
            (p.partition_index, int(p.committed_offset), p.metadata, int(p.error_code)) for p in t.partitions])
            for t in g.topics]) for g in fetched.groups] == [
            (group, 0, [(tid, [(0, 5, "md", 0), (1, -1, "", 0)]), (nobody, [(0, -1, "", 100)])]),
            (group, 0, [(tid, [(0, 5, "md", 0)])]),
            (f"no-{group}", 0, []),
        ]

        # TxnOffsetCommit v6, transactions version 2: the group's partition joins the transaction implicitly
        _settled(lambda: _call(raw, ApiKey.FIND_COORDINATOR, 4, key_type=1, coordinator_keys=(txn_id,)).coordinators[0],
                 COORDINATOR_NOT_YET, lambda c: int(c.error_code))
        init = _settled(lambda: _call(raw, ApiKey.INIT_PRODUCER_ID, 5, transactional_id=txn_id,
                                      transaction_timeout=_ms(60_000), producer_id=-1, producer_epoch=-1),
                        COORDINATOR_NOT_YET | {51}, lambda a: int(a.error_code))
        _, m = _request(ApiKey.TXN_OFFSET_COMMIT, 6)
        txn_commit = _settled(lambda: _call(
            raw, ApiKey.TXN_OFFSET_COMMIT, 6, transactional_id=txn_id, group_id=group, producer_id=init.producer_id,
            producer_epoch=init.producer_epoch, generation_id_or_member_epoch=-1, member_id="",
            group_instance_id=None, topics=(
                m.TxnOffsetCommitRequestTopic(topic_id=tid, partitions=tuple(m.TxnOffsetCommitRequestPartition(
                    partition_index=p, committed_offset=9, committed_leader_epoch=-1, committed_metadata="t")
                    for p in (0, 5))),
                m.TxnOffsetCommitRequestTopic(topic_id=nobody, partitions=(m.TxnOffsetCommitRequestPartition(
                    partition_index=0, committed_offset=9, committed_leader_epoch=-1, committed_metadata=None),)))),
            COORDINATOR_NOT_YET | {51}, lambda a: int(a.topics[0].partitions[1].error_code))
        assert [(t.topic_id, [(p.partition_index, int(p.error_code)) for p in t.partitions])
                for t in txn_commit.topics] == [(tid, [(5, 3), (0, 0)]), (nobody, [(0, 100)])]

        # WriteTxnMarkers v2 (KIP-1228): a transaction version 2 marker must carry a newer epoch than the producer's
        # data, except when it repeats one for a transaction already ended; the transaction's data comes first
        _, m = _request(ApiKey.PRODUCE, 13)
        batch = build_batch([NewRecord(key=b"k", value=b"t", timestamp=1_700_000_000_000)], transactional=True,
                            producer_id=int(init.producer_id), producer_epoch=int(init.producer_epoch),
                            base_sequence=0)
        produced = _settled(lambda: _call(raw, ApiKey.PRODUCE, 13, transactional_id=txn_id, acks=-1,
                                          timeout=_ms(10_000), topic_data=(m.TopicProduceData(topic_id=tid,
                                          partition_data=(m.PartitionProduceData(index=0, records=batch),)),)),
                            frozenset({6, 51}), lambda a: int(a.responses[0].partition_responses[0].error_code))
        assert int(produced.responses[0].partition_responses[0].error_code) == 0
        _, m = _request(ApiKey.WRITE_TXN_MARKERS, 2)

        def marker(epoch: int, version: int) -> int:
            written = _call(raw, ApiKey.WRITE_TXN_MARKERS, 2, markers=(m.WritableTxnMarker(
                producer_id=init.producer_id, producer_epoch=epoch, transaction_result=True, coordinator_epoch=0,
                topics=(m.WritableTxnMarkerTopic(name=topic, partition_indexes=(0,)),), transaction_version=version),))
            return int(written.markers[0].topics[0].partitions[0].error_code)

        bumped = int(init.producer_epoch) + 1
        assert [marker(int(init.producer_epoch), 2), marker(bumped, 2), marker(bumped, 2), marker(bumped - 1, 1),
                marker(bumped - 1, 2)] == [47, 0, 0, 47, 47]
        ended = _settled(lambda: _call(raw, ApiKey.END_TXN, 5, transactional_id=txn_id, producer_id=init.producer_id,
                                       producer_epoch=init.producer_epoch, committed=False),
                         frozenset({51}), lambda a: int(a.error_code))
        assert int(ended.error_code) == 0

        # ApiVersions v5 (KIP-1242): a client that names the wrong cluster or node must bootstrap again
        described = _call(raw, ApiKey.DESCRIBE_CLUSTER, 2, include_cluster_authorized_operations=False,
                          endpoint_type=1, include_fenced_brokers=False)
        me, cluster_id = int(described.brokers[0].broker_id), described.cluster_id
        answers = []
        for target in ((cluster_id, me), (cluster_id, me + 1), ("another", me), (None, me), (cluster_id, -1)):
            a = _call(raw, ApiKey.API_VERSIONS, 5, client_software_name="t", client_software_version="1",
                      cluster_id=target[0], node_id=target[1])
            answers.append((int(a.error_code), bool(a.api_keys), int(a.finalized_features_epoch) >= 0))
        assert answers == [(0, True, True), (129, False, False), (129, False, False), (42, False, False),
                           (42, False, False)]

        # DeleteGroups v3: the order of the results is the coordinator's (Kafka's follows its offsets partitions)
        deleted = _call(raw, ApiKey.DELETE_GROUPS, 3, groups_names=(group, f"no-{group}", ""))
        assert {r.group_id: (int(r.error_code), r.error_message) for r in deleted.results} == {
            group: (0, None), f"no-{group}": (69, None), "": (69, None)}

        dirs = _call(raw, ApiKey.DESCRIBE_LOG_DIRS, 5, topics=None)
        assert [(int(d.error_code), d.is_cordoned, topic in {t.name for t in d.topics}) for d in dirs.results] == [
            (0, False, True)]
    finally:
        raw.close()


@NEWEST_ONLY
def test_kafka_python_uses_the_new_offset_versions(cluster: Cluster, topic: str) -> None:
    """kafka-python takes loosely for the release it takes Kafka 4.4.0 for, so it commits and fetches offsets with
    OffsetCommit and OffsetFetch v10 (topics by id) and lists offsets with ListOffsets v11."""
    create_topic(cluster.bootstrap_servers, topic, 1)
    group = f"g-{topic}"
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap_servers, group_id=group, enable_auto_commit=False)
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        assert consumer.end_offsets([tp]) == {tp: 0}
        (node,) = admin.describe_cluster()["brokers"]
        chosen = admin.get_broker_version_data(node["broker_id"])
        assert [chosen.api_version(api) for api in (ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest)] \
            == [11, 10, 10]
        consumer.commit({tp: OffsetAndMetadata(3, "m", -1)})
        assert consumer.committed(tp) == 3
        listed = admin.list_group_offsets({group: None})  # all the group's topics, named by id in the answer
        assert {g: {k: (v.offset, v.metadata) for k, v in offsets.items()} for g, offsets in listed.items()} == {
            group: {tp: (3, "m")}}
    finally:
        consumer.close()
        admin.close()


@NEWEST_ONLY
def test_java_clients_of_the_newest_release(cluster: Cluster, topic: str) -> None:
    """Kafka 4.4.0's Java consumer (the broker's jars hold its clients), a member of a consumer-protocol group,
    commits and fetches its group's offsets at the versions both brokers advertise, OffsetCommit and OffsetFetch
    v10, naming topics by id; loosely is checked to have been asked at v10."""
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 2)
    producer = Producer({"bootstrap.servers": bs})
    for i in range(6):
        producer.produce(topic, b"v%d" % i, partition=i % 2)
    assert producer.flush(30) == 0
    jars, group = ensure_kafka_jars(KAFKA_VERSION_NEWEST), f"g-{topic}"
    seen = _record_versions(cluster, (ApiKey.OFFSET_COMMIT, ApiKey.OFFSET_FETCH))
    # the consumer group protocol's member (KIP-848) names topics by id; the classic one still sends names (v9)
    consumed = run_java("interop/java-clients", "GroupsProbe", "group-consume", bs, topic, group, "6", "consumer",
                        jars=jars)
    assert consumed.returncode == 0, consumed.stderr[-3000:]
    assert sorted(tuple(line.split()) for line in consumed.stdout.splitlines()) == sorted(
        (str(i % 2), str(i // 2), f"v{i}") for i in range(6))
    reader = Consumer({"bootstrap.servers": bs, "group.id": group})
    try:
        committed = reader.committed([ConfluentTP(topic, 0), ConfluentTP(topic, 1)], timeout=30)
    finally:
        reader.close()
    assert [(c.partition, c.offset) for c in committed] == [(0, 3), (1, 3)]
    if cluster.broker is not None:  # what loosely was asked (Kafka's side shows only in its answers)
        assert {(ApiKey.OFFSET_COMMIT, 10), (ApiKey.OFFSET_FETCH, 10)} <= seen


def _record_versions(cluster: Cluster, keys: tuple[int, ...]) -> set[tuple[int, int]]:
    """``(api key, version)`` of every request for ``keys`` an embedded loosely broker handles from now on."""
    seen: set[tuple[int, int]] = set()
    if cluster.broker is None:
        return seen
    handlers = cluster.broker.broker.handlers
    for key in keys:
        async def recording(ctx: Any, header: Any, request: Any, handle: Any = handlers[key]) -> object:
            seen.add((header.api_key, header.api_version))
            return await handle(ctx, header, request)

        handlers[key] = recording
    return seen
