"""Topic configuration: Apache Kafka's topic-level config names, defaults and validation.

Each topic config has a broker-level default (``log.retention.ms`` for ``retention.ms``, ...), which the broker
may override, and per-topic overrides stored with the topic. :class:`LogConfig` is the resolved, typed view the
storage engine uses; :data:`TOPIC_CONFIGS` is the catalogue DescribeConfigs answers from. Defaults are Apache
Kafka 4.x's unless a comment says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "LONG_MAX",
    "TOPIC_CONFIGS",
    "ConfigDef",
    "InvalidConfigError",
    "LogConfig",
    "resolve_log_config",
    "validate_overrides",
]

LONG_MAX: Final = 9_223_372_036_854_775_807


class InvalidConfigError(ValueError):
    """A config name this broker does not know, or a value outside its valid range."""


@dataclass(frozen=True, slots=True)
class ConfigDef:
    name: str
    kind: str  # "long" | "int" | "double" | "string" | "list" | "boolean"
    default: str
    broker_name: str
    doc: str
    check: Callable[[str], None] | None = field(default=None, compare=False)
    sensitive: bool = False


def _int_at_least(lo: int) -> Callable[[str], None]:
    def check(v: str) -> None:
        if int(v) < lo:
            raise InvalidConfigError(f"must be at least {lo}")

    return check


def _one_of(*allowed: str) -> Callable[[str], None]:
    def check(v: str) -> None:
        if v not in allowed:
            raise InvalidConfigError(f"must be one of {', '.join(allowed)}")

    return check


def _policy(v: str) -> None:
    parts = {p.strip() for p in v.split(",") if p.strip()}
    if not parts <= {"delete", "compact"}:
        raise InvalidConfigError("must be a list of delete, compact")


def _ratio(v: str) -> None:
    if not 0.0 <= float(v) <= 1.0:
        raise InvalidConfigError("must be between 0 and 1")


def _defs() -> dict[str, ConfigDef]:
    d = [
        ConfigDef(
            "cleanup.policy",
            "list",
            "delete",
            "log.cleanup.policy",
            "delete: drop old segments; compact: keep the latest record per key; or both.",
            _policy,
        ),
        ConfigDef(
            "compression.type",
            "string",
            "producer",
            "compression.type",
            "Codec the broker stores batches with; producer keeps the producer's.",
            _one_of("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"),
        ),
        ConfigDef(
            "delete.retention.ms",
            "long",
            "86400000",
            "log.cleaner.delete.retention.ms",
            "How long tombstones survive in the compacted section.",
            _int_at_least(0),
        ),
        ConfigDef(
            "file.delete.delay.ms",
            "long",
            "60000",
            "log.segment.delete.delay.ms",
            "Accepted for compatibility; deleted segments' files are removed at once.",
            _int_at_least(0),
        ),
        ConfigDef(
            "flush.messages",
            "long",
            str(LONG_MAX),
            "log.flush.interval.messages",
            "fsync after this many messages (power-loss durability).",
            _int_at_least(1),
        ),
        ConfigDef(
            "flush.ms",
            "long",
            str(LONG_MAX),
            "log.flush.interval.ms",
            "fsync when the oldest unflushed message is this old.",
            _int_at_least(0),
        ),
        ConfigDef(
            "index.interval.bytes",
            "int",
            "4096",
            "log.index.interval.bytes",
            "Bytes between offset index entries.",
            _int_at_least(0),
        ),
        ConfigDef(
            "max.compaction.lag.ms",
            "long",
            str(LONG_MAX),
            "log.cleaner.max.compaction.lag.ms",
            "Longest a record may stay uncompacted.",
            _int_at_least(1),
        ),
        ConfigDef(
            "max.message.bytes",
            "int",
            "1048588",
            "message.max.bytes",
            "Largest record batch the topic accepts.",
            _int_at_least(0),
        ),
        ConfigDef(
            "message.timestamp.after.max.ms",
            "long",
            "3600000",
            "log.message.timestamp.after.max.ms",
            "How far in the future a CreateTime timestamp may be.",
            _int_at_least(0),
        ),
        ConfigDef(
            "message.timestamp.before.max.ms",
            "long",
            str(LONG_MAX),
            "log.message.timestamp.before.max.ms",
            "How far in the past a CreateTime timestamp may be.",
            _int_at_least(0),
        ),
        ConfigDef(
            "message.timestamp.type",
            "string",
            "CreateTime",
            "log.message.timestamp.type",
            "CreateTime keeps the producer's timestamps; LogAppendTime stamps the append time.",
            _one_of("CreateTime", "LogAppendTime"),
        ),
        ConfigDef(
            "min.cleanable.dirty.ratio",
            "double",
            "0.5",
            "log.cleaner.min.cleanable.ratio",
            "Dirty/total ratio above which the cleaner compacts the log.",
            _ratio,
        ),
        ConfigDef(
            "min.compaction.lag.ms",
            "long",
            "0",
            "log.cleaner.min.compaction.lag.ms",
            "Shortest time a record stays uncompacted.",
            _int_at_least(0),
        ),
        ConfigDef(
            "min.insync.replicas",
            "int",
            "1",
            "min.insync.replicas",
            "Accepted for compatibility; a single node is always in sync.",
            _int_at_least(1),
        ),
        ConfigDef(
            "preallocate",
            "boolean",
            "false",
            "log.preallocate",
            "Accepted for compatibility; segments are not preallocated.",
            _one_of("true", "false"),
        ),
        ConfigDef(
            "retention.bytes",
            "long",
            "-1",
            "log.retention.bytes",
            "Per-partition size above which the oldest segments are deleted; -1 for no limit.",
            _int_at_least(-1),
        ),
        ConfigDef(
            "retention.ms",
            "long",
            "604800000",
            "log.retention.ms",
            "Age above which segments are deleted; -1 keeps them forever.",
            _int_at_least(-1),
        ),
        # Kafka 4 requires >= 1 MiB; we allow small segments so tests and tiny deployments can roll often.
        ConfigDef(
            "segment.bytes",
            "int",
            "1073741824",
            "log.segment.bytes",
            "Size at which the active segment rolls.",
            _int_at_least(64),
        ),
        ConfigDef(
            "segment.index.bytes",
            "int",
            "10485760",
            "log.index.size.max.bytes",
            "Largest offset index of a segment; a full index rolls the segment.",
            _int_at_least(8),
        ),
        ConfigDef(
            "segment.jitter.ms", "long", "0", "log.roll.jitter.ms", "Accepted for compatibility.", _int_at_least(0)
        ),
        ConfigDef(
            "segment.ms", "long", "604800000", "log.roll.ms", "Age at which the active segment rolls.", _int_at_least(1)
        ),
        ConfigDef(
            "unclean.leader.election.enable",
            "boolean",
            "false",
            "unclean.leader.election.enable",
            "Accepted for compatibility.",
            _one_of("true", "false"),
        ),
    ]
    return {c.name: c for c in d}


TOPIC_CONFIGS: Final[dict[str, ConfigDef]] = _defs()


def _check_type(c: ConfigDef, value: str) -> None:
    try:
        if c.kind in ("long", "int"):
            n = int(value)
            bits = 63 if c.kind == "long" else 31
            if not -(1 << bits) <= n < (1 << bits):
                raise InvalidConfigError(f"{c.name}: {value} is out of range for {c.kind}")
        elif c.kind == "double":
            float(value)
    except ValueError as e:
        raise InvalidConfigError(f"{c.name}: {value!r} is not a valid {c.kind}") from e
    if c.check is not None:
        try:
            c.check(value)
        except InvalidConfigError as e:
            raise InvalidConfigError(f"{c.name}: {value!r} {e}") from None
        except ValueError as e:
            raise InvalidConfigError(f"{c.name}: {value!r} is not valid: {e}") from None


def validate_overrides(overrides: Mapping[str, str]) -> dict[str, str]:
    """Check names and values; returns a plain copy. Raises :class:`InvalidConfigError`."""
    out: dict[str, str] = {}
    for name, value in overrides.items():
        c = TOPIC_CONFIGS.get(name)
        if c is None:
            raise InvalidConfigError(f"unknown topic config {name!r}")
        _check_type(c, value)
        out[name] = value
    return out


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Resolved topic config, typed, with units in the names."""

    segment_bytes: int = 1_073_741_824
    segment_ms: int = 604_800_000
    segment_index_bytes: int = 10_485_760
    retention_ms: int = 604_800_000
    retention_bytes: int = -1
    compact: bool = False
    delete: bool = True
    delete_retention_ms: int = 86_400_000
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = LONG_MAX
    min_cleanable_dirty_ratio: float = 0.5
    flush_messages: int = LONG_MAX
    flush_ms: int = LONG_MAX
    index_interval_bytes: int = 4096
    max_message_bytes: int = 1_048_588
    log_append_time: bool = False
    timestamp_before_max_ms: int = LONG_MAX
    timestamp_after_max_ms: int = 3_600_000
    compression_type: str = "producer"


