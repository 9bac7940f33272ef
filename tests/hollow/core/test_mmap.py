"""Zero-copy loading from a mapped file, and copy-on-write of only the shards a delta changes."""

from __future__ import annotations

import mmap
from pathlib import Path

from hollow.golden_fixtures import chain
from loosely.hollow.core import ReadStateEngine, dump_state


def _in_map(buf: object) -> bool:
    return isinstance(buf, memoryview) and isinstance(buf.obj, mmap.mmap)


def test_snapshot_from_a_file_is_used_in_place(tmp_path: Path) -> None:
    c = chain("rich")
    (tmp_path / "snap").write_bytes(c.blob("snapshot-1"))
    engine = ReadStateEngine.from_file(tmp_path / "snap")
    shards = [s for t in engine.types() for s in t.shards]
    assert shards and all(_in_map(s.fixed) for s in shards)
    assert dump_state(engine) == dump_state(ReadStateEngine.from_snapshot(c.blob("snapshot-1")))


def test_delta_copies_only_the_shards_it_changes(tmp_path: Path) -> None:
    c = chain("rich")
    (tmp_path / "snap").write_bytes(c.blob("snapshot-1"))
    engine = ReadStateEngine.from_file(tmp_path / "snap")
    event = engine.apply_delta(c.blob("delta-1-2"))
    changed = {name for name, ch in event.changes.items() if ch.added.size or ch.removed.size}
    kept = copied = 0
    for t in engine.types():
        n = t.num_shards
        for i, shard in enumerate(t.shards):
            added_here = t.name in event.changes and bool((event.changes[t.name].added % n == i).any())
            if t.name not in changed:
                assert _in_map(shard.fixed), f"{t.name} is not in the delta but was copied"
            if added_here:
                assert not _in_map(shard.fixed), f"{t.name} shard {i} has additions but was not rebuilt"
                copied += 1
            elif _in_map(shard.fixed):
                kept += 1
    assert kept and copied
    # and the result is the same as applying the delta to a state read from bytes
    fresh = ReadStateEngine.from_snapshot(c.blob("snapshot-1"))
    fresh.apply_delta(c.blob("delta-1-2"))
    assert dump_state(engine) == dump_state(fresh)
