"""The writer over HTTP: a small JSON API in front of a :class:`Writer`, and :class:`RemoteWriter` to call it.

Endpoints (JSON in, JSON out; HTTP/1.1 keep-alive; a body over ``body_bytes_max`` is refused)::

    POST /put     {"type": "Movie", "record": {...}, "if_version": 12}        -> {"version": 13, "token": "..."}
    POST /delete  {"type": "Movie", "key": [42], "if_version": null}          -> {"version": 14, "token": "..."}
    POST /bulk    {"operations": [{"op": "put", "type": ..., "record": ...},
                                  {"op": "delete", "type": ..., "key": [...]}]} -> {"versions": [...], "token": "..."}
    GET  /leader                                                          -> {"leader": true, "address": "http://..."}

``if_version`` left out: any version; ``null``: only if absent; a number: only if the record has that version.
``if_content`` likewise: left out, ``null`` (absent), or a record the current one must equal.
Failures: 409 ``{"error": "condition_failed", "current_version": V}``; 503 ``{"error": "not_leader", "leader":
"http://..."}`` (the address the elected writer announced, or null); 400 ``{"error": "bad_request"}`` for
input that is not a record of the dataset; 500 ``{"error": "write_failed", "uncertain": bool}``.

:class:`RemoteWriter` takes one or more writer URLs, keeps a connection per thread, follows ``not_leader``
answers to the leader they name (or the next URL), and retries only where nothing was written: a refused
connection or a ``not_leader`` answer. A connection lost after the request went out is a
:class:`WriteError` with ``uncertain=True``.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from loosely.hollow.raw._codec import Token, record_from_json, record_to_json
from loosely.hollow.raw._dataset import Dataset
from loosely.hollow.raw._writer import (
    ANY,
    BulkResult,
    ConditionFailed,
    Delete,
    NotLeaderError,
    Put,
    WriteError,
    Writer,
    WriteResult,
)

__all__ = ["RemoteWriter", "WriterServer"]

BODY_BYTES_MAX: Final = 16 * 1024 * 1024


def _if_version(body: dict[str, Any]) -> Any:
    return body.get("if_version", ANY)


def _if_content(ds: Dataset, type_name: str, body: dict[str, Any]) -> Any:
    if "if_content" not in body:
        return ANY
    value = body["if_content"]
    return None if value is None else record_from_json(ds.type_of(type_name), value)


def _operation(ds: Dataset, item: Any) -> Put | Delete:
    if not isinstance(item, dict):
        raise ValueError("an operation is a JSON object")
    type_name = item.get("type")
    if not isinstance(type_name, str):
        raise ValueError("an operation needs a \"type\"")
    op = item.get("op", "put")
    if op == "put":
        if not isinstance(item.get("record"), dict):
            raise ValueError("a put needs a \"record\" object")
        return Put(record_from_json(ds.type_of(type_name), item["record"]), _if_version(item),
                   _if_content(ds, type_name, item))
    if op == "delete":
        key = item.get("key")
        if not isinstance(key, list):
            raise ValueError("a delete needs a \"key\" array")
        ds.type_of(type_name)
        return Delete(type_name, tuple(key), _if_version(item), _if_content(ds, type_name, item))
    raise ValueError(f"op must be put or delete, not {op!r}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: an answer goes out as two sends (headers, then body); with Nagle the body waited for the
    # client's delayed ACK of the headers, 40 ms on Linux, which was most of a remote write's time
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request is noise at thousands of writes per second

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        writer = self.server.writer
        if self.path == "/leader":
            self._send(200, {"leader": writer.is_leader(), "address": writer.leader_address(),
                             "member": writer.member})
        else:
            self._send(404, {"error": "not_found", "message": f"no such endpoint: GET {self.path}"})

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "-1"))
        except ValueError:
            length = -1
        if not 0 <= length <= self.server.body_bytes_max:
            self.close_connection = True
            self._send(413 if length > 0 else 411, {"error": "bad_request", "message":
                       f"a body of 0 to {self.server.body_bytes_max} bytes with its Content-Length, please"})
            return
        raw = self.rfile.read(length)
        writer, ds = self.server.writer, self.server.writer.dataset
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the body is a JSON object")
            if self.path in ("/put", "/delete"):
                result = writer.bulk([_operation(ds, {**body, "op": self.path[1:]})])
                answer: dict[str, Any] = {"version": result.versions[0], "token": str(result.token)}
            elif self.path == "/bulk":
                ops = body.get("operations")
                if not isinstance(ops, list):
                    raise ValueError("a bulk needs an \"operations\" array")
                result = writer.bulk([_operation(ds, o) for o in ops])
                answer = {"versions": list(result.versions), "token": str(result.token)}
            else:
                self._send(404, {"error": "not_found", "message": f"no such endpoint: POST {self.path}"})
                return
        except ConditionFailed as e:
            self._send(409, {"error": "condition_failed", "current_version": e.current_version, "key": e.key,
                             "message": str(e)})
        except NotLeaderError as e:
            self._send(503, {"error": "not_leader", "leader": e.leader, "message": str(e)})
        except WriteError as e:
            self._send(500, {"error": "write_failed", "uncertain": e.uncertain, "message": str(e)})
        except (ValueError, TypeError, KeyError) as e:
            self._send(400, {"error": "bad_request", "message": str(e)})
        else:
            self._send(200, answer)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], writer: Writer, body_bytes_max: int) -> None:
        self.writer = writer
        self.body_bytes_max = body_bytes_max
        super().__init__(address, _Handler)


class WriterServer:
    """Serves ``writer`` on ``http://host:port`` (port 0: a free one; see :attr:`url`).

    Create it before ``writer.start()``: a writer without an ``http_address`` then announces this server's URL
    when elected, so others are sent here.
    """

    def __init__(self, writer: Writer, host: str = "127.0.0.1", port: int = 0, *,
                 body_bytes_max: int = BODY_BYTES_MAX) -> None:
        self._server = _Server((host, port), writer, body_bytes_max)
        bound_host, bound_port = self._server.server_address[:2]
        shown = bound_host if isinstance(bound_host, str) else bound_host.decode()
        if shown in ("0.0.0.0", "::"):  # every interface: others reach it by this machine's name
            shown = socket.gethostname()
        self.url = f"http://{shown}:{bound_port}"
        if writer.http_address is None:
            writer.http_address = self.url
        self._thread: threading.Thread | None = None

    def start(self) -> WriterServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="raw-writer-http", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> WriterServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Refused(Exception):
    """Nothing was sent: try another writer."""


class RemoteWriter:
    """The :class:`Writer` methods over HTTP, for services that do not run a writer themselves.

    ``urls``: one writer URL or several (the candidates); ``timeout_ms`` bounds a call, retries included.
    """

    def __init__(self, urls: str | Sequence[str], dataset: Dataset, *, timeout_ms: int = 10_000) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("RemoteWriter needs at least one URL")
        self.dataset = dataset
        self.timeout_ms = timeout_ms
        self._current = self.urls[0]
        self._local = threading.local()

    def _connection(self, url: str) -> http.client.HTTPConnection:
        conns: dict[str, http.client.HTTPConnection] = self._local.__dict__.setdefault("conns", {})
        conn = conns.get(url)
        if conn is None:
            parts = urllib.parse.urlsplit(url)
            conn = conns[url] = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80,
                                                           timeout=self.timeout_ms / 1000)
        return conn

    def _drop(self, url: str) -> None:
        conn = self._local.__dict__.get("conns", {}).pop(url, None)
        if conn is not None:
            conn.close()

    def _once(self, url: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        conn = self._connection(url)
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
        except ConnectionRefusedError as e:
            self._drop(url)
            raise _Refused(str(e)) from e
        except OSError:  # a kept-alive connection the server closed: open a fresh one, once
            self._drop(url)
            conn = self._connection(url)
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
            except OSError as e:
                self._drop(url)
                raise _Refused(str(e)) from e
        try:
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as e:
            self._drop(url)
            raise WriteError(f"{url}{path}: the connection was lost after the request went out: {e}",
                             uncertain=True) from e
        try:
            return response.status, json.loads(data)
        except ValueError as e:
            raise WriteError(f"{url}{path}: not a JSON answer (HTTP {response.status})", uncertain=True) from e

    def _call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(payload).encode()
        deadline = time.monotonic() + self.timeout_ms / 1000
        candidates = list(self.urls)
        last = "no writer answered"
        pause_s = 0.02
        while True:
            url = self._current
            try:
                status, answer = self._once(url, path, body)
            except _Refused as e:
                last = f"{url}: {e}"
                status, answer = 0, {}
            if status == 200:
                return answer
            error = answer.get("error")
            if error == "condition_failed":
                raise ConditionFailed(str(answer.get("message")), answer.get("current_version"),
                                      str(answer.get("key", "")))
            if error == "write_failed":
                raise WriteError(str(answer.get("message")), uncertain=bool(answer.get("uncertain")))
            if status and error != "not_leader":
                raise ValueError(f"{url}{path}: {answer.get('message', f'HTTP {status}')}")
            if error == "not_leader":
                last = str(answer.get("message"))
            leader = answer.get("leader")
            if isinstance(leader, str) and leader != url:
                self._current = leader
            else:  # no leader named (an election is going on) or it is down: the next candidate, after a pause
                candidates = candidates[1:] + candidates[:1] if url in candidates else candidates
                self._current = candidates[0]
                if time.monotonic() + pause_s > deadline:
                    raise NotLeaderError(f"no writer of {self.dataset.name} accepted the write in "
                                         f"{self.timeout_ms} ms: {last}",
                                         leader if isinstance(leader, str) else None)
                time.sleep(pause_s)
                pause_s = min(pause_s * 2, 0.5)
            if time.monotonic() > deadline:
                raise NotLeaderError(f"no writer of {self.dataset.name} accepted the write in {self.timeout_ms} ms: "
                                     f"{last}")

    @staticmethod
    def _condition(item: dict[str, Any], if_version: Any, if_content: Any) -> dict[str, Any]:
        if if_version is not ANY:
            item["if_version"] = if_version
        if if_content is not ANY:
            item["if_content"] = None if if_content is None else record_to_json(if_content)
        return item

    def put(self, record: object, *, if_version: Any = ANY, if_content: Any = ANY) -> WriteResult:
        type_name, _ = self.dataset.key_of(record)
        answer = self._call("/put", self._condition({"type": type_name, "record": record_to_json(record)},
                                                    if_version, if_content))
        return WriteResult(int(answer["version"]), Token.parse(answer["token"]))

    def delete(self, type_: str | type, key: object, *, if_version: Any = ANY, if_content: Any = ANY) -> WriteResult:
        type_name = type_ if isinstance(type_, str) else self.dataset.type_name(type_)
        values = list(key) if isinstance(key, tuple) else [key]
        answer = self._call("/delete", self._condition({"type": type_name, "key": values}, if_version, if_content))
        return WriteResult(int(answer["version"]), Token.parse(answer["token"]))

    def bulk(self, operations: Iterable[Put | Delete]) -> BulkResult:
        items = []
        for o in operations:
            if isinstance(o, Put):
                items.append(self._condition({"op": "put", "type": self.dataset.key_of(o.record)[0],
                                              "record": record_to_json(o.record)}, o.if_version, o.if_content))
            else:
                items.append(self._condition({"op": "delete", "type": o.type_name, "key": list(o.key)},
                                             o.if_version, o.if_content))
        answer = self._call("/bulk", {"operations": items})
        return BulkResult(tuple(int(v) for v in answer["versions"]), Token.parse(answer["token"]))

    def leader(self) -> str | None:
        """The leader's address as the current candidate sees it."""
        parts = urllib.parse.urlsplit(self._current)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80,
                                          timeout=self.timeout_ms / 1000)
        try:
            conn.request("GET", "/leader")
            answer = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        address = answer.get("address")
        return address if isinstance(address, str) else None

    def close(self) -> None:
        for conn in self._local.__dict__.get("conns", {}).values():
            conn.close()
