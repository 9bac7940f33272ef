"""Shared by the compatibility tests."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from loosely.broker.server import BrokerThread


@dataclass(frozen=True)
class Cluster:
    kind: str  # "loosely" | "kafka"
    bootstrap_servers: str
    broker: BrokerThread | None = None
    version: str | None = None  # the Apache Kafka release, for a "kafka" cluster


def create_topic(bootstrap: str, topic: str, partitions: int, **configs: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([NewTopic(topic, partitions, 1, config=configs)])
    fs[topic].result(30)
    wait_for_leaders(admin, topic, partitions)


def wait_for_leaders(admin: AdminClient, topic: str, partitions: int, timeout: float = 30.0) -> None:
    """Wait until every partition's leader answers for it.

    Kafka acknowledges CreateTopics once the controller has the topic; the leader loads
    the partitions a moment later and answers UNKNOWN_TOPIC_OR_PARTITION until then. A
    client library retries that, but a test that sends a raw request would not.
    """
    wanted = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
    deadline = time.monotonic() + timeout
    while True:
        try:
            for f in admin.list_offsets(wanted, request_timeout=5).values():
                f.result()
            return
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
