"""The S3 blob store against a real S3 server: SeaweedFS (``weed mini``), started and stopped by the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from compat.hollow._services import Weed
from hollow.api.models import Catalog, Movie
from loosely.hollow.api import (
    BlobConflictError,
    BlobRef,
    BlobStoreUnavailableError,
    Consumer,
    Producer,
    RefreshError,
    S3BlobStore,
    Version,
)

V = Version


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Weed]:
    w = Weed(tmp_path_factory.mktemp("weed")).start()
    try:
        yield w
    finally:
        w.stop()


def _store(weed: Weed, prefix: str) -> S3BlobStore:
    return S3BlobStore(Weed.BUCKET, prefix, endpoint_url=weed.endpoint, access_key="x", secret_key="x")


def _load(blob: object) -> bytes:
    assert blob is not None
    return bytes(blob.load())  # type: ignore[attr-defined]


def test_contract_on_a_real_s3_server(weed: Weed) -> None:
    store = _store(weed, "contract")
    assert store.latest_version() is None and store.retrieve_snapshot(V(100)) is None
    for ref, data in [(BlobRef.snapshot(V(10)), b"s10"), (BlobRef.snapshot(V(30)), b"s30"),
                      (BlobRef.delta(V(10), V(20)), b"d10-20"), (BlobRef.delta(V(10), V(25)), b"d10-25"),
                      (BlobRef.delta(V(1), V(2)), b"d1-2"), (BlobRef.reverse_delta(V(25), V(10)), b"r25-10"),
                      (BlobRef.header(V(25)), b"h25")]:
        store.publish(ref, data)
    store.announce(V(25))
    assert store.latest_version() == 25
    assert store.retrieve_snapshot(V(29)).ref == BlobRef.snapshot(V(10))  # type: ignore[union-attr]
    assert _load(store.retrieve_snapshot(V(30))) == b"s30"
    assert _load(store.retrieve_delta(V(10))) == b"d10-25"  # the furthest transition
    assert _load(store.retrieve_delta(V(1))) == b"d1-2"  # "delta-1-" does not match "delta-10-..."
    assert _load(store.retrieve_reverse_delta(V(25))) == b"r25-10"
    assert _load(store.retrieve_header(V(25))) == b"h25" and store.retrieve_header(V(24)) is None
    store.publish(BlobRef.delta(V(1), V(2)), b"d1-2")  # identical bytes again: accepted
    with pytest.raises(BlobConflictError):
        store.publish(BlobRef.delta(V(1), V(2)), b"different")
    other = _store(weed, "other-namespace")
    assert other.latest_version() is None and other.refs() == []
    assert len(store.refs()) == 7 and store.statistics().published_blobs == 8


def test_producer_and_consumer_through_s3(weed: Weed) -> None:
    store = _store(weed, "catalog")
    p = Producer(publisher=store, announcer=store, retriever=store, data_model=[Movie], snapshot_every_cycles=3)
    cat = Catalog()
    versions = []
    for _ in range(5):
        v = p.run_cycle(cat.populate)
        assert v is not None
        versions.append(v)
        cat.advance()
    c = Consumer(retriever=store, watcher=store)
    assert c.refresh() == versions[-1]
    assert c.engine is not None and p.read_state is not None
    assert c.engine.checksum().value == p.read_state.checksum().value
    c.pin(versions[1])
    assert c.refresh() == versions[1] and c.statistics().reverse_deltas_applied == 3
    restarted = Producer(publisher=store, announcer=store, retriever=store, data_model=[Movie])
    restarted.restore(store.latest_version())
    v6 = restarted.run_cycle(cat.populate)
    c.unpin()
    assert c.refresh() == v6 and c.statistics().double_snapshots == 0


def test_a_stopped_server_is_unavailable_and_nothing_is_lost(weed: Weed) -> None:
    store = _store(weed, "outage")
    p = Producer(publisher=store, announcer=store, retriever=store, data_model=[Movie])
    cat = Catalog()
    v1 = p.run_cycle(cat.populate)
    c = Consumer(retriever=store, watcher=store)
    c.refresh()
    weed.stop()
    try:
        with pytest.raises(BlobStoreUnavailableError):
            store.latest_version()
        with pytest.raises(RefreshError):
            c.refresh()
        assert c.version == v1 and c.engine is not None and c.engine.type("Movie").record_count() == 30
        cat.advance()
        with pytest.raises(BlobStoreUnavailableError):
            p.run_cycle(cat.populate)
        assert p.version == v1
    finally:
        weed.start()
    v2 = p.run_cycle(cat.populate)
    assert c.refresh() == v2 and c.statistics().double_snapshots == 0
