"""A writer in a process of its own, for the failover tests: ``python writer_proc.py BOOTSTRAP NAME BLOBS KEY``.

It joins the election, prints ``leader`` once elected, then puts ``Movie(KEY, "old-<n>")`` in a loop and prints
one line per write: ``ok <n> <version>`` or ``error <n> <exception class>``. SIGTERM ends it after the line of the
write under way, so its output never stops mid-line.
"""

from __future__ import annotations

import signal
import sys

from raw_support import Movie  # this directory is first on the path of a script run from it

from loosely.hollow.raw import Dataset, Writer


def main() -> None:
    bootstrap, name, blobs, key = sys.argv[1:5]
    ds = Dataset(name, [Movie], bootstrap_servers=bootstrap, blob_store=blobs, partitions=2)
    writer = Writer(ds, http_address="http://the-old-one", session_timeout_ms=6_000).start()
    if not writer.wait_for_leadership(60_000):
        sys.exit("not elected")
    print("leader", flush=True)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    n = 0
    while not stopping:
        n += 1
        try:
            print("ok", n, writer.put(Movie(int(key), f"old-{n}")).version, flush=True)
        except Exception as e:
            print("error", n, type(e).__name__, flush=True)
    writer.close()


if __name__ == "__main__":
    main()
