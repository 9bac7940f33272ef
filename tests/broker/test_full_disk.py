"""A full disk and a failing disk, with real producers: KAFKA_STORAGE_ERROR, reads keep working, writes resume by
themselves when space returns, every acknowledged record intact, and one log line per interval, no tracebacks.

The full disk is a real one: a 8 MiB tmpfs mounted for the test (we run as root in CI). Where mounting is not
permitted, that test is skipped and the faulty-filesystem test below (same assertions, the broker given a
:class:`FaultyFileSystem`) still covers the behaviour.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import importlib
import logging
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer

from broker._raw import Raw
from broker._records import create, read
from loosely.broker.config import BrokerConfig
from loosely.broker.server import BrokerThread
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey
from loosely.protocol.records import iter_batches
from loosely.testing import FaultyFileSystem

TMPFS_BYTES = 8 << 20
VALUE = b"x" * 1000
# librdkafka retries KAFKA_STORAGE_ERROR (refresh metadata, back off, resend) until message.timeout.ms.
OUTAGE_TIMEOUT_MS = 60_000


@contextmanager
def tmpfs(path: Path, size_bytes: int) -> Iterator[None]:
    path.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)]
    done = subprocess.run(mount, check=False, capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({done.stderr.decode().strip()}); the faulty fs test runs")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem is full, down to the last byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            with suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)


def producer(bs: str, **cfg: object) -> Producer:
    return Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 0, **cfg})


def produce_acked(p: Producer, topic: str, values: list[bytes]) -> tuple[list[bytes], list[KafkaError]]:
    acked: list[bytes] = []
    errors: list[KafkaError] = []

    def done(err: KafkaError | None, msg: object) -> None:
        if err is None:
            acked.append(msg.value())  # type: ignore[attr-defined]
        else:
            errors.append(err)

    for v in values:
        p.produce(topic, v, on_delivery=done)
        p.flush(OUTAGE_TIMEOUT_MS / 1000)
    return acked, errors


def storage_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("loosely") and "storage error" in r.getMessage()]


def assert_files_whole(partition_dir: Path) -> None:
    for f in sorted(partition_dir.glob("*.log")):
        data = f.read_bytes()
        end = 0
        for pos, h in iter_batches(data):
            assert pos == end
            end = pos + h.size
        assert end == len(data), f"{f}: {len(data) - end} bytes that are not whole batches"


def fetch_error(bs: str, version: int, topic: str) -> int:
    """A raw Fetch at ``version`` of partition 0 from offset 0: the partition's error code."""
    m = importlib.import_module(f"kio.schema.fetch.v{version}.request")

    def make(cls: type, **values: object) -> object:
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})

    part = make(
        m.FetchPartition,
        partition=0,
        current_leader_epoch=0,
        fetch_offset=0,
        log_start_offset=-1,
        partition_max_bytes=1 << 20,
    )
    req = make(
        m.FetchRequest,
        replica_id=-1,
        max_wait=datetime.timedelta(0),
        min_bytes=0,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=(make(m.FetchTopic, topic=topic, partitions=(part,)),),
        forgotten_topics_data=(),
        rack_id="",
    )
    raw = Raw(bs)
    try:
        resp = raw.request(ApiKey.FETCH, version, req)
    finally:
        raw.close()
    return int(resp.responses[0].partitions[0].error_code)  # type: ignore[attr-defined]


