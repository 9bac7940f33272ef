"""Broker settings, with Apache Kafka's names where one exists and its defaults unless noted.

:class:`BrokerConfig` holds what the asyncio shell needs. Topic defaults (``log.retention.ms``, ...) pass through
to the storage engine as ``log_defaults`` using Kafka's broker-level names, so ``--config log.retention.ms=...``
on the command line means what it means to Kafka.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Final

from loosely.broker._listening import LISTENER_SETTINGS, ListenerSpec, listeners_from_settings
from loosely.protocol.framing import FRAME_BYTES_MAX_DEFAULT
from loosely.security.authorizer import parse_super_users
from loosely.security.jaas import OAUTHBEARER_LOGIN_MODULE, parse_jaas, plain_users
from loosely.security.oauthbearer import OAuthBearerOptions
from loosely.security.sasl import MECHANISMS_DEFAULT, MECHANISMS_SUPPORTED
from loosely.security.scram import ScramCredential
from loosely.security.tokens import (
    EXPIRY_CHECK_INTERVAL_MS_DEFAULT,
    EXPIRY_TIME_MS_DEFAULT,
    MAX_LIFETIME_MS_DEFAULT,
)
from loosely.storage.config import TOPIC_CONFIGS, InvalidConfigError, validate_overrides
from loosely.tls.settings import SSL_SETTINGS

__all__ = [
    "BROKER_SETTINGS",
    "IGNORED_SETTINGS",
    "BrokerConfig",
    "ListenerSpec",
    "parse_ip_overrides",
    "parse_listen",
    "split_kafka_settings",
]

DEFAULT_PORT: Final = 9092
# loosely.fetch.backlog.delay.ms's ceiling: a paced answer must stay far inside every client's request timeout
# (Java's request.timeout.ms is 30 s, librdkafka's socket.timeout.ms 60 s); a second is already no pacing but a stall.
_FETCH_BACKLOG_DELAY_MS_MAX: Final = 1_000


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
    # Kafka: listeners / advertised.listeners / listener.security.protocol.map (loosely.broker._listening). Empty:
    # one PLAINTEXT listener on host:port (the --listen/--advertise shorthand); set, host/port above are unused.
    listeners: tuple[ListenerSpec, ...] = ()
    # loosely.allow.unauthenticated: let a non-loopback listener run without SASL or required client certificates
    allow_unauthenticated: bool = False
    # loosely.ssl.handshake.timeout.ms (Kafka has none; its handshakes fall under connections.max.idle.ms): a TLS
    # handshake not finished in this time closes the connection. 10 s is ample for a client on another continent.
    ssl_handshake_ms_max: int = 10_000
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
    # Kafka: queued.max.request.bytes, the bytes of requests read but not yet handled, across all connections
    # (a frame counts at its declared size from the moment its size prefix is read). Kafka's default is -1
    # (unbounded); loosely's default (None) is twice socket.request.max.bytes, so one largest request can be handled
    # while the next is read, and a few hundred MiB is the most that clients can make the broker hold. <= 0 is
    # Kafka's unbounded.
    queued_request_bytes_max: int | None = None
    # Kafka: max.connections. Kafka's default is Int.MaxValue; loosely bounds it because every connection holds a file
    # descriptor that segments and indexes need too (10,000 stays under the usual 20,000+ descriptor limit of a
    # server and far above what one node's clients open). At the limit new connections wait in the listen backlog.
    connections_max: int = 10_000
    # Kafka: max.connections.per.ip (Int.MaxValue, as Kafka). Over it a new connection is closed at once.
    connections_per_ip_max: int = 2_147_483_647
    # Kafka: max.connections.per.ip.overrides ("127.0.0.1:200,10.0.0.7:5"); IP addresses only here.
    # Kafka: max.connection.creation.rate (Int.MaxValue, as Kafka): new connections a second on all listeners; over
    # it the accept loop waits (at most one quota window) before it takes the next, as Kafka's acceptor does.
    connection_creation_rate_max: int = 2_147_483_647
    # Kafka: listener.name.<listener>.max.connection.creation.rate, by lower-case listener name: the same, for
    # connections on that listener (both limits apply; the longer wait wins).
    listener_connection_creation_rate_max: Mapping[str, int] = field(default_factory=dict)
    connections_per_ip_overrides: Mapping[str, int] = field(default_factory=dict)
    # loosely.request.receive.timeout.ms (no Kafka equivalent; Kafka has only connections.max.idle.ms, which a
    # client trickling one byte a second never reaches): a request must arrive whole within this many ms of its
    # first byte, or the connection is closed. 60 s is librdkafka's socket.timeout.ms: a client has given up on
    # the request by then. Time while the broker itself pauses reading does not count.
    request_receive_ms_max: int = 60_000
    # Kafka: socket.listen.backlog.size (connections the kernel holds before the broker accepts them)
    listen_backlog_size: int = 50
    # Kafka: log.retention.check.interval.ms (also drives segment.ms rolls and flush.ms)
    retention_check_interval_ms: int = 300_000
    # Kafka: log.flush.offset.checkpoint.interval.ms
    checkpoint_interval_ms: int = 60_000
    # Kafka: log.cleaner.backoff.ms
    cleaner_backoff_ms: int = 15_000
    log_cleaner_enable: bool = True
    # Kafka: fetch.max.bytes (the broker's cap on a whole Fetch response)
    fetch_bytes_max: int = 57_671_680
    # loosely.fetch.backlog.delay.ms (no Kafka equivalent; 0, Kafka's behaviour, by default): hold a Fetch answer
    # whose records stop short of the end of the log (the consumer is reading a backlog) this long before sending
    # it. librdkafka stops fetching once queued.min.messages (100,000) wait unread in its queue and resumes only
    # on its next whole-second wake-up (fetch.queue.backoff.ms in newer versions); a broker that answers sooner
    # than an application drains its queue makes that pause likelier and earlier, hence dearer. Pacing a backlog
    # read below the application's pace avoids it, at this many ms per answer for a consumer that keeps up
    # (docs/benchmarks.md "Log broker", issue 17).
    fetch_backlog_delay_ms: int = 0
    # Kafka: offsets.topic.num.partitions (50 in Kafka; fewer here keeps an embedded data dir small)
    offsets_topic_partitions: int = 50
    # Kafka: group.initial.rebalance.delay.ms (3000 in Kafka; an embedded broker should not make users wait)
    group_initial_rebalance_delay_ms: int = 0
    # Kafka: group.consumer.session.timeout.ms / group.consumer.heartbeat.interval.ms (KIP-848 consumer groups)
    group_consumer_session_timeout_ms: int = 45_000
    group_consumer_heartbeat_interval_ms: int = 5_000
    # Kafka: group.consumer.{min,max}.session.timeout.ms / ...heartbeat.interval.ms: the range a group config
    # (consumer.session.timeout.ms, consumer.heartbeat.interval.ms) may set
    group_consumer_session_timeout_ms_min: int = 45_000
    group_consumer_session_timeout_ms_max: int = 60_000
    group_consumer_heartbeat_interval_ms_min: int = 5_000
    group_consumer_heartbeat_interval_ms_max: int = 15_000
    # Kafka: group.consumer.migration.policy (bidirectional, upgrade, downgrade, disabled): whether a classic group
    # with members converts to a consumer group when a KIP-848 member joins, and back when the last one leaves
    group_consumer_migration_policy: str = "bidirectional"
    # Kafka: group.streams.session.timeout.ms / group.streams.heartbeat.interval.ms /
    # group.streams.num.standby.replicas (streams groups, KIP-1071): a streams group's defaults (Kafka 4.4's)
    group_streams_session_timeout_ms: int = 45_000
    group_streams_heartbeat_interval_ms: int = 5_000
    group_streams_num_standby_replicas: int = 0
    # Kafka: group.streams.initial.rebalance.delay.ms: a new streams group's first assignment waits this long
    group_streams_initial_rebalance_delay_ms: int = 3_000
    # Kafka: group.streams.assignment.interval.ms: a streams group's target is computed at most this often
    group_streams_assignment_interval_ms: int = 1_000
    # Kafka: group.share.* (share groups, KIP-932): the broker's defaults for a share group's configs and the
    # ranges a group config may set them within (Kafka 4.4's defaults)
    group_share_heartbeat_interval_ms: int = 5_000
    group_share_session_timeout_ms: int = 45_000
    group_share_record_lock_duration_ms: int = 30_000
    group_share_record_lock_duration_ms_min: int = 15_000
    group_share_record_lock_duration_ms_max: int = 60_000
    group_share_delivery_count_limit: int = 5
    group_share_delivery_count_limit_min: int = 2
    group_share_delivery_count_limit_max: int = 10
    group_share_partition_max_record_locks: int = 2_000
    group_share_partition_max_record_locks_min: int = 100
    group_share_partition_max_record_locks_max: int = 4_000
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
    # Kafka: authorizer.class.name (None: no authorizer, as Kafka's empty default), super.users (principals),
    # allow.everyone.if.no.acl.found (false, as Kafka). See loosely.broker.acls.
    authorizer_class: str | None = None
    super_users: frozenset[str] = frozenset()
    allow_everyone_if_no_acl_found: bool = False
    # Metrics (loosely.broker.metrics): Prometheus endpoint "host:port" (port 0 picks one), InfluxDB push target
    metrics_listen: str | None = None
    influx_url: str | None = None
    influx_db: str = "loosely"
    influx_interval_ms: int = 10_000
    # Client telemetry (KIP-714, loosely.broker.client_metrics). loosely.client.telemetry.enable: advertise
    # GetTelemetrySubscriptions and PushTelemetry and export what clients push; None (the default): when the
    # Prometheus endpoint is on, where the metrics go (Kafka: when metric.reporters names a ClientTelemetry reporter)
    client_telemetry: bool | None = None
    # Kafka: telemetry.max.bytes, the largest push taken (compressed, and decompressed)
    telemetry_bytes_max: int = 1_048_576
    # loosely only (Kafka has no scrubber): bytes of closed segments the background scrubber CRC-checks per second,
    # 0 disables it. 1 MiB/s re-reads 100 GiB in about a day at no noticeable cost (loosely.broker.scrubber).
    scrub_bytes_per_second: int = 1_048_576
    cluster_id: str | None = None  # default: generated once and kept in <data_dir>/meta.properties
    # --- SASL (loosely.security; docs/broker.md "Authentication (SASL)") ---
    # Kafka: sasl.enabled.mechanisms (Kafka's default, GSSAPI, is not available here; see MECHANISMS_DEFAULT)
    sasl_enabled_mechanisms: tuple[str, ...] = MECHANISMS_DEFAULT
    # Kafka: listener.name.<listener>.<mechanism>.sasl.jaas.config, keyed "<listener>.<mechanism>" in lower case.
    # Holds passwords: never printed.
    sasl_jaas_configs: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Kafka: listener.name.<listener>.sasl.enabled.mechanisms, by lower-case listener name (wins over the above)
    sasl_listener_mechanisms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Kafka: listener.name.<listener>.oauthbearer.sasl.server.callback.handler.class naming the
    # OAuthBearerValidatorCallbackHandler (KIP-768): these listeners (lower case) take signed tokens only
    oauthbearer_validated_listeners: frozenset[str] = frozenset()
    # Kafka: sasl.oauthbearer.* (the validator's settings; loosely.broker._jwks, loosely.security.jwt)
    oauthbearer_jwks_url: str | None = None  # file: or http(s): URL of the JWKS
    oauthbearer_jwks_refresh_ms: int = 3_600_000
    oauthbearer_jwks_retry_backoff_ms: int = 100  # the least time between two refreshes for an unknown kid
    oauthbearer_jwks_retry_backoff_max_ms: int = 10_000
    oauthbearer_expected_audience: tuple[str, ...] = ()
    oauthbearer_expected_issuer: str | None = None
    oauthbearer_sub_claim: str = "sub"
    oauthbearer_scope_claim: str = "scope"
    oauthbearer_clock_skew_s: int = 30
    # Kafka: sasl.oauthbearer.jwt.validator.class; loosely always verifies signatures (see _jwt_validator_class)
    oauthbearer_jwt_validator_class: str = "org.apache.kafka.common.security.oauthbearer.DefaultJwtValidator"
    # Kafka: connections.max.reauth.ms (0: sessions never expire; KIP-368)
    connections_max_reauth_ms: int = 0
    # Kafka: connection.failed.authentication.delay.ms (the failure answer and the close wait this long)
    failed_authentication_delay_ms: int = 100
    # Kafka: quota.window.num and quota.window.size.seconds (client quotas measure rates over these samples)
    quota_window_num: int = 11
    quota_window_size_s: int = 1
    # Kafka: controller.quota.window.num and controller.quota.window.size.seconds (controller_mutation_rate's token
    # bucket holds num * size * rate mutations)
    controller_quota_window_num: int = 11
    controller_quota_window_size_s: int = 1
    # Kafka: delegation.token.secret.key, the key of the tokens' HMACs (None: delegation tokens are disabled).
    # A password: never printed.
    delegation_token_secret_key: str | None = field(default=None, repr=False)
    # Kafka: delegation.token.max.lifetime.ms, delegation.token.expiry.time.ms and
    # delegation.token.expiry.check.interval.ms (Kafka's defaults: 7 days, 1 day, 1 hour)
    delegation_token_max_lifetime_ms: int = MAX_LIFETIME_MS_DEFAULT
    delegation_token_expiry_time_ms: int = EXPIRY_TIME_MS_DEFAULT
    delegation_token_expiry_check_interval_ms: int = EXPIRY_CHECK_INTERVAL_MS_DEFAULT
    # `loosely broker --add-scram` (Kafka: kafka-storage format --add-scram): (user, mechanism, credential) stored
    # at start for a user that has no credential of that mechanism yet; salted already, so no password is held.
    initial_scram_credentials: tuple[tuple[str, str, ScramCredential], ...] = ()
    log_defaults: Mapping[str, str] = field(default_factory=dict)

    @property
    def client_telemetry_exported(self) -> bool:
        """Client telemetry is on: set so, or by the Prometheus endpoint being on."""
        return self.metrics_listen is not None if self.client_telemetry is None else self.client_telemetry

    @property
    def advertised(self) -> tuple[str, int]:
        return self.advertised_host or self.host, self.advertised_port or self.port

    def listener_specs(self) -> tuple[ListenerSpec, ...]:
        """The listeners to open: ``listeners``, or the single PLAINTEXT listener of host/port."""
        if self.listeners:
            return self.listeners
        plaintext = "PLAINTEXT"
        return (ListenerSpec(plaintext, self.host, self.port, plaintext, self.advertised_host, self.advertised_port),)

    @property
    def queued_request_bytes_limit(self) -> int:
        """``queued.max.request.bytes`` in effect: -1 for unbounded."""
        if self.queued_request_bytes_max is None:
            return 2 * self.frame_bytes_max
        return self.queued_request_bytes_max if self.queued_request_bytes_max > 0 else -1

    def check_limits(self) -> None:
        """Raise :class:`ValueError` naming the Kafka setting whose value is out of range."""
        checks = (
            ("socket.request.max.bytes", self.frame_bytes_max >= 1),
            ("max.connections", self.connections_max >= 0),
            ("max.connections.per.ip", self.connections_per_ip_max >= 0),
            ("max.connection.creation.rate", self.connection_creation_rate_max >= 0),
            ("listener.name.<listener>.max.connection.creation.rate",
             all(n >= 0 for n in self.listener_connection_creation_rate_max.values())),
            ("max.connections.per.ip.overrides", all(n >= 0 for n in self.connections_per_ip_overrides.values())),
            ("loosely.request.receive.timeout.ms", self.request_receive_ms_max >= 1),
            ("loosely.fetch.backlog.delay.ms", 0 <= self.fetch_backlog_delay_ms <= _FETCH_BACKLOG_DELAY_MS_MAX),
            ("socket.listen.backlog.size", self.listen_backlog_size >= 1),
            ("connections.max.reauth.ms", self.connections_max_reauth_ms >= 0),
            ("connection.failed.authentication.delay.ms", self.failed_authentication_delay_ms >= 0),
            ("quota.window.num", self.quota_window_num >= 1),
            ("quota.window.size.seconds", self.quota_window_size_s >= 1),
            ("controller.quota.window.num", self.controller_quota_window_num >= 1),
            ("controller.quota.window.size.seconds", self.controller_quota_window_size_s >= 1),
            ("loosely.ssl.handshake.timeout.ms", self.ssl_handshake_ms_max >= 1),
            ("sasl.oauthbearer.jwks.endpoint.refresh.ms", self.oauthbearer_jwks_refresh_ms >= 1),
            ("delegation.token.max.lifetime.ms", self.delegation_token_max_lifetime_ms >= 1),
            ("delegation.token.expiry.time.ms", self.delegation_token_expiry_time_ms >= 1),
            ("delegation.token.expiry.check.interval.ms", self.delegation_token_expiry_check_interval_ms >= 1),
        )
        for name, ok in checks:
            if not ok:
                raise ValueError(f"{name} is out of range")
        if self.oauthbearer_validated_listeners and self.oauthbearer_jwks_url is None:
            raise ValueError(f"{VALIDATOR_CALLBACK_HANDLER} needs sasl.oauthbearer.jwks.endpoint.url")
        limit = self.queued_request_bytes_limit
        if 0 < limit < self.frame_bytes_max:  # Kafka's own rule: one largest request must fit
            raise ValueError("queued.max.request.bytes must be at least socket.request.max.bytes (or -1)")
        if self.connections_per_ip_max == 0 and not self.connections_per_ip_overrides:
            raise ValueError("max.connections.per.ip can be 0 only with max.connections.per.ip.overrides")
        # Kafka's GroupCoordinatorConfig: each KIP-848 default within the range a group config may set
        for what, value, low, high in (
            ("session.timeout.ms", self.group_consumer_session_timeout_ms, self.group_consumer_session_timeout_ms_min,
             self.group_consumer_session_timeout_ms_max),
            ("heartbeat.interval.ms", self.group_consumer_heartbeat_interval_ms,
             self.group_consumer_heartbeat_interval_ms_min, self.group_consumer_heartbeat_interval_ms_max),
        ):
            if value < low:
                raise ValueError(f"group.consumer.{what} must be greater than or equal to group.consumer.min.{what}")
            if value > high:
                raise ValueError(f"group.consumer.{what} must be less than or equal to group.consumer.max.{what}")
        # Kafka's ShareGroupConfig: each share group default within the range a group config may set
        for what, value, low, high in (
            ("record.lock.duration.ms", self.group_share_record_lock_duration_ms,
             self.group_share_record_lock_duration_ms_min, self.group_share_record_lock_duration_ms_max),
            ("delivery.count.limit", self.group_share_delivery_count_limit, self.group_share_delivery_count_limit_min,
             self.group_share_delivery_count_limit_max),
            ("partition.max.record.locks", self.group_share_partition_max_record_locks,
             self.group_share_partition_max_record_locks_min, self.group_share_partition_max_record_locks_max),
        ):
            if not low <= value <= high:
                raise ValueError(f"group.share.{what} must be between group.share.min.{what} and "
                                 f"group.share.max.{what}")


def parse_ip_overrides(v: str) -> dict[str, int]:
    """``max.connections.per.ip.overrides``: ``IP:COUNT`` pairs separated by commas (``[::1]:5`` for IPv6).

    >>> parse_ip_overrides("127.0.0.1:200, [::1]:5")
    {'127.0.0.1': 200, '::1': 5}
    """
    out: dict[str, int] = {}
    for item in filter(None, (i.strip() for i in v.split(","))):
        host, sep, count = item.rpartition(":")
        host = host.strip("[]")
        try:
            ip = str(ipaddress.ip_address(host))
        except ValueError:
            raise ValueError(f"expected IP:COUNT, got {item!r} (IP addresses only, not host names)") from None
        if not sep or not count.isdigit():
            raise ValueError(f"expected IP:COUNT, got {item!r}")
        out[ip] = int(count)
    return out


def _positive(v: str) -> int:
    n = int(v)
    if n < 1:
        raise ValueError(f"must be 1 or more, got {n}")
    return n


def _non_negative(v: str) -> int:
    n = int(v)
    if n < 0:
        raise ValueError(f"must be 0 or more, got {n}")
    return n


def _bool(v: str) -> bool:
    if v.lower() not in ("true", "false"):
        raise ValueError(f"expected true or false, got {v!r}")
    return v.lower() == "true"


def _sasl_mechanisms(v: str) -> tuple[str, ...]:
    """``sasl.enabled.mechanisms``: a comma-separated list of the mechanisms loosely has.

    >>> _sasl_mechanisms("SCRAM-SHA-512, PLAIN")
    ('SCRAM-SHA-512', 'PLAIN')
    """
    names = tuple(n.strip() for n in v.split(",") if n.strip())
    for n in names:
        if n not in MECHANISMS_SUPPORTED:
            raise ValueError(f"{n} is not available in loosely (it has {', '.join(MECHANISMS_SUPPORTED)})")
    if not names:
        raise ValueError("needs at least one mechanism")
    return names


# listener.name.<listener>.<mechanism>.sasl.jaas.config: Kafka reads a broker's JAAS lines only in this form (an
# un-prefixed sasl.jaas.config is ignored with a warning by Kafka's brokers, and reported as unknown here).
_LISTENER_MECHANISMS: Final = re.compile(r"listener\.name\.([^.]+)\.sasl\.enabled\.mechanisms", re.IGNORECASE)
_LISTENER_CONNECTION_RATE: Final = re.compile(
    r"listener\.name\.([^.]+)\.max\.connection\.creation\.rate", re.IGNORECASE
)
_LISTENER_JAAS: Final = re.compile(r"listener\.name\.([^.]+)\.([a-z0-9-]+)\.sasl\.jaas\.config", re.IGNORECASE)
# Settings kept per listener (lower-case name -> parsed value) in a BrokerConfig mapping field
_PER_LISTENER: Final[tuple[tuple[re.Pattern[str], str, Callable[[str], object]], ...]] = (
    (_LISTENER_MECHANISMS, "sasl_listener_mechanisms", _sasl_mechanisms),
    (_LISTENER_CONNECTION_RATE, "listener_connection_creation_rate_max", int),
)


def _jaas_line(name: str, value: str) -> tuple[str, str] | None:
    """``("<listener>.<mechanism>", value)`` for a listener's JAAS line (checked); None for other names."""
    m = _LISTENER_JAAS.fullmatch(name)
    if m is None:
        return None
    mechanism = m.group(2).upper()
    module = parse_jaas(value)
    if mechanism == "PLAIN":
        plain_users(module)
    elif mechanism == "OAUTHBEARER":
        if module.login_module != OAUTHBEARER_LOGIN_MODULE:
            raise ValueError(f"the OAUTHBEARER mechanism needs {OAUTHBEARER_LOGIN_MODULE}")
        OAuthBearerOptions.from_jaas(module.options)
    elif mechanism not in MECHANISMS_SUPPORTED:
        raise ValueError(f"{mechanism} is not available in loosely")
    return f"{m.group(1).lower()}.{mechanism.lower()}", value


