"""One schema registry: the Kafka-backed store, its HTTP server and its election, started and stopped together.

Start order: the store reads the log to its end; the server starts answering (reads work at once); the member
joins the ``schema-registry`` group and :meth:`SchemaRegistry.start` returns once the first election is over (as
Confluent waits for its first join), so a registry that has started knows whether it leads and whom to forward
to. Stop order is the reverse, and the member leaves the group first, so the others elect a new leader at once
instead of after a session timeout.
"""

from __future__ import annotations

import logging
import socket
import ssl
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from loosely.registry._election import GROUP_ID, Elector, ElectorStatistics, Identity, KafkaSecurity
from loosely.registry._http import (
    CONNECTIONS_MAX,
    IDLE_MS_MAX,
    LEADER_WAIT_MS,
    REQUEST_BYTES_MAX,
    TLS_HANDSHAKE_TIMEOUT_MS,
    RegistryServer,
    ServerStatistics,
)
from loosely.registry._store import KafkaStore, StoreStatistics

__all__ = ["RegistryStatistics", "SchemaRegistry", "group_for"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    store: StoreStatistics
    http: ServerStatistics
    subjects: int
    versions: int
    schemas: int
    election: ElectorStatistics | None = None




def group_for(topic: str) -> str:
    """The default group: Confluent's ``schema-registry`` for ``_schemas``, one per topic otherwise.

    Confluent uses ``schema-registry`` whatever the topic, so two registry clusters over two topics of one Kafka
    cluster must be given two group ids by hand or they elect one leader for both. Here the default already
    keeps them apart; over ``_schemas`` it is Confluent's, so loosely's and Confluent's registries elect together.
    """
    return GROUP_ID if topic == "_schemas" else f"{GROUP_ID}-{topic}"


class SchemaRegistry:
    """A registry on ``host:port`` (port 0: a free one) storing its schemas in ``topic`` of ``bootstrap_servers``.

    ``client_config`` goes to the Kafka clients (security settings, for instance). :meth:`start` returns once the
    topic has been read to its end, so the first answer already reflects every schema in the log; it gives up
    after ``init_timeout_ms`` (Confluent's ``kafkastore.init.timeout.ms``, 60 s). ``write_timeout_ms`` bounds how
    long a change waits to be written and read back (Confluent's ``kafkastore.timeout.ms`` is 500 ms; a broker
    that is electing a leader needs longer, so 30 s here).

    Several registries over one topic elect a leader (:mod:`loosely.registry._election`): ``advertise`` is the url
    the others forward writes to (default: this server's own, with the host name when it listens on every
    interface), ``leader_eligible=False`` keeps this one a follower, ``group_id`` defaults to
    :func:`group_for` the topic. The member reaches secured clusters with the same ``client_config`` (TLS, SASL
    PLAIN and SCRAM). ``election=False``, or a SASL mechanism the member does not speak (OAUTHBEARER, GSSAPI), make
    it the single writer without asking anyone: run only one such registry per topic.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        topic: str = "_schemas",
        client_config: Mapping[str, str] | None = None,
        default_compatibility: str = "BACKWARD",
        request_bytes_max: int = REQUEST_BYTES_MAX,
        connections_max: int = CONNECTIONS_MAX,
        idle_ms_max: int = IDLE_MS_MAX,
        write_timeout_ms: int = 30_000,
        init_timeout_ms: int = 60_000,
        authenticate: Callable[[str, str], bool] | None = None,
        tls: Callable[[], ssl.SSLContext] | None = None,
        tls_handshake_timeout_ms: int = TLS_HANDSHAKE_TIMEOUT_MS,
        advertise: str | None = None,
        leader_eligible: bool = True,
        group_id: str | None = None,
        election: bool = True,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 1_000,
        leader_wait_ms: int = LEADER_WAIT_MS,
        rebalance_timeout_ms: int = 10_000,
    ) -> None:
        self.store = KafkaStore(bootstrap_servers, topic=topic, client_config=client_config,
                                default_compatibility=default_compatibility, write_timeout_ms=write_timeout_ms,
                                startup_timeout_ms=init_timeout_ms)
        self.host = host
        self.server = RegistryServer(self.store, host, port, request_bytes_max=request_bytes_max,
                                     connections_max=connections_max, idle_ms_max=idle_ms_max,
                                     authenticate=authenticate, tls=tls,
                                     tls_handshake_timeout_ms=tls_handshake_timeout_ms,
                                     leader_wait_ms=leader_wait_ms)
        self._init_timeout_ms = init_timeout_ms
        self.elector: Elector | None = None
        security: KafkaSecurity | None = None
        unspoken = ""
        try:
            security = KafkaSecurity.from_client_config(dict(client_config or {}))
        except (ValueError, OSError) as e:  # a mechanism the member does not speak, certificates it cannot read
            unspoken = str(e)
        if election and security is not None:
            try:
                self.elector = Elector(bootstrap_servers, self._identity(advertise, leader_eligible),
                                       group_id=group_id or group_for(topic), session_timeout_ms=session_timeout_ms,
                                       heartbeat_interval_ms=heartbeat_interval_ms,
                                       rebalance_timeout_ms=rebalance_timeout_ms, security=security)
            except ValueError:
                self.server.close()  # never served: release the port
                raise
        self._election_off = "" if self.elector is not None or not election else (
            f"{unspoken}: this registry writes without a leader election (run a single registry over this topic)")

    def _identity(self, advertise: str | None, eligible: bool) -> Identity:
        scheme = "https" if self.server.uses_tls else "http"
        if advertise is None:
            host = self.host if self.host not in ("", "0.0.0.0", "::") else socket.getfqdn()
            return Identity(host, self.port, scheme, eligible)
        url = urllib.parse.urlsplit(advertise if "://" in advertise else f"{scheme}://{advertise}")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"--advertise {advertise!r}: expected a url such as http://host:8081")
        try:
            port = url.port or (443 if url.scheme == "https" else 80)
        except ValueError:
            raise ValueError(f"--advertise {advertise!r}: the port is not a number") from None
        return Identity(url.hostname, port, url.scheme, eligible)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.server.uses_tls else 'http'}://{host}:{self.port}"

    def start(self) -> SchemaRegistry:
        try:
            self.store.start()
        except BaseException:
            self.server.close()  # never served: release the port
            raise
        self.server.start()
        if self._election_off:
            log.warning("schema registry: %s", self._election_off)
        if self.elector is not None:
            self.store.election = self.elector
            self.elector.start()
            if not self.elector.wait_joined(self._init_timeout_ms):
                self.stop()
                trouble = self.elector.last_trouble
                raise TimeoutError(f"could not join group {self.elector.group_id}: {trouble}" if trouble else
                                   f"could not join group {self.elector.group_id} within {self._init_timeout_ms} ms")
        return self

    def stop(self) -> None:
        if self.elector is not None:
            self.elector.stop()
        self.server.stop()
        self.store.stop()

    def __enter__(self) -> SchemaRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def statistics(self) -> RegistryStatistics:
        counts = self.store.read(lambda s: s.counts())
        return RegistryStatistics(store=self.store.statistics(), http=self.server.statistics(),
                                  subjects=counts["subjects"], versions=counts["versions"], schemas=counts["schemas"],
                                  election=None if self.elector is None else self.elector.statistics())
