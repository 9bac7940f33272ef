"""Header tags come out in Java's ConcurrentHashMap order; the oracle is the order in Java-written blobs."""

from __future__ import annotations

import pytest

from hollow.golden_fixtures import chain
from hollow.golden_specs import SPEC_SEEDS
from hollow.spec import unhex_string
from loosely.hollow.core._blob import read_blob_header
from loosely.hollow.core._encoding import Cursor
from loosely.hollow.core._java_order import JavaConcurrentHashMap


def _tag_order(blob: bytes) -> list[str]:
    return list(read_blob_header(Cursor(memoryview(blob))).tags)


@pytest.mark.parametrize("seed", SPEC_SEEDS)
def test_emulated_order_matches_java_blobs(seed: int) -> None:
    c = chain(f"spec-{seed}")
    current = JavaConcurrentHashMap()
    previous = JavaConcurrentHashMap()
    cycle = 0
    for line in (c.directory / "spec.txt").read_text().splitlines():
        tok = line.split(" ")
        if tok[0] == "HEADER":
            current.put(unhex_string(tok[1]), unhex_string(tok[2]))
        elif tok[0] == "CYCLE" and cycle:
            previous.clear()
            previous.put_all(current)
        elif tok[0] == "WRITE":
            cycle += 1
            assert _tag_order(c.blob(f"snapshot-{cycle}")) == list(current)
            if cycle > 1:
                assert _tag_order(c.blob(f"delta-{cycle - 1}-{cycle}")) == list(current)
                assert _tag_order(c.blob(f"reversedelta-{cycle}-{cycle - 1}")) == list(previous)
        if tok[0] == "CYCLE":
            cycle = cycle if cycle else 0


def test_resize_reverses_the_moved_prefix() -> None:
    """A doubling keeps the last run of each bin in order and prepends the nodes before it."""
    m = JavaConcurrentHashMap()
    keys = [f"k{i}" for i in range(40)]
    for k in keys:
        m.put(k, k)
    assert sorted(m) == sorted(keys)
    assert len(m) == 40
    m.put("k3", "again")
    assert len(m) == 40 and m.get("k3") == "again"