def test_a_real_full_disk(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mnt = tmp_path / "mnt"
    caplog.set_level(logging.WARNING, logger="loosely")
    with tmpfs(mnt, TMPFS_BYTES):
        b = BrokerThread(BrokerConfig(data_dir=str(mnt / "data"), port=0)).start()
        try:
            bs = b.bootstrap_servers
            create(bs, "t")
            # Idempotent, so it has its producer id before the disk fills (allocating one writes to the disk too).
            patient = producer(bs, **{"message.timeout.ms": OUTAGE_TIMEOUT_MS, "enable.idempotence": True})
            before, errors = produce_acked(patient, "t", [b"before-%d-" % i + VALUE for i in range(200)])
            assert len(before) == 200 and not errors
            fill(mnt / "filler")
            # No retries: the first refused batch reaches the application with the broker's error.
            once = producer(bs, retries=0)
            slack, errors = produce_acked(once, "t", [b"slack-%d-" % i + VALUE for i in range(50)])
            assert errors and all(e.code() == KafkaError.KAFKA_STORAGE_ERROR for e in errors), errors
            assert read(bs, "t", len(before) + len(slack)) == before + slack  # reads keep working
            # With retries (librdkafka's default) a batch refused during the outage is delivered after it; the
            # idempotent producer also proves that no refused attempt left a record behind (no duplicate, in order).
            during: list[bytes] = []
            for i in range(10):
                patient.produce("t", b"during-%d-" % i + VALUE, on_delivery=lambda e, m: e or during.append(m.value()))

            def refused() -> int:
                return int(b.call(lambda: b.broker.statistics().storage_errors_total.get("append", 0)))

            refused_before, deadline = refused(), time.monotonic() + 30
            while refused() < refused_before + 3:  # the patient producer's batches were refused, and retried
                assert time.monotonic() < deadline, "the retrying producer never hit the full disk"
                patient.poll(0.1)
            assert not during
            os.remove(mnt / "filler")  # space returns: writes resume by themselves
            assert patient.flush(OUTAGE_TIMEOUT_MS / 1000) == 0
            assert during == [b"during-%d-" % i + VALUE for i in range(10)]
            assert read(bs, "t", len(before) + len(slack) + len(during)) == before + slack + during
            refused_total = refused()
        finally:
            b.stop()
        assert_files_whole(mnt / "data" / "t-0")
    lines = storage_lines(caplog)
    assert 1 <= len([r for r in lines if "append failed" in r.getMessage()]) < refused_total
    assert not [r for r in caplog.records if r.exc_info is not None]


def test_a_failing_disk_under_one_partition(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="loosely")
    fs = FaultyFileSystem(seed=0)
    config = BrokerConfig(data_dir=str(tmp_path / "data"), port=0, metrics_listen="127.0.0.1:0")
    b = BrokerThread(config, fs=fs).start()
    try:
        bs = b.bootstrap_servers
        create(bs, "t")
        create(bs, "u")
        before, _ = produce_acked(producer(bs), "t", [b"before-%d" % i for i in range(20)])
        fs.fail("append", error=errno.ENOSPC, path_contains=f"{os.sep}t-0{os.sep}", partial=True)
        _, errors = produce_acked(producer(bs, retries=0), "t", [b"refused-%d" % i for i in range(20)])
        assert len(errors) == 20 and {e.code() for e in errors} == {KafkaError.KAFKA_STORAGE_ERROR}
        other, errors = produce_acked(producer(bs), "u", [b"other-%d" % i for i in range(20)])
        assert len(other) == 20 and not errors  # the other partition keeps working
        assert read(bs, "t", 20) == before
        fs.fail("pread", error=errno.EIO, path_contains=f"{os.sep}t-0{os.sep}")
        assert fetch_error(bs, 12, "t") == ErrorCode.kafka_storage_error
        assert fetch_error(bs, 5, "t") == ErrorCode.not_leader_or_follower  # what Kafka answers Fetch v5 and older
        assert fetch_error(bs, 12, "u") == ErrorCode.none
        fs.heal()
        after, errors = produce_acked(producer(bs), "t", [b"after-%d" % i for i in range(20)])
        assert len(after) == 20 and not errors
        assert read(bs, "t", 40) == before + after
        stats = b.call(b.broker.statistics)
        assert stats.storage_errors_total["append"] == 20 and stats.storage_errors_total["read"] >= 2
        assert stats.logs_refusing_writes == 0
        assert b.broker.metrics is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{b.broker.metrics.port}/metrics", timeout=10) as r:
            scraped = r.read().decode()
        assert 'loosely_storage_errors_total{operation="append"} 20.0' in scraped
        assert "loosely_logs_refusing_writes 0.0" in scraped
    finally:
        b.stop()
    assert_files_whole(tmp_path / "data" / "t-0")
    lines = storage_lines(caplog)
    assert len([r for r in lines if "append failed" in r.getMessage()]) == 1  # 20 refusals, one line
    assert not [r for r in caplog.records if r.exc_info is not None]
