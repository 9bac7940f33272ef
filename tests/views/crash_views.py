"""View definitions the crash tests run in separate ``loosely views run`` processes.

The source topic comes from ``LOOSELY_CRASH_TOPIC`` so one module serves every test. The ``combined`` view keeps,
per source key, a counter (``Add``: applying a record twice or skipping one changes it) and the last sequence
number (``Put``: applying out of order changes it).
"""

from __future__ import annotations

import os

from loosely.views import JSON, Add, Change, Put, Record, View, count_by_key


def _topic() -> tuple[str, ...]:
    return (os.environ.get("LOOSELY_CRASH_TOPIC", "crash"),)


def _combined(r: Record[bytes, dict[str, object]]) -> tuple[Change, ...] | None:
    if r.key is None or r.value is None:
        return None
    k = r.key.decode()
    return Add(f"{k}#n", 1), Put(f"{k}#last", r.value["seq"])  # type: ignore[arg-type]


def combined() -> View[bytes, dict[str, object]]:
    return View(os.environ.get("LOOSELY_CRASH_VIEW", "crash"), 1, _topic(), _combined, value=JSON)


def _document(r: Record[bytes, dict[str, object]]) -> Change | None:
    if r.key is None or r.value is None:
        return None
    return Put(r.key.decode(), {"title": r.value["title"], "body": r.value["body"], "seq": r.value["seq"]})


def documents() -> View[bytes, dict[str, object]]:
    """Latest document per key, for the search and document sinks (``Put`` only)."""
    return View(os.environ.get("LOOSELY_CRASH_VIEW", "docs"), 1, _topic(), _document, value=JSON)


def _point(r: Record[bytes, dict[str, object]]) -> Change | None:
    if r.key is None or r.value is None:
        return None
    return Put(r.key.decode(), {"seq": r.value["seq"]})


def points() -> View[bytes, dict[str, object]]:
    """One point per record, for the InfluxDB sink."""
    return View(os.environ.get("LOOSELY_CRASH_VIEW", "points"), 1, _topic(), _point, value=JSON)


def counts() -> View[bytes, bytes]:
    """Records per key, the built-in kernel: a SQLite runner reads it with loosely's batch consumer."""
    return count_by_key(os.environ.get("LOOSELY_CRASH_VIEW", "counts"), _topic())
