"""A view published as a Hollow dataset (``hollow:`` sink URL): kill -9 loops end with exactly the reference view,
and Java Hollow's HollowConsumer reads the same state as loosely's Consumer.

The runner processes are ``loosely views run`` against the embedded broker; the consumers read the blob store
directly, as a service would. Event count: ``LOOSELY_VIEWS_CRASH_EVENTS`` (default 20 000).
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

from hollow.javarun import Java
from loosely.broker.server import BrokerThread
from loosely.hollow.api import BlobType, Consumer, FilesystemBlobStore, UniqueKeyIndex
from loosely.hollow.core import Records, dump_state
from loosely.views import Add, Batch, Fenced, Put, SinkError, TopicPartition, ViewError, count_by_key
from loosely.views._hollow import POSITIONS_TAG, HollowSink
from views.crashkit import (
    CRASH_TIMEOUT_S,
    Reference,
    Runners,
    crash_batch,
    crash_events,
    crash_keys,
    crash_kills,
    crash_loop,
    create_topic,
    produce_events,
    record_result,
    reference,
)

TP = TopicPartition("t", 0)
# Runners restart with their static group membership and take their partitions back at once; a life of 2 s or
# more gives a runner time to start, apply and publish before the next kill.
KILL_PAUSE_S = (2.0, 4.0)


def announced_state(store: FilesystemBlobStore) -> Consumer:
    c = Consumer(retriever=store, watcher=store)
    c.refresh()
    return c


def published_positions(store: FilesystemBlobStore) -> dict[tuple[str, int], int]:
    if store.latest_version() is None:
        return {}
    engine = announced_state(store).engine
    assert engine is not None
    raw = json.loads(engine.header_tags[POSITIONS_TAG])
    return {(name.rpartition("/")[0], int(name.rpartition("/")[2])): off for name, off in raw.items()}


@pytest.mark.timeout(CRASH_TIMEOUT_S)
def test_kill9_loop_then_java_and_python_consumers_read_the_reference_view(
        loosely: BrokerThread, tmp_path: Path, topic: str, java: Java) -> None:
    events, kills = crash_events(20_000), crash_kills(8)
    keys = crash_keys(events)
    b = loosely.bootstrap_servers
    create_topic(b, topic, 4)
    produce_events(b, topic, events // 2, keys=keys)
    # the other half arrives while the runner is being killed: each life of a runner sees new records
    chunks = 10

    def trickle() -> None:
        for i in range(chunks):
            time.sleep(KILL_PAUSE_S[0] * kills / chunks)
            produce_events(b, topic, events // 2 // chunks, keys=keys, seed=100 + i)

    producer = threading.Thread(target=trickle)
    producer.start()
    root = tmp_path / "hollow"
    store = FilesystemBlobStore(root)
    view = f"hv_{topic[2:]}"
    procs = Runners(["views.crash_views:combined", "--sink", f"hollow://{root}?interval_ms=200", "-b", b,
                     "--batch-records", crash_batch(500), "--session-timeout-ms", "6000"],
                    1, {"LOOSELY_CRASH_TOPIC": topic, "LOOSELY_CRASH_VIEW": view}, tmp_path)
    refs: list[Reference] = []

    def done() -> bool:
        if producer.is_alive():
            return False
        if not refs:
            refs.append(reference(b, topic))
        got = published_positions(store)
        return all(got.get(tp, -1) >= end for tp, end in refs[0].ends.items() if end > 0)

    try:
        report = crash_loop(procs, kills=kills, done=done, pause_s=KILL_PAUSE_S)
    finally:
        producer.join()
    record_result("hollow-fs", events, 1, report)
    ref = refs[0]
    deltas = [r for r in store.refs() if r.type is BlobType.DELTA]
    # versions were announced in many lives of the runner, each restart continuing the chain (under a loaded
    # machine a life can end before it publishes, so not necessarily in every one)
    assert len(deltas) >= kills // 2, deltas

    consumer = announced_state(store)
    assert consumer.engine is not None
    rows = {r["key"]: json.loads(r["value"]) for r in Records(consumer.engine).all(view)}  # type: ignore[index]
    expected = {**{f"{k}#n": n for k, n in ref.counts.items()}, **{f"{k}#last": v["seq"] for k, v in ref.last.items()}}
    wrong = {k: (rows.get(k), v) for k, v in expected.items() if rows.get(k) != v}
    assert rows.keys() == expected.keys() and not wrong, (len(rows), len(expected), list(wrong.items())[:5])
    some = next(iter(ref.counts))
    assert UniqueKeyIndex(consumer, view).get(f"{some}#n")["value"] == str(ref.counts[some])  # type: ignore[index]

    # a Java service reads the same dataset: Java's HollowConsumer, from the same directory
    version = consumer.version
    out = java.run("HollowApiInterop", "consume", root, version)
    java_dump = re.split(r"^=== \S+ snapshots=\d+ deltas=\d+\n", out, flags=re.M)[1]
    # Until a restart deleted what killed cycles wrote, Java's consumer could end at such a cycle's snapshot. The
    # blob listing tells which transitions Java's retriever (first match in directory order) could take.
    blobs = sorted(p.name for p in root.iterdir())
    assert java_dump == dump_state(consumer.engine), (version, out.splitlines()[0], blobs)


def test_a_restart_continues_the_delta_chain_with_the_published_rows(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    view = count_by_key("hits", ["t"])
    sink = HollowSink(store, publish_interval_ms=0)
    sink.open(view)
    sink.apply(Batch.build([(TP, 0, 0, Add("a", 1)), (TP, 1, 0, Add("a", 1))]))
    first = store.latest_version()
    sink.close()
    again = HollowSink(store, publish_interval_ms=60_000)
    again.open(view)
    assert again.stored_positions() == {TP: 2}
    again.apply(Batch.build([(TP, 2, 0, Add("a", 5)), (TP, 3, 0, Add("b", 1))], starts={TP: 2}))
    assert store.latest_version() == first  # gathered, not published yet
    again.close()
    c = Consumer(retriever=store, watcher=store)
    c.refresh_to(first)
    c.refresh()
    assert c.statistics().snapshots_loaded == 1 and c.statistics().deltas_applied == 1  # one chain
    idx = UniqueKeyIndex(c, "hits")
    assert (idx.get("a")["value"], idx.get("b")["value"]) == ("7", "1")  # type: ignore[index]


def test_stale_starts_are_fenced_bad_values_refused(tmp_path: Path) -> None:
    sink = HollowSink(FilesystemBlobStore(tmp_path))
    sink.open(count_by_key("hits", ["t"]))
    sink.apply(Batch.build([(TP, 0, 0, Add("a", 1))]))
    with pytest.raises(Fenced, match="stands at 1, not 0"):
        sink.apply(Batch.build([(TP, 0, 0, Add("a", 1))], starts={TP: 0}))
    with pytest.raises(SinkError, match="not bytes"):
        sink.apply(Batch.build([(TP, 1, 0, Put("k", b"\x00"))], starts={TP: 1}))
    sink.apply(Batch.build([(TP, 1, 0, Put("s", "text"))], starts={TP: 1}))
    with pytest.raises(ViewError, match="not a number"):  # a bug of the view, as within one batch
        sink.apply(Batch.build([(TP, 2, 0, Add("s", 1))], starts={TP: 2}))


def test_a_failed_publish_drops_the_pending_changes_and_fences(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = FilesystemBlobStore(root)
    sink = HollowSink(store, publish_interval_ms=60_000)
    sink.open(count_by_key("hits", ["t"]))
    sink.apply(Batch.build([(TP, 0, 0, Add("a", 1))]))
    sink.idle()  # the interval is not up: nothing published
    assert store.latest_version() is None
    root.rename(tmp_path / "away")  # the store goes away
    with pytest.raises(Fenced, match="publishing to the Hollow store failed"):
        sink._publish()
    assert sink.stored_positions() == {}  # nothing was announced: the runner reads from the start again
    (tmp_path / "away").rename(root)
    sink.apply(Batch.build([(TP, 0, 0, Add("a", 1))]))  # the replay applies once
    sink.close()
    assert UniqueKeyIndex(announced_state(store), "hits").get("a")["value"] == "1"  # type: ignore[index]


class _AnnouncementLost(FilesystemBlobStore):
    """A store whose announcements never land: the runner was killed after writing a cycle's blobs."""

    def announce(self, version: object) -> None:
        pass


