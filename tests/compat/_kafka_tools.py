"""Apache Kafka's own command-line tools (``org.apache.kafka.tools.*`` from the ``kafka-tools`` jar), run on the
JVM against any bootstrap address: what ``kafka-log-dirs.sh``, ``kafka-transactions.sh`` and the rest run.

The jar comes with the interop jars (interop/pom.xml lists it); a ``LOOSELY_JARS_DIR`` resolved before it was
listed lacks it, so the jars are resolved again from the pom in that case.

Kafka moves its tools from the Scala core (``kafka.admin.*``, ``kafka.tools.*``) to the Java ``kafka-tools`` jar
(``org.apache.kafka.tools.*``) release by release: ``ConfigCommand`` and ``DumpLogSegments`` are in the core in 4.1
and in ``kafka-tools`` in 4.4. :func:`kafka_command` finds a tool where the jars of the release under test keep it.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
import zipfile
from pathlib import Path

from compat._java import ROOT, jars_dir

__all__ = ["kafka_class", "kafka_command", "kafka_tool", "tools_jars"]


@functools.cache
def _jars() -> Path:
    d = jars_dir()
    if not any(d.glob("kafka-tools-*.jar")):
        out = subprocess.run([str(ROOT / "interop" / "fetch-jars")], check=True, capture_output=True, text=True)
        d = Path(out.stdout.strip())
    return d


def _classpath() -> str:
    return f"{_jars()}/*"


@functools.cache
def kafka_command(tool: str) -> str:
    """The main class of Kafka's tool ``tool`` (e.g. ``ConfigCommand``) in this release's jars."""
    packages = ("org.apache.kafka.tools", "kafka.admin", "kafka.tools")
    wanted = {f"{p.replace('.', '/')}/{tool}.class": f"{p}.{tool}" for p in packages}
    found = set()
    for jar in _jars().glob("kafka*.jar"):
        with zipfile.ZipFile(jar) as z:
            found.update(wanted.keys() & set(z.namelist()))
    for path, main in wanted.items():
        if path in found:
            return main
    raise LookupError(f"no {tool} in the Kafka jars of {_jars()}")


def kafka_tool(tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``org.apache.kafka.tools.<tool>`` (e.g. ``LogDirsCommand``) with ``args``; never raises on exit status."""
    return kafka_class(f"org.apache.kafka.tools.{tool}", *args, timeout=timeout)


def kafka_class(main_class: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run any main class of the Kafka jars (``kafka.admin.ConfigCommand`` is ``kafka-configs.sh``)."""
    return subprocess.run(
        ["java", "-Xmx128m", "-XX:TieredStopAtLevel=1", "-cp", _classpath(), main_class, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


_TOOLS_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.loosely</groupId><artifactId>kafka-tools-jars</artifactId><version>0</version><packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>{v}</version>
      <exclusions><exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
      </exclusions>
    </dependency>
  </dependencies>
</project>
"""


@functools.cache
def tools_jars(version: str) -> Path:
    """Kafka ``version``'s ``kafka-tools`` jar with its clients, from Maven Central into a cache of its own: for a
    release other than the interop pom's, whose whole set (``LOOSELY_KAFKA_VERSION=... interop/fetch-jars``) may not
    resolve (Kafka 4.4.0 publishes no ``connect-mirror``)."""
    dest = Path.home() / ".cache" / "loosely" / f"kafka-tools-{version}"
    if not (dest / ".complete").exists():
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as d:
            pom = Path(d) / "pom.xml"
            pom.write_text(_TOOLS_POM.format(v=version))
            subprocess.run(["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                            f"-DoutputDirectory={dest}"], check=True, stdout=subprocess.DEVNULL)
        (dest / ".complete").touch()
    return dest
