"""Every loosely client against a secured Apache Kafka: SCRAM-SHA-256 over SASL_PLAINTEXT and over SASL_SSL.

One Apache Kafka for the module, with a CA and a broker certificate made here by the openssl command line. The
SASL_PLAINTEXT listener also takes PLAIN, for side-by-side runs with Debian's kcat: its librdkafka (2.0.2) cannot
log in with SCRAM to Kafka 4 (a client-final-message nonce bug fixed in librdkafka 2.6.1, confluentinc/librdkafka
#4895; Kafka 4 checks the nonce strictly), while confluent-kafka's librdkafka can. The clients only ever get the
secured listeners (the PLAINTEXT one is Kafka's inter-broker listener): produce and
consume (-X as kcat takes it, and --client-config with a Java client's property names), topics, groups, a view
run into SQLite and its status, top, mirror (secured to plain loosely, and secured to secured), and a Hollow
producer announcing through KafkaAnnouncer to a consumer that follows it. A wrong password or an untrusted
certificate is one line and a non-zero exit, at once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from hollow.api.models import Catalog, Movie
from loosely.clients.client_config import client_config
from loosely.hollow.api import Consumer as HollowConsumer
from loosely.hollow.api import InMemoryBlobStore, KafkaAnnouncementWatcher, KafkaAnnouncer
from loosely.hollow.api import Producer as HollowProducer
from loosely.registry import SchemaRegistry
from loosely.testing import ApacheKafka, embedded_broker
from loosely.testing.certs import make_dev_certs

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "admin", "admin-secret"
JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


@dataclass(frozen=True)
class Secured:
    kafka: ApacheKafka
    sasl: str  # SASL_PLAINTEXT bootstrap
    ssl: str  # SASL_SSL bootstrap
    properties: Path  # a Java client's properties for SASL_SSL (Java names: translated by loosely)
    ca: Path

    @property
    def x(self) -> list[str]:
        """kcat-style -X settings for the SASL_PLAINTEXT listener (librdkafka names)."""
        return self.x_with("SCRAM-SHA-256")

    def x_with(self, mechanism: str, password: str = PASSWORD) -> list[str]:
        return ["-X", "security.protocol=SASL_PLAINTEXT", "-X", f"sasl.mechanism={mechanism}",
                "-X", f"sasl.username={USER}", "-X", f"sasl.password={password}"]

    def config(self) -> dict[str, str]:
        """The librdkafka settings of the properties file (SASL_SSL)."""
        return client_config([self.properties])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(d: Path) -> None:
    """A CA and a broker certificate for 127.0.0.1/localhost; the broker's PEM keystore holds its PKCS#8 key."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=loosely-test-ca", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
             "-subj", "/CN=localhost", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "broker.crt", "-days", "2", "-extfile", "san.cnf", cwd=d)
    _openssl("pkcs8", "-topk8", "-nocrypt", "-in", "broker.key", "-out", "broker.pk8", cwd=d)
    (d / "broker-keystore.pem").write_text((d / "broker.pk8").read_text() + (d / "broker.crt").read_text())


@pytest.fixture(scope="module")
def secured(jars_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    d = tmp_path_factory.mktemp("secured-kafka")
    _certificates(d)
    kafka = ApacheKafka(
        base_dir=d / "kafka", jars_dir=jars_dir,
        listeners={"SASL_PLAINTEXT": "SASL_PLAINTEXT", "SASL_SSL": "SASL_SSL"},
        format_args=["--add-scram", f"SCRAM-SHA-256=[name={USER},password={PASSWORD}]"],
        config={
            "sasl.enabled.mechanisms": "SCRAM-SHA-256",
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "SCRAM-SHA-256,PLAIN",
            "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": JAAS,
            "listener.name.sasl_plaintext.plain.sasl.jaas.config":
                f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}="{PASSWORD}";',
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": JAAS,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(d / "broker-keystore.pem"),
        },
    )
    props = d / "client.properties"
    # as a Java client's file reads: Java's names, a JAAS line continued over two lines, a PEM truststore
    props.write_text(
        "# the cluster's SASL_SSL listener\n"
        "security.protocol=SASL_SSL\n"
        "sasl.mechanism=SCRAM-SHA-256\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n"
        f'    username="{USER}" password="{PASSWORD}";\n'
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={d / 'ca.pem'}\n"
    )
    kafka.start()
    try:
        yield Secured(kafka, kafka.bootstrap("SASL_PLAINTEXT"), kafka.bootstrap("SASL_SSL"), props, d / "ca.pem")
    finally:
        kafka.stop()


