"""The consumer's refresh decisions as a pure state machine: ``step(state, event, now_ms) -> (state, effects)``.

The consumer serves the version it has while it works towards the version it wants: the pinned version if there
is one, else the announced one.  The shell (``Consumer``) polls the announcement watcher, runs refreshes and
feeds the outcomes back; time only enters through ``now_ms`` (monotonic), so tests drive it with a fake clock::

    IDLE --Announced / Pinned / Requested / Tick, wanted != loaded--> REFRESHING     effect: Refresh(wanted)
    REFRESHING --Succeeded(v)--> IDLE (or REFRESHING again if the wanted version moved meanwhile)
    REFRESHING --Failed(reached)--> BACKOFF until now + backoff        effect: Backoff(retry_at_ms, failures, error)
    BACKOFF --Tick(now >= retry_at) or Requested--> REFRESHING         effect: Refresh(wanted)
    any --WatcherFailed--> same phase, or BACKOFF from IDLE            (the watcher is retried with backoff too)

A failure never unloads anything: ``loaded`` only moves on success (or to a version a partial refresh did reach,
which is itself a complete, published state).  Backoff doubles from ``backoff_ms_min`` up to ``backoff_ms_max``;
``jitter`` (0..1, from the shell's random source) spreads consumers out by up to half the delay.

>>> s = RefreshState()
>>> s, fx = step(s, Announced(Version(5)), now_ms=0)
>>> fx
(Refresh(version=5),)
>>> s, fx = step(s, Failed("store down", None, jitter=0.0), now_ms=10)
>>> fx
(Backoff(retry_at_ms=510, failures=1, error='store down'),)
>>> step(s, Tick(), now_ms=100)[1], step(s, Tick(), now_ms=510)[1]
((), (Refresh(version=5),))
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import TypeAlias

from loosely.hollow.api._blobs import Version

__all__ = [
    "Announced",
    "Backoff",
    "Failed",
    "Phase",
    "Pinned",
    "Refresh",
    "RefreshEffect",
    "RefreshEvent",
    "RefreshState",
    "Requested",
    "Succeeded",
    "Tick",
    "WatcherFailed",
    "step",
]


class Phase(enum.Enum):
    IDLE = "idle"
    REFRESHING = "refreshing"
    BACKOFF = "backoff"


@dataclass(frozen=True, slots=True)
class RefreshState:
    phase: Phase = Phase.IDLE
    loaded: Version | None = None
    announced: Version | None = None
    pinned: Version | None = None
    failures: int = 0
    retry_at_ms: int = 0
    last_error: str | None = None
    backoff_ms_min: int = 500
    backoff_ms_max: int = 30_000

    def __post_init__(self) -> None:
        if not 0 < self.backoff_ms_min <= self.backoff_ms_max:
            raise ValueError("need 0 < backoff_ms_min <= backoff_ms_max")

    @property
    def wanted(self) -> Version | None:
        return self.pinned if self.pinned is not None else self.announced

    def backoff_ms(self, failures: int, jitter: float) -> int:
        base = min(self.backoff_ms_max, self.backoff_ms_min << min(max(failures - 1, 0), 30))
        return int(base - base * 0.5 * min(max(jitter, 0.0), 1.0))


# -- events --


@dataclass(frozen=True, slots=True)
class Announced:
    version: Version | None


@dataclass(frozen=True, slots=True)
class Pinned:
    version: Version | None


@dataclass(frozen=True, slots=True)
class Requested:
    """An explicit refresh request (ignores a running backoff)."""


@dataclass(frozen=True, slots=True)
class Tick:
    pass


@dataclass(frozen=True, slots=True)
class Succeeded:
    version: Version | None


@dataclass(frozen=True, slots=True)
class Failed:
    error: str
    reached: Version | None
    jitter: float = 0.0


@dataclass(frozen=True, slots=True)
class WatcherFailed:
    error: str
    jitter: float = 0.0


RefreshEvent: TypeAlias = Announced | Pinned | Requested | Tick | Succeeded | Failed | WatcherFailed

# -- effects --


@dataclass(frozen=True, slots=True)
class Refresh:
    version: Version


@dataclass(frozen=True, slots=True)
class Backoff:
    retry_at_ms: int
    failures: int
    error: str


RefreshEffect: TypeAlias = Refresh | Backoff


def _start_if_needed(state: RefreshState) -> tuple[RefreshState, tuple[RefreshEffect, ...]]:
    wanted = state.wanted
    if wanted is None or wanted == state.loaded:
        return replace(state, phase=Phase.IDLE, failures=0), ()
    return replace(state, phase=Phase.REFRESHING), (Refresh(wanted),)


def _backoff(
    state: RefreshState, error: str, jitter: float, now_ms: int
) -> tuple[RefreshState, tuple[RefreshEffect, ...]]:
    failures = state.failures + 1
    retry_at = now_ms + state.backoff_ms(failures, jitter)
    new = replace(state, phase=Phase.BACKOFF, failures=failures, retry_at_ms=retry_at, last_error=error)
    return new, (Backoff(retry_at, failures, error),)


def step(state: RefreshState, event: RefreshEvent, now_ms: int) -> tuple[RefreshState, tuple[RefreshEffect, ...]]:
    phase = state.phase
    if isinstance(event, Announced):
        state = replace(state, announced=event.version)
    elif isinstance(event, Pinned):
        state = replace(state, pinned=event.version)
    if phase is Phase.REFRESHING:
        if isinstance(event, Succeeded):
            return _start_if_needed(replace(state, loaded=event.version, failures=0, last_error=None))
        if isinstance(event, Failed):
            loaded = event.reached if event.reached is not None else state.loaded
            return _backoff(replace(state, loaded=loaded), event.error, event.jitter, now_ms)
        if isinstance(event, WatcherFailed):
            return replace(state, last_error=event.error), ()
        return state, ()  # announcements and pins are noted; the refresh in flight finishes first
    if isinstance(event, (Succeeded, Failed)):
        raise ValueError(f"{type(event).__name__} while {phase.value}")
    if isinstance(event, WatcherFailed):
        return _backoff(state, event.error, event.jitter, now_ms)
    if phase is Phase.BACKOFF and not isinstance(event, Requested) and now_ms < state.retry_at_ms:
        return state, ()
    return _start_if_needed(state)
