"""The runner's batch building, fed fake consumer messages: the built-in views' kernels, the generic fold and the
positioned path must describe the same batch (net changes, end positions, records counted, where a poison record
stopped it)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from unittest import mock

import pytest
from confluent_kafka import KafkaError
from hypothesis import given, settings
from hypothesis import strategies as st

from loosely.clients.batch_consumer import Chunk
from loosely.protocol.primitives import write_varint
from loosely.views import (
    JSON,
    STRING,
    Batch,
    PoisonRecord,
    Runner,
    RunnerConfig,
    SqliteSink,
    TopicPartition,
    View,
    _kernel,
    count_by_key,
    latest_by_key,
)
from loosely.views._batch import net_split
from loosely.views._kernel import LatestText, fold_records
from loosely.views._sink import Guarantee


class Message:
    """What the runner reads of a confluent_kafka ``Message`` (a stand-in for this unit's tests only)."""

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        self._t, self._p, self._o, self._k, self._v = topic, partition, offset, key, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_000 + self._o)

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v

    def headers(self) -> None:
        return None


class Folding:
    """A sink that wants folded batches (as the SQL sinks do) or positioned ones; the runner only reads these."""

    guarantee = Guarantee.EXACTLY_ONCE

    def __init__(self, wants_positions: bool) -> None:
        self.wants_positions = wants_positions


TPS = [TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("u", 0)]
events = st.lists(
    st.tuples(
        st.sampled_from(TPS),
        st.sampled_from([None, b"a", b"b", b"c\xff", "é".encode()]),
        st.sampled_from([None, b'"x"', b"1", b'{"n": 2}', b"not json", b"\xff"]),
    ),
    max_size=60,
)


def messages(spec: list[tuple[TopicPartition, bytes | None, bytes | None]]) -> list[Message]:
    next_offset = {tp: 10 * i for i, tp in enumerate(TPS)}  # partitions start at different offsets
    out = []
    for tp, k, v in spec:
        out.append(Message(tp.topic, tp.partition, next_offset[tp], k, v))
        next_offset[tp] += 1
    return out


def build(view: View[Any, Any], msgs: list[Message], *, positioned: bool) -> tuple[Batch, PoisonRecord | None]:
    runner = Runner(view, Folding(positioned), "127.0.0.1:1")  # type: ignore[arg-type]  # never connects
    runner._positions = {tp: None for tp in TPS[:2]} | {TPS[2]: 20}  # "u"/0 is assigned, at a known position
    return runner._build(msgs)  # type: ignore[arg-type]


def summary(batch: Batch, poison: PoisonRecord | None) -> tuple[object, ...]:
    absolute, relative = batch.net()
    return (absolute, relative, batch.ends, batch.last_timestamp_ms, batch.starts, batch.records, len(batch),
            None if poison is None else (poison.topic, poison.partition, poison.offset))


VIEWS = [count_by_key("c", ["t", "u"]), latest_by_key("l", ["t", "u"]), latest_by_key("s", ["t", "u"], value=STRING),
         latest_by_key("j", ["t", "u"], value=JSON)]


@settings(max_examples=300, deadline=None)
@given(events, st.sampled_from(VIEWS))
def test_kernels_build_what_the_view_function_builds(spec: list[Any], view: View[Any, Any]) -> None:
    msgs = messages(spec)
    assert view.kernel is not None
    kernel = summary(*build(view, msgs, positioned=False))
    generic = summary(*build(dataclasses.replace(view, kernel=None), msgs, positioned=False))
    assert kernel == generic
    positioned, poison = build(view, msgs, positioned=True)
    assert positioned.folded is None and positioned.net() == net_split(positioned.changes)
    assert summary(positioned, poison) == kernel


def test_a_revoked_partition_is_skipped_and_a_poison_record_keeps_the_position_at_it() -> None:
    tp0, tp1 = TPS[0], TPS[1]
    msgs = messages([(tp0, b"a", b"1"), (tp1, b"b", b"2"), (tp0, b"a", b"3"), (tp0, b"c", b"nope"), (tp0, b"d", b"4")])
    view = latest_by_key("j", ["t"], value=JSON)
    runner = Runner(view, Folding(False), "127.0.0.1:1")  # type: ignore[arg-type]
    runner._positions = {tp0: 0}  # partition 1 was revoked during the poll
    batch, poison = runner._build(msgs)  # type: ignore[arg-type]
    assert poison is not None and (poison.partition, poison.offset) == (0, 2)
    assert batch.net() == ({"a": ("a", 3)}, {})
    assert batch.ends == {tp0: 2} and batch.records == 2 and batch.starts == {tp0: 0}


