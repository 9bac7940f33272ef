"""The Apache Kafka launcher's own logic (no Kafka started here)."""

from __future__ import annotations

import base64
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
