"""`loosely demo` as the talk's system, driven as a person on stage drives it: over HTTP and in a real browser.

One demo process per module (free ports, a temporary data directory, the change stream off so every number is
the test's own): a write through the write service shows in every read side; a partition keeps the reads
answering while writes fail clearly, and everything catches up after it; a blue/green rebuild switches while reads
go on; the documents page shows a record written a moment before.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TIMEOUT_S = 60
PARTITION_S = 8


class Demo:
    def __init__(self, addresses: dict[str, str]) -> None:
        self.a = addresses

    def __getitem__(self, name: str) -> str:
        return self.a[name]


def call(method: str, url: str, body: Any = None, timeout_s: float = 15) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            raw = r.read()
            code = r.status
    except urllib.error.HTTPError as e:
        raw, code = e.read(), e.code
    try:
        return code, json.loads(raw)
    except ValueError:
        return code, raw.decode()


def get(url: str) -> tuple[int, Any]:
    return call("GET", url)


def eventually(what: str, check: Callable[[], Any], timeout_s: float = TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout_s} s: {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data = tmp_path_factory.mktemp("demo")
    ports = [f"--{f}=127.0.0.1:0" for f in ("listen", "http", "write", "documents", "metrics", "hollow", "console")]
    proc = subprocess.Popen([sys.executable, "-m", "loosely.cli.main", "demo", "--data-dir", str(data), *ports,
                             "--schema-registry", "off", "--changes-per-second", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    err: list[str] = []
    drain = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    drain.start()
    try:
        first = proc.stdout.readline()
        assert first, f"no output: {''.join(err)}"
        guide = proc.stdout.readline()
        assert guide.startswith("loosely demo"), guide
        yield Demo(json.loads(first))
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
        drain.join(10)
    assert proc.returncode == 0, "".join(err)
    assert "Traceback" not in "".join(err), "".join(err)


def healed(demo: Demo) -> bool:
    """The partition is over: the broker is back and the catalog's writer elected again (writes work)."""
    status = get(f"{demo['write']}/demo/status")[1]
    return bool(status["broker"] == "up" and status["hollow"]["writer"] == "elected")


def metric(demo: Demo, key: str) -> float | None:
    _, text = get(demo["metrics"])
    for line in text.splitlines():
        if line.startswith("loosely_view_value{") and f'key="{key}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def search(demo: Demo, q: str) -> list[str]:
    code, body = get(f"{demo['http']}/views/movies/search?q={urllib.request.quote(q)}")
    return [i["key"] for i in body["items"]] if code == 200 else []


def document(demo: Demo, key: str) -> Any:
    code, body = get(f"{demo['documents']}/docs/movies/current/{key}.json")
    return body["value"] if code == 200 else None


def hollow(demo: Demo, key: str) -> Any:
    code, body = get(f"{demo['hollow']}/movies/{key}")
    return body["value"] if code == 200 else None


def test_a_write_shows_in_every_read_side_and_a_delete_leaves_them_all(demo: Demo) -> None:
    movie = {"title": "Heat", "year": 1995, "genres": ["crime", "thriller"], "rating": 8.3}
    code, body = call("PUT", f"{demo['write']}/movies/heat", movie)
    assert code == 200 and body["topic"] == "movies.changes" and body["version"] >= 0, body
    want = {"id": "heat", **movie}
    # read your write: with the write's token the Hollow service answers it at once, no retrying
    code, read = get(body["read_your_write"])
    assert code == 200, (code, read)
    assert (read["value"], read["version"], read["consistency"]) == (want, body["version"], "after"), read
    code, read = get(f"{demo['hollow']}/movies/heat?consistency=strong")
    assert (code, read["value"], read["version"]) == (200, want, body["version"]), read
    assert get(f"{demo['hollow']}/movies/heat?after=nonsense")[0] == 400
    assert eventually("search finds it", lambda: "heat" in search(demo, "heat"))
    assert "heat" in search(demo, "thriller")  # the genres are indexed too
    assert eventually("the document", lambda: document(demo, "heat") == want)
    assert eventually("the Hollow lookup", lambda: hollow(demo, "heat") == want)
    assert eventually("the rating metric", lambda: metric(demo, "rating/heat") == 8.3)
    writes = metric(demo, "writes")

    code, body = call("POST", f"{demo['write']}/movies", {"id": "heat", **movie, "rating": 9.1})
    assert code == 201, body
    assert eventually("the new rating in Hollow", lambda: (hollow(demo, "heat") or {}).get("rating") == 9.1)
    assert eventually("the new rating metric", lambda: metric(demo, "rating/heat") == 9.1)
    assert metric(demo, "writes") == (writes or 0) + 1

    deletes = metric(demo, "deletes") or 0
    assert call("DELETE", f"{demo['write']}/movies/heat")[0] == 200
    assert eventually("gone from search", lambda: "heat" not in search(demo, "heat"))
    assert eventually("gone from documents", lambda: document(demo, "heat") is None)
    assert eventually("gone from Hollow", lambda: get(f"{demo['hollow']}/movies/heat")[0] == 404)
    assert eventually("gone from the metrics", lambda: metric(demo, "rating/heat") is None)
    assert metric(demo, "deletes") == deletes + 1


