"""A small blocking Kafka client for the command line's two hot paths: plain produce and plain consume.

Why it exists: ``confluent-kafka`` hands every message to Python as an object (and takes one per ``produce``),
which holds ``loosely produce``/``consume`` to about a third of kcat's throughput on the talk's example. Here whole
input chunks become record batches and whole fetched batches become output text in :mod:`loosely.clients._fast`
(C). Start-up counts too (kcat starts in milliseconds): this module imports neither confluent-kafka nor kio (whose
import pulls in hypothesis where it is installed), so it writes and reads its four requests itself, in fixed
non-flexible versions that every Kafka since 2.3 and loosely's broker serve::

    Metadata v8    topics [name], allow_auto_topic_creation, include cluster/topic authorized operations
    Produce v8     transactional_id, acks, timeout_ms, [topic, [partition, records]]
    Fetch v11      replica_id, max_wait_ms, min_bytes, max_bytes, isolation_level, session id/epoch,
                   [topic, [partition, current_leader_epoch, fetch_offset, log_start_offset, partition_max_bytes]],
                   forgotten topics, rack_id
    ListOffsets v5 replica_id, isolation_level, [topic, [partition, current_leader_epoch, timestamp]]

(request header v1: api_key INT16, api_version INT16, correlation_id INT32, client_id STRING; response header v0:
correlation_id INT32; STRING = INT16 length + bytes, BYTES = INT32 length, ARRAY = INT32 count, -1 = null.) The
answers are read with :class:`_Reader`, field by field as Apache Kafka's message JSON declares them. The primitives
(and the batch header's layout) are :mod:`loosely.protocol.primitives`' and :mod:`loosely.protocol.batch_layout`'s,
which import neither kio nor the codecs.

It only takes command lines it can serve exactly as kcat would (the CLI decides: no ``-X`` properties but the
partitioner and compression, no JSON, no timestamps in ``-o``, no groups, no transactions, no tee). Anything it cannot
decide before the first byte is sent or printed (an unknown topic, an offset out of range, a broker it cannot reach)
raises :class:`Unsupported` and the caller runs the confluent-kafka path instead, which has kcat's librdkafka
semantics. Failures after that point are :class:`WireError`.

Partitioning matches librdkafka's: keyed records by murmur2 (``murmur2_random``, loosely's default) or CRC32
(``consistent_random``, kcat's), keyless records to one random partition per input chunk (librdkafka's sticky
partitioning does the same within ``sticky.partitioning.linger.ms``). Reads are read_committed (librdkafka's
default): aborted transactions and control batches are skipped.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Final, cast

from loosely.clients import _fast
from loosely.protocol.batch_layout import (
    ATTRIBUTES_AT,
    BATCH_HEADER,
    BATCH_HEADER_BYTES,
    CODEC_MASK,
    CONTROL_BIT,
    CONTROL_KEY,
    CRC_AT,
    LOG_OVERHEAD,
    MAGIC_V2,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
    ControlType,
)
from loosely.protocol.errors import CorruptRecordError
from loosely.protocol.primitives import I8, I16, I32, I64, U32, Reader, read_varint, write_varint
from loosely.protocol.primitives import array as _array
from loosely.protocol.primitives import string as _string

__all__ = ["ConsumeJob", "ProduceJob", "Unsupported", "WireError", "consume", "fetch_answer", "produce",
           "records_section"]

API_PRODUCE: Final = 0
API_FETCH: Final = 1
API_LIST_OFFSETS: Final = 2
API_METADATA: Final = 3
METADATA_V: Final = 8
PRODUCE_V: Final = 8
FETCH_V: Final = 11
LIST_OFFSETS_V: Final = 5
CLIENT_ID: Final = b"loosely"
# librdkafka's defaults where kcat's behaviour depends on them
FETCH_WAIT_MS: Final = 500  # fetch.wait.max.ms
REQUEST_TIMEOUT_MS: Final = 30_000  # request.timeout.ms
ACKS_ALL: Final = -1  # acks=all
# Our own limits: a fetch answer and a produce request stay far below socket.request.max.bytes (100 MiB)
FETCH_BYTES_MAX: Final = 52_428_800
PARTITION_FETCH_BYTES_MAX: Final = 8_388_608
INPUT_CHUNK_BYTES: Final = 1 << 19  # one batch per partition per chunk stays under message.max.bytes (1 MiB)
RECORD_BYTES_MAX: Final = 32 * INPUT_CHUNK_BYTES  # one input record larger than this is refused
PRODUCE_IN_FLIGHT_MAX: Final = 5  # max.in.flight.requests.per.connection
RESPONSE_FRAME_BYTES_MAX: Final = 256 * 1024 * 1024
LARGE_FRAME_BYTES: Final = 1 << 16  # frames from this size on are sent and received without extra copies
DECOMPRESSED_BYTES_MAX: Final = 256 * 1024 * 1024
OFFSET_EARLIEST: Final = -2
OFFSET_LATEST: Final = -1
ISOLATION_READ_COMMITTED: Final = 1
LEADER_NOT_AVAILABLE: Final = 5

_CRC_FROM: Final = ATTRIBUTES_AT  # the CRC covers attributes .. end of batch
_ATTR_CODEC: Final = CODEC_MASK
_ATTR_LOG_APPEND_TIME: Final = TIMESTAMP_TYPE_BIT
_ATTR_TRANSACTIONAL: Final = TRANSACTIONAL_BIT
_ATTR_CONTROL: Final = CONTROL_BIT
_CONTROL_ABORT: Final = ControlType.ABORT
# lz4 is left to librdkafka: cramjam writes block-linked LZ4 frames, which Apache Kafka refuses (it reads only
# frames of independent blocks), so a batch compressed here would be rejected by a real cluster.
CODECS: Final = {"none": 0, "gzip": 1, "snappy": 2, "zstd": 4}

# format token kinds understood by _fast.format_records
TOKEN_KINDS: Final = {"str": 0, "s": 1, "S": 2, "R": 3, "k": 4, "K": 5, "t": 6, "p": 7, "o": 8, "T": 9, "h": 10}

# the broker errors kcat users meet (librdkafka's rd_kafka_err2str wording)
_ERRORS: Final = {
    1: "Broker: Offset out of range",
    2: "Broker: Corrupt message",
    3: "Broker: Unknown topic or partition",
    5: "Broker: Leader not available",
    6: "Broker: Not leader for partition",
    7: "Broker: Request timed out",
    10: "Broker: Message size too large",
    14: "Broker: Coordinator load in progress",
    15: "Broker: Coordinator not available",
    16: "Broker: Not coordinator",
    17: "Broker: Invalid topic",
    18: "Broker: Message batch larger than configured server segment size",
    19: "Broker: Not enough in-sync replicas",
    22: "Broker: Specified group generation id is not valid",
    23: "Broker: Inconsistent group protocol",
    24: "Broker: Invalid group.id",
    25: "Broker: Unknown member",
    26: "Broker: Invalid session timeout",
    27: "Broker: Group rebalance in progress",
    29: "Broker: Topic authorization failed",
    30: "Broker: Group authorization failed",
    45: "Broker: Broker received an out of order sequence number",
    46: "Broker: Broker received a duplicate sequence number",
    47: "Broker: Producer attempted an operation with an old epoch",
    48: "Broker: Producer attempted a transactional operation in an invalid state",
    51: "Broker: Producer attempted to update a transaction while another concurrent operation on the same "
        "transaction was ongoing",
    82: "Broker: Static consumer fenced by other consumer with same group.instance.id",
    87: "Broker: Invalid record",
}


def error_text(code: int) -> str:
    return _ERRORS.get(code, f"Broker: error {code}")


class Unsupported(Exception):
    """The fast path cannot serve this command line exactly; nothing was sent or printed yet."""


class WireError(Exception):
    """A failure after the fast path started sending or printing."""


# --- wire encoding: the primitives are loosely.protocol.primitives' ---------------------------------------------

class _Reader(Reader):
    """Reads a non-flexible response body field by field; any overrun is a WireError, text is never refused."""

    __slots__ = ()
    error = WireError
    text_errors = "replace"


class Connection:
    """One blocking connection; requests may be pipelined (answers come back in order)."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.correlation = 0
        self.pending: deque[int] = deque()
        self.buf = bytearray()

    def send(self, api_key: int, version: int, body: bytes) -> None:
        self.correlation += 1
        header = I16.pack(api_key) + I16.pack(version) + I32.pack(self.correlation) + _string(CLIENT_ID)
        head = I32.pack(len(header) + len(body)) + header
        if len(body) < LARGE_FRAME_BYTES:
            self.sock.sendall(head + body)
        else:  # not copied once more to put the header in front (the mirror's Produce requests are megabytes)
            self.sock.sendall(head)
            self.sock.sendall(body)
        self.pending.append(self.correlation)

    def _read(self, n: int) -> None:
        while len(self.buf) < n:
            data = self.sock.recv(max(1 << 20, n - len(self.buf)))
            if not data:
                raise WireError("the broker closed the connection")
            self.buf += data

    def receive(self) -> _Reader:
        """The next answer's body (after the correlation id)."""
        correlation = self.pending.popleft()
        self._read(4)
        size = I32.unpack_from(self.buf, 0)[0]
        if not 4 <= size <= RESPONSE_FRAME_BYTES_MAX:
            raise WireError(f"response frame of {size} bytes")
        if len(self.buf) >= 4 + size or size < LARGE_FRAME_BYTES:
            self._read(4 + size)
            frame: bytes | bytearray = bytes(self.buf[4 : 4 + size])
            del self.buf[: 4 + size]
        else:  # a large answer (a fetch's records) is received into its own buffer, not copied about
            frame = bytearray(size)
            view = memoryview(frame)
            have = len(self.buf) - 4
            view[:have] = memoryview(self.buf)[4:]
            self.buf.clear()
            while have < size:
                got = self.sock.recv_into(view[have:])
                if not got:
                    raise WireError("the broker closed the connection")
                have += got
        # a bytearray reads as bytes here: the fields are unpacked, decoded or viewed, never kept as bytes
        r = _Reader(cast("bytes", frame))
        if r.i32() != correlation:
            raise WireError("a response does not answer the request it follows")
        return r

    def call(self, api_key: int, version: int, body: bytes) -> _Reader:
        self.send(api_key, version, body)
        return self.receive()

    def close(self) -> None:
        self.sock.close()


