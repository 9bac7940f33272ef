"""Hollow sink: a view published as a Hollow dataset, for services that want it all in memory: exactly-once.

Each view version is one Hollow type, ``<type_name> @PrimaryKey(key) { string key; string value; }`` (both inline;
``value`` is the view's value as JSON text), produced by a :class:`loosely.hollow.api.Producer` into the blob store
you give (filesystem or S3; one store per view version). Consumers -- Python's ``loosely.hollow.api.Consumer`` or
Java's ``HollowConsumer`` -- follow it by deltas and read it from memory, e.g. through a ``UniqueKeyIndex`` on
``key``.

**Exactly-once.** Every version carries the source positions it covers in its header tag
``loosely.view.positions`` (JSON, ``{"topic/partition": next offset}``), so rows and positions are announced
together. On open the sink restores the producer from the announced version (the delta chain continues) and
reports those positions; changes applied after the last announced version are replayed from the log after a crash
and applied once. A publish that fails (store unreachable, validation) drops the unpublished changes and raises
:class:`Fenced`: the runner goes back to the published positions and reads them again.

**Batching.** Publishing a version (blobs written, integrity check, announcement) costs far more than a SQL
commit, so changes are gathered in memory and published every ``publish_interval_ms`` (after a batch, or while
the runner finds nothing new to read), before positions are reported, and on close. Records whose changes net to
nothing still move the positions, but a cycle with no changed row publishes nothing: those records are read again
after a restart, harmlessly.

**Unannounced blobs.** A runner killed between writing a cycle's blobs and announcing it leaves them in the
store. Java's filesystem retriever would take them: a snapshot newer than the chain's, or a delta from the announced
version to nowhere, and a Java consumer would stop there. So on open the sink deletes every blob of a version newer
than the announced one (there is one runner per store, so no one else can be about to announce it).

Otherwise the store is not cleaned: every cycle adds a delta and a reverse delta, and every
``snapshot_every_cycles`` a snapshot.

>>> import tempfile
>>> from loosely.hollow.api import Consumer, FilesystemBlobStore, UniqueKeyIndex
>>> from loosely.views import Add, Batch, TopicPartition, count_by_key
>>> store = FilesystemBlobStore(tempfile.mkdtemp())
>>> sink = HollowSink(store)
>>> sink.open(count_by_key("hits", ["t"]))
>>> tp = TopicPartition("t", 0)
>>> sink.apply(Batch.build([(tp, 0, 0, Add("a", 1)), (tp, 1, 0, Add("a", 1)), (tp, 2, 0, Add("b", 1))]))
>>> sink.close()                                        # publishes what is pending
>>> consumer = Consumer(retriever=store, watcher=store, require_digest=True)
>>> consumer.refresh() is not None
True
>>> UniqueKeyIndex(consumer, "hits").get("a")["value"]
'2'
>>> again = HollowSink(store)
>>> again.open(count_by_key("hits", ["t"]))            # a restart: the announced version's rows and positions
>>> again.stored_positions()
{TopicPartition(topic='t', partition=0): 3}
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import make_dataclass
from typing import Annotated, Any

from loosely.hollow.api import Producer, Version
from loosely.hollow.core import INLINE, ReadStateEngine, Records, hollow_type
from loosely.views._batch import Batch, net_changes
from loosely.views._model import Add, Delete, Json, Put, TopicPartition, View, ViewError
from loosely.views._sink import Fenced, Guarantee, SinkError, SinkStatistics
from loosely.views._sqlite import decode_value, encode_value

__all__ = ["POSITIONS_TAG", "VIEW_TAG", "HollowSink"]

log = logging.getLogger(__name__)

POSITIONS_TAG = "loosely.view.positions"
VIEW_TAG = "loosely.view"


def _tp_name(tp: TopicPartition) -> str:
    return f"{tp.topic}/{tp.partition}"


def _parse_positions(text: str) -> dict[TopicPartition, int]:
    out = {}
    for name, offset in json.loads(text).items():
        topic, _, partition = name.rpartition("/")
        out[TopicPartition(topic, int(partition))] = int(offset)
    return out


def _location(store: Any) -> str | None:
    """Where a blob store keeps the dataset, for the view's consumer group (:func:`~loosely.views._sink.sink_id`)."""
    path = getattr(store, "path", None)
    if path is not None:
        return f"hollow:{os.path.realpath(path)}"
    bucket = getattr(store, "bucket", None)
    return None if bucket is None else f"hollow+s3:{bucket}/{getattr(store, 'prefix', '')}"


