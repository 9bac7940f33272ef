"""Injected time, version minting and leadership: the three things a producer asks the world about.

* :class:`Clock`: ``now_ms`` (wall clock, for versions and header tags) and ``monotonic_ms`` (durations,
  timeouts, backoff).  ``loosely.testing.FakeClock`` implements it for tests.  It is storage's and the broker's
  clock (:mod:`loosely.storage.clock`), re-exported here.
* :class:`VersionMinter`: the next version.  Versions only grow; the default mints Java's readable timestamp
  form ``yyyyMMddHHmmssSSS`` (UTC) and bumps it past the previous version when the clock is behind.
* :class:`LeaderElection`: whether this producer may publish and announce, and a *term* that changes each time
  leadership is (re)acquired, so a producer knows to restore before its first cycle of a new term.
"""

from __future__ import annotations

import datetime as _dt
import threading
from typing import Protocol, runtime_checkable

from loosely.hollow.api._blobs import VERSION_MAX, Version
from loosely.storage.clock import Clock, SystemClock  # one clock for every room: the broker's and storage's

__all__ = [
    "AlwaysLeader",
    "Clock",
    "LeaderElection",
    "ManualLeader",
    "SystemClock",
    "TimestampVersionMinter",
    "VersionMinter",
]


@runtime_checkable
class VersionMinter(Protocol):
    """Mints the version of the next cycle; must be greater than ``last``."""

    def mint(self, last: Version | None) -> Version: ...


class TimestampVersionMinter:
    """Versions like Java's ``VersionMinterWithCounter``: the UTC time as ``yyyyMMddHHmmssSSS``.

    >>> class At:
    ...     def now_ms(self): return 1_700_000_000_123
    ...     def monotonic_ms(self): return 0
    >>> m = TimestampVersionMinter(At())
    >>> m.mint(None), m.mint(Version(20231114221320123))
    (20231114221320123, 20231114221320124)
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self._minted: int | None = None

    def mint(self, last: Version | None) -> Version:
        """A version above ``last`` and above every version minted before (a failed cycle's version is never
        reused: its blobs may be published, and blobs are never replaced)."""
        now = self.clock.now_ms()
        t = _dt.datetime.fromtimestamp(now // 1000, tz=_dt.UTC)
        v = int(t.strftime("%Y%m%d%H%M%S")) * 1000 + now % 1000
        floor = max((x for x in (last, self._minted) if x is not None), default=None)
        if floor is not None and v <= floor:
            if floor >= VERSION_MAX:
                raise OverflowError("no version follows the maximum 64-bit version")
            v = floor + 1
        self._minted = v
        return Version(v)


@runtime_checkable
class LeaderElection(Protocol):
    """Who may publish: ``is_leader()`` now, and ``term()`` which grows each time leadership is acquired."""

    def is_leader(self) -> bool: ...

    def term(self) -> int: ...


class AlwaysLeader:
    """A single producer: always the leader, one term (Java's default ``BasicSingleProducerEnforcer``)."""

    __slots__ = ()

    def is_leader(self) -> bool:
        return True

    def term(self) -> int:
        return 1


class ManualLeader:
    """Leadership switched by hand (``enable()`` / ``disable()``), for tests and for operators' tooling."""

    def __init__(self, leader: bool = True) -> None:
        self._lock = threading.Lock()
        self._leader = leader
        self._term = 1 if leader else 0

    def enable(self) -> None:
        with self._lock:
            if not self._leader:
                self._leader = True
                self._term += 1

    def disable(self) -> None:
        with self._lock:
            self._leader = False

    def is_leader(self) -> bool:
        with self._lock:
            return self._leader

    def term(self) -> int:
        with self._lock:
            return self._term
