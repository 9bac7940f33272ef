"""The consumer: load a dataset, keep it current, and keep serving it whatever the store does.

Theory of operation
-------------------
A :class:`Consumer` holds one :class:`ReadStateEngine` (``engine``) at one version.  A refresh moves it to the
wanted version -- the pinned one, else the announced one -- along the plan of ``_planning`` (deltas, reverse
deltas, or a snapshot and deltas):

1. the plan's blobs are fetched and each is checked (header, digest, version) before anything changes;
2. deltas are applied to the live engine one at a time under the *write* side of the refresh lock (each apply is
   all-or-nothing in the core, so readers only ever see whole versions); indexes update from the delta's
   changes under the same lock;
3. a plan that starts with a snapshot builds a new engine beside the serving one (the *double snapshot* when
   something was loaded already: twice the memory for a while), builds the indexes for it, and swaps engine and
   indexes in under the write lock.

Readers who need several reads from one version hold the *read* side: ``with consumer.reading() as engine:``.

When a blob is unreachable or corrupt, the refresh fails and nothing is unloaded: the consumer keeps answering
from the version it has (or from the version a partial chain did reach -- every version on a chain is a complete
published state).  A blob that failed to load is avoided by plans for ``failed_transition_ttl_ms`` (so a double
snapshot can route around a corrupt delta), and the refresh is retried with exponential backoff; the decisions
are the pure state machine of ``_refresh``.  ``start()`` runs the polling and retries in a background thread;
``refresh()`` does one synchronous round and raises :class:`RefreshError` if it could not reach the version.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Final, Protocol, TypeAlias

from loosely.hollow.api import _refresh as rf
from loosely.hollow.api._blobs import BlobIntegrityError, BlobRef, BlobType, Version
from loosely.hollow.api._clock import Clock, SystemClock
from loosely.hollow.api._interfaces import AnnouncementWatcher, BlobRetriever, BlobStoreUnavailableError
from loosely.hollow.api._planning import FetchedBlob, UpdatePlan, fetch, plan_update
from loosely.hollow.api._rwlock import RWLock
from loosely.hollow.core import HollowBlobError, HollowError, ReadStateEngine, UpdateEvent

__all__ = [
    "Consumer",
    "ConsumerStatistics",
    "DeltaApplied",
    "RefreshError",
    "RefreshEvent",
    "RefreshFailed",
    "RefreshListener",
    "RefreshStarted",
    "RefreshSucceeded",
    "SnapshotLoaded",
]

log = logging.getLogger(__name__)

DELTAS_BEFORE_DOUBLE_SNAPSHOT_MAX: Final = 32  # Java DoubleSnapshotConfig.maxDeltasBeforeDoubleSnapshot


class RefreshError(HollowError):
    """A refresh did not reach the wanted version; the consumer still serves ``version``."""

    def __init__(self, message: str, version: Version | None) -> None:
        super().__init__(message)
        self.version = version


# -- refresh listener events --


@dataclass(frozen=True, slots=True)
class RefreshStarted:
    """A refresh began (refresh listener event)."""

    from_version: Version | None
    to_version: Version


@dataclass(frozen=True, slots=True)
class SnapshotLoaded:
    """A snapshot became the state (``double_snapshot``: it replaced a loaded one)."""

    version: Version
    double_snapshot: bool


@dataclass(frozen=True, slots=True)
class DeltaApplied:
    """A delta or reverse delta moved the state (refresh listener event)."""

    from_version: Version
    to_version: Version
    event: UpdateEvent


@dataclass(frozen=True, slots=True)
class RefreshSucceeded:
    """A refresh reached ``to_version`` with ``blobs`` (refresh listener event)."""

    from_version: Version | None
    to_version: Version
    duration_ms: int
    blobs: tuple[BlobRef, ...]


@dataclass(frozen=True, slots=True)
class RefreshFailed:
    """A refresh stopped short of ``to_version``; ``reached`` is what is served (listener event)."""

    from_version: Version | None
    to_version: Version
    reached: Version | None
    error: str


RefreshEvent: TypeAlias = RefreshStarted | SnapshotLoaded | DeltaApplied | RefreshSucceeded | RefreshFailed
RefreshListener: TypeAlias = Callable[[RefreshEvent], None]


class ConsumerIndex(Protocol):
    """What an index does to follow a consumer (implemented by the indexes of ``_indexes``)."""

    def _prepare(self, engine: ReadStateEngine) -> object: ...

    def _install(self, engine: ReadStateEngine, prepared: object) -> None: ...

    def _on_delta(self, engine: ReadStateEngine, event: UpdateEvent) -> None: ...


@dataclass(frozen=True, slots=True)
class ConsumerStatistics:
    """A consumer's counters and state, for dashboards and tests."""

    version: Version | None
    announced: Version | None
    pinned: Version | None
    phase: str
    refreshes: int
    refresh_failures: int
    consecutive_failures: int
    snapshots_loaded: int
    double_snapshots: int
    deltas_applied: int
    reverse_deltas_applied: int
    bytes_fetched: int
    last_refresh_ms: int | None
    retry_at_ms: int | None
    last_error: str | None
    failed_transitions: int


