"""Length-prefixed framing of the Kafka protocol, sans-IO.

Theory of operation
-------------------
Every Kafka request and response is ``int32 size`` followed by ``size`` bytes. :class:`FrameReader` is fed
whatever bytes the transport delivers (any split, any number of frames at once) and hands back complete frames.
The size prefix is checked *before* anything is allocated for the body: a negative size or one above
``frame_bytes_max`` raises :class:`~loosely.protocol.errors.FrameError`, after which the reader refuses further
input (the stream position is lost, so the connection must be closed).

The buffer is a single ``bytearray`` with a read cursor; consumed bytes are dropped lazily, when the cursor has
passed half the buffer, so feeding ``n`` bytes costs ``O(n)`` amortised whatever the split. Nothing is allocated
from the declared size: the buffer grows only as bytes arrive, so a client that declares 100 MiB and sends 10 bytes
costs 10 bytes. :attr:`FrameReader.pending_frame_bytes` tells the caller the declared size of the frame in
progress as soon as its prefix is in, so the caller can budget for it (``queued.max.request.bytes``) and stop
reading before the bytes arrive. :meth:`FrameReader.release` drops the buffer when the connection ends, at once
rather than whenever the garbage collector breaks the connection's reference cycles.
"""

from __future__ import annotations

import struct
from typing import Final

from loosely.protocol.errors import FrameError

__all__ = ["FRAME_BYTES_MAX_DEFAULT", "SIZE", "FrameReader", "frame"]

SIZE: Final = struct.Struct(">i")
assert SIZE.size == 4

# Apache Kafka's socket.request.max.bytes default (100 MiB).
FRAME_BYTES_MAX_DEFAULT: Final = 104_857_600


class FrameReader:
    """Splits a byte stream into frames (the bytes after each size prefix).

    >>> r = FrameReader(frame_bytes_max=16)
    >>> r.feed(b"\\x00\\x00\\x00\\x02hi\\x00\\x00")
    >>> r.next_frame()
    b'hi'
    >>> r.next_frame() is None
    True
    >>> r.feed(b"\\x00\\x01!")
    >>> r.next_frame()
    b'!'
    """

    __slots__ = ("_buf", "_failed", "_pos", "frame_bytes_max")

    def __init__(self, frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT) -> None:
        if frame_bytes_max <= 0:
            raise ValueError(f"frame_bytes_max must be positive, got {frame_bytes_max}")
        self.frame_bytes_max = frame_bytes_max
        self._buf = bytearray()
        self._pos = 0
        self._failed = False

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._failed:
            raise FrameError("the stream already failed; close the connection")
        self._buf += data

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf) - self._pos

    @property
    def pending_frame_bytes(self) -> int | None:
        """The declared size of the next frame once its prefix is in (None before); raises on a bad prefix.

        >>> r = FrameReader(frame_bytes_max=16)
        >>> r.feed(b"\\x00\\x00")
        >>> r.pending_frame_bytes is None
        True
        >>> r.feed(b"\\x00\\x05ab")
        >>> r.pending_frame_bytes
        5
        """
        if len(self._buf) - self._pos < 4:
            return None
        (size,) = SIZE.unpack_from(self._buf, self._pos)
        if size < 0:
            self._failed = True
            raise FrameError(f"negative frame size {size}")
        if size > self.frame_bytes_max:
            self._failed = True
            raise FrameError(f"frame of {size} bytes is over the limit of {self.frame_bytes_max} bytes")
        return int(size)

    def release(self) -> None:
        """Drop everything buffered and refuse further input (the connection is gone)."""
        self._buf = bytearray()
        self._pos = 0
        self._failed = True

    def next_frame(self) -> bytes | None:
        """The next complete frame, or None when more bytes are needed."""
        size = self.pending_frame_bytes
        if size is None:
            return None
        buf = self._buf
        pos = self._pos
        end = pos + 4 + size
        if len(buf) < end:
            return None
        with memoryview(buf) as view:  # one copy of the frame, not two (a bytearray slice would copy first)
            out = view[pos + 4 : end].tobytes()
        if end == len(buf):
            buf.clear()
            self._pos = 0
        elif end > len(buf) // 2:
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
        return out


def frame(payload: bytes | bytearray | memoryview) -> bytes:
    """``payload`` with its size prefix.

    >>> frame(b"abc")
    b'\\x00\\x00\\x00\\x03abc'
    """
    return SIZE.pack(len(payload)) + bytes(payload)
