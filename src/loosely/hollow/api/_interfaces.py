"""The four small interfaces through which producers and consumers reach storage (Java Hollow's design).

A producer needs a :class:`Publisher` (puts blobs) and an :class:`Announcer` (says which version is current);
a consumer needs an :class:`AnnouncementWatcher` (reads that) and a :class:`BlobRetriever` (finds blobs).  Every
store implements them with a handful of calls: the filesystem, S3-compatible object storage, the in-memory
store for tests, and the announcer/watcher on a compacted topic of the log.

Errors: a store that cannot be reached raises :class:`BlobStoreUnavailableError` (a consumer keeps serving and
retries; a producer's cycle fails and rolls back).  "Not found" is not an error: retrievers return None and
watchers return None when nothing was announced yet.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from loosely.hollow.api._blobs import Blob, BlobRef, Version
from loosely.hollow.core import HollowError

__all__ = [
    "AnnouncementWatcher",
    "Announcer",
    "BlobConflictError",
    "BlobRetriever",
    "BlobStoreUnavailableError",
    "NotLeaderError",
    "Publisher",
]


class BlobStoreUnavailableError(HollowError):
    """The blob store or announcement source could not be reached (or answered with a server error)."""


class BlobConflictError(HollowError):
    """A different blob is already stored under this name; publishers never replace one."""


class NotLeaderError(HollowError):
    """This producer may not publish or announce: it is not the leader, or a newer leader fenced it."""


@runtime_checkable
class Publisher(Protocol):
    """Puts blobs where consumers find them (Java ``HollowProducer.Publisher``).

    ``publish`` must be atomic (a reader sees the whole blob or none) and must not replace a different blob
    already stored under the same name (a stale producer could otherwise overwrite the live chain).
    """

    def publish(self, ref: BlobRef, data: bytes) -> None: ...


@runtime_checkable
class Announcer(Protocol):
    """Makes a published version the current one (Java ``HollowProducer.Announcer``)."""

    def announce(self, version: Version) -> None: ...


@runtime_checkable
class BlobRetriever(Protocol):
    """Finds blobs (Java ``HollowConsumer.BlobRetriever``); None when there is none.

    * ``retrieve_snapshot(v)``: the snapshot of ``v`` or else of the greatest version below ``v``;
    * ``retrieve_delta(v)`` / ``retrieve_reverse_delta(v)``: the transition starting at ``v``; when several
      start there (a failed cycle's orphan next to the cycle that succeeded), the one reaching furthest;
    * ``retrieve_header(v)``: the header blob of ``v``.
    """

    def retrieve_snapshot(self, desired_version: Version) -> Blob | None: ...

    def retrieve_delta(self, from_version: Version) -> Blob | None: ...

    def retrieve_reverse_delta(self, from_version: Version) -> Blob | None: ...

    def retrieve_header(self, version: Version) -> Blob | None: ...


@runtime_checkable
class AnnouncementWatcher(Protocol):
    """Reads the announced version (Java ``HollowConsumer.AnnouncementWatcher``); None before the first one."""

    def latest_version(self) -> Version | None: ...

