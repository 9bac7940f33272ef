"""The consistency checker on hand-built histories: ones a correct RAW Hollow may produce pass, and each rule is
broken at least once by a history that must fail with exactly that rule."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from . import checker
from .checker import Kind, Op, Outcome, Recorder, Rule, check, load_history

P, D, C = Kind.PUT, Kind.DELETE, Kind.CAS
E, S, A = Kind.GET_EVENTUAL, Kind.GET_STRONG, Kind.GET_AFTER


def w(proc: str, kind: Kind, value: object, version: int | None, start: int, end: int | None,
      outcome: Outcome = Outcome.OK, expected: int | None = None, key: str = "k") -> Op:
    token = None if version is None or outcome is not Outcome.OK else {0: version + 1}
    return Op(proc, kind, key, value, version, start, end, outcome, token=token, expected=expected)


def r(proc: str, kind: Kind, value: object, version: int | None, start: int, end: int,
      token: dict[int, int] | None = None, key: str = "k") -> Op:
    return Op(proc, kind, key, value, version, start, end, token=token)


def rules(history: list[Op]) -> list[Rule]:
    return sorted({v.rule for v in check(history)}, key=lambda rule: rule.value)


# --- histories that must pass ---------------------------------------------------------------------------------------

PASSING = {
    "empty": [],
    "read of a never written key": [r("r", S, None, None, 0, 1), r("r", E, None, None, 2, 3)],
    "eventual read may lag": [w("w", P, "a", 0, 0, 10), w("w", P, "b", 5, 11, 20),
                              r("r", E, "a", 0, 21, 22), r("r", E, "b", 5, 23, 24)],
    "strong read sees the newest acknowledged": [w("w", P, "a", 0, 0, 10), w("w", P, "b", 5, 11, 20),
                                                  r("r", S, "b", 5, 21, 22)],
    "strong read may see a concurrent write or not": [w("w", P, "a", 0, 0, 10), w("w", P, "b", 5, 11, 30),
                                                      r("r1", S, "b", 5, 12, 13), r("r2", S, "b", 5, 14, 15),
                                                      r("r3", S, "a", 0, 12, 15)],
    "strong read after a delete": [w("w", P, "a", 0, 0, 10), w("w", D, None, 1, 11, 20), r("r", S, None, None, 21, 22)],
    "absent after a delete, then a newer value": [w("w", P, "a", 0, 0, 10), w("w", D, None, 1, 11, 20),
                                                  w("w", P, "b", 2, 21, 30), r("r", E, "a", 0, 31, 32),
                                                  r("r", E, None, None, 33, 34), r("r", E, "b", 2, 35, 36)],
    "read after a token": [w("w", P, "a", 0, 0, 10), w("w", P, "b", 1, 11, 20),
                           r("w", A, "b", 1, 21, 22, token={0: 2}), r("r", A, "b", 1, 12, 22, token={0: 2})],
    "token of another key's write": [w("w", P, "a", 0, 0, 10), w("w", P, "x", 1, 11, 20, key="other"),
                                     r("r", A, "a", 0, 21, 22, token={0: 2})],
    "a chain of conditional writes": [w("w1", C, "a", 0, 0, 10, expected=None), w("w2", C, "b", 3, 11, 20, expected=0),
                                      w("w1", C, "c", 4, 21, 30, expected=3),
                                      w("w2", C, "x", None, 21, 30, Outcome.FAILED, expected=3),
                                      r("r", S, "c", 4, 31, 32)],
    "create if absent again after a delete": [w("w1", C, "a", 0, 0, 10, expected=None), w("w1", D, None, 1, 11, 20),
                                              w("w2", C, "b", 2, 21, 30, expected=None)],
    "a write of unknown outcome seen by a read": [w("w", P, "a", 0, 0, 10), w("w", P, "b", None, 11, None,
                                                                               Outcome.UNKNOWN),
                                                  r("r", S, "b", 7, 20, 21), r("r", S, "b", 7, 22, 23)],
    "a write of unknown outcome never seen": [w("w", P, "a", 0, 0, 10), w("w", P, "b", None, 11, None,
                                                                           Outcome.UNKNOWN),
                                              r("r", S, "a", 0, 20, 21)],
    "a delete of unknown outcome explains an absent read": [w("w", P, "a", 0, 0, 10),
                                                            w("w", D, None, None, 11, None, Outcome.UNKNOWN),
                                                            r("r", S, None, None, 20, 21)],
    "create if absent after a delete of unknown outcome": [w("w1", P, "a", 0, 0, 10),
                                                           w("w1", D, None, None, 11, None, Outcome.UNKNOWN),
                                                           w("w2", C, "b", 2, 21, 30, expected=None)],
    "keys are independent": [w("w", P, "a", 5, 0, 10), w("w", P, "x", 2, 0, 10, key="other"),
                             r("r", S, "a", 5, 11, 12), r("r", S, "x", 2, 13, 14, key="other")],
}


@pytest.mark.parametrize("name", PASSING)
def test_passes(name: str) -> None:
    assert check(PASSING[name]) == []


# --- histories that must fail, each with one rule -------------------------------------------------------------------

FAILING = {
    "invented value": ([w("w", P, "a", 0, 0, 10), r("r", E, "zzz", 0, 11, 12)], Rule.FUTURE_READ),
    "value from the future": ([r("r", E, "a", 0, 0, 5), w("w", P, "a", 0, 6, 10)], Rule.FUTURE_READ),
    "value of a failed write": ([w("w", C, "a", None, 0, 10, Outcome.FAILED, expected=3), r("r", E, "a", 0, 11, 12)],
                                Rule.FUTURE_READ),
    "wrong version": ([w("w", P, "a", 0, 0, 10), r("r", E, "a", 9, 11, 12)], Rule.WRONG_VERSION),
    "a write applied twice": ([w("w", P, "a", 0, 0, 10), w("w", P, "b", 1, 11, 20), r("r", E, "a", 2, 21, 22)],
                              Rule.WRONG_VERSION),
    "a write of unknown outcome seen at two versions": ([w("w", P, "a", None, 0, None, Outcome.UNKNOWN),
                                                         r("r", E, "a", 3, 11, 12), r("r2", E, "a", 5, 13, 14)],
                                                        Rule.WRONG_VERSION),
    "strong read misses an acknowledged write": ([w("w", P, "a", 0, 0, 10), w("w", P, "b", 1, 11, 20),
                                                  r("r", S, "a", 0, 21, 22)], Rule.STALE_STRONG),
    "strong read misses the only write": ([w("w", P, "a", 0, 0, 10), r("r", S, None, None, 11, 12)],
                                          Rule.STALE_STRONG),
    "strong read resurrects a deleted record": ([w("w", P, "a", 0, 0, 10), w("w", D, None, 1, 11, 20),
                                                 r("r", S, "a", 0, 21, 22)], Rule.STALE_STRONG),
    "strong reads go back in real time": ([w("w", P, "a", 0, 0, 10), w("w", P, "b", 1, 11, 40),
                                           r("r1", S, "b", 1, 12, 13), r("r2", S, "a", 0, 14, 15)],
                                          Rule.STRONG_ORDER),
    "a process's reads go back": ([w("w", P, "a", 0, 0, 10), w("w", P, "b", 1, 11, 20),
                                   r("r", E, "b", 1, 21, 22), r("r", E, "a", 0, 23, 24)], Rule.MONOTONIC),
    "a process sees a value, then nothing with no delete": ([w("w", P, "a", 0, 0, 10), r("r", E, "a", 0, 11, 12),
                                                             r("r", E, None, None, 13, 14)], Rule.MONOTONIC),
    "read after a token misses the write": ([w("w", P, "a", 0, 0, 10), w("w", P, "b", 1, 11, 20),
                                             r("w", A, "a", 0, 21, 22, token={0: 2})], Rule.AFTER_TOKEN),
    "read after a token misses a put, returns nothing": ([w("w", P, "a", 0, 0, 10),
                                                          r("w", A, None, None, 11, 12, token={0: 1})],
                                                         Rule.AFTER_TOKEN),
    "conditional write from a stale version": ([w("w1", P, "a", 0, 0, 10), w("w2", P, "b", 1, 11, 20),
                                                w("w1", C, "c", 2, 21, 30, expected=0)], Rule.LOST_UPDATE),
    "create if absent over a live record": ([w("w1", P, "a", 0, 0, 10), w("w2", C, "b", 1, 11, 20, expected=None)],
                                            Rule.LOST_UPDATE),
}


@pytest.mark.parametrize("name", FAILING)
def test_fails(name: str) -> None:
    history, rule = FAILING[name]
    found = check(history)
    assert {v.rule for v in found} == {rule}, [str(v) for v in found]
    assert all(str(v).startswith(rule.value) for v in found)


def test_two_conditional_writes_from_one_version() -> None:
    """Both expected version 0; the second also lost the first's update, so both rules fire."""
    history = [w("w1", P, "a", 0, 0, 10), w("w1", C, "b", 1, 11, 20, expected=0),
               w("w2", C, "c", 2, 11, 20, expected=0)]
    assert rules(history) == [Rule.DOUBLE_CAS, Rule.LOST_UPDATE]
    assert [v.op.value for v in check(history) if v.rule is Rule.DOUBLE_CAS] == ["c"]


