"""CreateAcls, DescribeAcls, DeleteAcls: managing the ACLs, as Kafka's broker answers them.

Without an authorizer (``authorizer.class.name`` unset) all three answer SECURITY_DISABLED, "No Authorizer is
configured.". With one, the caller needs ALTER on the cluster to create or delete and DESCRIBE on the cluster to
list, else CLUSTER_AUTHORIZATION_FAILED for every entry. A binding Kafka would refuse (a MATCH or ANY pattern, an
ANY operation, an empty name, a CLUSTER resource not named ``kafka-cluster``, a principal without ``Type:``) gets
INVALID_REQUEST in its own result while the others are created; an identical existing binding is not duplicated.
A binding holding a filter value (ANY, MATCH) answers UNKNOWN_SERVER_ERROR, as Kafka's (it cannot build one).
An enum code Kafka does not know reads as UNKNOWN and is refused with INVALID_REQUEST; an explicit UNKNOWN (0)
makes Kafka refuse to parse the request and close the connection, and loosely does the same (one log line).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from enum import IntEnum
from typing import TypeVar

from loosely.broker.acls import allowed
from loosely.broker.context import CLOSE_CONNECTION, BrokerContext, Request, current_peer
from loosely.broker.handlers._util import NO_THROTTLE, Response
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader, build
from loosely.security.authorizer import (
    CLUSTER_NAME,
    AclBinding,
    AclBindingFilter,
    AclOperation,
    InvalidAclError,
    PatternType,
    PermissionType,
    ResourceType,
    UnbuildableAclError,
    validate_binding,
    validate_filter,
)

__all__ = ["HANDLERS"]

log = logging.getLogger("loosely.broker")

NO_AUTHORIZER = "No Authorizer is configured."
E = TypeVar("E", bound=IntEnum)


def _code(cls: type[E], value: int) -> E:
    """Kafka's fromCode: an unknown code is UNKNOWN (every one of these enums has it at 0)."""
    try:
        return cls(value)
    except ValueError:
        return cls(0)


_CREATION_CODES = ("resource_type", "resource_pattern_type", "operation", "permission_type")
_FILTER_CODES = ("resource_type_filter", "pattern_type_filter", "operation", "permission_type")


def _explicit_unknown(ctx: BrokerContext, api: str, entries: Iterable[object], fields: tuple[str, ...]) -> bool:
    """Whether an entry sets an enum to 0, UNKNOWN, which Kafka's request parsing refuses (it closes the
    connection), with one log line."""
    for e in entries:
        bad = [f for f in fields if getattr(e, f, None) == 0]
        if bad:
            log.warning("%s from %s with UNKNOWN (0) in %s; closing", api, current_peer.get(), ", ".join(bad))
            return True
    return False


def _filter(r: Request) -> AclBindingFilter:
    return AclBindingFilter(
        resource_type=_code(ResourceType, r.resource_type_filter),
        resource_name=r.resource_name_filter,
        pattern_type=_code(PatternType, getattr(r, "pattern_type_filter", PatternType.LITERAL)),
        principal=r.principal_filter,
        host=r.host_filter,
        operation=_code(AclOperation, r.operation),
        permission=_code(PermissionType, r.permission_type),
    )


async def handle_create_acls(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.CREATE_ACLS, header.api_version)
    creations = tuple(request.creations)
    if _explicit_unknown(ctx, "CreateAcls", creations, _CREATION_CODES):
        return CLOSE_CONNECTION
    outcomes: list[tuple[ErrorCode, str | None]]
    if ctx.acls is None:
        outcomes = [(ErrorCode.security_disabled, NO_AUTHORIZER)] * len(creations)
    elif not allowed(ctx, AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME):
        outcomes = [(ErrorCode.cluster_authorization_failed, None)] * len(creations)
    else:
        outcomes = []
        valid: list[AclBinding] = []
        for c in creations:
            b = AclBinding(
                _code(ResourceType, c.resource_type),
                c.resource_name,
                _code(PatternType, getattr(c, "resource_pattern_type", PatternType.LITERAL)),
                c.principal,
                c.host,
                _code(AclOperation, c.operation),
                _code(PermissionType, c.permission_type),
            )
            try:
                validate_binding(b)
            except UnbuildableAclError:
                outcomes.append((ErrorCode.unknown_server_error, None))
                continue
            except InvalidAclError as e:
                outcomes.append((ErrorCode.invalid_request, str(e)))
                continue
            valid.append(b)
            outcomes.append((ErrorCode.none, ""))
        try:
            ctx.acls.add(valid)
        except OSError as e:
            lost = (ErrorCode.unknown_server_error, f"not stored: {e}")
            outcomes = [lost if code == ErrorCode.none else (code, msg) for code, msg in outcomes]
    results = tuple(build(resp.AclCreationResult, error_code=c, error_message=m) for c, m in outcomes)
    return resp.make(throttle_time=NO_THROTTLE, results=results)


