"""Share groups (KIP-932) against loosely and Apache Kafka 4.4.0 side by side, with the same assertions.

The members are the Java ``KafkaShareConsumer`` of kafka-clients 4.4.0 (interop/share-consumer/ShareProbe.java, run
on Kafka 4.4.0's jars); bad input goes over a raw connection. Each broker is started once for the module with
``group.share.min.record.lock.duration.ms`` lowered to 1000, so that a group config can make locks run out in a
test's time; every group reads from the earliest offset (``share.auto.offset.reset``, a group config).
"""

from __future__ import annotations

import datetime
import functools
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest
from kio.schema.describe_configs.v4.request import DescribeConfigsRequest, DescribeConfigsResource
from kio.schema.incremental_alter_configs.v1.request import (
    AlterableConfig,
    AlterConfigsResource,
    IncrementalAlterConfigsRequest,
)
from kio.schema.join_group.v9.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.share_acknowledge.v2 import request as ack_req
from kio.schema.share_fetch.v2 import request as fetch_req
from kio.schema.share_group_describe.v1.request import ShareGroupDescribeRequest
from kio.schema.share_group_heartbeat.v1.request import ShareGroupHeartbeatRequest
from kio.static.primitive import i8, i32

from broker._raw import Raw
from compat._java import ROOT
from compat._kafka_tools import tools_jars
from compat._nodes import COORDINATOR_NOT_READY, VERSION, KafkaNode, LooselyNode, find_coordinator
from loosely.protocol.messages import ApiKey
from loosely.protocol.records import iter_batches
from loosely.testing.apache_kafka import ensure_kafka_jars

BROKER_SETTINGS = {"group.share.min.record.lock.duration.ms": "1000"}
KAFKA_SETTINGS = {
    **BROKER_SETTINGS,
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "share.coordinator.state.topic.num.partitions": "1",
}
GROUP_RESOURCE, SET = 32, 0
GROUP_CONFIG = 8  # DescribeConfigs' source of a config set on the group
INVALID_CONFIG = 40
LOCK_MS = 2000

UNKNOWN_MEMBER_ID, GROUP_ID_NOT_FOUND, FENCED_MEMBER_EPOCH, INVALID_RECORD_STATE = 25, 69, 110, 121
INCONSISTENT_GROUP_PROTOCOL = 23
SHARE_SESSION_NOT_FOUND, INVALID_SHARE_SESSION_EPOCH, INVALID_REQUEST = 122, 123, 42


Node = KafkaNode | LooselyNode


@pytest.fixture(scope="module")
def kafka44(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaNode]:
    node = KafkaNode(tmp_path_factory.mktemp("kafka-share"), KAFKA_SETTINGS)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def loosely_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LooselyNode]:
    node = LooselyNode(tmp_path_factory.mktemp("loosely-share") / "data", BROKER_SETTINGS)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(params=["loosely", "kafka"])
def node(request: pytest.FixtureRequest) -> Node:
    found: Node = request.getfixturevalue("loosely_node" if request.param == "loosely" else "kafka44")
    return found


@pytest.fixture
def bootstrap(node: Node) -> str:
    return node.bootstrap_servers


@functools.cache
def _compiled() -> Path:
    out = Path(tempfile.mkdtemp(prefix="loosely-share-probe-"))
    sources = [str(p) for p in (ROOT / "interop" / "share-consumer").glob("*.java")]
    subprocess.run(["javac", "-d", str(out), "-cp", f"{ensure_kafka_jars(VERSION)}/*", *sources], check=True)
    return out


def _command(bootstrap: str, group: str, topic: str, mode: str, expect: int, idle_ms: int, *extra: str) -> list[str]:
    return ["java", "-Xmx192m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp",
            f"{_compiled()}:{ensure_kafka_jars(VERSION)}/*", "ShareProbe", bootstrap, group, topic, mode, str(expect),
            str(idle_ms), *extra]


def _delivery(line: str) -> tuple[int, int, int, str]:
    p, o, n, v = line.split(" ", 3)
    return int(p), int(o), int(n), v


