"""Errors raised by the sans-IO protocol layer.

Every decoder in :mod:`loosely.protocol` either returns a value or raises a subclass of :class:`ProtocolError`;
nothing else escapes (the fuzz targets state exactly this invariant). Each error carries the Kafka error code the
broker answers with, so handlers never have to translate exceptions by hand.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode

__all__ = [
    "CorruptRecordError",
    "ErrorCode",
    "FrameError",
    "ProtocolError",
    "UnsupportedCompressionError",
    "UnsupportedVersionError",
]


class ProtocolError(Exception):
    """Bytes that do not form a valid Kafka protocol value."""

    error_code: ErrorCode = ErrorCode.corrupt_message


class FrameError(ProtocolError):
    """A size prefix that is negative, or over the frame limit: the connection cannot continue."""

    error_code = ErrorCode.invalid_request


class UnsupportedVersionError(ProtocolError):
    """A request whose (api_key, api_version) this broker does not implement."""

    error_code = ErrorCode.unsupported_version

    def __init__(self, message: str, api_key: int, api_version: int) -> None:
        super().__init__(message)
        self.api_key = api_key
        self.api_version = api_version


class CorruptRecordError(ProtocolError):
    """A record batch whose framing, magic or CRC is wrong; a few framing lies answer another code than
    CORRUPT_MESSAGE where Kafka does (``error_code`` given)."""

    error_code = ErrorCode.corrupt_message

    def __init__(self, message: str, *, error_code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if error_code is not None:
            self.error_code = error_code


class UnsupportedCompressionError(ProtocolError):
    """A batch compressed with a codec id this broker does not know."""

    error_code = ErrorCode.unsupported_compression_type
