"""Committed offsets and group metadata, kept in memory and in ``__consumer_offsets``.

Theory of operation
-------------------
Every change is first appended to the group's partition of ``__consumer_offsets`` (records of
:mod:`loosely.broker.groups.records`) and applied to memory only once the append succeeded, so what a client was
told is committed is on disk (and survives ``kill -9``: appends reach the kernel before we answer). On start the
store replays each partition from its log start offset; compaction keeps the latest record per key, so that stays
cheap. Deletions (OffsetDelete, DeleteGroups, expiry) are tombstones. KIP-848 consumer groups' records are folded
into :class:`~loosely.broker.groups.consumer_records.LoadedGroup` values for the coordinator to rebuild, and written
with :meth:`OffsetStore.write_consumer_records`.

Transactional offset commits (TxnOffsetCommit) are appended as transactional batches under the producer's id and
epoch and held *pending* until the transaction coordinator writes the COMMIT or ABORT marker into the same
partition (:meth:`OffsetStore.on_marker`); replay does the same with the markers it finds. Between a plain and a
transactional commit of the same partition, the one appended later wins, as in Kafka (the record offset decides).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from loosely.broker import internal
from loosely.broker.context import BrokerContext
from loosely.broker.groups import consumer_records
from loosely.broker.groups.consumer_records import LoadedGroup
from loosely.broker.groups.records import (
    NO_TIMESTAMP,
    ConsumerKey,
    GroupKey,
    GroupValue,
    OffsetKey,
    OffsetValue,
    decode_group_value,
    decode_key,
    decode_offset_value,
    encode_group_key,
    encode_group_value,
    encode_offset_key,
    encode_offset_value,
)
from loosely.protocol.errors import CorruptRecordError, ErrorCode
from loosely.protocol.names import TopicPartition
from loosely.protocol.records import CONTROL_KEY, NO_PRODUCER_ID, ControlType, NewRecord, build_batch
from loosely.storage.log import LogError

__all__ = ["Committed", "OffsetStore", "is_expired", "store_error"]

log = logging.getLogger("loosely.broker.groups")


@dataclass(frozen=True, slots=True)
class Committed:
    value: OffsetValue
    record_offset: int  # where the commit record sits in __consumer_offsets: the later one wins
    # The topic's id when committed (its current id, for commits replayed from the log). An offset of a topic that
    # was deleted (and maybe created again) since is not answered, and is tombstoned by the next retention sweep:
    # Kafka deletes a deleted topic's offsets at once; a recreated topic must not inherit them.
    topic_id: uuid.UUID | None = None


def store_error(e: LogError) -> ErrorCode:
    """How Kafka reports a failed write of group metadata (appendGroupMetadataErrorToResponseError)."""
    if e.error_code in (ErrorCode.message_too_large, ErrorCode.record_list_too_large, ErrorCode.invalid_fetch_size):
        return ErrorCode.unknown_server_error
    if e.error_code == ErrorCode.kafka_storage_error:  # a full or failing disk under __consumer_offsets
        return ErrorCode.not_coordinator
    return ErrorCode.coordinator_not_available


def is_expired(c: Committed, now_ms: int, retention_ms: int, base_ms: int) -> bool:
    """Kafka's OffsetExpirationCondition: an explicit expiry (OffsetCommit v2-v4) wins, else ``base + retention``."""
    if c.value.expire_timestamp_ms != NO_TIMESTAMP:
        return now_ms >= c.value.expire_timestamp_ms
    return now_ms - base_ms >= retention_ms


