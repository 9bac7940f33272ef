"""The producer: folds the changes topic into ordinary Hollow versions, exactly once, one elected producer at a time.

Every version's header carries ``loosely.raw.positions`` (JSON ``{"<partition>": next offset}``): the version
holds exactly the changes before those offsets, no more, no less. Rows and positions are published together, so
a producer that takes over restores the announced version (the delta chain continues), reads the positions from
its header and tails the log from there: nothing is applied twice or skipped. Clients use the same positions to
know which of their overlay entries a version has absorbed.

**Election and fencing.** Any number of ``RawProducer`` s may run on a dataset (hot spares beside every writer,
say); exactly one publishes. They elect it through the log with ``loosely.hollow.api.KafkaAnnouncer`` on the
one-partition topic ``<dataset>.producer`` (namespace ``raw-<dataset>``, see ``Dataset.announce_namespace``):
every candidate is a member of one consumer group and the member assigned partition 0 leads -- the writer's
election, on a topic of its own so that the two roles fail over independently. The leader's every mint and
announcement is a Kafka transaction of the shared transactional id ``hollow-raw-<dataset>``; a new leader first
calls ``init_transactions`` on it, which bumps the producer epoch, so the broker refuses every later write of a
deposed producer (``PRODUCER_FENCED``) even if it was paused mid-cycle and still believes it leads. Then it
reads the topic back to its own leader record, so it knows the last announced version and every version any
earlier leader minted, and only then restores that version and tails the log from its positions.

Why this is safe and a check of "am I still leader" before announcing would not be: the announcement *of record*
is the fenced write on the log, and the broker decides whether it lands, after the fact of any pause. Readers
(``RawClient``) follow that announcement, never the blob store's own. Versions are minted on the log above
every earlier mint before their blobs are published, so a deposed producer's stray blobs never carry a version
on the live chain and never replace a blob (retrievers follow the furthest delta from a version, and a consumer
starting afresh passes over a stray snapshot that no delta leads on from). The blob
store's announcement (``announced.version`` of a filesystem store) is kept as a *copy* for plain Hollow
consumers: written after the log's announcement, and only forward; a producer deposed exactly between the two
may leave an older version of the chain there until the next cycle. A new term restores from the announced
version and reads the log from its positions, and a term is pinned for the cycles it runs (``_Term``): a
producer that lost leadership and won it back never mixes state from two terms.

A cycle runs every ``cycle_interval_ms`` while changes are pending, and at once when ``max_pending`` keys are
pending. A failed cycle (blob store unreachable, a validator) keeps the pending changes and the old positions;
the next cycle tries again. A record on the topic that is not one of the dataset's (unknown type, bad JSON) is
skipped with a warning and counted: the log is the source of truth, and one bad record must not stop the rest.

Takeover time: the dead leader's session timeout (``session_timeout_ms``; a producer closed cleanly leaves the
group at once), then fencing, loading the announced version from the blob store and reading the log since.

Besides the dataset's types each version holds ``RawVersion`` records: the offset of each record (its version).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from loosely.hollow.api import KafkaAnnouncer, Producer, Version
from loosely.hollow.api import NotLeaderError as _HollowNotLeader
from loosely.hollow.core import HollowError, ObjectMapper, WriteStateEngine
from loosely.hollow.raw._codec import decode_record, parse_key
from loosely.hollow.raw._dataset import DATASET_TAG, POSITIONS_TAG, VERSION_TYPE, Dataset, RawVersion
from loosely.hollow.raw._log import ChangeTail
from loosely.hollow.raw._writer import NotLeaderError

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
    leader: bool
    terms: int
    fenced: int


class _Term:
    """The leadership the Hollow producer sees: the election's, pinned to the term this producer took over in
    (restored the announced version and positions for). A later term is not ours until :meth:`RawProducer.
    _take_over` has run for it, so the cycle machinery never restores on its own from a version whose
    positions the tail does not match."""

    def __init__(self, election: KafkaAnnouncer) -> None:
        self.election = election
        self.pinned = -1

    def is_leader(self) -> bool:
        return self.election.is_leader() and self.election.term() == self.pinned

    def term(self) -> int:
        return self.pinned


class _Announce:
    """The log's fenced announcement (of record), then a forward-only copy into the blob store."""

    def __init__(self, election: KafkaAnnouncer, store: Any, dataset: str) -> None:
        self.election = election
        self.store = store
        self.dataset = dataset

    def announce(self, version: Version) -> None:
        self.election.announce(version)  # raises NotLeaderError when fenced: the cycle fails, nothing announced
        try:
            current = self.store.latest_version()
            if current is None or version > current:
                self.store.announce(version)
        except Exception as e:  # a copy: clients follow the log, and the next cycle writes the copy again
            log.warning("raw producer %s: copying announcement %s into the blob store: %s", self.dataset, version, e)


