"""The generic object API over Java-written data: fields, references, lists, sets and maps, lookups."""

from __future__ import annotations

import pytest

from hollow.golden_fixtures import chain
from loosely.hollow.core import (
    GenericList,
    GenericMap,
    GenericObject,
    GenericSet,
    HollowSchemaError,
    ReadStateEngine,
    Records,
)


@pytest.fixture(scope="module")
def records() -> Records:
    return Records(ReadStateEngine.from_snapshot(chain("rich").blob("snapshot-4")))


def test_navigation(records: Records) -> None:
    seen_director = seen_set = seen_map = False
    for movie in records.all("Movie"):
        assert isinstance(movie, GenericObject)
        assert isinstance(movie["id"], int)
        director = movie["director"]
        if director is not None:
            assert isinstance(director, GenericObject) and director.type_name == "Director"
            assert movie.ordinal_of("director") == director.ordinal
            seen_director = True
        tags = movie["tags"]
        assert isinstance(tags, GenericList)
        assert [t["value"] for t in tags] == [records.object("Integer", o)["value"] for o in tags.ordinals()]
        cast = movie["cast"]
        assert isinstance(cast, GenericSet)
        for actor in cast:
            assert actor in cast and actor.ordinal in cast
            found = cast.find(actor["name"])  # SetOfActor @HashKey(name)
            assert found is not None and found["name"] == actor["name"]
            seen_set = True
        assert cast.find("nobody") is None
        ratings = movie["ratingsBySite"]
        assert isinstance(ratings, GenericMap)
        for site, score in ratings.items():
            assert ratings.find(site["value"]) == score  # MapOfStringToInteger @HashKey(value)
            assert ratings.get_ordinal(site.ordinal) == score.ordinal
            seen_map = True
    assert seen_director and seen_set and seen_map


def test_sets_without_a_hash_key_refuse_key_lookups(records: Records) -> None:
    for movie in records.all("Movie"):
        plain = movie["plainAwards"]
        assert isinstance(plain, GenericSet)
        with pytest.raises(HollowSchemaError, match="no hash key"):
            plain.find("oscar")
        break


def test_unknown_fields_and_types(records: Records) -> None:
    movie = records.object("Movie", 0)
    with pytest.raises(KeyError):
        movie["nope"]
    assert movie.get("nope", "default") == "default"
    with pytest.raises(KeyError):
        records.record("Nope", 0)
