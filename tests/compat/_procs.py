"""Client processes whose output the tests watch while they run (kcat -G consumers, consumer scripts)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO


class Proc:
    """A child process; its stdout and stderr lines are collected by threads as they come."""

    def __init__(self, args: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.p = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self._lock = threading.Lock()
        self._out: list[str] = []
        self._err: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.p.stdout, self._out), daemon=True),
            threading.Thread(target=self._pump, args=(self.p.stderr, self._err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump(self, stream: IO[bytes] | None, into: list[str]) -> None:
        assert stream is not None
        for raw in stream:
            with self._lock:
                into.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def out(self) -> list[str]:
        with self._lock:
            return list(self._out)

    @property
    def err(self) -> list[str]:
        with self._lock:
            return list(self._err)

    def alive(self) -> bool:
        return self.p.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.p.pid, sig)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (consumers leave their group), then SIGKILL if it lingers."""
        self.signal(signal.SIGTERM)
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.p.wait()
        for t in self._threads:
            t.join(5)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.p.wait()


def wait_until(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
