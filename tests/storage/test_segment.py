"""Segment.append asserts on both sides of its write: before, that the batches tile the data with rising offsets;
after, that the file grew by exactly the data (STYLE.md: durable paths assert twice)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loosely.protocol.records import read_header, rewrite_base_offset
from loosely.storage.fs import OsFileSystem
from loosely.storage.segment import Segment

from ._helpers import batch


def segment(tmp_path: Path, base_offset: int = 0) -> Segment:
    return Segment(OsFileSystem(), str(tmp_path), base_offset, index_interval_bytes=1, index_bytes_max=1 << 20,
                   now_ms=0)


def at(offset: int, *values: bytes) -> bytes:
    data = bytearray(batch(*values))
    rewrite_base_offset(data, 0, offset, 0)
    return bytes(data)


def test_contiguous_batches_append_and_index(tmp_path: Path) -> None:
    seg = segment(tmp_path)
    one, two = at(0, b"a", b"b"), at(2, b"c")
    seg.append(one + two, [(0, read_header(one)), (len(one), read_header(two))])
    assert (seg.next_offset, seg.size, len(seg.offset_index)) == (3, len(one) + len(two), 2)
    seg.close()


@pytest.mark.parametrize(
    "case", ["offset behind the segment", "offsets going back", "position gap", "data longer than the batches"]
)
def test_an_append_that_does_not_describe_its_data_writes_nothing(tmp_path: Path, case: str) -> None:
    seg = segment(tmp_path)
    first = at(0, b"a", b"b")
    seg.append(first, [(0, read_header(first))])
    size = seg.size
    one, two = at(2, b"c"), at(3, b"d")
    batches = [(0, read_header(one)), (len(one), read_header(two))]
    data = one + two
    if case == "offset behind the segment":
        one = at(1, b"c")
        data, batches = one + two, [(0, read_header(one)), (len(one), read_header(two))]
    elif case == "offsets going back":
        two = at(2, b"d")
        data, batches = one + two, [(0, read_header(one)), (len(one), read_header(two))]
    elif case == "position gap":
        batches = [(0, read_header(one)), (len(one) + 1, read_header(two))]
    else:
        data += b"\0"
    with pytest.raises(AssertionError):
        seg.append(data, batches)
    assert (seg.size, seg.next_offset) == (size, 2)
    seg.close()


def test_offsets_may_jump_forward_as_after_compaction(tmp_path: Path) -> None:
    seg = segment(tmp_path)
    one, two = at(0, b"a"), at(5, b"b")
    seg.append(one + two, [(0, read_header(one)), (len(one), read_header(two))])
    assert seg.next_offset == 6
    seg.close()
