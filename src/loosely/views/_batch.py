"""A batch: the changes one poll of the source produced, with where each came from, applied to a sink at once.

The runner builds a :class:`Batch` per poll and hands it to the sink in one call. Two pure helpers turn it into
writes:

* :func:`net_changes` folds the changes of each key in log order into one net change. Transactional sinks write
  that and the batch's end offsets in one transaction, so each record takes effect exactly once.
* :func:`fold_versioned` is for sinks that cannot be transactional. Each stored document keeps, per source
  partition, the offset of the last record applied to it (its *version*). Replaying a record at or below that
  version is a no-op, so a crash that replays a batch does not apply anything twice.

>>> b = Batch.build([(TopicPartition("t", 0), 5, 0, Add("a", 1)), (TopicPartition("t", 0), 6, 0, Add("a", 2)),
...                  (TopicPartition("t", 0), 7, 0, Put("b", "x")), (TopicPartition("t", 0), 8, 0, Delete("b"))],
...                 starts={TopicPartition("t", 0): 5})
>>> net_changes(b)
{'b': Delete(key='b'), 'a': Add(key='a', amount=3)}
>>> b.ends
{TopicPartition(topic='t', partition=0): 9}
>>> fold_versioned(10, {"t/0": 5}, [(TopicPartition("t", 0), 5, Add("a", 1)), (TopicPartition("t", 0), 6, Add("a", 2))])
(12, {'t/0': 6}, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from loosely.views._kernel import LatestText
from loosely.views._model import Add, Change, Delete, Json, Put, TopicPartition, ViewError

__all__ = ["DELETED", "Batch", "fold", "fold_versioned", "latest_split", "net_changes", "net_split", "version_key"]


@dataclass(slots=True)
class Batch:
    """Changes in log order (per partition) with their source positions, as parallel lists.

    ``starts`` is where the runner believes the sink stands for each partition (``None``: not known yet, as after
    the first assignment); a transactional sink refuses the batch if its stored offsets disagree (another runner
    got there first). ``ends`` is the next offset to read after this batch; it can be past the last change, since
    records that produce no change still move the position.
    """

    changes: list[Change] = field(default_factory=list)
    sources: list[TopicPartition] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    timestamps_ms: list[int] = field(default_factory=list)
    starts: dict[TopicPartition, int | None] = field(default_factory=dict)
    ends: dict[TopicPartition, int] = field(default_factory=dict)
    last_timestamp_ms: dict[TopicPartition, int] = field(default_factory=dict)
    records: int = 0
    # The net effect ``(absolute, relative)`` as net_split computes it, when the runner folded the changes while it
    # built them (for sinks that do not want positions); ``changes`` is then empty and ``folded_changes`` counts
    # the changes that were folded.
    folded: tuple[dict[str, Put | Delete], dict[str, int | float]] | None = None
    # The latest-value kernel's fold (:func:`~loosely.views._model.latest_by_key` and a folding sink): each key's
    # last value, ``None`` where its last record was a tombstone. One dict entry per event and no ``Put`` per
    # event; ``net`` turns it into Puts and Deletes for the sinks that do not read it directly (the SQL sinks do).
    latest: dict[str, Json] | None = None
    # The same fold for text values read by the batch consumer, kept as bytes in C (``_kernel.LatestText``: about a
    # quarter of the dict's memory, and the SQLite sink writes it in key order without a dict); ``latest`` is then
    # ``None``. ``net`` reads it through ``to_dict``.
    latest_text: LatestText | None = None
    folded_changes: int = 0

    @classmethod
    def build(
        cls,
        entries: Iterable[tuple[TopicPartition, int, int, Change]],
        starts: Mapping[TopicPartition, int | None] | None = None,
    ) -> Batch:
        """A batch from ``(source, offset, timestamp_ms, change)`` entries (for tests and examples)."""
        b = cls(starts=dict(starts or {}))
        for tp, off, ts, ch in entries:
            b.changes.append(ch)
            b.sources.append(tp)
            b.offsets.append(off)
            b.timestamps_ms.append(ts)
            b.ends[tp] = max(b.ends.get(tp, 0), off + 1)
            b.last_timestamp_ms[tp] = max(b.last_timestamp_ms.get(tp, 0), ts)
            b.records += 1
        for tp in b.ends:
            b.starts.setdefault(tp, None)
        return b

    def __len__(self) -> int:
        """How many changes the batch's records produced."""
        if self.folded is None and self.latest is None and self.latest_text is None:
            return len(self.changes)
        return self.folded_changes

    def release(self) -> None:
        """Let go of the changes (a sink's prepared write holds what it needs); positions and counts stay."""
        self.folded_changes = len(self)
        self.folded, self.latest, self.latest_text = ({}, {}), None, None
        self.changes, self.sources, self.offsets, self.timestamps_ms = [], [], [], []

    def net(self) -> tuple[dict[str, Put | Delete], dict[str, int | float]]:
        """The batch's net effect as :func:`net_split` defines it. Callers must not modify the dicts: a sink that
        fails is handed the same batch again."""
        if self.latest_text is not None:
            return latest_split(self.latest_text.to_dict()), {}
        if self.latest is not None:
            return latest_split(self.latest), {}
        return self.folded if self.folded is not None else net_split(self.changes)


