"""Registry-aware decoding of Confluent-framed records: the values confluent-kafka's serializers write, shown as JSON.

Theory of operation
-------------------

Confluent's serializers frame every record value (or key) the same way, and this module reads that frame::

    byte 0      magic, always 0
    bytes 1-4   the schema's global id, a big-endian int32
    PROTOBUF    the message's path in its file: a zigzag varint count, then that many zigzag varint indexes
                (a count of 0 alone means [0], the first message: what the serializers write most often)
    the rest    the payload: Avro binary, JSON text, or a Protobuf message

:class:`SchemaSource` fetches schemas by id from a registry's REST API (``GET /schemas/ids/{id}``, references
through ``GET /subjects/{s}/versions/{v}``) and keeps each one, parsed, for the life of the source: a global id
names one schema forever, so the cache needs no expiry. It holds back failures instead of repeating them: an id
the registry does not know is not asked for again for ``NOT_FOUND_S_MAX`` seconds, and after a connection failure
every look-up fails at once for ``UNREACHABLE_S_MAX`` seconds, so a page of 500 records or a topic of a million
costs one timeout, not one each. :class:`FramedDecoder` turns one framed value into a :class:`Decoded`: its id,
type and the value as JSON text.

The JSON is what kcat prints for ``-s value=avro``: kcat decodes with libserdes into avro-c values and prints
them with avro-c's JSON encoder (jansson, one line), and :func:`jansson_json` writes the same text -- ``", "`` and
``": "`` between items, non-ASCII as upper-case ``\\uXXXX`` escapes, a union as ``{"branch": value}`` named by the
branch's type (``int``, ``string``, a named type's short name) except a null branch which is plain ``null``,
``bytes`` and ``fixed`` as strings of code points U+0000..U+00FF (one per byte), enums as their symbol, logical
types as their underlying type (a ``timestamp-millis`` is its long), record fields in schema order. Floats print
as the shortest text that reads back to the same double, as jansson >= 2.14 writes them (``1e20``, not Python's
``1e+20``); a ``float`` is widened to a double first (``1.100000023841858``). A NaN or infinite number fails as in
kcat ("Failed to encode Avro as JSON"). Documented differences: a top-level ``bytes`` schema is read with its length
prefix (libserdes reads the whole payload as raw bytes, the Java serializer's special case; confluent-kafka's
Python serializer writes the prefix), and schema references are followed (libserdes cannot).

JSON Schema and Protobuf values (loosely's additions: kcat has only Avro) are printed in the same style: a JSON
Schema payload is parsed and re-written, a Protobuf message is printed as Protobuf's JSON mapping with the field
names of the ``.proto``.

Errors are :class:`DecodeError`, one line in libserdes's words where it has them ("Invalid CP1 magic byte 1,
expected 0", "REST request failed (code 404): {...}", "REST request failed (code -1): HTTP request failed:
Couldn't connect to server").

>>> jansson_json({"name": "Ada", "tags": ["x", "é"], "score": 1e20, "n": None})
'{"name": "Ada", "tags": ["x", "\\\\u00E9"], "score": 1e20, "n": null}'
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from loosely.protocol.errors import CorruptRecordError
from loosely.protocol.primitives import Reader, read_varint

__all__ = [
    "FRAME_BYTES",
    "DecodeError",
    "Decoded",
    "FramedDecoder",
    "RegisteredSchema",
    "SchemaSource",
    "jansson_json",
]

FRAME_MAGIC: Final = 0
FRAME_BYTES: Final = 5  # magic byte + int32 schema id
TIMEOUT_S_DEFAULT: Final = 10.0  # one HTTP request to the registry at most
NOT_FOUND_S_MAX: Final = 10.0  # an unknown id is not asked for again within this
UNREACHABLE_S_MAX: Final = 5.0  # after a connection failure, look-ups fail at once within this
REFERENCE_DEPTH_MAX: Final = 32  # references of references, at most this deep (a cycle ends here)
_BODY_BYTES_MAX: Final = 16 << 20  # a registry answer read at most (schemas are kilobytes)
_TYPE_NAMES: Final = {"AVRO": "Avro", "JSON": "JSON Schema", "PROTOBUF": "Protobuf"}


class DecodeError(Exception):
    """A value that cannot be decoded, or a registry that cannot answer: one line, libserdes's words."""


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    """A schema as the registry gives it by id, parsed (``parsed``: an ``avro.schema.Schema``, the JSON Schema
    document, or a Protobuf ``FileDescriptor``)."""

    schema_id: int
    schema_type: str
    text: str
    parsed: Any


@dataclass(frozen=True, slots=True)
class Decoded:
    """One framed value, decoded: ``json`` is its JSON text in kcat's style (see the module header)."""

    schema_id: int
    schema_type: str
    json: str


