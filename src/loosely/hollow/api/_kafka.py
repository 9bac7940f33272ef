"""Announcements on the log, with leader election among producers and fencing of a deposed leader.

Why the log: loosely services already run on a Kafka-compatible log (loosely's broker or Apache Kafka), and
Kafka gives both halves of "exactly one producer announces" without another system to run:

* **election** -- every candidate producer joins one consumer group (``hollow-leader-<namespace>``) subscribed
  to the one-partition announcement topic.  The member that is assigned partition 0 is the leader.  The
  ``cooperative-sticky`` assignor keeps the partition where it is when standbys join, and when the leader dies
  (or is paused) its session times out and the partition -- leadership -- moves to a standby.
* **fencing** -- every write to the announcement topic is a *transaction* of one shared transactional id
  (``hollow-<namespace>``).  A new leader calls ``init_transactions`` first, which bumps the producer epoch: the
  broker then refuses any write of the old leader (``PRODUCER_FENCED``), even one it started before it was
  paused, and aborts its open transaction.  Leadership as seen by the group can lag; the fence cannot.

Records on the compacted topic (key -> value, UTF-8)::

    <namespace>/announced  <version>        the announced version (what consumers follow)
    <namespace>/minted     <version>        a version a leader is about to publish blobs for (see below)
    <namespace>/leader     <term id>        written by a new leader right after fencing

Taking over: after ``init_transactions`` the new leader writes its ``leader`` record and reads the topic until it
sees that record, so it knows every announcement and every minted version committed before it.  It then
continues the chain from the last announced version (the producer restores from it).

Minting: before publishing blobs for a version, the leader commits a ``minted`` record for it.  A paused old
leader can therefore only ever publish blobs for versions it minted before the new leader took over, and the new
leader mints above all of them -- so the old leader's stray blobs never carry a version on the live chain, and
retrievers, which follow the furthest transition from a version, never take them.

Consumers use :class:`KafkaAnnouncementWatcher`: it reads the topic (read-committed: aborted announcements of
a fenced leader are never seen) and reports the last announced version of its namespace.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from loosely.hollow.api._blobs import Version
from loosely.hollow.api._clock import Clock, SystemClock, TimestampVersionMinter, VersionMinter
from loosely.hollow.api._interfaces import BlobStoreUnavailableError, NotLeaderError

__all__ = ["KafkaAnnouncementWatcher", "KafkaAnnouncer", "KafkaAnnouncerStatistics"]

log = logging.getLogger(__name__)

_POLL_S: Final = 0.1
_ACQUIRE_TIMEOUT_S: Final = 30.0


def _ensure_topic(bootstrap_servers: str, topic: str, client_config: Mapping[str, str], timeout_s: float) -> None:
    from confluent_kafka import KafkaException  # noqa: PLC0415 - the log client is only needed by these classes
    from confluent_kafka.admin import (  # type: ignore[attr-defined,unused-ignore]  # noqa: PLC0415 - no __all__ in some versions
        AdminClient,
        NewTopic,
    )

    admin = AdminClient({"bootstrap.servers": bootstrap_servers, **client_config})
    # replication factor -1: the cluster's default.replication.factor (KIP-464), so a cluster keeps copies
    futures = admin.create_topics([NewTopic(topic, 1, -1, config={"cleanup.policy": "compact"})],
                                  request_timeout=timeout_s)
    for f in futures.values():
        try:
            f.result(timeout_s)
        except KafkaException as e:
            if e.args and getattr(e.args[0], "name", lambda: "")() == "TOPIC_ALREADY_EXISTS":
                continue
            raise BlobStoreUnavailableError(f"cannot create the announcement topic {topic}: {e}") from e


def _text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", errors="replace")


def _version(value: bytes | None) -> Version | None:
    text = _text(value).strip()
    return Version(int(text)) if text.lstrip("-").isdigit() else None


@dataclass(frozen=True, slots=True)
class KafkaAnnouncerStatistics:
    """Leadership and announcement counters of one candidate producer."""

    leader: bool
    term: int
    terms_acquired: int
    fenced: int
    announced: Version | None
    minted: Version | None
    announcements: int
    last_error: str | None


class KafkaAnnouncer:
    """Announcer, AnnouncementWatcher, LeaderElection and VersionMinter of one candidate producer.

    Pass the same object as the producer's ``announcer``, ``watcher``, ``leader`` and ``version_minter``; call
    ``start()`` to join the election (``stop()`` leaves it, handing leadership over at once).

    ``client_config`` holds librdkafka settings for every client it makes (the election's consumer, the fenced
    producer, the watcher, the admin client that creates the topic): a secured cluster's
    ``security.protocol``, ``sasl.*`` and ``ssl.*``. ``loosely.clients.client_config.client_config([path])``
    reads them from a Java client's properties file.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        namespace: str,
        *,
        session_timeout_ms: int = 6_000,
        heartbeat_interval_ms: int = 1_000,
        transaction_timeout_ms: int = 10_000,
        request_timeout_ms: int = 10_000,
        clock: Clock | None = None,
        client_config: Mapping[str, str] | None = None,
        create_topic: bool = True,
    ) -> None:
        if not 0 < heartbeat_interval_ms < session_timeout_ms:
            raise ValueError("need 0 < heartbeat_interval_ms < session_timeout_ms")
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.namespace = namespace
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.transaction_timeout_ms = transaction_timeout_ms
        self.request_timeout_ms = request_timeout_ms
        self.clock: Clock = clock or SystemClock()
        self._minter: VersionMinter = TimestampVersionMinter(self.clock)
        self._config = dict(client_config or {})
        self._create_topic = create_topic
        self.member = uuid.uuid4().hex[:12]
        self._lock = threading.RLock()
        self._assigned = False
        self._leader = False
        self._term = 0
        self._counts = {"terms": 0, "fenced": 0, "announcements": 0}
        self._announced: Version | None = None
        self._minted: Version | None = None
        self._last_error: str | None = None
        self._producer: Any = None
        self._consumer: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._marker: str | None = None  # our leader record, until we have read it back
        self._watcher: KafkaAnnouncementWatcher | None = None  # a standby's view of the announcements

    # -- keys --

    def _key(self, what: str) -> bytes:
        return f"{self.namespace}/{what}".encode()

    # -- lifecycle --

    def start(self) -> None:
        """Join the election (a background thread polls the group and takes leadership when assigned)."""
        if self._thread is not None:
            return
        from confluent_kafka import Consumer  # noqa: PLC0415

        if self._create_topic:
            _ensure_topic(self.bootstrap_servers, self.topic, self._config, self.request_timeout_ms / 1000)
        self._watcher = KafkaAnnouncementWatcher(self.bootstrap_servers, self.topic, self.namespace,
                                                 client_config=self._config)
        self._consumer = Consumer({
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": f"hollow-leader-{self.namespace}",
            "client.id": f"hollow-candidate-{self.member}",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": self.heartbeat_interval_ms,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            **self._config,
        })
        self._consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_revoke)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"hollow-election-{self.namespace}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Leave the group (leadership moves to a standby now, not after a session timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        with self._lock:
            self._leader = False
            self._drop_producer()
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None

    close = stop

    # -- group callbacks (called from poll, in the election thread) --

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        if any(p.partition == 0 for p in partitions):
            with self._lock:
                self._assigned = True

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        if any(p.partition == 0 for p in partitions):
            with self._lock:
                if self._leader and not self._stop.is_set():  # a stop hands leadership over on purpose: no news
                    log.warning("hollow producer %s lost leadership of %s", self.member, self.namespace)
                self._assigned = False
                self._leader = False
                self._marker = None

    # -- the election thread --

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._consumer.poll(_POLL_S)
                if msg is not None and not msg.error():
                    self._observe(msg.key(), msg.value())
                with self._lock:
                    acquire = self._assigned and not self._leader and self._marker is None
                if acquire:
                    self._acquire()
            except Exception as e:  # the election must survive broker hiccups; leadership is then lost
                with self._lock:
                    self._last_error = f"{type(e).__name__}: {e}"
                    self._leader = False
                    self._marker = None
                    self._drop_producer()
                if self._stop.is_set():
                    break  # what a stop interrupted is no news
                log.warning("hollow election loop of %s: %s", self.namespace, e)
                time.sleep(_POLL_S)
        try:
            self._consumer.close()  # leaves the group
        except Exception as e:
            log.warning("closing the election consumer: %s", e)

    def _observe(self, key: bytes | None, value: bytes | None) -> None:
        with self._lock:
            if key == self._key("announced"):
                self._announced = _version(value)
            elif key == self._key("minted"):
                v = _version(value)
                if v is not None and (self._minted is None or v > self._minted):
                    self._minted = v
            elif key == self._key("leader") and self._marker is not None and _text(value) == self._marker:
                self._marker = None
                self._leader = True
                self._term += 1
                self._counts["terms"] += 1
                log.info("hollow producer %s is the leader of %s (term %d, last announced %s)", self.member,
                         self.namespace, self._term, self._announced)

    def _new_producer(self) -> Any:
        from confluent_kafka import Producer  # noqa: PLC0415

        return Producer({
            "bootstrap.servers": self.bootstrap_servers,
            "transactional.id": f"hollow-{self.namespace}",
            "transaction.timeout.ms": self.transaction_timeout_ms,
            "client.id": f"hollow-announcer-{self.member}",
            **self._config,
        })

    def _drop_producer(self) -> None:
        self._producer = None  # a fenced transactional producer is unusable; the next term makes a new one

    def _acquire(self) -> None:
        """Fence the previous leader, then mark the log so we know when we have read all it committed."""
        producer = self._new_producer()
        timeout = self.request_timeout_ms / 1000
        producer.init_transactions(max(timeout, _ACQUIRE_TIMEOUT_S))
        marker = f"{self.member}-{uuid.uuid4().hex[:8]}"
        with self._lock:
            self._producer = producer
            self._marker = marker
        self._transact(producer, self._key("leader"), marker.encode())
        deadline = time.monotonic() + _ACQUIRE_TIMEOUT_S
        while time.monotonic() < deadline and not self._stop.is_set():
            with self._lock:
                if self._marker is None or not self._assigned:
                    return
            msg = self._consumer.poll(_POLL_S)
            if msg is not None and not msg.error():
                self._observe(msg.key(), msg.value())
        if self._stop.is_set():
            return  # stopping: the loop ends and leaves the group; the term it was taking is nobody's
        raise TimeoutError("did not read back the leader record in time")

    def _transact(self, producer: Any, key: bytes, value: bytes) -> None:
        timeout = self.request_timeout_ms / 1000
        producer.begin_transaction()
        producer.produce(self.topic, key=key, value=value, partition=0)
        producer.commit_transaction(timeout)

    def _fenced_write(self, what: str, value: bytes) -> None:
        from confluent_kafka import KafkaException  # noqa: PLC0415

        with self._lock:
            producer = self._producer if self._leader else None
        if producer is None:
            raise NotLeaderError(f"{self.member} is not the leader of {self.namespace}")
        try:
            self._transact(producer, self._key(what), value)
        except KafkaException as e:
            err = e.args[0] if e.args else None
            fatal = bool(err is not None and (err.fatal() or err.name() in ("_FENCED", "PRODUCER_FENCED",
                                                                             "INVALID_PRODUCER_EPOCH")))
            with self._lock:
                self._last_error = str(e)
                if fatal:
                    self._counts["fenced"] += 1
                    self._leader = False
                    self._drop_producer()
                else:
                    try:
                        producer.abort_transaction(self.request_timeout_ms / 1000)
                    except KafkaException:
                        self._leader = False
                        self._drop_producer()
            if fatal:
                raise NotLeaderError(f"{self.member} was fenced by a newer leader of {self.namespace}: {e}") from e
            raise BlobStoreUnavailableError(f"announcement topic {self.topic}: {e}") from e

    # -- LeaderElection --

    def is_leader(self) -> bool:
        with self._lock:
            return self._leader

    def term(self) -> int:
        with self._lock:
            return self._term

    def wait_for_leadership(self, timeout_ms: int) -> bool:
        deadline = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < deadline:
            if self.is_leader():
                return True
            time.sleep(0.05)
        return self.is_leader()

    # -- VersionMinter --

    def mint(self, last: Version | None) -> Version:
        """A version above every version any leader minted, recorded (fenced) before blobs are published."""
        with self._lock:
            floor = max((v for v in (last, self._minted, self._announced) if v is not None), default=None)
        version = self._minter.mint(floor)
        self._fenced_write("minted", str(int(version)).encode())
        with self._lock:
            self._minted = version
        return version

    # -- Announcer / AnnouncementWatcher --

    def announce(self, version: Version) -> None:
        self._fenced_write("announced", str(int(version)).encode())
        with self._lock:
            self._announced = version
            self._counts["announcements"] += 1

    def latest_version(self) -> Version | None:
        """The last announced version: as read while taking over (authoritative) when leader, else as a standby
        follows the topic."""
        with self._lock:
            if self._leader or self._watcher is None:
                return self._announced
            watcher = self._watcher
        return watcher.latest_version()

    def statistics(self) -> KafkaAnnouncerStatistics:
        with self._lock:
            c = self._counts
            return KafkaAnnouncerStatistics(
                self._leader, self._term, c["terms"], c["fenced"], self._announced, self._minted,
                c["announcements"], self._last_error,
            )