def test_a_restart_deletes_what_a_killed_cycle_wrote_so_java_follows_the_chain(tmp_path: Path, java: Java) -> None:
    view = count_by_key("hits", ["t"])
    first = HollowSink(FilesystemBlobStore(tmp_path), publish_interval_ms=0)
    first.open(view)
    first.apply(Batch.build([(TP, 0, 0, Add("a", 1))]))
    first.close()
    announced = FilesystemBlobStore(tmp_path).latest_version()
    killed = HollowSink(_AnnouncementLost(tmp_path), publish_interval_ms=0, snapshot_every_cycles=1)
    killed.open(view)
    killed.apply(Batch.build([(TP, 1, 0, Add("a", 100))], starts={TP: 1}))  # a snapshot and a delta, unannounced
    orphans = {r.name for r in FilesystemBlobStore(tmp_path).refs() if r.to_version > announced}
    assert any(n.startswith("snapshot-") for n in orphans) and any(n.startswith("delta-") for n in orphans)

    store = FilesystemBlobStore(tmp_path)
    again = HollowSink(store, publish_interval_ms=0)
    again.open(view)
    assert not orphans & {r.name for r in store.refs()}
    assert again.stored_positions() == {TP: 1}
    again.apply(Batch.build([(TP, 1, 0, Add("a", 2))], starts={TP: 1}))
    again.close()

    consumer = announced_state(store)
    assert UniqueKeyIndex(consumer, "hits").get("a")["value"] == "3"  # type: ignore[index]
    out = java.run("HollowApiInterop", "consume", tmp_path, consumer.version)
    assert re.split(r"^=== \S+ snapshots=\d+ deltas=\d+\n", out, flags=re.M)[1] == dump_state(consumer.engine), out
