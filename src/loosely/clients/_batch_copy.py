"""The mirror's batch path: record batches copied whole from the source to the target, in transactions.

Why it exists
-------------
Through confluent-kafka every record crosses into Python twice, a ``Message`` from ``consume()`` and a
``produce()`` call, about 2 us of the mirror's Python thread a record plus librdkafka's own threads: a million
records took more than the whole kcat pipe on a 2-core machine. A mirror changes nothing in a record, so here the
source's record batches go to the target as they came, bytes and all (compressed ones stay compressed): only the
batch header's producer id, epoch, base sequence and transactional bit are set to the mirror's, and its CRC-32C
computed again. Key, value, headers and every timestamp are the source's bytes, so they arrive exact.

A batch is copied as it is when the target would take it unchanged and each of its records is wanted: a magic-2
data batch (not a transaction marker, not of an aborted transaction) with create-time timestamps, no delete
horizon, no offset holes (``records_count == last_offset_delta + 1``) and no record before the position (a batch
that starts before it: the first after a resume). Any other is decoded and its wanted records written again into
new batches, uncompressed, each record's timestamp the one a consumer saw (``loosely.protocol.records``).

The requests (fixed, non-flexible versions every Kafka since 2.1 and loosely's broker serve; built and read by
hand, as :mod:`loosely.clients.fastpath` does, so start-up imports no message codec)::

    Metadata v8, ListOffsets v5, Fetch v11 (read_committed)        to the source's leaders
    FindCoordinator v2, InitProducerId v1                           the fence, once
    AddPartitionsToTxn v2, Produce v8 (acks=all), EndTxn v2          each transaction, on the target

One transaction per fetch answer: AddPartitionsToTxn for the partitions it writes (the progress topic's included),
every Produce request sent before any answer is read (a partition's k-th batch in its k-th request to the leader: an
idempotent Produce carries one batch per partition, and a connection's requests are served in order), the progress
records in the first, then EndTxn. A partition that has taken no batch of this producer yet gets one at a time until
it takes one: a partition without state for a producer accepts any sequence number (Kafka's ``ProducerAppendInfo``,
loosely's ``broker.producers``), so a batch pipelined behind a refused first one (a topic created a moment ago, its
leader not ready) would land first, and the first, sent again, could never follow. The next Fetch is sent before the
transaction starts, so the source reads while the target writes. Sequence numbers count each partition's records
from 0 within the producer epoch, as an idempotent producer's do. A refused request fails the transaction and the
mirror stops (the next start fences this producer and the coordinator aborts what it left open), except what is
worth asking again within the timeout: a coordinator that moved or is still writing the previous transaction's
markers (CONCURRENT_TRANSACTIONS), a leader not known yet or moved (a topic created a moment ago on Apache Kafka),
and a Produce refused for those reasons, which goes again from its first refused batch with the same sequence
numbers.

Plain connections only: with TLS, SASL or any client setting beyond the servers, the mirror copies records through
confluent-kafka instead (see :mod:`loosely.clients.mirror`).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from loosely.clients import _fast
from loosely.clients.fastpath import (
    API_FETCH,
    API_LIST_OFFSETS,
    API_METADATA,
    API_PRODUCE,
    FETCH_BYTES_MAX,
    FETCH_V,
    ISOLATION_READ_COMMITTED,
    LIST_OFFSETS_V,
    METADATA_V,
    OFFSET_EARLIEST,
    PRODUCE_V,
    Connection,
    WireError,
    _Part,
    _Reader,
    error_text,
    fetch_answer,
    kept_batches,
    list_offsets_answer,
    list_offsets_request,
    make_batch,
    metadata_answer,
)
from loosely.protocol.batch_layout import (
    ATTRIBUTES_AT,
    BATCH_HEADER_BYTES,
    CODEC_MASK,
    CONTROL_BIT,
    CRC_AT,
    DELETE_HORIZON_BIT,
    LEADER_EPOCH_AT,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
)
from loosely.protocol.primitives import I8, I16, I32, I64, U32
from loosely.protocol.primitives import array as _array
from loosely.protocol.primitives import string as _string

if TYPE_CHECKING:
    from loosely.protocol.records import Record

__all__ = ["BatchSource", "Piece", "TxnTarget", "TxnUnavailable"]

API_FIND_COORDINATOR: Final = 10
API_INIT_PRODUCER_ID: Final = 22
API_ADD_PARTITIONS_TO_TXN: Final = 24
API_END_TXN: Final = 26
FIND_COORDINATOR_V: Final = 2
INIT_PRODUCER_ID_V: Final = 1
ADD_PARTITIONS_TO_TXN_V: Final = 2
END_TXN_V: Final = 2
TRANSACTION_COORDINATOR: Final = 1  # FindCoordinator's key_type
# a fetch answer is one transaction: this much per partition bounds it (librdkafka's max.partition.fetch.bytes is
# 1 MiB; larger answers mean fewer transactions and round trips for a mirror that is catching up)
PARTITION_FETCH_BYTES: Final = 4 * 1024 * 1024
REBUILT_BATCH_BYTES_MAX: Final = 1_000_000  # a rebuilt batch stays under message.max.bytes (librdkafka's 1,000,000)
DECOMPRESSED_BYTES_MAX: Final = 256 * 1024 * 1024
RETRY_BACKOFF_S: Final = 0.005  # between asks while the previous transaction's markers are written
LEADER_BACKOFF_S: Final = 0.1  # between metadata requests while a new topic has no leader yet

NONE: Final = 0
OFFSET_OUT_OF_RANGE: Final = 1
NOT_LEADER_OR_FOLLOWER: Final = 6
COORDINATOR_LOAD_IN_PROGRESS: Final = 14
COORDINATOR_NOT_AVAILABLE: Final = 15
NOT_COORDINATOR: Final = 16
CONCURRENT_TRANSACTIONS: Final = 51
OPERATION_NOT_ATTEMPTED: Final = 55
# UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH,
# UNKNOWN_LEADER_EPOCH: the leader is looked up again and the partition fetched from it
_LEADER_MOVED: Final = frozenset({3, 5, NOT_LEADER_OR_FOLLOWER, 74, 75})
_ASK_AGAIN: Final = frozenset({COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR,
                               CONCURRENT_TRANSACTIONS})
_COORDINATOR_MOVED: Final = frozenset({COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR})
# a Produce refused for these is sent again (to the leader looked up again): the leader moved or is not ready yet
# (a topic created a moment ago), or REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS(_AFTER_APPEND), CONCURRENT_TRANSACTIONS
_PRODUCE_AGAIN: Final = _LEADER_MOVED | {7, 19, 20, CONCURRENT_TRANSACTIONS}
_KEPT_ATTRIBUTES: Final = CODEC_MASK | TRANSACTIONAL_BIT  # what a batch copied as it is may carry
_REFUSED_ATTRIBUTES: Final = TIMESTAMP_TYPE_BIT | CONTROL_BIT | DELETE_HORIZON_BIT

# producerId, producerEpoch, baseSequence: where they sit in the batch header (see BATCH_HEADER)
_PRODUCER: Final = struct.Struct(">qhi")
PRODUCER_AT: Final = 43
assert struct.calcsize(">qiibIhiqq") == PRODUCER_AT and PRODUCER_AT + _PRODUCER.size + 4 == BATCH_HEADER_BYTES

PartitionId = tuple[str, int]  # (topic, partition)


class TxnUnavailable(Exception):
    """The target cannot give the batch path its transactional producer (nothing was fenced): use another path."""


@dataclass(slots=True)
class Piece:
    """One batch for the target: its bytes (the header still to be stamped), its record count, and the upstream
    offsets of its records in order (a range when they have no gaps)."""

    batch: bytearray
    count: int
    upstreams: range | list[int]


def metadata(conn: Connection, topics: Iterable[str]) -> tuple[dict[int, tuple[str, int]], dict[PartitionId, int],
                                                                dict[str, int]]:
    """Metadata v8 of ``topics``: the brokers, each partition's leader, and each topic's partition count."""
    body = _array([_string(t) for t in sorted(set(topics))]) + bytes([0, 0, 0])
    brokers, answer = metadata_answer(conn.call(API_METADATA, METADATA_V, body))
    leaders = {(name, p): leader for name, (_, ps) in answer.items() for p, leader in ps.items()}
    counts = {name: len(ps) for name, (error, ps) in answer.items() if error == NONE}
    return brokers, leaders, counts


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    if not host or not port.isdigit():
        raise TxnUnavailable(f"bootstrap server {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


class _Nodes:
    """Connections to one cluster's brokers by node id, opened when first needed."""

    def __init__(self, bootstrap: str, timeout_s: float) -> None:
        self.bootstrap = [_address(a) for a in bootstrap.split(",") if a.strip()]
        self.timeout_s = timeout_s
        self.brokers: dict[int, tuple[str, int]] = {}
        self.conns: dict[int, Connection] = {}

    def any(self) -> Connection:
        """A connection to a bootstrap broker (a new one each time; the caller closes it)."""
        problems = []
        for host, port in self.bootstrap:
            try:
                return Connection(host, port, self.timeout_s)
            except OSError as e:
                problems.append(f"{host}:{port}: {e}")
        raise OSError(f"no bootstrap broker reachable ({'; '.join(problems)})")

    def metadata(self, topics: Iterable[str]) -> tuple[dict[PartitionId, int], dict[str, int]]:
        conn = self.any()
        try:
            self.brokers, leaders, counts = metadata(conn, topics)
        finally:
            conn.close()
        return leaders, counts

    def leaders(self, tps: Iterable[PartitionId], where: str) -> dict[PartitionId, int]:
        """The leaders of ``tps``, asked again for a while when some have none yet: a topic created a moment ago
        is not known to every Apache Kafka broker at once (they hear of it from the controller)."""
        wanted = set(tps)
        deadline = time.monotonic() + self.timeout_s
        while True:
            leaders, _ = self.metadata({t for t, _ in wanted})
            missing = [tp for tp in wanted if leaders.get(tp, -1) < 0]
            if not missing:
                return {tp: leaders[tp] for tp in wanted}
            if time.monotonic() > deadline:
                raise WireError(f"no leader for {sorted(missing)} on the {where}")
            time.sleep(LEADER_BACKOFF_S)

    def conn(self, node: int) -> Connection:
        c = self.conns.get(node)
        if c is None:
            if node not in self.brokers:
                raise WireError(f"broker {node} is not in the metadata")
            c = self.conns[node] = Connection(*self.brokers[node], self.timeout_s)
        return c

    def drop(self, node: int) -> None:
        c = self.conns.pop(node, None)
        if c is not None:
            c.close()

    def close(self) -> None:
        for node in list(self.conns):
            self.drop(node)


