"""The views lifecycle of docs/views.md, followed as written: deploy v1 with ``views run --serve``, rebuild v2 while
readers read, switch, drop; the running runner follows, its endpoint never fails, and v2 stays up to date. Also:
the same view into another sink reads the log from the beginning, and a deployment from before groups named the
sink keeps its group."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loosely.broker.server import BrokerThread
from loosely.testing import embedded_broker
from loosely.views import Runner, RunnerConfig, count_by_key, default_groups, open_sink
from views.crashkit import ROOT, create_topic, produce_events, reference

# v1 counts each record once, v2 ten times: a reader tells the versions apart, and whether one is complete.
VIEW_MODULE = """
from loosely.views import Add, View

STEP = {step}


def _count(r):
    return None if r.key is None else Add(r.key.decode(), STEP)


def view():
    return View("life", {version}, ({topic!r},), _count)
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    with embedded_broker(data_dir=str(tmp_path_factory.mktemp("data"))) as b:
        yield b


def _env() -> dict[str, str]:
    # the view module is found in the working directory, as a user's would be; no .pyc, so a rewrite is seen
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]),
            "PYTHONDONTWRITEBYTECODE": "1"}


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loosely.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, env=_env(), timeout=300, check=False)


def wait_for(what: str, cond: Callable[[], bool], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what}"
        time.sleep(0.1)


def status(cwd: Path, sink: str, bootstrap: str) -> list[dict[str, object]]:
    r = cli(cwd, "views", "status", "--sink", sink, "-b", bootstrap, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["views"]  # type: ignore[no-any-return]


def source(bootstrap: str, partitions: int, events: int, keys: int) -> tuple[str, Counter[str]]:
    """A new topic with ``events`` keyed records, and how many records each key has."""
    topic = f"life-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, partitions)
    produce_events(bootstrap, topic, events, keys=keys)
    return topic, reference(bootstrap, topic).counts


@pytest.mark.parametrize("kind", ["sqlite", "dir"])  # positions in the sink, or in the group
def test_rebuild_switch_drop_while_a_running_runner_serves(broker: BrokerThread, tmp_path: Path, kind: str) -> None:
    bootstrap = broker.bootstrap_servers
    topic, before = source(bootstrap, 3, 3_000, 100)
    module = tmp_path / "lifeviews.py"
    module.write_text(VIEW_MODULE.format(step=1, version=1, topic=topic))
    sink = f"sqlite://{tmp_path / 'views.db'}" if kind == "sqlite" else f"dir://{tmp_path / 'docs'}"

    def start(*extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "loosely.cli.main", "views", "run", "lifeviews:view",
                                 "--sink", sink, "-b", bootstrap, *extra], cwd=tmp_path, env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    follower = start("--serve", "127.0.0.1:0")
    pinned = start("--version", "1")  # a second runner of v1 that keeps v1 until it is dropped
    try:
        assert follower.stdout is not None
        first = follower.stdout.readline()  # "serving life on http://127.0.0.1:PORT/views"
        if not first:  # it exited before serving: say why (seen once in CI, not reproduced)
            follower.wait(30)
            assert follower.stderr is not None
            pytest.fail(f"the following runner exited ({follower.returncode}): {follower.stderr.read()[-2000:]}")
        url = first.split()[-1]
        sample = sorted(before)[:20]

        def get(key: str) -> dict[str, object]:
            return json.loads(urllib.request.urlopen(f"{url}/life/keys/{key}", timeout=10).read())  # type: ignore[no-any-return]

        def v1_complete() -> bool:
            try:
                return all(get(k) == {"key": k, "value": before[k], "version": 1} for k in sample)
            except urllib.error.HTTPError:
                return False  # 404 until v1 has caught up and serves

        wait_for("v1 serves, complete", v1_complete)
        more = threading.Event()  # set just before 1,000 more records are produced, after the switch
        seen: Counter[int] = Counter()
        bad: list[str] = []
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                for k in sample:
                    try:
                        body = get(k)
                    except (urllib.error.URLError, OSError) as e:
                        bad.append(f"{k}: {e}")
                        continue
                    version, value = body["version"], body["value"]
                    assert isinstance(version, int) and isinstance(value, int)
                    seen[version] += 1
                    # v1 never gets new records while it serves; v2 serves complete, then grows with the new ones
                    most = 10 * (before[k] + (1_000 if more.is_set() else 0))
                    ok = value == before[k] if version == 1 else \
                        version == 2 and value % 10 == 0 and 10 * before[k] <= value <= most
                    if not ok:
                        bad.append(f"{k}: {body}")

        t = threading.Thread(target=reader)
        t.start()
        try:
            module.write_text(VIEW_MODULE.format(step=10, version=2, topic=topic))  # the new code is deployed
            r = cli(tmp_path, "views", "rebuild", "lifeviews:view", "--sink", sink, "-b", bootstrap,
                    "--drop-delay-ms", "500")
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout.splitlines()[-1])["dropped"] is True
            # the pinned runner stopped with one line: its version is gone
            assert pinned.wait(30) == 0
            assert pinned.stderr is not None
            lines = pinned.stderr.read().strip().splitlines()
            assert lines == [lines[-1]] and "life@1 was dropped" in lines[-1], lines
            if follower.poll() is not None:
                assert follower.stderr is not None
                pytest.fail(f"the following runner exited ({follower.returncode}): {follower.stderr.read()[-2000:]}")
            more.set()
            produce_events(bootstrap, topic, 1_000, keys=100, seed=11)
            after = reference(bootstrap, topic).counts
            wait_for("v2 has the records produced after the switch",
                     lambda: all(get(k)["value"] == 10 * after[k] for k in sample))
        finally:
            stop.set()
            t.join()
        assert not bad, bad[:10]
        assert seen[1] and seen[2], seen
        (row,) = status(tmp_path, sink, bootstrap)
        assert (row["version"], row["state"], row["lag"], row["caught_up"]) == (2, "serving", 0, True), row
        s = open_sink(sink)
        try:
            assert [v.version for v in s.versions("life")] == [2]  # type: ignore[attr-defined]
            assert sum(v for _, v in s.scan("life", limit=1_000)) == 10 * 4_000  # type: ignore[attr-defined]
        finally:
            s.close()
    finally:
        for p in (follower, pinned):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
    assert follower.wait(30) == 0
    assert follower.stderr is not None
    err = follower.stderr.read()
    assert "Traceback" not in err and "no such table" not in err, err
    # with no runner, new records are lag, and status says so
    produce_events(bootstrap, topic, 50, keys=100, seed=12)
    (row,) = status(tmp_path, sink, bootstrap)
    assert (row["version"], row["lag"], row["caught_up"]) == (2, 50, False), row


