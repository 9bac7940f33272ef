"""SASL/PLAIN and SCRAM over SASL_PLAINTEXT and SASL_SSL, differential: the same clients and checks on both brokers.

Both brokers are set up from the same Kafka settings (JAAS lines, sasl.enabled.mechanisms, one PEM key store made
here) and the same ``--add-scram`` specs, once per module. Most checks use the SASL_PLAINTEXT listener; kcat runs
over both.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiokafka
import confluent_kafka
import kafka
import pytest
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from kio.index import load_request_schema

from broker._raw import Raw
from compat._java import jars_dir, run_java
from compat._kafka_tools import kafka_command
from compat._roundtrip import produce_and_consume
from loosely.broker.config import BrokerConfig, split_kafka_settings
from loosely.broker.server import BrokerThread
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, build, encode_request
from loosely.registry import SchemaRegistry
from loosely.registry._election import Elector, Identity, KafkaSecurity
from loosely.security.scram import parse_scram_spec
from loosely.testing import ApacheKafka
from loosely.testing.certs import DevCerts, make_dev_certs

PLAIN_JAAS = (
    'org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret" user_bob="bob-secret";'
)
SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
SETTINGS = {
    "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER",
    "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
    "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": SCRAM_JAAS,
    "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": SCRAM_JAAS,
    # unsecured JWTs: Kafka's default OAUTHBEARER validator without a server callback handler class
    "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": (
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
    ),
}


def tls_settings(certs: DevCerts) -> dict[str, str]:
    """SETTINGS plus a SASL_SSL listener taking the same mechanisms, with the module's PEM key store."""
    sasl_ssl = {k.replace("sasl_plaintext", "sasl_ssl"): v for k, v in SETTINGS.items() if k.startswith("listener.")}
    return {**SETTINGS, **sasl_ssl, "ssl.keystore.type": "PEM", "ssl.keystore.location": str(certs.broker.pem)}


