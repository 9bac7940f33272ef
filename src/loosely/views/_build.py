"""Batch building: one poll's consumer records through the view, into the pending batch.

Theory of operation. The runner (:mod:`loosely.views._runner`) polls and hands each poll's records to
:meth:`BatchBuilder.build`, with the positions the next batch starts from. The builder runs the view's function per
record (or, for a built-in view and a folding sink, its *kernel*: the same net changes without a record per event),
and fills the batch: the changes (positioned sinks) or their net fold (sinks that fold whole batches), each
partition's end offset and last timestamp, the record count and the start positions. A record the deserializer or
the view function refuses is *poison*: with ``on_poison="stop"`` it ends the batch and is returned as a
:class:`PoisonRecord` (its partition's end stays at it), with ``"dead-letter"`` it goes to the runner's
dead-letter callback and the batch moves past it.

This is the runner's hot path, kept flat and apart from the loop, the sinks and the consumer: what it needs of the
runner (the cached :class:`TopicPartition` of a record, what to do with a consumer error event or a dead record)
comes in as three callables, so tests/views/test_build.py can drive it with stand-in messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from loosely.views._batch import Batch
from loosely.views._model import Add, Delete, Kernel, Put, Record, TopicPartition, View

__all__ = ["BatchBuilder", "PoisonRecord"]

_CHANGE_TYPES = frozenset((Put, Add, Delete))


class PoisonRecord(RuntimeError):
    """A record the view cannot decode or process; the runner stopped at it (its position is stored).

    >>> e = PoisonRecord("clicks_per_user.v1", "clicks", 0, 42, ValueError("not JSON"))
    >>> print(e)
    view clicks_per_user.v1: record clicks/0@42 cannot be processed: ValueError('not JSON')
    >>> (e.topic, e.partition, e.offset)
    ('clicks', 0, 42)
    """

    def __init__(self, view: str, topic: str, partition: int, offset: int, cause: BaseException) -> None:
        super().__init__(f"view {view}: record {topic}/{partition}@{offset} cannot be processed: {cause!r}")
        self.topic = topic
        self.partition = partition
        self.offset = offset


class BatchBuilder:
    """Builds batches for one runner: ``tp(topic, partition)`` gives the cached partition, ``consumer_error(m)``
    says whether to skip an error event (or raises), ``dead_letter(m, error)`` takes a record that is skipped."""

    def __init__(
        self,
        view: View[Any, Any],
        on_poison: Literal["stop", "dead-letter"],
        tp: Callable[[str, int], TopicPartition],
        consumer_error: Callable[[Any], bool],
        dead_letter: Callable[[Any, BaseException], None],
    ) -> None:
        self.view = view
        self.on_poison = on_poison
        self.tp = tp
        self.consumer_error = consumer_error
        self.dead_letter = dead_letter

    def build(self, msgs: list[Any], positions: Mapping[TopicPartition, int | None], b: Batch | None = None, *,
              positioned: bool) -> tuple[Batch, PoisonRecord | None]:
        """Run the view over one poll's records into batch ``b`` (a new one by default), which may hold earlier
        polls' records already; returns it, and the poison record that stopped it, if any.

        The hot path, so it is kept flat: a poll returns runs of records of one partition, so the partition's
        bookkeeping (its cached :class:`TopicPartition`, whether it is still assigned, its end offset and last
        timestamp) is done once per run instead of once per record; list appends and dict reads go through bound
        methods. Sinks that fold whole batches (SQL, memory, Hollow: ``wants_positions`` false) get the changes
        folded here, as :func:`~loosely.views._batch.net_split` would fold them, instead of a list to fold later;
        for them the built-in views run as kernels (:meth:`_build_kernel`) without building a record per event.

        A batch's end for a partition is one past its last record that was processed; a poison record (policy
        ``stop``) ends the batch and its partition's end is the poison record itself.
        """
        if b is None:
            b = Batch()
        if not positioned and self.view.kernel is not None:
            return self._build_kernel(msgs, positions, self.view.kernel, b)
        add_change, add_source = b.changes.append, b.sources.append
        add_offset, add_stamp = b.offsets.append, b.timestamps_ms.append
        absolute, relative = (b.folded or ({}, {})) if not positioned else ({}, {})
        rget, rpop = relative.get, relative.pop
        folded = 0
        ends, last_ts = b.ends, b.last_timestamp_ms
        fn = self.view.fn
        kd = _decoder(self.view.key)
        vd = _decoder(self.view.value)
        change_types = _CHANGE_TYPES
        # tuple.__new__ skips the NamedTuple's generated Python __new__: half the cost of building each Record
        new = tuple.__new__
        n = 0
        poison: PoisonRecord | None = None
        cur_topic: str | None = None
        cur_part = -1
        tp: TopicPartition | None = None
        skip = False
        run_off = run_ts = -1  # the current run's last processed record
        for m in msgs:
            if m.error() is not None and self.consumer_error(m):
                continue
            part = m.partition()
            topic = m.topic()
            if part != cur_part or topic != cur_topic:
                if run_off >= 0:
                    ends[tp] = run_off + 1  # type: ignore[index]  # set with the run
                    last_ts[tp] = run_ts  # type: ignore[index]
                    run_off = -1
                cur_part, cur_topic = part, topic
                tp = self.tp(topic, part)
                skip = tp not in positions  # revoked during this poll: its new owner reads it
            if skip:
                continue
            off = m.offset()
            ts = m.timestamp()[1]
            k = m.key()
            v = m.value()
            out: Any
            try:
                out = fn(new(Record, (topic, part, off, ts, k if kd is None or k is None else kd(k),
                                      v if vd is None or v is None else vd(v), m.headers())))
                if out is not None and type(out) not in change_types:
                    out = list(out)
                    for ch in out:
                        if type(ch) not in change_types:
                            raise TypeError(f"the view returned {ch!r}, not a Put, Add or Delete")
            except Exception as e:  # any failure of user code makes the record poison
                if self.on_poison == "stop":
                    poison = PoisonRecord(str(self.view.id), topic, part, off, e)
                    break
                self.dead_letter(m, e)
                out = None
            n += 1
            run_off, run_ts = off, ts
            if out is None:
                continue
            for ch in (out,) if type(out) in change_types else out:
                if positioned:
                    add_change(ch)
                    add_source(tp)  # type: ignore[arg-type]
                    add_offset(off)
                    add_stamp(ts)
                    continue
                # net_split's fold: the last Put/Delete of a key, and the sum of the Adds after it
                folded += 1
                key = ch[0]
                if type(ch) is Add:
                    relative[key] = rget(key, 0) + ch[1]
                else:
                    absolute[key] = ch
                    rpop(key, None)
        if run_off >= 0:
            ends[tp] = run_off + 1  # type: ignore[index]
            last_ts[tp] = run_ts  # type: ignore[index]
        if not positioned:
            b.folded = (absolute, relative)
            b.folded_changes += folded
        return self._finish(b, n, poison, positions)

    def _build_kernel(self, msgs: list[Any], positions: Mapping[TopicPartition, int | None], kernel: Kernel,
                      b: Batch) -> tuple[Batch, PoisonRecord | None]:
        """:meth:`build` for a built-in view and a folding sink: the same batch, a third of the work per event.

        Per event only the key (and, for the latest value, the value) is read and folded into the net changes;
        the offset and timestamp are read once per run of a partition, from its last event. The result equals
        what calling the view's function per record and folding would give (tests/views/test_build.py).
        """
        latest = kernel is Kernel.LATEST
        relative: dict[str, int | float]
        last_values: dict[str, Any]
        if latest:  # key -> last value (None: deleted), see Batch.latest
            last_values = b.latest = b.latest if b.latest is not None else {}
            relative = {}
        else:
            _, relative = b.folded = b.folded or ({}, {})
            last_values = {}
        rget = relative.get
        ends, last_ts = b.ends, b.last_timestamp_ms
        vd = _decoder(self.view.value)
        n = unchanged = 0
        poison: PoisonRecord | None = None
        cur_topic: str | None = None
        cur_part = -1
        tp: TopicPartition | None = None
        skip = False
        last: Any = None  # the current run's last processed record
        v: Any = None
        for m in msgs:
            if m.error() is not None and self.consumer_error(m):
                continue
            part = m.partition()
            topic = m.topic()
            if part != cur_part or topic != cur_topic:
                if last is not None:
                    ends[tp] = last.offset() + 1  # type: ignore[index]  # set with the run
                    last_ts[tp] = last.timestamp()[1]  # type: ignore[index]
                    last = None
                cur_part, cur_topic = part, topic
                tp = self.tp(topic, part)
                skip = tp not in positions  # revoked during this poll: its new owner reads it
            if skip:
                continue
            k = m.key()
            if latest:
                v = m.value()
                if v is not None and vd is not None:
                    try:  # the runner decodes every record's value before the view sees it, keyless ones too
                        v = vd(v)
                    except Exception as e:  # a value the deserializer refuses makes the record poison
                        if self.on_poison == "stop":
                            poison = PoisonRecord(str(self.view.id), topic, part, m.offset(), e)
                            break
                        self.dead_letter(m, e)
                        n += 1
                        unchanged += 1
                        last = m
                        continue
            n += 1
            last = m
            if k is None:  # no key, no change; the position still moves
                unchanged += 1
                continue
            key = k.decode("utf-8", "surrogateescape")
            if latest:
                last_values[key] = v
            else:
                relative[key] = rget(key, 0) + 1
        if last is not None:
            ends[tp] = last.offset() + 1  # type: ignore[index]
            last_ts[tp] = last.timestamp()[1]  # type: ignore[index]
        b.folded_changes += n - unchanged
        return self._finish(b, n, poison, positions)

    def _finish(self, b: Batch, records: int, poison: PoisonRecord | None,
                positions: Mapping[TopicPartition, int | None]) -> tuple[Batch, PoisonRecord | None]:
        """Record count, the poison record's position as its partition's end, and the start positions (where each
        partition stood when the batch first read it)."""
        b.records += records
        if poison is not None:
            ptp = self.tp(poison.topic, poison.partition)
            b.ends[ptp] = max(b.ends.get(ptp, 0), poison.offset)  # the position stays *at* the poison record
        for t in b.ends:
            if t not in b.starts:
                b.starts[t] = positions.get(t)
        return b, poison


def _decoder(d: Any) -> Callable[[bytes], Any] | None:
    """The plain function behind a deserializer, or ``None`` for the identity (skips a call per record)."""
    from loosely.views._serde import BYTES  # noqa: PLC0415 - avoids a cycle at import

    if d is BYTES:
        return None
    dec = getattr(d, "decode", d)
    return dec  # type: ignore[no-any-return]

