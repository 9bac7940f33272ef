"""Fixtures of the Hollow interoperability suite: the Java program compiled once per session.

These tests need a JDK and the Maven jars (``scripts/test`` provides both); they fail, never skip, without.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The shared helpers live in tests/hollow (package ``hollow``).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hollow.javarun import Java, compile_java


@pytest.fixture(scope="session")
def java(tmp_path_factory: pytest.TempPathFactory) -> Java:
    return compile_java(tmp_path_factory.mktemp("hollow-interop-classes"))