class EndOfPartition(Message):
    """A consumer's end-of-partition event (enable.partition.eof), which the runner skips."""

    def error(self) -> Any:
        return KafkaError(KafkaError._PARTITION_EOF)


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.name)
def test_the_compiled_loop_stops_at_an_event_and_takes_the_run_up_again(view: View[Any, Any]) -> None:
    tp0, tp1 = TPS[0], TPS[1]
    msgs: list[Message] = messages([(tp0, b"a", b'"1"'), (tp0, None, b'"2"'), (tp0, b"b", None), (tp0, b"a", b'"3"'),
                                     (tp1, b"a", b'"4"'), (tp1, b"c", b'"5"'), (tp0, b"b", b'"6"')])
    msgs.insert(3, EndOfPartition(tp0.topic, tp0.partition, 3, None, None))
    kernel = summary(*build(view, msgs, positioned=False))
    assert kernel == summary(*build(dataclasses.replace(view, kernel=None), msgs, positioned=False))
    assert kernel[5] == 7  # every record counted, the event not


json_texts = st.text(st.characters(blacklist_categories=("Cs",)))  # no lone surrogates: UTF-8 cannot carry them


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(json_texts, st.none() | json_texts | st.integers(-(2**63), 2**63 - 1), max_size=20))
def test_the_compiled_document_is_the_text_json_dumps_writes(rows: dict[str, Any]) -> None:
    doc = _kernel.document(rows)
    expected = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
    if any("\x00" in k or (isinstance(v, str) and "\x00" in v) for k, v in rows.items()):
        assert doc is None  # json_each would cut the text at the NUL: the sink goes row by row
    else:
        assert doc == expected


@pytest.mark.parametrize("rows", [{"a": 1.5}, {"a": True}, {"a": 2**63}, {"a": [1]}, {"\udcff": "x"}, {1: "x"}])
def test_the_compiled_document_leaves_what_it_does_not_vouch_for_to_json_dumps(rows: dict[Any, Any]) -> None:
    assert _kernel.document(rows) is None


# -- whole record batches (the batch consumer's chunks) ----------------------------------------------------------


def record_batches(msgs: list[Message], size: int, skip: int) -> list[Chunk]:
    """``msgs`` as v2 records sections, at most ``size`` records a batch, each run of one partition cut into its
    own batches; the first batch of each partition starts ``skip`` records before its first message (a fetch
    starts at the batch that holds the position), with records the reader must pass over."""
    out: list[Chunk] = []
    runs: list[list[Message]] = []
    for m in msgs:
        if runs and (runs[-1][0].topic(), runs[-1][0].partition()) == (m.topic(), m.partition()) \
                and len(runs[-1]) < size:
            runs[-1].append(m)
        else:
            runs.append([m])
    seen: set[tuple[str, int]] = set()
    for run in runs:
        first = run[0]
        tp = (first.topic(), first.partition())
        before = skip if tp not in seen else 0
        seen.add(tp)
        base = first.offset() - before
        body = bytearray()
        entries = [(base + i, b"old", b"old-value") for i in range(before)] + [(m.offset(), m.key(), m.value())
                                                                              for m in run]
        for off, k, v in entries:
            rec = bytearray(b"\x00")  # attributes
            write_varint(rec, off - base)  # timestampDelta: the stand-in's timestamps are 1000 + offset
            write_varint(rec, off - base)
            for field in (k, v):
                write_varint(rec, -1 if field is None else len(field))
                rec += field or b""
            write_varint(rec, 1)  # one header, which the kernel passes over
            write_varint(rec, 1)
            rec += b"h"
            write_varint(rec, -1)
            write_varint(body, len(rec))
            body += rec
        out.append(Chunk(tp[0], tp[1], bytes(body), len(entries), base, 1_000 + base, -1, first.offset()))
    return out


def dead_lettering(view: View[Any, Any], dead: list[tuple[object, ...]]) -> Runner:
    runner = Runner(view, Folding(False), "127.0.0.1:1",  # type: ignore[arg-type]  # never connects
                    RunnerConfig(on_poison="dead-letter", dead_letter_topic="dlq"))
    runner._builder.dead_letter = lambda m, e: dead.append(
        (m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value(), type(e)))
    runner._positions = {tp: None for tp in TPS[:2]} | {TPS[2]: 20}
    return runner


