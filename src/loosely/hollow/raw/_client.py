"""The client: a Hollow consumer plus an overlay of the changes its loaded version does not hold yet.

**What a read sees.** The loaded version holds the log up to its header's positions ``P`` (see ``_producer``);
the overlay holds the changes the client has tailed from the log since, ``key -> (offset, record or None)``. A
read looks the key up in the overlay and takes the entry when its offset is at or past ``P`` of its partition,
else asks the state. Both are read under the consumer's refresh lock, so state and positions never disagree;
overlay entries are dropped only after a version that absorbs them is installed. The client's view is therefore
always the log prefix up to ``reached[p] = max(tail position, P[p])`` per partition, and ``reached`` only grows:
a client's reads never go back in time.

**Consistency of a read.**

* ``eventual`` (default): whatever the client has reached -- usually milliseconds behind the writer.
* ``after=token``: first wait until ``reached`` covers the token (read-your-writes, also across processes).
* ``strong``: first ask the broker for the end of each partition (the last stable offset), then wait until
  ``reached`` covers it: every write acknowledged before the read began is seen (linearizable per key).

A wait longer than ``timeout_ms`` raises :class:`ConsistencyTimeout`; so does a broker that cannot be asked.

**Which version.** The client follows the announcement on the log (``<dataset>.producer``, written only by the
elected producer, fenced; see ``_producer``), read-committed, and loads versions from the blob store: a deposed
producer's stray blobs or the blob store's copy of the announcement never decide what it loads.

**Staleness.** A background check asks the broker for the partition ends every ``freshness_interval_ms``; once
the tail has reached what was asked at ``t``, the client is known fresh as of ``t``. ``staleness_ms`` is the time
since then: near zero while the broker answers, growing while it is unreachable. Eventual reads keep answering
from state plus overlay in the meantime.

**Iteration** (:meth:`RawClient.records`) takes one cut under the refresh lock: the state's records of the type,
each replaced by its overlay entry when there is a newer one (or left out when deleted there), followed by the
records only the overlay holds, in log order. It returns a list, so no lock is held while the caller iterates.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from loosely.hollow.api import (
    BlobStoreUnavailableError,
    Consumer,
    HashIndex,
    KafkaAnnouncementWatcher,
    RefreshError,
    RefreshEvent,
    RefreshSucceeded,
    SnapshotLoaded,
    UniqueKeyIndex,
    Version,
)
from loosely.hollow.core import HollowError, ReadStateEngine
from loosely.hollow.raw._codec import Token, decode_record, key_text, parse_key
from loosely.hollow.raw._dataset import POSITIONS_TAG, VERSION_TYPE, Dataset
from loosely.hollow.raw._log import ChangeTail
from loosely.hollow.raw._producer import positions_of

__all__ = ["ConsistencyTimeout", "RawClient", "RawClientStatistics"]

T = TypeVar("T")

_POLL_S: Final = 0.02
CONSISTENCY: Final = ("eventual", "strong")


class ConsistencyTimeout(HollowError):
    """A strong or ``after=`` read could not reach the log position it needs within its timeout."""


@dataclass(frozen=True, slots=True)
class _Entry:
    partition: int
    offset: int
    type_name: str
    record: object | None  # None: deleted


@dataclass(frozen=True, slots=True)
class RawClientStatistics:
    version: Version | None
    positions: dict[int, int]
    reached: dict[int, int]
    overlay: int
    staleness_ms: int
    tailed: int
    dropped: int
    last_error: str | None


class _Announcements:
    """The announcement on the log, read once the client starts (the constructor does not reach the broker)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._watcher: KafkaAnnouncementWatcher | None = None

    def open(self) -> None:
        if self._watcher is None:
            ds = self.dataset
            self._watcher = KafkaAnnouncementWatcher(ds.bootstrap_servers, ds.producer_topic, ds.announce_namespace,
                                                     client_config=ds.client_config)

    def latest_version(self) -> Version | None:
        watcher = self._watcher
        return None if watcher is None else watcher.latest_version()

    def close(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close()


class RawClient:
    """Reads a dataset from memory: the newest Hollow version plus the changes tailed since.

    ``start()`` loads the announced version (if any) and starts tailing; ``close()`` stops.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        timeout_ms: int = 5_000,
        refresh_interval_ms: int = 500,
        freshness_interval_ms: int = 200,
    ) -> None:
        self.dataset = dataset
        self.timeout_ms = timeout_ms
        self.freshness_interval_ms = freshness_interval_ms
        self._announcements = _Announcements(dataset)
        self.consumer = Consumer(retriever=dataset.blob_store, watcher=self._announcements,
                                 poll_interval_ms=refresh_interval_ms)
        self.consumer.add_listener(self._on_refresh)
        self._indexes: dict[str, UniqueKeyIndex] = {}
        self._type_names = {cls: dataset.type_name(cls) for cls in dataset.types}
        self._classes = {name: dataset.type_of(name) for name in dataset.type_names}  # the read path's lookups
        self._hash_indexes: dict[tuple[str, tuple[str, ...]], HashIndex] = {}
        self._positions_cache: tuple[str, dict[int, int]] = ("{}", {})
        self._overlay: dict[tuple[str, tuple[object, ...]], _Entry] = {}  # (type name, key values) -> entry
        self._overlay_lock = threading.Lock()
        self._absorbed: dict[int, int] = {}  # positions of the installed version
        self._reached = threading.Condition(threading.Lock())
        self._tail: ChangeTail | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._fresh_at = time.monotonic()
        self._asked: tuple[float, dict[int, int]] | None = None
        self._counts = {"tailed": 0, "dropped": 0}
        self._last_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> RawClient:
        if self._threads:
            return self
        ds = self.dataset
        ds.ensure_topics()
        self._announcements.open()
        with contextlib.suppress(RefreshError):
            self.consumer.refresh()  # nothing announced yet, or the store is down: tail from what we have
        for name in [*ds.type_names, VERSION_TYPE]:
            self._indexes[name] = UniqueKeyIndex(self.consumer, name)
        with self.consumer.lock.reading():
            engine = self.consumer.engine
            self._absorbed = self._positions(engine)
        self._tail = ChangeTail(ds, self._observe, self._absorbed, name="client")
        self._stop.clear()
        self._threads = [threading.Thread(target=self._tail_loop, name=f"raw-tail-{ds.name}", daemon=True),
                         threading.Thread(target=self._freshness_loop, name=f"raw-fresh-{ds.name}", daemon=True)]
        for t in self._threads:
            t.start()
        self.consumer.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.consumer.stop()
        for t in self._threads:
            t.join(30)
        self._threads = []
        for index in [*self._indexes.values(), *self._hash_indexes.values()]:
            index.close()
        if self._tail is not None:
            self._tail.close()
            self._tail = None
        self._announcements.close()

    def __enter__(self) -> RawClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- following the log and the versions ------------------------------------------------------------------

    def _observe(self, partition: int, offset: int, key: bytes, value: bytes | None) -> None:
        if offset < self._absorbed.get(partition, 0):
            return  # the installed version holds it already
        try:
            type_name, values = parse_key(key)
            record = None if value is None else decode_record(self.dataset.type_of(type_name), value)
        except (ValueError, KeyError, TypeError) as e:
            self._last_error = f"skipped the record at {partition}/{offset}: {e}"
            return
        with self._overlay_lock:
            self._overlay[(type_name, values)] = _Entry(partition, offset, type_name, record)
        self._counts["tailed"] += 1

    def _tail_loop(self) -> None:
        tail = self._tail
        assert tail is not None
        while not self._stop.is_set():
            try:
                before = tail.reached
                tail.poll(_POLL_S)
                asked = self._asked
                if asked is not None and tail.caught_up(asked[1]):
                    self._fresh_at, self._asked = max(self._fresh_at, asked[0]), None
                if tail.reached != before:
                    with self._reached:
                        self._reached.notify_all()
            except Exception as e:  # keep tailing: the broker may come back
                self._last_error = f"{type(e).__name__}: {e}"
                time.sleep(_POLL_S)

    def _freshness_loop(self) -> None:
        while not self._stop.wait(self.freshness_interval_ms / 1000):
            tail = self._tail
            if tail is None:
                continue
            t0 = time.monotonic()
            try:
                ends = tail.high_watermarks(max(self.freshness_interval_ms * 5, 1_000))
            except BlobStoreUnavailableError as e:
                self._last_error = str(e)
                continue
            if tail.caught_up(ends):
                self._fresh_at = max(self._fresh_at, t0)
            else:
                self._asked = (t0, ends)

    def _on_refresh(self, event: RefreshEvent) -> None:
        if not isinstance(event, RefreshSucceeded | SnapshotLoaded):
            return
        with self.consumer.lock.reading():
            engine = self.consumer.engine
            positions = self._positions(engine)
        # the new version is installed: entries it absorbed can go (reads compare with the state's positions)
        with self._overlay_lock:
            self._absorbed = {**self._absorbed, **{p: max(o, self._absorbed.get(p, 0))
                                                    for p, o in positions.items()}}
            stale = [k for k, e in self._overlay.items() if e.offset < positions.get(e.partition, 0)]
            for k in stale:
                del self._overlay[k]
            self._counts["dropped"] += len(stale)
        with self._reached:
            self._reached.notify_all()

    # -- positions and waiting -------------------------------------------------------------------------------

    def _positions(self, engine: ReadStateEngine | None) -> dict[int, int]:
        """The positions a loaded state holds (parsed once per version: reads ask on every call)."""
        if engine is None:
            return {}
        text = engine.header_tags.get(POSITIONS_TAG, "{}")
        cached = self._positions_cache
        if cached[0] is not text:
            cached = self._positions_cache = (text, positions_of(engine.header_tags))
        return cached[1]

    def reached(self) -> dict[int, int]:
        """How far this client's view goes, per partition (the next offset it has not seen)."""
        tail = self._tail.reached if self._tail is not None else {}
        absorbed = self._absorbed
        return {p: max(tail.get(p, 0), absorbed.get(p, 0)) for p in range(self.dataset.partitions)}

    def _covers(self, ends: Mapping[int, int]) -> bool:
        reached = self.reached()
        return all(reached.get(p, 0) >= o for p, o in ends.items())

    def wait_for(self, ends: Mapping[int, int] | Token, timeout_ms: int | None = None) -> None:
        """Block until this client has seen the log up to ``ends`` (a token or partition ends)."""
        target = ends.offsets if isinstance(ends, Token) else ends
        timeout = self.timeout_ms if timeout_ms is None else timeout_ms
        deadline = time.monotonic() + timeout / 1000
        with self._reached:
            while not self._covers(target):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ConsistencyTimeout(f"{self.dataset.name}: read {self.reached()}, needed {dict(target)}, "
                                             f"not reached in {timeout} ms")
                self._reached.wait(min(remaining, 0.05))

    def wait_for_change(self, seen: Mapping[int, int], timeout_ms: int) -> dict[int, int]:
        """Block until this client's view moves past ``seen`` (an earlier :meth:`reached`) on some partition, or
        ``timeout_ms`` passes; returns :meth:`reached` then. For a reader that reacts to new writes instead of
        polling: take ``reached()`` before reading, and wait from it only if the read did not find what it wants
        (a change applied in between has moved the view already, so it is not missed)."""
        deadline = time.monotonic() + timeout_ms / 1000
        with self._reached:
            while (now := self.reached()) == seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._reached.wait(remaining)
        return now

    def sync(self, timeout_ms: int | None = None) -> None:
        """Wait until every write committed before this call is visible (what a strong read does first)."""
        timeout = self.timeout_ms if timeout_ms is None else timeout_ms
        tail = self._tail
        if tail is None:
            raise HollowError("start the client first")
        started = time.monotonic()
        try:
            ends = tail.high_watermarks(timeout)
        except BlobStoreUnavailableError as e:
            raise ConsistencyTimeout(f"{self.dataset.name}: cannot ask the broker for the log's end: {e}") from e
        self.wait_for(ends, max(0, timeout - int((time.monotonic() - started) * 1000)))

    @property
    def staleness_ms(self) -> int:
        """How long ago this client was last known to hold every committed write."""
        return int((time.monotonic() - self._fresh_at) * 1000)

    # -- reading ---------------------------------------------------------------------------------------------

    def _prepare(self, consistency: str, after: Token | str | None, timeout_ms: int | None) -> None:
        if consistency not in CONSISTENCY:
            raise ValueError(f"consistency must be one of {', '.join(CONSISTENCY)}, not {consistency!r}")
        if after is not None:
            self.wait_for(Token.parse(after) if isinstance(after, str) else after, timeout_ms)
        if consistency == "strong":
            self.sync(timeout_ms)

    def _key(self, type_: str | type, key: object) -> tuple[str, tuple[object, ...]]:
        type_name = type_ if isinstance(type_, str) else self._type_names.get(type_) or self.dataset.type_name(type_)
        if type_name not in self._indexes:
            self.dataset.type_of(type_name)  # the error names the dataset's types
        return type_name, key if isinstance(key, tuple) else (key,)

    def _read(self, type_: str | type, key: object, versioned: bool) -> tuple[Any, int | None]:
        """State plus overlay under the refresh lock: the overlay's entry when the state does not hold it yet."""
        type_name, values = self._key(type_, key)
        overlay = self._overlay
        with self.consumer.lock.reading():
            engine = self.consumer.engine
            entry = overlay.get((type_name, values)) if overlay else None
            if entry is not None and entry.offset >= self._positions(engine).get(entry.partition, 0):
                return (entry.record, entry.offset) if entry.record is not None else (None, None)
            if engine is None:
                return None, None
            ordinal = self._indexes[type_name].find(*values)  # type: ignore[arg-type]  # a key holds scalars
            if ordinal < 0:
                return None, None
            record: Any = self.dataset.mapper.read(engine, self._classes[type_name], ordinal)
            if not versioned:
                return record, None
            v = self._indexes[VERSION_TYPE].get(key_text(type_name, values))
            offset = None if v is None else v["offset"]
            return record, offset if isinstance(offset, int) else None

    def get_versioned(self, type_: str | type, key: object, *, consistency: str = "eventual",
                      after: Token | str | None = None, timeout_ms: int | None = None) -> tuple[Any, int | None]:
        """``(record, version)``, or ``(None, None)`` when there is no such record."""
        if consistency != "eventual" or after is not None:
            self._prepare(consistency, after, timeout_ms)
        return self._read(type_, key, True)

    def get(self, type_: str | type, key: object, *, consistency: str = "eventual",
            after: Token | str | None = None, timeout_ms: int | None = None) -> Any:
        """The record of ``type_`` (a class or type name) with primary key ``key`` (a tuple, or the value of a
        one-field key), or None. See the module docstring for what each consistency waits for."""
        if consistency != "eventual" or after is not None:
            self._prepare(consistency, after, timeout_ms)
        return self._read(type_, key, False)[0]

    def records(self, type_: str | type, *, consistency: str = "eventual", after: Token | str | None = None,
                timeout_ms: int | None = None) -> list[Any]:
        """Every record of the type, state plus overlay, as one cut (see the module docstring)."""
        self._prepare(consistency, after, timeout_ms)
        type_name = type_ if isinstance(type_, str) else self.dataset.type_name(type_)
        cls = self.dataset.type_of(type_name)
        ds = self.dataset
        with self.consumer.lock.reading():
            engine = self.consumer.engine
            newer = self._newer(type_name, engine)
            out: list[Any] = []
            if engine is not None and type_name in engine.type_names():
                for o in engine.type(type_name).populated_ordinals().tolist():
                    record: Any = ds.mapper.read(engine, cls, o)
                    entry = newer.pop(ds.key_of(record), None)
                    if entry is None:
                        out.append(record)
                    elif entry.record is not None:
                        out.append(entry.record)
            out.extend(e.record for e in sorted(newer.values(), key=lambda e: (e.offset, e.partition))
                       if e.record is not None)
            return out

    def find(self, type_: str | type, *, consistency: str = "eventual", after: Token | str | None = None,
             timeout_ms: int | None = None, **fields: Any) -> list[Any]:
        """The records of the type whose fields hold the given values (``find(Movie, year=1995)``; a path through
        referenced objects as ``find(Movie, **{"director.name": "Mann"})``, into collections as
        ``find(Actor, **{"movies.element": 42})`` -- a record matches when any element does), state plus overlay:
        a hash index on the state (built on first use, then following the versions) and a scan of the overlay,
        which is small.
        State records first (by ordinal), then overlay records in log order."""
        if not fields:
            raise ValueError("find needs at least one field=value")
        self._prepare(consistency, after, timeout_ms)
        type_name = type_ if isinstance(type_, str) else self.dataset.type_name(type_)
        cls = self.dataset.type_of(type_name)
        names = tuple(fields)
        index = self._hash_indexes.get((type_name, names))
        if index is None:  # registering takes the refresh lock's write side: not while reading below
            index = self._hash_indexes.setdefault((type_name, names), HashIndex(self.consumer, type_name, names))
        ds = self.dataset
        with self.consumer.lock.reading():
            engine = self.consumer.engine
            newer = self._newer(type_name, engine)
            out: list[Any] = []
            if engine is not None:
                for o in index.find(*fields.values()):
                    record: Any = ds.mapper.read(engine, cls, o)
                    if ds.key_of(record) not in newer:
                        out.append(record)
        for e in sorted(newer.values(), key=lambda e: (e.offset, e.partition)):
            if e.record is not None and _matches(e.record, fields):
                out.append(e.record)
        return out

    def _newer(self, type_name: str, engine: ReadStateEngine | None) -> dict[tuple[str, tuple[object, ...]], _Entry]:
        """The overlay entries of a type that the state ``engine`` does not hold yet (call under the read lock)."""
        positions = self._positions(engine)
        with self._overlay_lock:
            return {k: e for k, e in self._overlay.items()
                    if e.type_name == type_name and e.offset >= positions.get(e.partition, 0)}

    @property
    def version(self) -> Version | None:
        """The loaded Hollow version."""
        return self.consumer.version

    def statistics(self) -> RawClientStatistics:
        with self._overlay_lock:
            overlay = len(self._overlay)
        engine: ReadStateEngine | None = self.consumer.engine
        return RawClientStatistics(
            self.consumer.version, self._positions(engine),
            self.reached(), overlay, self.staleness_ms, self._counts["tailed"], self._counts["dropped"],
            self._last_error)


def _path_values(value: object, parts: Sequence[str]) -> list[object]:
    """The values a field path reaches in a Python record, as the state's hash index reads them from the Hollow
    record (``loosely.hollow.api._paths``): ``element`` goes into each element of a list or set, ``key`` /
    ``value`` into a dict's keys or values, a collection segment left out goes into each element, and a null on
    the way reaches nothing."""
    if value is None:
        return []
    if isinstance(value, list | tuple | set | frozenset):
        if not parts:  # a path ending on a collection reaches its elements
            return list(value)
        inner = parts[1:] if parts[0] == "element" else parts
        return [v for element in value for v in _path_values(element, inner)]
    if not parts:
        return [value]
    part, rest = parts[0], parts[1:]
    if isinstance(value, dict):
        if part == "key":
            return [v for k in value for v in _path_values(k, rest)]
        if part == "value":
            return [v for x in value.values() for v in _path_values(x, rest)]
        return []
    found = getattr(value, part, None)
    return _path_values(found, rest)


def _matches(record: object, fields: Mapping[str, Any]) -> bool:
    return all(wanted in _path_values(record, path.rstrip("!").split(".")) for path, wanted in fields.items())