@pytest.mark.parametrize(("method", "path", "body", "code", "says"), [
    ("PUT", "/movies/heat", {"year": 1995}, 400, '"title"'),
    ("PUT", "/movies/heat", {"title": "Heat", "rating": 11}, 400, '"rating"'),
    ("PUT", "/movies/heat", {"title": "Heat", "budget": 1}, 400, "unknown field(s) budget"),
    ("PUT", "/movies/a%20b", {"title": "Heat"}, 400, "a movie id is"),
    ("POST", "/movies", {"title": "Heat"}, 400, "a movie id is"),
    ("GET", "/movies/heat", None, 405, "only writes to the log"),
    ("POST", "/demo/partition?seconds=-1", None, 400, "at most"),
    ("POST", "/demo/rebuild?side=metrics", None, 400, "blue/green works on"),
])
def test_bad_requests_get_one_clear_line(demo: Demo, method: str, path: str, body: Any, code: int,
                                         says: str) -> None:
    got, answer = call(method, demo["write"] + path, body)
    assert (got, says in answer["error"]) == (code, True), answer


def test_the_change_stream_moves_the_catalog_when_switched_on(demo: Demo) -> None:
    assert call("POST", f"{demo['write']}/demo/changes?on=1")[1] == {"on": True}
    try:
        eventually("three edits sent", lambda: get(f"{demo['write']}/demo/status")[1]["changes"]["sent"] >= 3)
    finally:
        assert call("POST", f"{demo['write']}/demo/changes?on=0")[1] == {"on": False}
    assert eventually("an edited movie in Hollow", lambda: any(hollow(demo, f"m{i:03d}") for i in range(1, 17)))


def test_a_partition_keeps_reads_answering_fails_writes_clearly_and_catches_up(demo: Demo) -> None:
    w = demo["write"]
    assert call("PUT", f"{w}/movies/before", {"title": "Before the storm"})[0] == 200
    assert eventually("before in Hollow", lambda: hollow(demo, "before"))
    assert eventually("before in documents", lambda: document(demo, "before"))

    code, body = call("POST", f"{w}/demo/partition?seconds={PARTITION_S}")
    assert code == 202, body
    started = time.monotonic()
    assert get(f"{w}/demo/status")[1]["broker"] == "partitioned"
    assert call("POST", f"{w}/demo/partition?seconds=5")[0] == 409  # one at a time
    code, body = call("PUT", f"{w}/movies/during", {"title": "During the storm"})
    # a commit that was under way when the broker went may have landed; the answer says which case it is
    assert code == 503 and ("nothing was written" in body["error"] or "may or may not" in body["error"]), body
    code, body = call("PUT", f"{w}/movies/during", {"title": "During the storm"})
    assert code == 503 and "nothing was written" in body["error"], body  # the writer knows it is cut off now
    # every read side answers from what it holds, while the broker is away
    assert "before" in search(demo, "storm")
    assert document(demo, "before") == {"id": "before", "title": "Before the storm"}
    code, body = get(f"{demo['hollow']}/movies/before")  # from memory, saying how stale it may be
    assert (code, body["value"]) == (200, {"id": "before", "title": "Before the storm"}), body
    assert eventually("the Hollow answer's staleness growing", lambda: get(f"{demo['hollow']}/movies/before")[1][
        "staleness_ms"] >= body["staleness_ms"] + 300, timeout_s=2)
    assert get(demo["documents"] + "/")[0] == 200
    assert get(f"{demo['documents']}/docs/movies/current/")[0] == 200
    assert metric(demo, "writes") is not None
    assert time.monotonic() - started < PARTITION_S, "the checks outlasted the partition; make it longer"

    assert eventually("the broker back", lambda: healed(demo))
    # the first writes after may still find the producer reconnecting: a person retries, as the error says
    assert eventually("a write accepted again",
                      lambda: call("PUT", f"{w}/movies/after", {"title": "After the storm"})[0] == 200)
    assert eventually("after in search", lambda: "after" in search(demo, "storm"))
    assert eventually("after in documents", lambda: document(demo, "after"))
    assert eventually("after in Hollow", lambda: hollow(demo, "after"))
    assert "during" not in search(demo, "storm") and hollow(demo, "during") is None  # nothing was written
    assert get(f"{w}/demo/status")[1]["partitions"] == 1


