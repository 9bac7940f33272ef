"""Records as JSON on the log, keys as canonical JSON text, and tokens.

The changes topic holds one Kafka record per write::

    key    ["<type name>",[<primary key values>]]      canonical JSON: no spaces, keys of objects sorted
    value  {"<field>": <value>, ...}                   the record's fields as the object mapper sees them
           or null (a tombstone)                       the record was deleted

Field values in JSON: numbers, strings and booleans as they are; ``bytes`` as base64 text; an ``Enum`` by its
name; a ``datetime`` as epoch milliseconds (what Hollow stores); lists, sets and tuples as arrays; a dict with
text keys as an object, any other dict as an array of ``[key, value]`` pairs; a nested dataclass or NamedTuple as
an object. Decoding goes by the class's type hints, so a JSON value comes back as the Python type it was.

The partition of a key is ``crc32(key bytes) % partitions``, fixed here rather than left to the client's
partitioner, so that a writer in any language that follows this module puts a key where readers expect it.

A :class:`Token` is ``{partition: offset}``: the offsets a reader must have read past (the next offset to read
is at least this) to see a write. It prints as compact JSON and parses back.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import enum
import functools
import json
import types
import typing
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "Token",
    "decode_record",
    "encode_json",
    "encode_record",
    "key_partition",
    "key_text",
    "parse_key",
    "record_from_json",
    "record_to_json",
]

_JSON: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def key_text(type_name: str, key: tuple[object, ...]) -> str:
    """The canonical key of a record: ``["Movie",[42]]``."""
    return _JSON.encode([type_name, [_plain(v) for v in key]])


def parse_key(text: str | bytes) -> tuple[str, tuple[object, ...]]:
    """``["Movie",[42]]`` -> ``("Movie", (42,))``; a malformed key is a :class:`ValueError`."""
    value = json.loads(text)
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], list) and all(not isinstance(v, list | dict) for v in value[1])):
        raise ValueError(f"not a record key: {text!r}")
    return value[0], tuple(value[1])


def key_partition(key: bytes, partitions: int) -> int:
    return zlib.crc32(key) % partitions


def encode_record(record: object) -> bytes:
    return encode_json(_plain(record))


def encode_json(value: Any) -> bytes:
    """JSON values (from :func:`record_to_json`) as the bytes :func:`encode_record` writes."""
    return _JSON.encode(value).encode()


def decode_record(cls: type, data: bytes | str) -> object:
    return record_from_json(cls, json.loads(data))


def record_to_json(record: object) -> Any:
    """A record as JSON values (what :func:`encode_record` writes, before it becomes text)."""
    return _plain(record)


def record_from_json(cls: type, value: Any) -> object:
    """A ``cls`` instance from JSON values; a value that does not fit is a :class:`ValueError`."""
    if not isinstance(value, dict):
        raise ValueError(f"a {cls.__name__} record is a JSON object, not {type(value).__name__}")
    try:
        return _typed(cls, value)
    except (TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"not a {cls.__name__} record: {e}") from e


def _plain(value: object) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, _dt.datetime):
        return int(value.timestamp() * 1000)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {name: _plain(getattr(value, name)) for name in value._fields}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: _plain(v) for k, v in value.items()}
        return [[_plain(k), _plain(v)] for k, v in value.items()]
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=_JSON.encode) if isinstance(value, set | frozenset) else items
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


@functools.cache  # resolving the hints is most of a decode's time (tens of us); a class's hints do not change
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _typed(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _typed(options[0], value) if len(options) == 1 else value
    if origin is typing.ClassVar:
        return value
    if origin is not None:
        args = typing.get_args(hint)
        if origin in (list, typing.List):  # noqa: UP006 - matching what get_origin may give
            return [_typed(args[0] if args else Any, v) for v in value]
        if origin in (set, frozenset):
            return origin(_typed(args[0] if args else Any, v) for v in value)
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_typed(args[0], v) for v in value)
            return tuple(_typed(a, v) for a, v in zip(args, value, strict=False))
        if origin is dict:
            k_hint, v_hint = args if args else (Any, Any)
            pairs = value.items() if isinstance(value, dict) else value
            return {_typed(k_hint, k): _typed(v_hint, v) for k, v in pairs}
        return value
    if hint is Any or not isinstance(hint, type):
        return value
    if issubclass(hint, enum.Enum):
        return hint[value]
    if hint is bytes:
        return base64.b64decode(value)
    if hint is _dt.datetime:
        return _dt.datetime.fromtimestamp(value / 1000, _dt.UTC)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{value!r} is not a number")
        return float(value)
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{value!r} is not an integer")
    if hint in (str, bool) and not isinstance(value, hint):
        raise ValueError(f"{value!r} is not a {hint.__name__}")
    if dataclasses.is_dataclass(hint):
        hints = _hints(hint)
        fields = [f for f in dataclasses.fields(hint) if f.init]
        return hint(**{f.name: _typed(hints.get(f.name, Any), value[f.name]) for f in fields if f.name in value})
    if issubclass(hint, tuple) and hasattr(hint, "_fields"):
        hints = _hints(hint)
        return hint(**{n: _typed(hints.get(n, Any), value[n]) for n in hint._fields if n in value})
    return value


@dataclass(frozen=True, slots=True)
class Token:
    """The log positions a write reached: a reader that has read past them sees the write.

    >>> t = Token({0: 12, 3: 7})
    >>> str(t)
    '{"0":12,"3":7}'
    >>> Token.parse(str(t)) == t
    True
    >>> t.merge(Token({0: 15})).offsets
    {0: 15, 3: 7}
    """

    offsets: Mapping[int, int]

    def __str__(self) -> str:
        return _JSON.encode({str(p): o for p, o in sorted(self.offsets.items())})

    @classmethod
    def parse(cls, text: str) -> Token:
        try:
            value = json.loads(text)
            return cls({int(p): int(o) for p, o in value.items()})
        except (ValueError, AttributeError, TypeError) as e:
            raise ValueError(f"not a token: {text!r}") from e

    def merge(self, other: Token) -> Token:
        """The later of two tokens, partition by partition (read-your-writes over several writes)."""
        out = dict(self.offsets)
        for p, o in other.offsets.items():
            out[p] = max(o, out.get(p, o))
        return Token(out)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.offsets.items())))