def probe(bootstrap: str, group: str, topic: str, mode: str, expect: int = 0,
          idle_ms: int = 3000) -> list[tuple[int, int, int, str]]:
    """Run one share consumer to its end: its deliveries as ``(partition, offset, delivery count, value)``."""
    r = subprocess.run(_command(bootstrap, group, topic, mode, expect, idle_ms),
                       capture_output=True, text=True, timeout=150, check=False)
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    return [_delivery(line) for line in r.stdout.splitlines()]


def probes_until(bootstrap: str, group: str, topic: str, members: int, total: int,
                 tmp: Path) -> list[list[tuple[int, int, int, str]]]:
    """``members`` share consumers accepting records together until ``total`` distinct records were delivered to
    them in all (then a stop file ends them): each one's deliveries."""
    stop = tmp / f"stop-{uuid.uuid4().hex[:6]}"
    procs = [subprocess.Popen(_command(bootstrap, group, topic, "accept", 0, 120_000, str(stop)),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(members)]
    runs: list[list[tuple[int, int, int, str]]] = [[] for _ in procs]
    seen: set[tuple[int, int]] = set()
    lock = threading.Lock()

    def read(i: int) -> None:
        out = procs[i].stdout
        assert out is not None
        for line in out:
            d = _delivery(line.rstrip("\n"))
            with lock:
                runs[i].append(d)
                seen.add(d[:2])
                if len(seen) >= total:
                    stop.touch()

    readers = [threading.Thread(target=read, args=(i,)) for i in range(members)]
    for t in readers:
        t.start()
    try:
        for p in procs:
            assert p.wait(timeout=150) == 0
    finally:
        for p in procs:
            p.kill()
        for t in readers:
            t.join(10)
    return runs


def alter_group(bootstrap: str, group: str, **configs: str) -> None:
    raw = Raw(bootstrap)
    try:
        resp = raw.request(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1, IncrementalAlterConfigsRequest(
            resources=(AlterConfigsResource(resource_type=i8(GROUP_RESOURCE), resource_name=group, configs=tuple(
                AlterableConfig(name=n.replace("_", "."), config_operation=i8(SET), value=v)
                for n, v in configs.items())),),
            validate_only=False))
        (r,) = resp.responses  # type: ignore[attr-defined]
        assert r.error_code == 0, r.error_message
        # Kafka applies a group config once its metadata record reaches the broker: wait until it describes it
        deadline = time.monotonic() + 20
        while True:
            d = raw.request(ApiKey.DESCRIBE_CONFIGS, 4, DescribeConfigsRequest(
                resources=(DescribeConfigsResource(resource_type=i8(GROUP_RESOURCE), resource_name=group,
                                                   configuration_keys=None),),
                include_synonyms=False, include_documentation=False))
            seen = {e.name: e.value for e in d.results[0].configs}  # type: ignore[attr-defined]
            if all(seen.get(n.replace("_", ".")) == v for n, v in configs.items()):
                return
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
    finally:
        raw.close()


def new_group(bootstrap: str, **configs: str) -> str:
    group = f"sg-{uuid.uuid4().hex[:8]}"
    alter_group(bootstrap, group, **{"share_auto_offset_reset": "earliest", **configs})
    return group


def group_configs(bootstrap: str, group: str) -> dict[str, str]:
    """The group's configs that are set on it (DescribeConfigs source GROUP_CONFIG)."""
    raw = Raw(bootstrap)
    try:
        d = raw.request(ApiKey.DESCRIBE_CONFIGS, 4, DescribeConfigsRequest(
            resources=(DescribeConfigsResource(resource_type=i8(GROUP_RESOURCE), resource_name=group,
                                               configuration_keys=None),),
            include_synonyms=False, include_documentation=False))
        return {e.name: e.value for e in d.results[0].configs if e.config_source == GROUP_CONFIG}  # type: ignore[attr-defined]
    finally:
        raw.close()


def new_topic(bootstrap: str, partitions: int = 1) -> str:
    name = f"st-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the topic is made
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def produce(bootstrap: str, topic: str, values: list[str], partition: int = 0) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for v in values:
        p.produce(topic, v.encode(), partition=partition)
    assert p.flush(30) == 0


def test_one_consumer_reads_every_record_once(bootstrap: str) -> None:
    topic, group = new_topic(bootstrap), new_group(bootstrap)
    values = [f"v{i}" for i in range(30)]
    produce(bootstrap, topic, values)
    got = probe(bootstrap, group, topic, "accept", expect=len(values))
    assert [(o, n, v) for _, o, n, v in got] == [(i, 1, v) for i, v in enumerate(values)]
    # everything was accepted: a second member of the group finds nothing more
    produce(bootstrap, topic, ["last"])
    assert [(o, n, v) for _, o, n, v in probe(bootstrap, group, topic, "accept", expect=1)] == [(30, 1, "last")]


def test_two_consumers_split_the_records(bootstrap: str, tmp_path: Path) -> None:
    topic, group = new_topic(bootstrap, 2), new_group(bootstrap)
    for p in (0, 1):
        produce(bootstrap, topic, [f"p{p}-{i}" for i in range(40)], partition=p)
    runs = probes_until(bootstrap, group, topic, 2, 80, tmp_path)
    accepted = [(p, o) for run in runs for p, o, _, _ in run]
    assert sorted(accepted) == sorted((p, i) for p in (0, 1) for i in range(40)), "a record twice or never"


def test_a_released_record_comes_back_with_a_higher_delivery_count(bootstrap: str) -> None:
    topic, group = new_topic(bootstrap), new_group(bootstrap)
    produce(bootstrap, topic, ["a", "b", "c"])
    got = probe(bootstrap, group, topic, "release-first", expect=3)
    by_offset: dict[int, list[int]] = {}
    for _, o, n, _ in got:
        by_offset.setdefault(o, []).append(n)
    assert by_offset == {0: [1, 2], 1: [1, 2], 2: [1, 2]}


def test_records_of_a_killed_consumer_go_to_another_at_once(bootstrap: str) -> None:
    """A consumer killed while it holds records (its JVM halted: no acknowledgement, no LeaveGroup) closes its
    connection, and Kafka 4.4 releases what its share session acquired then, not when the 30 s locks run out."""
    topic, group = new_topic(bootstrap), new_group(bootstrap, share_record_lock_duration_ms="30000")
    produce(bootstrap, topic, [f"v{i}" for i in range(10)])
    held = probe(bootstrap, group, topic, "hold")
    assert held and all(n == 1 for _, _, n, _ in held)
    started = time.monotonic()
    got = probe(bootstrap, group, topic, "accept", expect=10)
    assert sorted(o for _, o, _, _ in got) == list(range(10))
    assert {o: n for _, o, n, _ in got if o in {h[1] for h in held}} == {o: 2 for _, o, _, _ in held}
    assert time.monotonic() - started < 20  # released with the connection, long before the locks ran out


def first_member(bootstrap: str, group: str, topic: str) -> tuple[Raw, str, uuid.UUID]:
    """A member on a raw connection of its own, joined and assigned ``topic``: the connection, its member id and
    the topic's id."""
    raw = Raw(bootstrap)
    find_coordinator(raw, group)
    member = str(uuid.uuid4())
    topic_id = join_until_assigned(raw, group, member, topic).assignment.topic_partitions[0].topic_id
    return raw, member, topic_id


def acquired(answer: Any) -> list[tuple[int, int, int]]:
    """A ShareFetch answer's acquired ranges with their delivery counts."""
    return [(r.first_offset, r.last_offset, r.delivery_count)
            for t in answer.responses for q in t.partitions for r in q.acquired_records]


def fetch_until_acquired(raw: Raw, group: str, member: str, topic_id: uuid.UUID, seconds: float
                         ) -> tuple[list[tuple[int, int, int]], float]:
    """ShareFetch (each waiting up to 2 s) until some records are acquired: them, and when (monotonic)."""
    deadline, epoch = time.monotonic() + seconds, 0
    while True:
        got = acquired(share_fetch(raw, group, member, epoch, topic_id))
        epoch += 1
        if got or time.monotonic() > deadline:
            return got, time.monotonic()


def test_a_silent_member_holds_its_records_until_the_lock_runs_out(bootstrap: str) -> None:
    """A member that keeps its connection and its session but neither fetches nor acknowledges: another member
    gets its records only once their lock (2 s) has run out, delivered a second time."""
    topic, group = new_topic(bootstrap), new_group(bootstrap, share_record_lock_duration_ms=str(LOCK_MS))
    produce(bootstrap, topic, [f"v{i}" for i in range(10)])
    silent, member, topic_id = first_member(bootstrap, group, topic)
    try:
        assert acquired(share_fetch(silent, group, member, 0, topic_id)) == [(0, 9, 1)]
        locked_at = time.monotonic()
        other, other_member, _ = first_member(bootstrap, group, topic)
        try:
            got, at = fetch_until_acquired(other, group, other_member, topic_id, 15)
        finally:
            other.close()
    finally:
        silent.close()
    assert got == [(0, 9, 2)]
    assert at - locked_at >= LOCK_MS / 1000 * 0.5  # not before the lock ran out


def test_a_share_session_closed_by_its_final_epoch_releases_what_it_still_holds(bootstrap: str) -> None:
    """ShareAcknowledge with the final epoch (-1) acknowledges what it carries and closes the session; the rest of
    what the member acquired goes back at once (Kafka's releaseSession), not after the 30 s lock."""
    topic, group = new_topic(bootstrap), new_group(bootstrap, share_record_lock_duration_ms="30000")
    produce(bootstrap, topic, [f"v{i}" for i in range(10)])
    first, member, topic_id = first_member(bootstrap, group, topic)
    try:
        assert acquired(share_fetch(first, group, member, 0, topic_id)) == [(0, 9, 1)]
        assert acknowledge(first, group, member, -1, topic_id, 0, 4) == [0]
        started = time.monotonic()
        other, other_member, _ = first_member(bootstrap, group, topic)
        try:
            got, at = fetch_until_acquired(other, group, other_member, topic_id, 15)
        finally:
            other.close()
    finally:
        first.close()
    assert got == [(5, 9, 2)]
    assert at - started < 10


def test_the_delivery_count_limit_archives_a_record(bootstrap: str) -> None:
    topic, group = new_topic(bootstrap), new_group(bootstrap, share_delivery_count_limit="2")
    produce(bootstrap, topic, ["poison", "sentinel"])
    got = probe(bootstrap, group, topic, "release-all", idle_ms=3000)
    assert [n for _, o, n, _ in got if o == 0] == [1, 2]  # released twice, then archived: never a third time
    assert [n for _, o, n, _ in got if o == 1] == [1]


# -- bad input, over a raw connection ----------------------------------------------------------------------------


def heartbeat(raw: Raw, group: str, member: str, epoch: int, topics: tuple[str, ...] | None = None) -> object:
    """One ShareGroupHeartbeat, sent again while the coordinator is still loading (as a client does)."""
    deadline = time.monotonic() + 30
    while True:
        r = raw.request(ApiKey.SHARE_GROUP_HEARTBEAT, 1, ShareGroupHeartbeatRequest(
            group_id=group, member_id=member, member_epoch=i32(epoch), subscribed_topic_names=topics))
        if r.error_code not in COORDINATOR_NOT_READY or time.monotonic() > deadline:  # type: ignore[attr-defined]
            return r
        time.sleep(0.2)


def join_until_assigned(raw: Raw, group: str, member: str, topic: str) -> Any:
    """Join ``group`` for ``topic`` and heartbeat until the member is assigned a partition: the last answer."""
    a: Any = heartbeat(raw, group, member, 0, (topic,))
    deadline = time.monotonic() + 20
    while not (a.assignment and a.assignment.topic_partitions):
        assert a.error_code == 0 and time.monotonic() < deadline
        time.sleep(0.2)
        a = heartbeat(raw, group, member, a.member_epoch)
    return a


def share_fetch(raw: Raw, group: str, member: str, epoch: int, topic_id: uuid.UUID,
                acks: tuple[tuple[int, int, int], ...] = ()) -> object:
    return raw.request(ApiKey.SHARE_FETCH, 2, fetch_req.ShareFetchRequest(
        group_id=group, member_id=member, share_session_epoch=i32(epoch),
        max_wait=datetime.timedelta(milliseconds=2000), min_bytes=i32(1), max_records=i32(10), batch_size=i32(10),
        topics=(fetch_req.FetchTopic(topic_id=topic_id, partitions=(fetch_req.FetchPartition(
            partition_index=i32(0), acknowledgement_batches=tuple(
                fetch_req.AcknowledgementBatch(first_offset=f, last_offset=last, acknowledge_types=(i8(t),))
                for f, last, t in acks)),)),),
        forgotten_topics_data=()))


def acknowledge(raw: Raw, group: str, member: str, epoch: int, topic_id: uuid.UUID, first: int,
                last: int) -> list[int]:
    """ShareAcknowledge ACCEPT of ``first``..``last``: each partition's error code."""
    r = raw.request(ApiKey.SHARE_ACKNOWLEDGE, 2, ack_req.ShareAcknowledgeRequest(
        group_id=group, member_id=member, share_session_epoch=i32(epoch), topics=(ack_req.AcknowledgeTopic(
            topic_id=topic_id, partitions=(ack_req.AcknowledgePartition(
                partition_index=i32(0), acknowledgement_batches=(ack_req.AcknowledgementBatch(
                    first_offset=first, last_offset=last, acknowledge_types=(i8(1),)),)),)),)))
    assert r.error_code == 0  # type: ignore[attr-defined]
    return [int(p.error_code) for t in r.responses for p in t.partitions]  # type: ignore[attr-defined]


def test_bad_share_requests_get_kafkas_error_codes(bootstrap: str) -> None:
    topic, group = new_topic(bootstrap), new_group(bootstrap)
    produce(bootstrap, topic, ["a", "b", "c", "d"])
    raw = Raw(bootstrap)
    try:
        find_coordinator(raw, group)
        member = str(uuid.uuid4())
        # no group yet: only a join makes one
        assert heartbeat(raw, group, member, 5).error_code == GROUP_ID_NOT_FOUND  # type: ignore[attr-defined]
        joined = heartbeat(raw, group, member, 0, (topic,))
        assert joined.error_code == 0  # type: ignore[attr-defined]
        assert heartbeat(raw, group, str(uuid.uuid4()), 5).error_code == UNKNOWN_MEMBER_ID  # type: ignore[attr-defined]
        # the group id is a share group's: a consumer group member cannot join it
        consumer = raw.request(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, ConsumerGroupHeartbeatRequest(
            group_id=group, member_id=str(uuid.uuid4()), member_epoch=i32(0),
            rebalance_timeout=datetime.timedelta(seconds=30), subscribed_topic_names=(topic,), server_assignor=None,
            topic_partitions=()))
        assert consumer.error_code == GROUP_ID_NOT_FOUND  # type: ignore[attr-defined]
        # ... nor a classic one
        classic = raw.request(ApiKey.JOIN_GROUP, 9, JoinGroupRequest(
            group_id=group, session_timeout=datetime.timedelta(seconds=45),
            rebalance_timeout=datetime.timedelta(seconds=30), member_id="", group_instance_id=None,
            protocol_type="consumer", protocols=(JoinGroupRequestProtocol(name="range", metadata=b""),),
            reason=None))
        assert classic.error_code == INCONSISTENT_GROUP_PROTOCOL  # type: ignore[attr-defined]
        epoch = joined.member_epoch  # type: ignore[attr-defined]
        assert heartbeat(raw, group, member, epoch + 7).error_code == FENCED_MEMBER_EPOCH  # type: ignore[attr-defined]
        deadline = time.monotonic() + 20
        a = joined
        while not (a.assignment and a.assignment.topic_partitions):  # type: ignore[attr-defined]
            assert a.error_code == 0 and time.monotonic() < deadline  # type: ignore[attr-defined]
            time.sleep(0.2)
            a = heartbeat(raw, group, member, a.member_epoch)  # type: ignore[attr-defined]
        topic_id = a.assignment.topic_partitions[0].topic_id  # type: ignore[attr-defined]
        # no share session open yet
        assert share_fetch(raw, group, member, 3, topic_id).error_code == SHARE_SESSION_NOT_FOUND  # type: ignore[attr-defined]
        first = share_fetch(raw, group, member, 0, topic_id)
        assert first.error_code == 0  # type: ignore[attr-defined]
        acquired = [(r.first_offset, r.last_offset) for t in first.responses  # type: ignore[attr-defined]
                    for p in t.partitions for r in p.acquired_records]
        assert acquired and acquired[0][0] == 0
        assert share_fetch(raw, group, member, 5, topic_id).error_code == INVALID_SHARE_SESSION_EPOCH  # type: ignore[attr-defined]
        # a ShareAcknowledge cannot open a session
        zero = raw.request(ApiKey.SHARE_ACKNOWLEDGE, 2, ack_req.ShareAcknowledgeRequest(
            group_id=group, member_id=member, share_session_epoch=i32(0), topics=()))
        assert zero.error_code == INVALID_SHARE_SESSION_EPOCH  # type: ignore[attr-defined]
        # acknowledgements of records never delivered: INVALID_REQUEST for the partition
        assert acknowledge(raw, group, member, 1, topic_id, 100, 101) == [INVALID_REQUEST]
        # of records another member holds: INVALID_RECORD_STATE
        other = str(uuid.uuid4())
        assert share_fetch(raw, group, other, 0, topic_id).error_code == 0  # type: ignore[attr-defined]
        assert acknowledge(raw, group, other, 1, topic_id, 0, 0) == [INVALID_RECORD_STATE]
        # the records it did acquire are accepted, piggybacked on the next fetch
        last = max(hi for _, hi in acquired)
        accepted = share_fetch(raw, group, member, 2, topic_id, acks=((0, last, 1),))
        assert accepted.error_code == 0  # type: ignore[attr-defined]
        assert [p.acknowledge_error_code for t in accepted.responses for p in t.partitions  # type: ignore[attr-defined]
                if p.partition_index == 0][:1] == [0]
        # accepting them again, now below the start offset, changes nothing and is no error
        again = share_fetch(raw, group, member, 3, topic_id, acks=((last, last, 1),))
        assert [p.acknowledge_error_code for t in again.responses for p in t.partitions] == [0]  # type: ignore[attr-defined]
        assert heartbeat(raw, group, member, -1).error_code == 0  # type: ignore[attr-defined]
    finally:
        raw.close()


# -- Kafka's kafka-share-groups tool -------------------------------------------------------------------------------


def share_groups_tool(bootstrap: str, *args: str) -> list[str]:
    r = subprocess.run(
        ["java", "-Xmx128m", "-XX:TieredStopAtLevel=1", "-cp", f"{tools_jars(VERSION)}/*",
         "org.apache.kafka.tools.consumer.group.ShareGroupCommand", "--bootstrap-server", bootstrap, *args],
        capture_output=True, text=True, timeout=90, check=False)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    return r.stdout.splitlines()


def test_a_fetch_acquires_whole_batches_past_its_max_records(bootstrap: str) -> None:
    """ShareFetch's MaxRecords "can be exceeded for alignment of batch boundaries": a fetch for 10 records acquires
    the whole 30-record batch they start (the client receives it whole anyway) and stops before the next batch;
    the answer carries that batch and no other."""
    topic, group = new_topic(bootstrap), new_group(bootstrap)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 60_000})  # each flush: one batch of what is queued
    for batch in range(2):
        for i in range(30):
            p.produce(topic, f"b{batch}-{i}".encode(), partition=0)
        assert p.flush(30) == 0
    raw = Raw(bootstrap)
    try:
        find_coordinator(raw, group)
        member = str(uuid.uuid4())
        a = join_until_assigned(raw, group, member, topic)
        topic_id = a.assignment.topic_partitions[0].topic_id  # type: ignore[attr-defined]
        first = share_fetch(raw, group, member, 0, topic_id)
        (part,) = [q for t in first.responses for q in t.partitions]  # type: ignore[attr-defined]
        assert part.error_code == 0
        assert [(r.first_offset, r.last_offset) for r in part.acquired_records] == [(0, 29)]
        assert [(h.base_offset, h.last_offset) for _, h in iter_batches(part.records)] == [(0, 29)]
        second = share_fetch(raw, group, member, 1, topic_id, acks=((0, 29, 1),))
        (part,) = [q for t in second.responses for q in t.partitions]  # type: ignore[attr-defined]
        assert (part.error_code, part.acknowledge_error_code) == (0, 0)
        assert [(r.first_offset, r.last_offset) for r in part.acquired_records] == [(30, 59)]
    finally:
        raw.close()


