"""Blue/green rebuilds: while version 2 is built beside version 1, readers see version 1 complete, then version 2
complete, never a mix or a half-built table; the CLI's rebuild prints progress with an ETA; status reports lag."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from loosely.broker.server import BrokerThread
from loosely.views import Runner, SqliteSink
from loosely.views._serve import ViewServer
from views.bg_views import counts
from views.crashkit import create_topic, loosely_cli, produce_events, pythonpath, reference


def test_readers_only_ever_see_a_complete_version(loosely: BrokerThread, tmp_path: Path, topic: str) -> None:
    events = 30_000
    create_topic(loosely.bootstrap_servers, topic, 3)
    produce_events(loosely.bootstrap_servers, topic, events, keys=2_000)
    ref = reference(loosely.bootstrap_servers, topic)
    keys = len(ref.counts)
    db = tmp_path / "views.db"
    env = {"LOOSELY_BG_TOPIC": topic}
    os.environ["LOOSELY_BG_TOPIC"] = topic
    sink = SqliteSink(str(db))
    first = Runner(counts(), sink, loosely.bootstrap_servers)
    first.run(until_caught_up=True, timeout_s=300)
    first.close()
    assert sink.serving_version("bg") == 1

    seen: Counter[str] = Counter()
    bad: list[str] = []
    stop = threading.Event()

    def sql_reader() -> None:
        # another service reading the SQL view "bg" with its own connection
        c = sqlite3.connect(str(db), timeout=60)
        while not stop.is_set():
            n, total = c.execute('SELECT count(*), sum(value) FROM "bg"').fetchone()
            if (n, total) == (keys, events):
                seen["sql v1"] += 1
            elif (n, total) == (keys, 10 * events):
                seen["sql v2"] += 1
            else:
                bad.append(f"sql saw {n} keys summing to {total}")
        c.close()

    with ViewServer(sink) as server:
        def http_reader() -> None:
            sample = sorted(ref.counts)[:50]
            while not stop.is_set():
                for k in sample:
                    try:
                        body = json.loads(urllib.request.urlopen(
                            f"http://127.0.0.1:{server.port}/views/bg/keys/{k}", timeout=10).read())
                    except urllib.error.HTTPError as e:
                        bad.append(f"http {k}: {e.code}")
                        continue
                    want = {1: ref.counts[k], 2: 10 * ref.counts[k]}[body["version"]]
                    if body["value"] != want:
                        bad.append(f"http {k}: {body}")
                    seen[f"http v{body['version']}"] += 1

        readers = [threading.Thread(target=sql_reader), threading.Thread(target=http_reader)]
        for t in readers:
            t.start()
        try:
            r = loosely_cli("views", "rebuild", "views.bg_views:tens", "--sink", f"sqlite://{db}",
                            "-b", loosely.bootstrap_servers, "--batch-records", "1000", "--drop-delay-ms", "500",
                            env=env)
        finally:
            stop.set()
            for t in readers:
                t.join()
    assert r.returncode == 0, r.stderr
    assert not bad, bad[:10]
    assert seen["sql v1"] and seen["sql v2"] and seen["http v1"] and seen["http v2"], seen
    # progress lines with an ETA were printed (stderr is not a terminal here: one line per report)
    assert "ETA" in r.stderr and "100.0%" in r.stderr, r.stderr[-2000:]
    assert json.loads(r.stdout.splitlines()[-1]) == {"view": "bg@2", "records": events, "previous_version": 1,
                                                     "dropped": True}
    assert [v.version for v in sink.versions("bg")] == [2]
    assert sink.serving_version("bg") == 2
    assert sqlite3.connect(str(db)).execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'bg__v1'").fetchone() == (0,)

    st = loosely_cli("views", "status", "--sink", f"sqlite://{db}", "-b", loosely.bootstrap_servers, "--json",
                     env=env)
    assert st.returncode == 0, st.stderr
    (row,) = json.loads(st.stdout)["views"]
    assert (row["view"], row["version"], row["state"], row["lag"], row["caught_up"]) == ("bg", 2, "serving", 0, True)
    assert row["freshness_ms"] is not None and row["freshness_ms"] >= 0
    sink.close()


def test_status_reports_lag_of_a_view_behind_its_topic(loosely: BrokerThread, tmp_path: Path, topic: str) -> None:
    create_topic(loosely.bootstrap_servers, topic, 2)
    produce_events(loosely.bootstrap_servers, topic, 1_000, keys=10)
    db = tmp_path / "v.db"
    env = {"LOOSELY_BG_TOPIC": topic}
    r = loosely_cli("views", "run", "views.bg_views:counts", "--sink", f"sqlite://{db}", "-b",
                    loosely.bootstrap_servers, "--until-caught-up", env=env)
    assert r.returncode == 0, r.stderr
    produce_events(loosely.bootstrap_servers, topic, 250, keys=10, seed=9)
    st = loosely_cli("views", "status", "--sink", f"sqlite://{db}", "-b", loosely.bootstrap_servers, env=env)
    assert st.returncode == 0, st.stderr
    lines = st.stdout.splitlines()
    assert lines[0].split() == ["VIEW", "VERSION", "STATE", "LAG", "FRESHNESS", "CAUGHT-UP"]
    assert lines[1].split()[:4] == ["bg", "1", "serving", "250"] and lines[1].split()[-1] == "no"
    g = loosely_cli("views", "get", "--sink", f"sqlite://{db}", "bg", "k3", env=env)
    assert g.returncode == 0 and int(g.stdout) > 0
    missing = loosely_cli("views", "get", "--sink", f"sqlite://{db}", "bg", "nope", env=env)
    assert missing.returncode == 1 and "no key" in missing.stderr
    dropping = loosely_cli("views", "drop", "--sink", f"sqlite://{db}", "bg", "1", env=env)
    assert dropping.returncode == 1 and "is serving" in dropping.stderr


def test_serve_and_switch_from_the_command_line(loosely: BrokerThread, tmp_path: Path, topic: str) -> None:
    create_topic(loosely.bootstrap_servers, topic, 1)
    produce_events(loosely.bootstrap_servers, topic, 100, keys=5)
    db = tmp_path / "v.db"
    env = {"LOOSELY_BG_TOPIC": topic}
    for spec in ("views.bg_views:counts", "views.bg_views:tens"):
        r = loosely_cli("views", "run", spec, "--sink", f"sqlite://{db}", "-b", loosely.bootstrap_servers,
                        "--until-caught-up", env=env)
        assert r.returncode == 0, r.stderr
    # v1 caught up first and serves; v2 was built beside it and waits for a switch
    bad = loosely_cli("views", "switch", "--sink", f"sqlite://{db}", "bg", "7", env=env)
    assert bad.returncode == 1 and "does not exist" in bad.stderr
    proc = subprocess.Popen([sys.executable, "-m", "loosely.cli.main", "views", "serve", "--sink", f"sqlite://{db}",
                             "--listen", "127.0.0.1:0", "-b", loosely.bootstrap_servers],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": pythonpath()})
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1].rsplit("/views", 1)[0]

        def get(path: str) -> dict[str, object]:
            return json.loads(urllib.request.urlopen(url + path, timeout=30).read())  # type: ignore[no-any-return]

        assert get("/views")["views"] == [{"name": "bg", "serving_version": 1, "versions": [
            {"version": 1, "state": "serving"}, {"version": 2, "state": "building"}]}]
        v1 = get("/views/bg/keys/k1")
        assert loosely_cli("views", "switch", "--sink", f"sqlite://{db}", "bg", "2", env=env).returncode == 0
        v2 = get("/views/bg/keys/k1")
        assert (v1["version"], v2["version"], v2["value"]) == (1, 2, 10 * v1["value"])  # type: ignore[operator]
        page = get("/views/bg/keys?limit=2")
        assert [i["key"] for i in page["items"]] == ["k0", "k1"] and page["next"] == "k1"  # type: ignore[index]
        assert [r["version"] for r in get("/status")["views"]] == [1, 2]  # type: ignore[index]
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "/views/bg/keys/nope", timeout=30)
        assert e.value.code == 404
    finally:
        proc.terminate()
        proc.wait(30)


def test_rebuild_into_another_environment_from_the_same_topics(loosely: BrokerThread, tmp_path: Path,
                                                               topic: str) -> None:
    """A staging copy of a view: same definition, its own sink and consumer group, built while prod runs."""
    from loosely.views import RunnerConfig, group_id_for

    create_topic(loosely.bootstrap_servers, topic, 3)
    produce_events(loosely.bootstrap_servers, topic, 5_000, keys=300)
    os.environ["LOOSELY_BG_TOPIC"] = topic
    view = counts()
    sinks = {env: SqliteSink(str(tmp_path / f"{env}.db")) for env in ("prod", "staging")}
    runners = [Runner(view, sinks[env], loosely.bootstrap_servers, RunnerConfig(group_id=group_id_for(view, env)))
               for env in sinks]
    threads = [threading.Thread(target=r.run, kwargs={"until_caught_up": True, "timeout_s": 120}) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in runners:
        r.close()
    prod, staging = (dict(s.scan("bg", limit=10_000)) for s in sinks.values())
    assert prod == staging and sum(prod.values()) == 5_000  # type: ignore[arg-type]
    assert group_id_for(view, "staging") == "loosely.view.bg.v1.staging"