def test_every_rule_is_exercised() -> None:
    broken = {rule for _, rule in FAILING.values()} | {Rule.DOUBLE_CAS}
    assert broken == set(Rule)


def test_malformed_histories_are_refused() -> None:
    with pytest.raises(ValueError, match="without a version"):
        check([w("w", P, "a", None, 0, 10)])
    with pytest.raises(ValueError, match="without its token"):
        check([w("w", P, "a", 0, 0, 10), r("r", A, "a", 0, 11, 12)])


def test_recorder_round_trip_and_a_killed_process(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "w.jsonl", "w")
    with rec.op(Kind.PUT, "k", "v1") as done:
        done(version=0, token={0: 1})
    with rec.op(Kind.CAS, "k", "v2", expected=5) as done:
        done.failed(current=0)
    with rec.op(Kind.GET_AFTER, "k", token={0: 1}) as done:
        done(value="v1", version=0)
    with rec.op(Kind.GET_STRONG, "k"):
        pass  # an unfinished read: dropped
    rec.op(Kind.PUT, "k", "v3")  # invoked, then "killed": unknown outcome
    rec.close()
    with (tmp_path / "w.jsonl").open("a") as f:
        f.write('{"seq": 9, "type": "inv')  # a line cut by kill -9
    ops = load_history([tmp_path / "w.jsonl", tmp_path / "missing.jsonl"])
    assert [(o.kind, o.value, o.outcome, o.end_ns is None) for o in ops] == [
        (Kind.PUT, "v1", Outcome.OK, False), (Kind.CAS, "v2", Outcome.FAILED, False),
        (Kind.GET_AFTER, "v1", Outcome.OK, False), (Kind.PUT, "v3", Outcome.UNKNOWN, True)]
    assert ops[0].token == {0: 1} and ops[2].token == {0: 1} and ops[1].expected == 5
    assert check(ops) == []


def test_doctests() -> None:
    assert doctest.testmod(checker).failed == 0