def test_kafka_share_groups_lists_and_describes(bootstrap: str) -> None:
    topic, group = new_topic(bootstrap), new_group(bootstrap)
    produce(bootstrap, topic, [f"v{i}" for i in range(5)])
    assert len(probe(bootstrap, group, topic, "accept", expect=5)) == 5
    assert group in share_groups_tool(bootstrap, "--list")
    lines = [line.split() for line in share_groups_tool(bootstrap, "--describe", "--group", group) if line.strip()]
    header = next(row for row in lines if "START-OFFSET" in row)
    rows = [dict(zip(header, row, strict=True)) for row in lines if topic in row]
    assert [(r["GROUP"], r["PARTITION"], r["LAG"]) for r in rows] == [(group, "0", "0")]
    # Kafka 4.4 shows the start offset it last wrote to __share_group_state, which may trail the acknowledgements
    # (0 here, with the lag counting the 5 done records out); loosely shows the current one, 5
    assert 0 <= int(rows[0]["START-OFFSET"]) <= 5
    state = [line.split() for line in share_groups_tool(bootstrap, "--describe", "--group", group, "--state")]
    assert any(group in row and "Empty" in row for row in state), state


# -- group configs: isolation level and by_duration; restarts and deletion ----------------------------------------


def _values(deliveries: list[tuple[int, int, int, str]]) -> list[str]:
    return [v for _, _, _, v in deliveries]


