"""A small read API over the views in a sink, so a microservice can expose them over HTTP as JSON.

Routes (all ``GET``; values that are ``bytes`` come out as ``{"$base64": "..."}``):

=================================  ==============================================================================
``/views``                         every view with its versions and the serving one
``/views/<name>/keys/<key>``       ``{"key", "value", "version"}`` of the serving version, 404 if absent
``/views/<name>/keys``             a page of keys in order: ``?after=<key>&limit=<n>`` (``limit`` <= 1000)
``/views/<name>/search?q=...``     full-text search, for sinks that index text
``/status``                        lag and freshness of every version (when the server knows the brokers)
=================================  ==============================================================================

Every read goes through the sink's catalog, which resolves the serving version and reads it in one snapshot, so
a response never mixes two versions. The server binds ``127.0.0.1`` and port 0 by default and reports its port.

>>> import tempfile, os, json, urllib.request
>>> from loosely.views import SqliteSink, latest_by_key, Batch, Put, TopicPartition
>>> sink = SqliteSink(os.path.join(tempfile.mkdtemp(), "v.db"))
>>> sink.open(latest_by_key("users", ["u"]))
>>> sink.apply(Batch.build([(TopicPartition("u", 0), 0, 0, Put("ada", {"lang": "en"}))]))
>>> sink.switch("users", 1)
>>> with ViewServer(sink) as server:
...     body = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/views/users/keys/ada").read()
>>> json.loads(body)
{'key': 'ada', 'value': {'lang': 'en'}, 'version': 1}
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from loosely.views._model import ViewError
from loosely.views._sink import Catalog
from loosely.views._status import StatusRow

__all__ = ["HttpThread", "ServerStatistics", "ViewServer"]

# One page of keys at most: a scan holds the sink's connection for its duration.
PAGE_KEYS_MAX = 1000


def _default(o: object) -> object:
    if isinstance(o, bytes | bytearray):
        return {"$base64": base64.b64encode(o).decode()}
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    requests: int
    not_found: int
    errors: int


class HttpThread:
    """A ``ThreadingHTTPServer`` bound at construction (a taken port is one clear ``OSError``), served from its own
    thread between :meth:`start` and :meth:`stop`; :attr:`port` reports the port that port 0 picked."""

    def __init__(self, what: str, host: str, port: int, handler: type[BaseHTTPRequestHandler], *,
                 thread_name: str) -> None:
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as e:  # "[Errno 98] Address already in use" names no address
            raise OSError(e.errno, f"cannot serve {what} on {host}:{port}: {e.strerror}") from None
        self.httpd.daemon_threads = True
        self._thread_name = thread_name
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(10)


class ViewServer:
    def __init__(
        self,
        catalog: Catalog,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        status: Callable[[], list[StatusRow]] | None = None,
    ) -> None:
        self.catalog = catalog
        self._status = status
        self._counts = {"requests": 0, "not_found": 0, "errors": 0}
        self._lock = threading.Lock()
        self._http = HttpThread("views", host, port, self._handler(), thread_name="loosely-views-http")

    @property
    def port(self) -> int:
        return self._http.port

    def start(self) -> ViewServer:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> ViewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def statistics(self) -> ServerStatistics:
        with self._lock:
            return ServerStatistics(**self._counts)

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        """``(HTTP status, JSON body)`` for a GET (used by the handler; callable directly in tests)."""
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        cat = self.catalog
        if parts == ["views"]:
            names: list[str] = cat.names()
            return 200, {"views": [
                {"name": n, "serving_version": cat.serving_version(n),
                 "versions": [{"version": v.version, "state": v.state.value} for v in cat.versions(n)]}
                for n in names]}
        if parts == ["status"]:
            if self._status is None:
                return 404, {"error": "this server was started without the brokers' address"}
            return 200, {"views": [r.as_json() for r in self._status()]}
        if len(parts) in (3, 4) and parts[0] == "views" and parts[2] in ("keys", "search") and (
            cat.serving_version(parts[1]) is None
        ):
            return 404, {"error": f"no view {parts[1]!r} is serving" if parts[1] in cat.names()
                         else f"no such view {parts[1]!r}"}
        if len(parts) == 4 and parts[0] == "views" and parts[2] == "keys":
            name, key = parts[1], parts[3]
            version = cat.serving_version(name)
            value = cat.get(name, key, version) if version is not None else None
            if value is None:
                return 404, {"error": f"no key {key!r} in view {name!r}"}
            return 200, {"key": key, "value": value, "version": version}
        if len(parts) == 3 and parts[0] == "views" and parts[2] == "keys":
            limit = min(int(query.get("limit", ["100"])[0]), PAGE_KEYS_MAX)
            after = query.get("after", [""])[0]
            items = cat.scan(parts[1], after=after, limit=limit)
            return 200, {"items": [{"key": k, "value": v} for k, v in items],
                         "next": items[-1][0] if len(items) == limit else None}
        if len(parts) == 3 and parts[0] == "views" and parts[2] == "search":
            search = getattr(cat, "search_docs", None)
            if search is None:
                return 404, {"error": "this sink has no full-text index"}
            q = query.get("q", [""])[0]
            limit = min(int(query.get("limit", ["20"])[0]), PAGE_KEYS_MAX)
            try:
                found = search(parts[1], q, limit=limit)
            except ViewError as e:
                return 404, {"error": str(e)}
            return 200, {"items": [{"key": k, "value": v} for k, v in found]}
        return 404, {"error": f"no route {path}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._count("requests")
                url = urllib.parse.urlsplit(self.path)
                try:
                    code, body = server.route(url.path, urllib.parse.parse_qs(url.query))
                except ValueError as e:
                    code, body = 400, {"error": str(e)}
                except Exception as e:
                    server._count("errors")
                    code, body = 500, {"error": f"{type(e).__name__}: {e}"}
                if code == 404:
                    server._count("not_found")
                data = json.dumps(body, default=_default, ensure_ascii=False).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
