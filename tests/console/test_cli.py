"""``loosely console`` and ``loosely broker --console-listen`` as a user starts them: the URL printed, the page
served, SIGTERM a clean exit, a taken port one line."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from console._support import printed_url
from loosely.broker.server import BrokerThread
from loosely.testing import embedded_broker

LOOSELY = [sys.executable, "-m", "loosely.cli.main"]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    with embedded_broker(data_dir=str(tmp_path_factory.mktemp("console-cli"))) as b:
        yield b


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(20)


def test_console_command_serves_and_stops(broker: BrokerThread) -> None:
    proc = subprocess.Popen([*LOOSELY, "console", "-b", broker.bootstrap_servers, "--listen", "127.0.0.1:0",
                             "--read-only"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = printed_url(proc, "console on")
        page = urllib.request.urlopen(url + "/", timeout=10).read().decode()
        assert 'id="read-only"' in page and broker.bootstrap_servers in page
    finally:
        assert _stop(proc) == 0


def test_a_taken_port_is_one_line(broker: BrokerThread) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([*LOOSELY, "console", "-b", broker.bootstrap_servers, "--listen", f"127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1
    assert r.stderr.startswith("loosely console: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_broker_serves_the_console(tmp_path: Path) -> None:
    proc = subprocess.Popen([*LOOSELY, "broker", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
                             "--console-listen", "127.0.0.1:0", "--schema-registry-listen", "127.0.0.1:0",
                             "--console-sample-interval-ms", "200"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        bootstrap = re.search(r"listening on ([\d.]+:\d+)", proc.stdout.readline())
        assert bootstrap, "the broker's first line names its address"
        registry_url = printed_url(proc, "schema registry on")
        url = printed_url(proc, "console on")
        page = urllib.request.urlopen(url + "/", timeout=10).read().decode()
        assert "<h1>Cluster</h1>" in page and "controller 1" in page
        # a key search inside the broker is answered from its key index, not by a scan
        p = Producer({"bootstrap.servers": bootstrap.group(1)})
        for i in range(50):
            p.produce("keyed", key=f"k{i}".encode(), value=f"value of k{i}".encode())
        assert p.flush(30) == 0
        with urllib.request.urlopen(url + "/topics/keyed/search?field=key&text=k7", timeout=10) as r:
            search_url = r.geturl()  # redirected to the search's own page
        deadline = time.monotonic() + 30
        while True:
            result = urllib.request.urlopen(search_url + "/result", timeout=10).read().decode()
            if "key index" in result or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert "answered from the broker&#39;s key index" in result or "answered from the broker's key index" in result
        assert "value of k7" in result and "value of k17" not in result
        # the console decodes framed values with the registry this broker serves
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroSerializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        serialize = AvroSerializer(SchemaRegistryClient({"url": registry_url}), '"string"')
        p.produce("framed", value=serialize("hello", SerializationContext("framed", MessageField.VALUE)))
        assert p.flush(30) == 0
        page = urllib.request.urlopen(url + "/topics/framed/messages", timeout=10).read().decode()
        assert "AVRO schema 1 (framed-value v1)" in page and '<pre class="json framed avro">&#34;hello&#34;' in page
        # request latencies come from the broker's own histogram, without a metrics listener
        deadline = time.monotonic() + 30
        while 'data-series="produce ms"' not in (chart := urllib.request.urlopen(url + "/charts/latency",
                                                                                  timeout=10).read().decode()):
            assert time.monotonic() < deadline, chart
            p.produce("keyed", key=b"k", value=b"v")
            p.flush(10)
            time.sleep(0.1)
        assert 'id="latency"' in urllib.request.urlopen(url + "/", timeout=10).read().decode()
    finally:
        assert _stop(proc) == 0


def test_a_missing_users_file_is_one_line(broker: BrokerThread, tmp_path: Path) -> None:
    r = subprocess.run([*LOOSELY, "console", "-b", broker.bootstrap_servers, "--listen", "127.0.0.1:0",
                        "--users-file", str(tmp_path / "nope.json")], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 1
    assert r.stderr.startswith("loosely console: users file ") and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_bad_schema_registry_url_is_one_line(broker: BrokerThread) -> None:
    r = subprocess.run([*LOOSELY, "console", "-b", broker.bootstrap_servers, "--listen", "127.0.0.1:0",
                        "--schema-registry", "registry:8081"], capture_output=True, text=True, timeout=60,
                       check=False)
    assert (r.returncode, r.stderr) == (
        1, "loosely console: schema registry URL 'registry:8081': expected http(s)://HOST:PORT\n")


def test_console_and_registry_reach_a_broker_that_only_has_a_sasl_ssl_listener(tmp_path: Path) -> None:
    """The broker's own services take client settings (here a Java-style properties file, as a Kafka operator
    writes one) and reach it through its SASL_SSL listener; without them the broker says in one line what is
    missing."""
    from loosely.testing.certs import make_dev_certs

    certs = make_dev_certs(tmp_path / "certs")
    secured_broker = [*LOOSELY, "broker", "--data-dir", str(tmp_path / "data"),
                      "--config", "listeners=SASL_SSL://127.0.0.1:0",
                      "--config", f"ssl.keystore.location={certs.broker.pem}",
                      "--config", "sasl.enabled.mechanisms=SCRAM-SHA-512",
                      "--add-scram", "SCRAM-SHA-512=[name=console,password=console-secret]",
                      "--console-listen", "127.0.0.1:0", "--schema-registry-listen", "127.0.0.1:0"]
    r = subprocess.run(secured_broker, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("loosely broker: --schema-registry-listen needs a PLAINTEXT listener to reach this "
                               "broker (it has SASL_SSL): give the services' client settings"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr

    properties = tmp_path / "services.properties"

    def write_properties(password: str) -> None:
        properties.write_text(
            "security.protocol=SASL_SSL\n"
            "sasl.mechanism=SCRAM-SHA-512\n"
            'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="console" '
            f'password="{password}";\n'
            "ssl.truststore.type=PEM\n"
            f"ssl.truststore.location={certs.ca_crt}\n")

    # a wrong password is the broker's refusal in one line, at once, not a registry timing out on its transport
    write_properties("not-the-secret")
    started = time.monotonic()
    r = subprocess.run([*secured_broker, "--services-client-config", str(properties)], capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]  # after the broker's own log line of the failed login
    assert last.startswith("loosely broker: --schema-registry-listen: this broker refused the services' client "
                           "settings: "), r.stderr
    assert "Authentication failed" in last and "Traceback" not in r.stderr, r.stderr
    assert time.monotonic() - started < 30
    write_properties("console-secret")
    proc = subprocess.Popen([*secured_broker, "--services-client-config", str(properties)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        bootstrap = re.search(r"SASL_SSL://([\d.]+:\d+)", proc.stdout.readline())
        assert bootstrap, "the broker's first line names its listener"
        registry_url = printed_url(proc, "schema registry on")
        url = printed_url(proc, "console on")
        from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

        schema_id = SchemaRegistryClient({"url": registry_url}).register_schema(
            "secured-value", Schema('{"type":"record","name":"R","fields":[{"name":"id","type":"long"}]}', "AVRO"))
        assert schema_id == 1  # stored in _schemas through the SASL_SSL listener
        p = Producer({"bootstrap.servers": bootstrap.group(1), "security.protocol": "SASL_SSL",
                      "ssl.ca.location": str(certs.ca_crt), "sasl.mechanism": "SCRAM-SHA-512",
                      "sasl.username": "console", "sasl.password": "console-secret"})
        p.produce("orders", key=b"o1", value=b"an order")
        assert p.flush(30) == 0
        page = urllib.request.urlopen(url + "/", timeout=10).read().decode()
        assert 'href="/topics/orders"' in page  # the console lists the topics it reads over SASL_SSL
        page = urllib.request.urlopen(url + "/topics/orders", timeout=10).read().decode()
        size = re.search(r'<td class="num size">([^<]*)</td>', page)  # DescribeLogDirs over its own connection
        assert size is not None and size.group(1) not in ("-", "0 B"), page
        page = urllib.request.urlopen(url + "/topics/_schemas/messages", timeout=10).read().decode()
        assert "secured-value" in page
    finally:
        assert _stop(proc) == 0
