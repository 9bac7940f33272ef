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

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from loosely.protocol.primitives import read_varint
from loosely.views._batch import Batch
from loosely.views._kernel import LatestText
from loosely.views._kernel import fold as _fold
from loosely.views._kernel import fold_records as _fold_records
from loosely.views._model import Add, Delete, Kernel, Put, Record, TopicPartition, View

__all__ = ["BatchBuilder", "PoisonRecord"]

_CHANGE_TYPES = frozenset((Put, Add, Delete))
# _kernel.fold's modes (see _kernel.c): count, latest value as bytes, as UTF-8 text, through another deserializer
_COUNT, _LATEST_BYTES, _LATEST_STR, _LATEST = 0, 1, 2, 3
_LATEST_TEXT = 4  # fold_records only: latest value as UTF-8 text, into a _kernel.LatestText
_UTF8 = bytes.decode  # STRING's deserializer (loosely.views._serde)


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


class RawBatch(Protocol):
    """One fetched record batch as the fast source hands it over (:class:`loosely.clients.batch_consumer.Chunk`)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def records(self) -> bytes: ...
    @property
    def record_count(self) -> int: ...
    @property
    def base_offset(self) -> int: ...
    @property
    def base_timestamp(self) -> int: ...
    @property
    def timestamp_override(self) -> int: ...
    @property
    def min_offset(self) -> int: ...


class RawMessage:
    """One record of a fetched batch with confluent-kafka's ``Message`` methods: what the fast source makes for a
    record the compiled loop leaves to Python (a value the deserializer refuses), so the poison policy and the
    dead-letter topic see it as they would see a confluent-kafka message."""

    __slots__ = ("_headers", "_key", "_offset", "_partition", "_timestamp", "_topic", "_value")

    def __init__(self, topic: str, partition: int, offset: int, timestamp: int, key: bytes | None,  # noqa: PLR0917
                 value: bytes | None, headers: list[tuple[str, bytes | None]] | None) -> None:
        self._topic, self._partition, self._offset, self._timestamp = topic, partition, offset, timestamp
        self._key, self._value, self._headers = key, value, headers

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp)

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return self._headers


def message_at(chunk: RawBatch, offset: int) -> RawMessage:
    """The record at ``offset`` of a fetched batch (v2 record layout, see loosely.views._kernel's header)."""
    buf, pos = chunk.records, 0
    for _ in range(chunk.record_count):
        length, pos = read_varint(buf, pos)
        end = pos + length
        pos += 1  # attributes
        ts_delta, pos = read_varint(buf, pos)
        off_delta, pos = read_varint(buf, pos)
        if chunk.base_offset + off_delta != offset:
            pos = end
            continue
        fields: list[bytes | None] = []
        for _ in range(2):  # key, value
            n, pos = read_varint(buf, pos)
            fields.append(None if n < 0 else bytes(buf[pos : pos + n]))
            pos += max(n, 0)
        headers: list[tuple[str, bytes | None]] = []
        count, pos = read_varint(buf, pos)
        for _ in range(count):
            n, pos = read_varint(buf, pos)
            name = bytes(buf[pos : pos + n]).decode("utf-8", "replace")
            pos += n
            n, pos = read_varint(buf, pos)
            headers.append((name, None if n < 0 else bytes(buf[pos : pos + n])))
            pos += max(n, 0)
        ts = chunk.timestamp_override if chunk.timestamp_override >= 0 else chunk.base_timestamp + ts_delta
        return RawMessage(chunk.topic, chunk.partition, offset, ts, fields[0], fields[1], headers or None)
    raise ValueError(f"no record at offset {offset} in the batch")


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
        # The compiled loop (_kernel.c) folds runs of plain records; this loop takes each record it stops at (an
        # error event, a new partition, a value the deserializer refuses).
        mode = _COUNT if not latest else _LATEST_BYTES if vd is None else _LATEST_STR if vd is _UTF8 else _LATEST
        target = last_values if latest else relative
        n = unchanged = 0
        poison: PoisonRecord | None = None
        cur_topic: str | None = None
        cur_part = -1
        tp: TopicPartition | None = None
        skip = False
        last: Any = None  # the current run's last processed record
        v: Any = None
        i, total = 0, len(msgs)
        while i < total:
            m = msgs[i]
            i += 1
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
            stop, records, keyless, ran = _fold(msgs, i - 1, topic, part, target, mode, vd)
            if records:  # the run, up to the next record the loop below must take
                n += records
                unchanged += keyless
                last = ran
                i = stop
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

    def folds_text(self) -> bool:
        """Whether :meth:`build_raw` folds this view into a text table (``Batch.latest_text``): a latest-value
        view of ``STRING`` values."""
        return self.view.kernel is Kernel.LATEST and _decoder(self.view.value) is _UTF8

    def build_raw(self, chunks: Sequence[RawBatch], positions: Mapping[TopicPartition, int | None], b: Batch,
                  room: int) -> tuple[Batch, PoisonRecord | None, list[RawBatch]]:
        """:meth:`build` for whole fetched record batches (the fast source; a built-in view and a folding sink
        only): the compiled loop folds each batch's records (_kernel.fold_records), at most ``room`` of them in
        all; returns the batch, the poison record that stopped it, and the record batches not (fully) taken, to
        hand back to the source. A record the loop leaves to Python (a value the deserializer refuses) goes
        through :meth:`_build_kernel` as a :class:`RawMessage`, so the poison policy is the same as with
        confluent-kafka's messages."""
        kernel = self.view.kernel
        assert kernel is not None
        latest = kernel is Kernel.LATEST
        vd = _decoder(self.view.value)
        mode = _COUNT if not latest else _LATEST_BYTES if vd is None else _LATEST_STR if vd is _UTF8 else _LATEST
        target: dict[str, Any] | LatestText
        if mode == _LATEST_STR and b.latest is None:  # text values: kept as bytes (see Batch.latest_text)
            target = b.latest_text = b.latest_text if b.latest_text is not None else LatestText()
            mode = _LATEST_TEXT
        elif latest:
            target = b.latest = b.latest if b.latest is not None else {}
        else:
            b.folded = b.folded or ({}, {})
            target = b.folded[1]
        ends, last_ts = b.ends, b.last_timestamp_ms
        n = unchanged = elsewhere = 0  # elsewhere: records _build_kernel took (and counted) itself
        poison: PoisonRecord | None = None
        left: list[RawBatch] = []
        for i, chunk in enumerate(chunks):
            tp = self.tp(chunk.topic, chunk.partition)
            if tp not in positions:
                continue  # revoked: its new owner reads it
            low = chunk.min_offset
            while True:
                taken, keyless, last_off, lts, stop = _fold_records(
                    chunk.records, chunk.record_count, chunk.base_offset, chunk.base_timestamp,
                    chunk.timestamp_override, low, room - n - elsewhere, target, mode, vd)
                n += taken
                unchanged += keyless
                if taken:
                    ends[tp] = last_off + 1
                    last_ts[tp] = lts
                if stop < 0:
                    break
                if n + elsewhere >= room:  # the batch is full: the rest of this record batch, and the ones after, wait
                    left.append(chunk._replace(min_offset=stop))  # type: ignore[attr-defined]  # a NamedTuple
                    left.extend(chunks[i + 1 :])
                    break
                if mode == _LATEST_TEXT:  # a poison record or a full table: the Python loop folds into a dict, and so
                    # does the rest of this batch
                    assert not isinstance(target, dict)
                    target = b.latest = target.to_dict()
                    b.latest_text, mode = None, _LATEST_STR
                before = b.records
                _, poison = self._build_kernel([message_at(chunk, stop)], positions, kernel, b)
                elsewhere += b.records - before
                if poison is not None:
                    break
                low = stop + 1
            if poison is not None or left:
                break
        b.folded_changes += n - unchanged
        batch, _ = self._finish(b, n, None, positions)
        return batch, poison, left

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

