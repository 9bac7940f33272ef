"""Incremental cycles (hollow.api._incremental): changes by primary key give the state a full populate gives, and a
delete takes along what only the deleted records referenced."""

from __future__ import annotations

from hollow.api.models import Actor, Catalog, Movie, by_key, movie
from loosely.hollow.api import Consumer, InMemoryBlobStore, Producer
from loosely.testing import FakeClock


def _producer(store: InMemoryBlobStore) -> Producer:
    return Producer(publisher=store, announcer=store, retriever=store, data_model=[Movie], clock=FakeClock())


def _full_state(movies: dict[int, Movie]) -> str:
    store = InMemoryBlobStore()
    p = _producer(store)
    p.run_cycle(lambda s: s.add_all(movies.values()))
    assert p.read_state is not None
    return by_key(p.read_state)


def test_incremental_cycles_match_a_full_populate() -> None:
    store, cat = InMemoryBlobStore(), Catalog(seed=3)
    p = _producer(store)
    p.run_cycle(cat.populate)
    movies = dict(cat.movies)
    c = Consumer(retriever=store, watcher=store)
    for gen in range(1, 8):
        changed = {i: movie(i, gen) for i in (gen, gen * 7 % 60, 33)}
        deleted = [i for i in (gen * 5 % 60, 2 * gen) if i not in changed]

        def apply(
            inc: object, changed: dict[int, Movie] = changed, deleted: list[int] = deleted, gen: int = gen
        ) -> None:
            for m in changed.values():
                inc.add_or_modify(m)  # type: ignore[attr-defined]
            for i in deleted:
                inc.delete_key("Movie", (i,))  # type: ignore[attr-defined]
            inc.add_if_absent(movie(0, 1000 + gen))  # type: ignore[attr-defined]  # exists from gen 0: kept

        p.run_incremental_cycle(apply)
        movies.update(changed)
        for i in deleted:
            movies.pop(i, None)
        movies.setdefault(0, movie(0, 1000 + gen))
        assert p.read_state is not None
        assert by_key(p.read_state) == _full_state(movies), gen
        c.refresh()
        assert c.statistics().double_snapshots == 0
    assert by_key(c.engine) == _full_state(movies)  # type: ignore[arg-type]


def test_incremental_delete_keeps_children_others_still_use() -> None:
    store = InMemoryBlobStore()
    p = _producer(store)
    shared = [Actor(1, "a")]
    p.run_cycle(lambda s: s.add_all([Movie(1, "x", 2000, shared, {"t"}), Movie(2, "y", 2001, shared, {"t"})]))
    p.run_incremental_cycle(lambda inc: inc.delete(Movie(1, "?", 0, [], set())))
    rs = p.read_state
    assert rs is not None
    assert rs.type("Movie").record_count() == 1 and rs.type("Actor").record_count() == 1
    assert rs.type("String").record_count() == 2  # "y" and "t"; "x" went with movie 1
    p.run_incremental_cycle(lambda inc: inc.delete(Movie(2, "?", 0, [], set())))
    assert all(t.record_count() == 0 for t in p.read_state.types())  # type: ignore[union-attr]
