"""One schema registry: the Kafka-backed store and its HTTP server, started and stopped together."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from loosely.registry._http import (
    CONNECTIONS_MAX,
    IDLE_MS_MAX,
    REQUEST_BYTES_MAX,
    TLS_HANDSHAKE_TIMEOUT_MS,
    RegistryServer,
    ServerStatistics,
)
from loosely.registry._store import KafkaStore, StoreStatistics

__all__ = ["RegistryStatistics", "SchemaRegistry"]


@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    store: StoreStatistics
    http: ServerStatistics
    subjects: int
    versions: int
    schemas: int


class SchemaRegistry:
    """A registry on ``host:port`` (port 0: a free one) storing its schemas in ``topic`` of ``bootstrap_servers``.

    ``client_config`` goes to the Kafka clients (security settings, for instance). :meth:`start` returns once the
    topic has been read to its end, so the first answer already reflects every schema in the log; it gives up
    after ``init_timeout_ms`` (Confluent's ``kafkastore.init.timeout.ms``, 60 s). ``write_timeout_ms`` bounds how
    long a change waits to be written and read back (Confluent's ``kafkastore.timeout.ms`` is 500 ms; a broker
    that is electing a leader needs longer, so 30 s here).
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
    ) -> None:
        self.store = KafkaStore(bootstrap_servers, topic=topic, client_config=client_config,
                                default_compatibility=default_compatibility, write_timeout_ms=write_timeout_ms,
                                startup_timeout_ms=init_timeout_ms)
        self.host = host
        self.server = RegistryServer(self.store, host, port, request_bytes_max=request_bytes_max,
                                     connections_max=connections_max, idle_ms_max=idle_ms_max,
                                     authenticate=authenticate, tls=tls,
                                     tls_handshake_timeout_ms=tls_handshake_timeout_ms)

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
        return self

    def stop(self) -> None:
        self.server.stop()
        self.store.stop()

    def __enter__(self) -> SchemaRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def statistics(self) -> RegistryStatistics:
        counts = self.store.read(lambda s: s.counts())
        return RegistryStatistics(store=self.store.statistics(), http=self.server.statistics(),
                                  subjects=counts["subjects"], versions=counts["versions"], schemas=counts["schemas"])
