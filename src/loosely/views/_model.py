"""What a view is: records in, changes out.

A view is a name, a version, the source topics, and a pure function from one :class:`Record` to zero or more
changes. A change says what happens to one key of the view's table:

* :class:`Put` replaces the key's value (last writer wins, in log order),
* :class:`Add` adds a number to the key's value (a missing key counts as 0),
* :class:`Delete` removes the key.

Records and changes are ``NamedTuple`` values rather than frozen dataclasses on purpose: one record and usually one
change are built per consumed event, and constructing a frozen slotted dataclass costs about 2.5 times as much as a
tuple (``object.__setattr__`` per field), which was most of the framework's per-event budget when measured. They
are just as immutable and have no ``__dict__``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, NewType, TypeAlias, TypeVar

from loosely.protocol.names import TopicPartition
from loosely.views._serde import BYTES, JSON, STRING, Deserializer

_DOCTEST_NAMES = (JSON, STRING)

__all__ = [
    "Add",
    "Change",
    "Delete",
    "Json",
    "Put",
    "Record",
    "TopicPartition",
    "View",
    "ViewError",
    "ViewId",
    "count_by_key",
    "latest_by_key",
]

Json: TypeAlias = "bool | int | float | str | bytes | list[Json] | dict[str, Json] | None"
K = TypeVar("K")
V = TypeVar("V")

ViewId = NewType("ViewId", str)
"""``name@version``, e.g. ``orders@3``: one built table of one view."""

# Names end up in SQL identifiers, file names, S3 prefixes and metric names, so they are kept to a safe alphabet.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class ViewError(ValueError):
    """A view definition that cannot work (bad name, no topics, ...)."""


class Record(NamedTuple, Generic[K, V]):
    """One source event, its key and value already decoded. ``value`` is ``None`` for a tombstone."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: K | None
    value: V | None
    headers: Sequence[tuple[str, bytes | None]] | None


class Put(NamedTuple):
    key: str
    value: Json


class Add(NamedTuple):
    key: str
    amount: int | float


class Delete(NamedTuple):
    key: str


Change: TypeAlias = Put | Add | Delete

# The built-in views build their changes with tuple.__new__, skipping the NamedTuple's generated Python __new__
# (measured: 0.9 us against 0.4 us a change on the development machine).
_new = tuple.__new__
Output: TypeAlias = "Change | Iterable[Change] | None"


class Kernel(enum.Enum):
    """A built-in view function the runner may carry out as a specialised loop instead of calling ``fn`` per
    record (no :class:`Record` or change is built per record). Set by :func:`latest_by_key` and
    :func:`count_by_key`; the loop's result is the same as ``fn``'s, which the tests check."""

    LATEST = "latest"
    COUNT = "count"


@dataclass(frozen=True, slots=True)
class View(Generic[K, V]):
    """A materialized view definition.

    ``fn`` must be pure: the same record always gives the same changes, because a rebuild or a crash replays the
    log through it. It returns one change, an iterable of changes, or ``None``.

    >>> def by_customer(r: Record[str, dict]) -> Change | None:
    ...     return None if r.value is None else Add(r.value["customer"], r.value["total"])
    >>> v = View("revenue", 1, ("orders",), by_customer, key=STRING, value=JSON)
    >>> v.id
    'revenue@1'
    >>> v.fn(Record("orders", 0, 7, 0, "o1", {"customer": "c9", "total": 5}, None))
    Add(key='c9', amount=5)
    """

    name: str
    version: int
    topics: tuple[str, ...]
    fn: Callable[[Record[K, V]], Output]
    key: Deserializer[K] = field(default=BYTES)  # type: ignore[assignment]
    value: Deserializer[V] = field(default=BYTES)  # type: ignore[assignment]
    description: str = ""
    kernel: Kernel | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ViewError(f"view name {self.name!r} must match {_NAME.pattern} (it becomes a table and file name)")
        if self.version < 1:
            raise ViewError(f"view {self.name}: version must be >= 1, got {self.version}")
        if not self.topics or isinstance(self.topics, str):  # type: ignore[unreachable]  # callers pass strings
            raise ViewError(f"view {self.name}: topics must be a non-empty tuple of topic names")

    @property
    def id(self) -> ViewId:
        return ViewId(f"{self.name}@{self.version}")

    def with_version(self, version: int) -> View[K, V]:
        """The same view under another version number (for a rebuild beside the serving one)."""
        return View(self.name, version, self.topics, self.fn, self.key, self.value, self.description, self.kernel)


def latest_by_key(name: str, topics: Sequence[str], *, version: int = 1, value: Deserializer[V] | None = None) -> View[
    object, V
]:
    """The latest value of every key; a tombstone (``None`` value) deletes the key.

    >>> v = latest_by_key("last_seen", ["visits"], value=STRING)
    >>> v.fn(Record("visits", 0, 1, 0, b"u1", "page-9", None))
    Put(key='u1', value='page-9')
    """

    def fn(r: Record[object, V]) -> Change | None:
        k = r.key
        if type(k) is bytes:
            k = k.decode("utf-8", "surrogateescape")
        elif k is None:
            return None
        elif type(k) is not str:
            k = str(k)
        v = r.value
        return Delete(k) if v is None else _new(Put, (k, v))

    return View(name, version, tuple(topics), fn, BYTES, value or BYTES, kernel=Kernel.LATEST)  # type: ignore[arg-type]


def count_by_key(name: str, topics: Sequence[str], *, version: int = 1) -> View[bytes, bytes]:
    """How many records each key has had (tombstones included: they are events too).

    >>> v = count_by_key("visits_per_user", ["visits"])
    >>> v.fn(Record("visits", 0, 1, 0, b"u1", b"x", None))
    Add(key='u1', amount=1)
    """

    def fn(r: Record[bytes, bytes]) -> Change | None:
        k = r.key
        if k is None:
            return None
        return _new(Add, (k.decode("utf-8", "surrogateescape"), 1))

    return View(name, version, tuple(topics), fn, BYTES, BYTES, kernel=Kernel.COUNT)

