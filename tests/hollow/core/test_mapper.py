"""ObjectMapper rules: naming, boxing, inlining, hash keys, Java's value conventions, errors, round trips."""

from __future__ import annotations

import datetime as dt
import enum
import math
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loosely.hollow.core import (
    INLINE,
    TRANSIENT,
    Char,
    Float32,
    HashKey,
    HollowMappingError,
    Int8,
    Int64,
    ObjectMapper,
    ReadStateEngine,
    Shards,
    TypedReader,
    TypeNamed,
    WriteStateEngine,
    hollow_type,
    parse_schemas,
    schemas_to_text,
)


class Color(enum.Enum):
    RED = 1
    GREEN = 2


@hollow_type(primary_key=("code",))
@dataclass(frozen=True)
class Tag:
    code: Annotated[str, INLINE]
    weight: int


@dataclass(frozen=True)
class Point:
    x: int
    y: int


@dataclass
class Base:
    base_field: int


@dataclass
class Child(Base):
    child_field: Int64
    skipped: Annotated[int, TRANSIENT] = 0
    constant: ClassVar[int] = 3


@hollow_type(name="Thing", primary_key=("id",), num_shards=2)
@dataclass
class Thing:
    id: int
    when: dt.datetime | None
    color: Color | None
    tags: Annotated[set[Tag], HashKey("weight")]
    points: frozenset[Point]
    labels: dict[str, list[Point]]
    code: Annotated[str | None, TypeNamed("Code")]
    extra: Annotated[list[Int8], Shards(4)] = field(default_factory=list)


def test_schemas_follow_javas_rules() -> None:
    mapper = ObjectMapper()
    mapper.initialize_type(Thing)
    expected = parse_schemas(
        """
        Date { long value; }
        Color { string _name; }
        Tag @PrimaryKey(code) { string code; int weight; }
        SetOfTag Set<Tag> @HashKey(weight);
        Point { int x; int y; }
        SetOfPoint Set<Point>;
        String { string value; }
        ListOfPoint List<Point>;
        MapOfStringToListOfPoint Map<String,ListOfPoint> @HashKey(value);
        Code { string value; }
        Byte { int value; }
        ListOfByte List<Byte>;
        Thing @PrimaryKey(id) {
            int id; Date when; Color color; SetOfTag tags; SetOfPoint points; MapOfStringToListOfPoint labels;
            Code code; ListOfByte extra;
        }
        """
    )
    assert schemas_to_text(mapper.schemas) == schemas_to_text(expected)


def test_own_fields_come_before_base_class_fields_and_transients_are_skipped() -> None:
    assert [f.name for f in ObjectMapper().schema(Child).fields] == ["child_field", "base_field"]


def test_default_hash_keys_come_from_primary_keys_and_single_fields() -> None:
    @dataclass
    class Holder:
        tags: set[Tag]
        ints: set[int]
        colors: dict[Color, int]
        points: set[Point]

    mapper = ObjectMapper()
    mapper.initialize_type(Holder)
    keys = {s.name: getattr(s, "hash_key", None) for s in mapper.schemas}
    assert keys["SetOfTag"] == ("code",)
    assert keys["SetOfInteger"] == ("value",)
    assert keys["MapOfColorToInteger"] == ("_name",)
    assert keys["SetOfPoint"] is None
    without = ObjectMapper(use_default_hash_keys=False)
    without.initialize_type(Holder)
    assert all(getattr(s, "hash_key", None) is None for s in without.schemas)


def test_pinned_shards_reach_the_engine() -> None:
    engine = WriteStateEngine()
    ObjectMapper(engine).initialize_type(Thing)
    engine.add_object("Thing", {"id": 1})
    engine.add_list("ListOfByte", [])
    blob = ReadStateEngine.from_snapshot(engine.write_snapshot())
    assert blob.type("Thing").num_shards == 2
    assert blob.type("ListOfByte").num_shards == 4


def test_round_trip_of_a_rich_object() -> None:
    engine = WriteStateEngine()
    mapper = ObjectMapper(engine)
    thing = Thing(
        7,
        dt.datetime(2024, 2, 29, 12, 0, 0, 123000, tzinfo=dt.UTC),
        Color.GREEN,
        {Tag("a", 1), Tag("b", 2)},
        frozenset({Point(1, 2), Point(-3, 4)}),
        {"x": [Point(0, 0)], "": []},
        "c-1",
        [1, -2, 127],
    )
    mapper.add(thing)
    back = TypedReader(ReadStateEngine.from_snapshot(engine.write_snapshot()), Thing).get(0)
    assert back == thing


def test_java_value_conventions() -> None:
    @dataclass
    class Numbers:
        i: int
        f: Float32
        d: float
        c: Char
        small: Int8
        flag: bool

    engine = WriteStateEngine()
    mapper = ObjectMapper(engine)
    mapper.add(Numbers(-(2**31), math.nan, math.nan, 0, -128, False))
    state = ReadStateEngine.from_snapshot(engine.write_snapshot())
    assert state.type("Numbers").view.record(0) == (None, None, None, None, None, False)  # all null in Hollow
    back = TypedReader(state, Numbers).get(0)
    assert back.i == -(2**31) and back.c == 0 and back.small == -128  # Java reads a null primitive as its minimum
    assert math.isnan(back.f) and math.isnan(back.d)