class _Deleted:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DELETED"


DELETED = _Deleted()
"""What :func:`fold_versioned` returns as the value of a key that ends the batch deleted."""


def _plus(key: str, value: Json, amount: int | float) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ViewError(f"Add to key {key!r}, whose value {value!r} is not a number")
    return value + amount


def fold(prev: Change | None, change: Change) -> Change:
    """The one change equivalent to ``prev`` followed by ``change``."""
    if prev is None or type(change) is not Add:
        return change
    if type(prev) is Add:
        return Add(change.key, prev.amount + change.amount)
    if type(prev) is Put:
        return Put(change.key, _plus(change.key, prev.value, change.amount))
    return Put(change.key, change.amount)  # after a Delete the key counts from zero


def net_split(changes: Sequence[Change]) -> tuple[dict[str, Put | Delete], dict[str, int | float]]:
    """The net effect of ``changes`` as ``(absolute, relative)``: the last ``Put``/``Delete`` of each key, and the
    sum of the ``Add``s that came after it (or of all its ``Add``s if it has none).

    Summing into a dict of numbers allocates nothing per ``Add``, which matters for counters, where most changes
    of a batch are ``Add``s (measured: a third of the per-record cost went to allocating folded ``Add``s).
    """
    absolute: dict[str, Put | Delete] = {}
    relative: dict[str, int | float] = {}
    rget = relative.get
    rpop = relative.pop
    for c in changes:
        k = c[0]
        if type(c) is Add:
            relative[k] = rget(k, 0) + c[1]
        else:
            absolute[k] = c  # type: ignore[assignment]
            rpop(k, None)
    return absolute, relative


def latest_split(latest: Mapping[str, Json]) -> dict[str, Put | Delete]:
    """The latest-value fold (``Batch.latest``) as :func:`net_split`'s ``absolute``: ``None`` is a deletion."""
    new = tuple.__new__
    return {k: new(Delete, (k,)) if v is None else new(Put, (k, v)) for k, v in latest.items()}


def net_changes(batch: Batch) -> dict[str, Change]:
    """Each key's changes folded in log order into one change."""
    absolute, relative = batch.net()
    out: dict[str, Change] = {}
    for k, c in absolute.items():
        amount = relative.get(k)
        out[k] = c if amount is None else fold(c, Add(k, amount))
    for k, amount in relative.items():
        if k not in absolute:
            out[k] = Add(k, amount)
    return out


def version_key(tp: TopicPartition) -> str:
    """How a source partition is named inside a stored document's version map."""
    return f"{tp.topic}/{tp.partition}"


def fold_versioned(
    current: Json | _Deleted,
    versions: Mapping[str, int],
    entries: Sequence[tuple[TopicPartition, int, Change]],
) -> tuple[Json | _Deleted, dict[str, int], bool]:
    """Apply the entries newer than the stored ``versions`` to ``current``; ``(value, versions, changed)``.

    ``current`` is :data:`DELETED` when the key has no stored document. Entries at or below the stored version of
    their partition were applied before a crash and are skipped, which makes replays idempotent.
    """
    value = current
    new_versions = dict(versions)
    changed = False
    for tp, off, c in entries:
        vk = version_key(tp)
        if off <= new_versions.get(vk, -1):
            continue
        new_versions[vk] = off
        changed = True
        if type(c) is Put:
            value = c.value
        elif type(c) is Delete:
            value = DELETED
        else:
            assert type(c) is Add
            value = c.amount if value is DELETED else _plus(c.key, value, c.amount)  # type: ignore[arg-type]
    return value, new_versions, changed


def entries_by_key(batch: Batch) -> dict[str, list[tuple[TopicPartition, int, Change]]]:
    """The batch's changes grouped by key, each group in log order."""
    out: dict[str, list[tuple[TopicPartition, int, Change]]] = {}
    for c, tp, off in zip(batch.changes, batch.sources, batch.offsets, strict=True):
        out.setdefault(c.key, []).append((tp, off, c))
    return out
