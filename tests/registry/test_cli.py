"""``loosely broker --schema-registry-listen`` and ``loosely schema-registry``: start, answer, stop on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from loosely.broker.server import BrokerThread
from loosely.testing import embedded_broker

LOOSELY = [sys.executable, "-m", "loosely.cli.main"]
URL = re.compile(r"schema registry on (http://\S+)")


def start(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([*LOOSELY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert p.stdout is not None
    for line in p.stdout:  # the process prints the URL once the registry has read _schemas to its end
        m = URL.search(line)
        if m:
            return p, m.group(1)
    p.kill()
    raise AssertionError(f"no registry URL; stderr: {p.communicate(timeout=10)[1]}")


def stop(p: subprocess.Popen[str]) -> int:
    p.send_signal(signal.SIGTERM)
    return p.wait(30)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    with embedded_broker(data_dir=str(tmp_path_factory.mktemp("cli-registry"))) as b:
        yield b


def test_schema_registry_command_against_a_cluster(broker: BrokerThread) -> None:
    p, url = start(["schema-registry", "-b", broker.bootstrap_servers, "--listen", "127.0.0.1:0"])
    try:
        client = SchemaRegistryClient({"url": url})
        assert client.register_schema("cli-value", Schema('"string"', "AVRO")) == 1
    finally:
        assert stop(p) == 0
    p, url = start(["schema-registry", "-b", broker.bootstrap_servers, "--listen", "127.0.0.1:0"])
    try:  # a second run finds the schema in the log
        assert SchemaRegistryClient({"url": url}).get_latest_version("cli-value").schema_id == 1
    finally:
        assert stop(p) == 0


def test_a_killed_registry_loses_nothing_it_acknowledged(broker: BrokerThread) -> None:
    # the restarted registry joins the election only once the killed one's session has expired: keep it short
    args = ["schema-registry", "-b", broker.bootstrap_servers, "--listen", "127.0.0.1:0", "--topic", "_killed",
            "--session-timeout-ms", "6000"]
    p, url = start(args)
    client = SchemaRegistryClient({"url": url})
    ids = [client.register_schema(f"killed-{i}", Schema(json.dumps({"type": "fixed", "name": "F", "size": i + 1}),
                                                        "AVRO")) for i in range(5)]
    p.kill()  # SIGKILL: no flush, no goodbye
    p.wait(10)
    p, url = start(args)
    try:
        client = SchemaRegistryClient({"url": url})
        assert [client.get_latest_version(f"killed-{i}").schema_id for i in range(5)] == ids
        assert client.register_schema("killed-new", Schema('"string"', "AVRO")) == max(ids) + 1
    finally:
        assert stop(p) == 0


def test_broker_serves_a_registry_stored_in_itself(tmp_path: Path) -> None:
    from loosely.registry import SchemaRegistry
    from loosely.testing import free_port

    bootstrap = f"127.0.0.1:{free_port()}"
    p, url = start(["broker", "--data-dir", str(tmp_path), "--listen", bootstrap,
                    "--schema-registry-listen", "127.0.0.1:0", "--schema-registry-compatibility", "full"])
    try:
        with urllib.request.urlopen(f"{url}/config") as r:
            assert json.loads(r.read()) == {"compatibilityLevel": "FULL"}
        assert SchemaRegistryClient({"url": url}).register_schema("in-broker", Schema('"int"', "AVRO")) == 1
        # a registry of its own joins the broker's in the election; 127.0.0.1 sorts before localhost: it follows
        with SchemaRegistry(bootstrap, host="localhost") as other:
            assert other.elector is not None and other.elector.leadership().leader_url == url
            assert SchemaRegistryClient({"url": other.url}).register_schema("beside", Schema('"long"', "AVRO")) == 2
        assert SchemaRegistryClient({"url": url}).get_latest_version("beside").schema_id == 2
    finally:
        assert stop(p) == 0


def test_unreachable_cluster_is_one_line_and_exit_1() -> None:
    r = subprocess.run([*LOOSELY, "schema-registry", "-b", "127.0.0.1:1", "--listen", "127.0.0.1:0",
                        "--init-timeout-ms", "2000"], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("loosely schema-registry: cannot reach 127.0.0.1:1 within 2000 ms"), r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr


def test_the_readmes_schema_registry_commands_run_as_written(broker: BrokerThread, tmp_path: Path) -> None:
    from loosely.testing import free_port

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## Schema registry\n", 1)[1].split("\n## ", 1)[0]
    lines = [re.sub(r"\s{2,}#.*$", "", line.strip()) for line in section.splitlines() if line.startswith("    loosely")
             and not line.startswith("    loosely consume")]  # the servers; tests/test_readme_commands.py runs consume
    assert [line.split()[1] for line in lines] == ["broker", "schema-registry"]
    for line in lines:  # ports moved to free ones, kafka-1:9092 is this module's broker, ./data a fresh directory
        command = (line.replace("127.0.0.1:8081", f"127.0.0.1:{free_port()}")
                   .replace("kafka-1:9092", broker.bootstrap_servers).replace("./data", str(tmp_path / "data")))
        if command.split()[1] == "broker":
            command += f" --listen 127.0.0.1:{free_port()}"
        p, url = start(command.split()[1:])
        try:
            with urllib.request.urlopen(f"{url}/subjects") as r:
                assert r.status == 200
        finally:
            assert stop(p) == 0


def test_broker_with_a_registry_it_cannot_start_exits_1_with_one_line(tmp_path: Path) -> None:
    taken = socket.socket()  # a port someone else holds
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        r = subprocess.run([*LOOSELY, "broker", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
                            "--schema-registry-listen", f"127.0.0.1:{taken.getsockname()[1]}"],
                           capture_output=True, text=True, timeout=60, check=False)
    finally:
        taken.close()
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("loosely broker: ") and "schema registry" in r.stderr, r.stderr
