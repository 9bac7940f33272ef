"""Blue/green: build version N+1 beside the serving version N, switch atomically once it has caught up, drop N.

The decisions are a pure state machine; :func:`rebuild` is the shell that runs the new version's
:class:`~loosely.views._runner.Runner` in a thread, feeds it lag measurements and carries out the effects.

States::

    BUILDING --Measured(lag <= switch_lag_max, caught up)--> SWITCHING   effects: Switch(new)
    SWITCHING --Switched--> DRAINING (if drop_old) or DONE               effects: Drop(old) after drop_delay_ms
    DRAINING --Tick(now >= drop_at)--> DONE                              effects: Drop(old), Finish
    BUILDING --Measured(...)--> BUILDING                                 effects: Report(progress)

Readers never see a half-built version: until the switch they read N (complete), and the switch is one
transaction (SQL sinks), one atomic rename (document sinks), one pointer write (Sphinx, InfluxDB) or one
assignment under the endpoint's lock (Prometheus, in one process). ``drop_delay_ms`` leaves readers that
resolved N just before the switch time to finish. N's runners need no stopping: followers
(:mod:`loosely.views._follow`) move to N+1 within ``catalog_check_ms`` of the switch, and runners pinned to N
stop with :class:`~loosely.views._sink.VersionDropped` once N is dropped.

>>> s = RebuildState(old=1, new=2)
>>> s, fx = step(s, Measured(read=10, lag=5, caught_up=False), now_ms=1_000, started_ms=0)
>>> s.phase, [type(f).__name__ for f in fx]
(<RebuildPhase.BUILDING: 'building'>, ['Report'])
>>> s, fx = step(s, Measured(read=15, lag=0, caught_up=True), now_ms=2_000, started_ms=0)
>>> s.phase, fx[-1]
(<RebuildPhase.SWITCHING: 'switching'>, Switch(version=2))
>>> s, fx = step(s, Switched(), now_ms=2_100, started_ms=0)
>>> s.phase, s.drop_at_ms
(<RebuildPhase.DRAINING: 'draining'>, 7100)
>>> step(s, Tick(), now_ms=7_100, started_ms=0)[1]
(Drop(version=1), Finish())
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

from loosely.views._model import View
from loosely.views._progress import Progress, measure
from loosely.views._runner import Runner, RunnerConfig, RunnerStatistics
from loosely.views._sink import Catalog, Sink, SinkError

__all__ = [
    "Drop",
    "Finish",
    "Measured",
    "RebuildPhase",
    "RebuildState",
    "Report",
    "Switch",
    "Switched",
    "Tick",
    "rebuild",
    "step",
]


class RebuildPhase(enum.Enum):
    BUILDING = "building"
    SWITCHING = "switching"
    DRAINING = "draining"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class RebuildState:
    old: int | None
    new: int
    phase: RebuildPhase = RebuildPhase.BUILDING
    drop_old: bool = True
    switch_lag_max: int = 0
    drop_delay_ms: int = 5_000
    drop_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class Measured:
    read: int
    lag: int
    caught_up: bool


@dataclass(frozen=True, slots=True)
class Switched:
    pass


@dataclass(frozen=True, slots=True)
class Tick:
    pass


Event: TypeAlias = Measured | Switched | Tick


@dataclass(frozen=True, slots=True)
class Report:
    progress: Progress


@dataclass(frozen=True, slots=True)
class Switch:
    version: int


@dataclass(frozen=True, slots=True)
class Drop:
    version: int


@dataclass(frozen=True, slots=True)
class Finish:
    pass


Effect: TypeAlias = Report | Switch | Drop | Finish


def step(state: RebuildState, event: Event, now_ms: int, started_ms: int) -> tuple[RebuildState, tuple[Effect, ...]]:
    if state.phase is RebuildPhase.BUILDING and isinstance(event, Measured):
        report = Report(measure(event.read, event.lag, now_ms - started_ms))
        if event.caught_up and event.lag <= state.switch_lag_max:
            return replace(state, phase=RebuildPhase.SWITCHING), (report, Switch(state.new))
        return state, (report,)
    if state.phase is RebuildPhase.SWITCHING and isinstance(event, Switched):
        if state.drop_old and state.old is not None and state.old != state.new:
            return replace(state, phase=RebuildPhase.DRAINING, drop_at_ms=now_ms + state.drop_delay_ms), ()
        return replace(state, phase=RebuildPhase.DONE), (Finish(),)
    if state.phase is RebuildPhase.DRAINING and isinstance(event, Tick) and now_ms >= state.drop_at_ms:
        assert state.old is not None
        return replace(state, phase=RebuildPhase.DONE), (Drop(state.old), Finish())
    return state, ()


def rebuild(
    view: View[Any, Any],
    sink: Sink,
    bootstrap_servers: str,
    *,
    config: RunnerConfig | None = None,
    drop_old: bool = True,
    drop_delay_ms: int = 5_000,
    switch_lag_max: int = 0,
    on_progress: Callable[[Progress], None] | None = None,
    report_interval_ms: int = 1_000,
    timeout_s: float | None = None,
) -> RunnerStatistics:
    """Build ``view`` (a new version) from the beginning of its topics into ``sink`` while the serving version
    keeps serving; switch when caught up; drop the previous version after ``drop_delay_ms``.

    To rebuild into another environment, pass that environment's sink (and a ``config.group_id`` of its own).
    """
    if not isinstance(sink, Catalog):
        raise SinkError(f"{type(sink).__name__} keeps one version only; it cannot switch versions")
    old = sink.serving_version(view.name)
    runner = Runner(view, sink, bootstrap_servers, replace(config or RunnerConfig(), serve_when_caught_up=False))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            runner.run()
        except BaseException as e:  # reported by the caller's thread
            failure.append(e)

    t = threading.Thread(target=run, name=f"rebuild-{view.id}", daemon=True)
    started = time.monotonic()
    state = RebuildState(old, view.version, drop_old=drop_old, switch_lag_max=switch_lag_max,
                         drop_delay_ms=drop_delay_ms)
    t.start()
    try:
        while state.phase is not RebuildPhase.DONE:
            time.sleep(report_interval_ms / 1000)
            if failure:
                raise failure[0]
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise TimeoutError(f"rebuild of {view.id} not done in {timeout_s}s")
            now = int((time.monotonic() - started) * 1000)
            stats = runner.statistics()
            event: Event = Measured(stats.records, stats.lag_total, runner.caught_up()) \
                if state.phase is RebuildPhase.BUILDING else Tick()
            state, effects = step(state, event, now, 0)
            pending = list(effects)
            while pending:
                fx = pending.pop(0)
                if isinstance(fx, Report) and on_progress is not None:
                    on_progress(fx.progress)
                elif isinstance(fx, Switch):
                    sink.switch(view.name, fx.version)
                    state, more = step(state, Switched(), now, 0)
                    pending.extend(more)
                elif isinstance(fx, Drop):
                    sink.drop(view.name, fx.version)
    finally:
        runner.stop()
        t.join(60)
        runner.close()
    return runner.statistics()
