"""``wire.produce_then_end_txn``, the RAW writer's commit exchange in C (``_fast.txn_exchange``), against peers on
real TCP sockets that answer with frames encoded by loosely's codec: EndTxn goes out only once every partition of
every Produce answer landed; an answer fed a byte at a time, a peer that closes, an oversized frame, a peer that
never answers and garbage each end the exchange as the caller is told (what was read, whether EndTxn went out)."""

from __future__ import annotations

import datetime
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from loosely.clients.wire import KafkaConnection, produce_then_end_txn, request_class
from loosely.protocol.errors import ErrorCode
from loosely.protocol.framing import SIZE
from loosely.protocol.messages import ApiKey, build, encode_response, nested, peek_request_prefix, response_class

TIMEOUT_S = 10.0

# what a peer does with each request it reads: answer it (the frame from its correlation id), or None: stop
Reply = Callable[[int], bytes | None]


def produce_answer(version: int, *codes: int, base_offset: int = 7) -> Reply:
    cls = response_class(ApiKey.PRODUCE, version)
    topic_cls, partition_cls = nested(cls, "TopicProduceResponse"), nested(cls, "PartitionProduceResponse")
    errors_cls = nested(cls, "BatchIndexAndErrorMessage")
    partitions = tuple(build(partition_cls, index=i, error_code=ErrorCode(c), base_offset=base_offset if c == 0
                             else -1, log_start_offset=0, error_message=None if c == 0 else "no",
                             record_errors=() if c == 0 else (build(errors_cls, batch_index=0,
                                                                    batch_index_error_message="bad"),))
                       for i, c in enumerate(codes))
    answer = build(cls, responses=(build(topic_cls, name="t", partition_responses=partitions),),
                   throttle_time=datetime.timedelta(0), node_endpoints=())
    return lambda correlation: encode_response(ApiKey.PRODUCE, version, correlation, answer)


def end_answer(correlation: int) -> bytes:
    answer = build(response_class(ApiKey.END_TXN, 5), throttle_time=datetime.timedelta(0),
                   error_code=ErrorCode.none, producer_id=3, producer_epoch=1)
    return encode_response(ApiKey.END_TXN, 5, correlation, answer)


