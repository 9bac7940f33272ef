"""Producer cycles: what is published, the integrity check, validators, rollback, restore (incremental cycles:
test_incremental.py)."""

from __future__ import annotations

import pytest

from hollow.api.models import Catalog, Movie, by_key, movie
from loosely.hollow.api import (
    BlobRef,
    BlobType,
    ChecksumMismatchError,
    Consumer,
    CycleCompleted,
    CycleStatus,
    DuplicatePrimaryKeyValidator,
    InMemoryBlobStore,
    ManualLeader,
    MinimumRecordCountValidator,
    NotLeaderError,
    Producer,
    ProducerEvent,
    RecordCountChangeValidator,
    ValidationContext,
    ValidationError,
    ValidationResult,
    Version,
)
from loosely.hollow.api._blobs import DIGEST_TAG, check_blob
from loosely.hollow.core import HollowError, ReadStateEngine, parse_blob_header
from loosely.testing import FakeClock


def dump_state(engine: ReadStateEngine | None) -> str:
    """The state's records by key, record counts and checksum.  Not the full dump: header tags (digests), max
    ordinals and ghosts differ with the path that led to a state (snapshot, delta or reverse delta)."""
    assert engine is not None
    return by_key(engine) + f"\nchecksum {engine.checksum().hex()}"


def _producer(store: InMemoryBlobStore, **kw: object) -> Producer:
    kw.setdefault("clock", FakeClock())
    return Producer(publisher=store, announcer=store, retriever=store, data_model=[Movie], **kw)  # type: ignore[arg-type]


def _kinds(store: InMemoryBlobStore, version: int) -> set[str]:
    return {r.type.value for r in store.refs() if r.to_version == version}


def test_a_cycle_publishes_four_blobs_with_digests_and_announces() -> None:
    store, cat = InMemoryBlobStore(), Catalog()
    p = _producer(store)
    v1 = p.run_cycle(cat.populate)
    assert _kinds(store, v1) == {"snapshot", "header"} and store.latest_version() == v1
    cat.advance()
    v2 = p.run_cycle(cat.populate)
    assert v2 is not None and v1 is not None and v2 > v1
    assert _kinds(store, v2) == {"snapshot", "header", "delta"} and _kinds(store, v1) >= {"reversedelta"}
    for ref in store.refs():
        data = store.get(ref)
        assert data is not None
        tags = check_blob(ref, data, require_digest=ref.type is not BlobType.HEADER)
        assert tags["hollow.blob.to.version"] == str(ref.to_version)


def test_header_tags_follow_javas_producer() -> None:
    store, cat = InMemoryBlobStore(), Catalog()
    p = _producer(store)
    versions = []
    for _ in range(3):
        versions.append(p.run_cycle(cat.populate))
        cat.advance()
    tags = parse_blob_header(store.get(BlobRef.header(versions[-1])))[0].tags  # type: ignore[arg-type]
    assert tags["hollow.delta.chain.version.counter"] == "3"
    assert tags["hollow.blob.to.version"] == str(versions[-1])
    assert tags["hollow.partitioned.ordinal.map"] == "false"
    assert "hollow.schema.hash" in tags and "hollow.metric.cycle.start" in tags
    assert "hollow.schema.changedFromPriorVersion" not in tags and DIGEST_TAG not in tags


def test_nothing_changed_is_a_no_op() -> None:
    store, cat = InMemoryBlobStore(), Catalog()
    events: list[ProducerEvent] = []
    p = _producer(store, listeners=[events.append])
    v1 = p.run_cycle(cat.populate)
    n = len(store.refs())
    assert p.run_cycle(cat.populate) == v1 and len(store.refs()) == n
    assert [e.status for e in events if isinstance(e, CycleCompleted)] == [CycleStatus.ANNOUNCED, CycleStatus.NO_CHANGE]
    cat.advance()
    assert p.run_cycle(cat.populate) != v1  # and the engine is fine afterwards


def test_snapshot_every_n_cycles_and_consumers_start_from_the_nearest() -> None:
    store, cat = InMemoryBlobStore(), Catalog()
    p = _producer(store, snapshot_every_cycles=3)
    versions = []
    for _ in range(7):
        versions.append(p.run_cycle(cat.populate))
        cat.advance()
    snaps = [v for v in versions if "snapshot" in _kinds(store, v)]
    assert snaps == [versions[0], versions[3], versions[6]]
    c = Consumer(retriever=store)
    c.refresh_to(versions[5])
    s = c.statistics()
    assert (s.snapshots_loaded, s.deltas_applied) == (1, 2)  # snapshot of versions[3], then two deltas


def _change_a_title(data: bytes) -> bytes:
    """Change one character of a title in a blob's string pool: the framing stays valid, a record's value does not."""
    assert b"title " in data
    return data.replace(b"title ", b"titlE ", 1)