def metadata_answer(r: _Reader) -> tuple[dict[int, tuple[str, int]], dict[str, tuple[int, dict[int, int]]]]:
    """A Metadata v8 answer: the brokers (node -> host, port), and each topic's error code and partition leaders."""
    r.i32()  # throttle_time_ms
    brokers = {}
    for _ in range(r.count()):
        node, host, port = r.i32(), r.nullable_string(), r.i32()
        r.nullable_string()  # rack
        brokers[node] = (host or "", port)
    r.nullable_string()  # cluster_id
    r.i32()  # controller_id
    topics: dict[str, tuple[int, dict[int, int]]] = {}
    for _ in range(r.count()):
        error, name = r.i16(), r.nullable_string() or ""
        r.i8()  # is_internal
        leaders: dict[int, int] = {}
        for _ in range(r.count()):
            r.i16()  # partition error
            partition, leader = r.i32(), r.i32()
            r.i32()  # leader_epoch
            for _ in range(3):  # replicas, isr, offline replicas
                for _ in range(r.count()):
                    r.i32()
            leaders[partition] = leader
        r.i32()  # topic_authorized_operations
        topics[name] = (error, leaders)
    return brokers, topics


@dataclass
class Cluster:
    bootstrap: str
    timeout_s: float
    brokers: dict[int, tuple[str, int]] = field(default_factory=dict)
    conns: dict[int, Connection] = field(default_factory=dict)

    def metadata(self, topic: str, allow_auto_create: bool) -> tuple[int, dict[int, int]]:
        """``(topic error code, {partition: leader})`` from the first bootstrap broker that answers."""
        self.brokers, topics = self.bootstrap_metadata(_array([_string(topic)]) + bytes([allow_auto_create, 0, 0]))
        if topic not in topics:
            raise Unsupported(f"metadata did not mention {topic}")
        return topics[topic]

    def bootstrap_metadata(self, body: bytes) -> tuple[dict[int, tuple[str, int]],
                                                         dict[str, tuple[int, dict[int, int]]]]:
        """A Metadata v8 request (``body``) answered by the first bootstrap broker that answers
        (:func:`metadata_answer`); Unsupported when none does."""
        last: Exception | None = None
        for hostport in self.bootstrap.split(","):
            host, _, port = hostport.strip().rpartition(":")
            try:
                conn = Connection(host.strip("[]") or "127.0.0.1", int(port or 9092), self.timeout_s)
            except (OSError, ValueError) as e:
                last = e
                continue
            try:
                return metadata_answer(conn.call(API_METADATA, METADATA_V, body))
            except (OSError, WireError) as e:
                last = e
            finally:
                conn.close()
        raise Unsupported(f"no bootstrap broker answered: {last}")

    def conn(self, node: int) -> Connection:
        c = self.conns.get(node)
        if c is None:
            if node not in self.brokers:
                raise Unsupported(f"broker {node} is not in the metadata")
            host, port = self.brokers[node]
            try:
                c = Connection(host, port, self.timeout_s)
            except OSError as e:
                raise Unsupported(f"cannot reach broker {node}: {e}") from None
            self.conns[node] = c
        return c

    def close(self) -> None:
        for c in self.conns.values():
            c.close()
        self.conns.clear()

    def topic_leaders(self, topic: str, allow_auto_create: bool) -> dict[int, int]:
        """``{partition: leader}``, retrying briefly while a just-created topic has no leader yet."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            code, leaders = self.metadata(topic, allow_auto_create)
            if code == 0 and leaders and all(v >= 0 for v in leaders.values()):
                return leaders
            if code not in (LEADER_NOT_AVAILABLE, 0) or time.monotonic() > deadline:
                raise Unsupported(f"topic {topic}: {error_text(code)}")
            time.sleep(0.05)


# --- produce ----------------------------------------------------------------------------------------------------


@dataclass
class ProduceJob:
    bootstrap: str
    topic: str
    delim: bytes
    key_delim: bytes | None
    fixed_key: bytes | None
    null_empty: bool
    headers: list[tuple[str, bytes | None]]
    partition: int  # -1: the partitioner decides
    partitioner: str  # murmur2_random | consistent_random
    codec: str  # none | gzip | snappy | lz4 | zstd
    limit: int  # 0: no limit
    timeout_s: float
    input_fd: int = 0


def encode_headers(headers: list[tuple[str, bytes | None]]) -> bytes:
    """The header section every produced record carries (varint count, then key/value pairs)."""
    out = bytearray()
    write_varint(out, len(headers))
    for name, value in headers:
        raw = name.encode()
        write_varint(out, len(raw))
        out += raw
        if value is None:
            write_varint(out, -1)
        else:
            write_varint(out, len(value))
            out += value
    return bytes(out)


def make_batch(records: bytes, count: int, codec: int, now_ms: int) -> bytes:
    """A magic-v2 batch around an encoded records section (offsets 0..count-1, one timestamp)."""
    if codec:
        from loosely.protocol.compression import Codec, compress  # noqa: PLC0415 - only when compressing

        body = compress(Codec(codec), records)
    else:
        body = records
    header = bytearray(BATCH_HEADER_BYTES)
    BATCH_HEADER.pack_into(header, 0, 0, BATCH_HEADER_BYTES - LOG_OVERHEAD + len(body), -1, MAGIC_V2, 0, codec,
                           count - 1, now_ms, now_ms, -1, -1, -1, count)
    crc = _fast.crc32c(body, _fast.crc32c(memoryview(header)[_CRC_FROM:]))
    U32.pack_into(header, CRC_AT, crc)
    return bytes(header) + body


def _chunks(fd: int, delim: bytes) -> Iterator[bytes]:
    """Input in blocks ending at a delimiter (the last block may not)."""
    rest = b""
    while True:
        data = os.read(fd, INPUT_CHUNK_BYTES)
        if not data:
            if rest:
                yield rest
            return
        buf = rest + data if rest else data
        cut = buf.rfind(delim)
        if cut < 0:
            if len(buf) > RECORD_BYTES_MAX:
                raise WireError(f"a single message is larger than {RECORD_BYTES_MAX} bytes")
            rest = buf
            continue
        end = cut + len(delim)
        rest = buf[end:]
        yield buf[:end]


def produce(job: ProduceJob, on_failure: Callable[[str, int], None]) -> int:
    """Send the input; returns messages sent. ``on_failure(error text, messages)`` reports failed batches."""
    mode = {"murmur2_random": 1, "consistent_random": 2}.get(job.partitioner)
    if mode is None or job.codec not in CODECS:
        raise Unsupported(f"partitioner {job.partitioner} / codec {job.codec}")
    cluster = Cluster(job.bootstrap, job.timeout_s)
    try:
        leaders = cluster.topic_leaders(job.topic, allow_auto_create=True)
        if job.partition != -1 and job.partition not in leaders:
            raise Unsupported(f"partition {job.partition} does not exist")
        conns = {node: cluster.conn(node) for node in set(leaders.values())}
        return _produce_loop(job, mode, leaders, conns, on_failure)
    finally:
        cluster.close()


def _produce_request(topic: str, batches: list[tuple[int, bytes]]) -> bytes:
    parts = [I32.pack(p) + I32.pack(len(b)) + b for p, b in batches]
    return (_string(None) + I16.pack(ACKS_ALL) + I32.pack(REQUEST_TIMEOUT_MS)
            + _array([_string(topic) + _array(parts)]))


def _produce_errors(r: _Reader) -> list[tuple[int, int]]:
    """``(partition, error code)`` of the failed partitions in a Produce v8 answer."""
    failed = []
    for _ in range(r.count()):
        r.nullable_string()
        for _ in range(r.count()):
            partition, code = r.i32(), r.i16()
            r.i64()  # base_offset
            r.i64()  # log_append_time_ms
            r.i64()  # log_start_offset
            for _ in range(r.count()):  # record_errors
                r.i32()
                r.nullable_string()
            r.nullable_string()  # error_message
            if code:
                failed.append((partition, code))
    return failed


def _produce_loop(
    job: ProduceJob, mode: int, leaders: dict[int, int], conns: dict[int, Connection],
    on_failure: Callable[[str, int], None],
) -> int:
    n = len(leaders)
    headers = encode_headers(job.headers)
    codec = CODECS[job.codec]
    fixed = job.partition if job.partition != -1 else 0
    use_mode = 0 if job.partition != -1 else mode
    sent = 0
    in_flight: dict[int, deque[dict[int, int]]] = {node: deque() for node in conns}
    import random  # noqa: PLC0415 - the produce path only: a view runner's batch consumer imports this module

    rng = random.Random()

    def settle(node: int) -> None:
        counts = in_flight[node].popleft()
        for partition, code in _produce_errors(conns[node].receive()):
            on_failure(error_text(code), counts.get(partition, 0))

    for chunk in _chunks(job.input_fd, job.delim):
        remaining = job.limit - sent if job.limit > 0 else -1
        parts, counts, consumed = _fast.encode_records(
            chunk, job.delim, job.key_delim, job.fixed_key, job.null_empty, headers, n, use_mode, fixed,
            rng.randrange(n), remaining,
        )
        now_ms = int(time.time() * 1000)
        per_node: dict[int, list[tuple[int, bytes]]] = {}
        per_node_counts: dict[int, dict[int, int]] = {}
        for p, records in enumerate(parts):
            if records is None:
                continue
            node = leaders[p]
            per_node.setdefault(node, []).append((p, make_batch(records, counts[p], codec, now_ms)))
            per_node_counts.setdefault(node, {})[p] = counts[p]
        for node, batches in per_node.items():
            while len(in_flight[node]) >= PRODUCE_IN_FLIGHT_MAX:
                settle(node)
            conns[node].send(API_PRODUCE, PRODUCE_V, _produce_request(job.topic, batches))
            in_flight[node].append(per_node_counts[node])
        sent += consumed
        if job.limit > 0 and sent >= job.limit:
            break
    for node in conns:
        while in_flight[node]:
            settle(node)
    return sent


# --- consume ----------------------------------------------------------------------------------------------------


@dataclass
class ConsumeJob:
    bootstrap: str
    topic: str
    partition: int  # -1: all
    offset: int  # -2 beginning, -1 end, >= 0 absolute
    tail: int  # > 0: start this many before the end of each partition instead
    exit_eof: bool
    limit: int  # 0: no limit
    tokens: list[tuple[int, bytes]]
    null_str: bytes | None
    timeout_s: float


@dataclass
class _Part:
    partition: int
    leader: int
    offset: int
    aborted: set[int] = field(default_factory=set)
    pending_aborts: list[tuple[int, int]] = field(default_factory=list)
    done: bool = False
    at_eof: bool = False


def list_offsets_request(topics: dict[str, list[int]], when: int) -> bytes:
    """A ListOffsets v5 body (read_committed) asking each partition of ``topics`` for ``when``."""
    return I32.pack(-1) + I8.pack(ISOLATION_READ_COMMITTED) + _array([
        _string(t) + _array([I32.pack(p) + I32.pack(-1) + I64.pack(when) for p in ps]) for t, ps in topics.items()])


def list_offsets_answer(r: _Reader) -> dict[tuple[str, int], int]:
    """``{(topic, partition): offset}`` of a ListOffsets v5 answer; WireError for a partition's error."""
    out: dict[tuple[str, int], int] = {}
    r.i32()  # throttle_time_ms
    for _ in range(r.count()):
        topic = r.nullable_string() or ""
        for _ in range(r.count()):
            partition, code = r.i32(), r.i16()
            r.i64()  # timestamp
            offset = r.i64()
            r.i32()  # leader_epoch
            if code:
                raise WireError(f"ListOffsets {topic} [{partition}]: {error_text(code)}")
            out[(topic, partition)] = offset
    return out


