"""The writer over HTTP (WriterServer, RemoteWriter) and ``loosely hollow put/get/delete/tail/writer``."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hollow.raw.raw_support import Movie
from loosely.hollow.api import FilesystemBlobStore
from loosely.hollow.raw import (
    ConditionFailed,
    Dataset,
    Delete,
    Put,
    RawClient,
    RemoteWriter,
    Writer,
    WriterServer,
)
from loosely.testing import free_port

MODELS = str(Path(__file__).with_name("raw_support.py"))


@pytest.fixture
def server(dataset: Dataset) -> Iterator[WriterServer]:
    w = Writer(dataset)
    s = WriterServer(w).start()
    w.start()
    assert w.wait_for_leadership(30_000)
    try:
        yield s
    finally:
        s.close()
        w.close()


def test_an_answer_costs_a_round_trip_not_a_delayed_ack(server: WriterServer) -> None:
    """The server answers in two sends (headers, body): with Nagle on, the body waited for the client's delayed
    ACK, 40 ms on Linux, on every request of a kept-alive connection (remote writes took 45 ms, not 3)."""
    port = int(server.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    took = []
    for _ in range(20):
        t0 = time.monotonic()
        conn.request("GET", "/leader")
        assert json.loads(conn.getresponse().read())["leader"] is True
        took.append(time.monotonic() - t0)
    conn.close()
    assert sorted(took)[len(took) // 2] < 0.02, f"median answer in {sorted(took)[10] * 1000:.0f} ms"


def test_remote_writes_with_conditions_and_bulk(dataset: Dataset, server: WriterServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    remote = RemoteWriter([dead, server.url], dataset)  # the first candidate refuses: the next one is tried
    with RawClient(dataset) as client:
        created = remote.put(Movie(1, "Heat"), if_version=None)
        assert client.get(Movie, 1, after=created.token) == Movie(1, "Heat")
        with pytest.raises(ConditionFailed) as failed:
            remote.put(Movie(1, "again"), if_version=None)
        assert failed.value.current_version == created.version
        done = remote.bulk([Put(Movie(2, "Ronin"), if_version=None), Delete("Movie", (1,), if_version=created.version)])
        assert client.get_versioned(Movie, 2, after=done.token) == (Movie(2, "Ronin"), done.versions[0])
        assert client.get(Movie, 1) is None
        with pytest.raises(ConditionFailed):
            remote.put(Movie(2, "Ronin (1998)"), if_content=Movie(2, "not what is there"))
        renamed = remote.put(Movie(2, "Ronin (1998)"), if_content=Movie(2, "Ronin"))
        assert client.get(Movie, 2, after=renamed.token) == Movie(2, "Ronin (1998)")
        gone = remote.delete(Movie, 2, if_content=Movie(2, "Ronin (1998)"))
        assert client.get(Movie, 2, after=gone.token) is None
        assert remote.leader() == server.url
    remote.close()


def _post(url: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", path, body, headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_bad_requests_get_a_clear_answer_and_the_server_stays_up(dataset: Dataset, server: WriterServer) -> None:
    cases = [
        (b"not json", 400),
        (b'{"type": "Movie", "record": {"id": "one", "title": "x"}}', 400),  # a field of the wrong type
        (b'{"type": "Nope", "record": {}}', 400),
        (b'{"type": "Movie", "record": {"id": 1, "title": "x"}, "if_version": "7"}', 400),
        (b'{"operations": [{"op": "drop", "type": "Movie"}]}', 400),
    ]
    for body, status in cases:
        path = "/bulk" if b"operations" in body else "/put"
        got, answer = _post(server.url, path, body)
        assert (got, answer["error"]) == (status, "bad_request"), body
    assert _post(server.url, "/put", b"x" * 100, {"Content-Length": str(64 * 1024 * 1024)})[0] == 413
    assert _post(server.url, "/nowhere", b"{}")[0] == 404
    ok, answer = _post(server.url, "/put", b'{"type": "Movie", "record": {"id": 5, "title": "fine"}}')
    assert ok == 200 and isinstance(answer["version"], int)


def test_a_standby_sends_remote_writes_to_the_leader(dataset: Dataset, server: WriterServer) -> None:
    standby = Writer(dataset)
    standby_server = WriterServer(standby).start()
    standby.start()
    try:
        remote = RemoteWriter(standby_server.url, dataset)
        result = remote.put(Movie(9, "via the standby"))
        assert isinstance(result.version, int)
        assert remote._current == server.url
        remote.close()
    finally:
        standby_server.close()
        standby.close()


def _loosely(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loosely.cli.main", "hollow", *args], input=stdin, check=False,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_the_command_line(dataset: Dataset, tmp_path: Path) -> None:
    store = dataset.blob_store
    assert isinstance(store, FilesystemBlobStore)
    common = ["--dataset", dataset.name, "-b", dataset.bootstrap_servers, "--blob-store", str(store.path),
              "--types", f"{MODELS}:Movie,Actor", "--partitions", str(dataset.partitions)]
    proc = subprocess.Popen([sys.executable, "-m", "loosely.cli.main", "hollow", "writer", *common, "--producer",
                             "--cycle-interval-ms", "200"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["listening"]
        put = _loosely("put", *common, "--writer", url, "--type", "Movie", stdin='{"id": 1, "title": "Heat"}\n'
                       '{"id": 2, "title": "Ronin"}\n')
        assert put.returncode == 0, put.stderr
        first, second = (json.loads(line) for line in put.stdout.splitlines())
        got = _loosely("get", *common, "--type", "Movie", "--key", "1", "--after", second["token"])
        assert json.loads(got.stdout) == {"record": {"id": 1, "title": "Heat", "year": 0},
                                          "version": first["version"]}
        failed = _loosely("put", *common, "--writer", url, "--type", "Movie", "--if-version", "absent",
                          '{"id": 1, "title": "again"}')
        assert failed.returncode == 3 and "condition failed" in failed.stderr
        deleted = _loosely("delete", *common, "--writer", url, "--type", "Movie", "--key", "2")
        assert deleted.returncode == 0, deleted.stderr
        tail = _loosely("tail", *common)
        changes = [json.loads(line) for line in tail.stdout.splitlines()]
        seen = [(c["key"], c["record"] and c["record"]["title"]) for c in changes]
        assert sorted(seen, key=str) == [([1], "Heat"), ([2], "Ronin"), ([2], None)]
        assert seen.index(([2], "Ronin")) < seen.index(([2], None))  # one key: one partition, in order
        bad = _loosely("get", *common, "--type", "Movie", "--key", "1", "--after", "nonsense")
        assert bad.returncode == 1 and bad.stderr.startswith("loosely hollow: ") and "Traceback" not in bad.stderr
    finally:
        proc.terminate()
        proc.wait(30)
    assert store.latest_version() is not None  # the writer's producer published what it read
