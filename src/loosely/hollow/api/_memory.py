"""An in-memory blob store implementing all four interfaces: for tests of services built on Hollow.

It behaves like the real stores (same selection rules, refuses to replace a different blob, announcements are
versions) and can be switched off to play an unreachable store::

    store = InMemoryBlobStore()
    producer = Producer(publisher=store, announcer=store, retriever=store, ...)
    consumer = Consumer(retriever=store, watcher=store)
    store.available = False      # every call now raises BlobStoreUnavailableError
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

from loosely.hollow.api._blobs import Blob, BlobRef, BlobType, Version, pick_snapshot, pick_transition
from loosely.hollow.api._interfaces import BlobConflictError, BlobStoreUnavailableError

__all__ = ["InMemoryBlobStore", "InMemoryStoreStatistics"]


@dataclass(frozen=True, slots=True)
class InMemoryStoreStatistics:
    blobs: int
    bytes: int
    announced: Version | None
    publishes: int
    retrievals: int


class InMemoryBlobStore:
    """Publisher, Announcer, BlobRetriever and AnnouncementWatcher over a dict.

    >>> store = InMemoryBlobStore()
    >>> store.publish(BlobRef.snapshot(Version(7)), b"...")
    >>> store.announce(Version(7))
    >>> store.latest_version(), store.retrieve_snapshot(Version(9)).ref.name
    (7, 'snapshot-7')
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blobs: dict[BlobRef, bytes] = {}
        self._announced: Version | None = None
        self.available = True
        self._publishes = 0
        self._retrievals = 0

    def _check(self) -> None:
        if not self.available:
            raise BlobStoreUnavailableError("the in-memory blob store is switched off")

    # -- Publisher / Announcer --

    def publish(self, ref: BlobRef, data: bytes) -> None:
        with self._lock:
            self._check()
            existing = self._blobs.get(ref)
            if existing is not None and existing != data:
                raise BlobConflictError(f"{ref.name} is already published with other content")
            self._blobs[ref] = bytes(data)
            self._publishes += 1

    def announce(self, version: Version) -> None:
        with self._lock:
            self._check()
            self._announced = version

    # -- AnnouncementWatcher --

    def latest_version(self) -> Version | None:
        with self._lock:
            self._check()
            return self._announced

    # -- BlobRetriever --

    def _blob(self, ref: BlobRef | None) -> Blob | None:
        if ref is None:
            return None
        self._retrievals += 1
        data = self._blobs[ref]

        def load() -> bytes:
            self._check()
            return data

        return Blob(ref, load, len(data))

    def retrieve_snapshot(self, desired_version: Version) -> Blob | None:
        with self._lock:
            self._check()
            return self._blob(pick_snapshot(self._blobs, desired_version))

    def retrieve_delta(self, from_version: Version) -> Blob | None:
        with self._lock:
            self._check()
            return self._blob(pick_transition(self._blobs, BlobType.DELTA, from_version))

    def retrieve_reverse_delta(self, from_version: Version) -> Blob | None:
        with self._lock:
            self._check()
            return self._blob(pick_transition(self._blobs, BlobType.REVERSE_DELTA, from_version))

    def retrieve_header(self, version: Version) -> Blob | None:
        with self._lock:
            self._check()
            ref = BlobRef.header(version)
            return self._blob(ref if ref in self._blobs else None)

    # -- for tests --

    def refs(self) -> list[BlobRef]:
        """Every stored blob, by type then versions."""
        with self._lock:
            return sorted(self._blobs, key=lambda r: (r.type.value, r.from_version or 0, r.to_version))

    def __iter__(self) -> Iterator[BlobRef]:
        return iter(self.refs())

    def get(self, ref: BlobRef) -> bytes | None:
        with self._lock:
            return self._blobs.get(ref)

    def put_raw(self, ref: BlobRef, data: bytes) -> None:
        """Store bytes as they are, replacing what is there (tests corrupt blobs with this)."""
        with self._lock:
            self._blobs[ref] = bytes(data)

    def delete(self, ref: BlobRef) -> None:
        with self._lock:
            self._blobs.pop(ref, None)

    def statistics(self) -> InMemoryStoreStatistics:
        with self._lock:
            return InMemoryStoreStatistics(
                len(self._blobs), sum(len(b) for b in self._blobs.values()), self._announced,
                self._publishes, self._retrievals,
            )
