"""What every request handler sees: the broker's configuration, its logs, and the wake-up signals of long polls.

Handlers are ``async def handle(ctx, header, request) -> response | None`` (None: send nothing, as for
``acks=0``). They run on the event loop thread one request at a time per connection, so they may use the
storage engine directly; anything slow (the cleaner, fsync-heavy work) runs in threads the broker owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from loosely.broker.config import BrokerConfig
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import RequestHeader
from loosely.protocol.names import TopicPartition
from loosely.storage.clock import Clock
from loosely.storage.log import AppendResult, LogError, PartitionLog
from loosely.storage.manager import LogManager, Topic

if TYPE_CHECKING:
    from loosely.broker.acls import BrokerAcls
    from loosely.broker.client_metrics import ClientTelemetry
    from loosely.broker.dynamic_config import DynamicBrokerConfigs
    from loosely.broker.group_configs import GroupConfigs
    from loosely.broker.quotas import ClientQuotas

__all__ = [
    "CLOSE_CONNECTION",
    "BoundListener",
    "BrokerContext",
    "ClientSoftware",
    "ConnectionEnd",
    "Handler",
    "PartitionWatchers",
    "ProducerStateService",
    "Request",
    "RequestStats",
    "RequestTime",
    "TransactionView",
    "current_client_software",
    "current_connection_end",
    "current_listener",
    "current_peer",
    "current_principal",
    "current_request_time",
    "current_throttle_ms",
    "current_token_authenticated",
    "not_handling",
]

log = logging.getLogger("loosely.broker")

# A decoded kio request of whichever version the client sent. Handlers read fields by name (and with getattr
# where a field exists only in some versions), so one handler serves every version of its API.
Request = Any

# A handler returns this to have the connection closed instead of answered (acks=0 errors, fatal requests).
CLOSE_CONNECTION: Final = object()

# "host:port" of the client whose request is being handled (set per request by the dispatcher); JoinGroup reports it
# as the member's client host.
current_peer: contextvars.ContextVar[str] = contextvars.ContextVar("loosely_current_peer", default="")
# Kafka's principal string ("User:alice") of the connection whose request is being handled, set per request by the
# dispatcher from the connection (TLS or SASL authentication sets the connection's); ACLs are checked against it.
current_principal: contextvars.ContextVar[str] = contextvars.ContextVar(
    "loosely_current_principal", default="User:ANONYMOUS"
)
# Whether that connection logged in with a delegation token (Kafka's KafkaPrincipal.tokenAuthenticated): such a
# client acts as the token's owner but may not create, renew, expire or describe tokens.
current_token_authenticated: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "loosely_current_token_authenticated", default=False
)


@dataclass(frozen=True, slots=True)
class BoundListener:
    """A listener once its socket is bound: what a connection that arrived on it knows about it."""

    name: str  # Kafka's listener name (PLAINTEXT, SSL, INTERNAL, ...)
    security_protocol: str  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    bound_host: str
    bound_port: int
    host: str  # advertised: what Metadata, FindCoordinator and DescribeCluster tell clients on this listener
    port: int


# The listener of the connection whose request is being handled (set once per connection by its worker task, so
# every handler it runs sees it): Kafka answers each client with the addresses of the listener it came in on.
current_listener: contextvars.ContextVar[BoundListener | None] = contextvars.ContextVar(
    "loosely_current_listener", default=None
)



@dataclass(slots=True)
class ClientSoftware:
    """What the client said it is in ApiVersions v3+ (Kafka's ClientInformation), for the connection's life: client
    telemetry subscriptions match on it (``client_software_name``, ``client_software_version``)."""

    name: str | None = None
    version: str | None = None


# The connection's client software (set once per connection by its worker task, filled in by ApiVersions).
current_client_software: contextvars.ContextVar[ClientSoftware | None] = contextvars.ContextVar(
    "loosely_current_client_software", default=None
)

class ConnectionEnd:
    """What is to be done, once, when a connection closes (Kafka's ``ConnectionDisconnectListener``): a share
    session opened on it is closed and the records its member acquired are released. Keyed, so that a client that
    opens the same thing again on one connection leaves one entry, not one per opening. Run in the broker's thread
    by the connection's ``connection_lost``."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[object, Callable[[], None]] = {}

    def on_close(self, key: object, call: Callable[[], None]) -> None:
        self._calls[key] = call

    def run(self) -> None:
        calls, self._calls = self._calls, {}
        for call in calls.values():
            try:
                call()
            except Exception:  # one failing clean-up must not keep the others from running
                log.exception("cleaning up after a closed connection failed")


# The connection's end (set once per connection by its worker task).
current_connection_end: contextvars.ContextVar[ConnectionEnd | None] = contextvars.ContextVar(
    "loosely_current_connection_end", default=None
)

# Set by Produce and Fetch when the client is over its quota: after answering, the connection's worker reads no
# further request from that client for this long (KIP-219's muted channel). The worker resets it per request.
current_throttle_ms: contextvars.ContextVar[int] = contextvars.ContextVar("loosely_current_throttle_ms", default=0)


@dataclass(slots=True)
class RequestTime:
    """When the request being handled started, and how long it has waited for others since (a long poll, a
    rebalance): the rest is its handling time, what ``request_percentage`` quotas measure (Kafka's request-time)."""

    started_ns: int
    waited_ns: int = 0
    charged: bool = False  # recorded against the client's request quota already (a Fetch does it before answering)

    def handling_ns(self) -> int:
        return max(0, time.perf_counter_ns() - self.started_ns - self.waited_ns)


# Set per request by the dispatcher (None outside a request).
current_request_time: contextvars.ContextVar[RequestTime | None] = contextvars.ContextVar(
    "loosely_current_request_time", default=None
)


@contextlib.contextmanager
def not_handling() -> Iterator[None]:
    """Around an ``await`` that waits for other clients or for time (Kafka's purgatory): not the client's handling."""
    started = time.perf_counter_ns()
    try:
        yield
    finally:
        t = current_request_time.get()
        if t is not None:
            t.waited_ns += time.perf_counter_ns() - started


class ProducerStateService(Protocol):
    """Appends on behalf of idempotent and transactional producers (sequence checks, transaction state)."""

    expiration_ms: int  # producer.id.expiration.ms in force (a dynamic broker config)

    def append(
        self, topic: str, partition: int, log: PartitionLog, records: bytes, transactional_id: str | None
    ) -> AppendResult: ...


class TransactionView(Protocol):
    """What read_committed fetches need to know about open and aborted transactions."""

    def last_stable_offset(self, topic: str, partition: int, high_watermark: int) -> int: ...

    def aborted(self, topic: str, partition: int, start: int, end: int) -> list[tuple[int, int]]:
        """``(producer_id, first_offset)`` of aborted transactions overlapping offsets ``[start, end)``."""
        ...


class PartitionWatchers:
    """Futures that long-polling fetches wait on, completed when their partitions get new data.

    A read_committed fetch (``committed``) reads only below the last stable offset, which a transactional append
    never moves (its records wait for their marker): such an append wakes only the read_uncommitted fetches
    (``notify(tp, stable=False)``); the marker wakes them all. A woken read_committed fetch would find nothing,
    build an empty answer and park again, on the broker's one thread, ahead of the commit's EndTxn."""

    def __init__(self) -> None:
        self._waiters: dict[TopicPartition, set[asyncio.Future[None]]] = defaultdict(set)
        self._committed: dict[TopicPartition, set[asyncio.Future[None]]] = defaultdict(set)

    def watch(self, partitions: Iterable[TopicPartition], *, committed: bool = False) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._committed if committed else self._waiters
        for tp in partitions:
            waiters[tp].add(fut)
        return fut

    def unwatch(self, partitions: Iterable[TopicPartition], fut: asyncio.Future[None]) -> None:
        for waiters in (self._waiters, self._committed):
            for tp in partitions:
                s = waiters.get(tp)
                if s is not None:
                    s.discard(fut)
                    if not s:
                        del waiters[tp]

    def notify(self, tp: TopicPartition, *, stable: bool = True) -> None:
        """New data in ``tp``; ``stable``: the last stable offset may have moved too (anything but a
        transactional append)."""
        for waiters in (self._waiters, self._committed) if stable else (self._waiters,):
            s = waiters.pop(tp, None)
            if s:
                for fut in s:
                    if not fut.done():
                        fut.set_result(None)


@dataclass(slots=True)
class RequestStats:
    count: int = 0
    errors: int = 0
    time_ms_total: float = 0.0


@dataclass(slots=True)
class BrokerContext:
    config: BrokerConfig
    logs: LogManager
    clock: Clock
    cluster_id: str
    listeners: tuple[BoundListener, ...]  # the first is the default for code outside any connection
    watchers: PartitionWatchers = field(default_factory=PartitionWatchers)
    requests: dict[int, RequestStats] = field(default_factory=lambda: defaultdict(RequestStats))
    bytes_in: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bytes_out: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    messages_in: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    connections_active: int = 0
    connections_total: int = 0
    # Extensions (group coordinator, transaction coordinator, producer state) register themselves here.
    services: dict[str, object] = field(default_factory=dict)
    producer_state: ProducerStateService | None = None
    transactions: TransactionView | None = None
    bytes_out_total: int = 0
    # The ACLs when authorizer.class.name turns authorization on (loosely.broker.acls); None: everything is allowed.
    acls: BrokerAcls | None = None
    # Client quotas (loosely.broker.quotas), set by the broker at start; Produce and Fetch throttle to them.
    quotas: ClientQuotas | None = None
    # Dynamic broker configs (loosely.broker.dynamic_config), loaded by the broker at start; None: the static ones.
    dynamic_configs: DynamicBrokerConfigs | None = None
    # Group configs (loosely.broker.group_configs), loaded by the broker at start.
    group_configs: GroupConfigs | None = None
    # Client telemetry (loosely.broker.client_metrics): CLIENT_METRICS subscriptions and pushed metrics.
    client_telemetry: ClientTelemetry | None = None

    def count_error(self, api_key: int) -> None:
        self.requests[api_key].errors += 1

    def bytes_out_fetch(self, n: int) -> None:
        self.bytes_out_total += n

    def record_produced(self, topic: str, partition: int, result: AppendResult, nbytes: int) -> None:
        self.bytes_in[topic] += nbytes
        self.messages_in[topic] += result.last_offset - result.base_offset + 1
        # a transaction's records move the last stable offset only with their marker (which notifies then)
        stable = self.transactions is None or not any(h.is_transactional for h in result.batches)
        self.watchers.notify(TopicPartition(topic, partition), stable=stable)

    @property
    def listener(self) -> BoundListener:
        """The listener of the request being handled (the first listener outside any request)."""
        return current_listener.get() or self.listeners[0]

    @property
    def host(self) -> str:
        """The advertised host of the listener the request arrived on."""
        return self.listener.host

    @property
    def port(self) -> int:
        """The advertised port of the listener the request arrived on."""
        return self.listener.port

    @property
    def node_id(self) -> int:
        return self.config.node_id

    def topic_for_metadata(self, name: str, allow_auto_create: bool) -> Topic | LogError:
        """The topic, auto-created when allowed (Kafka creates on Metadata, never on Produce)."""
        t = self.logs.get(name)
        if t is not None:
            return t
        if not (allow_auto_create and self.config.auto_create_topics):
            return LogError(ErrorCode.unknown_topic_or_partition, f"unknown topic {name!r}")
        try:
            t = self.logs.create_topic(name, self.config.num_partitions)
        except LogError as e:
            return e
        log.info("auto-created topic %s with %d partitions", name, t.partitions)
        return t


Handler = Callable[[BrokerContext, RequestHeader, Request], Awaitable[object | None]]
