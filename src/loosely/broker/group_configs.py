"""Group configs (Kafka 4.x, KIP-848): per-group values set with AlterConfigs / IncrementalAlterConfigs on a GROUP
resource (``kafka-configs --entity-type groups --entity-name G --alter --add-config consumer.session.timeout.ms=...``).

**Names.** Kafka 4.1.1's GroupConfig: ``consumer.session.timeout.ms`` and ``consumer.heartbeat.interval.ms`` (the
KIP-848 coordinator uses them for that group instead of the broker's ``group.consumer.*`` values), and the
``share.*`` ones, which share groups use (:mod:`loosely.broker.groups.share_shell`; with Kafka 4.4's
``share.delivery.count.limit``, ``share.partition.max.record.locks`` and ``share.renew.acknowledge.enable``), and the
``streams.*`` ones, which loosely stores and describes like Kafka but which change nothing (loosely has no streams
groups). Another name is INVALID_CONFIG ``Unknown group config name: foo``.

**Checks**, in Kafka's order, each INVALID_CONFIG with Kafka's sentence: the names, the types (an int at least 1,
a choice), then the ranges against the broker: ``consumer.heartbeat.interval.ms`` within
``group.consumer.{min,max}.heartbeat.interval.ms``, ``consumer.session.timeout.ms`` within
``group.consumer.{min,max}.session.timeout.ms``, the share lock duration, delivery count limit and record locks
within ``group.share.{min,max}.*`` (the share heartbeat and session and the streams ones within Kafka's default
ranges, loosely having no settings for them), and each session timeout above its heartbeat interval.

**Durability.** ``<data_dir>/group-configs.json`` (``{"version": 1, "groups": {"<group id>": {...}}}``), rewritten
atomically before the request is answered and read at start. A group's configs outlive the group, as in Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from loosely.broker._named_configs import NamedConfigs
from loosely.broker.config import BrokerConfig
from loosely.protocol.errors import ErrorCode
from loosely.storage.fs import FileSystem

__all__ = ["GROUP_CONFIGS_FILE", "SOURCE_GROUP", "GroupConfigDef", "GroupConfigError", "GroupConfigs", "group_defs"]

GROUP_CONFIGS_FILE: Final = "group-configs.json"
SOURCE_GROUP: Final = 8  # Kafka's ConfigSource.GROUP_CONFIG


class GroupConfigError(ValueError):
    """A refused change: Kafka's error code and message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.error_code = ErrorCode.invalid_config


@dataclass(frozen=True, slots=True)
class GroupConfigDef:
    name: str
    kind: str  # Kafka's type name: "int" or "string"
    default: str
    low: int = 1  # ints: the type's own lower bound (Kafka's atLeast)
    choices: tuple[str, ...] = ()  # strings: the allowed values
    range_ms: tuple[int, int, str, str] | None = None  # (min, max, min setting, max setting) of the broker


