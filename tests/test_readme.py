"""The README's Python snippets run as written, in order, in a fresh directory, and print what their comments say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loosely.testing import free_port

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


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


def test_the_log_section_in_a_fresh_virtualenv(readme_venv: Path, tmp_path: Path) -> None:
    """In a virtualenv with only ``pip install .``, the section's commands as written (the port moved to a free
    one) and every Python snippet with that environment's interpreter: the package's declared dependencies and
    its compiled parts are enough."""
    section = README.read_text().split("## The log", 1)[1].split("\n## ", 1)[0]
    commands = [line.strip() for line in section.splitlines() if line.startswith("    ") and line.strip()]
    install, broker, produce, consume = commands[:4]
    assert install.startswith("pip install .") and broker.startswith("loosely broker --data-dir ./data")
    venv = readme_venv
    port = str(free_port())
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": ""}
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {broker.split('#')[0].strip()} --listen 127.0.0.1:{port}"],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None and b"listening" in proc.stdout.readline()
        script = "set -euo pipefail\n" + "\n".join(c.replace("localhost:9092", f"127.0.0.1:{port}")
                                                  for c in (produce, consume))
        r = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=300,
                           check=False)
        assert r.returncode == 0, r.stderr[-3000:]
        lines = r.stdout.splitlines()
        assert len(lines) == 100_000 and lines[0] == '{"id":"1", value: "bar"}', lines[:3]
    finally:
        proc.terminate()
        proc.wait(30)
    for block in BLOCKS:
        r = subprocess.run([str(venv / "bin" / "python"), "-c", block], cwd=work, env=env, capture_output=True,
                           text=True, timeout=120, check=False)
        assert r.returncode == 0, r.stderr[-3000:]
        assert r.stdout.splitlines() == promised(block)
