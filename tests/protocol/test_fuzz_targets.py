"""Every atheris target in fuzz/ runs a bounded, seeded campaign in the suite; a crash fails the test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"


@pytest.mark.parametrize("target", sorted(p.name for p in FUZZ.glob("fuzz_*.py")))
def test_fuzz_target_bounded_run(target: str, tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(FUZZ / target), "-runs=5000", "-seed=1", f"-artifact_prefix={tmp_path}/"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done 5000 runs" in r.stderr
