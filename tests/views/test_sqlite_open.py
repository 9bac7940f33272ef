"""Opening a new SQLite view file while another connection switches it to WAL mode waits, as any lock does.

A new file is not in WAL mode yet; the first openers switch it together. SQLite refuses one side of that race at
once ("database is locked", without waiting the busy timeout), which once stopped a `views run --serve` started
beside another runner on the same new file (tests/compat/test_views_lifecycle.py, seen once in CI). Two threads
opening one new file hit it in about 1 round of 30 here, too rarely for a test; this one holds the lock the
other side of the race holds, so the refusal comes every time."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from loosely.views import SinkError, SqliteSink


def test_a_sink_waits_its_busy_timeout_for_a_file_another_connection_is_switching(tmp_path: Path) -> None:
    path = str(tmp_path / "views.db")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the write lock of a new file in rollback mode, as a switch to WAL holds it
    other.execute("CREATE TABLE t (a)")
    t0 = time.monotonic()
    with pytest.raises(SinkError, match="database is locked"):
        SqliteSink(path, busy_timeout_ms=300)
    waited_s = time.monotonic() - t0
    assert waited_s >= 0.3, f"refused after {waited_s:.3f} s, not after its busy timeout"
    other.execute("COMMIT")
    other.close()
    sink = SqliteSink(path)
    assert sink._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    sink.close()

