"""The Python write engine reproduces, byte for byte, blobs that Java Hollow's write engine wrote.

Each ``golden/spec-*`` fixture holds a write-engine script and the snapshots, deltas, reverse deltas and
optional blob parts Java wrote for it (state tags are fixed by the script).  Equal bytes mean equal ordinal
assignment, field widths, sharding, set/map bucket placement, populated bitsets and header tag order.
"""

from __future__ import annotations

import pytest

from hollow.golden_fixtures import chain
from hollow.golden_specs import SPEC_SEEDS
from hollow.spec import random_spec, run_spec


@pytest.mark.parametrize("seed", SPEC_SEEDS)
def test_python_writes_the_blobs_java_wrote(seed: int) -> None:
    c = chain(f"spec-{seed}")
    spec = (c.directory / "spec.txt").read_text()
    java = c.blobs()
    python = run_spec(spec)
    assert sorted(python) == sorted(java)
    for name in sorted(java):
        assert python[name] == java[name], f"spec-{seed}: {name} differs from Java's"


@pytest.mark.parametrize("seed", SPEC_SEEDS)
def test_fixture_spec_is_what_the_generator_makes(seed: int) -> None:
    """Guards the fixtures against silent drift of the spec generator (regenerate them together)."""
    assert (chain(f"spec-{seed}").directory / "spec.txt").read_text() == random_spec(seed)
