"""Key search on the broker: "which offsets of this partition hold key K", answered from the logs' key indexes.

Kafka has no such request; consoles (Kafka UI, AKHQ, Redpanda Console) scan the topic with a consumer. Loosely's log
keeps a key index per segment (:mod:`loosely.storage.keyindex`), and this service exposes it to code running in the
broker's process, the web console above all. It is an extension point, not a Kafka API: a console asks for it with
``ctx.services.get("key_search")`` (or :meth:`loosely.broker.server.Broker.key_lookup`) and falls back to a
consumer scan when it is absent (any other cluster).

Theory of operation
-------------------
* The logs belong to the event loop's thread. :meth:`KeySearch.key_lookup` may be called from any *other* thread
  (a web server's worker): it hands the search to the loop and waits for the answer, at most ``timeout_s``.
  Code on the loop awaits :meth:`KeySearch.find` instead.
* :meth:`KeySearch.find` first settles the key indexes of the partition's closed segments in a worker thread
  (closed segments never change in place; a sidecar is checked or a missing one built, see
  :meth:`PartitionLog.persist_key_indexes <loosely.storage.log.PartitionLog.persist_key_indexes>`), then runs
  :meth:`PartitionLog.find_key <loosely.storage.log.PartitionLog.find_key>` on the loop, where only the active
  segment's index may need to catch up (after a restart, or after batches the broker wrote itself).
* In the background, one task settles the closed segments of every partition, one segment per step, so sidecars are
  written soon after a segment rolls and rebuilt soon after a start found one missing or damaged, off the produce
  path and off the loop; and it reads the batches an active segment's index does not cover after a restart. The
  hashes appends queue in the active segment are sorted by the first lookup that needs them, in a worker thread
  (``KeyIndex.fold`` holds the index's lock only to take the queue and install the result), so neither the loop
  nor the produce path waits for a sort, and a broker nobody searches spends nothing on it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from typing import Final

from loosely.broker.context import BrokerContext
from loosely.protocol.errors import ErrorCode
from loosely.storage.log import LogError, PartitionLog
from loosely.storage.manager import LogManager

__all__ = ["KEY_LOOKUP_LIMIT_MAX", "KEY_LOOKUP_TIMEOUT_S", "SERVICE", "KeySearch"]

log = logging.getLogger("loosely.broker.key_search")

SERVICE: Final = "key_search"
# One answer lists at most this many offsets (a page of a console holds far fewer).
KEY_LOOKUP_LIMIT_MAX: Final = 10_000
# How long a caller on another thread waits for the loop; a first search after a start may build indexes.
KEY_LOOKUP_TIMEOUT_S: Final = 300.0
# The background task looks for closed segments to settle this often, when it found none.
_IDLE_S: Final = 1.0


class KeySearch:
    """The ``key_search`` broker service; see the module header."""

    def __init__(self) -> None:
        self._logs: LogManager | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.sidecars_written = 0
        self.lookups = 0
        # Segments whose index could not be settled (a disk error): skipped by the background task until a restart.
        # Lookups still use their in-memory index, and retry the sidecar.
        self._stuck: set[tuple[str, int]] = set()

    async def start(self, ctx: BrokerContext) -> None:
        self._logs = ctx.logs
        self._loop = asyncio.get_running_loop()
        ctx.services[SERVICE] = self
        self._task = self._loop.create_task(self._settle_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # --- lookups -------------------------------------------------------------------------------------------

    def key_lookup(self, topic: str, partition: int, key: bytes, limit: int) -> list[int]:
        """From a thread other than the broker's loop: the offsets holding ``key``, newest first, at most ``limit``.

        Raises :class:`LogError` (UNKNOWN_TOPIC_OR_PARTITION, INVALID_REQUEST) and ``TimeoutError``.
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError("the key_search service is not started")
        if threading.get_ident() == getattr(loop, "_thread_id", None):
            raise RuntimeError("key_lookup blocks; on the broker's loop, await KeySearch.find instead")
        fut = asyncio.run_coroutine_threadsafe(self.find(topic, partition, key, limit), loop)
        try:
            return fut.result(KEY_LOOKUP_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"key lookup in {topic}-{partition} took over {KEY_LOOKUP_TIMEOUT_S} s") from None

    async def find(self, topic: str, partition: int, key: bytes, limit: int) -> list[int]:
        """On the broker's loop: as :meth:`key_lookup`."""
        if not 1 <= limit <= KEY_LOOKUP_LIMIT_MAX:
            raise LogError(ErrorCode.invalid_request, f"limit {limit} is outside [1, {KEY_LOOKUP_LIMIT_MAX}]")
        plog = self._log(topic, partition)
        backlog = plog.key_index_backlog()
        if backlog:
            self.sidecars_written += await asyncio.to_thread(PartitionLog.persist_key_indexes, backlog)
        await asyncio.to_thread(_prepare_active, plog)
        self.lookups += 1
        return plog.find_key(bytes(key), limit=limit)

    def _log(self, topic: str, partition: int) -> PartitionLog:
        assert self._logs is not None, "the key_search service is not started"
        plog = self._logs.log(topic, partition)
        if plog is None:
            raise LogError(ErrorCode.unknown_topic_or_partition, f"no partition {topic}-{partition}")
        return plog

    # --- background ----------------------------------------------------------------------------------------

    async def _settle_forever(self) -> None:
        while True:
            try:
                settled = await self.settle_one()
            except Exception:
                log.exception("settling key indexes failed; will retry")
                settled = False
            await asyncio.sleep(0 if settled else _IDLE_S)

    async def settle_one(self) -> bool:
        """Settle the oldest unsettled closed segment of one partition in a worker thread; False if none was.

        With none left, reads what active segments' indexes do not cover (after a restart). Sorting what appends
        queued is left to the first lookup (in a worker thread): sorting in the background as the hashes arrived
        made the broker spend ~70% more CPU per produced record, on keys nobody may ever search.
        """
        assert self._logs is not None
        if await self._settle_closed():
            return True
        for t in list(self._logs):
            for plog in list(t.logs):
                if plog.active.key_index.covered_bytes < plog.active.size:
                    await asyncio.to_thread(_prepare_active, plog)
        return False

    async def _settle_closed(self) -> bool:
        assert self._logs is not None
        for t in list(self._logs):
            for plog in list(t.logs):
                for seg in plog.key_index_backlog():
                    if (plog.dir, seg.base_offset) in self._stuck:
                        continue
                    self.sidecars_written += await asyncio.to_thread(PartitionLog.persist_key_indexes, [seg])
                    if not seg.key_index.settled and seg.key_index_alive():
                        self._stuck.add((plog.dir, seg.base_offset))
                    return True
        return False


def _prepare_active(plog: PartitionLog) -> None:
    """In a worker thread: read what the active segment's index does not cover yet (after a restart, the broker's
    own batches) and sort what appends queued, so the lookup on the loop has neither to do."""
    seg = plog.active
    try:
        seg.index_keys(closed=False)
        seg.key_index.fold()
    except (OSError, ValueError):
        pass  # rolled and deleted meanwhile; the lookup on the loop indexes what is left
