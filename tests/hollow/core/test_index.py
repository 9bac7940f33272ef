"""The primary key index follows a state through deltas; columns read fields into numpy arrays."""

from __future__ import annotations

import math
import random
from collections import defaultdict

import numpy as np
import pytest

from hollow.golden_fixtures import CHAINS, chain
from loosely.hollow.core import (
    FieldType,
    GenericList,
    GenericObject,
    GenericSet,
    HollowSchemaError,
    ObjectSchema,
    PrimaryKeyIndex,
    ReadStateEngine,
    Records,
    WriteStateEngine,
    column,
    parse_schemas,
)
from loosely.hollow.core._access import record_key


def _expected(engine: ReadStateEngine, index: PrimaryKeyIndex) -> dict[tuple[object, ...], set[int]]:
    """Brute force: every populated record's key, read through the generic API."""
    records = Records(engine)
    out: dict[tuple[object, ...], set[int]] = defaultdict(set)
    for o in engine.type(index.type_name).populated_ordinals().tolist():
        out[record_key(records, index.key_paths, o)].add(o)
    return out


def _check(engine: ReadStateEngine, index: PrimaryKeyIndex) -> None:
    expected = _expected(engine, index)
    assert len(index) == sum(len(v) for v in expected.values())
    for key, ordinals in expected.items():
        assert index.find(*key) in ordinals, key
    if expected:
        sample = next(iter(expected))
        probe = tuple(("no such key" if isinstance(v, str) else v) for v in sample)
        if probe not in expected and any(isinstance(v, str) for v in sample):
            assert index.find(*probe) == -1


@pytest.mark.parametrize("name", CHAINS)
def test_index_follows_every_state_of_the_chain(name: str) -> None:
    c = chain(name)
    engine: ReadStateEngine | None = None
    indexes: list[PrimaryKeyIndex] = []
    for op in c.ops:
        previous = engine
        engine = c.replay(engine, op)
        if engine is not previous:
            indexes = [
                PrimaryKeyIndex(engine, t.name)
                for t in engine.types()
                if isinstance(t.schema, ObjectSchema) and t.schema.primary_key
            ]
        for index in indexes:
            _check(engine, index)
    assert any(indexes) or name.startswith("spec")


def test_field_reader_reads_the_same_values_as_the_generic_api() -> None:
    c = chain("rich")
    engine = ReadStateEngine.from_snapshot(c.blob("snapshot-1"))
    index = PrimaryKeyIndex(engine, "Movie")
    records = Records(engine)
    readers = {f: index.field_reader(f) for f in ("title", "releaseMillis", "score", "active", "poster")}
    for o in engine.type("Movie").populated_ordinals().tolist():
        movie = records.object("Movie", o)
        for field, read in readers.items():
            expected, actual = movie[field], read(movie["id"])
            assert actual == expected or (math.isnan(expected) and math.isnan(actual))  # type: ignore[arg-type]
    assert readers["title"](10_000) is None


def test_tables_of_a_mebibyte_and_more_grow_and_turn_into_hash_tables() -> None:
    """Tables from 1 MiB on are mappings of their own (on 2 MiB pages): one grows out of PyMem into a mapping, a
    mapping grows by mremap, and a hash table replaces it; every key is found at each step, by find and by a field
    reader (whose prefetch guesses pool offsets)."""
    from loosely.hollow.core import WriteStateEngine, parse_schemas

    w = WriteStateEngine(parse_schemas("Item @PrimaryKey(id) { int id; string name; }"))

    def add(ids: list[int]) -> None:
        for i in ids:
            w.add_object("Item", {"id": i, "name": f"n{i}" * (1 + i % 3)})

    ids = list(range(250_000))  # 1,000,000 bytes of table: PyMem
    add(ids)
    engine = ReadStateEngine.from_snapshot(w.write_snapshot())
    index = PrimaryKeyIndex(engine, "Item")
    name = index.field_reader("name")
    for top in (270_000, 300_000, 10**9):  # into a mapping; mremap; a hash table
        w.prepare_for_next_cycle()
        kept = [i for i in ids if i % 1000 != 1]
        ids = kept + ([top] if top == 10**9 else list(range(ids[-1] + 1, top)))
        add(ids)
        engine.apply_delta(w.write_delta())
        assert len(index) == len(ids)
        for i in ids[::997] + ids[-3:]:
            assert name(i) == f"n{i}" * (1 + i % 3), i
        assert index.find(1001) == -1 and name(2001) is None
    assert index.nbytes < 4 * 10**7  # a hash table, not a direct one over ids up to 10**9