def _env(*paths: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *map(str, paths)])}


def loosely(*args: str, stdin: str | None = None, cwd: Path | None = None,
            timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loosely.cli.main", *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout_s, check=False, cwd=cwd, env=_env())


def ok(*args: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    r = loosely(*args, stdin=stdin, cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and PASSWORD not in r.stderr
    return r.stdout


def _topic() -> str:
    return f"secured-{uuid.uuid4().hex[:8]}"


def _produce(config: dict[str, str], bootstrap: str, topic: str, records: list[tuple[str, str]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, **config})
    for k, v in records:
        p.produce(topic, key=k.encode(), value=v.encode())
    assert p.flush(30) == 0


def wait_for(what: str, cond: Callable[[], bool], timeout_s: float = 30,
             also: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what} {also()}"
        time.sleep(0.1)


# --- produce / consume ------------------------------------------------------------------------------------------


def test_produce_and_consume_with_x_and_client_config_as_kcat_does(secured: Secured) -> None:
    topic = _topic()
    ok("produce", "-b", secured.ssl, "-t", topic, "-K", ":", "--client-config", str(secured.properties),
       stdin="k1:one\nk2:two\nk3:three\n")
    # -X over SASL_PLAINTEXT: SCRAM, and PLAIN with the same bytes as Debian's kcat with the same command line
    args = ["-C", "-b", secured.sasl, "-t", topic, "-e", "-o", "beginning", "-f", "%k=%s@%o\n"]
    expected = "k1=one@0\nk2=two@1\nk3=three@2\n"
    ours = loosely("kcat", *args, *secured.x, "-v", "-v")
    assert (ours.returncode, ours.stdout) == (0, expected), ours.stderr
    assert "served by the native path" not in ours.stderr  # plain TCP cannot speak SASL: librdkafka served it
    ours = loosely("kcat", *args, *secured.x_with("PLAIN"))
    theirs = subprocess.run(["kcat", *args, *secured.x_with("PLAIN")], capture_output=True, text=True, timeout=60,
                            check=False)
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout) == (0, expected)
    # and consume over SASL_SSL from the Java-style file
    assert ok("consume", "-b", secured.ssl, "-t", topic, "-e", "--client-config", str(secured.properties)) == \
        "one\ntwo\nthree\n"


# --- topics and groups ------------------------------------------------------------------------------------------


def test_topics_and_groups(secured: Secured) -> None:
    topic, group = _topic(), f"g-{uuid.uuid4().hex[:8]}"
    conf = ["--client-config", str(secured.properties)]
    ok("topics", "create", "-b", secured.ssl, topic, "-p", "2", *conf)
    listed = json.loads(ok("topics", "list", "-b", secured.sasl, "--json", *secured.x))
    assert {"topic": topic, "partitions": 2} in listed
    _produce(secured.config(), secured.ssl, topic, [("a", "1"), ("b", "2"), ("c", "3")])
    c = Consumer({"bootstrap.servers": secured.ssl, "group.id": group, **secured.config()})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 1), TopicPartition(topic, 1, 0)], asynchronous=False)
    finally:
        c.close()
    assert group in [g["group"] for g in json.loads(ok("groups", "list", "-b", secured.ssl, "--json", *conf))]
    doc = json.loads(ok("groups", "describe", "-b", secured.ssl, group, "--json", *conf))
    assert {(p["topic"], p["partition"], p["committed"]) for p in doc["partitions"]} == {(topic, 0, 1), (topic, 1, 0)}


# --- views and top ----------------------------------------------------------------------------------------------


