"""The exceptions raised by the Hollow core.

Every failure the core reports on purpose is a :class:`HollowError`.  Bad input bytes (a truncated or corrupt
blob, a delta for another state) are :class:`HollowBlobError`s; a reader never lets an ``IndexError``,
``struct.error`` or ``UnicodeDecodeError`` escape for them, and never changes the state it was applying to.
"""

from __future__ import annotations

__all__ = [
    "HollowBlobError",
    "HollowBlobTruncatedError",
    "HollowDeltaOriginError",
    "HollowError",
    "HollowMappingError",
    "HollowSchemaError",
    "HollowUnsupportedBlobError",
    "HollowWriteError",
]


class HollowError(Exception):
    """Base class of every error the Hollow core raises deliberately."""


class HollowBlobError(HollowError):
    """A blob could not be read: it is corrupt, truncated or inconsistent with itself."""


class HollowBlobTruncatedError(HollowBlobError):
    """The blob ended before a structure it declares was complete."""


class HollowDeltaOriginError(HollowBlobError):
    """A delta was applied to a state it was not computed from (its origin tag differs)."""

    def __init__(self, expected_tag: int, actual_tag: int) -> None:
        super().__init__(
            f"delta originates from state tag {actual_tag:#x}, but the loaded state has tag {expected_tag:#x}"
        )
        self.expected_tag = expected_tag
        self.actual_tag = actual_tag


class HollowUnsupportedBlobError(HollowBlobError):
    """The blob is well formed but uses a feature this implementation does not support."""


class HollowSchemaError(HollowError):
    """A schema is invalid, or its text form could not be parsed."""


class HollowMappingError(HollowSchemaError):
    """A Python type could not be mapped to Hollow schemas, or a value does not fit its mapped schema."""


class HollowWriteError(HollowError):
    """The write state engine was misused (a record does not fit its schema, a cycle out of order)."""
