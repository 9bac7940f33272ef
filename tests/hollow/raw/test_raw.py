"""Read-after-write Hollow: writer, producer and client, side by side on loosely's broker and Apache Kafka 4.1.1.

One broker of each kind per module; each test gets its own dataset (topics and blob store), so tests stay apart.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from typing import Any

import pytest

from hollow.raw.raw_support import Actor, Movie, lines_until, put_as_leader, start_writer_process
from loosely.hollow.api import FilesystemBlobStore
from loosely.hollow.core import ReadStateEngine
from loosely.hollow.raw import (
    ANY,
    ConditionFailed,
    Dataset,
    Delete,
    NotLeaderError,
    Put,
    RawClient,
    RawProducer,
    Writer,
)
from loosely.hollow.raw._dataset import POSITIONS_TAG
from loosely.hollow.raw._log import ChangeTail


def test_a_write_is_visible_after_its_token_and_to_strong_reads(writer: Writer, client: RawClient) -> None:
    first = writer.put(Movie(1, "Heat", 1995))
    assert client.get(Movie, 1, after=first.token) == Movie(1, "Heat", 1995)
    second = writer.put(Movie(1, "Heat (1995)", 1995))
    assert second.version > first.version
    assert client.get_versioned("Movie", (1,), consistency="strong") == (Movie(1, "Heat (1995)", 1995),
                                                                         second.version)
    actor = Actor("Al Pacino", "US", [1])
    writer.put(actor)
    assert client.get(Actor, ("Al Pacino", "US"), consistency="strong") == actor
    gone = writer.delete(Movie, 1)
    assert client.get_versioned(Movie, 1, after=str(gone.token)) == (None, None)
    assert client.get(Movie, 2, consistency="strong") is None


def test_a_strong_read_right_after_a_write_does_not_wait_for_an_empty_fetch(bootstrap: str, tmp_path: Any) -> None:
    # The commit marker after a write's records raises the high watermark a strong read waits for. The tail must
    # learn it is past the marker when the fetch carrying it is handled: librdkafka's end-of-partition event comes
    # only after a fetch that returns empty, fetch.wait.max.ms later (raised here so that waiting for it times out)
    dataset = Dataset(f"raw-{uuid.uuid4().hex[:8]}", [Movie], bootstrap_servers=bootstrap,
                      blob_store=str(tmp_path / "blobs"), client_config={"fetch.wait.max.ms": 20_000})
    with Writer(dataset) as writer, RawClient(dataset, timeout_ms=5_000) as client:
        assert writer.wait_for_leadership(30_000)
        for i in range(3):
            writer.put(Movie(i, f"take {i}"))
            assert client.get(Movie, i, consistency="strong") == Movie(i, f"take {i}")
        writer.delete(Movie, 0)
        assert client.get(Movie, 0, consistency="strong") is None


def test_a_reader_waits_for_the_view_to_move_instead_of_polling(writer: Writer, client: RawClient) -> None:
    writer.put(Movie(30, "Ran"))
    client.sync()
    seen = client.reached()
    t0 = time.monotonic()
    assert client.wait_for_change(seen, 300) == seen  # nothing written: the whole timeout, the same view
    assert time.monotonic() - t0 >= 0.29
    assert client.get(Movie, 31) is None
    writer.put(Movie(31, "Kagemusha"))
    moved = client.wait_for_change(seen, 10_000)
    assert moved != seen
    while client.get(Movie, 31) is None:  # the view moved; a few waits at most bring the record itself
        seen = client.wait_for_change(moved, 10_000)
        assert seen != moved, "the view did not move again within 10 s"
        moved = seen
    assert client.get(Movie, 31) == Movie(31, "Kagemusha")


def test_a_detached_tail_goes_on_from_where_it_is_told(dataset: Dataset, writer: Writer) -> None:
    # the elected writer detaches its own tail while it leads, and attaches it again at the end of its last commit
    applied: list[tuple[int, int, bytes]] = []
    tail = ChangeTail(dataset, lambda p, o, k, v: applied.append((p, o, k)), name="detach-test")
    try:
        writer.put(Movie(1, "seen"))
        tail.read_to(tail.high_watermarks(10_000), 10_000)
        assert len(applied) == 1
        tail.detach()
        before = dict(tail.reached)
        skipped = writer.put(Movie(2, "known another way"))
        read = writer.put(Movie(3, "read after attach"))
        assert tail.poll(0.3) == 0 and tail.reached == before  # detached: nothing comes
        tail.attach(skipped.token.offsets)  # the partition of Movie 2 from after it, the other from where it was
        tail.read_to(tail.high_watermarks(10_000), 10_000)
        keys = [k for _, _, k in applied]
        assert dataset.key_bytes("Movie", (3,)) in keys and dataset.key_bytes("Movie", (2,)) not in keys
        assert read.version in [o for _, o, _ in applied]
        n = len(applied)
        tail.detach()
        tail.attach({p: 0 for p in range(dataset.partitions)})  # positions behind it: it does not go back
        tail.read_to(tail.high_watermarks(10_000), 10_000)
        assert tail.poll(0.3) == 0 and len(applied) == n
    finally:
        tail.close()


def test_conditional_writes_compare_versions(writer: Writer, client: RawClient) -> None:
    created = writer.put(Movie(7, "Alien"), if_version=None)
    with pytest.raises(ConditionFailed) as failed:
        writer.put(Movie(7, "Aliens"), if_version=None)
    assert failed.value.current_version == created.version
    updated = writer.put(Movie(7, "Alien (director's cut)"), if_version=created.version)
    with pytest.raises(ConditionFailed) as stale:
        writer.put(Movie(7, "lost update"), if_version=created.version)
    assert stale.value.current_version == updated.version
    with pytest.raises(ConditionFailed):
        writer.delete(Movie, 7, if_version=created.version)
    assert writer.version_of(Movie, 7) == updated.version
    writer.delete(Movie, 7, if_version=updated.version)
    assert client.get(Movie, 7, consistency="strong") is None
    with pytest.raises(TypeError):
        writer.put(Movie(7, "x"), if_version="1")
    with pytest.raises(ValueError, match="Movie"):
        writer.put(Movie(7, "x", 2**32))  # an int field holds a Java int
    with pytest.raises(ValueError, match="not a str"):
        writer.put(Movie(7, 7))  # type: ignore[arg-type]


def test_bulk_is_all_or_nothing(writer: Writer, client: RawClient) -> None:
    base = writer.put(Movie(10, "Ten"))
    with pytest.raises(ConditionFailed):
        writer.bulk([Put(Movie(11, "Eleven")), Put(Movie(10, "Ten again"), if_version=base.version + 1)])
    assert client.get(Movie, 11, consistency="strong") is None
    done = writer.bulk([Put(Movie(11, "Eleven")), Delete("Movie", (10,), if_version=base.version),
                        Put(Movie(12, "Twelve"), if_version=ANY)])
    assert len(done.versions) == 3
    assert client.get(Movie, 10, after=done.token) is None
    assert sorted(m.id for m in client.records(Movie)) == [11, 12]


def test_pipelined_writes_share_transactions_and_keep_conditions_exact(writer: Writer, client: RawClient) -> None:
    writer.queued_ops_max = 50  # a small queue: the caller below must wait for room
    before = writer.statistics().transactions
    futures = [writer.put_async(Movie(i % 40, f"take {i}")) for i in range(400)]
    results = [f.result(30) for f in futures]
    assert writer.statistics().transactions - before < 400, "every write had a transaction of its own"
    for m in range(40):  # the last write of each key is its version, in the order they were submitted
        mine = [r.version for i, r in enumerate(results) if i % 40 == m]
        assert mine == sorted(mine)
        assert writer.version_of(Movie, m) == mine[-1]
    last = results[-1]
    assert client.get(Movie, 399 % 40, after=last.token) == Movie(399 % 40, "take 399")
    # conditional writes in flight together: exactly one of two racing inserts wins, and a stale version loses
    race = [writer.put_async(Movie(100, who), if_version=None) for who in ("a", "b")]
    stale = writer.delete_async(Movie, 0, if_version=results[0].version)
    outcomes = []
    for f in race:
        try:
            outcomes.append(f.result(30).version)
        except ConditionFailed as e:
            outcomes.append(("failed", e.current_version))
    won = [o for o in outcomes if isinstance(o, int)]
    assert len(won) == 1 and ("failed", won[0]) in outcomes
    with pytest.raises(ConditionFailed):
        stale.result(30)
    bulk = writer.bulk_async([Put(Movie(101, "x")), Delete("Movie", (100,), if_version=won[0])]).result(30)
    assert client.get(Movie, 100, after=bulk.token) is None
    # a key's writes land in the order they were submitted, even when a conditional one among them must wait for
    # the version of the one before it: submitted behind a queue, so that all three share a batch
    queue = [writer.put_async(Movie(300 + i, "filler")) for i in range(45)]
    first = writer.put_async(Movie(102, "a"))
    second = writer.put_async(Movie(102, "b"), if_content=Movie(102, "a"))
    third = writer.put_async(Movie(102, "c"))
    versions = [f.result(30).version for f in (first, second, third)]  # the second's condition holds
    assert versions == sorted(versions)
    assert all(f.result(30) for f in queue)
    assert client.get(Movie, 102, consistency="strong") == Movie(102, "c")


def test_producer_folds_the_log_and_clients_read_state_plus_overlay(dataset: Dataset, writer: Writer,
                                                                     client: RawClient) -> None:
    for i in range(20):
        writer.put(Movie(i, f"m{i}"))
    writer.delete(Movie, 3)
    producer = RawProducer(dataset)
    producer.catch_up()
    v1 = producer.run_cycle()
    assert v1 is not None
    engine = producer._producer.read_state
    assert isinstance(engine, ReadStateEngine)
    positions = {int(p): o for p, o in json.loads(engine.header_tags[POSITIONS_TAG]).items()}
    assert sum(positions.values()) >= 21
    producer.close()

    late = writer.put(Movie(5, "five, later"))
    client.consumer.refresh()
    assert client.version == v1
    assert client.get_versioned(Movie, 4) == (Movie(4, "m4"), writer.version_of(Movie, 4))  # from the state
    assert client.get(Movie, 5, after=late.token) == Movie(5, "five, later")  # the overlay wins over the state
    assert client.get(Movie, 3) is None
    assert client.statistics().overlay <= 2
    assert sorted(m.id for m in client.records(Movie)) == [i for i in range(20) if i != 3]

    # a restarted producer continues the chain from the announced version and folds only what came after
    again = RawProducer(dataset)
    assert again.open() == v1
    again.catch_up()
    v2 = again.run_cycle()
    again.close()
    assert v2 is not None and v2 > v1
    store = dataset.blob_store
    assert isinstance(store, FilesystemBlobStore)
    assert store.retrieve_delta(v1) is not None
    fresh = RawClient(dataset).start()
    try:
        assert fresh.version == v2
        assert fresh.get(Movie, 5) == Movie(5, "five, later")
        assert fresh.statistics().overlay == 0
    finally:
        fresh.close()


def test_statistics_answer_while_a_cycle_waits_on_its_blob_store(dataset: Dataset, writer: Writer,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A status page asks the producer for its statistics while a cycle may be stuck on a store or a broker that
    went away (the demo's partition): the answer must not wait for the cycle."""
    writer.put(Movie(1, "one"))
    producer = RawProducer(dataset)
    producer.catch_up()
    store = dataset.blob_store
    assert isinstance(store, FilesystemBlobStore)
    entered, release = threading.Event(), threading.Event()
    real_publish = store.publish

    def stuck(ref: Any, data: bytes) -> None:
        entered.set()
        release.wait(30)
        real_publish(ref, data)

    monkeypatch.setattr(store, "publish", stuck)
    cycle = threading.Thread(target=producer.run_cycle)
    cycle.start()
    try:
        assert entered.wait(30)
        asked: list[Any] = []
        t = threading.Thread(target=lambda: asked.append(producer.statistics()), daemon=True)
        t.start()
        t.join(5)
        assert asked and asked[0].cycles == 0, "statistics waited for the cycle"
    finally:
        release.set()
        cycle.join(30)
    assert producer.statistics().cycles == 1
    producer.close()


