"""CreateDelegationToken, RenewDelegationToken, ExpireDelegationToken and DescribeDelegationToken (KIP-48).

The token rules are :class:`loosely.security.tokens.DelegationTokens`'; this module adds the checks Kafka's
KafkaApis and ControllerApis make around them, in their order, with their answers:

1. The connection must be authenticated and not with a token: PLAINTEXT listeners, TLS without a client
   certificate and token-authenticated SASL sessions get DELEGATION_TOKEN_REQUEST_NOT_ALLOWED.
2. Create for another owner (v3's owner fields) needs CREATE_TOKENS on that owner's User resource
   (DELEGATION_TOKEN_AUTHORIZATION_FAILED otherwise); anyone may create tokens for themself.
3. No ``delegation.token.secret.key``: DELEGATION_TOKEN_AUTH_DISABLED.
4. Create: every renewer must be a ``User`` principal (INVALID_PRINCIPAL_TYPE). Renew and expire: owner or renewer
   only (DELEGATION_TOKEN_OWNER_MISMATCH); an unknown HMAC is DELEGATION_TOKEN_NOT_FOUND.
5. Describe lists, of the tokens owned or renewable by the owners asked for (all tokens when the list is null,
   none when it is empty), those the caller owns, requested or may renew, and the others it may DESCRIBE as a
   DelegationToken resource or DESCRIBE_TOKENS as the owner's User resource.

Timestamps in an error answer are Kafka's: -1 for the first two checks (answered by Kafka's request handler), 0
for the others (its controller's defaults).
"""

from __future__ import annotations

import datetime
from typing import Final

from loosely.broker.acls import allowed
from loosely.broker.context import BrokerContext, Request, current_listener, current_principal
from loosely.broker.context import current_token_authenticated as token_authenticated
from loosely.broker.handlers._util import NO_THROTTLE, Response, build
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader
from loosely.security.authorizer import AclOperation, ResourceType
from loosely.security.tokens import DelegationTokens, TokenInfo
from loosely.tls import ANONYMOUS

__all__ = ["HANDLERS"]

_ERROR_TIMESTAMP: Final = -1  # Kafka's DelegationTokenManager.ErrorTimestamp
_USER: Final = "User"
_MS: Final = datetime.timedelta(milliseconds=1)
_DATETIME_MS_MAX: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant a datetime holds


def _at(ms: int) -> datetime.datetime:
    """A wire timestamp (kio's datetime_i64) for milliseconds since the epoch."""
    return datetime.datetime.fromtimestamp(min(ms, _DATETIME_MS_MAX) / 1000, tz=datetime.UTC)


def _millis(period: datetime.timedelta) -> int:
    return period // _MS


def _tokens(ctx: BrokerContext) -> DelegationTokens:
    tokens = ctx.services["tokens"]
    assert isinstance(tokens, DelegationTokens)
    return tokens


def _requests_allowed() -> bool:
    """Kafka's allowTokenRequests: an authenticated connection (SASL, or TLS with a client certificate) that did
    not log in with a token."""
    listener = current_listener.get()
    protocol = listener.security_protocol if listener is not None else "PLAINTEXT"
    if token_authenticated.get() or protocol == "PLAINTEXT":
        return False
    return not (protocol == "SSL" and current_principal.get() == ANONYMOUS)


def _principal(principal_type: str, name: str) -> str:
    return f"{principal_type}:{name}"


async def handle_create(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.CREATE_DELEGATION_TOKEN, header.api_version)
    requester = current_principal.get()
    owner_name = getattr(request, "owner_principal_name", None)
    owner = _principal(request.owner_principal_type or "", owner_name) if owner_name else requester

    def answer(code: ErrorCode, at_ms: int, info: TokenInfo | None = None, mac: bytes = b"") -> object:
        return resp.make(
            error_code=code,
            principal_type=owner.partition(":")[0],
            principal_name=owner.partition(":")[2],
            token_requester_principal_type=requester.partition(":")[0],
            token_requester_principal_name=requester.partition(":")[2],
            issue_timestamp=_at(info.issue_ms if info else at_ms),
            expiry_timestamp=_at(info.expiry_ms if info else at_ms),
            max_timestamp=_at(info.max_ms if info else at_ms),
            token_id=info.token_id if info else "",
            hmac=mac,
            throttle_time=NO_THROTTLE,
        )

    if not _requests_allowed():
        return answer(ErrorCode.delegation_token_request_not_allowed, _ERROR_TIMESTAMP)
    if owner != requester and not allowed(ctx, AclOperation.CREATE_TOKENS, ResourceType.USER, owner):
        return answer(ErrorCode.delegation_token_authorization_failed, _ERROR_TIMESTAMP)
    tokens = _tokens(ctx)
    if not tokens.enabled:
        return answer(ErrorCode.delegation_token_auth_disabled, 0)
    if any(r.principal_type != _USER for r in request.renewers):
        return answer(ErrorCode.invalid_principal_type, 0)
    renewers = tuple(_principal(r.principal_type, r.principal_name) for r in request.renewers)
    try:
        info, mac = tokens.create(owner, requester, renewers, _millis(request.max_lifetime), ctx.clock.now_ms())
    except OSError as e:
        return answer(_disk_error(ctx, tokens, e), 0)
    return answer(ErrorCode.none, 0, info, mac)


