"""Producer state and transactions outlive the broker process (loosely only: the shared Apache Kafka fixture is
never restarted). Duplicate detection after a clean restart and after ``kill -9``; an open transaction committed
after a restart; markers finished after a crash between PrepareCommit and CompleteCommit."""

from __future__ import annotations

import dataclasses
import datetime
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from kio.schema.errors import ErrorCode

from broker._brokers import ChildBroker, broker_on
from broker._raw import Raw
from broker._records import create, read
from loosely.broker.transactions.coordinator import transaction_coordinator
from loosely.broker.transactions.state import TransactionalId, TxnState
from loosely.protocol.messages import ApiKey
from loosely.protocol.records import NewRecord, build_batch
from loosely.testing import free_port


def init_producer_id(raw: Raw) -> tuple[int, int]:
    from kio.schema.init_producer_id.v1.request import InitProducerIdRequest

    resp = raw.request(
        ApiKey.INIT_PRODUCER_ID,
        1,
        InitProducerIdRequest(transactional_id=None, transaction_timeout=datetime.timedelta(seconds=60)),
    )
    assert resp.error_code == ErrorCode.none  # type: ignore[attr-defined]
    return resp.producer_id, resp.producer_epoch  # type: ignore[attr-defined]


def produce(raw: Raw, topic: str, pid: int, epoch: int, seq: int, n: int) -> tuple[ErrorCode, int]:
    from kio.schema.produce.v7.request import PartitionProduceData, ProduceRequest, TopicProduceData

    records = build_batch(
        [NewRecord(b"k", b"s%d" % (seq + i), int(time.time() * 1000)) for i in range(n)],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
    )
    body = ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout=datetime.timedelta(seconds=5),
        topic_data=(TopicProduceData(name=topic, partition_data=(PartitionProduceData(index=0, records=records),)),),
    )
    resp = raw.request(ApiKey.PRODUCE, 7, body)
    part = resp.responses[0].partition_responses[0]  # type: ignore[attr-defined]
    return part.error_code, part.base_offset


def last_stable_offset(bs: str, topic: str) -> int:
    """ListOffsets(latest) for read_committed."""
    from kio.schema.list_offsets.v2.request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic

    body = ListOffsetsRequest(
        replica_id=-1,
        isolation_level=1,
        topics=(ListOffsetsTopic(name=topic, partitions=(ListOffsetsPartition(partition_index=0, timestamp=-1),)),),
    )
    resp = Raw(bs).request(ApiKey.LIST_OFFSETS, 2, body)
    return int(resp.topics[0].partitions[0].offset)  # type: ignore[attr-defined]


def stable_offset(bs: str, group: str, topic: str) -> tuple[int, ErrorCode]:
    """OffsetFetch v7 with require_stable: the committed offset of partition 0 and its error."""
    from kio.schema.offset_fetch.v7.request import OffsetFetchRequest, OffsetFetchRequestTopic

    body = OffsetFetchRequest(
        group_id=group,
        topics=(OffsetFetchRequestTopic(name=topic, partition_indexes=(0,)),),
        require_stable=True,
    )
    part = Raw(bs).request(ApiKey.OFFSET_FETCH, 7, body).topics[0].partitions[0]  # type: ignore[attr-defined]
    return int(part.committed_offset), part.error_code


def test_duplicates_are_recognised_after_a_clean_restart(tmp_path: Path) -> None:
    port = free_port()
    with broker_on(tmp_path, port) as b:
        bs = b.bootstrap_servers
        create(bs, "t")
        raw = Raw(bs)
        pid, epoch = init_producer_id(raw)
        assert produce(raw, "t", pid, epoch, 0, 3) == (ErrorCode.none, 0)
        assert produce(raw, "t", pid, epoch, 3, 2) == (ErrorCode.none, 3)
    with broker_on(tmp_path, port) as b:
        raw = Raw(b.bootstrap_servers)
        assert produce(raw, "t", pid, epoch, 3, 2) == (ErrorCode.none, 3), "the retry was appended again"
        assert produce(raw, "t", pid, epoch, 9, 1)[0] == ErrorCode.out_of_order_sequence_number
        assert produce(raw, "t", pid, epoch + 1, 5, 1)[0] == ErrorCode.out_of_order_sequence_number  # must start at 0
        assert init_producer_id(raw)[0] > pid, "a producer id was handed out twice"
        assert read(b.bootstrap_servers, "t", 5) == [b"s0", b"s1", b"s2", b"s3", b"s4"]


