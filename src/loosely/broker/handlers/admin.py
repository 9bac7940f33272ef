"""Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, AlterConfigs,
IncrementalAlterConfigs, ListConfigResources.

One broker means a replication factor of 1 (or -1, "the default"); anything else answers
INVALID_REPLICATION_FACTOR with Kafka's wording, and explicit replica assignments must name this broker. Config
names and values are checked against :data:`loosely.storage.config.TOPIC_CONFIGS` before anything changes, and
``validate_only`` requests stop after the checks.

BROKER resources are Kafka's dynamic broker configs (KIP-226), kept by :mod:`loosely.broker.dynamic_config`: the
cluster-wide default (resource name ``""``) and this node (its id) can change the broker-level topic defaults at
run time, and DescribeConfigs reports each value with the source it comes from (this broker's dynamic value, the
dynamic default, the static ``--config`` value, Kafka's default), for topics as for the broker.

ListConfigResources (KIP-1142) lists what DescribeConfigs can describe: every topic, and this broker as a BROKER and
a BROKER_LOGGER resource, as Kafka lists them, the groups that have configs (GROUP resources, kept by
:mod:`loosely.broker.group_configs`) and the client metrics subscriptions (CLIENT_METRICS, kept by
:mod:`loosely.broker.client_metrics`; v0 asks for these only); a type Kafka does not know is UNSUPPORTED_VERSION,
Kafka's answer. GROUP and CLIENT_METRICS configs are described and altered with Kafka's checks; the KIP-848
coordinator reads the first, client telemetry the second.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, fields

from loosely.broker._admission import ConnectionLimits
from loosely.broker.acls import allowed
from loosely.broker.client_metrics import CONFIG_DEFS as CLIENT_METRICS_DEFS
from loosely.broker.client_metrics import SOURCE_CLIENT_METRICS, ClientMetricsError, check_subscription
from loosely.broker.config import BROKER_SETTINGS, BrokerConfig, parse_ip_overrides
from loosely.broker.context import BrokerContext, Request, current_principal, current_throttle_ms
from loosely.broker.dynamic_config import (
    CONNECTION_NAMES,
    DYNAMIC_NAMES,
    SOURCE_DEFAULT,
    SOURCE_DYNAMIC_DEFAULT,
    SOURCE_STATIC_BROKER,
    BrokerConfigError,
    DynamicBrokerConfigs,
    Layer,
    check_change,
    check_resource_name,
)
from loosely.broker.group_configs import SOURCE_GROUP, GroupConfigError, GroupConfigs, group_defs
from loosely.broker.group_configs import check as check_group_configs
from loosely.broker.group_configs import normalized as normalized_group_configs
from loosely.broker.handlers._util import NO_THROTTLE, Response
from loosely.broker.handlers.telemetry import client_telemetry
from loosely.broker.quotas import MutationQuota, quota_user
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader, build
from loosely.security.authorizer import CLUSTER_NAME, AclOperation
from loosely.security.authorizer import AclOperation as Op
from loosely.security.authorizer import ResourceType as Res
from loosely.storage.config import TOPIC_CONFIGS, InvalidConfigError, validate_overrides
from loosely.storage.log import LogError
from loosely.storage.manager import Topic

__all__ = ["HANDLERS", "broker_configs", "connection_limits"]

TOPIC = 2
BROKER = 4
BROKER_LOGGER = 8
CLIENT_METRICS = 16
GROUP = 32

SOURCE_TOPIC = 1

_TYPE_CODES = {"boolean": 1, "string": 2, "int": 3, "short": 4, "long": 5, "double": 6, "list": 7, "class": 8}


def _replication_error(ctx: BrokerContext, factor: int, assignments: Iterable[object]) -> LogError | None:
    if factor not in (-1, 1):
        return LogError(
            ErrorCode.invalid_replication_factor,
            f"Unable to replicate the partition {factor} time(s): The target replication factor of {factor} "
            "cannot be reached because only 1 broker(s) are registered.",
        )
    for a in assignments:
        ids = tuple(getattr(a, "broker_ids", ()))
        if ids != (ctx.node_id,):
            return LogError(ErrorCode.invalid_replica_assignment, f"replicas {list(ids)} must be [{ctx.node_id}]")
    return None


def _topic_config_entries(
    resp: Response, ctx: BrokerContext, t: Topic | None, overrides: dict[str, str], cls_name: str
) -> tuple[object, ...]:
    out = []
    for name, c in sorted(TOPIC_CONFIGS.items()):
        value, source = _topic_value(ctx, overrides, name)
        out.append(
            build(
                getattr(resp, cls_name),
                name=name,
                value=value,
                read_only=False,
                config_source=source,
                is_sensitive=c.sensitive,
            )
        )
    return tuple(out)


def _dynamic(ctx: BrokerContext) -> DynamicBrokerConfigs:
    if ctx.dynamic_configs is None:  # a context the broker did not start (unit tests): the data directory's own
        ctx.dynamic_configs = DynamicBrokerConfigs(
            ctx.logs.fs, ctx.logs.data_dir, ctx.node_id, ctx.config.log_defaults
        )
    return ctx.dynamic_configs


def _topic_layers(ctx: BrokerContext, overrides: dict[str, str], name: str) -> list[Layer]:
    """Where a topic config's value comes from, strongest first: Kafka's synonyms."""
    c = TOPIC_CONFIGS[name]
    own = [Layer(overrides[name], SOURCE_TOPIC)] if name in overrides else []
    return own + _dynamic(ctx).layers(c.broker_name, c.default)


def _topic_value(ctx: BrokerContext, overrides: dict[str, str], name: str) -> tuple[str, int]:
    first = _topic_layers(ctx, overrides, name)[0]
    assert first.value is not None  # topic-config layers always carry values
    return first.value, first.source


async def handle_create_topics(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.CREATE_TOPICS, header.api_version)
    validate_only = bool(getattr(request, "validate_only", False))
    topics = request.topics
    counts = Counter(t.name for t in topics)
    any_topic = allowed(ctx, Op.CREATE, Res.CLUSTER, CLUSTER_NAME, log_denied=False)
    quota = _mutation_quota(ctx, header, strict_since=6)
    results: list[object] = []
    for ct in topics:
        error: LogError | None = None
        created: Topic | None = None
        overrides = {c.name: c.value for c in ct.configs if c.value is not None}
        partitions = int(ct.num_partitions)
        if counts[ct.name] > 1:
            error = LogError(ErrorCode.invalid_request, f"topic {ct.name!r} appears more than once in the request")
        elif not (any_topic or allowed(ctx, Op.CREATE, Res.TOPIC, ct.name)):
            error = LogError(ErrorCode.topic_authorization_failed, "Authorization failed.")
        else:
            error = _replication_error(ctx, int(ct.replication_factor), ct.assignments)
        if error is None:
            if ct.assignments:
                if partitions != -1:
                    error = LogError(
                        ErrorCode.invalid_request, "num_partitions must be -1 when replica assignments are given"
                    )
                partitions = len(ct.assignments)
            elif partitions == -1:
                partitions = ctx.config.num_partitions
        if error is None:
            try:
                ctx.logs.validate_new_topic(ct.name, partitions, overrides)
                if not quota.record(partitions):  # Kafka takes the quota after every check, even for validate_only
                    raise _throttled()
                if not validate_only:
                    created = ctx.logs.create_topic(ct.name, partitions, overrides)
            except LogError as e:
                error = e
        if error is not None:
            ctx.count_error(ApiKey.CREATE_TOPICS)
            results.append(
                build(
                    resp.CreatableTopicResult,
                    name=ct.name,
                    topic_id=None,
                    error_code=error.error_code,
                    error_message=_message(error),
                    topic_config_error_code=0,
                    num_partitions=-1,
                    replication_factor=-1,
                    configs=None,
                )
            )
            continue
        results.append(
            build(
                resp.CreatableTopicResult,
                name=ct.name,
                topic_id=created.topic_id if created is not None else None,
                error_code=ErrorCode.none,
                error_message=None,
                topic_config_error_code=0,
                num_partitions=partitions,
                replication_factor=1,
                configs=_topic_config_entries(resp, ctx, created, overrides, "CreatableTopicConfigs")
                if resp.version >= 5
                else None,
            )
        )
    return resp.make(throttle_time=_throttle_time(quota), topics=tuple(results))


async def handle_delete_topics(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DELETE_TOPICS, header.api_version)
    named: list[tuple[str | None, object]] = []
    if hasattr(request, "topic_names"):
        named = [(n, None) for n in request.topic_names]
    else:
        for t in request.topics:
            name = t.name
            if name is None and t.topic_id is not None:
                found = ctx.logs.by_id(t.topic_id)
                name = found.name if found is not None else None
            named.append((name, t.topic_id))
    results: list[object] = []
    any_topic = allowed(ctx, Op.DELETE, Res.CLUSTER, CLUSTER_NAME, log_denied=False)
    quota = _mutation_quota(ctx, header, strict_since=5)
    for name, tid in named:
        code = ErrorCode.none
        message = None
        topic_id = None
        if name is None:
            code, message = ErrorCode.unknown_topic_id, "unknown topic id"
        elif ctx.logs.get(name) is not None and not (any_topic or allowed(ctx, Op.DELETE, Res.TOPIC, name)):
            code, message = ErrorCode.topic_authorization_failed, "Authorization failed."
        else:
            t = ctx.logs.get(name)
            try:
                if t is not None and t.internal:
                    raise LogError(ErrorCode.topic_deletion_disabled, f"internal topic {name} cannot be deleted")
                topic_id = t.topic_id if t is not None else None
                if t is not None and not quota.record(t.partitions):
                    raise _throttled()
                ctx.logs.delete_topic(name)
                on_delete = ctx.services.get("on_topic_deleted")
                if callable(on_delete):
                    on_delete(name)
            except LogError as e:
                code, message = e.error_code, _message(e)
                ctx.count_error(ApiKey.DELETE_TOPICS)
        results.append(
            build(
                resp.DeletableTopicResult, name=name, topic_id=topic_id or tid, error_code=code, error_message=message
            )
        )
    return resp.make(throttle_time=_throttle_time(quota), responses=tuple(results))


async def handle_create_partitions(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.CREATE_PARTITIONS, header.api_version)
    validate_only = bool(getattr(request, "validate_only", False))
    results: list[object] = []
    any_topic = allowed(ctx, Op.ALTER, Res.CLUSTER, CLUSTER_NAME, log_denied=False)
    quota = _mutation_quota(ctx, header, strict_since=3)
    for t in request.topics:
        code = ErrorCode.none
        message = None
        try:
            if not (any_topic or allowed(ctx, Op.ALTER, Res.TOPIC, t.name)):
                raise LogError(ErrorCode.topic_authorization_failed, "Authorization failed.")
            err = _replication_error(ctx, 1, t.assignments or ())
            if err is not None:
                raise err
            topic = ctx.logs.get(t.name)
            if topic is None:
                raise LogError(ErrorCode.unknown_topic_or_partition, f"topic {t.name!r} does not exist")
            if t.count <= topic.partitions:
                raise LogError(
                    ErrorCode.invalid_partitions,
                    f"Topic currently has {topic.partitions} partitions, which is higher than or equal to the "
                    f"requested {t.count}.",
                )
            if not quota.record(int(t.count) - topic.partitions):
                raise _throttled()
            if not validate_only:
                ctx.logs.add_partitions(t.name, int(t.count))
        except LogError as e:
            code, message = e.error_code, _message(e)
            ctx.count_error(ApiKey.CREATE_PARTITIONS)
        results.append(build(resp.CreatePartitionsTopicResult, name=t.name, error_code=code, error_message=message))
    return resp.make(throttle_time=_throttle_time(quota), results=tuple(results))


def _mutation_quota(ctx: BrokerContext, header: RequestHeader, *, strict_since: int) -> MutationQuota:
    """The request's controller_mutation_rate quota: strict from ``strict_since`` on, permissive before (KIP-599)."""
    assert ctx.quotas is not None
    return ctx.quotas.mutation_quota(quota_user(current_principal.get()), header.client_id or "",
                                     strict=header.api_version >= strict_since)


