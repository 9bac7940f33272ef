"""A consistency checker for RAW Hollow histories (issue 13's proof).

A *history* is every operation several processes ran against a dataset, each with the process that ran it, its kind,
the key, the value it wrote or read, the version (log offset) it got or saw, and its start and end on the machine's
monotonic clock (``time.monotonic_ns()`` is one clock for every process of the machine, so intervals from different
processes compare).  The checker decides, per key, whether the history could have come from the system the issue
promises; it never looks at the system itself.

Theory of operation
-------------------

Every write in a history writes a value nothing else writes (the harness makes them unique: process, sequence
number), so a read names the write it saw by its value.  The *effective* writes of a key are the acknowledged ones
(their version is what the writer answered) and those whose outcome is unknown (an error, a timeout, a killed
process) but whose value some read returned (their version is what that read reported).  A write that failed for
certain (``ConditionFailed``) took no effect.  Versions are log offsets of one partition, so the effective writes of a
key are totally ordered by version: that order is the key's linearization.

A read is *at* a position of that order: the version of the write it returned; a read that found nothing is at the
initial state or at some delete, and unless it reports the tombstone's version the checker takes the most lenient
such position that the other rules allow.  The rules:

``FUTURE_READ``      every read returns a value some write of that key wrote, started before the read ended, at the
                     version that write got (never an invented value, never a value from the future).
``WRONG_VERSION``    a read that returns a write's value reports that write's version: the acknowledged one, or for a
                     write of unknown outcome the one every other read of it reported (a write applied twice, say
                     retried after a lost answer, shows up here: its second copy has another version).
``STALE_STRONG``     a strong read is at or after every effective write of the key that ended before the read started
                     (no acknowledged write is lost to it) ...
``STRONG_ORDER``     ... and at or after every strong read of the key that ended before it started (real time order
                     between reads, the other half of per-key linearizability).
``MONOTONIC``        each process's reads of a key never go back: every read is at or after that process's previous
                     read of the key, whatever their consistency.
``AFTER_TOKEN``      a read after a token (``{partition: next offset}``) is at or after every effective write of the
                     key on that partition below the token's offset.
``LOST_UPDATE``      an acknowledged conditional write's expected version is the version of the write just before it in
                     the key's order (``None``: the key was absent: nothing before it, or a delete, possibly one of
                     unknown outcome).
``DOUBLE_CAS``       no two acknowledged conditional writes of a key expected the same version.

Limits, on purpose: a delete whose outcome is unknown cannot be seen by a read (absence names no write), so it is
taken to have happened whenever that makes an absent read legal; the harness keeps such deletes rare.  Keys are
independent (the promises are per key), which keeps the check linear-logarithmic in the history's length.

>>> ok = [Op("w", Kind.PUT, "k", "a", 0, 0, 10, token={0: 1}), Op("r", Kind.GET_STRONG, "k", "a", 0, 11, 12)]
>>> check(ok)
[]
>>> stale = [Op("w", Kind.PUT, "k", "a", 0, 0, 10), Op("r", Kind.GET_STRONG, "k", None, None, 11, 12)]
>>> [v.rule for v in check(stale)]
[<Rule.STALE_STRONG: 'stale-strong'>]
"""

from __future__ import annotations

import enum
import json
import math
import os
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["Kind", "Op", "Outcome", "Recorder", "Rule", "Violation", "check", "load_history"]


class Kind(enum.Enum):
    PUT = "put"
    DELETE = "delete"
    CAS = "cas"  # a put (value) or a delete (value None) only if the key's version is ``expected``
    GET_EVENTUAL = "get-eventual"
    GET_STRONG = "get-strong"
    GET_AFTER = "get-after-token"

    @property
    def is_write(self) -> bool:
        return self in (Kind.PUT, Kind.DELETE, Kind.CAS)


class Outcome(enum.Enum):
    OK = "ok"
    FAILED = "failed"  # certainly no effect: a failed condition, a refusal before sending
    UNKNOWN = "unknown"  # maybe an effect: a timeout, a lost connection, a killed process


