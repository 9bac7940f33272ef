"""DescribeClientQuotas: loosely enforces no client quotas, so every filter matches nothing.

Kafka's ``kafka-configs --entity-type users --describe`` asks for a user's quotas beside its SCRAM credentials and
fails outright against a broker without this API; an empty answer is the truth here (docs/broker.md).
"""

from __future__ import annotations

from loosely.broker.context import BrokerContext, Request
from loosely.broker.handlers._util import NO_THROTTLE, Response
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader

__all__ = ["HANDLERS"]


async def handle_describe_client_quotas(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    return Response.of(ApiKey.DESCRIBE_CLIENT_QUOTAS, header.api_version).make(
        throttle_time=NO_THROTTLE, error_code=ErrorCode.none, error_message=None, entries=()
    )


HANDLERS = {ApiKey.DESCRIBE_CLIENT_QUOTAS: handle_describe_client_quotas}
