"""Group configs (Kafka 4.x, KIP-848): per-group values set with AlterConfigs / IncrementalAlterConfigs on a GROUP
resource (``kafka-configs --entity-type groups --entity-name G --alter --add-config consumer.session.timeout.ms=...``).

**Names.** Kafka 4.1.1's GroupConfig: ``consumer.session.timeout.ms`` and ``consumer.heartbeat.interval.ms`` (the
KIP-848 coordinator uses them for that group instead of the broker's ``group.consumer.*`` values), and the
``share.*`` ones, which share groups use (:mod:`loosely.broker.groups.share_shell`; with Kafka 4.4's
``share.delivery.count.limit``, ``share.partition.max.record.locks`` and ``share.renew.acknowledge.enable``), and the
``streams.*`` ones, of which ``streams.session.timeout.ms``, ``streams.heartbeat.interval.ms`` and
``streams.num.standby.replicas`` configure streams groups (:mod:`loosely.broker.groups.streams_shell`) and the others
are stored and described like Kafka but change nothing; and Kafka 4.4's assignment intervals, assignor offloading,
streams assignor settings and dead-letter queue settings, stored, checked and described like Kafka's; of those
``streams.initial.rebalance.delay.ms`` and ``streams.assignment.interval.ms`` configure streams groups, the others
are used for nothing. Six of those are internal in Kafka 4.4 (``hidden``): described only once set. Another name is
INVALID_CONFIG ``Unknown group config name: foo``. A set value is described with the default it replaces as its
synonym (named by the broker setting it overrides), as Kafka 4.4 does.

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

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from loosely.broker._named_configs import NamedConfigs
from loosely.broker.config import BrokerConfig
from loosely.protocol.errors import ErrorCode
from loosely.storage.fs import FileSystem

__all__ = [
    "GROUP_CONFIGS_FILE",
    "SOURCE_GROUP",
    "GroupConfigDef",
    "GroupConfigError",
    "GroupConfigs",
    "auto_offset_reset",
    "group_defs",
    "normalized",
    "parse_duration_ms",
]

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
    kind: str  # Kafka's type name: "int", "long", "string", "boolean" or "list"
    default: str
    low: int = 1  # ints: the type's own lower bound (Kafka's atLeast)
    choices: tuple[str, ...] = ()  # strings: the allowed values
    range_ms: tuple[int, int, str, str] | None = None  # (min, max, min setting, max setting) of the broker
    parse: Callable[[str], object] | None = None  # strings without choices: ValueError for a value Kafka refuses
    floor: int | None = None  # the broker's minimum alone ("must be greater than or equal to N")
    ceiling: int | None = None  # the broker's maximum alone ("must be less than or equal to N")
    hidden: bool = False  # Kafka 4.4 describes it only once the group sets it (an internal config)
    broker_setting: str | None = None  # the synonym of its default: the broker setting it overrides
    refusal: str | None = None  # with ``parse``: the sentence of the INVALID_CONFIG (``{value}`` filled in)

    @property
    def default_synonym(self) -> str:
        return self.broker_setting or self.name


def group_defs(cfg: BrokerConfig) -> dict[str, GroupConfigDef]:
    """Kafka 4.4's group configs with this broker's defaults and ranges."""
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
        GroupConfigDef("share.auto.offset.reset", "string", "latest", parse=auto_offset_reset),
        GroupConfigDef("share.isolation.level", "string", "read_uncommitted",
                       choices=("read_committed", "read_uncommitted")),
        GroupConfigDef("streams.heartbeat.interval.ms", "int", "5000", range_ms=(
            5000, 15000, f"{streams}.min.heartbeat.interval.ms", f"{streams}.max.heartbeat.interval.ms")),
        GroupConfigDef("streams.session.timeout.ms", "int", "45000", range_ms=(
            45000, 60000, f"{streams}.min.session.timeout.ms", f"{streams}.max.session.timeout.ms")),
        GroupConfigDef("streams.num.standby.replicas", "int", "0", low=0, range_ms=(
            0, 2, "0", f"{streams}.max.standby.replicas")),
        # Kafka 4.4's: assignment intervals and offloading, the streams assignor's knobs, dead-letter queues.
        # loosely stores, checks and describes them; the streams initial delay and interval configure streams groups.
        GroupConfigDef("consumer.assignment.interval.ms", "int", "1000", low=0, range_ms=(
            0, 15000, "group.consumer.min.assignment.interval.ms", "group.consumer.max.assignment.interval.ms")),
        GroupConfigDef("consumer.assignor.offload.enable", "boolean", "true", choices=("true", "false"), hidden=True),
        GroupConfigDef("share.assignment.interval.ms", "int", "1000", low=0, range_ms=(
            0, 15000, f"{share}.min.assignment.interval.ms", f"{share}.max.assignment.interval.ms")),
        GroupConfigDef("share.assignor.offload.enable", "boolean", "true", choices=("true", "false"), hidden=True),
        GroupConfigDef("streams.initial.rebalance.delay.ms", "int", "3000", low=0),
        GroupConfigDef("streams.assignment.interval.ms", "int", "1000", low=0, range_ms=(
            0, 15000, f"{streams}.min.assignment.interval.ms", f"{streams}.max.assignment.interval.ms")),
        GroupConfigDef("streams.assignor.offload.enable", "boolean", "true", choices=("true", "false"), hidden=True),
        GroupConfigDef("streams.task.offset.interval.ms", "int", "60000", floor=15000, hidden=True),
        GroupConfigDef("streams.num.warmup.replicas", "int", "2", low=0, ceiling=20, hidden=True),
        GroupConfigDef("streams.rack.aware.assignment.tags", "list", "", parse=_distinct_tags,
                       refusal="streams.rack.aware.assignment.tags must not contain duplicate tag keys."),
        GroupConfigDef("streams.acceptable.recovery.lag", "long", "10000", low=0, hidden=True),
        GroupConfigDef("streams.assignor.name", "string", STREAMS_ASSIGNORS[0], parse=_streams_assignor,
                       broker_setting=f"{streams}.assignors",
                       refusal="streams.assignor.name '{value}' is not a registered task assignor. Registered "
                               f"assignors are: [{', '.join(STREAMS_ASSIGNORS)}]."),
        GroupConfigDef("errors.deadletterqueue.topic.name", "string", "", parse=_dlq_topic, broker_setting="",
                       refusal="errors.deadletterqueue.topic.name: DLQ topic name must not start with '__'"),
        GroupConfigDef("errors.deadletterqueue.copy.record.enable", "boolean", "false", choices=("true", "false"),
                       broker_setting=""),
    ]
    # the broker setting each overrides (Kafka's GroupConfig synonyms); none for the share group's offset reset,
    # isolation level and renew switch, and the dead-letter queue's (broker_setting "" above)
    own = {"share.auto.offset.reset", "share.isolation.level", "share.renew.acknowledge.enable"}
    return {d.name: d if d.broker_setting is not None or d.name in own else dataclasses.replace(
        d, broker_setting=f"group.{d.name}") for d in defs}


# The streams task assignors a broker has (Kafka's group.streams.assignors): Kafka 4.4's default list is its one.
STREAMS_ASSIGNORS: Final = ("sticky",)


def _distinct_tags(value: str) -> list[str]:
    tags = [t.strip() for t in value.split(",") if t.strip()]
    if len(set(tags)) != len(tags):
        raise ValueError(value)
    return tags


def _streams_assignor(value: str) -> str:
    if value not in STREAMS_ASSIGNORS:
        raise ValueError(value)
    return value


def _dlq_topic(value: str) -> str:
    if value.startswith("__"):  # Kafka's internal topics' prefix
        raise ValueError(value)
    return value


def normalized(props: Mapping[str, str], cfg: BrokerConfig) -> dict[str, str]:
    """The values as Kafka stores them once checked: a list's items trimmed and comma-joined ("a,b")."""
    defs = group_defs(cfg)
    return {n: ",".join(_distinct_tags(v)) if n in defs and defs[n].kind == "list" else v for n, v in props.items()}


