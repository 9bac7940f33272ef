"""Property tests: random datasets over random cycles, written by the Python engine and read back.

For every cycle N: reading snapshot N gives back exactly the records added; snapshot N-1 + delta N-1->N
equals snapshot N (records, populated ordinals, checksum, tag); the reverse delta brings it back to N-1.
"""

from __future__ import annotations

import math
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loosely.hollow.core import (
    ObjectSchema,
    ReadStateEngine,
    WriteStateEngine,
    deep_dump,
    parse_schemas,
)

SCHEMAS = parse_schemas(
    """
    Tag { string name; int weight; }
    ListOfTag List<Tag>;
    SetOfTag Set<Tag> @HashKey(name);
    MapOfTagToTag Map<Tag,Tag>;
    Item @PrimaryKey(id) {
        int id; long l; float f; double d; boolean b; string s; bytes raw;
        Tag tag; ListOfTag tags; SetOfTag tagset; MapOfTagToTag pairs;
    }
    """
)
ITEM = next(s for s in SCHEMAS if s.name == "Item")
assert isinstance(ITEM, ObjectSchema)

texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
tags = st.tuples(texts, st.integers(-(2**31) + 1, 2**31 - 1))
items = st.fixed_dictionaries(
    {
        "l": st.none() | st.integers(-(2**63) + 1, 2**63 - 1),
        "f": st.none() | st.floats(width=32),
        "d": st.none() | st.floats(),
        "b": st.none() | st.booleans(),
        "s": st.none() | texts,
        "raw": st.none() | st.binary(max_size=10),
        "tag": st.none() | tags,
        "tags": st.none() | st.lists(tags, max_size=4),
        "tagset": st.none() | st.lists(tags, max_size=4, unique_by=lambda t: t[0]),
        "pairs": st.none() | st.lists(st.tuples(tags, tags), max_size=3, unique_by=lambda p: p[0]),
    }
)
cycles = st.lists(st.dictionaries(st.integers(0, 40), items, max_size=25), min_size=1, max_size=4)


def _add(engine: WriteStateEngine, item_id: int, item: dict[str, object]) -> int:
    def tag(t: tuple[str, int]) -> int:
        return engine.add_object("Tag", {"name": t[0], "weight": t[1]})

    values: dict[str, object] = {k: item[k] for k in ("l", "f", "d", "b", "s", "raw")}
    values["id"] = item_id
    values["tag"] = None if item["tag"] is None else tag(item["tag"])  # type: ignore[arg-type]
    values["tags"] = None if item["tags"] is None else engine.add_list("ListOfTag", [tag(t) for t in item["tags"]])  # type: ignore[attr-defined]
    values["tagset"] = None if item["tagset"] is None else engine.add_set("SetOfTag", [tag(t) for t in item["tagset"]])  # type: ignore[attr-defined]
    pairs = item["pairs"]
    values["pairs"] = None if pairs is None else engine.add_map("MapOfTagToTag", [(tag(k), tag(v)) for k, v in pairs])  # type: ignore[attr-defined]
    return engine.add_object("Item", values)  # type: ignore[arg-type]


def _same_float(read: object, written: object, width: int) -> bool:
    if written is None or read is None:
        return read is written
    assert isinstance(read, float) and isinstance(written, float)
    if math.isnan(written):
        return math.isnan(read)
    fmt = ">f" if width == 32 else ">d"
    return struct.pack(fmt, read) == struct.pack(fmt, written)


def _assert_same_data(a: ReadStateEngine, b: ReadStateEngine) -> None:
    assert a.checksum() == b.checksum() or a.checksum().value == b.checksum().value
    assert a.current_tag == b.current_tag
    for t in a.types():
        assert list(t.populated_ordinals()) == list(b.type(t.name).populated_ordinals())
        assert deep_dump(a, t.name) == deep_dump(b, t.name)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cycles)
def test_snapshots_deltas_and_reverse_deltas_agree(states: list[dict[int, dict[str, object]]]) -> None:
    engine = WriteStateEngine(SCHEMAS, target_max_type_shard_size=64)
    snapshots: list[bytes] = []
    consumer: ReadStateEngine | None = None
    for n, state in enumerate(states):
        if n:
            engine.prepare_for_next_cycle()
        ordinals = {item_id: _add(engine, item_id, item) for item_id, item in state.items()}
        snapshot = engine.write_snapshot()
        fresh = ReadStateEngine.from_snapshot(snapshot)
        for item_id, item in state.items():
            record = dict(zip(ITEM.field_names(), fresh.type("Item").view.record(ordinals[item_id]), strict=True))
            assert record["id"] == item_id
            for k in ("l", "b", "s", "raw"):
                assert record[k] == item[k], k
            assert _same_float(record["f"], item["f"], 32)
            assert _same_float(record["d"], item["d"], 64)
        assert fresh.type("Item").record_count() == len(state)
        if consumer is None:
            consumer = fresh
        else:
            delta, reverse = engine.write_delta(), engine.write_reverse_delta()
            consumer.apply_delta(delta)
            _assert_same_data(consumer, fresh)
            back = ReadStateEngine.from_snapshot(snapshot)
            back.apply_delta(reverse)
            _assert_same_data(back, ReadStateEngine.from_snapshot(snapshots[-1]))
        snapshots.append(snapshot)