# listener.name.<listener>.oauthbearer.sasl.server.callback.handler.class: how a listener checks OAUTHBEARER tokens
_LISTENER_OAUTH_HANDLER: Final = re.compile(
    r"listener\.name\.([^.]+)\.oauthbearer\.sasl\.server\.callback\.handler\.class", re.IGNORECASE
)
VALIDATOR_CALLBACK_HANDLER: Final = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
_OAUTH_HANDLERS: Final = {
    VALIDATOR_CALLBACK_HANDLER: True,
    "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerValidatorCallbackHandler": True,  # before 3.7
    # Kafka's default: unsecured tokens (loosely.security.oauthbearer)
    "org.apache.kafka.common.security.oauthbearer.internals.unsecured.OAuthBearerUnsecuredValidatorCallbackHandler": (
        False
    ),
}


def _oauth_handler(v: str) -> bool:
    """True for the signed-token validator, False for the unsecured one; ValueError for other classes."""
    if v.strip() not in _OAUTH_HANDLERS:
        raise ValueError(f"{v.strip()[:200]!r} is not a callback handler loosely has; use {VALIDATOR_CALLBACK_HANDLER}")
    return _OAUTH_HANDLERS[v.strip()]


def _jwks_url(v: str) -> str:
    if not v.startswith(("file:", "http://", "https://")):
        raise ValueError("expected a file:, http:// or https:// URL")
    return v


