"""kafkajs (npm) against loosely and Apache Kafka: produce with each codec kafkajs ships, consume back."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from compat._support import Cluster, create_topic

PROBE = Path(__file__).resolve().parents[2] / "interop" / "kafkajs" / "probe.js"


@pytest.mark.parametrize("codec", ["none", "gzip"])
def test_kafkajs_produce_and_consume(cluster: Cluster, topic: str, codec: str) -> None:
    create_topic(cluster.bootstrap_servers, topic, 2)
    r = subprocess.run(
        ["node", str(PROBE), cluster.bootstrap_servers, topic, "200", codec],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line.split() for line in r.stdout.splitlines()]
    expected = [[str(p), str(j), f"k{2 * j + p}", f"v{2 * j + p}"] for p in (0, 1) for j in range(100)]
    assert rows == expected
