"""A client whose broker goes away: eventual reads keep answering and say how stale they are, strong and
``after=`` reads fail with a clear error in bounded time, and all is well again when the broker is back.

The broker is stopped and started again on the same port and data directory, which only the embedded broker
lets a test do cheaply; what is checked is the client's behaviour, the same on any broker.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hollow.raw.raw_support import Movie, wait_until
from loosely.hollow.raw import ConsistencyTimeout, Dataset, RawClient, Token, Writer
from loosely.testing import embedded_broker, free_port


def test_reads_while_the_broker_is_down(tmp_path: Path) -> None:
    port = free_port()
    data = str(tmp_path / "broker")
    with embedded_broker(data_dir=data, port=port) as broker:
        ds = Dataset("down", [Movie], bootstrap_servers=broker.bootstrap_servers, blob_store=str(tmp_path / "b"))
        with Writer(ds) as writer:
            assert writer.wait_for_leadership(30_000)
            written = writer.put(Movie(1, "Heat"))
        client = RawClient(ds, timeout_ms=1_000, freshness_interval_ms=100).start()
        assert client.get(Movie, 1, after=written.token) == Movie(1, "Heat")
        wait_until(lambda: client.staleness_ms < 500)
    try:
        assert client.get(Movie, 1) == Movie(1, "Heat")  # eventual: from memory
        wait_until(lambda: client.staleness_ms > 1_500)
        assert client.get(Movie, 1) == Movie(1, "Heat")
        started = time.monotonic()
        with pytest.raises(ConsistencyTimeout, match="cannot ask the broker"):
            client.get(Movie, 1, consistency="strong")
        with pytest.raises(ConsistencyTimeout, match="not reached"):
            client.get(Movie, 1, after=Token({0: written.version + 5}))
        assert time.monotonic() - started < 5
        with embedded_broker(data_dir=data, port=port):
            assert client.get(Movie, 1, consistency="strong", timeout_ms=30_000) == Movie(1, "Heat")
            wait_until(lambda: client.staleness_ms < 1_000)
    finally:
        client.close()