def _jwt_validator_class(v: str) -> str:
    """Kafka's JWT validators that check signatures. Kafka 4.1's DefaultJwtValidator, built by the callback
    handler, falls back to ClientJwtValidator (no signature check); loosely verifies against the JWKS either way
    (docs/broker.md), and refuses ClientJwtValidator on a broker rather than accept unsigned claims."""
    v = v.strip()
    allowed = ("BrokerJwtValidator", "DefaultJwtValidator")
    if v not in {f"org.apache.kafka.common.security.oauthbearer.{c}" for c in allowed}:
        raise ValueError(f"{v[:200]!r} is not a JWT validator loosely has; use {' or '.join(allowed)}")
    return v


def _audiences(v: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in v.split(",") if a.strip())


# Kafka's authorizer classes whose semantics loosely implements (loosely.broker.acls says why both).
AUTHORIZER_CLASSES: Final = frozenset(
    {"org.apache.kafka.metadata.authorizer.StandardAuthorizer", "kafka.security.authorizer.AclAuthorizer"}
)


def _authorizer_class(v: str) -> str | None:
    v = v.strip()
    if not v:
        return None
    if v not in AUTHORIZER_CLASSES:
        raise ValueError(
            f"{v!r} is not an authorizer loosely implements; use org.apache.kafka.metadata.authorizer."
            "StandardAuthorizer (Kafka's ACLs) or leave it empty for none"
        )
    return v


