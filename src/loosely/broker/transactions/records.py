"""The records of ``__transaction_state``, in Apache Kafka's schemas (``TransactionLogKey`` / ``TransactionLogValue``).

A transactional id's records all go to partition ``abs(String.hashCode(transactionalId)) % partitions`` of the
compacted topic; the latest record is its state, a null value (tombstone) means the id expired::

    key    int16 version (0) | string transactionalId
    value  int16 version | int64 producerId | int16 producerEpoch | int32 transactionTimeoutMs
           | int8 transactionStatus | nullable array of (string topic | array of int32 partition)
           | int64 transactionLastUpdateTimestampMs | int64 transactionStartTimestampMs
      v0   as above
      v1   flexible (compact strings and arrays, tagged fields), with the tagged fields 0 previousProducerId,
           1 nextProducerId, 2 clientTransactionVersion (int16) and 3 nextProducerEpoch (KIP-939, read and
           ignored), each written only when it is not its default (-1, -1, 0)                  <- written

Kafka writes v1 once ``transaction.version`` is finalized at 1 or more, for every client; loosely finalizes 2, so it
does too. The tagged fields are what a version 2 transaction needs after a restart: the client's version, the
producer id an exhausted epoch moves to, and the one before it (which recognises a retried EndTxn).

``transactionStatus`` is Kafka's TransactionState id: 0 Empty, 1 Ongoing, 2 PrepareCommit, 3 PrepareAbort,
4 CompleteCommit, 5 CompleteAbort, 6 Dead, 7 PrepareEpochFence. Empty states are written with a null partition
list, as Kafka does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from loosely.protocol.errors import CorruptRecordError
from loosely.protocol.primitives import Reader, Writer

__all__ = ["TxnLogValue", "decode_txn_key", "decode_txn_value", "encode_txn_key", "encode_txn_value"]

_KEY_VERSION: Final = 0
_VALUE_VERSION: Final = 1
_FLEXIBLE_FROM: Final = 1
_STATUS_EMPTY: Final = 0
_TAG_PREVIOUS_PRODUCER_ID: Final = 0
_TAG_NEXT_PRODUCER_ID: Final = 1
_TAG_CLIENT_VERSION: Final = 2
NO_PRODUCER_ID: Final = -1


@dataclass(frozen=True, slots=True)
class TxnLogValue:
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    status: int
    partitions: tuple[tuple[str, int], ...]
    last_update_ms: int
    start_ms: int
    previous_producer_id: int = NO_PRODUCER_ID
    next_producer_id: int = NO_PRODUCER_ID
    client_version: int = 0


def encode_txn_key(transactional_id: str) -> bytes:
    return Writer().i16(_KEY_VERSION).string(transactional_id).done()


def decode_txn_key(data: bytes) -> str:
    r = Reader(data)
    version = r.i16()
    if version != _KEY_VERSION:
        raise CorruptRecordError(f"unknown TransactionLogKey version {version}")
    tid = r.string()
    r.end()
    return tid


def encode_txn_value(v: TxnLogValue) -> bytes:
    fx = True  # v1
    w = Writer().i16(_VALUE_VERSION).i64(v.producer_id).i16(v.producer_epoch).i32(v.timeout_ms).i8(v.status)
    if v.status == _STATUS_EMPTY and not v.partitions:
        w.array_length(-1, fx)
    else:
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(v.partitions):
            by_topic.setdefault(topic, []).append(partition)
        w.array_length(len(by_topic), fx)
        for topic, parts in by_topic.items():
            w.string(topic, fx).array_length(len(parts), fx)
            for p in parts:
                w.i32(p)
            w.no_tagged_fields()
    w.i64(v.last_update_ms).i64(v.start_ms)
    tagged = [
        (tag, value)
        for tag, value, present in (
            (_TAG_PREVIOUS_PRODUCER_ID, Writer().i64(v.previous_producer_id).done(),
             v.previous_producer_id != NO_PRODUCER_ID),
            (_TAG_NEXT_PRODUCER_ID, Writer().i64(v.next_producer_id).done(), v.next_producer_id != NO_PRODUCER_ID),
            (_TAG_CLIENT_VERSION, Writer().i16(v.client_version).done(), v.client_version != 0),
        )
        if present
    ]
    w.uvarint(len(tagged))
    for tag, value in tagged:
        w.uvarint(tag).uvarint(len(value))
        w.out += value
    return w.done()


def decode_txn_value(data: bytes) -> TxnLogValue:
    r = Reader(data)
    version = r.i16()
    if not 0 <= version <= _FLEXIBLE_FROM:
        raise CorruptRecordError(f"unknown TransactionLogValue version {version}")
    fx = version >= _FLEXIBLE_FROM
    pid = r.i64()
    epoch = r.i16()
    timeout = r.i32()
    status = r.i8()
    partitions: list[tuple[str, int]] = []
    for _ in range(max(r.array_length(fx), 0)):
        topic = r.string(fx)
        for _ in range(max(r.array_length(fx), 0)):
            partitions.append((topic, r.i32()))
        if fx:
            r.skip_tagged_fields()
    last_update = r.i64()
    start = r.i64()
    tags: dict[int, int] = {}
    if fx:
        for _ in range(r.uvarint()):
            tag, size = r.uvarint(), r.uvarint()
            field = Reader(r.take(size))
            if tag in (_TAG_PREVIOUS_PRODUCER_ID, _TAG_NEXT_PRODUCER_ID):
                tags[tag] = field.i64()
            elif tag == _TAG_CLIENT_VERSION:
                tags[tag] = field.i16()
            else:
                continue  # a tag of a later Kafka (3: nextProducerEpoch, KIP-939): nothing loosely keeps
            field.end()
    r.end()
    return TxnLogValue(
        pid,
        epoch,
        timeout,
        status,
        tuple(partitions),
        last_update,
        start,
        previous_producer_id=tags.get(_TAG_PREVIOUS_PRODUCER_ID, NO_PRODUCER_ID),
        next_producer_id=tags.get(_TAG_NEXT_PRODUCER_ID, NO_PRODUCER_ID),
        client_version=tags.get(_TAG_CLIENT_VERSION, 0),
    )
