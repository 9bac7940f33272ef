"""Rebuild progress from consumer lag: fraction done, rate and ETA, as pure functions of what was measured.

A rebuild starts with ``lag_start`` records to read (the sum over partitions of high watermark minus position).
While producers keep writing, the lag can grow, so the fraction is measured against records read, not against
the starting lag alone: ``done = read / (read + lag)``. The rate is the average over the run, and the ETA divides
the remaining lag by that rate.

>>> p = measure(read=250_000, lag=750_000, elapsed_ms=5_000)
>>> p.fraction, p.rate_per_s, p.eta_s
(0.25, 50000.0, 15.0)
>>> render(p, width=20)
'[#####...............]  25.0%  250,000/1,000,000  50,000 rec/s  ETA 0:00:15'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Progress", "measure", "render"]


@dataclass(frozen=True, slots=True)
class Progress:
    read: int
    lag: int
    elapsed_ms: int
    fraction: float
    rate_per_s: float
    eta_s: float | None


def measure(read: int, lag: int, elapsed_ms: int) -> Progress:
    total = read + lag
    fraction = 1.0 if total == 0 else read / total
    rate = read * 1000 / elapsed_ms if elapsed_ms > 0 else 0.0
    eta = 0.0 if lag == 0 else (lag / rate if rate > 0 else None)
    return Progress(read, lag, elapsed_ms, fraction, rate, eta)


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def render(p: Progress, width: int = 30) -> str:
    filled = int(p.fraction * width)
    eta = "?" if p.eta_s is None else _clock(p.eta_s)
    return (f"[{'#' * filled}{'.' * (width - filled)}] {p.fraction * 100:5.1f}%  {p.read:,}/{p.read + p.lag:,}  "
            f"{p.rate_per_s:,.0f} rec/s  ETA {eta}")
