"""The single-node admin APIs fed values no admin client sends: each request is answered (with Kafka's error where
there is one), never a dropped connection or a stalled broker, and the broker serves normally afterwards."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from kio.schema.alter_partition_reassignments.v1 import request as ap
from kio.schema.describe_log_dirs.v4 import request as dl
from kio.schema.describe_producers.v0 import request as dp
from kio.schema.describe_quorum.v0 import request as dq0
from kio.schema.describe_quorum.v2 import request as dq
from kio.schema.describe_topic_partitions.v0 import request as dtp
from kio.schema.elect_leaders.v2 import request as el
from kio.schema.list_transactions.v2 import request as lt

from broker._raw import Raw
from compat._support import create_topic
from loosely.protocol.messages import ApiKey
from loosely.testing import embedded_broker

INT32_MAX = 2**31 - 1
TIMEOUT = datetime.timedelta(seconds=5)


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_broker(data_dir=str(tmp_path_factory.mktemp("edges") / "data")) as b:
        create_topic(b.bootstrap_servers, "edge", 3)
        yield b.bootstrap_servers


@pytest.fixture
def raw(bootstrap: str) -> Iterator[Raw]:
    r = Raw(bootstrap)
    yield r
    r.close()


def test_cursor_and_limit_extremes(raw: Raw) -> None:
    def page(limit: int, cursor: int | None) -> tuple[list[int], tuple[str, int] | None]:
        got = raw.request(ApiKey.DESCRIBE_TOPIC_PARTITIONS, 0, dtp.DescribeTopicPartitionsRequest(
            topics=(dtp.TopicRequest(name="edge"),), response_partition_limit=limit,
            cursor=dtp.Cursor(topic_name="edge", partition_index=cursor) if cursor is not None else None,
        ))  # fmt: skip
        nc = got.next_cursor
        cursor_out = (nc.topic_name, nc.partition_index) if nc else None
        return [p.partition_index for p in got.topics[0].partitions], cursor_out

    assert page(-5, None) == ([0], ("edge", 1))  # at least one partition
    assert page(INT32_MAX, None) == ([0, 1, 2], None)
    assert page(2, INT32_MAX) == ([], None)  # past the last partition: nothing, and no cursor (as Kafka)


def test_odd_partitions_and_replicas(raw: Raw) -> None:
    got = raw.request(ApiKey.DESCRIBE_LOG_DIRS, 4, dl.DescribeLogDirsRequest(
        topics=(dl.DescribableLogDirTopic(topic="edge", partitions=(-1, 1, 1, INT32_MAX)),)
    ))  # fmt: skip
    assert [[p.partition_index for p in t.partitions] for t in got.results[0].topics] == [[1]]
    got = raw.request(ApiKey.ELECT_LEADERS, 2, el.ElectLeadersRequest(
        election_type=7, topic_partitions=(el.TopicPartitions(topic="edge", partitions=(-1,)),), timeout=TIMEOUT,
    ))  # fmt: skip
    assert got.replica_election_results[0].partition_result[0].error_code.name == "unknown_topic_or_partition"
    got = raw.request(ApiKey.ALTER_PARTITION_REASSIGNMENTS, 1, ap.AlterPartitionReassignmentsRequest(
        timeout=TIMEOUT, allow_replication_factor_change=False,
        topics=(ap.ReassignableTopic(name="edge", partitions=(
            ap.ReassignablePartition(partition_index=0, replicas=(-1, 1)),
        )),),
    ))  # fmt: skip
    assert got.responses[0].partitions[0].error_code.name == "invalid_replica_assignment"
    got = raw.request(ApiKey.DESCRIBE_PRODUCERS, 0, dp.DescribeProducersRequest(
        topics=(dp.TopicRequest(name="edge", partition_indexes=(0, 0, -3)),)
    ))  # fmt: skip
    assert [p.error_code.name for p in got.topics[0].partitions] == ["none", "none", "unknown_topic_or_partition"]
    got = raw.request(ApiKey.DESCRIBE_QUORUM, 2, dq.DescribeQuorumRequest(topics=()))
    assert (got.error_code.name, got.topics) == ("none", ())


def test_patterns_are_bounded(raw: Raw, bootstrap: str) -> None:
    # A transactional id a backtracking matcher would take forever on with the pattern below.
    victim = "a" * 60 + "c"
    Producer({"bootstrap.servers": bootstrap, "transactional.id": victim}).init_transactions(30)

    def listing(pattern: str) -> tuple[str, int]:
        got = raw.request(ApiKey.LIST_TRANSACTIONS, 2, lt.ListTransactionsRequest(
            state_filters=(), producer_id_filters=(), duration_filter=-1, transactional_id_pattern=pattern
        ))  # fmt: skip
        return str(got.error_code.name), len(got.transaction_states)

    started = time.monotonic()
    assert listing("(a*)*" * 20 + "b") == ("none", 0)
    assert listing("(a*)*" * 20 + "c") == ("none", 1)
    assert listing("a{1000}{1000}") == ("invalid_regular_expression", 0)  # over RE2's repetition limit
    assert listing("(") == ("invalid_regular_expression", 0)
    assert time.monotonic() - started < 5
    # And the broker goes on serving.
    got = raw.request(ApiKey.DESCRIBE_QUORUM, 0, dq0.DescribeQuorumRequest(topics=()))
    assert got.topics == ()


def test_with_acls_on_these_apis_ask_the_authorizer(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No ACLs and allow.everyone.if.no.acl.found=false: the anonymous caller may do none of it, with the error
    code each API carries in Kafka (the mTLS differential test in compat/test_acls.py checks ElectLeaders against
    Kafka; Kafka's own controller needs the cluster resource open, so it cannot be run this closed)."""
    from kio.schema.write_txn_markers.v1 import request as wm

    settings = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer"}
    with embedded_broker(data_dir=str(tmp_path_factory.mktemp("closed") / "data"), settings=settings) as b:
        raw = Raw(b.bootstrap_servers)
        try:
            got = raw.request(ApiKey.WRITE_TXN_MARKERS, 1, wm.WriteTxnMarkersRequest(markers=(wm.WritableTxnMarker(
                producer_id=1, producer_epoch=0, transaction_result=False, coordinator_epoch=0,
                topics=(wm.WritableTxnMarkerTopic(name="edge", partition_indexes=(0,)),)),)))  # fmt: skip
            assert got.markers[0].topics[0].partitions[0].error_code.name == "cluster_authorization_failed"
            got = raw.request(ApiKey.DESCRIBE_LOG_DIRS, 4, dl.DescribeLogDirsRequest(topics=None))
            assert (got.error_code.name, got.results) == ("cluster_authorization_failed", ())
            got = raw.request(ApiKey.DESCRIBE_PRODUCERS, 0, dp.DescribeProducersRequest(
                topics=(dp.TopicRequest(name="edge", partition_indexes=(0,)),)))  # fmt: skip
            assert got.topics[0].partitions[0].error_code.name == "topic_authorization_failed"
            got = raw.request(ApiKey.ELECT_LEADERS, 2, el.ElectLeadersRequest(
                election_type=0, topic_partitions=None, timeout=TIMEOUT))  # fmt: skip
            assert got.error_code.name == "cluster_authorization_failed"
        finally:
            raw.close()