def test_views_run_status_and_top(secured: Secured, tmp_path: Path) -> None:
    topic = _topic()
    _produce(secured.config(), secured.ssl, topic, [(f"k{i % 5}", str(i)) for i in range(50)])
    (tmp_path / "securedviews.py").write_text(
        f"from loosely.views import STRING, latest_by_key\nview = latest_by_key('latest', [{topic!r}], value=STRING)\n")
    sink = f"sqlite://{tmp_path / 'views.db'}"
    conf = ["--client-config", str(secured.properties)]
    out = ok("views", "run", "securedviews:view", "--sink", sink, "-b", secured.ssl, "--until-caught-up", *conf,
             cwd=tmp_path)
    assert json.loads(out)["records"] == 50
    (row,) = json.loads(ok("views", "status", "--sink", sink, "-b", secured.sasl, "--json", *secured.x))["views"]
    assert (row["view"], row["lag"], row["caught_up"]) == ("latest", 0, True)
    assert ok("views", "get", "--sink", sink, "latest", "k4").strip() == '"49"'
    # top: its broker panel scrapes a loosely broker's metrics; the views panel measures lag on the secured cluster
    _produce(secured.config(), secured.ssl, topic, [("k0", "late")] * 7)
    with embedded_broker(data_dir=str(tmp_path / "data"), metrics_listen="127.0.0.1:0") as b:
        assert b.broker.metrics is not None
        top = ok("top", "--metrics", f"127.0.0.1:{b.broker.metrics.port}", "--once", "--interval", "0.1",
                 "--views", sink, "-b", secured.ssl, *conf)
    line = next(x for x in top.splitlines() if x.startswith("latest "))
    assert line.split()[:4] == ["latest", "1", "serving", "7"], top
    # a rebuild reads everything again into version 2, then serves it
    out = ok("views", "rebuild", "securedviews:view", "--version", "2", "--sink", sink, "-b", secured.ssl,
             "--keep-old", *conf, cwd=tmp_path)
    assert json.loads(out.splitlines()[-1])["records"] == 57
    rows = json.loads(ok("views", "status", "--sink", sink, "-b", secured.ssl, "--json", *conf))["views"]
    assert {(r["version"], r["state"], r["lag"]) for r in rows} >= {(2, "serving", 0)}, rows


# --- mirror -----------------------------------------------------------------------------------------------------


def _mirror(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "loosely.cli.main", "mirror", "--offset-lag-max", "1",
                             "--checkpoint-interval-s", "3600", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())