class Consumer:
    """A Hollow consumer (Java ``HollowConsumer``).

    >>> from dataclasses import dataclass, replace
    >>> from loosely.hollow.api import InMemoryBlobStore, Producer
    >>> from loosely.hollow.core import Records
    >>> @dataclass
    ... class Point:
    ...     x: int
    ...     y: int
    >>> store = InMemoryBlobStore()
    >>> producer = Producer(publisher=store, announcer=store, data_model=[Point])
    >>> v1 = producer.run_cycle(lambda s: s.add(Point(1, 2)))
    >>> consumer = Consumer(retriever=store, watcher=store)
    >>> consumer.refresh() == v1
    True
    >>> with consumer.reading() as engine:
    ...     [p.values() for p in Records(engine).all("Point")]
    [(1, 2)]
    >>> store.available = False
    >>> consumer.refresh()    # the store is down: the refresh fails, the consumer still serves v1
    Traceback (most recent call last):
    ...
    loosely.hollow.api._consumer.RefreshError: announcement watcher: the in-memory blob store is switched off
    >>> consumer.version == v1
    True
    """

    def __init__(
        self,
        *,
        retriever: BlobRetriever,
        watcher: AnnouncementWatcher | None = None,
        clock: Clock | None = None,
        listeners: Sequence[RefreshListener] = (),
        deltas_max: int = DELTAS_BEFORE_DOUBLE_SNAPSHOT_MAX,
        allow_double_snapshot: bool = True,
        require_digest: bool = True,
        poll_interval_ms: int = 1_000,
        backoff_ms_min: int = 500,
        backoff_ms_max: int = 30_000,
        failed_transition_ttl_ms: int = 60_000,
        rng: random.Random | None = None,
    ) -> None:
        if deltas_max < 1 or poll_interval_ms < 1 or failed_transition_ttl_ms < 0:
            raise ValueError("deltas_max and poll_interval_ms must be positive, failed_transition_ttl_ms >= 0")
        self.retriever = retriever
        self.watcher = watcher
        self.clock: Clock = clock or SystemClock()
        self.listeners = list(listeners)
        self.deltas_max = deltas_max
        self.allow_double_snapshot = allow_double_snapshot
        self.require_digest = require_digest
        self.poll_interval_ms = poll_interval_ms
        self.failed_transition_ttl_ms = failed_transition_ttl_ms
        self._rng = rng or random.Random()
        self._engine: ReadStateEngine | None = None
        self._version: Version | None = None
        self.lock = RWLock()  # the refresh lock: readers share, a refresh swaps alone
        self._state = rf.RefreshState(backoff_ms_min=backoff_ms_min, backoff_ms_max=backoff_ms_max)
        self._state_lock = threading.Lock()
        self._refresh_mutex = threading.Lock()  # one refresh at a time (background thread and callers)
        self._changed = threading.Condition(threading.Lock())
        self._indexes: list[ConsumerIndex] = []
        self._failed: dict[BlobRef, tuple[int, str]] = {}  # blob -> (avoided until, why it failed)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_poll_ms = 0
        self._attempts = 0
        self._counts = dict.fromkeys(
            ("refreshes", "failures", "snapshots", "double", "deltas", "reverse", "bytes"), 0
        )
        self._last_refresh_ms: int | None = None

    # -- reading --

    @property
    def engine(self) -> ReadStateEngine | None:
        """The current state (None before the first load).  Hold ``reading()`` for several consistent reads."""
        return self._engine

    @property
    def version(self) -> Version | None:
        return self._version

    @contextmanager
    def reading(self) -> Iterator[ReadStateEngine]:
        """Hold the refresh lock's read side: no refresh changes the state until the block ends."""
        with self.lock.reading():
            engine = self._engine
            if engine is None:
                raise HollowError("nothing is loaded yet")
            yield engine

    def add_listener(self, listener: RefreshListener) -> None:
        self.listeners.append(listener)

    def _emit(self, event: RefreshEvent) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # a listener's bug must not break refreshes
                log.exception("refresh listener %r failed on %s", listener, type(event).__name__)

    def _register_index(self, index: ConsumerIndex) -> None:
        with self.lock.writing():
            if self._engine is not None:
                index._install(self._engine, index._prepare(self._engine))
            self._indexes.append(index)

    def _unregister_index(self, index: ConsumerIndex) -> None:
        with self.lock.writing():
            if index in self._indexes:
                self._indexes.remove(index)

    # -- pinning --

    def pin(self, version: Version) -> None:
        """Serve ``version`` (older or newer) until ``unpin``; the consumer moves there now (or retries)."""
        with self._refresh_mutex:
            self._event(rf.Pinned(version))

    def unpin(self) -> None:
        """Follow the announced version again."""
        with self._refresh_mutex:
            self._event(rf.Pinned(None))

    # -- refreshing --

    def refresh(self) -> Version | None:
        """Poll the watcher and move to the wanted version now (ignoring any backoff); returns the version served.

        Raises :class:`RefreshError` when the watcher or the store cannot be reached or a blob is bad; the
        consumer keeps serving what it has (``error.version``).
        """
        with self._refresh_mutex:
            attempts = self._attempts
            self._poll_watcher(raise_errors=True)
            if self._attempts == attempts:  # the announcement did not start one (backoff, or nothing new)
                self._event(rf.Requested())
            with self._state_lock:
                state = self._state
            wanted = state.wanted
            if wanted is not None and self._version != wanted:
                raise RefreshError(state.last_error or f"did not reach version {wanted}", self._version)
            return self._version

    def refresh_to(self, version: Version) -> Version | None:
        """Move to ``version`` once (Java ``triggerRefreshTo``), without pinning it."""
        with self._refresh_mutex:
            try:
                self._run_refresh(version)
            except HollowError as e:
                raise RefreshError(str(e), self._version) from e
            with self._state_lock:
                self._state = replace(self._state, loaded=self._version)
            return self._version

    def wait_for_version(self, version: Version, timeout_ms: int) -> bool:
        """Block until this consumer serves ``version`` or later (read-after-write for a producer's version)."""
        deadline = self.clock.monotonic_ms() + timeout_ms
        while True:
            current = self._version
            if current is not None and current >= version:
                return True
            remaining = deadline - self.clock.monotonic_ms()
            if remaining <= 0:
                return False
            if self._thread is None:
                with contextlib.suppress(RefreshError):
                    self.refresh()
            with self._changed:
                self._changed.wait(min(remaining, self.poll_interval_ms) / 1000)

    def _poll_watcher(self, *, raise_errors: bool) -> None:
        if self.watcher is None:
            return
        self._next_poll_ms = self.clock.monotonic_ms() + self.poll_interval_ms
        try:
            announced = self.watcher.latest_version()
        except HollowError as e:
            self._event(rf.WatcherFailed(f"announcement watcher: {e}", self._rng.random()))
            if raise_errors:
                raise RefreshError(f"announcement watcher: {e}", self._version) from e
            return
        self._event(rf.Announced(announced))

    def _event(self, event: rf.RefreshEvent) -> None:
        with self._state_lock:
            self._state, effects = rf.step(self._state, event, self.clock.monotonic_ms())
        for fx in effects:
            if isinstance(fx, rf.Refresh):
                self._refresh_effect(fx.version)
            else:
                log.warning("refresh failed (%d in a row), retrying in %d ms: %s", fx.failures,
                            fx.retry_at_ms - self.clock.monotonic_ms(), fx.error)
                self._wake.set()

    def _refresh_effect(self, wanted: Version) -> None:
        self._attempts += 1
        try:
            self._run_refresh(wanted)
        except HollowError as e:
            self._event(rf.Failed(f"{type(e).__name__}: {e}", self._version, self._rng.random()))
            return
        self._event(rf.Succeeded(self._version))

    def _excluded(self) -> set[BlobRef]:
        now = self.clock.monotonic_ms()
        for ref in [r for r, (until, _) in self._failed.items() if until <= now]:
            del self._failed[ref]
        return set(self._failed)

    def _mark_failed(self, ref: BlobRef, error: Exception) -> None:
        self._failed[ref] = (self.clock.monotonic_ms() + self.failed_transition_ttl_ms, str(error))

    def _fetch(self, plan: UpdatePlan) -> list[FetchedBlob]:
        out = []
        for blob in plan.blobs:
            try:
                f = fetch(blob, require_digest=self.require_digest)
            except BlobIntegrityError as e:
                self._mark_failed(blob.ref, e)
                raise
            data_len = len(memoryview(f.data))
            self._counts["bytes"] += data_len
            out.append(f)
        return out

    def _run_refresh(self, wanted: Version) -> None:
        origin = self._version
        if origin == wanted:
            return
        started = self.clock.monotonic_ms()
        self._emit(RefreshStarted(origin, wanted))
        try:
            plan = plan_update(
                self.retriever, origin, wanted, deltas_max=self.deltas_max,
                allow_snapshot=self.allow_double_snapshot or origin is None, excluded=self._excluded(),
            )
            if not plan.blobs or plan.destination != wanted:
                got = "nothing" if not plan.blobs else f"only {plan.destination}"
                avoided = "; ".join(f"avoiding {why}" for _, why in self._failed.values())
                raise HollowError(
                    f"no path from {origin} to {wanted} in the blob store ({got} reachable)"
                    + (f"; {avoided}" if avoided else "")
                )
            fetched = self._fetch(plan)
            if plan.snapshot:
                self._load_snapshot_plan(fetched)
            else:
                self._apply_deltas(fetched)
        except HollowError as e:
            self._counts["failures"] += 1
            self._emit(RefreshFailed(origin, wanted, self._version, str(e)))
            raise
        except OSError as e:  # a store that leaks an OSError is still an unreachable store
            self._counts["failures"] += 1
            self._emit(RefreshFailed(origin, wanted, self._version, str(e)))
            raise BlobStoreUnavailableError(str(e)) from e
        took = self.clock.monotonic_ms() - started
        self._counts["refreshes"] += 1
        self._last_refresh_ms = took
        self._emit(RefreshSucceeded(origin, wanted, took, plan.refs))

    def _load_snapshot_plan(self, fetched: list[FetchedBlob]) -> None:
        first = fetched[0]
        try:
            engine = ReadStateEngine.from_snapshot(first.data)
        except HollowBlobError as e:
            self._mark_failed(first.ref, e)
            raise
        version = first.ref.to_version
        for f in fetched[1:]:
            try:
                engine.apply_delta(f.data)
            except HollowBlobError as e:
                self._mark_failed(f.ref, e)
                raise
            version = f.ref.to_version
        prepared = [(ix, ix._prepare(engine)) for ix in list(self._indexes)]
        double = self._engine is not None
        with self.lock.writing():
            self._engine, self._version = engine, version
            for ix, p in prepared:
                ix._install(engine, p)
        self._counts["snapshots"] += 1
        self._counts["double"] += int(double)
        self._counts["deltas"] += len(fetched) - 1
        self._notify_changed()
        self._emit(SnapshotLoaded(version, double))

    def _apply_deltas(self, fetched: list[FetchedBlob]) -> None:
        for f in fetched:
            engine = self._engine
            assert engine is not None and f.ref.from_version is not None
            with self.lock.writing():
                try:
                    event = engine.apply_delta(f.data)
                except HollowBlobError as e:
                    self._mark_failed(f.ref, e)
                    raise
                self._version = f.ref.to_version
                for ix in self._indexes:
                    ix._on_delta(engine, event)
            key = "reverse" if f.ref.type is BlobType.REVERSE_DELTA else "deltas"
            self._counts[key] += 1
            self._notify_changed()
            self._emit(DeltaApplied(f.ref.from_version, f.ref.to_version, event))

    def _notify_changed(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- background refresh --

    def start(self) -> None:
        """Poll and refresh in a background thread (daemon) until ``stop()``."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="hollow-consumer-refresh", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wake(self) -> None:
        """Poll the watcher now (an announcement source that pushes calls this)."""
        self._next_poll_ms = 0
        self._wake.set()

    def run_once(self) -> None:
        """One round of the background loop: poll if due, retry if the backoff is over."""
        with self._refresh_mutex:
            now = self.clock.monotonic_ms()
            with self._state_lock:
                state = self._state
            if state.phase is rf.Phase.BACKOFF:
                if now < state.retry_at_ms:
                    return
                if self.watcher is not None:  # the retry asks the watcher again: it may be what failed
                    self._poll_watcher(raise_errors=False)
                with self._state_lock:
                    still = self._state.phase is rf.Phase.BACKOFF and self._state.failures == state.failures
                if still:
                    self._event(rf.Tick())
            elif now >= self._next_poll_ms:
                self._poll_watcher(raise_errors=False)

    def _sleep_ms(self) -> int:
        now = self.clock.monotonic_ms()
        with self._state_lock:
            state = self._state
        due = self._next_poll_ms
        if state.phase is rf.Phase.BACKOFF:
            due = max(due, state.retry_at_ms)
        return max(1, min(due - now, self.poll_interval_ms))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the loop must survive anything; the error is in the statistics and the log
                log.exception("hollow consumer refresh loop")
            self._wake.wait(self._sleep_ms() / 1000)
            self._wake.clear()

    def statistics(self) -> ConsumerStatistics:
        with self._state_lock:
            s = self._state
        c = self._counts
        return ConsumerStatistics(
            self._version, s.announced, s.pinned, s.phase.value, c["refreshes"], c["failures"], s.failures,
            c["snapshots"], c["double"], c["deltas"], c["reverse"], c["bytes"], self._last_refresh_ms,
            s.retry_at_ms if s.phase is rf.Phase.BACKOFF else None, s.last_error, len(self._failed),
        )


def blob_kind_counts(refs: Sequence[BlobRef]) -> dict[str, int]:
    """How many blobs of each kind a refresh used (for logs and tests)."""
    out: dict[str, int] = {}
    for r in refs:
        out[r.type.value] = out.get(r.type.value, 0) + 1
    return out