@dataclass(frozen=True, slots=True)
class Op:
    """One operation.  ``value`` is what a write wrote (None: a delete) or what a read returned (None: absent);
    ``version`` what the write was acknowledged at or what the read reported (None: unknown, or absent);
    ``end_ns`` None when the operation never completed."""

    process: str
    kind: Kind
    key: str
    value: Any
    version: int | None
    start_ns: int
    end_ns: int | None
    outcome: Outcome = Outcome.OK
    token: dict[int, int] | None = None  # a write's answer, or the token a GET_AFTER waited for
    expected: int | None = None  # CAS: the version the key must have (None: absent)
    partition: int = 0

    @property
    def end(self) -> float:
        return math.inf if self.end_ns is None else self.end_ns


class Rule(enum.Enum):
    FUTURE_READ = "future-read"
    WRONG_VERSION = "wrong-version"
    STALE_STRONG = "stale-strong"
    STRONG_ORDER = "strong-order"
    MONOTONIC = "monotonic"
    AFTER_TOKEN = "after-token"
    LOST_UPDATE = "lost-update"
    DOUBLE_CAS = "double-cas"


@dataclass(frozen=True, slots=True)
class Violation:
    rule: Rule
    op: Op
    detail: str

    def __str__(self) -> str:
        o = self.op
        return (f"{self.rule.value}: {o.process} {o.kind.value} {o.key!r} -> {o.value!r}@{o.version} "
                f"[{o.start_ns}, {o.end_ns}]: {self.detail}")


# A position in a key's order: a version, or -1 for the initial (absent) state.  Half steps (v + 0.5) stand for
# "after v, before the next": where a delete of unknown version that began after v ended must sit.
INITIAL = -1.0


@dataclass(slots=True)
class _Key:
    """The effective writes of one key, ordered by version."""

    writes: list[Op] = field(default_factory=list)  # effective, known version, sorted by version
    versions: list[int] = field(default_factory=list)
    by_value: dict[str, Op] = field(default_factory=dict)  # every write of the key, by its (unique) value
    unknown_deletes: list[Op] = field(default_factory=list)  # possibly effective, version unknowable

    def before(self, position: float) -> Op | None:
        """The effective write just before ``position``."""
        i = bisect_left(self.versions, position)
        return self.writes[i - 1] if i else None

    def newest_ended_before(self, t: float) -> float:
        """The newest position of a write that ended before ``t`` (INITIAL if none)."""
        best = INITIAL
        for w in self.writes:
            if w.end < t and w.version is not None and w.version > best:
                best = w.version
        return best

    def absent_at_or_after(self, lo: float, read_end: float) -> float | None:
        """The earliest position >= ``lo`` at which the key is absent and that a read ending at ``read_end`` may see
        (the delete started before it ended), or None."""
        if lo <= INITIAL:
            return INITIAL
        i = bisect_left(self.versions, lo)
        for w in self.writes[i:]:
            if w.value is None and w.start_ns < read_end:
                return float(w.version)  # type: ignore[arg-type]
        for d in self.unknown_deletes:  # lenient: it may have landed anywhere after the writes done before it began
            if d.start_ns < read_end:
                return max(lo, self.newest_ended_before(d.start_ns) + 0.5)
        return None


def _key(v: object) -> str:
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def _index(history: list[Op]) -> dict[str, _Key]:
    keys: dict[str, _Key] = defaultdict(_Key)
    for op in history:
        if op.kind.is_write and op.value is not None:
            keys[op.key].by_value[_key(op.value)] = op
    observed: dict[tuple[str, str], int] = {}  # (key, value) -> version a read reported for an unknown write
    for op in history:
        if not op.kind.is_write and op.value is not None and op.version is not None:
            observed.setdefault((op.key, _key(op.value)), op.version)
    for op in history:
        if not op.kind.is_write:
            continue
        k = keys[op.key]
        if op.outcome is Outcome.OK:
            if op.version is None:
                raise ValueError(f"an acknowledged write without a version: {op}")
            k.writes.append(op)
        elif op.outcome is Outcome.UNKNOWN:
            if op.value is None:
                k.unknown_deletes.append(op)
            elif (op.key, _key(op.value)) in observed:
                version = observed[(op.key, _key(op.value))]
                seen = Op(op.process, op.kind, op.key, op.value, version, op.start_ns, op.end_ns, op.outcome,
                          op.token, op.expected, op.partition)
                k.writes.append(seen)
                k.by_value[_key(op.value)] = seen
    for k in keys.values():
        k.writes.sort(key=lambda w: w.version)  # type: ignore[arg-type, return-value]
        k.versions = [w.version for w in k.writes]  # type: ignore[misc]
    return keys


