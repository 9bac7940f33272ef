"""The Apache Kafka launcher's own logic (Kafka started only to show that it dies with its parent)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from loosely.testing.apache_kafka import (
    KAFKA_VERSION_DEFAULT,
    KAFKA_VERSION_NEWEST,
    ApacheKafka,
    _random_cluster_id,
    ensure_kafka_jars,
)


def test_cluster_ids_never_look_like_an_option() -> None:
    # One id in 64 would begin with '-' if drawn once; 4,000 draws make a missed redraw all but certain to show.
    ids = [_random_cluster_id() for _ in range(4000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)


def test_the_default_release_is_the_interop_poms() -> None:
    """The broker (KAFKA_VERSION_DEFAULT) and the Java clients and tools (interop/pom.xml) name one release."""
    pom = ET.parse(Path(__file__).parents[2] / "interop" / "pom.xml")
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    assert pom.findtext("m:properties/m:kafka.version", namespaces=ns) == KAFKA_VERSION_DEFAULT
    assert KAFKA_VERSION_NEWEST != KAFKA_VERSION_DEFAULT


def test_jars_of_another_release_are_refused(tmp_path: Path) -> None:
    (tmp_path / "kafka_2.13-4.1.1.jar").touch()
    kafka = ApacheKafka(jars_dir=tmp_path, version="4.4.0")
    with pytest.raises(RuntimeError, match=r"holds kafka_2\.13-4\.1\.1\.jar, not Apache Kafka 4\.4\.0"):
        kafka.prepare()
    kafka.stop()


def test_a_jar_directory_of_another_release_is_not_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LOOSELY_JARS_DIR serves only its own release; another is looked for in its own cache."""
    (tmp_path / "kafka_2.13-4.1.1.jar").touch()
    cache = tmp_path / "cache" / "loosely" / "kafka-9.9.9"
    cache.mkdir(parents=True)
    (cache / ".complete").touch()
    monkeypatch.setenv("LOOSELY_JARS_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert ensure_kafka_jars("4.1.1") == tmp_path
    assert ensure_kafka_jars("9.9.9") == cache


_PARENT = """
import sys
from pathlib import Path
from loosely.testing.apache_kafka import ApacheKafka
kafka = ApacheKafka(nodes=1, base_dir=Path(sys.argv[1]), heap_mb=256)
kafka.prepare()
kafka.launch()
print(kafka.node(1).process.pid, flush=True)
sys.stdin.read()  # until killed
"""


def _running(pid: int) -> bool:
    """A process that exists and is not a zombie (an orphan's zombie may wait long for a reaper in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.kafka
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_broker_jvm_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    jvm = 0
    try:
        jvm = int(parent.stdout.readline())
        assert _running(jvm)
        assert b"kafka.Kafka" in Path(f"/proc/{jvm}/cmdline").read_bytes()
        parent.kill()  # SIGKILL: no cleanup of its own runs, as when a pytest run is killed
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _running(jvm):
            assert time.monotonic() < deadline, "the broker JVM outlived the process that started it"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait(timeout=30)
        if jvm and _running(jvm):
            os.kill(jvm, signal.SIGKILL)
