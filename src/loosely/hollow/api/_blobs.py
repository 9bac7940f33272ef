"""What a blob store holds: blob references, their names, their bytes, and the digest that makes them checkable.

Names
-----
Every store names blobs the way Java Hollow's filesystem publisher does (``HollowFilesystemPublisher``), so a
directory written here is read by Java's ``HollowFilesystemBlobRetriever`` and the other way round::

    snapshot-<to>              the whole state of version <to>
    delta-<from>-<to>          the transition <from> -> <to> (<from> < <to>)
    reversedelta-<from>-<to>   the transition back, <from> -> <to> with <from> > <to>
    header-<version>           the header of version <version> (tags and schemas, no records)
    announced.version          the announced version, in decimal, no newline (the filesystem announcer)

Digest
------
The Hollow format carries no checksum of its own, so a flipped byte in a record would load silently.  The
producer therefore adds a header tag ``loosely.blob.crc32c`` to every snapshot, delta and reverse delta: eight
lowercase hex digits of the CRC-32C of the whole blob as it would be with those eight digits written as
``00000000``.  The tag's value has a fixed length, so the producer writes the blob once with the placeholder and
patches the digits in place, and a consumer recomputes the CRC with the placeholder in the header (no copy of
the body) -- every byte is covered, header tags included.  Consumers refuse a blob that does not match.  Java
readers ignore unknown header tags, so the blobs stay Java-compatible; blobs written by Java carry no such tag
and are checked by the parser alone, plus the check of the version in their header (``hollow.blob.to.version``).
"""

from __future__ import annotations

import enum
import mmap
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, NewType, TypeAlias

import crc32c

from loosely.hollow.core import HollowBlobError, parse_blob_header, with_header_tags

__all__ = [
    "ANNOUNCED_VERSION_FILE",
    "DIGEST_TAG",
    "TO_VERSION_TAG",
    "Blob",
    "BlobData",
    "BlobIntegrityError",
    "BlobRef",
    "BlobType",
    "Version",
    "add_digest",
    "blob_name",
    "check_blob",
    "parse_blob_name",
    "pick_snapshot",
    "pick_transition",
]

Version = NewType("Version", int)
"""A state version: any 64-bit integer, later states have greater versions (Java: a ``long``)."""

BlobData: TypeAlias = bytes | bytearray | memoryview | mmap.mmap

DIGEST_TAG: Final = "loosely.blob.crc32c"
TO_VERSION_TAG: Final = "hollow.blob.to.version"  # Java's HollowStateEngine.HEADER_TAG_PRODUCER_TO_VERSION
ANNOUNCED_VERSION_FILE: Final = "announced.version"  # Java's HollowFilesystemAnnouncer.ANNOUNCEMENT_FILENAME
VERSION_MIN: Final = -(1 << 63)
VERSION_MAX: Final = (1 << 63) - 1


class BlobIntegrityError(HollowBlobError):
    """A blob's bytes are not what its producer wrote: digest mismatch, wrong version, unreadable header."""


class BlobType(enum.Enum):
    """The four kinds of blob a producer publishes; the value is the file name prefix."""

    SNAPSHOT = "snapshot"
    DELTA = "delta"
    REVERSE_DELTA = "reversedelta"
    HEADER = "header"


@dataclass(frozen=True, slots=True)
class BlobRef:
    """Which blob: its type and versions (``from_version`` is None for snapshots and headers).

    >>> BlobRef.delta(Version(1), Version(2)).name
    'delta-1-2'
    >>> BlobRef.parse("reversedelta-2-1")
    BlobRef(type=<BlobType.REVERSE_DELTA: 'reversedelta'>, to_version=1, from_version=2)
    """

    type: BlobType
    to_version: Version
    from_version: Version | None = None

    def __post_init__(self) -> None:
        transition = self.type in (BlobType.DELTA, BlobType.REVERSE_DELTA)
        if transition != (self.from_version is not None):
            raise ValueError(f"a {self.type.value} blob {'needs' if transition else 'has no'} from_version")
        for v in (self.to_version, self.from_version):
            if v is not None and not VERSION_MIN <= v <= VERSION_MAX:
                raise ValueError(f"version {v} is not a 64-bit integer")
        if self.type is BlobType.DELTA and self.from_version is not None and self.from_version >= self.to_version:
            raise ValueError(f"a delta goes forward: {self.from_version} -> {self.to_version}")
        backwards = self.from_version is not None and self.from_version <= self.to_version
        if self.type is BlobType.REVERSE_DELTA and backwards:
            raise ValueError(f"a reverse delta goes back: {self.from_version} -> {self.to_version}")

    @classmethod
    def snapshot(cls, version: Version) -> BlobRef:
        return cls(BlobType.SNAPSHOT, version)

    @classmethod
    def header(cls, version: Version) -> BlobRef:
        return cls(BlobType.HEADER, version)

    @classmethod
    def delta(cls, from_version: Version, to_version: Version) -> BlobRef:
        return cls(BlobType.DELTA, to_version, from_version)

    @classmethod
    def reverse_delta(cls, from_version: Version, to_version: Version) -> BlobRef:
        return cls(BlobType.REVERSE_DELTA, to_version, from_version)

    @property
    def name(self) -> str:
        return blob_name(self)

    @classmethod
    def parse(cls, name: str) -> BlobRef | None:
        return parse_blob_name(name)


_NAME: Final = re.compile(r"(snapshot|header)-(-?\d{1,19})|(delta|reversedelta)-(-?\d{1,19})-(-?\d{1,19})")


