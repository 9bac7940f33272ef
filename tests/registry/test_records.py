"""The ``_schemas`` record format: the exact bytes Confluent Schema Registry and Karapace write and read."""

from __future__ import annotations

import pytest

from loosely.registry._records import (
    ConfigRecord,
    DeleteSubjectRecord,
    ModeRecord,
    NoopRecord,
    RecordError,
    Reference,
    SchemaTombstone,
    SchemaVersion,
    decode,
    encode,
)

# (record, key bytes, value bytes) in Confluent's format: key fields in its order, compact JSON, schemaType left out
# for AVRO, references left out when empty.
GOLDEN = [
    (SchemaVersion("s-value", 1, 3, '"string"'),
     b'{"keytype":"SCHEMA","subject":"s-value","version":1,"magic":1}',
     b'{"subject":"s-value","version":1,"id":3,"schema":"\\"string\\"","deleted":false}'),
    (SchemaVersion("j", 2, 4, '{"type":"object"}', "JSON", (Reference("r", "other", 1),), deleted=True),
     b'{"keytype":"SCHEMA","subject":"j","version":2,"magic":1}',
     b'{"subject":"j","version":2,"id":4,"schema":"{\\"type\\":\\"object\\"}","schemaType":"JSON",'
     b'"references":[{"name":"r","subject":"other","version":1}],"deleted":true}'),
    # a data contract: metadata and ruleSet after the references, as Confluent's SchemaValue writes them
    (SchemaVersion("c", 1, 5, '"int"', metadata='{"properties":{"owner":"ana"}}',
                   rule_set='{"domainRules":[{"name":"r","kind":"CONDITION","mode":"WRITE","type":"CEL"}]}'),
     b'{"keytype":"SCHEMA","subject":"c","version":1,"magic":1}',
     b'{"subject":"c","version":1,"id":5,"schema":"\\"int\\"","metadata":{"properties":{"owner":"ana"}},'
     b'"ruleSet":{"domainRules":[{"name":"r","kind":"CONDITION","mode":"WRITE","type":"CEL"}]},"deleted":false}'),
    (SchemaTombstone("s", 2), b'{"keytype":"SCHEMA","subject":"s","version":2,"magic":1}', None),
    (ConfigRecord(None, "FULL"), b'{"keytype":"CONFIG","subject":null,"magic":0}', b'{"compatibilityLevel":"FULL"}'),
    (ConfigRecord("s", None, override_metadata='{"properties":{"owner":"ana"}}'),
     b'{"keytype":"CONFIG","subject":"s","magic":0}', b'{"overrideMetadata":{"properties":{"owner":"ana"}}}'),
    (ConfigRecord(None, "FULL", default_rule_set='{"domainRules":[{"name":"r"}]}'),
     b'{"keytype":"CONFIG","subject":null,"magic":0}',
     b'{"compatibilityLevel":"FULL","defaultRuleSet":{"domainRules":[{"name":"r"}]}}'),
    (ConfigRecord("s", None), b'{"keytype":"CONFIG","subject":"s","magic":0}', None),
    (ModeRecord(None, "READONLY"), b'{"keytype":"MODE","subject":null,"magic":0}', b'{"mode":"READONLY"}'),
    (DeleteSubjectRecord("s", 3), b'{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}',
     b'{"subject":"s","version":3}'),
    (NoopRecord(), b'{"keytype":"NOOP","magic":0}', None),
]


@pytest.mark.parametrize(("record", "key", "value"), GOLDEN)
def test_encode_writes_confluents_bytes_and_decode_reads_them_back(record, key, value) -> None:
    assert encode(record) == (key, value)
    assert decode(key, value) == record


def test_decode_reads_what_confluent_and_karapace_add() -> None:
    # Confluent adds fields we do not model (md5, metadata, ruleSet); Karapace writes keys in another order and
    # "" for some tombstones: all still read.
    v = decode(b'{"magic":1,"subject":"s","version":1,"keytype":"SCHEMA"}',
               b'{"subject":"s","version":1,"id":9,"schema":"\\"int\\"","md5":"x","metadata":null}')
    assert v == SchemaVersion("s", 1, 9, '"int"')
    assert decode(b'{"keytype":"CONFIG","subject":"s","magic":0}', b"") == ConfigRecord("s", None)


@pytest.mark.parametrize(("key", "value"), [
    (None, b"{}"),
    (b"not json", None),
    (b"[1]", None),
    (b'{"keytype":"SCHEMA","version":1,"magic":1}', None),  # no subject
    (b'{"keytype":"SCHEMA","subject":"s","version":"1","magic":1}', None),  # version not a number
    (b'{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}', b'{"subject":"s","version":1}'),  # no id
    (b'{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}', b'{"subject":"s","version":1,"id":true,'
                                                                   b'"schema":"x"}'),
    (b'{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}', None),
    (b'{"keytype":"WHAT","magic":0}', None),
])
def test_unreadable_records_raise_record_error(key, value) -> None:
    with pytest.raises(RecordError):
        decode(key, value)