class OffsetStore:
    def __init__(self, ctx: BrokerContext) -> None:
        self.ctx = ctx
        self.partitions = ctx.config.offsets_topic_partitions
        self.offsets: dict[str, dict[TopicPartition, Committed]] = {}
        self.pending: dict[int, dict[str, dict[TopicPartition, Committed]]] = {}  # producer id -> group -> ...
        self.groups: dict[str, GroupValue] = {}  # the latest GroupMetadataValue of each group
        self.consumer_groups: dict[str, LoadedGroup] = {}  # KIP-848 groups as replayed (read once, at start)
        self.loaded = False

    # --- where things live ---------------------------------------------------------------------------------

    def partition_of(self, group: str) -> int:
        return internal.partition_for(group, self.partitions)

    def ensure_topic(self) -> None:
        t = internal.ensure_topic(self.ctx, internal.CONSUMER_OFFSETS, self.partitions)
        self.partitions = t.partitions

    # --- replay --------------------------------------------------------------------------------------------

    def load(self) -> int:
        """Replay ``__consumer_offsets`` (if it exists); returns records read."""
        t = self.ctx.logs.get(internal.CONSUMER_OFFSETS)
        self.loaded = True
        if t is None:
            return 0
        self.partitions = t.partitions
        n = 0
        for p, plog in enumerate(t.logs):
            for h, records in internal.read_log(plog):
                if h.is_control:
                    if records and records[0].key is not None and len(records[0].key) >= CONTROL_KEY.size:
                        _, kind = CONTROL_KEY.unpack_from(records[0].key, 0)
                        self._complete(h.producer_id, kind == ControlType.COMMIT, p)
                    continue
                pid = h.producer_id if h.is_transactional else NO_PRODUCER_ID
                for r in records:
                    n += 1
                    try:
                        self._replay(r.key, r.value, r.offset, pid)
                    except CorruptRecordError as e:
                        log.warning("skipping an unreadable record at %s-%d offset %d: %s", t.name, p, r.offset, e)
        return n

    def _replay(self, key: bytes | None, value: bytes | None, offset: int, producer_id: int) -> None:
        if key is None:
            return
        k = decode_key(key)
        if isinstance(k, OffsetKey):
            tp = TopicPartition(k.topic, k.partition)
            if value is None:
                self._delete_offset(k.group, tp)
            elif producer_id == NO_PRODUCER_ID:
                self.offsets.setdefault(k.group, {})[tp] = Committed(
                    decode_offset_value(value), offset, self._topic_id(k.topic)
                )
            else:
                self.pending.setdefault(producer_id, {}).setdefault(k.group, {})[tp] = Committed(
                    decode_offset_value(value), offset, self._topic_id(k.topic)
                )
        elif isinstance(k, GroupKey):
            if value is None:
                self.groups.pop(k.group, None)
            else:
                self.groups[k.group] = decode_group_value(value)
        elif isinstance(k, ConsumerKey):
            consumer_records.replay(self.consumer_groups, k, value)

    def _delete_offset(self, group: str, tp: TopicPartition) -> None:
        offsets = self.offsets.get(group)
        if offsets is not None:
            offsets.pop(tp, None)
            if not offsets:
                del self.offsets[group]
        for by_group in self.pending.values():
            pending = by_group.get(group)
            if pending is not None:
                pending.pop(tp, None)

    def _complete(self, producer_id: int, commit: bool, partition: int) -> None:
        by_group = self.pending.get(producer_id)
        if by_group is None:
            return
        for group in [g for g in by_group if self.partition_of(g) == partition]:
            pending = by_group.pop(group)
            if not commit:
                continue
            current = self.offsets.setdefault(group, {})
            for tp, c in pending.items():
                old = current.get(tp)
                if old is None or c.record_offset > old.record_offset:
                    current[tp] = c
        if not by_group:
            del self.pending[producer_id]

    def on_marker(self, topic: str, partition: int, producer_id: int, commit: bool) -> None:
        """Listener for markers the transaction coordinator writes."""
        if topic == internal.CONSUMER_OFFSETS:
            self._complete(producer_id, commit, partition)

    # --- writes --------------------------------------------------------------------------------------------

    def _write(
        self, group: str, records: list[NewRecord], *, producer_id: int = NO_PRODUCER_ID, producer_epoch: int = -1
    ) -> int:
        """Append one batch to the group's partition; returns the offset of its first record. Raises LogError."""
        self.ensure_topic()
        batch = build_batch(
            records,
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            transactional=producer_id != NO_PRODUCER_ID,
        )
        result = internal.append(self.ctx, internal.CONSUMER_OFFSETS, self.partition_of(group), batch)
        return result.base_offset

    def commit(
        self,
        group: str,
        offsets: Iterable[tuple[TopicPartition, OffsetValue]],
        *,
        producer_id: int = NO_PRODUCER_ID,
        producer_epoch: int = -1,
    ) -> None:
        """Commit offsets; with a producer id they stay pending until that producer's transaction ends."""
        items = list(offsets)
        if not items:
            return
        now = self.ctx.clock.now_ms()
        records = [
            NewRecord(encode_offset_key(OffsetKey(group, t, p)), encode_offset_value(v), now) for (t, p), v in items
        ]
        base = self._write(group, records, producer_id=producer_id, producer_epoch=producer_epoch)
        if producer_id == NO_PRODUCER_ID:
            into = self.offsets.setdefault(group, {})
        else:
            into = self.pending.setdefault(producer_id, {}).setdefault(group, {})
        for i, (tp, v) in enumerate(items):
            into[tp] = Committed(v, base + i, self._topic_id(tp[0]))

    def delete_offsets(self, group: str, partitions: Iterable[TopicPartition]) -> int:
        """Tombstones for the partitions that have a committed or pending offset; returns how many."""
        doomed = [tp for tp in partitions if tp in self.offsets.get(group, {}) or self._has_pending(group, tp)]
        if not doomed:
            return 0
        now = self.ctx.clock.now_ms()
        self._write(group, [NewRecord(encode_offset_key(OffsetKey(group, t, p)), None, now) for t, p in doomed])
        for tp in doomed:
            self._delete_offset(group, tp)
        return len(doomed)

    def store_group(self, group: str, value: GroupValue | None) -> None:
        """Write the group's metadata record (None: its tombstone)."""
        now = self.ctx.clock.now_ms()
        encoded = None if value is None else encode_group_value(value)
        self._write(group, [NewRecord(encode_group_key(GroupKey(group)), encoded, now)])
        if value is None:
            self.groups.pop(group, None)
        else:
            self.groups[group] = value

    def write_consumer_records(self, group: str, records: list[tuple[bytes, bytes | None]]) -> None:
        """Append a KIP-848 group's records (:func:`~loosely.broker.groups.consumer_records.changes`) in one batch."""
        if records:
            now = self.ctx.clock.now_ms()
            self._write(group, [NewRecord(k, v, now) for k, v in records])

    def delete_group(self, group: str) -> None:
        """Tombstones for every offset (committed or pending) and the group's metadata, in one batch."""
        now = self.ctx.clock.now_ms()
        tps = set(self.offsets.get(group, {}))
        for by_group in self.pending.values():
            tps |= set(by_group.get(group, {}))
        records = [NewRecord(encode_offset_key(OffsetKey(group, t, p)), None, now) for t, p in sorted(tps)]
        records.append(NewRecord(encode_group_key(GroupKey(group)), None, now))
        self._write(group, records)
        for tp in tps:
            self._delete_offset(group, tp)
        self.groups.pop(group, None)

    # --- reads ---------------------------------------------------------------------------------------------

    def _has_pending(self, group: str, tp: TopicPartition) -> bool:
        return any(tp in by_group.get(group, {}) for by_group in self.pending.values())

    def has_pending(self, group: str, tp: TopicPartition | None = None) -> bool:
        """Whether an open transaction holds offsets of the group (of ``tp`` if given)."""
        if tp is None:
            return any(group in by_group for by_group in self.pending.values())
        return self._has_pending(group, tp)

    def _topic_id(self, topic: str) -> uuid.UUID | None:
        t = self.ctx.logs.get(topic)
        return t.topic_id if t is not None else None

    def _live(self, tp: TopicPartition, c: Committed) -> bool:
        return c.topic_id is not None and c.topic_id == self._topic_id(tp[0])

    def committed(self, group: str) -> Mapping[TopicPartition, Committed]:
        """The group's offsets of topics that still exist (as the topic they were committed for)."""
        return {tp: c for tp, c in self.offsets.get(group, {}).items() if self._live(tp, c)}

    def orphaned(self, group: str) -> list[TopicPartition]:
        """Offsets of topics deleted since they were committed."""
        return [tp for tp, c in self.offsets.get(group, {}).items() if not self._live(tp, c)]

    def group_ids(self) -> set[str]:
        return (
            set(self.offsets)
            | set(self.groups)
            | {g for by_group in self.pending.values() for g in by_group}
            | set(self.consumer_groups)
        )
