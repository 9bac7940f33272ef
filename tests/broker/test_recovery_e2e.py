"""kill -9 after damage, end to end with a real child broker: 5,000 records in small batches, four bytes flipped
in the middle of the segment, kill -9, restart. The records before the damage are served, the restart printed a
warning naming the cut, and the quarantine file holds the rest of the segment byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from broker._brokers import ChildBroker, broker_on
from loosely.cli.main import main
from loosely.protocol.records import iter_batches
from loosely.testing import free_port

RECORDS = 5_000


def consume_all(bootstrap: str, topic: str) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e", "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, 0)])
    out: list[bytes] = []
    try:
        while True:
            m = c.poll(10)
            assert m is not None, "no end of partition within 10 s"
            if m.error() is not None:
                assert m.error().code() == -191, m.error()  # _PARTITION_EOF
                return out
            out.append(m.value() or b"")
    finally:
        c.close()


def test_damage_then_kill_9_keeps_the_prefix_and_quarantines_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, port = tmp_path / "data", free_port()
    child = ChildBroker(data, port).start()
    try:
        p = Producer({"bootstrap.servers": child.bootstrap_servers, "linger.ms": 0, "batch.num.messages": 10})
        for i in range(RECORDS):
            p.produce("orders", b"record-%05d" % i, partition=0)
            if i % 10 == 9:
                p.poll(0)
        assert p.flush(30) == 0
        segment = data / "orders-0" / f"{0:020d}.log"
        batches = list(iter_batches(segment.read_bytes()))
        assert len(batches) > 100 and sum(h.last_offset_delta + 1 for _, h in batches) == RECORDS
        pos, damaged = batches[len(batches) // 2]
        with open(segment, "r+b") as f:
            f.seek(pos + 61)  # the first record, inside the CRC
            f.write(bytes(b ^ 0x5A for b in f.read(4)))
        before = segment.read_bytes()
    finally:
        child.kill()

    # Offline, before the restart: log verify names the damage (and changes nothing).
    assert main(["log", "verify", "--data-dir", str(data), "--topic", "orders"]) == 1
    report = capsys.readouterr().out
    assert f"{segment.name} position {pos}: record batch at offset {damaged.base_offset} has CRC" in report
    assert segment.read_bytes() == before

    child = ChildBroker(data, port).start()
    try:
        warned = [line for line in child.startup_output if "WARNING" in line and "orders-0" in line]
        assert any(f"at byte {pos}" in w and f"offsets from {damaged.base_offset} on" in w for w in warned), warned
        got = consume_all(child.bootstrap_servers, "orders")
        assert got == [b"record-%05d" % i for i in range(damaged.base_offset)]
        quarantine = data / "orders-0" / f"{segment.name}.{pos}.quarantine"
        assert quarantine.read_bytes() == before[pos:]
        assert segment.read_bytes() == before[:pos]
    finally:
        child.kill()

    # A second (unclean) restart finds nothing new; the quarantine stays in the statistics until it is removed.
    with broker_on(data, port) as b:
        stats = b.broker.statistics()
        assert (stats.quarantined_files, stats.quarantined_bytes) == (1, len(before) - pos)
        assert stats.damaged_batches == 0
        quarantine.unlink()
        assert b.broker.statistics().quarantined_files == 0