SCRAM_USERS = [f"{m}=[name=alice,password=alice-secret]" for m in ("SCRAM-SHA-256", "SCRAM-SHA-512")]
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def loosely_sasl_config(data_dir: Path, certs: DevCerts | None = None, **extra: object) -> BrokerConfig:
    """A SASL_PLAINTEXT loosely broker from the same Kafka settings and --add-scram specs as the Kafka below.

    With ``certs``, a SASL_SSL listener beside it.
    """
    listeners = {"listeners": "SASL_PLAINTEXT://127.0.0.1:0"}
    if certs is not None:
        listeners = {"listeners": "SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0", **tls_settings(certs)}
    settings, _, unknown = split_kafka_settings({**SETTINGS, **listeners})
    assert not unknown
    creds = tuple((u, m.name, c) for u, m, c in map(parse_scram_spec, SCRAM_USERS))
    return BrokerConfig(
        data_dir=str(data_dir), initial_scram_credentials=creds,
        **settings, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return make_dev_certs(tmp_path_factory.mktemp("sasl-certs"))


@pytest.fixture(scope="module")
def loosely_sasl(tmp_path_factory: pytest.TempPathFactory, certs: DevCerts) -> Iterator[dict[str, str]]:
    with BrokerThread(loosely_sasl_config(tmp_path_factory.mktemp("loosely-sasl"), certs)) as b:
        yield {name: b.bootstrap_servers_for(name) for name in ("SASL_PLAINTEXT", "SASL_SSL")}


@pytest.fixture(scope="module")
def kafka_sasl(jars_dir: Path, tmp_path_factory: pytest.TempPathFactory, certs: DevCerts) -> Iterator[dict[str, str]]:
    kafka = ApacheKafka(
        base_dir=tmp_path_factory.mktemp("kafka-sasl"),
        jars_dir=jars_dir,
        listeners={"SASL_PLAINTEXT": "SASL_PLAINTEXT", "SASL_SSL": "SASL_SSL"},
        format_args=[a for spec in SCRAM_USERS for a in ("--add-scram", spec)],
        config=tls_settings(certs),
    )
    with kafka:
        yield {name: kafka.bootstrap(name) for name in ("SASL_PLAINTEXT", "SASL_SSL")}


@pytest.fixture(params=["loosely", "kafka"])
def sasl_listeners(request: pytest.FixtureRequest) -> dict[str, str]:
    """The broker's bootstrap address per listener name."""
    listeners: dict[str, str] = request.getfixturevalue("loosely_sasl" if request.param == "loosely" else "kafka_sasl")
    return listeners


@pytest.fixture
def sasl_bootstrap(sasl_listeners: dict[str, str]) -> str:
    return sasl_listeners["SASL_PLAINTEXT"]


def _conf(bootstrap: str, mechanism: str, user: str = "alice", password: str = "alice-secret") -> dict[str, object]:
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "sasl_plaintext",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_kafka_produce_consume(sasl_bootstrap: str, mechanism: str) -> None:
    produce_and_consume(_conf(sasl_bootstrap, mechanism), b"over sasl")


def _auth_error(bootstrap: str, mechanism: str, password: str) -> KafkaError:
    errors: list[KafkaError] = []
    admin = AdminClient({**_conf(bootstrap, mechanism, password=password), "error_cb": errors.append})
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        admin.poll(0.2)  # error_cb is served by poll
    assert errors, "no error reported"
    return errors[0]


@pytest.mark.parametrize(
    ("mechanism", "message"),
    [
        ("PLAIN", "Authentication failed: Invalid username or password"),
        ("SCRAM-SHA-256", "Authentication failed during authentication due to invalid credentials with SASL "
         "mechanism SCRAM-SHA-256"),
        ("SCRAM-SHA-512", "Authentication failed during authentication due to invalid credentials with SASL "
         "mechanism SCRAM-SHA-512"),
    ],
)  # fmt: skip
def test_wrong_password(sasl_bootstrap: str, mechanism: str, message: str) -> None:
    e = _auth_error(sasl_bootstrap, mechanism, "wrong")
    assert e.code() == KafkaError._AUTHENTICATION
    assert message in e.str()


def test_unknown_mechanism_and_requests_before_authentication(sasl_bootstrap: str) -> None:
    raw = Raw(sasl_bootstrap)
    r = raw.request(ApiKey.SASL_HANDSHAKE, 1, build_request(ApiKey.SASL_HANDSHAKE, 1, mechanism="GSSAPI"))
    assert r.error_code == ErrorCode.unsupported_sasl_mechanism  # type: ignore[attr-defined]
    assert sorted(r.mechanisms) == sorted([*MECHANISMS, "OAUTHBEARER"])  # type: ignore[attr-defined]
    assert raw.closed_by_peer()
    raw = Raw(sasl_bootstrap)  # Metadata before authenticating: the connection is closed without an answer
    raw.send(
        encode_request(
            ApiKey.METADATA,
            12,
            1,
            build_request(
                ApiKey.METADATA,
                12,
                topics=None,
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            ),
        )
    )
    assert raw.closed_by_peer()


def test_garbage_sasl_bytes(sasl_bootstrap: str) -> None:
    for token in (b"\xff\x00garbage", b"n,,n=alice", b"", os.urandom(300)):
        raw = Raw(sasl_bootstrap)
        assert (
            raw.request(
                ApiKey.SASL_HANDSHAKE, 1, build_request(ApiKey.SASL_HANDSHAKE, 1, mechanism="SCRAM-SHA-256")
            ).error_code
            == 0
        )  # type: ignore[attr-defined]
        r = raw.request(ApiKey.SASL_AUTHENTICATE, 2, build_request(ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=token))
        assert r.error_code == ErrorCode.sasl_authentication_failed  # type: ignore[attr-defined]
        assert r.error_message == (  # type: ignore[attr-defined]
            "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256"
        )
        assert raw.closed_by_peer()


def build_request(api_key: int, version: int, **fields: object) -> object:
    return build(load_request_schema(api_key, version), **fields)


def newer_librdkafka(directory: Path) -> dict[str, str]:
    """An environment that runs Debian's kcat on the librdkafka confluent-kafka ships (2.16 rather than 2.0.2).

    librdkafka keeps its ABI across 2.x, so the wheel's library (bundled under a hashed file name) loads in place of
    the system's once the loader finds it as ``librdkafka.so.1``: what a user gets with a kcat built on a current
    librdkafka, whose SCRAM client no longer has the nonce bug (confluentinc/librdkafka#4895) that Kafka 4 refuses.
    """
    wheel_libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    (lib,) = wheel_libs.glob("librdkafka-*.so*")
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "librdkafka.so.1"
    if not link.exists():
        link.symlink_to(lib)
    return {**os.environ, "LD_LIBRARY_PATH": str(directory)}


def _kcat(bootstrap: str, mechanism: str, password: str, *args: str, stdin: str | None = None,
          tls: DevCerts | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    protocol = ["-X", "security.protocol=sasl_plaintext"]
    if tls is not None:
        protocol = ["-X", "security.protocol=sasl_ssl", "-X", f"ssl.ca.location={tls.ca_crt}"]
    sasl = [*protocol, "-X", f"sasl.mechanisms={mechanism}", "-X", "sasl.username=alice"]
    cmd = ["kcat", "-b", bootstrap, *sasl, "-X", f"sasl.password={password}", *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, check=False, env=env)


def _kcat_version(env: dict[str, str] | None) -> str:
    out = subprocess.run(["kcat", "-V"], capture_output=True, text=True, timeout=30, check=True, env=env).stdout
    return out.split("librdkafka ", 1)[1].split()[0]


def test_kcat_plain(sasl_bootstrap: str) -> None:
    """Debian's kcat as installed (librdkafka 2.0.2), PLAIN: it logs in, and a wrong password is refused."""
    topic = f"kcat-sasl-{uuid.uuid4().hex[:8]}"
    out = _kcat(sasl_bootstrap, "PLAIN", "alice-secret", "-P", "-t", topic, stdin="kcat-plain\n")
    assert out.returncode == 0, out.stderr
    out = _kcat(sasl_bootstrap, "PLAIN", "alice-secret", "-C", "-t", topic, "-e", "-q")
    assert out.stdout.split() == ["kcat-plain"], out.stderr
    bad = _kcat(sasl_bootstrap, "PLAIN", "nope", "-L", "-m", "2")
    assert bad.returncode != 0 and "Authentication failed: Invalid username or password" in bad.stderr


def test_kcat_scram_with_debians_librdkafka_is_refused_by_both(sasl_bootstrap: str) -> None:
    """librdkafka 2.0.2's SCRAM final message repeats its own nonce: both brokers check it and refuse the login."""
    bad = _kcat(sasl_bootstrap, "SCRAM-SHA-256", "alice-secret", "-L", "-m", "5")
    assert _kcat_version(None).startswith("2.0.")
    assert bad.returncode != 0 and "SASL authentication error" in bad.stderr, bad.stderr


@pytest.mark.parametrize("listener", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kcat_on_a_current_librdkafka(sasl_listeners: dict[str, str], certs: DevCerts, tmp_path_factory:
                                      pytest.TempPathFactory, listener: str, mechanism: str) -> None:
    env = newer_librdkafka(tmp_path_factory.getbasetemp() / "librdkafka")
    assert not _kcat_version(env).startswith("2.0.")
    tls = certs if listener == "SASL_SSL" else None
    bootstrap, topic = sasl_listeners[listener], f"kcat-{mechanism.lower()}-{uuid.uuid4().hex[:8]}"
    lines = "".join(f"{mechanism} line {i}\n" for i in range(100))
    out = _kcat(bootstrap, mechanism, "alice-secret", "-P", "-t", topic, stdin=lines, tls=tls, env=env)
    assert out.returncode == 0, out.stderr
    out = _kcat(bootstrap, mechanism, "alice-secret", "-C", "-t", topic, "-o", "beginning", "-e", "-q", tls=tls,
                env=env)
    assert out.returncode == 0 and out.stdout == lines, out.stderr
    bad = _kcat(bootstrap, mechanism, "wrong", "-L", "-m", "5", tls=tls, env=env)
    assert bad.returncode != 0 and "Authentication failed" in bad.stderr, bad.stderr


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python(sasl_bootstrap: str, mechanism: str) -> None:
    topic = f"kp-sasl-{uuid.uuid4().hex[:8]}"
    conf = {"bootstrap_servers": sasl_bootstrap, "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
            "sasl_plain_username": "alice", "sasl_plain_password": "alice-secret"}  # fmt: skip
    p = kafka.KafkaProducer(**conf)
    p.send(topic, b"kafka-python").get(timeout=30)
    p.close()
    c = kafka.KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=20_000, **conf)
    assert next(iter(c)).value == b"kafka-python"
    c.close()


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_aiokafka(sasl_bootstrap: str, mechanism: str) -> None:
    topic = f"aio-sasl-{uuid.uuid4().hex[:8]}"
    conf = {"bootstrap_servers": sasl_bootstrap, "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
            "sasl_plain_username": "alice", "sasl_plain_password": "alice-secret"}  # fmt: skip

    async def run() -> None:
        p = aiokafka.AIOKafkaProducer(**conf)
        await p.start()
        try:
            await p.send_and_wait(topic, b"aiokafka")
        finally:
            await p.stop()
        c = aiokafka.AIOKafkaConsumer(topic, auto_offset_reset="earliest", **conf)
        await c.start()
        try:
            m = await asyncio.wait_for(c.getone(), 30)
            assert m.value == b"aiokafka"
        finally:
            await c.stop()
        bad = aiokafka.AIOKafkaProducer(**{**conf, "sasl_plain_password": "wrong"})
        with pytest.raises((SaslAuthenticationFailed, KafkaConnectionError)) as e:
            await bad.start()
        await bad.stop()
        assert "Authentication failed" in str(e.value) or "Unable to bootstrap" in str(e.value)

    asyncio.run(run())


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256"])  # kafka-configs below is Java over SCRAM-SHA-512
def test_java_clients(sasl_bootstrap: str, mechanism: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = "plain.PlainLoginModule" if mechanism == "PLAIN" else "scram.ScramLoginModule"
    props = tmp_path / "client.properties"
    props.write_text(
        f"security.protocol=SASL_PLAINTEXT\nsasl.mechanism={mechanism}\n"
        f"sasl.jaas.config=org.apache.kafka.common.security.{module} required "
        'username="alice" password="alice-secret";\n'
    )
    monkeypatch.setenv("LOOSELY_CLIENT_CONFIG", str(props))
    topic = f"java-sasl-{uuid.uuid4().hex[:8]}"
    r = run_java("interop/java-clients", "ClientsProbe", "produce", sasl_bootstrap, topic, "2", "none", "true")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_java("interop/java-clients", "ClientsProbe", "consume", sasl_bootstrap, topic, "0", "2")
    assert r.stdout.split("\n")[:2] == ["0 key-0 value-0", "1 key-1 value-1"], r.stderr[-2000:]


def test_python_and_java_clients_over_sasl_ssl(sasl_listeners: dict[str, str], certs: DevCerts, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """kafka-python, aiokafka and the Java client log in with SCRAM-SHA-512 over TLS, trusting the module's CA."""
    bootstrap, topic = sasl_listeners["SASL_SSL"], f"ssl-{uuid.uuid4().hex[:8]}"
    sasl = {"bootstrap_servers": bootstrap, "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "alice", "sasl_plain_password": "alice-secret"}  # fmt: skip
    p = kafka.KafkaProducer(**sasl, ssl_cafile=str(certs.ca_crt))
    p.send(topic, b"kafka-python", partition=0).get(timeout=30)
    p.close()

    async def aio() -> bytes:
        from aiokafka.helpers import create_ssl_context

        ctx = create_ssl_context(cafile=str(certs.ca_crt))
        c = aiokafka.AIOKafkaConsumer(topic, auto_offset_reset="earliest", ssl_context=ctx, **sasl)
        await c.start()
        try:
            m = await asyncio.wait_for(c.getone(), 30)
            return bytes(m.value)
        finally:
            await c.stop()

    assert asyncio.run(aio()) == b"kafka-python"
    props = tmp_path / "client.properties"
    props.write_text(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="alice" password="alice-secret";\n'
        f"ssl.truststore.type=PEM\nssl.truststore.location={certs.ca_crt}\n"
    )
    monkeypatch.setenv("LOOSELY_CLIENT_CONFIG", str(props))
    r = run_java("interop/java-clients", "ClientsProbe", "produce", bootstrap, topic, "2", "none", "true")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_java("interop/java-clients", "ClientsProbe", "consume", bootstrap, topic, "0", "3")
    assert r.stdout.split("\n")[1:3] == ["1 key-0 value-0", "2 key-1 value-1"], r.stdout + r.stderr[-2000:]


def _configs(bootstrap: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Kafka's own kafka-configs (ConfigCommand, wherever the release keeps it) as admin over SCRAM."""
    props = tmp_path / "admin.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common."
        'security.scram.ScramLoginModule required username="alice" password="alice-secret";\n'
    )
    cmd = ["java", "-Xmx256m", "-cp", f"{jars_dir()}/*", kafka_command("ConfigCommand"), "--bootstrap-server",
           bootstrap, "--command-config", str(props), "--entity-type", "users", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_kafka_configs_scram_users(sasl_bootstrap: str, tmp_path: Path) -> None:
    user = f"carol{uuid.uuid4().hex[:6]}"
    add = "SCRAM-SHA-256=[iterations=8192,password=carol-secret]"
    r = _configs(sasl_bootstrap, tmp_path, "--entity-name", user, "--alter", "--add-config", add)
    assert r.returncode == 0, r.stderr[-2000:]
    r = _configs(sasl_bootstrap, tmp_path, "--entity-name", user, "--describe")
    assert "SCRAM-SHA-256=iterations=8192" in r.stdout, r.stdout + r.stderr[-2000:]
    admin = AdminClient(_conf(sasl_bootstrap, "SCRAM-SHA-256", user, "carol-secret"))
    assert admin.list_topics(timeout=20) is not None
    deletion = UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_256)
    admin = AdminClient(_conf(sasl_bootstrap, "SCRAM-SHA-256"))
    admin.alter_user_scram_credentials([deletion])[user].result(30)
    assert _auth_error(sasl_bootstrap, "SCRAM-SHA-256", "carol-secret").code() == KafkaError._AUTHENTICATION


def test_admin_api_describe_and_errors(sasl_bootstrap: str) -> None:
    admin = AdminClient(_conf(sasl_bootstrap, "SCRAM-SHA-256"))
    described = admin.describe_user_scram_credentials(["alice"])["alice"].result(timeout=30)
    infos = sorted((i.mechanism, i.iterations) for i in described.scram_credential_infos)
    assert infos == [(ScramMechanism.SCRAM_SHA_256, 4096), (ScramMechanism.SCRAM_SHA_512, 4096)]
    missing = admin.describe_user_scram_credentials(["nobody"])["nobody"]
    with pytest.raises(KafkaException) as e:
        missing.result(timeout=30)
    assert e.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion("dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 20000), b"pw")]
    )
    with pytest.raises(KafkaException) as e:
        futures["dave"].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.UNACCEPTABLE_CREDENTIAL


def _jwt(claims: dict[str, object]) -> str:
    def b64(doc: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'none'})}.{b64(claims)}."


def test_oauthbearer_unsecured_tokens(sasl_bootstrap: str) -> None:
    conf = {"bootstrap.servers": sasl_bootstrap, "security.protocol": "sasl_plaintext", "sasl.mechanism": "OAUTHBEARER",
            "enable.sasl.oauthbearer.unsecure.jwt": True, "sasl.oauthbearer.config": "principal=alice"}  # fmt: skip
    p = Producer(conf)
    delivered: list[object] = []
    p.produce(f"oauth-{uuid.uuid4().hex[:8]}", b"token", on_delivery=lambda e, m: delivered.append(e))
    assert p.flush(30) == 0 and delivered == [None]
    # an expired token: Kafka's JSON challenge, then (after the client's 0x01) SASL_AUTHENTICATION_FAILED with it
    raw = Raw(sasl_bootstrap)
    r = raw.request(ApiKey.SASL_HANDSHAKE, 1, build_request(ApiKey.SASL_HANDSHAKE, 1, mechanism="OAUTHBEARER"))
    assert r.error_code == 0  # type: ignore[attr-defined]
    token = _jwt({"sub": "alice", "exp": int(time.time()) - 3600})
    message = f"n,,\x01auth=Bearer {token}\x01\x01".encode()
    r = raw.request(ApiKey.SASL_AUTHENTICATE, 2, build_request(ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=message))
    assert (r.error_code, r.auth_bytes) == (0, b'{"status":"invalid_token"}')  # type: ignore[attr-defined]
    r = raw.request(ApiKey.SASL_AUTHENTICATE, 2, build_request(ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=b"\x01"))
    assert r.error_code == ErrorCode.sasl_authentication_failed  # type: ignore[attr-defined]
    assert r.error_message == '{"status":"invalid_token"}'  # type: ignore[attr-defined]
    assert raw.closed_by_peer()


def test_registries_elect_a_leader_over_sasl(sasl_bootstrap: str) -> None:
    """Two schema registries on a SASL-only cluster, one logging in with SCRAM-SHA-512 and one with PLAIN: both
    join the election, the follower forwards a registration to the leader, and both serve the same id."""
    topic = f"_schemas-{uuid.uuid4().hex[:8]}"
    scram = {k: str(v) for k, v in _conf(sasl_bootstrap, "SCRAM-SHA-512").items() if k != "bootstrap.servers"}
    plain = {k: str(v) for k, v in _conf(sasl_bootstrap, "PLAIN").items() if k != "bootstrap.servers"}
    with SchemaRegistry(sasl_bootstrap, topic=topic, client_config=scram, session_timeout_ms=6_000) as first, \
            SchemaRegistry(sasl_bootstrap, topic=topic, client_config=plain, session_timeout_ms=6_000) as second:
        electors = [r.elector for r in (first, second)]
        assert all(e is not None for e in electors)
        deadline = time.monotonic() + 30
        while sorted(e.leadership().is_leader for e in electors if e is not None) != [False, True]:
            assert time.monotonic() < deadline, [e.last_trouble for e in electors if e is not None]
            time.sleep(0.1)
        follower = next(r for r in (first, second) if r.elector is not None and not r.elector.leadership().is_leader)
        registered = SchemaRegistryClient({"url": follower.url}).register_schema(
            "over-sasl-value", Schema('{"type": "record", "name": "R", "fields": []}', "AVRO"))
        for r in (first, second):
            assert SchemaRegistryClient({"url": r.url}).get_latest_version("over-sasl-value").schema_id == registered


def test_the_election_says_why_a_login_fails(sasl_bootstrap: str) -> None:
    wrong = KafkaSecurity.from_client_config({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
                                              "sasl.username": "alice", "sasl.password": "nope"})
    elector = Elector(sasl_bootstrap, Identity("127.0.0.1", 1, "http", True), group_id=f"g-{uuid.uuid4().hex[:8]}",
                      session_timeout_ms=6_000, security=wrong).start()
    try:
        deadline = time.monotonic() + 15
        while "SASL authentication" not in elector.last_trouble:
            assert time.monotonic() < deadline, elector.last_trouble
            time.sleep(0.05)
        assert elector.leadership().leader is None
    finally:
        elector.stop()
