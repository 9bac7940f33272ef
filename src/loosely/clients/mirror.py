"""A MirrorMaker 2 compatible mirror: copies topics from a source cluster to a target cluster.

Theory of operation
-------------------
One process mirrors one flow ``source -> target``. It does what MirrorMaker 2's three connectors do:

* **Records** (MirrorSourceConnector): topics accepted by the :class:`~loosely.clients.mm2.TopicFilter` (and every
  heartbeats topic) are created on the target as ``<source>.<topic>`` (or unchanged with the identity policy) with
  the same partition count, and their records are copied partition for partition with key, value, headers and
  timestamp. Topics that came from the target (``<target>.x``) are skipped, which breaks cycles.
* **Offset syncs**: after records are delivered the mirror knows each record's upstream and downstream offset and
  writes an :class:`~loosely.clients.mm2.OffsetSync` to ``mm2-offset-syncs.<target>.internal`` on the source with
  MirrorMaker's rule (the first record, a gap upstream, a truncated target, or a translation ``offset_lag_max``
  behind).
* **Checkpoints** (MirrorCheckpointConnector): every ``checkpoint_interval_s`` the committed offsets of the source's
  consumer groups are translated and written to ``<source>.checkpoints.internal`` on the target; with
  ``sync_group_offsets`` they are also committed to the same group on the target while it has no active members,
  so consumers can fail over.
* **Heartbeats** (MirrorHeartbeatConnector): every ``heartbeat_interval_s`` a heartbeat goes to ``heartbeats`` on
  the target.

Progress and exactly-once
-------------------------
The mirror's own progress (per target partition: the next upstream offset, and the downstream offset it maps to)
lives on the target in the compacted topic ``loosely-mirror-offsets.<source>.internal``. When the target supports
transactions, each batch of records and its progress records commit in one transaction, so a crash at any point
leaves either all of a batch or none of it, and a restart resumes exactly after the last committed batch.

How records travel: with transactions and plain connections on both sides, the source's record batches are copied
whole (:mod:`loosely.clients._batch_copy`: fetched raw, stamped with the mirror's own transactional producer, one
transaction per fetch answer with its progress records); otherwise one record at a time through confluent-kafka
(``copy="records"`` asks for that always). Both keep the same progress records and transactional id.

Without transactions the mirror writes a batch, waits until it is delivered, then writes the progress. A crash
between the two leaves records the progress does not know about. Because the mirror is the only writer of its
target partitions and copies one record for each record it reads, in order, the surplus is exactly ``k = target
end offset - recorded downstream offset`` records, and they are the first ``k`` records the source yields after the
recorded upstream offset: the restarted mirror skips those ``k`` and goes on. No record is lost or doubled, as long
as nothing else writes to the mirrored topics on the target.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined,unused-ignore]  # no __all__ in some versions
    AdminClient,
    ConfigResource,
    NewTopic,
)

from loosely.clients._batch_copy import BatchSource, Piece, TxnTarget, TxnUnavailable
from loosely.clients.fastpath import OFFSET_EARLIEST
from loosely.clients.mm2 import (
    Checkpoint,
    DefaultReplicationPolicy,
    Heartbeat,
    OffsetSync,
    OffsetSyncStore,
    ReplicationPolicy,
    TopicFilter,
)
from loosely.clients.reachability import Reachability

__all__ = ["Mirror", "MirrorConfig", "MirrorStatistics", "progress_topic"]

log = logging.getLogger("loosely.mirror")

TIMEOUT_S: Final = 30.0
_PROGRESS_VALUE_BYTES: Final = 16
FETCH_QUEUE_BACKOFF_MS: Final = 10
TRANSACTION_TIMEOUT_MS: Final = 60_000
# Topic configs copied to new target topics (MirrorMaker's sync.topic.configs copies the non-default ones too)
_COPIED_CONFIGS: Final = frozenset(
    {"cleanup.policy", "retention.ms", "retention.bytes", "max.message.bytes", "compression.type",
     "message.timestamp.type", "min.compaction.lag.ms", "delete.retention.ms", "segment.bytes", "segment.ms"}
)
GROUPS_EXCLUDE_DEFAULT: Final = "console-consumer-.*,connect-.*,__.*,loosely-kcat,loosely-admin,loosely-mirror-.*"


def progress_topic(source_alias: str) -> str:
    return f"loosely-mirror-offsets.{source_alias}.internal"


@dataclass(frozen=True)
class MirrorConfig:
    source_alias: str
    source: dict[str, Any]  # librdkafka properties, at least bootstrap.servers
    target_alias: str
    target: dict[str, Any]
    topics: TopicFilter = field(default_factory=TopicFilter)
    groups: str = ".*"
    groups_exclude: str = GROUPS_EXCLUDE_DEFAULT
    policy: ReplicationPolicy = field(default_factory=DefaultReplicationPolicy)
    exactly_once: str = "auto"  # "auto": transactions if the target has them; "on": required; "off": never
    offset_lag_max: int = 100  # MirrorMaker's offset.lag.max
    heartbeat_interval_s: float = 1.0  # emit.heartbeats.interval.seconds
    checkpoint_interval_s: float = 60.0  # emit.checkpoints.interval.seconds
    sync_group_offsets: bool = False  # sync.group.offsets.enabled
    refresh_topics_interval_s: float = 600.0  # refresh.topics.interval.seconds
    batch_messages_max: int = 20_000
    # "batches": where it can (transactions, plain connections), copy the source's record batches whole
    # (loosely.clients._batch_copy); "records": always one record at a time through confluent-kafka
    copy: str = "batches"
    internal_replication_factor: int = 1  # MirrorMaker uses 3; one broker here is the common embedded case


@dataclass(frozen=True, slots=True)
class MirrorStatistics:
    records_total: int
    batches_total: int
    transactional: bool
    topics: int
    partitions: int
    offset_syncs_total: int
    checkpoints_total: int
    heartbeats_total: int
    skipped_on_resume_total: int
    batches_whole: bool = False  # record batches copied whole (loosely.clients._batch_copy), not record by record


@dataclass(slots=True)
class _PartitionState:
    """MirrorMaker's per-partition offset-sync decision (MirrorSourceTask.PartitionState)."""

    previous_upstream: int = -1
    previous_downstream: int = -1
    last_sync_downstream: int = -1

    def update(self, upstream: int, downstream: int, lag_max: int) -> bool:
        emit = (
            self.previous_upstream == -1
            or downstream - (self.last_sync_downstream + 1) >= lag_max
            or upstream - self.previous_upstream != 1
            or downstream < self.previous_downstream
        )
        if emit:
            self.last_sync_downstream = downstream
        self.previous_upstream = upstream
        self.previous_downstream = downstream
        return emit


