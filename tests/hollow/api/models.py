"""The data model and a deterministic change generator shared by the hollow.api tests (and their child processes)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Annotated

from loosely.hollow.core import INLINE, ReadStateEngine, Records, hollow_type


@dataclass(eq=False)
class Actor:
    id: int
    name: Annotated[str, INLINE]


@hollow_type(primary_key=("id",))
@dataclass
class Movie:
    id: int
    title: str
    year: int
    actors: list[Actor]
    tags: set[str]


def movie(i: int, generation: int) -> Movie:
    """Keep in step with HollowApiInterop.movie() (interop/hollow/HollowApiInterop.java)."""
    actors = [Actor((i + a) % 11, f"actor {(i + a) % 11}") for a in range(i % 3 + 1)]
    return Movie(i, f"title {i} g{generation}", 1950 + i % 70, actors, {f"t{i % 4}", f"g{generation % 3}"})


class Catalog:
    """A dataset that changes a little every generation, reproducibly (same seed, same sequence)."""

    def __init__(self, seed: int = 1, size: int = 60, changes: int = 5) -> None:
        self.rng = random.Random(seed)
        self.size = size
        self.changes = changes
        self.generation = 0
        self.movies: dict[int, Movie] = {}
        for i in range(0, size, 2):
            self.movies[i] = movie(i, 0)

    def advance(self) -> dict[int, Movie]:
        self.generation += 1
        for _ in range(self.changes):
            i = self.rng.randrange(self.size)
            if i in self.movies and self.rng.randrange(4) == 0:
                del self.movies[i]
            else:
                self.movies[i] = movie(i, self.generation)
        return self.movies

    def populate(self, state: object) -> None:
        state.add_all(self.movies.values())  # type: ignore[attr-defined]


def by_key(engine: ReadStateEngine) -> str:
    """Records by content, independent of ordinals: one line per movie plus record counts per type."""
    lines = []
    recs = Records(engine)
    for m in recs.all("Movie"):
        actors = [(a["id"], a["name"]) for a in m["actors"]]  # type: ignore[index, union-attr]
        tags = sorted(t["value"] for t in m["tags"])  # type: ignore[index, union-attr]
        lines.append(repr((m["id"], m["title"]["value"], m["year"], actors, tags)))  # type: ignore[index]
    counts = sorted((t.name, t.record_count()) for t in engine.types())
    return "\n".join(sorted(lines)) + "\n" + repr(counts)
