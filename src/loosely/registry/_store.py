"""The Kafka-backed store: the ``_schemas`` topic read into a :class:`RegistryState`, and its one writer.

Theory of operation
-------------------

At start the store makes sure the topic exists (one partition, ``cleanup.policy=compact``, replication factor
``min(3, brokers)``; an existing topic with more than one partition is refused, as Confluent does: the order of
changes is the order of one partition). A reader thread assigns itself partition 0 from the beginning and applies
every record to the state under a lock; the store is *ready* once the reader has reached the end offset the
partition had when the store started, so the first answer the registry gives already reflects the whole log.

A change (:meth:`KafkaStore.change`) runs under the writer lock: it plans the records against the state (see
:mod:`loosely.registry._state`), produces them with ``acks=all``, takes the offset of the last one from the
delivery report, and waits until the reader has applied that offset (read-your-write, as Confluent's
``KafkaStore`` waits for its reader). Only then does the HTTP answer go out, so an acknowledged change is in the
log and in memory.

**Several registry processes.** Only the elected leader writes (:mod:`loosely.registry._election`; the store asks
its ``leadership`` callable, which without election says "always the leader"). A plan that needs no record (a
schema registered again, a lookup) is answered from memory by any process. A plan that needs records on a
follower raises :class:`ForwardToLeader` and the HTTP layer sends the request to the leader, as Confluent's
followers do, then reads the log to its end (:meth:`KafkaStore.catch_up`) so that the client's next read here sees
its change; with no leader known it is refused with Confluent's 50004. A new leader first reads the
log to the end offset it asks the broker for (once per election it wins) before it plans anything: the previous leader's
last writes are then in its state, so the ids it assigns (``max id + 1``) never collide with theirs. A leader that
was paused rather than killed is not fenced (Confluent's registry does not fence it either): it learns it lost the
role at its next heartbeat.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from loosely.registry._election import Elector, Leadership
from loosely.registry._errors import RegistryError
from loosely.registry._records import Record, RecordError, decode, encode
from loosely.registry._state import RegistryState

__all__ = ["SOLE_WRITER", "ForwardToLeader", "KafkaStore", "StoreStatistics"]

log = logging.getLogger(__name__)
T = TypeVar("T")

REPLICATION_FACTOR_MAX = 3  # Confluent's kafkastore.topic.replication.factor default
POLL_INTERVAL_MS = 100
SOLE_WRITER = Leadership(0, None, is_leader=True, term=0)
"""The leadership of a store that runs without election: it writes."""


class ForwardToLeader(Exception):
    """This process does not lead; the change must be asked of ``url``."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def no_leader() -> RegistryError:
    """Confluent's answer to a write while no leader is known (``UNKNOWN_LEADER_ERROR_CODE``)."""
    return RegistryError(500, 50004, "Unknown leader: no schema registry leader is elected yet; retry shortly")


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    records_applied: int
    records_skipped: int
    writes: int
    write_failures: int
    offset: int
    forwarded: int = 0
    catch_ups: int = 0


