"""The admin APIs a single node answers as a one-node Apache Kafka cluster does, checked with Kafka's own tools
(``kafka-log-dirs``, ``kafka-transactions``, ...) and with kafka-python's admin client, against loosely's broker
and Apache Kafka side by side with the same assertions.

One loosely broker serves the whole module (and the session's Apache Kafka the Kafka side), so each test works on
topics and transactional ids of its own.
"""

from __future__ import annotations

import datetime
import json
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import ElectionType, Producer
from confluent_kafka import TopicPartition as ConfluentTopicPartition
from confluent_kafka.admin import AdminClient
from kafka.admin import KafkaAdminClient
from kafka.errors import TransactionalIdNotFoundError
from kafka.structs import TopicPartition
from kio.schema.alter_partition_reassignments.v1 import request as ap
from kio.schema.describe_producers.v0 import request as dp
from kio.schema.describe_quorum.v2 import request as dq
from kio.schema.describe_topic_partitions.v0 import request as dtp
from kio.schema.elect_leaders.v2 import request as el
from kio.schema.list_config_resources.v1 import request as lc
from kio.schema.list_partition_reassignments.v0 import request as lp
from kio.schema.list_transactions.v2 import request as lt
from kio.schema.write_txn_markers.v1 import request as wm

from broker._raw import Raw
from compat._kafka_tools import kafka_tool
from compat._support import Cluster, create_topic
from loosely.protocol.messages import ApiKey
from loosely.testing import ApacheKafka, embedded_broker


@pytest.fixture(scope="module")
def loosely_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with embedded_broker(data_dir=str(tmp_path_factory.mktemp("admin-apis") / "data")) as b:
        yield Cluster("loosely", b.bootstrap_servers, b)


@pytest.fixture(params=["loosely", "kafka"])
def broker(request: pytest.FixtureRequest) -> Cluster:
    if request.param == "kafka":
        kafka: ApacheKafka = request.getfixturevalue("apache_kafka")
        return Cluster("kafka", kafka.bootstrap_servers, version=kafka.version)
    cluster: Cluster = request.getfixturevalue("loosely_module")
    return cluster


