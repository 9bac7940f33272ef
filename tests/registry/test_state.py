"""The registry's state machine without Kafka: plans applied as the store would apply them read back from the log."""

from __future__ import annotations

import json

import pytest

from loosely.registry._errors import RegistryError
from loosely.registry._records import Reference, decode, encode
from loosely.registry._state import RegistryState

A1 = json.dumps({"type": "record", "name": "A", "fields": [{"name": "x", "type": "int"}]})
A2 = json.dumps({"type": "record", "name": "A", "fields": [{"name": "x", "type": "int"},
                                                           {"name": "y", "type": "int", "default": 0}]})
A_BAD = json.dumps({"type": "record", "name": "A", "fields": [{"name": "z", "type": "int"}]})


class Log:
    """The log as the store sees it: encoded records, applied in order to a state."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []
        self.state = RegistryState()

    def change(self, planned):
        answer, records = planned
        for r in records:
            self.records.append(encode(r))
            self.state.apply(decode(*self.records[-1]))
        return answer

    def rebuilt(self) -> RegistryState:
        s = RegistryState()
        for k, v in self.records:
            s.apply(decode(k, v))
        return s


def code(fn) -> int:
    with pytest.raises(RegistryError) as e:
        fn()
    return e.value.error_code


@pytest.fixture
def log() -> Log:
    return Log()


def test_register_is_idempotent_and_ids_are_global(log: Log) -> None:
    s = log.state
    assert log.change(s.register("a", A1)) == 1
    n = len(log.records)
    assert log.change(s.register("a", json.dumps(json.loads(A1), indent=4))) == 1  # same schema, other spacing
    assert len(log.records) == n  # nothing written
    assert log.change(s.register("b", A1)) == 1  # same schema, another subject: same id, version 1 there
    assert s.versions("b") == [1]
    assert log.change(s.register("a", A2)) == 2
    assert s.versions("a") == [1, 2]
    assert s.get_version("a", "latest").id == 2
    assert s.id_versions(1) == [("a", 1), ("b", 1)]


def test_incompatible_schema_is_refused_and_nothing_written(log: Log) -> None:
    s = log.state
    log.change(s.register("a", A1))
    n = len(log.records)
    with pytest.raises(RegistryError) as e:
        s.register("a", A_BAD)
    assert (e.value.http_status, e.value.error_code) == (409, 409)
    assert "incompatible" in e.value.message
    assert len(log.records) == n
    log.change((None, s.set_compatibility("a", "NONE")))
    assert log.change(s.register("a", A_BAD)) == 2


def test_soft_then_hard_delete_of_a_version(log: Log) -> None:
    s = log.state
    log.change(s.register("a", A1))
    log.change(s.register("a", A2))
    assert code(lambda: s.delete_version("a", "1", permanent=True)) == 40407
    assert log.change(s.delete_version("a", "1", permanent=False)) == 1
    assert s.versions("a") == [2]
    assert s.versions("a", deleted=True) == [1, 2]
    assert code(lambda: s.get_version("a", "1")) == 40402
    assert s.get_version("a", "1", deleted=True).deleted
    assert s.schema_by_id(1).schema == json.loads(json.dumps(A1)).replace(" ", "")  # soft-deleted id resolves
    assert code(lambda: s.delete_version("a", "1", permanent=False)) == 40406
    assert log.change(s.delete_version("a", "1", permanent=True)) == 1
    assert code(lambda: s.schema_by_id(1)) == 40403  # no version uses id 1 any more
    assert log.change(s.register("a", A1)) == 3  # versions and ids never come back
    assert s.versions("a") == [2, 3]


def test_subject_delete_soft_then_permanent(log: Log) -> None:
    s = log.state
    log.change(s.register("a", A1))
    log.change((None, s.set_compatibility("a", "FULL")))
    assert code(lambda: s.delete_subject("a", permanent=True)) == 40405
    assert log.change(s.delete_subject("a", permanent=False)) == [1]
    assert s.subjects() == [] and s.subjects(deleted=True) == ["a"]
    assert s.compatibility("a") is None  # a deleted subject keeps no config of its own
    assert code(lambda: s.versions("a")) == 40401
    assert code(lambda: s.delete_subject("a", permanent=False)) == 40404
    assert log.change(s.delete_subject("a", permanent=True)) == [1]
    assert s.subjects(deleted=True) == []
    assert code(lambda: s.delete_subject("a", permanent=False)) == 40401


def test_modes(log: Log) -> None:
    s = log.state
    log.change((None, s.set_mode(None, "READONLY")))
    assert code(lambda: s.register("a", A1)) == 42205
    log.change((None, s.set_mode(None, "READWRITE")))
    log.change(s.register("a", A1))
    assert code(lambda: s.set_mode(None, "IMPORT")) == 42205  # not with subjects present, unless forced
    assert code(lambda: s.set_mode(None, "SIDEWAYS")) == 42204
    log.change((None, s.set_mode("b", "IMPORT")))
    assert log.change(s.register("b", A2, schema_id=100, version=7)) == 100
    assert s.get_version("b", "7").id == 100
    assert code(lambda: s.register("b", A1, schema_id=100)) == 42205  # id 100 is another schema
    assert code(lambda: s.register("a", A2, schema_id=5)) == 42205  # "a" is not in import mode
    assert log.change(s.register("a", A2)) == 100  # the schema imported as 100 keeps its id everywhere
    assert log.change(s.register("c", '"string"')) == 101  # new ids go on from the highest seen


def test_versions_and_levels_are_validated(log: Log) -> None:
    s = log.state
    log.change(s.register("a", A1))
    for bad in ("0", "-2", "x", str(2**31)):
        assert code(lambda bad=bad: s.get_version("a", bad)) == 42202
    assert s.get_version("a", "-1").version == 1
    assert code(lambda: s.set_compatibility(None, "SOMETIMES")) == 42203
    assert code(lambda: s.get_version("nope", "1")) == 40401
    assert code(lambda: s.lookup("a", A2)) == 40403
    assert s.lookup("a", A1).version == 1


def test_references_must_resolve(log: Log) -> None:
    s = log.state
    inner = json.dumps({"type": "record", "name": "Inner", "fields": [{"name": "v", "type": "int"}]})
    outer = json.dumps({"type": "record", "name": "Outer", "fields": [{"name": "i", "type": "Inner"}]})
    assert code(lambda: s.register("outer", outer)) == 42201  # Inner is unknown without the reference
    assert code(lambda: s.register("outer", outer, references=(Reference("Inner", "inner", 1),))) == 42201
    log.change(s.register("inner", inner))
    assert log.change(s.register("outer", outer, references=(Reference("Inner", "inner", 1),))) == 2
    assert s.get_version("outer", "1").references == (Reference("Inner", "inner", 1),)


def test_rebuilt_from_the_log_answers_the_same(log: Log) -> None:
    s = log.state
    log.change(s.register("a", A1))
    log.change(s.register("a", A2))
    log.change(s.register("j", '{"type": "object"}', "JSON"))
    log.change(s.delete_version("a", "1", permanent=False))
    log.change((None, s.set_compatibility(None, "FULL")))
    log.change((None, s.set_mode("j", "READONLY")))
    r = log.rebuilt()
    for state in (s, r):
        assert state.subjects() == ["a", "j"]
        assert state.versions("a", deleted=True) == [1, 2]
        assert state.compatibility(None) == "FULL"
        assert state.mode("j") == "READONLY"
        assert state.get_version("j", "1").schema_type == "JSON"
        assert state.max_id == 3
    assert r.counts() == s.counts()


def test_unknown_and_skipped_records_do_not_disturb_the_state() -> None:
    s = RegistryState()
    s.apply(decode(b'{"keytype":"NOOP","magic":0}', None))
    s.apply(decode(b'{"keytype":"SCHEMA","subject":"gone","version":4,"magic":1}', None))  # tombstone, no version
    s.apply(decode(b'{"keytype":"DELETE_SUBJECT","subject":"never","magic":0}', b'{"subject":"never","version":2}'))
    assert s.subjects(deleted=True) == []


def test_a_referenced_version_cannot_be_deleted(log: Log) -> None:
    s = log.state
    inner = json.dumps({"type": "record", "name": "Inner", "fields": [{"name": "v", "type": "int"}]})
    outer = json.dumps({"type": "record", "name": "Outer", "fields": [{"name": "i", "type": "Inner"}]})
    log.change(s.register("inner", inner))
    outer_id = log.change(s.register("outer", outer, references=(Reference("Inner", "inner", 1),)))
    assert s.referenced_by("inner", 1) == [outer_id]
    assert code(lambda: s.delete_version("inner", "1", permanent=False)) == 42206
    assert code(lambda: s.delete_subject("inner", permanent=False)) == 42206
    log.change(s.delete_subject("outer", permanent=False))  # once the referrer is gone, it may go
    assert s.referenced_by("inner", 1) == []
    assert log.change(s.delete_version("inner", "1", permanent=False)) == 1