def _list_offsets(cluster: Cluster, topic: str, parts: dict[int, int], when: int) -> dict[int, int]:
    by_node: dict[int, list[int]] = {}
    for p, node in parts.items():
        by_node.setdefault(node, []).append(p)
    out: dict[int, int] = {}
    for node, ps in by_node.items():
        try:
            got = list_offsets_answer(cluster.conn(node).call(API_LIST_OFFSETS, LIST_OFFSETS_V,
                                                              list_offsets_request({topic: ps}, when)))
        except WireError as e:
            raise Unsupported(str(e)) from None
        out.update((p, offset) for (_, p), offset in got.items())
    return out


def consume(job: ConsumeJob, out: IO[bytes], info: Callable[[int, str], None], running: Callable[[], bool]) -> int:
    """Print the partitions' records; returns how many were printed."""
    cluster = Cluster(job.bootstrap, job.timeout_s)
    try:
        leaders = cluster.topic_leaders(job.topic, allow_auto_create=False)
        if job.partition != -1:
            if job.partition not in leaders:
                raise Unsupported("no such partition")
            leaders = {job.partition: leaders[job.partition]}
        first = _list_offsets(cluster, job.topic, leaders, OFFSET_EARLIEST)
        last = _list_offsets(cluster, job.topic, leaders, OFFSET_LATEST)
        parts: dict[int, _Part] = {}
        for p, node in sorted(leaders.items()):
            if job.tail > 0:
                start = last[p] - job.tail
            elif job.offset == OFFSET_EARLIEST:
                start = first[p]
            elif job.offset == OFFSET_LATEST:
                start = last[p]
            else:
                start = job.offset
            if not first[p] <= start <= last[p]:
                raise Unsupported("start offset out of range (librdkafka's auto.offset.reset decides)")
            parts[p] = _Part(p, node, start)
        return _consume_loop(job, cluster, parts, out, info, running)
    finally:
        cluster.close()


