"""The storage engine: a synchronous, durable partition log in Apache Kafka's on-disk format. No asyncio, no sockets;
the clock and the filesystem are injected.

* :mod:`.manager`: every log of a data directory (topics, partitions, configs, ids, checkpoints); :mod:`.dirlock`:
  one process per data directory.
* :mod:`.log`: one partition's log of :mod:`.segment` s, each with its :mod:`.index` es and its :mod:`.keyindex`
  (record keys by hash, for key search); :mod:`.verify`: the one
  walk that checks stored batches and indexes (recovery, ``loosely log verify``, the scrubber).
* :mod:`.retention` (pure roll and retention decisions), :mod:`.cleaner` (compaction), :mod:`.checkpoint` (offset
  checkpoint files), :mod:`.config` (topic configuration), :mod:`.faults` (disk errors answered and counted).
* :mod:`.fs` and :mod:`.clock`: the injected filesystem and clock.
"""

__all__ = [
    "checkpoint",
    "cleaner",
    "clock",
    "config",
    "dirlock",
    "faults",
    "fs",
    "index",
    "keyindex",
    "log",
    "manager",
    "retention",
    "segment",
    "verify",
]
