from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loosely.protocol.errors import FrameError
from loosely.protocol.framing import FrameReader, frame


def drain(r: FrameReader) -> list[bytes]:
    out = []
    while (f := r.next_frame()) is not None:
        out.append(f)
    return out


PAYLOADS = st.lists(st.binary(max_size=300), max_size=20)


@given(PAYLOADS)
def test_whole_stream_at_once(payloads: list[bytes]) -> None:
    r = FrameReader(frame_bytes_max=1000)
    r.feed(b"".join(frame(p) for p in payloads))
    assert drain(r) == payloads
    assert r.buffered_bytes == 0


@given(PAYLOADS)
def test_one_byte_at_a_time(payloads: list[bytes]) -> None:
    r = FrameReader(frame_bytes_max=1000)
    got: list[bytes] = []
    for b in b"".join(frame(p) for p in payloads):
        r.feed(bytes([b]))
        got += drain(r)
    assert got == payloads


@given(PAYLOADS, st.binary(min_size=1, max_size=3))
def test_trailing_partial_prefix_waits(payloads: list[bytes], tail: bytes) -> None:
    r = FrameReader(frame_bytes_max=1000)
    r.feed(b"".join(frame(p) for p in payloads) + tail)
    assert drain(r) == payloads
    assert r.buffered_bytes == len(tail)


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=10), st.data())
def test_arbitrary_splits(sizes: list[int], data: st.DataObject) -> None:
    payloads = [bytes([i % 256]) * n for i, n in enumerate(sizes)]
    stream = b"".join(frame(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    r = FrameReader(frame_bytes_max=100)
    got: list[bytes] = []
    prev = 0
    for c in [*cuts, len(stream)]:
        r.feed(stream[prev:c])
        prev = c
        got += drain(r)
    assert got == payloads


@pytest.mark.parametrize(("size", "ok"), [(99, True), (100, True), (101, False)])
def test_frame_limit_at_under_over(size: int, ok: bool) -> None:
    r = FrameReader(frame_bytes_max=100)
    r.feed(struct.pack(">i", size))
    if ok:
        assert r.next_frame() is None  # waiting for the body, nothing allocated
        r.feed(b"x" * size)
        assert r.next_frame() == b"x" * size
    else:
        with pytest.raises(FrameError, match="over the limit"):
            r.next_frame()


def test_negative_size_is_an_error_not_an_allocation() -> None:
    r = FrameReader()
    r.feed(struct.pack(">i", -1))
    with pytest.raises(FrameError, match="negative"):
        r.next_frame()
    with pytest.raises(FrameError):
        r.feed(b"more")


def test_zero_length_frame() -> None:
    r = FrameReader()
    r.feed(b"\0\0\0\0")
    assert r.next_frame() == b""


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FrameReader(frame_bytes_max=0)


@given(PAYLOADS)
def test_pending_frame_bytes_is_known_from_the_prefix_on(payloads: list[bytes]) -> None:
    """Fed one byte at a time, the declared size shows as soon as the 4-byte prefix is in, and not before."""
    r = FrameReader(frame_bytes_max=1000)
    got: list[bytes] = []
    for p in payloads:
        for i, b in enumerate(frame(p)):
            r.feed(bytes([b]))
            assert r.pending_frame_bytes == (None if i < 3 else len(p))
            got += drain(r)
        assert r.pending_frame_bytes is None
    assert got == payloads


@pytest.mark.parametrize(("size", "ok"), [(99, True), (100, True), (101, False), (-1, False)])
def test_pending_frame_bytes_checks_the_prefix(size: int, ok: bool) -> None:
    r = FrameReader(frame_bytes_max=100)
    r.feed(struct.pack(">i", size))
    if ok:
        assert r.pending_frame_bytes == size
    else:
        with pytest.raises(FrameError):
            r.pending_frame_bytes  # noqa: B018 - the property raises
        with pytest.raises(FrameError, match="already failed"):
            r.feed(b"x")


def test_nothing_is_allocated_for_a_declared_size() -> None:
    """A 100 MiB declaration followed by 10 bytes costs bytes, not mebibytes; release() drops what was held."""
    import tracemalloc

    r = FrameReader()
    tracemalloc.start()
    try:
        r.feed(struct.pack(">i", 100 * 1024 * 1024))
        for _ in range(10):
            r.feed(b"x")
            assert r.next_frame() is None
        _, peak = tracemalloc.get_traced_memory()
        held = r.buffered_bytes
        r.release()
        assert r.buffered_bytes == 0
    finally:
        tracemalloc.stop()
    assert held == 14
    assert peak < 64 * 1024
    with pytest.raises(FrameError):
        r.feed(b"x")