class BatchSource:
    """Reads the source's partitions as raw record batches, read_committed, one Fetch per leader at a time."""

    def __init__(self, bootstrap: str, timeout_s: float, *, wait_ms: int = 200) -> None:
        self._nodes = _Nodes(bootstrap, timeout_s)
        self.wait_ms = wait_ms
        self._positions: dict[PartitionId, _Part] = {}
        self._in_flight: list[int] = []  # nodes with a Fetch sent and not yet read

    def assign(self, starts: dict[PartitionId, int]) -> None:
        """Copy these partitions from these offsets (``OFFSET_EARLIEST``: the partition's first)."""
        self.drain()
        leaders = self._nodes.leaders(starts, "source")
        earliest = self._list_offsets([tp for tp, o in starts.items() if o == OFFSET_EARLIEST], leaders)
        self._positions = {tp: _Part(tp[1], leaders[tp], earliest.get(tp, o)) for tp, o in starts.items()}

    def positions(self) -> dict[PartitionId, int]:
        return {tp: p.offset for tp, p in self._positions.items()}

    def _list_offsets(self, tps: list[PartitionId], leaders: dict[PartitionId, int]) -> dict[PartitionId, int]:
        by_node: dict[int, dict[str, list[int]]] = {}
        for t, p in tps:
            by_node.setdefault(leaders[(t, p)], {}).setdefault(t, []).append(p)
        out: dict[PartitionId, int] = {}
        for node, topics in by_node.items():
            r = self._nodes.conn(node).call(API_LIST_OFFSETS, LIST_OFFSETS_V,
                                            list_offsets_request(topics, OFFSET_EARLIEST))
            out.update(list_offsets_answer(r))
        return out

    def send(self) -> None:
        """Send a Fetch to each leader for its partitions at their positions (unless one is out already)."""
        if self._in_flight:
            return
        by_node: dict[int, dict[str, list[tuple[int, int]]]] = {}
        for (t, p), pos in self._positions.items():
            by_node.setdefault(pos.leader, {}).setdefault(t, []).append((p, pos.offset))
        for node, topics in by_node.items():
            body = (I32.pack(-1) + I32.pack(self.wait_ms) + I32.pack(1) + I32.pack(FETCH_BYTES_MAX)
                    + I8.pack(ISOLATION_READ_COMMITTED) + I32.pack(0) + I32.pack(-1)
                    + _array([_string(t) + _array([I32.pack(p) + I32.pack(-1) + I64.pack(o) + I64.pack(-1)
                                                   + I32.pack(PARTITION_FETCH_BYTES) for p, o in ps])
                              for t, ps in topics.items()])
                    + _array([]) + _string(""))
            self._nodes.conn(node).send(API_FETCH, FETCH_V, body)
            self._in_flight.append(node)

    def drain(self) -> None:
        """Read and forget the answers of the Fetch requests out (before the positions change)."""
        for node in self._in_flight:
            self._nodes.conn(node).receive()
        self._in_flight = []

    def receive(self) -> dict[PartitionId, list[Piece]]:
        """The answers of the Fetch requests sent: each partition's pieces for the target, in order; the positions
        move past them (and past markers and aborted batches)."""
        out: dict[PartitionId, list[Piece]] = {}
        moved = False
        nodes, self._in_flight = self._in_flight, []
        for node in nodes:
            try:
                answer = list(fetch_answer(self._nodes.conn(node).receive()))
            except WireError as e:
                raise WireError(f"{e} (from the source)") from None
            for topic, partition, code, _high, _stable, aborts, records in answer:
                pos = self._positions.get((topic, partition))
                if pos is None:
                    continue
                if code == OFFSET_OUT_OF_RANGE:
                    # gone by retention, as librdkafka's auto.offset.reset=earliest: from the first offset kept
                    pos.offset = self._list_offsets([(topic, partition)], {(topic, partition): pos.leader})[
                        (topic, partition)]
                    continue
                if code in _LEADER_MOVED:
                    moved = True
                    continue
                if code:
                    raise WireError(f"Fetch {topic} [{partition}] from the source: {error_text(code)}")
                pos.pending_aborts.extend(aborts)
                if records is not None and len(records):
                    pieces = _pieces(pos, records)
                    if pieces:
                        out.setdefault((topic, partition), []).extend(pieces)
        if moved:
            leaders, _ = self._nodes.metadata({t for t, _ in self._positions})
            for tp, pos in self._positions.items():
                if leaders.get(tp, -1) >= 0:
                    pos.leader = leaders[tp]
        return out

    def close(self) -> None:
        self._nodes.close()


