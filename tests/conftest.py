"""Fixtures shared by the whole suite.

* ``loosely``: a fresh embedded loosely broker (own data directory, free port) per test.
* ``apache_kafka``: one real Apache Kafka (KRaft, single node) per session, from the Maven Central jars.
* ``cluster``: parametrised over both, for the differential tests: the same client-facing test runs against
  loosely and against Apache Kafka, so a behaviour difference shows up as a failing test.
* Which Kafka: ``KAFKA_VERSION`` (``$LOOSELY_KAFKA_VERSION``, else 4.1.1) for ``apache_kafka`` and every test that
  starts its own. A test marked ``newest_kafka`` gets a third ``cluster``, ``kafka-<newest>``, from
  ``apache_kafka_newest`` (Kafka ``KAFKA_VERSION_NEWEST``, jars fetched from Maven Central into their own cache): a
  small set of the most client-facing checks keeps the newest release covered in every run without running the
  whole differential suite twice.
* ``topic``: a unique topic name per test (the Apache Kafka session is shared).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from compat._support import Cluster
from loosely.broker.server import BrokerThread
from loosely.testing import ApacheKafka, embedded_broker
from loosely.testing.apache_kafka import KAFKA_VERSION, KAFKA_VERSION_NEWEST, ensure_kafka_jars

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def jars_dir() -> Path:
    env = os.environ.get("LOOSELY_JARS_DIR")
    if env and (Path(env) / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        return Path(env)
    out = subprocess.run([str(ROOT / "interop" / "fetch-jars")], check=True, capture_output=True, text=True)
    path = Path(out.stdout.strip())
    os.environ["LOOSELY_JARS_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def apache_kafka(jars_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    kafka = ApacheKafka(nodes=1, base_dir=tmp_path_factory.mktemp("apache-kafka"), jars_dir=jars_dir)
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


NEWEST = f"kafka-{KAFKA_VERSION_NEWEST}"  # the cluster parameter of Apache Kafka KAFKA_VERSION_NEWEST
_newest_running: list[ApacheKafka] = []
_newest_last_user: list[str] = []  # the node id of the last test to run that uses it


@pytest.fixture(scope="session")
def apache_kafka_newest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """Apache Kafka KAFKA_VERSION_NEWEST, for the tests marked ``newest_kafka`` (the broker's jars only: those tests
    use Python clients). Stopped after the last of them rather than at the end of the session, which would keep an
    idle JVM running beside the rest of the suite."""
    jars = ensure_kafka_jars(KAFKA_VERSION_NEWEST)
    kafka = ApacheKafka(nodes=1, base_dir=tmp_path_factory.mktemp("apache-kafka-newest"), jars_dir=jars,
                        version=KAFKA_VERSION_NEWEST)
    kafka.start()
    _newest_running.append(kafka)
    try:
        yield kafka
    finally:
        kafka.stop()  # a second stop() finds the process gone and only waits


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cluster" not in metafunc.fixturenames:
        return
    if any("cluster" in m.args[0] for m in metafunc.definition.iter_markers("parametrize")):
        return  # the test names its own clusters (e.g. only those that serve a newer version)
    params = ["loosely", "kafka"]
    if metafunc.definition.get_closest_marker("newest_kafka") and KAFKA_VERSION != KAFKA_VERSION_NEWEST:
        params.append(NEWEST)
    metafunc.parametrize("cluster", params, indirect=True)


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    specs = [(i.nodeid, getattr(i, "callspec", None)) for i in items]
    users = [nodeid for nodeid, spec in specs if spec is not None and spec.params.get("cluster") == NEWEST]
    _newest_last_user[:] = users[-1:]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    try:
        yield
    finally:
        if _newest_last_user == [item.nodeid]:
            while _newest_running:
                _newest_running.pop().stop()


def _alive(kafka: ApacheKafka) -> bool:
    """Whether every node of ``kafka`` is running."""
    processes = [kafka.node(i).process for i in range(1, kafka.nodes + 1)]
    return all(p is not None and p.poll() is None for p in processes)


@pytest.fixture(scope="session")
def readme_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with only ``pip install .`` in it, as the README's first step makes one: the README tests
    run its commands and snippets there, so a dependency the package forgets to declare fails them."""
    venv = tmp_path_factory.mktemp("readme") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(Path(__file__).parents[1])],
                         capture_output=True, text=True, timeout=900, check=False)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv


@pytest.fixture
def loosely(tmp_path: Path) -> Iterator[BrokerThread]:
    with embedded_broker(data_dir=str(tmp_path / "data")) as b:
        yield b


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Parametrised by pytest_generate_tests: loosely, Apache Kafka KAFKA_VERSION and, for tests marked
    ``newest_kafka``, Apache Kafka KAFKA_VERSION_NEWEST."""
    if request.param == "kafka":
        kafka: ApacheKafka = request.getfixturevalue("apache_kafka")
        if not _alive(kafka):  # one clear error, not a 30 s client timeout in every test that follows
            pytest.fail(f"Apache Kafka {kafka.version}, shared by this session, has exited; see {kafka.base_dir}")
        yield Cluster("kafka", kafka.bootstrap_servers, version=kafka.version)
    elif request.param == NEWEST:
        newest: ApacheKafka = request.getfixturevalue("apache_kafka_newest")
        if not _alive(newest):
            # stopped after the last test that uses it in collection order; pytest-xdist's workers run the files
            # in another order, so a later one may still need it: start it again on its own data
            newest.launch()
            newest.wait_ready()
            if newest not in _newest_running:
                _newest_running.append(newest)
        yield Cluster("kafka", newest.bootstrap_servers, version=newest.version)
    else:
        with embedded_broker(data_dir=str(tmp_path / "data")) as b:
            yield Cluster("loosely", b.bootstrap_servers, b)


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"