@pytest.mark.parametrize("which", ["write_delta", "write_reverse_delta"])
def test_integrity_check_refuses_a_bad_transition_and_rolls_back(which: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store, cat = InMemoryBlobStore(), Catalog()
    p = _producer(store)
    v1 = p.run_cycle(cat.populate)
    before = dump_state(p.read_state)  # type: ignore[arg-type]
    cat.advance()
    real = getattr(p.write_engine, which)
    monkeypatch.setattr(p.write_engine, which, lambda: _change_a_title(real()))
    with pytest.raises(ChecksumMismatchError):
        p.run_cycle(cat.populate)
    assert store.latest_version() == v1 and p.version == v1
    assert dump_state(p.read_state) == before  # type: ignore[arg-type]
    monkeypatch.undo()
    v2 = p.run_cycle(cat.populate)
    c = Consumer(retriever=store, watcher=store)
    c.refresh_to(v1)
    c.refresh()
    assert c.version == v2 and c.statistics().snapshots_loaded == 1  # v1 -> v2 by the new delta
    assert dump_state(c.engine) == dump_state(p.read_state)  # type: ignore[arg-type]


def test_validators_gate_the_announcement() -> None:
    store, cat = InMemoryBlobStore(), Catalog(size=100, changes=0)
    seen: list[ValidationContext] = []

    def custom(ctx: ValidationContext) -> ValidationResult:
        seen.append(ctx)
        return ValidationResult("custom", True)

    p = _producer(store, validators=[RecordCountChangeValidator("Movie", 20.0), DuplicatePrimaryKeyValidator("Movie"),
                                     MinimumRecordCountValidator("Movie", 10), custom])
    v1 = p.run_cycle(cat.populate)
    full = dict(cat.movies)
    for i in list(cat.movies)[:20]:  # 40% fewer movies
        del cat.movies[i]
    with pytest.raises(ValidationError, match=r"RecordCountChange\(Movie\)"):
        p.run_cycle(cat.populate)
    assert store.latest_version() == v1 and p.read_state.type("Movie").record_count() == 50  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="duplicate keys") as info:
        p.run_cycle(lambda s: s.add_all([*full.values(), movie(0, 99)]))  # two records with id 0
    assert [r.passed for r in info.value.results] == [True, False, True, True]
    assert seen[-1].previous is not None and seen[-1].previous_version == v1


def test_a_validator_that_raises_fails_the_cycle() -> None:
    store, cat = InMemoryBlobStore(), Catalog()

    def broken(ctx: ValidationContext) -> ValidationResult:
        raise RuntimeError("bug in validator")

    p = _producer(store, validators=[broken])
    with pytest.raises(ValidationError, match="bug in validator"):
        p.run_cycle(cat.populate)
    assert store.latest_version() is None


class FailingAnnouncer:
    def __init__(self, store: InMemoryBlobStore) -> None:
        self.store, self.fail = store, False

    def announce(self, version: Version) -> None:
        if self.fail:
            raise OSError("announcement store down")
        self.store.announce(version)


def test_a_failed_announcement_leaves_an_orphan_the_next_cycle_reaches_past() -> None:
    store, cat = InMemoryBlobStore(), Catalog()
    ann = FailingAnnouncer(store)
    p = Producer(publisher=store, announcer=ann, data_model=[Movie], clock=FakeClock())
    v1 = p.run_cycle(cat.populate)
    c = Consumer(retriever=store, watcher=store)
    c.refresh()
    cat.advance()
    ann.fail = True
    with pytest.raises(OSError, match="announcement store down"):
        p.run_cycle(cat.populate)
    orphan = [r for r in store.refs() if r.type is BlobType.DELTA]
    assert len(orphan) == 1 and store.latest_version() == v1
    ann.fail = False
    cat.advance()
    v3 = p.run_cycle(cat.populate)
    assert len([r for r in store.refs() if r.type is BlobType.DELTA and r.from_version == v1]) == 2
    c.refresh()
    assert c.version == v3 and c.statistics().double_snapshots == 0
    assert dump_state(c.engine) == dump_state(p.read_state)  # type: ignore[arg-type]


def test_a_deposed_producers_snapshot_is_passed_over_by_a_fresh_consumer() -> None:
    """A producer deposed mid-cycle may still publish a snapshot (fenced announcers stop only its announcement);
    the new leader mints above it and publishes deltas. A fresh consumer must not stop at that orphan."""
    store, cat = InMemoryBlobStore(), Catalog()
    clock = FakeClock()
    p = Producer(publisher=store, announcer=store, retriever=store, data_model=[Movie], clock=clock,
                 snapshot_every_cycles=100)
    v1 = p.run_cycle(cat.populate)
    deposed = Producer(publisher=store, announcer=FailingAnnouncer(store), retriever=store, data_model=[Movie],
                       clock=clock, snapshot_every_cycles=1)
    deposed.restore(v1)
    deposed.announcer.fail = True  # type: ignore[attr-defined]
    cat.advance()
    with pytest.raises(OSError, match="announcement store down"):
        deposed.run_cycle(cat.populate)
    clock.advance(1_000)  # the new leader mints above every earlier mint
    cat.advance()
    v2 = p.run_cycle(cat.populate)
    snapshots = sorted(r.to_version for r in store.refs() if r.type is BlobType.SNAPSHOT)
    assert len(snapshots) == 2 and v1 < snapshots[-1] < v2  # the orphan: the newest snapshot below v2
    c = Consumer(retriever=store, watcher=store)
    assert c.refresh() == v2
    assert dump_state(c.engine) == dump_state(p.read_state)  # type: ignore[arg-type]


