"""The producer: cycles that turn a populate function into published, checked, validated, announced versions.

Theory of operation
-------------------
:meth:`Producer.run_cycle` drives the pure state machine of ``_cycle`` and carries out its effects:

1. *populate*: the write engine starts a cycle and the caller's function adds every record of the new state
   (or, in :meth:`Producer.run_incremental_cycle`, the changes: the previous state is kept and records are
   replaced or deleted by primary key, see ``_incremental``).  If nothing changed, the cycle is a no-op and the
   version stays.
2. *publish*: header tags are set (Java's: schema hash, to-version, delta chain counter, ...), then the snapshot,
   delta, reverse delta and header blobs are written; each but the header gets its digest (``_blobs``).
   The header, delta and reverse delta are published, and the snapshot when it is due.
3. *check* (integrity): the snapshot is loaded into a fresh read state; the reverse delta, applied to it, must
   give the checksum of the previous state, and the delta, applied to the previous state, must give the
   snapshot's checksum (Java ``checkIntegrity``).  Both directions are proven before anything is announced, so
   every consumer path (snapshot, delta, reverse delta) leads to the same data.
4. *validate*: every validator sees the new and the previous state.
5. *announce*: the announcer makes the version current.

Any failure rolls back: the write engine forgets the cycle, the read state is the previous one (verified by
the reverse delta when the failure came after the check), and the error is raised to the caller.  Published
but unannounced blobs stay behind as orphans; the next cycle's transition from the same version reaches
further, which is what retrievers pick.

The producer keeps the read state of its announced version: the base of the next integrity check, the prior
state of incremental cycles, and -- after :meth:`Producer.restore` -- what lets a restarted producer continue the
same delta chain (its records keep their ordinals).

Garbage collection: the write engine holds every record as a Python tuple in a few huge dicts and lists.
Python's cyclic collector walks those containers on each full collection, and a populate that allocates
millions of short-lived objects triggers dozens of them -- half of a large cycle's time.  With ``pause_gc`` (the
default) automatic collection is paused while a cycle runs and restored afterwards; reference counting still
frees everything that is not part of a reference cycle at once.

Leadership: with a :class:`LeaderElection`, a producer that is not the leader skips its cycles but follows the
announced versions (when it has a watcher), so it is a *hot standby*: on becoming leader it catches up to the
last announced version and restores from the state it already holds, then cycles.  Publishing deltas and
announcing re-check leadership; the announcer itself must fence a deposed leader (``KafkaAnnouncer`` does).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, TypeAlias

from loosely.hollow.api import _cycle as cy
from loosely.hollow.api._blobs import TO_VERSION_TAG, BlobRef, Version, add_digest
from loosely.hollow.api._clock import (
    AlwaysLeader,
    Clock,
    LeaderElection,
    SystemClock,
    TimestampVersionMinter,
    VersionMinter,
)
from loosely.hollow.api._incremental import IncrementalWriteState, PriorKeyIndexes, apply_changes
from loosely.hollow.api._interfaces import AnnouncementWatcher, Announcer, BlobRetriever, NotLeaderError, Publisher
from loosely.hollow.api._planning import fetch, load_version, plan_update
from loosely.hollow.api._validators import (
    ValidationContext,
    ValidationError,
    ValidationResult,
    Validator,
    run_validators,
)
from loosely.hollow.core import (
    HollowError,
    ObjectMapper,
    ReadStateEngine,
    Schema,
    WriteStateEngine,
    schema_hash,
)

__all__ = [
    "BlobPublished",
    "ChecksumMismatchError",
    "CycleCompleted",
    "CycleMetrics",
    "CycleStarted",
    "CycleStatus",
    "Producer",
    "ProducerEvent",
    "ProducerListener",
    "ProducerStatistics",
    "Restored",
    "StageCompleted",
    "WriteState",
]

log = logging.getLogger(__name__)

# Java's header tag names (HollowStateEngine / AbstractHollowProducer)
TAG_SCHEMA_HASH: Final = "hollow.schema.hash"
TAG_SCHEMA_CHANGED: Final = "hollow.schema.changedFromPriorVersion"
TAG_CHAIN_COUNTER: Final = "hollow.delta.chain.version.counter"
TAG_CYCLE_START: Final = "hollow.metric.cycle.start"
TAG_RESHARDING: Final = "hollow.type.resharding.invoked"
TAG_PARTITIONED: Final = "hollow.partitioned.ordinal.map"
TARGET_MAX_TYPE_SHARD_BYTES: Final = 16 << 20  # Java HollowProducer's DEFAULT_TARGET_MAX_TYPE_SHARD_SIZE


class ChecksumMismatchError(HollowError):
    """The integrity check failed: a delta or reverse delta does not lead to the state its snapshot holds."""


class _GcPause:
    """Pauses automatic cyclic garbage collection while any cycle runs (pauses are counted across threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pauses = 0
        self._was_enabled = False

    @contextlib.contextmanager
    def __call__(self, pause: bool) -> Iterator[None]:
        if not pause:
            yield
            return
        with self._lock:
            if self._pauses == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._pauses += 1
        try:
            yield
        finally:
            with self._lock:
                self._pauses -= 1
                if self._pauses == 0 and self._was_enabled:
                    gc.enable()


_gc_paused = _GcPause()


class CycleStatus:
    """How a cycle ended (the ``status`` of :class:`CycleCompleted`)."""

    ANNOUNCED = "announced"
    NO_CHANGE = "no change"
    NOT_LEADER = "not leader"
    FAILED = "failed"


# -- listener events --


@dataclass(frozen=True, slots=True)
class CycleStarted:
    """A cycle started populating ``version`` (listener event)."""

    version: Version


@dataclass(frozen=True, slots=True)
class StageCompleted:
    """One stage of a cycle ended, with its duration and error (listener event)."""

    version: Version
    stage: cy.Stage
    duration_ms: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BlobPublished:
    """A blob went to the publisher (listener event)."""

    ref: BlobRef
    size_bytes: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class CycleMetrics:
    """What one cycle did and cost (sizes in bytes, 0 for blobs the cycle did not write)."""

    version: Version
    duration_ms: int
    stage_ms: dict[str, int]
    snapshot_bytes: int
    delta_bytes: int
    reverse_delta_bytes: int
    header_bytes: int
    snapshot_published: bool
    records: dict[str, int]


@dataclass(frozen=True, slots=True)
class CycleCompleted:
    """A cycle ended: announced, no change, not leader, or failed (listener event)."""

    version: Version | None
    status: str
    duration_ms: int
    error: str | None = None
    metrics: CycleMetrics | None = None
    validation: tuple[ValidationResult, ...] = ()


@dataclass(frozen=True, slots=True)
class Restored:
    """The producer restored its state from ``version`` (listener event)."""

    version: Version
    duration_ms: int


ProducerEvent: TypeAlias = CycleStarted | StageCompleted | BlobPublished | CycleCompleted | Restored
ProducerListener: TypeAlias = Callable[[ProducerEvent], None]


@dataclass(frozen=True, slots=True)
class ProducerStatistics:
    """A producer's counters and last cycle, for dashboards and tests."""

    version: Version | None
    leader: bool
    cycles: int
    announced: int
    no_change: int
    not_leader: int
    failed: int
    restores: int
    last_cycle: CycleMetrics | None
    last_error: str | None


class WriteState:
    """What a populate function gets: add records (objects via the mapper, or by type and values)."""

    def __init__(self, producer: Producer, version: Version) -> None:
        self.version = version
        self.engine: WriteStateEngine = producer._write
        self.mapper: ObjectMapper = producer._mapper
        self.prior: ReadStateEngine | None = producer._read
        self._added = 0

    def add(self, obj: object) -> int:
        """Add a dataclass / NamedTuple instance and everything it references; returns its ordinal."""
        self._added += 1
        return self.mapper.add(obj)

    def add_all(self, objs: Iterable[object]) -> int:
        """Add many objects in one compiled loop (a generator is consumed as it goes); returns how many."""
        n = self.mapper.add_all(objs)
        self._added += n
        return n

    def add_object(self, type_name: str, values: dict[str, object] | Sequence[object]) -> int:
        self._added += 1
        return self.engine.add_object(type_name, values)  # type: ignore[arg-type]

    @property
    def records_added(self) -> int:
        return self._added


@dataclass(slots=True)
class _Artifacts:
    version: Version
    snapshot: bytes = b""
    delta: bytes | None = None
    reverse: bytes | None = None
    header: bytes = b""
    snapshot_published: bool = False
    schema_changed: bool = False
    stage_ms: dict[str, int] = field(default_factory=dict)
    new_state: ReadStateEngine | None = None
    old_state: ReadStateEngine | None = None
    moved_forward: ReadStateEngine | None = None  # unverified: moved by the delta, to move back on rollback
    validation: tuple[ValidationResult, ...] = ()


Populator: TypeAlias = Callable[[WriteState], None]


class Producer:
    """A Hollow producer (Java ``HollowProducer``): publish, check, validate and announce new versions.

    >>> from dataclasses import dataclass
    >>> from loosely.hollow.api import InMemoryBlobStore, Consumer
    >>> from loosely.hollow.core import hollow_type
    >>> @hollow_type(primary_key=("id",))
    ... @dataclass
    ... class Movie:
    ...     id: int
    ...     title: str
    >>> store = InMemoryBlobStore()
    >>> producer = Producer(publisher=store, announcer=store, data_model=[Movie])
    >>> v1 = producer.run_cycle(lambda state: state.add(Movie(1, "The Matrix")))
    >>> producer.run_cycle(lambda state: state.add(Movie(1, "The Matrix"))) == v1    # nothing changed
    True
    >>> v2 = producer.run_cycle(lambda state: state.add_all([Movie(1, "The Matrix"), Movie(2, "Alien")]))
    >>> [ref.name.split("-")[0] for ref in store.refs()].count("delta")
    1
    >>> consumer = Consumer(retriever=store, watcher=store)
    >>> consumer.refresh() == v2
    True
    """

    def __init__(
        self,
        *,
        publisher: Publisher,
        announcer: Announcer,
        retriever: BlobRetriever | None = None,
        watcher: AnnouncementWatcher | None = None,
        data_model: Iterable[type] = (),
        schemas: Iterable[Schema] = (),
        validators: Sequence[Validator] = (),
        listeners: Sequence[ProducerListener] = (),
        leader: LeaderElection | None = None,
        version_minter: VersionMinter | None = None,
        clock: Clock | None = None,
        snapshot_every_cycles: int = 1,
        integrity_check: bool = True,
        target_max_type_shard_size: int = TARGET_MAX_TYPE_SHARD_BYTES,
        num_shards: dict[str, int] | None = None,
        require_digest: bool = True,
        pause_gc: bool = True,
    ) -> None:
        self.publisher = publisher
        self.announcer = announcer
        self.retriever = retriever
        self.watcher = watcher
        self.validators = list(validators)
        self.listeners = list(listeners)
        self.leader: LeaderElection = leader or AlwaysLeader()
        self.clock: Clock = clock or SystemClock()
        self.minter: VersionMinter = version_minter or TimestampVersionMinter(self.clock)
        self.integrity_check = integrity_check
        self.require_digest = require_digest  # for blobs read back (restore, standby): False for a Java chain
        self.pause_gc = pause_gc
        self.target_max_type_shard_size = target_max_type_shard_size
        self._num_shards = dict(num_shards or {})
        self._classes = list(data_model)
        self._schemas = list(schemas)
        self._lock = threading.RLock()
        self._cycle = cy.CycleState(snapshot_every_cycles=snapshot_every_cycles)
        self._read: ReadStateEngine | None = None
        self._term = 0  # the leadership term the write engine was restored for
        self._key_indexes = PriorKeyIndexes()
        self._counts = {"cycles": 0, "announced": 0, "no_change": 0, "not_leader": 0, "failed": 0, "restores": 0}
        self._last_cycle: CycleMetrics | None = None
        self._last_error: str | None = None
        self._write, self._mapper = self._new_write_engine()

    # -- data model --

    def _new_write_engine(self) -> tuple[WriteStateEngine, ObjectMapper]:
        w = WriteStateEngine(target_max_type_shard_size=self.target_max_type_shard_size)
        for s in self._schemas:
            w.add_type(s, self._num_shards.get(s.name))
        m = ObjectMapper(w)
        for cls in self._classes:
            m.initialize_type(cls)
        return w, m

    def initialize_data_model(self, *classes: type) -> None:
        """Register dataclasses (and everything they reference) before the first cycle or a restore."""
        with self._lock:
            for cls in classes:
                if cls not in self._classes:
                    self._classes.append(cls)
                    self._mapper.initialize_type(cls)

    @property
    def write_engine(self) -> WriteStateEngine:
        return self._write

    @property
    def mapper(self) -> ObjectMapper:
        return self._mapper

    @property
    def read_state(self) -> ReadStateEngine | None:
        """The state of the announced version (None before the first cycle or restore)."""
        return self._read

    @property
    def version(self) -> Version | None:
        return self._cycle.announced

    # -- listeners --

    def add_listener(self, listener: ProducerListener) -> None:
        self.listeners.append(listener)

    def _emit(self, event: ProducerEvent) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # a listener's bug must not fail the cycle (Java logs and goes on too)
                log.exception("producer listener %r failed on %s", listener, type(event).__name__)

    # -- restore and standby --

    def restore(self, version: Version | None, *, engine: ReadStateEngine | None = None) -> Version | None:
        """Continue the delta chain of ``version`` (Java ``restore``): load it (or take ``engine``, which must
        hold it and which the producer then owns) and restore the write state from it, so records keep their
        ordinals and the next cycle publishes a delta from ``version``.  ``None``: start a new chain."""
        with self._lock:
            started = self.clock.monotonic_ms()
            if version is None:
                self._write, self._mapper = self._new_write_engine()
                self._set_read(None)
                self._cycle, _ = cy.step(self._cycle, cy.Restored(None), self.clock.now_ms())
                self._term = self.leader.term()
                return None
            if engine is None:
                if self.retriever is None:
                    raise HollowError("restore needs a retriever (or a read state engine holding the version)")
                engine = load_version(self.retriever, version, require_digest=self.require_digest)
            tagged = engine.header_tags.get(TO_VERSION_TAG)
            if tagged is not None and tagged.lstrip("-").isdigit() and int(tagged) != version:
                raise HollowError(f"restore: the state holds version {tagged}, not {version}")
            w, m = self._new_write_engine()
            w.restore_from(engine)
            self._write, self._mapper = w, m
            self._set_read(engine)
            self._cycle, _ = cy.step(self._cycle, cy.Restored(version), self.clock.now_ms())
            self._term = self.leader.term()
            self._counts["restores"] += 1
            self._emit(Restored(version, self.clock.monotonic_ms() - started))
            return version

    def _set_read(self, engine: ReadStateEngine | None) -> None:
        if engine is not self._read:
            self._key_indexes.close()
        self._read = engine

    def follow(self) -> Version | None:
        """Move the read state to the announced version (a standby's catch-up); returns the version held."""
        with self._lock:
            if self.watcher is None or self.retriever is None:
                return self._cycle.announced
            target = self.watcher.latest_version()
            current = self._cycle.announced
            if target is None or target == current:
                return current
            plan = plan_update(self.retriever, current, target)
            if plan.destination != target:
                raise HollowError(f"no path in the blob store from {current} to the announced version {target}")
            fetched = [fetch(b, require_digest=self.require_digest) for b in plan.blobs]
            engine = self._read
            for f in fetched:
                if plan.snapshot and f is fetched[0]:
                    engine = ReadStateEngine.from_snapshot(f.data)
                else:
                    assert engine is not None
                    engine.apply_delta(f.data)
            self._set_read(engine)
            self._cycle = replace(self._cycle, announced=target)
            return target

    def _ensure_term(self) -> None:
        """A new leadership term: catch up with what the previous leader announced, then restore from it."""
        term = self.leader.term()
        if term == self._term:
            return
        self.follow()
        self.restore(self._cycle.announced, engine=self._read)
        self._term = term

    # -- cycles --

    def run_cycle(self, populate: Populator) -> Version | None:
        """Run one cycle; returns the announced version (the previous one when nothing changed or this producer
        is not the leader).  A failure rolls back and raises."""
        return self._run(populate)

    def run_incremental_cycle(self, populate: Callable[[IncrementalWriteState], None]) -> Version | None:
        """Run a cycle from changes only: ``populate`` calls ``add_or_modify`` / ``add_if_absent`` / ``delete``;
        every other record of the previous state is kept (Java ``HollowProducer.Incremental``)."""
        changes = IncrementalWriteState(self._mapper)
        populate(changes)

        def apply(state: WriteState) -> None:
            state.engine.add_header_tags(changes.header_tags)
            apply_changes(state.engine, state.add, self._read, self._key_indexes, changes)

        return self._run(apply)

    def _run(self, populate: Populator) -> Version | None:
        with self._lock, _gc_paused(self.pause_gc):
            leader = self.leader.is_leader()
            self._counts["cycles"] += 1
            if leader:
                try:
                    self._ensure_term()
                except HollowError as e:
                    self._counts["failed"] += 1
                    self._last_error = f"catching up for a new leadership term: {e}"
                    raise
                version = self.minter.mint(self._cycle.announced)
            else:
                self._follow_quietly()
                version = Version(0)
            state, effects = cy.step(self._cycle, cy.CycleRequested(version, leader), self.clock.now_ms())
            self._cycle = state
            artifacts = _Artifacts(version)
            pending = list(effects)
            error: BaseException | None = None
            while pending:
                fx = pending.pop(0)
                event: cy.CycleEvent | None = None
                if isinstance(fx, cy.Skip):
                    return self._skipped(fx)
                if isinstance(fx, cy.Commit):
                    self._commit(artifacts, fx)
                    return fx.version
                if isinstance(fx, cy.Rollback):
                    self._rollback(artifacts, fx)
                    assert error is not None
                    raise error
                stage = self._cycle.stage
                t0 = self.clock.monotonic_ms()
                try:
                    event = self._execute(fx, artifacts, populate)
                except Exception as e:
                    error = e
                    event = cy.Failed(f"{type(e).__name__}: {e}")
                took = self.clock.monotonic_ms() - t0
                artifacts.stage_ms[stage.value] = took
                self._emit(StageCompleted(version, stage, took, event.error if isinstance(event, cy.Failed) else None))
                self._cycle, more = cy.step(self._cycle, event, self.clock.now_ms())
                pending.extend(more)
            return self._cycle.announced

    def _follow_quietly(self) -> None:
        try:
            self.follow()
        except HollowError as e:  # a standby that cannot follow now catches up when it becomes leader
            log.warning("standby producer could not follow the announced version: %s", e)

    def _skipped(self, fx: cy.Skip) -> Version | None:
        if fx.reason is cy.SkipReason.NO_CHANGE:
            self._write.reset_to_last_prepare_for_next_cycle()
            self._counts["no_change"] += 1
            status = CycleStatus.NO_CHANGE
        else:
            self._counts["not_leader"] += 1
            status = CycleStatus.NOT_LEADER
        self._emit(CycleCompleted(fx.version, status, 0))
        return fx.version

    def _execute(self, fx: cy.Effect, a: _Artifacts, populate: Populator) -> cy.CycleEvent:
        if isinstance(fx, cy.Populate):
            self._emit(CycleStarted(fx.version))
            self._write.prepare_for_next_cycle()
            self._write.add_header_tag(TAG_CYCLE_START, str(self.clock.now_ms()))
            populate(WriteState(self, fx.version))
            return cy.Populated(self._write.has_changed_since_last_cycle())
        if isinstance(fx, cy.Publish):
            self._publish(fx, a)
            return cy.Published()
        if isinstance(fx, cy.Check):
            self._check(a)
            return cy.Checked()
        if isinstance(fx, cy.Validate):
            assert a.new_state is not None
            ctx = ValidationContext(fx.version, a.new_state, a.old_state, self._cycle.announced)
            a.validation = tuple(run_validators(self.validators, ctx))
            if not all(r.passed for r in a.validation):
                raise ValidationError(a.validation)
            return cy.Validated()
        if isinstance(fx, cy.Announce):
            if not self.leader.is_leader():
                raise NotLeaderError("leadership was lost during the cycle; not announcing")
            self.announcer.announce(fx.version)
            return cy.Announced()
        raise AssertionError(f"unexpected effect {fx!r}")

    def _update_header_tags(self, version: Version) -> bool:
        w = self._write
        previous = self._read
        changed = previous is not None and {s.name: s for s in previous.schemas} != {s.name: s for s in w.schemas}
        w.add_header_tag(TAG_SCHEMA_HASH, schema_hash(w.schemas))
        if changed:
            w.add_header_tag(TAG_SCHEMA_CHANGED, "true")
        else:
            w.remove_header_tag(TAG_SCHEMA_CHANGED)
        w.add_header_tag(TO_VERSION_TAG, str(version))
        w.remove_header_tag(TAG_RESHARDING)
        counter = 0
        if previous is not None:
            raw = previous.header_tags.get(TAG_CHAIN_COUNTER, "0")
            counter = int(raw) if raw.isdigit() else 0
        w.add_header_tag(TAG_CHAIN_COUNTER, str(counter + 1))
        w.add_header_tag(TAG_PARTITIONED, "false")
        return changed

    def _put(self, ref: BlobRef, data: bytes) -> None:
        t0 = self.clock.monotonic_ms()
        self.publisher.publish(ref, data)
        self._emit(BlobPublished(ref, len(data), self.clock.monotonic_ms() - t0))

    def _publish(self, fx: cy.Publish, a: _Artifacts) -> None:
        a.schema_changed = self._update_header_tags(fx.version)
        w = self._write
        a.snapshot = add_digest(w.write_snapshot())
        a.header = w.write_header()
        previous = self._cycle.announced
        if fx.delta:
            assert previous is not None
            a.delta = add_digest(w.write_delta())
            a.reverse = add_digest(w.write_reverse_delta())
        if not self.leader.is_leader():  # Java checks before the deltas; before anything is cheaper still
            raise NotLeaderError("leadership was lost during the cycle; not publishing")
        self._put(BlobRef.header(fx.version), a.header)
        if fx.delta:
            assert previous is not None and a.delta is not None and a.reverse is not None
            self._put(BlobRef.delta(previous, fx.version), a.delta)
            self._put(BlobRef.reverse_delta(fx.version, previous), a.reverse)
        if fx.snapshot:
            self._put(BlobRef.snapshot(fx.version), a.snapshot)
            a.snapshot_published = True

    def _check(self, a: _Artifacts) -> None:
        """Java ``checkIntegrity``, ordered so a failure always leaves a verified previous state behind."""
        current = self._read
        pending = ReadStateEngine.from_snapshot(a.snapshot)
        if current is None or a.delta is None or a.reverse is None:
            a.new_state, a.old_state = pending, current
            return
        if not self.integrity_check:
            current.apply_delta(a.delta)
            a.moved_forward = current
            a.new_state = current if not a.schema_changed else pending
            return
        cur_sum = current.checksum(common_with=pending)
        pnd_sum = pending.checksum(common_with=current)
        # Reverse first: if it fails, ``current`` is untouched and still the producer's state.
        pending.apply_delta(a.reverse)
        back = pending.checksum(common_with=current)
        if back.value != cur_sum.value:
            raise ChecksumMismatchError(f"reverse delta leads to checksum {back.hex()}, expected {cur_sum.hex()}")
        # ``pending`` now holds the previous state, verified; it is the fallback if the forward check fails.
        a.old_state = pending
        current.apply_delta(a.delta)
        fwd = current.checksum(common_with=pending)
        if fwd.value != pnd_sum.value:
            raise ChecksumMismatchError(f"delta leads to checksum {fwd.hex()}, expected {pnd_sum.hex()}")
        # With a changed schema the delta skipped new types on ``current``; take the snapshot's state instead.
        a.new_state = ReadStateEngine.from_snapshot(a.snapshot) if a.schema_changed else current

    def _commit(self, a: _Artifacts, fx: cy.Commit) -> None:
        assert a.new_state is not None
        self._set_read(a.new_state)
        self._counts["announced"] += 1
        self._last_error = None
        records = {t.name: t.record_count() for t in a.new_state.types()}
        metrics = CycleMetrics(
            fx.version, fx.duration_ms, dict(a.stage_ms), len(a.snapshot), len(a.delta or b""),
            len(a.reverse or b""), len(a.header), a.snapshot_published, records,
        )
        self._last_cycle = metrics
        self._emit(CycleCompleted(fx.version, CycleStatus.ANNOUNCED, fx.duration_ms, metrics=metrics,
                                  validation=a.validation))

    def _rollback(self, a: _Artifacts, fx: cy.Rollback) -> None:
        self._write.reset_to_last_prepare_for_next_cycle()
        if a.moved_forward is not None and a.reverse is not None:
            a.moved_forward.apply_delta(a.reverse)  # Java's rollback without an integrity check
        elif a.old_state is not None and a.old_state is not self._read:
            # The forward check moved (or may have moved) ``current``; the reverse-verified copy replaces it.
            self._set_read(a.old_state)
        self._counts["failed"] += 1
        self._last_error = f"{fx.stage.value}: {fx.error}"
        log.warning("producer cycle %s failed in %s: %s", fx.version, fx.stage.value, fx.error)
        self._emit(CycleCompleted(fx.version, CycleStatus.FAILED, fx.duration_ms, error=self._last_error,
                                  validation=a.validation))

    def statistics(self) -> ProducerStatistics:
        with self._lock:
            c = self._counts
            return ProducerStatistics(
                self._cycle.announced, self.leader.is_leader(), c["cycles"], c["announced"], c["no_change"],
                c["not_leader"], c["failed"], c["restores"], self._last_cycle, self._last_error,
            )
