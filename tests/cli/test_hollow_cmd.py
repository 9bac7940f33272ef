"""``loosely hollow``: publish from JSON lines (with progress), versions, dump, diff, history, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loosely.cli.main import main

SCHEMA = """
Movie @PrimaryKey(id) { int id; String title; int year; SetOfString tags; }
String { string value; }
SetOfString Set<String>;
"""


def _lines(records: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _publish(tmp_path: Path, store: Path, records: list[dict[str, object]], capsys: pytest.CaptureFixture[str],
             *extra: str) -> tuple[int, str]:
    schema, data = tmp_path / "schema.txt", tmp_path / "records.jsonl"
    schema.write_text(SCHEMA)
    data.write_text(_lines(records))
    assert main(["hollow", "publish", str(store), "--schema", str(schema), "--type", "Movie", "--input", str(data),
                 *extra]) == 0
    captured = capsys.readouterr()
    return int(json.loads(captured.out)["version"]), captured.err


def _movies(n: int, changed: int | None = None) -> list[dict[str, object]]:
    return [{"id": i, "title": f"movie {i}" + (" (cut)" if i == changed else ""), "year": 1990 + i,
             "tags": ["a", "b"] if i % 2 else ["c"]} for i in range(n)]


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_publish_dump_diff_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    v1, _ = _publish(tmp_path, store, _movies(4), capsys)
    v2, _ = _publish(tmp_path, store, _movies(5, changed=2)[1:], capsys)
    assert v2 > v1
    assert main(["hollow", "versions", str(store)]) == 0
    versions = json.loads(capsys.readouterr().out)
    assert versions["announced"] == v2 and versions["delta"] == [f"delta-{v1}-{v2}"]
    assert main(["hollow", "dump", str(store)]) == 0
    dumped = {r["record"]["id"]: r["record"] for r in _json_lines(capsys.readouterr().out)}  # type: ignore[index]
    assert dumped == {m["id"]: {**m, "tags": sorted(m["tags"])} for m in _movies(5, changed=2)[1:]}  # type: ignore[call-overload]
    assert main(["hollow", "dump", str(store), "--version", str(v1), "--type", "String"]) == 0
    assert {"movie 0", "a", "c"} <= {r["record"]["value"] for r in _json_lines(capsys.readouterr().out)}  # type: ignore[index]
    assert main(["hollow", "diff", str(store), str(v1), "announced", "--exit-code"]) == 3
    (movie_diff,) = json.loads(capsys.readouterr().out)["types"]
    for older in ("announced~1", "first"):  # named instead of numbered: the same versions
        assert main(["hollow", "diff", str(store), older, "announced~0"]) == 0
        assert (json.loads(capsys.readouterr().out)["from"]) == v1
    assert movie_diff["added"] == [[4]] and movie_diff["removed"] == [[0]]
    assert [(c["key"], c["fields"]) for c in movie_diff["changed"]] == [([2], ["title"])]
    assert main(["hollow", "history", str(store), "--type", "Movie", "--key", "2"]) == 0
    assert [(h["version"], h["change"]) for h in _json_lines(capsys.readouterr().out)] == [
        (v1, "present"), (v2, "modified")]
    assert main(["hollow", "history", str(store), "--type", "Movie", "--key", "0", "--from", str(v1)]) == 0
    assert [h["change"] for h in _json_lines(capsys.readouterr().out)] == ["present", "removed"]


def test_publish_shows_progress_and_a_no_op_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    v1, err = _publish(tmp_path, store, _movies(3), capsys, "--progress", "--total", "3")
    assert "populating [" in err and "3/3 (100%)" in err
    for stage in ("populating", "publishing", "checking", "validating", "announcing"):
        assert f"{stage} " in err
    assert "published snapshot-" in err and "cycle announced" in err
    v2, _ = _publish(tmp_path, store, _movies(3), capsys)
    assert v2 == v1 and len(list(store.glob("snapshot-*"))) == 1  # unchanged: a no-op cycle


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dump", "{missing}"], "reading the announcement"),
        (["dump", "{store}", "--version", "12"], "reaches version 12"),
        (["history", "{store}", "--type", "Nope", "--key", "1"], "no type Nope"),
        (["diff", "{store}", "announced~1", "announced"], "goes back only 0 version(s)"),
        (["diff", "{store}", "announced~one", "announced"], "how many versions back"),
        (["dump", "{store}", "--version", "latest"], "'latest' is not a version"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    store = tmp_path / "store"
    _publish(tmp_path, store, _movies(2), capsys)
    argv = ["hollow", *[a.format(store=store, missing=tmp_path / "missing") for a in args]]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("loosely hollow: ") and message in err and err.count("\n") == 1


def test_bad_input_publishes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    v1, _ = _publish(tmp_path, store, _movies(2), capsys)
    (tmp_path / "bad.jsonl").write_text('{"id": 1, "title": "x", "year": 1, "tags": []}\nnot json\n')
    assert main(["hollow", "publish", str(store), "--schema", str(tmp_path / "schema.txt"), "--type", "Movie",
                 "--input", str(tmp_path / "bad.jsonl")]) == 1
    assert "line 2 is not JSON" in capsys.readouterr().err
    assert (store / "announced.version").read_text() == str(v1)


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """Two versions of 3000 movies whose titles hold a lone surrogate (as a Java string may), every title changed."""
    tmp = tmp_path_factory.mktemp("big")
    (tmp / "schema.txt").write_text(SCHEMA)
    versions = []
    for v in (1, 2):
        records = [{"id": i, "title": f"café \ud800 {i} v{v}", "year": 1990, "tags": ["x"]} for i in range(3000)]
        (tmp / "records.jsonl").write_text(_lines(records))
        out = _cli("hollow", "publish", str(tmp / "store"), "--schema", str(tmp / "schema.txt"), "--type", "Movie",
                   "--input", str(tmp / "records.jsonl"))
        versions.append(int(json.loads(out.stdout)["version"]))
    return tmp / "store", versions[0], versions[1]


def _cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([sys.executable, "-m", "loosely.cli.main", *args], capture_output=True, timeout=60,
                          check=False)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr.decode(errors="replace")
    return proc


def test_lone_surrogates_are_printed_escaped(big_store: tuple[Path, int, int]) -> None:
    store, v1, _ = big_store
    dumped = _cli("hollow", "dump", str(store)).stdout
    assert b"caf\xc3\xa9 \\ud800 7 v2" in dumped  # UTF-8 as it is, the surrogate escaped
    assert {json.loads(line)["record"]["title"] for line in dumped.splitlines()} == {
        f"café \ud800 {i} v2" for i in range(3000)}
    history = _cli("hollow", "history", str(store), "--type", "Movie", "--key", "7").stdout
    assert [json.loads(line)["record"]["title"] for line in history.splitlines()] == [
        "café \ud800 7 v1", "café \ud800 7 v2"]
    diff = json.loads(_cli("hollow", "diff", str(store), str(v1), "announced").stdout)
    assert len(diff["types"][0]["changed"]) == 3000


def test_a_reader_that_stops_early_ends_the_command_quietly(big_store: tuple[Path, int, int]) -> None:
    """``loosely hollow dump | head -c 1``: exit 0, nothing on stderr, as kcat and other Unix tools do.  (``diff``
    prints one line, ``history`` a few: both end in the same handler.)"""
    proc = subprocess.Popen([sys.executable, "-m", "loosely.cli.main", "hollow", "dump", str(big_store[0])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(1) == b"{"
    proc.stdout.close()  # the reader goes away with the rest unread
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""
