"""Record batch compression codecs: gzip, snappy (raw and xerial-framed), lz4 (frame format), zstd.

The codec id lives in bits 0-2 of a v2 batch's attributes. Compression covers the records section only
(everything after the 61-byte batch header). The codecs come from ``cramjam`` (one wheel for all four); LZ4 frames
are written with the ``lz4`` package, which makes the independent-block frames Kafka's Java reader requires.

Decompression never inflates past its output limit, for every codec (a batch of a few KiB can otherwise inflate to
gigabytes: a decompression bomb). Each codec streams and stops one byte over the limit: gzip through
``isal.isal_zlib``'s ``max_length`` (ISA-L behind zlib's interface, inflating about 2.5x faster than zlib, which
matters because the broker inflates every gzip batch it validates), lz4 through ``lz4.frame``'s ``max_length``,
zstd through ``zstandard``'s stream reader read in chunks, snappy by reading each raw block's declared length
before inflating it. The payload must also be consumed
exactly: a gzip stream, an lz4 frame or zstd frames with anything after them, or cut short, are corrupt.
:func:`decompress_bounded` reports "over the limit" as a flag next to the prefix it inflated, so a validator can
first look for a structural lie in that prefix (what Kafka, which streams, would report) before calling the batch
too large.

Snappy has two framings in the wild: librdkafka writes a raw snappy block, the Java client writes *xerial* framing
(``SnappyOutputStream``): an 16-byte header ``82 'SNAPPY' 00 | int32 version | int32 min compatible version``
followed by chunks of ``int32 compressed length | raw snappy block``. Readers must accept both; we write raw.

zstd frames written by streaming compressors carry no content size, so decompression must not rely on it. The
stream reader returns what it has when the input ends mid-frame, so :func:`_zstd_frames_end` walks the frame and
block headers (RFC 8878, section 3.1) to prove the input is whole frames and nothing else; that walk reads only
headers, one per 128 KiB block.
"""

from __future__ import annotations

import enum
import functools
import struct
import sys
from typing import TYPE_CHECKING, Any, Final, cast

from loosely.protocol.errors import CorruptRecordError, UnsupportedCompressionError

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["XERIAL_MAGIC", "Codec", "compress", "decompress", "decompress_bounded"]


# Each codec's library is imported the first time that codec is used, not with this module: a process that only
# ever reads lz4 batches (a view runner) then never maps cramjam's, zstandard's and isal's libraries, about 2 MiB of
# resident memory (measured 2026-12-07, docs/benchmarks.md, "Materialized views").
@functools.cache
def _cramjam() -> ModuleType:
    import cramjam  # noqa: PLC0415 - see above

    return cramjam


@functools.cache
def _lz4_frame() -> ModuleType:
    import lz4.frame  # noqa: PLC0415 - see above

    frame: ModuleType = lz4.frame
    return frame


@functools.cache
def _isal_zlib() -> ModuleType:
    from isal import isal_zlib  # noqa: PLC0415 - see above

    return isal_zlib


@functools.cache
def _zstd() -> ModuleType:
    import zstandard  # noqa: PLC0415 - see above

    return zstandard


@functools.cache
def _zstd_decompressor() -> Any:
    return _zstd().ZstdDecompressor()