def _position(k: _Key, read: Op, lo: float) -> float | None:
    """Where ``read`` sits in its key's order, the earliest such place >= ``lo`` for an absent read of unknown
    version; None if it cannot sit at or after ``lo``."""
    if read.value is not None or read.version is not None:
        assert read.version is not None
        return float(read.version) if read.version >= lo else None
    return k.absent_at_or_after(lo, read.end)


def _check_reads(history: list[Op], keys: dict[str, _Key]) -> Iterator[Violation]:
    reads = sorted((op for op in history if not op.kind.is_write and op.outcome is Outcome.OK),
                   key=lambda op: op.start_ns)
    for r in reads:
        k = keys.get(r.key) or _Key()
        if r.value is not None:
            w = k.by_value.get(_key(r.value))
            if w is None:
                yield Violation(Rule.FUTURE_READ, r, "no write of this key wrote this value")
                continue
            if w.start_ns >= r.end:
                yield Violation(Rule.FUTURE_READ, r, f"the write began after the read ended: {w.process}")
                continue
            if r.version is None:
                raise ValueError(f"a read that returned a value without its version: {r}")
            if w.outcome is Outcome.FAILED:
                yield Violation(Rule.FUTURE_READ, r, "returned the value of a write that failed")
            elif w.version is not None and w.version != r.version:
                how = "acknowledged" if w.outcome is Outcome.OK else "first read"
                yield Violation(Rule.WRONG_VERSION, r, f"the write was {how} at version {w.version}")
        if r.kind is Kind.GET_STRONG:
            bound = k.newest_ended_before(r.start_ns)
            if _position(k, r, bound) is None:
                yield Violation(Rule.STALE_STRONG, r, f"version {bound:g} was acknowledged before the read began")
        if r.kind is Kind.GET_AFTER:
            if r.token is None:
                raise ValueError(f"a read after a token without its token: {r}")
            below = r.token.get(r.partition)
            bound = max((float(w.version) for w in k.writes  # type: ignore[arg-type]
                         if w.partition == r.partition and below is not None and w.version < below),  # type: ignore[operator]
                        default=INITIAL)
            if _position(k, r, bound) is None:
                yield Violation(Rule.AFTER_TOKEN, r, f"the token {r.token} covers version {bound:g}")
    yield from _check_strong_order(reads, keys)
    yield from _check_monotonic(reads, keys)