def build_raw(view: View[Any, Any], chunks: list[Chunk], room: int,
              runner: Runner | None = None) -> tuple[Batch, PoisonRecord | None]:
    """The runner's use of build_raw: at most ``room`` records a call, what is left handed back, until none is."""
    if runner is None:
        runner = Runner(view, Folding(False), "127.0.0.1:1")  # type: ignore[arg-type]  # never connects
        runner._positions = {tp: None for tp in TPS[:2]} | {TPS[2]: 20}
    b = Batch()
    left: list[Any] = list(chunks)
    while left:
        before = b.records
        b, poison, left = runner._builder.build_raw(left, runner._positions, b, room)
        assert b.records - before <= room or poison is not None
        if poison is not None:
            return b, poison
    return b, None


@settings(max_examples=300, deadline=None)
@given(events, st.sampled_from(VIEWS), st.integers(1, 7), st.integers(0, 2), st.integers(1, 100))
def test_whole_record_batches_build_what_the_messages_build(spec: list[Any], view: View[Any, Any], size: int,
                                                            skip: int, room: int) -> None:
    msgs = messages(spec)
    expected = summary(*build(view, msgs, positioned=False))
    assert summary(*build_raw(view, record_batches(msgs, size, skip), room)) == expected


def test_a_record_batch_cut_short_is_an_error_not_a_read_past_its_end() -> None:
    chunk = record_batches(messages([(TPS[0], b"a", b"1"), (TPS[0], b"b", b"2")]), 5, 0)[0]
    for cut in range(len(chunk.records)):
        with pytest.raises(ValueError, match="past the end"):
            fold_records(chunk.records[:cut], chunk.record_count, chunk.base_offset, 0, -1, 0, 10, {}, 1, None)


@settings(max_examples=200, deadline=None)
@given(events, st.sampled_from(VIEWS[2:]), st.integers(1, 7), st.integers(1, 100))
def test_whole_record_batches_dead_letter_what_the_messages_dead_letter(spec: list[Any], view: View[Any, Any],
                                                                      size: int, room: int) -> None:
    msgs = messages(spec)
    dead_msgs: list[tuple[object, ...]] = []
    dead_raw: list[tuple[object, ...]] = []
    expected = summary(*dead_lettering(view, dead_msgs)._build(msgs))  # type: ignore[arg-type]
    got = summary(*build_raw(view, record_batches(msgs, size, 1), room, dead_lettering(view, dead_raw)))
    assert got == expected
    assert dead_raw == dead_msgs


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)
raw_keys = st.sampled_from([b"a", b"b", b"c\xff", "é".encode(), b"n\x00ul", b"\xed\xa0\x80"]) | texts.map(str.encode)
raw_values = st.none() | st.sampled_from([b"", b'"q"\\', b"x\x00y", b"\x01\n\t"]) | texts.map(str.encode)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(raw_keys, raw_values), max_size=60), st.integers(1, 9))
def test_the_text_fold_in_c_is_the_dict_fold_and_writes_it_in_key_order(pairs: list[Any], rows_max: int) -> None:
    msgs = messages([(TPS[0], k, v) for k, v in pairs])
    (chunk,) = record_batches(msgs, 100, 0) or [Chunk("t", 0, b"", 0, 0, 0, -1, 0)]
    as_dict: dict[str, Any] = {}
    text = LatestText()
    args = (chunk.records, chunk.record_count, chunk.base_offset, 0, -1, 0, 1000)
    assert fold_records(*args, text, 4, None) == fold_records(*args, as_dict, 2, None)
    assert text.to_dict() == as_dict and len(text) == len(as_dict)
    assert text.has_null or None not in as_dict.values()  # a tombstone was folded (a value may have followed)
    keys = [k.encode("utf-8", "surrogateescape") for k in as_dict]
    vouched = all(b"\x00" not in k and k.decode("utf-8", "replace").encode() == k for k in keys) and all(
        v is None or "\x00" not in v for v in as_dict.values())
    assert vouched or not text.vouched  # it may also refuse a text that a later value of its key replaced
    if not text.vouched:
        with pytest.raises(ValueError, match="vouched"):
            text.document(0, rows_max)
        return
    text.sort()
    written: list[tuple[str, Any]] = []
    start = 0
    while start < len(text):
        doc, start, nulls = text.document(start, rows_max)
        got = json.loads(doc)
        assert 0 < len(got) <= rows_max and nulls == (None in got.values())
        written += got.items()
    assert dict(written) == as_dict
    assert [k.encode() for k, _ in written] == sorted(keys)  # SQLite's BINARY order of the UTF-8 text


