"""Records as JSON on the log: every field kind the object mapper maps comes back as it went, and input that
does not fit its class is a ValueError that names the problem."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Annotated, NamedTuple

import pytest

from loosely.hollow.core import INLINE, Int64, hollow_type
from loosely.hollow.raw import Token
from loosely.hollow.raw._codec import decode_record, encode_record, key_text, parse_key, record_from_json


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