def test_restore_continues_the_delta_chain() -> None:
    store, cat = InMemoryBlobStore(), Catalog()
    p = _producer(store)
    for _ in range(3):
        p.run_cycle(cat.populate)
        cat.advance()
    c = Consumer(retriever=store, watcher=store)
    c.refresh()
    restarted = _producer(store)
    assert restarted.restore(store.latest_version()) == store.latest_version()
    v = restarted.run_cycle(cat.populate)
    c.refresh()
    s = c.statistics()
    assert c.version == v and (s.snapshots_loaded, s.double_snapshots, s.deltas_applied) == (1, 0, 1)
    assert dump_state(c.engine) == dump_state(restarted.read_state)  # type: ignore[arg-type]


def test_without_restore_a_new_chain_forces_a_double_snapshot() -> None:
    store, cat = InMemoryBlobStore(), Catalog()
    p = _producer(store)
    p.run_cycle(cat.populate)
    c = Consumer(retriever=store, watcher=store)
    c.refresh()
    cat.advance()
    fresh = _producer(store, clock=FakeClock(now_ms=1_800_000_000_000))
    v = fresh.run_cycle(cat.populate)
    c.refresh()
    assert c.version == v and c.statistics().double_snapshots == 1


def test_restore_refuses_a_version_the_store_cannot_reach() -> None:
    store, cat = InMemoryBlobStore(), Catalog()
    _producer(store).run_cycle(cat.populate)
    with pytest.raises(HollowError, match="reaches version 5"):
        _producer(store).restore(Version(5))


def test_a_standby_skips_follows_and_takes_over_the_chain() -> None:
    store, cat = InMemoryBlobStore(), Catalog()
    leader_a, leader_b = ManualLeader(True), ManualLeader(False)
    a = _producer(store, leader=leader_a, watcher=store)
    b = _producer(store, leader=leader_b, watcher=store)
    va = a.run_cycle(cat.populate)
    assert b.run_cycle(cat.populate) == va and b.version == va  # skipped, but following
    assert b.statistics().not_leader == 1
    leader_a.disable()
    leader_b.enable()
    cat.advance()
    vb = b.run_cycle(cat.populate)
    assert vb is not None and va is not None and vb > va
    assert BlobRef.delta(va, vb) in store.refs()  # the chain continues from the old leader's version
    cat.advance()
    with pytest.raises(NotLeaderError):  # a deposed leader that did not notice refuses to publish deltas
        a.leader = _LosesLeadership()
        a.run_cycle(cat.populate)
    assert store.latest_version() == vb


class _LosesLeadership:
    """Leader when the cycle starts, not any more when it publishes."""

    def __init__(self) -> None:
        self.calls = 0

    def is_leader(self) -> bool:
        self.calls += 1
        return self.calls == 1

    def term(self) -> int:
        return 1


def test_a_listener_that_raises_does_not_break_the_cycle() -> None:
    store, cat = InMemoryBlobStore(), Catalog()

    def bad(event: ProducerEvent) -> None:
        raise RuntimeError("listener bug")

    p = _producer(store, listeners=[bad])
    assert p.run_cycle(cat.populate) == store.latest_version()
    stats = p.statistics()
    assert stats.announced == 1 and stats.last_cycle is not None and stats.last_cycle.records["Movie"] == 30


def test_garbage_collection_is_paused_during_a_cycle_and_restored_after() -> None:
    import gc

    cat = Catalog()
    seen: list[bool] = []

    def populate(state: object) -> None:
        seen.append(gc.isenabled())
        cat.populate(state)

    assert gc.isenabled()
    _producer(InMemoryBlobStore()).run_cycle(populate)
    assert seen == [False] and gc.isenabled()

    def failing(state: object) -> None:
        raise RuntimeError("populate failed")

    with pytest.raises(RuntimeError):
        _producer(InMemoryBlobStore()).run_cycle(failing)
    assert gc.isenabled()
    gc.disable()
    try:
        _producer(InMemoryBlobStore()).run_cycle(populate)
        assert not gc.isenabled()  # a collector the application turned off stays off
    finally:
        gc.enable()
    _producer(InMemoryBlobStore(), pause_gc=False).run_cycle(populate)
    assert seen[-1] is True