def _pieces(pos: _Part, raw: memoryview) -> list[Piece]:
    """The batches of one partition's fetched records, for the target; moves ``pos`` past what it read."""
    out: list[Piece] = []
    for header, batch in kept_batches(pos, raw):
        base_offset, _length, _epoch, _magic, crc, attributes, last_delta = header[:7]
        count = header[12]
        # the CRC is computed again for the target, so a batch damaged on the way here must be caught now
        if _fast.crc32c(batch[ATTRIBUTES_AT:]) != crc:
            raise WireError(f"the record batch at offset {base_offset} on the source fails its CRC")
        if not attributes & _REFUSED_ATTRIBUTES and count == last_delta + 1 and base_offset >= pos.offset and count:
            out.append(Piece(bytearray(batch), count, range(base_offset, base_offset + count)))
        elif count:
            out.extend(_rebuilt(batch, pos.offset))
        pos.offset = base_offset + last_delta + 1
    return out


def _rebuilt(batch: memoryview, position: int) -> list[Piece]:
    """The records of ``batch`` at or after ``position`` in new uncompressed batches (see the module header)."""
    from loosely.protocol.errors import CorruptRecordError  # noqa: PLC0415 - the codecs, when needed
    from loosely.protocol.records import decode_records, read_header  # noqa: PLC0415

    try:
        records = [r for r in decode_records(batch, 0, read_header(batch), DECOMPRESSED_BYTES_MAX)
                   if r.offset >= position]
    except CorruptRecordError as e:
        raise WireError(f"a record batch on the source does not decode: {e}") from None
    out: list[Piece] = []
    chunk: list[Record] = []
    size = BATCH_HEADER_BYTES
    for r in records:
        # at most what the record takes in a batch: its framing (5 varints, attributes) and its fields
        took = 30 + len(r.key or b"") + len(r.value or b"") + sum(10 + len(k) + len(v or b"") for k, v in r.headers)
        if chunk and size + took > REBUILT_BATCH_BYTES_MAX:
            out.append(_rebuilt_piece(chunk))
            chunk, size = [], BATCH_HEADER_BYTES
        chunk.append(r)
        size += took
    if chunk:
        out.append(_rebuilt_piece(chunk))
    return out


