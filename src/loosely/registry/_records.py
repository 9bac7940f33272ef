"""The records of the ``_schemas`` topic, in the format Confluent Schema Registry and Karapace write.

Every change the registry makes is one record in a compacted, single-partition topic (``_schemas`` by default);
the key says what the record is about, so compaction keeps the latest record per subject-version, per config and
per mode. Keys and values are compact JSON (no spaces) in UTF-8; key fields come in Confluent's order, because
Karapace detects Confluent's "canonical" keys by their field order and compaction compares key bytes.

=================  =============================================================  ==========================
keytype            key                                                            value
=================  =============================================================  ==========================
``SCHEMA``         ``{"keytype":"SCHEMA","subject":S,"version":V,"magic":1}``      a schema version (below);
                                                                                   null: version hard-deleted
``CONFIG``         ``{"keytype":"CONFIG","subject":S|null,"magic":0}``             ``{"compatibilityLevel":L,
                                                                                   "defaultMetadata":...}``;
                                                                                   null: subject config removed
``MODE``           ``{"keytype":"MODE","subject":S|null,"magic":0}``               ``{"mode":M}``; null: removed
``DELETE_SUBJECT`` ``{"keytype":"DELETE_SUBJECT","subject":S,"magic":0}``          ``{"subject":S,"version":V}``:
                                                                                   versions <= V soft-deleted
``NOOP``           ``{"keytype":"NOOP","magic":0}``                                null (a reader's end marker)
=================  =============================================================  ==========================

A schema version's value: ``{"subject":S,"version":V,"id":I,"schema":TEXT,"schemaType":T,"references":[...],
"metadata":{...},"ruleSet":{...},"deleted":false}`` where ``schemaType`` is left out for AVRO, ``references``
(``{"name","subject","version"}`` each) when there are none, and ``metadata`` (``{"tags":{PATH:[TAG]},
"properties":{K:V},"sensitive":[K]}``) and ``ruleSet`` (``{"migrationRules":[RULE],"domainRules":[RULE],
"encodingRules":[RULE]}``, a rule being ``{"name","doc","kind","mode","type","tags","params","expr","onSuccess",
"onFailure","disabled"}``) when the version has none, as Confluent writes them; the registry keeps those two as
the JSON the client sent and never interprets them. A null subject in CONFIG and MODE keys means the global
setting. Readers ignore fields they do not know (Confluent adds ``md5``, ``guid``, ``ts``...), and
:func:`decode` rejects a record that is not JSON or lacks a field it needs with :class:`RecordError`: the reader
skips it and counts it, as Karapace's non-strict mode does, so one bad record cannot stop the registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = [
    "ConfigRecord",
    "DeleteSubjectRecord",
    "ModeRecord",
    "NoopRecord",
    "Record",
    "RecordError",
    "Reference",
    "SchemaTombstone",
    "SchemaVersion",
    "decode",
    "encode",
]


class RecordError(ValueError):
    """A ``_schemas`` record this registry cannot read."""


@dataclass(frozen=True, slots=True)
class Reference:
    name: str
    subject: str
    version: int

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "subject": self.subject, "version": self.version}


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One version of a subject: a SCHEMA record's value."""

    subject: str
    version: int
    id: int
    schema: str
    schema_type: str = "AVRO"
    references: tuple[Reference, ...] = ()
    deleted: bool = False
    metadata: str | None = None  # the data contract's metadata and rule set, compact JSON as the writer sent them
    rule_set: str | None = None


@dataclass(frozen=True, slots=True)
class SchemaTombstone:
    """A SCHEMA key with a null value: the version is gone for good."""

    subject: str
    version: int


@dataclass(frozen=True, slots=True)
class ConfigRecord:
    """A CONFIG record; every field ``None``: the subject's config removed."""

    subject: str | None
    level: str | None
    # the data contract's defaults and overrides (``defaultMetadata`` ...), compact JSON as for a version
    default_metadata: str | None = None
    override_metadata: str | None = None
    default_rule_set: str | None = None
    override_rule_set: str | None = None

    def contract_fields(self) -> dict[str, str | None]:
        """The contract fields by their JSON names."""
        return {"defaultMetadata": self.default_metadata, "overrideMetadata": self.override_metadata,
                "defaultRuleSet": self.default_rule_set, "overrideRuleSet": self.override_rule_set}


@dataclass(frozen=True, slots=True)
class ModeRecord:
    subject: str | None
    mode: str | None  # None: a subject's mode removed


@dataclass(frozen=True, slots=True)
class DeleteSubjectRecord:
    subject: str
    version: int  # every version up to this one is soft-deleted


@dataclass(frozen=True, slots=True)
class NoopRecord:
    pass


Record = SchemaVersion | SchemaTombstone | ConfigRecord | ModeRecord | DeleteSubjectRecord | NoopRecord


