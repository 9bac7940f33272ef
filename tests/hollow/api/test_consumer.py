"""Consumer refreshes: initial load, deltas, pins and reverse deltas, double snapshots, and staying up when the
store is down or a blob is corrupt."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from hollow.api.models import Catalog, Movie
from loosely.hollow.api import (
    BlobRef,
    BlobType,
    Consumer,
    DeltaApplied,
    InMemoryBlobStore,
    Producer,
    RefreshError,
    RefreshEvent,
    RefreshFailed,
    RefreshSucceeded,
    SnapshotLoaded,
    Version,
    WriteState,
    record_json,
)
from loosely.hollow.core import HollowBlobError, ReadStateEngine, parse_schemas
from loosely.testing import FakeClock


def _chain(store: InMemoryBlobStore, cycles: int, every: int = 1, seed: int = 1) -> tuple[Producer, list[Version]]:
    p = Producer(publisher=store, announcer=store, data_model=[Movie], snapshot_every_cycles=every, clock=FakeClock())
    cat = Catalog(seed=seed)
    versions = []
    for _ in range(cycles):
        v = p.run_cycle(cat.populate)
        assert v is not None
        versions.append(v)
        cat.advance()
    return p, versions


def _same(a: ReadStateEngine | None, b: ReadStateEngine | None) -> bool:
    assert a is not None and b is not None
    return a.checksum().value == b.checksum().value


def test_initial_load_then_deltas() -> None:
    store = InMemoryBlobStore()
    p, versions = _chain(store, 5, every=3)
    events: list[RefreshEvent] = []
    c = Consumer(retriever=store, watcher=store, listeners=[events.append])
    assert c.refresh() == versions[-1]
    assert _same(c.engine, p.read_state)
    s = c.statistics()
    assert (s.snapshots_loaded, s.deltas_applied, s.double_snapshots) == (1, 1, 0)  # snapshot of v4, delta v4->v5
    assert [type(e).__name__ for e in events] == ["RefreshStarted", "SnapshotLoaded", "RefreshSucceeded"]


def test_follows_deltas_one_version_at_a_time() -> None:
    store = InMemoryBlobStore()
    p = Producer(publisher=store, announcer=store, data_model=[Movie], clock=FakeClock())
    cat = Catalog()
    c = Consumer(retriever=store, watcher=store)
    assert c.refresh() is None  # nothing announced yet: nothing to do, no error
    for _ in range(6):
        v = p.run_cycle(cat.populate)
        assert c.refresh() == v and _same(c.engine, p.read_state)
        cat.advance()
    s = c.statistics()
    assert (s.snapshots_loaded, s.deltas_applied, s.double_snapshots) == (1, 5, 0)


def test_pin_an_older_version_through_reverse_deltas_and_back() -> None:
    store = InMemoryBlobStore()
    _, versions = _chain(store, 6)
    c = Consumer(retriever=store, watcher=store)
    c.refresh()
    reference = Consumer(retriever=store)
    reference.refresh_to(versions[2])
    c.pin(versions[2])
    assert c.refresh() == versions[2] and _same(c.engine, reference.engine)
    assert c.statistics().reverse_deltas_applied == 3
    store.announce(versions[-1])
    assert c.refresh() == versions[2]  # pinned: announcements do not move it
    c.unpin()
    assert c.refresh() == versions[-1] and c.statistics().snapshots_loaded == 1


def test_more_deltas_than_allowed_takes_a_double_snapshot() -> None:
    store = InMemoryBlobStore()
    _, versions = _chain(store, 6)
    c = Consumer(retriever=store, watcher=store, deltas_max=2)
    c.refresh_to(versions[0])
    events: list[RefreshEvent] = []
    c.add_listener(events.append)
    c.refresh()
    assert c.version == versions[-1]
    assert [e.double_snapshot for e in events if isinstance(e, SnapshotLoaded)] == [True]
    never = Consumer(retriever=store, watcher=store, deltas_max=2, allow_double_snapshot=False)
    never.refresh_to(versions[0])
    with pytest.raises(RefreshError, match="no path") as info:
        never.refresh()
    assert info.value.version == versions[0] and never.version == versions[0]


def test_store_down_keeps_serving_then_catches_up() -> None:
    store = InMemoryBlobStore()
    p, versions = _chain(store, 2)
    clock = FakeClock()
    c = Consumer(retriever=store, watcher=store, clock=clock, backoff_ms_min=100, rng=_NoJitter())
    c.refresh()
    before = c.engine
    store.available = False
    with pytest.raises(RefreshError, match="switched off"):
        c.refresh()
    assert c.version == versions[-1] and c.engine is before and before.type("Movie").record_count() > 0  # type: ignore[union-attr]
    # the background loop backs off: 100, 200, 400 ms ...
    retries = []
    for _ in range(3):
        s = c.statistics()
        assert s.retry_at_ms is not None
        retries.append(s.retry_at_ms - clock.monotonic_ms())
        clock.advance(s.retry_at_ms - clock.monotonic_ms())
        c.run_once()
    assert retries == [100, 200, 400]
    store.available = True
    cat = Catalog()
    cat.advance(), cat.advance()
    v3 = p.run_cycle(cat.populate)
    clock.advance(c.statistics().retry_at_ms - clock.monotonic_ms())  # type: ignore[operator]
    c.run_once()
    assert c.version == v3 and c.statistics().double_snapshots == 0 and c.statistics().consecutive_failures == 0


class _NoJitter:
    def random(self) -> float:
        return 0.0


def _corrupt(store: InMemoryBlobStore, ref: BlobRef) -> bytes:
    good = store.get(ref)
    assert good is not None
    bad = bytearray(good)
    bad[len(bad) // 2 + 7] ^= 0x40
    store.put_raw(ref, bytes(bad))
    return good


def test_a_corrupt_delta_is_refused_and_the_last_good_version_served() -> None:
    store = InMemoryBlobStore()
    p, versions = _chain(store, 2, every=100)  # no snapshot of versions[1]: no way around the delta
    clock = FakeClock()
    c = Consumer(retriever=store, watcher=store, clock=clock, backoff_ms_min=50, rng=_NoJitter(),
                 failed_transition_ttl_ms=1_000)
    c.refresh_to(versions[0])
    events: list[RefreshEvent] = []
    c.add_listener(events.append)
    good = _corrupt(store, BlobRef.delta(versions[0], versions[1]))
    with pytest.raises(RefreshError, match="CRC-32C"):
        c.refresh()
    assert c.version == versions[0] and any(isinstance(e, RefreshFailed) for e in events)
    assert c.statistics().failed_transitions == 1
    store.put_raw(BlobRef.delta(versions[0], versions[1]), good)  # the producer's side repairs it
    clock.advance(100)
    c.run_once()  # backoff over, but the failed transition is still avoided (no other path): stays
    assert c.version == versions[0]
    clock.advance(1_000)
    c.run_once()
    c.run_once()
    assert c.version == versions[1] and _same(c.engine, p.read_state)


def test_a_corrupt_delta_is_routed_around_by_a_snapshot() -> None:
    store = InMemoryBlobStore()
    p, versions = _chain(store, 3)
    c = Consumer(retriever=store, watcher=store)
    c.refresh_to(versions[0])
    _corrupt(store, BlobRef.delta(versions[1], versions[2]))
    with pytest.raises(RefreshError, match="CRC-32C"):
        c.refresh()
    assert c.version == versions[0]  # a plan's blobs are all fetched and checked before any is applied
    assert c.refresh() == versions[2]  # the next attempt avoids the bad delta: double snapshot
    assert c.statistics().double_snapshots == 1 and _same(c.engine, p.read_state)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_bad_snapshot_at_startup_loads_nothing_and_says_why(damage: str) -> None:
    store = InMemoryBlobStore()
    _, versions = _chain(store, 1)
    ref = BlobRef.snapshot(versions[0])
    good = store.get(ref)
    assert good is not None
    bad = {"truncate": good[: len(good) // 2], "flip": _flipped(good), "garbage": b"\x00" * 64}[damage]
    store.put_raw(ref, bad)
    clock = FakeClock()
    c = Consumer(retriever=store, watcher=store, clock=clock, failed_transition_ttl_ms=5_000)
    with pytest.raises(RefreshError):
        c.refresh()
    assert c.engine is None and c.version is None
    store.put_raw(ref, good)
    with pytest.raises(RefreshError, match="avoiding snapshot-"):  # the bad snapshot is still avoided ...
        c.refresh()
    clock.advance(5_000)
    assert c.refresh() == versions[0]  # ... until its failure is old enough to try it again


def _flipped(data: bytes) -> bytes:
    b = bytearray(data)
    b[-3] ^= 0xFF
    return bytes(b)


def test_digests_are_checked_and_required_unless_told_otherwise() -> None:
    from loosely.hollow.api._blobs import DIGEST_TAG
    from loosely.hollow.core import parse_blob_header, with_header_tags

    store = InMemoryBlobStore()
    _, versions = _chain(store, 1)
    ref = BlobRef.snapshot(versions[0])
    data = store.get(ref)
    assert data is not None
    store.put_raw(ref, with_header_tags(data, {DIGEST_TAG: "deadbeef"}))
    with pytest.raises(RefreshError, match="CRC-32C"):
        Consumer(retriever=store, watcher=store).refresh()
    header, _ = parse_blob_header(data)
    tags = {k: v for k, v in header.tags.items() if k != DIGEST_TAG}
    from loosely.hollow.core._blob import BlobHeader, write_blob_header
    from loosely.hollow.core._encoding import Writer

    w = Writer()  # the same blob as Java would write it: no digest tag
    write_blob_header(w, BlobHeader(header.origin_tag, header.destination_tag, header.schemas, tags))
    store.put_raw(ref, bytes(w.buf) + data[parse_blob_header(data)[1]:])
    with pytest.raises(RefreshError, match="no loosely"):
        Consumer(retriever=store, watcher=store).refresh()
    assert Consumer(retriever=store, watcher=store, require_digest=False).refresh() == versions[0]


def test_the_refresh_lock_keeps_a_multi_read_consistent() -> None:
    store = InMemoryBlobStore()
    p = Producer(publisher=store, announcer=store, data_model=[Movie], clock=FakeClock())
    cat = Catalog()
    p.run_cycle(cat.populate)
    c = Consumer(retriever=store, watcher=store)
    c.refresh()
    cat.advance()
    v2 = p.run_cycle(cat.populate)
    done = threading.Event()
    with c.reading() as engine:
        first = engine.checksum().value
        t = threading.Thread(target=lambda: (c.refresh(), done.set()), daemon=True)
        t.start()
        time.sleep(0.2)
        assert not done.is_set()  # the refresh waits for the reader
        assert engine.checksum().value == first and c.version != v2
    t.join(10)
    assert done.is_set() and c.version == v2


def test_background_refresh_and_read_after_write() -> None:
    store = InMemoryBlobStore()
    p = Producer(publisher=store, announcer=store, data_model=[Movie])
    cat = Catalog()
    p.run_cycle(cat.populate)
    events: list[RefreshEvent] = []
    with Consumer(retriever=store, watcher=store, poll_interval_ms=20, listeners=[events.append]) as c:
        c.start()
        for _ in range(3):
            cat.advance()
            v = p.run_cycle(cat.populate)
            assert v is not None and c.wait_for_version(v, timeout_ms=5_000)
            assert c.version == v
    applied = [e for e in events if isinstance(e, DeltaApplied)]
    assert len(applied) == 3 and all(isinstance(e, RefreshSucceeded) for e in events[-1:])


def test_wait_for_version_times_out() -> None:
    store = InMemoryBlobStore()
    _, versions = _chain(store, 1)
    c = Consumer(retriever=store, watcher=store, poll_interval_ms=10)
    assert c.wait_for_version(versions[0], 1_000)
    assert not c.wait_for_version(Version(versions[0] + 1), 50)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        Consumer(retriever=InMemoryBlobStore(), deltas_max=0)
    with pytest.raises(ValueError):
        Consumer(retriever=InMemoryBlobStore(), poll_interval_ms=0)


def test_blob_types_are_counted() -> None:
    store = InMemoryBlobStore()
    _chain(store, 3)
    kinds = {r.type for r in store.refs()}
    assert kinds == {BlobType.SNAPSHOT, BlobType.DELTA, BlobType.REVERSE_DELTA, BlobType.HEADER}


def test_a_blob_with_a_dangling_reference_is_refused_and_the_last_good_version_served() -> None:
    """A producer bug writes a Movie whose title points past the Strings: its own integrity check refuses to
    announce it; announced anyway, consumers refuse the delta and the snapshot and keep serving version 1."""
    store = InMemoryBlobStore()
    schemas = parse_schemas("Movie @PrimaryKey(id) { int id; String title; } String { string value; }")
    p = Producer(publisher=store, announcer=store, schemas=schemas, clock=FakeClock())

    def populate(dangling: bool) -> Callable[[WriteState], None]:
        def run(state: WriteState) -> None:
            e = state.engine
            e.add_object("Movie", {"id": 1, "title": e.add_object("String", {"value": "Heat"})})
            if dangling:
                e.add_object("Movie", {"id": 2, "title": 7})
        return run

    v1 = p.run_cycle(populate(False))
    assert v1 is not None
    c = Consumer(retriever=store, watcher=store)
    assert c.refresh() == v1
    with pytest.raises(HollowBlobError, match="references String ordinal 7"):
        p.run_cycle(populate(True))
    assert store.latest_version() == v1
    (v2,) = {r.to_version for r in store.refs()} - {v1}
    store.announce(v2)
    for _ in range(2):  # the delta, then a double snapshot around it: both refused
        with pytest.raises(RefreshError, match="references String ordinal 7"):
            c.refresh()
        assert c.version == v1 and c.engine is not None
        assert record_json(c.engine, "Movie", 0) == {"id": 1, "title": "Heat"}
    assert c.statistics().failed_transitions == 2
