"""The elected writer: one serialization point for conditional writes, fenced when deposed.

**Election and fencing** follow ``loosely.hollow.api._kafka``: every candidate joins the consumer group
``raw-writer-<dataset>`` subscribed to the one-partition topic ``<dataset>.writer``; the member assigned partition
0 is the leader. A new leader first calls ``init_transactions`` with the shared transactional id
``raw-writer-<dataset>``, which bumps the producer epoch: every later send of a deposed leader is refused
(``PRODUCER_FENCED``) and its open transaction is aborted. It then commits a leader record (its member id and
HTTP address) to the writer topic, reads it back, and reads the changes topic to its end, so it knows the
version of every key any earlier leader committed. Only then does it accept writes.

**Versions.** Every candidate keeps ``key -> (offset, present)`` from the changes topic (a standby tails it all
the time: that is what makes it hot). Entries only move to higher offsets, so replaying the log over the
leader's own writes changes nothing. While it leads, a writer stops tailing (once fenced in and read to the end,
every write to the topic is its own, and each commit tells it the offsets): the broker does not send each record
back to it. When it stops leading, its tail goes on from the end of its last commit.

**Group commit.** Callers queue requests; one thread takes what is queued (up to ``batch_ops_max`` operations),
checks each request's conditions in order against the versions plus the writes accepted before it in the batch,
and sends the accepted ones in ONE transaction. A conditional request touching a key another request of the
same batch writes waits for the next batch (its version is not known yet), and so does every later request on
the same keys, so that the writes of a key land in the order they were queued. When the commit returns, each caller
gets the offsets of its records (versions) and a token. A request is all or nothing: a bulk is one request.
A transaction costs two round trips whatever its size (Produce, EndTxn: ~1.3 ms on loopback; ``_txn`` sends them
over loosely's own connections, where librdkafka takes three and ~3 ms), so throughput comes from batch size:
``put_async`` and friends return a future instead of waiting, letting one caller keep many writes in flight
(pipelining); at most ``queued_ops_max`` operations wait, then callers block.
Everything a write needs that does not depend on the versions (validation, JSON, the content digest) is done by
the caller's thread before queueing, so the commit thread -- the serial path -- only checks, sends and answers.

**Failures.** A fenced producer loses leadership at once (callers get :class:`NotLeaderError`). Any other commit
failure abandons the transaction, fails the batch's callers with :class:`WriteError` (``uncertain`` once the
commit was sent and went unanswered; before that the next term's fence aborts it), and makes the
writer step down and take over again (a new producer, fenced by itself, and a fresh read of the log), because
the outcome of an unanswered commit is unknown and the versions must come from the log again.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from loosely.hollow.api import NotLeaderError as _HollowNotLeader
from loosely.hollow.core import HollowError, ObjectMapper, WriteStateEngine
from loosely.hollow.raw._codec import Token, checked_json, encode_record
from loosely.hollow.raw._dataset import Dataset
from loosely.hollow.raw._log import ChangeTail
from loosely.hollow.raw._txn import Outgoing, TransactionFailed, TransactionFenced, Transactions, open_transactions

__all__ = [
    "ANY",
    "BulkResult",
    "ConditionFailed",
    "Delete",
    "NotLeaderError",
    "Put",
    "WriteError",
    "WriteResult",
    "Writer",
    "WriterStatistics",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_POLL_S: Final = 0.05
_INVALID_SESSION_TIMEOUT: Final = 26  # Kafka's code: the session timeout is outside the broker's bounds
_ACQUIRE_TIMEOUT_MS: Final = 30_000
_SCRATCH_RECORDS_MAX: Final = 1_024


class _Any:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ANY"


ANY: Final[Any] = _Any()
"""``if_version=ANY``: write whatever the current version is (the default)."""


class ConditionFailed(HollowError):
    """A conditional write found another version: ``current_version`` (None: the record is absent)."""

    def __init__(self, message: str, current_version: int | None, key: str = "") -> None:
        super().__init__(message)
        self.current_version = current_version
        self.key = key


class NotLeaderError(_HollowNotLeader):
    """This writer is not the elected one; ``leader`` is the leader's HTTP address if known."""

    def __init__(self, message: str, leader: str | None = None) -> None:
        super().__init__(message)
        self.leader = leader


