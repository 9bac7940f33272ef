"""The Java interop program's data models (interop/hollow/HollowInterop.java), written as Python classes.

Mapped by ObjectMapper they must give exactly the schemas Java's object mapper gives the Java classes.  The
Java classes do not override ``equals``/``hashCode``, so their sets and maps compare elements by identity
(a Java set can hold two equal-looking actors); ``@dataclass(eq=False)`` gives Python the same semantics.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass
from typing import Annotated, NamedTuple

from loosely.hollow.core import (
    INLINE,
    TRANSIENT,
    Char,
    Float32,
    HashKey,
    Int8,
    Int16,
    Int64,
    TypeNamed,
    hollow_type,
)


class Genre(enum.Enum):
    DRAMA = 0
    COMEDY = 1
    SCIFI = 2


@hollow_type(primary_key=("code",))
@dataclass(frozen=True)
class Country:
    code: Annotated[str, INLINE]
    name: str | None


@dataclass(frozen=True)
class Director:
    name: Annotated[str, INLINE]
    country: Country | None


@dataclass(eq=False)
class Award:
    name: Annotated[str, INLINE]
    year: int


@hollow_type(primary_key=("id",), num_shards=4)
@dataclass
class Review:
    id: int
    movieId: int  # noqa: N815 -- the Java field name
    text: Annotated[str | None, INLINE]
    tags: list[str] | None


@hollow_type(primary_key=("id",))
@dataclass
class Movie:
    id: int
    releaseMillis: Int64  # noqa: N815
    rating: Float32
    score: float
    active: bool
    shortValue: Int16  # noqa: N815
    byteValue: Int8  # noqa: N815
    charValue: Char  # noqa: N815
    boxedInt: int | None  # noqa: N815
    boxedLong: Int64 | None  # noqa: N815
    boxedBool: bool | None  # noqa: N815
    boxedDouble: float | None  # noqa: N815
    boxedFloat: Float32 | None  # noqa: N815
    inlineInt: Annotated[int | None, INLINE]  # noqa: N815
    inlineLong: Annotated[Int64 | None, INLINE]  # noqa: N815
    inlineFloat: Annotated[Float32 | None, INLINE]  # noqa: N815
    inlineDouble: Annotated[float | None, INLINE]  # noqa: N815
    inlineBool: Annotated[bool | None, INLINE]  # noqa: N815
    title: Annotated[str | None, INLINE]
    originalTitle: str | None  # noqa: N815
    keyword: Annotated[str | None, TypeNamed("Keyword")]
    poster: bytes | None
    genre: Genre | None
    director: Director | None
    tags: list[int] | None
    awards: list[Award] | None
    cast: set[ActorJ] | None
    numbers: set[Int64] | None
    plainAwards: set[Award] | None  # noqa: N815
    awardsByYear: Annotated[set[Award] | None, HashKey("year")]  # noqa: N815
    ratingsBySite: dict[str, int] | None  # noqa: N815
    awardsByActor: dict[ActorJ, list[Award]] | None  # noqa: N815
    plainMap: dict[Award, Int64] | None  # noqa: N815
    notStored: Annotated[int, TRANSIENT] = 0  # noqa: N815


@hollow_type(name="Actor", primary_key=("name",))
@dataclass(eq=False)
class ActorJ:
    """Actor with Java's field names (birthYear)."""

    name: Annotated[str, INLINE]
    birthYear: int  # noqa: N815


@hollow_type(name="Film", primary_key=("id",))
@dataclass
class FilmV1:
    id: int
    title: Annotated[str | None, INLINE]
    year: int
    languages: list[str] | None


@hollow_type(primary_key=("name",))
@dataclass
class Studio:
    name: Annotated[str | None, INLINE]
    founded: int


@hollow_type(name="Film", primary_key=("id",))
class FilmV2(NamedTuple):
    id: int
    title: Annotated[str | None, INLINE]
    languages: list[str] | None
    rating: float
    studio: Studio | None = None


@hollow_type(primary_key=("id",))
@dataclass
class Edges:
    """Numbers at the edges of Java's null conventions (HollowInterop.Edges)."""

    id: int
    f: Float32
    d: float
    s: Int16
    c: Char
    boxedF: Float32 | None  # noqa: N815
    boxedD: float | None  # noqa: N815
    inlineF: Annotated[Float32 | None, INLINE]  # noqa: N815
    inlineD: Annotated[float | None, INLINE]  # noqa: N815
    inlineS: Annotated[Int16 | None, INLINE]  # noqa: N815
    inlineB: Annotated[Int8 | None, INLINE]  # noqa: N815
    inlineC: Annotated[Char | None, INLINE]  # noqa: N815
    inlineI: Annotated[int | None, INLINE]  # noqa: N815


def edges_rows() -> list[Edges]:
    """The rows HollowInterop.edgesModel writes: row k takes the k-th value of each column, row 2 null boxes."""
    null_bits_nan = struct.unpack(">d", bytes.fromhex("7ff8000000000001"))[0]
    f = [math.nan, 0.0, -0.0, 1.5, -math.inf, 1.401298464324817e-45]
    d = [math.nan, null_bits_nan, -0.0, 2.5, math.inf, 5e-324]
    s = [-(1 << 15), 0, -1, (1 << 15) - 1, 7, 8]
    c = [0, ord("a"), 0xFFFF, ord("b"), ord("c"), ord("d")]
    b = [-128, None, 0, 127, -1, 1]
    i = [-(1 << 31), None, 0, (1 << 31) - 1, -1, 1]
    rows = []
    for k in range(len(f)):
        row = Edges(k, f[k], d[k], s[k], c[k], f[k], d[k], f[k], d[k], s[k], b[k], c[k], i[k])
        if k == 2:
            row.boxedF = row.boxedD = row.inlineF = row.inlineD = row.inlineS = row.inlineC = None
        rows.append(row)
    return rows
