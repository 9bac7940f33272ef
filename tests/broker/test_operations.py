"""docs/operations.md's backup procedures: a cold copy and a copy taken while producers write both restore to a
broker that serves every record acknowledged before the copy began, in order, and keeps accepting writes."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from broker._brokers import broker_on
from loosely.testing import free_port

N = 2_000


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    failed: list[object] = []
    for v in values:
        p.produce(topic, v, on_delivery=lambda err, _m: failed.append(err) if err else None)
        p.poll(0)
    assert p.flush(30) == 0 and not failed, failed


def read_all(bootstrap: str, topic: str) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "backup-check", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, 0)])
    out: list[bytes] = []
    try:
        while True:
            m = c.poll(10)
            assert m is not None, f"no end of partition after {len(out)} records"
            if m.error() is not None:
                assert m.error().code() == -191, m.error()  # _PARTITION_EOF
                return out
            out.append(m.value())
    finally:
        c.close()


def values(start: int, n: int) -> list[bytes]:
    return [b"order-%06d" % i for i in range(start, start + n)]


def test_a_cold_copy_restores_everything(tmp_path: Path) -> None:
    port = free_port()
    with broker_on(tmp_path / "live", port) as b:
        produce(b.bootstrap_servers, "orders", values(0, N))
    subprocess.run(["cp", "-a", str(tmp_path / "live"), str(tmp_path / "backup")], check=True)
    with broker_on(tmp_path / "backup", free_port()) as restored:
        assert read_all(restored.bootstrap_servers, "orders") == values(0, N)
        produce(restored.bootstrap_servers, "orders", values(N, 10))
        assert read_all(restored.bootstrap_servers, "orders") == values(0, N + 10)


def test_a_hot_copy_is_crash_consistent(tmp_path: Path) -> None:
    with broker_on(tmp_path / "live", free_port(), log_defaults={"log.segment.bytes": "65536"}) as b:
        produce(b.bootstrap_servers, "orders", values(0, N))  # acknowledged before the copy begins
        stop = threading.Event()

        def keep_writing() -> None:
            i = N
            while not stop.is_set():
                produce(b.bootstrap_servers, "orders", values(i, 200))
                i += 200

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            subprocess.run(["cp", "-a", str(tmp_path / "live"), str(tmp_path / "backup")], check=True)
        finally:
            stop.set()
            writer.join()
    (tmp_path / "backup" / ".kafka_cleanshutdown").unlink(missing_ok=True)  # it was running: not a clean stop
    with broker_on(tmp_path / "backup", free_port()) as restored:
        got = read_all(restored.bootstrap_servers, "orders")
        assert got[:N] == values(0, N)
        assert got == values(0, len(got))  # whatever came after is a prefix of what was written, in order
        produce(restored.bootstrap_servers, "orders", [b"after-restore"])
        assert read_all(restored.bootstrap_servers, "orders")[-1] == b"after-restore"
