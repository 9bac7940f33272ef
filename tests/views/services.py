"""Real services for the views' sink tests, each started on 127.0.0.1 in a temporary directory and stopped after.

Import the fixtures into a test module (``from views.services import postgres``). Each one fails the test with the
service's own log when it cannot start: a missing server is a broken environment, not a reason to skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loosely.testing import free_port


def wait_for(check: Callable[[], bool], what: str, log: Path | None = None, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{what} did not start in {timeout_s}s\n{tail}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return bool(200 <= r.status < 300)


@dataclass(frozen=True)
class Postgres:
    url: str
    data_dir: Path


def _pg_bin(tool: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"))
    assert found, f"PostgreSQL's {tool} is not installed (Debian postgresql)"
    return str(found[-1])


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    # not under pytest's basetemp: that is private to root (0700) and the server runs as the postgres user
    d = Path(tempfile.mkdtemp(prefix="loosely-pg-"))
    data = d / "data"
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(d, "postgres")
    r = subprocess.run([*as_postgres, _pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    log = d / "pg.log"
    subprocess.run(
        [*as_postgres, _pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
         f"-h 127.0.0.1 -p {port} -k {d} -c fsync=off -c max_connections=50", "start"],
        check=True, capture_output=True,
    )
    try:
        yield Postgres(f"postgresql://postgres@127.0.0.1:{port}/postgres", data)
    finally:
        subprocess.run([*as_postgres, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       check=False, capture_output=True)
        shutil.rmtree(d, ignore_errors=True)
