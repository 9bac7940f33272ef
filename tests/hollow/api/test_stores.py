"""The filesystem and in-memory blob stores: the same contract, and the filesystem's durability rules."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from loosely.hollow.api import (
    BlobConflictError,
    BlobRef,
    BlobStoreUnavailableError,
    FilesystemBlobStore,
    InMemoryBlobStore,
    Version,
)

V = Version
Store = FilesystemBlobStore | InMemoryBlobStore


@pytest.fixture(params=["filesystem", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield FilesystemBlobStore(tmp_path / "store") if request.param == "filesystem" else InMemoryBlobStore()


def _load(store: Store, blob: object) -> bytes:
    assert blob is not None
    return bytes(blob.load())  # type: ignore[attr-defined]


def test_contract(store: Store) -> None:
    assert store.latest_version() is None
    assert store.retrieve_snapshot(V(100)) is None and store.retrieve_delta(V(1)) is None
    for ref, data in [(BlobRef.snapshot(V(10)), b"s10"), (BlobRef.snapshot(V(30)), b"s30"),
                      (BlobRef.delta(V(10), V(20)), b"d10-20"), (BlobRef.delta(V(10), V(25)), b"d10-25"),
                      (BlobRef.reverse_delta(V(25), V(10)), b"r25-10"), (BlobRef.header(V(25)), b"h25")]:
        store.publish(ref, data)
    store.announce(V(25))
    assert store.latest_version() == 25
    snap = store.retrieve_snapshot(V(29))
    assert snap is not None and snap.ref == BlobRef.snapshot(V(10)) and _load(store, snap) == b"s10"
    assert _load(store, store.retrieve_snapshot(V(30))) == b"s30"
    assert store.retrieve_snapshot(V(9)) is None
    delta = store.retrieve_delta(V(10))
    assert delta is not None and delta.ref.to_version == 25 and _load(store, delta) == b"d10-25"
    assert _load(store, store.retrieve_reverse_delta(V(25))) == b"r25-10"
    assert _load(store, store.retrieve_header(V(25))) == b"h25"
    assert store.retrieve_header(V(26)) is None
    store.announce(V(10))  # announcements may go back (a rollback by the operator)
    assert store.latest_version() == 10


def test_blobs_are_never_replaced(store: Store) -> None:
    ref = BlobRef.delta(V(1), V(2))
    store.publish(ref, b"first")
    store.publish(ref, b"first")  # the same bytes again: fine (a retried publish)
    with pytest.raises(BlobConflictError):
        store.publish(ref, b"other")
    assert _load(store, store.retrieve_delta(V(1))) == b"first"


def test_filesystem_uses_javas_names_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    store.publish(BlobRef.snapshot(V(7)), b"x")
    store.publish(BlobRef.delta(V(7), V(8)), b"y")
    store.publish(BlobRef.reverse_delta(V(8), V(7)), b"z")
    store.publish(BlobRef.header(V(8)), b"h")
    store.announce(V(8))
    assert sorted(os.listdir(tmp_path)) == ["announced.version", "delta-7-8", "header-8", "reversedelta-8-7",
                                            "snapshot-7"]
    assert (tmp_path / "announced.version").read_bytes() == b"8"  # Java writes the bare number
    (tmp_path / "announced.version").write_text("9\n")  # ... and reads a line, so a newline is fine too
    assert store.latest_version() == 9


def test_filesystem_snapshots_are_memory_mapped_and_outlive_deletion(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    store.publish(BlobRef.snapshot(V(7)), b"snapshot bytes")
    data = store.retrieve_snapshot(V(7)).load()  # type: ignore[union-attr]
    assert not isinstance(data, bytes)
    store.delete(BlobRef.snapshot(V(7)))
    assert bytes(data) == b"snapshot bytes"
    assert store.retrieve_snapshot(V(7)) is None


def test_filesystem_ignores_foreign_and_partial_files(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    (tmp_path / ".delta-1-2.tmp-1-ab").write_bytes(b"half")
    (tmp_path / "delta-1-x").write_bytes(b"?")
    (tmp_path / "snapshot_extra-5").write_bytes(b"part")
    assert store.retrieve_delta(V(1)) is None and store.retrieve_snapshot(V(9)) is None


def test_unreachable_stores_raise_their_own_error(tmp_path: Path) -> None:
    fs = FilesystemBlobStore(tmp_path / "gone")
    (tmp_path / "gone").rmdir()  # the directory vanished (an unmounted volume)
    with pytest.raises(BlobStoreUnavailableError):
        fs.latest_version()
    with pytest.raises(BlobStoreUnavailableError):
        fs.retrieve_delta(V(1))
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(BlobStoreUnavailableError):
        FilesystemBlobStore(tmp_path / "file" / "store")  # a path under a regular file
    blocked = FilesystemBlobStore(tmp_path / "file" / "store", create=False)
    with pytest.raises(BlobStoreUnavailableError):
        blocked.publish(BlobRef.snapshot(V(1)), b"x")
    mem = InMemoryBlobStore()
    mem.available = False
    for call in (mem.latest_version, lambda: mem.retrieve_snapshot(V(1)), lambda: mem.announce(V(1))):
        with pytest.raises(BlobStoreUnavailableError):
            call()


def test_a_garbled_announcement_is_an_error_not_a_version(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    (tmp_path / "announced.version").write_bytes(b"12x")
    with pytest.raises(BlobStoreUnavailableError, match="does not hold a version"):
        store.latest_version()
    (tmp_path / "announced.version").write_bytes(b"1" * 100)
    with pytest.raises(BlobStoreUnavailableError):
        store.latest_version()


def test_statistics_count(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    store.publish(BlobRef.snapshot(V(1)), b"abc")
    store.announce(V(1))
    store.retrieve_snapshot(V(1))
    s = store.statistics()
    assert (s.published_blobs, s.published_bytes, s.announcements, s.retrievals) == (1, 3, 1, 1)
