"""kcat's text formats: delimiters, ``-f`` format strings, the ``-J`` JSON envelope, ``-L`` and ``-Q`` listings.

Everything here reproduces what Debian's kcat 1.7.1 prints, byte for byte, including its quirks (learnt from
kcat's source and checked against the binary by ``tests/compat/test_cli_conformance.py``):

* Delimiters (``-D``/``-K``) understand only ``\\n``, ``\\t`` and ``\\xNN`` (as many hex digits as follow, the
  low byte kept); ``\\r`` stays two characters although the help text lists it.
* Literal text in ``-f`` understands ``\\n \\r \\t``, ``\\xNN`` only when a *decimal* digit follows the ``x``
  (``\\xff`` prints ``ff``'s first ``f``), other digits in C's base-0 notation, and any other escaped character as
  itself. A literal is cut at its first NUL byte, as C strings are.
* ``%k``/``%s`` print nothing for an empty *or* NULL key/value, or ``NULL`` for both with ``-Z``.
* JSON strings are escaped like yajl: ``\\" \\\\ \\b \\f \\n \\r \\t``, other control bytes as ``\\u00XX``
  (upper-case hex), everything else (non-ASCII bytes included) passes through untouched; there is no space
  anywhere and no newline after ``-L -J`` or ``-Q -J`` output.

>>> fmt = parse_format(b"%t [%p] @%o: %k=%s\\\\n")
>>> render = compile_format(fmt, null=None)
>>> render(Msg("t", 0, 5, 1700000000000, b"k", b"v", None))
b't [0] @5: k=v\\n'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

__all__ = [
    "NULL_STR",
    "FormatStringError",
    "Headers",
    "KafkaMessage",
    "Msg",
    "Token",
    "compile_format",
    "header_items",
    "json_string",
    "parse_delim",
    "parse_format",
    "render_json",
    "unpack_text",
]

NULL_STR: Final = b"NULL"

# confluent_kafka's timestamp types
TIMESTAMP_NOT_AVAILABLE: Final = 0
TIMESTAMP_CREATE_TIME: Final = 1
TIMESTAMP_LOG_APPEND_TIME: Final = 2


class FormatStringError(ValueError):
    """A format or delimiter kcat refuses; the message is kcat's."""


Headers = list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None


def header_items(headers: Headers) -> list[tuple[str, bytes | None]]:
    """Headers in order as (name, value) with str values encoded, as confluent-kafka may hand them over."""
    if not headers:
        return []
    items = headers.items() if isinstance(headers, dict) else headers
    return [(n, v.encode() if isinstance(v, str) else v) for n, v in items]


