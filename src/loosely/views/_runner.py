"""The runner: consume the source topics, apply batches to the sink, never skip and never apply twice.

Theory of operation. One :class:`Runner` is one member of the view's consumer group
(``loosely.view.<name>.v<N>.<sink id>`` unless told otherwise, see :func:`default_groups`), so N runner processes
share the partitions. Each poll returns up to ``poll_records_max`` records; the view function turns them into
changes, folded into the *pending* batch (:mod:`loosely.views._build`). One batch at a time is *in flight*: a writer
thread hands it to the sink in one call while the main thread keeps polling. The pending batch is handed over when
the writer is free, when it reaches ``batch_records_max`` records, or when a poll comes back empty; so batches stay
small while the sink keeps up and grow (group commit) while it is busy. The pending batch starts where the batch in
flight ends (``_expected_positions``); ``_positions`` move only when a write is done, so lag, catch-up and the
switch to serving never count a batch that is not durable, and a rebalance first writes everything read so far
(``_flush``). What makes a crash harmless depends on the sink (see :mod:`loosely.views._sink`):

* exactly-once sinks store the batch's end offsets in the same transaction as its rows. On every partition
  assignment the runner reads those offsets and seeks there, ignoring the group's committed offsets (it still
  commits them, asynchronously, so Kafka's own lag tools see the view's progress). Each batch names the positions
  it starts from; the sink refuses it if they moved (:class:`~loosely.views._sink.Fenced`), and the runner reseeks
  and drops the batch built meanwhile (it started from the refused batch's end).
* idempotent sinks write first and then the runner commits the offsets to the group synchronously; a crash in
  between replays the batch, and the sink's per-document versions turn the replay into no-ops.
* rebuilt sinks (memory) get every partition assigned directly, from the beginning, on every start.

Backpressure: a full pending batch waits for the writer, so a slow sink slows the polls; the client's prefetch
queue is bounded (``fetch_queue_kbytes_max``), after which it stops fetching. Producers never notice: the topic is
the buffer.

The catalog: every ``catalog_check_ms`` the runner asks a sink that keeps versions (:class:`~loosely.views._sink
.Catalog`) whether its version still exists, and ``run(until=...)`` whether to hand over; a version dropped under
it stops it with :class:`~loosely.views._sink.VersionDropped` (also when a write finds it gone), never with a retry
loop. :mod:`loosely.views._follow` builds the runner that follows the serving version on these two checks.

Poison records (a deserializer or the view function raised): with ``on_poison="stop"`` (the default) the runner
applies the records before the bad one, stores the position *of* the bad one and raises :class:`PoisonRecord`
naming topic, partition and offset; a restart stops there again until the view is fixed. With
``on_poison="dead-letter"`` the raw record, with headers saying where it came from and why it failed, is produced
to ``dead_letter_topic`` and flushed before the batch that skips it is applied (so it is never lost; after a crash
it may be dead-lettered twice, with the same source headers). A sink that keeps failing stops the runner with
:class:`~loosely.views._sink.SinkError` after the retry policy in :mod:`loosely.views._policy`; nothing of the
failed batch is committed.

>>> from loosely.testing import embedded_broker
>>> from loosely.views import SqliteSink, count_by_key
>>> from confluent_kafka import Producer
>>> import tempfile, os
>>> with embedded_broker() as broker:
...     p = Producer({"bootstrap.servers": broker.bootstrap_servers})
...     for k in [b"a", b"b", b"a"]:
...         p.produce("clicks", b"", key=k)
...     _ = p.flush(10)
...     sink = SqliteSink(os.path.join(tempfile.mkdtemp(), "v.db"))
...     runner = Runner(count_by_key("clicks_per_user", ["clicks"]), sink, broker.bootstrap_servers)
...     stats = runner.run(until_caught_up=True)
...     runner.close()
...     print(stats.records, sink.get("clicks_per_user", "a"))
3 2
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

from loosely.clients.reachability import Reachability
from loosely.views._batch import Batch
from loosely.views._build import BatchBuilder, PoisonRecord
from loosely.views._model import TopicPartition, View
from loosely.views._policy import Applied, ApplyState, Failed, FencedOut, Phase, RetryAt, RetryLimits, Stop
from loosely.views._policy import Reseek as ReseekEffect
from loosely.views._policy import step as policy_step
from loosely.views._sink import Catalog, Fenced, Guarantee, Sink, SinkError, VersionDropped, sink_id

if TYPE_CHECKING:  # imported when the runner uses confluent-kafka (see _fast_source_ok), not before
    from confluent_kafka import Consumer, Producer

    from loosely.clients.batch_consumer import BatchConsumer, Chunk

__all__ = ["Runner", "RunnerConfig", "RunnerStatistics", "default_groups", "group_id_for"]

log = logging.getLogger(__name__)

# A runner fenced by a JoinGroup with its own group.instance.id joins again, up to FENCES_MAX times within
# FENCES_WINDOW_S (see Runner._replace_fenced_consumer).
FENCES_MAX = 3
FENCES_WINDOW_S = 300.0


def group_id_for(view: View[Any, Any], environment: str = "", *, sink: object = None) -> str:
    """The consumer group of a view version (one group per version, so versions build side by side), and per
    sink when ``sink`` names its location (:func:`~loosely.views._sink.sink_id`), so the same version written into
    another sink reads the log from the beginning instead of from the first sink's positions.

    >>> from loosely.views import count_by_key
    >>> group_id_for(count_by_key("hits", ["t"]), "staging")
    'loosely.view.hits.v1.staging'
    """
    return default_groups(view.name, view.version, sink, environment)[0]


def default_groups(name: str, version: int, sink: object = None, environment: str = "") -> tuple[str, ...]:
    """The default consumer group of ``name``@``version`` in ``sink``, first, then the group runners used before
    groups named the sink (``loosely.view.<name>.v<N>``), which an existing deployment keeps using.

    >>> class Here:
    ...     location = "sqlite:/var/lib/views.db"
    >>> default_groups("hits", 2, Here())
    ('loosely.view.hits.v2.502f5646', 'loosely.view.hits.v2')
    """
    suffix = f".{environment}" if environment else ""
    legacy = f"loosely.view.{name}.v{version}{suffix}"
    sid = sink_id(sink)
    return (legacy,) if sid is None else (f"loosely.view.{name}.v{version}.{sid}{suffix}", legacy)


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    """Limits and policies. Each default says where it comes from."""

    group_id: str | None = None
    # Records per poll of the consumer. Polls are folded into the pending batch, so a small poll costs no
    # throughput and keeps the Python objects of the messages in hand few (measured: 2k and 10k equally fast).
    # Under the cyclic GC's first threshold (700 tracked objects allocated and not yet freed), a poll's messages
    # are freed before a collection comes due, so the collector hardly runs: measured 2026-12-06 (latest-value
    # view, 1M events), 500 took the main thread 1.26-1.45 s of CPU against 2,000's 1.45-1.65 s.
    poll_records_max: int = 500
    # Records per sink transaction at most. A batch is handed to the sink as soon as the writer is free; while it
    # is busy the next polls are folded into the batch, up to this many records. A commit's cost grows with the
    # pages it touches more than with the rows (10k upserts over 100k keys dirty nearly every page of the table),
    # so a busy sink gets fewer, larger transactions: measured on SQLite, 1M events over 100k keys took 2.3 s
    # to write as 10k-record transactions and 1.6 s as 30k-record ones. Larger batches also fold more: 20k
    # records over 100k keys touch 18k keys, 50k records 39k. Memory grows with it (a folded batch holds up to one
    # entry per key): measured 2026-12-06 (latest-value view, 1M events, 100k keys, SQLite), 20k records a batch
    # took 5.2 s of CPU at 76 MiB peak RSS, 50k 3.9 s at 87 MiB. Measured again 2026-12-07 with the batch
    # consumer's text fold (STRING values kept as bytes, _kernel.LatestText; loaded machine, load 3.2-3.5), same
    # events: 30k records 3.1-3.2 s at 29.6 MiB, 50k 2.4-2.5 s at 33 MiB, 100k 2.2-2.4 s at 37 MiB.
    batch_records_max: int = 50_000
    # The same for a latest-value view of STRING values read by the batch consumer, whose batch is a table of bytes
    # (_kernel.LatestText, about a third of the dict's memory per key); None: twice batch_records_max. Measured
    # 2026-12-07 near idle (load 0.5-0.7; 1M events, 100k keys, SQLite): 50k records 2.4-3.0 s at 30.0-30.4 MiB
    # peak RSS, 100k 2.05-2.4 s at 32.1-32.8 MiB, 150k 1.8 s at 34.6 MiB, 200k 1.5 s at 35.1 MiB.
    text_batch_records_max: int | None = None
    poll_wait_ms: int = 100
    # The prefetch: librdkafka's queued.min.messages (per partition) and queued.max.messages.kbytes (defaults
    # 100000 records and 64 MiB), fetch.max.bytes (50 MiB) and max.partition.fetch.bytes (1 MiB). They decide a
    # large part of a runner's memory: each queued message costs librdkafka a few hundred bytes beyond its
    # payload, which the kbytes limit does not count. A small queue alone starves the sink, because librdkafka
    # pauses fetching for fetch.queue.backoff.ms (1 s) whenever its queue is full; with that pause at 10 ms a
    # small queue keeps up. Measured on 1M records over 4 partitions on loopback (2026-12-02), latest-value view:
    # 256 KiB partition fetches, 8 MiB and 20k per partition: 73 MiB peak RSS; these settings: 54 MiB, as fast.
    # Over a slower network, raise partition_fetch_bytes_max (or pass librdkafka's settings through ``consumer``).
    # Measured again 2026-12-07 (loaded machine, load 17-28; the same 1M events, 100k keys, SQLite): what a
    # fetch brings in, decompressed, each record with librdkafka's per-message overhead, was most of the runner's
    # peak RSS; 32 KiB partition fetches and 1,000 records per partition took the count view from 58 to 40-43 MiB
    # and the latest-value view from 72 to 54 MiB. Alone they starved the sink (more, smaller batches, a quarter
    # slower); with the queue-full pause at 1 ms they were as fast as before or faster in each pair. The pause
    # costs a wake-up per millisecond of librdkafka's fetcher while the queue is full (a sink slower than the log).
    fetch_queue_records_min: int = 1_000
    fetch_queue_kbytes_max: int = 2_048
    fetch_queue_backoff_ms: int = 1
    fetch_bytes_max: int = 4 * 1024 * 1024
    partition_fetch_bytes_max: int = 32 * 1024
    # Kafka's default is 45 s; a runner killed with -9 holds its partitions that long, so views fail over faster.
    session_timeout_ms: int = 10_000
    # Kafka's max.poll.interval.ms default; a batch plus its retries must finish well within it.
    poll_interval_ms_max: int = 300_000
    retry: RetryLimits = field(default_factory=RetryLimits)
    on_poison: Literal["stop", "dead-letter"] = "stop"
    dead_letter_topic: str | None = None
    # How often consumer lag is refreshed from the brokers' high watermarks (one ListOffsets per partition).
    lag_refresh_ms: int = 1_000
    # After the first catch-up, make this version serving if no version of the view serves yet.
    serve_when_caught_up: bool = True
    # How often the sink's catalog is asked whether this version still exists (and, for a follower, which version
    # serves): one small read per interval, so a dropped version stops its runners within about this long.
    catalog_check_ms: int = 1_000
    # Write batch N in a writer thread while the next poll is fetched and built (at most one batch in flight).
    # Pays where the sink's write runs without the GIL (SQLite's JSON statements, a database or HTTP round trip);
    # a write that keeps the interpreter busy degrades to taking turns, never to less.
    pipeline: bool = True
    # librdkafka settings for every client the runner makes (its consumer, the dead-letter producer, the look-up
    # of committed offsets): a secured cluster's security.protocol, sasl.*, ssl.* (see
    # loosely.clients.client_config, which reads them from a Java client's properties file).
    client_config: Mapping[str, str] = field(default_factory=dict)
    # librdkafka settings for the consumer only, over client_config's.
    consumer: Mapping[str, str] = field(default_factory=dict)
    # Read with loosely's own batch consumer (loosely.clients.batch_consumer) where it serves the view exactly:
    # a built-in view (count_by_key, latest_by_key) into a folding, exactly-once or rebuilt sink (SQLite,
    # PostgreSQL, Hollow, Prometheus), over a plain connection (no client_config, no consumer settings but
    # group.instance.id). It hands whole fetched record batches to the compiled fold and never imports
    # confluent-kafka: measured 2026-12-07 (docs/benchmarks.md, 1M events), the latest-value view took 2.8 s of
    # CPU at 47 MiB peak RSS against 4.9 s at 55 MiB (2.0-2.5 s at 32-34 MiB since its text fold went to C).
    # False: always confluent-kafka.
    fast_source: bool = True

    def __post_init__(self) -> None:
        if self.batch_records_max < 1 or self.poll_records_max < 1 or (
                self.text_batch_records_max is not None and self.text_batch_records_max < 1):
            raise ValueError("batch_records_max, text_batch_records_max and poll_records_max must be >= 1")
        if self.on_poison == "dead-letter" and not self.dead_letter_topic:
            raise ValueError("on_poison='dead-letter' needs dead_letter_topic")


@dataclass(frozen=True, slots=True)
class RunnerStatistics:
    view: str
    records: int
    changes: int
    batches: int
    retries: int
    fenced: int
    dead_lettered: int
    lag: Mapping[TopicPartition, int]
    positions: Mapping[TopicPartition, int | None]
    phase: str
    last_error: str | None
    # what reads the source: "batch-consumer" (loosely's, see RunnerConfig.fast_source) or "confluent-kafka"
    source: str = "confluent-kafka"

    @property
    def lag_total(self) -> int:
        return sum(self.lag.values())


class Runner:
    """Keeps one view version up to date from its source topics. Not thread-safe: one thread calls :meth:`run`;
    :meth:`statistics` and :meth:`stop` may be called from others."""

    def __init__(
        self,
        view: View[Any, Any],
        sink: Sink,
        bootstrap_servers: str,
        config: RunnerConfig = RunnerConfig(),
        *,
        monotonic_ms: Callable[[], int] = lambda: int(time.monotonic() * 1000),
    ) -> None:
        self.view = view
        self.sink = sink
        self.config = config
        self._now_ms = monotonic_ms
        self._bootstrap = bootstrap_servers
        self._mode = sink.guarantee
        self.group_id = config.group_id or group_id_for(view, sink=sink)
        self._catalog = sink if isinstance(sink, Catalog) else None
        self._checked_at_ms = 0
        if self._mode is Guarantee.REBUILT:
            self.group_id = f"{self.group_id}.{os.urandom(4).hex()}"  # never commits; the id only names the client
        self._stop = threading.Event()
        self._positions: dict[TopicPartition, int | None] = {}
        self._high: dict[TopicPartition, int] = {}
        # Partitions with no stored position found empty (low == high): caught up at that offset. Kept apart from
        # _positions, which mirror the sink's stored positions (a batch's start must match the stored one).
        self._empty_at: dict[TopicPartition, int] = {}
        # Where the consumer stood, past the stored position, when it had nothing left to hand over and nothing in
        # flight: what lies between is no record of the view's (a transaction's commit or abort markers, aborted
        # records). A topic written in transactions ends with a marker, so without this the stored position would
        # stay one short of the high watermark and a new version would never count as caught up.
        self._read_past: dict[TopicPartition, int] = {}
        self._lag_at_ms = -(10**12)
        self._assigned = False
        self._state = ApplyState()
        self._records = self._changes = self._batches = 0
        self._retries = self._fenced = self._dead = 0
        self._rejoin = False  # the consumer was fenced by a JoinGroup with its group.instance.id: replace it
        self._fences: list[float] = []  # when that happened (monotonic s), within FENCES_WINDOW_S
        self._tp_cache: dict[tuple[str, int], TopicPartition] = {}
        self._consumer: Consumer | None = None
        self._fast: BatchConsumer | None = None
        self._dlq: Producer | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._inflight: tuple[Batch, Callable[[], None], Future[None]] | None = None
        self._pending = Batch()  # being built from polls while the batch in flight is written
        self._served = False
        self._builder = BatchBuilder(view, config.on_poison, self._tp, self._consumer_error, self._dead_letter)
        self._batch_max = config.batch_records_max  # the text fold's limit once the batch consumer reads (_start_fast)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def fast_source_ok(self) -> bool:
        """Whether this runner reads with loosely's batch consumer instead of confluent-kafka (see
        ``RunnerConfig.fast_source``): a built-in view into a folding sink that keeps its own positions (or is
        rebuilt), over a plain connection with no librdkafka settings."""
        return (self.config.fast_source and self.view.kernel is not None and not self.sink.wants_positions
                and self._mode in (Guarantee.EXACTLY_ONCE, Guarantee.REBUILT)
                and not self.config.client_config and set(self.config.consumer) <= {"group.instance.id"})

    def _start(self) -> Consumer | BatchConsumer:
        if self._consumer is not None:
            return self._consumer
        if self._fast is not None:
            return self._fast
        existed = self._catalog is not None and not self._dropped()
        self.sink.open(self.view)
        self._checked_at_ms = self._now_ms()
        if self.config.group_id is None and self._mode is Guarantee.IDEMPOTENT and existed:
            self.group_id = self._existing_group()
        if self.config.pipeline:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"loosely-view-{self.view.name}-writer")
        return self._open_source()

    def _open_source(self) -> Consumer | BatchConsumer:
        """The consumer the records come from: loosely's batch consumer or confluent-kafka's."""
        if self.fast_source_ok():
            return self._start_fast()
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException  # noqa: PLC0415 - see TYPE_CHECKING
        from confluent_kafka import TopicPartition as KTopicPartition  # noqa: PLC0415

        conf: dict[str, Any] = {
            "bootstrap.servers": self._bootstrap,
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "queued.max.messages.kbytes": self.config.fetch_queue_kbytes_max,
            "queued.min.messages": self.config.fetch_queue_records_min,
            "fetch.max.bytes": self.config.fetch_bytes_max,
            "max.partition.fetch.bytes": self.config.partition_fetch_bytes_max,
            "fetch.queue.backoff.ms": self.config.fetch_queue_backoff_ms,
            "max.poll.interval.ms": self.config.poll_interval_ms_max,
            "session.timeout.ms": self.config.session_timeout_ms,
            "client.id": f"loosely-view-{self.view.name}",
            # an unreachable cluster: one line per interval and one when it is back, not librdkafka's line per retry
            **Reachability(f"view {self.view.name}@{self.view.version}", log).config(),
            **self.config.client_config,
            **self.config.consumer,
        }
        c = Consumer(conf)
        if self._mode is Guarantee.REBUILT:
            parts: list[KTopicPartition] = []
            for topic in self.view.topics:
                md = c.list_topics(topic, timeout=30).topics[topic]
                if md.error is not None:
                    raise KafkaException(md.error)
                parts.extend(KTopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(md.partitions))
            stored = self.sink.stored_positions()
            for kp in parts:
                tp = self._tp(kp.topic, kp.partition)
                off = stored.get(tp)
                self._positions[tp] = off
                if off is not None:
                    kp.offset = off
            c.assign(parts)
            self._assigned = True
        else:
            c.subscribe(list(self.view.topics), on_assign=self._on_assign, on_revoke=self._on_revoke,
                        on_lost=self._on_revoke)
        self._consumer = c
        return c

    def _start_fast(self) -> BatchConsumer:
        from loosely.clients.batch_consumer import BatchConsumer  # noqa: PLC0415 - only on this path

        cfg = self.config
        f = BatchConsumer(self._bootstrap, client_id=f"loosely-view-{self.view.name}", fetch_wait_ms=cfg.poll_wait_ms,
                          fetch_bytes_max=cfg.fetch_bytes_max, partition_fetch_bytes_max=cfg.partition_fetch_bytes_max,
                          session_timeout_ms=cfg.session_timeout_ms, rebalance_timeout_ms=cfg.poll_interval_ms_max,
                          max_poll_interval_ms=cfg.poll_interval_ms_max,
                          instance_id=cfg.consumer.get("group.instance.id"))
        self._fast = f
        if self._builder.folds_text():
            text_max = cfg.text_batch_records_max
            self._batch_max = 2 * cfg.batch_records_max if text_max is None else text_max
        if self._mode is Guarantee.REBUILT:
            stored = self.sink.stored_positions()
            starts: dict[tuple[str, int], int | None] = {}
            for topic in self.view.topics:
                for p in f.partitions_of(topic):
                    tp = self._tp(topic, p)
                    starts[(topic, p)] = self._positions[tp] = stored.get(tp)
            f.assign(starts)
            self._assigned = True
        else:
            f.subscribe(self.group_id, self.view.topics, self._fast_on_assign, self._fast_on_revoke)
        log.info("%s: reading with loosely's batch consumer", self.view.id)
        return f

    def _fast_on_assign(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        self._flush()  # the stored positions must include every batch read so far
        stored = self.sink.stored_positions()
        out: dict[tuple[str, int], int | None] = {}
        for topic, p in partitions:
            tp = self._tp(topic, p)
            out[(topic, p)] = self._positions[tp] = stored.get(tp)
            self._empty_at.pop(tp, None)
            self._read_past.pop(tp, None)
        self._assigned = True
        self._lag_at_ms = -(10**12)
        log.info("%s: assigned %s", self.view.id, [f"{t}/{p}@{out[(t, p)]}" for t, p in partitions])
        return out

    def _fast_on_revoke(self, partitions: list[tuple[str, int]]) -> None:
        self._flush()
        for topic, p in partitions:
            tp = self._tp(topic, p)
            self._positions.pop(tp, None)
            self._high.pop(tp, None)
            self._empty_at.pop(tp, None)
            self._read_past.pop(tp, None)
        log.info("%s: revoked %s", self.view.id, [f"{t}/{p}" for t, p in partitions])

    def _existing_group(self) -> str:
        """For a sink whose positions are the group's offsets and that already holds this version: the group that
        committed them. Runners from before groups named the sink committed to ``loosely.view.<name>.v<N>``; such
        a deployment keeps that group (read from the beginning under a new one, it would replay every record),
        unless the sink's own group has committed too."""
        from confluent_kafka import KafkaException  # noqa: PLC0415 - see TYPE_CHECKING

        from loosely.views._status import committed_group  # noqa: PLC0415 - it imports confluent-kafka

        candidates = default_groups(self.view.name, self.view.version, self.sink)
        if len(candidates) < 2:
            return candidates[0]
        while True:  # a cluster that is away at start is waited for, as the consumer would wait for it
            try:
                found = committed_group(self._bootstrap, candidates, self.view.topics,
                                        client_config=self.config.client_config)
                break
            except KafkaException as e:
                log.warning("%s: cannot read the committed offsets of %s (%s); retrying", self.view.id,
                            " or ".join(candidates), e.args[0] if e.args else e)
                if self._stop.wait(5):
                    return candidates[0]
        if found is not None and found != candidates[0]:
            log.info("%s: keeps the consumer group %s, which holds its positions (see docs/views.md, migration)",
                     self.view.id, found)
        return found or candidates[0]

    def _dropped(self) -> bool:
        """Whether this version is gone from the sink's catalog (``False`` when the sink keeps none or the catalog
        cannot be read just now: the next write or check tells)."""
        if self._catalog is None:
            return False
        try:
            return all(i.version != self.view.version for i in self._catalog.versions(self.view.name))
        except Exception as e:  # a catalog on a server that is away: not a reason to stop
            log.debug("%s: catalog: %s", self.view.id, e)
            return False

    def _check_catalog(self, until: Callable[[], bool] | None) -> bool:
        """Every ``catalog_check_ms``: raise :class:`VersionDropped` if this version was dropped; ``True`` when
        ``until`` says to hand over."""
        now = self._now_ms()
        if now - self._checked_at_ms < self.config.catalog_check_ms:
            return False
        if self._inflight is not None and not self._inflight[2].done():
            return False  # the catalog may share the writer's connection: ask once the write is done
        self._checked_at_ms = now
        if self._dropped():
            raise VersionDropped(f"{self.view.id} was dropped from the sink")
        return until is not None and until()

    def _on_assign(self, consumer: Consumer, partitions: list[Any]) -> None:
        from confluent_kafka import OFFSET_BEGINNING  # noqa: PLC0415 - see TYPE_CHECKING

        self._flush()  # the stored positions must include every batch read so far
        if self._mode is Guarantee.EXACTLY_ONCE:
            stored = self.sink.stored_positions()
            for kp in partitions:
                tp = self._tp(kp.topic, kp.partition)
                off = stored.get(tp)
                self._positions[tp] = off
                self._empty_at.pop(tp, None)
                self._read_past.pop(tp, None)
                kp.offset = OFFSET_BEGINNING if off is None else off
            consumer.assign(partitions)
        else:
            # the group's committed offsets are the truth here; knowing them lets catch-up be detected at once
            committed = consumer.committed(partitions, timeout=30)
            for kp in committed:
                tp = self._tp(kp.topic, kp.partition)
                self._positions[tp] = kp.offset if kp.offset >= 0 else None
                self._empty_at.pop(tp, None)
                self._read_past.pop(tp, None)
        self._assigned = True
        self._lag_at_ms = -(10**12)
        log.info("%s: assigned %s", self.view.id, [f"{p.topic}/{p.partition}@{p.offset}" for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[Any]) -> None:
        self._flush()  # write (and, for idempotent sinks, commit) what was read while the partitions were ours
        for kp in partitions:
            tp = self._tp(kp.topic, kp.partition)
            self._positions.pop(tp, None)
            self._high.pop(tp, None)
            self._empty_at.pop(tp, None)
            self._read_past.pop(tp, None)
        log.info("%s: revoked %s", self.view.id, [f"{p.topic}/{p.partition}" for p in partitions])

    def _replace_fenced_consumer(self) -> Consumer | BatchConsumer:
        """The coordinator took this runner's ``group.instance.id`` for a newer JoinGroup (FENCED_INSTANCE_ID), which
        librdkafka and loosely's batch consumer treat as fatal. After a coordinator moved (a broker killed), the
        newer JoinGroup can be this runner's own retry; so the runner writes what it has read, closes the consumer
        and joins again with a new one. Fenced more than FENCES_MAX times within FENCES_WINDOW_S, it stops: another
        runner uses the same id, and the two would take it from each other forever."""
        now = time.monotonic()
        self._fences = [t for t in self._fences if now - t < FENCES_WINDOW_S] + [now]
        instance = self.config.consumer.get("group.instance.id")
        if len(self._fences) > FENCES_MAX:
            raise SinkError(f"{self.view.id}: fenced {len(self._fences)} times in {FENCES_WINDOW_S:.0f} s: another "
                            f"runner uses group.instance.id {instance!r}; give each runner its own")
        log.warning("%s: a newer member with group.instance.id %r fenced this one; joining the group again",
                    self.view.id, instance)
        self._rejoin = False
        self._flush()
        old, self._consumer, fast, self._fast = self._consumer, None, self._fast, None
        for client in (old, fast):
            if client is not None:
                try:
                    client.close()
                except Exception as e:  # a fenced consumer may refuse to leave the group; it is gone either way
                    log.debug("%s: closing the fenced consumer: %s", self.view.id, e)
        for positions in (self._positions, self._high, self._empty_at, self._read_past):
            positions.clear()
        self._assigned = False
        return self._open_source()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in progress."""
        self._stop.set()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)  # a write in flight finishes (or rolls back) before the sink is let go
            self._writer = None
            self._inflight = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        if self._dlq is not None:
            self._dlq.flush(30)
        # the sink belongs to the caller, who may keep reading from it

    # -- the loop -----------------------------------------------------------------------------------------------

    def run(self, *, until_caught_up: bool = False, timeout_s: float | None = None,
            until: Callable[[], bool] | None = None) -> RunnerStatistics:
        """Consume and apply until :meth:`stop` (or, with ``until_caught_up``, until every assigned partition has
        been read to its high watermark, or until ``until()``, asked every ``catalog_check_ms``, says so). Raises
        :class:`PoisonRecord` or :class:`SinkError` (:class:`VersionDropped`) when it must stop."""
        c = self._start()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._stop.is_set():
            if self._check_catalog(until):
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.view.id}: not caught up after {timeout_s}s (lag {self._lag_now()})")
            room = self._batch_max - self._pending.records  # > 0: a full batch is handed over
            if self._fast is not None:
                try:
                    msgs: list[Any] = self._fast.poll()
                except Exception as e:
                    from loosely.clients.batch_consumer import FencedInstanceError  # noqa: PLC0415 - loaded already
                    if not isinstance(e, FencedInstanceError):
                        raise
                    c = self._replace_fenced_consumer()
                    continue
                _, poison, left = self._builder.build_raw(msgs, self._expected_positions(), self._pending, room)
                if left:
                    self._fast.unread(cast("list[Chunk]", left))
            else:
                msgs = c.consume(min(self.config.poll_records_max, room), self.config.poll_wait_ms / 1000)  # type: ignore[union-attr]
                _, poison = self._build(msgs, self._pending)
                if self._rejoin:
                    c = self._replace_fenced_consumer()
            if poison is not None:
                self._flush()
                raise poison
            pending = self._pending
            if pending.records and (not msgs or pending.records >= self._batch_max
                                    or self._inflight is None or self._inflight[2].done()):
                self._pending = Batch()
                self._submit(pending)
            if not msgs:
                if self._drain() and self._inflight is None and not self._pending.records:
                    self._note_read_past()
                self._idle()
                self._refresh_lag(force=until_caught_up)
                if self._caught_up():
                    self._serve_if_first()
                    if until_caught_up:
                        break
            else:
                self._refresh_lag()
        self._flush()
        return self.statistics()

    def _tp(self, topic: str, partition: int) -> TopicPartition:
        key = (topic, partition)
        tp = self._tp_cache.get(key)
        if tp is None:
            tp = self._tp_cache[key] = TopicPartition(topic, partition)
        return tp

    def _build(self, msgs: list[Any], b: Batch | None = None) -> tuple[Batch, PoisonRecord | None]:
        """Run the view over one poll's records into batch ``b`` (a new one by default), from where the batch in
        flight ends (see :meth:`loosely.views._build.BatchBuilder.build`)."""
        return self._builder.build(msgs, self._expected_positions(), b, positioned=self.sink.wants_positions)

    def _consumer_error(self, m: Any) -> bool:
        """An error event from the consumer: ``True`` to skip it; raises what must stop the runner."""
        from confluent_kafka import KafkaError, KafkaException  # noqa: PLC0415 - see TYPE_CHECKING

        err = m.error()
        if err.code() == KafkaError._PARTITION_EOF:
            return True
        if err.code() == KafkaError.FENCED_INSTANCE_ID or (
                err.code() == KafkaError._FATAL and "group.instance.id" in self.config.consumer):
            # librdkafka's only fatal consumer error is this one (reported as _FATAL): static membership fenced.
            # run() replaces the consumer once this poll's records are built.
            self._rejoin = True
            return True
        if not err.fatal() and err.retriable():
            log.warning("%s: consumer: %s", self.view.id, err)
            return True
        raise KafkaException(err)

    def _expected_positions(self) -> Mapping[TopicPartition, int | None]:
        """Where each assigned partition will stand once the batch in flight is written: the next batch starts
        there. (``_positions`` itself moves only when a write is done, so lag, catch-up and the switch to serving
        never count a batch that is not durable yet.)"""
        if self._inflight is None:
            return self._positions
        out = dict(self._positions)
        for tp, end in self._inflight[0].ends.items():
            if tp in out:
                out[tp] = end
        return out

    def _submit(self, batch: Batch) -> None:
        """Hand ``batch`` to the sink: in the writer thread while the next one is built, or here without one."""
        if not self._drain():
            # The batch before was fenced and the partitions reseeked: this one started where they no longer
            # stand. Dropped; the consumer reads its records again from the stored positions.
            return
        if self._dlq is not None and self._dlq.flush(60) != 0:
            raise SinkError(f"{self.view.id}: dead-letter records not acknowledged; not moving past them")
        prepare = getattr(self.sink, "prepare", None)
        if prepare is not None:
            write: Callable[[], None] = prepare(batch)
            batch.release()  # the prepared write carries its rows; the batch keeps its positions for settling
        else:
            write = lambda: self.sink.apply(batch)  # noqa: E731 - a closure over this batch
        if self._writer is None:
            self._settle(batch, write, None)
        else:
            self._inflight = (batch, write, self._writer.submit(write))

    def _flush(self) -> None:
        """Write the batch being built, if it has records, and wait for every write."""
        pending = self._pending
        if pending.records:
            self._pending = Batch()
            self._submit(pending)
        self._drain()

    def _drain(self) -> bool:
        """Wait for the batch in flight, if any, and settle it; ``False`` if it was fenced (and reseeked)."""
        inflight = self._inflight
        if inflight is None:
            return True
        self._inflight = None
        return self._settle(*inflight)

    def _settle(self, batch: Batch, write: Callable[[], None], done: Future[None] | None) -> bool:
        """The outcome of a write, through the retry policy: retried here, reseeked, or the runner stops."""
        while True:
            try:
                if done is not None:
                    running, done = done, None
                    running.result()  # the write in the writer thread; its retries run here
                else:
                    write()
                event: Applied | Failed | FencedOut = Applied()
            except VersionDropped:
                raise
            except Fenced as e:
                event = FencedOut(str(e))
            except SinkError as e:
                event = Failed(str(e))
            if not isinstance(event, Applied) and self._dropped():
                raise VersionDropped(f"{self.view.id} was dropped from the sink ({event})") from None
            self._state, effects = policy_step(self._state, event, self._now_ms(), self.config.retry)
            for fx in effects:
                if isinstance(fx, Stop):
                    raise SinkError(f"{self.view.id}: {fx.error}")
                if isinstance(fx, RetryAt):
                    self._retries += 1
                    log.warning("%s: sink failed (%s); retrying", self.view.id, event)
                    self._sleep_until(fx.at_ms)
                if isinstance(fx, ReseekEffect):
                    self._fenced += 1
                    log.warning("%s: %s; reloading positions", self.view.id, event)
                    self._reseek(batch.ends)
                    return False
            if self._state.phase is Phase.RUNNING:
                break
        self._records += batch.records
        self._changes += len(batch)
        self._batches += 1
        for tp, end in batch.ends.items():
            if tp in self._positions:
                self._positions[tp] = end
        self._commit(batch)
        return True

    def _commit(self, batch: Batch) -> None:
        f = self._fast
        if f is not None:
            if self._mode is Guarantee.EXACTLY_ONCE:  # for Kafka's lag tools only; the sink holds the truth
                try:
                    f.commit({(tp.topic, tp.partition): end for tp, end in batch.ends.items()})
                except Exception as e:  # OSError, WireError: the connection is made again at the next commit
                    log.debug("%s: commit: %s", self.view.id, e)
            return
        from confluent_kafka import KafkaException  # noqa: PLC0415 - see TYPE_CHECKING
        from confluent_kafka import TopicPartition as KTopicPartition  # noqa: PLC0415

        c = self._consumer
        if c is None or self._mode is Guarantee.REBUILT:
            return
        offs = [KTopicPartition(tp.topic, tp.partition, end) for tp, end in batch.ends.items()]
        if self._mode is Guarantee.EXACTLY_ONCE:
            try:
                c.commit(offsets=offs, asynchronous=True)  # for Kafka's lag tools only; the sink holds the truth
            except KafkaException as e:
                log.debug("%s: async commit: %s", self.view.id, e)
            return
        try:
            c.commit(offsets=offs, asynchronous=False)
        except KafkaException as e:
            # A rebalance took the partitions: their new owner replays from the last commit, which the sink's
            # versions make harmless.
            log.warning("%s: commit failed (%s); the batch will be replayed idempotently", self.view.id, e)

    def _idle(self) -> None:
        """Nothing new to read: sinks that gather changes in memory (``idle()``, e.g. Hollow) write them out."""
        idle = getattr(self.sink, "idle", None)
        if idle is None:
            return
        try:
            idle()
        except Fenced as e:
            self._fenced += 1
            log.warning("%s: %s; reloading positions", self.view.id, e)
            self._reseek(list(self._positions))

    def _reseek(self, tps: Iterable[TopicPartition]) -> None:
        stored = self.sink.stored_positions()
        c = self._consumer
        for tp in tps:
            if tp not in self._positions:
                continue
            off = stored.get(tp)
            self._positions[tp] = off
            self._read_past.pop(tp, None)
            if self._fast is not None:
                self._fast.seek((tp.topic, tp.partition), off)
            if c is not None:
                from confluent_kafka import OFFSET_BEGINNING, KafkaException  # noqa: PLC0415 - see TYPE_CHECKING
                from confluent_kafka import TopicPartition as KTopicPartition  # noqa: PLC0415

                try:
                    c.seek(KTopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING if off is None else off))
                except KafkaException as e:
                    log.info("%s: seek %s: %s", self.view.id, tp, e)

    def _sleep_until(self, at_ms: int) -> None:
        while not self._stop.is_set():
            left = at_ms - self._now_ms()
            if left <= 0:
                return
            self._stop.wait(min(left, 1000) / 1000)
        raise SinkError(f"{self.view.id}: stopped while waiting to retry")

    def _dead_letter(self, m: Any, error: BaseException) -> None:
        if self._dlq is None:
            from confluent_kafka import Producer  # noqa: PLC0415 - see TYPE_CHECKING

            self._dlq = Producer({"bootstrap.servers": self._bootstrap, "enable.idempotence": True,
                                 "acks": "all", "linger.ms": 5, **self.config.client_config})
        headers: list[Any] = [
            *(m.headers() or []),
            ("loosely.view", str(self.view.id).encode()),
            ("loosely.source.topic", (m.topic() or "").encode()),
            ("loosely.source.partition", str(m.partition()).encode()),
            ("loosely.source.offset", str(m.offset()).encode()),
            ("loosely.error", repr(error).encode("utf-8", "replace")[:1000]),
        ]
        assert self.config.dead_letter_topic is not None
        self._dlq.produce(self.config.dead_letter_topic, m.value(), key=m.key(), headers=headers)
        self._dead += 1
        log.warning("%s: dead-lettered %s/%s@%s: %r", self.view.id, m.topic(), m.partition(), m.offset(), error)

    # -- lag and catch-up ---------------------------------------------------------------------------------------

    def _refresh_lag(self, force: bool = False) -> None:
        """High watermarks for the lag: the client caches the one each fetch response carries, so this costs no
        request; a partition not fetched yet is asked for with ListOffsets, at most every ``lag_refresh_ms``."""
        now = self._now_ms()
        c = self._consumer
        if (c is None and self._fast is None) or (not force and now - self._lag_at_ms < self.config.lag_refresh_ms):
            return
        asked = now - self._lag_at_ms >= self.config.lag_refresh_ms
        self._lag_at_ms = now
        if self._fast is not None:
            self._refresh_lag_fast(self._fast, asked)
            return
        from confluent_kafka import KafkaException  # noqa: PLC0415 - see TYPE_CHECKING
        from confluent_kafka import TopicPartition as KTopicPartition  # noqa: PLC0415

        assert c is not None
        for tp in list(self._positions):
            ktp = KTopicPartition(tp.topic, tp.partition)
            try:
                low, high = c.get_watermark_offsets(ktp, cached=True)
                if high < 0 and asked:
                    low, high = c.get_watermark_offsets(ktp, timeout=5, cached=False)
            except KafkaException as e:
                log.debug("%s: watermarks of %s: %s", self.view.id, tp, e)
                continue
            if high >= 0:
                self._high[tp] = high
            if high >= 0 and 0 <= low == high and self._positions.get(tp) is None:
                self._empty_at[tp] = high  # an empty partition: nothing to read, caught up

    def _refresh_lag_fast(self, f: BatchConsumer, asked: bool) -> None:
        """:meth:`_refresh_lag` for the batch consumer: each fetch answer brings the high watermark."""
        tps = list(self._positions)
        unknown = [(tp.topic, tp.partition) for tp in tps if f.high_watermark((tp.topic, tp.partition)) < 0]
        low: dict[tuple[str, int], int] = {}
        high: dict[tuple[str, int], int] = {}
        if unknown and asked:
            try:
                low = f.list_offsets(unknown, -2)
                high = f.list_offsets(unknown, -1)
            except Exception as e:  # a broker away: asked again next interval
                log.debug("%s: watermarks: %s", self.view.id, e)
        for tp in tps:
            key = (tp.topic, tp.partition)
            h = f.high_watermark(key)
            if h < 0:
                h = high.get(key, -1)
            if h >= 0:
                self._high[tp] = h
            if h >= 0 and low.get(key) == h and self._positions.get(tp) is None:
                self._empty_at[tp] = h  # an empty partition: nothing to read, caught up

    def _note_read_past(self) -> None:
        """Every record read so far is durable in the sink: the consumer's own position (past control records and
        aborted transactions, which it skips without handing over) is where each partition stands."""
        tps = list(self._positions)
        if self._fast is not None:
            for tp in tps:
                at = self._fast.position((tp.topic, tp.partition))
                stored = self._positions.get(tp)
                if at is not None and (stored is None or at > stored):
                    self._read_past[tp] = at
            return
        from confluent_kafka import KafkaException  # noqa: PLC0415 - see TYPE_CHECKING
        from confluent_kafka import TopicPartition as KTopicPartition  # noqa: PLC0415

        c = self._consumer
        if c is None:
            return
        try:
            known = c.position([KTopicPartition(tp.topic, tp.partition) for tp in tps])
        except KafkaException as e:
            log.debug("%s: positions: %s", self.view.id, e)
            return
        for tp, kp in zip(tps, known, strict=True):
            stored = self._positions.get(tp)
            if kp.offset >= 0 and (stored is None or kp.offset > stored):
                self._read_past[tp] = kp.offset

    def _at(self, tp: TopicPartition, pos: int | None) -> int | None:
        """Where a partition stands for lag and catch-up: its stored position, or past it (see ``_read_past``)."""
        at = self._empty_at.get(tp) if pos is None else pos
        past = self._read_past.get(tp)
        return at if past is None or (at is not None and at >= past) else past

    def _lag_now(self) -> dict[TopicPartition, int]:
        out = {}
        for tp, pos in list(self._positions.items()):
            high = self._high.get(tp)
            if high is None:
                continue
            out[tp] = max(0, high - (self._at(tp, pos) or 0))
        return out

    def caught_up(self) -> bool:
        """Whether every assigned partition has been read to the high watermark last seen (any thread)."""
        return self._caught_up()

    def _caught_up(self) -> bool:
        if not self._assigned or not self._positions:
            return False
        for tp, pos in list(self._positions.items()):
            high = self._high.get(tp)
            at = self._at(tp, pos)
            if high is None or at is None or at < high:
                return False
        return True

    def _serve_if_first(self) -> None:
        if self._served or not self.config.serve_when_caught_up:
            return
        self._served = True
        if isinstance(self.sink, Catalog) and self.sink.serving_version(self.view.name) is None:
            self.sink.switch(self.view.name, self.view.version)
            log.info("%s: caught up; now serving", self.view.id)

    def statistics(self) -> RunnerStatistics:
        return RunnerStatistics(
            view=str(self.view.id),
            records=self._records,
            changes=self._changes,
            batches=self._batches,
            retries=self._retries,
            fenced=self._fenced,
            dead_lettered=self._dead,
            lag=self._lag_now(),
            positions=dict(self._positions),
            phase=self._state.phase.value,
            last_error=self._state.error,
            source="batch-consumer" if self._fast is not None else "confluent-kafka",
        )
