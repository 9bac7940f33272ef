"""The filesystem, injected: the storage engine touches disk only through :class:`FileSystem` and :class:`File`.

The interface is the handful of calls a log needs, and no more: positional reads, appends, truncate, fsync,
and the directory operations that make checkpoints atomic (write a temporary file, fsync it, rename it over the
old one, fsync the directory). :class:`OsFileSystem` maps them onto ``os`` calls on raw file descriptors (no
userspace buffering: once :meth:`File.append` returns, the bytes are in the kernel and survive ``kill -9``).
``loosely.testing.FaultyFileSystem`` wraps it to inject torn writes, failed fsyncs and crashes in tests.
"""

from __future__ import annotations

import os
import shutil
from typing import Protocol

__all__ = ["File", "FileSystem", "OsFileSystem"]


class File(Protocol):
    @property
    def path(self) -> str: ...

    def size(self) -> int: ...

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at the end of the file."""
        ...

    def pwrite(self, data: bytes | bytearray | memoryview, position: int) -> None: ...

    def pread(self, length: int, position: int) -> bytes:
        """Up to ``length`` bytes at ``position`` (fewer at the end of the file)."""
        ...

    def truncate(self, size: int) -> None: ...

    def fsync(self) -> None: ...

    def close(self) -> None: ...

    def fileno(self) -> int: ...


class FileSystem(Protocol):
    def open(self, path: str, *, create: bool = True) -> File: ...

    def exists(self, path: str) -> bool: ...

    def listdir(self, path: str) -> list[str]: ...

    def makedirs(self, path: str) -> None: ...

    def rename(self, src: str, dst: str) -> None: ...

    def remove(self, path: str) -> None: ...

    def rmtree(self, path: str) -> None: ...

    def fsync_dir(self, path: str) -> None: ...

    def read_file(self, path: str) -> bytes: ...

    def write_atomic(self, path: str, data: bytes, *, durable: bool = True) -> None:
        """Replace ``path`` with ``data`` so that a crash leaves either the old or the new content. ``durable``
        (the default): on disk when it returns, through power loss; ``False``: in the kernel, through a crash of
        the process (``kill -9``) but not of the machine, like a log append without ``flush.messages``."""
        ...


class OsFile:
    __slots__ = ("_fd", "_path", "_size")

    def __init__(self, path: str, fd: int) -> None:
        self._path = path
        self._fd = fd
        self._size = os.fstat(fd).st_size

    @property
    def path(self) -> str:
        return self._path

    def size(self) -> int:
        return self._size

    def append(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        pos = self._size
        while view:
            n = os.pwrite(self._fd, view, pos)
            view = view[n:]
            pos += n
        self._size = pos

    def pwrite(self, data: bytes | bytearray | memoryview, position: int) -> None:
        view = memoryview(data)
        pos = position
        while view:
            n = os.pwrite(self._fd, view, pos)
            view = view[n:]
            pos += n
        self._size = max(self._size, pos)

    def pread(self, length: int, position: int) -> bytes:
        return os.pread(self._fd, length, position)

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        self._size = size

    def fsync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def fileno(self) -> int:
        return self._fd


class OsFileSystem:
    """The real filesystem."""

    __slots__ = ()

    def open(self, path: str, *, create: bool = True) -> File:
        flags = os.O_RDWR | (os.O_CREAT if create else 0) | getattr(os, "O_CLOEXEC", 0)
        return OsFile(path, os.open(path, flags, 0o644))

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def remove(self, path: str) -> None:
        os.remove(path)

    def rmtree(self, path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def write_atomic(self, path: str, data: bytes, *, durable: bool = True) -> None:
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
            # The other side of the write, before the rename makes it the file: it holds all of data, no more.
            assert os.fstat(fd).st_size == len(data), f"{tmp}: {os.fstat(fd).st_size} bytes written of {len(data)}"
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if durable:
            self.fsync_dir(os.path.dirname(path) or ".")
