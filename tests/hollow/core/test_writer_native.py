"""The compiled writer (``_writer.c``) writes exactly what the Python mapper and write engine write.

Every test builds the same objects twice -- through ``ObjectMapper.add`` / ``add_all`` (compiled plans and loops)
and through the Python type mappers alone -- and compares the blobs byte for byte, across cycles (snapshot,
delta, reverse delta), with values at every edge the plans handle or hand back to Python.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hollow.models import edges_rows
from loosely.hollow.core import (
    INLINE,
    Char,
    Float32,
    HollowMappingError,
    Int8,
    Int64,
    ObjectMapper,
    ReadStateEngine,
    TypedReader,
    WriteStateEngine,
    _writer,
    hollow_type,
)


class Mood(enum.Enum):
    HAPPY = 1
    SAD = 2


@dataclass
class Inner:
    n: int
    label: str


class Pair(NamedTuple):
    left: int
    right: Annotated[str, INLINE]


@hollow_type(primary_key=("id",))
@dataclass
class Rich:
    id: int
    small: Int8
    big: Int64
    ch: Char
    f32: Float32
    f64: float
    flag: bool
    maybe: int | None
    text: Annotated[str, INLINE]
    ref_text: str
    blob: bytes
    inner: Inner
    pairs: list[Pair]
    tags: set[str]
    when: dt.datetime
    mood: Mood
    scores: dict[str, int]


class SubInner(Inner):
    pass


def _rich(i: int, f: float = 1.5, text: str = "plain") -> Rich:
    return Rich(
        i, (i % 255) - 127, (i * 7919) - (1 << 40), i % 65536, f, -f, i % 2 == 0, None if i % 3 else i,
        text if i % 5 else f"{text} é ✓ 𝄞", f"ref {i % 4}", bytes([i % 256]) * (i % 3),
        Inner(i % 5, "in") if i % 7 else SubInner(i % 5, "sub"), [Pair(i, "a"), Pair(-i, "b")][: i % 3],
        {f"t{i % 3}", "all"}, dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=i), Mood(1 + i % 2),
        {"k": i},
    )


def _python_only(mapper: ObjectMapper, obj: object) -> int:
    assert mapper.engine is not None
    return mapper._class_mapper(type(obj)).write(mapper.engine, obj)


def _blobs(objects_by_cycle: list[list[object]], compiled: str) -> list[bytes]:
    import random

    engine = WriteStateEngine(rng=random.Random(5))
    mapper = ObjectMapper(engine)
    out: list[bytes] = []
    for objects in objects_by_cycle:
        engine.prepare_for_next_cycle()
        if compiled == "add_all":
            mapper.add_all(objects)
        elif compiled == "add_all_generator":
            mapper.add_all(o for o in objects)
        else:
            for o in objects:
                mapper.add(o) if compiled == "add" else _python_only(mapper, o)
        out += [engine.write_snapshot(), engine.write_delta(), engine.write_reverse_delta()]
    return out


@pytest.mark.parametrize("compiled", ["add", "add_all", "add_all_generator"])
def test_compiled_writes_are_byte_identical(compiled: str) -> None:
    cycles = [
        [_rich(i) for i in range(40)],
        [_rich(i, f=2.5 if i % 4 == 0 else 1.5) for i in range(3, 50)],
        [_rich(i, text="other") for i in range(10, 30)] + [Inner(99, "loose")],
    ]
    assert _blobs(cycles, compiled) == _blobs(cycles, "python")


floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 3.4028235e38, 3.5e38, 1e-46])
ints64 = st.integers(-(1 << 63), (1 << 63) - 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-(1 << 31), (1 << 31) - 1), ints64, floats, floats, st.text(max_size=6),
                          st.booleans()), min_size=1, max_size=12))
def test_edge_values_are_byte_identical(rows: list[tuple[int, int, float, float, str, bool]]) -> None:
    objs = [Rich(a, 0, b, 1, c, d, e, None, s, s, b"", Inner(1, s), [], set(), dt.datetime(2020, 1, 1), Mood.SAD, {})
            for a, b, c, d, s, e in rows]
    try:
        expected = _blobs([objs], "python")
    except HollowMappingError as e:
        with pytest.raises(HollowMappingError, match=str(e)[:20].replace("(", r"\(").replace("[", r"\[")):
            _blobs([objs], "add")
        return
    assert _blobs([objs], "add") == expected


def test_inline_and_primitive_number_edges_are_byte_identical() -> None:
    """NaN and type minimums: null in primitives, kept in inline boxes (except Integer.MIN_VALUE)."""
    assert _blobs([edges_rows()], "add") == _blobs([edges_rows()], "python")


def test_bad_values_raise_the_python_errors() -> None:
    engine = WriteStateEngine()
    mapper = ObjectMapper(engine)
    bad = _rich(1)
    bad.small = 1000  # beyond a Java byte
    with pytest.raises(HollowMappingError, match="byte"):
        mapper.add(bad)
    bad = _rich(1)
    bad.flag = None  # type: ignore[assignment]
    with pytest.raises(HollowMappingError, match="None cannot be written"):
        mapper.add(bad)
    bad = _rich(1)
    bad.pairs = [None]  # type: ignore[list-item]
    with pytest.raises(HollowMappingError, match="null element"):
        mapper.add_all([_rich(2), bad])


def test_add_all_of_an_iterator_releases_each_object_before_drawing_the_next() -> None:
    """A generator's objects are written as they come, one alive at a time: the allocator then reuses the same hot
    memory for every object (see write_iter in _writer.c). Objects of several classes and ones the compiled loop
    leaves to Python come through; an error in the generator propagates after the objects before it are added."""
    engine = WriteStateEngine()
    mapper = ObjectMapper(engine)
    engine.prepare_for_next_cycle()
    drawn: list[weakref.ref[object]] = []

    def objects(fail_at: int) -> Iterator[object]:
        for i in range(300):
            assert all(r() is None for r in drawn), f"object {len(drawn) - 1} is still held when {i} is drawn"
            if i == fail_at:
                raise RuntimeError("the source broke")
            obj: object = Inner(i, "é" if i % 50 == 7 else "in") if i % 100 else _rich(i)  # é: Python writes it
            drawn.append(weakref.ref(obj))
            yield obj
            del obj

    assert mapper.add_all(objects(-1)) == 300
    engine.prepare_for_write()
    state = ReadStateEngine.from_snapshot(engine.write_snapshot())
    inner = {(i, "é" if i % 50 == 7 else "in") for i in range(300) if i % 100} | {(0, "sub"), (0, "in")}  # + Rich's
    assert {(r.n, r.label) for r in TypedReader(state, Inner)} == inner
    assert [r.id for r in TypedReader(state, Rich)] == [0, 100, 200]
    engine.prepare_for_next_cycle()
    drawn.clear()
    with pytest.raises(RuntimeError, match="the source broke"):
        mapper.add_all(objects(150))
    engine.prepare_for_write()
    state = ReadStateEngine.from_snapshot(engine.write_snapshot())
    assert [r.id for r in TypedReader(state, Rich)] == [0, 100]


def test_kernels_refuse_malformed_input() -> None:
    with pytest.raises(TypeError):
        _writer.held(("not", "a list"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a payload"):
        _writer.object_stats([(1, 2)], b"\x01")
    with pytest.raises(IndexError):
        _writer.encode_objects([(1,)], (5).to_bytes(8, "little"), (3,), b"\x01")
    with pytest.raises(ValueError, match="does not fit"):
        _writer.encode_objects([(9,)], (0).to_bytes(8, "little"), (3,), b"\x01")
    with pytest.raises(ValueError, match="power of two"):
        _writer.shard_slots([], 3, 0)
    assert math.isfinite(1.0)


@dataclass(slots=True)
class Bag:
    id: int
    numbers: list[int]
    longs: set[Int64]


def _bag_blobs(cycles: list[list[Bag]], compiled: bool, rollback_at: int) -> list[bytes]:
    import random

    engine = WriteStateEngine(rng=random.Random(9))
    mapper = ObjectMapper(engine)
    out: list[bytes] = []
    for k, bags in enumerate(cycles):
        engine.prepare_for_next_cycle()
        for b in bags:
            mapper.add(b) if compiled else _python_only(mapper, b)
        if k == rollback_at:  # a failed cycle: the engine forgets it, ordinals it handed out are free again
            engine.reset_to_last_prepare_for_next_cycle()
            continue
        out += [engine.write_snapshot(), engine.write_delta(), engine.write_reverse_delta()]
    return out


def test_cached_small_integers_follow_ordinals_across_cycles_and_rollbacks() -> None:
    """Boxed integers' ordinals are cached per plan; values leave, come back with other ordinals, a cycle is
    rolled back -- the compiled writes stay byte-identical to Python's."""
    cycles = [
        [Bag(i, list(range(i, i + 50)), {i, -i}) for i in range(0, 60, 3)],
        [Bag(i, list(range(i + 40, i + 90)), {i + 500}) for i in range(0, 60, 3)],
        [Bag(i, [-200, 1023, 1024, -257, *range(i, i + 5)], {2**40}) for i in range(0, 60, 4)],  # rolled back
        [Bag(i, list(range(i, i + 30)), {i, 7}) for i in range(0, 60, 5)],
        [Bag(i, [*range(100, 110), i], set()) for i in range(0, 60, 2)],
    ]
    assert _bag_blobs(cycles, True, 2) == _bag_blobs(cycles, False, 2)
