"""A candidate producer in a process of its own, for the producer failover tests:
``python producer_proc.py BOOTSTRAP NAME BLOBS CYCLE_MS``.

It joins the producer election and prints one line per event, as it happens: ``leader`` when it publishes (elected
and the announced version restored), ``standby`` when it stops publishing, and ``announced <version>`` for each
version whose announcement landed on the log (printed only after the fenced write returned). SIGTERM closes it.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from raw_support import Actor, Movie  # this directory is first on the path of a script run from it

from loosely.hollow.api import Version
from loosely.hollow.raw import Dataset, RawProducer


def main() -> None:
    bootstrap, name, blobs, cycle_ms = sys.argv[1:5]
    ds = Dataset(name, [Movie, Actor], bootstrap_servers=bootstrap, blob_store=blobs, partitions=2)
    producer = RawProducer(ds, cycle_interval_ms=int(cycle_ms), session_timeout_ms=6_000)
    announcer: Any = producer._producer.announcer
    announce = announcer.announce

    def reporting(version: Version) -> None:
        announce(version)
        print("announced", version, flush=True)

    announcer.announce = reporting
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    producer.start()
    print("started", flush=True)
    leading = False
    while not stop.wait(0.02):
        if producer.is_leader() != leading:
            leading = not leading
            print("leader" if leading else "standby", flush=True)
    producer.close()


if __name__ == "__main__":
    main()
