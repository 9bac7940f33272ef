"""docs/tutorial.md, followed literally: its ``sh`` blocks run in order in one bash session (ports moved to free
ones), its ``python file=NAME`` blocks are saved where the text says, and every ``text`` block (what the reader
is told they will see) must appear in what the commands print."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from loosely.testing import free_port

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
FENCE = re.compile(r"```(\w+)([^\n]*)\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str, str]]:
    return [(kind, info.strip(), body) for kind, info, body in FENCE.findall(TUTORIAL.read_text())]


def test_the_tutorial_has_every_kind_of_block() -> None:
    kinds = {k for k, _, _ in blocks()}
    assert {"sh", "python", "text"} <= kinds


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    broker_port, http_port = free_port(), free_port()
    script = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    expected: list[str] = []
    cwd = tmp_path
    for kind, info, body in blocks():
        if kind == "sh":
            script.append(body.replace("9092", str(broker_port)).replace("8080", str(http_port)))
        elif kind == "python":
            name = info.removeprefix("file=")
            assert name != info, f"a python block needs file=NAME: {body[:60]}"
            # the sh blocks before it changed into shop/; files are written where the reader is
            script.append(f"cat > {name} <<'LOOSELY_TUTORIAL_EOF'\n{body}LOOSELY_TUTORIAL_EOF")
        elif kind == "text":
            expected.append(body)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(["bash", "-c", "\n".join(script)], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=240, check=False)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    for text in expected:
        assert text in r.stdout, (text, r.stdout[-3000:])
