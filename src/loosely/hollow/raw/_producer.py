"""The producer: folds the changes topic into ordinary Hollow versions, exactly once.

Every version's header carries ``loosely.raw.positions`` (JSON ``{"<partition>": next offset}``): the version
holds exactly the changes before those offsets, no more, no less. Rows and positions are published together, so
a restarted producer restores the announced version (the delta chain continues), reads the positions from its
header and tails the log from there: nothing is applied twice or skipped. Clients use the same positions to know
which of their overlay entries a version has absorbed.

A cycle runs every ``cycle_interval_ms`` while changes are pending, and at once when ``max_pending`` keys are
pending. A failed cycle (blob store unreachable, a validator) keeps the pending changes and the old positions;
the next cycle tries again. A record on the topic that is not one of the dataset's (unknown type, bad JSON) is
skipped with a warning and counted: the log is the source of truth, and one bad record must not stop the rest.

Besides the dataset's types each version holds ``RawVersion`` records: the offset of each record (its version).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from loosely.hollow.api import Producer, Version
from loosely.hollow.raw._codec import decode_record, parse_key
from loosely.hollow.raw._dataset import DATASET_TAG, POSITIONS_TAG, VERSION_TYPE, Dataset, RawVersion
from loosely.hollow.raw._log import ChangeTail

__all__ = ["RawProducer", "RawProducerStatistics", "positions_of"]

log = logging.getLogger(__name__)

_POLL_S: Final = 0.05


def positions_of(header_tags: dict[str, str]) -> dict[int, int]:
    """The positions a version's header holds (empty for a version without them)."""
    return {int(p): int(o) for p, o in json.loads(header_tags.get(POSITIONS_TAG, "{}")).items()}


@dataclass(frozen=True, slots=True)
class RawProducerStatistics:
    version: Version | None
    positions: dict[int, int]
    pending: int
    cycles: int
    failures: int
    skipped: int
    last_error: str | None


class RawProducer:
    """Publishes the dataset's changes as Hollow versions into ``dataset.blob_store``.

    Run it in the background (``start()`` / ``close()``) or drive it (``catch_up()`` then ``run_cycle()``).
    Run one producer per dataset (a second one would publish a competing chain).
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        cycle_interval_ms: int = 1_000,
        max_pending: int = 10_000,
        snapshot_every_cycles: int = 10,
    ) -> None:
        if cycle_interval_ms < 0 or max_pending < 1:
            raise ValueError("cycle_interval_ms must be >= 0 and max_pending >= 1")
        self.dataset = dataset
        self.cycle_interval_ms = cycle_interval_ms
        self.max_pending = max_pending
        store = dataset.blob_store
        self._producer = Producer(publisher=store, announcer=store, retriever=store, watcher=store,
                                  data_model=[*dataset.types, RawVersion],
                                  snapshot_every_cycles=snapshot_every_cycles)
        self._lock = threading.Lock()
        self._pending: dict[bytes, tuple[int, bytes | None]] = {}
        self._positions: dict[int, int] = {}
        self._counts = {"cycles": 0, "failures": 0, "skipped": 0}
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tail: ChangeTail | None = None
        self._opened = False

    # -- lifecycle -------------------------------------------------------------------------------------------

    def open(self) -> Version | None:
        """Restore from the announced version (if any) and start tailing at its positions; returns it."""
        if self._opened:
            return self._producer.version
        ds = self.dataset
        ds.ensure_topics()
        announced = ds.blob_store.latest_version()
        if announced is not None:
            self._producer.restore(announced)
            engine = self._producer.read_state
            assert engine is not None
            held = engine.header_tags.get(DATASET_TAG)
            if held != ds.name:
                raise ValueError(f"the blob store's version {announced} holds dataset {held or '(none)'}, not "
                                 f"{ds.name}: give each dataset its own store")
            self._positions = positions_of(engine.header_tags)
        self._tail = ChangeTail(ds, self._observe, self._positions, name="producer")
        self._opened = True
        return announced

    def start(self) -> RawProducer:
        self.open()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=f"raw-producer-{self.dataset.name}",
                                            daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop; what is pending is published first (best effort)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            self._thread = None
        if self._tail is not None:
            try:
                self.run_cycle()
            except Exception as e:  # the next producer reads those changes again from the published positions
                log.warning("raw producer %s: last cycle on close failed: %s", self.dataset.name, e)
            self._tail.close()
            self._tail = None

    def __enter__(self) -> RawProducer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def version(self) -> Version | None:
        return self._producer.version

    # -- folding ---------------------------------------------------------------------------------------------

    def _observe(self, partition: int, offset: int, key: bytes, value: bytes | None) -> None:
        self._pending[key] = (offset, value)

    def catch_up(self, timeout_ms: int = 30_000) -> None:
        """Read the topic up to its current end (for tests and tools that drive cycles themselves)."""
        self.open()
        tail = self._tail
        assert tail is not None
        tail.read_to(tail.high_watermarks(timeout_ms), timeout_ms)

    def run_cycle(self) -> Version | None:
        """Publish what has been read (nothing pending: nothing happens); returns the announced version."""
        self.open()
        tail = self._tail
        assert tail is not None
        with self._lock:
            pending, positions = dict(self._pending), dict(tail.reached)
            if not pending and positions == self._positions:
                return self._producer.version
            ds = self.dataset

            def populate(state: Any) -> None:
                state.add_header_tag(DATASET_TAG, ds.name)
                state.add_header_tag(POSITIONS_TAG, json.dumps({str(p): o for p, o in sorted(positions.items())}))
                for key, (offset, value) in pending.items():
                    try:
                        type_name, values = parse_key(key)
                        cls = ds.type_of(type_name)
                        record = None if value is None else decode_record(cls, value)
                    except (ValueError, KeyError, TypeError) as e:
                        self._counts["skipped"] += 1
                        log.warning("raw producer %s: skipping the record at key %r: %s", ds.name, key[:200], e)
                        continue
                    text = key.decode()
                    if record is None:
                        state.delete_key(type_name, values)
                        state.delete_key(VERSION_TYPE, (text,))
                    else:
                        state.add_or_modify(record)
                        state.add_or_modify(RawVersion(text, offset))

            try:
                version = self._producer.run_incremental_cycle(populate)
            except Exception as e:  # pending and positions stay: the next cycle tries again
                self._counts["failures"] += 1
                self._last_error = f"{type(e).__name__}: {e}"
                raise
            self._counts["cycles"] += 1
            self._positions = positions
            for key, entry in pending.items():
                if self._pending.get(key) == entry:
                    del self._pending[key]
            return version

    def _loop(self) -> None:
        last = time.monotonic()
        tail = self._tail
        assert tail is not None
        while not self._stop.is_set():
            try:
                tail.poll(_POLL_S)
                due = (time.monotonic() - last) * 1000 >= self.cycle_interval_ms
                if len(self._pending) >= self.max_pending or (due and self._pending):
                    last = time.monotonic()
                    self.run_cycle()
                elif due:
                    last = time.monotonic()
            except Exception as e:  # keep folding: the store or the broker may come back
                log.warning("raw producer %s: %s", self.dataset.name, e)
                time.sleep(_POLL_S)

    def statistics(self) -> RawProducerStatistics:
        with self._lock:
            c = self._counts
            return RawProducerStatistics(self._producer.version, dict(self._positions), len(self._pending),
                                         c["cycles"], c["failures"], c["skipped"], self._last_error)
