"""Blue/green on sinks whose catalog lives in the server: a real Sphinx searchd and a real InfluxDB 1.x (started by
tests/views/services.py), fed by loosely's embedded broker.

While version 2 is rebuilt with :func:`rebuild` and version 3 with ``loosely views rebuild``, reader threads (each
with its own connection, like another process, and one through :class:`ViewServer`) read through the catalog
without naming a version; every read must equal exactly what one complete version holds, and each version must be
seen. The first version must serve only once it has caught up. ``loosely views status``, ``switch``, ``drop`` and
``get`` work on the same URLs, with clear errors for a missing version, a serving version and a server that is down.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from loosely.broker.server import BrokerThread
from loosely.testing import free_port
from loosely.views import Catalog, Json, Runner, RunnerConfig, SinkError, VersionState, View, ViewError, open_sink
from loosely.views._influx import InfluxSink
from loosely.views._serve import ViewServer
from loosely.views._sphinx import SphinxSink
from views import bg_views, services
from views.crashkit import WORDS, Reference, create_topic, loosely_cli, produce_events, pythonpath, reference
from views.services import InfluxDB, Sphinx

sphinx = services.sphinx  # fixtures
influxdb = services.influxdb

SERVING = VersionState.SERVING


def sphinx_url(s: Sphinx, index: str) -> str:
    return f"sphinx://{s.host}:{s.port}/{index}?fields={','.join(s.fields)}"


def influx_url(i: InfluxDB, database: str) -> str:
    return f"influxdb://{i.url.split('//')[1]}/{database}"


def documents_by_version(ref: Reference) -> dict[int, dict[str, Json]]:
    """What ``bg_views.documents*`` hold, per version."""
    return {v: {k: {"title": d["title"], "body": d["body"], "seq": d["seq"], "v": v}  # type: ignore[misc]
                for k, d in ref.last.items()} for v in (1, 2, 3)}


def counts_by_version(ref: Reference) -> dict[int, dict[str, Json]]:
    """What ``bg_views.counts``, ``tens`` and ``hundreds`` hold, per version."""
    return {v: {k: n * m for k, n in ref.counts.items()} for v, m in ((1, 1), (2, 10), (3, 100))}


def matching(value: object, candidates: dict[int, Json]) -> int | str:
    """The version whose expected value ``value`` equals, or why none does."""
    for version, want in candidates.items():
        if value == want:
            return version
    return f"{value!r} is no version's value"


class Readers:
    """Threads that read until stopped; each read returns the version it matched exactly, or what was wrong."""

    def __init__(self) -> None:
        self.seen: Counter[tuple[str, int]] = Counter()
        self.bad: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def add(self, name: str, read: Callable[[], int | str]) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    got = read()
                except Exception as e:
                    got = f"raised {e!r}"
                if isinstance(got, int):
                    self.seen[(name, got)] += 1
                elif len(self.bad) < 100:
                    self.bad.append(f"{name}: {got}")

        self._threads.append(threading.Thread(target=loop, name=f"reader-{name}", daemon=True))

    def start(self) -> Readers:
        for t in self._threads:
            t.start()
        return self

    def names(self) -> set[str]:
        return {t.name.removeprefix("reader-") for t in self._threads}

    def wait_seen(self, version: int, reads: int = 20, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while any(self.seen[(n, version)] < reads for n in self.names()):
            assert not self.bad, self.bad[:10]
            assert time.monotonic() < deadline, f"version {version} not seen by every reader: {self.seen}"
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def cycle(items: list[str]) -> Iterator[str]:
    while True:
        yield from items


def key_reader(cat: Catalog, expected: dict[int, dict[str, Json]], keys: list[str]) -> Callable[[], int | str]:
    """``get`` through the catalog (the serving version)."""
    it = cycle(keys)

    def read() -> int | str:
        k = next(it)
        return matching(cat.get("bg", k), {v: e[k] for v, e in expected.items()})

    return read


def http_reader(port: int, expected: dict[int, dict[str, Json]], keys: list[str]) -> Callable[[], int | str]:
    """``GET /views/bg/keys/<key>`` of a ViewServer: the value must be what the version it names holds."""
    it = cycle(keys)

    def read() -> int | str:
        k = next(it)
        url = f"http://127.0.0.1:{port}/views/bg/keys/{urllib.parse.quote(k, safe='')}"
        body = json.loads(urllib.request.urlopen(url, timeout=30).read())
        got = matching(body["value"], {v: e[k] for v, e in expected.items()})
        return got if got == body["version"] else f"{k}: version {body['version']} answered {body['value']!r}"

    return read


def serves_once_caught_up(sink: Catalog, view: View[Any, Any], bootstrap: str, complete: Callable[[], bool]) -> None:
    """Run the first version until caught up; the moment it is seen serving, it must be complete."""
    runner = Runner(view, sink, bootstrap, RunnerConfig(batch_records_max=500))  # type: ignore[arg-type]
    t = threading.Thread(target=runner.run, kwargs={"until_caught_up": True, "timeout_s": 120})
    t.start()
    building_seen = 0
    try:
        while sink.serving_version(view.name) is None:
            assert t.is_alive() or sink.serving_version(view.name) is not None, "the runner stopped, never serving"
            building_seen += 1
            time.sleep(0.02)
        assert complete(), "the first version served before it had caught up"
    finally:
        t.join(120)
        runner.close()
    assert building_seen > 0, "serving before the runner even started"
    assert [(i.version, i.state) for i in sink.versions(view.name)] == [(view.version, SERVING)]


def source(loosely: BrokerThread, topic: str, events: int, keys: int, monkeypatch: pytest.MonkeyPatch) -> Reference:
    """The topic the bg views read (3 partitions), filled; what it holds."""
    create_topic(loosely.bootstrap_servers, topic, 3)
    produce_events(loosely.bootstrap_servers, topic, events, keys=keys)
    monkeypatch.setenv("LOOSELY_BG_TOPIC", topic)
    return reference(loosely.bootstrap_servers, topic)


@dataclass(frozen=True)
class Case:
    """One sink's side of the rebuild test."""

    url: str
    second: str  # the bg_views factories of versions 2 and 3
    third: str
    expected: dict[int, dict[str, Json]]
    keys: list[str]  # what the key readers read
    gone: Callable[[int], bool]  # whether nothing is left of a version


