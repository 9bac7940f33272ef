"""Committed offsets of many groups over loosely's own connection (:class:`loosely.clients.groups.GroupOffsets`),
against loosely's broker and Apache Kafka with the same assertions, and what confluent-kafka's consumer reads."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from compat._support import Cluster
from loosely.clients.groups import GroupOffsets, committed_offsets


def commit(bootstrap: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    finally:
        c.close()


def test_many_groups_in_one_call_as_the_consumer_reads_them(cluster: Cluster) -> None:
    topic, other = (f"t-{uuid.uuid4().hex[:10]}" for _ in range(2))
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    for f in admin.create_topics([NewTopic(topic, 2, 1), NewTopic(other, 1, 1)]).values():
        f.result(30)
    a, b, idle, never = (f"g-{n}-{uuid.uuid4().hex[:8]}" for n in ("a", "b", "idle", "never"))
    commit(cluster.bootstrap_servers, a, {(topic, 0): 3, (topic, 1): 5, (other, 0): 1})
    commit(cluster.bootstrap_servers, b, {(topic, 1): 2})
    reader = GroupOffsets({"bootstrap.servers": cluster.bootstrap_servers})
    try:
        got = reader.committed([a, b, never, a], 30)  # a group asked twice is answered once
        assert got == {a: {(topic, 0): 3, (topic, 1): 5, (other, 0): 1}, b: {(topic, 1): 2}, never: {}}
        assert got[a] == {tp: o for tp, (o, _) in committed_offsets(
            {"bootstrap.servers": cluster.bootstrap_servers}, a, [(topic, 0), (topic, 1), (other, 0)]).items()}
        commit(cluster.bootstrap_servers, b, {(topic, 1): 7})  # the kept connections see the next commit
        assert reader.committed([b, idle], 30) == {b: {(topic, 1): 7}, idle: {}}
    finally:
        reader.close()


def test_bad_settings_and_an_unreachable_cluster_are_clear() -> None:
    with pytest.raises(ValueError, match="GSSAPI"):
        GroupOffsets({"bootstrap.servers": "127.0.0.1:9", "security.protocol": "sasl_plaintext",
                      "sasl.mechanism": "GSSAPI"})
    with pytest.raises(ValueError, match="not HOST:PORT"):
        GroupOffsets({"bootstrap.servers": "nowhere"})
    with pytest.raises(OSError, match="no bootstrap broker reachable"):
        GroupOffsets({"bootstrap.servers": "127.0.0.1:9"}).committed(["g"], 2)