def _fetch_request(topic: str, parts: list[_Part]) -> bytes:
    entries = [I32.pack(p.partition) + I32.pack(-1) + I64.pack(p.offset) + I64.pack(-1)
               + I32.pack(PARTITION_FETCH_BYTES_MAX) for p in parts]
    return (I32.pack(-1) + I32.pack(FETCH_WAIT_MS) + I32.pack(1) + I32.pack(FETCH_BYTES_MAX)
            + I8.pack(ISOLATION_READ_COMMITTED) + I32.pack(0) + I32.pack(-1)
            + _array([_string(topic) + _array(entries)]) + _array([]) + _string(""))


def fetch_answer(r: _Reader) -> Iterator[tuple[str, int, int, int, int, list[tuple[int, int]], memoryview | None]]:
    """A Fetch v11 answer's partitions: ``(topic, partition, error code, high watermark, last stable offset,
    aborted transactions as (first offset, producer id), records)``; WireError for a top-level error."""
    r.i32()  # throttle_time_ms
    code = r.i16()
    if code:
        raise WireError(f"Fetch: {error_text(code)}")
    r.i32()  # session_id
    for _ in range(r.count()):
        topic = r.nullable_string() or ""
        for _ in range(r.count()):
            partition, code = r.i32(), r.i16()
            high, stable = r.i64(), r.i64()
            r.i64()  # log_start_offset
            aborts = []
            for _ in range(r.count()):  # aborted transactions (null: -1)
                producer, first = r.i64(), r.i64()
                aborts.append((first, producer))
            r.i32()  # preferred_read_replica
            yield topic, partition, code, high, stable, aborts, r.nullable_bytes_view()


