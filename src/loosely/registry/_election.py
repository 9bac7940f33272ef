"""The registry's group member: the shell around :mod:`loosely.registry._group`'s state machine.

Theory of operation
-------------------

Several registry processes over one topic elect their writer in a classic Kafka group, as Confluent's and
Karapace's do; the protocol, its JSON documents and the member's states are described in
:mod:`loosely.registry._group`. This module owns what the pure machine does not: the socket to the group
coordinator, the thread, the clock and the log lines.

The thread loops: wait until the state's ``due_ms``, send the request its phase calls for (FindCoordinator v2,
JoinGroup v5, SyncGroup v3, Heartbeat v3), feed the answer -- or the failure to get one -- to ``step``, publish the
new leadership. Every request has a socket timeout (a JoinGroup may legitimately wait for the whole rebalance
timeout); :meth:`Elector.stop` closes the socket, so a request in flight returns at once, and sends LeaveGroup v3
so the others elect without waiting for this session to expire. Each change of role is one log line, and each
distinct trouble one warning.

Why our own member: confluent-kafka's consumer speaks only protocol type ``"consumer"`` and computes the assignment
in librdkafka, so it cannot carry these JSON documents. The requests are built with loosely's codec (kio,
:mod:`loosely.protocol.messages`), in versions loosely's broker and Apache Kafka 4 both serve.

Secured clusters: the member's connection (:class:`loosely.clients.wire.KafkaConnection`) reads the same
librdkafka settings as the registry's Kafka clients: TLS with ``ssl.ca.location`` and an optional client
certificate, and SASL PLAIN or SCRAM-SHA-256/512 (SaslHandshake v1, SaslAuthenticate v2, the SCRAM exchange of
:class:`loosely.security.scram.ScramClient`). Another mechanism (OAUTHBEARER, GSSAPI) makes the registry run
without election, as the single writer (see :class:`loosely.registry.SchemaRegistry`).
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Final

from loosely.clients.wire import KafkaConnection, KafkaSecurity, WireError, error_code, request_class
from loosely.protocol.errors import ErrorCode, ProtocolError
from loosely.protocol.messages import ApiKey, build, nested
from loosely.registry._group import (
    GROUP_ID,
    NO_LEADER,
    PROTOCOL_NAME,
    PROTOCOL_TYPE,
    CoordinatorFound,
    Event,
    HeartbeatAnswer,
    Identity,
    JoinAnswer,
    Leadership,
    MemberState,
    Phase,
    SyncAnswer,
    Timing,
    Trouble,
    step,
)

__all__ = ["GROUP_ID", "Elector", "ElectorStatistics", "Identity", "KafkaSecurity", "Leadership"]

log = logging.getLogger(__name__)

FIND_COORDINATOR_V: Final = 2
JOIN_GROUP_V: Final = 5
SYNC_GROUP_V: Final = 3
HEARTBEAT_V: Final = 3
LEAVE_GROUP_V: Final = 3
FRAME_BYTES_MAX: Final = 8 * 1024 * 1024  # a JoinGroup answer holds one small JSON per member
RETRY_BACKOFF_MS: Final = 200  # Kafka's retry.backoff.ms is 100; a registry has no hurry
LEAVE_TIMEOUT_MS: Final = 3_000
CLIENT_ID: Final = "loosely-schema-registry"


class _Trouble(Exception):
    """The coordinator cannot be asked."""


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
        security: KafkaSecurity | None = None,
    ) -> None:
        if not 0 < heartbeat_interval_ms < session_timeout_ms:
            raise ValueError("need 0 < heartbeat_interval_ms < session_timeout_ms")
        self.identity = identity
        self.group_id = group_id
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.request_timeout_ms = request_timeout_ms
        self.security = security
        self._timing = Timing(heartbeat_interval_ms, RETRY_BACKOFF_MS)
        self._bootstrap = _addresses(bootstrap_servers)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._state = MemberState(identity)
        self._wire: KafkaConnection | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
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
        """Whether the first election finished within ``timeout_ms`` (Confluent waits the init timeout too).

        A refusal that retrying will not cure (a session timeout out of the broker's bounds, a group ACL) ends the
        wait at once, with :attr:`last_trouble` saying why.
        """
        deadline = time.monotonic() + timeout_ms / 1000
        with self._changed:
            while self._state.leadership.term < 1:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._state.refused:
                    return False
                self._changed.wait(remaining)
            return True

    def wait_for_leader(self, seen: Leadership, timeout_s: float) -> Leadership:
        """The leadership once an election newer than ``seen`` has named a leader, or as it is after the timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._state.leadership.term <= seen.term or self._state.leadership.leader is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    break
                self._changed.wait(remaining)
            return self._state.leadership

    def stop(self) -> None:
        """Leave the group at once (the others elect without waiting for this session to expire)."""
        self._stopping.set()
        with self._lock:
            wire = self._wire
        if wire is not None:
            wire.close()  # a JoinGroup in flight returns now
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            state = self._state
        self._publish(replace(state, leadership=NO_LEADER), "stopped")
        if state.member_id:
            try:
                wire = self._coordinator(LEAVE_TIMEOUT_MS / 1000)
                try:
                    request = build(request_class(ApiKey.LEAVE_GROUP, LEAVE_GROUP_V), group_id=self.group_id,
                                    members=(build(_nested_request(ApiKey.LEAVE_GROUP, LEAVE_GROUP_V,
                                                                   "MemberIdentity"),
                                                   member_id=state.member_id, group_instance_id=None),))
                    wire.call(ApiKey.LEAVE_GROUP, LEAVE_GROUP_V, request, LEAVE_TIMEOUT_MS / 1000)
                finally:
                    wire.close()
            except (OSError, ProtocolError, WireError, _Trouble) as e:  # the session expires on its own
                log.info("schema registry: could not leave group %s (%s); its session will expire",
                         self.group_id, e)

    # ---- the view -----------------------------------------------------------------------------------------

    def leadership(self) -> Leadership:
        with self._lock:
            return self._state.leadership

    def statistics(self) -> ElectorStatistics:
        with self._lock:
            s = self._state
        return ElectorStatistics(s.leadership.generation, s.leadership.is_leader, s.leadership.leader_url,
                                 joins=s.terms, rebalances=s.rebalances, coordinator_errors=s.troubles)

    def _publish(self, state: MemberState, why: str) -> None:
        with self._changed:
            old = self._state.leadership
            self._state = state
            self._changed.notify_all()
        new = state.leadership
        if new.is_leader and not old.is_leader:
            log.info("schema registry: leader of group %s (generation %d) at %s", self.group_id, new.generation,
                     self.identity.url)
        elif new.leader is not None and not new.is_leader and (old.is_leader or new.leader_url != old.leader_url):
            log.info("schema registry: follower in group %s (generation %d); writes go to %s", self.group_id,
                     new.generation, new.leader_url)
        elif new.leader is None and (old.leader is not None or (new.term != old.term and why)):
            log.info("schema registry: no leader in group %s: %s", self.group_id, why)

    # ---- the thread ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                state = self._state
            wait_s = (state.due_ms - _now_ms()) / 1000
            if wait_s > 0 and self._stopping.wait(wait_s):
                break
            try:
                event: Event = self._ask(state)
            except Exception as e:  # unreachable, refused, a bug: the member must go on, the registry keeps serving
                if self._stopping.is_set():
                    break
                event = Trouble(str(e) or type(e).__name__)
            try:
                state, why = step(state, event, _now_ms(), self._timing)
            except ValueError as e:  # an assignment we cannot read
                state, why = step(state, Trouble(str(e)), _now_ms(), self._timing)
            if state.phase is Phase.FINDING:
                self._drop_wire()
                if why != self._last_trouble:  # one line per distinct trouble, not one per retry
                    log.warning("schema registry: group %s: %s; retrying", self.group_id, why)
            self._last_trouble = why if state.phase is Phase.FINDING else ""
            self._publish(state, why)
        self._drop_wire()

    def _drop_wire(self) -> None:
        with self._lock:
            wire, self._wire = self._wire, None
        if wire is not None:
            wire.close()

    def _ask(self, state: MemberState) -> Event:
        """Send the request ``state``'s phase calls for; the answer as an event."""
        with self._lock:
            wire = self._wire
        if state.phase is Phase.FINDING or wire is None:
            wire = self._coordinator(self.request_timeout_ms / 1000)
            with self._lock:
                self._wire = wire
            return CoordinatorFound()
        if state.phase is Phase.JOINING:
            protocol = build(_nested_request(ApiKey.JOIN_GROUP, JOIN_GROUP_V, "JoinGroupRequestProtocol"),
                             name=PROTOCOL_NAME, metadata=self.identity.encode())
            request = build(request_class(ApiKey.JOIN_GROUP, JOIN_GROUP_V), group_id=self.group_id,
                            session_timeout=_ms(self.session_timeout_ms),
                            rebalance_timeout=_ms(self.rebalance_timeout_ms), member_id=state.member_id,
                            group_instance_id=None, protocol_type=PROTOCOL_TYPE, protocols=(protocol,))
            # the broker may hold a JoinGroup until every member has joined: up to the rebalance timeout
            answer = wire.call(ApiKey.JOIN_GROUP, JOIN_GROUP_V, request,
                               (self.rebalance_timeout_ms + self.request_timeout_ms) / 1000)
            return JoinAnswer(error_code(answer), str(answer.member_id), int(answer.generation_id), str(answer.leader),
                              tuple((str(m.member_id), bytes(m.metadata)) for m in answer.members))
        if state.phase is Phase.SYNCING:
            item_cls = _nested_request(ApiKey.SYNC_GROUP, SYNC_GROUP_V, "SyncGroupRequestAssignment")
            request = build(request_class(ApiKey.SYNC_GROUP, SYNC_GROUP_V), group_id=self.group_id,
                            generation_id=state.generation, member_id=state.member_id, group_instance_id=None,
                            assignments=tuple(build(item_cls, member_id=m, assignment=a) for m, a in
                                              state.assignments))
            answer = wire.call(ApiKey.SYNC_GROUP, SYNC_GROUP_V, request,
                               (self.rebalance_timeout_ms + self.request_timeout_ms) / 1000)
            return SyncAnswer(error_code(answer), bytes(answer.assignment))
        request = build(request_class(ApiKey.HEARTBEAT, HEARTBEAT_V), group_id=self.group_id,
                        generation_id=state.generation, member_id=state.member_id, group_instance_id=None)
        answer = wire.call(ApiKey.HEARTBEAT, HEARTBEAT_V, request, self.request_timeout_ms / 1000)
        return HeartbeatAnswer(error_code(answer))

    def _coordinator(self, timeout_s: float) -> KafkaConnection:
        """A connection to the group's coordinator, found through the first bootstrap broker that answers."""
        problems = []
        for host, port in self._bootstrap:
            try:
                wire = KafkaConnection(host, port, timeout_s, self.security, frame_bytes_max=FRAME_BYTES_MAX,
                                   client_id=CLIENT_ID)
            except OSError as e:
                problems.append(f"{host}:{port}: {e.strerror or e}")
                continue
            try:
                request = build(request_class(ApiKey.FIND_COORDINATOR, FIND_COORDINATOR_V), key=self.group_id,
                                key_type=0)
                answer = wire.call(ApiKey.FIND_COORDINATOR, FIND_COORDINATOR_V, request, timeout_s)
            finally:
                wire.close()
            code = error_code(answer)
            if code != ErrorCode.none:
                raise _Trouble(f"FindCoordinator: {ErrorCode(code).name}")
            return KafkaConnection(str(answer.host), int(answer.port), timeout_s, self.security,
                                   frame_bytes_max=FRAME_BYTES_MAX, client_id=CLIENT_ID)
        raise _Trouble(f"no broker reachable ({'; '.join(problems)})")


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def _nested_request(api_key: int, version: int, name: str) -> type[Any]:
    return nested(request_class(api_key, version), name)

