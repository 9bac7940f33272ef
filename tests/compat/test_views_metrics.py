"""Metrics sinks against Debian's Prometheus (scraping the view's endpoint) and InfluxDB, under kill -9 loops.

The Prometheus sink rebuilds its in-memory state from the beginning after each kill; the final values that
Prometheus scraped must equal the reference. The InfluxDB sink writes one point per record with a deterministic
identity, so the points per key and the last value per key must equal the reference whatever was replayed.
Event count: ``LOOSELY_VIEWS_CRASH_EVENTS`` (default 20 000 for CI; the 1M runs are in docs/views.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from loosely.broker.server import BrokerThread
from loosely.views import (
    Add,
    Batch,
    Delete,
    Put,
    Runner,
    RunnerConfig,
    SinkError,
    TopicPartition,
    VersionState,
    rebuild,
)
from loosely.views._influx import InfluxSink
from loosely.views._model import View
from loosely.views._prometheus import PrometheusSink
from views import services
from views.bg_views import counts, tens
from views.crashkit import (
    CRASH_TIMEOUT_S,
    Runners,
    committed,
    crash_batch,
    crash_events,
    crash_keys,
    crash_kills,
    crash_loop,
    create_topic,
    expected_rows,
    produce_events,
    pythonpath,
    record_result,
    reference,
    view_group,
)
from views.services import InfluxDB, Prometheus

prometheus = services.prometheus  # fixtures
influxdb = services.influxdb

TP = TopicPartition("t", 0)


def get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=30) as r:
        body: dict[str, object] = json.loads(r.read())
        return body


def prom_query(prom: Prometheus, q: str) -> list[dict[str, object]]:
    body = get_json(f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": q}))
    return body["data"]["result"]  # type: ignore[index,no-any-return]


def scrape_values(port: int, view: str) -> tuple[dict[str, float], dict[tuple[str, int], int]]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values: dict[str, float] = {}
    positions: dict[tuple[str, int], int] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "loosely_view_value" and s.labels["view"] == view:
                values[s.labels["key"]] = s.value
            if s.name == "loosely_view_position" and s.labels["view"] == view:
                positions[(s.labels["topic"], int(s.labels["partition"]))] = int(s.value)
    return values, positions


def test_prometheus_sink_applies_whole_batches_and_exports_the_serving_version(prometheus: Prometheus) -> None:
    sink = PrometheusSink("127.0.0.1", prometheus.target_port)
    sink.open(View("unit", 1, ("t",), lambda r: None))
    sink.apply(Batch.build([(TP, 0, 0, Add("a", 2)), (TP, 1, 0, Put("b", 1.5))]))
    assert scrape_values(sink.port, "unit") == ({}, {("t", 0): 2})  # building: progress only, no values yet
    sink.switch("unit", 1)
    with pytest.raises(ValueError, match="hold numbers"):
        sink.apply(Batch.build([(TP, 2, 0, Add("a", 1)), (TP, 3, 0, Put("c", "text"))], starts={TP: 2}))
    assert scrape_values(sink.port, "unit") == ({"a": 2.0, "b": 1.5}, {("t", 0): 2})  # nothing of the bad batch
    deadline = time.monotonic() + 30
    while not prom_query(prometheus, 'loosely_view_value{view="unit",key="a"}'):
        assert time.monotonic() < deadline, "Prometheus never scraped the view"
        time.sleep(0.5)
    assert prom_query(prometheus, 'loosely_view_value{view="unit",key="a"}')[0]["value"][1] == "2"  # type: ignore[index]
    small = PrometheusSink("127.0.0.1", prometheus.target_port, series_max=3)  # the same endpoint, another view
    small.open(View("small", 1, ("t",), lambda r: None))
    with pytest.raises(SinkError, match="series_max=3"):
        small.apply(Batch.build([(TP, o, 0, Add(f"k{o}", 1)) for o in range(4)]))
    assert small.versions("small")[0].positions == {}  # refused whole
    with pytest.raises(ValueError, match="is not on this endpoint"):
        small.switch("small", 2)
    with pytest.raises(ValueError, match="is serving"):
        small.drop("unit", 1)
    small.close()
    assert scrape_values(sink.port, "unit")[0] == {"a": 2.0, "b": 1.5}  # the endpoint outlives one of its sinks
    sink.close()


def test_scrapes_run_one_at_a_time() -> None:
    """A scrape that outlasts Prometheus' timeout must delay the next one, not render beside it (they piled up)."""
    sink = PrometheusSink("127.0.0.1", 0)
    sink.open(View("one", 1, ("t",), lambda r: None))
    sink.apply(Batch.build([(TP, 0, 0, Add("a", 1))]))
    sink.switch("one", 1)
    bodies: list[bytes] = []
    with sink._exporter.scrape_lock:  # a scrape in progress
        t = threading.Thread(target=lambda: bodies.append(
            urllib.request.urlopen(f"http://127.0.0.1:{sink.port}/metrics", timeout=30).read()))
        t.start()
        t.join(1.0)
        assert t.is_alive() and not bodies  # waiting for the first to finish
    t.join(30)
    assert b'loosely_view_value{key="a",version="1",view="one"} 1.0' in bodies[0]
    sink.close()


