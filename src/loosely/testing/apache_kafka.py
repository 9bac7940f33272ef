"""A real Apache Kafka cluster (KRaft, combined broker+controller nodes) on loopback, from Maven Central jars.

loosely's differential tests run the same client-facing checks against loosely's broker and against this, and the
views' scale-out tests use a three-node cluster. It needs Java 17+ and either a directory of Kafka's jars (the
``LOOSELY_JARS_DIR`` environment variable, as ``interop/fetch-jars`` prints) or Maven to fetch them.

**Which Kafka.** :data:`KAFKA_VERSION` is the release started when nobody names one: ``$LOOSELY_KAFKA_VERSION`` if
set, else :data:`KAFKA_VERSION_DEFAULT` (the release the whole differential suite is kept green against).
:data:`KAFKA_VERSION_NEWEST` is the newest release on Maven Central that loosely is checked against as well;
``ApacheKafka(version=KAFKA_VERSION_NEWEST)`` fetches its jars into a cache of their own, whatever
``LOOSELY_JARS_DIR`` holds, so one test session can run both side by side.

Usage::

    with ApacheKafka(nodes=1) as kafka:
        print(kafka.bootstrap_servers)

**The JVMs die with their parent.** Each broker JVM is started in its own session (so that :meth:`ApacheKafka.kill`
can signal it and whatever it starts) and, on Linux, with ``PR_SET_PDEATHSIG`` set to SIGKILL: when the process that
started it ends in any way, a killed pytest run included, the kernel kills the JVM too, and no Kafka is left holding
ports and memory. The signal follows the *thread* that started the JVM, so start clusters from a thread that lives
as long as they do (pytest's fixtures run in the main thread). Elsewhere the JVMs outlive a killed parent, as before.

Secured listeners come on top of the PLAINTEXT one (which stays the inter-broker listener and the one
``bootstrap_servers`` names): ``listeners`` maps a listener name to its security protocol, each gets its own free
port, and ``config`` carries the rest (JAAS lines, ``ssl.*``, ``authorizer.class.name``)::

    ApacheKafka(
        listeners={"SASL_PLAINTEXT": "SASL_PLAINTEXT"},
        format_args=["--add-scram", "SCRAM-SHA-256=[name=admin,password=admin-secret]"],
        config={
            "sasl.enabled.mechanisms": "SCRAM-SHA-256",
            "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        },
    ).bootstrap("SASL_PLAINTEXT")
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient

__all__ = [
    "KAFKA_VERSION",
    "KAFKA_VERSION_DEFAULT",
    "KAFKA_VERSION_NEWEST",
    "ApacheKafka",
    "KafkaNode",
    "ensure_kafka_jars",
    "free_port",
]

# The default must equal interop/pom.xml's kafka.version (tests/testing/test_apache_kafka.py checks it): the Java
# clients and Kafka's tools come from there, the broker from here, and they name the same release.
KAFKA_VERSION_DEFAULT = "4.1.1"
# The newest Apache Kafka on Maven Central, checked in every test run on the most client-facing differential tests
# (tests marked ``newest_kafka``); raise it when a newer release resolves and those tests pass against it.
KAFKA_VERSION_NEWEST = "4.4.0"
KAFKA_VERSION = os.environ.get("LOOSELY_KAFKA_VERSION") or KAFKA_VERSION_DEFAULT

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.loosely</groupId><artifactId>kafka-jars</artifactId><version>0</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{v}</version></dependency>
  </dependencies>
</project>
"""