@pytest.fixture
def admin(broker: Cluster) -> Iterator[KafkaAdminClient]:
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    yield a
    a.close()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _produce(bootstrap: str, topic: str, partition: int, values: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for v in values:
        p.produce(topic, v, partition=partition)
    assert p.flush(30) == 0


def _json_line(stdout: str) -> dict[str, object]:
    """The JSON document a tool prints after its progress lines."""
    doc = json.loads(next(line for line in stdout.splitlines() if line.startswith("{")))
    assert isinstance(doc, dict)
    return doc


# --- DescribeLogDirs -------------------------------------------------------------------------------------------------


def test_log_dirs_describe(broker: Cluster, admin: KafkaAdminClient) -> None:
    topic = _name("logdirs")
    create_topic(broker.bootstrap_servers, topic, 2)
    _produce(broker.bootstrap_servers, topic, 0, [b"a", b"b", b"c"])

    b = broker.bootstrap_servers
    r = kafka_tool("LogDirsCommand", "--bootstrap-server", b, "--describe", "--topic-list", topic)
    assert r.returncode == 0, r.stderr
    doc = _json_line(r.stdout)
    [b] = doc["brokers"]
    [d] = b["logDirs"]
    assert d["error"] is None and Path(d["logDir"]).is_absolute()
    parts = {p["partition"]: p for p in d["partitions"]}
    assert set(parts) == {f"{topic}-0", f"{topic}-1"}
    assert parts[f"{topic}-0"]["size"] > 0 and parts[f"{topic}-1"]["size"] == 0
    assert all(p["offsetLag"] == 0 and p["isFuture"] is False for p in parts.values())

    # kafka-python, narrowed to one partition; v4 reports the volume's total and usable bytes.
    [result] = admin.describe_log_dirs(topic_partitions={topic: [0]})
    [log_dir] = result["log_dirs"]
    assert log_dir["error_code"] == 0 and log_dir["log_dir"] == d["logDir"]
    assert log_dir["topics"] == [
        {
            "name": topic,
            "partitions": [
                {
                    "partition_index": 0,
                    "partition_size": parts[f"{topic}-0"]["size"],
                    "offset_lag": 0,
                    "is_future_key": False,
                }
            ],
        }
    ]
    assert 0 < log_dir["usable_bytes"] <= log_dir["total_bytes"]
    # A topic the broker does not have is left out, not an error.
    [result] = admin.describe_log_dirs(topic_partitions={_name("absent"): [0]})
    assert result["log_dirs"][0]["topics"] == []

    # AlterReplicaLogDirs: the one log dir is where every replica already is; no other exists.
    absent = _name("absent")
    moved = admin.alter_replica_log_dirs(
        {(topic, 0, 1): d["logDir"], (topic, 1, 1): "/nonexistent/log/dir", (absent, 0, 1): d["logDir"]}
    )
    assert {(r.topic, r.partition): e.__name__ for r, e in moved.items()} == {
        (topic, 0): "NoError",
        (topic, 1): "LogDirNotFoundError",
        (absent, 0): "UnknownTopicOrPartitionError",
    }


# --- ListTransactions, DescribeTransactions, DescribeProducers --------------------------------------------------------


def _table(stdout: str) -> list[dict[str, str]]:
    """The rows of a table kafka-transactions prints (tab-separated, padded, a header line first)."""
    lines = [[c.strip() for c in line.rstrip("\t").split("\t")] for line in stdout.splitlines() if line.strip()]
    return [dict(zip(lines[0], row, strict=True)) for row in lines[1:]]


def _txn_tool(bootstrap: str, *args: str) -> list[dict[str, str]]:
    r = kafka_tool("TransactionsCommand", "--bootstrap-server", bootstrap, *args)
    assert r.returncode == 0, r.stderr
    return _table(r.stdout)


@pytest.fixture
def two_transactions(broker: Cluster, admin: KafkaAdminClient) -> Iterator[tuple[str, str, str]]:
    """A topic with an open transaction on partition 0 and a committed one on partition 1: (topic, open, done)."""
    b = broker.bootstrap_servers
    topic = _name("txn")
    create_topic(b, topic, 2)
    open_id, done_id = f"{topic}-open", f"{topic}-done"
    p_open = Producer({"bootstrap.servers": b, "transactional.id": open_id})
    p_open.init_transactions(30)
    p_open.begin_transaction()
    p_open.produce(topic, b"pending", partition=0)
    assert p_open.flush(30) == 0
    p_done = Producer({"bootstrap.servers": b, "transactional.id": done_id})
    p_done.init_transactions(30)
    p_done.begin_transaction()
    p_done.produce(topic, b"committed", partition=1)
    p_done.commit_transaction(30)
    # The commit returns once it is PrepareCommit; CompleteCommit follows when the markers are written.
    deadline = time.monotonic() + 30
    while admin.describe_transactions([done_id])[done_id].state.value != "CompleteCommit":
        assert time.monotonic() < deadline, "the committed transaction never completed"
        time.sleep(0.05)
    yield topic, open_id, done_id
    p_open.abort_transaction(30)


def test_transactions_tool(
    broker: Cluster, admin: KafkaAdminClient, two_transactions: tuple[str, str, str]
) -> None:
    b = broker.bootstrap_servers
    topic, open_id, done_id = two_transactions
    listed = {r["TransactionalId"]: r for r in _txn_tool(b, "list") if r["TransactionalId"] in (open_id, done_id)}
    assert {t: r["TransactionState"] for t, r in listed.items()} == {open_id: "Ongoing", done_id: "CompleteCommit"}
    assert all(r["Coordinator"] == r2["Coordinator"] for r in listed.values() for r2 in listed.values())

    [described] = _txn_tool(b, "describe", "--transactional-id", open_id)
    assert described["ProducerId"] == listed[open_id]["ProducerId"]
    assert (described["ProducerEpoch"], described["TransactionState"], described["TransactionTimeoutMs"]) == (
        "0",
        "Ongoing",
        "60000",
    )
    assert described["TopicPartitions"] == f"{topic}-0" and int(described["TransactionDurationMs"]) >= 0

    [pending] = _txn_tool(b, "describe-producers", "--topic", topic, "--partition", "0")
    assert pending["ProducerId"] == listed[open_id]["ProducerId"]
    assert (pending["ProducerEpoch"], pending["LastSequence"], pending["LatestCoordinatorEpoch"]) == ("0", "0", "-1")
    assert pending["CurrentTransactionStartOffset"] == "0"

    # The open transaction is known to its coordinator, so it is not hanging.
    assert _txn_tool(b, "find-hanging", "--topic", topic) == []
    # abort writes an ABORT marker into the partition (WriteTxnMarkers), closing the transaction there.
    assert _txn_tool(b, "abort", "--topic", topic, "--partition", "0", "--start-offset", "0") == []
    [after] = admin.describe_producers([TopicPartition(topic, 0)])[TopicPartition(topic, 0)].active_producers
    assert (after.producer_id, after.current_transaction_start_offset) == (int(pending["ProducerId"]), -1)


def test_transactions_admin_client(
    broker: Cluster, admin: KafkaAdminClient, two_transactions: tuple[str, str, str]
) -> None:
    topic, open_id, done_id = two_transactions
    ours = {open_id: "Ongoing", done_id: "CompleteCommit"}

    def listed(**filters: object) -> dict[str, str]:
        [(_broker_id, listings)] = admin.list_transactions(**filters).items()
        return {t.transactional_id: t.state.value for t in listings if t.transactional_id in ours}

    assert listed() == ours
    assert listed(state_filters=["Ongoing"]) == {open_id: "Ongoing"}
    # Both started moments ago: neither has run longer than ten minutes.
    assert listed(duration_filter_ms=600_000) == {}
    assert listed(transactional_id_pattern=f"{topic}-d.*") == {done_id: "CompleteCommit"}
    assert listed(transactional_id_pattern=f"{topic}-d") == {}  # the pattern must match the whole id

    described = admin.describe_transactions([open_id, done_id])
    pending, done = described[open_id], described[done_id]
    assert (pending.state.value, pending.producer_epoch, pending.transaction_timeout_ms) == ("Ongoing", 0, 60_000)
    assert {(tp.topic, tp.partition) for tp in pending.topic_partitions} == {(topic, 0)}
    # A completed transaction keeps its start time and forgets its partitions.
    assert done.state.value == "CompleteCommit" and not done.topic_partitions
    assert 0 < pending.transaction_start_time_ms <= done.transaction_start_time_ms  # the open one began first
    with pytest.raises(TransactionalIdNotFoundError):
        admin.describe_transactions([_name("absent")])

    producers = admin.describe_producers([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    by_partition = {tp.partition: state.active_producers for tp, state in producers.items()}
    [p0], [p1] = by_partition[0], by_partition[1]
    assert (p0.producer_id, p0.current_transaction_start_offset, p0.coordinator_epoch) == (pending.producer_id, 0, -1)
    assert (p1.producer_id, p1.current_transaction_start_offset, p1.coordinator_epoch) == (done.producer_id, -1, 0)


def test_transaction_requests_raw(broker: Cluster) -> None:
    """Filters and errors the admin clients do not show: echoed unknown states, RE2 patterns, unknown partitions."""
    topic = _name("txraw")
    create_topic(broker.bootstrap_servers, topic, 1)
    raw = Raw(broker.bootstrap_servers)
    try:

        def listing(pattern: str | None, states: tuple[str, ...] = ()) -> tuple[str, tuple[str, ...], int]:
            req = lt.ListTransactionsRequest(
                state_filters=states, producer_id_filters=(), duration_filter=-1, transactional_id_pattern=pattern
            )
            got = raw.request(ApiKey.LIST_TRANSACTIONS, 2, req)
            return got.error_code.name, got.unknown_state_filters, len(got.transaction_states)

        assert listing(None, ("Ongoing", "Sleeping"))[:2] == ("none", ("Sleeping",))
        assert listing(r"(a)\1") == ("invalid_regular_expression", (), 0)  # RE2 has no backreferences
        started = time.monotonic()
        assert listing("(x+x+)+y")[0] == "none"  # matched in linear time, as RE2 does
        assert time.monotonic() - started < 5

        def producers() -> list[tuple[int, str, object]]:
            got = raw.request(ApiKey.DESCRIBE_PRODUCERS, 0, dp.DescribeProducersRequest(
                topics=(dp.TopicRequest(name=topic, partition_indexes=(0, 7)),)
            ))  # fmt: skip
            return [(p.partition_index, p.error_code.name, p.active_producers) for p in got.topics[0].partitions]

        # Kafka's broker learns of a new topic's partitions a moment after CreateTopics returns.
        deadline = time.monotonic() + 30
        while (found := producers())[0][1] != "none" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert found == [(0, "none", ()), (7, "unknown_topic_or_partition", ())]
        marker = wm.WritableTxnMarker(
            producer_id=123_456, producer_epoch=0, transaction_result=False, coordinator_epoch=0,
            topics=(wm.WritableTxnMarkerTopic(name=topic, partition_indexes=(7,)),),
        )  # fmt: skip
        got = raw.request(ApiKey.WRITE_TXN_MARKERS, 1, wm.WriteTxnMarkersRequest(markers=(marker,)))
        assert [(p.partition_index, p.error_code.name) for p in got.markers[0].topics[0].partitions] == [
            (7, "unknown_topic_or_partition")
        ]
    finally:
        raw.close()


# --- DescribeTopicPartitions (KIP-966) --------------------------------------------------------------------------------


def test_topics_describe_pages_through_partitions(broker: Cluster, admin: KafkaAdminClient) -> None:
    b = broker.bootstrap_servers
    prefix = _name("dtp")
    a, z = f"{prefix}-a", f"{prefix}-z"
    create_topic(b, a, 3)
    create_topic(b, z, 2)
    # Kafka 4's kafka-topics describes through DescribeTopicPartitions, here two partitions per answer.
    r = kafka_tool(
        "TopicCommand", "--bootstrap-server", b, "--describe", "--topic", f"{prefix}-.*",
        "--partition-size-limit-per-response", "2",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = [dict(f.split(": ", 1) for f in line.strip().split("\t") if ": " in f) for line in r.stdout.splitlines()]
    partitions = {(row["Topic"], int(row["Partition"])): row for row in rows if "Partition" in row}
    assert sorted(partitions) == [(a, 0), (a, 1), (a, 2), (z, 0), (z, 1)]
    assert {(p["Leader"], p["Replicas"], p["Isr"]) for p in partitions.values()} == {("1", "1", "1")}
    counts = {row["Topic"]: row["PartitionCount"] for row in rows if "PartitionCount" in row}
    assert counts == {a: "3", z: "2"}

    # The pages themselves: topics in name order, the cursor at the first partition left out.
    raw = Raw(b)
    try:
        def page(topics: list[str], limit: int, cursor: tuple[str, int] | None = None) -> tuple[list[str], object]:
            req = dtp.DescribeTopicPartitionsRequest(
                topics=tuple(dtp.TopicRequest(name=t) for t in topics),
                response_partition_limit=limit,
                cursor=dtp.Cursor(topic_name=cursor[0], partition_index=cursor[1]) if cursor else None,
            )
            resp = raw.request(ApiKey.DESCRIBE_TOPIC_PARTITIONS, 0, req)
            got = [f"{t.name}:{t.error_code.name}:{[p.partition_index for p in t.partitions]}" for t in resp.topics]
            nc = resp.next_cursor
            return got, (nc.topic_name, nc.partition_index) if nc is not None else None

        absent = f"{prefix}-m"
        assert page([z, absent, a], 4) == (
            [f"{a}:none:[0, 1, 2]", f"{absent}:unknown_topic_or_partition:[]", f"{z}:none:[0]"], (z, 1)
        )
        assert page([z, a], 3) == ([f"{a}:none:[0, 1, 2]"], (z, 0))  # a topic that ends at the limit
        assert page([z, a], 2, (a, 2)) == ([f"{a}:none:[2]", f"{z}:none:[0]"], (z, 1))
        assert page([z, a], 0) == ([f"{a}:none:[0]"], (a, 1))  # at least one partition per answer
        assert page([a, "bad/name"], 9) == (["bad/name:invalid_topic_exception:[]", f"{a}:none:[0, 1, 2]"], None)
        # A cursor outside the topics asked for, or at a negative partition, fails every topic.
        assert page([a], 2, (z, 0)) == ([f"{a}:invalid_request:[]"], None)
        assert page([a], 2, (a, -1)) == ([f"{a}:invalid_request:[]"], None)
    finally:
        raw.close()

    result = admin.describe_topic_partitions([a, z], response_partition_limit=2)
    assert [(t["name"], [p["partition_index"] for p in t["partitions"]]) for t in result["topics"]] == [(a, [0, 1])]
    assert result["next_cursor"] == {"topic_name": a, "partition_index": 2}
    assert result["topics"][0]["topic_authorized_operations"] == 3576  # every topic operation, no authorizer


def test_config_resources(broker: Cluster, admin: KafkaAdminClient) -> None:
    topic = _name("cfgres")
    create_topic(broker.bootstrap_servers, topic, 1)
    listed = admin.list_config_resources()
    assert (listed["broker"], listed["broker_logger"]) == (["1"], ["1"]) and topic in listed["topic"]
    assert not listed.get("client_metrics") and set(listed) <= {"broker", "broker_logger", "topic", "group"}
    assert admin.list_config_resources(resource_types=["topic"]).keys() == {"topic"}
    raw = Raw(broker.bootstrap_servers)
    try:
        for types, code, count in (((99,), "unsupported_version", 0), ((16,), "none", 0), ((4, 8), "none", 2)):
            got = raw.request(ApiKey.LIST_CONFIG_RESOURCES, 1, lc.ListConfigResourcesRequest(resource_types=types))
            assert (got.error_code.name, len(got.config_resources)) == (code, count), types
    finally:
        raw.close()


# --- ElectLeaders, partition reassignments, DescribeQuorum ------------------------------------------------------------


def test_leader_election_and_reassignment_tools(broker: Cluster) -> None:
    b = broker.bootstrap_servers
    topic = _name("elect")
    create_topic(b, topic, 2)
    r = kafka_tool("LeaderElectionCommand", "--bootstrap-server", b, "--election-type", "PREFERRED",
                   "--topic", topic, "--partition", "0")  # fmt: skip
    assert r.returncode == 0 and f"Valid replica already elected for partitions {topic}-0" in r.stdout, r.stderr
    r = kafka_tool("LeaderElectionCommand", "--bootstrap-server", b, "--election-type", "UNCLEAN",
                   "--topic", _name("absent"), "--partition", "0")  # fmt: skip
    assert r.returncode == 1 and "UnknownTopicOrPartitionException" in r.stderr
    # confluent-kafka (librdkafka) hears the same per partition.
    confluent = AdminClient({"bootstrap.servers": b})
    elected = confluent.elect_leaders(
        ElectionType.PREFERRED, [ConfluentTopicPartition(topic, 0), ConfluentTopicPartition(topic, 1)]
    ).result(30)
    assert {tp.partition: e.code() for tp, e in elected.items()} == {0: 84, 1: 84}  # ELECTION_NOT_NEEDED

    plan = Path(tempfile.mkdtemp()) / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [{"topic": topic, "partition": 0, "replicas": [1]}]}))
    r = kafka_tool("reassign.ReassignPartitionsCommand", "--bootstrap-server", b, "--execute",
                   "--reassignment-json-file", str(plan))  # fmt: skip
    assert r.returncode == 0 and f"Successfully started partition reassignment for {topic}-0" in r.stdout, r.stderr
    r = kafka_tool("reassign.ReassignPartitionsCommand", "--bootstrap-server", b, "--list")
    assert r.returncode == 0 and "No partition reassignments found." in r.stdout, r.stderr


def test_quorum_of_one(broker: Cluster, admin: KafkaAdminClient) -> None:
    r = kafka_tool("MetadataQuorumCommand", "--bootstrap-server", broker.bootstrap_servers, "describe", "--status")
    assert r.returncode == 0, r.stderr
    status = dict(line.split(":", 1) for line in r.stdout.splitlines() if ":" in line)
    status = {k.strip(): v.strip() for k, v in status.items()}
    [voter] = json.loads(status["CurrentVoters"])
    assert voter["id"] == int(status["LeaderId"]) == 1 and len(voter["endpoints"]) == 1
    assert int(status["LeaderEpoch"]) >= 1 and status["CurrentObservers"] == "[]"
    assert (status["MaxFollowerLag"], status["MaxFollowerLagTimeMs"]) == ("0", "0")

    quorum = admin.describe_metadata_quorum()
    [topic] = quorum["topics"]
    [partition] = topic["partitions"]
    assert topic["topic_name"] == "__cluster_metadata" and partition["leader_id"] == 1
    [me] = partition["current_voters"]
    assert me["replica_id"] == 1 and me["log_end_offset"] == partition["high_watermark"]
    assert partition["observers"] == [] and [n["node_id"] for n in quorum["nodes"]] == [1]


def test_controller_requests_raw(broker: Cluster) -> None:
    """A one-node controller's answers to ElectLeaders, reassignments and DescribeQuorum, field by field."""
    b = broker.bootstrap_servers
    topic = _name("ctl")
    create_topic(b, topic, 2)
    absent = _name("absent")
    timeout = datetime.timedelta(seconds=30)
    raw = Raw(b)
    try:
        got = raw.request(ApiKey.ELECT_LEADERS, 2, el.ElectLeadersRequest(
            election_type=1,
            topic_partitions=(el.TopicPartitions(topic=topic, partitions=(0, 5)),
                              el.TopicPartitions(topic=absent, partitions=(0,))),
            timeout=timeout,
        ))  # fmt: skip
        results = [
            (r.topic, p.partition_id, p.error_code.name, p.error_message)
            for r in got.replica_election_results
            for p in r.partition_result
        ]
        assert results == [
            (topic, 0, "election_not_needed", "Leader election not needed for topic partition."),
            (topic, 5, "unknown_topic_or_partition", f"No such partition as {topic}-5"),
            (absent, 0, "unknown_topic_or_partition", f"No such topic as {absent}"),
        ]
        every = raw.request(ApiKey.ELECT_LEADERS, 2, el.ElectLeadersRequest(
            election_type=0, topic_partitions=None, timeout=timeout
        ))  # fmt: skip
        assert {r.topic: r.partition_result for r in every.replica_election_results}[topic] == ()

        def alter(*partitions: tuple[str, int, tuple[int, ...] | None]) -> list[tuple[int, str, str | None]]:
            by_topic: dict[str, list[ap.ReassignablePartition]] = {}
            for name, index, replicas in partitions:
                by_topic.setdefault(name, []).append(ap.ReassignablePartition(partition_index=index, replicas=replicas))
            got = raw.request(ApiKey.ALTER_PARTITION_REASSIGNMENTS, 1, ap.AlterPartitionReassignmentsRequest(
                timeout=timeout, allow_replication_factor_change=True,
                topics=tuple(ap.ReassignableTopic(name=n, partitions=tuple(ps)) for n, ps in by_topic.items()),
            ))  # fmt: skip
            assert got.error_code.name == "none"
            return [
                (p.partition_index, p.error_code.name, p.error_message) for t in got.responses for p in t.partitions
            ]

        assert alter((topic, 0, (1,)), (topic, 1, None), (topic, 9, (1,)), (absent, 0, (1,))) == [
            (0, "none", None),
            (1, "no_reassignment_in_progress", None),
            (9, "unknown_topic_or_partition", f"Unable to find partition {topic}:9."),
            (0, "unknown_topic_or_partition", f"Unable to find a topic named {absent}."),
        ]
        invalid = "invalid_replica_assignment"
        assert alter((topic, 0, (2,)), (topic, 0, (1, 1)), (topic, 1, ())) == [
            (0, invalid, "The manual partition assignment includes broker 2, but no such broker is registered."),
            (0, invalid, "The manual partition assignment includes the broker 1 more than once."),
            (1, invalid, "The manual partition assignment includes an empty replica list."),
        ]
        listed = raw.request(ApiKey.LIST_PARTITION_REASSIGNMENTS, 0, lp.ListPartitionReassignmentsRequest(
            timeout=timeout, topics=(lp.ListPartitionReassignmentsTopics(name=topic, partition_indexes=(0, 1)),)
        ))  # fmt: skip
        assert (listed.error_code.name, listed.topics) == ("none", ())

        def quorum(name: str) -> object:
            req = dq.DescribeQuorumRequest(
                topics=(dq.TopicData(topic_name=name, partitions=(dq.PartitionData(partition_index=0),)),)
            )
            return raw.request(ApiKey.DESCRIBE_QUORUM, 2, req)

        q = quorum("__cluster_metadata")
        [p] = q.topics[0].partitions
        assert (q.error_code.name, p.error_code.name, p.leader_id, [v.replica_id for v in p.current_voters]) == (
            "none", "none", 1, [1]
        )
        assert [(n.node_id, len(n.listeners)) for n in q.nodes] == [(1, 1)]
        wrong = quorum(topic)
        [p] = wrong.topics[0].partitions
        assert (p.error_code.name, p.error_message, wrong.nodes) == (
            "unknown_topic_or_partition", "This server does not host this topic-partition.", ()
        )
    finally:
        raw.close()


# --- Finalized features in ApiVersions --------------------------------------------------------------------------------


# the metadata.version each Kafka release finalizes on a new cluster; loosely's is Kafka 4.1's
METADATA_VERSION = {"4.1.1": "4.1-IV1", "4.4.0": "4.4-IV2"}


def test_features_describe(broker: Cluster, admin: KafkaAdminClient) -> None:
    r = kafka_tool("FeatureCommand", "--bootstrap-server", broker.bootstrap_servers, "describe")
    assert r.returncode == 0, r.stderr
    # "Feature: x<sep>SupportedMinVersion: 0<sep>...": the tool of Kafka 4.1 separates with a tab, 4.4's pads with
    # spaces (a value may hold one space: "UNKNOWN 33" from an older tool)
    printed = {
        row["Feature"]: row
        for row in (dict(f.split(": ", 1) for f in re.split(r"\t|  +", line.strip())) for line in r.stdout.splitlines()
                    if line.startswith("Feature: "))
    }
    assert printed["metadata.version"]["FinalizedVersionLevel"] == METADATA_VERSION[broker.version or "4.1.1"]
    assert printed["group.version"]["FinalizedVersionLevel"] == "1"  # KIP-848 consumer groups are on
    assert printed["kraft.version"]["FinalizedVersionLevel"] == "0"  # a static quorum
    assert len({row["Epoch"] for row in printed.values()}) == 1

    features = admin.describe_features()
    for name, f in features.items():
        lo, hi = f["supported"]
        assert lo <= f.get("finalized", (0, 0))[1] <= hi, name
    # Kafka 4's producer uses transactions version 2 (EndTxn v5) when the level is 2: only where EndTxn v5 is served.
    tv = features["transaction.version"].get("finalized", (0, 0))[1]
    # asked over a raw connection: kafka-python's admin.api_versions() fails on API keys it does not know (4.4's 93)
    from kio.schema.api_versions.v0.request import ApiVersionsRequest

    raw = Raw(broker.bootstrap_servers)
    try:
        answer = raw.request(ApiKey.API_VERSIONS, 0, ApiVersionsRequest())
    finally:
        raw.close()
    end_txn_max = {int(k.api_key): int(k.max_version) for k in answer.api_keys}[ApiKey.END_TXN]  # type: ignore[attr-defined]
    assert (tv >= 2) == (end_txn_max >= 5)
