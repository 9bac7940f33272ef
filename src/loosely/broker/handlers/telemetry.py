"""GetTelemetrySubscriptions and PushTelemetry (KIP-714): client metrics pushed to the broker.

The state and the checks are :class:`loosely.broker.client_metrics.ClientTelemetry`'s; these handlers only say who
the client is (its client id, the software it named in ApiVersions, its address and port) and shape the answers.
Both APIs are answered whether or not they are advertised, as Kafka answers them without a ClientTelemetry
reporter (it only leaves them out of ApiVersions); loosely advertises them when its telemetry export is on
(``loosely.client.telemetry.enable``, by default with the Prometheus endpoint). Kafka checks no ACL on either.
"""

from __future__ import annotations

import datetime
from typing import Final

from loosely.broker.client_metrics import ACCEPTED_COMPRESSION, ClientInfo, ClientTelemetry, Subscriptions
from loosely.broker.context import BrokerContext, Request, current_client_software, current_peer
from loosely.broker.handlers._util import NO_THROTTLE, Response
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader

__all__ = ["HANDLERS", "TELEMETRY_APIS", "client_telemetry"]

TELEMETRY_APIS: Final = (ApiKey.GET_TELEMETRY_SUBSCRIPTIONS, ApiKey.PUSH_TELEMETRY)


def client_telemetry(ctx: BrokerContext) -> ClientTelemetry:
    if ctx.client_telemetry is None:  # a context the broker did not start (unit tests): the data directory's own
        ctx.client_telemetry = ClientTelemetry(
            Subscriptions(ctx.logs.fs, ctx.logs.data_dir), ctx.clock.monotonic_ms,
            telemetry_bytes_max=ctx.config.telemetry_bytes_max, export=ctx.config.client_telemetry_exported)
    return ctx.client_telemetry


def _client(header: RequestHeader) -> ClientInfo:
    software = current_client_software.get()
    host, sep, port = current_peer.get().rpartition(":")
    return ClientInfo(
        client_id=header.client_id or "",
        software_name=None if software is None else software.name,
        software_version=None if software is None else software.version,
        source_address=host if sep else None,
        source_port=int(port) if sep and port.isdigit() else None,
    )


async def handle_get_telemetry_subscriptions(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.GET_TELEMETRY_SUBSCRIPTIONS, header.api_version)
    answer = client_telemetry(ctx).get_subscriptions(request.client_instance_id, _client(header))
    if answer.error_code != ErrorCode.none:
        ctx.count_error(ApiKey.GET_TELEMETRY_SUBSCRIPTIONS)
        return resp.make(throttle_time=NO_THROTTLE, error_code=answer.error_code, client_instance_id=answer.instance_id,
                         subscription_id=0, accepted_compression_types=(), push_interval=NO_THROTTLE,
                         telemetry_max_bytes=0, delta_temporality=False, requested_metrics=())
    return resp.make(
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        client_instance_id=answer.instance_id,
        subscription_id=answer.subscription_id,
        accepted_compression_types=tuple(int(c) for c in ACCEPTED_COMPRESSION),
        push_interval=datetime.timedelta(milliseconds=answer.interval_ms),
        telemetry_max_bytes=client_telemetry(ctx).telemetry_bytes_max,
        delta_temporality=True,  # as Kafka asks; monotonic sums are added up again for Prometheus
        requested_metrics=answer.metrics,
    )


async def handle_push_telemetry(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.PUSH_TELEMETRY, header.api_version)
    code, _ = client_telemetry(ctx).push(
        request.client_instance_id, _client(header), subscription_id=int(request.subscription_id),
        terminating=bool(request.terminating), compression_type=int(request.compression_type),
        payload=bytes(request.metrics or b""))
    if code != ErrorCode.none:
        ctx.count_error(ApiKey.PUSH_TELEMETRY)
    return resp.make(throttle_time=NO_THROTTLE, error_code=code)


HANDLERS = {
    ApiKey.GET_TELEMETRY_SUBSCRIPTIONS: handle_get_telemetry_subscriptions,
    ApiKey.PUSH_TELEMETRY: handle_push_telemetry,
}