def test_duplicates_are_recognised_after_kill_9(tmp_path: Path) -> None:
    child = ChildBroker(tmp_path / "data", free_port()).start()
    bs = child.bootstrap_servers
    try:
        create(bs, "t")
        raw = Raw(bs)
        pid, epoch = init_producer_id(raw)
        for seq in range(0, 20, 4):
            assert produce(raw, "t", pid, epoch, seq, 4) == (ErrorCode.none, seq)
        raw.close()
        child.kill()
        child.start()
        raw = Raw(bs)
        # The last five batches were acknowledged before the crash: each retry gets its original offset.
        for seq in range(0, 20, 4):
            assert produce(raw, "t", pid, epoch, seq, 4) == (ErrorCode.none, seq)
        assert produce(raw, "t", pid, epoch, 20, 1) == (ErrorCode.none, 20)
        assert init_producer_id(raw)[0] > pid
        assert read(bs, "t", 21) == [b"s%d" % i for i in range(21)]
    finally:
        child.kill()


def test_an_open_transaction_survives_a_restart_and_commits(tmp_path: Path) -> None:
    port = free_port()
    bs = f"127.0.0.1:{port}"
    with broker_on(tmp_path, port):
        create(bs, "t")
        p = Producer({"bootstrap.servers": bs, "transactional.id": "survivor", "reconnect.backoff.ms": 50})
        p.init_transactions(30)
        p.begin_transaction()
        p.produce("t", b"in-flight")
        assert p.flush(30) == 0
        group = Consumer({"bootstrap.servers": bs, "group.id": "eos"})
        p.send_offsets_to_transaction([TopicPartition("t", 0, 7)], group.consumer_group_metadata(), 30)
        group.close()
    with broker_on(tmp_path, port) as b:
        coord = transaction_coordinator(b.broker.ctx)
        assert coord is not None
        txn = b.call(lambda: coord.txns[TransactionalId("survivor")])
        assert txn.state is TxnState.ONGOING and ("t", 0) in txn.partitions and len(txn.partitions) == 2
        assert last_stable_offset(bs, "t") == 0, "read_committed must not see an open transaction"
        # The transaction's offset commit was replayed as pending: not committed yet, and flagged unstable.
        assert stable_offset(bs, "eos", "t") == (-1, ErrorCode.unstable_offset_commit)
        p.commit_transaction(30)
        assert last_stable_offset(bs, "t") == 2  # the record and the COMMIT marker
        assert read(bs, "t", 1, committed=True) == [b"in-flight"]
        assert stable_offset(bs, "eos", "t") == (7, ErrorCode.none)


def test_markers_are_finished_after_a_crash_between_prepare_and_complete(tmp_path: Path) -> None:
    port = free_port()
    bs = f"127.0.0.1:{port}"
    with broker_on(tmp_path, port) as b:
        create(bs, "t")
        p = Producer({"bootstrap.servers": bs, "transactional.id": "crashy"})
        p.init_transactions(30)
        p.begin_transaction()
        p.produce("t", b"payload")
        assert p.flush(30) == 0
        coord = transaction_coordinator(b.broker.ctx)
        assert coord is not None
        tid = TransactionalId("crashy")

        def prepare_commit_and_stop_there() -> None:
            # What EndTxn(commit) persists first; then the process "dies" before writing any marker.
            txn = coord.txns[tid]
            assert coord._persist(tid, dataclasses.replace(txn, state=TxnState.PREPARE_COMMIT)) == ErrorCode.none

        b.call(prepare_commit_and_stop_there)
    with broker_on(tmp_path, port) as b:
        coord = transaction_coordinator(b.broker.ctx)
        assert coord is not None
        deadline = time.monotonic() + 10
        while b.call(lambda: coord.txns[TransactionalId("crashy")].state) is not TxnState.COMPLETE_COMMIT:
            assert time.monotonic() < deadline, "the markers were not written after the restart"
            time.sleep(0.05)
        assert read(bs, "t", 1, committed=True) == [b"payload"]


