"""What the broker lets in: connections (``max.connections``, ``max.connections.per.ip``) and the bytes of requests
read but not yet handled (``queued.max.request.bytes``). Counters only, no I/O: the server asks and acts.

Theory of operation
-------------------
Connections. Before accepting, the accept loop asks :meth:`ConnectionCounts.slot_free`. With ``max.connections``
open it stops accepting, so new connections wait in the kernel's listen backlog (``socket.listen.backlog.size``)
until one closes, as Kafka's acceptor blocks; clients already connected are not touched. An accepted connection
from an address that already has its ``max.connections.per.ip`` (or its override) is closed at once, as Kafka
does.

Request bytes. A frame is charged at its *declared* size as soon as its size prefix is read, and refunded when its
request has been handled or its connection is gone. A charge succeeds while anything is left, so the total can
overshoot by at most one frame (Kafka's memory pool does the same). A connection whose charge fails stops reading
and waits, first come first served; refunds wake waiters while the budget lasts. Charging the declared size rather
than the bytes received so far means every admitted frame can be completed: connections can never all stall
half-way through frames that together exceed the budget, waiting for a refund that cannot come.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from loosely.storage.clock import Clock

__all__ = ["ConnectionCounts", "ConnectionLimits", "LogEvery", "RequestBytes", "normal_ip"]


def normal_ip(host: str) -> str:
    """The address a per-IP limit applies to: IPv4 clients of a dual-stack socket count as IPv4.

    >>> normal_ip("::ffff:127.0.0.1"), normal_ip("::1")
    ('127.0.0.1', '::1')
    """
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The connection limits in effect (static settings, or dynamic broker configs over them)."""

    total_max: int  # max.connections
    per_ip_max: int  # max.connections.per.ip
    per_ip_overrides: Mapping[str, int]  # max.connections.per.ip.overrides
    creation_rate_max: int  # max.connection.creation.rate, per second


class ConnectionCounts:
    """Open connections, in total and per client address.

    >>> c = ConnectionCounts(total_max=3, per_ip_max=2, per_ip_overrides={"10.0.0.9": 0})
    >>> [c.admit("127.0.0.1"), c.admit("127.0.0.1"), c.admit("127.0.0.1"), c.admit("10.0.0.9")]
    [None, None, 2, 0]
    >>> c.slot_free(), c.admit("::1"), c.slot_free()
    (True, None, False)
    >>> c.release("127.0.0.1"); c.slot_free()
    True
    """

    __slots__ = ("by_ip", "per_ip_max", "per_ip_overrides", "total", "total_max")

    def __init__(self, total_max: int, per_ip_max: int, per_ip_overrides: Mapping[str, int]) -> None:
        self.total_max = total_max
        self.per_ip_max = per_ip_max
        self.per_ip_overrides = {normal_ip(k): v for k, v in per_ip_overrides.items()}
        self.total = 0
        self.by_ip: dict[str, int] = {}

    def slot_free(self) -> bool:
        return self.total < self.total_max

    def set_limits(self, total_max: int, per_ip_max: int, per_ip_overrides: Mapping[str, int]) -> None:
        """New limits for the connections to come; those already open stay (as Kafka keeps them)."""
        self.total_max = total_max
        self.per_ip_max = per_ip_max
        self.per_ip_overrides = {normal_ip(k): v for k, v in per_ip_overrides.items()}

    def admit(self, ip: str) -> int | None:
        """Count a new connection from ``ip``; if that address is at its limit, count nothing and return the limit."""
        ip = normal_ip(ip)
        limit = self.per_ip_overrides.get(ip, self.per_ip_max)
        n = self.by_ip.get(ip, 0)
        if n >= limit:
            return limit
        self.by_ip[ip] = n + 1
        self.total += 1
        return None

    def release(self, ip: str) -> None:
        ip = normal_ip(ip)
        n = self.by_ip.get(ip, 0)
        assert n > 0 and self.total > 0, f"released a connection from {ip} that was never admitted"
        if n == 1:
            del self.by_ip[ip]
        else:
            self.by_ip[ip] = n - 1
        self.total -= 1


class RequestBytes:
    """The ``queued.max.request.bytes`` budget shared by every connection (``limit_bytes`` -1: unbounded).

    >>> b = RequestBytes(limit_bytes=100)
    >>> b.charge(80), b.charge(60), b.charge(1)  # the second overshoots, as Kafka's pool does; the third waits
    (True, True, False)
    >>> woken = []
    >>> b.wait(lambda: woken.append(b.charge(1)))
    >>> b.refund(60); woken, b.used_bytes
    ([True], 81)
    """

    __slots__ = ("_waiters", "limit_bytes", "used_bytes")

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.used_bytes = 0
        self._waiters: deque[Callable[[], None]] = deque()

    def available(self) -> bool:
        return self.limit_bytes < 0 or self.used_bytes < self.limit_bytes

    def charge(self, n: int) -> bool:
        if not self.available():
            return False
        self.used_bytes += n
        return True

    def refund(self, n: int) -> None:
        self.used_bytes -= n
        assert self.used_bytes >= 0, "refunded more request bytes than were charged"
        # Each woken waiter either charges (using the budget up) or waits again once it is gone, so this ends.
        while self._waiters and self.available():
            self._waiters.popleft()()

    def wait(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` once budget is available again (it should try :meth:`charge` again)."""
        self._waiters.append(wake)

    def forget(self, wake: Callable[[], None]) -> None:
        """A waiter whose connection is gone."""
        with contextlib.suppress(ValueError):  # it was woken already
            self._waiters.remove(wake)

    @property
    def waiting(self) -> int:
        return len(self._waiters)


class LogEvery:
    """At most one log line per ``interval_ms``; the next line counts those left out in between.

    A flood of rejected connections must not become a flood of log lines.
    """

    __slots__ = ("_clock", "_last_ms", "_left_out", "interval_ms", "logger")

    def __init__(self, logger: logging.Logger, clock: Clock, interval_ms: int = 10_000) -> None:
        self.logger = logger
        self._clock = clock
        self.interval_ms = interval_ms
        self._last_ms: int | None = None
        self._left_out = 0

    def __call__(self, level: int, msg: str, *args: object) -> None:
        now = self._clock.monotonic_ms()
        last = self._last_ms
        if last is not None and now - last < self.interval_ms:
            self._left_out += 1
            return
        if self._left_out and last is not None:
            msg += f" ({self._left_out} more like this in the last {now - last} ms)"
        self.logger.log(level, msg, *args)
        self._last_ms = now
        self._left_out = 0