class WriteError(HollowError):
    """The write did not complete (broker unreachable, timeout); it may or may not have landed when the commit
    went unanswered (``uncertain``)."""

    def __init__(self, message: str, *, uncertain: bool = False) -> None:
        super().__init__(message)
        self.uncertain = uncertain


@dataclass(frozen=True, slots=True)
class Put:
    """Insert or replace ``record``; ``if_version``: ANY, None (only if absent) or the version it must have;
    ``if_content``: ANY, None (only if absent) or the record the current one must equal (compare-and-set on
    what the caller read, whatever its version)."""

    record: object
    if_version: Any = ANY
    if_content: Any = ANY


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete the record of ``type_name`` with primary key ``key``; ``if_version`` as for :class:`Put`."""

    type_name: str
    key: tuple[object, ...]
    if_version: Any = ANY
    if_content: Any = ANY


@dataclass(frozen=True, slots=True)
class WriteResult:
    """A committed write: its version (the log offset of its record) and a token for ``after=`` reads."""

    version: int
    token: Token


@dataclass(frozen=True, slots=True)
class BulkResult:
    """A committed bulk: the version of each operation, in order, and one token for all."""

    versions: tuple[int, ...]
    token: Token


@dataclass(frozen=True, slots=True)
class WriterStatistics:
    leader: bool
    terms: int
    fenced: int
    keys: int
    requests: int
    transactions: int
    condition_failures: int
    write_errors: int
    last_error: str | None


@dataclass(slots=True)
class _Op:
    key: bytes
    partition: int
    value: bytes | None
    if_version: Any
    if_content: Any  # ANY, or the digest the current content must have (None: absent)
    digest: bytes | None = None  # of value, computed by the caller: the commit thread is the serial path
    conditional: bool = False  # if_version or if_content is not ANY (set by the caller, for the same reason)


@dataclass(slots=True)
class _Request:
    """One caller's operations (all or nothing) and the future its caller waits on or chains to."""

    ops: list[_Op]
    shape: Callable[[list[int], Token], Any]  # the caller's result from the offsets: WriteResult or BulkResult
    future: Future[Any] = field(default_factory=Future)
    offsets: list[int] = field(default_factory=list)

    def fail(self, error: Exception) -> None:
        with contextlib.suppress(InvalidStateError):  # answered already (a commit-loop bug path)
            self.future.set_exception(error)

    def succeed(self) -> None:
        if len(self.ops) == 1:  # most requests: one put or delete
            token = {self.ops[0].partition: self.offsets[0] + 1}
        else:
            token = {}
            for op, off in zip(self.ops, self.offsets, strict=True):
                token[op.partition] = max(token.get(op.partition, 0), off + 1)
        with contextlib.suppress(InvalidStateError):
            self.future.set_result(self.shape(self.offsets, Token(token)))


def _write_result(offsets: list[int], token: Token) -> WriteResult:
    return WriteResult(offsets[0], token)


def _bulk_result(offsets: list[int], token: Token) -> BulkResult:
    return BulkResult(tuple(offsets), token)


def _digest(value: bytes | None) -> bytes | None:
    """What a write's content is compared by (None: a tombstone)."""
    return None if value is None else hashlib.blake2b(value, digest_size=16).digest()


def _check_condition(if_version: Any) -> None:
    if if_version is ANY or if_version is None:
        return
    if isinstance(if_version, bool) or not isinstance(if_version, int):
        raise TypeError(f"if_version must be ANY, None or an int version, not {if_version!r}")