class KafkaMessage(Protocol):
    """What rendering reads from a consumed message (the shape of ``confluent_kafka.Message``)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Headers: ...


@dataclass(frozen=True, slots=True)
class Msg:
    """A plain message for tests and tools (CreateTime timestamps)."""

    topic_: str
    partition_: int
    offset_: int
    timestamp_: int
    key_: bytes | None
    value_: bytes | None
    headers_: Headers

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def timestamp(self) -> tuple[int, int]:
        return (TIMESTAMP_CREATE_TIME, self.timestamp_)

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def headers(self) -> Headers:
        return self.headers_


# --- delimiters -----------------------------------------------------------------------------------------------

_HEX_PREFIX = re.compile(rb"\s*[+-]?(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]*)")


def parse_delim(text: bytes) -> bytes:
    """kcat's ``parse_delim``: ``\\n``, ``\\t`` and ``\\xNN`` escapes, applied first-found-first.

    >>> parse_delim(b"\\\\t"), parse_delim(b"\\\\x2c"), parse_delim(b"::")
    (b'\\t', b',', b'::')
    """
    s = bytearray(text)
    while True:
        i = s.find(b"\\n")
        if i >= 0:
            s[i : i + 2] = b"\n"
            continue
        i = s.find(b"\\t")
        if i >= 0:
            s[i : i + 2] = b"\t"
            continue
        i = s.find(b"\\x")
        if i < 0:
            return bytes(s)
        m = _HEX_PREFIX.match(bytes(s), i + 2)
        assert m is not None
        if not m.group(1):
            raise FormatStringError(f"Delimiter {bytes(s[i:]).decode(errors='replace')} expects hex number")
        s[i : m.end()] = bytes([int(m.group(1), 16) & 0xFF])


# --- -f format strings ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "str" or the format letter: o k K s S R t p T h
    text: bytes = b""


_FORMAT_LETTERS: Final = frozenset("okKsSRtpTh")
_OCTAL = re.compile(rb"0[0-7]*")
_DEC = re.compile(rb"[0-9]+")
_HEX = re.compile(rb"(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]+)")


def _unescape_literal(raw: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == 0x5C and i + 1 < n:  # backslash with something after it
            i += 1
            e = raw[i]
            if e == ord("t"):
                out.append(9)
            elif e == ord("n"):
                out.append(10)
            elif e == ord("r"):
                out.append(13)
            else:
                base = 0
                if e == ord("x"):
                    i += 1
                    base = 16
                if i < n and 0x30 <= raw[i] <= 0x39:
                    value, end = _strtoul(raw, i, base)
                    out.append(value & 0xFF)
                    i = end - 1
                elif i < n:
                    out.append(raw[i])
                # "\x" at the very end: C copies the terminating NUL, which ends the string
                else:
                    break
        else:
            out.append(c)
        i += 1
    nul = out.find(0)
    return bytes(out if nul < 0 else out[:nul])


def _strtoul(raw: bytes, pos: int, base: int) -> tuple[int, int]:
    """C's ``strtoul`` on digits at ``pos`` (a decimal digit is known to be there): (value, end)."""
    if base == 16:
        m = _HEX.match(raw, pos)
        assert m is not None
        return int(m.group(1), 16), m.end()
    if raw[pos : pos + 2].lower() == b"0x" and _HEX.match(raw, pos):
        m = _HEX.match(raw, pos)
        assert m is not None
        return int(m.group(1), 16), m.end()
    if raw[pos] == 0x30:
        m = _OCTAL.match(raw, pos)
        assert m is not None
        return int(m.group(0), 8), m.end()
    m = _DEC.match(raw, pos)
    assert m is not None
    return int(m.group(0)), m.end()


def parse_format(fmt: bytes) -> list[Token]:
    """Split a ``-f`` format into literal and field tokens, raising kcat's error for a bad ``%`` token.

    >>> [t.kind for t in parse_format(b"%k:%s\\\\n")]
    ['k', 'str', 's', 'str']
    """
    tokens: list[Token] = []
    s = 0
    while s < len(fmt):
        t = fmt.find(b"%", s)
        if t < 0:
            tokens.append(Token("str", _unescape_literal(fmt[s:])))
            break
        if t > s:
            tokens.append(Token("str", _unescape_literal(fmt[s:t])))
        if t + 1 >= len(fmt):
            raise FormatStringError("Empty formatter")
        letter = chr(fmt[t + 1])
        if letter == "%":
            tokens.append(Token("str", b"%"))
        elif letter in _FORMAT_LETTERS:
            tokens.append(Token(letter))
        else:
            raise FormatStringError(f"Unsupported formatter: %{letter}")
        s = t + 2
    return tokens


def _headers_text(headers: Headers) -> bytes:
    parts = []
    for name, value in header_items(headers):
        parts.append(name.encode() + b"=" + (b"NULL" if value is None else value))
    return b",".join(parts)


Renderer = Callable[[KafkaMessage], bytes]