def _json(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def encode(record: Record) -> tuple[bytes, bytes | None]:
    """``(key, value)`` bytes of ``record`` (value ``None`` for a tombstone).

    >>> encode(ConfigRecord(None, "FULL"))
    (b'{"keytype":"CONFIG","subject":null,"magic":0}', b'{"compatibilityLevel":"FULL"}')
    >>> encode(SchemaVersion("s", 1, 7, '"string"'))[0]
    b'{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}'
    """
    if isinstance(record, SchemaVersion | SchemaTombstone):
        key = _json({"keytype": "SCHEMA", "subject": record.subject, "version": record.version, "magic": 1})
        if isinstance(record, SchemaTombstone):
            return key, None
        value: dict[str, object] = {"subject": record.subject, "version": record.version, "id": record.id,
                                    "schema": record.schema}
        if record.schema_type != "AVRO":
            value["schemaType"] = record.schema_type
        if record.references:
            value["references"] = [r.as_json() for r in record.references]
        if record.metadata is not None:
            value["metadata"] = json.loads(record.metadata)
        if record.rule_set is not None:
            value["ruleSet"] = json.loads(record.rule_set)
        value["deleted"] = record.deleted
        return key, _json(value)
    if isinstance(record, ConfigRecord):
        key = _json({"keytype": "CONFIG", "subject": record.subject, "magic": 0})
        doc: dict[str, object] = {} if record.level is None else {"compatibilityLevel": record.level}
        doc.update({k: json.loads(v) for k, v in record.contract_fields().items() if v is not None})
        return key, _json(doc) if doc else None
    if isinstance(record, ModeRecord):
        key = _json({"keytype": "MODE", "subject": record.subject, "magic": 0})
        return key, None if record.mode is None else _json({"mode": record.mode})
    if isinstance(record, DeleteSubjectRecord):
        key = _json({"keytype": "DELETE_SUBJECT", "subject": record.subject, "magic": 0})
        return key, _json({"subject": record.subject, "version": record.version})
    return _json({"keytype": "NOOP", "magic": 0}), None


def _field(doc: dict[str, object], name: str, kind: type) -> object:
    v = doc.get(name)
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise RecordError(f"field {name!r} is {v!r}, expected {kind.__name__}")
    return v


def _load(data: bytes, what: str) -> dict[str, object]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise RecordError(f"{what} is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise RecordError(f"{what} is not a JSON object")
    return doc


def _contract_part(value: dict[str, object], name: str) -> str | None:
    part = value.get(name)
    if part is None or part == {}:
        return None
    if not isinstance(part, dict):
        raise RecordError(f"{name} is not a JSON object")
    return _json(part).decode()


def decode(key: bytes | None, value: bytes | None) -> Record:
    """The record a ``_schemas`` key and value stand for; :class:`RecordError` when they are not readable.

    >>> decode(b'{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}', None)
    SchemaTombstone(subject='s', version=1)
    """
    if not key:
        raise RecordError("record without a key")
    k = _load(key, "key")
    keytype = k.get("keytype")
    v = _load(value, "value") if value else None  # Karapace writes "" for some tombstones
    subject = k.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise RecordError(f"subject is {subject!r}")
    if keytype == "SCHEMA":
        if not isinstance(subject, str):
            raise RecordError("SCHEMA key without a subject")
        version = int(_field(k, "version", int))  # type: ignore[call-overload]
        if v is None:
            return SchemaTombstone(subject, version)
        refs = v.get("references") or []
        if not isinstance(refs, list):
            raise RecordError("references is not a list")
        try:
            references = tuple(Reference(str(r["name"]), str(r["subject"]), int(r["version"])) for r in refs)
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"bad reference: {e}") from None
        return SchemaVersion(
            subject=str(_field(v, "subject", str)),
            version=int(_field(v, "version", int)),  # type: ignore[call-overload]
            id=int(_field(v, "id", int)),  # type: ignore[call-overload]
            schema=str(_field(v, "schema", str)),
            schema_type=str(v.get("schemaType") or "AVRO"),
            references=references,
            deleted=bool(v.get("deleted", False)),
            metadata=_contract_part(v, "metadata"),
            rule_set=_contract_part(v, "ruleSet"),
        )
    if keytype == "CONFIG":
        if v is None:
            return ConfigRecord(subject, None)
        contract = {name: _contract_part(v, name) for name in ("defaultMetadata", "overrideMetadata",
                                                                "defaultRuleSet", "overrideRuleSet")}
        has_contract = any(contract.values())
        level = None if has_contract and v.get("compatibilityLevel") is None else \
            str(_field(v, "compatibilityLevel", str))
        return ConfigRecord(subject, level, contract["defaultMetadata"], contract["overrideMetadata"],
                            contract["defaultRuleSet"], contract["overrideRuleSet"])
    if keytype == "MODE":
        return ModeRecord(subject, None if v is None else str(_field(v, "mode", str)))
    if keytype == "DELETE_SUBJECT":
        if v is None:
            raise RecordError("DELETE_SUBJECT without a value")
        return DeleteSubjectRecord(str(_field(v, "subject", str)), int(_field(v, "version", int)))  # type: ignore[call-overload]
    if keytype == "NOOP":
        return NoopRecord()
    raise RecordError(f"unknown keytype {keytype!r}")
