"""The narrow interface every sink implements, and what each one promises.

A sink is bound to one view version by :meth:`Sink.open` and then receives whole batches through
:meth:`Sink.apply`. What happens after a crash depends on the sink's :class:`Guarantee`:

* ``EXACTLY_ONCE``: the sink writes the batch's net changes *and* the batch's end offsets in one transaction
  (a ``view_offsets`` table). The runner seeks to :meth:`Sink.stored_positions` when partitions are assigned and
  uses the consumer group only to spread partitions over runners. A batch whose start positions no longer match
  the stored ones is refused with :class:`Fenced` (another runner got there first), so a zombie runner cannot
  apply a batch twice.
* ``IDEMPOTENT``: the sink cannot share a transaction with the offsets. The runner commits offsets to the
  consumer group after the sink's write returns; a crash in between replays the batch, and every stored document
  carries the per-partition offset of the last record applied to it, so replayed records are skipped
  (see :func:`loosely.views._batch.fold_versioned`). While a replay runs, a key deleted in the replayed batch can
  briefly reappear before its delete is replayed again; the end state is the same.
* ``REBUILT``: the state lives in the runner's memory (metrics endpoints). Every start rebuilds it from the
  beginning of the log; each runner reads every partition itself, without a group.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from loosely.views._batch import Batch
from loosely.views._model import Json, TopicPartition, View, ViewError

try:  # the interpreter's own SHA-256 (Python 3.11: _sha256, 3.12+: _sha2): hashlib would load OpenSSL's libcrypto,
    # 3.4 MiB of a view runner's resident memory for one digest of a short name (measured 2026-12-07)
    from _sha256 import sha256 as _sha256  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - Python 3.12+
    try:
        from _sha2 import sha256 as _sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:
        from hashlib import sha256 as _sha256  # type: ignore[assignment,unused-ignore]

__all__ = [
    "Catalog",
    "Fenced",
    "Guarantee",
    "Sink",
    "SinkError",
    "SinkStatistics",
    "VersionDropped",
    "VersionInfo",
    "VersionState",
    "read_version",
    "sink_id",
]


class Guarantee(enum.Enum):
    EXACTLY_ONCE = "exactly-once"
    IDEMPOTENT = "idempotent"
    REBUILT = "rebuilt-on-start"


class SinkError(RuntimeError):
    """A sink write failed; the batch was not committed and will be retried or replayed."""


class Fenced(SinkError):
    """The sink's stored positions moved under this runner: another runner applied these records."""


class VersionDropped(SinkError):
    """The view version this runner writes was dropped from the sink's catalog: nothing it writes would be read,
    so the runner stops (a follower moves on to the serving version) instead of retrying."""


class VersionState(enum.Enum):
    BUILDING = "building"
    SERVING = "serving"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class VersionInfo:
    name: str
    version: int
    topics: tuple[str, ...]
    state: VersionState
    created_ms: int
    positions: Mapping[TopicPartition, int]
    last_timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class SinkStatistics:
    batches: int
    changes_written: int
    apply_ms_total: int
    failures: int


class Sink(Protocol):
    """Where a view's table lives. Implementations: SQLite (with FTS5 search), PostgreSQL, JSON documents in a
    directory or S3 bucket, Sphinx search, Prometheus metrics, InfluxDB points."""

    @property
    def guarantee(self) -> Guarantee: ...

    @property
    def wants_positions(self) -> bool:
        """Whether :meth:`apply` reads each change's source, offset and timestamp (``Batch.sources`` and so on);
        sinks that only fold whole batches say no and the runner skips recording them."""

    def open(self, view: View[object, object]) -> None:
        """Create what the view version needs (idempotent) and bind this sink to it for writing."""

    def stored_positions(self) -> dict[TopicPartition, int]:
        """Next offset to read per partition, as committed with the data (``EXACTLY_ONCE`` and ``REBUILT``)."""

    def apply(self, batch: Batch) -> None:
        """Write the batch; on return it is durable. Raises :class:`SinkError` (:class:`Fenced`) on failure.

        The runner calls it from its writer thread (``RunnerConfig.pipeline``) while it builds the next batch,
        never at the same time as another of the sink's methods. A sink may also offer ``prepare(batch)``, which
        does the interpreter-bound part of ``apply`` in the runner's own thread and returns the write (a callable
        of no arguments, which may be called again after it failed); the runner then uses it instead of
        ``apply``, and ``apply(batch)`` must equal ``prepare(batch)()``. Subclasses that wrap the write override
        ``prepare``."""

    def close(self) -> None: ...

    def statistics(self) -> SinkStatistics: ...


@runtime_checkable
class Catalog(Protocol):
    """Reading and blue/green switching, for the sinks that keep several versions side by side."""

    def names(self) -> list[str]: ...

    def versions(self, name: str) -> list[VersionInfo]: ...

    def serving_version(self, name: str) -> int | None: ...

    def switch(self, name: str, version: int) -> None:
        """Atomically make ``version`` the one readers see."""

    def drop(self, name: str, version: int) -> None:
        """Delete a version that is not serving."""

    def get(self, name: str, key: str, version: int | None = None) -> Json | None: ...

    def scan(self, name: str, *, after: str = "", limit: int = 100, version: int | None = None) -> list[
        tuple[str, Json]
    ]: ...


def sink_id(sink: object) -> str | None:
    """A short, stable name for where a sink keeps its data: 8 hex digits of the SHA-256 of its ``location``
    (``sqlite:/abs/path.db``, ``dir:/abs/dir``, ``s3:endpoint/bucket/prefix``, ...), or ``None`` for a sink that
    names no location. Default consumer groups carry it, so one view version written into two sinks reads the log
    twice, each from its own positions.

    >>> class Somewhere:
    ...     location = "sqlite:/var/lib/views.db"
    >>> sink_id(Somewhere())
    '502f5646'
    """
    location = getattr(sink, "location", None)
    if not isinstance(location, str) or not location:
        return None
    digest: str = _sha256(location.encode()).hexdigest()
    return digest[:8]


def read_version(catalog: Catalog, name: str, version: int | None) -> int | None:
    """The version a read of ``name`` means: ``version``, or the serving one when it is ``None`` (``None`` when
    nothing serves). Versions start at 1; the sinks that keep their catalog beside the data (Sphinx) use 0 for it,
    so a read of version 0 is refused rather than answered with catalog entries."""
    if version is None:
        return catalog.serving_version(name)
    if version < 1:
        raise ViewError(f"{name}: view versions are >= 1, got {version}")
    return version