def test_read_committed_hides_aborted_and_open_transactions(bootstrap: str) -> None:
    """``share.isolation.level=read_committed``: records of aborted transactions are never delivered, and those of a
    transaction still open wait until it commits (and everything after them with them); the default,
    read_uncommitted, delivers every data record."""
    topic = new_topic(bootstrap)
    committed, uncommitted = new_group(bootstrap, share_isolation_level="read_committed"), new_group(bootstrap)
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"tx-{uuid.uuid4().hex[:8]}"})
    p.init_transactions(30)
    for values, commit in ((["c1", "c2"], True), (["a1", "a2"], False), (["c3"], True), (["o1"], None)):
        p.begin_transaction()
        for v in values:
            p.produce(topic, v.encode(), partition=0)
        assert p.flush(30) == 0  # written (librdkafka drops what is still queued when it aborts)
        if commit:
            p.commit_transaction(30)
        elif commit is not None:
            p.abort_transaction(30)  # None: left open
    assert _values(probe(bootstrap, committed, topic, "accept")) == ["c1", "c2", "c3"]
    p.commit_transaction(30)
    assert _values(probe(bootstrap, committed, topic, "accept", expect=1)) == ["o1"]
    assert sorted(_values(probe(bootstrap, uncommitted, topic, "accept", expect=6))) == [
        "a1", "a2", "c1", "c2", "c3", "o1"]


