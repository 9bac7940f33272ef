"""Reading the changes topic: a read-committed tail that knows how far it has read, control records included.

A transactional write leaves a commit marker after its records, so "the offset after the last record read" stops
short of the high watermark forever once writes pause. The tail therefore also takes the consumer's position after
each poll: librdkafka moves it past a control record (commit or abort marker) when the fetch that carries the
marker is handled, without handing the marker to the application. ``reached`` per partition is the next offset the
tail will read; everything before it has been seen (or was a marker, or belongs to an aborted transaction, which
read-committed hides).

The partition-EOF events (``enable.partition.eof``) say the same, but late: librdkafka sends one only when a fetch
comes back empty at the high watermark, which is ``fetch.wait.max.ms`` after the marker when the marker came in a
fetch of its own (measured: 500 ms, every time, on both brokers). A strong read right after a write then waited
for that empty fetch.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Final

from loosely.hollow.api import BlobStoreUnavailableError
from loosely.hollow.raw._dataset import Dataset

__all__ = ["ChangeTail"]

OFFSET_BEGINNING: Final = -2
ASK_ATTEMPT_S: Final = 2.0  # one watermark query; a leader that died takes a new client to forget (see below)

# a change: (partition, offset, key bytes, value bytes or None for a tombstone)
Apply = Callable[[int, int, bytes, bytes | None], None]


class ChangeTail:
    """A consumer of ``dataset.changes_topic`` (no group: partitions assigned by hand) feeding ``apply``.

    Not thread-safe by itself: one thread calls :meth:`poll`; :attr:`reached` may be read from any thread (it is
    replaced, never mutated).
    """

    def __init__(self, dataset: Dataset, apply: Apply, start: Mapping[int, int] | None = None,
                 *, name: str = "tail") -> None:
        from confluent_kafka import Consumer, KafkaError, TopicPartition  # noqa: PLC0415

        self.dataset = dataset
        self._apply = apply
        self._eof_code = KafkaError._PARTITION_EOF
        self._consumer = Consumer(dataset.config(**{
            "group.id": f"raw-{name}-{dataset.name}",  # never joins: the partitions are assigned by hand
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            # Kafka's default. Both brokers answer a parked read_committed fetch when the commit marker lands
            # (tests/broker/test_api_semantics.py), so a shorter wait buys no latency (measured: none at 10 ms)
            # and costs every client ~100 empty fetches a second on the broker while writes pause
            "fetch.wait.max.ms": 500,
            "client.id": f"raw-{name}",
        }))
        start = dict(start or {})
        self.reached: dict[int, int] = {p: max(0, start.get(p, 0)) for p in range(dataset.partitions)}
        self._consumer.assign([TopicPartition(dataset.changes_topic, p, start.get(p, OFFSET_BEGINNING))
                               for p in range(dataset.partitions)])
        self._tp = TopicPartition
        self._assigned = [TopicPartition(dataset.changes_topic, p) for p in range(dataset.partitions)]
        # watermark queries come from other threads while one polls: they get a client of their own (a query on
        # the polling consumer waits behind its fetches), one query at a time. It asks for the high watermark,
        # not the last stable offset: Kafka answers a commit before it writes the commit markers, so right after
        # a write is acknowledged the LSO may still be below it; the HW never is.
        self._ask_config = dataset.config(**{"group.id": f"raw-{name}-{dataset.name}", "client.id": f"raw-{name}-ends",
                                             "isolation.level": "read_uncommitted"})
        self._ask = Consumer(self._ask_config)
        self._new_consumer = Consumer
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.attached = True  # fetching; see detach()

    def poll(self, timeout_s: float, max_messages: int = 500) -> int:
        """Read what has arrived (waiting up to ``timeout_s`` for the first record); returns how many records."""
        first = self._consumer.poll(timeout_s)  # consume() would wait for all max_messages or the timeout
        msgs = [] if first is None else [first, *self._consumer.consume(max_messages - 1, 0)]
        reached = dict(self.reached)
        n = 0
        for msg in msgs:
            err = msg.error()
            p: int = msg.partition() or 0
            off: int = msg.offset() or 0
            if err is not None:
                if err.code() == self._eof_code:
                    reached[p] = max(reached[p], off)
                else:
                    self.last_error = str(err)
                continue
            self._apply(p, off, msg.key() or b"", msg.value())
            reached[p] = max(reached[p], off + 1)
            n += 1
        if self.attached:  # past the markers the poll went over (a poll that returned nothing may have)
            for tp in self._consumer.position(self._assigned):  # an unknown position is negative
                reached[tp.partition] = max(reached[tp.partition], tp.offset)
        self.reached = reached
        return n

    def detach(self) -> None:
        """Stop fetching, keeping :attr:`reached`: the elected writer while it leads, which knows every write of
        its term from its own commits, so the broker need not send each record back to it. :meth:`attach` goes
        on from there (or further)."""
        if self.attached:
            self._consumer.unassign()
            self.attached = False

    def attach(self, positions: Mapping[int, int]) -> None:
        """Fetch again, each partition from ``positions`` where that is past :attr:`reached` (the records
        between were seen another way), else from where :meth:`detach` left it."""
        if self.attached:
            return
        start = {p: max(self.reached.get(p, 0), positions.get(p, 0)) for p in range(self.dataset.partitions)}
        self._consumer.assign([self._tp(self.dataset.changes_topic, p, o) for p, o in start.items()])
        self.reached = start
        self.attached = True

    def high_watermarks(self, timeout_ms: int) -> dict[int, int]:
        """The end of each partition (high watermark) as the broker says now: every acknowledged write is below
        it. Reaching it means the open transactions below it are settled too (read-committed reads stop at the
        last open one). :class:`BlobStoreUnavailableError` when the broker does not answer in time."""
        deadline = time.monotonic() + timeout_ms / 1000
        out: dict[int, int] = {}
        last = "no answer"
        while len(out) < self.dataset.partitions:
            p = len(out)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BlobStoreUnavailableError(f"{self.dataset.changes_topic}[{p}]: {last} (for {timeout_ms} ms)")
            try:
                with self._lock:
                    _, high = self._ask.get_watermark_offsets(self._tp(self.dataset.changes_topic, p),
                                                              timeout=min(remaining, ASK_ATTEMPT_S), cached=False)
            except Exception as e:  # KafkaException: broker down, restarting, or a leader moving: ask again
                last = str(e)
                with self._lock:  # a client that has no partitions keeps asking a dead leader: start afresh
                    self._ask.close()
                    self._ask = self._new_consumer(self._ask_config)
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                continue
            out[p] = high
        return out

    def caught_up(self, ends: Mapping[int, int]) -> bool:
        reached = self.reached
        return all(reached.get(p, 0) >= o for p, o in ends.items())

    def read_to(self, ends: Mapping[int, int], timeout_ms: int) -> None:
        """Poll until every partition has been read to ``ends``; :class:`TimeoutError` after ``timeout_ms``."""
        deadline = time.monotonic() + timeout_ms / 1000
        while not self.caught_up(ends):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.dataset.changes_topic}: read {self.reached}, not {dict(ends)}, "
                                   f"in {timeout_ms} ms")
            self.poll(0.05)

    def seek(self, positions: Mapping[int, int]) -> None:
        """Jump forward (a newly loaded version covers up to ``positions``)."""
        moves = {p: o for p, o in positions.items() if o > self.reached.get(p, 0)}
        if not moves:
            return
        from confluent_kafka import KafkaException  # noqa: PLC0415

        for p, o in moves.items():
            try:
                self._consumer.seek(self._tp(self.dataset.changes_topic, p, o))
            except KafkaException:  # not yet fetching that partition: re-assign from there
                self._consumer.incremental_unassign([self._tp(self.dataset.changes_topic, p)])
                self._consumer.incremental_assign([self._tp(self.dataset.changes_topic, p, o)])
        self.reached = {**self.reached, **moves}

    def close(self) -> None:
        for c in (self._consumer, self._ask):
            with contextlib.suppress(RuntimeError):  # closed already
                c.close()
