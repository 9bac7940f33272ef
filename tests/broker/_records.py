"""Topics and records for the broker tests that restart or starve a broker: a topic made through the admin API, and
everything a consumer can read of one."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create(bs: str, topic: str, partitions: int = 1) -> None:
    a = AdminClient({"bootstrap.servers": bs})
    a.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)


def read(bs: str, topic: str, expect: int, *, committed: bool = False) -> list[bytes]:
    """Everything readable: at least ``expect`` records, and whatever follows within half a second."""
    c = Consumer(
        {
            "bootstrap.servers": bs,
            "group.id": "r",
            "enable.auto.commit": False,
            "isolation.level": "read_committed" if committed else "read_uncommitted",
        }
    )
    c.assign([TopicPartition(topic, 0, 0)])
    out: list[bytes] = []
    deadline = time.monotonic() + 30
    settle: float | None = None
    while time.monotonic() < deadline and (settle is None or time.monotonic() < settle):
        out += [m.value() or b"" for m in c.consume(100, timeout=0.2) if m.error() is None]
        if len(out) >= expect and settle is None:
            settle = time.monotonic() + 0.5
    c.close()
    return out
