"""The broker's asyncio shell: listening sockets, connections, request dispatch, housekeeping.

Theory of operation
-------------------
The broker owns one listening socket per listener (``listeners``, :mod:`loosely.broker._listening`;
``socket.listen.backlog.size``) and accepts on each in a task of its own, which stops accepting while
``max.connections`` are open (new clients wait in the kernel's backlog, as with Kafka's blocked acceptor) and closes
at once a connection from an address over ``max.connections.per.ip`` (:mod:`loosely.broker._admission`).

On an SSL or SASL_SSL listener the TLS handshake runs in a task per connection (a client that stalls it must not
hold up the accept loop) with the listener's current context (:class:`loosely.tls.ServerContexts`, which follows
certificate files as they are replaced) and is abandoned after ``loosely.ssl.handshake.timeout.ms``. A handshake
that fails (plaintext spoken to a TLS port, an untrusted client certificate, a timeout) costs one rate-limited log
line and the socket; TLS spoken to a plaintext port is recognised by its first bytes and closed the same way. Each
connection knows its listener and its principal (``User:ANONYMOUS`` until a client certificate or SASL names it),
and its worker task sets :data:`~loosely.broker.context.current_listener`, so Metadata, FindCoordinator and
DescribeCluster answer with the addresses of the listener the client came in on, as Kafka does.

Each connection is an :class:`asyncio.Protocol`. Incoming bytes feed a sans-IO
:class:`~loosely.protocol.framing.FrameReader`; complete frames go to a per-connection queue, which one worker task
drains *in order*, so responses leave in request order as Kafka clients require (a long-polling Fetch holds the
connection's later requests back, exactly like Kafka's muted channels). Reading pauses, never closes, when a
connection has more than ``queued_requests_max`` frames waiting, or when the next frame's declared size cannot be
charged to the broker-wide ``queued.max.request.bytes`` budget (it resumes when handled requests refund it): memory
held for requests is bounded across all clients. A request whose first byte arrived more than
``loosely.request.receive.timeout.ms`` ago and which is still incomplete closes its connection (a client trickling
bytes is never idle, so ``connections.max.idle.ms`` alone would keep it forever). A closed connection drops its
buffers at once.

A frame that cannot be understood (bad size prefix, undecodable request, unknown API or version) closes the
connection after one log line; nothing else is affected. An unexpected exception in a handler is logged with its
traceback and closes only that connection; an ``OSError`` (a disk error the handler had no answer for) does the
same with one rate-limited line instead (``loosely.storage.faults``). Housekeeping (retention, rolls, flush.ms,
checkpoints) runs on a timer on the loop thread; the log cleaner runs in a worker thread and hands its results back
to the loop, and the
scrubber (:mod:`loosely.broker.scrubber`) CRC-checks closed segments in worker-thread slices at a bounded rate.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import logging
import os
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from loosely.broker._admission import ConnectionCounts, ConnectionLimits, LogEvery, RequestBytes, normal_ip
from loosely.broker._jwks import JwksSource
from loosely.broker._listening import ListenerSpec, check_listener, is_wildcard
from loosely.broker._sasl import PASS, AnswerAndClose, SaslGate, oauthbearer_options_for, plain_users_for
from loosely.broker.acls import BrokerAcls
from loosely.broker.client_metrics import ClientTelemetry, Subscriptions
from loosely.broker.config import BrokerConfig, split_kafka_settings
from loosely.broker.context import (
    CLOSE_CONNECTION,
    BoundListener,
    BrokerContext,
    ClientSoftware,
    ConnectionEnd,
    Handler,
    RequestTime,
    current_client_software,
    current_connection_end,
    current_listener,
    current_peer,
    current_principal,
    current_request_time,
    current_throttle_ms,
    current_token_authenticated,
)
from loosely.broker.dynamic_config import DynamicBrokerConfigs
from loosely.broker.extensions import EXTENSIONS
from loosely.broker.group_configs import GroupConfigs
from loosely.broker.handlers import all_handlers
from loosely.broker.handlers._util import charge_request_time
from loosely.broker.handlers.admin import connection_limits
from loosely.broker.handlers.api_versions import unsupported_version_response
from loosely.broker.handlers.quotas import resolve_hosts
from loosely.broker.handlers.telemetry import TELEMETRY_APIS
from loosely.broker.key_search import SERVICE as KEY_SEARCH
from loosely.broker.key_search import KeySearch
from loosely.broker.metrics import BrokerMetrics
from loosely.broker.quotas import ClientQuotas, host_names
from loosely.broker.scrubber import Scrubber
from loosely.protocol.errors import FrameError, ProtocolError, UnsupportedVersionError
from loosely.protocol.framing import FrameReader
from loosely.protocol.messages import (
    API_NAMES,
    SUPPORTED_VERSIONS,
    ApiKey,
    decode_request,
    encode_response,
    peek_request_prefix,
)
from loosely.protocol.names import TopicPartition
from loosely.security.credentials import CredentialStore
from loosely.security.jwt import JwtValidatorOptions
from loosely.security.sasl import SaslSession, SaslSettings
from loosely.security.tokens import DelegationTokens
from loosely.storage.cleaner import CleanAborted, SegmentRef, clean, plan
from loosely.storage.clock import Clock, SystemClock
from loosely.storage.fs import FileSystem
from loosely.storage.manager import LogManager
from loosely.tls import ANONYMOUS, NoMatchingRuleError, ServerContexts, principal_from_certificate

__all__ = ["Broker", "BrokerStatistics", "BrokerThread"]

log = logging.getLogger("loosely.broker")

ACCEPT_RETRY_S: Final = 1.0  # after accept() fails (EMFILE, ENOBUFS): soon, but not in a busy loop
# The first bytes of a TLS record carrying a handshake (content type 22, version 3.x): a ClientHello.
TLS_HANDSHAKE_PREFIX: Final = b"\x16\x03"
TLS_FAILURE_KINDS_MAX: Final = 64  # distinct handshake failure reasons rate-limited separately


@dataclass(slots=True)
class _Listener:
    """A listener at run time: its configuration, socket, TLS contexts, and what its connections are told."""

    spec: ListenerSpec
    sock: socket.socket
    bound: BoundListener
    tls: ServerContexts | None


def _listen_socket(host: str, port: int, backlog: int) -> socket.socket:
    """The listening socket, bound to the first address ``host`` resolves to, with socket.listen.backlog.size."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(frozen=True, slots=True)