# Java's Duration.parse (ISO 8601 ``PnDTnHnMn.nS``, letters in either case), which Kafka's by_duration takes
_DURATION: Final = re.compile(
    r"([-+]?)P(?:([-+]?[0-9]+)D)?(T(?:([-+]?[0-9]+)H)?(?:([-+]?[0-9]+)M)?(?:([-+]?[0-9]+)(?:[.,]([0-9]{0,9}))?S)?)?",
    re.IGNORECASE,
)
BY_DURATION: Final = "by_duration:"


def parse_duration_ms(text: str) -> int:
    """Milliseconds of an ISO 8601 duration as Java's ``Duration.parse`` reads it; ValueError when it does not.

    >>> parse_duration_ms("PT1H"), parse_duration_ms("P1DT0.5S"), parse_duration_ms("-PT1M")
    (3600000, 86400500, -60000)
    """
    m = _DURATION.fullmatch(text)
    if m is None or m.group(3) == "T" or not any(m.group(i) for i in (2, 4, 5, 6)):
        raise ValueError(f"not an ISO 8601 duration: {text}")
    sign, days, _, hours, minutes, seconds, fraction = m.groups()
    ms = (int(days or 0) * 86_400_000 + int(hours or 0) * 3_600_000 + int(minutes or 0) * 60_000
          + int(seconds or 0) * 1000)
    if fraction:
        frac_ms = int((fraction + "000")[:3])
        ms += -frac_ms if (seconds or "").startswith("-") else frac_ms
    return -ms if sign == "-" else ms