@pytest.mark.parametrize("side", ["search", "documents"])
def test_blue_green_switches_while_the_read_side_answers(demo: Demo, side: str) -> None:
    w = demo["write"]
    assert call("PUT", f"{w}/movies/bg-{side}", {"title": f"Blue green {side}"})[0] == 200
    read = (lambda: f"bg-{side}" in search(demo, "green")) if side == "search" else (
        lambda: document(demo, f"bg-{side}") is not None)
    assert eventually("the movie in the read side", read)
    code, job = call("POST", f"{w}/demo/rebuild?side={side}")
    assert code == 202 and job["to_version"] == (job["from_version"] or 0) + 1, job
    answered = 0
    while True:  # every read during the rebuild and the switch finds the movie
        assert read(), f"the read side lost the movie during the rebuild ({answered} reads)"
        answered += 1
        state = next(r for r in get(f"{w}/demo/status")[1]["rebuilds"] if r["to_version"] == job["to_version"]
                     and r["side"] == side)
        if state["state"] != "building":
            break
    assert state["state"] == "done", state
    if side == "search":
        views = {v["name"]: v for v in get(f"{demo['http']}/views")[1]["views"]}
        assert views["movies"]["serving_version"] == job["to_version"]
    else:
        current = get(f"{demo['documents']}/docs/movies/current.json")[1]
        assert current == {"version": job["to_version"]}
    assert read()
    # the follower moved to the new version, and writes reach it
    assert call("PUT", f"{w}/movies/bg2-{side}", {"title": f"Blue green again {side}"})[0] == 200
    again = (lambda: f"bg2-{side}" in search(demo, "again")) if side == "search" else (
        lambda: document(demo, f"bg2-{side}") is not None)
    assert eventually("a write after the switch", again)
    assert answered >= 1


