"""Apache Kafka's Java clients (kafka-clients from Maven Central) against loosely and Apache Kafka."""

from __future__ import annotations

import pytest

from compat._java import run_java
from compat._support import Cluster, create_topic

PROGRAM = "interop/java-clients"


def java(*args: str) -> list[str]:
    r = run_java(PROGRAM, "ClientsProbe", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.splitlines()


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_java_produce_and_consume_by_partition(cluster: Cluster, topic: str, codec: str) -> None:
    create_topic(cluster.bootstrap_servers, topic, 3)
    produced = [line.split() for line in java("produce", cluster.bootstrap_servers, topic, "300", codec, "false")]
    assert len(produced) == 300
    by_partition: dict[int, list[tuple[int, str]]] = {}
    for part, off, key in produced:
        by_partition.setdefault(int(part), []).append((int(off), key))
    for p, rows in by_partition.items():
        assert sorted(o for o, _ in rows) == list(range(len(rows))), f"partition {p} offsets have gaps"
    p0 = sorted(by_partition[0])
    consumed = java("consume", cluster.bootstrap_servers, topic, "0", str(len(p0)))
    assert [line.split()[:2] for line in consumed] == [[str(o), k] for o, k in p0]
    assert all(line.split()[2] == "value-" + line.split()[1][4:] for line in consumed)


def test_java_keys_use_the_same_partitions_on_both(cluster: Cluster, topic: str) -> None:
    """The Java client's default partitioner (murmur2) must place each key where Apache Kafka's clients would."""
    from compat.test_kcat import murmur2_partition

    create_topic(cluster.bootstrap_servers, topic, 6)
    produced = [line.split() for line in java("produce", cluster.bootstrap_servers, topic, "200", "none", "false")]
    assert {key: int(part) for part, _, key in produced} == {
        f"key-{i}": murmur2_partition(f"key-{i}".encode(), 6) for i in range(200)
    }


def test_java_admin(cluster: Cluster, topic: str) -> None:
    out = java("admin", cluster.bootstrap_servers, topic, "4")
    assert out == ["partitions 4", "internal false", "retention.ms 123456", "nodes 1", "listed true", "deleted"]
