"""ApiVersions: the first request on every connection, and the version negotiation it carries (KIP-511).

A client sends its highest ApiVersions version. If this broker does not know that version it answers with a v0
response holding UNSUPPORTED_VERSION *and* the full api list, and the client retries with the highest version we
support. The response header is always v0 (kio's classes encode that special case).
"""

from __future__ import annotations

from loosely.broker.context import BrokerContext, Request
from loosely.broker.handlers._util import NO_THROTTLE, Response, build
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader, encode_response

__all__ = ["HANDLERS", "unsupported_version_response"]


def _api_list(resp: Response, advertised: dict[int, tuple[int, int]]) -> tuple[object, ...]:
    api = resp.ApiVersion
    return tuple(build(api, api_key=k, min_version=lo, max_version=hi) for k, (lo, hi) in sorted(advertised.items()))


async def handle_api_versions(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.API_VERSIONS, header.api_version)
    return resp.make(
        error_code=ErrorCode.none,
        api_keys=_api_list(resp, advertised(ctx)),
        throttle_time=NO_THROTTLE,
    )


def advertised(ctx: BrokerContext) -> dict[int, tuple[int, int]]:
    table = ctx.services.get("advertised_versions")
    assert isinstance(table, dict)
    return table


def unsupported_version_response(ctx: BrokerContext, correlation_id: int) -> bytes:
    resp = Response.of(ApiKey.API_VERSIONS, 0)
    body = resp.make(error_code=ErrorCode.unsupported_version, api_keys=_api_list(resp, advertised(ctx)))
    return encode_response(ApiKey.API_VERSIONS, 0, correlation_id, body)


HANDLERS = {ApiKey.API_VERSIONS: handle_api_versions}