def _rebuilt_piece(records: list[Record]) -> Piece:
    from loosely.protocol.records import NewRecord, build_batch  # noqa: PLC0415

    batch = build_batch([NewRecord(r.key, r.value, r.timestamp, r.headers) for r in records])
    return Piece(bytearray(batch), len(records), [r.offset for r in records])


def stamp(batch: bytearray, producer_id: int, epoch: int, sequence: int) -> None:
    """Make ``batch`` this producer's: base offset 0, no leader epoch, the producer's id, epoch and sequence, the
    transactional bit; then its CRC-32C again (it covers the attributes to the end)."""
    view = memoryview(batch)
    I64.pack_into(batch, 0, 0)
    I32.pack_into(batch, LEADER_EPOCH_AT, -1)
    attributes = I16.unpack_from(batch, ATTRIBUTES_AT)[0]
    I16.pack_into(batch, ATTRIBUTES_AT, (attributes & _KEPT_ATTRIBUTES) | TRANSACTIONAL_BIT)
    _PRODUCER.pack_into(batch, PRODUCER_AT, producer_id, epoch, sequence)
    U32.pack_into(batch, CRC_AT, _fast.crc32c(view[ATTRIBUTES_AT:]))


def _progress_batch(records: list[tuple[bytes, bytes]]) -> bytearray:
    """An uncompressed batch of the progress records ``(key, value)`` (offsets 0..n-1, one timestamp)."""
    from loosely.protocol.primitives import write_varint  # noqa: PLC0415

    body = bytearray()
    for i, (key, value) in enumerate(records):
        rec = bytearray(b"\0")  # attributes
        write_varint(rec, 0)  # timestamp delta
        write_varint(rec, i)  # offset delta
        write_varint(rec, len(key))
        rec += key
        write_varint(rec, len(value))
        rec += value
        write_varint(rec, 0)  # headers
        write_varint(body, len(rec))
        body += rec
    return bytearray(make_batch(bytes(body), len(records), 0, int(time.time() * 1000)))