MIGRATION_POLICIES: Final = ("bidirectional", "upgrade", "downgrade", "disabled")


def _migration_policy(v: str) -> str:
    """Kafka's ConsumerGroupMigrationPolicy, case-insensitive as its validator."""
    policy = v.strip().lower()
    if policy not in MIGRATION_POLICIES:
        raise ValueError(f"{v!r} is not one of {', '.join(MIGRATION_POLICIES)}")
    return policy


# Kafka broker setting -> (BrokerConfig field, parser). With the topic defaults (log.retention.ms, ...), these are
# the settings `loosely broker --config NAME=VALUE` understands.
BROKER_SETTINGS: Final[dict[str, tuple[str, object]]] = {
    "node.id": ("node_id", int),
    "broker.id": ("node_id", int),
    "num.partitions": ("num_partitions", int),
    "auto.create.topics.enable": ("auto_create_topics", _bool),
    "socket.request.max.bytes": ("frame_bytes_max", int),
    "queued.max.requests": ("queued_requests_max", int),
    "connections.max.idle.ms": ("connection_idle_ms_max", int),
    "queued.max.request.bytes": ("queued_request_bytes_max", int),
    "max.connections": ("connections_max", int),
    "max.connections.per.ip": ("connections_per_ip_max", int),
    "max.connection.creation.rate": ("connection_creation_rate_max", int),
    "max.connections.per.ip.overrides": ("connections_per_ip_overrides", parse_ip_overrides),
    "loosely.request.receive.timeout.ms": ("request_receive_ms_max", int),
    "socket.listen.backlog.size": ("listen_backlog_size", int),
    "log.retention.check.interval.ms": ("retention_check_interval_ms", int),
    "log.flush.offset.checkpoint.interval.ms": ("checkpoint_interval_ms", int),
    "log.cleaner.backoff.ms": ("cleaner_backoff_ms", int),
    "log.cleaner.enable": ("log_cleaner_enable", _bool),
    "fetch.max.bytes": ("fetch_bytes_max", int),
    "loosely.fetch.backlog.delay.ms": ("fetch_backlog_delay_ms", int),
    "offsets.topic.num.partitions": ("offsets_topic_partitions", int),
    "group.initial.rebalance.delay.ms": ("group_initial_rebalance_delay_ms", int),
    "group.min.session.timeout.ms": ("group_session_timeout_ms_min", int),
    "group.max.session.timeout.ms": ("group_session_timeout_ms_max", int),
    "group.consumer.session.timeout.ms": ("group_consumer_session_timeout_ms", _positive),
    "group.consumer.heartbeat.interval.ms": ("group_consumer_heartbeat_interval_ms", _positive),
    "group.consumer.min.session.timeout.ms": ("group_consumer_session_timeout_ms_min", _positive),
    "group.consumer.max.session.timeout.ms": ("group_consumer_session_timeout_ms_max", _positive),
    "group.consumer.min.heartbeat.interval.ms": ("group_consumer_heartbeat_interval_ms_min", _positive),
    "group.consumer.max.heartbeat.interval.ms": ("group_consumer_heartbeat_interval_ms_max", _positive),
    "group.consumer.migration.policy": ("group_consumer_migration_policy", _migration_policy),
    "group.streams.session.timeout.ms": ("group_streams_session_timeout_ms", _positive),
    "group.streams.heartbeat.interval.ms": ("group_streams_heartbeat_interval_ms", _positive),
    "group.streams.num.standby.replicas": ("group_streams_num_standby_replicas", _non_negative),
    "group.streams.initial.rebalance.delay.ms": ("group_streams_initial_rebalance_delay_ms", _non_negative),
    "group.streams.assignment.interval.ms": ("group_streams_assignment_interval_ms", _non_negative),
    "group.share.heartbeat.interval.ms": ("group_share_heartbeat_interval_ms", _positive),
    "group.share.session.timeout.ms": ("group_share_session_timeout_ms", _positive),
    "group.share.record.lock.duration.ms": ("group_share_record_lock_duration_ms", _positive),
    "group.share.min.record.lock.duration.ms": ("group_share_record_lock_duration_ms_min", _positive),
    "group.share.max.record.lock.duration.ms": ("group_share_record_lock_duration_ms_max", _positive),
    "group.share.delivery.count.limit": ("group_share_delivery_count_limit", _positive),
    "group.share.min.delivery.count.limit": ("group_share_delivery_count_limit_min", _positive),
    "group.share.max.delivery.count.limit": ("group_share_delivery_count_limit_max", _positive),
    "group.share.partition.max.record.locks": ("group_share_partition_max_record_locks", _positive),
    "group.share.min.partition.max.record.locks": ("group_share_partition_max_record_locks_min", _positive),
    "group.share.max.partition.max.record.locks": ("group_share_partition_max_record_locks_max", _positive),
    "offsets.retention.minutes": ("offsets_retention_ms", lambda v: int(v) * 60_000),
    "transaction.max.timeout.ms": ("transaction_timeout_ms_max", int),
    "transactional.id.expiration.ms": ("transactional_id_expiration_ms", int),
    "producer.id.expiration.ms": ("producer_id_expiration_ms", int),
    "authorizer.class.name": ("authorizer_class", _authorizer_class),
    "super.users": ("super_users", parse_super_users),
    "allow.everyone.if.no.acl.found": ("allow_everyone_if_no_acl_found", _bool),
    "log.scrub.bytes.per.second": ("scrub_bytes_per_second", _non_negative),
    "sasl.enabled.mechanisms": ("sasl_enabled_mechanisms", _sasl_mechanisms),
    "connections.max.reauth.ms": ("connections_max_reauth_ms", _non_negative),
    "connection.failed.authentication.delay.ms": ("failed_authentication_delay_ms", _non_negative),
    "quota.window.num": ("quota_window_num", _positive),
    "quota.window.size.seconds": ("quota_window_size_s", _positive),
    "controller.quota.window.num": ("controller_quota_window_num", _positive),
    "controller.quota.window.size.seconds": ("controller_quota_window_size_s", _positive),
    "loosely.allow.unauthenticated": ("allow_unauthenticated", _bool),
    "sasl.oauthbearer.jwks.endpoint.url": ("oauthbearer_jwks_url", _jwks_url),
    "sasl.oauthbearer.jwks.endpoint.refresh.ms": ("oauthbearer_jwks_refresh_ms", int),
    "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms": ("oauthbearer_jwks_retry_backoff_ms", _non_negative),
    "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms": ("oauthbearer_jwks_retry_backoff_max_ms", _non_negative),
    "sasl.oauthbearer.expected.audience": ("oauthbearer_expected_audience", _audiences),
    "sasl.oauthbearer.expected.issuer": ("oauthbearer_expected_issuer", lambda v: v or None),
    "sasl.oauthbearer.sub.claim.name": ("oauthbearer_sub_claim", lambda v: v or "sub"),
    "sasl.oauthbearer.scope.claim.name": ("oauthbearer_scope_claim", lambda v: v or "scope"),
    "sasl.oauthbearer.clock.skew.seconds": ("oauthbearer_clock_skew_s", _non_negative),
    "sasl.oauthbearer.jwt.validator.class": ("oauthbearer_jwt_validator_class", _jwt_validator_class),
    "loosely.ssl.handshake.timeout.ms": ("ssl_handshake_ms_max", int),
    "delegation.token.secret.key": ("delegation_token_secret_key", lambda v: v or None),
    "delegation.token.max.lifetime.ms": ("delegation_token_max_lifetime_ms", _positive),
    "delegation.token.expiry.time.ms": ("delegation_token_expiry_time_ms", _positive),
    "delegation.token.expiry.check.interval.ms": ("delegation_token_expiry_check_interval_ms", _positive),
    "loosely.client.telemetry.enable": ("client_telemetry", _bool),
    "telemetry.max.bytes": ("telemetry_bytes_max", _positive),
}

