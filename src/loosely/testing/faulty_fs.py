"""A filesystem that fails on purpose, for storage crash tests.

:class:`FaultyFileSystem` wraps :class:`loosely.storage.fs.OsFileSystem`. A seeded random source decides which
operations fail; a failing ``append`` may first write a random prefix of its data (a *torn write*, as a crash in
the middle of a ``write`` leaves). After :meth:`FaultyFileSystem.crash` every operation raises, until the test
reopens the data directory with a fresh filesystem, which is exactly what a restarted process sees.

For tests of one failure at a time, :meth:`FaultyFileSystem.fail` makes chosen operations on chosen paths raise a
chosen ``errno`` (``ENOSPC`` for a full disk, ``EIO`` for a failing one) every time, optionally after writing part
of the data as a full disk does, until :meth:`FaultyFileSystem.heal`; the process does not "crash".
"""

from __future__ import annotations

import errno
import os
import random
from dataclasses import dataclass

from loosely.storage.fs import File, FileSystem, OsFileSystem

__all__ = ["FaultyFileSystem", "InjectedFault"]


class InjectedFault(OSError):
    """An I/O error the test asked for."""


@dataclass(frozen=True, slots=True)
class _Rule:
    operations: frozenset[str]
    path_contains: str
    error: int
    partial: bool  # an append writes half its data before failing (a short write on a full disk)


class _FaultyFile:
    def __init__(self, inner: File, fs: FaultyFileSystem) -> None:
        self._inner = inner
        self._fs = fs

    @property
    def path(self) -> str:
        return self._inner.path

    def size(self) -> int:
        return self._inner.size()

    def append(self, data: bytes | bytearray | memoryview) -> None:
        rule = self._fs._rule("append", self.path)
        if rule is not None:
            if rule.partial and len(data) > 1:
                self._inner.append(bytes(data)[: len(data) // 2])
            self._fs._raise(rule, "append", self.path)
        self._fs._maybe_fail("append", self.path)
        if self._fs._roll(self._fs.torn_write_probability):
            cut = self._fs.rng.randrange(0, max(1, len(data)))
            self._inner.append(bytes(data)[:cut])
            self._fs.crash()
            raise InjectedFault(f"torn write to {self.path} after {cut} of {len(data)} bytes")
        self._inner.append(data)

    def pwrite(self, data: bytes | bytearray | memoryview, position: int) -> None:
        self._fs._maybe_fail("pwrite", self.path)
        self._inner.pwrite(data, position)

    def pread(self, length: int, position: int) -> bytes:
        self._fs._maybe_fail("pread", self.path)
        return self._inner.pread(length, position)

    def truncate(self, size: int) -> None:
        self._fs._maybe_fail("truncate", self.path)
        self._inner.truncate(size)

    def fsync(self) -> None:
        self._fs._maybe_fail("fsync", self.path)
        self._inner.fsync()

    def close(self) -> None:
        self._inner.close()

    def fileno(self) -> int:
        return self._inner.fileno()


class FaultyFileSystem:
    def __init__(
        self,
        seed: int,
        *,
        failure_probability: float = 0.0,
        torn_write_probability: float = 0.0,
        inner: FileSystem | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.failure_probability = failure_probability
        self.torn_write_probability = torn_write_probability
        self.inner: FileSystem = inner or OsFileSystem()
        self.crashed = False
        self.faults = 0
        self._rules: list[_Rule] = []

    def fail(self, *operations: str, error: int = errno.EIO, path_contains: str = "", partial: bool = False) -> None:
        """From now on, ``operations`` (``append``, ``pwrite``, ``pread``, ``truncate``, ``fsync``, ``open``,
        ``rename``, ``remove``, ``write_atomic``, ...) on paths containing ``path_contains`` raise ``error``.

        With ``partial`` a failing ``append`` first writes half its data, as a write that runs out of space does.
        """
        self._rules.append(_Rule(frozenset(operations), path_contains, error, partial))

    def heal(self) -> None:
        """Forget every :meth:`fail` rule: space is back, the disk works."""
        self._rules.clear()

    def _rule(self, op: str, path: str) -> _Rule | None:
        for r in self._rules:
            if op in r.operations and r.path_contains in path:
                return r
        return None

    def _raise(self, rule: _Rule, op: str, path: str) -> None:
        self.faults += 1
        raise InjectedFault(rule.error, f"{os.strerror(rule.error)} (injected into {op} {path})")

    def _roll(self, p: float) -> bool:
        return p > 0 and self.rng.random() < p

    def _maybe_fail(self, op: str, path: str) -> None:
        if self.crashed:
            raise InjectedFault(f"{op} {path}: the process has crashed")
        rule = self._rule(op, path)
        if rule is not None:
            self._raise(rule, op, path)
        if self._roll(self.failure_probability):
            self.faults += 1
            raise InjectedFault(f"{op} {path}: injected failure")

    def crash(self) -> None:
        """From now on every operation fails, as if the process had died."""
        self.crashed = True

    def open(self, path: str, *, create: bool = True) -> File:
        self._maybe_fail("open", path)
        return _FaultyFile(self.inner.open(path, create=create), self)

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def listdir(self, path: str) -> list[str]:
        return self.inner.listdir(path)

    def makedirs(self, path: str) -> None:
        self._maybe_fail("makedirs", path)
        self.inner.makedirs(path)

    def rename(self, src: str, dst: str) -> None:
        self._maybe_fail("rename", src)
        self.inner.rename(src, dst)

    def remove(self, path: str) -> None:
        self._maybe_fail("remove", path)
        self.inner.remove(path)

    def rmtree(self, path: str) -> None:
        self._maybe_fail("rmtree", path)
        self.inner.rmtree(path)

    def fsync_dir(self, path: str) -> None:
        self._maybe_fail("fsync_dir", path)
        self.inner.fsync_dir(path)

    def read_file(self, path: str) -> bytes:
        self._maybe_fail("read_file", path)
        return self.inner.read_file(path)

    def write_atomic(self, path: str, data: bytes, *, durable: bool = True) -> None:
        self._maybe_fail("write_atomic", path)
        self.inner.write_atomic(path, data, durable=durable)