class BrokerStatistics:
    connections_active: int
    connections_total: int
    requests_total: Mapping[str, int]
    request_errors_total: Mapping[str, int]
    bytes_in_total: int
    bytes_out_total: int
    messages_in_total: int
    topics: int
    partitions: int
    log_bytes: int
    storage_errors_total: Mapping[str, int]  # operation (append, roll, flush, read, ...) -> disk errors
    logs_refusing_writes: int  # partitions whose failed append could not be undone yet (see docs/broker.md)
    request_bytes_queued: int  # charged to queued.max.request.bytes right now
    connections_waiting_for_bytes: int  # connections paused until queued.max.request.bytes has room
    connections_rejected_total: int  # closed at once by max.connections.per.ip
    connections_throttled_total: int = 0  # held, then closed, over their IP's connection_creation_rate
    tls_handshake_failures_total: int = 0  # TLS handshakes that failed or timed out, and TLS on plaintext listeners
    # Damage (docs/broker.md, "Damage, recovery and quarantine files"): files recovery moved aside and not yet
    # removed by an operator, and bad batches found by recovery or by the scrubber since start.
    quarantined_files: int = 0
    quarantined_bytes: int = 0
    damaged_batches: int = 0
    scrubbed_bytes: int = 0
    sasl_authentications_total: int = 0  # successful SASL logins and re-authentications
    sasl_authentication_failures_total: int = 0


def _with_request_throttle(response: object, request_ms: int) -> object:
    """The response with the larger of its own throttle (a byte rate, mutations) and the request-time one (Kafka's
    RequestHandlerHelper takes the maximum); the connection is muted for as long."""
    if request_ms <= 0:
        return response
    own = getattr(response, "throttle_time", None)
    if not isinstance(own, datetime.timedelta):  # a version without the field (Kafka mutes it all the same)
        current_throttle_ms.set(max(current_throttle_ms.get(), request_ms))
        return response
    throttle_ms = max(request_ms, round(own.total_seconds() * 1000))
    current_throttle_ms.set(max(current_throttle_ms.get(), throttle_ms))
    return dataclasses.replace(response, throttle_time=datetime.timedelta(milliseconds=throttle_ms))  # type: ignore[type-var]


def _load_cluster_id(fs: FileSystem, data_dir: str, node_id: int, wanted: str | None) -> str:
    """Kafka's ``meta.properties``: the cluster id is generated once and kept."""
    path = os.path.join(data_dir, "meta.properties")
    if fs.exists(path):
        props = dict(line.split("=", 1) for line in fs.read_file(path).decode().splitlines() if "=" in line)
        if "cluster.id" in props:
            return props["cluster.id"]
    cid = wanted or base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
    fs.write_atomic(path, f"version=1\ncluster.id={cid}\nnode.id={node_id}\n".encode())
    return cid