def rebuild_under_readers(loosely: BrokerThread, case: Case, sink: Catalog, events: int,
                          more: dict[str, Callable[[], int | str]]) -> None:
    """Version 2 by :func:`rebuild`, version 3 by ``loosely views rebuild``, while readers read (``get`` on a
    connection of its own, ``http`` through a ViewServer, and ``more``); after each, the previous version is gone
    and only the new one is listed."""
    from loosely.views import rebuild

    bootstrap = loosely.bootstrap_servers
    server = ViewServer(open_sink(case.url)).start()  # type: ignore[arg-type]
    readers = Readers()
    readers.add("get", key_reader(open_sink(case.url), case.expected, case.keys))  # type: ignore[arg-type]
    readers.add("http", http_reader(server.port, case.expected, case.keys))
    for name, read in more.items():
        readers.add(name, read)
    readers.start()
    try:
        readers.wait_seen(1)
        view2 = getattr(bg_views, case.second)()
        stats = rebuild(view2, sink, bootstrap, config=RunnerConfig(batch_records_max=300),  # type: ignore[arg-type]
                        drop_delay_ms=1_000, report_interval_ms=100, timeout_s=120)
        assert stats.records == events
        readers.wait_seen(2)
        assert [(i.version, i.state) for i in sink.versions("bg")] == [(2, SERVING)]
        assert case.gone(1)
        r = loosely_cli("views", "rebuild", f"views.bg_views:{case.third}", "--sink", case.url, "-b", bootstrap,
                        "--batch-records", "300", "--drop-delay-ms", "1000", env={})
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout.splitlines()[-1]) == {"view": "bg@3", "records": events, "previous_version": 2,
                                                         "dropped": True}
        readers.wait_seen(3)
    finally:
        readers.stop()
        server.stop()
    assert not readers.bad, readers.bad[:10]
    assert all(readers.seen[(n, v)] for n in readers.names() for v in (1, 2, 3)), readers.seen
    assert [(i.version, i.state) for i in sink.versions("bg")] == [(3, SERVING)]
    assert case.gone(2)
    assert sink.names() == ["bg"]