@pytest.mark.slow
@pytest.mark.timeout(CRASH_TIMEOUT_S)
@pytest.mark.parametrize("runners", [1, 3])
def test_prometheus_kill9_loop(loosely: BrokerThread, prometheus: Prometheus, tmp_path: Path, topic: str,
                               runners: int) -> None:
    """Each runner exports the whole view on its own endpoint, all scraped by one Prometheus; whichever runner is
    killed rebuilds from the beginning, and exports its values again only once complete."""
    events = crash_events(20_000)
    create_topic(loosely.bootstrap_servers, topic, 4)
    produce_events(loosely.bootstrap_servers, topic, events, keys=crash_keys(events))
    ref = reference(loosely.bootstrap_servers, topic)
    want = {k: float(v) for k, v in expected_rows(ref).items()}  # type: ignore[arg-type]
    ports = prometheus.target_ports[:runners]
    procs = Runners(["views.crash_views:combined", "-b", loosely.bootstrap_servers,
                     "--batch-records", crash_batch(5000)],
                    runners, {"LOOSELY_CRASH_TOPIC": topic, "LOOSELY_CRASH_VIEW": "promcrash"}, tmp_path,
                    own=[["--sink", f"prometheus://127.0.0.1:{p}"] for p in ports])
    complete_at: list[float] = []
    seen: dict[str, dict[str, float]] = {}

    def complete(port: int) -> bool:
        try:
            values, positions = scrape_values(port, "promcrash")
        except OSError:
            return False
        return bool(values) and all(positions.get(tp, -1) >= end for tp, end in ref.ends.items() if end > 0)

    def done() -> bool:
        """Every endpoint caught up and serving, then three scrapes later read what Prometheus holds (before the
        runners stop: a stopped target's series go stale)."""
        if not complete_at:
            if all(complete(p) for p in ports):
                complete_at.append(time.monotonic())
            return False
        if time.monotonic() - complete_at[0] < 3.5:
            return False
        for r in prom_query(prometheus, 'loosely_view_value{view="promcrash"}'):
            seen.setdefault(r["metric"]["instance"], {})[r["metric"]["key"]] = float(r["value"][1])  # type: ignore[index]
        return True

    report = crash_loop(procs, kills=crash_kills(8), done=done, pause_s=(1.0, 4.0))
    record_result("prometheus", events, runners, report)
    assert sorted(seen) == sorted(f"127.0.0.1:{p}" for p in ports)
    for instance, values in seen.items():
        wrong = {k: (values.get(k), v) for k, v in want.items() if values.get(k) != v}
        assert values.keys() == want.keys() and not wrong, (instance, len(values), len(want), list(wrong.items())[:5])


