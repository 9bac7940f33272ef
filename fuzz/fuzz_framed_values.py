"""Invariant: whatever bytes a record carries, the registry's framed-value decoder returns a Decoded whose text is
JSON, or raises DecodeError -- never anything else -- for Avro, JSON Schema and Protobuf schemas alike, so
``loosely consume -s value=avro`` and the console's message pages show one line for any record."""

import json
import sys

import atheris

with atheris.instrument_imports(include=["loosely"]):
    from loosely.registry import DecodeError, FramedDecoder, SchemaSource
    from loosely.registry._decode import RegisteredSchema, _parse_avro

AVRO = json.dumps({"type": "record", "name": "R", "fields": [
    {"name": "u", "type": ["null", "long", "string", {"type": "enum", "name": "E", "symbols": ["A", "B"]}]},
    {"name": "m", "type": {"type": "map", "values": {"type": "array", "items": "double"}}},
    {"name": "f", "type": {"type": "fixed", "name": "F", "size": 3}}, {"name": "b", "type": "bytes"},
    {"name": "x", "type": "float"}, {"name": "t", "type": "boolean"}]})


class _Preloaded(SchemaSource):
    """Schemas 1 (Avro) and 2 (JSON Schema) without a registry; any other id is unknown."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9")
        self.known = {1: RegisteredSchema(1, "AVRO", AVRO, _parse_avro(AVRO, [])),
                      2: RegisteredSchema(2, "JSON", "{}", {})}

    def schema(self, schema_id: int) -> RegisteredSchema:
        found = self.known.get(schema_id)
        if found is None:
            raise DecodeError(f"REST request failed (code 404): schema {schema_id}")
        return found


DECODER = FramedDecoder(_Preloaded())


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    schema_id = fdp.ConsumeIntInRange(0, 3)
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    framed = b"\x00" + schema_id.to_bytes(4, "big") + body if schema_id else body
    try:
        found = DECODER.decode(framed)
    except DecodeError:
        return
    json.loads(found.json)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
