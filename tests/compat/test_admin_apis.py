"""The admin APIs a single node answers as a one-node Apache Kafka cluster does, checked with Kafka's own tools
(``kafka-log-dirs``, ``kafka-transactions``, ...) and with kafka-python's admin client, against loosely's broker
and Apache Kafka side by side with the same assertions.

One loosely broker serves the whole module (and the session's Apache Kafka the Kafka side), so each test works on
topics and transactional ids of its own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from kafka.admin import KafkaAdminClient

from compat._kafka_tools import kafka_tool
from compat._support import Cluster, create_topic
from loosely.testing import ApacheKafka, embedded_broker


@pytest.fixture(scope="module")
def loosely_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with embedded_broker(data_dir=str(tmp_path_factory.mktemp("admin-apis") / "data")) as b:
        yield Cluster("loosely", b.bootstrap_servers, b)


@pytest.fixture(params=["loosely", "kafka"])
def broker(request: pytest.FixtureRequest) -> Cluster:
    if request.param == "kafka":
        kafka: ApacheKafka = request.getfixturevalue("apache_kafka")
        return Cluster("kafka", kafka.bootstrap_servers)
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
    [b] = doc["brokers"]  # type: ignore[attr-defined]
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
