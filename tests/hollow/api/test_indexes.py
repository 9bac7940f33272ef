"""Hash, unique-key and prefix indexes stay equal to a brute-force scan through deltas, reverse deltas and snapshot
swaps."""

from __future__ import annotations

from collections import defaultdict

import pytest

from hollow.api.models import Catalog, Movie
from loosely.hollow.api import Consumer, HashIndex, InMemoryBlobStore, PrefixIndex, Producer, UniqueKeyIndex, Version
from loosely.hollow.core import HollowSchemaError, ReadStateEngine, Records
from loosely.testing import FakeClock


def _movies(engine: ReadStateEngine) -> dict[int, dict[str, object]]:
    out = {}
    for m in Records(engine).all("Movie"):
        out[m.ordinal] = {
            "id": m["id"],  # type: ignore[index]
            "year": m["year"],  # type: ignore[index]
            "title": m["title"]["value"],  # type: ignore[index]
            "tags": [t["value"] for t in m["tags"]],  # type: ignore[index, union-attr]
            "actors": [a.ordinal for a in m["actors"]],  # type: ignore[index, union-attr]
            "actor_names": [a["name"] for a in m["actors"]],  # type: ignore[index, union-attr]
        }
    return out


def _check(c: Consumer, by_year: HashIndex, by_tag_year: HashIndex, actors_by_year: HashIndex, by_actor: HashIndex,
           unique: UniqueKeyIndex, titles: PrefixIndex, words: PrefixIndex) -> None:
    with c.reading() as engine:
        movies = _movies(engine)
        years: dict[object, list[int]] = defaultdict(list)
        tag_year: dict[tuple[object, object], list[int]] = defaultdict(list)
        actors_of_year: dict[object, set[int]] = defaultdict(set)
        by_name: dict[object, list[int]] = defaultdict(list)
        for o, m in movies.items():
            years[m["year"]].append(o)
            for t in m["tags"]:  # type: ignore[attr-defined]
                tag_year[(t, m["year"])].append(o)
            actors_of_year[m["year"]].update(m["actors"])  # type: ignore[arg-type]
            for n in set(m["actor_names"]):  # type: ignore[call-overload]
                by_name[n].append(o)
        for y in range(1950, 2020):
            assert by_year.find(y) == sorted(years.get(y, [])), y
            assert actors_by_year.find(y) == sorted(actors_of_year.get(y, set())), y
        for (t, y), os in tag_year.items():
            assert by_tag_year.find(t, y) == sorted(os)
        assert by_tag_year.find("no such tag", 1999) == []
        for n, os in by_name.items():
            assert by_actor.find(n) == sorted(os)
        assert len(unique) == len(movies)
        for o, m in movies.items():
            assert unique.find(m["id"]) == o
        for i in range(70):
            if all(m["id"] != i for m in movies.values()):
                assert unique.find(i) == -1
        for prefix in ["title 1", "TITLE 2", "title", "title 33 g", "nope", ""]:
            expected = sorted(o for o, m in movies.items() if str(m["title"]).startswith(prefix.casefold()))
            assert titles.find(prefix) == expected, prefix
        for prefix in ["g1", "1", "t"]:
            expected = sorted(
                o for o, m in movies.items() if any(w.startswith(prefix) for w in str(m["title"]).split())
            )
            assert words.find(prefix) == expected, prefix


def test_indexes_follow_every_transition() -> None:
    store = InMemoryBlobStore()
    p = Producer(publisher=store, announcer=store, data_model=[Movie], clock=FakeClock(), snapshot_every_cycles=4)
    cat = Catalog(seed=11, size=70, changes=9)
    versions: list[Version] = []
    for _ in range(12):
        v = p.run_cycle(cat.populate)
        assert v is not None
        versions.append(v)
        cat.advance()
    c = Consumer(retriever=store, watcher=store, deltas_max=3)
    c.refresh_to(versions[0])
    indexes = (
        HashIndex(c, "Movie", ["year"]),
        HashIndex(c, "Movie", ["tags.element", "year"]),
        HashIndex(c, "Movie", ["year"], select_field="actors.element"),
        HashIndex(c, "Movie", ["actors.name"]),  # the collection hop left implicit
        UniqueKeyIndex(c, "Movie"),
        PrefixIndex(c, "Movie", "title"),
        PrefixIndex(c, "Movie", "title", tokenize=str.split, merge_fraction=0.2),
    )
    _check(c, *indexes)  # type: ignore[arg-type]
    path = [1, 2, 3, 4, 5, 2, 11, 7, 8, 0, 9, 11]  # deltas, reverse deltas, double snapshots (deltas_max=3)
    for k in path:
        c.refresh_to(versions[k])
        assert c.version == versions[k]
        _check(c, *indexes)  # type: ignore[arg-type]
    s = c.statistics()
    assert s.deltas_applied and s.reverse_deltas_applied and s.double_snapshots


def test_records_and_closing() -> None:
    store = InMemoryBlobStore()
    p = Producer(publisher=store, announcer=store, data_model=[Movie], clock=FakeClock())
    cat = Catalog()
    p.run_cycle(cat.populate)
    c = Consumer(retriever=store, watcher=store)
    by_year = HashIndex(c, "Movie", ["year"])  # created before anything is loaded
    assert by_year.find(1950) == [] and by_year.records(1950) == []
    c.refresh()
    recs = by_year.records(1952)
    assert recs and all(r["year"] == 1952 for r in recs)  # type: ignore[index]
    actors = HashIndex(c, "Movie", ["year"], select_field="actors.element").records(1952)
    assert actors and all(r.type_name == "Actor" for r in actors)
    by_year.close()
    cat.advance(), cat.advance()
    p.run_cycle(cat.populate)
    c.refresh()  # a closed index no longer follows (and no longer costs anything)
    with pytest.raises(TypeError, match="matches 1 fields"):
        by_year.find(1, 2)


def test_bad_paths_are_refused() -> None:
    store = InMemoryBlobStore()
    Producer(publisher=store, announcer=store, data_model=[Movie], clock=FakeClock()).run_cycle(Catalog().populate)
    c = Consumer(retriever=store, watcher=store)
    c.refresh()
    with pytest.raises(HollowSchemaError, match="no field 'nope'"):
        HashIndex(c, "Movie", ["nope"])
    with pytest.raises(HollowSchemaError, match="not a reference"):
        HashIndex(c, "Movie", ["year.value"])
    with pytest.raises(HollowSchemaError, match="not a STRING"):
        PrefixIndex(c, "Movie", "year")
    with pytest.raises(HollowSchemaError):
        HashIndex(c, "Movie", [])
