"""Consumer-group reads that avoid a librdkafka crash.

librdkafka 2.16's AdminClient ``list_consumer_group_offsets`` segfaults when the OffsetFetch answer carries a
retriable coordinator error (``rd_kafka_handle_OffsetFetch`` hands it to the consumer-group machinery, which an
admin client does not have: ``rd_kafka_cgrp_op`` dereferences NULL). A fresh Kafka cluster answers exactly that
while its offsets topic loads. A consumer handle with the group's id has that machinery, so committed offsets are
read through ``Consumer.committed`` instead (the consumer never subscribes, so it never joins the group).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

__all__ = ["committed_offsets"]


def committed_offsets(
    conf: dict[str, Any], group: str, partitions: Iterable[tuple[str, int]], timeout_s: float = 30.0
) -> dict[tuple[str, int], tuple[int, str]]:
    """``{(topic, partition): (offset, metadata)}`` for the partitions where ``group`` has a committed offset."""
    wanted = [TopicPartition(t, p) for t, p in partitions]
    if not wanted:
        return {}
    c = Consumer({**conf, "group.id": group, "enable.auto.commit": False, "log_level": 0})
    try:
        got = c.committed(wanted, timeout=timeout_s)
    finally:
        c.close()
    return {(tp.topic, tp.partition): (tp.offset, tp.metadata or "") for tp in got if tp.offset >= 0}
