"""The README's "Command line", "Views", "Schema registry", "Web console" and "Hollow" sections, command by command,
in order, as a newcomer types them, in a virtualenv that has only ``pip install .`` (the ``readme_venv`` fixture).

Only what a test must change is changed: ports move to free ones, ``kafka-west:9092`` is a second broker started
here, ``sqlite:///var/views.db`` becomes ``sqlite:var/views.db`` in the test's directory, and the ``[--topic
orders] [--json]`` notation is run with and without its options. What the README presupposes is set up first and
said so: a ``lines.txt`` to produce, and orders committed by a consumer group ``billing``. Long-running commands
(``top``, ``mirror``, ``views run``) run until what they are for is seen, then stop.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from console._support import printed_url
from loosely.broker.server import BrokerThread
from loosely.testing import embedded_broker, free_port

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
ORDERS = [("c42", 10), ("c7", 5), ("c42", 20)]


def section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def commands(text: str) -> list[str]:
    """The indented shell lines of a section (continuations joined, trailing ``# comments`` dropped)."""
    joined = re.sub(r"\\\n\s+", "", text)
    out = []
    for line in joined.splitlines():
        if line.startswith("    ") and line.strip().split(" ", 1)[0] in ("loosely", "curl"):
            out.append(re.sub(r"\s{2,}#.*$", "", line.strip()))
    return out


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout_s} s: {what}")
        time.sleep(0.1)