def _consume_loop(  # noqa: PLR0917 - the state consume() set up, passed on once
    job: ConsumeJob, cluster: Cluster, parts: dict[int, _Part], out: IO[bytes], info: Callable[[int, str], None],
    running: Callable[[], bool],
) -> int:
    topic_b = job.topic.encode()
    printed = 0
    stopped = 0
    while running():
        active: dict[int, list[_Part]] = {}
        for part in parts.values():
            if not part.done:
                active.setdefault(part.leader, []).append(part)
        if not active:
            break
        for node, ps in active.items():
            cluster.conn(node).send(API_FETCH, FETCH_V, _fetch_request(job.topic, ps))
        for node in active:
            for _topic, partition, code, high, stable, aborts, records in fetch_answer(cluster.conn(node).receive()):
                part = parts[partition]
                part.pending_aborts.extend(aborts)
                if code:
                    raise WireError(f"Topic {job.topic} [{part.partition}] error: {error_text(code)}")
                limit = job.limit - printed if job.limit > 0 else -1
                text, n = _render(job, part, records, topic_b, limit)
                if text:
                    out.write(text)
                printed += n
                if job.limit > 0 and printed >= job.limit:
                    out.flush()
                    return printed
                end = stable if stable >= 0 else high
                if part.offset >= end and not part.at_eof:
                    part.at_eof = True
                    if job.exit_eof:
                        part.done = True
                        stopped += 1
                    exiting = ": exiting" if job.exit_eof and stopped == len(parts) else ""
                    out.flush()
                    info(1, f"% Reached end of topic {job.topic} [{part.partition}] at offset {part.offset}"
                            f"{exiting}\n")
                elif part.offset < end:
                    part.at_eof = False
        out.flush()
    return printed