def ensure_kafka_jars(version: str = KAFKA_VERSION) -> Path:
    """A directory holding Apache Kafka ``version``'s broker jars: ``$LOOSELY_JARS_DIR`` if it holds that release,
    else a per-version cache filled with Maven from Maven Central."""
    env = os.environ.get("LOOSELY_JARS_DIR")
    if env and (Path(env) / f"kafka_2.13-{version}.jar").exists():
        return Path(env)
    dest = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "loosely" / f"kafka-{version}"
    if (dest / ".complete").exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        pom = Path(d) / "pom.xml"
        pom.write_text(_POM.format(v=version))
        subprocess.run(
            ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={dest}"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    (dest / ".complete").touch()
    return dest


_PR_SET_PDEATHSIG = 1  # <sys/prctl.h>


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` (Linux only) asking the kernel to SIGKILL the child when its parent ends; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent ended before the request took hold
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


STOP_GRACE_S = 15.0  # stop(): SIGTERM, then SIGKILL for the nodes still running after this long


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: all bound at once, since the kernel may hand a port just closed by
    :func:`free_port` to the next bind (a node's PLAINTEXT and SASL_SSL listeners once got the same port, and Kafka
    refused to format)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class KafkaNode:
    node_id: int
    port: int
    controller_port: int
    log_dir: Path
    config_path: Path
    process: subprocess.Popen[bytes] | None = None
    output: Path | None = None
    listener_ports: dict[str, int] = field(default_factory=dict)  # the extra listeners' ports, by name


@dataclass
class ApacheKafka:
    nodes: int = 1
    base_dir: Path | None = None
    heap_mb: int = 512
    config: Mapping[str, str] = field(default_factory=dict)
    # Where the jars are; when None, ensure_kafka_jars(version) finds or fetches them.
    jars_dir: Path | None = None
    version: str = KAFKA_VERSION
    # Extra listeners beside PLAINTEXT and CONTROLLER: name -> security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT,
    # SASL_SSL), each on a free port of its own.
    listeners: Mapping[str, str] = field(default_factory=dict)
    # Extra arguments to `kafka-storage format`, e.g. ["--add-scram", "SCRAM-SHA-256=[name=admin,password=x]"].
    format_args: Sequence[str] = ()
    # Extra JVM arguments for the broker, e.g. ["-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=file:///k.json"]
    # (Kafka 4 reads some security switches only from system properties).
    jvm_args: Sequence[str] = ()
    _nodes: list[KafkaNode] = field(default_factory=list)
    _own_dir: bool = False

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self._nodes)

    def bootstrap(self, listener: str) -> str:
        """The bootstrap servers of one of the extra ``listeners`` (by name)."""
        return ",".join(f"127.0.0.1:{n.listener_ports[listener]}" for n in self._nodes)

    def node(self, node_id: int) -> KafkaNode:
        return self._nodes[node_id - 1]

    def _classpath(self) -> str:
        jars = self.jars_dir or ensure_kafka_jars(self.version)
        if not (jars / f"kafka_2.13-{self.version}.jar").exists():
            # A jar directory of another release (LOOSELY_JARS_DIR left from before LOOSELY_KAFKA_VERSION was set)
            # would start a Kafka other than the one the test reports against; say so instead.
            found = ", ".join(sorted(p.name for p in jars.glob("kafka_2.13-*.jar"))) or "no kafka_2.13 jar"
            raise RuntimeError(f"{jars} holds {found}, not Apache Kafka {self.version}")
        return os.path.join(str(jars), "*")

    def start(self, timeout_s: float = 90.0) -> ApacheKafka:
        """Format and launch every node, then wait until all are serving."""
        self.prepare()
        self.launch()
        self.wait_ready(timeout_s)
        return self

    def prepare(self) -> None:
        """Write each node's config and format its storage (one JVM run per node)."""
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="apache-kafka-"))
            self._own_dir = True
        cluster_id = _random_cluster_id()
        for i in range(1, self.nodes + 1):
            d = self.base_dir / f"node-{i}"
            d.mkdir(parents=True, exist_ok=True)
            port, controller_port, *listener_ports = _free_ports(2 + len(self.listeners))
            node = KafkaNode(i, port, controller_port, d / "data", d / "server.properties")
            node.listener_ports = dict(zip(self.listeners, listener_ports, strict=True))
            self._nodes.append(node)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self._nodes)
        rf = str(min(3, self.nodes))
        for n in self._nodes:
            extra = "".join(f",{name}://127.0.0.1:{port}" for name, port in n.listener_ports.items())
            protocols = "".join(f",{name}:{proto}" for name, proto in self.listeners.items())
            props = {
                "process.roles": "broker,controller",
                "node.id": str(n.node_id),
                "controller.quorum.voters": voters,
                "listeners": f"PLAINTEXT://127.0.0.1:{n.port},CONTROLLER://127.0.0.1:{n.controller_port}{extra}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{n.port}{extra}",
                "controller.listener.names": "CONTROLLER",
                "listener.security.protocol.map": f"PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT{protocols}",
                "inter.broker.listener.name": "PLAINTEXT",
                "log.dirs": str(n.log_dir),
                "offsets.topic.replication.factor": rf,
                "transaction.state.log.replication.factor": rf,
                "transaction.state.log.min.isr": "1" if self.nodes == 1 else "2",
                "default.replication.factor": rf,
                "group.initial.rebalance.delay.ms": "0",
                "offsets.topic.num.partitions": "10",
                "num.partitions": "1",
                "log.flush.interval.messages": "9223372036854775807",
                **self.config,
            }
            n.config_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
            subprocess.run(
                [
                    "java",
                    "-cp",
                    self._classpath(),
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(n.config_path),
                    *self.format_args,
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def launch(self) -> None:
        """Start every prepared node without waiting for it."""
        for n in self._nodes:
            self._launch(n)

    def _launch(self, n: KafkaNode) -> None:
        n.output = n.config_path.parent / "kafka.out"
        out = open(n.output, "ab")  # noqa: SIM115 - the child keeps it
        n.process = subprocess.Popen(
            [
                "java",
                f"-Xmx{self.heap_mb}m",
                f"-Xms{min(self.heap_mb, 256)}m",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                *self.jvm_args,
                "-cp",
                self._classpath(),
                "kafka.Kafka",
                str(n.config_path),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509 - a prctl call and a getppid, no locks taken
        )
        out.close()

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        live = [n for n in self._nodes if n.process is not None and n.process.poll() is None]
        while True:
            try:
                md = AdminClient({"bootstrap.servers": self.bootstrap_servers}).list_topics(timeout=2)
                if len(md.brokers) >= len(live):
                    return
            except Exception:
                pass
            for n in live:
                if n.process is not None and n.process.poll() is not None:
                    raise RuntimeError(f"kafka node {n.node_id} exited; see {n.output}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"Apache Kafka did not become ready in {timeout_s}s; see {self.base_dir}")
            time.sleep(0.3)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node."""
        n = self.node(node_id)
        if n.process is not None and n.process.poll() is None:
            os.killpg(n.process.pid, signal.SIGKILL)
            n.process.wait()

    def restart(self, node_id: int) -> None:
        self.kill(node_id)
        self._launch(self.node(node_id))

    def stop(self) -> None:
        for n in self._nodes:
            if n.process is not None and n.process.poll() is None:
                os.killpg(n.process.pid, signal.SIGTERM)
        # a node's controlled shutdown takes a few seconds; one stuck on a quorum that is going away (a refused
        # second process on its data directory, a cluster stopping all at once) is killed: nothing is kept after
        deadline = time.monotonic() + STOP_GRACE_S
        for n in self._nodes:
            if n.process is not None:
                try:
                    n.process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(n.process.pid, signal.SIGKILL)
                    n.process.wait()
        if self._own_dir and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> ApacheKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _random_cluster_id() -> str:
    """A random Kafka Uuid in its base64 form, drawn again while it starts with '-' as Kafka's ``Uuid.randomUuid``
    does: ``kafka-storage format --cluster-id -x...`` would take such an id for an option (one start in 64)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid
