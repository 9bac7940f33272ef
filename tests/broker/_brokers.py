"""Brokers that tests stop and start again on the same port and data directory: in this process, or as a child
process that can be killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loosely.broker.config import BrokerConfig
from loosely.broker.server import BrokerThread


@contextmanager
def broker_on(data_dir: Path, port: int, **config: object) -> Iterator[BrokerThread]:
    b = BrokerThread(BrokerConfig(data_dir=str(data_dir), port=port, **config))  # type: ignore[arg-type]
    b.start()
    try:
        yield b
    finally:
        b.stop()


class ChildBroker:
    """``loosely broker`` in a child process; :meth:`kill` is ``kill -9``."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.cmd = [
            sys.executable,
            "-m",
            "loosely.cli.main",
            "broker",
            "--data-dir",
            str(data_dir),
            "--listen",
            f"127.0.0.1:{port}",
        ]
        self.bootstrap_servers = f"127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_output: list[str] = []  # what it printed before "listening" (recovery warnings, ...)

    def start(self) -> ChildBroker:
        proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        assert proc.stdout is not None
        self.startup_output = []
        while b"listening" not in (line := proc.stdout.readline()):
            assert line, f"the broker exited before listening: {self.startup_output}"
            self.startup_output.append(line.decode(errors="replace").rstrip("\n"))
        self.proc = proc
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
