"""The demo services' HTTP shell: one threaded server per service, routes as a plain function.

Each service is a :class:`Service`: a function from a :class:`Request` to a :class:`Response` behind Python's
``ThreadingHTTPServer`` on its own port (the views' :class:`~loosely.views._serve.HttpThread`). The demo's
services are small and speak JSON or serve files, so the standard library is enough; what they share (binding
errors as one line, a body limit, JSON responses, clean shutdown) lives here once. Handlers run on the server's
threads: a route must be safe to call concurrently.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from loosely.views._serve import HttpThread

__all__ = ["BODY_BYTES_MAX", "Request", "Response", "Service", "json_response"]

# A request body at most: the write service takes one small JSON document per request.
BODY_BYTES_MAX = 64 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: tuple[str, ...]  # the URL path's segments, unquoted, without empty ones
    query: dict[str, str]  # the first value of each query parameter
    body: bytes
    raw_path: str = ""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, body: Any) -> Response:
    return Response(status, json.dumps(body, ensure_ascii=False).encode() + b"\n")


Route = Callable[[Request], Response]


class Service:
    """``route`` served on ``host:port`` (port 0 picks a free one; :attr:`port` tells which)."""

    def __init__(self, name: str, route: Route, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self._route = route
        self._http = HttpThread(f"the {name}", host, port, self._handler(), thread_name=f"demo-{name}")

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def url(self) -> str:
        host = self._http.httpd.server_address[0]
        return f"http://{host if isinstance(host, str) else host.decode()}:{self.port}"

    def start(self) -> Service:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        route = self._route

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                try:
                    size = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    size = -1
                if size < 0 or size > BODY_BYTES_MAX:
                    resp = json_response(413, {"error": f"a request body is at most {BODY_BYTES_MAX} bytes"})
                    self.close_connection = True
                else:
                    body = self.rfile.read(size) if size else b""
                    req = Request(self.command, tuple(urllib.parse.unquote(p) for p in url.path.split("/") if p),
                                  {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}, body, url.path)
                    try:
                        resp = route(req)
                    except Exception as e:  # a bug in a route: one line to the client, the server stays up
                        resp = json_response(500, {"error": f"{type(e).__name__}: {e}"})
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.content_type)
                self.send_header("Content-Length", str(len(resp.body)))
                self.send_header("Cache-Control", "no-store")
                for k, v in resp.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(resp.body)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815 - http.server's names

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