class _FrameReader(Reader):
    error = DecodeError


def _curl_words(e: BaseException) -> str:
    """curl's text for the failures libserdes reports (kcat's users grep for them), else Python's."""
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, ConnectionRefusedError):
        return "Couldn't connect to server"
    if isinstance(reason, TimeoutError):
        return "Timeout was reached"
    if isinstance(reason, OSError) and "Name or service not known" in str(reason):
        return "Couldn't resolve host name"
    return str(reason)


class SchemaSource:
    """Schemas by global id from the registry at ``url`` (``http(s)://[user:password@]host:port``), cached.

    Thread-safe: the console's pages share one.
    """

    def __init__(self, url: str, *, timeout_s: float = TIMEOUT_S_DEFAULT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"schema registry URL {url!r}: expected http(s)://HOST:PORT")
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self._auth: str | None = None
        if parts.username is not None:
            user_info = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            self._auth = "Basic " + base64.b64encode(user_info.encode()).decode()
        self.timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._schemas: dict[int, RegisteredSchema] = {}
        self._subjects: dict[int, tuple[tuple[str, int], ...]] = {}
        self._not_found: dict[int, tuple[float, str]] = {}
        self._down: tuple[float, str] | None = None

    def _get(self, path: str) -> Any:
        with self._lock:
            down = self._down
        if down is not None and self._clock() < down[0]:
            raise DecodeError(down[1])
        request = urllib.request.Request(self.url + path,
                                         headers={"Accept": "application/vnd.schemaregistry.v1+json"})
        if self._auth is not None:
            request.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                body = answer.read(_BODY_BYTES_MAX)
        except urllib.error.HTTPError as e:
            text = e.read(4096).decode("utf-8", "replace").strip()
            raise DecodeError(f"REST request failed (code {e.code}): {text}") from None
        except (OSError, ValueError) as e:
            message = f"REST request failed (code -1): HTTP request failed: {_curl_words(e)}"
            with self._lock:
                self._down = (self._clock() + UNREACHABLE_S_MAX, message)
            raise DecodeError(message) from None
        with self._lock:
            self._down = None
        try:
            return json.loads(body)
        except ValueError as e:
            raise DecodeError(f"Failed to read schema envelope: {e}") from None

    def schema(self, schema_id: int) -> RegisteredSchema:
        """The schema with this global id (DecodeError when the registry does not know it or cannot answer)."""
        with self._lock:
            found = self._schemas.get(schema_id)
            missing = self._not_found.get(schema_id)
        if found is not None:
            return found
        if missing is not None and self._clock() < missing[0]:
            raise DecodeError(missing[1])
        try:
            envelope = self._get(f"/schemas/ids/{schema_id}")
        except DecodeError as e:
            if "(code 404)" in str(e):
                with self._lock:
                    self._not_found[schema_id] = (self._clock() + NOT_FOUND_S_MAX, str(e))
            raise
        parsed = self._parse(schema_id, envelope, 0)
        with self._lock:
            self._schemas[schema_id] = parsed
        return parsed

    def subjects(self, schema_id: int) -> tuple[tuple[str, int], ...]:
        """``((subject, version), ...)`` registering this id (``GET /schemas/ids/{id}/versions``), cached."""
        with self._lock:
            found = self._subjects.get(schema_id)
        if found is not None:
            return found
        answer = self._get(f"/schemas/ids/{schema_id}/versions")
        out = tuple((str(v.get("subject")), int(v.get("version") or 0)) for v in answer if isinstance(v, dict)) \
            if isinstance(answer, list) else ()
        with self._lock:
            self._subjects[schema_id] = out
        return out

    def _referenced(self, envelope: dict[str, Any], depth: int) -> list[tuple[str, str]]:
        """``[(name, schema text), ...]`` of every schema ``envelope`` references, depth first (dependencies
        first), each once."""
        if depth > REFERENCE_DEPTH_MAX:
            raise DecodeError(f"schema references nested deeper than {REFERENCE_DEPTH_MAX}")
        out: list[tuple[str, str]] = []
        refs = envelope.get("references") or []
        if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
            raise DecodeError('"references" is not a list of {"name", "subject", "version"}')
        for ref in refs:
            subject = urllib.parse.quote(str(ref.get("subject", "")), safe="")
            version = ref.get("version")
            found = self._get(f"/subjects/{subject}/versions/{version if isinstance(version, int) else -1}")
            if not isinstance(found, dict) or not isinstance(found.get("schema"), str):
                raise DecodeError(f'No "schema" string field in reference {ref.get("name")!r}')
            for item in [*self._referenced(found, depth + 1), (str(ref.get("name", "")), found["schema"])]:
                if item not in out:
                    out.append(item)
        return out

    def _parse(self, schema_id: int, envelope: Any, depth: int) -> RegisteredSchema:
        if not isinstance(envelope, dict) or not isinstance(envelope.get("schema"), str):
            raise DecodeError(f'No "schema" string field in schema {schema_id} envelope')
        schema_type = str(envelope.get("schemaType") or "AVRO").upper()
        text = envelope["schema"]
        referenced = self._referenced(envelope, depth)
        try:
            if schema_type == "AVRO":
                parsed: Any = _parse_avro(text, [t for _, t in referenced])
            elif schema_type == "JSON":
                parsed = json.loads(text)
            elif schema_type == "PROTOBUF":
                from loosely.registry._protobuf import build_file  # noqa: PLC0415 - protobuf only when used

                parsed = build_file(text, tuple(referenced))
            else:
                raise DecodeError(f"schema {schema_id} has type {schema_type}, not AVRO, JSON or PROTOBUF")
        except DecodeError:
            raise
        except Exception as e:  # the parsers raise many kinds; each is one line here
            raise DecodeError(f"Schema {schema_id} parse failed: {e}") from None
        return RegisteredSchema(schema_id, schema_type, text, parsed)


