"""Java Hollow's HollowConsumer reads what loosely's read-after-write producer publishes, version by version
(the snapshot, then the deltas of a restarted producer), and sees the same state as Python's consumer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from hollow.javarun import Java
from loosely.broker.server import BrokerThread
from loosely.hollow.api import BlobType, Consumer, FilesystemBlobStore
from loosely.hollow.core import INLINE, Int64, dump_state, hollow_type
from loosely.hollow.raw import Dataset, Delete, Put, RawProducer, Writer


@hollow_type(primary_key=("id",))
@dataclass
class Title:
    id: int
    name: Annotated[str, INLINE]
    cast: list[str]
    runtime_ms: Int64 = 0


def test_java_consumer_reads_the_raw_producers_versions(loosely: BrokerThread, tmp_path: Path, java: Java) -> None:
    store = FilesystemBlobStore(tmp_path / "blobs")
    ds = Dataset("titles", [Title], bootstrap_servers=loosely.bootstrap_servers, blob_store=store, partitions=2)
    versions = []
    with Writer(ds) as writer:
        assert writer.wait_for_leadership(30_000)
        for i in range(30):
            writer.put(Title(i, f"title {i}", [f"actor {i}", "extra"], i * 1000))
        for cycle in range(3):  # each cycle in a new producer: a restart continues the delta chain
            producer = RawProducer(ds)
            producer.catch_up()
            versions.append(producer.run_cycle())
            producer.close()
            writer.bulk([Put(Title(cycle, f"renamed {cycle}", [], 1)), Delete("Title", (29 - cycle,))])
    assert len({*versions}) == 3 and None not in versions
    assert len([r for r in store.refs() if r.type is BlobType.DELTA]) >= 2

    out = java.run("HollowApiInterop", "consume", store.path, *(str(v) for v in versions))
    java_dumps = re.split(r"^=== \S+ snapshots=\d+ deltas=\d+\n", out, flags=re.M)[1:]
    assert re.findall(r"^=== \S+ snapshots=(\d+) deltas=(\d+)$", out, flags=re.M)[-1] == ("1", "2")
    for version, java_dump in zip(versions, java_dumps, strict=True):
        consumer = Consumer(retriever=store)
        consumer.refresh_to(version)  # type: ignore[arg-type]
        assert consumer.engine is not None
        assert java_dump == dump_state(consumer.engine), version