class _Connection(asyncio.Protocol):
    def __init__(self, broker: Broker, ip: str, listener: _Listener) -> None:
        self.broker = broker
        self.ip = ip  # what max.connections.per.ip counts; the accept loop admitted it
        self.listener: BoundListener = listener.bound  # .name, .security_protocol, advertised .host/.port
        self._tls = listener.tls
        self.principal: str = ANONYMOUS  # Kafka's KafkaPrincipal: a client certificate or SASL may name it
        self.first_bytes = True
        self.reader = FrameReader(broker.config.frame_bytes_max)
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self.worker: asyncio.Task[None] | None = None
        self.paused = False  # reading is paused, for either of the two reasons below
        self.paused_for_queue = False  # more than queued.max.requests frames wait on this connection
        self.paused_for_bytes = False  # the next frame could not be charged to queued.max.request.bytes
        self.charged_bytes = 0  # charged to the broker's request bytes: the frame in progress, queued, in flight
        self.frame_charged = False  # the frame whose size prefix is buffered is already charged
        self.partial_since_ms: int | None = None  # when the first byte of the frame in progress arrived
        self.peer = "?"
        self.closing = False
        self.busy = False  # a request is being handled (a long-polling fetch is not idleness)
        self.last_active_ms = broker.clock.monotonic_ms()
        # Who is on the other end: "User:ANONYMOUS" until a SASL listener's authentication names the user.
        self.sasl = broker.sasl_session(self)  # None unless the listener uses SASL
        self.end = ConnectionEnd()  # run when the connection closes (share sessions opened on it)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports don't subclass asyncio's
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.broker.ctx.connections_active += 1
        self.broker.ctx.connections_total += 1
        self.broker.connections.add(self)
        if self._tls is not None and not self._set_tls_principal(transport):
            return
        self.worker = asyncio.get_running_loop().create_task(self._work())

    def _set_tls_principal(self, transport: asyncio.BaseTransport) -> bool:
        """Kafka's principal for the client certificate (if any); False (and closed) when no mapping rule applies."""
        assert self._tls is not None
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        try:
            self.principal = principal_from_certificate(der, self._tls.rules)
        except (NoMatchingRuleError, ValueError) as e:
            self.close(f"refusing the client certificate on listener {self.listener.name}: {e}")
            return False
        return True

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.first_bytes:
            self.first_bytes = False
            if self._tls is None and data.startswith(TLS_HANDSHAKE_PREFIX):
                self.broker.count_tls_failure(
                    "the client spoke TLS to plaintext listener %s (port %d): closing the connection from %s; "
                    "connect to a TLS listener, or without TLS",
                    self.listener.name,
                    self.listener.bound_port,
                    self.peer,
                )
                self.closing = True
                assert self.transport is not None
                self.transport.close()
                return
        self.last_active_ms = self.broker.clock.monotonic_ms()
        self.reader.feed(data)
        self._pump()

    def _pump(self) -> None:
        """Turn buffered bytes into queued frames, charging each to queued.max.request.bytes when its size is known."""
        budget = self.broker.request_bytes
        completed = False
        try:
            while (size := self.reader.pending_frame_bytes) is not None:
                if not self.frame_charged:
                    if not budget.charge(size):
                        if not self.paused_for_bytes:  # wait in line once
                            self.paused_for_bytes = True
                            budget.wait(self._budget_available)
                        break
                    self.frame_charged = True
                    self.charged_bytes += size
                frame = self.reader.next_frame()
                if frame is None:
                    break
                self.frame_charged = False
                completed = True
                self.queue.put_nowait(frame)
        except FrameError as e:
            self.close(f"bad frame: {e}")
            return
        if self.reader.buffered_bytes == 0:
            self.partial_since_ms = None
        elif completed or self.partial_since_ms is None:
            self.partial_since_ms = self.last_active_ms
        if self.queue.qsize() > self.broker.config.queued_requests_max:
            self.paused_for_queue = True
        self._update_reading()

    def _budget_available(self) -> None:
        if self.closing:
            return
        self.paused_for_bytes = False
        self._pump()

    def _update_reading(self) -> None:
        pause = self.paused_for_queue or self.paused_for_bytes
        if pause == self.paused or not self._open():
            return
        assert self.transport is not None
        self.paused = pause
        if pause:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()
            if self.partial_since_ms is not None:  # time the broker itself held the client back does not count
                self.partial_since_ms = self.broker.clock.monotonic_ms()

    def _open(self) -> bool:
        # uvloop refuses calls on a transport the peer has closed before connection_lost has been delivered
        return self.transport is not None and not self.closing and not self.transport.is_closing()

    def _refund(self, n: int) -> None:
        n = min(n, self.charged_bytes)  # after connection_lost everything is refunded already
        if n:
            self.charged_bytes -= n
            self.broker.request_bytes.refund(n)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.broker.ctx.connections_active -= 1
        self.broker.connections.discard(self)
        self.broker.connection_closed(self.ip)
        self.end.run()
        # Free the buffers now: the worker task and this object form a cycle that only the garbage collector would
        # break, and an idle broker may not collect for a long time (the 40 MiB partial frames of ten abusive
        # clients stayed resident after they left).
        self.reader.release()
        while not self.queue.empty():
            self.queue.get_nowait()
        self.broker.request_bytes.forget(self._budget_available)
        self.frame_charged = False
        self._refund(self.charged_bytes)
        if self.worker is not None:
            self.worker.cancel()
            self.worker = None

    def close(self, reason: str | None = None) -> None:
        if reason:
            log.warning("closing connection from %s: %s", self.peer, reason)
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    async def _work(self) -> None:
        current_listener.set(self.listener)  # this task's context: every request it handles sees its listener
        current_client_software.set(ClientSoftware())  # ApiVersions fills it in
        current_connection_end.set(self.end)
        while not self.closing:
            frame = await self.queue.get()
            self.busy = True
            current_throttle_ms.set(0)
            try:
                out = PASS if self.sasl is None else await self.broker.sasl_gate.handle(self, frame)
                if out is PASS:
                    current_token_authenticated.set(self.sasl is not None and self.sasl.token_authenticated)
                    out = await self.broker.dispatch(frame, self.peer, self.principal)
            except asyncio.CancelledError:
                raise
            except OSError as e:
                # A disk error on a path with no answer of its own: counted and logged once per interval (a full
                # disk would otherwise print a traceback per request); the client reconnects and retries.
                self.broker.logs.faults.report("the broker", "request", e, f"; closing the connection from {self.peer}")
                self.close()
                return
            except Exception:
                log.exception("request from %s failed; closing the connection", self.peer)
                self.close()
                return
            finally:
                self._refund(len(frame))
                del frame
            if out is CLOSE_CONNECTION:
                self.close()
                return
            if isinstance(out, AnswerAndClose):
                if self._open():
                    assert self.transport is not None
                    self.transport.write(out.data)
                self.close()
                return
            if out is not None and self._open():
                assert isinstance(out, bytes)
                assert self.transport is not None
                self.transport.write(out)
            throttle_ms = current_throttle_ms.get()
            if throttle_ms > 0:  # over its quota: answered at once, then nothing more is read from it for a while
                await asyncio.sleep(throttle_ms / 1000)
            self.busy = False
            self.last_active_ms = self.broker.clock.monotonic_ms()
            if self.paused_for_queue and self.queue.qsize() <= self.broker.config.queued_requests_max // 2:
                self.paused_for_queue = False
                self._update_reading()


