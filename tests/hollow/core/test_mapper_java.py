"""The object mapper against Java's: same schemas, same data, and for list-only models the same bytes.

Java Hollow's object mapper wrote ``golden/rich`` and ``golden/evolve`` from the Java classes of the interop
program; ``hollow.models`` declares the same model in Python.
"""

from __future__ import annotations

import math

from hollow.golden_fixtures import chain
from hollow.models import FilmV1, FilmV2, Movie, Review, Studio
from loosely.hollow.core import (
    ObjectMapper,
    ReadStateEngine,
    TypedReader,
    WriteStateEngine,
    deep_dump,
    schemas_to_text,
)
from loosely.hollow.core._blob import read_blob_header
from loosely.hollow.core._encoding import Cursor


def test_rich_model_schemas_equal_javas() -> None:
    mapper = ObjectMapper()
    mapper.initialize_type(Movie)
    mapper.initialize_type(Review)
    assert schemas_to_text(mapper.schemas) == (chain("rich").directory / "schemas-1.txt").read_text()


def test_evolve_model_schemas_equal_javas() -> None:
    for cls, file in ((FilmV1, "schemas-1.txt"), (FilmV2, "schemas-4.txt")):
        mapper = ObjectMapper()
        mapper.initialize_type(cls)
        assert schemas_to_text(mapper.schemas) == (chain("evolve").directory / file).read_text()


def test_java_data_read_into_python_classes_and_written_back_is_the_same_data() -> None:
    """Typed-read every state of Java's rich chain, write it with the Python mapper, compare expanded."""
    c = chain("rich")
    java_deep = {t: dict(c.java_deep(t)) for t in c.deep_types}
    engine: ReadStateEngine | None = None
    writer = WriteStateEngine(target_max_type_shard_size=2048)
    mapper = ObjectMapper(writer)
    mapper.initialize_type(Movie)
    mapper.initialize_type(Review)
    for cycle, op in enumerate(c.ops[:4], start=1):
        engine = c.replay(engine, op)
        if cycle > 1:
            writer.prepare_for_next_cycle()
        for cls in (Movie, Review):
            for obj in TypedReader(engine, cls):
                mapper.add(obj)
        ours = ReadStateEngine.from_snapshot(writer.write_snapshot())
        for t in c.deep_types:
            assert deep_dump(ours, t) == java_deep[t][op], f"{t} in state {cycle}"


def _dest_tag(blob: bytes) -> int:
    return read_blob_header(Cursor(memoryview(blob))).destination_tag


def _film_v1(i: int, cycle: int) -> FilmV1:
    title = f"film {i}" + (" (restored)" if cycle == 2 and i % 5 == 0 else "")
    return FilmV1(i, title, 1980 + i, ["en" if i % 2 == 0 else "fr"])


def _film_v2(i: int, cycle: int) -> FilmV2:
    studio = Studio(f"studio {i % 4}", 1900 + i % 4) if (i % 3 != 0 or cycle == 4) else None
    title = f"film {i}" + (" (restored)" if i % 5 == 0 else "")
    return FilmV2(i, title, ["en" if i % 2 == 0 else "fr"], math.nan if i % 4 == 0 else i / 4.0, studio)


def test_evolve_chain_is_byte_identical_including_restore_across_a_model_change() -> None:
    """The same loop as HollowInterop.evolveModel: Python's blobs equal Java's, including the delta written
    by a producer restored from Java's snapshot 2 with a changed data model."""
    c = chain("evolve")
    java = c.blobs()
    v1 = WriteStateEngine()
    m1 = ObjectMapper(v1)
    m1.initialize_type(FilmV1)
    for cycle in (1, 2):
        if cycle > 1:
            v1.prepare_for_next_cycle()
        v1.override_next_tag(_dest_tag(java[f"snapshot-{cycle}"]))
        for i in range(20):
            if not (cycle == 2 and i % 7 == 3):
                m1.add(_film_v1(i, cycle))
        assert v1.write_snapshot() == java[f"snapshot-{cycle}"]
        if cycle > 1:
            assert v1.write_delta() == java["delta-1-2"]
            assert v1.write_reverse_delta() == java["reversedelta-2-1"]
    v2 = WriteStateEngine()
    m2 = ObjectMapper(v2)
    m2.initialize_type(FilmV2)
    v2.restore_from(ReadStateEngine.from_snapshot(java["snapshot-2"]))
    for cycle in (3, 4):
        if cycle > 3:
            v2.prepare_for_next_cycle()
        v2.override_next_tag(_dest_tag(java[f"snapshot-{cycle}"]))
        for i in range(24):
            if not (i % 7 == 3 and cycle == 3):
                m2.add(_film_v2(i, cycle))
        assert v2.write_snapshot() == java[f"snapshot-{cycle}"], f"snapshot-{cycle}"
        assert v2.write_delta() == java[f"delta-{cycle - 1}-{cycle}"], f"delta-{cycle - 1}-{cycle}"
        assert v2.write_reverse_delta() == java[f"reversedelta-{cycle}-{cycle - 1}"]