class KafkaAnnouncementWatcher:
    """Follows ``<namespace>/announced`` on the announcement topic (read-committed, no consumer group).

    The constructor reads what is on the topic already (up to ``initial_wait_ms``), so the first
    ``latest_version()`` knows the current announcement. ``client_config``: as :class:`KafkaAnnouncer`'s.

    "Already" is the topic's end offset when the watcher starts: reading is done when the position passes it, or
    at the end of the partition.  The end of the partition alone is not enough: while a leader announces, new
    records keep arriving and the client never reports the end, so a watcher started beside a live leader would
    wait out ``initial_wait_ms`` every time.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        namespace: str,
        *,
        initial_wait_ms: int = 10_000,
        client_config: Mapping[str, str] | None = None,
    ) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition  # noqa: PLC0415

        self.topic = topic
        self.namespace = namespace
        self._key = f"{namespace}/announced".encode()
        self._lock = threading.Lock()
        self._announced: Version | None = None
        self._eof = KafkaError._PARTITION_EOF
        self._caught_up = False
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"hollow-watcher-{uuid.uuid4().hex[:12]}",  # never joins: partitions are assigned by hand
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            **(client_config or {}),
        })
        self._partition = TopicPartition(topic, 0)
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + initial_wait_ms / 1000
        start, end = self._watermarks(initial_wait_ms / 1000)
        self._caught_up = start is not None and start == end  # an empty partition: nothing to read
        while not self._caught_up and time.monotonic() < deadline:
            self._drain(_POLL_S)
            if end is not None and self._consumer.position([self._partition])[0].offset >= end:
                self._caught_up = True

    def _watermarks(self, timeout_s: float) -> tuple[int | None, int | None]:
        """(first offset, the offset a read-committed reader has read everything before), now; Nones if the
        broker cannot say (then the end of the partition, or the initial wait, ends the first read)."""
        from confluent_kafka import KafkaException  # noqa: PLC0415

        try:
            start, end = self._consumer.get_watermark_offsets(self._partition, timeout=timeout_s, cached=False)
        except KafkaException:
            return None, None
        return int(start), int(end)

    def _drain(self, timeout_s: float) -> None:
        msg = self._consumer.poll(timeout_s)
        while msg is not None:
            err = msg.error()
            if err is not None:
                if err.code() == self._eof:
                    self._caught_up = True
            elif msg.key() == self._key:
                self._announced = _version(msg.value())
            msg = self._consumer.poll(0)

    def latest_version(self) -> Version | None:
        """Reads what arrived since the last call (non-blocking) and returns the last announced version."""
        with self._lock:
            self._drain(0)
            return self._announced

    def close(self) -> None:
        with self._lock:
            self._consumer.close()
