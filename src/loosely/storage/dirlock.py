"""The data-directory lock: one process at a time writes a data directory.

Theory of operation
-------------------
Two brokers appending to the same segment interleave their batches and overwrite each other's bytes. Kafka
prevents this with a ``.lock`` file in every log directory; so do we. :meth:`DataDirLock.acquire` opens
``<data dir>/.lock`` and takes an exclusive, non-blocking ``flock`` on it, then writes the holder's PID into it
(for the message the next process prints, and for operators). The lock lives as long as the open file
description: :meth:`DataDirLock.release` closes it, and so does the kernel when the process dies, even by
``kill -9``, so a crash never leaves a stale lock behind (the file stays; its content is only informative).

``flock`` rather than ``fcntl``/``lockf`` record locks: those belong to the *process*, so a second open in the same
process would silently succeed (and closing any descriptor of the file would drop the lock). ``flock`` locks belong
to the open file description, so a second :class:`LogManager` on the same directory in the same process is refused
as well. The lock is advisory: it keeps out loosely processes, not ``rm``.

The lock bypasses the injected :class:`~loosely.storage.fs.FileSystem`: it is a property of the process and the
kernel, not of the bytes of the log, and a test's faulty filesystem must not make two brokers share a directory.
"""

from __future__ import annotations

import errno
import fcntl
import os
from typing import Final

__all__ = ["LOCK_FILE", "DataDirLock", "DataDirLockedError"]

LOCK_FILE: Final = ".lock"  # Kafka's name for the same file
# The holder's PID is a line of digits; reading more than this from a lock file is reading something else.
_PID_BYTES_MAX: Final = 32


class DataDirLockedError(OSError):
    """Another process (or another open in this process) holds the data directory's lock."""

    def __init__(self, data_dir: str, holder_pid: int | None) -> None:
        if holder_pid == os.getpid():
            why = f"data directory {data_dir} is already open in this process (PID {holder_pid})"
        else:
            who = f"process {holder_pid}" if holder_pid is not None else "another process"
            why = f"data directory {data_dir} is locked by {who}; is another loosely broker using it?"
        super().__init__(errno.EWOULDBLOCK, why)
        self.data_dir = data_dir
        self.holder_pid = holder_pid

    def __str__(self) -> str:
        return str(self.strerror)


class DataDirLock:
    """An exclusive lock on ``<data_dir>/.lock``, held from :meth:`acquire` to :meth:`release`.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> first = DataDirLock(d).acquire()
    >>> try:
    ...     DataDirLock(d).acquire()
    ... except DataDirLockedError as e:
    ...     e.holder_pid == os.getpid()
    True
    >>> first.release()
    >>> DataDirLock(d).acquire().release()
    """

    __slots__ = ("_fd", "data_dir", "path")

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.path = os.path.join(data_dir, LOCK_FILE)
        self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def acquire(self) -> DataDirLock:
        """Take the lock or raise :class:`DataDirLockedError` at once (never waits)."""
        assert not self.held, "acquire() twice on one DataDirLock"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise DataDirLockedError(self.data_dir, holder) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        try:
            pid = f"{os.getpid()}\n".encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, pid, 0)
        except OSError:
            # A full disk may refuse even these few bytes. The lock is what protects the directory; the PID only
            # improves the next process's message, which then says "another process".
            pass
        return self

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it); the file stays, as Kafka's does."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, _PID_BYTES_MAX, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
