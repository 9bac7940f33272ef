"""`loosely demo` end to end: Debian's kcat writes the talk's example, the views answer over HTTP, a restart resumes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

TIMEOUT_S = 60
# the demo's other services (tests/demo/ drives them), on free ports
FREE_PORTS = ("--write", "127.0.0.1:0", "--documents", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--hollow",
              "127.0.0.1:0", "--console", "127.0.0.1:0", "--changes-per-second", "0")


@contextmanager
def demo(data_dir: Path, *extra: str) -> Iterator[dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "loosely.cli.main", "demo", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
         "--http", "127.0.0.1:0", "--schema-registry", "127.0.0.1:0", *FREE_PORTS, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline()
        assert first, proc.stderr.read() if proc.stderr else "no output"
        yield json.loads(first)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err


def talk_lines(first: int, last: int) -> bytes:
    return b"".join(b'%d,{"id":"%d", value: "bar"}\n' % (i, i) for i in range(first, last + 1))


def kcat(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["kcat", *args], input=stdin, capture_output=True, timeout=TIMEOUT_S, check=True)


def get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def register(registry: str, subject: str, schema: str) -> int:
    body = json.dumps({"schema": schema}).encode()
    req = urllib.request.Request(f"{registry}/subjects/{subject}/versions", data=body, method="POST",
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return int(json.loads(r.read())["id"])


def wait_for(url: str, want: Any) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    got = get(url)
    while got != want and time.monotonic() < deadline:
        time.sleep(0.1)
        got = get(url)
    return got


def test_kcat_writes_the_talks_example_and_the_views_serve_it_across_a_restart(tmp_path: Path) -> None:
    with demo(tmp_path) as d:
        b, http, topic = d["bootstrap_servers"], d["http"], d["topic"]
        kcat("-P", "-b", b, "-t", topic, "-K", ",", stdin=talk_lines(1, 1000))
        consumed = kcat("-C", "-b", b, "-t", topic, "-o", "beginning", "-e", "-q").stdout.splitlines()
        assert consumed == [b'{"id":"%d", value: "bar"}' % i for i in range(1, 1001)]
        assert wait_for(f"{http}/views/counts/keys/1000", {"key": "1000", "value": 1, "version": 1})
        assert wait_for(f"{http}/views/latest/keys/1000", {"key": "1000", "value": '{"id":"1000", value: "bar"}',
                                                           "version": 1})
        assert get(f"{http}/views/latest/keys/42") == {"key": "42", "value": '{"id":"42", value: "bar"}',
                                                        "version": 1}
        assert get(f"{http}/views/latest/keys/1001") is None
        status = get(f"{http}/status")
        # (the catalog's search view "movies" is there too, serving once it has caught up: tests/demo/ checks it)
        assert {(v["view"], v["state"]) for v in status["views"] if v["view"] != "movies"} == {
            ("latest", "serving"), ("counts", "serving")}
        # the schema registry a team's Docker stack had beside Kafka
        schema_id = register(d["schema_registry"], "the-topic-value", '{"type": "string"}')
        assert json.loads(get(f"{d['schema_registry']}/schemas/ids/{schema_id}")["schema"]) in ("string",
                                                                                              {"type": "string"})

    # the log and the views live on in the data directory: the same keys again count twice, nothing is replayed
    with demo(tmp_path) as d:
        b, http, topic = d["bootstrap_servers"], d["http"], d["topic"]
        assert get(f"{d['schema_registry']}/subjects") == ["the-topic-value"]  # kept in the log too
        assert get(f"{http}/views/counts/keys/7") == {"key": "7", "value": 1, "version": 1}
        kcat("-P", "-b", b, "-t", topic, "-K", ",", stdin=talk_lines(1, 10))
        assert wait_for(f"{http}/views/counts/keys/10", {"key": "10", "value": 2, "version": 1})
        assert get(f"{http}/views/counts/keys/11") == {"key": "11", "value": 1, "version": 1}
        # both views reach the end of the log (latest's rows for 1..10 are the same as before, so ask the status)
        caught_up = {"position": 1010, "high_watermark": 1010}
        deadline = time.monotonic() + TIMEOUT_S

        def positions() -> list[Any]:
            return [v["partitions"] for v in get(f"{http}/status")["views"] if v["view"] in ("latest", "counts")]

        parts = positions()
        while parts != [{f"{topic}/0": caught_up}] * 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            parts = positions()
        assert parts == [{f"{topic}/0": caught_up}] * 2


# the first thing started, the one started with a view, and one started after the views
@pytest.mark.parametrize("flag", ["--listen", "--metrics", "--documents"])
def test_a_taken_port_is_a_clear_error(tmp_path: Path, flag: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "loosely.cli.main", "demo", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
             "--http", "127.0.0.1:0", *FREE_PORTS, flag, f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loosely demo:") and "in use" in lines[0], lines
    assert f":{port}" in lines[0]


def test_every_interface_needs_allow_unauthenticated(tmp_path: Path) -> None:
    """The broker refuses a listener anyone can reach without authentication; the demo says how to mean it."""
    args = [sys.executable, "-m", "loosely.cli.main", "demo", "--data-dir", str(tmp_path), "--listen", "0.0.0.0:0",
            "--advertise", "127.0.0.1:9092", "--http", "127.0.0.1:0", *FREE_PORTS]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--allow-unauthenticated" in lines[0], lines
    with demo(tmp_path, "--listen", "0.0.0.0:0", "--advertise", "127.0.0.1:9092", "--allow-unauthenticated",
              "--schema-registry", "off") as d:  # the registry would follow the advertised address, not served
        assert d  # started and said where
