"""kcat's ``-s`` deserializers with ``-r``: Confluent-framed keys and values printed as JSON.

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
from loosely.clients.kcat_format import KafkaMessage, Token, compile_format, json_string, render_json
from loosely.registry import DecodeError, FramedDecoder, SchemaSource

__all__ = ["serdes_renderer"]

_ERRSTR_BYTES_MAX: Final = 255  # kcat's errstr[256]
_WHAT: Final = {"AVRO": "Avro", "JSON": "JSON Schema", "PROTOBUF": "Protobuf"}


def _where(m: KafkaMessage) -> str:
    return f"{m.topic()} [{m.partition()}] at offset {m.offset()}"


def serdes_renderer(conf: Conf, tokens: list[Token], broker_of: Callable[[KafkaMessage], int] | None,
                    tail: bytes) -> Callable[[KafkaMessage], bytes]:
    """The renderer of ``-f`` ``tokens`` (or of ``-J`` when ``broker_of`` is given) decoding the ``-s`` fields."""
    assert conf.registry_url is not None
    decoder = FramedDecoder(SchemaSource(conf.registry_url))
    key_type, value_type = conf.serdes.get("key"), conf.serdes.get("value")

    def decode(data: bytes, schema_type: str) -> tuple[bytes, int]:
        try:
            found = decoder.decode(data, schema_type)
        except DecodeError as e:
            raise DecodeError(str(e)[:_ERRSTR_BYTES_MAX]) from None
        return found.json.encode(), found.schema_id

    def report(line: str) -> None:
        sys.stderr.write(f"% ERROR: {line}\n")
        sys.stderr.flush()

    if broker_of is not None:
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
    parts: list[tuple[Callable[[KafkaMessage], bytes], str | None, str]] = []
    for t in tokens:
        if t.kind == "k" and key_type is not None:
            parts.append((lambda m: m.key() or b"", key_type, "key"))
        elif t.kind == "s" and value_type is not None:
            parts.append((lambda m: m.value() or b"", value_type, "message"))
        else:
            parts.append((compile_format([t], null or None), None, ""))

    def render(m: KafkaMessage) -> bytes:
        out: list[bytes] = []
        for part, schema_type, what in parts:
            if schema_type is None:
                out.append(part(m))
                continue
            data = part(m)
            if not data:
                out.append(null)
                continue
            try:
                out.append(decode(data, schema_type)[0])
            except DecodeError as e:
                line = (f"Failed to format message in {_where(m)}: "
                        f"{_WHAT[schema_type]}/Schema-registry {what} deserialization: {e}")
                if conf.exit_on_error:
                    raise FormatFailure(b"".join(out), line) from None
                report(line)
                return b"".join(out)
        return b"".join(out)

    return render