class HollowSink:
    """Publishes one view version as a Hollow dataset into ``store`` (publisher, announcer, retriever and watcher:
    a ``FilesystemBlobStore`` or ``S3BlobStore``). ``type_name`` defaults to the view's name."""

    guarantee = Guarantee.EXACTLY_ONCE
    wants_positions = False

    def __init__(
        self,
        store: Any,
        *,
        type_name: str | None = None,
        publish_interval_ms: int = 2_000,
        snapshot_every_cycles: int = 10,
        monotonic_ms: Callable[[], int] = lambda: int(time.monotonic() * 1000),
    ) -> None:
        if publish_interval_ms < 0 or snapshot_every_cycles < 1:
            raise ValueError("publish_interval_ms must be >= 0 and snapshot_every_cycles >= 1")
        self.store = store
        self.location = _location(store)
        self.type_name = type_name
        self.publish_interval_ms = publish_interval_ms
        self.snapshot_every_cycles = snapshot_every_cycles
        self._now_ms = monotonic_ms
        self._view: View[object, object] | None = None
        self._producer: Producer | None = None
        self._row: type | None = None
        self._rows: dict[str, Json] = {}  # the view as of the last change applied
        self._dirty: set[str] = set()  # keys changed since the last published version
        self._positions: dict[TopicPartition, int] = {}
        self._published: dict[TopicPartition, int] = {}
        self._published_at_ms = 0
        self._batches = self._written = self._apply_ms = self._failures = 0

    # -- Sink -----------------------------------------------------------------------------------------------------

    def open(self, view: View[object, object]) -> None:
        if self._view is not None:
            if self._view.id != view.id:
                raise ViewError(f"this HollowSink holds {self._view.id}, not {view.id}")
            return
        name = self.type_name or view.name
        row = make_dataclass(name, [("key", Annotated[str, INLINE]), ("value", Annotated[str, INLINE])],
                             slots=True)
        self._row = hollow_type(primary_key=("key",))(row)
        producer = Producer(publisher=self.store, announcer=self.store, retriever=self.store, watcher=self.store,
                            data_model=[self._row], snapshot_every_cycles=self.snapshot_every_cycles)
        announced = self.store.latest_version()
        _discard_unannounced(self.store, announced)
        self._rows, self._published = {}, {}
        if announced is not None:
            producer.restore(announced)
            engine = producer.read_state
            assert engine is not None
            held = engine.header_tags.get(VIEW_TAG)
            if held != str(view.id):
                raise ViewError(f"the store's announced version {announced} holds {held or 'no view'}, not "
                                f"{view.id}: give each view version its own store")
            self._published = _parse_positions(engine.header_tags.get(POSITIONS_TAG, "{}"))
            self._rows = _rows_of(engine, name)
        self._producer, self._view = producer, view
        self._positions = dict(self._published)
        self._dirty = set()
        self._published_at_ms = self._now_ms()

    def stored_positions(self) -> dict[TopicPartition, int]:
        """The positions of the last announced version (pending changes are published first)."""
        if self._view is None:
            raise ViewError("open the sink before asking for its positions")
        self._publish_quietly()
        return dict(self._published)

    def apply(self, batch: Batch) -> None:
        if self._view is None:
            raise ViewError("open the sink before applying batches")
        t0 = time.monotonic()
        for tp, start in batch.starts.items():
            if start is not None and self._positions.get(tp) != start:
                raise Fenced(f"{self._view.id} {_tp_name(tp)}: the sink stands at {self._positions.get(tp)}, "
                             f"not {start}")
        rows, dirty = self._rows, self._dirty
        for key, change in net_changes(batch).items():
            if type(change) is Put:
                if isinstance(change.value, bytes | bytearray):
                    raise SinkError(f"{self._view.id}: the Hollow sink stores values as JSON text, not bytes "
                                    f"(key {key!r}); decode them in the view")
                rows[key] = change.value
            elif type(change) is Add:
                current = rows.get(key, 0)
                if not isinstance(current, int | float) or isinstance(current, bool):
                    raise ViewError(f"{self._view.id}: Add to key {key!r}, whose value {current!r} is not a number")
                rows[key] = current + change.amount
            elif type(change) is Delete:
                rows.pop(key, None)
            dirty.add(key)
        self._positions.update(batch.ends)
        self._batches += 1
        self._written += len(batch)
        self._apply_ms += int((time.monotonic() - t0) * 1000)
        if self._now_ms() - self._published_at_ms >= self.publish_interval_ms:
            self._publish()

    def idle(self) -> None:
        """The runner found nothing new to read: publish what is pending once the interval is up."""
        if self._view is not None and self._now_ms() - self._published_at_ms >= self.publish_interval_ms:
            self._publish()

    def close(self) -> None:
        if self._view is not None:
            self._publish_quietly()
        self._view = self._producer = None

    def statistics(self) -> SinkStatistics:
        return SinkStatistics(self._batches, self._written, self._apply_ms, self._failures)

    # -- publishing -----------------------------------------------------------------------------------------------

    def _publish_quietly(self) -> None:
        # on failure the pending changes are dropped; the published positions say where to read them again
        with contextlib.suppress(Fenced):
            self._publish()

    def _publish(self) -> None:
        producer, view, row = self._producer, self._view, self._row
        assert producer is not None and view is not None and row is not None
        self._published_at_ms = self._now_ms()
        if not self._dirty:
            return
        rows, dirty, name = self._rows, self._dirty, self.type_name or view.name
        positions = dict(self._positions)

        def changes(state: Any) -> None:
            state.add_header_tag(VIEW_TAG, str(view.id))
            state.add_header_tag(
                POSITIONS_TAG, json.dumps({_tp_name(tp): off for tp, off in sorted(positions.items())}))
            for key in dirty:
                value = rows.get(key, _ABSENT)
                if value is _ABSENT:
                    state.delete_key(name, (key,))
                else:
                    state.add_or_modify(row(key, _text(value)))

        t0 = time.monotonic()
        try:
            producer.run_incremental_cycle(changes)
        except Exception as e:  # the producer rolled back to the announced version; so do we
            self._failures += 1
            self._rows = _rows_of(producer.read_state, name)
            self._positions = dict(self._published)
            self._dirty = set()
            raise Fenced(f"{view.id}: publishing to the Hollow store failed ({e}); "
                         f"reading again from {self._published}") from e
        finally:
            self._apply_ms += int((time.monotonic() - t0) * 1000)
        self._published = positions
        self._dirty = set()



def _discard_unannounced(store: Any, announced: Version | None) -> None:
    """Delete the blobs of versions after ``announced``: what a killed cycle wrote and never announced. With
    nothing announced, nothing is deleted: the next cycle starts a chain with a snapshot of its own, newer than
    anything left over, which is the one a consumer then takes."""
    if announced is None:
        return
    for ref in store.refs():
        newest = max(ref.to_version, ref.from_version or ref.to_version)
        if newest > announced:
            log.warning("deleting %s: written by a cycle that never announced it", ref.name)
            store.delete(ref)


def _rows_of(engine: ReadStateEngine | None, type_name: str) -> dict[str, Json]:
    if engine is None or type_name not in engine.type_names():
        return {}
    return {rec["key"]: decode_value(rec["value"]) for rec in Records(engine).all(type_name)}  # type: ignore[index]

_ABSENT: Any = object()


def _text(value: Json) -> str:
    out = encode_value(value)
    return out if isinstance(out, str) else json.dumps(out)
