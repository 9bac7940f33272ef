"""Validators: checks a producer runs on the new state before announcing it (Java ``api/producer/validation``).

A validator is any callable ``validator(context) -> ValidationResult``.  The context holds the new state and the
state it replaces (both fully loaded read engines), so a validator can compare them.  A validator that raises is
a failed validation.  If any fails, the cycle rolls back: nothing is announced and the producer stays on the
previous version.

Built in:

* :class:`RecordCountChangeValidator` -- the record count of a type may not change by more than a percentage
  (Java ``RecordCountPercentChangeValidator``, simplified to the net count);
* :class:`DuplicatePrimaryKeyValidator` -- no two records of a type share a primary key (Java
  ``DuplicateDataDetectionValidator``);
* :class:`MinimumRecordCountValidator` -- a type keeps at least N records (Java ``MinimumRecordCountValidator``).

>>> from loosely.hollow.core import WriteStateEngine, parse_schemas
>>> w = WriteStateEngine(parse_schemas("Movie @PrimaryKey(id) { int id; string title; }"))
>>> _ = w.add_object("Movie", {"id": 1, "title": "a"}), w.add_object("Movie", {"id": 1, "title": "b"})
>>> state = ReadStateEngine.from_snapshot(w.write_snapshot())
>>> DuplicatePrimaryKeyValidator("Movie")(ValidationContext(Version(2), state, None, None))
ValidationResult(name='DuplicatePrimaryKey(Movie)', passed=False, message='1 duplicate keys, e.g. (1,)')
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from loosely.hollow.api._blobs import Version
from loosely.hollow.api._paths import Value, bind_path, path_column
from loosely.hollow.core import HollowError, HollowSchemaError, ObjectSchema, ReadStateEngine

__all__ = [
    "DuplicatePrimaryKeyValidator",
    "MinimumRecordCountValidator",
    "RecordCountChangeValidator",
    "ValidationContext",
    "ValidationError",
    "ValidationResult",
    "Validator",
    "duplicate_keys",
    "run_validators",
]


@dataclass(frozen=True, slots=True)
class ValidationContext:
    """What a validator sees: the version being produced, its state, and the previous state (None at first)."""

    version: Version
    state: ReadStateEngine
    previous: ReadStateEngine | None
    previous_version: Version | None


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """One validator's verdict and why."""

    name: str
    passed: bool
    message: str = ""


Validator = Callable[[ValidationContext], ValidationResult]


class ValidationError(HollowError):
    """One or more validators failed; ``results`` has every validator's outcome."""

    def __init__(self, results: Sequence[ValidationResult]) -> None:
        self.results = tuple(results)
        failed = [f"{r.name}: {r.message}" for r in self.results if not r.passed]
        super().__init__("validation failed: " + "; ".join(failed))


def _count(engine: ReadStateEngine | None, type_name: str) -> int:
    if engine is None or not engine.has_type(type_name):
        return 0
    return engine.type(type_name).record_count()


@dataclass(frozen=True, slots=True)
class RecordCountChangeValidator:
    """Fails when the record count of ``type_name`` changes by more than ``change_percent_max`` percent."""

    type_name: str
    change_percent_max: float = 10.0

    def __call__(self, ctx: ValidationContext) -> ValidationResult:
        name = f"RecordCountChange({self.type_name})"
        before, after = _count(ctx.previous, self.type_name), _count(ctx.state, self.type_name)
        if ctx.previous is None or before == 0:
            return ValidationResult(name, True, f"{after} records (nothing to compare with)")
        change = abs(after - before) * 100.0 / before
        ok = change <= self.change_percent_max
        verdict = "within" if ok else "over"
        return ValidationResult(
            name, ok, f"{before} -> {after} records: {change:.2f}% {verdict} the {self.change_percent_max}% limit"
        )


@dataclass(frozen=True, slots=True)
class MinimumRecordCountValidator:
    """Fails when ``type_name`` has fewer than ``records_min`` records."""

    type_name: str
    records_min: int

    def __call__(self, ctx: ValidationContext) -> ValidationResult:
        n = _count(ctx.state, self.type_name)
        ok = n >= self.records_min
        return ValidationResult(f"MinimumRecordCount({self.type_name})", ok, f"{n} records, minimum {self.records_min}")


def duplicate_keys(
    engine: ReadStateEngine, type_name: str, fields: Sequence[str] | None = None
) -> list[tuple[Value, ...]]:
    """The key values shared by two or more records of ``type_name`` (primary key by default)."""
    state = engine.type(type_name)
    schema = state.schema
    if not isinstance(schema, ObjectSchema):
        raise HollowSchemaError(f"type {type_name} is a {schema.kind.value}, not an OBJECT")
    paths = tuple(fields) if fields is not None else schema.primary_key
    if not paths:
        raise HollowSchemaError(f"type {type_name} has no primary key; name the key fields")
    schemas = {t.name: t.schema for t in engine.types()}
    bound = [bind_path(schemas, type_name, p) for p in paths]
    ordinals = state.populated_ordinals()
    columns = [path_column(engine, fp, ordinals) for fp in bound]
    if len(columns) == 1:
        values, nulls = columns[0]
        if values.dtype != object and not nulls.any():  # the common case, vectorised
            uniq, counts = np.unique(values, return_counts=True)
            return [(v,) for v in uniq[counts > 1].tolist()]
    keys = zip(*[[None if n else v for v, n in zip(vals.tolist(), nulls.tolist(), strict=True)]
                 for vals, nulls in columns], strict=True)
    return [k for k, c in Counter(keys).items() if c > 1]


@dataclass(frozen=True, slots=True)
class DuplicatePrimaryKeyValidator:
    """Fails when two records of ``type_name`` share a primary key (or the given key fields)."""

    type_name: str
    fields: tuple[str, ...] | None = None

    def __call__(self, ctx: ValidationContext) -> ValidationResult:
        name = f"DuplicatePrimaryKey({self.type_name})"
        if not ctx.state.has_type(self.type_name):
            return ValidationResult(name, True, "no such type in this state")
        dups = duplicate_keys(ctx.state, self.type_name, self.fields)
        if dups:
            return ValidationResult(name, False, f"{len(dups)} duplicate keys, e.g. {dups[0]}")
        return ValidationResult(name, True, "no duplicate keys")


def run_validators(validators: Sequence[Validator], ctx: ValidationContext) -> list[ValidationResult]:
    """Run every validator (all of them, even after a failure); an exception is a failed result."""
    results = []
    for v in validators:
        name = getattr(v, "__name__", type(v).__name__)
        try:
            r = v(ctx)
            if not isinstance(r, ValidationResult):
                raise TypeError(f"validator {name} returned {type(r).__name__}, not a ValidationResult")
        except Exception as e:  # a validator's bug or error fails the cycle, it does not crash it
            r = ValidationResult(name, False, f"raised {type(e).__name__}: {e}")
        results.append(r)
    return results
