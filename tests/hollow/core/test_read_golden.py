"""Python reads chains that Java Hollow wrote and sees exactly what Java sees.

The expected text is Java's own dump of the same blobs (``golden/*/dump.txt.gz``): every ordinal, every
field's bits, every set/map bucket, the ghosts of the last delta, lookups and ``HollowChecksum``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hollow.golden_fixtures import CHAINS, chain
from loosely.hollow.core import ReadStateEngine, deep_dump, dump_state


@pytest.mark.parametrize("name", CHAINS)
@pytest.mark.parametrize("mapped", [False, True], ids=["bytes", "mmap"])
def test_every_state_of_the_chain_dumps_exactly_as_java(name: str, mapped: bool, tmp_path: Path) -> None:
    c = chain(name)
    java = c.java_dumps()
    assert [op.split(",")[0] for op, _ in java] == c.ops
    engine: ReadStateEngine | None = None
    for op, expected in java:
        engine = c.replay(engine, op.split(",")[0], mapped_dir=tmp_path if mapped else None)
        assert dump_state(engine) == expected, f"{name}: state after {op} differs from Java's"


@pytest.mark.parametrize("name", CHAINS)
def test_expanded_records_match_java(name: str) -> None:
    c = chain(name)
    for type_name in c.deep_types:
        engine: ReadStateEngine | None = None
        for op, expected in c.java_deep(type_name):
            engine = c.replay(engine, op)
            assert deep_dump(engine, type_name) == expected, f"{name}/{type_name} after {op}"


def test_delta_and_snapshot_of_the_same_state_agree() -> None:
    """Applying the forward chain reaches the same data and checksum as reading the last snapshot."""
    c = chain("rich")
    engine = ReadStateEngine.from_snapshot(c.blob("snapshot-1"))
    for d in ("delta-1-2", "delta-2-3", "delta-3-4"):
        engine.apply_delta(c.blob(d))
    fresh = ReadStateEngine.from_snapshot(c.blob("snapshot-4"))
    assert engine.checksum() == fresh.checksum() or engine.checksum().value == fresh.checksum().value
    assert engine.current_tag == fresh.current_tag
    for t in ("Movie", "Review"):
        assert deep_dump(engine, t) == deep_dump(fresh, t)