def _check_strong_order(reads: list[Op], keys: dict[str, _Key]) -> Iterator[Violation]:
    """Strong reads of a key in real time order never go back: each is at or after the latest position of the
    strong reads that ended before it began."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for r in reads:
        if r.kind is Kind.GET_STRONG:
            by_key[r.key].append(r)
    for key, rs in by_key.items():
        k = keys.get(key) or _Key()
        by_end = sorted(rs, key=lambda r: r.end)
        positions: dict[int, float] = {}
        for r in rs:  # each read's own earliest position, given what was acknowledged before it began
            p = _position(k, r, k.newest_ended_before(r.start_ns))
            positions[id(r)] = INITIAL if p is None else p  # already reported as STALE_STRONG
        j, lo = 0, INITIAL
        for r in rs:  # by start
            while j < len(by_end) and by_end[j].end < r.start_ns:
                lo = max(lo, positions[id(by_end[j])])
                j += 1
            if _position(k, r, lo) is None:
                yield Violation(Rule.STRONG_ORDER, r, f"a strong read that ended before it began saw {lo:g}")


def _check_monotonic(reads: list[Op], keys: dict[str, _Key]) -> Iterator[Violation]:
    lo: dict[tuple[str, str], float] = defaultdict(lambda: INITIAL)
    for r in sorted(reads, key=lambda op: (op.process, op.start_ns)):
        k = keys.get(r.key) or _Key()
        p = _position(k, r, lo[(r.process, r.key)])
        if p is None:
            yield Violation(Rule.MONOTONIC, r, f"this process had already read version {lo[(r.process, r.key)]:g}")
        else:
            lo[(r.process, r.key)] = p


def _check_cas(keys: dict[str, _Key]) -> Iterator[Violation]:
    for k in keys.values():
        seen: dict[int | None, Op] = {}
        for w in k.writes:
            if w.kind is not Kind.CAS or w.outcome is not Outcome.OK:
                continue
            prev = k.before(float(w.version))  # type: ignore[arg-type]
            current = None if prev is None or prev.value is None else prev.version
            # a delete of unknown outcome, begun before this write ended, may sit between prev and it
            maybe_deleted = w.expected is None and any(d.start_ns < w.end for d in k.unknown_deletes)
            if w.expected != current and not maybe_deleted:
                yield Violation(Rule.LOST_UPDATE, w, f"expected {w.expected}, but the version before it was "
                                f"{None if prev is None else prev.version} by {prev and prev.process}")
            first = seen.setdefault(w.expected, w)
            if first is not w and w.expected is not None:  # "only if absent" may succeed again after a delete
                yield Violation(Rule.DOUBLE_CAS, w, f"{first.process} also succeeded from version {w.expected} "
                                f"(at {first.version})")


def check(history: Iterable[Op]) -> list[Violation]:
    """Every violation of the rules in the module docstring, reads first, then conditional writes."""
    ops = list(history)
    keys = _index(ops)
    return [*_check_reads(ops, keys), *_check_cas(keys)]


# --- recording, for multi-process harnesses -------------------------------------------------------------------------


class Recorder:
    """Appends a process's operations to a JSON-lines file: an ``invoke`` line before each one and a ``complete``
    line after, each flushed, so that a process killed in the middle leaves an operation of unknown outcome.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     rec = Recorder(Path(d) / "p1.jsonl", "p1")
    ...     with rec.op(Kind.PUT, "k", "v1") as done:
    ...         done(version=0, token={0: 1})
    ...     rec.close()
    ...     [(op.kind, op.version, op.outcome) for op in load_history([Path(d) / "p1.jsonl"])]
    [(<Kind.PUT: 'put'>, 0, <Outcome.OK: 'ok'>)]
    """

    def __init__(self, path: Path, process: str) -> None:
        self.process = process
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._seq = 0

    def op(self, kind: Kind, key: str, value: Any = None, **fields: Any) -> _Pending:
        self._seq += 1
        start = time.monotonic_ns()
        self._write({"seq": self._seq, "type": "invoke", "process": self.process, "kind": kind.value, "key": key,
                     "value": value, "start_ns": start, **fields})
        return _Pending(self, self._seq)

    def _write(self, line: dict[str, Any]) -> None:
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class _Pending:
    """The context of one operation: call it with the result; leaving without calling records ``unknown`` for a
    write, and nothing usable for a read (an unfinished read constrains nothing).  ``failed()`` records a certain
    failure."""

    def __init__(self, rec: Recorder, seq: int) -> None:
        self._rec, self._seq, self._done = rec, seq, False

    def __enter__(self) -> _Pending:
        return self

    def __call__(self, **fields: Any) -> None:
        self._finish("ok", fields)

    def failed(self, **fields: Any) -> None:
        self._finish("failed", fields)

    def _finish(self, outcome: str, fields: dict[str, Any]) -> None:
        if "token" in fields and fields["token"] is not None:
            fields["token"] = {str(p): o for p, o in fields["token"].items()}
        self._rec._write({"seq": self._seq, "type": "complete", "outcome": outcome, "end_ns": time.monotonic_ns(),
                          **fields})
        self._done = True

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self._finish("unknown", {})


def _token(raw: dict[str, int] | None) -> dict[int, int] | None:
    return None if raw is None else {int(p): int(o) for p, o in raw.items()}


def load_history(paths: Iterable[Path]) -> list[Op]:
    """The operations in the recorders' files; an invoke with no complete is an operation of unknown outcome."""
    ops: list[Op] = []
    for path in paths:
        if not path.exists() or os.path.getsize(path) == 0:
            continue
        invokes: dict[int, dict[str, Any]] = {}  # one process per file: its sequence numbers name its operations
        done: dict[int, dict[str, Any]] = {}
        with path.open(encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # the process died mid-line
                row = json.loads(line)
                (invokes if row["type"] == "invoke" else done)[row["seq"]] = row
        for ident, inv in invokes.items():
            comp = done.get(ident, {"outcome": "unknown", "end_ns": None})
            merged = {**inv, **comp}
            kind = Kind(inv["kind"])
            if not kind.is_write and merged["outcome"] != "ok":
                continue
            value = merged.get("value")
            ops.append(Op(inv["process"], kind, inv["key"], value, merged.get("version"), inv["start_ns"],
                          merged["end_ns"], Outcome(merged["outcome"]), _token(merged.get("token")),
                          merged.get("expected"), merged.get("partition", 0)))
    return ops
