"""What the coordinators share about Kafka's internal topics: where a key lives, creating them, reading them back.

``__consumer_offsets`` and ``__transaction_state`` are ordinary compacted logs flagged internal (clients may read
them, e.g. with kcat, but not produce to them). They are created the first time a coordinator needs them, as Kafka
creates them on the first FindCoordinator, so a broker that never sees a group or a transaction keeps a small data
directory. A key's partition is Kafka's ``Utils.abs(key.hashCode()) % partitions`` with Java's ``String.hashCode``
(31-polynomial over UTF-16 code units, 32-bit wrap-around) and ``Utils.abs`` (which maps Integer.MIN_VALUE to 0),
so a group or transactional id lands on the same partition number as on Apache Kafka with the same partition count.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Mapping
from typing import Final

from loosely.broker.context import BrokerContext
from loosely.broker.producers import ProducerStateManager
from loosely.protocol.errors import CorruptRecordError
from loosely.protocol.names import TopicPartition
from loosely.protocol.records import BatchHeader, Record, decode_records, iter_batches
from loosely.storage.log import AppendResult, PartitionLog
from loosely.storage.manager import Topic

__all__ = [
    "CONSUMER_OFFSETS",
    "TRANSACTION_STATE",
    "append",
    "ensure_topic",
    "java_string_hash",
    "partition_for",
    "read_log",
]

log = logging.getLogger("loosely.broker")

CONSUMER_OFFSETS: Final = "__consumer_offsets"
TRANSACTION_STATE: Final = "__transaction_state"

# Kafka: offsets.topic.segment.bytes / transaction.state.log.segment.bytes (100 MiB); both topics are compacted.
INTERNAL_TOPIC_CONFIGS: Final[Mapping[str, str]] = {
    "cleanup.policy": "compact",
    "segment.bytes": "104857600",
    "compression.type": "producer",
}
_READ_CHUNK_BYTES: Final = 1 << 20
_RECORD_BYTES_MAX: Final = 64 << 20


def java_string_hash(s: str) -> int:
    """Java's ``String.hashCode()``.

    >>> java_string_hash("hello")
    99162322
    >>> java_string_hash("polygenelubricants")
    -2147483648
    """
    h = 0
    data = s.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFF_FFFF
    return h - (1 << 32) if h >= 1 << 31 else h


@functools.lru_cache(maxsize=4096)  # asked at every coordinator write of a group or transaction (1-2 % of a commit)
def partition_for(key: str, partitions: int) -> int:
    """Kafka's coordinator partition for a group or transactional id.

    >>> partition_for("polygenelubricants", 50)
    0
    """
    h = java_string_hash(key)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def ensure_topic(ctx: BrokerContext, name: str, partitions: int) -> Topic:
    """The internal topic, created (compacted, flagged internal) if it does not exist yet."""
    t = ctx.logs.get(name)
    if t is None:
        t = ctx.logs.create_topic(name, partitions, dict(INTERNAL_TOPIC_CONFIGS), internal=True)
        log.info("created internal topic %s with %d partitions", name, partitions)
    return t


def append(ctx: BrokerContext, topic: str, partition: int, batch: bytes) -> AppendResult:
    """Append a coordinator's batch and wake fetches waiting on the partition. Raises ``LogError``."""
    plog = ctx.logs.log(topic, partition)
    if plog is None:
        raise KeyError(f"{topic}-{partition} does not exist")
    producers = ctx.producer_state
    if isinstance(producers, ProducerStateManager):
        # Through the producer state, so transactional offset commits count as open transactions.
        result = producers.append_internal(topic, partition, plog, batch)
    else:
        result = plog.append(batch, from_client=False)
    ctx.watchers.notify(TopicPartition(topic, partition))
    return result


def read_log(plog: PartitionLog) -> Iterator[tuple[BatchHeader, list[Record]]]:
    """Every batch from the log start offset to the high watermark, with its records decoded.

    A batch that does not decode is logged and skipped (the log's recovery already dropped torn tails; this can only
    be a record written by something else).
    """
    offset = plog.log_start_offset
    while offset < plog.high_watermark:
        result = plog.read(offset, _READ_CHUNK_BYTES, min_one=True)
        if not result.slices:
            return
        data = result.read_bytes()
        for pos, h in iter_batches(data, allow_partial_tail=True):
            if h.last_offset < offset:
                continue
            try:
                records = decode_records(data, pos, h, _RECORD_BYTES_MAX) if h.records_count else []
            except CorruptRecordError as e:
                log.warning("skipping an undecodable batch at offset %d of %s: %s", h.base_offset, plog.dir, e)
                records = []
            yield h, records
            offset = h.next_offset
        offset = max(offset, result.slices[-1].next_offset)
