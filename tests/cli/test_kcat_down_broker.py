"""kcat command lines against a broker that is down: the same ``% ERROR:`` lines and exit code as Debian's kcat
1.7.1, within a bounded time, and SIGTERM ends a producer that waits for a broker at once.

The address is a loopback port nothing listens on (connection refused), so every case ends on the client's own
timeouts, never on the test's.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

LOOSELY = [sys.executable, "-m", "loosely.cli.main", "kcat"]
BOUND_S = 20  # kcat's slowest case here is its 5 s metadata timeout
# Interpreter start-up and imports (about 1 s idle; 3-6 s when the suite loads both cores) and librdkafka's
# shutdown, on top of a command's own --timeout.
SLACK_S = 10


@pytest.fixture(scope="module")
def down() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # bound once and released: nothing listens there now
    return f"127.0.0.1:{port}"


_VARIES = re.compile(rb"(?<=\(after )\d+ms|\d+/\d+ (?=brokers are down)")


def errors(stderr: bytes) -> tuple[set[bytes], bytes]:
    """The distinct ``% ERROR`` lines and the last one. librdkafka's timestamped log lines, its connect times, its
    count of brokers down and how often a transport error repeats first vary between runs and versions."""
    lines = [_VARIES.sub(b"", line) for line in stderr.splitlines() if line.startswith(b"% ERROR")]
    return set(lines), lines[-1] if lines else b""


def run(cmd: list[str], args: list[str]) -> tuple[subprocess.CompletedProcess[bytes], float]:
    started = time.monotonic()
    r = subprocess.run([*cmd, *args], input=b"hi\n", capture_output=True, timeout=BOUND_S * 3, check=False)
    return r, time.monotonic() - started


@pytest.mark.parametrize(
    "args",
    [
        ["-P", "-t", "t"],
        ["-P", "-q", "-t", "t"],
        ["-P", "-z", "gzip", "-t", "t"],
        ["-C", "-G", "g", "t"],
        ["-C", "-J", "-G", "g", "t"],
        ["-C", "-m", "1", "-t", "t", "-e"],
        ["-L", "-m", "1"],
        ["-Q", "-m", "1", "-t", "t:0:0"],
    ],
    ids=" ".join,
)
def test_like_kcat_against_a_down_broker(down: str, args: list[str]) -> None:
    k, _ = run(["kcat"], ["-b", down, *args])
    m, elapsed_s = run(LOOSELY, ["-b", down, *args])
    assert m.returncode == k.returncode == 1, (k.stderr, m.stderr)
    assert errors(m.stderr) == errors(k.stderr), (k.stderr, m.stderr)
    assert errors(m.stderr)[1], m.stderr
    assert b"Traceback" not in m.stderr
    assert elapsed_s < BOUND_S


def test_sigterm_ends_a_producer_waiting_for_a_down_broker(down: str) -> None:
    # -E: kcat does not give up when all brokers are down, so only the signal can end it.
    p = subprocess.Popen(
        [*LOOSELY, "-P", "-E", "-q", "-b", down, "-t", "t"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert p.stdin is not None
    p.stdin.write(b"hi\n")
    p.stdin.close()
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(timeout=2)  # still waiting for the broker: -E keeps it running
    started = time.monotonic()
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(timeout=5) == 0
    assert time.monotonic() - started < 5
    assert p.stderr is not None and b"Traceback" not in p.stderr.read()


ADMIN = [sys.executable, "-m", "loosely.cli.main"]


@pytest.mark.parametrize(
    "args",
    [
        ["topics", "list"],
        ["topics", "describe", "t"],
        ["topics", "create", "t"],
        ["topics", "delete", "t"],
        ["groups", "list"],
        ["groups", "describe", "g"],
        ["groups", "reset", "g", "-t", "t", "--to-earliest"],
        ["groups", "delete", "g"],
        ["acls", "list"],
        ["acls", "add", "--allow-principal", "User:a", "--operation", "Read", "--topic", "t"],
        ["acls", "remove", "--allow-principal", "User:a", "--operation", "Read", "--topic", "t"],
    ],
    ids=" ".join,
)
def test_admin_commands_give_up_within_their_timeout(down: str, args: list[str]) -> None:
    r, elapsed_s = run(ADMIN, [*args, "-b", down, "--timeout", "1"])
    assert r.returncode == 1, r.stderr
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loosely: "), lines
    assert elapsed_s < 1 + SLACK_S


def test_views_status_gives_up_within_its_timeout(down: str, tmp_path: Path) -> None:
    from loosely.views import View, open_sink

    sink = open_sink(f"sqlite:///{tmp_path}/views.db")
    sink.open(View("latest", 1, ("the-topic",), lambda r: None))  # type: ignore[arg-type, return-value]
    sink.close()
    r, elapsed_s = run(ADMIN, ["views", "status", "--sink", f"sqlite:///{tmp_path}/views.db", "-b", down,
                               "--timeout", "1"])
    assert r.returncode == 1, r.stderr
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loosely views: "), lines
    assert elapsed_s < 1 + SLACK_S


def test_views_rebuild_gives_up_within_its_timeout(down: str, tmp_path: Path) -> None:
    """A batch job: an unreachable cluster at the start is one line and exit 1, not a progress bar for ever."""
    (tmp_path / "app.py").write_text("from loosely.views import View\nview = View('v', 1, ('t',), lambda r: None)\n")
    started = time.monotonic()
    r = subprocess.run([*ADMIN, "views", "rebuild", "app:view", "--version", "2", "--sink", "sqlite:views.db",
                        "-b", down, "--timeout", "1"], cwd=tmp_path, capture_output=True, timeout=BOUND_S * 3,
                       check=False)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loosely views: "), lines
    assert time.monotonic() - started < 1 + SLACK_S


def test_top_once_against_a_down_metrics_endpoint(down: str) -> None:
    r, elapsed_s = run(ADMIN, ["top", "--metrics", down, "--once"])
    assert r.returncode == 1, r.stderr
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1 and down in lines[0], lines
    assert elapsed_s < 10 + SLACK_S