def test_only_the_elected_writer_writes_and_a_standby_takes_over(dataset: Dataset, writer: Writer,
                                                                client: RawClient) -> None:
    written = writer.put(Movie(1, "before"))
    standby = Writer(dataset, http_address="http://writer-b").start()
    try:
        deadline = time.monotonic() + 30
        while standby.leader_address() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with pytest.raises(NotLeaderError) as refused:
            standby.put(Movie(1, "from the standby"))
        assert refused.value.leader == "http://writer-a"
        writer.close()  # leaves the group: the standby takes over at once
        assert standby.wait_for_leadership(30_000)
        assert standby.version_of(Movie, 1) == written.version  # it read the log before accepting writes
        with pytest.raises(ConditionFailed):
            standby.put(Movie(1, "stale"), if_version=None)
        after = standby.put(Movie(1, "after"), if_version=written.version)
        assert client.get(Movie, 1, after=after.token) == Movie(1, "after")
    finally:
        standby.close()


def test_a_killed_writer_is_replaced_within_the_session_timeout(dataset: Dataset, client: RawClient,
                                                                writer: Writer) -> None:
    writer.close()  # the process below must win the election
    proc = start_writer_process(dataset, 42)
    standby = Writer(dataset, session_timeout_ms=6_000).start()
    try:
        last = lines_until(proc, "ok")[-1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        started = time.monotonic()
        assert standby.wait_for_leadership(30_000)
        took_s = time.monotonic() - started
        assert took_s < 20, f"the standby took {took_s:.1f} s to take over"
        assert standby.version_of(Movie, 42) >= int(last[2])  # every acknowledged write is known
        newer = standby.put(Movie(42, "new"), if_version=standby.version_of(Movie, 42))
        assert client.get(Movie, 42, after=newer.token) == Movie(42, "new")
    finally:
        proc.kill()
        proc.wait(10)
        standby.close()


def test_a_paused_writer_is_fenced_and_nothing_it_sends_lands(dataset: Dataset, client: RawClient,
                                                              writer: Writer) -> None:
    writer.close()
    proc = start_writer_process(dataset, 43)
    standby = Writer(dataset, session_timeout_ms=6_000).start()
    try:
        lines_until(proc, "ok")
        proc.send_signal(signal.SIGSTOP)  # alive but silent: its session times out, the standby fences it
        assert standby.wait_for_leadership(30_000)
        newer = standby.put(Movie(43, "new"))
        proc.send_signal(signal.SIGCONT)
        lines = lines_until(proc, "error")  # its next commit is refused
        assert lines[-1][2] in ("NotLeaderError", "WriteError")
        proc.terminate()  # woken up, it rejoins the election and may win it again, legitimately: end it here
        assert proc.stdout is not None
        rest = [line.split() for line in proc.stdout.read().splitlines()]
        assert proc.wait(30) == 0
        # what it reported written after its refusal is legitimate (it led again); nothing else of it may land
        assert all(len(line) == 3 and line[0] in ("ok", "error") for line in rest), rest
        legit = {f"old-{n}" for word, n, _ in rest if word == "ok"}
        final = put_as_leader(standby, Movie(1, "barrier"))
        found, version = client.get_versioned(Movie, 43, after=final.token)
        assert (found, version) == (Movie(43, "new"), newer.version) or (found.title in legit
                                                                         and version > newer.version)
    finally:
        proc.kill()
        proc.wait(10)
        standby.close()


def test_find_by_field_sees_state_plus_overlay(dataset: Dataset, writer: Writer, client: RawClient) -> None:
    for i, year in enumerate([1995, 1995, 1998]):
        writer.put(Movie(i, f"m{i}", year))
    writer.put(Actor("Al Pacino", "US", [0]))
    producer = RawProducer(dataset)
    producer.catch_up()
    producer.run_cycle()
    producer.close()
    client.consumer.refresh()
    assert sorted(m.id for m in client.find(Movie, year=1995)) == [0, 1]
    moved = writer.put(Movie(1, "m1", 1998))  # in the overlay only: the state still says 1995
    writer.put(Movie(7, "m7", 1995))
    last = writer.delete(Movie, 0)
    assert [m.id for m in client.find(Movie, year=1995, after=last.token)] == [7]
    assert sorted(m.id for m in client.find("Movie", year=1998, after=moved.token)) == [1, 2]
    assert client.find(Actor, country="US") == [Actor("Al Pacino", "US", [0])]
    assert client.find(Movie, year=1995, title="m7") == [Movie(7, "m7", 1995)]
    # into collections: the state's hash index and the overlay agree on what a path through a list reaches
    assert client.find(Actor, **{"movies.element": 0}) == [Actor("Al Pacino", "US", [0])]
    assert client.find(Actor, movies=0) == [Actor("Al Pacino", "US", [0])]  # the segment may be left out
    writer.put(Actor("Uma Thurman", "US", [3, 4]))
    recast = writer.put(Actor("Al Pacino", "US", [4]))  # in the overlay only: the state still says [0]
    assert client.find(Actor, after=recast.token, **{"movies.element": 0}) == []
    assert client.find(Actor, **{"movies.element": 4}) == [Actor("Uma Thurman", "US", [3, 4]),
                                                            Actor("Al Pacino", "US", [4])]
    assert client.find(Actor, movies=3) == [Actor("Uma Thurman", "US", [3, 4])]


def test_records_that_are_not_the_datasets_are_skipped_and_lose_nothing(dataset: Dataset, writer: Writer,
                                                                         client: RawClient) -> None:
    from confluent_kafka import Producer

    raw = Producer({"bootstrap.servers": dataset.bootstrap_servers})
    for key, value in [(b"not json", b"{}"), (b'["Nope",[1]]', b"{}"), (b'["Movie",[[1]]]', b"{}"),
                       (b'["Movie",[3]]', b"not json"), (b'["Movie",[4]]', b'{"id": "four", "title": 4}'),
                       (b'["Movie",[6]]', b'{"id": 6, "title": "too big", "year": 4294967296}')]:
        raw.produce(dataset.changes_topic, key=key, value=value, partition=0)
    assert raw.flush(10) == 0
    good = writer.put(Movie(5, "fine"))
    assert client.get(Movie, 5, after=good.token) == Movie(5, "fine")
    assert client.get(Movie, 3, consistency="strong") is None
    producer = RawProducer(dataset)
    producer.catch_up()
    assert producer.run_cycle() is not None
    assert producer.statistics().skipped == 6
    producer.close()
    client.consumer.refresh()
    assert client.get_versioned(Movie, 5) == (Movie(5, "fine"), good.version)
    assert client.statistics().overlay == 0


def test_a_record_at_the_size_limit_is_written_one_over_it_is_refused(writer: Writer, client: RawClient) -> None:
    frame = len(b'{"id":1,"title":"","year":0}') + len(b'["Movie",[1]]')
    at = writer.put(Movie(1, "x" * (writer.record_bytes_max - frame)))
    assert len(client.get(Movie, 1, after=at.token).title) == writer.record_bytes_max - frame
    with pytest.raises(ValueError, match="record_bytes_max"):
        writer.put(Movie(2, "x" * (writer.record_bytes_max - frame + 1)))
    assert writer.put(Movie(3, "still writing")).version > at.version


def test_conditional_writes_compare_content(writer: Writer, client: RawClient) -> None:
    writer.put(Movie(8, "Thief"), if_content=None)  # only if absent
    with pytest.raises(ConditionFailed):
        writer.put(Movie(8, "Thief"), if_content=None)
    read = client.get(Movie, 8, consistency="strong")
    changed = writer.put(Movie(8, "Thief (1981)"), if_content=read)  # what the caller read is still there
    with pytest.raises(ConditionFailed) as lost:
        writer.put(Movie(8, "a lost update"), if_content=read)
    assert lost.value.current_version == changed.version
    writer.put(Movie(8, "Thief (1981)"))  # same content, new version: a content condition still holds
    with pytest.raises(ConditionFailed):
        writer.bulk([Put(Movie(9, "x")), Delete("Movie", (8,), if_content=read)])
    writer.bulk([Put(Movie(9, "x")), Put(Movie(9, "y"), if_content=Movie(9, "x")),
                 Delete("Movie", (8,), if_content=Movie(8, "Thief (1981)"))])
    assert client.get(Movie, 8, consistency="strong") is None
    assert client.get(Movie, 9) == Movie(9, "y")
    with pytest.raises(ValueError, match="if_content"):
        writer.put(Movie(9, "z"), if_content=Movie(10, "y"))


def test_a_writer_the_broker_cannot_elect_says_why(dataset: Dataset) -> None:
    # brokers refuse sessions under group.min.session.timeout.ms (6 s by default): say so, never wait silently
    with Writer(dataset, session_timeout_ms=3_000, heartbeat_interval_ms=1_000) as w:
        started = time.monotonic()
        with pytest.raises(ValueError, match="session_timeout_ms=3000"):
            w.wait_for_leadership(30_000)
        assert time.monotonic() - started < 20
        assert not w.is_leader()
