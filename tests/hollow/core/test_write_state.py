"""Write engine behaviour that the Java comparisons do not spell out: cycles, rollback, header blobs."""

from __future__ import annotations

import random

import pytest

from loosely.hollow.core import (
    BlobKind,
    HollowWriteError,
    ReadStateEngine,
    WriteStateEngine,
    parse_schemas,
)
from loosely.hollow.core._blob import read_blob_header
from loosely.hollow.core._encoding import Cursor

SCHEMAS = parse_schemas("Movie @PrimaryKey(id) { int id; string title; }")


def _engine() -> WriteStateEngine:
    return WriteStateEngine(SCHEMAS, rng=random.Random(7))


def test_unchanged_records_keep_their_ordinals_and_freed_ones_are_reused_lowest_first() -> None:
    w = _engine()
    first = [w.add_object("Movie", {"id": i, "title": f"m{i}"}) for i in range(6)]
    assert first == [0, 1, 2, 3, 4, 5]
    w.write_snapshot()
    w.prepare_for_next_cycle()
    # keep 0, 2, 5; drop 1, 3, 4
    kept = [w.add_object("Movie", {"id": i, "title": f"m{i}"}) for i in (0, 2, 5)]
    assert kept == [0, 2, 5]
    w.write_snapshot()
    w.prepare_for_next_cycle()
    again = [w.add_object("Movie", {"id": i, "title": f"m{i}"}) for i in (0, 2, 5)]
    new = [w.add_object("Movie", {"id": 100 + i, "title": "new"}) for i in range(4)]
    assert again == [0, 2, 5]
    assert new == [1, 3, 4, 6]  # the holes first, lowest first, then the next unused ordinal


def test_adding_after_writing_needs_the_next_cycle() -> None:
    w = _engine()
    w.add_object("Movie", {"id": 1, "title": "a"})
    w.write_snapshot()
    with pytest.raises(HollowWriteError, match="prepare_for_next_cycle"):
        w.add_object("Movie", {"id": 2, "title": "b"})


def test_rollback_forgets_the_records_of_the_current_cycle() -> None:
    w = _engine()
    w.add_object("Movie", {"id": 1, "title": "a"})
    snapshot1 = w.write_snapshot()
    w.prepare_for_next_cycle()
    w.add_object("Movie", {"id": 2, "title": "b"})
    w.reset_to_last_prepare_for_next_cycle()
    w.add_object("Movie", {"id": 1, "title": "a"})
    state = ReadStateEngine.from_snapshot(snapshot1)
    state.apply_delta(w.write_delta())
    assert state.type("Movie").record_count() == 1
    assert not w.has_changed_since_last_cycle()


def test_header_blob_carries_the_schemas_and_tags_only() -> None:
    w = _engine()
    w.add_header_tag("source", "unit test")
    w.add_object("Movie", {"id": 1, "title": "a"})
    header = w.write_header()
    cur = Cursor(memoryview(header))
    parsed = read_blob_header(cur)
    assert parsed.schemas == tuple(SCHEMAS)
    assert parsed.tags == {"source": "unit test"}
    assert parsed.destination_tag == w.next_tag
    assert cur.varint() == 1 and cur.remaining == 0


def test_record_values_are_checked() -> None:
    w = _engine()
    with pytest.raises(HollowWriteError, match="reserved for null"):
        w.add_object("Movie", {"id": -(2**31), "title": "x"})
    with pytest.raises(HollowWriteError, match="no fields"):
        w.add_object("Movie", {"id": 1, "name": "x"})
    with pytest.raises(HollowWriteError, match="STRING"):
        w.add_object("Movie", {"id": 1, "title": b"x"})
    with pytest.raises(HollowWriteError, match="not registered"):
        w.add_object("Nope", {})


def test_optional_parts_hold_the_chosen_types() -> None:
    schemas = parse_schemas("A { int x; } B { string s; }")
    w = WriteStateEngine(schemas, rng=random.Random(1))
    w.add_object("A", {"x": 1})
    w.add_object("B", {"s": "b"})
    blob = w.write(BlobKind.SNAPSHOT, parts={"extra": ["B"]})
    main_only = ReadStateEngine.from_snapshot(blob.data)
    assert main_only.type_names() == ["A"]
    both = ReadStateEngine.from_snapshot(blob.data, blob.parts)
    assert sorted(both.type_names()) == ["A", "B"]
    with pytest.raises(Exception, match="does not belong"):
        other = WriteStateEngine(schemas, rng=random.Random(2))
        other.add_object("B", {"s": "b"})
        ReadStateEngine.from_snapshot(blob.data, other.write(BlobKind.SNAPSHOT, parts={"extra": ["B"]}).parts)