def _parse_avro(text: str, referenced: list[str]) -> Any:
    import avro.name  # noqa: PLC0415 - avro loads only when an Avro schema is met
    import avro.schema  # noqa: PLC0415

    names = avro.name.Names()
    for ref in referenced:  # named types a reference defines become visible to the schema that uses them
        avro.schema.make_avsc_object(json.loads(ref), names)
    return avro.schema.make_avsc_object(json.loads(text), names)


class FramedDecoder:
    """Decodes framed values with the schemas of ``source``.

    ``decode(data, expect="AVRO")`` refuses a value whose schema is of another type (kcat's ``-s value=avro``);
    with ``expect=None`` any of the three types is decoded (the console).
    """

    def __init__(self, source: SchemaSource) -> None:
        self.source = source

    def decode(self, data: bytes, expect: str | None = None) -> Decoded:
        what = _TYPE_NAMES.get(expect or "AVRO", "Avro")
        if len(data) < FRAME_BYTES:
            raise DecodeError(f"Payload is smaller ({len(data)}) than framing ({FRAME_BYTES})")
        if data[0] != FRAME_MAGIC:
            raise DecodeError(f"Invalid CP1 magic byte {data[0]}, expected {FRAME_MAGIC}: "
                              f"message not produced with Schema-Registry {what} framing")
        reader = _FrameReader(data, 1)
        schema_id = reader.i32()
        schema = self.source.schema(schema_id)
        if expect is not None and schema.schema_type != expect:
            raise DecodeError(f"schema {schema_id} is a {_TYPE_NAMES[schema.schema_type]} schema, not {what}")
        payload = data[FRAME_BYTES:]
        if schema.schema_type == "AVRO":
            return Decoded(schema_id, "AVRO", _avro_json(schema.parsed, payload))
        if schema.schema_type == "JSON":
            try:
                doc = json.loads(payload)
            except (ValueError, RecursionError) as e:
                raise DecodeError(f"Failed to read JSON value: {e}") from None
            try:
                return Decoded(schema_id, "JSON", _encode(doc))
            except (ValueError, RecursionError):  # NaN, Infinity, 1e999: JSON that jansson cannot write
                raise DecodeError("Failed to encode JSON value as JSON") from None
        return Decoded(schema_id, "PROTOBUF", _protobuf_json(schema.parsed, payload))


# --- Avro binary to avro-c's JSON --------------------------------------------------------------------------------


