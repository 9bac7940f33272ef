"""JSON records, diffs and record histories, checked against the changes the catalog generator made."""

from __future__ import annotations

import pytest

from hollow.api.models import Catalog, Movie, movie
from loosely.hollow.api import (
    InMemoryBlobStore,
    Producer,
    Version,
    add_json,
    diff_states,
    diff_versions,
    dump_records,
    load_version,
    record_history,
    record_json,
)
from loosely.hollow.core import HollowWriteError, ReadStateEngine, WriteStateEngine, parse_schemas
from loosely.testing import FakeClock


def _expected_json(m: Movie) -> dict[str, object]:
    return {"id": m.id, "title": m.title, "year": m.year,
            "actors": [{"id": a.id, "name": a.name} for a in m.actors], "tags": sorted(m.tags)}


def _chain(store: InMemoryBlobStore, cycles: int) -> tuple[list[Version], list[dict[int, Movie]]]:
    p = Producer(publisher=store, announcer=store, data_model=[Movie], clock=FakeClock(), snapshot_every_cycles=4)
    cat = Catalog(seed=21)
    versions, states = [], []
    for _ in range(cycles):
        v = p.run_cycle(cat.populate)
        assert v is not None
        versions.append(v)
        states.append(dict(cat.movies))
        cat.advance()
    return versions, states


def test_dump_is_the_data_as_json() -> None:
    store = InMemoryBlobStore()
    versions, states = _chain(store, 2)
    engine = load_version(store, versions[1])
    dumped = {r["record"]["id"]: r["record"] for r in dump_records(engine)}  # type: ignore[index]
    assert dumped == {i: _expected_json(m) for i, m in states[1].items()}
    assert {r["type"] for r in dump_records(engine)} == {"Movie"}  # top-level types only, by default
    assert len(list(dump_records(engine, ["Actor"]))) == engine.type("Actor").record_count()
    assert record_json(engine, "Movie", 0, collapse=False)["title"] == {"value": states[1][  # type: ignore[index]
        record_json(engine, "Movie", 0)["id"]].title}  # type: ignore[index]


def test_add_json_round_trips_dump() -> None:
    store = InMemoryBlobStore()
    versions, _ = _chain(store, 1)
    engine = load_version(store, versions[0])
    w = WriteStateEngine(engine.schemas)
    for r in dump_records(engine):
        add_json(w, "Movie", r["record"])
    copy = ReadStateEngine.from_snapshot(w.write_snapshot())
    assert sorted(map(repr, (r["record"] for r in dump_records(copy)))) == sorted(
        map(repr, (r["record"] for r in dump_records(engine))))
    with pytest.raises(HollowWriteError, match="no fields"):
        add_json(w, "Movie", {"id": 1, "nope": 2})
    with pytest.raises(HollowWriteError, match="JSON array"):
        add_json(w, "ListOfActor", {"id": 1})


@pytest.mark.parametrize(("a", "b"), [(0, 1), (1, 5), (5, 2), (0, 6)])
def test_diff_matches_what_changed(a: int, b: int) -> None:
    store = InMemoryBlobStore()
    versions, states = _chain(store, 7)
    before, after = states[a], states[b]
    d = diff_versions(store, versions[a], versions[b])["Movie"]
    assert d.keyed
    assert d.added == [[i] for i in sorted(after.keys() - before.keys())]
    assert d.removed == [[i] for i in sorted(before.keys() - after.keys())]
    changed = sorted(i for i in before.keys() & after.keys() if _expected_json(before[i]) != _expected_json(after[i]))
    assert [c.key for c in d.changed] == [[i] for i in changed]
    for c in d.changed:
        assert c.before == _expected_json(before[c.key[0]]) and c.after == _expected_json(after[c.key[0]])  # type: ignore[index]
        assert "title" in c.fields
    full = diff_states(load_version(store, versions[a]), load_version(store, versions[b]))["Movie"]
    assert full.as_json() == d.as_json()  # the delta-walk shortcut and the full comparison agree


def test_diff_of_types_without_a_primary_key() -> None:
    w = WriteStateEngine(parse_schemas("Point { int x; int y; }"))
    w.add_object("Point", {"x": 1, "y": 1})
    w.add_object("Point", {"x": 2, "y": 2})
    a = ReadStateEngine.from_snapshot(w.write_snapshot())
    w.prepare_for_next_cycle()
    w.add_object("Point", {"x": 2, "y": 2})
    w.add_object("Point", {"x": 3, "y": 3})
    b = ReadStateEngine.from_snapshot(w.write_snapshot())
    d = diff_states(a, b)["Point"]
    assert not d.keyed and d.added == [{"x": 3, "y": 3}] and d.removed == [{"x": 1, "y": 1}]


def test_history_of_a_record() -> None:
    store = InMemoryBlobStore()
    versions, states = _chain(store, 8)
    for key in range(0, 60, 7):
        h = record_history(store, "Movie", [key], versions[0], versions[-1])
        expected = []
        last = None
        for v, s in zip(versions, states, strict=True):
            now = _expected_json(s[key]) if key in s else None
            if v == versions[0]:
                if now is not None:
                    expected.append((v, "present", now))
            elif now != last:
                expected.append((v, "added" if last is None else "removed" if now is None else "modified", now))
            last = now
        assert [(e.version, e.change, e.record) for e in h] == expected, key
    assert movie(1, 0).id == 1
