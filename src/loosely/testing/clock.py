"""A clock tests move by hand."""

from __future__ import annotations

import threading

__all__ = ["FakeClock"]


class FakeClock:
    """Implements :class:`loosely.storage.clock.Clock`; time moves only when told to.

    >>> c = FakeClock(now_ms=1_000)
    >>> c.advance(250)
    >>> c.now_ms(), c.monotonic_ms()
    (1250, 250)
    """

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self._lock = threading.Lock()
        self._wall = now_ms
        self._mono = 0

    def now_ms(self) -> int:
        with self._lock:
            return self._wall

    def monotonic_ms(self) -> int:
        with self._lock:
            return self._mono

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("time does not go back")
        with self._lock:
            self._wall += ms
            self._mono += ms
