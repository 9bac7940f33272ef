"""The writer's transactions: sent over loosely's own blocking connections, two round trips a commit.

**Why not librdkafka.** A write is acknowledged once its transaction commits, so the commit's time is every write's
floor. Through librdkafka a transaction is three round trips in sequence (AddPartitionsToTxn, Produce, EndTxn)
plus hand-offs between librdkafka's threads and the caller's: ~3 ms on loopback, while the broker spends ~1.2 ms
of it. Transactions version 2 (KIP-890 part 2; ``transaction.version`` 2, finalized by loosely's broker and by
Apache Kafka 4.x) drops the first round trip: a transactional Produce v12 adds its partition to the
transaction itself, and EndTxn v5 answers the bumped epoch the next transaction goes on with. librdkafka does not
speak it; :class:`WireTransactions` does, from the thread that commits, with no thread hand-off.

**The protocol, as sent here.**

* *Open* (the fence): ApiVersions on a bootstrap broker (``transaction.version`` finalized at 2 or more, and
  the broker offers Produce v12 and EndTxn v5: transactions version 2; otherwise version 0, with
  AddPartitionsToTxn v3 before each transaction's first Produce to a partition), FindCoordinator for the
  transactional id, then InitProducerId with it: the coordinator bumps the id's epoch (aborting whatever a
  previous holder left open), and from then on every request of a holder with an older epoch is refused.
* *Commit*: one record batch per partition (transactional, idempotent: producer id, epoch and a sequence number
  per partition that starts at 0 with every epoch), one Produce per partition leader, all sent before any answer
  is read; then EndTxn to the coordinator. A partition's records over ``batch_bytes_max`` (1 MB, what brokers
  take by default) go in several batches, the next Produce once the one before landed (an idempotent Produce
  carries one batch per partition). Version 2: the answer's epoch (or producer id, when the epoch ran out)
  is the next transaction's, and sequences start again at 0. Version 0: the epoch stays, sequences go on.
* *Without the GIL*: on plain sockets the last Produce requests, their answers and the EndTxn go in one call
  to C (``loosely.clients.wire.produce_then_end_txn``) that holds no GIL: it sends EndTxn only once every
  partition of every answer landed (error 0), else it stops there and Python decides as below. Why: the
  commit thread would otherwise give the GIL up at every send and answer, and taking it back from the
  writer's busy caller threads waits up to their switch interval (5 ms) each time. Over TLS the bytes go
  through Python's SSL object, so the requests go one by one as before.
* *Retries*, within the deadline: a Produce refused because leadership moved (NOT_LEADER_OR_FOLLOWER and kin),
  because the partition's previous transaction is still being completed (CONCURRENT_TRANSACTIONS), or left
  unanswered by a broker that went away, is sent again after a metadata refresh -- the same batch with the same
  sequence, which the partition's idempotence keeps from landing twice. EndTxn is sent again when the coordinator
  moved or did not answer: a retried commit of an already committed transaction answers success (Kafka keeps the
  previous epoch for exactly that).
* *Failures*: a newer holder of the transactional id (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH, or a transaction
  the coordinator timed out) is :class:`TransactionFenced`; anything else is :class:`TransactionFailed`, with
  ``uncertain`` when the transaction may have committed: only once its EndTxn was sent (a transaction whose
  EndTxn never went out is aborted by the coordinator, at the latest when the next holder fences this one).
  Either way the caller drops this object: a new one fences it (and aborts what it left open) before the next
  write.

:class:`LibrdkafkaTransactions` keeps the same interface over confluent-kafka's producer, for what the own
connections do not speak (a SASL mechanism other than PLAIN and SCRAM, say).
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from loosely.clients.wire import (
    ConnectionPool,
    KafkaConnection,
    KafkaSecurity,
    WireError,
    error_code,
    parse_address,
    produce_then_end_txn,
    request_class,
)
from loosely.protocol.errors import ErrorCode, ProtocolError
from loosely.protocol.messages import ApiKey, build, nested
from loosely.protocol.records import BATCH_HEADER_BYTES, NewRecord, build_batch

__all__ = [
    "LibrdkafkaTransactions",
    "Outgoing",
    "TransactionFailed",
    "TransactionFenced",
    "Transactions",
    "WireTransactions",
    "open_transactions",
]

TV2: Final = 2  # transaction.version of KIP-890 part 2
API_VERSIONS_V: Final = 3
FIND_COORDINATOR_V: Final = 4
INIT_PRODUCER_ID_V: Final = 5
METADATA_V: Final = 12
ADD_PARTITIONS_V: Final = 3  # the client's version: v4+ is the batched form brokers send each other
PRODUCE_V: Final = {TV2: 12, 0: 11}  # v12: the partition joins the transaction itself
END_TXN_V: Final = {TV2: 5, 0: 4}  # v5: answers the next epoch
TRANSACTION_COORDINATOR: Final = 1  # FindCoordinator's key_type
FRAME_BYTES_MAX: Final = 8 * 1024 * 1024  # answers here are small; a metadata answer of a big cluster fits
RETRY_BACKOFF_S: Final = 0.02  # between attempts at a moved leader or coordinator (librdkafka: retry.backoff.ms 100)
BATCH_BYTES_MAX: Final = 1_000_000  # librdkafka's message.max.bytes; Kafka's max.message.bytes is 1,048,588
RECORD_OVERHEAD_BYTES: Final = 21  # a record's framing besides key and value: length, attributes, deltas (varints)
CONCURRENT_BACKOFF_S: Final = 0.002  # the previous transaction's markers land within a round trip or two

_FENCED: Final = frozenset({ErrorCode.producer_fenced, ErrorCode.invalid_producer_epoch,
                            ErrorCode.transactional_id_authorization_failed, ErrorCode.invalid_txn_state,
                            ErrorCode.unknown_producer_id})
_MOVED: Final = frozenset({ErrorCode.not_leader_or_follower, ErrorCode.leader_not_available,
                           ErrorCode.fenced_leader_epoch, ErrorCode.unknown_topic_or_partition,
                           ErrorCode.not_enough_replicas, ErrorCode.not_enough_replicas_after_append,
                           ErrorCode.request_timed_out, ErrorCode.network_exception, ErrorCode.kafka_storage_error,
                           ErrorCode.concurrent_transactions, ErrorCode.transaction_abortable})
_COORDINATOR_MOVED: Final = frozenset({ErrorCode.not_coordinator, ErrorCode.coordinator_not_available,
                                       ErrorCode.coordinator_load_in_progress, ErrorCode.concurrent_transactions,
                                       ErrorCode.request_timed_out})


# what a connection that went away (or answered garbage) raises: the request may or may not have been served
_TROUBLE: Final = (OSError, WireError, ProtocolError)


class TransactionFenced(Exception):
    """A newer holder of the transactional id fenced this producer: nothing more it sends lands."""


class TransactionFailed(Exception):
    """The transaction did not commit; ``uncertain``: it may have (its commit went unanswered)."""

    def __init__(self, message: str, *, uncertain: bool) -> None:
        super().__init__(message)
        self.uncertain = uncertain


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record of a transaction: where it goes, its key, its value (None: a tombstone)."""

    topic: str
    partition: int
    key: bytes
    value: bytes | None


