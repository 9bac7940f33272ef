"""The REST API, as Confluent Schema Registry documents it and confluent-kafka's ``SchemaRegistryClient`` calls it.

Routes (``{v}`` is a version number, ``latest`` or ``-1``; booleans in queries are ``true``/``false`` in any case):

=========================================================  ======================================================
``GET /subjects``                                          ``?deleted``, ``?deleted_only``, ``?subjectPrefix``
``GET|POST /subjects/{s}/versions``                        list versions; register (``{"schema", "schemaType",
                                                           "references", "metadata", "ruleSet"}`` -> ``{"id"}``)
``GET|DELETE /subjects/{s}/versions/{v}``                  one version; soft delete (``?permanent=true``: hard)
``GET /subjects/{s}/versions/{v}/schema``                  the schema text alone
``GET /subjects/{s}/versions/{v}/referencedby``            ids of schemas that reference this version
``POST|DELETE /subjects/{s}``                              look a schema up in the subject; delete the subject
``GET /subjects/{s}/metadata``                             the newest version whose metadata properties hold
                                                           every ``?key=K&value=V`` pair
``GET /schemas/ids/{id}`` (``/schema``, ``/versions``,     a schema by global id; its text; where it is used
``/subjects``)
``GET /schemas/types``                                     the schema types this registry accepts
``GET|PUT|DELETE /config``, ``/config/{s}``                compatibility (``{"compatibility": LEVEL}`` to set)
``GET|PUT /mode``, ``GET|PUT|DELETE /mode/{s}``            READWRITE, READONLY, READONLY_OVERRIDE, IMPORT
``POST /compatibility/subjects/{s}/versions[/{v}]``        ``{"is_compatible": ..., "messages": [...]}``
=========================================================  ======================================================

``?format=serialized`` on the routes that return a schema gives a Protobuf schema registered as ``.proto`` text as
its base64 descriptor (what confluent-kafka's deserializers ask for); other formats return the text as stored.

Errors are Confluent's JSON (``{"error_code": ..., "message": ...}``, see :mod:`loosely.registry._errors`).
Bodies must be JSON sent as ``application/vnd.schemaregistry.v1+json``, ``application/vnd.schemaregistry+json``,
``application/json`` or ``application/octet-stream`` (415 otherwise), and at most ``request_bytes_max`` long
(413, refused before it is read). Answers are ``application/vnd.schemaregistry.v1+json``, or
``application/json`` for a client that accepts only that. The server is :mod:`http.server` in threads, as the
views' server is: reads take the state lock briefly, changes queue on the store's single writer.

**Several registries.** A change this process may not write (the store raises :class:`ForwardToLeader`) is sent
as it came -- method, path, query, body, ``Content-Type``, ``Accept`` and ``Authorization`` -- to the elected
leader's url, and the leader's answer goes back unchanged, as Confluent's followers forward. The forwarded request
carries ``X-Loosely-Forwarded``; a process that receives one and does not lead (the election moved on meanwhile)
answers 50004 instead of forwarding again, so a request never travels in circles. A leader that cannot be reached
within ``forward_timeout_ms`` gives Confluent's 50003.

**Security** (both off by default; the registry binds loopback). With ``authenticate``, every request needs HTTP
Basic credentials (``Authorization: Basic base64(user:password)``, what confluent-kafka's ``basic.auth.user.info``
sends), checked by that callable (:class:`loosely.security.passwords.PasswordCheck`: the broker's SCRAM users);
without them or with wrong ones the answer is Confluent's 401 ``{"error_code": 401, "message": "Unauthorized"}``
with a ``WWW-Authenticate`` challenge. Any authenticated user may do everything, as Confluent's registry with
``authentication.roles=*``. With ``tls`` (a callable giving the current server context, so replaced certificate
files take effect), connections are TLS: the handshake runs on the connection's own thread, never in the accept
loop, bounded by ``tls_handshake_timeout_ms``, and a failed one closes the connection and is counted.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from loosely.registry import _errors as err
from loosely.registry._contracts import CONFIG_FIELDS, from_body
from loosely.registry._records import ConfigRecord, Record, Reference, SchemaVersion
from loosely.registry._state import RegistryState, SchemaById, parse_version
from loosely.registry._store import ForwardToLeader, KafkaStore, no_leader
from loosely.registry._types import SCHEMA_TYPES

__all__ = ["LEADER_WAIT_MS", "REQUEST_BYTES_MAX", "RegistryServer", "ServerStatistics"]

log = logging.getLogger(__name__)

REQUEST_BYTES_MAX = 16 * 1024 * 1024
"""Largest request body (16 MiB). Confluent sets none of its own; a schema stored in one record is bounded by the
topic's max.message.bytes anyway, and a bound here keeps a runaway client from filling memory."""

