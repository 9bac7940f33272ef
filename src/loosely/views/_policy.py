"""What the runner does after applying a batch, as a pure state machine.

The runner's shell (confluent-kafka consumer, sink calls, sleeps) reports one event per attempt to apply a batch;
:func:`step` says what to do next. Keeping this pure lets the tests walk every path with a fake clock.

States::

    RUNNING --Applied--> RUNNING                               effects: Commit
    RUNNING --Failed--> BACKING_OFF(attempt 1, retry_at)        effects: RetryAt
    BACKING_OFF --Failed--> BACKING_OFF(attempt n+1) ... until attempts_max, then STOPPED   effects: Stop
    BACKING_OFF --Applied--> RUNNING                            effects: Commit
    any --Fenced--> RUNNING                                     effects: Reseek (drop the batch, reload positions)
    any --Poison(stop policy)--> STOPPED                        effects: Stop
    STOPPED absorbs every event.

Backoff doubles from ``backoff_ms`` up to ``backoff_ms_max``; the sum of all backoffs stays far below the
consumer's ``max.poll.interval.ms`` so a slow sink does not make the runner leave its group.

>>> s, fx = step(ApplyState(), Failed("disk full"), now_ms=1_000, limits=RetryLimits(attempts_max=2))
>>> s.phase, fx
(<Phase.BACKING_OFF: 'backing-off'>, (RetryAt(at_ms=1200),))
>>> s, fx = step(s, Failed("disk full"), now_ms=1_200, limits=RetryLimits(attempts_max=2))
>>> s.phase, fx
(<Phase.STOPPED: 'stopped'>, (Stop(error='disk full (after 2 attempts)'),))
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import TypeAlias

__all__ = [
    "Applied",
    "ApplyState",
    "Commit",
    "Failed",
    "FencedOut",
    "Phase",
    "Poisoned",
    "Reseek",
    "RetryAt",
    "RetryLimits",
    "Stop",
    "step",
]


class Phase(enum.Enum):
    RUNNING = "running"
    BACKING_OFF = "backing-off"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class RetryLimits:
    attempts_max: int = 8
    backoff_ms: int = 200
    backoff_ms_max: int = 10_000


@dataclass(frozen=True, slots=True)
class ApplyState:
    phase: Phase = Phase.RUNNING
    attempts: int = 0
    retry_at_ms: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    pass


@dataclass(frozen=True, slots=True)
class Failed:
    error: str


@dataclass(frozen=True, slots=True)
class FencedOut:
    error: str


@dataclass(frozen=True, slots=True)
class Poisoned:
    error: str


Event: TypeAlias = Applied | Failed | FencedOut | Poisoned


@dataclass(frozen=True, slots=True)
class Commit:
    pass


@dataclass(frozen=True, slots=True)
class RetryAt:
    at_ms: int


@dataclass(frozen=True, slots=True)
class Reseek:
    pass


@dataclass(frozen=True, slots=True)
class Stop:
    error: str


Effect: TypeAlias = Commit | RetryAt | Reseek | Stop


def step(
    state: ApplyState, event: Event, now_ms: int, limits: RetryLimits = RetryLimits()
) -> tuple[ApplyState, tuple[Effect, ...]]:
    if state.phase is Phase.STOPPED:
        return state, ()
    if isinstance(event, Applied):
        return ApplyState(), (Commit(),)
    if isinstance(event, FencedOut):
        return ApplyState(), (Reseek(),)
    if isinstance(event, Poisoned):
        return replace(state, phase=Phase.STOPPED, error=event.error), (Stop(event.error),)
    attempts = state.attempts + 1
    if attempts >= limits.attempts_max:
        msg = f"{event.error} (after {attempts} attempts)"
        return ApplyState(Phase.STOPPED, attempts, 0, msg), (Stop(msg),)
    delay = min(limits.backoff_ms * (2 ** (attempts - 1)), limits.backoff_ms_max)
    return ApplyState(Phase.BACKING_OFF, attempts, now_ms + delay, event.error), (RetryAt(now_ms + delay),)
