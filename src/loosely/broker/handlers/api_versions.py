"""ApiVersions: the first request on every connection, and the version negotiation it carries (KIP-511).

A client sends its highest ApiVersions version. If this broker does not know that version it answers with a v0
response holding UNSUPPORTED_VERSION *and* the full api list, and the client retries with the highest version we
support. The response header is always v0 (kio's classes encode that special case).

From v3 the answer also carries the cluster's *features* (KIP-584): the levels each feature can run at (supported)
and the level it runs at (finalized), which ``kafka-features describe`` prints and Kafka 4's Java clients read (a
producer uses transactions version 2 only when ``transaction.version`` is finalized at 2 or more). loosely claims
only what it does; a single node cannot change levels, so each feature supports exactly its finalized level:

* ``metadata.version`` 27 (4.1-IV1), the level Apache Kafka 4.1 formats a new cluster with. There is no metadata
  log, so no level names a record format here; the request versions served are Kafka 4.4's, which no client gates
  on this level (Kafka 4.4 finalizes 4.4-IV2, 33: docs/broker.md lists the difference).
* ``group.version`` 1: the consumer group protocol (KIP-848) is always on.
* ``transaction.version`` 2: transactions version 2 (KIP-890 part 2), which Kafka 4.1 finalizes too. Level 1 is
  ``__transaction_state`` written as TransactionLogValue v1; level 2 is EndTxn v5 bumping the epoch of every
  transaction, and Produce v12 / TxnOffsetCommit v5 adding partitions implicitly, which the Java producer then uses
  (see :mod:`loosely.broker.transactions.state`). Clients that do not read features keep the older protocol.
* ``kraft.version`` 0: a static quorum of one voter (see DescribeQuorum in :mod:`.controller`).
* ``share.version`` 2: share groups (KIP-932, :mod:`.share_groups`) with Kafka 4.4's ShareFetch and
  ShareAcknowledge v2 (RENEW acknowledgements), the level Kafka 4.4 finalizes.
* ``streams.version`` 1: streams groups (KIP-1071, :mod:`.streams_groups`), the level Kafka 4.4 finalizes.

``eligible.leader.replicas.version``, which Kafka also lists, is left out: one replica has no eligible leader
replicas to track. A feature at level 0 is not
finalized, and versions before v4 cannot carry a supported range starting at 0, so those are left out of them,
both as Kafka does (KIP-1022). The features never change, so their epoch is constant.

From v5 (KIP-1242) a client may say which cluster and node it means to reach, so that a client whose bootstrap
address now belongs to another cluster or node finds out at once: both given and either one not this node's answers
REBOOTSTRAP_REQUIRED, and only one of them given INVALID_REQUEST. Either answer is bare (no APIs, no features), and
the connection stays open, as Kafka 4.4 answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from loosely.broker.context import BrokerContext, Request, current_client_software
from loosely.broker.handlers._util import NO_THROTTLE, Response, build
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader, encode_response

__all__ = ["FEATURES", "HANDLERS", "Feature", "unsupported_version_response"]


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    level: int  # finalized; also the only supported level


FEATURES: Final = (
    Feature("group.version", 1),
    Feature("kraft.version", 0),
    Feature("metadata.version", 27),
    Feature("share.version", 2),
    Feature("streams.version", 1),
    Feature("transaction.version", 2),
)
FEATURES_EPOCH: Final = 0
_SUPPORTED_FROM_ZERO_SINCE: Final = 4
_TARGET_SINCE: Final = 5  # KIP-1242: the request names the cluster and node it is for
_NO_NODE: Final = -1  # KIP-1022: ApiVersions v4 may carry a supported range starting at 0


def _features(resp: Response) -> dict[str, object]:
    if resp.version < 3:
        return {}
    return {
        "supported_features": tuple(
            build(resp.SupportedFeatureKey, name=f.name, min_version=f.level, max_version=f.level)
            for f in FEATURES
            if f.level > 0 or resp.version >= _SUPPORTED_FROM_ZERO_SINCE
        ),
        "finalized_features_epoch": FEATURES_EPOCH,
        "finalized_features": tuple(
            build(resp.FinalizedFeatureKey, name=f.name, min_version_level=f.level, max_version_level=f.level)
            for f in FEATURES
            if f.level > 0
        ),
    }


def _api_list(resp: Response, advertised: dict[int, tuple[int, int]]) -> tuple[object, ...]:
    api = resp.ApiVersion
    return tuple(build(api, api_key=k, min_version=lo, max_version=hi) for k, (lo, hi) in sorted(advertised.items()))


async def handle_api_versions(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.API_VERSIONS, header.api_version)
    software = current_client_software.get()
    if software is not None and header.api_version >= 3:  # what client telemetry's match selectors see
        software.name = request.client_software_name
        software.version = request.client_software_version
    refused = _wrong_target(ctx, request) if header.api_version >= _TARGET_SINCE else ErrorCode.none
    if refused != ErrorCode.none:
        return resp.make(error_code=refused, api_keys=(), throttle_time=NO_THROTTLE)
    return resp.make(
        error_code=ErrorCode.none,
        api_keys=_api_list(resp, advertised(ctx)),
        throttle_time=NO_THROTTLE,
        **_features(resp),
    )


def _wrong_target(ctx: BrokerContext, request: Request) -> ErrorCode:
    cluster_id, node_id = request.cluster_id, int(request.node_id)
    if cluster_id is None and node_id == _NO_NODE:
        return ErrorCode.none
    if cluster_id is None or node_id == _NO_NODE:
        return ErrorCode.invalid_request
    if cluster_id != ctx.cluster_id or node_id != ctx.node_id:
        return ErrorCode.rebootstrap_required
    return ErrorCode.none


def advertised(ctx: BrokerContext) -> dict[int, tuple[int, int]]:
    table = ctx.services.get("advertised_versions")
    assert isinstance(table, dict)
    return table


def unsupported_version_response(ctx: BrokerContext, correlation_id: int) -> bytes:
    resp = Response.of(ApiKey.API_VERSIONS, 0)
    body = resp.make(error_code=ErrorCode.unsupported_version, api_keys=_api_list(resp, advertised(ctx)))
    return encode_response(ApiKey.API_VERSIONS, 0, correlation_id, body)


HANDLERS = {ApiKey.API_VERSIONS: handle_api_versions}
