"""The Java interop program's data models (interop/hollow/HollowInterop.java), written as Python classes.

Mapped by ObjectMapper they must give exactly the schemas Java's object mapper gives the Java classes.  The
Java classes do not override ``equals``/``hashCode``, so their sets and maps compare elements by identity
(a Java set can hold two equal-looking actors); ``@dataclass(eq=False)`` gives Python the same semantics.
"""

from __future__ import annotations

import enum
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
