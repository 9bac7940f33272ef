"""Invariant: whatever bytes a ``_schemas`` record carries, the registry's record reader returns a record or raises
RecordError, and applying what it returns to the state never raises: one bad record in the topic cannot stop a
registry. Schema texts of every type are parsed too: a value or RegistryError (42201), never anything else."""

import json
import sys

import atheris

with atheris.instrument_imports(include=["loosely"]):
    from loosely.registry._errors import RegistryError
    from loosely.registry._records import RecordError, decode, encode
    from loosely.registry._state import RegistryState
    from loosely.registry._types import parse

KEYS = [b'{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}', b'{"keytype":"CONFIG","subject":null,"magic":0}',
        b'{"keytype":"MODE","subject":"s","magic":0}', b'{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}']


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, 2)
    if which == 2:
        try:
            parse(["AVRO", "JSON", "PROTOBUF"][fdp.ConsumeIntInRange(0, 2)], fdp.ConsumeUnicodeNoSurrogates(512))
        except RegistryError as e:
            assert e.error_code == 42201
        return
    if which == 0:  # well-formed keys, values built from the fields readers look at, each of any JSON type
        key = KEYS[fdp.ConsumeIntInRange(0, len(KEYS) - 1)]
        doc = {}
        for name in ("subject", "version", "id", "schema", "schemaType", "deleted", "references", "metadata", "ruleSet",
                     "compatibilityLevel", "mode"):
            if fdp.ConsumeBool():
                doc[name] = [fdp.ConsumeUnicodeNoSurrogates(8), fdp.ConsumeInt(4), fdp.ConsumeBool(), None,
                             [{"name": "n", "subject": "s", "version": fdp.ConsumeInt(2)}], {}][fdp.ConsumeIntInRange(0, 5)]
        value = json.dumps(doc).encode() if fdp.ConsumeBool() else None
    else:
        key, value = fdp.ConsumeBytes(128), fdp.ConsumeBytes(512) or None
    try:
        record = decode(key, value)
    except RecordError:
        return
    RegistryState().apply(record)
    assert decode(*encode(record)) == record  # what it reads, it writes back the same


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
