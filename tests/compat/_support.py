"""Shared by the compatibility tests."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka.admin import AdminClient, NewTopic

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