def _values(config: dict[str, str], bootstrap: str, topic: str) -> list[str]:
    """The committed values on ``topic`` now (offsets would count the mirror's transaction markers too)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "count", "enable.partition.eof": True,
                  "auto.offset.reset": "earliest", "isolation.level": "read_committed", **config})
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None or not md.partitions:
            return []
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.partitions])
        values, at_end = [], set()
        deadline = time.monotonic() + 10
        while len(at_end) < len(md.partitions) and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error() is None:
                values.append((m.value() or b"").decode())
            elif m.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(m.partition())
        return values
    finally:
        c.close()


def _output(p: subprocess.Popen[str]) -> str:
    if p.poll() is None:
        return "(still running)"
    _, err = p.communicate()
    return f"(exited {p.returncode}: {err[-2000:]})"


def _stop(p: subprocess.Popen[str]) -> str:
    p.terminate()
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "Traceback" not in err and PASSWORD not in err
    return err


def test_mirror_from_the_secured_cluster_to_plain_loosely_and_to_a_secured_target(secured: Secured,
                                                                                  tmp_path: Path) -> None:
    topic = _topic()
    want = [f"v{i}" for i in range(20)]
    _produce(secured.config(), secured.ssl, topic, [("k", v) for v in want])  # one key: one partition, in order
    with embedded_broker(data_dir=str(tmp_path / "target")) as target:
        plain = _mirror("--source", secured.ssl, "--source-alias", "sec", "--source-client-config",
                        str(secured.properties), "--target", target.bootstrap_servers, "--target-alias", "loc",
                        "--topics", topic)
        # secured to secured: the same cluster's other listener as the target, its settings given item by item
        both = _mirror("--source", secured.ssl, "--source-alias", "up", "--source-client-config",
                       str(secured.properties), "--target", secured.sasl, "--target-alias", "down", "--topics", topic,
                       *(f"--target-config={s}" for s in secured.x[1::2]))
        try:
            wait_for("mirrored to loosely", lambda: _values({}, target.bootstrap_servers, f"sec.{topic}") == want,
                     also=lambda: _output(plain))
            wait_for("mirrored to the secured target",
                     lambda: _values(secured.config(), secured.ssl, f"up.{topic}") == want, also=lambda: _output(both))
        finally:
            errs = [_stop(plain), _stop(both)]
    assert [e.splitlines()[0].split(":")[0] for e in errs] == ["mirroring sec -> loc", "mirroring up -> down"], errs


# --- Hollow -----------------------------------------------------------------------------------------------------


def test_hollow_producer_announces_through_the_secured_log(secured: Secured) -> None:
    topic, ns = f"hollow-{uuid.uuid4().hex[:8]}", f"ns{uuid.uuid4().hex[:6]}"
    config = secured.config()
    announcer = KafkaAnnouncer(secured.ssl, topic, ns, session_timeout_ms=6_000, heartbeat_interval_ms=500,
                               client_config=config)
    store = InMemoryBlobStore()
    announcer.start()
    watcher = None
    try:
        assert announcer.wait_for_leadership(30_000), announcer.statistics()
        producer = HollowProducer(publisher=store, announcer=announcer, retriever=store, watcher=announcer,
                                  leader=announcer, version_minter=announcer, data_model=[Movie])
        cat = Catalog()
        v1 = producer.run_cycle(cat.populate)
        assert v1 is not None
        watcher = KafkaAnnouncementWatcher(secured.sasl, topic, ns, client_config=client_config(
            settings=[f"{s}" for s in secured.x[1::2]]))
        consumer = HollowConsumer(retriever=store, watcher=watcher)
        assert consumer.wait_for_version(v1, 10_000)
        cat.advance()
        v2 = producer.run_cycle(cat.populate)
        assert v2 is not None and v2 > v1
        assert consumer.wait_for_version(v2, 10_000)
    finally:
        if watcher is not None:
            watcher.close()
        announcer.stop()


# --- refusals ---------------------------------------------------------------------------------------------------


def _one_line_refusal(r: subprocess.CompletedProcess[str], started: float, *, contains: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert time.monotonic() - started < 10, "a refusal must not wait out a timeout"
    assert r.stderr.count("\n") == 1 and contains in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "wrong-secret" not in r.stderr


@pytest.mark.parametrize("argv", [
    ["topics", "list"],
    ["groups", "list"],
    ["views", "status", "--sink", "sqlite:///unused.db"],
])
def test_a_wrong_password_is_one_line_at_once(secured: Secured, argv: list[str], tmp_path: Path) -> None:
    started = time.monotonic()
    bad = [*secured.x[:-1], "sasl.password=wrong-secret"]
    r = loosely(*argv, "-b", secured.sasl, *bad, cwd=tmp_path)
    _one_line_refusal(r, started, contains="Authentication failed")


def test_mirror_with_a_wrong_password_on_one_side(secured: Secured, tmp_path: Path) -> None:
    started = time.monotonic()
    bad = [f"--target-config={s}" for s in [*secured.x[1:-1:2], "sasl.password=wrong-secret"]]
    r = loosely("mirror", "--source", secured.ssl, "--source-alias", "a", "--source-client-config",
                str(secured.properties), "--target", secured.sasl, "--target-alias", "b", *bad, cwd=tmp_path)
    _one_line_refusal(r, started, contains="Authentication failed")


def test_an_untrusted_broker_certificate_is_one_line_at_once(secured: Secured, tmp_path: Path) -> None:
    started = time.monotonic()
    r = loosely("topics", "list", "-b", secured.ssl, "-X", "security.protocol=SASL_SSL", "-X",
                "sasl.mechanism=SCRAM-SHA-256", "-X", f"sasl.username={USER}", "-X", "sasl.password=wrong-secret",
                cwd=tmp_path)
    _one_line_refusal(r, started, contains="certificate verify failed")


def test_kcat_produce_with_a_wrong_password_exits_as_kcat_does(secured: Secured) -> None:
    args = ["-P", "-b", secured.sasl, "-t", _topic(), *secured.x_with("PLAIN", "wrong-secret")]
    started = time.monotonic()
    ours = loosely("kcat", *args, stdin="x\n")
    assert time.monotonic() - started < 10
    theirs = subprocess.run(["kcat", *args], input="x\n", capture_output=True, text=True, timeout=60, check=False)
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout) == (1, "")
    def last_lines(text: str) -> list[str]:
        # librdkafka's timing differs run to run: "after 301ms", and how many brokers its broker threads had marked
        # down, out of how many handles, when the producer gave up ("0/1", "1/1", "1/2 brokers are down": the
        # two librdkafka builds keep the bootstrap broker's handle differently)
        return [re.sub(r"\d+/\d+ brokers are down", "N/M brokers are down",
                       re.sub(r"after \d+ms", "after Nms", line)) for line in text.splitlines()[-2:]]

    assert last_lines(ours.stderr) == last_lines(theirs.stderr), (ours.stderr, theirs.stderr)
    assert "Authentication failure" in ours.stderr and "Traceback" not in ours.stderr
    assert "wrong-secret" not in ours.stderr


@pytest.mark.parametrize(("mechanism", "reason"), [
    ("SCRAM-SHA-512", "Unsupported SASL mechanism: broker's supported mechanisms: "),  # the broker refuses it
    ("NO-SUCH-MECHANISM", "Unsupported SASL mechanism: NO-SUCH-MECHANISM"),  # librdkafka refuses it
])
def test_a_mechanism_nobody_takes_is_one_line_at_once(secured: Secured, mechanism: str, reason: str,
                                                      tmp_path: Path) -> None:
    started = time.monotonic()
    r = loosely("groups", "list", "-b", secured.sasl, *secured.x_with(mechanism, "wrong-secret"), cwd=tmp_path)
    _one_line_refusal(r, started, contains=reason)


# --- loosely's own TLS listener as the secured target -----------------------------------------------------------


def test_mirror_from_secured_kafka_into_looselys_tls_listener(secured: Secured, tmp_path: Path) -> None:
    certs = make_dev_certs(tmp_path / "certs", clients=())
    settings = {"listeners": "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL",
                "ssl.keystore.type": "PEM", "ssl.keystore.location": str(certs.broker.pem)}
    target_props = tmp_path / "target.properties"
    target_props.write_text(f"security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={certs.ca_crt}\n")
    topic = _topic()
    want = [f"t{i}" for i in range(10)]
    _produce(secured.config(), secured.ssl, topic, [("k", v) for v in want])
    with embedded_broker(data_dir=str(tmp_path / "data"), settings=settings) as target:
        tls = target.bootstrap_servers_for("SSL")
        mirror = _mirror("--source", secured.ssl, "--source-alias", "sec", "--source-client-config",
                         str(secured.properties), "--target", tls, "--target-alias", "tls", "--topics", topic,
                         "--target-client-config", str(target_props))
        try:
            wait_for("mirrored over TLS", lambda: _values(client_config([target_props]), tls, f"sec.{topic}") == want,
                     also=lambda: _output(mirror))
        finally:
            err = _stop(mirror)
        assert err.startswith("mirroring sec -> tls:"), err
        listed = json.loads(ok("topics", "list", "-b", tls, "--json", "--client-config", str(target_props)))
        assert f"sec.{topic}" in [t["topic"] for t in listed]


def test_schema_registries_elect_over_sasl_ssl(secured: Secured) -> None:
    """The registry's election member speaks TLS and SCRAM with the registry's own Kafka settings."""
    topic = f"_schemas-{uuid.uuid4().hex[:8]}"
    config = secured.config()
    with SchemaRegistry(secured.ssl, topic=topic, client_config=config, session_timeout_ms=6_000) as first, \
            SchemaRegistry(secured.ssl, topic=topic, client_config=config, session_timeout_ms=6_000) as second:
        electors = [r.elector for r in (first, second) if r.elector is not None]
        wait_for("one leader and one follower",
                 lambda: sorted(e.leadership().is_leader for e in electors) == [False, True])
        registered = SchemaRegistryClient({"url": second.url}).register_schema(
            "tls-value", Schema('{"type": "record", "name": "R", "fields": []}', "AVRO"))
        assert SchemaRegistryClient({"url": first.url}).get_latest_version("tls-value").schema_id == registered