class Broker:
    """A Kafka-compatible broker in this process's event loop.

    >>> import asyncio, tempfile
    >>> async def main():
    ...     async with Broker(BrokerConfig(data_dir=tempfile.mkdtemp(), port=0)) as b:
    ...         return b.port > 0
    >>> asyncio.run(main())
    True
    """

    def __init__(
        self,
        config: BrokerConfig,
        *,
        clock: Clock | None = None,
        fs: FileSystem | None = None,
    ) -> None:
        _, _, unknown = split_kafka_settings(config.log_defaults)  # raises ValueError for a bad value
        if unknown:
            raise ValueError(f"log_defaults holds settings that are not topic defaults: {', '.join(unknown)}")
        config.check_limits()
        self.specs = config.listener_specs()
        # every listener checked, and every TLS key loaded, before anything binds: a mistake is one line at start-up
        remote = [s for s in self.specs if not check_listener(s, config.allow_unauthenticated)]
        self.loopback = not remote
        # reachable from other machines by anyone, without authentication (allowed by --allow-unauthenticated)
        self.open_listeners = [s for s in remote if not s.authenticates]
        self.tls_contexts = {s.name: ServerContexts(s.name, s.tls) for s in self.specs if s.tls is not None}
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.tls_handshake_failures_total = 0
        self.request_bytes = RequestBytes(config.queued_request_bytes_limit)
        self.connection_counts = ConnectionCounts(
            config.connections_max, config.connections_per_ip_max, config.connections_per_ip_overrides
        )
        self.connections_rejected_total = 0
        # Connections over their IP's connection_creation_rate, held unread until their close is due, and how many
        # have been closed that way
        self._held: dict[socket.socket, asyncio.TimerHandle] = {}
        self.connections_throttled_total = 0
        self._log_admission = LogEvery(log, self.clock)
        self._log_tls: dict[str, LogEvery] = {}  # one per kind of failure (a handful of fixed messages)
        self._slot_freed: asyncio.Event | None = None
        self._cleaner_backoff_ms = config.cleaner_backoff_ms  # log.cleaner.backoff.ms, dynamic over the static one
        self._cleaner_wake = asyncio.Event()  # set when it changes
        self._listeners: list[_Listener] = []
        self._accepting: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        self.logs = LogManager(config.data_dir, fs=fs, clock=self.clock, broker_defaults=config.log_defaults)
        self.handlers: dict[int, Handler] = all_handlers()
        self.connections: set[_Connection] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._jwks: JwksSource | None = None  # signed OAUTHBEARER tokens' keys (loosely.broker._jwks)
        self._ctx: BrokerContext | None = None
        self.started_monotonic_ms = 0
        self._extensions: list[Any] = []
        self.metrics: BrokerMetrics | None = None
        self.scrubber: Scrubber | None = None
        self.credentials: CredentialStore | None = None
        self.tokens: DelegationTokens | None = None
        self._sasl_gate: SaslGate | None = None

    # --- lifecycle -----------------------------------------------------------------------------------------

    @property
    def ctx(self) -> BrokerContext:
        assert self._ctx is not None, "the broker is not started"
        return self._ctx

    @property
    def sasl_gate(self) -> SaslGate:
        assert self._sasl_gate is not None, "the broker is not started"
        return self._sasl_gate

    def sasl_session(self, conn: _Connection) -> SaslSession | None:
        """The SASL session of a connection on a SASL listener (None on other listeners): the one place that decides."""
        settings = self.sasl_gate.settings.get(conn.listener.name)
        return SaslSession(settings) if settings is not None else None

    def _start_security(self) -> None:
        """The SCRAM credential store (created empty on first start) and each SASL listener's settings."""
        config = self.config
        store = self.credentials = CredentialStore(self.logs.fs, self.logs.data_dir)
        new = [(u, m, c) for u, m, c in config.initial_scram_credentials if store.get(u, m) is None]
        if new:
            store.apply(new)
            log.info("added SCRAM credentials for %s", ", ".join(sorted({f"{u} ({m})" for u, m, _ in new})))
        tokens = self.tokens = DelegationTokens(
            self.logs.fs,
            self.logs.data_dir,
            config.delegation_token_secret_key,
            max_lifetime_ms=config.delegation_token_max_lifetime_ms,
            expiry_time_ms=config.delegation_token_expiry_time_ms,
        )
        settings: dict[str, SaslSettings] = {}
        validated = config.oauthbearer_validated_listeners
        if any(spec.uses_sasl and spec.name.lower() in validated for spec in self.specs):
            assert config.oauthbearer_jwks_url is not None  # BrokerConfig.check_limits
            options = JwtValidatorOptions(
                expected_audience=config.oauthbearer_expected_audience,
                expected_issuer=config.oauthbearer_expected_issuer,
                sub_claim=config.oauthbearer_sub_claim,
                scope_claim=config.oauthbearer_scope_claim,
                clock_skew_s=config.oauthbearer_clock_skew_s,
            )
            self._jwks = JwksSource(
                config.oauthbearer_jwks_url,
                options,
                self.clock,
                config.oauthbearer_jwks_refresh_ms,
                config.oauthbearer_jwks_retry_backoff_ms,
            )
        for spec in self.specs:
            if not spec.uses_sasl:
                continue
            plain = plain_users_for(config.sasl_jaas_configs, spec.name)
            mechanisms = config.sasl_listener_mechanisms.get(spec.name.lower(), config.sasl_enabled_mechanisms)
            if "PLAIN" in mechanisms and not plain:
                # Kafka refuses to start without the JAAS line; loosely enables PLAIN by default, so it only says so
                log.warning(
                    "SASL PLAIN is enabled but listener.name.%s.plain.sasl.jaas.config names no users: every PLAIN "
                    "login on listener %s will fail",
                    spec.name.lower(),
                    spec.name,
                )
            settings[spec.name] = SaslSettings(
                mechanisms=mechanisms,
                plain_users=plain,
                scram=store.get,
                token=tokens.login,
                reauth_ms=config.connections_max_reauth_ms,
                oauthbearer=oauthbearer_options_for(config.sasl_jaas_configs, spec.name),
                oauthbearer_validate=(
                    self._jwks.validate if self._jwks is not None and spec.name.lower() in validated else None
                ),
            )
        self._sasl_gate = SaslGate(settings, self.clock, config.failed_authentication_delay_ms)
        self.ctx.services["credentials"] = store
        self.ctx.services["tokens"] = tokens
        self.ctx.services["sasl"] = self._sasl_gate  # its counters, for the metrics
        self.ctx.services["listeners"] = self  # tls_handshake_failures_total, for the metrics

    async def start(self) -> None:
        self.logs.open()  # takes the data directory's lock: DataDirLockedError if another broker has it
        try:
            await self._start_serving()
        except BaseException:
            # Release the data directory (and its lock) so this process, or another, can try again.
            await self._stop_serving()
            self.logs.close()
            raise

    async def _start_serving(self) -> None:
        cluster_id = _load_cluster_id(self.logs.fs, self.logs.data_dir, self.config.node_id, self.config.cluster_id)
        loop = asyncio.get_running_loop()
        for spec in self.specs:
            sock = _listen_socket(spec.host, spec.port, self.config.listen_backlog_size)
            port = int(sock.getsockname()[1])
            bound = BoundListener(
                name=spec.name,
                security_protocol=spec.security_protocol,
                bound_host=spec.host,
                bound_port=port,
                host=spec.advertised_host or spec.host,
                port=spec.advertised_port or port,
            )
            self._listeners.append(_Listener(spec, sock, bound, self.tls_contexts.get(spec.name)))
        self._ctx = BrokerContext(
            config=self.config,
            logs=self.logs,
            clock=self.clock,
            cluster_id=cluster_id,
            listeners=tuple(lst.bound for lst in self._listeners),
        )
        if self.config.authorizer_class is not None:
            self.ctx.acls = BrokerAcls(
                self.logs.fs,
                self.logs.data_dir,
                self.clock,
                super_users=self.config.super_users,
                allow_if_no_acl=self.config.allow_everyone_if_no_acl_found,
            )
            log.info("authorizer on: %d ACL(s) loaded", len(self.ctx.acls.authorizer))
        self.ctx.dynamic_configs = DynamicBrokerConfigs(
            self.logs.fs, self.logs.data_dir, self.config.node_id, self.config.log_defaults
        )
        self.logs.set_broker_defaults(self.ctx.dynamic_configs.log_defaults())
        self.ctx.group_configs = GroupConfigs(self.logs.fs, self.logs.data_dir)
        self.ctx.client_telemetry = ClientTelemetry(
            Subscriptions(self.logs.fs, self.logs.data_dir),
            self.clock.monotonic_ms,
            telemetry_bytes_max=self.config.telemetry_bytes_max,
            export=self.config.client_telemetry_exported,
        )
        self.ctx.quotas = ClientQuotas(
            self.logs.fs,
            self.logs.data_dir,
            self.clock.monotonic_ms,
            window_num=self.config.quota_window_num,
            window_ms=self.config.quota_window_size_s * 1000,
            controller_window_num=self.config.controller_quota_window_num,
            controller_window_ms=self.config.controller_quota_window_size_s * 1000,
            connection_rate_max=self.config.connection_creation_rate_max,
            listener_connection_rate_max=self.config.listener_connection_creation_rate_max,
        )
        self.ctx.services["apply_connection_limits"] = self._apply_connection_limits
        self._apply_connection_limits(connection_limits(self.ctx, self.ctx.dynamic_configs.connection_limits()))
        hosts = host_names(self.ctx.quotas.entities)
        if hosts:  # IP quotas named by host name limit the address the name has now, as in Kafka
            resolved = await resolve_hosts(hosts)
            self.ctx.quotas.resolved_hosts.update({h: a for h, a in resolved.items() if a is not None})
            if None in resolved.values():
                log.warning("connection_creation_rate quotas of %s limit nothing: the host names do not resolve",
                            ", ".join(sorted(h for h, a in resolved.items() if a is None)))
        self._port = self._listeners[0].bound.bound_port
        advertised = {k: v for k, v in SUPPORTED_VERSIONS.items() if k in self.handlers}
        if not self.config.client_telemetry_exported:  # as Kafka without a ClientTelemetry metrics reporter
            for key in TELEMETRY_APIS:
                advertised.pop(key, None)
        self.ctx.services["advertised_versions"] = advertised
        self._start_security()
        if self._jwks is not None:
            try:
                await self._jwks.load()
            except (OSError, ValueError) as e:
                raise ValueError(f"sasl.oauthbearer.jwks.endpoint.url {self._jwks.url}: {e}") from None
            log.info("JWKS loaded from %s: %d signature key(s)", self._jwks.url, len(self._jwks.jwks.keys))
            self._tasks.append(loop.create_task(self._jwks.run()))
        for ext in self._load_extensions():
            await ext.start(self.ctx)
            self._extensions.append(ext)
        # after the extensions: the producer state they start takes a stored producer.id.expiration.ms too
        self.ctx.services["apply_runtime_settings"] = self._apply_runtime_settings
        self._apply_runtime_settings(self.ctx.dynamic_configs.runtime_settings())
        if self.config.metrics_listen is not None or self.config.influx_url is not None:
            self.metrics = BrokerMetrics(self.ctx, loop)
            await self.metrics.start()
        self._tasks.append(loop.create_task(self._housekeeping()))
        if self.config.log_cleaner_enable:
            self._tasks.append(loop.create_task(self._cleaner_loop()))
        if self.config.scrub_bytes_per_second > 0:
            self.scrubber = Scrubber(self.logs, self.config.scrub_bytes_per_second)
            self.ctx.services["scrubber"] = self.scrubber
            self._tasks.append(loop.create_task(self.scrubber.run()))
        self.started_monotonic_ms = self.clock.monotonic_ms()
        self._slot_freed = asyncio.Event()
        self._accepting = loop.create_task(self._accept_all())
        log.info(
            "broker %d listening on %s, data in %s",
            self.config.node_id,
            ", ".join(f"{b.name}://{b.bound_host}:{b.bound_port}" for b in self.ctx.listeners),
            self.logs.data_dir,
        )
        for lst in self._listeners:
            if lst.spec in self.open_listeners:
                log.warning(
                    "listener %s on %s:%d is not on a loopback address and does not authenticate clients "
                    "(--allow-unauthenticated): anyone who can reach it can read, write and delete every topic; "
                    "clients are told to connect to %s:%d",
                    lst.bound.name,
                    lst.bound.bound_host,
                    lst.bound.bound_port,
                    lst.bound.host,
                    lst.bound.port,
                )

    def _load_extensions(self) -> list[Any]:
        return [factory() for factory in EXTENSIONS]

    async def stop(self) -> None:
        if not self._listeners:
            return
        await self._stop_serving()
        self.logs.close()
        log.info("broker %d stopped", self.config.node_id)

    async def _stop_serving(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        for lst in self._listeners:
            lst.sock.close()
        for conn, handle in list(self._held.items()):
            handle.cancel()
            self._close_held(conn)
        for h in list(self._handshakes):
            h.cancel()
        await asyncio.gather(*self._handshakes, return_exceptions=True)
        workers = [c.worker for c in self.connections if c.worker is not None]
        for c in list(self.connections):
            c.close()
        for w in workers:  # let them finish before the loop may close
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        if self._jwks is not None:
            await self._jwks.stop()
        if self.metrics is not None:
            await self.metrics.stop()
            self.metrics = None
        for ext in reversed(self._extensions):
            await ext.stop()
        self._extensions.clear()
        self._listeners = []

    async def __aenter__(self) -> Broker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        assert self._accepting is not None
        await self._accepting

    # --- connections ---------------------------------------------------------------------------------------

    async def _accept_all(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for lst in self._listeners:
                tg.create_task(self._accept_loop(lst))

    def _apply_connection_limits(self, limits: ConnectionLimits) -> None:
        """Limits from dynamic broker configs: new connections meet them at once, open ones stay."""
        self.connection_counts.set_limits(limits.total_max, limits.per_ip_max, limits.per_ip_overrides)
        if self.ctx.quotas is not None:
            self.ctx.quotas.connection_rate_max = limits.creation_rate_max
        if self._slot_freed is not None:
            self._slot_freed.set()  # an accept loop waiting for a free slot looks again at the new max.connections

    def _apply_runtime_settings(self, dynamic: Mapping[str, str]) -> None:
        """Dynamic values of :data:`loosely.broker.dynamic_config.RUNTIME_NAMES` over the static settings: the
        cleaner's pause (a pause under way is cut short) and the producer state's expiry."""
        self._cleaner_backoff_ms = int(dynamic.get("log.cleaner.backoff.ms", self.config.cleaner_backoff_ms))
        self._cleaner_wake.set()
        producers = self.ctx.producer_state
        if producers is not None:
            producers.expiration_ms = int(dynamic.get("producer.id.expiration.ms",
                                                      self.config.producer_id_expiration_ms))

    async def _accept_loop(self, lst: _Listener) -> None:
        """Accept while max.connections allows (else new clients wait in the listen backlog); apply the per-IP cap."""
        assert self._slot_freed is not None
        sock = lst.sock
        loop = asyncio.get_running_loop()
        counts = self.connection_counts
        while True:
            if not counts.slot_free():
                self._log_admission(
                    logging.WARNING,
                    "max.connections=%d reached: new connections wait in the listen backlog until one closes",
                    counts.total_max,
                )
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                conn, addr = await loop.sock_accept(sock)
            except OSError as e:  # out of file descriptors or memory: clients already connected carry on
                self._log_admission(logging.ERROR, "cannot accept connections: %s; retrying", e)
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            ip = normal_ip(str(addr[0]))
            quotas = self.ctx.quotas
            assert quotas is not None
            delay_ms = quotas.broker_connection_delay_ms(lst.spec.name)
            if delay_ms > 0:  # over max.connection.creation.rate: this connection and the next wait (Kafka's acceptor)
                self._log_admission(
                    logging.INFO,
                    "max.connection.creation.rate reached on listener %s: accepting new connections again in %d ms",
                    lst.spec.name,
                    delay_ms,
                )
                try:
                    await asyncio.sleep(delay_ms / 1000)
                except asyncio.CancelledError:  # the broker is stopping
                    conn.close()
                    raise
            hold_ms = quotas.connection_throttle_ms(ip, lst.spec.name)
            if hold_ms > 0:  # over its connection_creation_rate: held unread, then closed (Kafka's delayed close)
                self._hold_then_close(conn, hold_ms)
                self._log_admission(
                    logging.INFO,
                    "delaying the close of a new connection from %s by %d ms: over its connection_creation_rate",
                    ip,
                    hold_ms,
                )
                continue
            limit = counts.admit(ip)
            if limit is not None:
                conn.close()
                self.connections_rejected_total += 1
                self._log_admission(
                    logging.WARNING,
                    "closed a new connection from %s: it already has max.connections.per.ip=%d connections",
                    ip,
                    limit,
                )
                continue
            protocol = _Connection(self, ip, lst)
            if lst.tls is not None:  # the handshake may take long: never in the accept loop
                task = loop.create_task(self._start_tls(lst, protocol, conn, f"{addr[0]}:{addr[1]}"))
                self._handshakes.add(task)
                task.add_done_callback(self._handshakes.discard)
                continue
            try:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.connect_accepted_socket(lambda: protocol, conn)  # noqa: B023 - awaited right here
            except Exception as e:  # the client left before we got to it; never let the accept loop die
                if not isinstance(e, OSError):
                    log.exception("setting up a connection from %s failed", ip)
                conn.close()
                if protocol.transport is None:  # else connection_lost counts it out
                    self.connection_closed(ip)

    def _hold_then_close(self, conn: socket.socket, hold_ms: int) -> None:
        handle = asyncio.get_running_loop().call_later(hold_ms / 1000, self._close_held, conn)
        self._held[conn] = handle

    def _close_held(self, conn: socket.socket) -> None:
        self._held.pop(conn, None)
        self.connections_throttled_total += 1
        conn.close()

    async def _start_tls(self, lst: _Listener, protocol: _Connection, conn: socket.socket, peer: str) -> None:
        """The TLS handshake of one accepted connection, bounded by loosely.ssl.handshake.timeout.ms."""
        assert lst.tls is not None
        loop = asyncio.get_running_loop()
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.connect_accepted_socket(
                lambda: protocol,
                conn,
                ssl=lst.tls.current(),
                ssl_handshake_timeout=self.config.ssl_handshake_ms_max / 1000,
            )
        except BaseException as e:
            conn.close()
            if protocol.transport is None:  # else connection_lost counts it out
                self.connection_closed(protocol.ip)
            if not isinstance(e, Exception):  # cancelled: the broker is stopping
                raise
            reason = _tls_failure_reason(e, self.config.ssl_handshake_ms_max)
            self.count_tls_failure(
                "TLS handshake with %s on listener %s (port %d) failed: %s; closed the connection",
                peer,
                lst.bound.name,
                lst.bound.bound_port,
                reason,
                kind=reason,
            )

    def count_tls_failure(self, msg: str, *args: object, kind: str = "") -> None:
        """Count a failed handshake; log it, at most one line a second for each kind of failure."""
        self.tls_handshake_failures_total += 1
        key = msg + kind
        every = self._log_tls.get(key)
        if every is None:
            if len(self._log_tls) >= TLS_FAILURE_KINDS_MAX:  # reasons come from OpenSSL: keep the map bounded
                self._log_tls.clear()
            every = self._log_tls[key] = LogEvery(log, self.clock, interval_ms=1000)
        every(logging.WARNING, msg, *args)

    def connection_closed(self, ip: str) -> None:
        self.connection_counts.release(ip)
        if self._slot_freed is not None:
            self._slot_freed.set()

    @property
    def port(self) -> int:
        """The bound port of the first listener."""
        return self._port

    @property
    def listeners(self) -> tuple[BoundListener, ...]:
        """Every listener with its bound and advertised address, in the order of ``listeners``."""
        return self.ctx.listeners

    def listener_port(self, name: str) -> int:
        """The bound port of listener ``name`` (KeyError if there is none)."""
        return self._bound(name).bound_port

    def _bound(self, name: str) -> BoundListener:
        for b in self.ctx.listeners:
            if b.name == name.upper():
                return b
        raise KeyError(f"no listener named {name}")

    @property
    def bootstrap_servers(self) -> str:
        """Where a client in this process reaches the first listener (loopback when it listens on every interface)."""
        return self.bootstrap_servers_for(self.ctx.listeners[0].name)

    def bootstrap_servers_for(self, name: str) -> str:
        """Where a client in this process reaches listener ``name``."""
        b = self._bound(name)
        host = b.bound_host
        if is_wildcard(host):
            host = "127.0.0.1" if ":" not in host else "::1"
        return f"[{host}]:{b.bound_port}" if ":" in host else f"{host}:{b.bound_port}"

    # --- requests ------------------------------------------------------------------------------------------

    async def dispatch(self, frame: bytes, peer: str = "?", principal: str = ANONYMOUS) -> bytes | object | None:
        """One request frame in, the framed response out (None: no response; CLOSE_CONNECTION: hang up)."""
        ctx = self.ctx
        try:
            api_key, api_version, correlation_id = peek_request_prefix(frame)
        except ProtocolError as e:
            log.warning("malformed request from %s: %s", peer, e)
            return CLOSE_CONNECTION
        if api_key == ApiKey.API_VERSIONS and not (
            SUPPORTED_VERSIONS[ApiKey.API_VERSIONS][0] <= api_version <= SUPPORTED_VERSIONS[ApiKey.API_VERSIONS][1]
        ):
            return unsupported_version_response(ctx, correlation_id)
        handler = self.handlers.get(api_key)
        if handler is None:
            log.warning("unsupported api %d from %s; closing", api_key, peer)
            return CLOSE_CONNECTION
        try:
            header, request = decode_request(frame)
        except UnsupportedVersionError as e:
            log.warning("unsupported request from %s: %s; closing", peer, e)
            return CLOSE_CONNECTION
        except ProtocolError as e:
            log.warning("malformed %s request from %s: %s; closing", API_NAMES.get(api_key, api_key), peer, e)
            return CLOSE_CONNECTION
        started = time.perf_counter()
        stats = ctx.requests[api_key]
        stats.count += 1
        current_peer.set(peer)
        current_principal.set(principal)
        current_request_time.set(RequestTime(time.perf_counter_ns()))
        response = await handler(ctx, header, request)
        elapsed_s = time.perf_counter() - started
        stats.time_ms_total += elapsed_s * 1000
        if self.metrics is not None:
            self.metrics.observe_request(api_key, elapsed_s)
        if response is None or response is CLOSE_CONNECTION:
            return response  # acks=0: exempt from request_percentage, as in Kafka
        response = _with_request_throttle(response, charge_request_time(ctx, header.client_id))
        return encode_response(api_key, api_version, correlation_id, response)

    # --- housekeeping --------------------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        interval_ms = min(self.config.retention_check_interval_ms, self.config.checkpoint_interval_ms, 1000,
                          self.config.delegation_token_expiry_check_interval_ms)
        last_retention = last_checkpoint = last_token_check = self.clock.monotonic_ms()
        while True:
            await asyncio.sleep(interval_ms / 1000)
            now = self.clock.monotonic_ms()
            try:
                self._close_idle_connections(now)
                # Disk errors below are reported by the storage layer (counted, one line per interval), not raised.
                self.logs.flush_due()
                if now - last_retention >= self.config.retention_check_interval_ms:
                    last_retention = now
                    self.logs.tick()
                if now - last_checkpoint >= self.config.checkpoint_interval_ms:
                    last_checkpoint = now
                    self.logs.write_checkpoints()
                if now - last_token_check >= self.config.delegation_token_expiry_check_interval_ms:
                    last_token_check = now
                    self._purge_expired_tokens()
            except Exception:
                log.exception("housekeeping failed; will retry")

    def _purge_expired_tokens(self) -> None:
        """Kafka's expired-token sweep (``delegation.token.expiry.check.interval.ms``)."""
        assert self.tokens is not None
        for t in self.tokens.purge(self.clock.now_ms()):
            log.info("delegation token %s of %s expired and was removed", t.token_id, t.owner)

    async def _cleaner_loop(self) -> None:
        while True:
            self._cleaner_wake.clear()
            with contextlib.suppress(TimeoutError):  # a new log.cleaner.backoff.ms starts the pause again
                while True:
                    await asyncio.wait_for(self._cleaner_wake.wait(), self._cleaner_backoff_ms / 1000)
                    self._cleaner_wake.clear()
            try:
                await self.clean_now()
            except Exception:
                log.exception("log cleaner pass failed; will retry")

    async def clean_now(self, *, force: bool = False) -> int:
        """One compaction pass over every compacted log (the cleaner thread does the work). Returns logs cleaned.

        ``force`` cleans even below ``min.cleanable.dirty.ratio``.
        """
        cleaned = 0
        for t in list(self.logs):
            if not t.config.compact:
                continue
            for p, plog in enumerate(list(t.logs)):
                segs = plog.cleanable_segments()
                refs = [SegmentRef(s.base_offset, s.next_offset, s.log.path, s.size, s.max_timestamp) for s in segs]
                first_dirty = max(self.logs.cleaner_offsets.get(TopicPartition(t.name, p), 0), plog.log_start_offset)
                upper = plog.high_watermark
                if self.ctx.transactions is not None:
                    upper = self.ctx.transactions.last_stable_offset(t.name, p, upper)
                task = plan(refs, first_dirty, t.config, self.clock.now_ms(), upper, force=force)
                if task is None:
                    continue
                try:
                    result = await asyncio.to_thread(clean, self.logs.fs, task)
                except CleanAborted as e:
                    log.info("cleaning %s-%d skipped: %s", t.name, p, e)
                    continue
                if self.logs.get(t.name) is not t or not plog.install_cleaned(segs, result):
                    continue
                self.logs.cleaner_offsets[TopicPartition(t.name, p)] = result.first_dirty_offset
                cleaned += 1
                log.info(
                    "cleaned %s-%d: %d records removed, %d -> %d bytes",
                    t.name,
                    p,
                    result.records_removed,
                    result.bytes_before,
                    result.bytes_after,
                )
        return cleaned

    def _close_idle_connections(self, now_ms: int) -> None:
        """Kafka's connections.max.idle.ms: hang up on clients that sent nothing for that long; and
        loosely.request.receive.timeout.ms: on clients whose request has not arrived whole in time (slowloris)."""
        limit = self.config.connection_idle_ms_max
        receive_limit = self.config.request_receive_ms_max
        for c in list(self.connections):
            if not c.busy and c.queue.empty() and now_ms - c.last_active_ms > limit:
                c.close(f"idle for more than {limit} ms")
            elif not c.paused and c.partial_since_ms is not None and now_ms - c.partial_since_ms > receive_limit:
                c.close(
                    f"request not received whole within {receive_limit} ms (loosely.request.receive.timeout.ms); "
                    f"{c.reader.buffered_bytes} bytes of it arrived"
                )

    def run_housekeeping_now(self) -> int:
        """Apply retention and time-based rolls immediately (tests, admin tools). Returns segments deleted."""
        return self.logs.tick()

    def key_lookup(self, topic: str, partition: int, key: bytes, limit: int) -> list[int]:
        """Offsets of ``topic``-``partition`` whose record key equals ``key``, newest first, at most ``limit``,
        answered from the logs' key indexes. Safe from any thread but the broker's loop (which awaits
        ``ctx.services["key_search"].find`` instead); see :mod:`loosely.broker.key_search`."""
        svc = self.ctx.services.get(KEY_SEARCH)
        if not isinstance(svc, KeySearch):
            raise RuntimeError("the broker runs without the key_search service")
        return svc.key_lookup(topic, partition, key, limit)

    # --- observability -------------------------------------------------------------------------------------

    async def ensure_metrics(self) -> BrokerMetrics:
        """The metrics service, made now if no exporter (``metrics_listen``, ``influx_url``) made it at start:
        the web console beside the broker charts its request latencies. Call it on the broker's loop."""
        if self.metrics is None:
            self.metrics = BrokerMetrics(self.ctx, asyncio.get_running_loop())
            await self.metrics.start()
        return self.metrics

    def statistics(self) -> BrokerStatistics:
        ctx = self.ctx
        topics = list(self.logs)
        faults = self.logs.faults.statistics()
        quarantined = [size for t in topics for plog in t.logs for size in plog.quarantined().values()]
        scrubber = self.scrubber
        return BrokerStatistics(
            connections_active=ctx.connections_active,
            connections_total=ctx.connections_total,
            requests_total={API_NAMES.get(k, str(k)): s.count for k, s in ctx.requests.items()},
            request_errors_total={API_NAMES.get(k, str(k)): s.errors for k, s in ctx.requests.items()},
            bytes_in_total=sum(ctx.bytes_in.values()),
            bytes_out_total=ctx.bytes_out_total,
            messages_in_total=sum(ctx.messages_in.values()),
            topics=len(topics),
            partitions=sum(t.partitions for t in topics),
            log_bytes=sum(plog.size_bytes for t in topics for plog in t.logs),
            storage_errors_total=faults.errors_total,
            logs_refusing_writes=faults.logs_refusing_writes,
            quarantined_files=len(quarantined),
            quarantined_bytes=sum(quarantined),
            damaged_batches=sum(plog.damaged_batches for t in topics for plog in t.logs)
            + (sum(scrubber.damaged_batches.values()) if scrubber is not None else 0),
            scrubbed_bytes=scrubber.bytes_checked if scrubber is not None else 0,
            request_bytes_queued=self.request_bytes.used_bytes,
            connections_waiting_for_bytes=self.request_bytes.waiting,
            connections_rejected_total=self.connections_rejected_total,
            connections_throttled_total=self.connections_throttled_total,
            sasl_authentications_total=self.sasl_gate.succeeded_total,
            sasl_authentication_failures_total=self.sasl_gate.failed_total,
            tls_handshake_failures_total=self.tls_handshake_failures_total,
        )


class BrokerThread:
    """A :class:`Broker` on its own event loop in a background thread, for synchronous code and tests.

    >>> import tempfile
    >>> with BrokerThread(BrokerConfig(data_dir=tempfile.mkdtemp(), port=0)) as b:
    ...     b.bootstrap_servers.startswith("127.0.0.1:")
    True
    """

    def __init__(self, config: BrokerConfig, *, clock: Clock | None = None, fs: FileSystem | None = None) -> None:
        self.broker = Broker(config, clock=clock, fs=fs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    def start(self) -> BrokerThread:
        self._thread = threading.Thread(target=self._run, name="loosely-broker", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        loop = _new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                await self.broker.start()
            except BaseException as e:
                self._error = e
                self._started.set()
                return
            self._started.set()
            await self._stop.wait()
            await self.broker.stop()

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the broker's loop thread and return its result (await it if a coroutine)."""
        assert self._loop is not None

        async def run() -> Any:
            out = fn(*args)
            if asyncio.iscoroutine(out):
                out = await out
            return out

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        stop = self._stop
        if stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(stop.set)
        self._thread.join()
        self._thread = None

    @property
    def port(self) -> int:
        return self.broker.port

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    def listener_port(self, name: str) -> int:
        return self.broker.listener_port(name)

    def bootstrap_servers_for(self, name: str) -> str:
        return self.broker.bootstrap_servers_for(name)

    def __enter__(self) -> BrokerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tls_failure_reason(e: BaseException, timeout_ms: int) -> str:
    """One short phrase for a failed handshake (OpenSSL's reason, not a traceback)."""
    if isinstance(e, ssl.SSLError):
        reason = e.reason or str(e)
        if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNSUPPORTED_PROTOCOL", "RECORD_LAYER_FAILURE"):
            return f"{reason} (did the client speak plaintext to this TLS port?)"
        return reason
    if isinstance(e, TimeoutError) or (isinstance(e, ConnectionAbortedError) and "taking longer" in str(e)):
        return f"not finished within {timeout_ms} ms (loosely.ssl.handshake.timeout.ms)"
    return str(e) or type(e).__name__


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # noqa: PLC0415 - optional speedup
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