def _codec_errors() -> tuple[type[Exception], ...]:
    """What the codec libraries imported so far raise for data they cannot decode (a library not imported yet has
    decoded nothing)."""
    out: list[type[Exception]] = [RuntimeError, ValueError, struct.error]
    if "cramjam" in sys.modules:
        out.append(_cramjam().DecompressionError)
    if "isal.isal_zlib" in sys.modules:
        # isal's stub declares its ``error`` class as an instance; it is the exception class its inflater raises.
        out.append(cast("type[Exception]", _isal_zlib().error))
    if "zstandard" in sys.modules:
        out.append(_zstd().ZstdError)
    return tuple(out)


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
        return bytes(_cramjam().gzip.compress(data))
    if codec is Codec.SNAPPY:
        return bytes(_cramjam().snappy.compress_raw(data))
    if codec is Codec.LZ4:
        # Kafka's Java LZ4 reader accepts only frames of independent 64 KiB blocks without a content size, the
        # shape its own writer makes; cramjam writes linked blocks, which Apache Kafka refuses.
        return bytes(
            _lz4_frame().compress(
                bytes(data), block_size=_lz4_frame().BLOCKSIZE_MAX64KB, block_linked=False, store_size=False
            )
        )
    if codec is Codec.ZSTD:
        return bytes(_cramjam().zstd.compress(data))
    raise UnsupportedCompressionError(f"unknown codec {codec}")


def decompress(codec: int, data: bytes | memoryview, output_bytes_max: int) -> bytes:
    """Decompress a batch's records section, refusing output over ``output_bytes_max`` bytes.

    Raises :class:`CorruptRecordError` for data the codec can't decode (or that decodes to more than the limit)
    and :class:`UnsupportedCompressionError` for an unknown codec id.
    """
    out, over = decompress_bounded(codec, data, output_bytes_max)
    if over:
        raise CorruptRecordError(f"decompressed size is over the limit of {output_bytes_max} bytes")
    return out


def decompress_bounded(codec: int, data: bytes | memoryview, output_bytes_max: int) -> tuple[bytes, bool]:
    """``(output, over)``: at most ``output_bytes_max + 1`` bytes are ever inflated.

    ``over`` is True when the data inflates past the limit; ``output`` is then a prefix of the real output (possibly
    empty). Raises :class:`CorruptRecordError` for data the codec can't decode, cut short or followed by trailing
    bytes, and :class:`UnsupportedCompressionError` for an unknown codec id.

    >>> decompress_bounded(Codec.GZIP, compress(Codec.GZIP, b"x" * 100), 10)[1]
    True
    """
    limit = output_bytes_max
    out: bytes | None
    try:
        if codec == Codec.NONE:
            out = bytes(data)
        elif codec == Codec.GZIP:
            out = _gunzip(data, limit)
        elif codec == Codec.SNAPPY:
            out = _unsnappy(bytes(data), limit)
        elif codec == Codec.LZ4:
            out = _unlz4(data, limit)
        elif codec == Codec.ZSTD:
            out = _unzstd(data, limit)
        else:
            raise UnsupportedCompressionError(f"unknown compression codec id {codec}")
    except Exception as e:
        if not isinstance(e, _codec_errors()):
            raise
        raise CorruptRecordError(f"cannot decompress {Codec(codec).name} data: {e}") from e
    if out is None:
        return b"", True
    if len(out) > limit:
        return out[:limit], True
    return out, False


def _gunzip(data: bytes | memoryview, limit: int) -> bytes:
    d = _isal_zlib().decompressobj(wbits=47)  # 32 + 15: accept gzip and zlib headers
    return _whole("gzip stream", d.decompress(data, limit + 1), limit, d.eof, d.unused_data)


def _whole(what: str, out: bytes, limit: int, eof: bool, unused: bytes) -> bytes:
    """``out`` if it is over the limit (the caller stops there) or the stream ended exactly at the input's end."""
    if len(out) > limit:
        return out
    if not eof:
        raise CorruptRecordError(f"truncated {what}")
    if unused:
        raise CorruptRecordError(f"{len(unused)} bytes after the end of the {what}")
    return out


# lz4.frame allocates max_length up front: asking for the whole limit (64 MiB by default) per batch costs three
# times the decompression itself, so output is asked for in steps of a few times the input.
_LZ4_STEP_BYTES_MIN: Final = 1 << 20
_LZ4_STEP_PER_INPUT_BYTE: Final = 4