class KafkaStore:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str = "_schemas",
        client_config: Mapping[str, str] | None = None,
        default_compatibility: str = "BACKWARD",
        write_timeout_ms: int = 30_000,
        startup_timeout_ms: int = 60_000,
    ) -> None:
        self.topic = topic
        # quiet: a broker restart or the admin client's exit is not worth an info line on stderr
        self._config = {"bootstrap.servers": bootstrap_servers, "log.connection.close": "false", "log_level": "4",
                        **(client_config or {})}
        self.state = RegistryState(default_compatibility)
        self._lock = threading.Lock()  # guards the state: the reader applies, HTTP threads read
        self._applied = threading.Condition(self._lock)
        self._writer = threading.Lock()  # one plan-write-apply at a time
        self._next_offset = 0
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Any = None
        self._error: BaseException | None = None
        self._write_timeout_ms = write_timeout_ms
        self._startup_timeout_ms = startup_timeout_ms
        self._counts = {"records_skipped": 0, "writes": 0, "write_failures": 0, "forwarded": 0, "catch_ups": 0}
        self.election: Elector | None = None  # set by the registry when it takes part in an election
        self._caught_up_term: int | None = None
        self._offsets: Any = None  # a consumer handle asked for end offsets, under the writer lock only

    # ---- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> KafkaStore:
        from confluent_kafka import Consumer, Producer  # noqa: PLC0415 - loads only when a store starts

        self._ensure_topic()
        self._producer = Producer({**self._config, "acks": "all", "linger.ms": 0})
        self._offsets = Consumer({**self._config, "group.id": "loosely-schema-registry", "enable.auto.commit": False})
        self._thread = threading.Thread(target=self._read, name="loosely-registry-reader", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._startup_timeout_ms / 1000):
            self.stop()
            raise TimeoutError(f"schema registry: could not read {self.topic} to its end within "
                               f"{self._startup_timeout_ms} ms")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None  # destroyed now, not at garbage collection: no reconnect attempts after stop
        if self._offsets is not None:
            self._offsets.close()
            self._offsets = None

    def _ensure_topic(self) -> None:
        from confluent_kafka import KafkaError, KafkaException  # noqa: PLC0415
        from confluent_kafka.admin import AdminClient  # noqa: PLC0415
        from confluent_kafka.cimpl import NewTopic  # noqa: PLC0415

        # log_level 0: an unreachable cluster is reported once, by the exception below, not per connect attempt
        admin: Any = AdminClient({**self._config, "log_level": 0})
        try:
            metadata = admin.list_topics(timeout=self._startup_timeout_ms / 1000)
        except KafkaException as e:
            raise ConnectionError(f"cannot reach {self._config['bootstrap.servers']} within "
                                  f"{self._startup_timeout_ms} ms: {e.args[0].str()}") from None
        existing = metadata.topics.get(self.topic)
        if existing is None or existing.error is not None:
            rf = max(1, min(REPLICATION_FACTOR_MAX, len(metadata.brokers)))
            futures = admin.create_topics([NewTopic(self.topic, 1, rf, config={"cleanup.policy": "compact"})])
            try:
                futures[self.topic].result(self._startup_timeout_ms / 1000)
            except KafkaException as e:
                if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
            return
        if len(existing.partitions) != 1:
            raise ValueError(f"topic {self.topic} has {len(existing.partitions)} partitions; the schema registry "
                             "needs exactly one (the order of its changes is the order of one partition)")

    def _read(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition  # noqa: PLC0415

        consumer: Any = Consumer({**self._config, "group.id": "loosely-schema-registry", "enable.auto.commit": False,
                             "enable.partition.eof": True, "auto.offset.reset": "earliest"})
        try:
            _, end = consumer.get_watermark_offsets(TopicPartition(self.topic, 0),
                                                    timeout=self._startup_timeout_ms / 1000)
            consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        except Exception as e:  # the start() caller sees it instead of a timeout
            self._error = e
            self._ready.set()
            consumer.close()
            return
        if end == 0:
            self._ready.set()
        last_error = ""
        try:
            while not self._stopping.is_set():
                msg: Any = consumer.poll(POLL_INTERVAL_MS / 1000)
                if msg is None:
                    continue
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        if msg.offset() >= end:
                            self._ready.set()
                    elif msg.error().str() != last_error:  # one line per distinct trouble, not one per poll
                        last_error = msg.error().str()
                        log.warning("schema registry: reading %s: %s", self.topic, last_error)
                    continue
                last_error = ""
                self._apply(msg.offset(), msg.key(), msg.value())
                if msg.offset() + 1 >= end:
                    self._ready.set()
        finally:
            consumer.close()

    def _apply(self, offset: int, key: bytes | None, value: bytes | None) -> None:
        try:
            record: Record | None = decode(key, value)
        except RecordError as e:
            log.warning("schema registry: skipping record at offset %d of %s: %s", offset, self.topic, e)
            record = None
        with self._applied:
            try:
                if record is not None:
                    self.state.apply(record)
            except Exception as e:  # a bug here must not stop the reader: every later write would time out
                log.error("schema registry: record at offset %d of %s not applied: %s: %s", offset, self.topic,
                          type(e).__name__, e)
                record = None
            if record is None:
                self._counts["records_skipped"] += 1
            self._next_offset = offset + 1
            self._applied.notify_all()

    # ---- reads and changes --------------------------------------------------------------------------------

    def read(self, fn: Callable[[RegistryState], T]) -> T:
        with self._lock:
            return fn(self.state)

    def leadership(self) -> Leadership:
        return SOLE_WRITER if self.election is None else self.election.leadership()

    def change(self, plan: Callable[[RegistryState], tuple[T, list[Record]]]) -> T:
        """Plan against the state, write the records, wait until they are read back; the plan's answer.

        Raises :class:`ForwardToLeader` when records are needed and another process leads, and Confluent's
        50004 when no process does.
        """
        with self._writer:
            role = self.leadership()
            if role.is_leader and role.term != self._caught_up_term:
                self._catch_up()
                self._caught_up_term = role.term
            with self._lock:
                answer, records = plan(self.state)
            if not records:
                return answer
            if not role.is_leader:
                if role.leader_url is None:
                    raise no_leader()
                self._counts["forwarded"] += 1
                raise ForwardToLeader(role.leader_url)
            self._write(records)
            return answer

    def catch_up(self) -> None:
        """Wait until the reader has applied every record the log holds now (after a forwarded change, so that
        this process answers the client's next read with it)."""
        with self._writer:
            self._catch_up()

    def _catch_up(self) -> None:
        """Wait until the reader has applied every record the log holds now (a new leader's first step)."""
        from confluent_kafka import KafkaException, TopicPartition  # noqa: PLC0415

        try:
            _, end = self._offsets.get_watermark_offsets(TopicPartition(self.topic, 0),
                                                         timeout=self._write_timeout_ms / 1000, cached=False)
        except KafkaException as e:
            raise RegistryError(500, 50001, f"Error while reading the end of {self.topic}: "
                                            f"{e.args[0].str()}") from None
        self._counts["catch_ups"] += 1
        self._wait_applied(end - 1)

    def _wait_applied(self, last: int) -> None:
        deadline = time.monotonic() + self._write_timeout_ms / 1000
        with self._applied:
            while self._next_offset <= last:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._counts["write_failures"] += 1
                    raise RegistryError(500, 50002, f"Write to the log timed out: offset {last} of {self.topic} "
                                                    f"not read back within {self._write_timeout_ms} ms")
                self._applied.wait(remaining)

    def _write(self, records: list[Record]) -> None:
        offsets: list[int] = []
        errors: list[str] = []

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(err.str())
            else:
                offsets.append(msg.offset())

        self._counts["writes"] += 1
        try:
            for record in records:
                key, value = encode(record)
                self._producer.produce(self.topic, value=value, key=key, partition=0, on_delivery=delivered)
            self._producer.flush(self._write_timeout_ms / 1000)
        except (BufferError, ValueError) as e:  # the value is over the client's message.max.bytes
            errors.append(str(e))
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")
        if errors or len(offsets) != len(records):
            self._counts["write_failures"] += 1
            raise RegistryError(500, 50001, f"Error while registering schema in the log: "
                                            f"{'; '.join(errors) or 'no delivery report'}")
        self._wait_applied(max(offsets))

    def statistics(self) -> StoreStatistics:
        with self._lock:
            return StoreStatistics(records_applied=self.state.applied, offset=self._next_offset, **self._counts)