def test_the_same_view_into_another_sink_starts_from_the_beginning(broker: BrokerThread, tmp_path: Path) -> None:
    bootstrap = broker.bootstrap_servers
    topic, ref = source(bootstrap, 2, 2_000, 50)
    (tmp_path / "otherviews.py").write_text(f"from loosely.views import count_by_key\n"
                                            f"view = count_by_key('other', [{topic!r}])\n")
    sinks = [f"sqlite://{tmp_path / 'a.db'}", f"dir://{tmp_path / 'docs'}", f"sqlite://{tmp_path / 'b.db'}"]
    for url in sinks:  # one after the other: each later sink finds the earlier ones' commits in the old group
        r = cli(tmp_path, "views", "run", "otherviews:view", "--sink", url, "-b", bootstrap, "--until-caught-up")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["records"] == 2_000, (url, r.stdout)
        s = open_sink(url)
        try:
            assert dict(s.scan("other", limit=1_000)) == dict(ref), url  # type: ignore[attr-defined]
        finally:
            s.close()
        (row,) = status(tmp_path, url, bootstrap)
        assert (row["state"], row["lag"], row["caught_up"]) == ("serving", 0, True), (url, row)
    groups = {default_groups("other", 1, open_sink(url))[0] for url in sinks}
    assert len(groups) == 3, groups


def test_a_deployment_from_before_sink_groups_keeps_its_group(broker: BrokerThread, tmp_path: Path) -> None:
    """Document sinks keep their positions in the group: the old group's runner built the view, so the new
    default keeps that group and goes on from its offsets instead of replaying the topic."""
    bootstrap = broker.bootstrap_servers
    topic, _ = source(bootstrap, 2, 1_000, 30)
    view = count_by_key("legacy", [topic])
    sink = open_sink(f"dir://{tmp_path / 'docs'}")
    new, legacy = default_groups("legacy", 1, sink)
    old = Runner(view, sink, bootstrap, RunnerConfig(group_id=legacy))  # as runners named groups before
    old.run(until_caught_up=True, timeout_s=120)
    old.close()
    produce_events(bootstrap, topic, 300, keys=30, seed=3)
    runner = Runner(view, sink, bootstrap)
    stats = runner.run(until_caught_up=True, timeout_s=120)
    runner.close()
    assert (runner.group_id, stats.records) == (legacy, 300)
    assert dict(sink.scan("legacy", limit=1_000)) == dict(reference(bootstrap, topic).counts)  # type: ignore[attr-defined]
    # a sink that never held the view starts under its own group, from the beginning
    fresh = open_sink(f"dir://{tmp_path / 'fresh'}")
    runner = Runner(view, fresh, bootstrap)
    stats = runner.run(until_caught_up=True, timeout_s=120)
    runner.close()
    assert runner.group_id == default_groups("legacy", 1, fresh)[0] != new
    assert stats.records == 1_300