def kept_batches(part: _Part, raw: memoryview) -> Iterator[tuple[tuple[int, ...], memoryview]]:
    """The batches of a fetch answer's records section that a read_committed reader keeps, each with its header's
    fields (``BATCH_HEADER``'s order), from the one holding ``part.offset`` on. Transaction markers and the batches
    of aborted transactions are passed over (``part.offset`` moves past them); the caller moves ``part.offset``
    past each batch it takes. A partial batch at the end is left for the next fetch."""
    part.pending_aborts.sort()
    pos, end = 0, len(raw)
    while end - pos >= BATCH_HEADER_BYTES:
        header = BATCH_HEADER.unpack_from(raw, pos)
        base_offset, batch_length, _epoch, magic, _crc, attributes, last_delta = header[:7]
        producer_id = header[9]
        size = batch_length + LOG_OVERHEAD
        if magic != MAGIC_V2 or size < BATCH_HEADER_BYTES:
            raise WireError(f"unsupported record batch (magic {magic}) at offset {base_offset}")
        if pos + size > end:
            break  # a partial batch at the end of a fetch answer: fetched again next time
        last_offset = base_offset + last_delta
        batch = raw[pos : pos + size]
        pos += size
        if last_offset < part.offset:
            continue
        while part.pending_aborts and part.pending_aborts[0][0] <= last_offset:
            part.aborted.add(part.pending_aborts.pop(0)[1])
        if attributes & _ATTR_CONTROL:
            if _control_type(bytes(batch[BATCH_HEADER_BYTES:])) == _CONTROL_ABORT:
                part.aborted.discard(producer_id)
            part.offset = last_offset + 1
            continue
        if attributes & _ATTR_TRANSACTIONAL and producer_id in part.aborted:
            part.offset = last_offset + 1
            continue
        yield header, batch


