"""Records as JSON on the log: every field kind the object mapper maps comes back as it went, and input that
does not fit its class is a ValueError that names the problem."""

from __future__ import annotations

import datetime as dt
import enum
import json
from dataclasses import InitVar, dataclass, field
from typing import Annotated, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loosely.clients._fast import json_compact
from loosely.hollow.core import INLINE, Int64, hollow_type
from loosely.hollow.raw import Token
from loosely.hollow.raw._codec import (
    checked_json,
    decode_record,
    encode_json,
    encode_record,
    key_text,
    parse_key,
    record_from_json,
    record_to_json,
)


class Genre(enum.Enum):
    DRAMA = 0
    SCIFI = 1


class Point(NamedTuple):
    x: int
    y: float


@dataclass(frozen=True)
class Person:
    name: Annotated[str, INLINE]
    born: dt.datetime | None = None


@hollow_type(primary_key=("id",))
@dataclass
class Everything:
    id: Int64
    title: str
    genre: Genre
    poster: bytes
    cast: list[Person]
    tags: set[str]
    ratings: dict[str, float]
    by_year: dict[int, str]
    where: Point
    director: Person | None = None
    sequel: int | None = None
    flags: tuple[bool, ...] = field(default=())


@dataclass(frozen=True)
class Node:
    name: str
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None


def test_a_recursive_type_decodes_and_a_bad_value_deep_in_it_is_refused() -> None:
    # each hint's decoder is built once and cached; inner hints are looked up as values need them, so a type that
    # refers to itself builds
    tree = Node("root", [Node("a", [Node("a1")]), Node("b")], Node("up"))
    assert decode_record(Node, encode_record(tree)) == tree
    with pytest.raises(ValueError, match="not a str"):
        record_from_json(Node, {"name": "root", "children": [{"name": "a", "children": [{"name": 7}]}]})


def test_every_field_kind_round_trips() -> None:
    record = Everything(
        2**40, "Heat", Genre.DRAMA, b"\x00\xffpng", [Person("Al", dt.datetime(1940, 4, 25, tzinfo=dt.UTC))],
        {"heist", "la"}, {"imdb": 8.3}, {1995: "released"}, Point(3, 4.5), Person("Mann"), None, (True, False))
    data = encode_record(record)
    assert decode_record(Everything, data) == record
    assert encode_record(decode_record(Everything, data)) == data  # canonical: sets sorted, keys sorted


@pytest.mark.parametrize(("value", "problem"), [
    ({"x": 1, "y": "far"}, "not a number"),
    ({"x": "1", "y": 1.0}, "not an integer"),
    ({"x": True, "y": 1.0}, "not an integer"),
    ([1, 2], "JSON object"),
])
def test_input_that_does_not_fit_is_a_value_error(value: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        record_from_json(Point, value)


def test_keys_and_tokens() -> None:
    text = key_text("Movie", (42, "x"))
    assert text == '["Movie",[42,"x"]]' and parse_key(text) == ("Movie", (42, "x"))
    for bad in ('{"a": 1}', '["Movie", 42]', '["Movie", [[1]]]', "[1, [2]]"):
        with pytest.raises(ValueError):
            parse_key(bad)
    for bad in ("", "[]", '{"a": "b"}', "nonsense"):
        with pytest.raises(ValueError, match="not a token"):
            Token.parse(bad)


_PYTHON_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)
_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text()
            | st.sampled_from(['"', "\\", "\x00", "\x1f", "\x7f", "\ud800", "é日😀", "a\nb\tc\b\f\r"]))
_json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                            | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4), max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(_json_values)
def test_the_c_encoder_writes_what_python_writes_or_leaves_it_to_python(value: object) -> None:
    # json_compact covers exact dicts with str keys, lists, tuples, str, int, bool, None and finite floats; for
    # anything else (NaN, an int key, a lone surrogate) it answers None and encode_json asks Python's encoder
    try:
        expected: bytes | type[Exception] = _PYTHON_JSON.encode(value).encode()
    except (ValueError, TypeError) as e:
        expected = type(e)
    got = json_compact(value)
    assert got is None or got == expected
    if isinstance(expected, bytes):
        assert encode_json(value) == expected
    else:
        with pytest.raises(expected):
            encode_json(value)


@dataclass(frozen=True)
class Flat:
    id: int
    name: str
    score: float | None = None
    active: bool = True


@dataclass(frozen=True)
class Checked:
    id: int

    def __post_init__(self) -> None:
        if self.id < 0:
            raise ValueError("a negative id")


@dataclass(frozen=True)
class NeedsMore(Flat):
    def __init__(self, id: int, name: str, extra: str) -> None:  # a decode with the fields alone fails
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "name", name)


@dataclass(frozen=True)
class WithInitVar:
    id: int
    seed: InitVar[int]


@pytest.mark.parametrize("record", [Flat(1, "a\"b"), Flat(2**62, "日本", 1.5, False), Flat(0, "", None),
                                    Checked(3), Point(1, 2.0)])
def test_checked_json_gives_the_json_of_a_record_that_reads_back(record: object) -> None:
    # a flat record (text, integers, booleans, floats) skips the decode: it must give what the decode checks
    plain, data = checked_json(record)
    assert plain == record_to_json(record) and data == encode_record(record)
    assert decode_record(type(record), data) == record


@pytest.mark.parametrize(("record", "problem"), [
    (Flat(True, "x"), "not an integer"),   # a bool in an int field
    (Flat(1, 7), "not a str"),             # type: ignore[arg-type]
    (Flat(1, "x", "high"), "not a number"),  # type: ignore[arg-type]
    (Flat(1, "x", 1.0, 1), "not a bool"),  # type: ignore[arg-type]
])
def test_checked_json_refuses_what_the_decode_refuses(record: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        checked_json(record)


@pytest.mark.parametrize("record", [NeedsMore(1, "x", "y"), WithInitVar(1, 2)])
def test_checked_json_decodes_a_record_whose_class_builds_otherwise(record: object) -> None:
    # a hand-written __init__ or an InitVar: the fields alone do not build the class, so the record is refused
    # as before the shortcut (the producer could not read it back)
    with pytest.raises(ValueError, match="not a"):
        checked_json(record)
