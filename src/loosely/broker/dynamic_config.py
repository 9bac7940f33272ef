"""Dynamic broker configs (KIP-226): values set at run time with AlterConfigs / IncrementalAlterConfigs on a BROKER
resource, as ``kafka-configs --entity-type brokers --entity-default`` (the resource named ``""``, every broker) or
``--entity-name <node id>`` (this broker) sends them.

**Layers.** A broker-level name resolves, first match wins, through Kafka's four sources:

    DYNAMIC_BROKER_CONFIG (2)          set for this node id
    DYNAMIC_DEFAULT_BROKER_CONFIG (3)  set for the cluster-wide default
    STATIC_BROKER_CONFIG (4)           ``loosely broker --config NAME=VALUE``
    DEFAULT_CONFIG (5)                 Kafka's default

What loosely can change at run time:

- the broker-level defaults of the topic configs (``log.retention.ms``, ``log.segment.bytes``,
  ``compression.type``, ...: every ``broker_name`` of :data:`loosely.storage.config.TOPIC_CONFIGS`); the broker
  hands the merged result to :meth:`loosely.storage.manager.LogManager.set_broker_defaults`, so retention and
  rolling follow at once for every topic without its own override;
- the connection limits (:data:`CONNECTION_NAMES`: ``max.connections``, ``max.connections.per.ip`` and its
  overrides, ``max.connection.creation.rate``), which the server applies to new connections at once, as Kafka's
  DynamicConnectionQuota does (connections already open are kept);
- :data:`RUNTIME_NAMES`: ``log.cleaner.backoff.ms`` (the cleaner's next pause) and ``producer.id.expiration.ms``
  (the producer state's next expiry pass), handed to the server's ``apply_runtime_settings`` service.

The rest, in Kafka's words:

- a name Kafka cannot change dynamically (``log.dirs``, ``node.id``, ...) refuses the whole resource with
  INVALID_REQUEST and ``Cannot update these configs dynamically: [log.dirs]``, as Kafka 4.4's DynamicBrokerConfig
  (4.1's, in Scala, printed ``Set(log.dirs)``);
- a name Kafka can change dynamically but loosely applies only at start (``listeners``, ``ssl.*``, ...)
  is refused the same way with loosely's own sentence (documented in docs/broker.md);
- a name Kafka does not know is stored and described (with a null value and read-only), as Kafka stores custom
  configs for plugins; it changes nothing;
- a per-broker resource must be named by this node's id (``Unexpected broker id, expected 1, but received 7``).

**Durability.** Both layers live in ``<data_dir>/broker-configs.json`` (``{"version": 1, "default": {...},
"brokers": {"<node id>": {...}}}``), rewritten atomically (temporary file, fsync, rename) before the request is
answered, and read back at start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from loosely.broker._listening import LISTENER_SETTINGS
from loosely.broker.config import BROKER_SETTINGS, IGNORED_SETTINGS, parse_ip_overrides
from loosely.protocol.errors import ErrorCode
from loosely.storage.config import TOPIC_CONFIGS, InvalidConfigError, validate_overrides
from loosely.storage.fs import FileSystem
from loosely.tls.settings import SSL_SETTINGS

__all__ = [
    "CONFIGS_FILE",
    "CONNECTION_NAMES",
    "DYNAMIC_NAMES",
    "RUNTIME_NAMES",
    "SOURCE_DEFAULT",
    "SOURCE_DYNAMIC_BROKER",
    "SOURCE_DYNAMIC_DEFAULT",
    "SOURCE_STATIC_BROKER",
    "BrokerConfigError",
    "DynamicBrokerConfigs",
    "Layer",
    "check_change",
    "check_resource_name",
]

CONFIGS_FILE: Final = "broker-configs.json"
FORMAT_VERSION: Final = 1

# Kafka's DescribeConfigsResponse.ConfigSource ids
SOURCE_DYNAMIC_BROKER: Final = 2
SOURCE_DYNAMIC_DEFAULT: Final = 3
SOURCE_STATIC_BROKER: Final = 4
SOURCE_DEFAULT: Final = 5

_TOPIC_NAME_BY_BROKER_NAME: Final = {c.broker_name: c.name for c in TOPIC_CONFIGS.values()}
# What loosely applies at run time: the broker-level topic defaults (all in Kafka's DynamicLogConfig too).
DYNAMIC_NAMES: Final = frozenset(_TOPIC_NAME_BY_BROKER_NAME)
# The connection limits, applied by the server to every new connection (Kafka's DynamicConnectionQuota names).
CONNECTION_NAMES: Final = frozenset({
    "max.connections", "max.connections.per.ip", "max.connections.per.ip.overrides", "max.connection.creation.rate",
})
# Broker settings the running broker takes at once (the log cleaner's pause, the producer state's expiry), with
# Kafka's ConfigDef type and lower bound (DynamicLogConfig / DynamicProducerStateManagerConfig in Kafka).
RUNTIME_NAMES: Final[dict[str, tuple[str, int]]] = {
    "log.cleaner.backoff.ms": ("LONG", 0),
    "producer.id.expiration.ms": ("INT", 1),
}
# Dynamic in Kafka (DynamicBrokerConfig.AllDynamicConfigs), read by loosely only at start.
_DYNAMIC_IN_KAFKA_ONLY: Final = frozenset({
    "listeners", "advertised.listeners", "listener.security.protocol.map", "sasl.enabled.mechanisms",
}) | frozenset(SSL_SETTINGS)
# Broker names Kafka knows and never changes at run time, as far as loosely knows them (its own loosely.* names
# are static too).
_STATIC_NAMES: Final = (
    frozenset(BROKER_SETTINGS) | IGNORED_SETTINGS | frozenset(LISTENER_SETTINGS)
    | {"log.dirs", "log.dir", "default.replication.factor", "process.roles", "controller.quorum.voters"}
) - _DYNAMIC_IN_KAFKA_ONLY - DYNAMIC_NAMES - CONNECTION_NAMES - frozenset(RUNTIME_NAMES)


class BrokerConfigError(ValueError):
    """A refused change: Kafka's error code and message."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error_code = code


