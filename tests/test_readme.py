"""The README's Python snippets run as written, in order, in a fresh directory, and print what their comments say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
LOOSELY = str(Path(sys.executable).parent / "loosely")


def promised(block: str) -> list[str]:
    """What a ``print(...)  # shown`` line says it prints: the comment, less any ``(explanation)`` after it."""
    return [line.split("#", 1)[1].strip().split(" (")[0] for line in block.splitlines()
            if line.strip().startswith("print(") and "#" in line]


def test_the_readme_has_its_snippets() -> None:
    assert len(BLOCKS) >= 3
    assert any(promised(b) for b in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_snippet_runs_and_prints_what_it_promises(index: int, tmp_path: Path) -> None:
    block = BLOCKS[index]
    r = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == promised(block)
    if "FilesystemBlobStore(\"movies\")" in block:  # the shell lines after it read the same directory
        dump = subprocess.run([LOOSELY, "hollow", "dump", "movies"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, check=True)
        assert '"title": "Heat"' in dump.stdout
        history = subprocess.run([LOOSELY, "hollow", "history", "movies", "--type", "Movie", "--key", "42"],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True)
        assert '"change": "present"' in history.stdout
