"""A bounds check of a request's shape before kio decodes it.

Why this exists: kio's native reader allocates for an array as soon as it has read the array's count, before it
knows whether the frame holds that many elements; a 20-byte request declaring 2**31 elements makes it ask for tens
of gigabytes and the allocation failure aborts the whole process (found by ``fuzz/fuzz_requests.py``). A broker
must never let a client do that, so every request is first *walked* here, against the same kio schema classes,
without building anything: each length and count is checked against the bytes that remain, and each array's count
times its smallest possible element against them too. Only a frame whose every length fits is handed to kio.

The walk follows the Kafka encoding rules kio implements:

* fixed-width fields: int8/16/32/64, uint8/16/32/64, float64, bool (1), uuid (16), error_code (2),
  timedelta_i32 (4), timedelta_i64 and datetime_i64 (8);
* strings: ``int16`` length (-1 = null) or, in flexible versions, unsigned varint ``length + 1`` (0 = null);
  the request header's ``client_id`` is always the legacy form;
* bytes and records: ``int32`` length (-1 = null) or the compact form;
* arrays: ``int32`` count (-1 = null) or unsigned varint ``count + 1``;
* nullable structs (KIP-893): an ``int8`` marker, -1 for null;
* flexible structs end with tagged fields: varint count, then per field varint tag, varint size, size bytes.

It is sans-IO and allocation-free apart from Python's own frames: bytes in, :class:`ProtocolError` or nothing out.

**Durations out of Python's range.** An ``int64`` millisecond duration (``timedelta_i64``: a delegation token's
renew or expiry period, its maximum lifetime, OffsetCommit's retention time) may be any ``long`` on the wire, and
Java clients send ``Long.MAX_VALUE`` for "as long as allowed"; kio reads at most :data:`TIMEDELTA_MS_MAX` (about
292,000 years) into a :class:`datetime.timedelta` and raises on more. The walk lists the positions of such values (pass
``overflows``), and :func:`clamp_durations` pins them to the largest duration of their sign, which every rule that
reads them (Kafka's: ``min`` against a limit, a saturating sum with the clock) treats as it treats the long.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable
from types import EllipsisType, NoneType, UnionType
from typing import Final, Union, get_args, get_origin

from loosely.protocol.errors import ProtocolError

__all__ = ["TIMEDELTA_MS_MAX", "check_entity", "clamp_durations"]

# kio turns the milliseconds into a timedelta through a signed 64-bit count of microseconds: about 292,000 years
TIMEDELTA_MS_MAX: Final = (2**63 - 1) // 1000

_FIXED: Final[dict[str, int]] = {
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "uint8": 1,
    "uint16": 2,
    "uint32": 4,
    "uint64": 8,
    "float64": 8,
    "bool": 1,
    "uuid": 16,
    "error_code": 2,
    "timedelta_i32": 4,
    "timedelta_i64": 8,
    "datetime_i64": 8,
}


class _Walk(threading.local):
    overflows: list[int] | None = None  # where out-of-range durations start, while a walk asks for them


_walk = _Walk()

# A step reads one value at ``pos`` in ``buf`` (bounded by ``end``) and returns the position after it.
Step = Callable[[bytes | memoryview, int, int], int]


class _Short(ProtocolError):
    pass


def _need(pos: int, n: int, end: int, what: str) -> int:
    if n < 0 or pos + n > end:
        raise _Short(f"{what} of {n} bytes at {pos} runs past the end of the request ({end})")
    return pos + n


def _uvarint(buf: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if pos >= end:
            raise _Short("varint runs past the end of the request")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise ProtocolError("unsigned varint longer than 5 bytes")


def _int(buf: bytes | memoryview, pos: int, end: int, width: int) -> tuple[int, int]:
    nxt = _need(pos, width, end, "integer")
    return int.from_bytes(buf[pos:nxt], "big", signed=True), nxt


def _fixed(width: int) -> Step:
    def step(buf: bytes | memoryview, pos: int, end: int) -> int:
        return _need(pos, width, end, "field")

    return step


def _duration_i64(buf: bytes | memoryview, pos: int, end: int) -> int:
    nxt = _need(pos, 8, end, "field")
    if _walk.overflows is not None and abs(int.from_bytes(buf[pos:nxt], "big", signed=True)) > TIMEDELTA_MS_MAX:
        _walk.overflows.append(pos)
    return nxt


def _length_prefixed(width: int, flexible: bool, what: str) -> Step:
    def step(buf: bytes | memoryview, pos: int, end: int) -> int:
        if flexible:
            n, pos = _uvarint(buf, pos, end)
            n -= 1
        else:
            n, pos = _int(buf, pos, end, width)
        if n == -1:
            return pos
        if n < -1:
            raise ProtocolError(f"negative {what} length {n}")
        return _need(pos, n, end, what)

    return step


def _array(inner: Step, inner_min_bytes: int, flexible: bool, inner_width: int | None = None) -> Step:
    def step(buf: bytes | memoryview, pos: int, end: int) -> int:
        if flexible:
            n, pos = _uvarint(buf, pos, end)
            n -= 1
        else:
            n, pos = _int(buf, pos, end, 4)
        if n == -1:
            return pos
        if n < -1:
            raise ProtocolError(f"negative array count {n}")
        if n * max(1, inner_min_bytes) > end - pos:
            raise _Short(f"array of {n} elements cannot fit in the {end - pos} bytes left")
        if inner_width is not None:
            return pos + n * inner_width  # fixed-size elements: the bound above already proved they fit
        for _ in range(n):
            pos = inner(buf, pos, end)
        return pos

    return step


def _nullable_struct(inner: Step) -> Step:
    def step(buf: bytes | memoryview, pos: int, end: int) -> int:
        marker, pos = _int(buf, pos, end, 1)
        return pos if marker == -1 else inner(buf, pos, end)

    return step


def _unwrap(tp: object) -> tuple[object, bool, bool]:
    """``(inner type, is_array, is_nullable)`` of a kio field annotation."""
    nullable = False
    if get_origin(tp) in (UnionType, Union):
        members = [a for a in get_args(tp) if a is not NoneType]
        nullable = len(members) != len(get_args(tp))
        tp = members[0]
    if get_origin(tp) is tuple:
        args = get_args(tp)
        if len(args) == 2 and isinstance(args[1], EllipsisType):
            return args[0], True, nullable
    return tp, False, nullable


def _field_step(field: dataclasses.Field[object], flexible: bool, is_header: bool) -> tuple[Step, int | None]:
    """The step for one field, and its width when that is fixed (so neighbours can be merged)."""
    inner_type, is_array, nullable = _unwrap(field.type)
    kafka_type = field.metadata.get("kafka_type")
    entity = inner_type if dataclasses.is_dataclass(inner_type) and isinstance(inner_type, type) else None
    if entity is not None:
        element, width = _entity(entity)
        if is_array:
            return _array(element, width or 1, flexible, width), None
        if nullable and field.metadata.get("tag") is None:
            return _nullable_struct(element), None
        return element, width
    if not isinstance(kafka_type, str):
        raise ProtocolError(f"kio field {field.name} has no kafka_type")
    fixed = _FIXED.get(kafka_type)
    if is_header and field.name == "client_id":
        element = _length_prefixed(2, False, "string")
    elif kafka_type == "timedelta_i64" and not is_array:
        return _duration_i64, None  # its own step, so that its value is looked at
    elif fixed is not None:
        element = _fixed(fixed)
    elif kafka_type == "string":
        element = _length_prefixed(2, flexible, "string")
    elif kafka_type in ("bytes", "records"):
        element = _length_prefixed(4, flexible, "bytes")
    else:
        raise ProtocolError(f"kio field {field.name} has unknown kafka_type {kafka_type}")
    if is_array:
        return _array(element, fixed or 1, flexible, fixed), None
    return element, fixed


@functools.cache
def _entity(cls: type[object]) -> tuple[Step, int | None]:
    """The step that walks one ``cls``, and its width when every field is fixed and it has no tagged fields."""
    flexible = bool(getattr(cls, "__flexible__", False))
    is_header = cls.__name__ == "RequestHeader"
    plain: list[Step] = []
    tagged: dict[int, Step] = {}
    run = 0  # consecutive fixed-width bytes not yet emitted as one step
    all_fixed = True
    fixed_total = 0
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        tag = f.metadata.get("tag")
        step, width = _field_step(f, flexible, is_header)
        if tag is not None:
            tagged[int(tag)] = step
        elif width is not None:
            run += width
            fixed_total += width
        else:
            all_fixed = False
            if run:
                plain.append(_fixed(run))
                run = 0
            plain.append(step)
    if run:
        plain.append(_fixed(run))
    width = fixed_total if all_fixed and not flexible else None

    def walk(buf: bytes | memoryview, pos: int, end: int) -> int:
        for step in plain:
            pos = step(buf, pos, end)
        if not flexible:
            return pos
        count, pos = _uvarint(buf, pos, end)
        if count > end - pos:
            raise _Short(f"{count} tagged fields cannot fit in the {end - pos} bytes left")
        for _ in range(count):
            tag, pos = _uvarint(buf, pos, end)
            size, pos = _uvarint(buf, pos, end)
            stop = _need(pos, size, end, "tagged field")
            known = tagged.get(tag)
            if known is not None and known(buf, pos, stop) != stop:
                raise ProtocolError(f"tagged field {tag} does not fill its declared {size} bytes")
            pos = stop
        return pos

    return walk, width


def check_entity(cls: type[object], buf: bytes | memoryview, pos: int = 0, overflows: list[int] | None = None) -> int:
    """Walk one ``cls`` at ``pos``; the position after it. Raises :class:`ProtocolError` if it cannot fit.
    ``overflows``, when given, gets the position of each ``timedelta_i64`` beyond :data:`TIMEDELTA_MS_MAX`."""
    _walk.overflows = overflows
    try:
        return _entity(cls)[0](buf, pos, len(buf))  # type: ignore[arg-type]  # classes are hashable
    finally:
        _walk.overflows = None


def clamp_durations(buf: bytes | memoryview, overflows: list[int]) -> bytes:
    """A copy of ``buf`` with the ``int64`` at each of ``overflows`` pinned to +-:data:`TIMEDELTA_MS_MAX`.

    >>> clamp_durations((2**63 - 1).to_bytes(8, "big"), [0]) == TIMEDELTA_MS_MAX.to_bytes(8, "big")
    True
    """
    out = bytearray(buf)
    for pos in overflows:
        value = int.from_bytes(out[pos:pos + 8], "big", signed=True)
        out[pos:pos + 8] = (TIMEDELTA_MS_MAX if value > 0 else -TIMEDELTA_MS_MAX).to_bytes(8, "big", signed=True)
    return bytes(out)
