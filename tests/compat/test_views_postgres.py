"""PostgreSQL sink against a real PostgreSQL (Debian's, started by the test): exactly-once under kill -9.

Event count: ``LOOSELY_VIEWS_CRASH_EVENTS`` (default 40 000 for CI; the 1M runs are in docs/views.md).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from loosely.broker.server import BrokerThread
from loosely.views import Add, Batch, Fenced, PostgresSink, Put, TopicPartition, ViewError, count_by_key, latest_by_key
from views import services
from views.crashkit import (
    CRASH_TIMEOUT_S,
    Runners,
    compare,
    crash_batch,
    crash_events,
    crash_kills,
    crash_loop,
    create_topic,
    expected_rows,
    produce_events,
    record_result,
    reference,
)
from views.services import Postgres

postgres = services.postgres  # the fixture


def test_offsets_and_rows_commit_together_and_fence(postgres: Postgres) -> None:
    a = PostgresSink(postgres.url)
    b = PostgresSink(postgres.url)
    view = count_by_key("pg_fence", ["t"])
    a.open(view)
    b.open(view)
    tp = TopicPartition("t", 0)
    a.apply(Batch.build([(tp, 0, 0, Add("k", 1)), (tp, 1, 0, Add("k", 2))]))
    assert a.stored_positions() == {tp: 2}
    # b believes the partition is new: refused, and nothing of its batch is visible
    with pytest.raises(Fenced):
        b.apply(Batch.build([(tp, 0, 0, Add("k", 100))]))
    with pytest.raises(Fenced):
        b.apply(Batch.build([(tp, 0, 0, Add("k", 100))], starts={tp: 1}))
    a.apply(Batch.build([(tp, 2, 0, Add("k", 1)), (tp, 3, 0, Put("j", {"a": [1, "x"]}))], starts={tp: 2}))
    assert a.get("pg_fence", "k", version=1) == 4
    assert a.get("pg_fence", "j", version=1) == {"a": [1, "x"]}
    a.switch("pg_fence", 1)
    with psycopg.connect(postgres.url) as c:
        assert dict(c.execute('SELECT key, value FROM "pg_fence" ORDER BY key').fetchall()) == {
            "j": {"a": [1, "x"]}, "k": 4}
    a.close()
    b.close()


def test_a_latest_value_fold_is_written_as_one_document_with_its_deletions(postgres: Postgres) -> None:
    sink = PostgresSink(postgres.url)
    sink.open(latest_by_key("pg_latest", ["t"]))
    tp = TopicPartition("t", 0)
    sink.apply(Batch(latest={"a": "x", "b": {"n": [1, 2.5]}, "é": "☃😀", "q": 'q"\\'}, starts={tp: None},
                     ends={tp: 4}, records=4))
    sink.apply(Batch(latest={"a": None, "b": 7, "c": None}, starts={tp: 4}, ends={tp: 7}, records=3))
    assert dict(sink.scan("pg_latest", version=1)) == {"b": 7, "é": "☃😀", "q": 'q"\\'}
    assert sink.stored_positions() == {tp: 7}
    with pytest.raises(ViewError, match="decode bytes"):  # the general path says why bytes cannot be stored
        sink.apply(Batch(latest={"a": b"raw"}, starts={tp: 7}, ends={tp: 8}, records=1))
    assert sink.stored_positions() == {tp: 7}
    sink.close()


@pytest.mark.slow
@pytest.mark.timeout(CRASH_TIMEOUT_S)
@pytest.mark.parametrize("runners", [1, 3])
def test_kill9_loop_is_exactly_once(
    loosely: BrokerThread, postgres: Postgres, tmp_path: Path, topic: str, runners: int
) -> None:
    events = crash_events(40_000)
    create_topic(loosely.bootstrap_servers, topic, 4)
    produce_events(loosely.bootstrap_servers, topic, events, keys=max(10, events // 10))
    ref = reference(loosely.bootstrap_servers, topic)
    assert ref.records == events
    view = f"crash_{runners}_{topic[2:]}"
    procs = Runners(
        ["views.crash_views:combined", "--sink", postgres.url, "-b", loosely.bootstrap_servers,
         "--batch-records", crash_batch(2000), "--session-timeout-ms", "6000"],
        runners, {"LOOSELY_CRASH_TOPIC": topic, "LOOSELY_CRASH_VIEW": view}, tmp_path,
    )
    reader = PostgresSink(postgres.url)

    def done() -> bool:
        infos = reader.versions(view)
        return bool(infos) and all(infos[0].positions.get(TopicPartition(t, p), 0) >= o
                                   for (t, p), o in ref.ends.items() if o > 0)

    report = crash_loop(procs, kills=crash_kills(8), done=done, pause_s=(0.5, 2.5))
    record_result("postgresql", events, runners, report)
    compare(dict(reader.scan(view, limit=10**9, version=1)), expected_rows(ref))
    reader.close()