@pytest.mark.timeout(300)
def test_sphinx_blue_green_under_readers(loosely: BrokerThread, sphinx: Sphinx, topic: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    events = 6_000
    ref = source(loosely, topic, events, 400, monkeypatch)
    expected = documents_by_version(ref)
    url = sphinx_url(sphinx, "views_bluegreen")
    sink = open_sink(url)
    assert isinstance(sink, SphinxSink)
    serves_once_caught_up(sink, bg_views.documents(), loosely.bootstrap_servers,
                          lambda: sink.all_docs("bg") == expected[1])

    words = {w: sorted(k for k, d in ref.last.items() if w in str(d["title"]).split()) for w in WORDS[:4]}
    assert all(words.values())
    search_sink = open_sink(url)
    assert isinstance(search_sink, SphinxSink)
    found = cycle(list(words))

    def search() -> int | str:
        w = next(found)
        hits = dict(search_sink.search_docs("bg", w, limit=10_000))
        return matching(hits, {v: {k: e[k] for k in words[w]} for v, e in expected.items()})

    keys = sorted(ref.last)[:60]

    def gone(version: int) -> bool:
        # count() asks searchd for every document of the version, whichever view: none may be left
        return sink.count("bg", version=version) == 0 and sink.get("bg", keys[0], version=version) is None

    rebuild_under_readers(loosely, Case(url, "documents_v2", "documents_v3", expected, keys, gone), sink, events,
                          {"search": search})
    assert sink.all_docs("bg") == expected[3]


@pytest.mark.timeout(300)
def test_influx_blue_green_under_readers(loosely: BrokerThread, influxdb: InfluxDB, topic: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    events = 3_000
    ref = source(loosely, topic, events, 100, monkeypatch)
    expected = counts_by_version(ref)
    database = f"bg_{topic[2:]}"
    url = influx_url(influxdb, database)
    sink = open_sink(url)
    assert isinstance(sink, InfluxSink)
    serves_once_caught_up(sink, bg_views.counts(), loosely.bootstrap_servers,
                          lambda: dict(sink.scan("bg", limit=10_000)) == expected[1])
    keys = sorted(ref.counts)[:30]

    def gone(version: int) -> bool:
        where = f"FROM \"bg\" WHERE \"version\" = '{version}'"
        q = f"SELECT count(*) {where}; SHOW SERIES {where}"
        body = get_json(f"{influxdb.url}/query?" + urllib.parse.urlencode({"db": database, "q": q}))
        return all("series" not in r for r in body["results"]) and sink.get("bg", keys[0], version=version) is None

    rebuild_under_readers(loosely, Case(url, "tens", "hundreds", expected, keys, gone), sink, events, {})
    assert dict(sink.scan("bg", limit=10_000)) == expected[3]


def get_json(url: str) -> Any:
    return json.loads(urllib.request.urlopen(url, timeout=30).read())


@contextlib.contextmanager
def served(url: str, bootstrap: str) -> Iterator[str]:
    """``loosely views serve`` on the sink; yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "loosely.cli.main", "views", "serve", "--sink", url, "--listen",
                             "127.0.0.1:0", "-b", bootstrap], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": pythonpath()})
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().split()[-1].rsplit("/views", 1)[0]
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.parametrize("kind", ["sphinx", "influxdb"])
def test_status_switch_drop_and_errors(loosely: BrokerThread, topic: str, kind: str,
                                       request: pytest.FixtureRequest) -> None:
    bootstrap = loosely.bootstrap_servers
    create_topic(bootstrap, topic, 2)
    produce_events(bootstrap, topic, 1_000, keys=10)
    ref = reference(bootstrap, topic)
    env = {"LOOSELY_BG_TOPIC": topic}
    if kind == "sphinx":
        server: Sphinx = request.getfixturevalue("sphinx")
        url = sphinx_url(server, "views_bgstatus")
        down = f"sphinx://127.0.0.1:{free_port()}/views_bgstatus?fields=title,body"
        specs = ("documents", "documents_v2")
        expected = documents_by_version(ref)
    else:
        influx: InfluxDB = request.getfixturevalue("influxdb")
        url = influx_url(influx, f"st_{topic[2:]}")
        down = f"influxdb://127.0.0.1:{free_port()}/nowhere"
        specs = ("counts", "tens")
        expected = counts_by_version(ref)
    for spec in specs:  # version 1 catches up and serves; version 2 is built beside it
        r = loosely_cli("views", "run", f"views.bg_views:{spec}", "--sink", url, "-b", bootstrap, "--until-caught-up",
                        env=env)
        assert r.returncode == 0, r.stderr
    produce_events(bootstrap, topic, 250, keys=10, seed=9)

    def status() -> list[list[str]]:
        st = loosely_cli("views", "status", "--sink", url, "-b", bootstrap, env=env)
        assert st.returncode == 0, st.stderr
        lines = st.stdout.splitlines()
        assert lines[0].split() == ["VIEW", "VERSION", "STATE", "LAG", "FRESHNESS", "CAUGHT-UP"]
        return [line.split()[:4] + line.split()[-1:] for line in lines[1:]]

    def cli_get(key: str) -> Json:
        g = loosely_cli("views", "get", "--sink", url, "bg", key, env=env)
        assert g.returncode == 0, g.stderr
        return json.loads(g.stdout)  # type: ignore[no-any-return]

    # the lag of each version is its consumer group's: 250 records behind
    assert status() == [["bg", "1", "serving", "250", "no"], ["bg", "2", "building", "250", "no"]]
    assert cli_get("k3") == expected[1]["k3"]
    with served(url, bootstrap) as base:
        assert get_json(f"{base}/views")["views"] == [{"name": "bg", "serving_version": 1, "versions": [
            {"version": 1, "state": "serving"}, {"version": 2, "state": "building"}]}]
        assert get_json(f"{base}/views/bg/keys/k3") == {"key": "k3", "value": expected[1]["k3"], "version": 1}
        page = get_json(f"{base}/views/bg/keys?after=k3&limit=2")
        assert page == {"items": [{"key": k, "value": expected[1][k]} for k in ("k4", "k5")], "next": "k5"}
        assert [(r["version"], r["lag"]) for r in get_json(f"{base}/status")["views"]] == [(1, 250), (2, 250)]

    bad = loosely_cli("views", "switch", "--sink", url, "bg", "7", env=env)
    assert bad.returncode == 1 and "bg@7 does not exist" in bad.stderr and "versions: 1, 2" in bad.stderr, bad.stderr
    serving = loosely_cli("views", "drop", "--sink", url, "bg", "1", env=env)
    assert serving.returncode == 1 and "bg@1 is serving" in serving.stderr, serving.stderr
    sink = open_sink(url)
    assert isinstance(sink, Catalog)
    with pytest.raises(ViewError, match="does not exist"):
        sink.switch("bg", 3)
    with pytest.raises(ViewError, match="is serving"):
        sink.drop("bg", 1)
    sink.close()
    # nothing written was lost, and the errors changed nothing
    assert cli_get("k3") == expected[1]["k3"]
    assert status()[0][:3] == ["bg", "1", "serving"]

    assert loosely_cli("views", "switch", "--sink", url, "bg", "2", env=env).returncode == 0
    assert cli_get("k3") == expected[2]["k3"]
    assert status() == [["bg", "1", "retired", "250", "no"], ["bg", "2", "serving", "250", "no"]]
    assert loosely_cli("views", "drop", "--sink", url, "bg", "1", env=env).returncode == 0
    assert status() == [["bg", "2", "serving", "250", "no"]]

    # a server that is down: a SinkError, which the command line reports in one line
    with pytest.raises(SinkError):
        open_sink(down)
    g = loosely_cli("views", "get", "--sink", down, "bg", "k3", env=env)
    assert g.returncode == 1 and g.stderr.startswith("loosely views: ") and "Traceback" not in g.stderr, g.stderr