class Row(NamedTuple):
    a: int
    b: Annotated[str | None, INLINE]
    c: list[Row] | None = None  # type: ignore[misc]


def test_circular_models_are_refused_as_java_does() -> None:
    engine = WriteStateEngine()
    mapper = ObjectMapper(engine)
    with pytest.raises(HollowMappingError, match="circular"):
        mapper.add(Row(1, "x", [Row(2, None)]))


@pytest.mark.parametrize(
    "annotation",
    [int | str, list[int | None], Annotated[Point, INLINE], complex, tuple[int, str]],
)
def test_unmappable_annotations_are_refused(annotation: object) -> None:
    holder = dataclass(type("Holder", (), {"__annotations__": {"x": annotation}}))
    with pytest.raises(HollowMappingError):
        ObjectMapper().initialize_type(holder)


def test_bad_values_are_refused() -> None:
    engine = WriteStateEngine()
    mapper = ObjectMapper(engine)
    with pytest.raises(HollowMappingError, match="Java int"):
        mapper.add(Point(2**31, 0))
    with pytest.raises(HollowMappingError, match="None"):
        mapper.add(Point(None, 0))  # type: ignore[arg-type]
    with pytest.raises(HollowMappingError, match="null element"):
        mapper.add(Thing(1, None, None, {None}, frozenset(), {}, None))  # type: ignore[arg-type]


def test_schema_conflict_with_an_existing_type_is_refused() -> None:
    engine = WriteStateEngine(parse_schemas("Point { long x; int y; }"))
    with pytest.raises(HollowMappingError, match="another schema"):
        ObjectMapper(engine).initialize_type(Point)


@dataclass
class Sample:
    n: Int64
    s: Annotated[str | None, INLINE]
    boxed: int | None
    raw: bytes | None
    points: list[Point]


samples = st.builds(
    Sample,
    n=st.integers(-(2**63) + 1, 2**63 - 1),
    s=st.none() | st.text(st.characters(codec=None, exclude_categories=())),
    boxed=st.none() | st.integers(-(2**31) + 1, 2**31 - 1),
    raw=st.none() | st.binary(max_size=8),
    points=st.lists(st.builds(Point, st.integers(-100, 100), st.integers(-100, 100)), max_size=4),
)


@given(st.lists(samples, max_size=8))
def test_typed_round_trip(values: list[Sample]) -> None:
    engine = WriteStateEngine()
    mapper = ObjectMapper(engine)
    ordinals = [mapper.add(v) for v in values]
    reader = TypedReader(ReadStateEngine.from_snapshot(engine.write_snapshot()), Sample)
    assert [reader.get(o) for o in ordinals] == values


@dataclass(slots=True)
class Listing:
    id: int
    big: Int64
    name: Annotated[str, INLINE]
    flag: bool
    tags: list[int]


def _row(i: int, version: int) -> Listing:
    changed = version if i % 7 == 0 else 1
    return Listing(i, i * 1_000_003 + changed, f"row-{i}", i % 2 == 0, [i % 5, (i + changed) % 3])


def test_the_compiled_writers_guess_only_returns_the_ordinal_the_map_gives() -> None:
    """The compiled writer guesses a record's ordinal from the one written before (_writer.c). Added again in
    another order, some changed, with one payload held at two ordinals (as a restored state may hold it), every
    ordinal returned is the one the ordinal map gives for that payload, and the records read back are the objects."""
    engine = WriteStateEngine()
    mapper = ObjectMapper(engine)
    n = 300
    assert mapper.add_all(_row(i, 1) for i in range(n)) == n
    engine.prepare_for_write()
    engine.write_snapshot()
    engine.prepare_for_next_cycle()
    rows = engine._state("Listing").map
    assert rows.exact
    rows.put(rows.records[5], n)  # record 5 held again at ordinal n: the dict still gives 5
    rows.next_empty = n + 1
    assert not rows.exact and rows.ordinal_of[rows.records[5]] == 5
    order = [*range(6, n), 5, *range(5), *range(n - 1, n - 30, -1)]  # after n - 1 the guess is n, which holds 5
    values = [_row(i, 2) for i in order]
    ordinals = [mapper.add(v) for v in values]
    for o in ordinals:
        assert rows.ordinal_of[rows.records[o]] == o
    assert ordinals[order.index(5)] == 5 and ordinals[order.index(6)] == 6 and ordinals[order.index(7)] != 7
    engine.prepare_for_write()
    reader = TypedReader(ReadStateEngine.from_snapshot(engine.write_snapshot()), Listing)
    assert [reader.get(o) for o in ordinals] == values
    engine.prepare_for_next_cycle()  # forgets the copy: one ordinal per payload again
    assert rows.exact