class RawProducer:
    """Publishes the dataset's changes as Hollow versions into ``dataset.blob_store`` while it is the elected
    producer of the dataset (any number may run: the others are standbys, see the module docstring).

    Run it in the background (``start()`` joins the election and publishes while elected; ``close()`` leaves it)
    or drive it (``open()`` waits to be elected, then ``catch_up()`` and ``run_cycle()``).
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        cycle_interval_ms: int = 1_000,
        max_pending: int = 10_000,
        snapshot_every_cycles: int = 10,
        session_timeout_ms: int = 6_000,
        heartbeat_interval_ms: int = 1_000,
        election_timeout_ms: int = 30_000,
    ) -> None:
        if cycle_interval_ms < 0 or max_pending < 1:
            raise ValueError("cycle_interval_ms must be >= 0 and max_pending >= 1")
        self.dataset = dataset
        self.cycle_interval_ms = cycle_interval_ms
        self.max_pending = max_pending
        self.election_timeout_ms = election_timeout_ms  # how long open() waits to be elected
        store = dataset.blob_store
        self._election = KafkaAnnouncer(dataset.bootstrap_servers, dataset.producer_topic, dataset.announce_namespace,
                                        session_timeout_ms=session_timeout_ms,
                                        heartbeat_interval_ms=heartbeat_interval_ms,
                                        client_config=dataset.client_config, create_topic=False)
        self._term = _Term(self._election)
        self._producer = Producer(publisher=store, announcer=_Announce(self._election, store, dataset.name),
                                  retriever=store, data_model=[*dataset.types, RawVersion],
                                  leader=self._term, version_minter=self._election,
                                  snapshot_every_cycles=snapshot_every_cycles)
        self._lock = threading.Lock()
        self._pending: dict[bytes, tuple[int, bytes | None]] = {}
        self._positions: dict[int, int] = {}
        self._counts = {"cycles": 0, "failures": 0, "skipped": 0}
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tail: ChangeTail | None = None
        self._joined = False

    # -- lifecycle -------------------------------------------------------------------------------------------

    def _join(self) -> None:
        if not self._joined:
            self.dataset.ensure_topics()
            self._election.start()
            self._joined = True

    def _leading(self) -> bool:
        return self._term.is_leader() and self._tail is not None

    def open(self) -> Version | None:
        """Join the election, wait (``election_timeout_ms``) to be elected, restore the announced version and
        tail the log from its positions; returns that version. :class:`NotLeaderError` if not elected in time."""
        self._join()
        if not self._leading():
            if not self._election.wait_for_leadership(self.election_timeout_ms):
                raise NotLeaderError(f"raw producer of {self.dataset.name}: not elected in "
                                     f"{self.election_timeout_ms} ms (another producer publishes)")
            self._take_over()
        return self._producer.version

    def _take_over(self) -> None:
        """A new term: restore the announced version and tail the log from the positions in its header."""
        ds = self.dataset
        with self._lock:
            term = self._election.term()
            announced = self._election.latest_version()  # authoritative: read up to our leader record
            if announced is None:  # a dataset published before announcements moved onto the log
                announced = ds.blob_store.latest_version()
            self._term.pinned = term  # the Hollow producer's cycles run under self._lock, so not before we are done
            if self._tail is not None:
                self._tail.close()
                self._tail = None
            self._pending = {}
            self._producer.restore(announced)
            positions: dict[int, int] = {}
            if announced is not None:
                engine = self._producer.read_state
                assert engine is not None
                held = engine.header_tags.get(DATASET_TAG)
                if held != ds.name:
                    raise ValueError(f"the blob store's version {announced} holds dataset {held or '(none)'}, not "
                                     f"{ds.name}: give each dataset its own store")
                positions = positions_of(engine.header_tags)
            self._positions = positions
            self._tail = ChangeTail(ds, self._observe, positions, name="producer")
        log.info("raw producer of %s publishes (term %d, from version %s)", ds.name, term, announced)

    def _stand_by(self) -> None:
        """Deposed: drop the tail and what was pending (the next leader reads it from the log)."""
        with self._lock:
            if self._tail is not None:
                log.warning("raw producer of %s lost the election", self.dataset.name)
                self._tail.close()
                self._tail = None
                self._pending = {}

    def start(self) -> RawProducer:
        """Join the election in the background: publish while elected, stand by otherwise."""
        self._join()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=f"raw-producer-{self.dataset.name}",
                                            daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop; what is pending is published first (best effort, while elected); a standby takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            self._thread = None
        if self._tail is not None:
            try:
                if self._leading():
                    self._cycle()
            except Exception as e:  # the next producer reads those changes again from the published positions
                log.warning("raw producer %s: last cycle on close failed: %s", self.dataset.name, e)
            self._tail.close()
            self._tail = None
        if self._joined:
            self._election.stop()
            self._joined = False

    def __enter__(self) -> RawProducer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def version(self) -> Version | None:
        return self._producer.version

    def is_leader(self) -> bool:
        """Whether this producer publishes now (elected, and the announced version restored)."""
        return self._leading()

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
        """Publish what has been read (nothing pending: nothing happens); returns the announced version.
        Waits to be elected first (see :meth:`open`); :class:`NotLeaderError` if deposed meanwhile."""
        self.open()
        return self._cycle()

    def _cycle(self) -> Version | None:
        with self._lock:
            tail = self._tail
            if tail is None or not self._term.is_leader():
                raise NotLeaderError(f"raw producer of {self.dataset.name} is not the elected one")
            pending, positions = dict(self._pending), dict(tail.reached)
            if not pending and positions == self._positions:
                return self._producer.version
            ds = self.dataset
            scratch = ObjectMapper(WriteStateEngine())  # tries each record first: one that cannot be written
            # (a number out of its Java type's range) is skipped instead of failing every cycle from now on

            def populate(state: Any) -> None:
                state.add_header_tag(DATASET_TAG, ds.name)
                state.add_header_tag(POSITIONS_TAG, json.dumps({str(p): o for p, o in sorted(positions.items())}))
                for key, (offset, value) in pending.items():
                    try:
                        type_name, values = parse_key(key)
                        cls = ds.type_of(type_name)
                        record = None if value is None else decode_record(cls, value)
                        if record is not None:
                            scratch.add(record)
                    except (ValueError, KeyError, TypeError, HollowError) as e:
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

            before = self._producer.version
            try:
                version = self._producer.run_incremental_cycle(populate)
            except Exception as e:  # pending and positions stay: the next cycle tries again
                self._counts["failures"] += 1
                self._last_error = f"{type(e).__name__}: {e}"
                if isinstance(e, _HollowNotLeader) and not isinstance(e, NotLeaderError):  # fenced, or deposed
                    raise NotLeaderError(f"raw producer of {ds.name}: {e}") from e
                raise
            if version == before and not self._term.is_leader():  # skipped: deposed between the checks
                raise NotLeaderError(f"raw producer of {self.dataset.name} was deposed")
            self._counts["cycles"] += 1
            self._positions = positions
            for key, entry in pending.items():
                if self._pending.get(key) == entry:
                    del self._pending[key]
            return version

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                if not self._leading():
                    if self._election.is_leader():
                        self._take_over()
                        last = time.monotonic()
                    else:
                        self._stand_by()
                        self._stop.wait(_POLL_S)
                    continue
                tail = self._tail
                assert tail is not None
                tail.poll(_POLL_S)
                due = (time.monotonic() - last) * 1000 >= self.cycle_interval_ms
                if len(self._pending) >= self.max_pending or (due and self._pending):
                    last = time.monotonic()
                    self._cycle()
                elif due:
                    last = time.monotonic()
            except Exception as e:  # keep folding: the store or the broker may come back; a deposed one stands by
                log.warning("raw producer %s: %s", self.dataset.name, e)
                self._stop.wait(_POLL_S)

    def statistics(self) -> RawProducerStatistics:
        """A snapshot, taken without the cycle's lock: a cycle waiting on its blob store or on an unreachable broker
        must not hold up a status page (each field is read whole; they may come from either side of a cycle)."""
        c = dict(self._counts)
        election = self._election.statistics()
        return RawProducerStatistics(self._producer.version, dict(self._positions), len(self._pending),
                                     c["cycles"], c["failures"], c["skipped"], self._last_error,
                                     self._leading(), election.terms_acquired, election.fenced)