def compile_format(tokens: Sequence[Token], null: bytes | None) -> Renderer:
    """A function rendering one message with ``tokens``; ``null`` is what ``-Z`` prints for NULL/empty fields.

    The common shapes (``%s<D>`` and ``%k<K>%s<D>``, kcat's defaults) get straight-line renderers: they are the
    consumer's hot path.
    """
    empty = null or b""
    kinds = [t.kind for t in tokens]
    if kinds == ["s", "str"]:
        d = tokens[1].text

        def value_line(m: KafkaMessage) -> bytes:
            return (m.value() or empty) + d

        return value_line
    if kinds == ["k", "str", "s", "str"]:
        kd, d = tokens[1].text, tokens[3].text

        def key_value_line(m: KafkaMessage) -> bytes:
            return b"".join(((m.key() or empty), kd, (m.value() or empty), d))

        return key_value_line

    parts: list[Callable[[KafkaMessage], bytes]] = []
    for t in tokens:
        parts.append(_part(t, empty))

    def render(m: KafkaMessage) -> bytes:
        return b"".join([p(m) for p in parts])

    return render


def _length(b: bytes | None) -> bytes:
    return b"-1" if b is None else str(len(b)).encode()


def _part(t: Token, empty: bytes) -> Callable[[KafkaMessage], bytes]:
    k = t.kind
    if k == "str":
        text = t.text
        return lambda m: text
    if k == "s":
        return lambda m: m.value() or empty
    if k == "k":
        return lambda m: m.key() or empty
    if k == "S":
        return lambda m: _length(m.value())
    if k == "K":
        return lambda m: _length(m.key())
    if k == "R":
        return lambda m: (-1 if (v := m.value()) is None else len(v)).to_bytes(4, "big", signed=True)
    if k == "t":
        return lambda m: (m.topic() or "").encode()
    if k == "p":
        return lambda m: str(m.partition()).encode()
    if k == "o":
        return lambda m: str(m.offset()).encode()
    if k == "T":
        return lambda m: str(_timestamp(m)[1]).encode()
    assert k == "h", k
    return lambda m: _headers_text(m.headers())


def _timestamp(m: KafkaMessage) -> tuple[int, int]:
    kind, ts = m.timestamp()
    return (kind, -1) if kind == TIMESTAMP_NOT_AVAILABLE else (kind, ts)


# --- -s pack formats --------------------------------------------------------------------------------------------

_PACK_WIDTHS: Final = {"b": (1, True), "B": (1, False), "h": (2, True), "H": (2, False), "i": (4, True),
                       "I": (4, False), "q": (8, True), "Q": (8, False)}


def unpack_text(fmt: str, data: bytes, what: str) -> tuple[bytes, str | None]:
    """kcat's ``-s key=FMT``/``value=FMT`` on one field: ``(text printed, error or None)``; on an error the text is
    what kcat had printed before it.

    Tokens: ``b B h H i I q Q`` (signed/unsigned 8/16/32/64-bit integers), ``c`` (one byte), ``s`` (the rest, up
    to a NUL as C's ``%.*s`` prints it), ``$`` (no bytes may remain), ``' '`` (a space), ``<``/``>`` (byte order).
    As kcat 1.7.1 prints on the little-endian machines it runs on, ``<`` changes nothing: its byte-order macro swaps
    both ways, so every integer is read big-endian. Bytes after the format are ignored.

    >>> unpack_text("i$", b"\\x00\\x00\\x01\\x00", "key")
    (b'256', None)
    >>> unpack_text("h B s", b"\\xff\\xfe\\x07abc", "value")
    (b'-2 7 abc', None)
    >>> unpack_text("q", b"\\x01", "value")
    (b'', 'value truncated, expected 8 bytes to unpack q but only 1 bytes remaining')
    """
    out: list[bytes] = []
    pos = 0
    for token in fmt:
        remaining = len(data) - pos
        width = _PACK_WIDTHS.get(token)
        if width is not None:
            n, signed = width
            if n > remaining:
                return b"".join(out), (f"{what} truncated, expected {n} bytes to unpack {token} but only "
                                       f"{remaining} bytes remaining")
            out.append(str(int.from_bytes(data[pos : pos + n], "big", signed=signed)).encode())
            pos += n
        elif token == " ":
            out.append(b" ")
        elif token == "c":
            if remaining < 1:  # kcat reads past the end here (undefined); a truncation is said instead
                return b"".join(out), f"{what} truncated, expected 1 bytes to unpack c but only 0 bytes remaining"
            out.append(data[pos : pos + 1])
            pos += 1
        elif token == "s":
            out.append(data[pos:].split(b"\0", 1)[0])
            pos = len(data)
        elif token == "$" and remaining > 0:
            return b"".join(out), f"expected {what} end-of-input, but {remaining} bytes remaining"
    return b"".join(out), None