async def handle_describe_acls(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DESCRIBE_ACLS, header.api_version)
    if _explicit_unknown(ctx, "DescribeAcls", (request,), _FILTER_CODES):
        return CLOSE_CONNECTION
    if not allowed(ctx, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME):
        return resp.make(
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.cluster_authorization_failed,
            error_message=None,
            resources=(),
        )
    if ctx.acls is None:
        return resp.make(
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.security_disabled,
            error_message=NO_AUTHORIZER,
            resources=(),
        )
    grouped: dict[tuple[ResourceType, str, PatternType], list[AclBinding]] = {}
    for b in ctx.acls.authorizer.matching(_filter(request)):
        grouped.setdefault((b.resource_type, b.resource_name, b.pattern_type), []).append(b)
    resources = tuple(
        build(
            resp.DescribeAclsResource,
            resource_type=int(rt),
            resource_name=name,
            pattern_type=int(pt),
            acls=tuple(
                build(
                    resp.AclDescription,
                    principal=b.principal,
                    host=b.host,
                    operation=int(b.operation),
                    permission_type=int(b.permission),
                )
                for b in bindings
            ),
        )
        for (rt, name, pt), bindings in grouped.items()
    )
    return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, error_message="", resources=resources)


async def handle_delete_acls(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DELETE_ACLS, header.api_version)

    def failed(code: ErrorCode, message: str | None = None) -> object:
        return build(resp.DeleteAclsFilterResult, error_code=code, error_message=message, matching_acls=())

    if _explicit_unknown(ctx, "DeleteAcls", request.filters, _FILTER_CODES):
        return CLOSE_CONNECTION
    filters = [_filter(f) for f in request.filters]
    if ctx.acls is None:
        results = [failed(ErrorCode.security_disabled, NO_AUTHORIZER) for _ in filters]
    elif not allowed(ctx, AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME):
        results = [failed(ErrorCode.cluster_authorization_failed) for _ in filters]
    else:
        errors: dict[int, str] = {}
        for i, f in enumerate(filters):
            try:
                validate_filter(f)
            except InvalidAclError as e:
                errors[i] = str(e)
        good = [f for i, f in enumerate(filters) if i not in errors]
        try:
            matched = iter(ctx.acls.delete(good))
        except OSError as e:
            return resp.make(
                throttle_time=NO_THROTTLE,
                filter_results=tuple(failed(ErrorCode.unknown_server_error, f"not stored: {e}") for _ in filters),
            )
        results = []
        for i in range(len(filters)):
            if i in errors:
                results.append(failed(ErrorCode.invalid_request, errors[i]))
                continue
            results.append(
                build(
                    resp.DeleteAclsFilterResult,
                    error_code=ErrorCode.none,
                    error_message=None,
                    matching_acls=tuple(
                        build(
                            resp.DeleteAclsMatchingAcl,
                            error_code=ErrorCode.none,
                            error_message=None,
                            resource_type=int(b.resource_type),
                            resource_name=b.resource_name,
                            pattern_type=int(b.pattern_type),
                            principal=b.principal,
                            host=b.host,
                            operation=int(b.operation),
                            permission_type=int(b.permission),
                        )
                        for b in next(matched)
                    ),
                )
            )
    return resp.make(throttle_time=NO_THROTTLE, filter_results=tuple(results))


HANDLERS = {
    ApiKey.CREATE_ACLS: handle_create_acls,
    ApiKey.DESCRIBE_ACLS: handle_describe_acls,
    ApiKey.DELETE_ACLS: handle_delete_acls,
}