def _render(job: ConsumeJob, part: _Part, raw: memoryview | None, topic_b: bytes, limit: int) -> tuple[bytes, int]:
    if raw is None or not len(raw):
        return b"", 0
    pieces = []
    printed = 0
    for header, batch in kept_batches(part, raw):
        base_offset, last_delta, base_ts, count = header[0], header[6], header[7], header[12]
        records, ts_override = records_section(header, batch)
        remaining = limit - printed if limit >= 0 else -1
        text, n, next_offset = _fast.format_records(records, count, base_offset, base_ts, ts_override, part.offset,
                                                    job.tokens, topic_b, part.partition, job.null_str, remaining)
        pieces.append(text)
        printed += n
        if remaining >= 0 and n >= remaining:
            part.offset = next_offset
            break
        part.offset = base_offset + last_delta + 1
    return b"".join(pieces), printed


def records_section(header: tuple[int, ...], batch: memoryview) -> tuple[bytes, int]:
    """A kept batch's records section, decompressed, and the timestamp every record has if the batch's timestamps
    are LogAppendTime (its max timestamp; else -1)."""
    attributes, max_ts = header[5], header[8]
    section = batch[BATCH_HEADER_BYTES:]
    codec = attributes & _ATTR_CODEC
    if codec:
        from loosely.protocol.compression import decompress  # noqa: PLC0415 - only for compressed batches

        records = decompress(codec, section, DECOMPRESSED_BYTES_MAX)
    else:
        records = bytes(section)
    return records, max_ts if attributes & _ATTR_LOG_APPEND_TIME else -1


def _control_type(records: bytes) -> int:
    """The type of a control record (its key: INT16 version, INT16 type); -1 if unreadable."""
    try:
        _length, pos = read_varint(records, 0)
        pos += 1  # attributes: one byte
        for _ in range(3):  # timestampDelta, offsetDelta, keyLength
            _, pos = read_varint(records, pos)
    except CorruptRecordError:
        return -1
    if pos + CONTROL_KEY.size > len(records):
        return -1
    return int(CONTROL_KEY.unpack_from(records, pos)[1])
