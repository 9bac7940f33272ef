"""What a view runner imports before it reads. A runner's peak RSS is one of the views' figures (docs/views.md), and
about half of it is the interpreter and its imports: importlib.abc (through it importlib.resources, pathlib,
tempfile and urllib), uuid (platform, libuuid) and random cost a runner 1.7 MiB of its 18 while nothing it does
needs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

UNNEEDED = ("importlib.resources", "pathlib", "tempfile", "urllib.parse", "uuid", "random", "confluent_kafka")


def test_a_runner_on_the_batch_consumer_imports_none_of_the_modules_it_does_not_need() -> None:
    code = ("import json, sys\n"
            "from loosely.views import STRING, Runner, RunnerConfig, SqliteSink, count_by_key, latest_by_key\n"
            "import loosely.clients.batch_consumer\n"
            f"print(json.dumps([m for m in {UNNEEDED!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