class _Union:
    """A union's non-null branch, kept apart from a map so the encoder writes ``{"branch": value}``."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: object) -> None:
        self.name = name
        self.value = value


def _avro_json(schema: Any, payload: bytes) -> str:
    import avro.errors  # noqa: PLC0415
    import avro.io  # noqa: PLC0415

    decoder = avro.io.BinaryDecoder(io.BytesIO(payload))
    try:
        value = _read_avro(schema, decoder)
    except (avro.errors.AvroException, UnicodeDecodeError, IndexError, ValueError, RecursionError) as e:
        raise DecodeError(f"Failed to read avro value: {e}") from None
    try:
        return _encode(value)
    except ValueError:
        raise DecodeError("Failed to encode Avro as JSON") from None


def _branch_name(schema: Any) -> str:
    """avro-c's ``avro_schema_type_name``: a named type's short name, else the type."""
    name = getattr(schema, "name", None)
    return str(name) if name and schema.type in ("record", "error", "enum", "fixed") else str(schema.type)


def _read_avro(schema: Any, d: Any) -> object:
    t = schema.type
    if t == "null":
        return None
    if t == "boolean":
        return d.read_boolean()
    if t in ("int", "long"):
        return d.read_long()
    if t == "float":
        return d.read_float()
    if t == "double":
        return d.read_double()
    if t == "string":
        return d.read_bytes().decode("utf-8").split("\0", 1)[0]  # jansson's json_string stops at a NUL
    if t == "bytes":
        return d.read_bytes().decode("latin-1")  # avro-c: one code point per byte
    if t == "fixed":
        return d.read(schema.size).decode("latin-1")
    if t == "enum":
        return schema.symbols[d.read_int()]
    if t in ("record", "error", "request"):
        return {f.name: _read_avro(f.type, d) for f in schema.fields}
    if t == "array":
        return [_read_avro(schema.items, d) for _ in _blocks(d)]
    if t == "map":
        out: dict[str, object] = {}
        for _ in _blocks(d):
            key = d.read_bytes().decode("utf-8").split("\0", 1)[0]
            out[key] = _read_avro(schema.values, d)
        return out
    if t == "union":
        index = d.read_long()
        if not 0 <= index < len(schema.schemas):
            raise ValueError(f"union branch {index} of {len(schema.schemas)}")
        branch = schema.schemas[index]
        value = _read_avro(branch, d)
        return None if branch.type == "null" else _Union(_branch_name(branch), value)
    raise ValueError(f"unknown Avro type {t}")


def _blocks(d: Any) -> Any:
    """Yields once per item of an Avro array or map (blocks of items; a negative count has a byte size after)."""
    while True:
        count = d.read_long()
        if count == 0:
            return
        if count < 0:
            count = -count
            d.read_long()
        if count > 1 << 24:
            raise ValueError(f"a block of {count} items")
        for _ in range(count):
            yield None


# --- JSON as jansson writes it ----------------------------------------------------------------------------------


def _real(x: float) -> str:
    """jansson (>= 2.14, dtoa) for a double: Python's shortest repr, exponent without ``+`` or leading zeros."""
    if not math.isfinite(x):
        raise ValueError("jansson refuses NaN and infinities")
    text = repr(x)
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if e else text


_SHORT_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE: Final = re.compile('[\x00-\x1f"\\\\\x80-\U0010ffff]')


def _escape(m: re.Match[str]) -> str:
    c = m.group(0)
    short = _SHORT_ESCAPES.get(c)
    if short is not None:
        return short
    cp = ord(c)
    if cp < 0x10000:
        return f"\\u{cp:04X}"
    cp -= 0x10000
    return f"\\u{0xD800 | (cp >> 10):04X}\\u{0xDC00 | (cp & 0x3FF):04X}"


def _string(s: str) -> str:
    """jansson's string with JSON_ENSURE_ASCII: short escapes, other control and non-ASCII characters as
    upper-case ``\\uXXXX`` (surrogate pairs above U+FFFF); DEL and ``/`` pass through."""
    return '"' + _NEEDS_ESCAPE.sub(_escape, s) + '"'


def _encode(v: object) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _real(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, _Union):
        return "{" + _string(v.name) + ": " + _encode(v.value) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join(_string(str(k)) + ": " + _encode(x) for k, x in v.items()) + "}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_encode(x) for x in v) + "]"
    raise ValueError(f"cannot write {type(v).__name__} as JSON")


def jansson_json(value: object) -> str:
    """``value`` (JSON-like Python data) as one line of JSON the way jansson writes it for avro-c (see the header)."""
    return _encode(value)


# --- Protobuf ---------------------------------------------------------------------------------------------------


def _protobuf_json(file: Any, payload: bytes) -> str:
    from google.protobuf import json_format, message_factory  # noqa: PLC0415
    from google.protobuf.message import DecodeError as ProtobufDecodeError  # noqa: PLC0415

    pos = 0
    try:
        count, pos = read_varint(payload, pos)
        path = []
        for _ in range(count):
            index, pos = read_varint(payload, pos)
            path.append(index)
    except CorruptRecordError as e:
        raise DecodeError(f"Failed to read Protobuf message indexes: {e}") from None
    path = path or [0]
    try:
        descriptor = file.message_types_by_name[list(file.message_types_by_name)[path[0]]]
        for index in path[1:]:
            descriptor = descriptor.nested_types[index]
    except (IndexError, KeyError):
        raise DecodeError(f"no message at index path {path} in {file.name}") from None
    message = message_factory.GetMessageClass(descriptor)()
    try:
        message.ParseFromString(payload[pos:])
    except ProtobufDecodeError as e:
        raise DecodeError(f"Failed to read Protobuf message: {e}") from None
    try:
        return _encode(json_format.MessageToDict(message, preserving_proto_field_name=True))
    except (ValueError, RecursionError) as e:  # json_format refuses what the JSON mapping cannot say
        raise DecodeError(f"Failed to encode Protobuf as JSON: {e}") from None
