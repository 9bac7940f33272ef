"""DescribeClientQuotas: loosely enforces no client quotas, so every filter matches nothing.

Kafka's ``kafka-configs --entity-type users --describe`` asks for a user's quotas beside its SCRAM credentials and
fails outright against a broker without this API; an empty answer is the truth here (docs/broker.md).
"""

from __future__ import annotations

from loosely.broker.acls import allowed
from loosely.broker.context import BrokerContext, Request
from loosely.broker.handlers._util import NO_THROTTLE, Response
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader
from loosely.security.authorizer import CLUSTER_NAME, AclOperation, ResourceType

__all__ = ["HANDLERS"]


async def handle_describe_client_quotas(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    ok = allowed(ctx, AclOperation.DESCRIBE_CONFIGS, ResourceType.CLUSTER, CLUSTER_NAME)  # as Kafka's KafkaApis
    return Response.of(ApiKey.DESCRIBE_CLIENT_QUOTAS, header.api_version).make(
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none if ok else ErrorCode.cluster_authorization_failed,
        error_message=None,
        entries=() if ok else None,
    )


HANDLERS = {ApiKey.DESCRIBE_CLIENT_QUOTAS: handle_describe_client_quotas}
