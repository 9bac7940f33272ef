"""One message produced and consumed back with confluent-kafka under the given client settings (a secured
listener's SASL/TLS settings): the smallest proof that a client is authenticated and authorized end to end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

import pytest
from confluent_kafka import Consumer, Producer


def produce_and_consume(conf: Mapping[str, object], value: bytes, timeout_s: float = 30) -> None:
    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    p = Producer(dict(conf))
    delivered: list[object] = []
    p.produce(topic, value, on_delivery=lambda e, m: delivered.append(e))
    assert p.flush(timeout_s) == 0 and delivered == [None]
    c = Consumer({**conf, "group.id": topic, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                assert m.value() == value
                return
        pytest.fail("nothing consumed")
    finally:
        c.close()