def loosely(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loosely.cli.main", *args], capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)


def test_the_scenarios_from_the_command_line(demo: Demo) -> None:
    write = demo["write"].removeprefix("http://")
    r = loosely("demo", "rebuild", "--side", "search", "--write", write)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert (job["side"], job["state"]) == ("search", "building")
    eventually("the rebuild done", lambda: any(j["to_version"] == job["to_version"] and j["state"] == "done"
                                               for j in get(f"{demo['write']}/demo/status")[1]["rebuilds"]))
    r = loosely("demo", "partition", "--seconds", "0", "--write", write)
    assert (r.returncode, r.stdout) == (1, "") and r.stderr.startswith("loosely demo partition: a partition lasts")
    assert len(r.stderr.splitlines()) == 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{s.getsockname()[1]}"
    r = loosely("demo", "partition", "--write", nobody)
    assert r.returncode == 1 and f"no demo answers on {nobody}" in r.stderr and len(r.stderr.splitlines()) == 1


README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def readme_curl_lines() -> list[str]:
    section = README.split("\n## The two commands\n", 1)[1].split("\n## ", 1)[0]
    return [re.sub(r"\s{2,}#.*$", "", line.strip()) for line in section.splitlines()
            if line.startswith("    curl ")]


def test_the_readmes_curl_lines_work_as_written(demo: Demo) -> None:
    """The README's lines in order, the default ports moved to this demo's; a read is repeated until the view has
    caught up (a person would press the up arrow), and the partition is made short."""
    ports = {"http://127.0.0.1:8090": demo["write"], "http://127.0.0.1:8080": demo["http"],
             "http://127.0.0.1:8091": demo["documents"], "http://127.0.0.1:8092/metrics": demo["metrics"],
             "http://127.0.0.1:8093": demo["hollow"], "seconds=20": "seconds=2"}
    lines = readme_curl_lines()
    assert len(lines) == 9, lines
    for as_written in lines:
        line = as_written
        for old, new in ports.items():
            line = line.replace(old, new)

        def run(line: str = line) -> str:
            r = subprocess.run(["bash", "-c", f"set -o pipefail; curl -sS --fail-with-body {line[5:]}"],
                               capture_output=True, text=True, timeout=30, check=False)
            assert "curl:" not in r.stderr or r.returncode == 22, r.stderr  # 22: an HTTP error, say, 404
            # a read shows the movie; a write or a control just succeeds
            wanted = r.returncode == 0 and ("-X" in line or "/demo/" in line or "Heat" in r.stdout
                                            or "8.3" in r.stdout)
            return r.stdout if wanted else ""

        out = eventually(line, run)
        if "/demo/partition" in line:
            assert json.loads(out)["partitioned_for_seconds"] == 2
            eventually("the broker back", lambda: healed(demo))
        if "/demo/rebuild" in line:
            to = json.loads(out)["to_version"]
            eventually("the rebuild done", lambda to=to: any(
                r["to_version"] == to and r["state"] == "done" for r in get(f"{demo['write']}/demo/status")[1][
                    "rebuilds"]))
    assert get(f"{demo['write']}/demo/status")[1]["changes"]["on"] is False


def test_the_documents_page_shows_a_record_written_a_moment_before(demo: Demo, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    from loosely.testing.browser import chromium, screenshot, wait_for

    with chromium() as browser:
        browser.get(demo["documents"] + "/")
        assert browser.title.startswith("loosely demo")
        code, _ = call("PUT", f"{demo['write']}/movies/seen-in-browser",
                       {"title": "Seen in a browser", "year": 2026, "rating": 7.5})
        assert code == 200
        item = wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, 'li[data-key="seen-in-browser"]'),
                        timeout_s=30, message="the new movie on the documents page")
        assert "Seen in a browser" in item[0].text and "rated 7.5" in item[0].text
        browser.find_element(By.ID, "key").send_keys("seen-in-browser")
        browser.find_element(By.CSS_SELECTOR, "#lookup button").click()
        found = wait_for(browser, lambda b: b.find_element(By.ID, "found").text, message="the lookup")
        assert json.loads(found)["title"] == "Seen in a browser"
        shot = screenshot(browser, "demo documents page")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        # the partition scenario, as the audience sees it: the page keeps reading while the broker is away
        assert call("POST", f"{demo['write']}/demo/partition?seconds=4")[0] == 202
        before = browser.find_element(By.ID, "status").text
        wait_for(browser, lambda b: b.find_element(By.ID, "status").text not in (before, "") and
                 "most recently changed" in b.find_element(By.ID, "status").text, message="a refresh during it")
        assert get(f"{demo['write']}/demo/status")[1]["broker"] == "partitioned", "the check outlasted it"
        assert browser.find_elements(By.CSS_SELECTOR, 'li[data-key="seen-in-browser"]')
        screenshot(browser, "demo documents page during a partition")
    eventually("the broker back", lambda: healed(demo))


def test_the_console_shows_the_demos_topics_views_and_hollow(demo: Demo) -> None:
    assert demo["console"], demo
    movie = {"title": "Console Probe", "year": 2001, "genres": ["test"], "rating": 5.0}
    # after the partitions of the tests before, the first write may find the writer's election under way: retried
    assert eventually("the probe written", lambda: call("PUT", f"{demo['write']}/movies/console-probe", movie)[0]
                      == 200)
    code, home = get(demo["console"] + "/")
    assert code == 200 and "movies" in home
    code, views = get(demo["console"] + "/views")
    assert code == 200 and "movies" in views
    found = eventually("the probe in the console's message browser", lambda: "console-probe" in get(
        demo["console"] + "/topics/movies.changes/messages?partition=0&offset=0")[1])
    assert found
    key = urllib.request.quote('["Movie",["console-probe"]]')  # the catalog's log is keyed as RAW Hollow keys it
    with urllib.request.urlopen(demo["console"] + f"/topics/movies.changes/search?field=key&text={key}",
                                timeout=15) as r:
        search = r.geturl()
    def answered() -> str | None:
        text = str(get(search + "/result")[1])
        return text if "key index" in text else None

    result = eventually("the key search's answer", answered)
    assert "Console Probe" in result  # found through the demo broker's key index
