"""What a benchmark needs from the machine, checked before it starts any server.

A benchmark that finds a tool or an optional package missing half-way through ends in a traceback after minutes of
set-up; the repository's rule for bad input is one line and no traceback. These checks run first and either stop
the benchmark with that one line or, through ``importable``, let it leave out the one side that cannot run.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

KCAT = "the baseline is Debian's kcat (scripts/bootstrap installs it)"
KCAT_AND_KAFKA = "the clients are Debian's kcat and Apache Kafka runs on Java 17+ (scripts/bootstrap installs both)"


def require_commands(*names: str, why: str) -> None:
    """Exit with one line naming every command of ``names`` that is not on PATH."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise SystemExit(f"{' and '.join(missing)} not on PATH: {why}")


def importable(module: str, python: str = sys.executable) -> bool:
    """Whether ``python`` (this interpreter, or another virtualenv's) can import ``module``."""
    if python == sys.executable:
        return importlib.util.find_spec(module) is not None
    try:
        done = subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def require_modules(*modules: str, why: str) -> None:
    """Exit with one line naming every module of ``modules`` this interpreter cannot import."""
    missing = [m for m in modules if not importable(m)]
    if missing:
        raise SystemExit(f"Python package {' and '.join(missing)} not installed: {why}")


def postgres_bin(why: str) -> Path:
    """The directory of PostgreSQL's server programs (``initdb``, ``pg_ctl``): Debian's newest under
    /usr/lib/postgresql, else the one on PATH; exits with one line when there is none."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    on_path = shutil.which("initdb")
    initdb = found[-1] if found else (Path(on_path).resolve() if on_path else None)
    if initdb is None or not (initdb.parent / "pg_ctl").exists():
        raise SystemExit(f"PostgreSQL's initdb and pg_ctl not found (Debian postgresql): {why}")
    return initdb.parent
