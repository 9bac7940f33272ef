"""Versions of one view for the blue/green tests, each writing values a reader can tell apart, so it knows which
version it sees and whether that version is complete.

* ``counts`` (version 1) counts records per key, ``tens`` (version 2) counts tens, ``hundreds`` (version 3)
  hundreds: for the SQL, document and InfluxDB sinks.
* ``documents``, ``documents_v2``, ``documents_v3``: the latest ``{"title", "body", "seq", "v"}`` of each key, with
  ``v`` the version, for the search sinks (their values must be JSON objects).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from loosely.views import JSON, Add, Change, Put, Record, View


def _ones(r: Record[bytes, bytes]) -> Change | None:
    return None if r.key is None else Add(r.key.decode(), 1)


def _tens(r: Record[bytes, bytes]) -> Change | None:
    return None if r.key is None else Add(r.key.decode(), 10)


def _hundreds(r: Record[bytes, bytes]) -> Change | None:
    return None if r.key is None else Add(r.key.decode(), 100)


def counts() -> View[bytes, bytes]:
    """``--version 1`` counts ones, any later version counts tens (``loosely views rebuild --version 2``)."""
    topic = os.environ["LOOSELY_BG_TOPIC"]
    return View("bg", 1, (topic,), _ones)


def tens() -> View[bytes, bytes]:
    return View("bg", 2, (os.environ["LOOSELY_BG_TOPIC"],), _tens)


def hundreds() -> View[bytes, bytes]:
    return View("bg", 3, (os.environ["LOOSELY_BG_TOPIC"],), _hundreds)


def _document(version: int) -> Callable[[Record[bytes, dict[str, object]]], Change | None]:
    def fn(r: Record[bytes, dict[str, object]]) -> Change | None:
        if r.key is None or r.value is None:
            return None
        v = r.value
        return Put(r.key.decode(), {"title": v["title"], "body": v["body"], "seq": v["seq"], "v": version})  # type: ignore[dict-item]

    return fn


def _documents(version: int) -> View[bytes, dict[str, object]]:
    return View("bg", version, (os.environ["LOOSELY_BG_TOPIC"],), _document(version), value=JSON)


def documents() -> View[bytes, dict[str, object]]:
    return _documents(1)


def documents_v2() -> View[bytes, dict[str, object]]:
    return _documents(2)


def documents_v3() -> View[bytes, dict[str, object]]:
    return _documents(3)
