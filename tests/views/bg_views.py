"""Two versions of one view for the blue/green tests: version 1 counts records per key, version 2 counts tens,
so a reader can tell which version it sees and whether that version is complete."""

from __future__ import annotations

import os

from loosely.views import Add, Change, Record, View


def _ones(r: Record[bytes, bytes]) -> Change | None:
    return None if r.key is None else Add(r.key.decode(), 1)


def _tens(r: Record[bytes, bytes]) -> Change | None:
    return None if r.key is None else Add(r.key.decode(), 10)


def counts() -> View[bytes, bytes]:
    """``--version 1`` counts ones, any later version counts tens (``loosely views rebuild --version 2``)."""
    topic = os.environ["LOOSELY_BG_TOPIC"]
    return View("bg", 1, (topic,), _ones)


def tens() -> View[bytes, bytes]:
    return View("bg", 2, (os.environ["LOOSELY_BG_TOPIC"],), _tens)
