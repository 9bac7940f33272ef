from __future__ import annotations

import contextlib
import gzip
import io
import struct
import zlib

import cramjam
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loosely.protocol.compression import XERIAL_MAGIC, Codec, compress, decompress, decompress_bounded
from loosely.protocol.errors import CorruptRecordError, UnsupportedCompressionError


@pytest.mark.parametrize("codec", list(Codec))
@given(data=st.binary(max_size=5000))
def test_round_trip(codec: Codec, data: bytes) -> None:
    assert decompress(codec, compress(codec, data), 1 << 20) == data


def xerial(data: bytes, chunk: int) -> bytes:
    out = struct.pack(">8sii", XERIAL_MAGIC, 1, 1)
    for i in range(0, len(data), chunk):
        block = bytes(cramjam.snappy.compress_raw(data[i : i + chunk]))
        out += struct.pack(">i", len(block)) + block
    return out


@given(data=st.binary(max_size=5000), chunk=st.integers(1, 2000))
def test_xerial_framed_snappy_as_the_java_client_writes_it(data: bytes, chunk: int) -> None:
    assert decompress(Codec.SNAPPY, xerial(data, chunk), 1 << 20) == data


def test_zstd_frame_without_content_size() -> None:
    c = cramjam.zstd.Compressor()
    c.compress(b"streamed " * 100)
    framed = bytes(c.finish())
    assert decompress(Codec.ZSTD, framed, 1 << 20) == b"streamed " * 100


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.SNAPPY, Codec.LZ4, Codec.ZSTD])
def test_output_limit_at_and_over(codec: Codec) -> None:
    blob = compress(codec, b"a" * 1000)
    assert decompress(codec, blob, 1000) == b"a" * 1000
    with pytest.raises(CorruptRecordError, match="limit"):
        decompress(codec, blob, 999)


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.SNAPPY, Codec.LZ4, Codec.ZSTD])
@given(garbage=st.binary(max_size=200))
def test_garbage_raises_our_error(codec: Codec, garbage: bytes) -> None:
    with contextlib.suppress(CorruptRecordError):
        decompress(codec, garbage, 1 << 16)


def test_unknown_codec_id() -> None:
    with pytest.raises(UnsupportedCompressionError):
        decompress(7, b"", 10)


def test_truncated_xerial_chunk() -> None:
    blob = xerial(b"hello world" * 10, 50)
    with pytest.raises(CorruptRecordError):
        decompress(Codec.SNAPPY, blob[:-3], 1 << 16)


BOMB_INFLATED_BYTES = 256 << 20


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.SNAPPY, Codec.LZ4, Codec.ZSTD])
def test_a_bomb_is_never_inflated_past_the_limit(codec: Codec) -> None:
    """256 MiB of zeros against a 1 MiB limit: the prefix returned is at most the limit, and Python's peak
    allocation stays a few MiB (streaming decoders stop one byte over the limit)."""
    import tracemalloc

    blob = compress(codec, bytes(BOMB_INFLATED_BYTES if codec is not Codec.SNAPPY else 32 << 20))
    tracemalloc.start()
    try:
        out, over = decompress_bounded(codec, blob, 1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert over
    assert len(out) <= 1 << 20
    assert peak < len(blob) + (8 << 20)


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.SNAPPY, Codec.LZ4, Codec.ZSTD])
def test_bounded_at_under_and_over(codec: Codec) -> None:
    blob = compress(codec, b"b" * 4096)
    assert decompress_bounded(codec, blob, 4097) == (b"b" * 4096, False)
    assert decompress_bounded(codec, blob, 4096) == (b"b" * 4096, False)
    out, over = decompress_bounded(codec, blob, 4095)
    assert over and len(out) <= 4095


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.LZ4, Codec.ZSTD])
def test_cut_short_or_followed_by_bytes_is_corrupt(codec: Codec) -> None:
    blob = compress(codec, bytes(range(256)) * 64)
    with pytest.raises(CorruptRecordError):
        decompress_bounded(codec, blob[:-5], 1 << 20)
    with pytest.raises(CorruptRecordError):
        decompress_bounded(codec, blob + b"\x00\x01", 1 << 20)


def test_zstd_skippable_and_multiple_frames() -> None:
    frames = compress(Codec.ZSTD, b"one") + struct.pack("<II", 0x184D2A50, 3) + b"abc" + compress(Codec.ZSTD, b"two")
    assert decompress_bounded(Codec.ZSTD, frames, 100) == (b"onetwo", False)


@given(data=st.binary(max_size=5000), level=st.integers(0, 9))
def test_gzip_as_other_writers_make_it(data: bytes, level: int) -> None:
    # Producers gzip with zlib (Java's GZIPOutputStream, librdkafka), Python's gzip (a header with a file name and
    # mtime) or a bare zlib stream; all inflate to the same bytes through ISA-L.
    named = io.BytesIO()
    with gzip.GzipFile(filename="batch.json", mode="wb", fileobj=named, mtime=1, compresslevel=level) as f:
        f.write(data)
    for blob in (gzip.compress(data, compresslevel=level), zlib.compress(data, level), named.getvalue()):
        assert decompress(Codec.GZIP, blob, 1 << 20) == data


def test_gzip_garbage_is_corrupt_not_a_crash() -> None:
    with pytest.raises(CorruptRecordError, match="cannot decompress GZIP"):
        decompress_bounded(Codec.GZIP, b"\x1f\x8b\x08\x00garbage" * 3, 1 << 20)
    with pytest.raises(CorruptRecordError, match="cannot decompress GZIP"):
        decompress_bounded(Codec.GZIP, b"not gzip at all", 1 << 20)