@dataclass(slots=True)
class _Run:
    """One source partition's records in one batch: where they go, their upstream offsets, records to skip."""

    remote: str
    skip: int  # records still to skip after a crash without transactions (see the module header)
    skipped: int = 0
    next_upstream: int = 0
    upstreams: list[int] = field(default_factory=list)


def _encode_progress(upstream_next: int, downstream_next: int) -> bytes:
    return upstream_next.to_bytes(8, "big", signed=True) + downstream_next.to_bytes(8, "big", signed=True)


def _decode_progress(value: bytes) -> tuple[int, int]:
    if len(value) != _PROGRESS_VALUE_BYTES:
        raise ValueError(f"a progress record holds 16 bytes, not {len(value)}")
    return int.from_bytes(value[:8], "big", signed=True), int.from_bytes(value[8:], "big", signed=True)


def _high_watermark(c: Consumer, topic: str, partition: int) -> int:
    """The partition's high watermark, asked again while a topic created a moment ago is not ready: Apache Kafka's
    brokers learn of it from the controller a little later, and until then answer "unknown partition" or "not
    leader" (both seen on a loaded machine)."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            return int(c.get_watermark_offsets(TopicPartition(topic, partition), timeout=TIMEOUT_S)[1])
        except KafkaException as e:
            code = e.args[0].code()
            if code not in (KafkaError._UNKNOWN_PARTITION, KafkaError.NOT_LEADER_FOR_PARTITION,
                            KafkaError.LEADER_NOT_AVAILABLE) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _progress_key(topic: str, partition: int) -> bytes:
    return f"{topic}:{partition}".encode()


class Mirror:
    """Mirrors ``config.source`` to ``config.target`` until :meth:`stop` (or forever with :meth:`run`)."""

    def __init__(self, config: MirrorConfig) -> None:
        self.config = config
        self._stop = threading.Event()
        # a running mirror outlives outages of either cluster: one line per interval while one is unreachable
        self._source_reach = Reachability(f"mirror source {config.source_alias}", log)
        self._target_reach = Reachability(f"mirror target {config.target_alias}", log)
        self._source_admin = AdminClient({**config.source, "log_level": 0})
        self._target_admin = AdminClient({**config.target, "log_level": 0})
        # the offset syncs, for translating group offsets: read from the source's offset-syncs topic at the first
        # checkpoint that has a group to translate (None until then; see _offset_syncs)
        self._syncs: OffsetSyncStore | None = None
        self._states: dict[tuple[str, int], _PartitionState] = {}
        self._progress: dict[tuple[str, int], tuple[int, int]] = {}  # target (topic, p) -> (upstream, downstream)
        self._skip: dict[tuple[str, int], int] = {}  # source (topic, p) -> records to skip after a crash
        self._mirrored: dict[str, str] = {}  # source topic -> target topic
        self._partitions: dict[str, int] = {}
        self._transactional = False
        self._records = self._batches = self._syncs_emitted = self._checkpoints = self._heartbeats = 0
        self._skipped = 0
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._side: Producer | None = None  # heartbeats and checkpoints on the target (outside transactions)
        self._source_producer: Producer | None = None  # offset syncs on the source
        self._next: list[Message] | None = None  # the next batch, consumed while the last one committed
        # the batch path (see _batch_path_possible): the source's batches read raw, written by our own producer
        self._batch_source: BatchSource | None = None
        self._batch_target: TxnTarget | None = None
        self._started = False
        # what the source's side of start() found: the source's metadata, the configs of the topics to mirror
        self._start_topics: tuple[Any, dict[str, dict[str, str]]] = (None, {})

    # --- names ------------------------------------------------------------------------------------------------

    @property
    def offset_syncs_topic(self) -> str:
        return self.config.policy.offset_syncs_topic(self.config.target_alias)

    @property
    def checkpoints_topic(self) -> str:
        return self.config.policy.checkpoints_topic(self.config.source_alias)

    @property
    def heartbeats_topic(self) -> str:
        return self.config.policy.heartbeats_topic()

    def remote_topic(self, topic: str) -> str:
        return self.config.policy.format_remote_topic(self.config.source_alias, topic)

    def _should_mirror(self, topic: str) -> bool:
        policy = self.config.policy
        if policy.topic_source(topic) == self.config.target_alias:
            return False  # came from the target: mirroring it back would loop
        if topic in (self.offset_syncs_topic, progress_topic(self.config.source_alias)):
            return False
        return policy.is_heartbeats_topic(topic) or self.config.topics.accepts(topic)

    # --- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Prepare both clusters, then assign the consumer where the progress says.

        The source's side (its offset-syncs topic, the topics to mirror and their configs, the consumer, told the
        leaders before it is assigned) and the target's side (the internal topics, InitProducerId, the progress) need
        nothing from each other, so the source's runs in a thread beside the target's: librdkafka gives up the GIL
        while it waits on the network, and start-up is mostly waiting. The progress is read only after
        InitProducerId has fenced any earlier instance and ended its open transaction, as before."""
        failed: list[BaseException] = []

        def source_side() -> None:
            try:
                self._prepare_source()
            except BaseException as e:  # raised again in the calling thread
                failed.append(e)

        thread = threading.Thread(target=source_side, name="mirror-start-source", daemon=True)
        thread.start()
        try:
            target_md = self._prepare_target()
        finally:
            thread.join()
        if failed:
            raise failed[0]
        source_md, configs = self._start_topics
        if self._batch_target is None and self._consumer is None:  # the target would not take the batch path
            self._consumer = self._make_consumer()
            source_md = self._consumer.list_topics(timeout=TIMEOUT_S)  # tells the consumer the leaders
        self._refresh_topics(source_md, configs, target_md)
        self._started = True

    def _batch_path_possible(self) -> bool:
        """Whether the batch path may serve this mirror: asked for, transactional, and nothing in either side's
        settings that its plain connections would ignore (TLS, SASL, any other librdkafka property)."""
        cfg = self.config
        plain = {"bootstrap.servers", "client.id"}
        return (cfg.copy == "batches" and cfg.exactly_once != "off" and set(cfg.source) <= plain
                and set(cfg.target) <= plain)

    def _prepare_target(self) -> Any:
        """The target's internal topics, the producers that write there, and the progress; the target's metadata
        (for the remote topics' check)."""
        cfg = self.config
        progress = progress_topic(cfg.source_alias)
        md = self._ensure_topics(self._target_admin, {t: (1, {}) for t in (
            self.checkpoints_topic, self.heartbeats_topic, progress)}, compact=True)
        known = md.topics.get(progress)
        # the batch path writes the progress to partition 0; an older progress topic of more partitions keeps
        # librdkafka's partitioner
        if self._batch_path_possible() and (known is None or len(known.partitions) == 1):
            try:
                self._batch_target = TxnTarget(str(cfg.target["bootstrap.servers"]), self._transactional_id(),
                                               transaction_timeout_ms=TRANSACTION_TIMEOUT_MS, timeout_s=TIMEOUT_S)
                self._transactional = True
                log.info("mirror %s->%s: transactional (exactly-once), record batches copied whole",
                         cfg.source_alias, cfg.target_alias)
            except TxnUnavailable as e:
                log.info("record batches cannot be copied whole (%s): copying records", e)
        if self._batch_target is None:
            self._producer = self._make_producer()
        self._side = Producer({**cfg.target, "log_level": 0, "linger.ms": 5})
        self._load_progress()
        return md

    def _prepare_source(self) -> None:
        if self._batch_path_possible():  # records are read by the batch path, unless the target turns it down
            md = self._source_admin.list_topics(timeout=TIMEOUT_S)
        else:
            # created now, assigned once the progress is known: its connection to the source is up by then
            self._consumer = self._make_consumer()
            md = self._consumer.list_topics(timeout=TIMEOUT_S)  # also tells the consumer the leaders
        self._ensure_topics(self._source_admin, {self.offset_syncs_topic: (1, {})}, compact=True, md=md)
        self._source_producer = Producer({**self.config.source, "log_level": 0, "linger.ms": 5})
        new = self._new_topics(md)
        self._start_topics = (md, self._source_configs(list(new)))

    def _make_consumer(self) -> Consumer:
        cfg = self.config
        return Consumer({
            **cfg.source,
            "group.id": f"loosely-mirror-{cfg.source_alias}-{cfg.target_alias}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            **self._source_reach.config(),
            # librdkafka stops fetching while its queue holds queued.min.messages (100,000) and looks again after
            # this long: 0 makes its broker thread spin on a full queue (~1.7 s of a core per million records, taken
            # from the brokers on a small machine), the default 1000 leaves the mirror waiting on an empty queue
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        })

    def _transactional_id(self) -> str:
        return f"loosely-mirror-{self.config.source_alias}-{self.config.target_alias}"

    def _make_producer(self) -> Producer:
        cfg = self.config
        # a whole batch (batch_messages_max records) must fit the producer's queue before it is committed
        base = {**cfg.target, **self._target_reach.config(), "linger.ms": 5, "acks": "all",
                "queue.buffering.max.messages": max(100_000, 2 * cfg.batch_messages_max + 1000)}
        if cfg.exactly_once != "off":
            producer = Producer({**base, "transactional.id": self._transactional_id(),
                                 "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS})
            try:
                producer.init_transactions(TIMEOUT_S if cfg.exactly_once == "on" else 10.0)
                self._transactional = True
                log.info("mirror %s->%s: transactional (exactly-once)", cfg.source_alias, cfg.target_alias)
                return producer
            except KafkaException as e:
                if cfg.exactly_once == "on":
                    raise
                log.warning("target has no transactions (%s); resuming by reconciliation instead", e.args[0].str())
        # one request in flight keeps records in order on retries without idempotence
        return Producer({**base, "max.in.flight.requests.per.connection": 1})

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        for p in (self._producer, self._side, self._source_producer):
            if p is not None:
                p.flush(TIMEOUT_S)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._batch_source is not None:
            self._batch_source.close()
            self._batch_source = None
        if self._batch_target is not None:
            self._batch_target.close()
            self._batch_target = None

    def run(self, on_batch: Callable[[Mirror], None] | None = None) -> None:
        """Mirror until :meth:`stop`: records continuously, heartbeats/checkpoints/topic refresh on their timers."""
        if not self._started:
            self.start()
        cfg = self.config
        now = time.monotonic()
        next_heartbeat = now
        next_checkpoint = now + min(cfg.checkpoint_interval_s, 5.0)
        next_refresh = now + cfg.refresh_topics_interval_s
        try:
            while not self._stop.is_set():
                self.mirror_once()
                if on_batch is not None:
                    on_batch(self)
                now = time.monotonic()
                if now >= next_heartbeat:
                    self.emit_heartbeat()
                    next_heartbeat = now + cfg.heartbeat_interval_s
                if now >= next_checkpoint:
                    self.emit_checkpoints()
                    next_checkpoint = now + cfg.checkpoint_interval_s
                if now >= next_refresh:
                    self._refresh_topics()
                    next_refresh = now + cfg.refresh_topics_interval_s
        finally:
            self.close()

    # --- topics -----------------------------------------------------------------------------------------------

    def _ensure_topics(self, admin: AdminClient, wanted: dict[str, tuple[int, dict[str, str]]], *,
                       compact: bool = False, md: Any = None) -> Any:
        """Create the topics of ``wanted`` (name -> partitions, configs) that are missing, with one metadata
        request (unless ``md`` is given) and one CreateTopics for all; grow those with fewer partitions. Returns the
        metadata it looked at."""
        if md is None:
            md = admin.list_topics(topic=None, timeout=TIMEOUT_S)
        create = []
        for topic, (partitions, configs) in wanted.items():
            if topic in md.topics and md.topics[topic].error is None:
                if len(md.topics[topic].partitions) < partitions:
                    from confluent_kafka.admin import NewPartitions  # type: ignore[attr-defined,unused-ignore]  # noqa: PLC0415

                    admin.create_partitions([NewPartitions(topic, partitions)])[topic].result(TIMEOUT_S)
                continue
            conf = dict(configs)
            if compact:
                conf["cleanup.policy"] = "compact"
            rf = self.config.internal_replication_factor if compact else -1
            create.append(NewTopic(topic, partitions, rf, config=conf))
        if create:
            for fut in admin.create_topics(create, operation_timeout=TIMEOUT_S).values():
                try:
                    fut.result(TIMEOUT_S)
                except KafkaException as e:
                    if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise
        return md

    def _source_configs(self, topics: list[str]) -> dict[str, dict[str, str]]:
        """The configs worth copying of each of ``topics`` on the source (one DescribeConfigs for all)."""
        if not topics:
            return {}
        resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in topics]
        out: dict[str, dict[str, str]] = {}
        for res, fut in self._source_admin.describe_configs(resources, request_timeout=TIMEOUT_S).items():
            try:
                entries = fut.result(TIMEOUT_S)
            except KafkaException:
                entries = {}
            out[res.name] = {n: e.value for n, e in entries.items()
                             if n in _COPIED_CONFIGS and not e.is_default and e.value}
        return out

    def _new_topics(self, md: Any) -> dict[str, int]:
        """Source topics to mirror that are new, or have more partitions than when last seen: name -> partitions."""
        out = {}
        for name, t in sorted(md.topics.items()):
            if t.error is not None or not self._should_mirror(name):
                continue
            n = len(t.partitions)
            if self._partitions.get(name) != n:
                out[name] = n
        return out

    def _refresh_topics(self, source_md: Any = None, configs: dict[str, dict[str, str]] | None = None,
                        target_md: Any = None) -> None:
        """Mirror new source topics (and new partitions): create them on the target, then assign. At start the
        metadata and configs gathered while preparing are passed in; later each refresh asks for them."""
        if source_md is None and self._consumer is None:  # the batch path
            source_md = self._source_admin.list_topics(timeout=TIMEOUT_S)
        elif source_md is None:
            assert self._consumer is not None
            # asked through the consumer: a partition assigned before its consumer knows the leader waits out a
            # fixed 500 ms retry in librdkafka before it looks up where to start (seen with 2.16's debug log)
            source_md = self._consumer.list_topics(timeout=TIMEOUT_S)
        new = self._new_topics(source_md)
        if not new:
            return
        if configs is None:
            configs = self._source_configs(list(new))
        self._ensure_topics(self._target_admin, {self.remote_topic(name): (n, configs.get(name, {}))
                                                 for name, n in new.items()}, md=target_md)
        for name, n in new.items():
            self._mirrored[name] = self.remote_topic(name)
            self._partitions[name] = n
        self._assign()

    def _assign(self) -> None:
        if self._batch_target is not None:
            if self._batch_source is None:
                self._batch_source = BatchSource(str(self.config.source["bootstrap.servers"]), TIMEOUT_S)
            starts = {}
            for topic, n in sorted(self._partitions.items()):
                for p in range(n):
                    progress = self._progress.get((self._mirrored[topic], p))
                    starts[(topic, p)] = progress[0] if progress is not None else OFFSET_EARLIEST
            self._batch_source.assign(starts)
            return
        assert self._consumer is not None
        # a batch read ahead (see _commit_and_consume_next) is read again from where the progress says
        self._next = None
        tps = []
        for topic, n in sorted(self._partitions.items()):
            remote = self._mirrored[topic]
            highs = self._target_highs(remote, n) if not self._transactional else {}
            for p in range(n):
                progress = self._progress.get((remote, p))
                start = progress[0] if progress is not None else -2  # OFFSET_BEGINNING
                if not self._transactional:
                    recorded_downstream = progress[1] if progress is not None else 0
                    surplus = highs.get(p, 0) - recorded_downstream
                    if surplus > 0 and (topic, p) not in self._skip:
                        self._skip[(topic, p)] = surplus
                        log.info("resume %s [%d]: skipping %d records already on the target", topic, p, surplus)
                tps.append(TopicPartition(topic, p, start))
        self._consumer.assign(tps)

    def _target_highs(self, topic: str, partitions: int) -> dict[int, int]:
        c = Consumer({**self.config.target, "group.id": "loosely-mirror-probe", "log_level": 0})
        try:
            return {p: _high_watermark(c, topic, p) for p in range(partitions)}
        finally:
            c.close()

    # --- progress and syncs -------------------------------------------------------------------------------------

    def _read_compacted(self, conf: dict[str, Any], topic: str) -> list[Message]:
        # read to the end and no further: a fetch at the end waits fetch.wait.max.ms (500) for more records, and a
        # consume() call waits out its whole timeout unless it fills up, so both are kept short
        c = Consumer({**conf, "group.id": "loosely-mirror-reader", "enable.auto.commit": False,
                      "isolation.level": "read_committed", "enable.partition.eof": True, "log_level": 0,
                      "fetch.wait.max.ms": 10})
        try:
            md = c.list_topics(topic, timeout=TIMEOUT_S)
            t = md.topics.get(topic)
            if t is None or t.error is not None:
                return []
            parts = sorted(t.partitions)
            c.assign([TopicPartition(topic, p, -2) for p in parts])
            out: list[Message] = []
            at_end: set[int] = set()
            empty = {p for p in parts if _high_watermark(c, topic, p) == 0}
            at_end |= empty
            deadline = time.monotonic() + TIMEOUT_S
            while len(at_end) < len(parts) and time.monotonic() < deadline:
                for m in c.consume(10_000, 0.05):
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            at_end.add(m.partition() or 0)
                        continue
                    out.append(m)
            if len(at_end) < len(parts):
                raise TimeoutError(f"could not read {topic} to its end")
            return out
        finally:
            c.close()

    def _load_progress(self) -> None:
        for m in self._read_compacted(self.config.target, progress_topic(self.config.source_alias)):
            key, value = m.key(), m.value()
            if key is None or value is None:
                continue
            topic, _, p = key.decode().rpartition(":")
            self._progress[(topic, int(p))] = _decode_progress(value)

    def _offset_syncs(self) -> OffsetSyncStore:
        """The offset syncs on the source, read to its end once: at the first checkpoint that has a group, not at
        start, where a long history (about one sync per ``offset_lag_max`` records, until compaction) would hold
        up the first batch and most mirrors have no group to translate. The syncs this process wrote are read back
        with the rest (the caller flushed them first); later ones are added as they are written."""
        if self._syncs is None:
            store = OffsetSyncStore()
            for m in self._read_compacted(self.config.source, self.offset_syncs_topic):
                key, value = m.key(), m.value()
                if key is not None and value is not None:
                    store.add(OffsetSync.decode(key, value))
            self._syncs = store
        return self._syncs

    # --- records ----------------------------------------------------------------------------------------------

    def mirror_once(self, timeout_s: float = 0.2) -> int:
        """Copy one batch of records; returns how many were copied.

        One pass over the batch produces each record as it comes (librdkafka hands a partition's records over in
        runs, so the partition changes rarely) and notes its upstream offset. Only each partition's first record of
        the batch asks for a delivery report: the mirror is its target partitions' only writer and its producer
        keeps order (transactional, or one request in flight), so a partition's records of one batch sit at
        consecutive downstream offsets starting at the reported one, and every record's downstream offset follows.
        """
        if self._batch_target is not None:
            return self._copy_batches()
        assert self._consumer is not None and self._producer is not None
        msgs = self._next if self._next is not None else self._consumer.consume(self.config.batch_messages_max,
                                                                                 timeout_s)
        self._next = None
        if not msgs:
            self._producer.poll(0)
            return 0
        producer = self._producer
        txn = self._transactional
        first_delivered: dict[tuple[str, int], int] = {}

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                raise KafkaException(err)
            first_delivered[(msg.topic() or "", msg.partition() or 0)] = msg.offset() or 0

        if txn:
            producer.begin_transaction()
        produce = producer.produce
        runs: dict[tuple[str, int], _Run] = {}
        run = _Run("", 0)
        topic, partition = "", -1
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(err)
            p, t = m.partition() or 0, m.topic() or ""
            if p != partition or t != topic:
                topic, partition = t, p
                got = runs.get((t, p))
                if got is None:
                    got = runs[(t, p)] = _Run(self._mirrored[t], self._skip.pop((t, p), 0))
                run = got
            offset = m.offset() or 0
            run.next_upstream = offset + 1
            if run.skip:
                run.skip -= 1
                run.skipped += 1
                continue
            ups = run.upstreams
            kind, ts = m.timestamp()
            while True:
                try:
                    # positional: confluent-kafka parses keywords at ~0.4 us a call, a third of produce()'s cost.
                    # Its C argument list is (topic, value, key, partition, the delivery callback, that callback's
                    # alias, timestamp, headers), seen by experiment with 2.16; tests/compat/test_mirror.py compares
                    # every record's timestamp and headers, so a change of that order fails there.
                    produce(run.remote, m.value(), m.key(), p, None if ups else on_delivery, None,
                            ts if kind else 0, m.headers())
                    break
                except BufferError:
                    producer.poll(0.01)
            ups.append(offset)
        progress = progress_topic(self.config.source_alias)
        if txn:
            for (_, partition), run in runs.items():
                producer.produce(progress, _encode_progress(run.next_upstream, -1),
                                 _progress_key(run.remote, partition))
            self._commit_and_consume_next(producer, timeout_s)
        left = producer.flush(TIMEOUT_S)
        if left:
            raise TimeoutError(f"{left} records were not delivered in {TIMEOUT_S}s")
        copied = 0
        for (topic, partition), run in runs.items():
            ups = run.upstreams
            if ups:
                first_down = first_delivered[(run.remote, partition)]
                contiguous = ups[-1] - ups[0] == len(ups) - 1
                self._sync_run(topic, partition, range(ups[0], ups[-1] + 1) if contiguous else ups, first_down)
                down = first_down + len(ups)
                copied += len(ups)
            else:
                down = self._progress.get((run.remote, partition), (0, 0))[1]
            self._progress[(run.remote, partition)] = (run.next_upstream, down)
            if run.skip:
                self._skip[(topic, partition)] = run.skip
            self._skipped += run.skipped
            if not txn:
                producer.produce(progress, _encode_progress(run.next_upstream, down),
                                 _progress_key(run.remote, partition))
        if not txn:
            producer.flush(TIMEOUT_S)
        assert self._source_producer is not None
        self._source_producer.poll(0)
        self._records += copied
        self._batches += 1
        return copied

    def _copy_batches(self) -> int:
        """Copy one fetch answer's record batches whole, in one transaction with their progress (see
        :mod:`loosely.clients._batch_copy`); returns how many records were copied."""
        source, target = self._batch_source, self._batch_target
        assert source is not None and target is not None and self._source_producer is not None
        source.send()
        pieces = source.receive()
        self._source_producer.poll(0)
        if not pieces:
            return 0
        positions = source.positions()  # past this answer: the next upstream offsets the progress records
        source.send()  # the next answer comes while the target writes this one
        progress = progress_topic(self.config.source_alias)
        remote: dict[tuple[str, int], list[Piece]] = {(self._mirrored[t], p): ps for (t, p), ps in pieces.items()}
        bases = target.commit(remote, (progress, 0), [
            (_progress_key(self._mirrored[t], p), _encode_progress(positions[(t, p)], -1)) for t, p in pieces])
        copied = 0
        for (topic, partition), ps in pieces.items():
            remote_topic = self._mirrored[topic]
            down = 0
            for piece, base in zip(ps, bases[(remote_topic, partition)], strict=True):
                self._sync_run(topic, partition, piece.upstreams, base)
                copied += piece.count
                down = base + piece.count
            self._progress[(remote_topic, partition)] = (positions[(topic, partition)], down)
        self._records += copied
        self._batches += 1
        return copied

    def _commit_and_consume_next(self, producer: Producer, timeout_s: float) -> None:
        """Commit the batch's transaction in a thread while this one takes the next batch from the consumer.

        The commit is mostly waiting (the last records' acknowledgements, EndTxn, the markers), and librdkafka
        gives up the GIL while it waits; turning the next batch's records into Python objects meanwhile costs
        nothing in order or safety: they are only read here, and none is produced before the commit returned. If the
        commit fails the batch read ahead is never produced, and the error is raised here as before."""
        assert self._consumer is not None
        failed: list[BaseException] = []

        def commit() -> None:
            try:
                producer.commit_transaction(TIMEOUT_S)
            except BaseException as e:  # raised again in the calling thread
                failed.append(e)

        thread = threading.Thread(target=commit, name="mirror-commit", daemon=True)
        thread.start()
        try:
            self._next = self._consumer.consume(self.config.batch_messages_max, timeout_s)
        finally:
            thread.join()
        if failed:
            self._next = None
            raise failed[0]

    def _sync_run(self, topic: str, partition: int, ups: Sequence[int], first_down: int) -> None:
        """Offset syncs for records ``ups`` written at ``first_down, first_down + 1, ...``: the same decisions as
        :class:`_PartitionState` record by record, found by jumping between upstream gaps and lag steps."""
        state = self._states.setdefault((topic, partition), _PartitionState())
        lag = self.config.offset_lag_max
        n = len(ups)
        # upstream offsets only grow, so a run without gaps spans exactly n offsets: no need to look at each
        forced = [] if ups[-1] - ups[0] == n - 1 else [i for i in range(1, n) if ups[i] - ups[i - 1] != 1]
        first_gap = ups[0] - state.previous_upstream != 1 or first_down < state.previous_downstream
        if state.previous_upstream == -1 or first_gap:
            forced.insert(0, 0)
        last_sync = state.last_sync_downstream
        fi = 0
        while True:
            periodic = max(0, last_sync + 1 + lag - first_down)
            nxt = forced[fi] if fi < len(forced) else n
            i = min(periodic, nxt)
            if i >= n:
                break
            while fi < len(forced) and forced[fi] <= i:
                fi += 1
            last_sync = first_down + i
            self._emit_sync(OffsetSync(topic, partition, ups[i], last_sync))
        state.previous_upstream = ups[-1]
        state.previous_downstream = first_down + n - 1
        state.last_sync_downstream = last_sync

    def _emit_sync(self, sync: OffsetSync) -> None:
        if self._syncs is not None:
            self._syncs.add(sync)
        assert self._source_producer is not None
        self._source_producer.produce(self.offset_syncs_topic, sync.value(), sync.key())
        self._syncs_emitted += 1

    # --- heartbeats and checkpoints -------------------------------------------------------------------------------

    def emit_heartbeat(self) -> None:
        assert self._side is not None
        hb = Heartbeat(self.config.source_alias, self.config.target_alias, int(time.time() * 1000))
        self._side.produce(self.heartbeats_topic, hb.value(), hb.key())
        self._side.poll(0)
        self._heartbeats += 1

    def _groups(self) -> list[str]:
        try:
            listing = self._source_admin.list_consumer_groups(request_timeout=TIMEOUT_S).result(TIMEOUT_S)
        except KafkaException as e:
            log.debug("cannot list the source's groups: %s", e)
            return []
        inc = [re.compile(p) for p in self.config.groups.split(",") if p]
        exc = [re.compile(p) for p in self.config.groups_exclude.split(",") if p]
        return sorted(
            g.group_id
            for g in listing.valid
            if any(p.fullmatch(g.group_id) for p in inc) and not any(p.fullmatch(g.group_id) for p in exc)
        )

    def emit_checkpoints(self) -> list[Checkpoint]:
        """Translate the source groups' committed offsets; write checkpoints (and target group offsets)."""
        assert self._side is not None and self._source_producer is not None
        self._source_producer.flush(TIMEOUT_S)
        out: list[Checkpoint] = []
        mirrored = [(t, p) for t, n in self._partitions.items() for p in range(n)]
        names = self._groups()
        syncs = self._offset_syncs() if names else OffsetSyncStore()
        for group in names:
            # imported here: loosely.clients.groups loads kio (~0.5 s of CPU), which the mirror needs only once the
            # source has a consumer group to checkpoint
            from loosely.clients import groups  # noqa: PLC0415

            try:
                committed = groups.committed_offsets(self.config.source, group, mirrored, TIMEOUT_S)
            except KafkaException as e:
                log.debug("offsets of group %s: %s", group, e)
                continue
            for (topic, partition), (offset, metadata) in sorted(committed.items()):
                down = syncs.translate(topic, partition, offset)
                if down is None:
                    continue
                cp = Checkpoint(group, self._mirrored[topic], partition, offset, down, metadata)
                self._side.produce(self.checkpoints_topic, cp.value(), cp.key())
                out.append(cp)
        self._side.flush(TIMEOUT_S)
        self._checkpoints += len(out)
        if self.config.sync_group_offsets and out:
            self._sync_group_offsets(out)
        return out

    def _sync_group_offsets(self, checkpoints: list[Checkpoint]) -> None:
        by_group: dict[str, list[TopicPartition]] = {}
        for cp in checkpoints:
            by_group.setdefault(cp.group, []).append(TopicPartition(cp.topic, cp.partition, cp.downstream_offset))
        try:
            described = self._target_admin.describe_consumer_groups(list(by_group), request_timeout=TIMEOUT_S)
        except KafkaException:
            described = {}
        for group, tps in by_group.items():
            fut = described.get(group)
            try:
                if fut is not None and fut.result(TIMEOUT_S).members:
                    continue  # active consumers on the target own their offsets (as MirrorMaker does)
            except KafkaException:
                pass
            req = ConsumerGroupTopicPartitions(group, tps)
            try:
                self._target_admin.alter_consumer_group_offsets([req], request_timeout=TIMEOUT_S)[group].result(
                    TIMEOUT_S
                )
            except KafkaException as e:
                log.warning("could not sync offsets of group %s to the target: %s", group, e)

    # --- observability ----------------------------------------------------------------------------------------

    def statistics(self) -> MirrorStatistics:
        return MirrorStatistics(
            records_total=self._records,
            batches_total=self._batches,
            transactional=self._transactional,
            topics=len(self._mirrored),
            partitions=sum(self._partitions.values()),
            offset_syncs_total=self._syncs_emitted,
            checkpoints_total=self._checkpoints,
            heartbeats_total=self._heartbeats,
            skipped_on_resume_total=self._skipped,
            batches_whole=self._batch_target is not None,
        )
