"""Leader election among registry processes, through the Kafka group protocol, as Confluent and Karapace do it.

Theory of operation
-------------------

Every registry process sharing a ``_schemas`` topic joins one classic Kafka group (Confluent's
``schema.registry.group.id``, ``schema-registry`` by default) with protocol type ``"sr"`` and one protocol,
``"v0"``, whose metadata is the member's *identity*, the JSON Confluent's ``SchemaRegistryIdentity`` writes::

    {"version": 1, "host": "10.0.0.5", "port": 8081, "master_eligibility": true, "scheme": "http"}

The broker picks one member as the group's leader (not to be confused with the registry's leader); that member
receives every identity in its JoinGroup answer and computes the *assignment* (:func:`assign`): among the
eligible members, the one with the lowest url (``scheme://host:port``) leads. Two members advertising the same
url is an error (``error: 1``, Confluent's DUPLICATE_URLS): nobody leads until one is given another
``--advertise``. Every member receives the same assignment in its SyncGroup answer::

    {"version": 1, "error": 0, "master": "<kafka member id>", "master_identity": {...identity...}}

(``master`` and ``master_identity`` are left out when no member is eligible.) A member leads when ``master`` is
its own member id and it is eligible; the others forward writes to ``master_identity``'s url.

The member keeps its session with a Heartbeat every ``heartbeat_interval_ms``. The broker starts a new election
(a rebalance) when a member joins, leaves (LeaveGroup on stop) or misses heartbeats for ``session_timeout_ms``
(a process killed with ``kill -9``); the others learn it from their next heartbeat (``REBALANCE_IN_PROGRESS``) and
join again. From the moment a rebalance is seen until the new assignment arrives there is no leader here, as in
Confluent (its ``onRevoked`` forgets the leader): writes are refused with 50004 rather than risk two writers.

Why our own group member: confluent-kafka's consumer speaks only protocol type ``"consumer"`` and computes the
assignment in librdkafka, so it cannot carry these JSON documents. The member is a small blocking client on
loosely's protocol codec (kio, :mod:`loosely.protocol.messages`): FindCoordinator v2, JoinGroup v5 (with the
``MEMBER_ID_REQUIRED`` retry of KIP-394), SyncGroup v3, Heartbeat v3 and LeaveGroup v3, versions both loosely's
broker and Apache Kafka 4 serve. It runs on one thread; every request has a socket timeout (a JoinGroup may
legitimately wait for the whole rebalance timeout), and each change of role is one log line.

Plaintext only: the member does not speak SASL or TLS to the brokers. A registry whose Kafka settings ask for them
runs without election, as the single writer (see :class:`loosely.registry.SchemaRegistry`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from loosely.protocol.errors import ErrorCode, ProtocolError
from loosely.protocol.framing import SIZE
from loosely.protocol.messages import ApiKey, build, decode_response, encode_request, nested

__all__ = [
    "GROUP_ID",
    "Elector",
    "ElectorStatistics",
    "Identity",
    "Leadership",
    "assign",
    "decode_assignment",
    "decode_identity",
]

log = logging.getLogger(__name__)

GROUP_ID: Final = "schema-registry"  # Confluent's schema.registry.group.id default
PROTOCOL_TYPE: Final = "sr"  # Confluent's SchemaRegistryCoordinator.protocolType()
PROTOCOL_NAME: Final = "v0"  # its SR_SUBPROTOCOL_V0 (Karapace names its protocol the same)
IDENTITY_VERSION: Final = 1  # SchemaRegistryIdentity.CURRENT_VERSION
ASSIGNMENT_VERSION: Final = 1  # SchemaRegistryProtocol.Assignment.CURRENT_VERSION
NO_ERROR: Final = 0
DUPLICATE_URLS: Final = 1

FIND_COORDINATOR_V: Final = 2
JOIN_GROUP_V: Final = 5
SYNC_GROUP_V: Final = 3
HEARTBEAT_V: Final = 3
LEAVE_GROUP_V: Final = 3
FRAME_BYTES_MAX: Final = 8 * 1024 * 1024  # a JoinGroup answer holds one small JSON per member
RETRY_BACKOFF_MS: Final = 200  # Kafka's retry.backoff.ms is 100; a registry has no hurry
LEAVE_TIMEOUT_MS: Final = 3_000


@dataclass(frozen=True, slots=True)
class Identity:
    """What a member advertises: the url others forward writes to, and whether it may lead."""

    host: str
    port: int
    scheme: str = "http"
    eligible: bool = True

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def as_json(self) -> dict[str, Any]:
        return {"version": IDENTITY_VERSION, "host": self.host, "port": self.port,
                "master_eligibility": self.eligible, "scheme": self.scheme}

    def encode(self) -> bytes:
        return json.dumps(self.as_json(), separators=(",", ":")).encode()


def decode_identity(data: bytes | dict[str, Any]) -> Identity:
    """An identity from Confluent's or Karapace's member metadata (ValueError when it is not one)."""
    try:
        doc = json.loads(data) if isinstance(data, bytes) else data
        return Identity(str(doc["host"]), int(doc["port"]), str(doc.get("scheme") or "http"),
                        bool(doc.get("master_eligibility", True)))
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"not a schema registry identity: {data!r:.200}") from e


@dataclass(frozen=True, slots=True)
class Leadership:
    """This member's view of the election: ``generation`` (the group's) -1 while it is not joined.

    ``term`` counts the elections this member has seen end, and only grows: the broker's generation can start
    again from 1 (a loosely broker restarted without its group state), so whoever must notice *a new election*
    (a leader reading the log to its end before writing) compares terms.
    """

    generation: int
    leader: Identity | None
    is_leader: bool
    term: int = 0

    @property
    def leader_url(self) -> str | None:
        return None if self.leader is None else self.leader.url


NO_LEADER: Final = Leadership(-1, None, is_leader=False, term=-1)


@dataclass(frozen=True, slots=True)
class Assignment:
    error: int
    leader_member: str | None
    leader: Identity | None


def assign(members: Sequence[tuple[str, bytes]]) -> dict[str, bytes]:
    """The group leader's SyncGroup assignments for ``(member id, metadata)`` pairs: Confluent's rule.

    >>> a = Identity("b", 1).encode(); b = Identity("a", 2).encode(); c = Identity("0", 3, eligible=False).encode()
    >>> out = assign([("m1", a), ("m2", b), ("m3", c)])
    >>> decode_assignment(out["m3"]).leader_member
    'm2'
    """
    identities: dict[str, Identity] = {}
    for member_id, metadata in members:
        with contextlib.suppress(ValueError):  # a member we cannot read never leads
            identities[member_id] = decode_identity(metadata)
    eligible = sorted((i.url, m) for m, i in identities.items() if i.eligible)
    error = DUPLICATE_URLS if len({i.url for i in identities.values()}) != len(identities) else NO_ERROR
    doc: dict[str, Any] = {"version": ASSIGNMENT_VERSION, "error": error}
    if eligible:
        chosen = eligible[0][1]
        doc["master"] = chosen
        doc["master_identity"] = identities[chosen].as_json()
    data = json.dumps(doc, separators=(",", ":")).encode()
    return {member_id: data for member_id, _ in members}


def decode_assignment(data: bytes) -> Assignment:
    try:
        doc = json.loads(data)
        identity = doc.get("master_identity")
        return Assignment(int(doc.get("error", NO_ERROR)), doc.get("master"),
                          None if identity is None else decode_identity(identity))
    except (ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"not a schema registry assignment: {data!r:.200}") from e


class _Trouble(Exception):
    """The coordinator must be found again (unreachable, moved, or answered something we cannot read)."""


class _Rejoin(Exception):
    """The group must be joined again (a rebalance, or the coordinator forgot this member)."""


class _Wire:
    """One blocking connection to a broker: framed requests out, framed answers in, each with a timeout."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.address = f"{host}:{port}"
        self._sock = socket.create_connection((host, port), timeout=timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._correlation = 0

    def call(self, api_key: int, version: int, request: object, timeout_s: float) -> Any:
        self._correlation += 1
        self._sock.settimeout(timeout_s)
        self._sock.sendall(encode_request(api_key, version, self._correlation, request,
                                          client_id="loosely-schema-registry"))
        (size,) = SIZE.unpack(self._read(SIZE.size))
        if not 0 <= size <= FRAME_BYTES_MAX:
            raise ProtocolError(f"answer of {size} bytes from {self.address} (at most {FRAME_BYTES_MAX})")
        correlation, answer = decode_response(api_key, version, self._read(size))
        if correlation != self._correlation:
            raise ProtocolError(f"answer {correlation} from {self.address} to request {self._correlation}")
        return answer

    def _read(self, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            got = self._sock.recv(min(n - len(chunks), 1 << 20))
            if not got:
                raise ConnectionError(f"{self.address} closed the connection")
            chunks += got
        return bytes(chunks)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()


def _addresses(bootstrap_servers: str) -> list[tuple[str, int]]:
    out = []
    for item in bootstrap_servers.split(","):
        host, _, port = item.strip().rpartition(":")
        if "://" in host:
            host = host.split("://", 1)[1]
        out.append((host.strip("[]"), int(port)))
    return out


@dataclass(frozen=True, slots=True)
class ElectorStatistics:
    generation: int
    is_leader: bool
    leader_url: str | None
    joins: int
    rebalances: int
    coordinator_errors: int


def _ms(value: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=value)


class Elector:
    """A member of ``group_id`` advertising ``identity``; :meth:`leadership` is its current view.

    ``session_timeout_ms`` (Confluent's default 10 s; brokers refuse less than their
    ``group.min.session.timeout.ms``, 6 s by default) bounds how long a dead leader keeps the role;
    ``rebalance_timeout_ms`` how long an election waits for the members to join again.
    ``heartbeat_interval_ms`` is how soon the others notice an election (a leader that left): 1 s, shorter than
    Kafka's 3 s default, because a registry's writes wait for it and a heartbeat costs one small request.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        identity: Identity,
        *,
        group_id: str = GROUP_ID,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 1_000,
        rebalance_timeout_ms: int = 10_000,
        request_timeout_ms: int = 30_000,
    ) -> None:
        if not 0 < heartbeat_interval_ms < session_timeout_ms:
            raise ValueError("need 0 < heartbeat_interval_ms < session_timeout_ms")
        self.identity = identity
        self.group_id = group_id
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.request_timeout_ms = request_timeout_ms
        self._bootstrap = _addresses(bootstrap_servers)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._leadership = NO_LEADER
        self._member_id = ""
        self._wire: _Wire | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._counts = {"joins": 0, "rebalances": 0, "coordinator_errors": 0}
        self._last_trouble = ""

    # ---- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> Elector:
        self._thread = threading.Thread(target=self._run, name="loosely-registry-election", daemon=True)
        self._thread.start()
        return self

    @property
    def last_trouble(self) -> str:
        """The last reason the member could not join ("" once it has)."""
        return self._last_trouble

    def wait_joined(self, timeout_ms: int) -> bool:
        """Whether the first election finished within ``timeout_ms`` (Confluent waits the init timeout too)."""
        deadline = time.monotonic() + timeout_ms / 1000
        with self._changed:
            while self._leadership.term < 1:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def wait_for_leader(self, seen: Leadership, timeout_s: float) -> Leadership:
        """The leadership once an election newer than ``seen`` has named a leader, or as it is after the timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._leadership.term <= seen.term or self._leadership.leader is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    break
                self._changed.wait(remaining)
            return self._leadership

    def stop(self) -> None:
        """Leave the group at once (the others elect without waiting for this session to expire)."""
        self._stopping.set()
        with self._lock:
            wire = self._wire
        if wire is not None:
            wire.close()  # a JoinGroup in flight returns now
        if self._thread is not None:
            self._thread.join(10)
        self._set(self._no_leader(), "stopped")
        if self._member_id:
            try:
                wire = self._coordinator(LEAVE_TIMEOUT_MS / 1000)
                try:
                    request = build(_request_cls(ApiKey.LEAVE_GROUP, LEAVE_GROUP_V), group_id=self.group_id,
                                    members=(build(_nested_request(ApiKey.LEAVE_GROUP, LEAVE_GROUP_V,
                                                                   "MemberIdentity"),
                                                   member_id=self._member_id, group_instance_id=None),))
                    wire.call(ApiKey.LEAVE_GROUP, LEAVE_GROUP_V, request, LEAVE_TIMEOUT_MS / 1000)
                finally:
                    wire.close()
            except (OSError, ProtocolError, _Trouble) as e:  # the session expires on its own
                log.info("schema registry: could not leave group %s (%s); its session will expire",
                         self.group_id, e)
            self._member_id = ""

    # ---- the view -----------------------------------------------------------------------------------------

    def leadership(self) -> Leadership:
        with self._lock:
            return self._leadership

    def statistics(self) -> ElectorStatistics:
        with self._lock:
            return ElectorStatistics(self._leadership.generation, self._leadership.is_leader,
                                     self._leadership.leader_url, **self._counts)

    def _no_leader(self) -> Leadership:
        return Leadership(-1, None, is_leader=False, term=self._counts["joins"])

    def _set(self, leadership: Leadership, why: str) -> None:
        with self._changed:
            old = self._leadership
            self._leadership = leadership
            self._changed.notify_all()
        if (old.is_leader, old.leader_url) == (leadership.is_leader, leadership.leader_url):
            return
        if leadership.is_leader:
            log.info("schema registry: leader of group %s (generation %d) at %s", self.group_id,
                     leadership.generation, self.identity.url)
        elif leadership.leader is not None:
            log.info("schema registry: follower in group %s (generation %d); writes go to %s", self.group_id,
                     leadership.generation, leadership.leader_url)
        else:
            log.info("schema registry: no leader in group %s: %s", self.group_id, why)

    # ---- the thread ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        joined = False
        while not self._stopping.is_set():
            try:
                with self._lock:
                    wire = self._wire
                if wire is None:
                    wire = self._coordinator(self.request_timeout_ms / 1000)
                    with self._lock:
                        self._wire = wire
                    if self._stopping.is_set():
                        break
                if not joined:
                    self._join(wire)
                    joined = True
                    self._last_trouble = ""
                if self._stopping.wait(self.heartbeat_interval_ms / 1000):
                    break
                self._heartbeat(wire)
            except _Rejoin as e:
                joined = False
                self._counts["rebalances"] += 1
                self._set(self._no_leader(), str(e))
            except Exception as e:  # unreachable, refused, a bug: the member must go on, the registry keeps serving
                if self._stopping.is_set():
                    break
                joined = False
                self._counts["coordinator_errors"] += 1
                self._drop_wire()
                self._set(self._no_leader(), f"coordinator: {e}")
                if str(e) != self._last_trouble:  # one line per distinct trouble, not one per retry
                    self._last_trouble = str(e)
                    log.warning("schema registry: group %s: %s; retrying", self.group_id, e)
                self._stopping.wait(RETRY_BACKOFF_MS / 1000)
        self._drop_wire()

    def _drop_wire(self) -> None:
        with self._lock:
            wire, self._wire = self._wire, None
        if wire is not None:
            wire.close()

    def _coordinator(self, timeout_s: float) -> _Wire:
        """A connection to the group's coordinator, found through the first bootstrap broker that answers."""
        problems = []
        for host, port in self._bootstrap:
            try:
                wire = _Wire(host, port, timeout_s)
            except OSError as e:
                problems.append(f"{host}:{port}: {e.strerror or e}")
                continue
            try:
                request = build(_request_cls(ApiKey.FIND_COORDINATOR, FIND_COORDINATOR_V), key=self.group_id,
                                key_type=0)
                answer = wire.call(ApiKey.FIND_COORDINATOR, FIND_COORDINATOR_V, request, timeout_s)
            finally:
                wire.close()
            code = _code(answer)
            if code != ErrorCode.none:
                raise _Trouble(f"FindCoordinator: {ErrorCode(code).name}")
            return _Wire(str(answer.host), int(answer.port), timeout_s)
        raise _Trouble(f"no broker reachable ({'; '.join(problems)})")

    def _join(self, wire: _Wire) -> None:
        join_cls = _request_cls(ApiKey.JOIN_GROUP, JOIN_GROUP_V)
        protocol = build(_nested_request(ApiKey.JOIN_GROUP, JOIN_GROUP_V, "JoinGroupRequestProtocol"),
                         name=PROTOCOL_NAME, metadata=self.identity.encode())
        # the broker may hold a JoinGroup until every member has joined: up to the rebalance timeout
        timeout_s = (self.rebalance_timeout_ms + self.request_timeout_ms) / 1000
        for _ in range(2):  # KIP-394: the first join of a new member is answered with the id to join with
            request = build(join_cls, group_id=self.group_id, session_timeout=_ms(self.session_timeout_ms),
                            rebalance_timeout=_ms(self.rebalance_timeout_ms), member_id=self._member_id,
                            group_instance_id=None, protocol_type=PROTOCOL_TYPE, protocols=(protocol,))
            answer = wire.call(ApiKey.JOIN_GROUP, JOIN_GROUP_V, request, timeout_s)
            code = _code(answer)
            if code == ErrorCode.member_id_required:
                self._member_id = str(answer.member_id)
                continue
            break
        self._check(code, "JoinGroup")
        self._member_id = str(answer.member_id)
        generation = int(answer.generation_id)
        assignments: dict[str, bytes] = {}
        if str(answer.leader) == self._member_id:
            assignments = assign([(str(m.member_id), bytes(m.metadata)) for m in answer.members])
        sync_cls = _request_cls(ApiKey.SYNC_GROUP, SYNC_GROUP_V)
        item_cls = _nested_request(ApiKey.SYNC_GROUP, SYNC_GROUP_V, "SyncGroupRequestAssignment")
        request = build(sync_cls, group_id=self.group_id, generation_id=generation, member_id=self._member_id,
                        group_instance_id=None,
                        assignments=tuple(build(item_cls, member_id=m, assignment=a) for m, a in assignments.items()))
        answer = wire.call(ApiKey.SYNC_GROUP, SYNC_GROUP_V, request, timeout_s)
        self._check(_code(answer), "SyncGroup")
        assignment = decode_assignment(bytes(answer.assignment))
        self._counts["joins"] += 1
        if assignment.error == DUPLICATE_URLS:
            log.error("schema registry: group %s has several members advertising the same url; give each a "
                      "url the others can reach (--advertise). No leader until then.", self.group_id)
            self._set(Leadership(generation, None, is_leader=False, term=self._counts["joins"]), "duplicate urls")
            return
        leads = assignment.leader_member == self._member_id and self.identity.eligible
        self._set(Leadership(generation, assignment.leader, is_leader=leads, term=self._counts["joins"]),
                  "no member may lead; reads are served, writes are refused")

    def _heartbeat(self, wire: _Wire) -> None:
        with self._lock:
            generation = self._leadership.generation
        request = build(_request_cls(ApiKey.HEARTBEAT, HEARTBEAT_V), group_id=self.group_id,
                        generation_id=generation, member_id=self._member_id, group_instance_id=None)
        answer = wire.call(ApiKey.HEARTBEAT, HEARTBEAT_V, request, self.request_timeout_ms / 1000)
        self._check(_code(answer), "Heartbeat")

    def _check(self, code: int, what: str) -> None:
        if code == ErrorCode.none:
            return
        if code in (ErrorCode.unknown_member_id, ErrorCode.fenced_instance_id):
            self._member_id = ""
            raise _Rejoin(f"{what}: the coordinator forgot this member ({ErrorCode(code).name})")
        if code in (ErrorCode.rebalance_in_progress, ErrorCode.illegal_generation, ErrorCode.member_id_required):
            raise _Rejoin(f"{what}: a new election ({ErrorCode(code).name})")
        if code in (ErrorCode.not_coordinator, ErrorCode.coordinator_not_available,
                    ErrorCode.coordinator_load_in_progress):
            raise _Trouble(f"{what}: {ErrorCode(code).name}")
        # a refusal that will not go away by retrying (invalid session timeout, authorization): say it and retry
        # slowly rather than stop, so the registry keeps serving reads and recovers once it is fixed
        name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else str(code)
        raise _Trouble(f"{what} refused: {name}")


def _code(answer: Any) -> int:
    code = answer.error_code
    return int(code.value if hasattr(code, "value") else code)


def _request_cls(api_key: int, version: int) -> type[Any]:
    from kio.index import load_request_schema  # noqa: PLC0415 - loosely.protocol.messages loads kio already

    cls: type[Any] = load_request_schema(api_key, version)
    return cls


def _nested_request(api_key: int, version: int, name: str) -> type[Any]:
    return nested(_request_cls(api_key, version), name)