class Shell:
    """Runs README lines in one directory, with the venv's ``loosely`` first on PATH and the ports substituted."""

    def __init__(self, venv: Path, cwd: Path, substitutions: dict[str, str]) -> None:
        self.python = venv / "bin" / "python"
        self.prefix = f"unset PYTHONPATH; export PATH={venv / 'bin'}:$PATH;"
        self.cwd = cwd
        self.subs = substitutions
        self.background: list[subprocess.Popen[str]] = []

    def line(self, command: str) -> str:
        for old, new in self.subs.items():
            command = command.replace(old, new)
        return command

    def run(self, command: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["bash", "-c", f"set -o pipefail; {self.prefix} {self.line(command)}"],
                           cwd=self.cwd, capture_output=True, text=True, timeout=timeout_s, check=False)
        assert "Traceback" not in r.stderr, r.stderr
        return r

    def start(self, command: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(["bash", "-c", f"{self.prefix} exec {self.line(command)}"], cwd=self.cwd,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.background.append(p)
        return p

    def stop(self, p: subprocess.Popen[str]) -> tuple[str, str]:
        p.terminate()
        out, err = p.communicate(timeout=30)
        assert "Traceback" not in err, err
        return out, err

    def close(self) -> None:
        for p in self.background:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def shell(readme_venv: Path, tmp_path: Path) -> Iterator[tuple[Shell, BrokerThread]]:
    west_dir = tmp_path / "west"
    with embedded_broker(data_dir=str(west_dir)) as west:
        port, metrics, serve = free_port(), free_port(), free_port()
        sh = Shell(readme_venv, tmp_path / "work", {
            "localhost:9092": f"127.0.0.1:{port}",
            "kafka-west:9092": west.bootstrap_servers,
            "127.0.0.1:9308": f"127.0.0.1:{metrics}",
            "127.0.0.1:8080": f"127.0.0.1:{serve}",
            "--metrics-listen": f"--listen 127.0.0.1:{port} --metrics-listen",
            "sqlite:///var/views.db": "sqlite:var/views.db",
        })
        sh.cwd.mkdir()
        (sh.cwd / "var").mkdir()
        try:
            yield sh, west
        finally:
            sh.close()


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in got]
    finally:
        c.close()


def test_the_command_line_and_views_sections(shell: tuple[Shell, BrokerThread]) -> None:
    sh, west = shell
    cli = commands(section("Command line"))
    views = commands(section("Views"))
    assert [c.split()[1] for c in cli] == ["produce", "consume", "topics", "groups", "groups", "broker", "top", "log",
                                          "mirror", "top", "top"]
    broker = next(c for c in cli if c.startswith("loosely broker"))
    proc = sh.start(broker)
    assert proc.stdout is not None and "listening" in proc.stdout.readline()
    bootstrap = sh.line("localhost:9092")
    (sh.cwd / "lines.txt").write_text("k1,v1\nk2,v2\n")  # what the README leaves to the reader

    for command in cli:
        verb = command.split()[1]
        if verb == "broker":
            continue
        if verb == "produce":
            assert sh.run(command).returncode == 0
        elif verb == "consume":
            assert sh.run(command).stdout == "0 0 k1 v1\n0 1 k2 v2\n"
        elif verb == "topics":
            assert "orders" in sh.run(command).stdout
            # The README presupposes a group `billing` that has read `orders`: a consumer commits.
            p = Producer({"bootstrap.servers": bootstrap})
            for customer, total in ORDERS:
                p.produce("orders", json.dumps({"customer": customer, "total": total}).encode(), key=customer)
            assert p.flush(30) == 0
            c = Consumer({"bootstrap.servers": bootstrap, "group.id": "billing", "auto.offset.reset": "earliest"})
            c.subscribe(["orders"])
            seen = 0
            deadline = time.monotonic() + 60
            while seen < len(ORDERS) and time.monotonic() < deadline:
                seen += len(c.consume(10, timeout=1))
            c.commit(asynchronous=False)
            c.close()
            assert seen == len(ORDERS)
        elif verb == "groups" and "describe" in command:
            out = sh.run(command).stdout
            assert "billing" in out and "orders" in out
        elif verb == "groups":
            assert sh.run(command).returncode == 0
            # 1700000000000 is before every record: each partition goes back to its first offset.
            assert committed(bootstrap, "billing", "orders", 6) == [0] * 6
        elif verb == "log":
            plain = command.replace(" [--topic orders] [--json]", "")
            full = command.replace("[", "").replace("]", "")
            assert sh.run(plain).stdout.rstrip().endswith("clean")
            assert json.loads(sh.run(full).stdout)["damaged"] is False
        elif verb == "top" and "--once" in command:
            assert sh.run(command).returncode == 0
            assert "orders" in (sh.cwd / "frame.txt").read_text()
        elif verb == "top":
            p = sh.start(command)
            assert p.stdout is not None
            frame = "".join(p.stdout.readline() for _ in range(6))  # not a terminal: a frame per interval
            assert frame.startswith("loosely top - ") and "TOPIC" in frame
            sh.stop(p)
        elif verb == "mirror":
            p = sh.start(command)
            wait_for("the mirror's copy east.orders on the target",
                     lambda: sum(west.broker.logs.get("east.orders").logs[i].log_end_offset for i in range(6))
                     >= len(ORDERS) if west.broker.logs.get("east.orders") is not None else False)
            sh.stop(p)
        else:
            raise AssertionError(f"a README command this test does not know: {command}")

    # Views: the README's Python block is app/views.py, run from the project directory.
    (sh.cwd / "app").mkdir()
    (sh.cwd / "app" / "views.py").write_text(re.findall(r"```python\n(.*?)```", section("Views"), re.S)[0])
    run, curl, rebuild, status = views
    url = re.search(r"curl (\S+)", sh.line(curl))
    assert url is not None
    runner = sh.start(run)
    expected = sum(t for c, t in ORDERS if c == "c42")

    def served(version: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://{url.group(1)}", timeout=2) as r:
                doc = json.loads(r.read())
        except OSError:
            return False
        return bool(doc["value"] == expected and doc["version"] == version)

    wait_for("the view served at version 1", lambda: served(1))
    doc = json.loads(sh.run(curl).stdout)
    assert (doc["key"], doc["value"]) == ("c42", expected)
    assert sh.run(rebuild, timeout_s=120).returncode == 0
    wait_for("`views run` following the switch to version 2", lambda: served(2))
    out = sh.run(status).stdout
    assert "revenue_by_customer" in out
    sh.stop(runner)
    sh.stop(proc)


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=20) as r:
        return r.status, r.read().decode()


def test_the_schema_registry_and_web_console_sections(readme_venv: Path, tmp_path: Path) -> None:
    """The servers the two sections start, each as written, then asked what a newcomer would ask them first."""
    with embedded_broker(data_dir=str(tmp_path / "cluster")) as cluster:
        port = free_port()
        sh = Shell(readme_venv, tmp_path / "work", {
            "--data-dir ./data": f"--data-dir ./data --listen 127.0.0.1:{port}",
            "kafka-1:9092": cluster.bootstrap_servers,
            "127.0.0.1:8081": f"127.0.0.1:{free_port()}",
            "127.0.0.1:9000": f"127.0.0.1:{free_port()}",
        })
        sh.cwd.mkdir()
        try:
            in_broker, standalone, consume = commands(section("Schema registry"))
            p = sh.start(in_broker)
            assert _get(printed_url(p, "schema registry on") + "/subjects") == (200, "[]")
            sh.stop(p)
            p = sh.start(standalone)
            url = printed_url(p, "schema registry on")
            register = urllib.request.Request(
                f"{url}/subjects/users-value/versions", method="POST", data=json.dumps({"schema": '"string"'}).encode(),
                headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
            with urllib.request.urlopen(register, timeout=20) as r:
                assert json.loads(r.read()) == {"id": 1}
            producer = Producer({"bootstrap.servers": cluster.bootstrap_servers})
            producer.produce("users", b"\x00\x00\x00\x00\x01\x0ahello")  # framed: schema 1 ("string"), Avro "hello"
            assert producer.flush(30) == 0
            r = sh.run(consume)
            assert (r.returncode, r.stdout) == (0, '"hello"\n'), r.stderr
            sh.stop(p)

            in_broker, standalone = commands(section("Web console"))
            p = sh.start(in_broker)
            code, page = _get(printed_url(p, "console on") + "/")
            assert code == 200 and "<h1>Cluster</h1>" in page
            sh.stop(p)
            producer = Producer({"bootstrap.servers": cluster.bootstrap_servers})
            producer.produce("greetings", b"hello")
            assert producer.flush(30) == 0
            p = sh.start(standalone)
            url = printed_url(p, "console on")
            code, page = _get(url + "/")
            assert code == 200 and 'id="read-only"' in page and "greetings" in page
            # --hollow ./movies is the store the README's Hollow snippet writes: run it here first, as a reader would
            snippet = next(b for b in re.findall(r"```python\n(.*?)```", section("Hollow"), re.S) if '"movies"' in b)
            subprocess.run([sh.python, "-c", snippet], cwd=sh.cwd, check=True, capture_output=True, timeout=120)
            code, hollow = _get(url + "/hollow")
            assert code == 200 and "Movie" in hollow
            sh.stop(p)
        finally:
            sh.close()


def test_the_hollow_section(readme_venv: Path, tmp_path: Path) -> None:
    """The Hollow snippet, the store commands after it, then the read-after-write lines against a broker."""
    snippet, models = re.findall(r"```python\n(.*?)```", section("Hollow"), re.S)
    with embedded_broker(data_dir=str(tmp_path / "cluster")) as cluster:
        sh = Shell(readme_venv, tmp_path / "work", {"localhost:9092": cluster.bootstrap_servers,
                                       "127.0.0.1:8090": f"127.0.0.1:{free_port()}"})
        sh.cwd.mkdir()
        try:
            subprocess.run([sh.python, "-c", snippet], cwd=sh.cwd, check=True, capture_output=True, timeout=120)
            versions, dump, diff, history, writer, put, get = commands(section("Hollow"))
            announced = json.loads(sh.run(versions).stdout)["announced"]
            assert len(json.loads(sh.run(versions).stdout)["delta"]) == 1
            assert {json.loads(line)["record"]["title"] for line in sh.run(dump).stdout.splitlines()} == {
                "Heat, remastered", "Alien"}
            changed = json.loads(sh.run(diff).stdout)
            assert changed["to"] == announced
            assert [c["fields"] for t in changed["types"] for c in t["changed"]] == [["title"]]
            assert [json.loads(line)["record"]["title"] for line in sh.run(history).stdout.splitlines()] == [
                "Heat", "Heat, remastered"]

            (sh.cwd / "models.py").write_text(models)
            p = sh.start(writer)
            assert p.stdout is not None and "listening" in json.loads(p.stdout.readline())
            written = json.loads(sh.run(put).stdout)
            read = json.loads(sh.run(f"{get} --after '{written['token']}'").stdout)
            assert read == {"record": {"id": 42, "title": "Heat"}, "version": written["version"]}
            # --producer folds the write into a Hollow version of ./raw-movies
            wait_for("the write in a Hollow version", lambda: '"Heat"' in sh.run(
                "loosely hollow dump raw-movies 2>/dev/null || true").stdout)
            sh.stop(p)
        finally:
            sh.close()