def blob_name(ref: BlobRef) -> str:
    """Java's file name of a blob (``HollowFilesystemPublisher``)."""
    if ref.from_version is None:
        return f"{ref.type.value}-{ref.to_version}"
    return f"{ref.type.value}-{ref.from_version}-{ref.to_version}"


def parse_blob_name(name: str) -> BlobRef | None:
    """The blob a file name stands for, or None for anything else (temporary files, optional parts, ...)."""
    m = _NAME.fullmatch(name)
    if m is None:
        return None
    try:
        if m.group(1) is not None:
            return BlobRef(BlobType(m.group(1)), Version(int(m.group(2))))
        return BlobRef(BlobType(m.group(3)), Version(int(m.group(5))), Version(int(m.group(4))))
    except ValueError:
        return None  # out of range, or a delta going the wrong way: not a blob this store wrote


def pick_snapshot(refs: Iterable[BlobRef], desired_version: Version) -> BlobRef | None:
    """The snapshot of ``desired_version``, else the one of the greatest version below it (Java's rule)."""
    best: BlobRef | None = None
    for ref in refs:
        eligible = ref.type is BlobType.SNAPSHOT and ref.to_version <= desired_version
        if eligible and (best is None or ref.to_version > best.to_version):
            best = ref
    return best


def pick_transition(refs: Iterable[BlobRef], kind: BlobType, from_version: Version) -> BlobRef | None:
    """The delta (or reverse delta) starting at ``from_version`` that reaches furthest.

    Several can exist: a cycle that failed after publishing leaves an orphan, and the next cycle publishes
    another transition from the same version to a greater one.  Versions only grow, so the furthest is the
    one a later announcement builds on.
    """
    best: BlobRef | None = None
    for ref in refs:
        if ref.type is not kind or ref.from_version != from_version:
            continue
        if best is None or abs(ref.to_version - from_version) > abs(best.to_version - from_version):
            best = ref
    return best


@dataclass(frozen=True, slots=True)
class Blob:
    """A blob found by a retriever: what it is, and how to get its bytes (fetched only when ``load`` is called).

    ``load`` may return a memory map (filesystem snapshots); the read engine uses it in place.
    """

    ref: BlobRef
    loader: Callable[[], BlobData]
    size_bytes: int | None = None

    def load(self) -> BlobData:
        return self.loader()


_PLACEHOLDER: Final = b"00000000"


def _digest_field(view: memoryview, header_end: int) -> int:
    """Offset of the digest tag's value in the header (its key and value are written with ``writeUTF``)."""
    key = DIGEST_TAG.encode("ascii")
    needle = struct.pack(">H", len(key)) + key + struct.pack(">H", len(_PLACEHOLDER))
    pos = bytes(view[:header_end]).rfind(needle)
    if pos < 0:
        raise BlobIntegrityError(f"the {DIGEST_TAG} header tag is not eight characters long")
    return pos + len(needle)


def _digest(view: memoryview, header_end: int) -> str:
    at = _digest_field(view, header_end)
    crc = crc32c.crc32c(view[:at])
    crc = crc32c.crc32c(_PLACEHOLDER, crc)
    crc = crc32c.crc32c(view[at + len(_PLACEHOLDER) :], crc)
    return f"{crc:08x}"


def add_digest(data: bytes) -> bytes:
    """The blob with its digest in the header tag ``loosely.blob.crc32c`` (see the module docstring)."""
    view = memoryview(data)
    _, body_offset = parse_blob_header(view)
    body = view[body_offset:]
    # The new header alone (retagging the header bytes leaves the body out), patched, then joined to the body: the
    # body, tens of megabytes in a snapshot, is read once for the CRC and copied once.
    header = bytearray(with_header_tags(view[:body_offset], {DIGEST_TAG: _PLACEHOLDER.decode()}))
    at = _digest_field(memoryview(header), len(header))
    crc = crc32c.crc32c(body, crc32c.crc32c(header))  # the header still holds the placeholder here
    header[at : at + len(_PLACEHOLDER)] = f"{crc:08x}".encode("ascii")
    return b"".join((header, body))


def check_blob(ref: BlobRef, data: BlobData, *, require_digest: bool = False) -> dict[str, str]:
    """Check a retrieved blob before it is loaded; returns its header tags.

    Raises :class:`BlobIntegrityError` when the header does not parse, when the body does not match the
    digest tag, when the digest tag is missing and ``require_digest`` is set, or when the header names another
    version than the one the blob is stored as.
    """
    view = memoryview(data)
    try:
        header, body_offset = parse_blob_header(view)
    except HollowBlobError as e:
        raise BlobIntegrityError(f"{ref.name}: unreadable header: {e}") from e
    tags = dict(header.tags)
    expected = tags.get(DIGEST_TAG)
    if expected is None:
        if require_digest and ref.type is not BlobType.HEADER:
            raise BlobIntegrityError(f"{ref.name}: no {DIGEST_TAG} header tag (a blob from Java Hollow? then do "
                                     "not require digests)")
    else:
        actual = _digest(view, body_offset)
        if actual != expected:
            raise BlobIntegrityError(f"{ref.name}: CRC-32C is {actual}, the header says {expected}")
    stated = tags.get(TO_VERSION_TAG)
    # A reverse delta carries the header tags of the state it goes back to, so the tag names to_version there too.
    if stated is not None and stated.lstrip("-").isdigit() and int(stated) != ref.to_version:
        raise BlobIntegrityError(f"{ref.name}: the header says version {stated}, the name says {ref.to_version}")
    return tags
