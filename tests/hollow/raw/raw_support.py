"""What the read-after-write Hollow tests share: the data model, waiting, and a writer process for the failover
tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from loosely.hollow.api import FilesystemBlobStore
from loosely.hollow.core import INLINE, hollow_type
from loosely.hollow.raw import Dataset, NotLeaderError, Writer, WriteResult

__all__ = [
    "Actor",
    "Movie",
    "lines_until",
    "put_as_leader",
    "start_writer_process",
    "wait_until",
]


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def put_as_leader(writer: Writer, record: object, timeout_s: float = 60.0) -> WriteResult:
    """Put ``record`` once ``writer`` leads. A writer learns it was fenced only when it next writes (as a Kafka
    producer does), so a refused put is retried until the writer is elected again."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert writer.wait_for_leadership(int(max(deadline - time.monotonic(), 0) * 1000)), "never elected again"
        try:
            return writer.put(record)
        except NotLeaderError:
            assert time.monotonic() < deadline, "never elected again"


@hollow_type(primary_key=("id",))
@dataclass
class Movie:
    id: int
    title: Annotated[str, INLINE]
    year: int = 0


@hollow_type(primary_key=("name", "country"))
@dataclass
class Actor:
    name: str
    country: str
    movies: list[int]


def start_writer_process(dataset: Dataset, key: int) -> subprocess.Popen[str]:
    store = dataset.blob_store
    assert isinstance(store, FilesystemBlobStore)
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("writer_proc.py")), dataset.bootstrap_servers, dataset.name,
         str(store.path), str(key)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "leader"
    return proc


def lines_until(proc: subprocess.Popen[str], prefix: str) -> list[str]:
    assert proc.stdout is not None
    lines = []
    while True:
        line = proc.stdout.readline()
        assert line, f"the writer process ended without printing {prefix!r}"
        lines.append(line.split())
        if line.startswith(prefix):
            return lines