class Transactions(Protocol):
    """A fenced transactional producer: ``commit`` sends records in one transaction and answers their offsets."""

    def commit(self, records: Sequence[Outgoing], timeout_s: float) -> list[int]: ...

    def close(self) -> None: ...


def open_transactions(config: Mapping[str, Any], transactional_id: str, *, transaction_timeout_ms: int,
                      client_id: str, timeout_s: float) -> Transactions:
    """The fastest producer the settings allow, fenced in (its InitProducerId done) and ready to commit."""
    try:
        security = KafkaSecurity.from_client_config({k: str(v) for k, v in config.items()})
    except ValueError:  # a security setting only librdkafka speaks
        return LibrdkafkaTransactions(config, transactional_id, transaction_timeout_ms=transaction_timeout_ms,
                                      client_id=client_id, timeout_s=timeout_s)
    return WireTransactions(str(config["bootstrap.servers"]), transactional_id, security=security,
                            transaction_timeout_ms=transaction_timeout_ms, client_id=client_id, timeout_s=timeout_s)


class WireTransactions:
    """Transactions over loosely's own connections (see the module header); used by one thread at a time."""

    def __init__(self, bootstrap_servers: str, transactional_id: str, *, security: KafkaSecurity | None = None,
                 transaction_timeout_ms: int = 60_000, client_id: str = "loosely-txn", timeout_s: float = 30.0,
                 transaction_version: int | None = None, batch_bytes_max: int = BATCH_BYTES_MAX) -> None:
        self.transactional_id = transactional_id
        self.batch_bytes_max = batch_bytes_max
        self.transaction_timeout_ms = transaction_timeout_ms
        self.client_id = client_id
        self._bootstrap = [parse_address(a) for a in bootstrap_servers.split(",") if a.strip()]
        self._pool = ConnectionPool(security, frame_bytes_max=FRAME_BYTES_MAX, client_id=client_id)
        self._brokers: dict[int, tuple[str, int]] = {}
        self._leaders: dict[tuple[str, int], int] = {}
        self._coordinator: tuple[str, int] | None = None
        self._sequences: dict[tuple[str, int], int] = {}
        self._added: set[tuple[str, int]] = set()  # version 0: partitions already in the open transaction
        self._producer_id = -1
        self._epoch = -1
        self.retries = 0  # requests sent again (a leader or coordinator moved, a transaction still completing)
        self.exchanged = 0  # commits whose EndTxn went out in the C exchange with their last Produce requests
        self._resent = False  # a coordinator request went unanswered and was sent again
        deadline = time.monotonic() + timeout_s
        self.version = self._transaction_version(deadline) if transaction_version is None else transaction_version
        self._init_producer_id(deadline)

    # -- connections -----------------------------------------------------------------------------------------

    def _connection(self, address: tuple[str, int], deadline: float) -> KafkaConnection:
        return self._pool.connection(address, _left(deadline))

    def _drop(self, address: tuple[str, int]) -> None:
        self._pool.drop(address)

    def _call_any(self, api_key: int, version: int, request: object, deadline: float) -> Any:
        """Ask the first bootstrap (or known) broker that answers."""
        problems = []
        for address in [*self._bootstrap, *self._brokers.values()]:
            try:
                return self._connection(address, deadline).call(api_key, version, request, _left(deadline))
            except _TROUBLE as e:
                self._drop(address)
                problems.append(f"{address[0]}:{address[1]}: {e}")
        raise TransactionFailed(f"no broker reachable ({'; '.join(problems)})", uncertain=False)

    def _transaction_version(self, deadline: float) -> int:
        answer = self._call_any(ApiKey.API_VERSIONS, API_VERSIONS_V,
                                build(request_class(ApiKey.API_VERSIONS, API_VERSIONS_V),
                                      client_software_name="loosely", client_software_version="1"), deadline)
        offered = {int(k.api_key): int(k.max_version) for k in answer.api_keys}
        finalized = {str(f.name): int(f.max_version_level) for f in answer.finalized_features}
        if (finalized.get("transaction.version", 0) >= TV2 and offered.get(ApiKey.PRODUCE, 0) >= PRODUCE_V[TV2]
                and offered.get(ApiKey.END_TXN, 0) >= END_TXN_V[TV2]):
            return TV2
        return 0

    def _find_coordinator(self, deadline: float) -> tuple[str, int]:
        while True:
            answer = self._call_any(ApiKey.FIND_COORDINATOR, FIND_COORDINATOR_V, build(
                request_class(ApiKey.FIND_COORDINATOR, FIND_COORDINATOR_V), key_type=TRANSACTION_COORDINATOR,
                coordinator_keys=(self.transactional_id,)), deadline)
            c = answer.coordinators[0]
            code = error_code(c)
            if code == ErrorCode.none:
                self._coordinator = (str(c.host), int(c.port))
                return self._coordinator
            self._retry_or_fail(f"FindCoordinator: {ErrorCode(code).name}", code in _COORDINATOR_MOVED, deadline,
                                uncertain=False)

    def _coordinator_call(self, api_key: int, version: int, request: object, deadline: float, *,
                          uncertain: bool, answer: Any = None) -> Any:
        """A request to the transaction coordinator, found again and asked again while it moves; ``answer``: the
        coordinator's answer to the request already sent (by the commit's exchange), to take as the first."""
        while True:
            if answer is None:
                try:
                    address = self._coordinator or self._find_coordinator(deadline)
                except TransactionFailed as e:
                    if uncertain and self._resent:  # an earlier one went out unanswered: it may have committed
                        raise TransactionFailed(f"{e} (after {type(request).__name__} went unanswered)",
                                                uncertain=True) from None
                    raise
                try:
                    answer = self._connection(address, deadline).call(api_key, version, request, _left(deadline))
                except _TROUBLE as e:
                    self._drop(address)
                    self._coordinator = None
                    self._resent = True
                    self._retry_or_fail(f"{type(request).__name__} to {address[0]}:{address[1]}: {e}", True,
                                        deadline, uncertain=uncertain)
                    continue
            code = _answer_code(answer)
            if code == ErrorCode.concurrent_transactions:  # the previous transaction's markers are on their way
                answer = None
                self._retry_or_fail(f"{type(request).__name__}: {ErrorCode(code).name}", True, deadline,
                                    uncertain=uncertain, backoff_s=CONCURRENT_BACKOFF_S)
                continue
            if code in _COORDINATOR_MOVED:
                answer = None
                self._coordinator = None
                self._retry_or_fail(f"{type(request).__name__}: {ErrorCode(code).name}", True, deadline,
                                    uncertain=uncertain)
                continue
            return answer

    def _retry_or_fail(self, why: str, retriable: bool, deadline: float, *, uncertain: bool,
                       backoff_s: float = RETRY_BACKOFF_S) -> None:
        if not retriable or time.monotonic() + backoff_s > deadline:
            raise TransactionFailed(why, uncertain=uncertain)
        self.retries += 1
        time.sleep(backoff_s)

    def _init_producer_id(self, deadline: float) -> None:
        request = build(request_class(ApiKey.INIT_PRODUCER_ID, INIT_PRODUCER_ID_V),
                        transactional_id=self.transactional_id,
                        transaction_timeout=datetime.timedelta(milliseconds=self.transaction_timeout_ms),
                        producer_id=-1, producer_epoch=-1)
        answer = self._coordinator_call(ApiKey.INIT_PRODUCER_ID, INIT_PRODUCER_ID_V, request, deadline,
                                        uncertain=False)
        code = error_code(answer)
        if code != ErrorCode.none:
            raise TransactionFailed(f"InitProducerId {self.transactional_id}: {ErrorCode(code).name}",
                                    uncertain=False)
        self._producer_id, self._epoch = int(answer.producer_id), int(answer.producer_epoch)

    def _refresh_metadata(self, topics: set[str], deadline: float) -> None:
        request_cls = request_class(ApiKey.METADATA, METADATA_V)
        topic_cls = nested(request_cls, "MetadataRequestTopic")
        answer = self._call_any(ApiKey.METADATA, METADATA_V, build(
            request_cls, topics=tuple(build(topic_cls, topic_id=None, name=t) for t in sorted(topics)),
            allow_auto_topic_creation=False, include_topic_authorized_operations=False), deadline)
        self._brokers = {int(b.node_id): (str(b.host), int(b.port)) for b in answer.brokers}
        for t in answer.topics:
            for p in t.partitions:
                if error_code(p) == ErrorCode.none and int(p.leader_id) >= 0:
                    self._leaders[(str(t.name), int(p.partition_index))] = int(p.leader_id)
                else:
                    self._leaders.pop((str(t.name), int(p.partition_index)), None)

    # -- transactions ----------------------------------------------------------------------------------------

    def commit(self, records: Sequence[Outgoing], timeout_s: float) -> list[int]:
        """Send ``records`` in one transaction and commit it; their offsets, in order.

        :class:`TransactionFenced` when a newer producer holds the id; :class:`TransactionFailed` otherwise."""
        deadline = time.monotonic() + timeout_s
        # each partition's records in batches of at most batch_bytes_max; an idempotent Produce carries one batch
        # per partition, so the k-th batches of all partitions go out together, once the (k-1)-th have landed
        rounds: list[dict[tuple[str, int], list[int]]] = [{}]
        sizes: dict[tuple[str, int], int] = {}
        last: dict[tuple[str, int], int] = {}  # each partition's latest round (the commit thread's serial path)
        for i, r in enumerate(records):
            tp = (r.topic, r.partition)
            size = len(r.key) + len(r.value or b"") + RECORD_OVERHEAD_BYTES
            k = last.get(tp, -1)
            if k < 0:
                k = 0
            elif sizes[tp] + size > self.batch_bytes_max:
                k += 1
                sizes[tp] = BATCH_HEADER_BYTES  # the new batch's header
                if k == len(rounds):
                    rounds.append({})
            last[tp] = k
            rounds[k].setdefault(tp, []).append(i)
            sizes[tp] = sizes.get(tp, BATCH_HEADER_BYTES) + size
        if self.version < TV2:
            self._add_partitions([tp for tp in rounds[0] if tp not in self._added], deadline)
        offsets = [0] * len(records)
        now_ms = int(time.time() * 1000)
        ended: _Ended | None = None
        for k, batches in enumerate(rounds):
            encoded = {tp: build_batch([NewRecord(records[i].key, records[i].value, now_ms) for i in idx],
                                       producer_id=self._producer_id, producer_epoch=self._epoch,
                                       base_sequence=self._sequences.get(tp, 0), transactional=True)
                       for tp, idx in batches.items()}
            base, ended = self._produce(encoded, deadline, end=k == len(rounds) - 1)
            for tp, idx in batches.items():
                self._sequences[tp] = self._sequences.get(tp, 0) + len(idx)
                for n, i in enumerate(idx):
                    offsets[i] = base[tp] + n
        if ended is not None:
            self.exchanged += 1
        if ended is None:
            self._end(deadline)
        elif ended.answer is None:  # sent with the Produce, unanswered: it may have committed; send it again
            if ended.address is not None:
                self._drop(ended.address)
            self._coordinator = None
            self._retry_or_fail(f"EndTxn: {ended.error}", True, deadline, uncertain=True)
            self._end(deadline, resent=True)
        else:
            self._end(deadline, answer=ended.answer)
        return offsets

    def _add_partitions(self, partitions: list[tuple[str, int]], deadline: float) -> None:
        if not partitions:
            return
        request_cls = request_class(ApiKey.ADD_PARTITIONS_TO_TXN, ADD_PARTITIONS_V)
        topic_cls = nested(request_cls, "AddPartitionsToTxnTopic")
        topics: dict[str, list[int]] = {}
        for t, p in partitions:
            topics.setdefault(t, []).append(p)
        request = build(request_cls, v3_and_below_transactional_id=self.transactional_id,
                        v3_and_below_producer_id=self._producer_id, v3_and_below_producer_epoch=self._epoch,
                        v3_and_below_topics=tuple(build(topic_cls, name=t, partitions=tuple(ps))
                                                  for t, ps in topics.items()))
        answer = self._coordinator_call(ApiKey.ADD_PARTITIONS_TO_TXN, ADD_PARTITIONS_V, request, deadline,
                                        uncertain=False)
        self._raise_for(f"AddPartitionsToTxn {partitions}", _answer_code(answer), uncertain=False)
        self._added.update(partitions)

    def _produce(self, encoded: dict[tuple[str, int], bytes], deadline: float, *,
                 end: bool = False) -> tuple[dict[tuple[str, int], int], _Ended | None]:
        """Each batch to its partition's leader, all sent before an answer is read; their base offsets.

        ``end``: the transaction's last batches. Then the first attempt goes through :meth:`_exchange` when it
        can (plain sockets, the coordinator known): the Produce requests, their answers and, if every partition
        landed, EndTxn, in one release of the GIL; what became of the EndTxn is returned (None: not sent, the
        caller ends the transaction)."""
        version = PRODUCE_V[self.version]
        request_cls = request_class(ApiKey.PRODUCE, version)
        topic_cls = nested(request_cls, "TopicProduceData")
        partition_cls = nested(request_cls, "PartitionProduceData")
        base: dict[tuple[str, int], int] = {}
        ended: _Ended | None = None
        left = dict(encoded)
        fast = end
        while left:
            missing = {t for t, p in left if (t, p) not in self._leaders}
            if missing:
                self._refresh_metadata(missing, deadline)
            by_node: dict[int, dict[str, list[tuple[int, bytes]]]] = {}
            waiting: list[tuple[str, int]] = []
            for (t, p), batch in left.items():
                node = self._leaders.get((t, p))
                if node is None or node not in self._brokers:
                    waiting.append((t, p))
                    continue
                by_node.setdefault(node, {}).setdefault(t, []).append((p, batch))
            outgoing: list[tuple[tuple[str, int], KafkaConnection, Any, list[tuple[str, int]]]] = []
            retry = bool(waiting)
            timeout = datetime.timedelta(milliseconds=max(1, int(_left(deadline) * 1000)))
            for node, topics in by_node.items():
                request = build(request_cls, transactional_id=self.transactional_id, acks=-1, timeout=timeout,
                                topic_data=tuple(build(topic_cls, name=t, partition_data=tuple(
                                    build(partition_cls, index=p, records=b) for p, b in ps))
                                    for t, ps in topics.items()))
                address = self._brokers[node]
                try:
                    outgoing.append((address, self._connection(address, deadline), request,
                                     [(t, p) for t, ps in topics.items() for p, _ in ps]))
                except _TROUBLE:
                    self._drop(address)
                    self._leaders = {tp: n for tp, n in self._leaders.items() if n != node}
                    retry = True
            answers: list[tuple[tuple[str, int], list[tuple[str, int]], Any]] = []  # None: no answer
            if fast and not left.keys() - {tp for *_, partitions in outgoing for tp in partitions}:
                answers, ended = self._exchange(outgoing, version, deadline)
            else:
                answers = self._send_and_receive(outgoing, version, deadline)
            fast = False  # retries go the plain way, and the caller ends the transaction
            concurrent = False
            for address, partitions, answer in answers:
                if answer is None:  # it may have landed: the same batch again is a no-op
                    self._drop(address)
                    for tp in partitions:
                        self._leaders.pop(tp, None)
                    retry = True
                    continue
                for t in answer.responses:
                    for p in t.partition_responses:
                        tp = (str(t.name), int(p.index))
                        code = error_code(p)
                        if code in (ErrorCode.none, ErrorCode.duplicate_sequence_number) and int(p.base_offset) >= 0:
                            base[tp] = int(p.base_offset)
                            left.pop(tp, None)
                        elif code == ErrorCode.concurrent_transactions:
                            concurrent = True  # the previous transaction's markers are on their way
                        elif code in _MOVED:
                            self._leaders.pop(tp, None)
                            retry = True
                        else:
                            self._raise_for(f"Produce {tp[0]}-{tp[1]}: {p.error_message or ''}", code,
                                            uncertain=False)
            if left and time.monotonic() > deadline:
                raise TransactionFailed(f"Produce to {sorted(left)} unanswered in time", uncertain=False)
            if left and (retry or concurrent):
                self.retries += 1
                time.sleep(RETRY_BACKOFF_S if retry else CONCURRENT_BACKOFF_S)
        return base, ended

    def _send_and_receive(self, outgoing: list[tuple[tuple[str, int], KafkaConnection, Any, list[tuple[str, int]]]],
                          version: int, deadline: float) -> list[tuple[tuple[str, int], list[tuple[str, int]], Any]]:
        """Every request sent, then every answer read (None where a connection failed)."""
        sent = []
        out: list[tuple[tuple[str, int], list[tuple[str, int]], Any]] = []
        for address, conn, request, partitions in outgoing:
            try:
                sent.append((address, conn, conn.send(ApiKey.PRODUCE, version, request, _left(deadline)),
                             partitions))
            except _TROUBLE:
                out.append((address, partitions, None))
        for address, conn, correlation, partitions in sent:
            try:
                out.append((address, partitions, conn.receive(ApiKey.PRODUCE, version, correlation, _left(deadline))))
            except _TROUBLE:
                out.append((address, partitions, None))
        return out

    def _exchange(self, outgoing: list[tuple[tuple[str, int], KafkaConnection, Any, list[tuple[str, int]]]],
                  version: int, deadline: float) -> tuple[list[tuple[tuple[str, int], list[tuple[str, int]], Any]],
                                                          _Ended | None]:
        """The Produce requests and, if they all land, EndTxn, in one exchange without the GIL
        (:func:`~loosely.clients.wire.produce_then_end_txn`): a thread taking the GIL back waits for busy Python
        threads (the writer's callers) up to their switch interval, 5 ms, so the commit thread takes it back
        once, not at each send and answer. Where a socket is TLS or the coordinator is not known: sent and read
        the plain way, and the caller ends the transaction."""
        end_conn = self._pool.existing(self._coordinator) if self._coordinator is not None else None
        if end_conn is None:
            return self._send_and_receive(outgoing, version, deadline), None
        frames = [conn.frame(ApiKey.PRODUCE, version, request) for _, conn, request, _ in outgoing]
        end_version = END_TXN_V[self.version]
        end_correlation, end_frame = end_conn.frame(ApiKey.END_TXN, end_version, self._end_request())
        exchanged = produce_then_end_txn([(conn, frame) for (_, conn, _, _), (_, frame) in
                                          zip(outgoing, frames, strict=True)], (end_conn, end_frame), _left(deadline))
        if exchanged is None:  # TLS: the framed requests were not sent, so their correlation ids are never used
            return self._send_and_receive(outgoing, version, deadline), None
        got, end_body, end_sent, error = exchanged
        out: list[tuple[tuple[str, int], list[tuple[str, int]], Any]] = []
        for i, ((address, conn, _, partitions), (correlation, _)) in enumerate(zip(outgoing, frames, strict=True)):
            answer = None
            if i < len(got):
                with contextlib.suppress(ProtocolError):
                    answer = conn.decode(ApiKey.PRODUCE, version, correlation, got[i])
            out.append((address, partitions, answer))
        if not end_sent:
            return out, None
        if any(answer is None for *_, answer in out):  # landed by the C scan, yet not an answer to our request
            raise TransactionFailed(f"EndTxn sent after a Produce answer that does not decode ({error})",
                                    uncertain=True)
        end_answer = None
        if end_body is not None:
            with contextlib.suppress(ProtocolError):
                end_answer = end_conn.decode(ApiKey.END_TXN, end_version, end_correlation, end_body)
        return out, _Ended(self._coordinator, end_answer, error or "a malformed answer")

    def _end_request(self) -> object:
        return build(request_class(ApiKey.END_TXN, END_TXN_V[self.version]), transactional_id=self.transactional_id,
                     producer_id=self._producer_id, producer_epoch=self._epoch, committed=True)

    def _end(self, deadline: float, *, answer: Any = None, resent: bool = False) -> None:
        """Commit: EndTxn to the coordinator (``answer``: its answer to the EndTxn the exchange sent; ``resent``:
        that one went unanswered, so a refusal of this one says nothing about it)."""
        version = END_TXN_V[self.version]
        self._resent = resent
        answer = self._coordinator_call(ApiKey.END_TXN, version, self._end_request(), deadline, uncertain=True,
                                        answer=answer)
        code = error_code(answer)
        if code != ErrorCode.none and self._resent:
            # the first EndTxn went unanswered: it may have committed before a newer holder fenced this one, so a
            # refusal of the second says nothing about the first
            raise TransactionFailed(f"EndTxn sent again: {ErrorCode(code).name}", uncertain=True)
        self._raise_for("EndTxn", code, uncertain=True)
        self._added.clear()
        if self.version >= TV2:
            producer_id, epoch = int(answer.producer_id), int(answer.producer_epoch)
            if (producer_id, epoch) != (self._producer_id, self._epoch):
                self._producer_id, self._epoch = producer_id, epoch
                self._sequences.clear()  # a new epoch numbers its batches from 0

    def _raise_for(self, what: str, code: int, *, uncertain: bool) -> None:
        if code == ErrorCode.none:
            return
        name = ErrorCode(code).name
        if code in _FENCED:
            raise TransactionFenced(f"{what}: {name} (transactional id {self.transactional_id})")
        raise TransactionFailed(f"{what}: {name}", uncertain=uncertain)

    def close(self) -> None:
        self._pool.close()