def test_index_is_small() -> None:
    c = chain("rich")
    engine = ReadStateEngine.from_snapshot(c.blob("snapshot-1"))
    index = PrimaryKeyIndex(engine, "Review")
    assert index.nbytes <= 4 * (4 * len(index) + 16)


def test_columns_match_record_reads() -> None:
    engine = ReadStateEngine.from_snapshot(chain("rich").blob("snapshot-4"))
    movie = engine.type("Movie")
    schema = movie.schema
    assert isinstance(schema, ObjectSchema)
    for i, f in enumerate(schema.fields):
        col = column(movie, f.name)
        assert col.ordinals.tolist() == movie.populated_ordinals().tolist()
        for k, o in enumerate(col.ordinals.tolist()):
            expected = movie.view.get(o, i)
            assert bool(col.nulls[k]) == (expected is None), f.name
            if expected is None:
                continue
            value = col.values[k]
            if f.type in (FieldType.FLOAT, FieldType.DOUBLE):
                assert value == expected or (np.isnan(value) and math.isnan(expected))  # type: ignore[arg-type]
            else:
                assert value == expected, f.name
    some = column(movie, "id", np.array([0, 3], dtype=np.int64))
    assert some.values.dtype == np.int32 and some.values.tolist() == [movie.view.get(0, 0), movie.view.get(3, 0)]


def test_typed_reader_finds_by_primary_key_across_deltas() -> None:
    from hollow.models import Movie
    from loosely.hollow.core import TypedReader

    c = chain("rich")
    engine = ReadStateEngine.from_snapshot(c.blob("snapshot-1"))
    reader = TypedReader(engine, Movie)
    found = reader.find(3)
    assert found is not None and found.id == 3  # (Movie holds NaNs and identity-compared parts: compare ids)
    engine.apply_delta(c.blob("delta-1-2"))
    ids = {m.id for m in reader}
    for movie_id in range(80):
        found = reader.find(movie_id)
        assert (found is not None) == (movie_id in ids)
        assert found is None or found.id == movie_id


_EXPANDABLE = ("boxedInt", "boxedLong", "boxedDouble", "originalTitle", "keyword", "genre", "tags", "numbers")


def _expanded(value: object) -> object:
    """What record_reader gives for an expanded field, read through the generic API."""
    if isinstance(value, GenericObject):
        return value[value.fields()[0]]
    if isinstance(value, GenericList | GenericSet):
        return [_expanded(e) for e in value]
    return value


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def test_record_reader_reads_what_the_generic_api_reads_through_the_chain() -> None:
    # Blobs written by Java Hollow (tests/hollow/golden): the record, references followed, at every version.
    c = chain("rich")
    engine: ReadStateEngine | None = None
    for op in c.ops:
        previous = engine
        engine = c.replay(engine, op)
        if engine is not previous:
            index = PrimaryKeyIndex(engine, "Movie")
            plain, expanded = index.record_reader(), index.record_reader(expand=_EXPANDABLE)
            names = engine.type("Movie").schema.field_names()  # type: ignore[union-attr]
        assert engine is not None
        records = Records(engine)
        for o in engine.type("Movie").populated_ordinals().tolist():
            movie = records.object("Movie", o)
            whole = plain(movie["id"])
            assert whole is not None and all(_same(a, b) for a, b in zip(whole, movie.values(), strict=True))
            got = expanded(movie["id"])
            assert got is not None
            for field, value in zip(names, got, strict=True):
                want = _expanded(movie[field]) if field in _EXPANDABLE else movie.values()[names.index(field)]
                assert _same(value, want), (field, value, want)
        assert plain(1_000_000) is None and expanded(-5) is None and plain("not an id") is None


