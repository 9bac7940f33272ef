"""Apache Kafka's own DumpLogSegments tool reads loosely's segment files: logs, offset indexes, time indexes,
including batches rewritten by loosely's log cleaner (delete horizons)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from confluent_kafka import Producer

from compat._java import jars_dir
from compat._kafka_tools import kafka_command
from compat._support import create_topic
from loosely.broker.config import BrokerConfig
from loosely.broker.server import BrokerThread


def dump(*args: str) -> str:
    r = subprocess.run(
        ["java", "-Xmx256m", "-cp", f"{jars_dir()}/*", kafka_command("DumpLogSegments"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_kafka_reads_our_segments(tmp_path: Path) -> None:
    data = tmp_path / "data"
    b = BrokerThread(BrokerConfig(data_dir=str(data), port=0, log_cleaner_enable=False)).start()
    try:
        create_topic(b.bootstrap_servers, "plain", 1, **{"segment.bytes": "8000"})
        create_topic(
            b.bootstrap_servers,
            "compacted",
            1,
            **{"segment.bytes": "3000", "cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"},
        )
        n = 0
        for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
            # Compressible values and real batching: librdkafka sends a batch uncompressed when compression would
            # not make it smaller.
            p = Producer({"bootstrap.servers": b.bootstrap_servers, "compression.type": codec, "linger.ms": 50})
            for i in range(1000):
                p.produce("plain", b"%s-%d-" % (codec.encode(), i) + b"payload" * 10, key=b"k%d" % i)
                n += 1
            assert p.flush(30) == 0
        p = Producer({"bootstrap.servers": b.bootstrap_servers, "linger.ms": 0})
        for i in range(300):
            p.produce("compacted", b"v%d" % i if i % 10 else None, key=b"key%d" % (i % 13))
            p.flush(10)
        assert b.call(lambda: b.broker.clean_now(force=True)) == 1
    finally:
        b.stop()

    offsets: list[int] = []
    logs = sorted((data / "plain-0").glob("*.log"))
    assert len(logs) > 3
    out = dump("--files", ",".join(str(p) for p in logs), "--print-data-log")
    batches = [line for line in out.splitlines() if line.startswith("baseOffset:")]
    assert batches and all("isvalid: true" in line for line in batches)
    codecs = {re.search(r"compresscodec: (\w+)", line).group(1) for line in batches}  # type: ignore[union-attr]
    assert codecs == {"none", "gzip", "snappy", "lz4", "zstd"}
    offsets = [int(m) for m in re.findall(r"\| offset: (\d+)", out)]
    assert offsets == list(range(n))

    idx = sorted(str(p) for p in (data / "plain-0").glob("*.index")) + sorted(
        str(p) for p in (data / "plain-0").glob("*.timeindex")
    )
    sanity = dump("--files", ",".join(idx), "--index-sanity-check")
    # A segment smaller than index.interval.bytes (a few compressed batches) has no index entry: Kafka reports its
    # index "is empty", as it does for its own; every other index must pass.
    assert sanity.count("passed sanity check") + sanity.count(" is empty.") == len(idx), sanity
    assert sanity.count("passed sanity check") >= len(idx) // 2, sanity
    verify = dump("--files", ",".join(idx), "--verify-index-only")
    assert "Mismatch" not in verify and "mismatch" not in verify

    clogs = sorted((data / "compacted-0").glob("*.log"))
    cout = dump("--files", ",".join(str(p) for p in clogs), "--print-data-log")
    cbatches = [line for line in cout.splitlines() if line.startswith("baseOffset:")]
    assert all("isvalid: true" in line for line in cbatches)
    assert any("deleteHorizonMs: OptionalLong[" in line for line in cbatches), "cleaned tombstones carry a horizon"
    keys = re.findall(r"offset: (\d+) .*? key: (key\d+)", cout)
    assert len(keys) < 300  # compaction removed superseded records