def test_prometheus_blue_green_in_one_process(loosely: BrokerThread, prometheus: Prometheus, topic: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Version 2 is built beside version 1 on the same endpoint; every scrape shows one complete version."""
    monkeypatch.setenv("LOOSELY_BG_TOPIC", topic)
    create_topic(loosely.bootstrap_servers, topic, 3)
    produce_events(loosely.bootstrap_servers, topic, 20_000, keys=500)
    ref = reference(loosely.bootstrap_servers, topic)
    v1 = {k: float(n) for k, n in ref.counts.items()}
    v2 = {k: 10.0 * n for k, n in ref.counts.items()}
    port = prometheus.target_port
    serving_sink = PrometheusSink("127.0.0.1", port)
    first = Runner(counts(), serving_sink, loosely.bootstrap_servers)
    first.run(until_caught_up=True, timeout_s=120)
    assert serving_sink.serving_version("bg") == 1 and scrape_values(port, "bg")[0] == v1

    seen: Counter[str] = Counter()
    bad: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            values, versions = scrape_with_versions(port, "bg")
            if versions == {"1"} and values == v1:
                seen["v1"] += 1
            elif versions == {"2"} and values == v2:
                seen["v2"] += 1
            else:
                bad.append(f"versions {versions}, {len(values)} keys summing to {sum(values.values())}")

    t = threading.Thread(target=reader)
    t.start()
    try:
        rebuild(tens(), PrometheusSink("127.0.0.1", port), loosely.bootstrap_servers, drop_delay_ms=500,
                config=RunnerConfig(batch_records_max=1_000), timeout_s=120)
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(30)
    assert not bad, bad[:5]
    assert seen["v1"] and seen["v2"], seen
    assert [v.version for v in serving_sink.versions("bg")] == [2]  # version 1 dropped, its memory freed
    with pytest.raises(SinkError, match="was dropped"):
        serving_sink.apply(Batch())  # the old version's runner stops at its next batch
    first.close()
    deadline = time.monotonic() + 30
    while {r["metric"]["version"] for r in prom_query(prometheus, 'loosely_view_value{view="bg"}')} != {"2"}:  # type: ignore[index]
        assert time.monotonic() < deadline, "Prometheus never saw version 2 alone"
        time.sleep(0.5)
    serving_sink.close()


def scrape_with_versions(port: int, view: str) -> tuple[dict[str, float], set[str]]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values: dict[str, float] = {}
    versions: set[str] = set()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "loosely_view_value" and s.labels["view"] == view:
                values[s.labels["key"]] = s.value
                versions.add(s.labels["version"])
    return values, versions


def test_the_cli_will_not_rebuild_a_view_that_lives_in_another_process(loosely: BrokerThread, topic: str) -> None:
    out = subprocess.run([sys.executable, "-m", "loosely.cli.main", "views", "rebuild", "views.bg_views:tens",
                          "--sink", "prometheus://127.0.0.1:0", "-b", loosely.bootstrap_servers],
                         capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, "PYTHONPATH": pythonpath(), "LOOSELY_BG_TOPIC": topic})
    assert out.returncode == 1 and "deploy the new version as a new `loosely views run`" in out.stderr, out.stderr


@pytest.mark.slow
@pytest.mark.timeout(CRASH_TIMEOUT_S)
@pytest.mark.parametrize("runners", [1, 3])
def test_influxdb_kill9_loop(loosely: BrokerThread, influxdb: InfluxDB, tmp_path: Path, topic: str,
                             runners: int) -> None:
    events = crash_events(20_000)
    create_topic(loosely.bootstrap_servers, topic, 4)
    produce_events(loosely.bootstrap_servers, topic, events, keys=crash_keys(events))
    ref = reference(loosely.bootstrap_servers, topic)
    db = f"views_{topic[2:]}"
    url = f"influxdb://{influxdb.url.split('//')[1]}/{db}"
    procs = Runners(["views.crash_views:points", "--sink", url, "-b", loosely.bootstrap_servers,
                     "--batch-records", crash_batch(5000), "--session-timeout-ms", "6000"],
                    runners, {"LOOSELY_CRASH_TOPIC": topic, "LOOSELY_CRASH_VIEW": "points"}, tmp_path)

    group = view_group("points", url)

    def done() -> bool:
        got = committed(loosely.bootstrap_servers, group, topic)
        return all(got.get(tp, -1) >= end for tp, end in ref.ends.items() if end > 0)

    report = crash_loop(procs, kills=crash_kills(8), done=done, pause_s=(0.5, 2.5))
    record_result("influxdb", events, runners, report)
    q = 'SELECT count("seq"), last("seq") FROM "points" GROUP BY "key"'
    body = get_json(f"{influxdb.url}/query?" + urllib.parse.urlencode({"db": db, "q": q, "epoch": "ns"}))
    got = {}
    for series in body["results"][0].get("series", []):  # type: ignore[index]
        (_, count, last), = series["values"]
        got[series["tags"]["key"]] = (count, last)
    want = {k: (n, ref.last[k]["seq"]) for k, n in ref.counts.items()}
    wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    assert got.keys() == want.keys() and not wrong, (len(got), len(want), list(wrong.items())[:5])


def test_influx_sink_rejects_values_without_fields(influxdb: InfluxDB) -> None:
    sink = InfluxSink(influxdb.url, "unit")
    sink.open(View("unit", 1, ("t",), lambda r: None))
    with pytest.raises(ValueError, match="no number, boolean or string"):
        sink.apply(Batch.build([(TP, 0, 0, Put("a", {"nested": {"x": 1}}))]))
    sink.apply(Batch.build([(TP, 0, 0, Put("a", {"n": 1, "s": "x y"})), (TP, 1, 0, Add("a", 2))]))
    body = get_json(f"{influxdb.url}/query?" + urllib.parse.urlencode({"db": "unit", "q": 'SELECT * FROM "unit"'}))
    assert len(body["results"][0]["series"][0]["values"]) == 2  # type: ignore[index]


def influx_query(influxdb: InfluxDB, db: str, q: str) -> list[dict[str, object]]:
    body = get_json(f"{influxdb.url}/query?" + urllib.parse.urlencode({"db": db, "q": q}))
    return body["results"]  # type: ignore[return-value]


def test_influx_reads_fold_points_and_the_catalog_switches(influxdb: InfluxDB) -> None:
    """Reads fold a key's points (Put sets, Add adds, Delete removes), tricky keys included; the catalog is in the
    database, so a second client sees it; drop removes the version's series and stops a forgotten runner."""
    db = "catalog_unit"
    sink, other, zombie = InfluxSink(influxdb.url, db), InfluxSink(influxdb.url, db, create_database=False), \
        InfluxSink(influxdb.url, db, create_database=False)
    view = View("cat", 1, ("t",), lambda r: None)
    sink.open(view)
    sink.open(view)  # idempotent
    assert [(i.version, i.state, i.topics) for i in other.versions("cat")] == [(1, VersionState.BUILDING, ("t",))]
    tricky = "a b,c=d'e\\f"
    obj = {"amount": 5, "deleted": True, "s": 'x "y" \\'}  # looks like an Add and a Delete, but is a Put
    sink.apply(Batch.build([(TP, 0, 0, Put("n", 1)), (TP, 1, 1, Add("n", 2)), (TP, 2, 2, Put("obj", obj)),
                            (TP, 3, 3, Put(tricky, {"value": 1})), (TP, 4, 4, Add("gone", 1)),
                            (TP, 5, 5, Delete("gone")), (TP, 6, 6, Delete("again")), (TP, 7, 7, Add("again", 3))]))
    assert other.get("cat", "n") is None and other.scan("cat") == []  # nothing serves yet
    sink.switch("cat", 1)
    assert other.serving_version("cat") == 1
    assert (other.get("cat", "n"), other.get("cat", "obj"), other.get("cat", tricky)) == (3, obj, {"value": 1})
    assert other.get("cat", "gone") is None and other.get("cat", "again") == 3
    assert other.scan("cat") == [(tricky, {"value": 1}), ("again", 3), ("n", 3), ("obj", obj)]
    assert other.scan("cat", after="again", limit=1) == [("n", 3)]
    # points written before points carried their change are read by their fields
    req = urllib.request.Request(f"{influxdb.url}/write?db={db}&precision=ns", method="POST",
                                 data=b"cat,key=old,partition=0,version=1 amount=4i 10\n"
                                      b"cat,key=old,partition=0,version=1 amount=1i 20")
    urllib.request.urlopen(req, timeout=30).read()
    assert other.get("cat", "old") == 5
    with pytest.raises(ValueError, match="loosely_change"):
        sink.apply(Batch.build([(TP, 8, 8, Put("x", {"loosely_change": "add"}))]))

    def version_1_series() -> bool:
        q = "SHOW SERIES FROM \"cat\" WHERE \"version\" = '1'"
        return any("series" in r for r in influx_query(influxdb, db, q))

    zombie.open(view)  # a runner of version 1 that nobody stops
    sink.open(view.with_version(2))
    sink.apply(Batch.build([(TP, 0, 0, Put("n", 10))]))
    with pytest.raises(ValueError, match="does not exist"):
        sink.switch("cat", 3)
    sink.switch("cat", 2)
    assert [(i.version, i.state) for i in other.versions("cat")] == [(1, VersionState.RETIRED),
                                                                      (2, VersionState.SERVING)]
    assert other.scan("cat") == [("n", 10)]
    with pytest.raises(ValueError, match="is serving"):
        other.drop("cat", 2)
    other.drop("cat", 1)
    assert [i.version for i in sink.versions("cat")] == [2] and sink.names() == ["cat"]
    assert sink.get("cat", "n", version=1) is None and sink.scan("cat", version=1) == []
    assert not version_1_series()
    with pytest.raises(SinkError, match="not in the catalog"):
        zombie.apply(Batch.build([(TP, 99, 0, Put("n", 7))]))
    assert not version_1_series()
