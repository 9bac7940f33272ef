"""A readers-writer lock for the consumer's refresh lock (Java ``HollowConsumer.getRefreshLock``).

Readers share it; a refresh takes it alone to apply a delta or swap in a new state.  Writers are preferred: once
a refresh waits, new readers wait behind it, so a steady stream of readers cannot starve refreshes.  Reads nest
(a reader may take it again) as long as no writer is waiting in between -- keep read sections short and flat.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["RWLock"]


class RWLock:
    """>>> lock = RWLock()
    >>> with lock.reading(), lock.reading():
    ...     lock.readers
    2
    >>> with lock.writing():
    ...     lock.writer
    True
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self.readers = 0
        self.writer = False
        self._writers_waiting = 0

    def acquire_read(self, timeout: float | None = None) -> bool:
        with self._cond:
            ok = self._cond.wait_for(lambda: not self.writer and self._writers_waiting == 0, timeout)
            if ok:
                self.readers += 1
            return ok

    def release_read(self) -> None:
        with self._cond:
            if self.readers <= 0:
                raise RuntimeError("release_read without a reader")
            self.readers -= 1
            if self.readers == 0:
                self._cond.notify_all()

    def acquire_write(self, timeout: float | None = None) -> bool:
        with self._cond:
            self._writers_waiting += 1
            try:
                ok = self._cond.wait_for(lambda: not self.writer and self.readers == 0, timeout)
            finally:
                self._writers_waiting -= 1
            if ok:
                self.writer = True
            else:
                self._cond.notify_all()
            return ok

    def release_write(self) -> None:
        with self._cond:
            if not self.writer:
                raise RuntimeError("release_write without the writer")
            self.writer = False
            self._cond.notify_all()

    @contextmanager
    def reading(self) -> Iterator[None]:
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()

    @contextmanager
    def writing(self) -> Iterator[None]:
        self.acquire_write()
        try:
            yield
        finally:
            self.release_write()