def test_by_duration_starts_at_the_first_record_that_recent(bootstrap: str) -> None:
    """``share.auto.offset.reset=by_duration:PT1H``: a share-partition starts at the first record at most an hour
    old; a value Kafka's ShareGroupAutoOffsetResetStrategy refuses is INVALID_CONFIG."""
    topic = new_topic(bootstrap)
    now_ms = int(time.time() * 1000)
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(3):
        p.produce(topic, f"old{i}".encode(), partition=0, timestamp=now_ms - 2 * 3_600_000)
    for i in range(3):
        p.produce(topic, f"new{i}".encode(), partition=0, timestamp=now_ms)
    assert p.flush(30) == 0
    group = new_group(bootstrap, share_auto_offset_reset="by_duration:PT1H")
    assert _values(probe(bootstrap, group, topic, "accept", expect=3)) == ["new0", "new1", "new2"]
    raw = Raw(bootstrap)
    try:
        for bad in ("by_duration", "by_duration:-PT1H", "by_duration:1h", "none"):
            resp = raw.request(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1, IncrementalAlterConfigsRequest(
                resources=(AlterConfigsResource(resource_type=i8(GROUP_RESOURCE), resource_name=group, configs=(
                    AlterableConfig(name="share.auto.offset.reset", config_operation=i8(SET), value=bad),)),),
                validate_only=False))
            (r,) = resp.responses  # type: ignore[attr-defined]
            assert (r.error_code, bad) == (INVALID_CONFIG, bad)
            assert "by_duration:<PnDTnHnMn.nS>" in r.error_message
    finally:
        raw.close()


