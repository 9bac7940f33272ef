"""Roll and retention decisions as pure functions of ``(segments, policy, now_ms)``.

Kafka's rules (``UnifiedLog.deleteOldSegments``, ``LogSegment.shouldRoll``), restated:

* **Roll** the active segment before an append when it is non-empty and the append would take it past
  ``segment.bytes``, when it has been open longer than ``segment.ms`` (measured from its first batch's timestamp,
  else its creation), when its offset index is full, or when the new offsets no longer fit in the index's 32-bit
  relative offsets.
* **Retention** removes whole segments from the front only:
  - any segment whose offsets all lie below the log start offset (advanced by DeleteRecords);
  - with ``cleanup.policy`` containing ``delete``: segments whose largest timestamp is older than
    ``now - retention.ms``, and the oldest segments while the log stays at or above ``retention.bytes`` without
    them.
  The active segment is included when it qualifies and is non-empty; the caller rolls first so the log always
  keeps a (new, empty) active segment, whose base offset is the log end offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loosely.storage.config import LogConfig

__all__ = ["SegmentInfo", "deletable_prefix", "should_roll"]

_RELATIVE_OFFSET_MAX = (1 << 31) - 1


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    base_offset: int
    next_offset: int
    size_bytes: int
    max_timestamp_ms: int  # -1 when empty
    first_batch_timestamp_ms: int  # -1 when empty
    created_ms: int
    index_full: bool = False


def should_roll(active: SegmentInfo, incoming_bytes: int, last_offset: int, config: LogConfig, now_ms: int) -> bool:
    if active.size_bytes == 0:
        return False
    if active.size_bytes + incoming_bytes > config.segment_bytes:
        return True
    opened_ms = active.first_batch_timestamp_ms if active.first_batch_timestamp_ms >= 0 else active.created_ms
    if now_ms - opened_ms > config.segment_ms:
        return True
    return active.index_full or last_offset - active.base_offset > _RELATIVE_OFFSET_MAX


def deletable_prefix(segments: Sequence[SegmentInfo], config: LogConfig, log_start_offset: int, now_ms: int) -> int:
    """How many segments, from the oldest, retention deletes now."""
    n = 0
    total = sum(s.size_bytes for s in segments)
    for s in segments:
        if s.size_bytes == 0 and s is segments[-1]:
            break
        below_start = s.next_offset <= log_start_offset and s is not segments[-1]
        expired = (
            config.delete
            and config.retention_ms >= 0
            and s.max_timestamp_ms >= 0
            and now_ms - s.max_timestamp_ms > config.retention_ms
        )
        oversize = config.delete and config.retention_bytes >= 0 and total - s.size_bytes >= config.retention_bytes
        if not (below_start or expired or oversize):
            break
        n += 1
        total -= s.size_bytes
    return n
