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


def _resident_kib(path: Path) -> int:
    """Resident KiB of this process's mappings of ``path`` (Linux /proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                inside = len(fields) >= 6 and fields[5] == str(path)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1])
    return total


def test_a_delta_gives_back_the_mapped_pages_of_the_shards_it_rebuilt(tmp_path: Path) -> None:
    from loosely.hollow.core import WriteStateEngine, parse_schemas

    w = WriteStateEngine(parse_schemas("Item @PrimaryKey(id) { long id; string name; }"))
    for i in range(40_000):
        w.add_object("Item", {"id": i, "name": f"a name long enough to fill pages {i}"})
    path = tmp_path / "snap"
    path.write_bytes(w.write_snapshot())
    w.prepare_for_next_cycle()
    for i in range(40_100):
        w.add_object("Item", {"id": i, "name": f"a name long enough to fill pages {i}"})
    engine = ReadStateEngine.from_file(path)
    engine.checksum()  # every page of the file read: resident
    old = engine.type("Item").shards[0]
    old_bytes = bytes(old.fixed), bytes(old.extras[1] or b"")
    resident_before = _resident_kib(path)
    engine.apply_delta(w.write_delta())
    assert not _in_map(engine.type("Item").shards[0].fixed)
    assert _resident_kib(path) < resident_before // 4
    # the pages are only dropped from this process's resident set: the old shard still reads the same
    assert (bytes(old.fixed), bytes(old.extras[1] or b"")) == old_bytes
    assert engine.type("Item").view.get(39_999, 1) == "a name long enough to fill pages 39999"