def test_members_are_kept_across_a_restart(node: Node) -> None:
    """Kafka writes share group membership to __consumer_offsets (member metadata and assignment records) and
    starts each member's session again when it loads them: after a restart the member heartbeats on at its epoch."""
    topic, group = new_topic(node.bootstrap_servers), new_group(node.bootstrap_servers)
    member = str(uuid.uuid4())
    raw = Raw(node.bootstrap_servers)
    try:
        find_coordinator(raw, group)
        a = join_until_assigned(raw, group, member, topic)
        epoch = a.member_epoch  # type: ignore[attr-defined]
    finally:
        raw.close()
    node.restart()
    raw = Raw(node.bootstrap_servers)
    try:
        find_coordinator(raw, group)
        again = heartbeat(raw, group, member, epoch)
        assert (again.error_code, again.member_epoch) == (0, epoch)  # type: ignore[attr-defined]
        (described,) = raw.request(ApiKey.SHARE_GROUP_DESCRIBE, 1, ShareGroupDescribeRequest(
            group_ids=(group,), include_authorized_operations=False)).groups  # type: ignore[attr-defined]
        assert [(m.member_id, m.member_epoch, m.subscribed_topic_names) for m in described.members] == [
            (member, epoch, (topic,))]
        assert heartbeat(raw, group, member, -1).error_code == 0  # type: ignore[attr-defined]
    finally:
        raw.close()


def test_deleting_a_share_group_forgets_its_state_and_keeps_its_configs(bootstrap: str) -> None:
    """DeleteGroups of an empty share group deletes its share-partition state (Kafka's persister deleteState), so the
    group reads from its reset point again when it comes back; its group configs stay (Kafka keeps them: they live
    in the cluster metadata, which DeleteGroups does not touch)."""
    topic, group = new_topic(bootstrap), new_group(bootstrap, share_delivery_count_limit="3")
    produce(bootstrap, topic, ["d0", "d1", "d2"])
    assert [(v, n) for _, _, n, v in probe(bootstrap, group, topic, "accept", expect=3)] == [
        ("d0", 1), ("d1", 1), ("d2", 1)]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_consumer_groups([group], request_timeout=30)[group].result(30)
    assert group_configs(bootstrap, group) == {"share.auto.offset.reset": "earliest",
                                               "share.delivery.count.limit": "3"}
    assert [(v, n) for _, _, n, v in probe(bootstrap, group, topic, "accept", expect=3)] == [
        ("d0", 1), ("d1", 1), ("d2", 1)]

