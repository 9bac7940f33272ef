"""A fenced transactional producer, against loosely and Apache Kafka: which error each API answers at each version.

A second InitProducerId with the same transactional id bumps the epoch and fences the first instance. Kafka 2.7
(KIP-588) gave fencing its own code, PRODUCER_FENCED (90), but only clients that know it may see it: older request
versions hear INVALID_PRODUCER_EPOCH (47), which their clients already treat as fatal. The raw tests send every
version loosely serves from the stale instance and expect the same code from both brokers; the client tests fence a
real aiokafka, kafka-python and confluent-kafka producer and expect it to fail the same way on both. At the end, the
epoch rules of transactions version 2 (EndTxn v5) and its implicit adds, request by request, on both brokers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka import TopicPartition as AioTP
from aiokafka.errors import KafkaError, ProducerFenced
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka import KafkaError as ConfluentError
from kafka import KafkaProducer
from kafka.errors import ProducerFencedError
from kio.schema.errors import ErrorCode

from broker._raw import Raw
from compat._support import Cluster, create_topic
from loosely.protocol.messages import SUPPORTED_VERSIONS, ApiKey, build, load_request_schema, nested
from loosely.protocol.records import NewRecord, build_batch

FENCED = ErrorCode.producer_fenced
OLD_EPOCH = ErrorCode.invalid_producer_epoch
# Answers that only say "not yet": a coordinator is loading, markers of an abort are still being written, or a new
# topic's leader is not known everywhere yet.
RETRIABLE = frozenset(
    {
        ErrorCode.coordinator_load_in_progress,
        ErrorCode.coordinator_not_available,
        ErrorCode.not_coordinator,
        ErrorCode.concurrent_transactions,
        ErrorCode.not_leader_or_follower,
        ErrorCode.unknown_topic_or_partition,
    }
)
PRODUCE_MIN = 3  # Kafka 4 closes the connection on Produce v0-2
TXN_OFFSET_COMMIT_BY_ID = 6  # topics by id (KIP-1319)

T = TypeVar("T")


def versions(api: int, first: int = 0, raw: Raw | None = None) -> range:
    """The versions loosely serves from ``first``; with ``raw``, only those that broker advertises too (Kafka 4.1.1
    serves fewer than loosely, which serves Kafka 4.4.0's)."""
    low, high = SUPPORTED_VERSIONS[api]
    if raw is not None:
        answer = raw.request(ApiKey.API_VERSIONS, 3, build(load_request_schema(ApiKey.API_VERSIONS, 3),
                                                           client_software_name="t", client_software_version="1"))
        high = min(high, *(int(k.max_version) for k in answer.api_keys if int(k.api_key) == api))  # type: ignore[attr-defined]
    return range(max(low, first), high + 1)


def call(raw: Raw, api: int, version: int, **fields: object) -> object:
    return raw.request(api, version, build(load_request_schema(api, version), **fields))


def settled(send: Callable[[], T], code: Callable[[T], int] = lambda r: int(r.error_code)) -> T:  # type: ignore[attr-defined]
    """The first answer whose error is not a retriable one (asked again while the broker catches up)."""
    deadline = time.monotonic() + 30
    while True:
        resp = send()
        if code(resp) not in RETRIABLE or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def error(raw: Raw, api: int, version: int, **fields: object) -> ErrorCode:
    """The error code of an API that answers with one."""
    return ErrorCode(settled(lambda: call(raw, api, version, **fields)).error_code)  # type: ignore[attr-defined]


def find_coordinator(raw: Raw, key: str, key_type: int) -> None:
    def send() -> object:
        resp = call(raw, ApiKey.FIND_COORDINATOR, 4, key_type=key_type, coordinator_keys=(key,))
        return resp.coordinators[0]  # type: ignore[attr-defined]

    assert settled(send).error_code == ErrorCode.none  # type: ignore[attr-defined]


def init_producer_id(raw: Raw, tid: str, version: int = 4, expected: tuple[int, int] = (-1, -1)) -> object:
    return settled(
        lambda: call(
            raw,
            ApiKey.INIT_PRODUCER_ID,
            version,
            transactional_id=tid,
            transaction_timeout=datetime.timedelta(seconds=60),
            producer_id=expected[0],
            producer_epoch=expected[1],
        )
    )


def add_partitions(
    raw: Raw, version: int, tid: str, pid: int, epoch: int, topic: str, *, verify_only: bool = False
) -> ErrorCode:
    """AddPartitionsToTxn of ``topic``-0; from v4 in the batched form brokers send (one transaction here)."""
    cls = load_request_schema(ApiKey.ADD_PARTITIONS_TO_TXN, version)
    topics = (build(nested(cls, "AddPartitionsToTxnTopic"), name=topic, partitions=(0,)),)

    def send() -> ErrorCode:
        if version >= 4:
            txn = build(nested(cls, "AddPartitionsToTxnTransaction"), transactional_id=tid, producer_id=pid,
                        producer_epoch=epoch, verify_only=verify_only, topics=topics)
            resp = call(raw, ApiKey.ADD_PARTITIONS_TO_TXN, version, transactions=(txn,))
            assert int(resp.error_code) == 0  # type: ignore[attr-defined]
            (result,) = resp.results_by_transaction[0].topic_results  # type: ignore[attr-defined]
        else:
            resp = call(
                raw,
                ApiKey.ADD_PARTITIONS_TO_TXN,
                version,
                v3_and_below_transactional_id=tid,
                v3_and_below_producer_id=pid,
                v3_and_below_producer_epoch=epoch,
                v3_and_below_topics=topics,
            )
            (result,) = resp.results_by_topic_v3_and_below  # type: ignore[attr-defined]
        return ErrorCode(result.results_by_partition[0].partition_error_code)

    return settled(send, int)


def topic_id(raw: Raw, topic: str) -> uuid.UUID:
    metadata = load_request_schema(ApiKey.METADATA, 12)
    asked = build(nested(metadata, "MetadataRequestTopic"), topic_id=None, name=topic)
    resp = call(raw, ApiKey.METADATA, 12, topics=(asked,), allow_auto_topic_creation=False,
                include_topic_authorized_operations=False)
    (found,) = resp.topics  # type: ignore[attr-defined]
    assert isinstance(found.topic_id, uuid.UUID)
    return found.topic_id


def produce(raw: Raw, version: int, tid: str, pid: int, epoch: int, topic: str, seq: int) -> ErrorCode:
    cls = load_request_schema(ApiKey.PRODUCE, version)
    records = build_batch(
        [NewRecord(b"k", b"v%d" % seq, int(time.time() * 1000))],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        transactional=True,
    )
    partition = build(nested(cls, "PartitionProduceData"), index=0, records=records)
    data = build(nested(cls, "TopicProduceData"), name=topic, topic_id=topic_id(raw, topic),
                 partition_data=(partition,))  # v13 names the topic by id

    def send() -> ErrorCode:
        resp = call(
            raw,
            ApiKey.PRODUCE,
            version,
            transactional_id=tid,
            acks=-1,
            timeout=datetime.timedelta(seconds=10),
            topic_data=(data,),
        )
        return ErrorCode(resp.responses[0].partition_responses[0].error_code)  # type: ignore[attr-defined]

    return settled(send, int)


def txn_offset_commit(raw: Raw, version: int, f: TxnProducer, group: str) -> ErrorCode:
    cls = load_request_schema(ApiKey.TXN_OFFSET_COMMIT, version)
    part = build(
        nested(cls, "TxnOffsetCommitRequestPartition"),
        partition_index=0,
        committed_offset=1,
        committed_leader_epoch=-1,
        committed_metadata="",
    )
    named = {"topic_id": topic_id(raw, f.topic)} if version >= TXN_OFFSET_COMMIT_BY_ID else {"name": f.topic}
    topics = (build(nested(cls, "TxnOffsetCommitRequestTopic"), **named, partitions=(part,)),)

    def send() -> ErrorCode:
        resp = call(raw, ApiKey.TXN_OFFSET_COMMIT, version, **f.producer, group_id=group, topics=topics)
        return ErrorCode(resp.topics[0].partitions[0].error_code)  # type: ignore[attr-defined]

    return settled(send, int)


class TxnProducer:
    """A transactional id initialised once over ``raw``: producer id ``pid`` at ``epoch``."""

    def __init__(self, raw: Raw, topic: str) -> None:
        self.raw, self.topic = raw, topic
        self.tid = f"txn-{uuid.uuid4().hex[:10]}"
        find_coordinator(raw, self.tid, 1)
        first = init_producer_id(raw, self.tid)
        assert first.error_code == ErrorCode.none, first  # type: ignore[attr-defined]
        self.pid, self.epoch = int(first.producer_id), int(first.producer_epoch)  # type: ignore[attr-defined]
        self.producer = {"transactional_id": self.tid, "producer_id": self.pid, "producer_epoch": self.epoch}


class Fenced(TxnProducer):
    """A first instance that left a transaction open and was then fenced by a second InitProducerId, which aborted
    that transaction; ``pid`` and ``epoch`` are the fenced instance's."""

    def __init__(self, raw: Raw, topic: str) -> None:
        super().__init__(raw, topic)
        assert add_partitions(raw, 3, self.tid, self.pid, self.epoch, topic) == ErrorCode.none
        assert produce(raw, 11, self.tid, self.pid, self.epoch, topic, 0) == ErrorCode.none
        second = init_producer_id(raw, self.tid)
        assert second.error_code == ErrorCode.none, second  # type: ignore[attr-defined]
        assert int(second.producer_id) == self.pid and int(second.producer_epoch) > self.epoch  # type: ignore[attr-defined]


@pytest.fixture
def raw(cluster: Cluster, topic: str) -> Iterator[Raw]:
    create_topic(cluster.bootstrap_servers, topic, 1)
    conn = Raw(cluster.bootstrap_servers)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def txn(raw: Raw, topic: str) -> TxnProducer:
    return TxnProducer(raw, topic)


@pytest.fixture
def fenced(raw: Raw, topic: str) -> Fenced:
    return Fenced(raw, topic)


def test_add_partitions_to_txn(fenced: Fenced) -> None:
    f = fenced
    got = {v: add_partitions(f.raw, v, f.tid, f.pid, f.epoch, f.topic) for v in versions(ApiKey.ADD_PARTITIONS_TO_TXN)}
    assert got == {v: OLD_EPOCH if v < 2 else FENCED for v in got}


def test_add_partitions_to_txn_verify_only(fenced: Fenced) -> None:
    """The broker-to-broker form can ask instead of add: the current producer hears whether the partition is in its
    transaction (then it is added and asked again), a fenced one hears why not."""
    f = fenced
    p = TxnProducer(f.raw, f.topic)
    asked = [add_partitions(f.raw, 4, p.tid, p.pid, p.epoch, f.topic, verify_only=True)]
    asked.append(add_partitions(f.raw, 4, p.tid, p.pid, p.epoch, f.topic))
    asked.append(add_partitions(f.raw, 4, p.tid, p.pid, p.epoch, f.topic, verify_only=True))
    asked.append(add_partitions(f.raw, 4, f.tid, f.pid, f.epoch, f.topic, verify_only=True))
    assert asked == [ErrorCode.transaction_abortable, ErrorCode.none, ErrorCode.none, FENCED]


def test_add_offsets_to_txn(fenced: Fenced) -> None:
    f = fenced
    got = {
        v: error(f.raw, ApiKey.ADD_OFFSETS_TO_TXN, v, **f.producer, group_id=f"g-{f.tid}")
        for v in versions(ApiKey.ADD_OFFSETS_TO_TXN)
    }
    assert got == {v: OLD_EPOCH if v < 2 else FENCED for v in got}


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
def test_end_txn(fenced: Fenced, commit: bool) -> None:
    f = fenced
    got = {v: error(f.raw, ApiKey.END_TXN, v, **f.producer, committed=commit) for v in versions(ApiKey.END_TXN)}
    assert got == {v: OLD_EPOCH if v < 2 else FENCED for v in got}


def test_init_producer_id_with_the_fenced_epoch(fenced: Fenced) -> None:
    """KIP-360: a producer recovering from an error names the epoch it had (v3+); a fenced one must not bump."""
    f = fenced
    got = {
        v: init_producer_id(f.raw, f.tid, v, (f.pid, f.epoch)).error_code  # type: ignore[attr-defined]
        for v in versions(ApiKey.INIT_PRODUCER_ID, first=3)
    }
    assert got == {v: OLD_EPOCH if v < 4 else FENCED for v in got}


def test_txn_offset_commit(fenced: Fenced) -> None:
    """TxnOffsetCommit never knew PRODUCER_FENCED: a stale epoch is INVALID_PRODUCER_EPOCH at every version."""
    f = fenced
    group = f"g-{f.tid}"
    find_coordinator(f.raw, group, 0)
    got = {v: txn_offset_commit(f.raw, v, f, group) for v in versions(ApiKey.TXN_OFFSET_COMMIT, raw=f.raw)}
    assert got == {v: OLD_EPOCH for v in got}


def test_produce(fenced: Fenced) -> None:
    """A fenced transactional producer's data: INVALID_PRODUCER_EPOCH at every version (never PRODUCER_FENCED)."""
    f = fenced
    got = {v: produce(f.raw, v, f.tid, f.pid, f.epoch, f.topic, 1) for v in versions(ApiKey.PRODUCE, PRODUCE_MIN)}
    assert got == {v: OLD_EPOCH for v in got}


def test_produce_under_an_epoch_never_handed_out(cluster: Cluster, txn: TxnProducer) -> None:
    """Transactional data under a newer epoch than the coordinator gave is refused, and the transaction still
    commits (its markers are not taken for stale)."""
    t = txn
    assert add_partitions(t.raw, 3, t.tid, t.pid, t.epoch, t.topic) == ErrorCode.none
    got = {v: produce(t.raw, v, t.tid, t.pid, t.epoch + 3, t.topic, 0) for v in versions(ApiKey.PRODUCE, PRODUCE_MIN)}
    assert got == {v: OLD_EPOCH for v in got}
    assert produce(t.raw, 11, t.tid, t.pid, t.epoch, t.topic, 0) == ErrorCode.none
    assert error(t.raw, ApiKey.END_TXN, 3, **t.producer, committed=True) == ErrorCode.none
    assert committed_values(cluster.bootstrap_servers, t.topic, b"v0") == [b"v0"]


def test_produce_to_a_partition_outside_the_transaction(txn: TxnProducer) -> None:
    """KIP-890: Produce v11 hears TRANSACTION_ABORTABLE, older versions INVALID_TXN_STATE; from v12 the batch adds
    its partition to the transaction itself and is written."""
    t = txn
    got = {v: produce(t.raw, v, t.tid, t.pid, t.epoch, t.topic, 0) for v in versions(ApiKey.PRODUCE, PRODUCE_MIN)}
    assert got == {v: ErrorCode.invalid_txn_state if v < 11 else ErrorCode.transaction_abortable
                   if v == 11 else ErrorCode.none for v in got}


# --- real clients ----------------------------------------------------------------------------------------------------


def committed_values(bootstrap: str, topic: str, last: bytes = b"new") -> list[bytes]:
    """What a read_committed consumer sees of partition 0, once the last record is among it."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "r", "isolation.level": "read_committed"})
    c.assign([TopicPartition(topic, 0, 0)])
    out: list[bytes] = []
    deadline = time.monotonic() + 30
    while last not in out and time.monotonic() < deadline:
        out += [m.value() or b"" for m in c.consume(10, timeout=0.5) if m.error() is None]
    c.close()
    return out


@pytest.mark.parametrize("when", ["before", "during", "offsets"])
def test_aiokafka_producer_is_fenced(cluster: Cluster, topic: str, when: str) -> None:
    """aiokafka speaks AddPartitionsToTxn, AddOffsetsToTxn and EndTxn v0 and knows only INVALID_PRODUCER_EPOCH as
    fencing: fenced before its transaction, its first send fails; fenced during it, its commit or its offsets do."""
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 1)
    tid = f"aio-{topic}"

    async def run() -> type[BaseException] | None:
        old = AIOKafkaProducer(bootstrap_servers=bs, transactional_id=tid)
        new = AIOKafkaProducer(bootstrap_servers=bs, transactional_id=tid)
        await old.start()
        try:
            if when == "before":
                await new.start()
            try:
                async with old.transaction():
                    await old.send_and_wait(topic, b"old", partition=0)
                    if when != "before":
                        await new.start()
                    if when == "offsets":
                        await old.send_offsets_to_transaction({AioTP(topic, 0): 1}, f"g-{topic}")
            except KafkaError as e:
                return type(e)
            return None
        finally:
            async with new.transaction():
                await new.send_and_wait(topic, b"new", partition=0)
            await new.stop()
            with contextlib.suppress(ProducerFenced):
                await old.stop()

    assert asyncio.run(run()) is ProducerFenced
    assert committed_values(bs, topic) == [b"new"]


@pytest.mark.parametrize("when", ["before", "during"])
def test_kafka_python_producer_is_fenced(cluster: Cluster, topic: str, when: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 1)
    old = KafkaProducer(bootstrap_servers=bs, transactional_id=f"kp-{topic}")
    new = KafkaProducer(bootstrap_servers=bs, transactional_id=f"kp-{topic}")
    try:
        old.init_transactions()
        if when == "before":
            new.init_transactions()
        old.begin_transaction()
        with pytest.raises(ProducerFencedError):
            old.send(topic, b"old", partition=0).get(timeout=30)
            if when == "during":
                new.init_transactions()
            old.commit_transaction()
        new.begin_transaction()
        new.send(topic, b"new", partition=0).get(timeout=30)
        new.commit_transaction()
    finally:
        new.close(timeout=10)
        old.close(timeout=10)
    assert committed_values(bs, topic) == [b"new"]


@pytest.mark.newest_kafka
@pytest.mark.parametrize("when", ["before", "during"])
def test_confluent_kafka_producer_is_fenced(cluster: Cluster, topic: str, when: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 1)
    old = Producer({"bootstrap.servers": bs, "transactional.id": f"ck-{topic}"})
    new = Producer({"bootstrap.servers": bs, "transactional.id": f"ck-{topic}"})
    try:
        old.init_transactions(30)
        if when == "before":
            new.init_transactions(30)
        old.begin_transaction()
        with pytest.raises(KafkaException) as caught:
            old.produce(topic, b"old", partition=0)
            old.flush(30)
            if when == "during":
                new.init_transactions(30)
            old.commit_transaction(30)
        err = caught.value.args[0]
        assert (err.code(), err.fatal()) == (ConfluentError._FENCED, True)
        new.begin_transaction()
        new.produce(topic, b"new", partition=0)
        new.commit_transaction(30)
    finally:
        new.close()
        with contextlib.suppress(KafkaException), warnings.catch_warnings(action="ignore"):
            old.close()  # it tries to abort its transaction, and is fenced again
    assert committed_values(bs, topic) == [b"new"]


def test_init_producer_id_while_a_transaction_is_open(txn: TxnProducer) -> None:
    """A second instance first aborts the open transaction under a bumped epoch: CONCURRENT_TRANSACTIONS naming no
    producer; its retry bumps the epoch once more."""
    assert add_partitions(txn.raw, 3, txn.tid, txn.pid, txn.epoch, txn.topic) == ErrorCode.none
    first = call(txn.raw, ApiKey.INIT_PRODUCER_ID, 5, transactional_id=txn.tid,
                 transaction_timeout=datetime.timedelta(seconds=60), producer_id=-1, producer_epoch=-1)
    assert (first.error_code, first.producer_id, first.producer_epoch) == (  # type: ignore[attr-defined]
        ErrorCode.concurrent_transactions, -1, -1
    )
    second = init_producer_id(txn.raw, txn.tid, 5)
    assert (second.error_code, second.producer_id, second.producer_epoch) == (  # type: ignore[attr-defined]
        ErrorCode.none, txn.pid, txn.epoch + 2
    )


# --- transactions version 2 (KIP-890 part 2) ---------------------------------------------------------------------


def test_end_txn_v5_bumps_the_epoch_and_recognises_retries(txn: TxnProducer) -> None:
    t = txn

    def end(epoch: int, commit: bool) -> tuple[ErrorCode, int, int]:
        r = settled(lambda: call(t.raw, ApiKey.END_TXN, 5, transactional_id=t.tid, producer_id=t.pid,
                                 producer_epoch=epoch, committed=commit))
        return ErrorCode(r.error_code), int(r.producer_id), int(r.producer_epoch)  # type: ignore[attr-defined]

    e = t.epoch
    assert produce(t.raw, 12, t.tid, t.pid, e, t.topic, 0) == ErrorCode.none  # Produce v12 adds the partition
    assert end(e, True) == (ErrorCode.none, t.pid, e + 1)
    assert end(e, True) == (ErrorCode.none, t.pid, e + 1)  # a retry carries the epoch before the bump
    assert end(e, False) == (ErrorCode.invalid_txn_state, -1, -1)
    assert end(e + 1, True) == (ErrorCode.invalid_txn_state, -1, -1)  # nothing open to commit
    assert end(e + 1, False) == (ErrorCode.none, t.pid, e + 2)  # an abort with nothing added bumps too
    assert end(e + 5, False) == (FENCED, -1, -1)
    assert produce(t.raw, 12, t.tid, t.pid, e + 1, t.topic, 1) == OLD_EPOCH
    assert produce(t.raw, 12, t.tid, t.pid, e + 2, t.topic, 0) == ErrorCode.none
    assert end(e + 2, True) == (ErrorCode.none, t.pid, e + 3)


def test_txn_offset_commit_v5_adds_the_offsets_partition_itself(txn: TxnProducer) -> None:
    """Without AddOffsetsToTxn, v3 and v4 are refused (v4 with KIP-890's TRANSACTION_ABORTABLE); v5 joins the
    transaction itself (KIP-890 part 2), after which v4 is accepted too."""
    group = f"g-{txn.tid}"
    find_coordinator(txn.raw, group, 0)
    assert produce(txn.raw, 12, txn.tid, txn.pid, txn.epoch, txn.topic, 0) == ErrorCode.none
    assert [txn_offset_commit(txn.raw, v, txn, group) for v in (3, 4, 5, 4)] == [
        ErrorCode.invalid_txn_state, ErrorCode.transaction_abortable, ErrorCode.none, ErrorCode.none
    ]