def resolve_log_config(overrides: Mapping[str, str], broker_defaults: Mapping[str, str]) -> LogConfig:
    """The effective config: per-topic override, else the broker's ``log.*`` setting, else Kafka's default."""

    def get(name: str) -> str:
        if name in overrides:
            return overrides[name]
        c = TOPIC_CONFIGS[name]
        return broker_defaults.get(c.broker_name, c.default)

    policy = {p.strip() for p in get("cleanup.policy").split(",")}
    return LogConfig(
        segment_bytes=int(get("segment.bytes")),
        segment_ms=int(get("segment.ms")),
        segment_index_bytes=int(get("segment.index.bytes")),
        retention_ms=int(get("retention.ms")),
        retention_bytes=int(get("retention.bytes")),
        compact="compact" in policy,
        delete="delete" in policy,
        delete_retention_ms=int(get("delete.retention.ms")),
        min_compaction_lag_ms=int(get("min.compaction.lag.ms")),
        max_compaction_lag_ms=int(get("max.compaction.lag.ms")),
        min_cleanable_dirty_ratio=float(get("min.cleanable.dirty.ratio")),
        flush_messages=int(get("flush.messages")),
        flush_ms=int(get("flush.ms")),
        index_interval_bytes=int(get("index.interval.bytes")),
        max_message_bytes=int(get("max.message.bytes")),
        log_append_time=get("message.timestamp.type") == "LogAppendTime",
        timestamp_before_max_ms=int(get("message.timestamp.before.max.ms")),
        timestamp_after_max_ms=int(get("message.timestamp.after.max.ms")),
        compression_type=get("compression.type"),
    )
