"""The runner's batch building, fed fake consumer messages: the built-in views' kernels, the generic fold and the
positioned path must describe the same batch (net changes, end positions, records counted, where a poison record
stopped it)."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from loosely.views import JSON, STRING, Batch, PoisonRecord, Runner, TopicPartition, View, count_by_key, latest_by_key
from loosely.views._batch import net_split
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
