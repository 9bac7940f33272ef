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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from loosely.clients._fast import json_compact

__all__ = [
    "Token",
    "checked_json",
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
    return key_json(type_name, key).decode()


def key_json(type_name: str, key: tuple[object, ...]) -> bytes:
    """:func:`key_text` as the UTF-8 bytes written to the log."""
    return encode_json([type_name, [_plain(v) for v in key]])


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
    # C for the values it covers (the same bytes, ~10x faster on long strings); Python's encoder for the rest
    data = json_compact(value)
    return _JSON.encode(value).encode() if data is None else data


def checked_json(record: object) -> tuple[Any, bytes]:
    """A record's JSON values and bytes, once sure that :func:`record_from_json` reads them back (else the
    :class:`ValueError` it raises): what a writer must know before it acknowledges a record.

    A record of a type whose fields are all text, integers, booleans or floats (or optional ones), holding
    exactly those types, reads back by construction: its values are its JSON values, and decoding gives each one
    back as it is; such a record skips the decode. Any other record is decoded."""
    fields = _flat_fields(type(record))
    if fields is not None:
        plain = {}
        for name, kind in fields:
            v = getattr(record, name)
            if v is not None and type(v) is not kind:  # a bool in an int field, an int in a float field...
                break
            plain[name] = v
        else:
            return plain, encode_json(plain)
    plain = record_to_json(record)
    record_from_json(type(record), plain)
    return plain, encode_json(plain)


_FLAT_KINDS: Final = (str, int, bool, float)


_flat: dict[type, tuple[tuple[str, type], ...] | None] = {}  # per record class: it does not change


def _flat_fields(cls: type) -> tuple[tuple[str, type], ...] | None:
    try:
        return _flat[cls]
    except KeyError:
        found = _flat[cls] = _find_flat_fields(cls)
        return found


def _find_flat_fields(cls: type) -> tuple[tuple[str, type], ...] | None:
    """``(name, type)`` of each field of a dataclass whose fields are all of :data:`_FLAT_KINDS` or optional ones
    and which :func:`record_from_json` builds through its generated ``__init__`` alone; None for any other class.
    (A ``None`` value decodes to None whatever the hint says: the Hollow check is what refuses it where it must.)"""
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__"):
        return None
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.init:
        return None
    init = getattr(cls.__dict__.get("__init__"), "__code__", None)
    if init is None or init.co_filename != "<string>":  # the class's own, generated __init__ (not a parent's or a
        return None  # hand-written one, which could refuse what the fields accept)
    if len(getattr(cls, "__dataclass_fields__", {})) != len(dataclasses.fields(cls)):
        return None  # an InitVar or a ClassVar: the decode passes what dataclasses.fields lists, and no more
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # a hint that does not resolve: the general path raises what it raises
        return None
    out = []
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name)
        origin = typing.get_origin(hint)
        if origin is typing.Union or origin is types.UnionType:
            options = [a for a in typing.get_args(hint) if a is not type(None)]
            hint = options[0] if len(options) == 1 else None
        if not f.init or hint not in _FLAT_KINDS:
            return None
        out.append((f.name, hint))
    return tuple(out)


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
    """``value`` (JSON values) as ``hint`` says; a value that does not fit raises."""
    if value is None:
        return None
    return _decoder(hint)(value)


def _decoder(hint: Any) -> Callable[[Any], Any]:
    try:
        return _cached_decoder(hint)
    except TypeError:  # an unhashable hint: built for this value only (a TypeError of the building raises again)
        return _build_decoder(hint)


@functools.cache
def _cached_decoder(hint: Any) -> Callable[[Any], Any]:
    # every record the writer checks and every one a client tails is decoded: a hint's questions (its origin, its
    # arguments, its fields) are answered once here, not at every value (a fifth of a 1 KB put's Python)
    return _build_decoder(hint)


def _as_is(value: Any) -> Any:
    return value


def _build_decoder(hint: Any) -> Callable[[Any], Any]:
    """A function of a non-null JSON value for ``hint``; inner hints are looked up when a value needs them, so a
    recursive type builds (what it decodes to is the values' business)."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) != 1:
            return _as_is
        only = options[0]
        return lambda v: _typed(only, v)
    if origin is typing.ClassVar:
        return _as_is
    if origin is not None:
        args = typing.get_args(hint)
        if origin in (list, typing.List):  # noqa: UP006 - matching what get_origin may give
            item = args[0] if args else Any
            return lambda v: [_typed(item, x) for x in v]
        if origin in (set, frozenset):
            member = args[0] if args else Any
            return lambda v: origin(_typed(member, x) for x in v)
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                each = args[0]
                return lambda v: tuple(_typed(each, x) for x in v)
            return lambda v: tuple(_typed(a, x) for a, x in zip(args, v, strict=False))
        if origin is dict:
            k_hint, v_hint = args if args else (Any, Any)

            def mapping(v: Any) -> Any:
                pairs = v.items() if isinstance(v, dict) else v
                return {_typed(k_hint, k): _typed(v_hint, x) for k, x in pairs}

            return mapping
        return _as_is
    if hint is Any or not isinstance(hint, type):
        return _as_is
    if issubclass(hint, enum.Enum):
        return lambda v: hint[v]
    if hint is bytes:
        return base64.b64decode
    if hint is _dt.datetime:
        return lambda v: _dt.datetime.fromtimestamp(v / 1000, _dt.UTC)
    if hint is float:
        return _float
    if hint is int:
        return _int
    if hint in (str, bool):
        def exactly(v: Any) -> Any:
            if not isinstance(v, hint):
                raise ValueError(f"{v!r} is not a {hint.__name__}")
            return v

        return exactly
    if dataclasses.is_dataclass(hint):
        hints = _hints(hint)
        fields = [(f.name, hints.get(f.name, Any)) for f in dataclasses.fields(hint) if f.init]
        return lambda v: hint(**{n: _typed(h, v[n]) for n, h in fields if n in v})
    if issubclass(hint, tuple) and hasattr(hint, "_fields"):
        hints = _hints(hint)
        names = [(n, hints.get(n, Any)) for n in hint._fields]
        return lambda v: hint(**{n: _typed(h, v[n]) for n, h in names if n in v})
    return _as_is


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _int(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
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
