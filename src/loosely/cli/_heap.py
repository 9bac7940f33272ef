"""The heap of a long-running command once it has started."""

from __future__ import annotations

import gc

__all__ = ["freeze_startup"]


def freeze_startup() -> None:
    """Take what start-up loaded (modules, configuration, a broker's logs) out of the collector's way: it lives as
    long as the process, and a full collection would walk all of it again, every time, while every request waits.

    On a 2-vCPU machine a full pass over a broker's 60,000 start-up objects took 30-40 ms, and one came every few
    seconds at 1,000 writes/s: the slowest writes of ``bench/raw_hollow.py``. Frozen, a pass walks only what the
    process allocated since. Garbage is collected first, so none of it is kept for good."""
    gc.collect()
    gc.freeze()
