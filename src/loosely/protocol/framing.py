"""Length-prefixed framing of the Kafka protocol, sans-IO.

Theory of operation
-------------------
Every Kafka request and response is ``int32 size`` followed by ``size`` bytes. :class:`FrameReader` is fed
whatever bytes the transport delivers (any split, any number of frames at once) and hands back complete frames.
The size prefix is checked *before* anything is allocated for the body: a negative size or one above
``frame_bytes_max`` raises :class:`~loosely.protocol.errors.FrameError`, after which the reader refuses further
input (the stream position is lost, so the connection must be closed).

The buffer is a single ``bytearray`` with a read cursor; consumed bytes are dropped lazily, when the cursor has
passed half the buffer, so feeding ``n`` bytes costs ``O(n)`` amortised whatever the split.
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

    def next_frame(self) -> bytes | None:
        """The next complete frame, or None when more bytes are needed."""
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < 4:
            return None
        (size,) = SIZE.unpack_from(buf, pos)
        if size < 0:
            self._failed = True
            raise FrameError(f"negative frame size {size}")
        if size > self.frame_bytes_max:
            self._failed = True
            raise FrameError(f"frame of {size} bytes is over the limit of {self.frame_bytes_max} bytes")
        end = pos + 4 + size
        if len(buf) < end:
            return None
        out = bytes(buf[pos + 4 : end])
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