def test_the_text_folds_sort_orders_many_keys_as_sqlite_does() -> None:
    """sort() on thousands of keys in random order: short keys, keys that are prefixes of others, keys sharing
    their first 8 bytes (the radix sort's ties, ordered by the full comparison), multi-byte UTF-8 and an empty key.
    The documents come out in SQLite's BINARY order of the UTF-8 bytes."""
    import random

    rng = random.Random(5)
    keys = {f"user-{i:08d}" for i in range(0, 3000, 3)} | {f"k{i}" for i in range(1500)} | {
        "abcdefg", "abcdefgh", "abcdefghi", "abcdefgh\x7f", "é", "éé", "\U0001f600x", "", "~", "zzzzzzzzzzzzzz"}
    order = sorted(keys)
    rng.shuffle(order)
    msgs = messages([(TPS[0], k.encode(), b"v-" + k.encode()) for k in order])
    text = LatestText()
    for chunk in record_batches(msgs, 500, 0):
        fold_records(chunk.records, chunk.record_count, chunk.base_offset, 0, -1, 0, 10**6, text, 4, None)
    assert text.vouched and len(text) == len(keys)
    text.sort()
    written: list[str] = []
    start = 0
    while start < len(text):
        doc, start, _ = text.document(start, 700)
        written += json.loads(doc)
    assert [k.encode() for k in written] == sorted(k.encode() for k in keys)


def test_the_sqlite_sink_writes_the_text_fold_as_it_writes_the_dict(tmp_path: Any) -> None:
    pairs = [(b"k%d" % (i % 7), None if i % 5 == 0 else b'{"n":%d,"t":"\\"\xc3\xa9\\n"}' % i) for i in range(40)]
    pairs += [(b"z\x01", b"ctl\x1f"), (b"\xc3\xa9", b"")]
    (chunk,) = record_batches(messages([(TPS[0], k, v) for k, v in pairs]), 100, 0)
    tables = []
    for mode, target in ((2, {}), (4, LatestText())):
        view = latest_by_key("s", ["t"], value=STRING)
        sink = SqliteSink(str(tmp_path / f"{mode}.db"))
        sink.open(view)
        fold_records(chunk.records, chunk.record_count, 0, 0, -1, 0, 1000, target, mode, None)
        b = Batch(starts={TPS[0]: None}, ends={TPS[0]: len(pairs)}, records=len(pairs))
        if mode == 2:
            b.latest = target  # type: ignore[assignment]
        else:
            b.latest_text = target  # type: ignore[assignment]
        sink.apply(b)
        tables.append((sink.scan("s", version=1, limit=1000), sink.stored_positions()))
        sink.close()
    assert tables[0] == tables[1]
    assert len(tables[0][0]) == 8 and tables[0][1] == {TPS[0]: len(pairs)}


def test_a_full_text_table_stops_the_fold_at_the_record_it_has_no_room_for() -> None:
    msgs = messages([(TPS[0], b"a", b"12345"), (TPS[0], b"b", b"123"), (TPS[0], b"a", b"54321"), (TPS[0], None, b"x"),
                     (TPS[0], b"c", b"1")])
    (chunk,) = record_batches(msgs, 100, 0)
    args = (chunk.records, chunk.record_count, chunk.base_offset, 0, -1, 0, 1000)
    for room, stop in ((9, 1), (10, 4), (11, 4), (12, -1)):  # a + 12345: 6 bytes, b + 123: 4 more, c + 1: 2 more
        text = LatestText(arena_bytes_max=room)
        taken, _, _, _, stopped = fold_records(*args, text, 4, None)
        assert stopped == (-1 if stop < 0 else chunk.base_offset + stop)
        assert taken == (5 if stop < 0 else stop)
    with pytest.raises(ValueError, match="arena_bytes_max"):
        LatestText(arena_bytes_max=2**32)


@settings(max_examples=100, deadline=None)
@given(events, st.integers(1, 7), st.integers(1, 100), st.integers(1, 40))
def test_a_full_text_table_goes_on_as_a_dict(spec: list[Any], size: int, room: int, arena_bytes_max: int) -> None:
    view = VIEWS[2]  # STRING values: the text table
    msgs = messages(spec)
    expected = summary(*build(view, msgs, positioned=False))
    with mock.patch("loosely.views._build.LatestText", lambda: LatestText(arena_bytes_max=arena_bytes_max)):
        assert summary(*build_raw(view, record_batches(msgs, size, 0), room)) == expected


def test_only_a_latest_value_view_of_text_folds_into_a_text_table() -> None:
    folds = [Runner(v, Folding(False), "127.0.0.1:1")._builder.folds_text() for v in VIEWS]  # type: ignore[arg-type]
    assert folds == [False, False, True, False]  # count, bytes, STRING, JSON
    with pytest.raises(ValueError, match="text_batch_records_max"):
        RunnerConfig(text_batch_records_max=0)