def test_record_reader_in_hash_mode_and_with_string_keys() -> None:
    engine = ReadStateEngine.from_snapshot(chain("rich").blob("snapshot-4"))
    index = PrimaryKeyIndex(engine, "Actor")
    read = index.record_reader()
    records = Records(engine)
    for o in engine.type("Actor").populated_ordinals().tolist():
        actor = records.object("Actor", o)
        assert read(actor["name"]) == actor.values()
    assert read("nobody at all") is None and read(3) is None


def test_record_reader_refuses_fields_it_cannot_expand() -> None:
    index = PrimaryKeyIndex(ReadStateEngine.from_snapshot(chain("rich").blob("snapshot-1")), "Movie")
    for field in ("title", "director", "awards", "cast", "ratingsBySite", "no_such_field"):
        with pytest.raises(HollowSchemaError):
            index.record_reader(expand=[field])


@pytest.mark.parametrize("shuffled", [False, True])
def test_readers_in_and_out_of_key_order_strings_of_every_kind_and_nulls(shuffled: bool) -> None:
    # The readers load the record of a predicted ordinal (key order) ahead: right or wrong, they read the same.
    names = ["", "é", "ascii-but-longer-than-eight", "longer ascii then ü", "日本語", None, "x" * 300, "a\x7fb"]
    schemas = parse_schemas(
        "Integer { int value; } ListOfInteger List<Integer>; SetOfInteger Set<Integer>;"
        "Item @PrimaryKey(id) { int id; string name; ListOfInteger scores; SetOfInteger tags; Integer best; }"
    )
    w = WriteStateEngine(schemas)
    ids = list(range(500))
    if shuffled:
        random.Random(18).shuffle(ids)
    for i in ids:
        ints = [w.add_object("Integer", {"value": v}) for v in (i, i % 7, -i)]
        w.add_object("Item", {"id": i, "name": names[i % len(names)], "scores": w.add_list("ListOfInteger", ints),
                              "tags": w.add_set("SetOfInteger", ints[::2]) if i % 3 else None,
                              "best": ints[0] if i % 5 else None})
    engine = ReadStateEngine.from_snapshot(w.write_snapshot())
    index = PrimaryKeyIndex(engine, "Item")
    name = index.field_reader("name")
    read = index.record_reader(expand=["scores", "tags", "best"])
    for i in list(range(500)) + ids:
        assert name(i) == names[i % len(names)]
        got = read(i)
        assert got is not None and got[:3] == (i, names[i % len(names)], [i, i % 7, -i])
        assert (sorted(got[3]) if got[3] is not None else None) == (sorted({i, -i}) if i % 3 else None)
        assert got[4] == (i if i % 5 else None)
    assert name(500) is None and read(500) is None and name(True) is None


def test_direct_index_grows_over_ids_added_past_its_range() -> None:
    """Dense integer ids take the directly addressed table; a delta adding ids above and below its range makes it
    grow (every key still found, removed ones gone), and ids too far apart turn it into the hash table."""
    from loosely.hollow.core import WriteStateEngine, parse_schemas

    w = WriteStateEngine(parse_schemas("Item @PrimaryKey(id) { int id; string name; }"))
    ids = set(range(100))
    for i in sorted(ids):
        w.add_object("Item", {"id": i, "name": f"item-{i}"})
    engine = ReadStateEngine.from_snapshot(w.write_snapshot())
    index = PrimaryKeyIndex(engine, "Item")
    assert index.nbytes == 4 * 100  # one slot per id: the direct table
    for added, removed in ((range(100, 130), (3, 50)), (range(-20, 0), (7,)), (range(130, 135), ())):
        w.prepare_for_next_cycle()
        ids |= set(added)
        ids -= set(removed)
        for i in sorted(ids):
            w.add_object("Item", {"id": i, "name": f"item-{i}"})
        engine.apply_delta(w.write_delta())
        _check(engine, index)
        assert index.find(removed[0] if removed else 10**6) == -1
        assert index.nbytes == 4 * (max(ids) - min(ids) + 1), "grown, not rebuilt as a hash table"
    w.prepare_for_next_cycle()
    ids.add(10**6)
    for i in sorted(ids):
        w.add_object("Item", {"id": i, "name": f"item-{i}"})
    engine.apply_delta(w.write_delta())
    _check(engine, index)
    assert index.find(10**6) >= 0 and index.nbytes < 4 * 10**6
