"""Compile and run the Java interop program (``interop/hollow``) against Java Hollow from Maven Central.

Used by ``tests/compat/hollow`` and by ``golden/regenerate.py``.  The jars come from ``$LOOSELY_JARS_DIR``
(exported by ``scripts/test``) or, when that is unset, from ``interop/fetch-jars``.  Nothing here skips: a
missing JDK or jar is an error, because the interop suite is part of the proof.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / "interop" / "hollow"
TIMEOUT_S = 600


class JavaError(RuntimeError):
    pass


def jars_dir() -> Path:
    env = os.environ.get("LOOSELY_JARS_DIR")
    if env:
        return Path(env)
    out = subprocess.run([str(REPO / "interop" / "fetch-jars")], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def hollow_jar() -> Path:
    jars = sorted(jars_dir().glob("hollow-*.jar"))
    if not jars:
        raise JavaError(f"no hollow-*.jar in {jars_dir()}; run interop/fetch-jars")
    return jars[-1]


@dataclass(frozen=True)
class Java:
    """A compiled copy of the interop program."""

    classes: Path
    jar: Path

    def run(self, main: str, *args: str | os.PathLike[str]) -> str:
        cmd = ["java", "-Xss8m", "-cp", f"{self.classes}{os.pathsep}{self.jar}", main, *map(str, args)]
        proc = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S, check=False)
        if proc.returncode != 0:
            raise JavaError(f"{' '.join(cmd)} failed:\n{proc.stderr.decode(errors='replace')[-4000:]}")
        return proc.stdout.decode("utf-8")

    def interop(self, *args: str | os.PathLike[str]) -> str:
        return self.run("HollowInterop", *args)


def compile_java(into: Path | None = None) -> Java:
    for tool in ("javac", "java"):
        if shutil.which(tool) is None:
            raise JavaError(f"{tool} is not on PATH; the Hollow interop suite needs a JDK (17+)")
    jar = hollow_jar()
    classes = Path(tempfile.mkdtemp(prefix="hollow-interop-")) if into is None else into
    sources = sorted(str(p) for p in SOURCES.glob("*.java"))
    cmd = ["javac", "-nowarn", "-encoding", "UTF-8", "-cp", str(jar), "-d", str(classes), *sources]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise JavaError(f"javac failed:\n{proc.stderr}")
    return Java(classes, jar)


def split_ops(output: str) -> list[tuple[str, str]]:
    """Split ``dump``/``deep`` output into ``(op, text)`` per ``=== op`` marker."""
    result: list[tuple[str, str]] = []
    for line in output.splitlines(keepends=True):
        if line.startswith("=== "):
            result.append((line[4:].strip(), ""))
        else:
            op, text = result[-1]
            result[-1] = (op, text + line)
    return result
