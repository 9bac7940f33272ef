"""Transactions version 2 (KIP-890 part 2) with Apache Kafka's Java 4.1 producer, against loosely and Apache Kafka:
both brokers finalize ``transaction.version`` 2, so the producer ends each transaction with EndTxn v5 (a new epoch
every time), adds partitions through Produce v12 and offsets through TxnOffsetCommit v5. One JVM run commits and
aborts transactions with offsets, is fenced by a second producer mid-transaction, and reads back with
read_committed; the transaction log names the client's version. Clients that keep the older protocol
(confluent-kafka, aiokafka, kafka-python) are tested in test_transactions.py and test_txn_fencing.py."""

from __future__ import annotations

from compat._java import run_java
from compat._support import Cluster, create_topic

COUNT = 5
OUTCOMES = ("commit", "abort", "commit", "commit", "abort")


def test_java_producer_uses_transactions_v2(cluster: Cluster, topic: str) -> None:
    bs = cluster.bootstrap_servers
    create_topic(bs, topic, 3)
    r = run_java(
        "interop/java-clients",
        "GroupsProbe",
        "transactions-v2",
        bs,
        f"tv2-{topic}",
        topic,
        f"g-{topic}",
        str(COUNT),
        ",".join(OUTCOMES),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    visible = sorted(line.removeprefix("visible ") for line in lines if line.startswith("visible "))
    rest = [line for line in lines if not line.startswith("visible ")]
    assert rest == [
        *(f"{o} done" for o in OUTCOMES),
        f"epoch-advance {len(OUTCOMES)}",  # one epoch per EndTxn: version 2
        "fenced ProducerFencedException",
        "b commit done",
        "committed 40",  # the last committed transaction's offsets; the aborted one's (50) are dropped
        f"aborted-in-log {2 * COUNT + 1}",  # the aborted records are in the log, for read_uncommitted
        "log 4 2",  # CompleteCommit, written for a version 2 client
    ]
    expected = [f"{i}-{o}-{j}" for i, o in enumerate(OUTCOMES) if o == "commit" for j in range(COUNT)]
    assert visible == sorted(expected + [f"b-{j}" for j in range(COUNT)])
