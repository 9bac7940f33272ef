"""Broker settings, with Apache Kafka's names where one exists and its defaults unless noted.

:class:`BrokerConfig` holds what the asyncio shell needs. Topic defaults (``log.retention.ms``, ...) pass through
to the storage engine as ``log_defaults`` using Kafka's broker-level names, so ``--config log.retention.ms=...``
on the command line means what it means to Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from loosely.protocol.framing import FRAME_BYTES_MAX_DEFAULT

__all__ = ["BrokerConfig", "parse_listen"]

DEFAULT_PORT: Final = 9092


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9092`` for IPv6); a bare port means 127.0.0.1.

    >>> parse_listen("127.0.0.1:9092")
    ('127.0.0.1', 9092)
    >>> parse_listen("0")
    ('127.0.0.1', 0)
    """
    if value.isdigit():
        return "127.0.0.1", int(value)
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    p = int(port)
    if not 0 <= p <= 65535:
        raise ValueError(f"port {p} is out of range")
    return host, p


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    data_dir: str
    host: str = "127.0.0.1"  # loopback by default: an embedded broker should not listen on the network
    port: int = DEFAULT_PORT  # 0 picks a free port; Broker.address reports it
    advertised_host: str | None = None
    advertised_port: int | None = None
    node_id: int = 1
    # Kafka: auto.create.topics.enable / num.partitions / default.replication.factor
    auto_create_topics: bool = True
    num_partitions: int = 1
    # Kafka: socket.request.max.bytes
    frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT
    # Kafka: queued.max.requests (per connection here: reading pauses beyond it)
    queued_requests_max: int = 500
    # Kafka: connections.max.idle.ms
    connection_idle_ms_max: int = 600_000
    # Kafka: log.retention.check.interval.ms (also drives segment.ms rolls and flush.ms)
    retention_check_interval_ms: int = 300_000
    # Kafka: log.flush.offset.checkpoint.interval.ms
    checkpoint_interval_ms: int = 60_000
    # Kafka: log.cleaner.backoff.ms
    cleaner_backoff_ms: int = 15_000
    log_cleaner_enable: bool = True
    # Kafka: fetch.max.bytes (the broker's cap on a whole Fetch response)
    fetch_bytes_max: int = 57_671_680
    # Kafka: offsets.topic.num.partitions (50 in Kafka; fewer here keeps an embedded data dir small)
    offsets_topic_partitions: int = 50
    # Kafka: group.initial.rebalance.delay.ms (3000 in Kafka; an embedded broker should not make users wait)
    group_initial_rebalance_delay_ms: int = 0
    # Kafka: group.min.session.timeout.ms / group.max.session.timeout.ms
    group_session_timeout_ms_min: int = 6_000
    group_session_timeout_ms_max: int = 1_800_000
    # Kafka: offsets.retention.minutes (7 days) in ms
    offsets_retention_ms: int = 604_800_000
    # Kafka: offsets.retention.check.interval.ms
    offsets_retention_check_interval_ms: int = 600_000
    # Kafka: offset.metadata.max.bytes
    offset_metadata_bytes_max: int = 4096
    # Kafka: transaction.state.log.num.partitions
    transaction_state_partitions: int = 50
    # Kafka: transaction.max.timeout.ms
    transaction_timeout_ms_max: int = 900_000
    # Kafka: transactional.id.expiration.ms (7 days)
    transactional_id_expiration_ms: int = 604_800_000
    # Kafka: producer.id.expiration.ms (1 day)
    producer_id_expiration_ms: int = 86_400_000
    # Metrics (loosely.broker.metrics): Prometheus endpoint "host:port" (port 0 picks one), InfluxDB push target
    metrics_listen: str | None = None
    influx_url: str | None = None
    influx_db: str = "loosely"
    influx_interval_ms: int = 10_000
    cluster_id: str | None = None  # default: generated once and kept in <data_dir>/meta.properties
    log_defaults: Mapping[str, str] = field(default_factory=dict)

    @property
    def advertised(self) -> tuple[str, int]:
        return self.advertised_host or self.host, self.advertised_port or self.port
