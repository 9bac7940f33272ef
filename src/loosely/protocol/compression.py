"""Record batch compression codecs: gzip, snappy (raw and xerial-framed), lz4 (frame format), zstd.

The codec id lives in bits 0-2 of a v2 batch's attributes. Compression covers the records section only
(everything after the 61-byte batch header). The codecs come from ``cramjam`` (one wheel for all four); LZ4 frames
are written with the ``lz4`` package, which makes the independent-block frames Kafka's Java reader requires. gzip
decompression uses the standard library's ``zlib`` because it can stop at an output limit, which guards against
decompression bombs.

Snappy has two framings in the wild: librdkafka writes a raw snappy block, the Java client writes *xerial* framing
(``SnappyOutputStream``): an 16-byte header ``82 'SNAPPY' 00 | int32 version | int32 min compatible version``
followed by chunks of ``int32 compressed length | raw snappy block``. Readers must accept both; we write raw.

zstd frames written by streaming compressors carry no content size, so decompression must not rely on it.
"""

from __future__ import annotations

import enum
import struct
import zlib
from typing import Final

import cramjam
import lz4.frame

from loosely.protocol.errors import CorruptRecordError, UnsupportedCompressionError

__all__ = ["XERIAL_MAGIC", "Codec", "compress", "decompress"]


class Codec(enum.IntEnum):
    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4

    @classmethod
    def parse(cls, name: str) -> Codec:
        """The codec for a Kafka ``compression.type`` name.

        >>> Codec.parse("zstd")
        <Codec.ZSTD: 4>
        """
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown compression codec {name!r}") from None


XERIAL_MAGIC: Final = b"\x82SNAPPY\x00"
_XERIAL_HEADER: Final = struct.Struct(">8sii")
_XERIAL_CHUNK: Final = struct.Struct(">i")
assert _XERIAL_HEADER.size == 16
assert _XERIAL_CHUNK.size == 4


def compress(codec: Codec, data: bytes | memoryview) -> bytes:
    if codec is Codec.NONE:
        return bytes(data)
    if codec is Codec.GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec is Codec.SNAPPY:
        return bytes(cramjam.snappy.compress_raw(data))
    if codec is Codec.LZ4:
        # Kafka's Java LZ4 reader accepts only frames of independent 64 KiB blocks without a content size, the
        # shape its own writer makes; cramjam writes linked blocks, which Apache Kafka refuses.
        return bytes(
            lz4.frame.compress(
                bytes(data), block_size=lz4.frame.BLOCKSIZE_MAX64KB, block_linked=False, store_size=False
            )
        )
    if codec is Codec.ZSTD:
        return bytes(cramjam.zstd.compress(data))
    raise UnsupportedCompressionError(f"unknown codec {codec}")


def decompress(codec: int, data: bytes | memoryview, output_bytes_max: int) -> bytes:
    """Decompress a batch's records section, refusing output over ``output_bytes_max`` bytes.

    Raises :class:`CorruptRecordError` for data the codec can't decode (or that decodes to more than the limit)
    and :class:`UnsupportedCompressionError` for an unknown codec id.
    """
    try:
        if codec == Codec.NONE:
            out = bytes(data)
        elif codec == Codec.GZIP:
            out = _gunzip(data, output_bytes_max)
        elif codec == Codec.SNAPPY:
            out = _unsnappy(bytes(data), output_bytes_max)
        elif codec == Codec.LZ4:
            out = bytes(cramjam.lz4.decompress(data))
        elif codec == Codec.ZSTD:
            out = bytes(cramjam.zstd.decompress(data))
        else:
            raise UnsupportedCompressionError(f"unknown compression codec id {codec}")
    except (cramjam.DecompressionError, zlib.error, ValueError, struct.error) as e:
        raise CorruptRecordError(f"cannot decompress {Codec(codec).name} data: {e}") from e
    if len(out) > output_bytes_max:
        raise CorruptRecordError(f"decompressed size {len(out)} is over the limit of {output_bytes_max} bytes")
    return out


def _gunzip(data: bytes | memoryview, output_bytes_max: int) -> bytes:
    d = zlib.decompressobj(wbits=47)  # 32 + 15: accept gzip and zlib headers
    out = d.decompress(data, output_bytes_max + 1)
    if len(out) > output_bytes_max:
        raise CorruptRecordError(f"gzip output is over the limit of {output_bytes_max} bytes")
    if not d.eof:
        raise CorruptRecordError("truncated gzip stream")
    return out


def _unsnappy(data: bytes, output_bytes_max: int) -> bytes:
    if not data.startswith(XERIAL_MAGIC):
        if cramjam.snappy.decompress_raw_len(data) > output_bytes_max:
            raise CorruptRecordError(f"snappy output is over the limit of {output_bytes_max} bytes")
        return bytes(cramjam.snappy.decompress_raw(data))
    if len(data) < _XERIAL_HEADER.size:
        raise CorruptRecordError("truncated xerial snappy header")
    pos = _XERIAL_HEADER.size
    parts: list[bytes] = []
    total = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise CorruptRecordError("truncated xerial snappy chunk length")
        (n,) = _XERIAL_CHUNK.unpack_from(data, pos)
        pos += 4
        if n < 0 or pos + n > len(data):
            raise CorruptRecordError(f"xerial snappy chunk of {n} bytes runs past the end")
        chunk = data[pos : pos + n]
        pos += n
        total += cramjam.snappy.decompress_raw_len(chunk)
        if total > output_bytes_max:
            raise CorruptRecordError(f"snappy output is over the limit of {output_bytes_max} bytes")
        parts.append(bytes(cramjam.snappy.decompress_raw(chunk)))
    return b"".join(parts)