def _unlz4(data: bytes | memoryview, limit: int) -> bytes:
    d = _lz4_frame().LZ4FrameDecompressor()
    feed = bytes(data)
    step = max(_LZ4_STEP_BYTES_MIN, _LZ4_STEP_PER_INPUT_BYTE * len(feed))
    parts: list[bytes] = []
    total = 0
    while total <= limit and not d.eof:
        part = d.decompress(feed, max_length=min(step, limit + 1 - total))
        feed = b""
        if not part:
            break  # no progress: the frame ends before its end mark (``_whole`` says so)
        parts.append(part)
        total += len(part)
        if d.needs_input:
            break
    out = parts[0] if len(parts) == 1 else b"".join(parts)
    return _whole("lz4 frame", out, limit, bool(d.eof), bytes(d.unused_data or b""))


_ZSTD_MAGIC: Final = 0xFD2FB528
_ZSTD_SKIPPABLE_MASK: Final = 0xFFFFFFF0
_ZSTD_SKIPPABLE: Final = 0x184D2A50
_ZSTD_READ_CHUNK_BYTES: Final = 1 << 20
_U32LE: Final = struct.Struct("<I")
assert _U32LE.size == 4


def _unzstd(data: bytes | memoryview, limit: int) -> bytes:
    raw = bytes(data)
    _zstd_frames_end(raw)
    parts: list[bytes] = []
    total = 0
    with _zstd_decompressor().stream_reader(raw, read_across_frames=True) as r:
        while total <= limit:
            chunk = r.read(min(_ZSTD_READ_CHUNK_BYTES, limit + 1 - total))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _zstd_frames_end(raw: bytes) -> None:
    """Raise unless ``raw`` is one or more complete zstd (or skippable) frames with nothing after them."""
    pos, end = 0, len(raw)
    if end == 0:
        raise CorruptRecordError("empty zstd payload")
    while pos < end:
        if end - pos < 4:
            raise CorruptRecordError("truncated zstd frame magic")
        (magic,) = _U32LE.unpack_from(raw, pos)
        if magic & _ZSTD_SKIPPABLE_MASK == _ZSTD_SKIPPABLE:
            if end - pos < 8:
                raise CorruptRecordError("truncated zstd skippable frame")
            pos += 8 + _U32LE.unpack_from(raw, pos + 4)[0]
            continue
        if magic != _ZSTD_MAGIC:
            raise CorruptRecordError(f"not a zstd frame at byte {pos}")
        if end - pos < 5:
            raise CorruptRecordError("truncated zstd frame header")
        fhd = raw[pos + 4]
        fcs_flag, single_segment, has_checksum, dict_flag = fhd >> 6, (fhd >> 5) & 1, (fhd >> 2) & 1, fhd & 3
        fcs_bytes = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
        pos += 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dict_flag] + fcs_bytes
        while True:
            if end - pos < 3:
                raise CorruptRecordError("truncated zstd block header")
            bh = raw[pos] | raw[pos + 1] << 8 | raw[pos + 2] << 16
            last, block_type, size = bh & 1, (bh >> 1) & 3, bh >> 3
            if block_type == 3:
                raise CorruptRecordError("reserved zstd block type")
            pos += 3 + (1 if block_type == 1 else size)
            if last:
                break
        pos += 4 if has_checksum else 0
    if pos != end:
        raise CorruptRecordError("truncated zstd frame")


def _unsnappy(data: bytes, limit: int) -> bytes | None:
    """The output, or None when the declared lengths add up to more than ``limit`` (nothing is inflated then)."""
    if not data.startswith(XERIAL_MAGIC):
        if _cramjam().snappy.decompress_raw_len(data) > limit:
            return None
        return bytes(_cramjam().snappy.decompress_raw(data))
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
        total += _cramjam().snappy.decompress_raw_len(chunk)
        if total > limit:
            return None
        parts.append(bytes(_cramjam().snappy.decompress_raw(chunk)))
    return b"".join(parts)