@dataclass(frozen=True, slots=True)
class Layer:
    """One broker-level name's value at one source."""

    value: str | None
    source: int


def _name_list(names: Iterable[str]) -> str:
    return f"[{', '.join(sorted(names))}]"


def check_change(props: Mapping[str, str], *, per_broker: bool) -> None:
    """Kafka's DynamicBrokerConfig.validateConfigs in its order: names first, then values. Raises
    :class:`BrokerConfigError` for the whole resource."""
    static = [n for n in props if n in _STATIC_NAMES]
    if static:
        raise BrokerConfigError(
            ErrorCode.invalid_request, f"Cannot update these configs dynamically: {_name_list(static)}"
        )
    start_only = [n for n in props if n in _DYNAMIC_IN_KAFKA_ONLY or n.startswith("listener.name.")]
    if start_only:
        raise BrokerConfigError(
            ErrorCode.invalid_request,
            f"loosely applies these configs only at start (loosely broker --config): {_name_list(start_only)}",
        )
    for name, value in props.items():
        if name in CONNECTION_NAMES or name in RUNTIME_NAMES:
            reason = _connection_value_error(name, value)
            if reason is not None:
                raise BrokerConfigError(
                    ErrorCode.invalid_request, f"Invalid value {value} for configuration {name}: {reason}"
                )
        if name in DYNAMIC_NAMES:
            try:
                validate_overrides({_TOPIC_NAME_BY_BROKER_NAME[name]: value})
            except InvalidConfigError as e:
                reason = str(e).partition(": ")[2] or str(e)
                raise BrokerConfigError(
                    ErrorCode.invalid_request, f"Invalid value {value} for configuration {name}: {reason}"
                ) from None


def _connection_value_error(name: str, value: str) -> str | None:
    """Kafka's ConfigDef reasons for a bad connection limit or run-time setting: a number of its type at least its
    bound (connection limits: INT at least 0), or ``IP:COUNT`` pairs."""
    if name == "max.connections.per.ip.overrides":
        try:
            parse_ip_overrides(value)
        except ValueError as e:
            return str(e)
        return None
    kind, least = RUNTIME_NAMES.get(name, ("INT", 0))
    bits = 31 if kind == "INT" else 63
    try:
        n = int(value.strip())
    except ValueError:
        return f"Not a number of type {kind}"
    if not -(2**bits) <= n < 2**bits:
        return f"Not a number of type {kind}"
    return f"Value must be at least {least}" if n < least else None


def check_resource_name(name: str, node_id: int) -> None:
    """A per-broker resource names this node (Kafka's ConfigAdminManager.validateResourceNameIsCurrentNodeId)."""
    try:
        asked = int(name)
    except ValueError:
        raise BrokerConfigError(ErrorCode.invalid_request, f"Node id must be an integer, but it is: {name}") from None
    if asked != node_id:
        raise BrokerConfigError(
            ErrorCode.invalid_request, f"Unexpected broker id, expected {node_id}, but received {name}"
        )


