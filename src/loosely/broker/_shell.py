"""The two pieces every coordinator shell needs around its pure state machine: parked requests and timers.

A state machine refers to a waiting request by an integer id and answers it with a ``Reply`` effect, possibly much
later; :class:`Waiting` maps those ids to the futures the handlers await. Each key (a group, a transactional id)
has at most one timer, set to its state's next deadline; :class:`Timers` keeps them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

__all__ = ["Timers", "Waiting"]

R = TypeVar("R")
K = TypeVar("K", bound=Hashable)

TIMER_DELAY_MIN_S: Final = 0.001  # a deadline already past fires on the next loop turn, never in a busy loop


class Waiting(Generic[R]):
    """Futures of requests waiting for their state machine's reply."""

    __slots__ = ("_futures", "_next")

    def __init__(self) -> None:
        self._next = 0
        self._futures: dict[int, asyncio.Future[R]] = {}

    def new(self) -> tuple[int, asyncio.Future[R]]:
        self._next += 1
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._futures[self._next] = fut
        return self._next, fut

    def answer(self, request: int, value: R) -> None:
        """Complete the request's future; a request whose client went away is dropped."""
        fut = self._futures.pop(request, None)
        if fut is not None and not fut.done():
            fut.set_result(value)

    def cancel_all(self) -> None:
        for fut in self._futures.values():
            if not fut.done():
                fut.cancel()
        self._futures.clear()

    def __len__(self) -> int:
        return len(self._futures)


class Timers(Generic[K]):
    """One timer per key; firing calls ``fire(key)``."""

    __slots__ = ("_fire", "_handles")

    def __init__(self, fire: Callable[[K], None]) -> None:
        self._fire = fire
        self._handles: dict[K, asyncio.TimerHandle] = {}

    def set(self, key: K, delay_ms: int | None) -> None:
        """(Re)arm the key's timer ``delay_ms`` from now; None disarms it."""
        old = self._handles.pop(key, None)
        if old is not None:
            old.cancel()
        if delay_ms is None:
            return
        delay_s = max(delay_ms / 1000, TIMER_DELAY_MIN_S)
        self._handles[key] = asyncio.get_running_loop().call_later(delay_s, self._run, key)

    def _run(self, key: K) -> None:
        self._handles.pop(key, None)
        self._fire(key)

    def cancel_all(self) -> None:
        for h in self._handles.values():
            h.cancel()
        self._handles.clear()
