"""Bad input never escapes as anything but a HollowBlobError, and never damages the loaded state.

Invariant (fuzzed with hypothesis over Java-written blobs): loading a snapshot, applying a delta, computing
the checksum and reading every record either work or raise ``HollowBlobError``; a delta that fails leaves the
state exactly as it was (same dump, same checksum, same tag).
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hollow.golden_fixtures import chain
from loosely.hollow.core import (
    HollowBlobError,
    HollowBlobTruncatedError,
    HollowDeltaOriginError,
    HollowUnsupportedBlobError,
    ListSchema,
    MapSchema,
    ObjectSchema,
    ReadStateEngine,
    SetSchema,
    WriteStateEngine,
    dump_state,
    parse_schemas,
)

SMALL = chain("spec-8")
RICH = chain("rich")


def _read_everything(engine: ReadStateEngine) -> None:
    """Read every record and every record it references (a loaded state has no dangling reference)."""
    engine.checksum()
    for t in engine.types():
        schema = t.schema
        for o in t.populated_ordinals().tolist():
            refs: list[tuple[str, int | None]]
            if isinstance(schema, ObjectSchema):
                record = t.view.record(o)
                refs = [(f.referenced_type, record[i]) for i, f in enumerate(schema.fields) if f.referenced_type]  # type: ignore[misc]
            elif isinstance(schema, MapSchema):
                t.view.map_buckets(o)
                refs = [(r, x) for k, v in t.view.entries(o) for r, x in ((schema.key_type, k), (schema.value_type, v))]
            else:
                assert isinstance(schema, (ListSchema, SetSchema))
                refs = [(schema.element_type, e) for e in t.view.elements(o)]
            for target, ordinal in refs:
                if ordinal is not None and engine.has_type(target):
                    assert ordinal <= engine.type(target).max_ordinal, f"{t.name} {o} -> {target} {ordinal}"


@st.composite
def mutations(draw: st.DrawFn, data: bytes) -> bytes:
    blob = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(blob) - 1)))
        if op == "flip" and blob:
            blob[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and blob:
            blob[pos] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF, 0x8F]))
        elif op == "truncate":
            del blob[pos:]
        elif op == "insert":
            blob[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del blob[pos : pos + draw(st.integers(1, 16))]
    return bytes(blob)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.data())
def test_corrupt_snapshot_raises_our_error_or_loads(data: st.DataObject) -> None:
    source = data.draw(st.sampled_from([SMALL.blob("snapshot-2"), SMALL.blob("snapshot-4"), RICH.blob("snapshot-1")]))
    blob = data.draw(mutations(source))
    try:
        engine = ReadStateEngine.from_snapshot(blob)
        _read_everything(engine)
    except HollowBlobError:
        pass


@FUZZ
@given(st.data())
def test_corrupt_delta_raises_our_error_and_keeps_the_state(data: st.DataObject) -> None:
    c = data.draw(st.sampled_from([SMALL, RICH]))
    base, delta = data.draw(st.sampled_from([("snapshot-1", "delta-1-2"), ("snapshot-4", "reversedelta-4-3")]))
    engine = ReadStateEngine.from_snapshot(c.blob(base))
    before = dump_state(engine)
    blob = data.draw(mutations(c.blob(delta)))
    try:
        engine.apply_delta(blob)
    except HollowBlobError:
        assert dump_state(engine) == before
        return
    with contextlib.suppress(HollowBlobError):
        _read_everything(engine)


def test_every_truncation_of_a_snapshot_is_reported_as_truncated() -> None:
    blob = SMALL.blob("snapshot-1")
    for cut in range(0, len(blob), max(1, len(blob) // 400)):
        with pytest.raises(HollowBlobError):
            ReadStateEngine.from_snapshot(blob[:cut])
    with pytest.raises(HollowBlobTruncatedError):
        ReadStateEngine.from_snapshot(blob[:-1])


def test_trailing_bytes_are_rejected() -> None:
    with pytest.raises(HollowBlobError, match="unexpected bytes"):
        ReadStateEngine.from_snapshot(SMALL.blob("snapshot-1") + b"\x00")


def test_not_a_blob() -> None:
    with pytest.raises(HollowBlobError, match="magic"):
        ReadStateEngine.from_snapshot(b"PK\x03\x04" + bytes(40))


def test_delta_for_another_state_is_refused_and_changes_nothing() -> None:
    engine = ReadStateEngine.from_snapshot(RICH.blob("snapshot-1"))
    before = dump_state(engine)
    with pytest.raises(HollowDeltaOriginError):
        engine.apply_delta(RICH.blob("delta-2-3"))
    with pytest.raises(HollowDeltaOriginError):
        engine.apply_delta(RICH.blob("reversedelta-2-1"))
    assert dump_state(engine) == before
    engine.apply_delta(RICH.blob("delta-1-2"))  # the right one still applies afterwards
    with pytest.raises(HollowDeltaOriginError):
        engine.apply_delta(RICH.blob("delta-1-2"))  # ... but only once


def test_incompatible_field_type_change_in_a_delta_is_refused() -> None:
    old = WriteStateEngine(parse_schemas("A { int x; string y; }"))
    old.add_object("A", {"x": 1, "y": "one"})
    engine = ReadStateEngine.from_snapshot(old.write_snapshot())
    before = dump_state(engine)
    new = WriteStateEngine(parse_schemas("A { string x; string y; }"))
    new.override_previous_tag(engine.current_tag)
    new.add_object("A", {"x": "1", "y": "one"})
    new.write_snapshot()
    with pytest.raises(HollowUnsupportedBlobError, match="field x changed"):
        engine.apply_delta(new.write_delta())
    assert dump_state(engine) == before


def test_mmapped_file_stays_readable_after_a_failed_delta(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    (tmp_path / "snap").write_bytes(RICH.blob("snapshot-1"))
    engine = ReadStateEngine.from_file(tmp_path / "snap")
    before = dump_state(engine)
    broken = bytearray(RICH.blob("delta-1-2"))
    broken[len(broken) // 2 :] = bytes(len(broken) - len(broken) // 2)
    with pytest.raises(HollowBlobError):
        engine.apply_delta(bytes(broken))
    assert dump_state(engine) == before


REFS = parse_schemas("""
Movie @PrimaryKey(id) { int id; String title; }
String { string value; }
ListOfString List<String>;
SetOfString Set<String>;
MapOfStringToString Map<String, String>;
Holder { ListOfString l; SetOfString s; MapOfStringToString m; }
""")


def _dangling(w: WriteStateEngine, where: str) -> None:
    """A record of ``where`` that references String ordinal 9 (the state holds Strings 0 and 1)."""
    if where == "field":
        w.add_object("Movie", {"id": 9, "title": 9})
    elif where == "element":
        w.add_object("Holder", {"l": w.add_list("ListOfString", [0, 9])})
    elif where == "set element":
        w.add_object("Holder", {"s": w.add_set("SetOfString", [1, 9])})
    else:
        pair = (0, 9) if where == "map value" else (9, 0)
        w.add_object("Holder", {"m": w.add_map("MapOfStringToString", [pair])})


def _two_strings(w: WriteStateEngine) -> None:
    a, b = w.add_object("String", {"value": "a"}), w.add_object("String", {"value": "b"})
    w.add_object("Movie", {"id": 1, "title": a})
    w.add_object("Holder", {"l": w.add_list("ListOfString", [a]), "s": w.add_set("SetOfString", [b]),
                            "m": w.add_map("MapOfStringToString", [(a, b)])})


WHERE = ["field", "element", "set element", "map key", "map value"]


@pytest.mark.parametrize("where", WHERE)
def test_a_snapshot_with_a_dangling_reference_is_refused(where: str) -> None:
    w = WriteStateEngine(REFS)
    _two_strings(w)
    _dangling(w, where)
    with pytest.raises(HollowBlobError, match="references String ordinal 9, past that type's max ordinal 1"):
        ReadStateEngine.from_snapshot(w.write_snapshot())


@pytest.mark.parametrize("where", WHERE)
def test_a_delta_adding_a_dangling_reference_is_refused_and_changes_nothing(where: str) -> None:
    w = WriteStateEngine(REFS)
    _two_strings(w)
    engine = ReadStateEngine.from_snapshot(w.write_snapshot())
    before = dump_state(engine)
    w.prepare_for_next_cycle()
    _two_strings(w)
    _dangling(w, where)
    w.write_snapshot()
    with pytest.raises(HollowBlobError, match="references String ordinal 9"):
        engine.apply_delta(w.write_delta())
    assert dump_state(engine) == before


def test_a_delta_that_drops_records_others_still_reference_is_refused() -> None:
    """Movie 1 keeps pointing at String 5 while the Strings go: readable as a ghost for one version (as in
    Java), refused when the next delta shrinks String below it (Movie itself unchanged: it is scanned again)."""
    w = WriteStateEngine(REFS)
    strings = [w.add_object("String", {"value": str(i)}) for i in range(6)]
    w.add_object("Movie", {"id": 1, "title": strings[5]})
    engine = ReadStateEngine.from_snapshot(w.write_snapshot())
    for cycle in (2, 3):
        w.prepare_for_next_cycle()
        for value in ("0", "new")[: cycle - 1]:
            w.add_object("String", {"value": value})
        w.add_object("Movie", {"id": 1, "title": strings[5]})
        w.write_snapshot()
        delta = w.write_delta()
        if cycle == 2:
            engine.apply_delta(delta)
            assert engine.type("String").view.get(5, 0) == "5"  # a ghost
    before = dump_state(engine)
    with pytest.raises(HollowBlobError, match="Movie: field title references String ordinal 5, past that type's max"):
        engine.apply_delta(delta)
    assert dump_state(engine) == before


@pytest.mark.parametrize("length", [6, 64, 70, 71, 128, 200])
def test_populated_bits_past_the_max_ordinal_are_refused(length: int) -> None:
    """A snapshot's populated-ordinals bitset (big-endian longs) is read to exactly its type's record count; a
    bit set past the max ordinal, in the same long or a later one, refuses the blob."""
    import numpy as np

    from loosely.hollow.core._read_state import _bits_from_words

    ordinals = [0, 5, 63, 64, 70]
    words = np.zeros(2, dtype=">u8")
    for o in ordinals:
        words[o >> 6] |= np.uint64(1 << (o & 63))
    if length <= max(ordinals):
        with pytest.raises(HollowBlobError, match="beyond the type's max ordinal"):
            _bits_from_words(words.tobytes(), length, "T")
        return
    bits = _bits_from_words(words.tobytes(), length, "T")
    assert bits.dtype == np.bool_ and bits.size == length
    assert np.flatnonzero(bits).tolist() == ordinals