class DynamicBrokerConfigs:
    """The dynamic layers of one broker, loaded from and saved to its data directory (one event-loop thread)."""

    def __init__(self, fs: FileSystem, data_dir: str, node_id: int, static: Mapping[str, str]) -> None:
        self._fs = fs
        self.path = os.path.join(data_dir, CONFIGS_FILE)
        self.node_id = node_id
        self.static = dict(static)  # the static topic defaults (--config log.retention.ms=...)
        self.default: dict[str, str] = {}
        self.brokers: dict[str, dict[str, str]] = {}
        if fs.exists(self.path):
            try:
                self.default, self.brokers = _decode(fs.read_file(self.path))
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                raise ValueError(f"{self.path} is damaged ({e}); fix or remove it") from None

    @property
    def per_broker(self) -> Mapping[str, str]:
        return self.brokers.get(str(self.node_id), {})

    def layers(self, name: str, kafka_default: str | None) -> list[Layer]:
        """Every source that has a value for ``name``, strongest first (the synonyms Kafka lists)."""
        out = []
        if name in self.per_broker:
            out.append(Layer(self.shown(name, self.per_broker[name]), SOURCE_DYNAMIC_BROKER))
        if name in self.default:
            out.append(Layer(self.shown(name, self.default[name]), SOURCE_DYNAMIC_DEFAULT))
        if name in self.static:
            out.append(Layer(self.static[name], SOURCE_STATIC_BROKER))
        if kafka_default is not None:
            out.append(Layer(kafka_default, SOURCE_DEFAULT))
        return out

    @staticmethod
    def shown(name: str, value: str) -> str | None:
        # A name Kafka does not know has no type, so Kafka treats it as possibly sensitive and shows no value.
        return value if name in DYNAMIC_NAMES or name in CONNECTION_NAMES or name in RUNTIME_NAMES else None

    def connection_limits(self, resource_name: str | None = None, props: Mapping[str, str] | None = None
                          ) -> dict[str, str]:
        """The dynamic connection limits in effect: the cluster default, then this broker's (static ones are the
        server's own). With ``props``, as they would be once ``props`` replaced resource ``resource_name``'s layer
        (a change being checked)."""
        return self._merged(CONNECTION_NAMES, resource_name, props)

    def runtime_settings(self) -> dict[str, str]:
        """The dynamic values in effect of :data:`RUNTIME_NAMES` (the cluster default, then this broker's)."""
        return self._merged(frozenset(RUNTIME_NAMES), None, None)

    def _merged(self, names: frozenset[str], resource_name: str | None, props: Mapping[str, str] | None
                ) -> dict[str, str]:
        default = props if props is not None and resource_name == "" else self.default
        own = props if props is not None and resource_name == str(self.node_id) else self.per_broker
        out: dict[str, str] = {}
        for layer in (default, own):
            out.update({n: v for n, v in layer.items() if n in names})
        return out

    def log_defaults(self) -> dict[str, str]:
        """The broker-level topic defaults in effect: static, then the cluster default, then this broker's."""
        out = dict(self.static)
        for layer in (self.default, self.per_broker):
            out.update({n: v for n, v in layer.items() if n in DYNAMIC_NAMES})
        return out

    def resource(self, resource_name: str) -> Mapping[str, str]:
        return self.default if resource_name == "" else self.brokers.get(resource_name, {})

    def replace(self, resource_name: str, props: Mapping[str, str]) -> None:
        """Make ``props`` the whole dynamic layer of the resource, durable before it counts. An OSError from the
        disk propagates and nothing changes."""
        default = dict(props) if resource_name == "" else dict(self.default)
        brokers = {k: dict(v) for k, v in self.brokers.items()}
        if resource_name != "":
            brokers[resource_name] = dict(props)
            if not props:
                del brokers[resource_name]
        data = _encode(default, brokers)
        assert _decode(data) == (default, brokers)  # what is about to be durable reads back as what we mean
        self._fs.write_atomic(self.path, data)
        self.default, self.brokers = default, brokers


def _encode(default: Mapping[str, str], brokers: Mapping[str, Mapping[str, str]]) -> bytes:
    doc = {"version": FORMAT_VERSION, "default": dict(sorted(default.items())),
           "brokers": {b: dict(sorted(c.items())) for b, c in sorted(brokers.items())}}
    return json.dumps(doc, indent=1).encode()


def _decode(data: bytes) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"expected {{'version': {FORMAT_VERSION}, 'default': {{...}}, 'brokers': {{...}}}}")
    default = {str(k): str(v) for k, v in doc["default"].items()}
    brokers = {str(b): {str(k): str(v) for k, v in c.items()} for b, c in doc["brokers"].items()}
    return default, brokers