class Writer:
    """The dataset's writer candidate: ``start()`` joins the election; writes succeed while it leads.

    >>> # with a broker: w = Writer(dataset); w.start(); w.wait_for_leadership(10_000)
    >>> # w.put(Movie(1, "Heat")).version  -> the offset of that write
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        http_address: str | None = None,
        session_timeout_ms: int = 6_000,
        heartbeat_interval_ms: int = 1_000,
        transaction_timeout_ms: int = 10_000,
        write_timeout_ms: int = 10_000,
        batch_ops_max: int = 2_000,
        queued_ops_max: int = 20_000,
        record_bytes_max: int = 990_000,
    ) -> None:
        if not 0 < heartbeat_interval_ms < session_timeout_ms:
            raise ValueError("need 0 < heartbeat_interval_ms < session_timeout_ms")
        self.dataset = dataset
        self.http_address = http_address
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.transaction_timeout_ms = transaction_timeout_ms
        self.write_timeout_ms = write_timeout_ms
        self.batch_ops_max = batch_ops_max
        self.queued_ops_max = queued_ops_max  # waiting for a transaction: pipelined callers block beyond it
        # key and value: under librdkafka's message.max.bytes (1,000,000), with room for the record's framing
        self.record_bytes_max = record_bytes_max
        self.member = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._versions: dict[bytes, tuple[int, bytes | None]] = {}  # key -> (offset, content digest or None)
        self._own_ends: dict[int, int] = {}  # partition -> the offset after the last record this writer committed
        self._assigned = False
        self._leader = False
        self._marker: str | None = None
        self._leader_address: str | None = None
        self._producer: Transactions | None = None
        self._election: Any = None
        self._watch: Any = None
        self._tail: ChangeTail | None = None
        self._queue: collections.deque[_Request] = collections.deque()
        self._queued = threading.Condition(self._lock)  # the commit thread waits for requests
        self._room = threading.Condition(self._lock)  # pipelined callers wait for the queue to shrink
        self._queued_ops = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._counts = dict.fromkeys(("terms", "fenced", "requests", "transactions", "conditions", "errors"), 0)
        self._last_error: str | None = None
        self.election_error: str | None = None  # why this writer can never be elected (a setting the broker refuses)
        self._scratch = ObjectMapper(WriteStateEngine())  # where each record is tried before it is sent
        self._scratch_adds = 0
        self._scratch_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> Writer:
        """Join the election (background threads: the election and the group commit)."""
        if self._threads:
            return self
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition  # noqa: PLC0415

        ds = self.dataset
        ds.ensure_topics()
        self._tail = ChangeTail(ds, self._observe_change, name=f"writer-{self.member}")
        self._election = Consumer(ds.config(**{
            "group.id": f"raw-writer-{ds.name}",
            "client.id": f"raw-writer-{self.member}",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": self.heartbeat_interval_ms,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }))
        self._election.subscribe([ds.writer_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_revoke)
        # a standby is assigned nothing, so it follows the leader records through a consumer of its own
        self._watch = Consumer(ds.config(**{"group.id": f"raw-writer-watch-{self.member}",
                                            "enable.auto.commit": False, "isolation.level": "read_committed"}))
        self._watch.assign([TopicPartition(ds.writer_topic, 0, OFFSET_BEGINNING)])
        self._stop.clear()
        self._threads = [threading.Thread(target=self._election_loop, name=f"raw-election-{ds.name}", daemon=True),
                         threading.Thread(target=self._commit_loop, name=f"raw-commit-{ds.name}", daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def close(self) -> None:
        """Leave the election (a standby takes over at once) and fail queued writes."""
        self._stop.set()
        with self._lock:
            self._leader = False
            self._queued.notify_all()
        for t in self._threads:
            t.join(30)
        self._threads = []
        self._fail_queue(NotLeaderError(f"writer {self.member} of {self.dataset.name} is closed"))
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close()  # its connections go now, not when the garbage collector finds it
        if self._tail is not None:
            self._tail.close()
            self._tail = None

    def __enter__(self) -> Writer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- leadership ------------------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        with self._lock:
            return self._leader

    def leader_address(self) -> str | None:
        """The HTTP address the current leader announced (ours when we lead)."""
        with self._lock:
            return self.http_address if self._leader else self._leader_address

    def wait_for_leadership(self, timeout_ms: int) -> bool:
        """Whether this writer leads within ``timeout_ms``; ValueError at once if the broker refuses its settings."""
        deadline = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < deadline and not self.is_leader():
            if self.election_error is not None:
                raise ValueError(self.election_error)
            time.sleep(0.02)
        return self.is_leader()

    def _refused(self, reason: str) -> None:
        """The group coordinator refuses to let this writer join (its session timeout is outside the broker's
        group.min/max.session.timeout.ms): it can never be elected, so say so once instead of waiting silently."""
        if self.election_error is None:
            self.election_error = (f"the broker refuses session_timeout_ms={self.session_timeout_ms} for the writer "
                                   f"election ({reason}); use a value within the broker's group.min.session."
                                   "timeout.ms and group.max.session.timeout.ms (6000 to 1800000 by default)")
            log.error("raw writer %s of %s: %s", self.member, self.dataset.name, self.election_error)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        if any(p.partition == 0 for p in partitions):
            with self._lock:
                self._assigned = True

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        if any(p.partition == 0 for p in partitions):
            with self._lock:
                if self._leader:
                    log.warning("raw writer %s lost the leadership of %s", self.member, self.dataset.name)
                self._assigned = self._leader = False
                self._marker = None

    def _election_loop(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._election.poll(0 if self._tail is not None else _POLL_S)
                if msg is not None and msg.error() and msg.error().code() == _INVALID_SESSION_TIMEOUT:
                    self._refused(msg.error().str())
                elif msg is not None and not msg.error():
                    self._observe_leader(msg.value())
                msg = self._watch.poll(0)
                if msg is not None and not msg.error():
                    self._observe_leader(msg.value())
                tail = self._tail
                if tail is not None:
                    with self._lock:
                        leading, own = self._leader, dict(self._own_ends)
                    # leading: every write to the changes topic is ours (the fence), known from our commits; the
                    # broker need not send each one back. Standing by: from the end of our last commit, so what an
                    # uncertain commit may have landed is read, and every later leader's writes.
                    if leading:
                        tail.detach()
                    else:
                        tail.attach(own)
                    tail.poll(_POLL_S)
                with self._lock:
                    acquire = self._assigned and not self._leader and self._marker is None
                if acquire:
                    self._acquire()
            except Exception as e:  # the election survives broker hiccups; leadership is lost and retried
                self._step_down(f"{type(e).__name__}: {e}")
                log.warning("raw writer election of %s: %s", self.dataset.name, e)
                time.sleep(_POLL_S)
        for consumer in (self._election, self._watch):
            try:
                consumer.close()  # the election consumer leaves the group: a standby takes over now
            except Exception as e:
                log.warning("closing the election consumers: %s", e)

    def _observe_leader(self, value: bytes | None) -> None:
        try:
            record = json.loads(value or b"{}")
        except ValueError:
            return
        with self._lock:
            self._leader_address = record.get("http")
            if self._marker is not None and record.get("marker") == self._marker:
                self._marker = None  # read back: _acquire goes on to read the changes to their end

    def _observe_change(self, partition: int, offset: int, key: bytes, value: bytes | None) -> None:
        with self._lock:
            old = self._versions.get(key)
            if old is None or old[0] < offset:
                self._versions[key] = (offset, _digest(value))

    def _acquire(self) -> None:
        """Fence the previous leader, announce ourselves, read the log to its end; then accept writes."""
        ds = self.dataset
        # the fence: the coordinator bumps the transactional id's epoch, so nothing an earlier leader sends lands
        producer = open_transactions(ds.config(), f"raw-writer-{ds.name}",
                                     transaction_timeout_ms=self.transaction_timeout_ms,
                                     client_id=f"raw-writer-{self.member}", timeout_s=_ACQUIRE_TIMEOUT_MS / 1000)
        marker = f"{self.member}-{uuid.uuid4().hex[:8]}"
        with self._lock:
            self._marker = marker
        try:
            producer.commit([Outgoing(ds.writer_topic, 0, b"leader", json.dumps(
                {"member": self.member, "http": self.http_address, "marker": marker}).encode())],
                _ACQUIRE_TIMEOUT_MS / 1000)
        except BaseException:
            producer.close()
            raise
        installed = False
        try:
            deadline = time.monotonic() + _ACQUIRE_TIMEOUT_MS / 1000
            while True:
                with self._lock:
                    if self._marker is None or not self._assigned:
                        break
                if self._stop.is_set():
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError("did not read back the leader record in time")
                msg = self._election.poll(_POLL_S)
                if msg is not None and not msg.error():
                    self._observe_leader(msg.value())
            tail = self._tail
            assert tail is not None
            with self._lock:
                own = dict(self._own_ends)
            tail.attach(own)  # detached if this writer led until a moment ago (a commit failed since)
            tail.read_to(tail.high_watermarks(_ACQUIRE_TIMEOUT_MS), _ACQUIRE_TIMEOUT_MS)
            with self._lock:
                if self._holds_partition() and not self._stop.is_set():
                    self._producer = producer
                    installed = True
                    self._leader = True
                    self._counts["terms"] += 1
                    log.info("raw writer %s leads %s (%d keys)", self.member, ds.name, len(self._versions))
        finally:
            if not installed:  # not leading after all: its connections go now
                producer.close()

    def _holds_partition(self) -> bool:
        return self._assigned  # changed by the group callbacks meanwhile (a method keeps mypy from narrowing)

    def _step_down(self, why: str) -> None:
        with self._lock:
            self._last_error = why
            self._leader = False
            self._marker = None
            # a fenced or doubtful producer is not used again; the next term makes one (re-taking leadership while
            # still assigned: a new producer fences our own doubtful transaction)
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close()

    # -- writing ---------------------------------------------------------------------------------------------

    def _op(self, type_name: str, key: tuple[object, ...], value: bytes | None, if_version: Any,
            if_content: Any) -> _Op:
        _check_condition(if_version)
        if if_content is not ANY and if_content is not None and self.dataset.key_of(if_content) != (type_name, key):
            raise ValueError(f"if_content must be a record with the key {type_name} {key}, or None")
        kb = self.dataset.key_bytes(type_name, key)
        wanted = if_content if if_content is ANY or if_content is None else _digest(encode_record(if_content))
        return _Op(kb, self.dataset.partition_of(kb), value, if_version, wanted, _digest(value),
                   if_version is not ANY or wanted is not ANY)

    def _put_op(self, record: object, if_version: Any, if_content: Any = ANY) -> _Op:
        type_name, key = self.dataset.key_of(record)
        # a record the producer could not write (a field not of its type, a number out of its Java type's range)
        # would be skipped there after being acknowledged here: refuse it now
        _, value = checked_json(record)
        with self._scratch_lock:
            if self._scratch_adds % _SCRATCH_RECORDS_MAX == 0:  # a fresh engine now and then: bounded memory
                self._scratch = ObjectMapper(WriteStateEngine())
            self._scratch_adds += 1
            try:
                self._scratch.add(record)
            except HollowError as e:
                raise ValueError(f"{type_name} {key}: {e}") from e
        op = self._op(type_name, key, value, if_version, if_content)
        size = len(op.key) + len(op.value or b"")
        if size > self.record_bytes_max:  # the client would refuse it in the middle of a batch
            raise ValueError(f"{type_name} {key}: {size} bytes of key and JSON, over record_bytes_max="
                             f"{self.record_bytes_max}")
        return op

    def _delete_op(self, type_: str | type, key: object, if_version: Any, if_content: Any = ANY) -> _Op:
        type_name = type_ if isinstance(type_, str) else self.dataset.type_name(type_)
        return self._op(type_name, key if isinstance(key, tuple) else (key,), None, if_version, if_content)

    def put(self, record: object, *, if_version: Any = ANY, if_content: Any = ANY) -> WriteResult:
        """Insert or replace ``record`` (see :class:`Put`); returns once committed."""
        return self._wait(self.put_async(record, if_version=if_version, if_content=if_content))

    def delete(self, type_: str | type, key: object, *, if_version: Any = ANY, if_content: Any = ANY) -> WriteResult:
        """Delete by primary key (a tuple, or the value of a one-field key); returns once committed."""
        return self._wait(self.delete_async(type_, key, if_version=if_version, if_content=if_content))

    def bulk(self, operations: Iterable[Put | Delete]) -> BulkResult:
        """All the operations in one transaction, or none: every condition is checked first."""
        return self._wait(self.bulk_async(operations))

    def put_async(self, record: object, *, if_version: Any = ANY, if_content: Any = ANY) -> Future[WriteResult]:
        """:meth:`put` without waiting: the future's result is the :class:`WriteResult` once committed, or it
        raises what ``put`` would. Many writes in flight from one caller share transactions (pipelining);
        callbacks added to the future run on the commit thread, so keep them short. A bad record, a writer that does
        not lead, or a full queue for ``write_timeout_ms`` raises here; the writes of a key land in the order
        they were submitted."""
        return self._submit([self._put_op(record, if_version, if_content)], _write_result)

    def delete_async(self, type_: str | type, key: object, *, if_version: Any = ANY,
                     if_content: Any = ANY) -> Future[WriteResult]:
        """:meth:`delete` without waiting (see :meth:`put_async`)."""
        return self._submit([self._delete_op(type_, key, if_version, if_content)], _write_result)

    def bulk_async(self, operations: Iterable[Put | Delete]) -> Future[BulkResult]:
        """:meth:`bulk` without waiting (see :meth:`put_async`)."""
        ops = []
        for o in operations:
            if isinstance(o, Put):
                ops.append(self._put_op(o.record, o.if_version, o.if_content))
            elif isinstance(o, Delete):
                ops.append(self._delete_op(o.type_name, o.key, o.if_version, o.if_content))
            else:
                raise TypeError(f"bulk takes Put and Delete, not {type(o).__name__}")
        if not ops:
            raise ValueError("an empty bulk")
        if len(ops) > self.batch_ops_max:
            raise ValueError(f"a bulk of {len(ops)} operations is over batch_ops_max={self.batch_ops_max}")
        return self._submit(ops, _bulk_result)

    def version_of(self, type_: str | type, key: object) -> int | None:
        """The version of a record as this writer knows it (authoritative while it leads); None if absent."""
        op = self._delete_op(type_, key, ANY)
        with self._lock:
            v = self._versions.get(op.key)
        return v[0] if v is not None and v[1] is not None else None

    def _wait(self, future: Future[T]) -> T:
        try:
            return future.result(self.write_timeout_ms / 1000 + 5)
        except FutureTimeout:
            raise WriteError(f"no answer from the commit thread in {self.write_timeout_ms} ms",
                             uncertain=True) from None

    def _submit(self, ops: list[_Op], shape: Callable[[list[int], Token], T]) -> Future[T]:
        request = _Request(ops, shape)
        deadline = time.monotonic() + self.write_timeout_ms / 1000
        with self._lock:
            # pipelined callers wait here for room: the queue is bounded, and nothing of this request is sent yet
            while self._queued_ops + len(ops) > max(self.queued_ops_max, len(ops)) and self._leader:
                if not self._room.wait(deadline - time.monotonic()):
                    raise WriteError(f"{self._queued_ops} operations queued for {self.write_timeout_ms} ms "
                                     f"(queued_ops_max={self.queued_ops_max})")
            if not self._leader:
                raise NotLeaderError(f"writer {self.member} is not the leader of {self.dataset.name}",
                                     self._leader_address)
            self._queue.append(request)
            self._queued_ops += len(ops)
            self._counts["requests"] += 1
            self._queued.notify()
        return request.future

    def _dequeue_all(self) -> list[_Request]:
        """Every queued request, taken off the queue (called with the lock held)."""
        pending = list(self._queue)
        self._queue.clear()
        self._queued_ops = 0
        self._room.notify_all()
        return pending

    def _fail_queue(self, error: Exception) -> None:
        with self._lock:
            pending = self._dequeue_all()
        for r in pending:
            r.fail(error)

    def _commit_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                while not self._queue and not self._stop.is_set():
                    self._queued.wait(0.5)
                if self._stop.is_set():
                    break
                leader, producer = self._leader, self._producer
                if not leader or producer is None:
                    address = self._leader_address
                    pending = self._dequeue_all()
                else:
                    pending = []
                    batch = self._take_batch()
            if pending:
                for r in pending:
                    r.fail(NotLeaderError(f"writer {self.member} is not the leader of {self.dataset.name}", address))
                continue
            assert producer is not None  # a leader has one
            try:
                self._commit(producer, batch)
            except Exception as e:  # a bug here must not kill the commit thread; the callers hear of it
                log.exception("raw writer commit")
                for r in batch:
                    r.fail(WriteError(f"{type(e).__name__}: {e}", uncertain=True))

    def _take_batch(self) -> list[_Request]:
        """The queued requests that fit one transaction (called with the lock held)."""
        batch: list[_Request] = []
        n = 0
        while self._queue and n + len(self._queue[0].ops) <= max(self.batch_ops_max, len(self._queue[0].ops)):
            r = self._queue.popleft()
            batch.append(r)
            n += len(r.ops)
            self._queued_ops -= len(r.ops)
            if n >= self.batch_ops_max:
                break
        if batch:
            self._room.notify_all()
        return batch

    def _commit(self, producer: Transactions, batch: list[_Request]) -> None:
        accepted: list[_Request] = []
        deferred: list[_Request] = []
        pending: set[bytes] = set()  # keys written by the accepted requests
        # keys of deferred requests: later writes to them wait too, so that each key's writes land in the order they
        # were queued (a caller pipelining a conditional write after a plain one relies on it)
        held: set[bytes] = set()
        with self._lock:
            versions = self._versions
            for r in batch:
                ops = r.ops
                if len(ops) == 1 and not ops[0].conditional:  # most requests: one write, nothing to check
                    if ops[0].key in held:
                        deferred.append(r)
                    else:
                        pending.add(ops[0].key)
                        accepted.append(r)
                    continue
                if any((op.conditional and op.key in pending) or op.key in held for op in ops):
                    deferred.append(r)
                    held.update(op.key for op in ops)
                    continue
                # an unconditional request's checks all pass: only a conditional one can fail
                failure = self._failed_condition(ops, versions, pending) if any(op.conditional for op in ops) else None
                if failure is not None:
                    self._counts["conditions"] += 1
                    r.fail(failure)
                    continue
                pending.update(op.key for op in ops)
                accepted.append(r)
            if deferred:
                self._queue.extendleft(reversed(deferred))
                self._queued_ops += sum(len(r.ops) for r in deferred)
        if not accepted:
            return
        topic = self.dataset.changes_topic
        try:
            offsets = producer.commit([Outgoing(topic, op.partition, op.key, op.value)
                                       for r in accepted for op in r.ops], self.write_timeout_ms / 1000)
        except (TransactionFenced, TransactionFailed) as e:
            self._counts["errors"] += 1
            self._failed_commit(accepted, e)
            return
        with self._lock:
            self._counts["transactions"] += 1
            i = 0
            for r in accepted:
                for op in r.ops:
                    off = offsets[i]
                    old = self._versions.get(op.key)
                    if old is None or old[0] < off:
                        self._versions[op.key] = (off, op.digest)
                    if self._own_ends.get(op.partition, 0) <= off:
                        self._own_ends[op.partition] = off + 1
                    r.offsets.append(off)
                    i += 1
        for r in accepted:
            r.succeed()

    @staticmethod
    def _failed_condition(ops: Sequence[_Op], versions: dict[bytes, tuple[int, bytes | None]],
                          pending: set[bytes]) -> ConditionFailed | None:
        """The first condition of a request that does not hold (conditional requests on keys written earlier in
        the same batch never get here: they wait for the next batch)."""
        seen: dict[bytes, tuple[int | None, bytes | None]] = {}  # a bulk's own earlier operations on a key
        for op in ops:
            if op.key in seen:
                current, content = seen[op.key]
            else:
                v = versions.get(op.key)
                current, content = (v[0], v[1]) if v is not None and v[1] is not None else (None, None)
                if op.key in pending:  # unconditional here; written earlier in this batch: version unknown
                    current, content = -1, None
            if op.if_version is not ANY and op.if_version != current:
                wanted = "absent" if op.if_version is None else f"version {op.if_version}"
                return ConditionFailed(f"{op.key.decode()}: wanted {wanted}, found "
                                       f"{'absent' if current is None else f'version {current}'}",
                                       current, op.key.decode())
            if op.if_content is not ANY and op.if_content != content:
                wanted = "absent" if op.if_content is None else "the content given"
                return ConditionFailed(f"{op.key.decode()}: wanted {wanted}, found "
                                       f"{'absent' if current is None else f'other content (version {current})'}",
                                       current, op.key.decode())
            seen[op.key] = (-1, op.digest) if op.value is not None else (None, None)
        return None

    def _failed_commit(self, accepted: list[_Request], e: TransactionFenced | TransactionFailed) -> None:
        if isinstance(e, TransactionFenced):
            with self._lock:
                self._counts["fenced"] += 1
                address = self._leader_address
            self._step_down(f"fenced: {e}")
            error: Exception = NotLeaderError(f"writer {self.member} was fenced by a newer leader: {e}", address)
        else:
            self._step_down(f"commit failed: {e}")
            error = WriteError(f"{self.dataset.changes_topic}: {e}", uncertain=e.uncertain)
        for r in accepted:
            r.fail(error)

    def statistics(self) -> WriterStatistics:
        with self._lock:
            c = self._counts
            return WriterStatistics(self._leader, c["terms"], c["fenced"], len(self._versions), c["requests"],
                                    c["transactions"], c["conditions"], c["errors"], self._last_error)
