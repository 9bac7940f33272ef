"""Java reads what the Python object mapper writes: the rich model through four cycles, with deltas.

Python typed-reads each state of Java's golden rich chain, writes it with its own mapper and write engine,
and Java Hollow then loads Python's snapshots, deltas and reverse deltas: Java's expanded records equal its
expanded records of its own blobs, and Java's exact dump of Python's blobs equals Python's dump.
"""

from __future__ import annotations

from pathlib import Path

from hollow.golden_fixtures import chain
from hollow.javarun import Java, split_ops
from hollow.models import Movie, Review
from loosely.hollow.core import ObjectMapper, ReadStateEngine, TypedReader, WriteStateEngine, dump_state


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