def test_a_version_2_transaction_survives_a_restart(tmp_path: Path) -> None:
    """Transactions version 2 (EndTxn v5, Produce v12): the bumped epoch, the client's version and the producer id
    before it come back from ``__transaction_state``, so a retried EndTxn is still recognised after a restart."""
    from kio.schema.end_txn.v5.request import EndTxnRequest
    from kio.schema.init_producer_id.v5.request import InitProducerIdRequest
    from kio.schema.produce.v12.request import PartitionProduceData, ProduceRequest, TopicProduceData

    def end(raw: Raw, pid: int, epoch: int, commit: bool) -> tuple[ErrorCode, int, int]:
        r = raw.request(ApiKey.END_TXN, 5, EndTxnRequest(
            transactional_id="v2", producer_id=pid, producer_epoch=epoch, committed=commit))
        return r.error_code, int(r.producer_id), int(r.producer_epoch)  # type: ignore[attr-defined]

    def send(raw: Raw, pid: int, epoch: int, value: bytes) -> ErrorCode:
        batch = build_batch([NewRecord(b"k", value, int(time.time() * 1000))], producer_id=pid, producer_epoch=epoch,
                            base_sequence=0, transactional=True)
        data = TopicProduceData(name="t", partition_data=(PartitionProduceData(index=0, records=batch),))
        r = raw.request(ApiKey.PRODUCE, 12, ProduceRequest(
            transactional_id="v2", acks=-1, timeout=datetime.timedelta(seconds=5), topic_data=(data,)))
        return r.responses[0].partition_responses[0].error_code  # type: ignore[attr-defined]

    port = free_port()
    bs = f"127.0.0.1:{port}"
    with broker_on(tmp_path, port):
        create(bs, "t")
        raw = Raw(bs)
        init = raw.request(ApiKey.INIT_PRODUCER_ID, 5, InitProducerIdRequest(
            transactional_id="v2", transaction_timeout=datetime.timedelta(seconds=60), producer_id=-1,
            producer_epoch=-1))
        pid, epoch = int(init.producer_id), int(init.producer_epoch)  # type: ignore[attr-defined]
        assert send(raw, pid, epoch, b"first") == ErrorCode.none  # adds t-0 to the transaction itself
        assert end(raw, pid, epoch, True) == (ErrorCode.none, pid, epoch + 1)
    with broker_on(tmp_path, port) as b:
        coord = transaction_coordinator(b.broker.ctx)
        assert coord is not None
        txn = b.call(lambda: coord.txns[TransactionalId("v2")])
        assert (txn.state, txn.producer_epoch, txn.client_version, txn.previous_producer_id) == (
            TxnState.COMPLETE_COMMIT, epoch + 1, 2, pid
        )
        raw = Raw(bs)
        assert end(raw, pid, epoch, True) == (ErrorCode.none, pid, epoch + 1), "the retry was not recognised"
        assert end(raw, pid, epoch + 1, True)[0] == ErrorCode.invalid_txn_state
        assert send(raw, pid, epoch + 1, b"second") == ErrorCode.none
        assert end(raw, pid, epoch + 1, True) == (ErrorCode.none, pid, epoch + 2)
        assert read(bs, "t", 2, committed=True) == [b"first", b"second"]
