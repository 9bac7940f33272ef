"""The writer's own transactional producer (``loosely.hollow.raw._txn``), on loosely's broker and on Apache Kafka:
transactions version 2 where the broker finalizes it, version 0 (AddPartitionsToTxn first) when asked, the offsets
it answers are where a read-committed consumer finds the records, and a newer holder of the transactional id
fences it so nothing it sends afterwards lands; on a broker that wants SASL, the writer logs in with the dataset's
settings."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from hollow.raw.raw_support import Movie
from loosely.broker.config import BrokerConfig, split_kafka_settings
from loosely.broker.server import BrokerThread
from loosely.hollow.raw import Dataset, RawClient, Writer
from loosely.hollow.raw._txn import Outgoing, TransactionFenced, WireTransactions, open_transactions
from loosely.security.scram import parse_scram_spec

TIMEOUT_S = 30.0


def committed(bootstrap: str, topic: str, partitions: int) -> dict[tuple[int, int], tuple[bytes, bytes | None]]:
    """Every committed record of ``topic``: (partition, offset) -> (key, value)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "isolation.level": "read_committed",
                  "enable.partition.eof": True, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: dict[tuple[int, int], tuple[bytes, bytes | None]] = {}
    ended: set[int] = set()
    try:
        while len(ended) < partitions:
            msg = c.poll(TIMEOUT_S)
            assert msg is not None, "no end of partition in time"
            if msg.error():
                ended.add(msg.partition())
                continue
            out[(msg.partition(), msg.offset())] = (msg.key(), msg.value())
    finally:
        c.close()
    return out


@pytest.fixture
def topic(bootstrap: str) -> str:
    name = f"txn-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept until the creation is answered
    for f in admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)]).values():
        f.result(TIMEOUT_S)
    return name


@pytest.mark.parametrize("version", [None, 0])
def test_commits_land_where_the_offsets_say(bootstrap: str, topic: str, version: int | None) -> None:
    # batches of at most 120 bytes: a partition's 2-3 records of a transaction go in two Produce requests
    txn = WireTransactions(bootstrap, f"tid-{uuid.uuid4().hex[:8]}", transaction_version=version,
                           timeout_s=TIMEOUT_S, batch_bytes_max=120)
    try:
        assert txn.version == (2 if version is None else 0)  # both brokers finalize transaction.version 2
        sent: dict[tuple[int, int], tuple[bytes, bytes | None]] = {}
        for round_ in range(3):  # the epoch (version 2) or the sequences (version 0) move on between them
            records = [Outgoing(topic, i % 2, f"k{round_}-{i}".encode(), None if i == 4 else f"v{i}".encode())
                       for i in range(5)]
            offsets = txn.commit(records, TIMEOUT_S)
            sent |= {(r.partition, o): (r.key, r.value) for r, o in zip(records, offsets, strict=True)}
        assert txn.exchanged == 3  # each commit's last Produce requests and its EndTxn went in one exchange
    finally:
        txn.close()
    assert committed(bootstrap, topic, 2) == sent


def test_a_newer_holder_of_the_id_fences_the_older(bootstrap: str, topic: str) -> None:
    tid = f"tid-{uuid.uuid4().hex[:8]}"
    old = WireTransactions(bootstrap, tid, timeout_s=TIMEOUT_S)
    try:
        first = old.commit([Outgoing(topic, 0, b"a", b"before")], TIMEOUT_S)
        new = WireTransactions(bootstrap, tid, timeout_s=TIMEOUT_S)  # its InitProducerId bumps the epoch
        try:
            with pytest.raises(TransactionFenced):
                old.commit([Outgoing(topic, 0, b"a", b"fenced"), Outgoing(topic, 1, b"b", b"fenced")], TIMEOUT_S)
            after = new.commit([Outgoing(topic, 1, b"b", b"after")], TIMEOUT_S)
        finally:
            new.close()
    finally:
        old.close()
    assert committed(bootstrap, topic, 2) == {(0, first[0]): (b"a", b"before"), (1, after[0]): (b"b", b"after")}


def test_a_writer_on_a_sasl_broker_commits_over_its_own_connections(tmp_path: Path) -> None:
    """The dataset's client settings (here SASL SCRAM-SHA-256) reach the writer's own connections: it is elected,
    fences, commits, and a client reads the write back (loosely's broker only: the wire login against Apache Kafka
    is tests/compat/test_secured_clients.py's)."""
    settings, _, unknown = split_kafka_settings({"listeners": "SASL_PLAINTEXT://127.0.0.1:0"})
    assert not unknown
    user, mechanism, credential = parse_scram_spec("SCRAM-SHA-256=[name=alice,password=alice-secret]")
    config = BrokerConfig(data_dir=str(tmp_path / "data"), initial_scram_credentials=((user, mechanism.name,
                                                                                       credential),),
                          **settings)  # type: ignore[arg-type]
    login = {"security.protocol": "sasl_plaintext", "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "alice",
             "sasl.password": "alice-secret"}
    with BrokerThread(config) as b:
        ds = Dataset(f"raw-{uuid.uuid4().hex[:8]}", [Movie], bootstrap_servers=b.bootstrap_servers,
                     blob_store=str(tmp_path / "blobs"), client_config=login)
        txn = open_transactions(ds.config(), f"tid-{uuid.uuid4().hex[:8]}", transaction_timeout_ms=10_000,
                                client_id="t", timeout_s=TIMEOUT_S)
        txn.close()
        assert isinstance(txn, WireTransactions)
        with Writer(ds) as writer, RawClient(ds, timeout_ms=10_000) as client:
            assert writer.wait_for_leadership(30_000)
            written = writer.put(Movie(1, "Heat", 1995))
            assert client.get(Movie, 1, after=written.token) == Movie(1, "Heat", 1995)
