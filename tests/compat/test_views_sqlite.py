"""SQLite sink against a real broker: exactly-once under kill -9, with one runner and with three in a group.

The event count is ``LOOSELY_VIEWS_CRASH_EVENTS`` (default 40 000 so CI stays quick; the 1M-event runs are
recorded in docs/views.md), the number of kills ``LOOSELY_VIEWS_CRASH_KILLS`` (default 8).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loosely.broker.server import BrokerThread
from loosely.views import SqliteSink, TopicPartition
from views.crashkit import (
    CRASH_TIMEOUT_S,
    Reference,
    Runners,
    crash_batch,
    crash_events,
    crash_kills,
    crash_loop,
    create_topic,
    produce_events,
    record_result,
    reference,
)


def _sqlite_done(path: Path, view: str, ref: Reference) -> bool:
    if not path.exists():
        return False
    s = SqliteSink(str(path))
    try:
        infos = s.versions(view)
        if not infos:
            return False
        want = {TopicPartition(t, p): o for (t, p), o in ref.ends.items() if o > 0}
        return all(infos[0].positions.get(tp, 0) >= o for tp, o in want.items())
    finally:
        s.close()


def _check_sqlite(path: Path, view: str, ref: Reference) -> None:
    s = SqliteSink(str(path))
    try:
        rows = dict(s.scan(view, limit=10**9, version=1))
    finally:
        s.close()
    expected: dict[str, object] = {}
    for k, n in ref.counts.items():
        expected[f"{k}#n"] = n
        expected[f"{k}#last"] = ref.last[k]["seq"]
    missing = expected.keys() - rows.keys()
    extra = rows.keys() - expected.keys()
    wrong = {k: (rows[k], v) for k, v in expected.items() if k in rows and rows[k] != v}
    assert not missing and not extra and not wrong, (
        f"{len(missing)} missing, {len(extra)} extra, {len(wrong)} wrong, e.g. {list(wrong.items())[:5]}"
    )


@pytest.mark.slow
@pytest.mark.timeout(CRASH_TIMEOUT_S)
@pytest.mark.parametrize("runners", [1, 3])
def test_kill9_loop_is_exactly_once(loosely: BrokerThread, tmp_path: Path, topic: str, runners: int) -> None:
    events = crash_events(40_000)
    create_topic(loosely.bootstrap_servers, topic, 4)
    produce_events(loosely.bootstrap_servers, topic, events, keys=max(10, events // 10))
    ref = reference(loosely.bootstrap_servers, topic)
    assert ref.records == events
    db = tmp_path / "views.db"
    procs = Runners(
        ["views.crash_views:combined", "--sink", f"sqlite://{db}", "-b", loosely.bootstrap_servers,
         "--batch-records", crash_batch(2000), "--session-timeout-ms", "6000"],
        runners, {"LOOSELY_CRASH_TOPIC": topic}, tmp_path,
    )
    report = crash_loop(procs, kills=crash_kills(8), done=lambda: _sqlite_done(db, "crash", ref),
                        pause_s=(0.5, 2.5))
    record_result("sqlite", events, runners, report)
    _check_sqlite(db, "crash", ref)


@pytest.mark.slow
@pytest.mark.timeout(CRASH_TIMEOUT_S)
@pytest.mark.parametrize("runners", [1, 3])
def test_kill9_loop_on_the_batch_consumer_is_exactly_once(loosely: BrokerThread, tmp_path: Path, topic: str,
                                                          runners: int) -> None:
    """The same loop with the built-in count view, which a SQLite runner reads with loosely's batch consumer
    (static membership included): every record counted once."""
    events = crash_events(40_000)
    create_topic(loosely.bootstrap_servers, topic, 4)
    produce_events(loosely.bootstrap_servers, topic, events, keys=max(10, events // 10))
    ref = reference(loosely.bootstrap_servers, topic)
    db = tmp_path / "views.db"
    procs = Runners(
        ["views.crash_views:counts", "--sink", f"sqlite://{db}", "-b", loosely.bootstrap_servers,
         "--batch-records", crash_batch(2000), "--session-timeout-ms", "6000"],
        runners, {"LOOSELY_CRASH_TOPIC": topic}, tmp_path,
    )
    report = crash_loop(procs, kills=crash_kills(8), done=lambda: _sqlite_done(db, "counts", ref),
                        pause_s=(0.5, 2.5))
    record_result("sqlite/batch-consumer", events, runners, report)
    # one more run of the same command line, logging at INFO, says which consumer it read with
    again = subprocess.run([sys.executable, "-m", "loosely.cli.main", "-v", "views", "run", *procs.argv,
                            "--instance-id", "runner-0", "--until-caught-up"], env=procs.env, capture_output=True,
                           text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reading with loosely's batch consumer" in again.stderr
    s = SqliteSink(str(db))
    try:
        rows = dict(s.scan("counts", limit=10**9, version=1))
    finally:
        s.close()
    assert rows == dict(ref.counts)