# --- JSON (yajl's generator) ----------------------------------------------------------------------------------

_JSON_ESCAPES: Final = {
    0x22: b'\\"', 0x5C: b"\\\\", 0x08: b"\\b", 0x0C: b"\\f", 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t"
}
_JSON_TABLE: Final = {
    i: _JSON_ESCAPES.get(i, b"\\u00%02X" % i) for i in [*range(0x20), 0x22, 0x5C]
}
_NEEDS_ESCAPE = re.compile(rb'[\x00-\x1f"\\]')


def json_string(b: bytes) -> bytes:
    """A JSON string as yajl writes it (bytes are not UTF-8 checked).

    >>> json_string(b'a"b\\n\\x01')
    b'"a\\\\"b\\\\n\\\\u0001"'
    """
    if _NEEDS_ESCAPE.search(b) is None:
        return b'"' + b + b'"'
    return b'"' + _NEEDS_ESCAPE.sub(lambda m: _JSON_TABLE[m.group(0)[0]], b) + b'"'


def _json_value(v: object) -> bytes:
    if v is None:
        return b"null"
    if isinstance(v, bool):
        return b"true" if v else b"false"
    if isinstance(v, int):
        return str(v).encode()
    if isinstance(v, str):
        return json_string(v.encode())
    if isinstance(v, bytes):
        return json_string(v)
    if isinstance(v, dict):
        return b"{" + b",".join(json_string(str(k).encode()) + b":" + _json_value(x) for k, x in v.items()) + b"}"
    if isinstance(v, list | tuple):
        return b"[" + b",".join(_json_value(x) for x in v) + b"]"
    raise TypeError(f"cannot render {type(v).__name__} as JSON")


def dump_json(value: object) -> bytes:
    """Compact JSON in yajl's style (insertion-ordered objects, no whitespace)."""
    return _json_value(value)


def render_json(m: KafkaMessage, broker: int, key: bytes | None = None, payload: bytes | None = None) -> bytes:
    """kcat's ``-J`` envelope for one message (without the trailing delimiter).

    ``key``/``payload``, when given, are written verbatim in place of the key's and the payload's JSON strings:
    a deserializer's JSON with the fields kcat adds after it (``{...},"value_schema_id":1``).
    """
    kind, ts = m.timestamp()
    out = [b'{"topic":', json_string((m.topic() or "").encode()), b',"partition":', str(m.partition()).encode()]
    out += [b',"offset":', str(m.offset()).encode()]
    if kind != TIMESTAMP_NOT_AVAILABLE:
        tstype = b"create" if kind == TIMESTAMP_CREATE_TIME else b"logappend"
        out += [b',"tstype":"', tstype, b'","ts":', str(ts).encode()]
    out += [b',"broker":', str(broker).encode()]
    headers = header_items(m.headers())
    if headers:
        items = []
        for name, value in headers:
            items.append(json_string(name.encode()))
            items.append(b"null" if value is None else json_string(value))
        out += [b',"headers":[', b",".join(items), b"]"]
    k, value = m.key(), m.value()
    out += [b',"key":', key if key is not None else b"null" if k is None else json_string(k)]
    out += [b',"payload":', payload if payload is not None else b"null" if value is None else json_string(value), b"}"]
    return b"".join(out)
