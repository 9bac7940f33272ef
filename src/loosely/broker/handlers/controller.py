"""ElectLeaders, AlterPartitionReassignments, ListPartitionReassignments and DescribeQuorum: the requests a Kafka
broker forwards to its KRaft controller, answered by the one node that is broker and controller both.

With one broker every partition's only replica is its preferred leader and already leads, so:

* **ElectLeaders** (``kafka-leader-election``, preferred or unclean) answers ELECTION_NOT_NEEDED for each partition
  named, and for "every partition" (a null list) an empty result per topic, internal ones included, exactly as a
  one-node Kafka's ``ReplicationControlManager`` does. Unknown topics and partitions are UNKNOWN_TOPIC_OR_PARTITION.
* **Reassignments** never run, so ListPartitionReassignments is always empty. An AlterPartitionReassignments to this
  broker alone is accepted and changes nothing; cancelling (null replicas) is NO_REASSIGNMENT_IN_PROGRESS; an empty
  list, a broker named twice or a broker that is not this one is INVALID_REPLICA_ASSIGNMENT, with Kafka's wording.
* **DescribeQuorum** (``kafka-metadata-quorum describe``) describes a quorum of one voter, this node, leading at
  epoch 1 (the epoch a freshly formatted single-node Kafka elects itself in), caught up with itself now. loosely
  keeps no ``__cluster_metadata`` log (each topic's metadata lives in its own directory), so the offsets are 0.
  The node is reached on the broker's own address, named as the listener the request came in on: there is no
  separate controller listener.
"""

from __future__ import annotations

import uuid
from typing import Final

from loosely.broker.acls import allowed
from loosely.broker.context import BrokerContext, Request
from loosely.broker.handlers._util import NO_THROTTLE, Response, build
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader
from loosely.security.authorizer import CLUSTER_NAME, AclOperation, ResourceType

__all__ = ["HANDLERS"]

METADATA_TOPIC: Final = "__cluster_metadata"
QUORUM_LEADER_EPOCH: Final = 1
_NO_DIRECTORY: Final = uuid.UUID(int=0)


def _missing(ctx: BrokerContext, topic: str, partition: int) -> str | None:
    """Why ElectLeaders cannot find the partition (Kafka's wording), or None."""
    t = ctx.logs.get(topic)
    if t is None:
        return f"No such topic as {topic}"
    if not 0 <= partition < t.partitions:
        return f"No such partition as {topic}-{partition}"
    return None


async def handle_elect_leaders(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.ELECT_LEADERS, header.api_version)
    if not allowed(ctx, AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME):
        return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.cluster_authorization_failed,
                         replica_election_results=())
    asked = request.topic_partitions
    results = []
    if asked is None:
        results = [build(resp.ReplicaElectionResult, topic=t.name, partition_result=()) for t in ctx.logs]
    else:
        for tp in asked:
            parts = []
            for p in tp.partitions:
                missing = _missing(ctx, tp.topic, p)
                if missing is not None:
                    ctx.count_error(ApiKey.ELECT_LEADERS)
                code = ErrorCode.unknown_topic_or_partition if missing else ErrorCode.election_not_needed
                message = missing or "Leader election not needed for topic partition."
                parts.append(build(resp.PartitionResult, partition_id=p, error_code=code, error_message=message))
            results.append(build(resp.ReplicaElectionResult, topic=tp.topic, partition_result=tuple(parts)))
    return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, replica_election_results=tuple(results))


def _reassignment_error(
    ctx: BrokerContext, topic: str, partition: int, replicas: object
) -> tuple[ErrorCode, str | None]:
    t = ctx.logs.get(topic)
    if t is None:
        return ErrorCode.unknown_topic_or_partition, f"Unable to find a topic named {topic}."
    if not 0 <= partition < t.partitions:
        return ErrorCode.unknown_topic_or_partition, f"Unable to find partition {topic}:{partition}."
    if replicas is None:
        return ErrorCode.no_reassignment_in_progress, None
    assert isinstance(replicas, tuple)
    if not replicas:
        return ErrorCode.invalid_replica_assignment, "The manual partition assignment includes an empty replica list."
    previous = None
    for broker in sorted(int(b) for b in replicas):
        if broker != ctx.node_id:
            return (
                ErrorCode.invalid_replica_assignment,
                f"The manual partition assignment includes broker {broker}, but no such broker is registered.",
            )
        if broker == previous:
            return (
                ErrorCode.invalid_replica_assignment,
                f"The manual partition assignment includes the broker {broker} more than once.",
            )
        previous = broker
    return ErrorCode.none, None  # already where it is asked to be: nothing to move