def group_defs(cfg: BrokerConfig) -> dict[str, GroupConfigDef]:
    """Kafka 4.1.1's group configs with this broker's defaults and ranges."""
    share, streams = "group.share", "group.streams"
    defs = [
        GroupConfigDef("consumer.heartbeat.interval.ms", "int", str(cfg.group_consumer_heartbeat_interval_ms),
                       range_ms=(cfg.group_consumer_heartbeat_interval_ms_min,
                                 cfg.group_consumer_heartbeat_interval_ms_max,
                                 "group.consumer.min.heartbeat.interval.ms",
                                 "group.consumer.max.heartbeat.interval.ms")),
        GroupConfigDef("consumer.session.timeout.ms", "int", str(cfg.group_consumer_session_timeout_ms),
                       range_ms=(cfg.group_consumer_session_timeout_ms_min, cfg.group_consumer_session_timeout_ms_max,
                                 "group.consumer.min.session.timeout.ms", "group.consumer.max.session.timeout.ms")),
        GroupConfigDef("share.heartbeat.interval.ms", "int", str(cfg.group_share_heartbeat_interval_ms), range_ms=(
            5000, 15000, f"{share}.min.heartbeat.interval.ms", f"{share}.max.heartbeat.interval.ms")),
        GroupConfigDef("share.session.timeout.ms", "int", str(cfg.group_share_session_timeout_ms), range_ms=(
            45000, 60000, f"{share}.min.session.timeout.ms", f"{share}.max.session.timeout.ms")),
        GroupConfigDef("share.record.lock.duration.ms", "int", str(cfg.group_share_record_lock_duration_ms),
                       low=1000, range_ms=(
            cfg.group_share_record_lock_duration_ms_min, cfg.group_share_record_lock_duration_ms_max,
            f"{share}.min.record.lock.duration.ms", f"{share}.max.record.lock.duration.ms")),
        # Kafka 4.4's (KIP-1206)
        GroupConfigDef("share.delivery.count.limit", "int", str(cfg.group_share_delivery_count_limit), low=2,
                       range_ms=(cfg.group_share_delivery_count_limit_min, cfg.group_share_delivery_count_limit_max,
                                 f"{share}.min.delivery.count.limit", f"{share}.max.delivery.count.limit")),
        GroupConfigDef("share.partition.max.record.locks", "int", str(cfg.group_share_partition_max_record_locks),
                       low=100, range_ms=(
            cfg.group_share_partition_max_record_locks_min, cfg.group_share_partition_max_record_locks_max,
            f"{share}.min.partition.max.record.locks", f"{share}.max.partition.max.record.locks")),
        GroupConfigDef("share.renew.acknowledge.enable", "boolean", "true", choices=("true", "false")),
        GroupConfigDef("share.auto.offset.reset", "string", "latest", choices=("latest", "earliest", "by_duration")),
        GroupConfigDef("share.isolation.level", "string", "read_uncommitted",
                       choices=("read_committed", "read_uncommitted")),
        GroupConfigDef("streams.heartbeat.interval.ms", "int", "5000", range_ms=(
            5000, 15000, f"{streams}.min.heartbeat.interval.ms", f"{streams}.max.heartbeat.interval.ms")),
        GroupConfigDef("streams.session.timeout.ms", "int", "45000", range_ms=(
            45000, 60000, f"{streams}.min.session.timeout.ms", f"{streams}.max.session.timeout.ms")),
        GroupConfigDef("streams.num.standby.replicas", "int", "0", low=0, range_ms=(
            0, 2, "0", f"{streams}.max.standby.replicas")),
    ]
    return {d.name: d for d in defs}


def _check_type(d: GroupConfigDef, value: str) -> None:
    if d.kind == "int":
        try:
            n = int(value.strip())
        except ValueError:
            raise GroupConfigError(f"Invalid value {value} for configuration {d.name}: Not a number of type INT") \
                from None
        if n < d.low:
            raise GroupConfigError(f"Invalid value {value} for configuration {d.name}: Value must be at least {d.low}")
    elif value.strip().lower() not in d.choices if d.kind == "boolean" else value.strip() not in d.choices:
        if d.kind == "boolean":
            raise GroupConfigError(f"Invalid value {value} for configuration {d.name}: Expected value to be either "
                                   "true or false")
        raise GroupConfigError(
            f"Invalid value {value} for configuration {d.name}: String must be one of: {', '.join(d.choices)}"
        )


def check(props: Mapping[str, str], cfg: BrokerConfig) -> None:
    """Kafka's GroupConfig.validate: names, types, then ranges; raises :class:`GroupConfigError`."""
    defs = group_defs(cfg)
    for name in props:
        if name not in defs:
            raise GroupConfigError(f"Unknown group config name: {name}")
    for name, value in props.items():
        _check_type(defs[name], value)
    effective = {n: int(props.get(n, d.default)) for n, d in defs.items() if d.kind == "int"}
    for name, d in defs.items():
        if d.range_ms is None:
            continue
        low, high, _, _ = d.range_ms
        if not low <= effective[name] <= high:
            # Kafka 4.4's words; 4.1 named the bound's broker setting ("... must be greater than or equal to
            # group.consumer.min.session.timeout.ms") and not its value
            raise GroupConfigError(f"{name} must be in the range {low} to {high} inclusive.")
    for kind in ("consumer", "share", "streams"):
        if effective[f"{kind}.session.timeout.ms"] <= effective[f"{kind}.heartbeat.interval.ms"]:
            raise GroupConfigError(f"{kind}.session.timeout.ms must be greater than {kind}.heartbeat.interval.ms")


class GroupConfigs(NamedConfigs):
    """Every group's configs, loaded from and saved to the data directory (one event-loop thread); the KIP-848
    coordinator reads a group's at each of its heartbeats."""

    def __init__(self, fs: FileSystem, data_dir: str) -> None:
        super().__init__(fs, data_dir, GROUP_CONFIGS_FILE, "groups")

    @property
    def groups(self) -> dict[str, dict[str, str]]:
        return self.entries