class TxnTarget:
    """The target's transactional producer over plain connections (see the module header); one thread."""

    def __init__(self, bootstrap: str, transactional_id: str, *, transaction_timeout_ms: int, timeout_s: float) -> None:
        self.transactional_id = transactional_id
        self.timeout_s = timeout_s
        self._nodes = _Nodes(bootstrap, timeout_s)
        self._leaders: dict[PartitionId, int] = {}
        self._sequences: dict[PartitionId, int] = {}
        self._written: set[PartitionId] = set()  # the partitions that took a batch of this producer epoch
        self._coordinator: Connection | None = None
        self.producer_id, self.epoch = -1, -1
        deadline = time.monotonic() + timeout_s
        body = _string(transactional_id) + I32.pack(transaction_timeout_ms)
        try:
            r = self._ask_coordinator(API_INIT_PRODUCER_ID, INIT_PRODUCER_ID_V, body, deadline)
        except (OSError, WireError) as e:
            self.close()
            raise TxnUnavailable(f"InitProducerId: {e}") from None
        r.i32()  # throttle_time_ms
        code = r.i16()
        if code:
            self.close()
            raise TxnUnavailable(f"InitProducerId: {error_text(code)}")
        self.producer_id, self.epoch = r.i64(), r.i16()

    def _find_coordinator(self, deadline: float) -> Connection:
        while True:
            conn = self._nodes.any()
            try:
                r = conn.call(API_FIND_COORDINATOR, FIND_COORDINATOR_V,
                              _string(self.transactional_id) + I8.pack(TRANSACTION_COORDINATOR))
            finally:
                conn.close()
            r.i32()  # throttle_time_ms
            code = r.i16()
            r.nullable_string()  # error_message
            node, host, port = r.i32(), r.nullable_string() or "", r.i32()
            if code == NONE:
                return Connection(host, port, self.timeout_s)
            if code not in _ASK_AGAIN or time.monotonic() > deadline:
                raise WireError(f"FindCoordinator {self.transactional_id} (node {node}): {error_text(code)}")
            time.sleep(RETRY_BACKOFF_S)

    def _ask_coordinator(self, api_key: int, version: int, body: bytes, deadline: float) -> _Reader:
        """The coordinator's answer to a request whose answer starts with throttle time and an error code, asked
        again while the coordinator moves or the previous transaction completes; the reader is at its start."""
        while True:
            if self._coordinator is None:
                self._coordinator = self._find_coordinator(deadline)
            r = self._coordinator.call(api_key, version, body)
            start = r.pos
            r.i32()  # throttle_time_ms
            code = r.i16() if api_key != API_ADD_PARTITIONS_TO_TXN else _add_partitions_code(r)
            r.pos = start
            if code not in _ASK_AGAIN or time.monotonic() > deadline:
                return r
            if code in _COORDINATOR_MOVED:
                self._coordinator.close()
                self._coordinator = None
            time.sleep(RETRY_BACKOFF_S)

    def _leaders_of(self, tps: Iterable[PartitionId]) -> None:
        missing = [tp for tp in tps if tp not in self._leaders]
        if missing:
            self._leaders.update(self._nodes.leaders(missing, "target"))

    def commit(self, pieces: dict[PartitionId, list[Piece]], progress: PartitionId,
               progress_records: list[tuple[bytes, bytes]]) -> dict[PartitionId, list[int]]:
        """Write ``pieces`` and the progress records in one transaction and commit it; each piece's base offset on
        the target. Raises WireError (the transaction is left for the coordinator to abort)."""
        deadline = time.monotonic() + self.timeout_s
        everything = dict(pieces)
        if progress_records:
            batch = _progress_batch(progress_records)
            everything[progress] = [Piece(batch, len(progress_records), range(0)), *everything.get(progress, [])]
        self._leaders_of(everything)
        self._add_partitions(list(everything), deadline)
        batches: dict[PartitionId, list[bytearray]] = {}
        for tp, ps in everything.items():
            for piece in ps:
                seq = self._sequences.get(tp, 0)
                stamp(piece.batch, self.producer_id, self.epoch, seq)
                self._sequences[tp] = (seq + piece.count) % 0x8000_0000
            batches[tp] = [piece.batch for piece in ps]
        bases: dict[PartitionId, list[int]] = {tp: [] for tp in batches}
        left = batches
        while left:
            # a partition that has taken nothing from this producer yet gets one batch a round: it would take any
            # sequence number first, so a batch sent behind a refused first one could land before it
            sending = {tp: bs if tp in self._written else bs[:1] for tp, bs in left.items()}
            answers = self._produce(sending)
            after: dict[PartitionId, list[bytearray]] = {}
            refused: list[PartitionId] = []
            why = ""
            for tp, sent in sending.items():
                taken = 0
                for code, base, message in answers.get(tp, []):
                    if code != NONE:
                        # the batches from the first refused one on go again, with the same sequence numbers (the
                        # ones after it cannot have landed: the partition takes a producer's sequences in order)
                        if code not in _PRODUCE_AGAIN:
                            raise WireError(f"Produce {tp[0]} [{tp[1]}] on the target: {message or error_text(code)}"
                                            f" (batch {len(bases[tp]) + 1} of {len(batches[tp])} of the transaction)")
                        refused.append(tp)
                        why = f"{tp[0]} [{tp[1]}]: {error_text(code)}"
                        break
                    bases[tp].append(base)
                    self._written.add(tp)
                    taken += 1
                else:
                    if taken < len(sent):
                        raise WireError(f"Produce {tp[0]} [{tp[1]}] on the target: the broker did not answer for it")
                if left[tp][taken:]:
                    after[tp] = left[tp][taken:]
            if refused:
                if time.monotonic() > deadline:
                    raise WireError(f"Produce on the target, still refused when the time was up: {why}")
                time.sleep(LEADER_BACKOFF_S)
                for tp in refused:
                    self._leaders.pop(tp, None)
                self._leaders_of(refused)
            left = after
        body = _string(self.transactional_id) + I64.pack(self.producer_id) + I16.pack(self.epoch) + I8.pack(1)
        r = self._ask_coordinator(API_END_TXN, END_TXN_V, body, deadline)
        r.i32()  # throttle_time_ms
        code = r.i16()
        if code:
            raise WireError(f"EndTxn (commit): {error_text(code)}")
        return bases

    def _produce(self, batches: dict[PartitionId, list[bytearray]]) -> dict[PartitionId, list[tuple[int, int,
                                                                                                   str | None]]]:
        """The k-th batch of each partition in the k-th request to its leader, every request sent before any answer
        is read; each batch's ``(error code, base offset, error message)``, in order."""
        rounds: dict[int, list[dict[str, list[tuple[int, bytearray]]]]] = {}
        for tp, bs in batches.items():
            node_rounds = rounds.setdefault(self._leaders[tp], [])
            for k, batch in enumerate(bs):
                if k == len(node_rounds):
                    node_rounds.append({})
                node_rounds[k].setdefault(tp[0], []).append((tp[1], batch))
        for node, node_rounds in rounds.items():
            conn = self._nodes.conn(node)
            for request in node_rounds:
                conn.send(API_PRODUCE, PRODUCE_V, self._produce_body(request))
        out: dict[PartitionId, list[tuple[int, int, str | None]]] = {}
        for node, node_rounds in rounds.items():
            conn = self._nodes.conn(node)
            for _ in node_rounds:
                for tp, code, base, message in _produce_answer(conn.receive()):
                    out.setdefault(tp, []).append((code, base, message))
        return out

    def _produce_body(self, request: dict[str, list[tuple[int, bytearray]]]) -> bytes:
        parts: list[bytes | bytearray] = [_string(self.transactional_id), I16.pack(-1),
                                          I32.pack(int(self.timeout_s * 1000)), I32.pack(len(request))]
        for topic, batches in request.items():
            parts += [_string(topic), I32.pack(len(batches))]
            for partition, batch in batches:
                parts += [I32.pack(partition), I32.pack(len(batch)), batch]
        return b"".join(parts)

    def _add_partitions(self, tps: list[PartitionId], deadline: float) -> None:
        topics: dict[str, list[int]] = {}
        for t, p in tps:
            topics.setdefault(t, []).append(p)
        body = (_string(self.transactional_id) + I64.pack(self.producer_id) + I16.pack(self.epoch)
                + _array([_string(t) + _array([I32.pack(p) for p in ps]) for t, ps in topics.items()]))
        r = self._ask_coordinator(API_ADD_PARTITIONS_TO_TXN, ADD_PARTITIONS_TO_TXN_V, body, deadline)
        r.i32()  # throttle_time_ms
        code = _add_partitions_code(r)
        if code:
            raise WireError(f"AddPartitionsToTxn: {error_text(code)}")

    def close(self) -> None:
        if self._coordinator is not None:
            self._coordinator.close()
            self._coordinator = None
        self._nodes.close()


def _add_partitions_code(r: _Reader) -> int:
    """The first partition error of an AddPartitionsToTxn v2 answer that is not OPERATION_NOT_ATTEMPTED (what the
    other partitions get when one fails); 0 if none."""
    first = NONE
    for _ in range(r.count()):
        r.nullable_string()
        for _ in range(r.count()):
            r.i32()
            code = r.i16()
            if code not in (NONE, OPERATION_NOT_ATTEMPTED) and first == NONE:
                first = code
    return first


def _produce_answer(r: _Reader) -> list[tuple[PartitionId, int, int, str | None]]:
    """``((topic, partition), error code, base offset, error message)`` of each partition in a Produce v8 answer."""
    out = []
    for _ in range(r.count()):
        topic = r.nullable_string() or ""
        for _ in range(r.count()):
            partition, code = r.i32(), r.i16()
            base = r.i64()
            r.i64()  # log_append_time_ms
            r.i64()  # log_start_offset
            for _ in range(r.count()):  # record_errors
                r.i32()
                r.nullable_string()
            out.append(((topic, partition), code, base, r.nullable_string()))
    return out
