"""One-node brokers restartable in place, Apache Kafka 4.4.0 and loosely, for the group tests that restart them
(share and streams groups), and the FindCoordinator a raw client sends first."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from kio.schema.find_coordinator.v4.request import FindCoordinatorRequest
from kio.static.primitive import i8

from broker._raw import Raw
from loosely.protocol.messages import ApiKey
from loosely.testing import ApacheKafka, embedded_broker
from loosely.testing.apache_kafka import ensure_kafka_jars

VERSION = "4.4.0"
COORDINATOR_NOT_READY = {14, 15, 16}  # COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR


class KafkaNode:
    """Apache Kafka 4.4.0, one node, restartable in place."""

    def __init__(self, base_dir: Path, settings: dict[str, str]) -> None:
        self.kafka = ApacheKafka(nodes=1, base_dir=base_dir, jars_dir=ensure_kafka_jars(VERSION), version=VERSION,
                                 config=settings)
        self.kafka.start()
        self.bootstrap_servers = self.kafka.bootstrap_servers

    def restart(self) -> None:
        self.kafka.restart(1)
        self.kafka.wait_ready()

    def stop(self) -> None:
        self.kafka.stop()


class LooselyNode:
    """A loosely broker, restartable on its data directory and port."""

    def __init__(self, data_dir: Path, settings: dict[str, str]) -> None:
        self.data_dir = str(data_dir)
        self.settings = settings
        self._stack = contextlib.ExitStack()
        self._port = 0
        self.bootstrap_servers = ""
        self._start()

    def _start(self) -> None:
        b = self._stack.enter_context(embedded_broker(data_dir=self.data_dir, settings=self.settings,
                                                      port=self._port))
        self._port, self.bootstrap_servers = b.port, b.bootstrap_servers

    def restart(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self._start()

    def stop(self) -> None:
        self._stack.close()


def find_coordinator(raw: Raw, group: str) -> None:
    """As a client does first: Kafka makes __consumer_offsets then, and answers NOT_COORDINATOR until it is loaded."""
    deadline = time.monotonic() + 30
    while True:
        r = raw.request(ApiKey.FIND_COORDINATOR, 4, FindCoordinatorRequest(key_type=i8(0), coordinator_keys=(group,)))
        if [c.error_code for c in r.coordinators] == [0]:  # type: ignore[attr-defined]
            return
        assert time.monotonic() < deadline, r
        time.sleep(0.2)
