"""Compile and run the Java programs under interop/ against the Maven Central jars."""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def jars_dir() -> Path:
    env = os.environ.get("LOOSELY_JARS_DIR")
    if env:
        return Path(env)
    out = subprocess.run([str(ROOT / "interop" / "fetch-jars")], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


@functools.cache
def compiled(program_dir: str) -> Path:
    out = Path(tempfile.mkdtemp(prefix="loosely-java-"))
    sources = sorted(str(p) for p in (ROOT / program_dir).glob("*.java"))
    subprocess.run(["javac", "-d", str(out), "-cp", f"{jars_dir()}/*", *sources], check=True)
    return out


def run_java(
    program_dir: str, main: str, *args: str, timeout: float = 120, jars: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``jars``: run on another release's jars (e.g. the newest Kafka's broker jars, which hold its Java clients);
    the programs are compiled once, against the default release, and use only APIs both releases have."""
    cp = f"{compiled(program_dir)}:{jars or jars_dir()}/*"
    return subprocess.run(
        # C1 only and the serial collector: the probes live a few seconds, and on a shared two-core machine the
        # C2 compiler threads and the parallel collector's workers cost a quarter of their CPU for nothing
        ["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", cp, main, *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
