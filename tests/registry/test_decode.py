"""loosely.registry's decoder of Confluent-framed values: the frame, the JSON it writes, and its schema cache.

The registry here is a stdlib HTTP server answering ``/schemas/ids/{id}`` from a dict and counting requests, so the
cache's promises (an id fetched once, an unknown id not asked again at once, an unreachable registry failing fast)
can be checked by count. End to end through confluent-kafka's serializers: tests/cli/test_consume_registry.py.
"""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import avro.io
import avro.schema
import pytest

from loosely.registry import DecodeError, FramedDecoder, SchemaSource
from loosely.registry._decode import NOT_FOUND_S_MAX, UNREACHABLE_S_MAX, jansson_json

SCHEMAS = {
    1: {"schema": json.dumps({"type": "record", "name": "R", "fields": [
        {"name": "u", "type": ["null", "long", {"type": "enum", "name": "E", "symbols": ["A", "B"]}]},
        {"name": "f", "type": "float"}, {"name": "d", "type": "double"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]})},
    2: {"schema": json.dumps({"type": "object"}), "schemaType": "JSON"},
    3: {"schema": json.dumps({"type": "record", "name": "User", "namespace": "shop", "fields": [
        {"name": "home", "type": "shop.Address"}]}),
        "references": [{"name": "shop.Address", "subject": "address", "version": 1}]},
    4: {"schema": 'syntax = "proto3"; package shop; import "shop/place.proto"; '
                  "message Order { int64 id = 1; Place ship_to = 2; }",
        "schemaType": "PROTOBUF", "references": [{"name": "shop/place.proto", "subject": "place", "version": 1}]},
}
SUBJECT_VERSIONS = {"/subjects/address/versions/1": {"schema": json.dumps(
    {"type": "record", "name": "Address", "namespace": "shop", "fields": [{"name": "city", "type": "string"}]})},
    "/subjects/place/versions/1": {"schema": 'syntax = "proto3"; package shop; message Place { string city = 1; }',
                                   "schemaType": "PROTOBUF"}}


class _Registry(BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        found = (SCHEMAS.get(int(self.path.rsplit("/", 1)[1])) if self.path.startswith("/schemas/ids/")
                 else SUBJECT_VERSIONS.get(self.path))
        body = json.dumps(found if found else {"error_code": 40403, "message": "Schema not found"}).encode()
        self.send_response(200 if found else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def framed(schema_id: int, payload: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + payload


def avro_bytes(value: dict[str, object]) -> bytes:
    out = io.BytesIO()
    avro.io.DatumWriter(avro.schema.parse(SCHEMAS[1]["schema"])).write(value, avro.io.BinaryEncoder(out))
    return out.getvalue()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_avro_is_written_as_avro_c_writes_it(registry: str) -> None:
    import datetime

    decoder = FramedDecoder(SchemaSource(registry))
    ts = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    got = decoder.decode(framed(1, avro_bytes({"u": "B", "f": 0.5, "d": 1e-7, "ts": ts})), "AVRO")
    assert (got.schema_id, got.schema_type) == (1, "AVRO")
    assert got.json == '{"u": {"E": "B"}, "f": 0.5, "d": 1e-7, "ts": 1767225600000}'
    got = decoder.decode(framed(1, avro_bytes({"u": None, "f": 3.0, "d": 12345678901234567890.0, "ts": ts})))
    assert got.json == '{"u": null, "f": 3.0, "d": 1.2345678901234567e19, "ts": 1767225600000}'
    assert decoder.decode(framed(1, avro_bytes({"u": -1, "f": 0, "d": 0, "ts": ts}))).json.startswith(
        '{"u": {"long": -1}, ')


def test_avro_references_are_followed(registry: str) -> None:
    got = FramedDecoder(SchemaSource(registry)).decode(framed(3, b"\x0eZ\xc3\xbcrich"))
    assert got.json == '{"home": {"city": "Z\\u00FCrich"}}'


def test_protobuf_schemas_registered_as_proto_text_decode(registry: str) -> None:
    # message index 0, then Order{id: 9, ship_to: Place{city: "Oslo"}}
    got = FramedDecoder(SchemaSource(registry)).decode(framed(4, b"\x00\x08\x09\x12\x06\x0a\x04Oslo"))
    assert got.json == '{"id": "9", "ship_to": {"city": "Oslo"}}'


def test_jansson_text() -> None:
    assert jansson_json({"s": "a\"\\\b\f\n\r\t\x01\x7f/é€😀", "l": [], "m": {}, "t": True}) == (
        '{"s": "a\\"\\\\\\b\\f\\n\\r\\t\\u0001\x7f/\\u00E9\\u20AC\\uD83D\\uDE00", "l": [], "m": {}, "t": true}')
    assert [jansson_json(x) for x in (1e16, 1e-5, 0.1, -0.0, 1e300)] == ["1e16", "1e-5", "0.1", "-0.0", "1e300"]
    with pytest.raises(ValueError):
        jansson_json(float("nan"))


@pytest.mark.parametrize(("data", "error"), [
    (b"\x00\x00\x00", "Payload is smaller (3) than framing (5)"),
    (b"{\"a\": 1}", "Invalid CP1 magic byte 123, expected 0: message not produced with Schema-Registry Avro framing"),
    (framed(1, b"\x02"), "Failed to read avro value: "),  # the union's branch, then nothing
    (framed(1, b"\x06"), "Failed to read avro value: union branch 3 of 3"),
    (framed(2, b"{"), "schema 2 is a JSON Schema schema, not Avro"),
])
def test_values_that_cannot_be_decoded(registry: str, data: bytes, error: str) -> None:
    with pytest.raises(DecodeError) as e:
        FramedDecoder(SchemaSource(registry)).decode(data, "AVRO")
    assert str(e.value).startswith(error), str(e.value)


@pytest.mark.parametrize(("payload", "error"), [
    (b"{", "Failed to read JSON value: "), (b"[1e999]", "Failed to encode JSON value as JSON"),
    (b"NaN", "Failed to encode JSON value as JSON")])
def test_json_values_that_cannot_be_written(registry: str, payload: bytes, error: str) -> None:
    with pytest.raises(DecodeError) as e:
        FramedDecoder(SchemaSource(registry)).decode(framed(2, payload))
    assert str(e.value).startswith(error), str(e.value)


def test_schemas_are_fetched_once_and_unknown_ids_not_asked_again_at_once(registry: str) -> None:
    clock = Clock()
    decoder = FramedDecoder(SchemaSource(registry, clock=clock))
    _Registry.requests.clear()
    for _ in range(3):
        assert decoder.decode(framed(2, b'{"a": [1, 2.5]}')).json == '{"a": [1, 2.5]}'
    for _ in range(3):
        with pytest.raises(DecodeError, match=r"REST request failed \(code 404\): .*40403"):
            decoder.decode(framed(7, b""))
    assert _Registry.requests == ["/schemas/ids/2", "/schemas/ids/7"]
    clock.now += NOT_FOUND_S_MAX
    with pytest.raises(DecodeError):
        decoder.decode(framed(7, b""))
    assert _Registry.requests[-1] == "/schemas/ids/7" and len(_Registry.requests) == 3


def test_an_unreachable_registry_fails_fast_until_it_is_tried_again() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    url = f"http://user:pw@127.0.0.1:{s.getsockname()[1]}/"
    s.close()
    clock = Clock()
    source = SchemaSource(url, clock=clock)
    assert source.url == url.replace("user:pw@", "").rstrip("/")
    expected = "REST request failed (code -1): HTTP request failed: Couldn't connect to server"
    for _ in range(2):
        with pytest.raises(DecodeError) as e:
            FramedDecoder(source).decode(framed(1, b""))
        assert str(e.value) == expected
    clock.now += UNREACHABLE_S_MAX
    with pytest.raises(DecodeError, match="Couldn't connect"):
        source.schema(1)
    with pytest.raises(ValueError, match="expected http"):
        SchemaSource("ftp://x")
