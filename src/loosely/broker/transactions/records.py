"""The records of ``__transaction_state``, in Apache Kafka's schemas (``TransactionLogKey`` / ``TransactionLogValue``).

A transactional id's records all go to partition ``abs(String.hashCode(transactionalId)) % partitions`` of the
compacted topic; the latest record is its state, a null value (tombstone) means the id expired::

    key    int16 version (0) | string transactionalId
    value  int16 version | int64 producerId | int16 producerEpoch | int32 transactionTimeoutMs
           | int8 transactionStatus | nullable array of (string topic | array of int32 partition)
           | int64 transactionLastUpdateTimestampMs | int64 transactionStartTimestampMs
      v0   as above                                                                            <- written
      v1   flexible (compact strings and arrays), with tagged fields 0 previousProducerId, 1 nextProducerId,
           2 clientTransactionVersion (written by Kafka for transactions version 2 clients, which loosely does not
           advertise: its EndTxn stops at v3)

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
_VALUE_VERSION: Final = 0
_FLEXIBLE_FROM: Final = 1
_STATUS_EMPTY: Final = 0


@dataclass(frozen=True, slots=True)
class TxnLogValue:
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    status: int
    partitions: tuple[tuple[str, int], ...]
    last_update_ms: int
    start_ms: int


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
    w = Writer().i16(_VALUE_VERSION).i64(v.producer_id).i16(v.producer_epoch).i32(v.timeout_ms).i8(v.status)
    if v.status == _STATUS_EMPTY and not v.partitions:
        w.array_length(-1)
    else:
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(v.partitions):
            by_topic.setdefault(topic, []).append(partition)
        w.array_length(len(by_topic))
        for topic, parts in by_topic.items():
            w.string(topic).array_length(len(parts))
            for p in parts:
                w.i32(p)
    return w.i64(v.last_update_ms).i64(v.start_ms).done()


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
    if fx:
        r.skip_tagged_fields()
    r.end()
    return TxnLogValue(pid, epoch, timeout, status, tuple(partitions), last_update, start)