# Kafka settings loosely accepts and has no use for: no inter-broker traffic, one node.
IGNORED_SETTINGS: Final = frozenset({"sasl.mechanism.inter.broker.protocol", "sasl.mechanism.controller.protocol"})

_TOPIC_DEFAULTS_BY_BROKER_NAME: Final = {c.broker_name: c.name for c in TOPIC_CONFIGS.values()}


def split_kafka_settings(settings: Mapping[str, str]) -> tuple[dict[str, object], dict[str, str], list[str]]:
    """Sort Kafka-named broker settings into ``BrokerConfig`` fields, topic defaults, and unknown names.

    Raises :class:`ValueError` naming the setting when a value does not parse or is out of range.

    ``listeners``, ``advertised.listeners``, ``listener.security.protocol.map`` and the ``ssl.*`` settings (also as
    ``listener.name.<name>.ssl.*``) become the ``listeners`` field.

    >>> split_kafka_settings({"num.partitions": "3", "log.retention.ms": "60000", "zookeeper.connect": "x"})
    ({'num_partitions': 3}, {'log.retention.ms': '60000'}, ['zookeeper.connect'])
    """
    known = {f.name for f in fields(BrokerConfig)}
    broker: dict[str, object] = {}
    topic_defaults: dict[str, str] = {}
    unknown: list[str] = []
    listener_settings = {n: v for n, v in settings.items() if _is_listener_setting(n)}
    listeners = listeners_from_settings(listener_settings)
    if listeners:
        broker["listeners"] = listeners
    for name, value in settings.items():
        if name in listener_settings:
            continue
        if name in BROKER_SETTINGS:
            attr, parse = BROKER_SETTINGS[name]
            assert attr in known and callable(parse)
            try:
                broker[attr] = parse(value)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        elif name in IGNORED_SETTINGS:
            continue
        elif per_listener := next(((m, f, p) for r, f, p in _PER_LISTENER if (m := r.fullmatch(name))), None):
            m, field_name, parse = per_listener
            try:
                parsed = parse(value)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
            values = broker.setdefault(field_name, {})
            assert isinstance(values, dict)
            values[m.group(1).lower()] = parsed
        elif m := _LISTENER_OAUTH_HANDLER.fullmatch(name):
            try:
                validated = _oauth_handler(value)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
            current = broker.get("oauthbearer_validated_listeners", frozenset())
            assert isinstance(current, frozenset)
            listener = m.group(1).lower()
            broker["oauthbearer_validated_listeners"] = current | {listener} if validated else current - {listener}
        elif _LISTENER_JAAS.fullmatch(name):
            try:
                jaas = _jaas_line(name, value)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
            assert jaas is not None
            configs = broker.setdefault("sasl_jaas_configs", {})
            assert isinstance(configs, dict)
            configs[jaas[0]] = jaas[1]
        elif name in _TOPIC_DEFAULTS_BY_BROKER_NAME:
            try:
                validate_overrides({_TOPIC_DEFAULTS_BY_BROKER_NAME[name]: value})
            except InvalidConfigError as e:
                raise ValueError(f"{name}: {e}") from None
            topic_defaults[name] = value
        else:
            unknown.append(name)
    return broker, topic_defaults, unknown


def _is_listener_setting(name: str) -> bool:
    """A setting that describes listeners: their addresses, protocols and TLS material."""
    if name in LISTENER_SETTINGS or name in SSL_SETTINGS:
        return True
    prefix, _, rest = name.partition(".name.")
    listener, _, setting = rest.partition(".")
    # Kafka reads listener.name.<name>.* with the listener name in lower case only; other spellings stay unknown
    return prefix == "listener" and listener == listener.lower() and setting in SSL_SETTINGS