class LibrdkafkaTransactions:
    """The same transactions through confluent-kafka's producer (three round trips: AddPartitionsToTxn first)."""

    def __init__(self, config: Mapping[str, Any], transactional_id: str, *, transaction_timeout_ms: int,
                 client_id: str, timeout_s: float) -> None:
        from confluent_kafka import Producer  # noqa: PLC0415

        self._producer = Producer({**config, "transactional.id": transactional_id,
                                   "transaction.timeout.ms": transaction_timeout_ms, "client.id": client_id,
                                   "linger.ms": 0, "acks": "all"})
        self._run(lambda: self._producer.init_transactions(timeout_s))

    def _run(self, step: Any) -> Any:
        from confluent_kafka import KafkaException  # noqa: PLC0415

        try:
            return step()
        except KafkaException as e:
            err = e.args[0] if e.args else None
            if err is not None and (err.fatal() or err.name() in ("_FENCED", "PRODUCER_FENCED",
                                                                  "INVALID_PRODUCER_EPOCH")):
                raise TransactionFenced(str(e)) from None
            raise TransactionFailed(str(e), uncertain=not self._aborted(err)) from None

    def _aborted(self, err: Any) -> bool:
        if err is None or not err.txn_requires_abort():
            return False
        try:
            self._producer.abort_transaction(10)
        except Exception:  # the next holder of the id aborts it when it fences this one
            return False
        return True

    def commit(self, records: Sequence[Outgoing], timeout_s: float) -> list[int]:
        offsets: dict[int, int] = {}
        errors: list[str] = []

        def delivered(index: int) -> Any:
            def report(err: Any, msg: Any) -> None:
                if err is not None:
                    errors.append(str(err))
                else:
                    offsets[index] = msg.offset()
            return report

        def send() -> None:
            self._producer.begin_transaction()
            for i, r in enumerate(records):
                self._producer.produce(r.topic, key=r.key, value=r.value, partition=r.partition,
                                       on_delivery=delivered(i))
            self._producer.commit_transaction(timeout_s)
            while len(offsets) + len(errors) < len(records):
                self._producer.poll(0.01)  # delivery reports not yet served by the commit

        self._run(send)
        if errors:  # cannot happen after a successful commit; never report a write we cannot place
            raise TransactionFailed(f"delivery failed after commit: {errors[0]}", uncertain=True)
        return [offsets[i] for i in range(len(records))]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._producer.flush(0)


@dataclass(frozen=True, slots=True)
class _Ended:
    """What became of the EndTxn the commit's exchange sent: its answer, or None and why not."""

    address: tuple[str, int] | None
    answer: Any
    error: str


def _answer_code(answer: Any) -> int:
    """The error of an answer: its ``error_code``, or (AddPartitionsToTxn v3, which has none) the first of its
    partitions' that is not OPERATION_NOT_ATTEMPTED (what the others get when one fails), so a coordinator that
    moved is asked again as for the other requests."""
    if hasattr(answer, "error_code"):
        return error_code(answer)
    codes = [int(getattr(p.partition_error_code, "value", p.partition_error_code))
             for t in answer.results_by_topic_v3_and_below for p in t.results_by_partition]
    return next((c for c in codes if c not in (ErrorCode.none, ErrorCode.operation_not_attempted)), ErrorCode.none)


def _left(deadline: float) -> float:
    return max(0.05, deadline - time.monotonic())


