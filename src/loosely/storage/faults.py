"""Disk errors (ENOSPC, EIO, any ``OSError``) seen by the storage engine: answered, counted, logged sparingly.

Theory of operation
-------------------
A full or failing disk fails every write, so one log line per failed write would bury the log (and one traceback
per write, what the broker printed before, more so). Instead each failure becomes a
:class:`~loosely.storage.log.StorageError` (a ``LogError`` carrying KAFKA_STORAGE_ERROR, 56), which the handlers
answer for the affected partition only, and is reported to :class:`StorageFaults`, which

* counts it by operation (``append``, ``roll``, ``flush``, ``truncate``, ``retention``, ``checkpoint``,
  ``read``, ...), for ``Broker.statistics()`` and the ``loosely_storage_errors_total`` metric, and
* logs one WARNING per *subject* (a partition, or ``checkpoints``) and operation per ``log_interval_ms``, saying
  how many more of the same were suppressed since the previous line.

Nothing here decides what a failure means for the data; :mod:`loosely.storage.log` and
:mod:`loosely.storage.segment` undo a failed append so the next one starts at the same byte (see there).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Final

from loosely.storage.clock import Clock

__all__ = ["FAULT_KEYS_MAX", "FAULT_LOG_INTERVAL_MS", "StorageFaultStatistics", "StorageFaults", "describe"]

log = logging.getLogger("loosely.storage")

# At most one line per subject and operation this often: a disk that stays full for an hour logs 360 lines per
# partition, not one per produce request.
FAULT_LOG_INTERVAL_MS: Final = 10_000
# A limit on the rate limiter's own memory: keys are (partition, operation), so this is far above any real count;
# past it the oldest key is forgotten (which at worst logs one extra line for it).
FAULT_KEYS_MAX: Final = 100_000


def describe(e: OSError) -> str:
    """``[Errno 28] No space left on device`` without the file name noise of some ``OSError`` s."""
    if e.errno is not None and e.strerror:
        return f"[Errno {e.errno}] {e.strerror}"
    return str(e) or type(e).__name__


@dataclass(frozen=True, slots=True)
class StorageFaultStatistics:
    errors_total: dict[str, int]  # operation -> failures since start
    logs_refusing_writes: int  # partitions whose failed append could not be undone yet


@dataclass(slots=True)
class _Window:
    logged_ms: int  # when the last failure line for this subject and operation was written
    suppressed: int = 0  # failures not logged since then
    announced: bool = True  # the last line said "failed" (so a "works again" line is due on success)


class StorageFaults:
    """Counts disk failures and logs them at most once per subject and operation per interval.

    Per interval and key at most two lines: the failure, and "works again" once an operation succeeds after it.

    >>> from loosely.testing import FakeClock
    >>> clock = FakeClock(now_ms=0)
    >>> faults = StorageFaults(clock)
    >>> for _ in range(3):
    ...     faults.report("t-0", "append", OSError(28, "No space left on device"))
    >>> faults.statistics().errors_total
    {'append': 3}
    """

    def __init__(
        self, clock: Clock, *, log_interval_ms: int = FAULT_LOG_INTERVAL_MS, keys_max: int = FAULT_KEYS_MAX
    ) -> None:
        self.clock = clock
        self.log_interval_ms = log_interval_ms
        self.keys_max = keys_max
        self._errors: Counter[str] = Counter()
        self._windows: dict[tuple[str, str], _Window] = {}
        self.refusing_writes: set[str] = set()

    def report(self, subject: str, operation: str, error: OSError, consequence: str = "") -> None:
        """Count ``error`` and log it unless the same subject and operation logged within the interval."""
        self._errors[operation] += 1
        now = self.clock.monotonic_ms()
        key = (subject, operation)
        w = self._windows.get(key)
        if w is not None and now - w.logged_ms < self.log_interval_ms:
            w.suppressed += 1
            return
        suppressed = w.suppressed if w is not None else 0
        if w is None and len(self._windows) >= self.keys_max:
            self._windows.pop(next(iter(self._windows)))
        self._windows[key] = _Window(now)
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        log.warning("storage error: %s failed on %s: %s%s%s", operation, subject, describe(error), consequence, more)

    def resolved(self, subject: str, operation: str) -> None:
        """``operation`` on ``subject`` worked: say so once after a logged failure, so the log shows the end."""
        if not self._windows:
            return
        w = self._windows.get((subject, operation))
        if w is None or not w.announced:
            return
        w.announced = False
        more = f" ({w.suppressed} more failures since the last report)" if w.suppressed else ""
        w.suppressed = 0
        log.warning("storage recovered: %s on %s works again%s", operation, subject, more)

    def statistics(self) -> StorageFaultStatistics:
        return StorageFaultStatistics(dict(self._errors), len(self.refusing_writes))