def _throttled() -> LogError:
    return LogError(ErrorCode.throttling_quota_exceeded, "The throttling quota has been exceeded.")


def _message(e: LogError) -> str | None:
    # Kafka's ApiError leaves out a message that only repeats its error's generic one, as THROTTLING_QUOTA_EXCEEDED's
    return None if e.error_code == ErrorCode.throttling_quota_exceeded else str(e)


def _throttle_time(quota: MutationQuota) -> datetime.timedelta:
    """What the response carries; the connection is muted as long (Kafka's
    sendResponseMaybeThrottleWithControllerQuota)."""
    if quota.throttle_ms <= 0:
        return NO_THROTTLE
    current_throttle_ms.set(max(current_throttle_ms.get(), quota.throttle_ms))
    return datetime.timedelta(milliseconds=quota.throttle_ms)


def broker_configs(ctx: BrokerContext) -> dict[str, tuple[str, int, str]]:
    """Broker-level configs: ``name -> (value, source, type)``."""
    c = ctx.config
    out: dict[str, tuple[str, int, str]] = {}
    for d in TOPIC_CONFIGS.values():
        first = _dynamic(ctx).layers(d.broker_name, d.default)[0]
        assert first.value is not None
        out[d.broker_name] = (first.value, first.source, d.kind)
    listeners = ctx.listeners
    static = {
        "broker.id": (str(c.node_id), "int"),
        "node.id": (str(c.node_id), "int"),
        "auto.create.topics.enable": (str(c.auto_create_topics).lower(), "boolean"),
        "num.partitions": (str(c.num_partitions), "int"),
        "default.replication.factor": ("1", "int"),
        "socket.request.max.bytes": (str(c.frame_bytes_max), "int"),
        "queued.max.request.bytes": (str(c.queued_request_bytes_limit), "long"),
        "max.connections": (str(c.connections_max), "int"),
        "max.connections.per.ip": (str(c.connections_per_ip_max), "int"),
        "max.connections.per.ip.overrides": (
            ",".join(f"{ip}:{n}" for ip, n in c.connections_per_ip_overrides.items()),
            "string",
        ),
        "max.connection.creation.rate": (str(c.connection_creation_rate_max), "int"),
        "socket.listen.backlog.size": (str(c.listen_backlog_size), "int"),
        "connections.max.idle.ms": (str(c.connection_idle_ms_max), "long"),
        "loosely.request.receive.timeout.ms": (str(c.request_receive_ms_max), "long"),
        "fetch.max.bytes": (str(c.fetch_bytes_max), "int"),
        "offsets.topic.num.partitions": (str(c.offsets_topic_partitions), "int"),
        "offsets.retention.minutes": (str(c.offsets_retention_ms // 60_000), "int"),
        "group.initial.rebalance.delay.ms": (str(c.group_initial_rebalance_delay_ms), "int"),
        "group.min.session.timeout.ms": (str(c.group_session_timeout_ms_min), "int"),
        "group.max.session.timeout.ms": (str(c.group_session_timeout_ms_max), "int"),
        "group.consumer.session.timeout.ms": (str(c.group_consumer_session_timeout_ms), "int"),
        "group.consumer.heartbeat.interval.ms": (str(c.group_consumer_heartbeat_interval_ms), "int"),
        "group.consumer.min.session.timeout.ms": (str(c.group_consumer_session_timeout_ms_min), "int"),
        "group.consumer.max.session.timeout.ms": (str(c.group_consumer_session_timeout_ms_max), "int"),
        "group.consumer.min.heartbeat.interval.ms": (str(c.group_consumer_heartbeat_interval_ms_min), "int"),
        "group.consumer.max.heartbeat.interval.ms": (str(c.group_consumer_heartbeat_interval_ms_max), "int"),
        "group.share.heartbeat.interval.ms": (str(c.group_share_heartbeat_interval_ms), "int"),
        "group.share.session.timeout.ms": (str(c.group_share_session_timeout_ms), "int"),
        "group.share.record.lock.duration.ms": (str(c.group_share_record_lock_duration_ms), "int"),
        "group.share.min.record.lock.duration.ms": (str(c.group_share_record_lock_duration_ms_min), "int"),
        "group.share.max.record.lock.duration.ms": (str(c.group_share_record_lock_duration_ms_max), "int"),
        "group.share.delivery.count.limit": (str(c.group_share_delivery_count_limit), "int"),
        "group.share.min.delivery.count.limit": (str(c.group_share_delivery_count_limit_min), "int"),
        "group.share.max.delivery.count.limit": (str(c.group_share_delivery_count_limit_max), "int"),
        "group.share.partition.max.record.locks": (str(c.group_share_partition_max_record_locks), "int"),
        "group.share.min.partition.max.record.locks": (str(c.group_share_partition_max_record_locks_min), "int"),
        "group.share.max.partition.max.record.locks": (str(c.group_share_partition_max_record_locks_max), "int"),
        "transaction.max.timeout.ms": (str(c.transaction_timeout_ms_max), "int"),
        "telemetry.max.bytes": (str(c.telemetry_bytes_max), "int"),
        "log.dirs": (ctx.logs.data_dir, "string"),
        "listeners": (",".join(f"{b.name}://{_hostport(b.bound_host, b.bound_port)}" for b in listeners), "string"),
        "advertised.listeners": (",".join(f"{b.name}://{_hostport(b.host, b.port)}" for b in listeners), "string"),
        "listener.security.protocol.map": (",".join(f"{b.name}:{b.security_protocol}" for b in listeners), "string"),
        "log.cleaner.enable": (str(c.log_cleaner_enable).lower(), "boolean"),
        "log.retention.check.interval.ms": (str(c.retention_check_interval_ms), "long"),
    }
    for name, (value, kind) in static.items():
        out[name] = (value, _static_source(c, name), kind)
    return out


# Always in a Kafka broker's server.properties (and given to every loosely broker), so STATIC_BROKER_CONFIG.
_ALWAYS_GIVEN = frozenset({"broker.id", "node.id", "log.dirs", "listeners", "advertised.listeners",
                           "listener.security.protocol.map"})
_FIELD_DEFAULTS: dict[str, object] = {f.name: f.default for f in fields(BrokerConfig) if f.default is not MISSING}


def _static_source(config: BrokerConfig, name: str) -> int:
    """STATIC_BROKER_CONFIG (4) for a setting given at start, DEFAULT_CONFIG (5) for one left at its default, as
    Kafka tells them apart (a setting given with its default value counts as left)."""
    if name in _ALWAYS_GIVEN or name not in BROKER_SETTINGS:
        return SOURCE_STATIC_BROKER
    attr = BROKER_SETTINGS[name][0]
    if attr in _FIELD_DEFAULTS and getattr(config, attr) == _FIELD_DEFAULTS[attr]:
        return SOURCE_DEFAULT
    return SOURCE_STATIC_BROKER


async def handle_describe_configs(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DESCRIBE_CONFIGS, header.api_version)
    synonyms_wanted = bool(getattr(request, "include_synonyms", False))
    docs_wanted = bool(getattr(request, "include_documentation", False))
    results: list[object] = []
    for r in request.resources:
        keys = set(r.configuration_keys) if r.configuration_keys is not None else None
        entries: list[object] = []
        code = ErrorCode.none
        message: str | None = ""  # Kafka 4.1 answers "" when the resource is found, and for an unknown topic too
        denied = _config_denied(ctx, r, Op.DESCRIBE_CONFIGS)
        if denied is not None:
            code, message = denied.error_code, str(denied)
        elif r.resource_type == TOPIC:
            t = ctx.logs.get(r.resource_name)
            if t is None:
                code = ErrorCode.unknown_topic_or_partition
            else:
                for name, d in sorted(TOPIC_CONFIGS.items()):
                    if keys is not None and name not in keys:
                        continue
                    value, source = _topic_value(ctx, t.overrides, name)
                    syn: list[object] = []
                    if synonyms_wanted:
                        syn = [
                            build(
                                resp.DescribeConfigsSynonym,
                                name=name if layer.source == SOURCE_TOPIC else d.broker_name,
                                value=layer.value,
                                source=layer.source,
                            )
                            for layer in _topic_layers(ctx, t.overrides, name)
                        ]
                    entries.append(
                        _entry(resp, name, Layer(value, source), read_only=False, sensitive=d.sensitive,
                               synonyms=syn, kind=d.kind, doc=d.doc if docs_wanted else None)
                    )
        elif r.resource_type in (BROKER, BROKER_LOGGER):
            if r.resource_name not in ("", str(ctx.node_id)):
                code, message = ErrorCode.invalid_request, f"unknown broker {r.resource_name!r}"
            elif r.resource_type == BROKER:
                entries = _broker_entries(ctx, resp, r.resource_name, keys, synonyms_wanted)
        elif r.resource_type == GROUP:
            entries = _group_entries(ctx, resp, r.resource_name, keys, synonyms_wanted)
        elif r.resource_type == CLIENT_METRICS:
            if not r.resource_name:
                code, message = ErrorCode.invalid_request, "Client metrics subscription name must not be empty"
            else:
                entries = _client_metrics_entries(ctx, resp, r.resource_name, keys,
                                                  synonyms_wanted=synonyms_wanted, docs_wanted=docs_wanted)
        else:
            code, message = ErrorCode.invalid_request, f"unsupported resource type {r.resource_type}"
        results.append(
            build(
                resp.DescribeConfigsResult,
                error_code=code,
                error_message=message,
                resource_type=r.resource_type,
                resource_name=r.resource_name,
                configs=tuple(entries),
            )
        )
    return resp.make(throttle_time=NO_THROTTLE, results=tuple(results))


def _broker_entries(
    ctx: BrokerContext, resp: Response, resource_name: str, keys: set[str] | None, synonyms_wanted: bool
) -> list[object]:
    """The BROKER resource as Kafka describes it: the cluster-wide default (``""``) lists only its dynamic values;
    this node lists everything, each with the source it comes from."""
    dyn = _dynamic(ctx)
    kinds = {d.broker_name: d.kind for d in TOPIC_CONFIGS.values()}
    if resource_name == "":
        layered = {n: [Layer(dyn.shown(n, v), SOURCE_DYNAMIC_DEFAULT)] for n, v in dyn.default.items()}
    else:
        layered = {
            name: [Layer(value, source)] for name, (value, source, _) in broker_configs(ctx).items()
        }
        for d in TOPIC_CONFIGS.values():
            layered[d.broker_name] = dyn.layers(d.broker_name, d.default)
        for name in CONNECTION_NAMES:  # the dynamic layers over the server's own setting
            layered[name] = [*dyn.layers(name, None), *layered[name]]
        for name in set(dyn.default) | set(dyn.per_broker):
            if name not in layered:  # a name Kafka does not know either: stored, no value shown
                layered[name] = dyn.layers(name, None)
    out: list[object] = []
    for name, layers in sorted(layered.items()):
        if keys is not None and name not in keys:
            continue
        syn = [build(resp.DescribeConfigsSynonym, name=name, value=x.value, source=x.source) for x in layers]
        out.append(_entry(resp, name, layers[0], read_only=name not in DYNAMIC_NAMES and name not in CONNECTION_NAMES,
                          synonyms=syn if synonyms_wanted else (), kind=kinds.get(name, "")))
    return out


def _entry(resp: Response, name: str, shown: Layer, *, read_only: bool, synonyms: Iterable[object], kind: str,
           sensitive: bool = False, doc: str | None = None) -> object:
    """One DescribeConfigs entry: the value in effect and where it comes from."""
    return build(
        resp.DescribeConfigsResourceResult,
        name=name,
        value=shown.value,
        read_only=read_only,
        config_source=shown.source,
        is_default=shown.source == SOURCE_DEFAULT,
        is_sensitive=sensitive,
        synonyms=tuple(synonyms),
        config_type=_TYPE_CODES.get(kind, 0),
        documentation=doc,
    )


def _null_values(resource: Request, incremental: bool) -> LogError | None:
    """Kafka's ConfigAdminManager: only an incremental DELETE may come without a value."""
    nulls = [str(c.name) for c in resource.configs
             if c.value is None and not (incremental and int(c.config_operation) == DELETE)]
    if nulls:
        return LogError(ErrorCode.invalid_request, f"Null value not supported for : {', '.join(nulls)}")
    return None


def _groups(ctx: BrokerContext) -> GroupConfigs:
    if ctx.group_configs is None:  # a context the broker did not start (unit tests): the data directory's own
        ctx.group_configs = GroupConfigs(ctx.logs.fs, ctx.logs.data_dir)
    return ctx.group_configs


def _group_entries(
    ctx: BrokerContext, resp: Response, group_id: str, keys: set[str] | None, synonyms_wanted: bool
) -> list[object]:
    """A GROUP resource as Kafka describes it: every group config, set (GROUP_CONFIG) or the default."""
    own = _groups(ctx).of(group_id)
    out: list[object] = []
    for name, d in sorted(group_defs(ctx.config).items()):
        if (keys is not None and name not in keys) or (d.hidden and name not in own):
            continue
        value, source = (own[name], SOURCE_GROUP) if name in own else (d.default, SOURCE_DEFAULT)
        # as Kafka 4.4: the group's own value, then the default it replaces (the broker setting's name)
        syn = tuple(build(resp.DescribeConfigsSynonym, name=n, value=v, source=src) for n, v, src in (
            ([(name, value, SOURCE_GROUP)] if name in own else []) + [(d.default_synonym, d.default, SOURCE_DEFAULT)])
        ) if synonyms_wanted else ()
        out.append(_entry(resp, name, Layer(value, source), read_only=False, synonyms=syn, kind=d.kind))
    return out


def _client_metrics_entries(ctx: BrokerContext, resp: Response, name: str, keys: set[str] | None, *,
                            synonyms_wanted: bool, docs_wanted: bool) -> list[object]:
    """A CLIENT_METRICS subscription as Kafka describes it: each config set (CLIENT_METRICS_CONFIG, with itself as
    its synonym) or its default (no synonyms); a subscription that does not exist is all defaults."""
    own = client_telemetry(ctx).subscriptions.of(name)
    out: list[object] = []
    for config, d in sorted(CLIENT_METRICS_DEFS.items()):
        if keys is not None and config not in keys:
            continue
        shown = Layer(own[config], SOURCE_CLIENT_METRICS) if config in own else Layer(d.default, SOURCE_DEFAULT)
        syn = (build(resp.DescribeConfigsSynonym, name=config, value=shown.value, source=shown.source),) \
            if synonyms_wanted and config in own else ()
        out.append(_entry(resp, config, shown, read_only=False, synonyms=syn, kind=d.kind,
                          doc=d.doc if docs_wanted else None))
    return out


def _alter_client_metrics(ctx: BrokerContext, resource: Request, incremental: bool,
                          validate_only: bool) -> LogError | None:
    """A subscription's configs, checked as Kafka's ConfigAdminManager and ClientMetricsConfigs check them."""
    name = str(resource.resource_name)
    subscriptions = client_telemetry(ctx).subscriptions

    new = _duplicate_keys(resource) or _edited(subscriptions.of(name), resource, incremental, _not_a_broker_list)
    if isinstance(new, LogError):
        return new
    try:
        check_subscription(name, new)
    except ClientMetricsError as e:
        return LogError(e.error_code, str(e))
    if not validate_only:
        subscriptions.replace(name, new)
    return None


def _not_a_broker_list(config: str, op: int) -> LogError:
    """Kafka's answer to APPEND or SUBTRACT on a client-metrics or group config: it looks the type up among the
    broker's configs, so every one of them is refused, group lists included (Kafka 4.1.1 and 4.4.0)."""
    verb = "APPEND" if op == APPEND else "SUBTRACT"
    return LogError(ErrorCode.invalid_config, f"Can't {verb} to key {config} because its type is not LIST.")


def _duplicate_keys(resource: Request) -> LogError | None:
    names = [str(c.name) for c in resource.configs]
    if len(set(names)) != len(names):
        return LogError(ErrorCode.invalid_request, "Error due to duplicate config keys")
    return None


def _edited(current: Mapping[str, str], resource: Request, incremental: bool,
            refuse: Callable[[str, int], LogError]) -> dict[str, str] | LogError:
    """A resource without list configs after the request: SET and DELETE applied, APPEND and SUBTRACT refused."""
    if (error := _null_values(resource, incremental)) is not None:
        return error
    if not incremental:
        return {str(c.name): str(c.value) for c in resource.configs}
    new = dict(current)
    for c in resource.configs:
        op = int(c.config_operation)
        if op == SET:
            new[str(c.name)] = str(c.value)
        elif op == DELETE:
            new.pop(str(c.name), None)
        else:
            return refuse(str(c.name), op)
    return new


def _alter_group(ctx: BrokerContext, resource: Request, incremental: bool, validate_only: bool) -> LogError | None:
    """A group's configs, checked as Kafka's GroupConfig.validate checks them."""
    group_id = str(resource.resource_name)
    store = _groups(ctx)
    new = _edited(store.of(group_id), resource, incremental, _not_a_broker_list)
    if isinstance(new, LogError):
        return new
    try:
        check_group_configs(new, ctx.config)
    except GroupConfigError as e:
        return LogError(e.error_code, str(e))
    if not validate_only:
        store.replace(group_id, normalized_group_configs(new, ctx.config))
    return None


SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


def _edit_list(current: str, op: int, values: str | None) -> str:
    """APPEND or SUBTRACT on a list config's comma-separated value."""
    items = [x for x in current.split(",") if x]
    for v in (values or "").split(","):
        if op == APPEND and v and v not in items:
            items.append(v)
        if op == SUBTRACT and v in items:
            items.remove(v)
    return ",".join(items)


def _alter_broker(ctx: BrokerContext, resource: Request, incremental: bool, validate_only: bool) -> LogError | None:
    """A dynamic broker config change, checked as Kafka's ConfigAdminManager and DynamicBrokerConfig check it."""
    name = str(resource.resource_name)
    dyn = _dynamic(ctx)
    try:
        if name != "":
            check_resource_name(name, ctx.node_id)
        if (error := _duplicate_keys(resource) or _null_values(resource, incremental)) is not None:
            return error
        if incremental:
            new = dict(dyn.resource(name))
            for c in resource.configs:
                op = int(c.config_operation)
                if op == SET:
                    new[c.name] = c.value
                elif op == DELETE:
                    new.pop(c.name, None)
                elif op in (APPEND, SUBTRACT):
                    d = next((d for d in TOPIC_CONFIGS.values() if d.broker_name == c.name), None)
                    if d is None or d.kind != "list":
                        return LogError(
                            ErrorCode.invalid_config, f"Config value append is not allowed for config key: {c.name}"
                        )
                    new[c.name] = _edit_list(new.get(c.name, d.default), op, c.value)
                else:
                    return LogError(ErrorCode.invalid_request, f"Unknown operations type {op}")
        else:
            new = {str(c.name): str(c.value) for c in resource.configs}
        check_change(new, per_broker=name != "")
        limits = _connection_limits(ctx, dyn, name, new)
    except BrokerConfigError as e:
        return LogError(e.error_code, str(e))
    if not validate_only:
        dyn.replace(name, new)
        ctx.logs.set_broker_defaults(dyn.log_defaults())
        apply = ctx.services.get("apply_connection_limits")
        if callable(apply):  # the server's (a context the broker did not start has none)
            apply(limits)
        apply = ctx.services.get("apply_runtime_settings")
        if callable(apply):
            apply(dyn.runtime_settings())
    return None


def connection_limits(ctx: BrokerContext, dynamic: Mapping[str, str]) -> ConnectionLimits:
    """The connection limits in effect: ``dynamic`` (the merged dynamic layers) over the broker's static settings."""
    c = ctx.config
    overrides = dynamic.get("max.connections.per.ip.overrides")
    return ConnectionLimits(
        total_max=int(dynamic.get("max.connections", c.connections_max)),
        per_ip_max=int(dynamic.get("max.connections.per.ip", c.connections_per_ip_max)),
        per_ip_overrides=parse_ip_overrides(overrides) if overrides is not None else c.connections_per_ip_overrides,
        creation_rate_max=int(dynamic.get("max.connection.creation.rate", c.connection_creation_rate_max)),
    )


def _connection_limits(ctx: BrokerContext, dyn: DynamicBrokerConfigs, name: str, new: Mapping[str, str]
                       ) -> ConnectionLimits:
    """The limits once ``new`` replaces resource ``name``'s layer, checked as Kafka's KafkaConfig checks them."""
    limits = connection_limits(ctx, dyn.connection_limits(name, new))
    if limits.per_ip_max == 0 and not limits.per_ip_overrides:
        raise BrokerConfigError(
            ErrorCode.invalid_request,
            "requirement failed: max.connections.per.ip can be set to zero only if max.connections.per.ip.overrides "
            "property is set.",
        )
    return limits


def _alter(ctx: BrokerContext, resource: Request, incremental: bool, validate_only: bool) -> LogError | None:
    rtype = int(resource.resource_type)
    name = str(resource.resource_name)
    if rtype == BROKER:
        return _alter_broker(ctx, resource, incremental, validate_only)
    if rtype == GROUP:
        return _alter_group(ctx, resource, incremental, validate_only)
    if rtype == CLIENT_METRICS:
        return _alter_client_metrics(ctx, resource, incremental, validate_only)
    if rtype != TOPIC:
        return LogError(ErrorCode.invalid_request, "only topic and broker configs can be altered on this broker")
    t = ctx.logs.get(name)
    if t is None:
        return LogError(ErrorCode.unknown_topic_or_partition, f"topic {name!r} does not exist")
    if incremental:
        new = dict(t.overrides)
        for c in resource.configs:
            op = int(c.config_operation)
            if op == SET:
                if c.value is None:
                    return LogError(ErrorCode.invalid_config, f"{c.name}: SET needs a value")
                new[c.name] = c.value
            elif op == DELETE:
                new.pop(c.name, None)
            elif op in (APPEND, SUBTRACT):
                d = TOPIC_CONFIGS.get(c.name)
                if d is None or d.kind != "list":
                    return LogError(ErrorCode.invalid_config, f"{c.name}: APPEND/SUBTRACT need a list config")
                new[c.name] = _edit_list(_topic_value(ctx, new, c.name)[0], op, c.value)
            else:
                return LogError(ErrorCode.invalid_request, f"unknown config operation {op}")
    else:
        new = {c.name: c.value for c in resource.configs if c.value is not None}
    try:
        validate_overrides(new)
    except InvalidConfigError as e:
        return LogError(ErrorCode.invalid_config, str(e))
    if not validate_only:
        ctx.logs.set_overrides(name, new)
    return None


def _config_denied(ctx: BrokerContext, r: Request, op: AclOperation) -> LogError | None:
    """Kafka's rule for configs: the operation on the topic, or on the cluster for broker and logger configs."""
    if r.resource_type == TOPIC:
        if not allowed(ctx, op, Res.TOPIC, r.resource_name):
            return LogError(ErrorCode.topic_authorization_failed, "Topic authorization failed.")
    elif r.resource_type in (BROKER, BROKER_LOGGER, CLIENT_METRICS) and not allowed(ctx, op, Res.CLUSTER, CLUSTER_NAME):
        return LogError(ErrorCode.cluster_authorization_failed, "Cluster authorization failed.")
    elif r.resource_type == GROUP and not allowed(ctx, op, Res.GROUP, r.resource_name):
        return LogError(ErrorCode.group_authorization_failed, "Group authorization failed.")
    return None


async def _handle_alter(ctx: BrokerContext, header: RequestHeader, request: Request, incremental: bool) -> object:
    key = ApiKey.INCREMENTAL_ALTER_CONFIGS if incremental else ApiKey.ALTER_CONFIGS
    resp = Response.of(key, header.api_version)
    validate_only = bool(getattr(request, "validate_only", False))
    out: list[object] = []
    for r in request.resources:
        error = _config_denied(ctx, r, Op.ALTER_CONFIGS) or _alter(ctx, r, incremental, validate_only)
        if error is not None:
            ctx.count_error(key)
        out.append(
            build(
                resp.AlterConfigsResourceResponse,
                error_code=error.error_code if error else ErrorCode.none,
                error_message=_message(error) if error else None,
                resource_type=r.resource_type,
                resource_name=r.resource_name,
            )
        )
    return resp.make(throttle_time=NO_THROTTLE, responses=tuple(out))


async def handle_alter_configs(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    return await _handle_alter(ctx, header, request, incremental=False)


async def handle_incremental_alter_configs(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    return await _handle_alter(ctx, header, request, incremental=True)


_LISTABLE_TYPES = (BROKER_LOGGER, BROKER, TOPIC, CLIENT_METRICS, GROUP)


async def handle_list_config_resources(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.LIST_CONFIG_RESOURCES, header.api_version)
    asked = set(getattr(request, "resource_types", (CLIENT_METRICS,))) or set(_LISTABLE_TYPES)
    if not asked <= set(_LISTABLE_TYPES):
        ctx.count_error(ApiKey.LIST_CONFIG_RESOURCES)
        return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.unsupported_version, config_resources=())
    found: list[tuple[str, int]] = []
    for rtype in _LISTABLE_TYPES:
        if rtype not in asked:
            continue
        if rtype in (BROKER, BROKER_LOGGER):
            found.append((str(ctx.node_id), rtype))
        elif rtype == TOPIC:
            found.extend((t.name, TOPIC) for t in ctx.logs)
        elif rtype == GROUP:
            found.extend((g, GROUP) for g in sorted(_groups(ctx).groups))
        elif rtype == CLIENT_METRICS:
            found.extend((n, CLIENT_METRICS) for n in sorted(client_telemetry(ctx).subscriptions.entries))
    return resp.make(
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        config_resources=tuple(build(resp.ConfigResource, resource_name=n, resource_type=t) for n, t in found),
    )


HANDLERS = {
    ApiKey.LIST_CONFIG_RESOURCES: handle_list_config_resources,
    ApiKey.CREATE_TOPICS: handle_create_topics,
    ApiKey.DELETE_TOPICS: handle_delete_topics,
    ApiKey.CREATE_PARTITIONS: handle_create_partitions,
    ApiKey.DESCRIBE_CONFIGS: handle_describe_configs,
    ApiKey.ALTER_CONFIGS: handle_alter_configs,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: handle_incremental_alter_configs,
}


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
