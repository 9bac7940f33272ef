"""The schema registry behind HTTP Basic auth (the broker's SCRAM users) and TLS, driven by confluent-kafka's
SchemaRegistryClient as an application would configure it (``basic.auth.user.info``, ``ssl.ca.location``).

Confluent's registry is not installable here (no Docker, not on PyPI), so these tests pin loosely's answers to what
Confluent documents: 401 with ``{"error_code": 401, "message": "Unauthorized"}`` and a Basic challenge."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from loosely.registry import SchemaRegistry
from loosely.security.credentials import CredentialStore
from loosely.security.passwords import CredentialsFile, PasswordCheck
from loosely.security.scram import SCRAM_MECHANISMS, credential_from_password
from loosely.storage.fs import OsFileSystem
from loosely.testing import embedded_broker
from loosely.testing.certs import DevCerts, make_dev_certs
from loosely.tls.context import ServerContexts
from loosely.tls.settings import TlsSettings

SHA256 = SCRAM_MECHANISMS["SCRAM-SHA-256"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return make_dev_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def users_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("users")
    CredentialStore(OsFileSystem(), str(d)).put("alice", "SCRAM-SHA-256", credential_from_password(SHA256, "wonder"))
    return d


@pytest.fixture(scope="module")
def registry(users_dir: Path, certs: DevCerts) -> Iterator[SchemaRegistry]:
    tls = ServerContexts("registry", TlsSettings(keystore_location=str(certs.broker.pem)))
    check = PasswordCheck(CredentialsFile(str(users_dir / "scram-credentials.json")))
    with embedded_broker() as broker, SchemaRegistry(broker.bootstrap_servers, authenticate=check, tls=tls.current,
                                                     tls_handshake_timeout_ms=1000) as r:
        yield r


def client(registry: SchemaRegistry, certs: DevCerts, user_info: str | None) -> SchemaRegistryClient:
    conf = {"url": registry.url, "ssl.ca.location": str(certs.ca_crt)}
    if user_info is not None:
        conf["basic.auth.user.info"] = user_info
    return SchemaRegistryClient(conf)


def test_a_user_of_the_broker_registers_and_reads_over_https(registry: SchemaRegistry, certs: DevCerts) -> None:
    assert registry.url.startswith("https://127.0.0.1:")
    c = client(registry, certs, "alice:wonder")
    record = '{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}'
    schema_id = c.register_schema("orders-value", Schema(record, "AVRO"))
    assert json.loads(c.get_schema(schema_id).schema_str) == json.loads(record)
    assert "orders-value" in c.get_subjects()


@pytest.mark.parametrize("user_info", [None, "alice:wrong", "mallory:wonder", "alice:"])
def test_missing_or_wrong_credentials_get_401(registry: SchemaRegistry, certs: DevCerts, user_info: str | None) -> None:
    before = registry.server.statistics().authentication_failures
    with pytest.raises(SchemaRegistryError) as e:
        client(registry, certs, user_info).get_subjects()
    assert (e.value.http_status_code, e.value.error_code, e.value.error_message) == (401, 401, "Unauthorized")
    assert registry.server.statistics().authentication_failures == before + 1


def test_the_401_carries_a_basic_challenge_and_a_write_is_not_applied(registry: SchemaRegistry,
                                                                       certs: DevCerts) -> None:
    context = ssl.create_default_context(cafile=str(certs.ca_crt))
    request = urllib.request.Request(f"{registry.url}/subjects/sneaky-value/versions", method="POST",
                                     data=json.dumps({"schema": '"string"'}).encode(),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, context=context, timeout=10)
    assert e.value.code == 401
    assert e.value.headers["WWW-Authenticate"] == 'Basic realm="loosely schema registry"'
    assert json.loads(e.value.read()) == {"error_code": 401, "message": "Unauthorized"}
    good = "Basic " + base64.b64encode(b"alice:wonder").decode()
    listing = urllib.request.Request(f"{registry.url}/subjects", headers={"Authorization": good})
    with urllib.request.urlopen(listing, context=context, timeout=10) as r:
        assert "sneaky-value" not in json.loads(r.read())


def test_plaintext_http_to_the_tls_port_is_dropped_and_counted(registry: SchemaRegistry, certs: DevCerts) -> None:
    before = registry.server.statistics().tls_handshake_failures
    with socket.create_connection(("127.0.0.1", registry.port), timeout=10) as s:
        s.sendall(b"GET /subjects HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = s.recv(100)
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # closed: nothing is served in the clear
    with socket.create_connection(("127.0.0.1", registry.port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, and then nothing: times out (1 s)
        assert s.recv(100) == b""
    assert registry.server.statistics().tls_handshake_failures >= before + 2
    assert client(registry, certs, "alice:wonder").get_subjects() is not None  # still serving


def test_a_changed_password_takes_effect_on_the_next_request(registry: SchemaRegistry, certs: DevCerts,
                                                             users_dir: Path) -> None:
    c_old = client(registry, certs, "alice:wonder")
    c_old.get_subjects()  # the good password is cached now
    store = CredentialStore(OsFileSystem(), str(users_dir))
    store.put("alice", "SCRAM-SHA-256", credential_from_password(SHA256, "land", 8192))
    try:
        with pytest.raises(SchemaRegistryError) as e:
            client(registry, certs, "alice:wonder").get_subjects()
        assert e.value.http_status_code == 401
        assert client(registry, certs, "alice:land").get_subjects() is not None
    finally:
        store.put("alice", "SCRAM-SHA-256", credential_from_password(SHA256, "wonder"))


def test_password_check_caches_successes_only() -> None:
    users = {"alice": {"SCRAM-SHA-512": credential_from_password(SCRAM_MECHANISMS["SCRAM-SHA-512"], "pw")}}
    check = PasswordCheck(lambda: users, cache_entries_max=2)
    assert check("alice", "pw") and check("alice", "pw")
    assert not check("alice", "PW") and not check("nobody", "pw")
    assert check.failures_total == 2
    users["alice"] = {}  # removed: no cached success lets the old password in
    assert not check("alice", "pw")


def test_cli_refuses_a_missing_users_file_in_one_line(tmp_path: Path) -> None:
    with embedded_broker() as broker:
        done = subprocess.run([sys.executable, "-m", "loosely.cli.main", "schema-registry", "-b",
                               broker.bootstrap_servers, "--listen", "127.0.0.1:0",
                               "--users-file", str(tmp_path / "nope.json")],
                              check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "nope.json" in done.stderr and "Traceback" not in done.stderr
