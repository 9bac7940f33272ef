"""Java reads what the Python object mapper writes: the rich model through four cycles, with deltas.

Python typed-reads each state of Java's golden rich chain, writes it with its own mapper and write engine,
and Java Hollow then loads Python's snapshots, deltas and reverse deltas: Java's expanded records equal its
expanded records of its own blobs, and Java's exact dump of Python's blobs equals Python's dump.
"""

from __future__ import annotations

import math
from pathlib import Path

from hollow.golden_fixtures import chain
from hollow.javarun import Java, split_ops
from hollow.models import Edges, Movie, Review, edges_rows
from loosely.hollow.core import ObjectMapper, ReadStateEngine, TypedReader, WriteStateEngine, dump_state
from loosely.hollow.core._blob import read_blob_header
from loosely.hollow.core._encoding import Cursor


def test_java_reads_the_python_mapped_rich_chain(java: Java, tmp_path: Path) -> None:
    c = chain("rich")
    writer = WriteStateEngine(target_max_type_shard_size=2048)
    writer.add_header_tag("model", "rich")
    mapper = ObjectMapper(writer)
    mapper.initialize_type(Movie)
    mapper.initialize_type(Review)
    engine: ReadStateEngine | None = None
    blobs: dict[str, bytes] = {}
    for cycle, op in enumerate(c.ops[:4], start=1):
        engine = c.replay(engine, op)
        if cycle > 1:
            writer.prepare_for_next_cycle()
        writer.add_header_tag("cycle", str(cycle))
        for cls in (Movie, Review):
            for obj in TypedReader(engine, cls):
                mapper.add(obj)
        blobs[f"snapshot-{cycle}"] = writer.write_snapshot()
        if cycle > 1:
            blobs[f"delta-{cycle - 1}-{cycle}"] = writer.write_delta()
            blobs[f"reversedelta-{cycle}-{cycle - 1}"] = writer.write_reverse_delta()
    for name, data in blobs.items():
        (tmp_path / name).write_bytes(data)
    java_ops = [f"{op.split(':')[0]}:{tmp_path / op.split(':')[1]}" for op in c.ops]
    for type_name in c.deep_types:
        theirs = split_ops(java.interop("deep", type_name, *java_ops))
        expected = c.java_deep(type_name)
        assert [text for _, text in theirs] == [text for _, text in expected], type_name
    java_dumps = split_ops(java.interop("dump", *java_ops))
    ours: ReadStateEngine | None = None
    for op, (_, java_text) in zip(c.ops, java_dumps, strict=True):
        kind, name = op.split(":")
        if kind == "snapshot":
            ours = ReadStateEngine.from_snapshot(blobs[name])
        else:
            assert ours is not None
            ours.apply_delta(blobs[name])
        assert dump_state(ours) == java_text, f"Java and Python see different states after {op}"


def test_nan_and_null_numbers_are_javas_both_ways(java: Java, tmp_path: Path) -> None:
    """Java's object mapper writes a primitive's NaN (and minimum) as null but keeps an inline box's NaN (and
    Short / Byte / Character minimum); Python's mapper writes the same bytes, each side reads the other's."""
    java.interop("model", "edges", tmp_path)
    java_blob = (tmp_path / "snapshot-1").read_bytes()
    writer = WriteStateEngine()
    writer.override_next_tag(read_blob_header(Cursor(memoryview(java_blob))).destination_tag)
    mapper = ObjectMapper(writer)
    mapper.add_all(edges_rows())
    ours = writer.write_snapshot()
    assert ours == java_blob
    (tmp_path / "python-1").write_bytes(ours)
    java_dump = split_ops(java.interop("dump", f"snapshot:{tmp_path / 'python-1'}"))[0][1]
    assert java_dump == dump_state(ReadStateEngine.from_snapshot(ours))
    row0 = next(line for line in java_dump.splitlines() if line.startswith("R 0 ") and "inlineF" in line)
    assert "f=null,d=null,s=null,c=null" in row0  # primitives: null
    assert "inlineF=f7fc00000,inlineD=d7ff8000000000000,inlineS=-32768,inlineB=-128,inlineC=0,inlineI=null" in row0
    back = {e.id: e for e in TypedReader(ReadStateEngine.from_snapshot(java_blob), Edges)}
    assert math.isnan(back[0].inlineF) and math.isnan(back[0].inlineD) and math.isnan(back[1].inlineD)  # type: ignore[arg-type]
    assert back[2].inlineF is None and back[2].inlineD is None and back[1].inlineB is None
    assert (back[0].inlineS, back[0].inlineB, back[0].inlineC, back[0].inlineI) == (-(1 << 15), -128, 0, None)
    assert math.isnan(back[0].f) and back[0].s == -(1 << 15) and back[0].c == 0  # null primitives read as Java's