CONNECTIONS_MAX = 1000
"""Connections served at once, each on its own thread (a bound on threads; Jetty's default pool in Confluent's
registry is 200 threads, but idle keep-alive connections hold a thread here)."""

IDLE_MS_MAX = 60_000
"""A kept-alive connection with no request for this long is closed, giving its thread back (Jetty's default idle
timeout is 30 s; httpx, which confluent-kafka uses, keeps idle connections for 5 s)."""

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
ACCEPTED_BODY_TYPES = frozenset({CONTENT_TYPE, "application/vnd.schemaregistry+json", "application/json",
                                 "application/octet-stream"})

TLS_HANDSHAKE_TIMEOUT_MS = 10_000
"""A client that has not finished its TLS handshake within this is dropped (the broker's
``loosely.ssl.handshake.timeout.ms`` default)."""

UNAUTHORIZED = {"error_code": 401, "message": "Unauthorized"}

FORWARDED_HEADER = "X-Loosely-Forwarded"
FORWARD_TIMEOUT_MS = 35_000
"""How long a follower waits for the leader's answer to a forwarded change (the leader's own write timeout, 30 s,
and a margin). Confluent bounds it with its HTTP client's timeouts too."""
LEADER_WAIT_MS = 3_000
"""How long a change waits for an election to name a leader before it is refused: a leader that stopped (and
left the group) is replaced within about a heartbeat interval; a crashed one only after its session timeout, and
a client is better told so than kept waiting that long."""
FORWARDED_HEADERS = ("Content-Type", "Accept", "Authorization")
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # registries talk directly, not via $http_proxy

Answer = tuple[int, Any]
_Found = TypeVar("_Found", SchemaVersion, SchemaById)


@dataclass(frozen=True, slots=True)
class Raw:
    """An answer sent as is: a schema text, which the ``/schema`` routes return exactly as stored."""

    text: str


@dataclass(frozen=True, slots=True)
class Relayed:
    """The leader's answer to a forwarded request, passed on as it came."""

    data: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    requests: int
    client_errors: int
    server_errors: int
    connections_refused: int
    authentication_failures: int = 0
    tls_handshake_failures: int = 0


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``connections_max`` of them; one more is answered 503 and closed."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], connections_max: int,
                 refused: Any, *, tls: Callable[[], ssl.SSLContext] | None = None, tls_timeout_s: float = 10.0,
                 tls_failed: Callable[[str], None] | None = None) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(connections_max)
        self._refused = refused
        self._tls = tls
        self._tls_timeout_s = tls_timeout_s
        self._tls_failed = tls_failed

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refused()
            body = b'{"error_code":503,"message":"Too many connections to the schema registry"}'
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: " + CONTENT_TYPE.encode() +
                                b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
                                + body)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            if self._tls is not None:
                request = self._handshake(request)
                if request is None:
                    return
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _handshake(self, request: socket.socket) -> ssl.SSLSocket | None:
        assert self._tls is not None
        request.settimeout(self._tls_timeout_s)
        try:
            wrapped = self._tls().wrap_socket(request, server_side=True, do_handshake_on_connect=False)
            wrapped.do_handshake()
        except (OSError, ValueError) as e:  # ssl.SSLError and socket.timeout are OSErrors
            if self._tls_failed is not None:
                self._tls_failed(getattr(e, "reason", None) or type(e).__name__)
            with contextlib.suppress(OSError):
                request.close()
            return None
        wrapped.settimeout(None)
        return wrapped


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[-1].lower() == "true"


