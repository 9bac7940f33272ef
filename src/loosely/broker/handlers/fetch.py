"""Fetch: whole record batches straight from segment files, with long polling.

Theory of operation
-------------------
The handler gathers, for every requested partition, the byte ranges of whole batches from the fetch offset on
(:meth:`PartitionLog.read`), bounded by the partition's ``partition_max_bytes`` and the response's ``max_bytes``
(capped by the broker's ``fetch.max.bytes``). The first batch of the first non-empty partition is always returned
whole even if it exceeds those limits, so consumers make progress (KIP-74). Records are never decoded.

If fewer than ``min_bytes`` were found and no partition reported an error, the handler waits (up to
``max_wait_ms``) for an append to any of the requested partitions, then gathers again. ``read_committed``
fetches stop at the last stable offset and carry the aborted transactions overlapping the returned range.

A disk error while reading a partition (EIO) answers KAFKA_STORAGE_ERROR for that partition alone, or
NOT_LEADER_OR_FOLLOWER to Fetch v5 and older, which is what Kafka does because those clients may not know code 56
and would not retry; the error is counted and logged once per interval by the storage layer.

With ``loosely.fetch.backlog.delay.ms`` (0, Kafka's behaviour, by default) an answer that has records and stops
short of some partition's end (the consumer is reading a backlog, not tailing) is held that long before it is sent.
Why a broker would: librdkafka fetches ahead until ``queued.min.messages`` (100,000) wait unread, then stops and
looks again only on its broker thread's next whole-second wake-up (``fetch.queue.backoff.ms`` in newer versions).
An application that reads slower than the broker answers fills that queue, earlier in the run the quicker the
answers come, so the pause costs the rest of that second. Kafka's answers come a millisecond or two later than
loosely's, which on a 2-core machine keeps kcat's fetcher near its printing pace; the delay does the same on
purpose, and costs a consumer that keeps up that many milliseconds per answer (docs/benchmarks.md "Log broker").

Fetch sessions (KIP-227) are declined: the response's session id is always 0, which tells clients to keep
sending full fetch requests; a request naming a session id answers FETCH_SESSION_ID_NOT_FOUND.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from dataclasses import dataclass

from loosely.broker.acls import allowed
from loosely.broker.context import BrokerContext, Request, current_principal, current_throttle_ms, not_handling
from loosely.broker.handlers._util import NO_THROTTLE, Response, charge_request_time
from loosely.broker.quotas import FETCH as CONSUMER_BYTE_RATE
from loosely.broker.quotas import quota_user
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader, build
from loosely.protocol.names import TopicPartition
from loosely.security.authorizer import AclOperation as Op
from loosely.security.authorizer import ResourceType as Res
from loosely.storage.log import LogError

__all__ = ["HANDLERS"]

READ_COMMITTED = 1
# The first Fetch version whose clients know KAFKA_STORAGE_ERROR (Kafka answers older ones NOT_LEADER_OR_FOLLOWER).
_STORAGE_ERROR_VERSION_MIN = 6


@dataclass(slots=True)
class _Want:
    topic: str | None
    topic_id: uuid.UUID | None
    partition: int
    offset: int
    max_bytes: int
    leader_epoch: int
    denied: bool = False  # the principal may not READ the topic


async def handle_fetch(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    v = header.api_version
    resp = Response.of(ApiKey.FETCH, v)
    session_id = int(getattr(request, "session_id", 0))
    if session_id != 0:
        return resp.make(
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.fetch_session_id_not_found,
            session_id=0,
            responses=(),
        )
    wants: list[_Want] = []
    for ft in request.topics:
        name = getattr(ft, "topic", None)
        tid = getattr(ft, "topic_id", None)
        if name is None and tid is not None:
            t = ctx.logs.by_id(tid)
            name = t.name if t is not None else None
        denied = name is not None and not allowed(ctx, Op.READ, Res.TOPIC, name)
        for fp in ft.partitions:
            wants.append(
                _Want(
                    name,
                    tid,
                    fp.partition,
                    fp.fetch_offset,
                    fp.partition_max_bytes,
                    getattr(fp, "current_leader_epoch", -1),
                    denied,
                )
            )
    max_wait_ms = int(request.max_wait.total_seconds() * 1000)
    min_bytes = int(request.min_bytes)
    max_bytes = min(int(getattr(request, "max_bytes", ctx.config.fetch_bytes_max)), ctx.config.fetch_bytes_max)
    committed = int(getattr(request, "isolation_level", 0)) == READ_COMMITTED
    deadline = ctx.clock.monotonic_ms() + max(0, max_wait_ms)
    watch = [TopicPartition(w.topic, w.partition) for w in wants if w.topic is not None and not w.denied]
    while True:
        body, total, errors, by_topic_bytes, behind = _gather(ctx, resp, wants, max_bytes, committed)
        remaining = deadline - ctx.clock.monotonic_ms()
        if total >= min_bytes or errors or remaining <= 0 or not watch:
            # over consumer_byte_rate or request_percentage: answered empty now, the records after the pause (Kafka)
            request_ms = charge_request_time(ctx, header.client_id)
            throttle_ms = max(_throttle_ms(ctx, header, total, unrecord=request_ms > 0), request_ms)
            if throttle_ms > 0:
                current_throttle_ms.set(throttle_ms)
                return resp.make(throttle_time=datetime.timedelta(milliseconds=throttle_ms),
                                 error_code=ErrorCode.none, session_id=0, responses=())
            for topic, n in by_topic_bytes.items():
                ctx.bytes_out[topic] += n
            ctx.bytes_out_fetch(total)
            if total > 0 and behind and ctx.config.fetch_backlog_delay_ms > 0:
                with not_handling():  # paced on purpose: not this client's handling time
                    await asyncio.sleep(ctx.config.fetch_backlog_delay_ms / 1000)
            return body
        fut = ctx.watchers.watch(watch, committed=committed)
        try:
            with not_handling():  # the long poll: not this client's handling time (Kafka's purgatory)
                await asyncio.wait_for(fut, remaining / 1000)
        except TimeoutError:
            pass
        finally:
            ctx.watchers.unwatch(watch, fut)


def _throttle_ms(ctx: BrokerContext, header: RequestHeader, nbytes: int, *, unrecord: bool) -> int:
    if ctx.quotas is None or nbytes == 0:
        return 0
    return ctx.quotas.throttle_ms(CONSUMER_BYTE_RATE, quota_user(current_principal.get()), header.client_id or "",
                                  nbytes, record_if_throttled=False, unrecord=unrecord)


def _gather(
    ctx: BrokerContext, resp: Response, wants: list[_Want], max_bytes: int, committed: bool
) -> tuple[object, int, bool, dict[str, int], bool]:
    """The response body, its record bytes, whether a partition has an error, bytes by topic, and whether some
    partition's records stop short of what the fetch could read (its high watermark or last stable offset)."""
    total = 0
    errors = False
    behind = False
    by_topic_bytes: dict[str, int] = {}
    by_topic: dict[tuple[str | None, uuid.UUID | None], list[object]] = {}
    for w in wants:
        code = ErrorCode.none
        hw = lso = start = -1
        records = b""  # never null: librdkafka 2.0 rejects a null record set
        aborted: tuple[object, ...] | None = None if not committed else ()
        plog = ctx.logs.log(w.topic, w.partition) if w.topic is not None and not w.denied else None
        if w.denied:
            code = ErrorCode.topic_authorization_failed
        elif plog is None:
            code = ErrorCode.unknown_topic_id if w.topic is None else ErrorCode.unknown_topic_or_partition
        elif w.leader_epoch > 0:
            code = ErrorCode.unknown_leader_epoch
        else:
            hw = plog.high_watermark
            lso = hw
            if ctx.transactions is not None and w.topic is not None:
                lso = ctx.transactions.last_stable_offset(w.topic, w.partition, hw)
            start = plog.log_start_offset
            try:
                remaining = max_bytes - total
                limit = min(w.max_bytes, remaining)
                result = (
                    plog.read(w.offset, limit, upper_offset=lso if committed else hw, min_one=(total == 0))
                    if (limit > 0 or total == 0)
                    else None
                )
            except LogError as e:
                code = e.error_code
                result = None
            except OSError as e:
                code = plog.storage_error("read", e).error_code
                result = None
            read_to = w.offset  # the next offset this partition's records leave to a later fetch
            if result is not None and result.slices:
                try:
                    records = result.read_bytes()
                except OSError as e:
                    code = plog.storage_error("read", e).error_code
                else:
                    total += len(records)
                    read_to = result.slices[-1].next_offset
                    if committed and ctx.transactions is not None and w.topic is not None:
                        aborted = tuple(
                            build(resp.AbortedTransaction, producer_id=pid, first_offset=first)
                            for pid, first in ctx.transactions.aborted(w.topic, w.partition, w.offset, read_to)
                        )
                    if w.topic is not None:
                        by_topic_bytes[w.topic] = by_topic_bytes.get(w.topic, 0) + len(records)
            behind = behind or (code == ErrorCode.none and read_to < (lso if committed else hw))
        if code == ErrorCode.kafka_storage_error and resp.version < _STORAGE_ERROR_VERSION_MIN:
            code = ErrorCode.not_leader_or_follower
        if code != ErrorCode.none:
            errors = True
        part = build(
            resp.PartitionData,
            partition_index=w.partition,
            error_code=code,
            high_watermark=hw,
            last_stable_offset=lso,
            log_start_offset=start,
            aborted_transactions=aborted,
            preferred_read_replica=-1,
            records=records,
        )
        by_topic.setdefault((w.topic, w.topic_id), []).append(part)
    topics = tuple(
        build(resp.FetchableTopicResponse, topic=name or "", topic_id=tid, partitions=tuple(parts))
        for (name, tid), parts in by_topic.items()
    )
    body = resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, session_id=0, responses=topics)
    return body, total, errors, by_topic_bytes, behind


HANDLERS = {ApiKey.FETCH: handle_fetch}
