from __future__ import annotations

import contextlib
import struct

import cramjam
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loosely.protocol.compression import XERIAL_MAGIC, Codec, compress, decompress
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