def _version_json(sv: SchemaVersion, text: str) -> dict[str, Any]:
    return {"subject": sv.subject, "version": sv.version, "id": sv.id, **_by_id_json(sv, text)}


def _by_id_json(s: SchemaById | SchemaVersion, text: str) -> dict[str, Any]:
    """The answer's fields for a schema; ``text`` is its schema text in the format the reader asked for."""
    out: dict[str, Any] = {}
    if s.schema_type != "AVRO":
        out["schemaType"] = s.schema_type
    if s.references:
        out["references"] = [r.as_json() for r in s.references]
    if s.metadata is not None:
        out["metadata"] = json.loads(s.metadata)
    if s.rule_set is not None:
        out["ruleSet"] = json.loads(s.rule_set)
    out["schema"] = text
    return out


def _contract(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """The request's ``metadata`` and ``ruleSet`` as the JSON to store (``None`` when absent or empty)."""
    return from_body(body, "metadata"), from_body(body, "ruleSet")


def _schema_request(body: Any) -> tuple[str, str, tuple[Reference, ...]]:
    """``(schema, schemaType, references)`` of a register, lookup or compatibility body; 42201/422 when bad."""
    if not isinstance(body, dict):
        raise err.RegistryError(422, 422, "The request body must be a JSON object")
    schema = body.get("schema")
    if not isinstance(schema, str) or not schema.strip():
        raise err.RegistryError(422, 42201, "Empty schema")
    schema_type = body.get("schemaType") or "AVRO"
    if not isinstance(schema_type, str):
        raise err.invalid_schema("schemaType must be a string")
    refs = body.get("references") or []
    try:
        references = tuple(Reference(str(r["name"]), str(r["subject"]), int(r["version"])) for r in refs)
    except (KeyError, TypeError, ValueError):
        raise err.invalid_schema("each reference needs a name, a subject and a version") from None
    return schema, schema_type.upper(), references


def _with_text(state: RegistryState, s: _Found, fmt: str | None) -> tuple[_Found, str]:
    return s, state.formatted(s, fmt)


class RegistryServer:
    """HTTP front of a :class:`KafkaStore`; binds ``host:port`` (port 0: a free one, see :attr:`port`)."""

    def __init__(self, store: KafkaStore, host: str = "127.0.0.1", port: int = 0, *,
                 request_bytes_max: int = REQUEST_BYTES_MAX, connections_max: int = CONNECTIONS_MAX,
                 idle_ms_max: int = IDLE_MS_MAX, authenticate: Callable[[str, str], bool] | None = None,
                 tls: Callable[[], ssl.SSLContext] | None = None,
                 tls_handshake_timeout_ms: int = TLS_HANDSHAKE_TIMEOUT_MS,
                 forward_timeout_ms: int = FORWARD_TIMEOUT_MS, leader_wait_ms: int = LEADER_WAIT_MS) -> None:
        self.store = store
        self.forward_timeout_ms = forward_timeout_ms
        self.leader_wait_ms = leader_wait_ms
        self.request_bytes_max = request_bytes_max
        self.idle_ms_max = idle_ms_max
        self.authenticate = authenticate
        self.uses_tls = tls is not None
        self._counts = {"requests": 0, "client_errors": 0, "server_errors": 0, "connections_refused": 0,
                        "authentication_failures": 0, "tls_handshake_failures": 0}
        self._lock = threading.Lock()
        try:
            self._httpd = _BoundedHTTPServer((host, port), self._handler(), connections_max,
                                             self._count_refused, tls=tls,
                                             tls_timeout_s=tls_handshake_timeout_ms / 1000,
                                             tls_failed=self._count_tls_failure)
        except OSError as e:  # "[Errno 98] Address already in use" names no address
            raise OSError(e.errno, f"cannot serve the schema registry on {host}:{port}: {e.strerror}") from None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> RegistryServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="loosely-registry-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(10)
        self.close()

    def close(self) -> None:
        self._httpd.server_close()

    def statistics(self) -> ServerStatistics:
        with self._lock:
            return ServerStatistics(**self._counts)

    def _count_refused(self) -> None:
        with self._lock:
            self._counts["connections_refused"] += 1

    def _count_tls_failure(self, reason: str) -> None:
        with self._lock:
            self._counts["tls_handshake_failures"] += 1
            first = self._counts["tls_handshake_failures"] == 1
        if first:  # later ones are counted only: a scanner must not fill the log
            log.warning("schema registry: a TLS handshake failed (%s); further failures are only counted", reason)

    def _authenticated(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries Basic credentials the check accepts."""
        assert self.authenticate is not None
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return self._auth_failed()
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return self._auth_failed()
        if not sep or not self.authenticate(user, password):
            return self._auth_failed()
        return True

    def _auth_failed(self) -> bool:
        with self._lock:
            self._counts["authentication_failures"] += 1
        return False

    def forward(self, url: str, method: str, path: str, body: bytes | None, headers: Any) -> tuple[int, Relayed]:
        """Ask the leader at ``url`` the same request; its status and answer (50003 when it cannot be asked)."""
        if headers.get(FORWARDED_HEADER):
            raise no_leader()  # we were asked because we led; we do not any more
        request = urllib.request.Request(url.rstrip("/") + path, data=body, method=method,
                                         headers={FORWARDED_HEADER: "1", **{h: headers[h] for h in FORWARDED_HEADERS
                                                                            if headers.get(h)}})
        try:
            with _DIRECT.open(request, timeout=self.forward_timeout_ms / 1000) as answer:
                return answer.status, Relayed(answer.read(), answer.headers.get("Content-Type", CONTENT_TYPE))
        except urllib.error.HTTPError as e:  # the leader's own error answer: pass it on
            with e:
                return e.code, Relayed(e.read(), e.headers.get("Content-Type", CONTENT_TYPE))
        except (OSError, ValueError) as e:  # refused, timed out, unreachable, a url that is no url
            reason = getattr(e, "reason", None) or e
            error = err.RegistryError(500, 50003, f"Error while forwarding the request to the leader {url}: "
                                                  f"{reason}")
            error.retriable = isinstance(reason, ConnectionRefusedError)  # it never reached the leader
            raise error from None

    def serve(self, method: str, target: str, body: Any, raw: bytes | None, headers: Any) -> Answer:
        """Route a request (``target``: path and query), forwarding it when another process leads; wait for an
        election when none does."""
        url = urllib.parse.urlsplit(target)
        path, query = url.path, urllib.parse.parse_qs(url.query)
        election = self.store.election
        deadline = time.monotonic() + self.leader_wait_ms / 1000
        while True:
            seen = self.store.leadership()
            try:
                try:
                    return self.route(method, path, query, body)
                except ForwardToLeader as leader:
                    status, answer = self.forward(leader.url, method, target, raw, headers)
                    if status < 300:
                        with contextlib.suppress(err.RegistryError):  # the answer stands; a read may lag
                            self.store.catch_up()
                    return status, answer
            except err.RegistryError as e:
                waiting = election is not None and (e.error_code == 50004 or e.retriable) and \
                    not headers.get(FORWARDED_HEADER)
                remaining = deadline - time.monotonic()
                if not waiting or remaining <= 0:
                    raise
                assert election is not None
                if election.wait_for_leader(seen, remaining).term == seen.term:
                    raise

    def _count(self, status: int) -> None:
        with self._lock:
            self._counts["requests"] += 1
            if 400 <= status < 500:
                self._counts["client_errors"] += 1
            elif status >= 500:
                self._counts["server_errors"] += 1

    # ---- routing ------------------------------------------------------------------------------------------

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Answer:
        """``(HTTP status, JSON body)`` of one request; raises :class:`RegistryError` for Confluent's errors."""
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        head = parts[0] if parts else ""
        handler = {"subjects": self._subjects, "schemas": self._schemas, "config": self._config,
                   "mode": self._mode, "compatibility": self._compatibility}.get(head)
        if not parts:
            return (200, {}) if method == "GET" else _method_not_allowed()
        if handler is None:
            return _not_found()
        return handler(method, parts[1:], query, body)

    def _subjects(self, method: str, rest: list[str], q: dict[str, list[str]], body: Any) -> Answer:
        st = self.store
        deleted = _flag(q, "deleted")
        if not rest:
            if method != "GET":
                return _method_not_allowed()
            prefix = q.get("subjectPrefix", [""])[-1]
            return 200, st.read(lambda s: s.subjects(deleted=deleted, deleted_only=_flag(q, "deleted_only"),
                                                     prefix=prefix))
        subject = rest[0]
        fmt = q.get("format", [None])[-1]
        if len(rest) == 1:
            if method == "POST":
                schema, schema_type, refs = _schema_request(body)
                metadata, rule_set = _contract(body)
                sv, text = st.read(lambda s: _with_text(s, s.lookup(subject, schema, schema_type, refs,
                                                                    deleted=deleted, metadata=metadata,
                                                                    rule_set=rule_set), fmt))
                return 200, _version_json(sv, text)
            if method == "DELETE":
                permanent = _flag(q, "permanent")
                return 200, st.change(lambda s: s.delete_subject(subject, permanent=permanent))
            return _method_not_allowed()
        if rest[1:] == ["metadata"]:
            if method != "GET":
                return _method_not_allowed()
            keys, values = q.get("key", []), q.get("value", [])
            if len(keys) != len(values):
                raise err.RegistryError(422, 422, "each metadata key needs a value")
            wanted = dict(zip(keys, values, strict=True))
            sv, text = st.read(lambda s: _with_text(s, s.latest_with_metadata(subject, wanted, deleted=deleted),
                                                    fmt))
            return 200, _version_json(sv, text)
        if rest[1] != "versions" or len(rest) > 4:
            return _not_found()
        if len(rest) == 2:
            if method == "GET":
                return 200, st.read(lambda s: s.versions(subject, deleted=deleted,
                                                         deleted_only=_flag(q, "deleted_only")))
            if method == "POST":
                return 200, {"id": self._register(subject, body)}
            return _method_not_allowed()
        spec = rest[2]
        if len(rest) == 3:
            if method == "GET":
                sv, text = st.read(lambda s: _with_text(s, s.get_version(subject, spec, deleted=deleted), fmt))
                return 200, _version_json(sv, text)
            if method == "DELETE":
                permanent = _flag(q, "permanent")
                return 200, st.change(lambda s: s.delete_version(subject, spec, permanent=permanent))
            return _method_not_allowed()
        if method != "GET":
            return _method_not_allowed()
        if rest[3] == "schema":
            return 200, Raw(st.read(lambda s: s.formatted(s.get_version(subject, spec, deleted=deleted), fmt)))
        if rest[3] == "referencedby":
            return 200, st.read(lambda s: s.referenced_by(subject, s.get_version(subject, spec,
                                                                                deleted=deleted).version))
        return _not_found()

    def _register(self, subject: str, body: Any) -> int:
        schema, schema_type, refs = _schema_request(body)
        metadata, rule_set = _contract(body)
        schema_id = body.get("id")
        version = body.get("version")
        if schema_id is not None and (not isinstance(schema_id, int) or schema_id < 1):
            raise err.invalid_schema(f"id {schema_id!r} is not a positive integer")
        if version is not None:
            version = parse_version(str(version))
        result: int = self.store.change(lambda s: s.register(subject, schema, schema_type, refs,
                                                             schema_id=schema_id, version=version,
                                                             metadata=metadata, rule_set=rule_set))
        return result

    def _schemas(self, method: str, rest: list[str], q: dict[str, list[str]], body: Any) -> Answer:
        if method != "GET":
            return _method_not_allowed()
        if rest == ["types"]:
            return 200, list(SCHEMA_TYPES)
        if len(rest) < 2 or rest[0] != "ids" or len(rest) > 3:
            return _not_found()
        try:
            schema_id = int(rest[1])
        except ValueError:
            return _not_found()
        deleted = _flag(q, "deleted")
        what = rest[2] if len(rest) == 3 else ""
        fmt = q.get("format", [None])[-1]
        if what == "":
            return 200, _by_id_json(*self.store.read(lambda s: _with_text(s, s.schema_by_id(schema_id), fmt)))
        if what == "schema":
            return 200, Raw(self.store.read(lambda s: s.formatted(s.schema_by_id(schema_id), fmt)))
        if what == "versions":
            pairs = self.store.read(lambda s: s.id_versions(schema_id, deleted=deleted))
            return 200, [{"subject": subj, "version": v} for subj, v in pairs]
        if what == "subjects":
            pairs = self.store.read(lambda s: s.id_versions(schema_id, deleted=deleted))
            return 200, sorted({subj for subj, _ in pairs})
        return _not_found()

    def _config(self, method: str, rest: list[str], q: dict[str, list[str]], body: Any) -> Answer:
        st = self.store
        if len(rest) > 1:
            return _not_found()
        subject = rest[0] if rest else None
        if method == "GET":
            found = st.read(lambda s: s.config(subject))
            if found is None and subject is not None and not _flag(q, "defaultToGlobal"):
                raise err.RegistryError(404, 40408, f"Subject '{subject}' does not have subject-level "
                                                  "compatibility configured")
            if found is None:
                found = st.read(lambda s: s.config(None)) or ConfigRecord(None, None)
            level = found.level or st.read(lambda s: s.compatibility(None))
            return 200, {"compatibilityLevel": level, **{k: json.loads(v) for k, v in
                                                         found.contract_fields().items() if v is not None}}
        if method == "PUT":
            if not isinstance(body, dict):
                raise err.RegistryError(422, 422, "The request body must be a JSON object")
            level = body.get("compatibility", body.get("compatibilityLevel"))
            contract = {name: from_body(body, name) for name in CONFIG_FIELDS}
            def plan(s: RegistryState) -> tuple[Any, list[Record]]:
                records = s.set_compatibility(subject, level, contract)
                return records[0], records

            written = st.change(plan)
            answer: dict[str, Any] = {} if written.level is None else {"compatibility": written.level}
            answer.update({k: json.loads(v) for k, v in contract.items() if v is not None})
            return 200, answer
        if method == "DELETE":
            if subject is None:
                old = st.change(lambda s: (s.compatibility(None), [ConfigRecord(None, None)]))
            else:
                old = st.change(lambda s: s.delete_compatibility(subject))
            return 200, {"compatibilityLevel": old}
        return _method_not_allowed()

    def _mode(self, method: str, rest: list[str], q: dict[str, list[str]], body: Any) -> Answer:
        st = self.store
        if len(rest) > 1:
            return _not_found()
        subject = rest[0] if rest else None
        if method == "GET":
            mode = st.read(lambda s: s.mode(subject))
            if mode is None:
                if not _flag(q, "defaultToGlobal"):
                    raise err.RegistryError(404, 40409, f"Subject '{subject}' does not have subject-level mode "
                                                      "configured")
                mode = st.read(lambda s: s.mode(None))
            return 200, {"mode": mode}
        if method == "PUT":
            if not isinstance(body, dict):
                raise err.RegistryError(422, 422, "The request body must be a JSON object")
            mode = body.get("mode")
            force = _flag(q, "force")
            st.change(lambda s: (None, s.set_mode(subject, mode, force=force)))
            return 200, {"mode": str(mode).upper()}
        if method == "DELETE" and subject is not None:
            return 200, {"mode": st.change(lambda s: s.delete_mode(subject))}
        return _method_not_allowed()

    def _compatibility(self, method: str, rest: list[str], q: dict[str, list[str]], body: Any) -> Answer:
        if len(rest) not in (3, 4) or rest[0] != "subjects" or rest[2] != "versions":
            return _not_found()
        if method != "POST":
            return _method_not_allowed()
        subject = rest[1]
        spec = rest[3] if len(rest) == 4 else None
        schema, schema_type, refs = _schema_request(body)
        problems = self.store.read(lambda s: s.check(subject, schema, schema_type, refs, spec))
        answer: dict[str, Any] = {"is_compatible": not problems}
        if _flag(q, "verbose"):
            answer["messages"] = problems
        return 200, answer

    # ---- the HTTP handler ---------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the clients reuse connections
            timeout = server.idle_ms_max / 1000

            def setup(self) -> None:
                super().setup()
                # headers and body leave in two writes; with Nagle on, the client's delayed ACK holds the body
                # back ~40 ms on every kept-alive request
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _serve(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                if server.authenticate is not None and not server._authenticated(self.headers.get("Authorization")):
                    self.close_connection = method in ("POST", "PUT")  # an unread body cannot stay on the wire
                    server._count(401)
                    self._send(401, UNAUTHORIZED, challenge=True)
                    return
                self._raw: bytes | None = None
                try:
                    body = self._body() if method in ("POST", "PUT") else None
                    status, answer = server.serve(method, self.path, body, self._raw, self.headers)
                except err.RegistryError as e:
                    status, answer = e.http_status, e.body()
                except Exception as e:  # a bug must not take the server down: one line, a 500, keep serving
                    log.error("schema registry: %s %s failed: %s: %s", method, url.path, type(e).__name__, e)
                    status, answer = 500, {"error_code": 50001, "message": f"{type(e).__name__}: {e}"}
                server._count(status)
                self._send(status, answer)

            def _body(self) -> Any:
                ctype = (self.headers.get("Content-Type") or "application/octet-stream").split(";")[0].strip()
                if self.headers.get("Transfer-Encoding"):
                    self.close_connection = True
                    raise err.RegistryError(411, 411, "A request body needs a Content-Length")
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length < 0 or length > server.request_bytes_max:
                    self.close_connection = True  # the body stays unread: this connection cannot go on
                    raise err.RegistryError(413, 413, f"Request body of {length} bytes is over the limit of "
                                                    f"{server.request_bytes_max} bytes")
                data = self.rfile.read(length) if length else b""
                self._raw = data
                if ctype.lower() not in ACCEPTED_BODY_TYPES:
                    raise err.RegistryError(415, 415, "HTTP 415 Unsupported Media Type")
                try:
                    return json.loads(data) if data else None
                except (ValueError, RecursionError) as e:
                    raise err.RegistryError(400, 400, f"Unrecognized JSON in the request body: {e}") from None

            def _send(self, status: int, answer: Any, *, challenge: bool = False) -> None:
                # compact, as Confluent's Jackson writes; a stored schema text goes out as stored
                if isinstance(answer, Relayed):
                    data, content_type = answer.data, answer.content_type
                else:
                    data = (answer.text if isinstance(answer, Raw) else
                            json.dumps(answer, ensure_ascii=False, separators=(",", ":"))).encode()
                    accept = self.headers.get("Accept") or ""
                    only_json = "application/json" in accept and "schemaregistry" not in accept
                    content_type = "application/json" if only_json else CONTENT_TYPE
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                if challenge:
                    self.send_header("WWW-Authenticate", 'Basic realm="loosely schema registry"')
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _not_found() -> Answer:
    return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}


def _method_not_allowed() -> Answer:
    return 405, {"error_code": 405, "message": "HTTP 405 Method Not Allowed"}
