"""Update planning: which blobs take a consumer from the version it has to the version it wants.

The rules are Java Hollow's (``HollowUpdatePlanner``):

* nothing loaded: the snapshot of the desired version, or of the greatest version below it, then deltas
  forward to the desired version; when no delta chain leads from that snapshot to the desired version (an orphan:
  a cycle that failed, or a deposed producer, published it and never announced it), the next older snapshot, up
  to ``ORPHAN_SNAPSHOTS_MAX`` times -- Java stops at the orphan;
* something loaded: follow deltas forward (or reverse deltas back, to pin an older version) for at most
  ``deltas_max`` transitions;
* if that does not reach the desired version and double snapshots are allowed, plan from a snapshot instead,
  and take it when it gets to the desired version (or closer than the deltas do).  Loading that snapshot while
  the old state still serves is the "double snapshot": twice the memory for a while.

A transition listed in ``excluded`` (one that failed to apply recently: a corrupt blob) is treated as missing,
so the planner routes around it when it can.  Planning only looks blobs up; their bytes are fetched by
:func:`fetch` afterwards, and each is checked (header, digest, version) before anything is applied.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from loosely.hollow.api._blobs import Blob, BlobData, BlobRef, BlobType, Version, check_blob
from loosely.hollow.api._interfaces import BlobRetriever
from loosely.hollow.core import HollowError, ReadStateEngine

__all__ = ["FetchedBlob", "UpdatePlan", "fetch", "load_version", "plan_update"]

DELTAS_AFTER_SNAPSHOT_MAX: Final = 100_000  # a bound on a chain walk; Java has none (Integer.MAX_VALUE)
ORPHAN_SNAPSHOTS_MAX: Final = 8  # snapshots passed over that lead nowhere; each failed cycle can leave one


@dataclass(frozen=True, slots=True)
class UpdatePlan:
    """Blobs to apply in order; ``snapshot`` is True when the first one is a snapshot (a fresh state)."""

    blobs: tuple[Blob, ...]
    origin: Version | None

    @property
    def snapshot(self) -> bool:
        return bool(self.blobs) and self.blobs[0].ref.type is BlobType.SNAPSHOT

    @property
    def destination(self) -> Version | None:
        return self.blobs[-1].ref.to_version if self.blobs else self.origin

    @property
    def refs(self) -> tuple[BlobRef, ...]:
        return tuple(b.ref for b in self.blobs)


def _forward(
    retriever: BlobRetriever, start: Version, desired: Version, deltas_max: int, excluded: Collection[BlobRef]
) -> list[Blob]:
    out: list[Blob] = []
    current = start
    while current < desired and len(out) < deltas_max:
        blob = retriever.retrieve_delta(current)
        if blob is None or blob.ref.to_version > desired or blob.ref in excluded:
            break
        out.append(blob)
        current = blob.ref.to_version
    return out


def _backward(
    retriever: BlobRetriever, start: Version, desired: Version, deltas_max: int, excluded: Collection[BlobRef]
) -> list[Blob]:
    out: list[Blob] = []
    current = start
    while current > desired and len(out) < deltas_max:
        blob = retriever.retrieve_reverse_delta(current)
        if blob is None or blob.ref.to_version < desired or blob.ref in excluded:
            break
        out.append(blob)
        current = blob.ref.to_version
    return out


def _snapshot_plan(retriever: BlobRetriever, desired: Version, excluded: Collection[BlobRef]) -> UpdatePlan:
    first: UpdatePlan | None = None
    below = desired
    for _ in range(ORPHAN_SNAPSHOTS_MAX + 1):
        snap = retriever.retrieve_snapshot(below)
        if snap is None or snap.ref in excluded or snap.ref.to_version > below:
            break
        deltas = _forward(retriever, snap.ref.to_version, desired, DELTAS_AFTER_SNAPSHOT_MAX, excluded)
        plan = UpdatePlan((snap, *deltas), None)
        if plan.destination == desired:
            return plan
        first = first or plan
        below = Version(snap.ref.to_version - 1)
    return first or UpdatePlan((), None)


def plan_update(
    retriever: BlobRetriever,
    current: Version | None,
    desired: Version,
    *,
    deltas_max: int = 32,
    allow_snapshot: bool = True,
    excluded: Collection[BlobRef] = (),
) -> UpdatePlan:
    """The blobs from ``current`` (None: nothing loaded) to ``desired``; may stop short (see ``destination``)."""
    if current == desired:
        return UpdatePlan((), current)
    if current is None:
        return _snapshot_plan(retriever, desired, excluded)
    steps = (_forward if current < desired else _backward)(retriever, current, desired, deltas_max, excluded)
    delta_plan = UpdatePlan(tuple(steps), current)
    reached = delta_plan.destination
    assert reached is not None
    if reached != desired and allow_snapshot:
        snap_plan = _snapshot_plan(retriever, desired, excluded)
        got = snap_plan.destination
        if got is not None and (
            got == desired or (reached > desired and got < desired) or (reached < got < desired)
        ):
            return snap_plan
    return delta_plan


@dataclass(frozen=True, slots=True)
class FetchedBlob:
    """A blob's bytes, checked (header parses, digest and version match)."""

    ref: BlobRef
    data: BlobData
    tags: dict[str, str]


def fetch(blob: Blob, *, require_digest: bool = True) -> FetchedBlob:
    """Load a blob's bytes and check them; raises BlobIntegrityError or BlobStoreUnavailableError."""
    data = blob.load()
    tags = check_blob(blob.ref, data, require_digest=require_digest)
    return FetchedBlob(blob.ref, data, tags)


def load_version(
    retriever: BlobRetriever, version: Version, *, require_digest: bool = True
) -> ReadStateEngine:
    """A fresh read state of exactly ``version`` (nearest snapshot, then deltas); raises HollowError if the store
    has no path to it.  Used by producer restore and the tools."""
    plan = plan_update(retriever, None, version)
    if plan.destination != version:
        raise HollowError(f"no snapshot and delta chain in the blob store reaches version {version}")
    engine: ReadStateEngine | None = None
    for blob in plan.blobs:
        f = fetch(blob, require_digest=require_digest)
        if engine is None:
            engine = ReadStateEngine.from_snapshot(f.data)
        else:
            engine.apply_delta(f.data)
    assert engine is not None
    return engine
