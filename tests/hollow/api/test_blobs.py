"""Blob names (Java's), the whole-blob digest, and the checks a consumer runs before loading a blob."""

from __future__ import annotations

import pytest

from loosely.hollow.api import BlobIntegrityError, BlobRef, BlobType, Version
from loosely.hollow.api._blobs import (
    DIGEST_TAG,
    add_digest,
    check_blob,
    parse_blob_name,
    pick_snapshot,
    pick_transition,
)
from loosely.hollow.core import ReadStateEngine, WriteStateEngine, dump_state, parse_blob_header, parse_schemas

V = Version


def _snapshot(version: int = 5) -> bytes:
    w = WriteStateEngine(parse_schemas("Movie @PrimaryKey(id) { int id; string title; }"))
    w.add_header_tag("hollow.blob.to.version", str(version))
    for i in range(50):
        w.add_object("Movie", {"id": i, "title": f"movie {i}"})
    return w.write_snapshot()


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        (BlobRef.snapshot(V(20250101120000001)), "snapshot-20250101120000001"),
        (BlobRef.delta(V(1), V(2)), "delta-1-2"),
        (BlobRef.reverse_delta(V(2), V(1)), "reversedelta-2-1"),
        (BlobRef.header(V(-3)), "header--3"),
    ],
)
def test_names_are_javas_and_parse_back(ref: BlobRef, name: str) -> None:
    assert ref.name == name
    assert parse_blob_name(name) == ref


@pytest.mark.parametrize(
    "name",
    ["announced.version", ".snapshot-1.tmp-9-ab", "snapshot_part-1", "delta-2-1", "reversedelta-1-2", "delta-1",
     "snapshot-99999999999999999999", "snapshot-1x", "header-"],
)
def test_other_files_are_not_blobs(name: str) -> None:
    assert parse_blob_name(name) is None


def test_refs_refuse_impossible_transitions() -> None:
    with pytest.raises(ValueError, match="forward"):
        BlobRef.delta(V(2), V(2))
    with pytest.raises(ValueError, match="back"):
        BlobRef.reverse_delta(V(1), V(2))
    with pytest.raises(ValueError, match="from_version"):
        BlobRef(BlobType.DELTA, V(2))
    with pytest.raises(ValueError, match="64-bit"):
        BlobRef.snapshot(V(1 << 63))


def test_selection_rules() -> None:
    refs = [BlobRef.snapshot(V(10)), BlobRef.snapshot(V(30)), BlobRef.delta(V(10), V(20)), BlobRef.delta(V(10), V(25)),
            BlobRef.delta(V(25), V(30)), BlobRef.reverse_delta(V(30), V(25))]
    assert pick_snapshot(refs, V(29)) == BlobRef.snapshot(V(10))
    assert pick_snapshot(refs, V(30)) == BlobRef.snapshot(V(30))
    assert pick_snapshot(refs, V(9)) is None
    # a failed cycle's orphan (10 -> 20) next to the cycle that succeeded (10 -> 25): the furthest wins
    assert pick_transition(refs, BlobType.DELTA, V(10)) == BlobRef.delta(V(10), V(25))
    assert pick_transition(refs, BlobType.REVERSE_DELTA, V(30)) == BlobRef.reverse_delta(V(30), V(25))
    assert pick_transition(refs, BlobType.DELTA, V(30)) is None


def test_digest_is_a_header_tag_and_leaves_the_records_alone() -> None:
    plain = _snapshot()
    tagged = add_digest(plain)
    header, _ = parse_blob_header(tagged)
    assert len(header.tags[DIGEST_TAG]) == 8
    assert dump_state(ReadStateEngine.from_snapshot(tagged)).replace(f"HEADER {DIGEST_TAG} ", "X") != ""
    a, b = ReadStateEngine.from_snapshot(plain), ReadStateEngine.from_snapshot(tagged)
    assert a.checksum().value == b.checksum().value
    assert check_blob(BlobRef.snapshot(V(5)), tagged)[DIGEST_TAG] == header.tags[DIGEST_TAG]


def test_every_flipped_byte_is_refused_header_included() -> None:
    tagged = add_digest(_snapshot())
    for pos in range(len(tagged)):
        bad = bytearray(tagged)
        bad[pos] ^= 0x10
        with pytest.raises(BlobIntegrityError):
            check_blob(BlobRef.snapshot(V(5)), bytes(bad), require_digest=True)


def test_truncated_blobs_and_wrong_versions_are_refused() -> None:
    tagged = add_digest(_snapshot())
    _, body = parse_blob_header(tagged)
    with pytest.raises(BlobIntegrityError, match="unreadable header"):
        check_blob(BlobRef.snapshot(V(5)), tagged[: body - 3])
    with pytest.raises(BlobIntegrityError, match="CRC-32C"):
        check_blob(BlobRef.snapshot(V(5)), tagged[:-1])
    with pytest.raises(BlobIntegrityError, match="the name says 6"):
        check_blob(BlobRef.snapshot(V(6)), tagged)


def test_a_blob_without_digest_passes_unless_one_is_required() -> None:
    plain = _snapshot()
    assert DIGEST_TAG not in check_blob(BlobRef.snapshot(V(5)), plain)
    with pytest.raises(BlobIntegrityError, match=r"no loosely\.blob\.crc32c"):
        check_blob(BlobRef.snapshot(V(5)), plain, require_digest=True)
