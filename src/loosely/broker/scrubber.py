"""The scrubber: re-checks the CRCs of closed segments in the background, at a bounded rate.

Kafka has no such thing; it is a loosely addition (docs/broker.md). A clean start trusts closed segments without
reading them, and a bit that flips on disk afterwards would be served to consumers until one of them failed on
its CRC. The scrubber finds it first and says so.

Theory of operation
-------------------
One task on the event loop walks every partition's closed (non-active) segments, oldest first, round after round.
Each step reads at most ``slice_bytes_max`` bytes of whole batches in a worker thread
(:func:`loosely.storage.verify.scrub_slice`) and then sleeps ``bytes read / bytes_per_second``, so the disk sees
at most ``log.scrub.bytes.per.second`` on average and the loop never waits on a read. A segment's file is opened
once, read-only, and kept open while its walk lasts: closed segments never change in place, and retention or the
cleaner replacing one only unlinks or renames the name, so a slice always reads the bytes the walk started with;
between slices the scrubber checks the segment is still part of its log and lets go of it if not (an open file
would keep a deleted segment's space from being freed).

Damage is logged once per file and position as a WARNING and counted per partition (``damaged_batches``, in
``Broker.statistics()`` and the metrics). The scrubber changes nothing: the damaged batch is cut off and
quarantined by the next recovery (docs/broker.md says how to ask for one).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Final

from loosely.storage.manager import LogManager
from loosely.storage.segment import Segment
from loosely.storage.verify import ScrubSlice, open_read_only, scrub_slice

__all__ = ["SCRUB_BYTES_PER_SECOND_DEFAULT", "Scrubber"]

log = logging.getLogger("loosely.broker.scrubber")

# 1 MiB/s: a full pass over 100 GiB takes about a day and costs a disk almost nothing.
SCRUB_BYTES_PER_SECOND_DEFAULT: Final = 1 << 20
# One read in the worker thread covers at most this much (a bigger batch is read whole).
SCRUB_SLICE_BYTES_MAX: Final = 1 << 20
# When there is nothing closed to scrub, look again after this long.
IDLE_MS: Final = 1000


class Scrubber:
    def __init__(
        self, logs: LogManager, bytes_per_second: int, *, slice_bytes_max: int = SCRUB_SLICE_BYTES_MAX
    ) -> None:
        if bytes_per_second <= 0:
            raise ValueError(f"bytes_per_second must be positive, got {bytes_per_second}")
        self._logs = logs
        self.bytes_per_second = bytes_per_second
        self.slice_bytes_max = max(1, min(slice_bytes_max, bytes_per_second))
        self.bytes_checked = 0
        self.segments_checked = 0
        self.passes = 0
        self.damaged_batches: dict[tuple[str, int], int] = {}
        self._reported: set[tuple[str, int]] = set()

    def _closed_segments(self) -> Iterator[tuple[str, int, Segment]]:
        for t in list(self._logs):
            for p, plog in enumerate(list(t.logs)):
                for seg in plog.cleanable_segments():
                    yield t.name, p, seg

    def _still_there(self, topic: str, partition: int, seg: Segment) -> bool:
        plog = self._logs.log(topic, partition)
        return plog is not None and any(s is seg for s in plog.segments)

    async def run(self) -> None:
        while True:
            work = list(self._closed_segments())
            for topic, partition, seg in work:
                if self._still_there(topic, partition, seg):
                    await self._scrub_file(topic, partition, seg)
            self.passes += 1
            if not work:
                await asyncio.sleep(IDLE_MS / 1000)

    async def _scrub_file(self, topic: str, partition: int, seg: Segment) -> None:
        path = seg.log.path
        try:
            f = await asyncio.to_thread(open_read_only, path)
        except FileNotFoundError:
            return  # deleted by retention or replaced by the cleaner since the round began
        loop = asyncio.get_running_loop()
        pending: Future[ScrubSlice] | asyncio.Future[ScrubSlice] | None = None
        try:
            position = 0
            while True:
                pending = loop.run_in_executor(None, scrub_slice, f, position, self.slice_bytes_max)
                sl = await asyncio.shield(pending)
                pending = None
                self.bytes_checked += sl.bytes_checked
                if sl.problem is not None:
                    self._report(topic, partition, path, sl.problem_position, sl.problem)
                position = sl.next_position
                await asyncio.sleep(max(sl.bytes_checked, 1) / self.bytes_per_second)
                if sl.done:
                    break
                if not self._still_there(topic, partition, seg):
                    return  # deleted or replaced meanwhile: let go of the file so its space is freed
            self.segments_checked += 1
        finally:
            if pending is not None and not pending.done():
                pending.add_done_callback(lambda _: f.close())  # the thread still reads; close after it
            else:
                f.close()

    def _report(self, topic: str, partition: int, path: str, position: int, problem: str) -> None:
        if (path, position) in self._reported:
            return
        self._reported.add((path, position))
        key = (topic, partition)
        self.damaged_batches[key] = self.damaged_batches.get(key, 0) + 1
        log.warning(
            "%s-%d: the scrubber found damage in closed segment %s at byte %d: %s; it is served as it is until "
            "recovery cuts it off (docs/broker.md, 'Damage, recovery and quarantine files')",
            topic,
            partition,
            os.path.basename(path),
            position,
            problem,
        )