def _disk_error(ctx: BrokerContext, tokens: DelegationTokens, e: OSError) -> ErrorCode:
    """The tokens file could not be written: nothing changed; reported once per interval, answered as Kafka
    answers an unexpected failure."""
    ctx.logs.faults.report(tokens.path, "write", e, "; the token change was not made")
    return ErrorCode.unknown_server_error


async def _renew_or_expire(ctx: BrokerContext, header: RequestHeader, request: Request, api_key: int) -> object:
    resp = Response.of(api_key, header.api_version)
    if not _requests_allowed():
        code, expiry = ErrorCode.delegation_token_request_not_allowed, _ERROR_TIMESTAMP
    elif not (tokens := _tokens(ctx)).enabled:
        code, expiry = ErrorCode.delegation_token_auth_disabled, 0
    else:
        change = tokens.renew if api_key == ApiKey.RENEW_DELEGATION_TOKEN else tokens.expire
        period = request.renew_period if api_key == ApiKey.RENEW_DELEGATION_TOKEN else request.expiry_time_period
        try:
            code, expiry = change(request.hmac, current_principal.get(), _millis(period), ctx.clock.now_ms())
        except OSError as e:
            code, expiry = _disk_error(ctx, tokens, e), 0
    return resp.make(error_code=code, expiry_timestamp=_at(expiry), throttle_time=NO_THROTTLE)


async def handle_renew(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    return await _renew_or_expire(ctx, header, request, ApiKey.RENEW_DELEGATION_TOKEN)


async def handle_expire(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    return await _renew_or_expire(ctx, header, request, ApiKey.EXPIRE_DELEGATION_TOKEN)


def _visible(ctx: BrokerContext, info: TokenInfo, owners: list[str] | None, caller: str) -> bool:
    """Kafka's DelegationTokenManager.filterToken."""
    if owners is not None and not any(info.owner_or_renewer(o) for o in owners):
        return False
    if info.owner_or_renewer(caller):
        return True
    return allowed(ctx, AclOperation.DESCRIBE, ResourceType.DELEGATION_TOKEN, info.token_id) or allowed(
        ctx, AclOperation.DESCRIBE_TOKENS, ResourceType.USER, info.owner
    )


async def handle_describe(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DESCRIBE_DELEGATION_TOKEN, header.api_version)
    tokens = _tokens(ctx)
    refused = (
        ErrorCode.delegation_token_request_not_allowed if not _requests_allowed()
        else ErrorCode.delegation_token_auth_disabled if not tokens.enabled
        else None
    )  # fmt: skip
    if refused is not None:
        return resp.make(error_code=refused, tokens=(), throttle_time=NO_THROTTLE)
    owners = None
    if request.owners is not None:
        owners = [_principal(o.principal_type, o.principal_name) for o in request.owners]
    caller = current_principal.get()
    described = []
    if owners != []:
        for info in tokens.tokens():
            if not _visible(ctx, info, owners, caller):
                continue
            described.append(build(
                resp.DescribedDelegationToken,
                principal_type=info.owner.partition(":")[0],
                principal_name=info.owner.partition(":")[2],
                token_requester_principal_type=info.requester.partition(":")[0],
                token_requester_principal_name=info.requester.partition(":")[2],
                issue_timestamp=info.issue_ms,
                expiry_timestamp=info.expiry_ms,
                max_timestamp=info.max_ms,
                token_id=info.token_id,
                hmac=tokens.hmac(info.token_id),
                renewers=tuple(
                    build(resp.DescribedDelegationTokenRenewer, principal_type=r.partition(":")[0],
                          principal_name=r.partition(":")[2])
                    for r in info.renewers
                ),
            ))  # fmt: skip
    return resp.make(error_code=ErrorCode.none, tokens=tuple(described), throttle_time=NO_THROTTLE)


HANDLERS = {
    ApiKey.CREATE_DELEGATION_TOKEN: handle_create,
    ApiKey.RENEW_DELEGATION_TOKEN: handle_renew,
    ApiKey.EXPIRE_DELEGATION_TOKEN: handle_expire,
    ApiKey.DESCRIBE_DELEGATION_TOKEN: handle_describe,
}
