"""The filesystem blob store: one directory, Java Hollow's file names, atomic writes.

Layout (see ``_blobs``): ``snapshot-<v>``, ``delta-<from>-<to>``, ``reversedelta-<from>-<to>``, ``header-<v>``
and ``announced.version``.  A Java producer's directory (``HollowFilesystemPublisher`` + ``...Announcer``) is
read as it is, and Java's ``HollowFilesystemBlobRetriever`` + ``...AnnouncementWatcher`` read this one.

Writes are atomic and durable, which Java's publisher does not attempt (it streams into the final name):

* a blob is written to a temporary file in the same directory, fsynced, then *linked* to its final name.
  ``link`` fails if the name exists, so a blob is never replaced: re-publishing identical bytes is accepted,
  different bytes raise :class:`BlobConflictError` (a stale producer cannot overwrite the live chain);
* ``announced.version`` is replaced by ``rename`` of a fsynced temporary file;
* the directory is fsynced after each, so a crash never leaves a name pointing at a partial file.

Snapshots are memory-mapped when loaded (the read engine uses the mapping in place); files are only ever
replaced by ``rename``, never rewritten, so a mapping stays valid even if the file is deleted later.

Errors: any ``OSError`` becomes :class:`BlobStoreUnavailableError` (a missing directory, a failing disk), except
that a missing blob or announcement is "not found" (None).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loosely.hollow.api._blobs import (
    ANNOUNCED_VERSION_FILE,
    Blob,
    BlobData,
    BlobRef,
    BlobType,
    Version,
    parse_blob_name,
    pick_snapshot,
    pick_transition,
)
from loosely.hollow.api._interfaces import BlobConflictError, BlobStoreUnavailableError

__all__ = ["FilesystemBlobStore", "FilesystemStoreStatistics"]

_ANNOUNCEMENT_BYTES_MAX = 64


@dataclass(frozen=True, slots=True)
class FilesystemStoreStatistics:
    published_blobs: int
    published_bytes: int
    announcements: int
    retrievals: int
    errors: int


class FilesystemBlobStore:
    """Publisher, Announcer, BlobRetriever and AnnouncementWatcher over one directory.

    >>> import tempfile
    >>> store = FilesystemBlobStore(tempfile.mkdtemp())
    >>> store.publish(BlobRef.snapshot(Version(20250101)), b"blob bytes")
    >>> store.announce(Version(20250101))
    >>> store.latest_version(), sorted(os.listdir(store.path))
    (20250101, ['announced.version', 'snapshot-20250101'])
    >>> bytes(store.retrieve_snapshot(Version(20251231)).load())
    b'blob bytes'
    """

    def __init__(
        self, path: str | os.PathLike[str], *, create: bool = True, fsync: bool = True, mmap_snapshots: bool = True
    ) -> None:
        self.path = Path(path)
        if create:  # as Java's publisher and retriever do; a directory that vanishes later is "unavailable"
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise BlobStoreUnavailableError(f"blob store {self.path}: cannot create it: {e}") from e
        self.fsync = fsync
        self.mmap_snapshots = mmap_snapshots
        self._lock = threading.Lock()
        self._published = 0
        self._published_bytes = 0
        self._announcements = 0
        self._retrievals = 0
        self._errors = 0

    def __repr__(self) -> str:
        return f"FilesystemBlobStore({str(self.path)!r})"

    def _unavailable(self, what: str, e: OSError) -> BlobStoreUnavailableError:
        with self._lock:
            self._errors += 1
        return BlobStoreUnavailableError(f"blob store {self.path}: {what}: {e}")

    # -- writing --

    def _fsync_dir(self) -> None:
        if not self.fsync:
            return
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_temp(self, stem: str, data: bytes) -> Path:
        tmp = self.path / f".{stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        return tmp

    def publish(self, ref: BlobRef, data: bytes) -> None:
        name = ref.name
        final = self.path / name
        try:
            tmp = self._write_temp(name, data)
            try:
                os.link(tmp, final)
            except FileExistsError:
                if final.read_bytes() != data:
                    raise BlobConflictError(f"{final} exists with other content; blobs are never replaced") from None
            finally:
                tmp.unlink()
            self._fsync_dir()
        except OSError as e:
            raise self._unavailable(f"publishing {name}", e) from e
        with self._lock:
            self._published += 1
            self._published_bytes += len(data)

    def announce(self, version: Version) -> None:
        try:
            tmp = self._write_temp(ANNOUNCED_VERSION_FILE, str(int(version)).encode("ascii"))
            os.replace(tmp, self.path / ANNOUNCED_VERSION_FILE)
            self._fsync_dir()
        except OSError as e:
            raise self._unavailable(f"announcing {version}", e) from e
        with self._lock:
            self._announcements += 1

    def delete(self, ref: BlobRef) -> None:
        """Remove a blob (cleaning up a failed cycle's orphans, or old snapshots); no-op when absent."""
        try:
            (self.path / ref.name).unlink(missing_ok=True)
        except OSError as e:
            raise self._unavailable(f"deleting {ref.name}", e) from e

    # -- reading --

    def latest_version(self) -> Version | None:
        try:
            with open(self.path / ANNOUNCED_VERSION_FILE, "rb") as f:
                raw = f.read(_ANNOUNCEMENT_BYTES_MAX + 1)
        except FileNotFoundError:
            if not self.path.is_dir():
                raise self._unavailable("reading the announcement", FileNotFoundError(str(self.path))) from None
            return None
        except OSError as e:
            raise self._unavailable("reading the announcement", e) from e
        text = raw.decode("ascii", errors="replace").strip()
        if len(raw) > _ANNOUNCEMENT_BYTES_MAX or not text.lstrip("-").isdigit():
            raise BlobStoreUnavailableError(f"{self.path / ANNOUNCED_VERSION_FILE} does not hold a version: {raw!r}")
        return Version(int(text))

    def refs(self) -> list[BlobRef]:
        """Every blob in the directory (other files are ignored)."""
        try:
            with os.scandir(self.path) as it:
                names = [e.name for e in it]
        except OSError as e:
            raise self._unavailable("listing", e) from e
        return [r for r in map(parse_blob_name, names) if r is not None]

    def __iter__(self) -> Iterator[BlobRef]:
        return iter(self.refs())

    def _load(self, ref: BlobRef) -> BlobData:
        path = self.path / ref.name
        try:
            if self.mmap_snapshots and ref.type is BlobType.SNAPSHOT:
                with open(path, "rb") as f:
                    if os.fstat(f.fileno()).st_size == 0:
                        return b""
                    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            return path.read_bytes()
        except OSError as e:
            raise self._unavailable(f"reading {ref.name}", e) from e

    def _blob(self, ref: BlobRef | None) -> Blob | None:
        if ref is None:
            return None
        size = None
        with contextlib.suppress(OSError):
            size = (self.path / ref.name).stat().st_size
        with self._lock:
            self._retrievals += 1
        return Blob(ref, lambda: self._load(ref), size)

    def retrieve_snapshot(self, desired_version: Version) -> Blob | None:
        exact = BlobRef.snapshot(desired_version)
        if (self.path / exact.name).is_file():
            return self._blob(exact)
        return self._blob(pick_snapshot(self.refs(), desired_version))

    def retrieve_delta(self, from_version: Version) -> Blob | None:
        return self._blob(pick_transition(self.refs(), BlobType.DELTA, from_version))

    def retrieve_reverse_delta(self, from_version: Version) -> Blob | None:
        return self._blob(pick_transition(self.refs(), BlobType.REVERSE_DELTA, from_version))

    def retrieve_header(self, version: Version) -> Blob | None:
        ref = BlobRef.header(version)
        return self._blob(ref) if (self.path / ref.name).is_file() else None

    def statistics(self) -> FilesystemStoreStatistics:
        with self._lock:
            return FilesystemStoreStatistics(
                self._published, self._published_bytes, self._announcements, self._retrievals, self._errors
            )
