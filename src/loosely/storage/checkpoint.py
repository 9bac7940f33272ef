"""Kafka's offset checkpoint files (``recovery-point-offset-checkpoint``, ``log-start-offset-checkpoint``,
``cleaner-offset-checkpoint``), written atomically.

Format (text, one item per line)::

    0                       version
    2                       number of entries
    my-topic 0 1234         topic, partition, offset
    my-topic 1 99

A file that does not parse is treated as absent: every offset it held falls back to the safe value (recover
from the start of the log, keep everything, clean everything), never to a guess.
"""

from __future__ import annotations

import os

from loosely.protocol.names import TopicPartition
from loosely.storage.fs import FileSystem

__all__ = ["read_checkpoint", "write_checkpoint"]


def write_checkpoint(fs: FileSystem, path: str, offsets: dict[TopicPartition, int]) -> None:
    lines = ["0", str(len(offsets))]
    lines += [f"{t} {p} {o}" for (t, p), o in sorted(offsets.items())]
    data = ("\n".join(lines) + "\n").encode()
    # Before the write: the file reads back as exactly these offsets (a topic name with a line break would write a
    # file that parses as something else or as nothing).
    assert _parse(data) == offsets, f"{path}: {offsets!r} does not survive the checkpoint format"
    fs.write_atomic(path, data)  # the other side: write_atomic checks the length it wrote before the rename


def read_checkpoint(fs: FileSystem, path: str) -> dict[TopicPartition, int]:
    if not fs.exists(path):
        return {}
    try:
        return _parse(fs.read_file(path))
    except OSError:
        return {}


def _parse(data: bytes) -> dict[TopicPartition, int]:
    """The offsets of a checkpoint file; empty when it does not parse (see the module header)."""
    try:
        lines = data.decode().splitlines()
        if lines[0] != "0":
            return {}
        n = int(lines[1])
        out: dict[TopicPartition, int] = {}
        for line in lines[2 : 2 + n]:
            t, p, o = line.rsplit(" ", 2)
            out[TopicPartition(t, int(p))] = int(o)
        if len(out) != n:
            return {}
        return out
    except (IndexError, ValueError, UnicodeDecodeError):
        return {}


def checkpoint_path(data_dir: str, name: str) -> str:
    return os.path.join(data_dir, name)
