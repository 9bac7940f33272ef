"""The names Kafka gives its things, one type each, for every room to share.

A topic name is a ``str`` on the wire, and so is a group id, a transactional id, a client id: :data:`TopicName` is
a ``NewType`` so that a signature says which one it takes. :class:`TopicPartition` is a named tuple rather than a
frozen dataclass because the broker, storage and views key dicts by it and build it from plain ``(topic,
partition)`` tuples; a named tuple compares and hashes as that tuple does, so both spellings find the same entry,
and it sorts by topic, then partition.

>>> tp = TopicPartition(TopicName("orders"), 3)
>>> tp == ("orders", 3), hash(tp) == hash(("orders", 3)), tp
(True, True, TopicPartition(topic='orders', partition=3))
"""

from __future__ import annotations

from typing import NamedTuple, NewType

__all__ = ["TopicName", "TopicPartition"]

TopicName = NewType("TopicName", str)


class TopicPartition(NamedTuple):
    """One partition of one topic."""

    topic: str
    partition: int
