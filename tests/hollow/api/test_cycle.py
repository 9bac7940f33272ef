"""The producer cycle's pure state machine: stage order, snapshot cadence, rollback, leadership."""

from __future__ import annotations

import pytest

from loosely.hollow.api import Version
from loosely.hollow.api import _cycle as cy


def _succeed(state: cy.CycleState, version: int) -> tuple[cy.CycleState, cy.Publish]:
    state, fx = cy.step(state, cy.CycleRequested(Version(version)), now_ms=version * 10)
    assert fx == (cy.Populate(Version(version)),)
    state, fx = cy.step(state, cy.Populated(changed=True), now_ms=version * 10)
    (publish,) = fx
    assert isinstance(publish, cy.Publish)
    for event, effect in ((cy.Published(), cy.Check), (cy.Checked(), cy.Validate), (cy.Validated(), cy.Announce)):
        state, fx = cy.step(state, event, now_ms=version * 10 + 1)
        assert fx == (effect(Version(version)),)
    state, fx = cy.step(state, cy.Announced(), now_ms=version * 10 + 3)
    assert fx == (cy.Commit(Version(version), 3),)
    assert state.stage is cy.Stage.IDLE and state.announced == version
    return state, publish


@pytest.mark.parametrize(("every", "expected"), [(1, "SSSSSSS"), (2, "S.S.S.S"), (3, "S..S..S")])
def test_snapshot_cadence(every: int, expected: str) -> None:
    state = cy.CycleState(snapshot_every_cycles=every)
    marks = ""
    for v in range(1, 8):
        state, publish = _succeed(state, v)
        assert publish.delta == (v > 1)
        marks += "S" if publish.snapshot else "."
    assert marks == expected


def test_a_failed_cycle_does_not_move_the_snapshot_countdown() -> None:
    state, _ = _succeed(cy.CycleState(snapshot_every_cycles=2), 1)
    state, _ = cy.step(state, cy.CycleRequested(Version(2)), 0)
    state, _ = cy.step(state, cy.Populated(True), 0)
    state, fx = cy.step(state, cy.Failed("disk full"), 7)
    assert fx == (cy.Rollback(Version(2), cy.Stage.PUBLISHING, "disk full", 7),)
    assert state.stage is cy.Stage.IDLE and state.announced == 1
    _, publish = _succeed(state, 3)
    assert not publish.snapshot  # cycle 3 is the second committed one: no snapshot yet
    state2, _ = _succeed(state, 3)
    _, publish = _succeed(state2, 4)
    assert publish.snapshot


@pytest.mark.parametrize("stage_events", [0, 1, 2, 3, 4])
def test_failure_in_every_stage_rolls_back(stage_events: int) -> None:
    state, _ = _succeed(cy.CycleState(), 1)
    state, _ = cy.step(state, cy.CycleRequested(Version(2)), 0)
    events: list[cy.CycleEvent] = [cy.Populated(True), cy.Published(), cy.Checked(), cy.Validated()]
    for e in events[:stage_events]:
        state, _ = cy.step(state, e, 0)
    stage = state.stage
    state, fx = cy.step(state, cy.Failed("boom"), 0)
    assert isinstance(fx[0], cy.Rollback) and fx[0].stage is stage
    assert state.announced == 1 and state.version is None


def test_no_change_and_not_leader_skip() -> None:
    state, _ = _succeed(cy.CycleState(), 1)
    s2, fx = cy.step(state, cy.CycleRequested(Version(2), leader=False), 0)
    assert fx == (cy.Skip(cy.SkipReason.NOT_LEADER, Version(1)),) and s2 == state
    s2, _ = cy.step(state, cy.CycleRequested(Version(2)), 0)
    s3, fx = cy.step(s2, cy.Populated(changed=False), 0)
    assert fx == (cy.Skip(cy.SkipReason.NO_CHANGE, Version(1)),) and s3.stage is cy.Stage.IDLE


def test_versions_must_grow_and_events_must_fit() -> None:
    state, _ = _succeed(cy.CycleState(), 5)
    with pytest.raises(ValueError, match="does not follow"):
        cy.step(state, cy.CycleRequested(Version(5)), 0)
    with pytest.raises(ValueError, match="while idle"):
        cy.step(state, cy.Published(), 0)
    busy, _ = cy.step(state, cy.CycleRequested(Version(6)), 0)
    with pytest.raises(ValueError, match="while populating"):
        cy.step(busy, cy.Announced(), 0)
    with pytest.raises(ValueError):
        cy.CycleState(snapshot_every_cycles=0)


def test_restore_continues_a_chain() -> None:
    state, _ = cy.step(cy.CycleState(snapshot_every_cycles=3), cy.Restored(Version(40)), 0)
    assert state.announced == 40
    _, publish = _succeed(state, 41)
    assert publish.delta and not publish.snapshot