def auto_offset_reset(value: str) -> tuple[str, int]:
    """``share.auto.offset.reset`` as ``(kind, duration ms)``: ``("latest", 0)``, ``("earliest", 0)`` or
    ``("by_duration", ms)``; ValueError for anything else, as Kafka's ShareGroupAutoOffsetResetStrategy.

    >>> auto_offset_reset("by_duration:PT2H")
    ('by_duration', 7200000)
    """
    v = value.strip()
    if v in ("latest", "earliest"):
        return v, 0
    if v.startswith(BY_DURATION):
        ms = parse_duration_ms(v[len(BY_DURATION):])
        if ms >= 0:
            return "by_duration", ms
    raise ValueError(v)


def _check_type(d: GroupConfigDef, value: str) -> None:
    if d.parse is not None and d.refusal is not None:
        try:
            d.parse(value)
        except ValueError:
            raise GroupConfigError(d.refusal.replace("{value}", value)) from None
    elif d.parse is not None:
        try:
            d.parse(value)
        except ValueError:
            raise GroupConfigError(
                f"Invalid value {value.strip()} for configuration {d.name}: Invalid value `{value.strip()}` for "
                f"configuration {d.name}. The value must be either 'earliest', 'latest' or of the format "
                "'by_duration:<PnDTnHnMn.nS>'.") from None
    elif d.kind in ("int", "long"):
        try:
            n = int(value.strip())
        except ValueError:
            raise GroupConfigError(
                f"Invalid value {value} for configuration {d.name}: Not a number of type {d.kind.upper()}") from None
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
    effective = {n: int(props.get(n, d.default)) for n, d in defs.items() if d.kind in ("int", "long")}
    for name, d in defs.items():
        if d.floor is not None and effective[name] < d.floor:
            raise GroupConfigError(f"{name} must be greater than or equal to {d.floor}")
        if d.ceiling is not None and effective[name] > d.ceiling:
            raise GroupConfigError(f"{name} must be less than or equal to {d.ceiling}")
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
