"""Serves the console's ASGI app with uvicorn on a thread of its own, so it runs the same beside any caller:
``loosely console`` (whose main thread only waits for a signal) and ``loosely broker --console-listen`` (whose
event loop is the broker's and must not carry the console's pages).

The socket is bound here before uvicorn starts (port 0 gives a free port, reported by :attr:`ConsoleServer.port`),
so a caller knows the address as soon as :meth:`ConsoleServer.start` returns.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Final

import uvicorn

__all__ = ["ConsoleServer"]

START_S_MAX: Final = 10.0


class ConsoleServer:
    """``ConsoleServer(app, "127.0.0.1", 0).start()``; ``.url``; ``.stop()``."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError:
            self._sock.close()
            raise
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="loosely-console", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        self._server.run(sockets=[self._sock])

    def start(self) -> ConsoleServer:
        self._thread.start()
        deadline = time.monotonic() + START_S_MAX
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the console did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(START_S_MAX)
        self._sock.close()

    def __enter__(self) -> ConsoleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
