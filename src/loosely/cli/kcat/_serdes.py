"""kcat's ``-s`` deserializers: pack formats (``-s key=i``), and with ``-r`` Confluent-framed keys and values
printed as JSON.

``-s value=avro -r URL`` (``-s key=avro``, or ``-s avro`` for both) decodes with the registry's schemas
(:mod:`loosely.registry`, which writes the JSON as kcat's avro-c does); loosely adds ``json`` (JSON Schema) and
``protobuf`` values framed by confluent-kafka's serializers. Only non-empty fields are decoded, as in kcat: an
empty or NULL key or value prints as it would without ``-s``.

A field that cannot be decoded (not framed, an unknown schema id, an unreachable registry) is kcat's KC_ERROR:
``% ERROR: Failed to format message in T [P] at offset O: Avro/Schema-registry message deserialization: ...``
(with ``-J``: ``Failed to deserialize value in message in T [P] at offset O: ...``) and exit code 1 after
``: terminating``; with ``-E`` the line is printed and consumption goes on -- in ``-f`` output the message is cut
where the field was, in ``-J`` the field is ``null`` and ``key_error``/``payload_error`` says why.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Final

from loosely.cli.kcat._options import Conf, FormatFailure
from loosely.clients.kcat_format import KafkaMessage, Token, compile_format, json_string, render_json, unpack_text
from loosely.registry import DecodeError, FramedDecoder, SchemaSource

__all__ = ["serdes_renderer"]

_ERRSTR_BYTES_MAX: Final = 255  # kcat's errstr[256]
_WHAT: Final = {"AVRO": "Avro", "JSON": "JSON Schema", "PROTOBUF": "Protobuf"}


_Part = Callable[[KafkaMessage], tuple[bytes, str | None]]  # a piece of -f output: (text, kcat's error or None)


def _where(m: KafkaMessage) -> str:
    return f"{m.topic()} [{m.partition()}] at offset {m.offset()}"


def serdes_renderer(conf: Conf, tokens: list[Token], broker_of: Callable[[KafkaMessage], int] | None,
                    tail: bytes) -> Callable[[KafkaMessage], bytes]:
    """The renderer of ``-f`` ``tokens`` (or of ``-J`` when ``broker_of`` is given) decoding the ``-s`` fields."""
    decoder = FramedDecoder(SchemaSource(conf.registry_url)) if conf.serdes and conf.registry_url else None

    def decode(data: bytes, schema_type: str) -> tuple[bytes, int]:
        assert decoder is not None
        try:
            found = decoder.decode(data, schema_type)
        except DecodeError as e:
            raise DecodeError(str(e)[:_ERRSTR_BYTES_MAX]) from None
        return found.json.encode(), found.schema_id

    def report(line: str) -> None:
        sys.stderr.write(f"% ERROR: {line}\n")
        sys.stderr.flush()

    if broker_of is not None:
        key_type, value_type = conf.serdes.get("key"), conf.serdes.get("value")

        def as_json(m: KafkaMessage) -> bytes:
            fields: dict[str, bytes] = {}
            for name, schema_type, data in (("key", key_type, m.key()), ("payload", value_type, m.value())):
                if schema_type is None or data is None:
                    continue
                try:
                    text, schema_id = decode(data, schema_type)
                except DecodeError as e:
                    line = f"Failed to deserialize {'key' if name == 'key' else 'value'} in message in {_where(m)}: {e}"
                    if conf.exit_on_error:
                        raise FormatFailure(b"", line) from None
                    report(line)
                    fields[name] = b"null,\"" + name.encode() + b'_error":' + json_string(str(e).encode())
                    continue
                label = b"key_schema_id" if name == "key" else b"value_schema_id"
                fields[name] = text + b',"' + label + b'":' + str(schema_id).encode()
            return render_json(m, broker_of(m), fields.get("key"), fields.get("payload")) + tail

        return as_json

    null = b"NULL" if conf.null else b""

    def field_part(name: str, get: Callable[[KafkaMessage], bytes | None]) -> _Part | None:
        """The part printing ``%k`` or ``%s`` deserialized: ``m -> (text, error or None)``."""
        schema_type, fmt = conf.serdes.get(name), conf.pack.get(name)
        if schema_type is not None:
            what = f"{_WHAT[schema_type]}/Schema-registry {'key' if name == 'key' else 'message'} deserialization: "

            def registry_field(m: KafkaMessage) -> tuple[bytes, str | None]:
                data = get(m)
                if not data:
                    return null, None
                try:
                    return decode(data, schema_type)[0], None
                except DecodeError as e:
                    return b"", what + str(e)

            return registry_field
        if fmt is not None:
            def packed_field(m: KafkaMessage) -> tuple[bytes, str | None]:
                data = get(m)
                return (null, None) if not data else unpack_text(fmt, data, name)

            return packed_field
        return None

    parts: list[_Part] = []
    for t in tokens:
        part = field_part("key", _key) if t.kind == "k" else field_part("value", _value) if t.kind == "s" else None
        if part is None:
            plain = compile_format([t], null or None)
            part = _plain(plain)
        parts.append(part)

    def render(m: KafkaMessage) -> bytes:
        out: list[bytes] = []
        for part in parts:
            text, error = part(m)
            out.append(text)
            if error is not None:
                line = f"Failed to format message in {_where(m)}: {error}"
                if conf.exit_on_error:
                    raise FormatFailure(b"".join(out), line)
                report(line)
                break
        return b"".join(out)

    return render


def _key(m: KafkaMessage) -> bytes | None:
    return m.key()


def _value(m: KafkaMessage) -> bytes | None:
    return m.value()


def _plain(render: Callable[[KafkaMessage], bytes]) -> _Part:
    return lambda m: (render(m), None)