async def handle_alter_partition_reassignments(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.ALTER_PARTITION_REASSIGNMENTS, header.api_version)
    if not allowed(ctx, AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME):
        return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.cluster_authorization_failed,
                         error_message=None, responses=())
    topics = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            code, message = _reassignment_error(ctx, t.name, p.partition_index, p.replicas)
            if code != ErrorCode.none:
                ctx.count_error(ApiKey.ALTER_PARTITION_REASSIGNMENTS)
            parts.append(
                build(
                    resp.ReassignablePartitionResponse,
                    partition_index=p.partition_index,
                    error_code=code,
                    error_message=message,
                )
            )
        topics.append(build(resp.ReassignableTopicResponse, name=t.name, partitions=tuple(parts)))
    return resp.make(
        throttle_time=NO_THROTTLE,
        allow_replication_factor_change=bool(getattr(request, "allow_replication_factor_change", True)),
        error_code=ErrorCode.none,
        error_message=None,
        responses=tuple(topics),
    )


async def handle_list_partition_reassignments(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.LIST_PARTITION_REASSIGNMENTS, header.api_version)
    ok = allowed(ctx, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME)
    code = ErrorCode.none if ok else ErrorCode.cluster_authorization_failed
    return resp.make(throttle_time=NO_THROTTLE, error_code=code, error_message=None, topics=())


async def handle_describe_quorum(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    resp = Response.of(ApiKey.DESCRIBE_QUORUM, header.api_version)
    asked = [(t.topic_name, p.partition_index) for t in request.topics for p in t.partitions]
    if asked != [(METADATA_TOPIC, 0)]:
        # Kafka's KafkaRaftClient: anything but exactly the metadata partition is an error for every partition asked.
        ctx.count_error(ApiKey.DESCRIBE_QUORUM)
        topics = tuple(
            build(
                resp.TopicData,
                topic_name=t.topic_name,
                partitions=tuple(
                    build(
                        resp.PartitionData,
                        partition_index=p.partition_index,
                        error_code=ErrorCode.unknown_topic_or_partition,
                        error_message="This server does not host this topic-partition.",
                        leader_id=0,
                        leader_epoch=0,
                        high_watermark=0,
                        current_voters=(),
                        observers=(),
                    )
                    for p in t.partitions
                ),
            )
            for t in request.topics
        )
        return resp.make(error_code=ErrorCode.none, error_message="", topics=topics, nodes=())
    now = ctx.clock.now_ms()
    me = build(
        resp.ReplicaState,
        replica_id=ctx.node_id,
        replica_directory_id=_NO_DIRECTORY,
        log_end_offset=0,
        last_fetch_timestamp=now,
        last_caught_up_timestamp=now,
    )
    partition = build(
        resp.PartitionData,
        partition_index=0,
        error_code=ErrorCode.none,
        error_message="",
        leader_id=ctx.node_id,
        leader_epoch=QUORUM_LEADER_EPOCH,
        high_watermark=0,
        current_voters=(me,),
        observers=(),
    )
    node = build(
        resp.Node,
        node_id=ctx.node_id,
        listeners=(build(resp.Listener, name=ctx.listener.name, host=ctx.host, port=ctx.port),),
    )
    return resp.make(
        error_code=ErrorCode.none,
        error_message="",
        topics=(build(resp.TopicData, topic_name=METADATA_TOPIC, partitions=(partition,)),),
        nodes=(node,),
    )


HANDLERS = {
    ApiKey.ELECT_LEADERS: handle_elect_leaders,
    ApiKey.ALTER_PARTITION_REASSIGNMENTS: handle_alter_partition_reassignments,
    ApiKey.LIST_PARTITION_REASSIGNMENTS: handle_list_partition_reassignments,
    ApiKey.DESCRIBE_QUORUM: handle_describe_quorum,
}
