"""DescribeClientQuotas and AlterClientQuotas: the quotas ``kafka-configs --entity-type users|clients|ips`` reads
and writes, kept by :mod:`loosely.broker.quotas`, which also throttles Produce and Fetch to them.

Both need the CLUSTER resource: DESCRIBE_CONFIGS to describe, ALTER_CONFIGS to alter (Kafka's KafkaApis). A
filter Kafka refuses answers INVALID_REQUEST for the whole describe; an alteration is answered per entry, and the
valid entries are applied together (durably, before the answer). An IP entity must name an address or a host name
that resolves, as in Kafka.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Final

from loosely.broker.acls import allowed
from loosely.broker.context import BrokerContext, Request
from loosely.broker.handlers._util import NO_THROTTLE, Response, build
from loosely.broker.quotas import Entity, QuotaError, check_entity, host_names, ip_entity_name
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader
from loosely.security.authorizer import CLUSTER_NAME, AclOperation, ResourceType

__all__ = ["HANDLERS", "resolve_hosts"]

RESOLVE_S_MAX: Final = 5.0  # a host name named as an IP entity must resolve within this (a DNS stall is an error)


async def handle_describe_client_quotas(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DESCRIBE_CLIENT_QUOTAS, header.api_version)
    if not allowed(ctx, AclOperation.DESCRIBE_CONFIGS, ResourceType.CLUSTER, CLUSTER_NAME):
        return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.cluster_authorization_failed,
                         error_message=None, entries=None)
    assert ctx.quotas is not None
    try:
        found = ctx.quotas.describe(((c.entity_type, int(c.match_type), c.match) for c in request.components),
                                    bool(request.strict))
    except QuotaError as e:
        return resp.make(throttle_time=NO_THROTTLE, error_code=e.code, error_message=str(e), entries=None)
    entries = tuple(
        build(resp.EntryData,
              entity=tuple(build(resp.EntityData, entity_type=t, entity_name=n) for t, n in entity),
              values=tuple(build(resp.ValueData, key=k, value=v) for k, v in sorted(values.items())))
        for entity, values in found
    )
    # Kafka leaves the message at its schema default, "", on success
    return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, error_message="", entries=entries)


async def handle_alter_client_quotas(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.ALTER_CLIENT_QUOTAS, header.api_version)
    ok = allowed(ctx, AclOperation.ALTER_CONFIGS, ResourceType.CLUSTER, CLUSTER_NAME)
    assert ctx.quotas is not None
    results: list[QuotaError | None] = []
    valid: list[tuple[int, tuple[tuple[str, str | None], ...], list[tuple[str, float, bool]]]] = []
    for i, entry in enumerate(request.entries):
        if not ok:
            results.append(QuotaError(ErrorCode.cluster_authorization_failed, "Cluster authorization failed."))
            continue
        try:
            entity = check_entity((e.entity_type, e.entity_name) for e in entry.entity)
        except QuotaError as e:
            results.append(e)
            continue
        results.append(None)
        valid.append((i, entity, [(op.key, float(op.value), bool(op.remove)) for op in entry.ops]))
    addresses = await resolve_hosts(host_names(entity for _, entity, _ in valid)) if valid else {}
    for i, entity, _ in valid:
        if (host := _host_name(entity)) is not None and addresses[host] is None:
            results[i] = QuotaError(ErrorCode.invalid_request, f"{host} is not a valid IP or resolvable host.")
    valid = [v for v in valid if results[v[0]] is None]
    if valid and not request.validate_only:
        ctx.quotas.resolved_hosts.update({h: a for h, a in addresses.items() if a is not None})
    if valid:
        applied = ctx.quotas.alter([(entity, ops) for _, entity, ops in valid],
                                   validate_only=bool(request.validate_only))
        for (i, _, _), outcome in zip(valid, applied, strict=True):
            results[i] = outcome
    entries = tuple(
        build(resp.EntryData,
              error_code=ErrorCode.none if outcome is None else outcome.code,
              error_message=None if outcome is None else str(outcome),
              entity=tuple(build(resp.EntityData, entity_type=e.entity_type, entity_name=e.entity_name)
                           for e in entry.entity))
        for entry, outcome in zip(request.entries, results, strict=True)
    )
    return resp.make(throttle_time=NO_THROTTLE, entries=entries)


def _host_name(entity: Entity) -> str | None:
    """The name of an IP entity that is not an address (Kafka takes host names that resolve)."""
    names = host_names([entity])
    return names.pop() if names else None


async def resolve_hosts(names: set[str]) -> dict[str, str | None]:
    """Each host name's first address (Kafka's InetAddress.getByName), None where it does not resolve; all looked
    up at once within ``RESOLVE_S_MAX``, so a request naming many cannot hold its connection for long."""

    async def resolve(name: str) -> str | None:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except (OSError, ValueError):  # ValueError: UnicodeError from IDNA for names that are no host names
            return None
        return ip_entity_name(str(found[0][4][0])) if found else None

    ordered = list(names)
    try:
        async with asyncio.timeout(RESOLVE_S_MAX):
            found = await asyncio.gather(*(resolve(n) for n in ordered))
    except TimeoutError:
        return dict.fromkeys(ordered)
    return dict(zip(ordered, found, strict=True))


HANDLERS = {
    ApiKey.DESCRIBE_CLIENT_QUOTAS: handle_describe_client_quotas,
    ApiKey.ALTER_CLIENT_QUOTAS: handle_alter_client_quotas,
}