class Peer:
    """A listening socket whose one connection is served by ``replies``, in order, then closed (``hang_up``) or
    kept until the client closes it; what it read is kept."""

    def __init__(self, replies: list[Reply], *, byte_at_a_time: bool = False, hang_up: bool = False) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.requests: list[int] = []  # the api keys read
        self._replies = replies
        self._byte_at_a_time = byte_at_a_time
        self._hang_up = hang_up
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            for reply in self._replies:
                head = self._exactly(conn, SIZE.size)
                if head is None:
                    return
                body = self._exactly(conn, SIZE.unpack(head)[0])
                if body is None:
                    return
                api_key, _, correlation = peek_request_prefix(body)
                self.requests.append(api_key)
                out = reply(correlation)
                if out is None:
                    return
                if self._byte_at_a_time:
                    for i in range(len(out)):
                        conn.sendall(out[i:i + 1])
                        time.sleep(0.0005)
                else:
                    conn.sendall(out)
            if not self._hang_up:
                conn.recv(1)  # until the client closes

    @staticmethod
    def _exactly(conn: socket.socket, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            got = conn.recv(n - len(buf))
            if not got:
                return None
            buf += got
        return buf

    def join(self) -> None:
        self._thread.join(TIMEOUT_S)
        self._listener.close()


@contextmanager
def connected(*peers: Peer) -> Iterator[list[KafkaConnection]]:
    conns = [KafkaConnection("127.0.0.1", p.port, TIMEOUT_S) for p in peers]
    try:
        yield conns
    finally:
        for c in conns:
            c.close()
        for p in peers:
            p.join()


def produce_request(conn: KafkaConnection, version: int = 12) -> tuple[int, bytes]:
    cls = request_class(ApiKey.PRODUCE, version)
    request = build(cls, transactional_id="tid", acks=-1, timeout=datetime.timedelta(seconds=5), topic_data=())
    return conn.frame(ApiKey.PRODUCE, version, request)


def end_request(conn: KafkaConnection) -> tuple[int, bytes]:
    request = build(request_class(ApiKey.END_TXN, 5), transactional_id="tid", producer_id=3, producer_epoch=0,
                    committed=True)
    return conn.frame(ApiKey.END_TXN, 5, request)


@pytest.mark.parametrize("version", [11, 12])
@pytest.mark.parametrize("byte_at_a_time", [False, True])
def test_produce_answers_that_all_landed_are_followed_by_end_txn(version: int, byte_at_a_time: bool) -> None:
    # two partition leaders, the second also the coordinator (its connection takes Produce, then EndTxn)
    a = Peer([produce_answer(version, 0, 0)], byte_at_a_time=byte_at_a_time)
    b = Peer([produce_answer(version, 0), end_answer], byte_at_a_time=byte_at_a_time)
    with connected(a, b) as (ca, cb):
        (pa, fa), (pb, fb), (pe, fe) = produce_request(ca, version), produce_request(cb, version), end_request(cb)
        exchanged = produce_then_end_txn([(ca, fa), (cb, fb)], (cb, fe), TIMEOUT_S)
        assert exchanged is not None
        answers, end, end_sent, error = exchanged
        assert (end_sent, error, len(answers)) == (True, None, 2)
        assert [int(p.base_offset) for p in ca.decode(ApiKey.PRODUCE, version, pa, answers[0]).responses[0]
                .partition_responses] == [7, 7]
        assert cb.decode(ApiKey.PRODUCE, version, pb, answers[1]).responses[0].partition_responses[0].index == 0
        assert end is not None and int(cb.decode(ApiKey.END_TXN, 5, pe, end).producer_id) == 3
    assert (a.requests, b.requests) == ([ApiKey.PRODUCE], [ApiKey.PRODUCE, ApiKey.END_TXN])


@pytest.mark.parametrize("code", [ErrorCode.concurrent_transactions, ErrorCode.not_leader_or_follower,
                                  ErrorCode.producer_fenced, ErrorCode.duplicate_sequence_number])
def test_a_partition_that_did_not_land_stops_before_end_txn(code: ErrorCode) -> None:
    a = Peer([produce_answer(12, 0, code.value)])
    e = Peer([end_answer])
    with connected(a, e) as (ca, ce):
        (pa, fa), (_, fe) = produce_request(ca), end_request(ce)
        exchanged = produce_then_end_txn([(ca, fa)], (ce, fe), TIMEOUT_S)
        assert exchanged is not None
        answers, end, end_sent, error = exchanged
        assert (end, end_sent, error) == (None, False, None)
        # the answer is whole: Python decodes it and decides (retry, fence, accept the duplicate)
        parts = ca.decode(ApiKey.PRODUCE, 12, pa, answers[0]).responses[0].partition_responses
        assert [int(p.error_code.value) for p in parts] == [0, code.value]
        # the coordinator's connection is untouched: a plain call on it still gets its own answer
        ce.call(ApiKey.END_TXN, 5, build(request_class(ApiKey.END_TXN, 5), transactional_id="tid", producer_id=3,
                                         producer_epoch=0, committed=True), TIMEOUT_S)
    assert e.requests == [ApiKey.END_TXN]


def garbage(correlation: int) -> bytes:
    body = correlation.to_bytes(4, "big") + b"\x00\x02\x05abc"  # a topic name, then nothing
    return SIZE.pack(len(body)) + body


def oversized(correlation: int) -> bytes:
    return SIZE.pack(64 * 1024 * 1024)


def truncated(correlation: int) -> bytes:
    return produce_answer(12, 0)(correlation)[:-3]


@pytest.mark.parametrize(("reply", "got", "why"), [
    (garbage, 1, None),  # read whole, but not a landed answer: no EndTxn, Python finds it malformed
    (oversized, 0, "an answer over the frame size limit"),
    (truncated, 0, "the broker closed the connection"),
    (lambda correlation: None, 0, "the broker closed the connection"),
])
def test_a_broken_produce_answer_ends_the_exchange_without_end_txn(reply: Reply, got: int, why: str | None) -> None:
    a = Peer([reply], hang_up=True)
    e = Peer([end_answer])
    with connected(a, e) as (ca, ce):
        (_, fa), (_, fe) = produce_request(ca), end_request(ce)
        exchanged = produce_then_end_txn([(ca, fa)], (ce, fe), TIMEOUT_S)
        assert exchanged is not None
        answers, end, end_sent, error = exchanged
        assert (len(answers), end, end_sent, error) == (got, None, False, why)
    assert e.requests == []


def test_an_unanswered_end_txn_is_reported_sent() -> None:
    """The commit may have happened: the caller must know EndTxn went out (it reports the write uncertain)."""
    stall = threading.Event()

    def hold(correlation: int) -> None:  # reads EndTxn and never answers it (until the test is over)
        stall.wait(TIMEOUT_S)

    a = Peer([produce_answer(12, 0), hold])
    with connected(a) as (ca,):
        (_, fa), (_, fe) = produce_request(ca), end_request(ca)
        started = time.monotonic()
        exchanged = produce_then_end_txn([(ca, fa)], (ca, fe), 0.3)
        elapsed = time.monotonic() - started
        stall.set()
        assert exchanged is not None
        answers, end, end_sent, error = exchanged
        assert (len(answers), end, end_sent, error) == (1, None, True, "timed out")
        assert 0.25 <= elapsed < TIMEOUT_S
    assert a.requests == [ApiKey.PRODUCE, ApiKey.END_TXN]



def test_docstring_examples() -> None:
    import doctest

    import loosely.clients.wire as module

    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted >= 2
