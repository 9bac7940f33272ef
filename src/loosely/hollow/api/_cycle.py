"""The producer cycle as a pure state machine: ``step(state, event, now_ms) -> (state, effects)``.

A cycle (Java ``AbstractHollowProducer.runCycle``) goes through fixed stages; the shell (``Producer``) carries
out each effect and feeds back the event it produced::

    IDLE --CycleRequested(leader)--> POPULATING         effect: Populate(v)
    IDLE --CycleRequested(not leader)--> IDLE           effect: Skip(NOT_LEADER)
    IDLE --Restored(v)--> IDLE                          (the read state now holds v: the chain continues)
    POPULATING --Populated(changed)--> PUBLISHING       effect: Publish(v, snapshot?, delta?)
    POPULATING --Populated(unchanged)--> IDLE           effect: Skip(NO_CHANGE)   (the write state is reset)
    PUBLISHING --Published--> CHECKING                  effect: Check(v)          (integrity check, or just load)
    CHECKING --Checked--> VALIDATING                    effect: Validate(v)
    VALIDATING --Validated--> ANNOUNCING                effect: Announce(v)
    ANNOUNCING --Announced--> IDLE                      effect: Commit(v)         (v is the producer's state)
    any stage --Failed(error)--> IDLE                   effect: Rollback(v, stage, error)

Snapshots: the first cycle of a delta chain always publishes one; after that one cycle in
``snapshot_every_cycles`` does (1: every cycle, Java's default of ``numStatesBetweenSnapshots = 0``).  The
snapshot is *written* every cycle regardless, because the integrity check loads it.  The countdown only moves
when a cycle commits, so a failed cycle does not skip a snapshot.

>>> s = CycleState(snapshot_every_cycles=2)
>>> s, fx = step(s, CycleRequested(Version(10), leader=True), now_ms=0)
>>> fx
(Populate(version=10),)
>>> s, fx = step(s, Populated(changed=True), now_ms=5)
>>> fx
(Publish(version=10, snapshot=True, delta=False),)
>>> for event in (Published(), Checked(), Validated(), Announced()):
...     s, fx = step(s, event, now_ms=9)
>>> fx, s.stage, s.announced, s.cycles_until_snapshot
((Commit(version=10, duration_ms=9),), <Stage.IDLE: 'idle'>, 10, 1)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import TypeAlias

from loosely.hollow.api._blobs import Version

__all__ = [
    "Announce",
    "Announced",
    "Check",
    "Checked",
    "Commit",
    "CycleEvent",
    "CycleRequested",
    "CycleState",
    "Effect",
    "Failed",
    "Populate",
    "Populated",
    "Publish",
    "Published",
    "Restored",
    "Rollback",
    "Skip",
    "SkipReason",
    "Stage",
    "Validate",
    "Validated",
    "step",
]


class Stage(enum.Enum):
    """The stages of a producer cycle."""

    IDLE = "idle"
    POPULATING = "populating"
    PUBLISHING = "publishing"
    CHECKING = "checking"
    VALIDATING = "validating"
    ANNOUNCING = "announcing"


class SkipReason(enum.Enum):
    NOT_LEADER = "not leader"
    NO_CHANGE = "no change"


@dataclass(frozen=True, slots=True)
class CycleState:
    """Where the producer is.  ``announced`` is the version its read state holds (None: new delta chain)."""

    stage: Stage = Stage.IDLE
    version: Version | None = None
    announced: Version | None = None
    snapshot_every_cycles: int = 1
    cycles_until_snapshot: int = 0
    started_ms: int = 0
    snapshot_pending: bool = False

    def __post_init__(self) -> None:
        if self.snapshot_every_cycles < 1:
            raise ValueError("snapshot_every_cycles must be at least 1")


# -- events --


@dataclass(frozen=True, slots=True)
class CycleRequested:
    version: Version
    leader: bool = True


@dataclass(frozen=True, slots=True)
class Restored:
    version: Version | None


@dataclass(frozen=True, slots=True)
class Populated:
    changed: bool


@dataclass(frozen=True, slots=True)
class Published:
    pass


@dataclass(frozen=True, slots=True)
class Checked:
    pass


@dataclass(frozen=True, slots=True)
class Validated:
    pass


@dataclass(frozen=True, slots=True)
class Announced:
    pass


@dataclass(frozen=True, slots=True)
class Failed:
    error: str


CycleEvent: TypeAlias = CycleRequested | Restored | Populated | Published | Checked | Validated | Announced | Failed

# -- effects --


@dataclass(frozen=True, slots=True)
class Populate:
    version: Version


@dataclass(frozen=True, slots=True)
class Publish:
    """Write snapshot, delta, reverse delta and header; publish the header, the deltas and (if set) the snapshot."""

    version: Version
    snapshot: bool
    delta: bool


@dataclass(frozen=True, slots=True)
class Check:
    version: Version


@dataclass(frozen=True, slots=True)
class Validate:
    version: Version


@dataclass(frozen=True, slots=True)
class Announce:
    version: Version


@dataclass(frozen=True, slots=True)
class Commit:
    version: Version
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Rollback:
    version: Version
    stage: Stage
    error: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Skip:
    reason: SkipReason
    version: Version | None


Effect: TypeAlias = Populate | Publish | Check | Validate | Announce | Commit | Rollback | Skip

_NEXT: dict[tuple[Stage, type], tuple[Stage, type[Check] | type[Validate] | type[Announce]]] = {
    (Stage.PUBLISHING, Published): (Stage.CHECKING, Check),
    (Stage.CHECKING, Checked): (Stage.VALIDATING, Validate),
    (Stage.VALIDATING, Validated): (Stage.ANNOUNCING, Announce),
}


def _idle(state: CycleState) -> CycleState:
    return replace(state, stage=Stage.IDLE, version=None, snapshot_pending=False)


def step(state: CycleState, event: CycleEvent, now_ms: int) -> tuple[CycleState, tuple[Effect, ...]]:
    """The next state and what to do; an event that does not fit the stage is a programming error."""
    stage = state.stage
    if stage is Stage.IDLE:
        if isinstance(event, Restored):
            return replace(state, announced=event.version, cycles_until_snapshot=state.snapshot_every_cycles - 1), ()
        if not isinstance(event, CycleRequested):
            raise ValueError(f"{type(event).__name__} while idle")
        if not event.leader:
            return state, (Skip(SkipReason.NOT_LEADER, state.announced),)
        if state.announced is not None and event.version <= state.announced:
            raise ValueError(f"version {event.version} does not follow {state.announced}")
        return replace(state, stage=Stage.POPULATING, version=event.version, started_ms=now_ms), (
            Populate(event.version),
        )
    version = state.version
    assert version is not None
    if isinstance(event, Failed):
        return _idle(state), (Rollback(version, stage, event.error, now_ms - state.started_ms),)
    if stage is Stage.POPULATING and isinstance(event, Populated):
        if not event.changed:
            return _idle(state), (Skip(SkipReason.NO_CHANGE, state.announced),)
        snapshot = state.announced is None or state.cycles_until_snapshot <= 0
        return replace(state, stage=Stage.PUBLISHING, snapshot_pending=snapshot), (
            Publish(version, snapshot=snapshot, delta=state.announced is not None),
        )
    nxt = _NEXT.get((stage, type(event)))
    if nxt is not None:
        new_stage, effect = nxt
        return replace(state, stage=new_stage), (effect(version),)
    if stage is Stage.ANNOUNCING and isinstance(event, Announced):
        countdown = state.snapshot_every_cycles - 1 if state.snapshot_pending else state.cycles_until_snapshot - 1
        committed = replace(_idle(state), announced=version, cycles_until_snapshot=countdown)
        return committed, (Commit(version, now_ms - state.started_ms),)
    raise ValueError(f"{type(event).__name__} while {stage.value}")
