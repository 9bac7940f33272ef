"""The registry's state: what the ``_schemas`` records add up to, and the records each change needs.

Theory of operation
-------------------

The log is the only truth. :class:`RegistryState` is a sans-IO state machine: :meth:`RegistryState.apply` folds
one decoded record into memory (subjects -> versions, global ids -> schemas, compatibility configs, modes), and
the answers to reads are pure functions of that memory. A registry rebuilt by applying the topic from offset 0
is the registry that wrote it, which is how a restart keeps every schema and id.

Changes are planned, not performed, here: :meth:`RegistryState.register`, :meth:`~RegistryState.delete_version`
and the others check the request against the state (Confluent's rules and error codes), then return the records
that would make the change. The shell (:mod:`loosely.registry._store`) writes them to the log, waits until its
reader has applied them, and only then answers, so a write is acknowledged once it is in the log and read back.
The shell runs one plan-write-apply at a time (a single writer), which is what makes ``max id + 1`` a safe way
to assign global ids.

Rules followed (Confluent's): the same schema (same type, identity and references, see
:mod:`loosely.registry._types`) registered again under a subject where it is live returns the existing id and
writes nothing; under another subject it gets a new version with the *same* global id. Versions count up from
1 and never reuse a number, even after a delete. A soft delete marks versions deleted (they stay readable with
``deleted=true``, and their ids stay resolvable); a permanent delete needs a soft delete first and writes
tombstones, after which compaction removes the versions from the log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from loosely.registry import _errors as err
from loosely.registry._contracts import CONFIG_FIELDS, merge_metadata, merge_rule_sets, same_contract
from loosely.registry._records import (
    ConfigRecord,
    DeleteSubjectRecord,
    ModeRecord,
    NoopRecord,
    Record,
    Reference,
    SchemaTombstone,
    SchemaVersion,
)
from loosely.registry._types import COMPATIBILITY_LEVELS, ParsedSchema, Referenced, incompatibilities, parse

__all__ = ["MODES", "RegistryState", "SchemaById"]

MODES = ("READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT")
VERSION_MAX = 2**31 - 1
REFERENCE_DEPTH_MAX = 32  # references of references: a cycle or an absurd chain stops here, 42201


@dataclass(frozen=True, slots=True)
class SchemaById:
    id: int
    schema: str
    schema_type: str
    references: tuple[Reference, ...]
    metadata: str | None = None
    rule_set: str | None = None


def parse_version(spec: str) -> int | None:
    """A version from a URL: ``None`` for ``latest`` (or ``-1``), else 1..2^31-1; 42202 for anything else."""
    if spec == "latest":
        return None
    try:
        v = int(spec)
    except ValueError:
        raise err.invalid_version(spec) from None
    if v == -1:
        return None
    if not 1 <= v <= VERSION_MAX:
        raise err.invalid_version(spec)
    return v


class RegistryState:
    """Subjects, versions, ids, configs and modes as the ``_schemas`` records leave them.

    >>> from loosely.registry._records import decode
    >>> s = RegistryState()
    >>> schema_id, records = s.register("users-value", '{"type": "string"}')
    >>> for r in records:
    ...     s.apply(r)
    >>> schema_id, s.versions("users-value")
    (1, [1])
    >>> s.register("users-value", '"string"')  # the same schema again: its id, nothing to write
    (1, [])
    """

    def __init__(self, default_compatibility: str = "BACKWARD") -> None:
        self.default_compatibility = default_compatibility
        self._subjects: dict[str, dict[int, SchemaVersion]] = {}
        self._ids: dict[int, SchemaById] = {}
        self._id_users: dict[int, set[tuple[str, int]]] = {}
        self._config: dict[str | None, str] = {}
        self._config_records: dict[str | None, ConfigRecord] = {}
        self._mode: dict[str | None, str] = {}
        self._parsed: dict[tuple[str, str, tuple[Reference, ...]], ParsedSchema | None] = {}
        self.max_id = 0
        self.applied = 0

    # ---- folding records in -------------------------------------------------------------------------------

    def apply(self, record: Record) -> None:
        self.applied += 1
        if isinstance(record, SchemaVersion):
            versions = self._subjects.setdefault(record.subject, {})
            old = versions.get(record.version)
            if old is not None:
                self._id_users.get(old.id, set()).discard((old.subject, old.version))
            versions[record.version] = record
            self._ids.setdefault(record.id, SchemaById(record.id, record.schema, record.schema_type,
                                                       record.references, record.metadata, record.rule_set))
            self._id_users.setdefault(record.id, set()).add((record.subject, record.version))
            self.max_id = max(self.max_id, record.id)
        elif isinstance(record, SchemaTombstone):
            versions = self._subjects.get(record.subject, {})
            gone = versions.pop(record.version, None)
            if not versions:
                self._subjects.pop(record.subject, None)
            if gone is not None:
                users = self._id_users.get(gone.id, set())
                users.discard((gone.subject, gone.version))
                if not users:  # no version refers to the id any more: it no longer resolves
                    self._ids.pop(gone.id, None)
                    self._id_users.pop(gone.id, None)
        elif isinstance(record, DeleteSubjectRecord):
            versions = self._subjects.get(record.subject, {})
            for v, sv in list(versions.items()):
                if v <= record.version:
                    versions[v] = replace(sv, deleted=True)
        elif isinstance(record, ConfigRecord):
            if record.level is None:
                self._config.pop(record.subject, None)
            else:
                self._config[record.subject] = record.level
            if record == ConfigRecord(record.subject, None):
                self._config_records.pop(record.subject, None)
            else:
                self._config_records[record.subject] = record
        elif isinstance(record, ModeRecord):
            if record.mode is None:
                self._mode.pop(record.subject, None)
            else:
                self._mode[record.subject] = record.mode
        else:
            assert isinstance(record, NoopRecord)

    # ---- reads --------------------------------------------------------------------------------------------

    def subjects(self, *, deleted: bool = False, deleted_only: bool = False, prefix: str = "") -> list[str]:
        out = []
        for name, versions in self._subjects.items():
            if not name.startswith(prefix):
                continue
            states = {sv.deleted for sv in versions.values()}
            if (deleted_only and True in states) or (not deleted_only and (False in states or deleted)):
                out.append(name)
        return sorted(out)

    def _versions_of(self, subject: str) -> dict[int, SchemaVersion]:
        versions = self._subjects.get(subject)
        if not versions:
            raise err.subject_not_found(subject)
        return versions

    def versions(self, subject: str, *, deleted: bool = False, deleted_only: bool = False) -> list[int]:
        versions = self._versions_of(subject)
        if deleted_only:
            out = [v for v, sv in versions.items() if sv.deleted]
        else:
            out = [v for v, sv in versions.items() if deleted or not sv.deleted]
        if not out and not deleted_only:
            raise err.subject_not_found(subject)
        return sorted(out)

    def live(self, subject: str) -> list[SchemaVersion]:
        """The subject's versions that are not deleted, oldest first (empty for an unknown subject)."""
        return [sv for _, sv in sorted(self._subjects.get(subject, {}).items()) if not sv.deleted]

    def get_version(self, subject: str, spec: str, *, deleted: bool = False) -> SchemaVersion:
        version = parse_version(spec)
        versions = self._versions_of(subject)
        if version is None:
            candidates = [sv for _, sv in sorted(versions.items()) if deleted or not sv.deleted]
            if not candidates:
                raise err.subject_not_found(subject) if not deleted else err.version_not_found(spec)
            return candidates[-1]
        sv = versions.get(version)
        if sv is None or (sv.deleted and not deleted):
            raise err.version_not_found(version)
        return sv

    def latest_with_metadata(self, subject: str, properties: dict[str, str], *,
                             deleted: bool = False) -> SchemaVersion:
        """The newest version whose metadata ``properties`` hold all of ``properties`` (``GET
        /subjects/{s}/metadata``); 40403 when none does."""
        for _, sv in sorted(self._versions_of(subject).items(), reverse=True):
            if sv.deleted and not deleted:
                continue
            have = (json.loads(sv.metadata).get("properties") or {}) if sv.metadata is not None else {}
            if all(have.get(k) == v for k, v in properties.items()):
                return sv
        raise err.schema_not_found()

    def schema_by_id(self, schema_id: int) -> SchemaById:
        found = self._ids.get(schema_id)
        if found is None:
            raise err.schema_not_found(schema_id)
        return found

    def id_versions(self, schema_id: int, *, deleted: bool = False) -> list[tuple[str, int]]:
        self.schema_by_id(schema_id)
        return sorted((s, v) for s, v in self._id_users.get(schema_id, set())
                      if deleted or not self._subjects[s][v].deleted)

    def compatibility(self, subject: str | None) -> str | None:
        """The subject's own level (``None`` when it has none), or the global one for ``subject=None``."""
        if subject is None:
            return self._config.get(None, self.default_compatibility)
        return self._config.get(subject)

    def effective_compatibility(self, subject: str) -> str:
        return self._config.get(subject) or self._config.get(None, self.default_compatibility)

    def mode(self, subject: str | None) -> str | None:
        if subject is None:
            return self._mode.get(None, "READWRITE")
        return self._mode.get(subject)

    def effective_mode(self, subject: str) -> str:
        return self._mode.get(subject) or self._mode.get(None, "READWRITE")

    # ---- parsing, with a cache: compatibility checks re-read earlier versions on every register -----------

    def _referenced_texts(self, refs: tuple[Reference, ...], depth: int = 0) -> Referenced:
        if depth > REFERENCE_DEPTH_MAX:
            raise err.invalid_schema(f"references nest deeper than {REFERENCE_DEPTH_MAX}")
        out: list[tuple[str, str]] = []
        for ref in refs:
            sv = self._subjects.get(ref.subject, {}).get(ref.version)
            if sv is None:
                raise err.invalid_schema(f"reference {ref.name!r} to subject {ref.subject!r} "
                                       f"version {ref.version} not found")
            out += self._referenced_texts(sv.references, depth + 1)
            out.append((ref.name, sv.schema))
        return tuple(out)

    def parsed(self, schema_type: str, text: str, refs: tuple[Reference, ...]) -> ParsedSchema:
        key = (schema_type, text, refs)
        if key not in self._parsed:
            try:
                self._parsed[key] = parse(schema_type, text, self._referenced_texts(refs))
            except err.RegistryError:
                self._parsed[key] = None
                raise
        found = self._parsed[key]
        if found is None:
            raise err.invalid_schema(f"stored {schema_type} schema cannot be parsed")
        return found

    def formatted(self, s: SchemaVersion | SchemaById, fmt: str | None) -> str:
        """The schema's text in the ``format`` a reader asked for: ``serialized`` turns Protobuf's ``.proto``
        text into the base64 descriptor confluent-kafka's deserializers parse; anything else is as stored."""
        if fmt != "serialized" or s.schema_type != "PROTOBUF":
            return s.schema
        from loosely.registry._protobuf import is_serialized, serialized  # noqa: PLC0415

        if is_serialized(s.schema):
            return s.schema
        return serialized(self.parsed(s.schema_type, s.schema, s.references).parsed)

    def _same(self, candidate: ParsedSchema, refs: tuple[Reference, ...], schema_type: str, text: str,
              their_refs: tuple[Reference, ...]) -> bool:
        if schema_type != candidate.schema_type or refs != their_refs:
            return False
        try:
            return self.parsed(schema_type, text, their_refs).identity == candidate.identity
        except err.RegistryError:
            return False

    def _parse_request(self, schema: str, schema_type: str, refs: tuple[Reference, ...]) -> ParsedSchema:
        return parse(schema_type, schema, self._referenced_texts(refs))

    # ---- planned changes ----------------------------------------------------------------------------------

    def lookup(self, subject: str, schema: str, schema_type: str = "AVRO", references: tuple[Reference, ...] = (),
               *, deleted: bool = False, metadata: str | None = None, rule_set: str | None = None) -> SchemaVersion:
        """The version of ``subject`` holding this schema (``POST /subjects/{s}``).

        A request with no ``metadata`` (or ``ruleSet``) matches whatever the version has, as in Confluent; with
        one, it must be the version's."""
        versions = self._versions_of(subject)
        candidate = self._parse_request(schema, schema_type, references)
        for _, sv in sorted(versions.items(), reverse=True):
            if (deleted or not sv.deleted) and self._same(candidate, references, sv.schema_type, sv.schema,
                                                          sv.references) and \
                    (metadata is None or same_contract(metadata, sv.metadata)) and \
                    (rule_set is None or same_contract(rule_set, sv.rule_set)):
                return sv
        raise err.schema_not_found()

    def check(self, subject: str, schema: str, schema_type: str = "AVRO", references: tuple[Reference, ...] = (),
              spec: str | None = None) -> list[str]:
        """Why ``schema`` is incompatible with the subject's version ``spec`` (every live one for ``None``)."""
        candidate = self._parse_request(schema, schema_type, references)
        level = self.effective_compatibility(subject)
        if spec is None:
            earlier = self.live(subject)
        else:
            try:
                earlier = [self.get_version(subject, spec)]
            except err.RegistryError as e:
                if e.error_code == 40401 and parse_version(spec) is None:
                    return []  # nothing registered yet: anything is compatible
                raise
            level = level.removesuffix("_TRANSITIVE")
        return incompatibilities(level, candidate, [self.parsed(sv.schema_type, sv.schema, sv.references)
                                                    for sv in earlier])

    def register(self, subject: str, schema: str, schema_type: str = "AVRO",
                 references: tuple[Reference, ...] = (), *, schema_id: int | None = None,
                 version: int | None = None, metadata: str | None = None,
                 rule_set: str | None = None) -> tuple[int, list[Record]]:
        """``(global id, records to write)`` for ``POST /subjects/{s}/versions``; no records when it exists.

        The data contract (``metadata``, ``rule_set``) is part of what a version is, as in Confluent: the same
        schema with another contract is a new version with a new id; a request that sends none keeps the latest
        version's (so a serializer registering the bare schema does not drop the contract), and the config's
        defaults and overrides are merged in (:mod:`loosely.registry._contracts`)."""
        mode = self.effective_mode(subject)
        if mode in ("READONLY", "READONLY_OVERRIDE"):
            raise err.not_permitted(f"Subject {subject} is in read-only mode")
        if schema_id is not None and mode != "IMPORT":
            raise err.not_permitted(f"Subject {subject} is not in import mode")
        candidate = self._parse_request(schema, schema_type, references)
        live = self.live(subject)
        if mode != "IMPORT":  # an import keeps what it is given, as Confluent's does
            if live:
                metadata = live[-1].metadata if metadata is None else metadata
                rule_set = live[-1].rule_set if rule_set is None else rule_set
            cfg = self._contract_config(subject)
            metadata = merge_metadata(merge_metadata(cfg["defaultMetadata"], metadata), cfg["overrideMetadata"])
            rule_set = merge_rule_sets(merge_rule_sets(cfg["defaultRuleSet"], rule_set), cfg["overrideRuleSet"])

        def same(s: SchemaVersion | SchemaById) -> bool:
            return same_contract(metadata, s.metadata) and same_contract(rule_set, s.rule_set) and \
                self._same(candidate, references, s.schema_type, s.schema, s.references)

        for sv in reversed(live):
            if same(sv):
                if schema_id is not None and schema_id != sv.id:
                    raise err.not_permitted(f"Overwrite new schema with id {schema_id} is not permitted.")
                return sv.id, []
        if mode != "IMPORT":
            problems = incompatibilities(self.effective_compatibility(subject), candidate,
                                         [self.parsed(sv.schema_type, sv.schema, sv.references) for sv in live])
            if problems:
                raise err.RegistryError(409, 409, f'Schema being registered is incompatible with an earlier schema '
                                                f'for subject "{subject}", details: {problems}')
        existing = next((i for i, s in sorted(self._ids.items()) if same(s)), None)
        if schema_id is not None:
            taken = self._ids.get(schema_id)
            if taken is not None and existing != schema_id:
                raise err.not_permitted(f"Overwrite new schema with id {schema_id} is not permitted.")
            new_id = schema_id
        else:
            new_id = existing if existing is not None else self.max_id + 1
        all_versions = self._subjects.get(subject, {})
        if version is not None and version in all_versions:
            raise err.not_permitted(f"Version {version} of subject {subject} already exists")
        new_version = version if version is not None else max(all_versions, default=0) + 1
        return new_id, [SchemaVersion(subject, new_version, new_id, candidate.text, schema_type, references,
                                      metadata=metadata, rule_set=rule_set)]

    def delete_version(self, subject: str, spec: str, *, permanent: bool) -> tuple[int, list[Record]]:
        self._writable(subject)
        version = parse_version(spec)
        versions = self._versions_of(subject)
        if version is None:
            sv = self.get_version(subject, spec, deleted=permanent)
        else:
            found = versions.get(version)
            if found is None:
                raise err.version_not_found(version)
            sv = found
        self._not_referenced(subject, [sv.version])
        if permanent:
            if not sv.deleted:
                raise err.RegistryError(404, 40407, f"Subject '{subject}' Version {sv.version} was not deleted first "
                                                  "before being permanently deleted")
            return sv.version, [SchemaTombstone(subject, sv.version)]
        if sv.deleted:
            raise err.RegistryError(404, 40406, f"Subject '{subject}' Version {sv.version} was soft deleted.Set "
                                              "permanent=true to delete permanently")
        return sv.version, [replace(sv, deleted=True)]

    def delete_subject(self, subject: str, *, permanent: bool) -> tuple[list[int], list[Record]]:
        self._writable(subject)
        versions = self._versions_of(subject)
        self._not_referenced(subject, list(versions))
        if permanent:
            if any(not sv.deleted for sv in versions.values()):
                raise err.RegistryError(404, 40405, f"Subject '{subject}' was not deleted first before being "
                                                  "permanently deleted")
            numbers = sorted(versions)
            return numbers, [SchemaTombstone(subject, v) for v in numbers]
        live = [v for v, sv in sorted(versions.items()) if not sv.deleted]
        if not live:
            raise err.RegistryError(404, 40404, f"Subject '{subject}' was soft deleted.Set permanent=true to delete "
                                              "permanently")
        records: list[Record] = [DeleteSubjectRecord(subject, max(versions))]
        if subject in self._mode:  # a deleted subject keeps no settings of its own, as in Confluent
            records.append(ModeRecord(subject, None))
        if subject in self._config_records:
            records.append(ConfigRecord(subject, None))
        return live, records

    def referenced_by(self, subject: str, version: int) -> list[int]:
        """Ids of the live schemas whose references name ``subject`` version ``version``."""
        return sorted({sv.id for versions in self._subjects.values() for sv in versions.values()
                       if not sv.deleted and any(r.subject == subject and r.version == version
                                                 for r in sv.references)})

    def _not_referenced(self, subject: str, versions: list[int]) -> None:
        for v in versions:
            if self.referenced_by(subject, v):
                raise err.RegistryError(422, 42206, f"One or more references exist to the schema "
                                                    f"{{subject={subject},version={v}}}.")

    def _writable(self, subject: str | None) -> None:
        mode = self.effective_mode(subject) if subject is not None else self.mode(None)
        if mode in ("READONLY", "READONLY_OVERRIDE"):
            raise err.not_permitted(f"Subject {subject} is in read-only mode" if subject else
                                  "The registry is in read-only mode")

    def config(self, subject: str | None) -> ConfigRecord | None:
        """The subject's config record (the global one for ``None``), ``None`` when it has none."""
        return self._config_records.get(subject)

    def set_compatibility(self, subject: str | None, level: object,
                          contract: dict[str, str | None] | None = None) -> list[Record]:
        """The record of ``PUT /config``: the level and the contract fields given replace the config's own; the
        ones not given (``None``, or absent from ``contract``) stay."""
        old = self._config_records.get(subject) or ConfigRecord(subject, None)
        given = {k: v for k, v in (contract or {}).items() if v is not None}
        if level is None and given:
            level = old.level
        elif not isinstance(level, str) or level.upper() not in COMPATIBILITY_LEVELS:
            raise err.RegistryError(422, 42203, "Invalid compatibility level. Valid values are none, backward, "
                                              "forward, full, backward_transitive, forward_transitive, and "
                                              "full_transitive")
        fields = {**old.contract_fields(), **given}
        return [ConfigRecord(subject, level.upper() if level else None, fields["defaultMetadata"],
                             fields["overrideMetadata"], fields["defaultRuleSet"], fields["overrideRuleSet"])]

    def delete_compatibility(self, subject: str) -> tuple[str | None, list[Record]]:
        found = self._config_records.get(subject)
        if found is None:
            if subject not in self._subjects:
                raise err.subject_not_found(subject)
            raise err.RegistryError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility "
                                              "configured")
        return found.level, [ConfigRecord(subject, None)]

    def _contract_config(self, subject: str) -> dict[str, str | None]:
        """The contract defaults and overrides that apply to ``subject``: its own, else the global ones."""
        own = self._config_records.get(subject)
        glob = self._config_records.get(None)
        mine = own.contract_fields() if own else {}
        common = glob.contract_fields() if glob else {}
        return {k: mine.get(k) or common.get(k) for k in CONFIG_FIELDS}

    def set_mode(self, subject: str | None, mode: object, *, force: bool = False) -> list[Record]:
        if not isinstance(mode, str) or mode.upper() not in MODES:
            raise err.RegistryError(422, 42204, "Invalid mode. Valid values are READWRITE, READONLY, "
                                              "READONLY_OVERRIDE and IMPORT")
        mode = mode.upper()
        if mode == "IMPORT" and not force:
            has = (self.subjects(deleted=True) if subject is None
                   else [subject] if subject in self._subjects else [])
            if has:
                raise err.not_permitted("Cannot import since found existing subjects")
        return [ModeRecord(subject, mode)]

    def delete_mode(self, subject: str) -> tuple[str, list[Record]]:
        mode = self._mode.get(subject)
        if mode is None:
            if subject not in self._subjects:
                raise err.subject_not_found(subject)
            raise err.RegistryError(404, 40409, f"Subject '{subject}' does not have subject-level mode configured")
        return mode, [ModeRecord(subject, None)]

    # ---- for statistics -----------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {
            "subjects": len(self.subjects()),
            "versions": sum(len(v) for v in self._subjects.values()),
            "schemas": len(self._ids),
            "max_id": self.max_id,
        }
