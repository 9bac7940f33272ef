"""Streams groups (KIP-1071) against loosely and Apache Kafka 4.4.0 side by side, with the same assertions.

The application is Kafka Streams 4.4.0 with ``group.protocol=streams`` (interop/streams-app/StreamsProbe.java: a
count by value, re-keyed through a repartition topic into a state store with a changelog topic); the group is
looked at with ``kafka-streams-groups`` (kafka-tools 4.4.0) and bad input goes over a raw connection. Each broker is
started once for the module with the streams session timeout lowered to 6 s and the heartbeat interval to 1 s, so
that a member that dies is timed out within a test's time.
"""

from __future__ import annotations

import datetime
import functools
import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest
from kio.schema.list_groups.v5.request import ListGroupsRequest
from kio.schema.offset_commit.v9 import request as oc
from kio.schema.streams_group_describe.v0.request import StreamsGroupDescribeRequest
from kio.schema.streams_group_heartbeat.v0 import request as hb
from kio.static.primitive import i8, i16, i32, i64

from broker._raw import Raw
from compat._configs import (
    APPEND,
    DEFAULT,
    GROUP,
    GROUP_CONFIG,
    INVALID_CONFIG,
    SET,
    SUBTRACT,
    alter,
    describe,
    wait_for,
)
from compat._java import ROOT
from compat._kafka_tools import tools_jars
from compat._nodes import COORDINATOR_NOT_READY, KafkaNode, LooselyNode, find_coordinator
from loosely.protocol.messages import ApiKey, load_request_schema
from loosely.protocol.streams_schemas import (
    NOT_REQUESTED,
    NOT_STORED,
    StreamsGroupDescribeRequestV1,
    StreamsGroupTopologyDescriptionUpdateRequest,
    TopologyDescription,
    TopologyDescriptionNode,
    TopologyDescriptionSubtopology,
)

VERSION = "4.4.0"
BROKER_SETTINGS = {"group.streams.session.timeout.ms": "6000", "group.streams.heartbeat.interval.ms": "1000"}
KAFKA_SETTINGS = {
    **BROKER_SETTINGS,
    "group.streams.min.session.timeout.ms": "1000",
    "group.streams.min.heartbeat.interval.ms": "500",
}

INVALID_REQUEST, UNKNOWN_MEMBER_ID, GROUP_ID_NOT_FOUND, FENCED_MEMBER_EPOCH = 42, 25, 69, 110
INCONSISTENT_GROUP_PROTOCOL, STREAMS_INVALID_TOPOLOGY, UNSUPPORTED_VERSION = 23, 130, 35
MISSING_SOURCE_TOPICS, MISSING_INTERNAL_TOPICS, ASSIGNMENT_DELAYED = 1, 3, 5
STALE_MEMBER_EPOCH = 113


@pytest.fixture(scope="module")
def kafka44(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaNode]:
    node = KafkaNode(tmp_path_factory.mktemp("kafka-streams"), KAFKA_SETTINGS)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def loosely_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LooselyNode]:
    node = LooselyNode(tmp_path_factory.mktemp("loosely-streams") / "data", BROKER_SETTINGS)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(params=["loosely", "kafka"])
def node(request: pytest.FixtureRequest) -> KafkaNode | LooselyNode:
    """The module's broker, restartable in place (same port, same data)."""
    found = request.getfixturevalue("loosely_broker" if request.param == "loosely" else "kafka44")
    assert isinstance(found, KafkaNode | LooselyNode)
    return found


@pytest.fixture
def bootstrap(node: KafkaNode | LooselyNode) -> str:
    return node.bootstrap_servers


@functools.cache
def _jars() -> Path:
    """Kafka 4.4.0's jars with kafka-streams (interop/pom.xml lists it), resolved by interop/fetch-jars."""
    out = subprocess.run([str(ROOT / "interop" / "fetch-jars")], check=True, capture_output=True, text=True,
                         env={**os.environ, "LOOSELY_KAFKA_VERSION": VERSION})
    return Path(out.stdout.strip())


@functools.cache
def _compiled() -> Path:
    out = Path(tempfile.mkdtemp(prefix="loosely-streams-probe-"))
    sources = [str(p) for p in (ROOT / "interop" / "streams-app").glob("*.java")]
    subprocess.run(["javac", "-d", str(out), "-cp", f"{_jars()}/*", *sources], check=True)
    return out


class App:
    """One StreamsProbe process: its printed lines, read as they come."""

    def __init__(self, bootstrap: str, app_id: str, source: str, sink: str, tmp: Path, mode: str = "close") -> None:
        self.stop_file = tmp / f"stop-{uuid.uuid4().hex[:6]}"
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            ["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp",
             f"{_compiled()}:{_jars()}/*", "StreamsProbe", bootstrap, app_id, source, sink, str(self.stop_file),
             mode],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def active(self) -> set[str]:
        """The active tasks it last reported."""
        with self._cond:
            last = [x for x in self.lines if x.startswith("active")]
        return set(last[-1].split(" ", 1)[1].split(",")) - {""} if last else set()

    def wait_active(self, check: object, timeout_s: float = 90) -> set[str]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                got = self.active()
                if check(got):  # type: ignore[operator]
                    return got
                left = deadline - time.monotonic()
                assert left > 0 and self.proc.poll() is None, (got, self.lines[-20:], self.proc.poll())
                self._cond.wait(min(left, 1))

    def stop(self) -> int:
        self.stop_file.touch()
        try:
            return self.proc.wait(timeout=60)
        finally:
            self.proc.kill()


def new_topic(bootstrap: str, partitions: int) -> str:
    name = f"st-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def produce(bootstrap: str, topic: str, values: list[str]) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for i, v in enumerate(values):
        p.produce(topic, v.encode(), key=str(i).encode())
    assert p.flush(30) == 0


def counts(bootstrap: str, topic: str, expected: dict[str, str], timeout_s: float = 90) -> dict[str, str]:
    """Read the output topic until every key's latest count is the expected one (or time runs out)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    latest: dict[str, str] = {}
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while latest != expected and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                latest[(m.key() or b"").decode()] = (m.value() or b"").decode()
    finally:
        c.close()
    return latest


def topics_of(bootstrap: str, app_id: str) -> dict[str, int]:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=20)
    return {n: len(t.partitions) for n, t in md.topics.items() if n.startswith(app_id)}


def streams_groups_tool(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``kafka-streams-groups.sh`` of kafka-tools 4.4.0."""
    return subprocess.run(
        ["java", "-Xmx128m", "-XX:TieredStopAtLevel=1", "-cp", f"{tools_jars(VERSION)}/*",
         "org.apache.kafka.tools.streams.StreamsGroupCommand", "--bootstrap-server", bootstrap, *args],
        capture_output=True, text=True, timeout=90, check=False)


def test_api_versions_advertise_streams_groups(bootstrap: str) -> None:
    raw = Raw(bootstrap)
    try:
        r = raw.request(ApiKey.API_VERSIONS, 3, ApiVersionsRequest(client_software_name="t",
                                                                   client_software_version="1"))
    finally:
        raw.close()
    keys = {int(k.api_key): (int(k.min_version), int(k.max_version)) for k in r.api_keys}  # type: ignore[attr-defined]
    # Kafka 4.4.0's versions: heartbeat and describe v1 and the topology description push (KIP-1331)
    assert keys[ApiKey.STREAMS_GROUP_HEARTBEAT] == (0, 1)
    assert keys[ApiKey.STREAMS_GROUP_DESCRIBE] == (0, 1)
    assert keys[ApiKey.STREAMS_GROUP_TOPOLOGY_DESCRIPTION_UPDATE] == (0, 0)
    finalized = {f.name: int(f.max_version_level) for f in r.finalized_features}  # type: ignore[attr-defined]
    assert finalized["streams.version"] == 1


def test_count_app_gives_the_same_counts_and_tools_see_the_group(bootstrap: str, tmp_path: Path) -> None:
    source, sink = new_topic(bootstrap, 2), new_topic(bootstrap, 1)
    app_id = f"app-{uuid.uuid4().hex[:6]}"
    words = ["a", "b", "a", "c", "b", "a"] * 5
    produce(bootstrap, source, words)
    expected = {w: str(words.count(w)) for w in set(words)}
    app = App(bootstrap, app_id, source, sink, tmp_path)
    try:
        # one member runs every task: 2 subtopologies (read and re-key; count) of 2 partitions each
        assert app.wait_active(lambda got: len(got) == 4) == {"0_0", "0_1", "1_0", "1_1"}
        assert counts(bootstrap, sink, expected) == expected
        # the broker made the repartition and changelog topics, with the source topic's partition count
        internal = topics_of(bootstrap, app_id)
        assert sorted(n.rsplit("-", 1)[1] for n in internal) == ["changelog", "repartition"]
        assert set(internal.values()) == {2}
        listed = streams_groups_tool(bootstrap, "--list")
        assert listed.returncode == 0, listed.stderr[-2000:]
        assert app_id in listed.stdout.split()
        described = streams_groups_tool(bootstrap, "--describe", "--group", app_id, "--members")
        assert described.returncode == 0, described.stderr[-2000:]
        assert app_id in described.stdout
        # the offsets the application committed with its member epoch are the group's
        offsets = streams_groups_tool(bootstrap, "--describe", "--group", app_id, "--offsets")
        assert offsets.returncode == 0, offsets.stderr[-2000:]
        assert source in offsets.stdout, offsets.stdout + offsets.stderr[-2000:]
        # a group with members is not deleted
        refused = streams_groups_tool(bootstrap, "--delete", "--group", app_id)
        assert "was successful" not in refused.stdout, refused.stdout
        assert app_id in streams_groups_tool(bootstrap, "--list").stdout.split()
    finally:
        assert app.stop() == 0
    deadline = time.monotonic() + 30
    while True:  # the member left: the group is empty now and can go
        deleted = streams_groups_tool(bootstrap, "--delete", "--group", app_id)
        if f"Deletion of requested streams groups ('{app_id}') was successful." in deleted.stdout:
            break
        assert time.monotonic() < deadline, deleted.stdout + deleted.stderr[-2000:]
        time.sleep(1)
    assert app_id not in streams_groups_tool(bootstrap, "--list").stdout.split()


def test_two_instances_split_the_tasks_and_one_takes_over(bootstrap: str, tmp_path: Path) -> None:
    source, sink = new_topic(bootstrap, 4), new_topic(bootstrap, 1)
    app_id = f"app-{uuid.uuid4().hex[:6]}"
    every = {f"{s}_{p}" for s in (0, 1) for p in range(4)}
    words = [f"w{i % 7}" for i in range(40)]
    produce(bootstrap, source, words)
    first = App(bootstrap, app_id, source, sink, tmp_path, mode="halt")
    second: App | None = None
    try:
        assert first.wait_active(lambda got: got == every) == every
        second = App(bootstrap, app_id, source, sink, tmp_path)
        # the tasks are split: each runs some, none runs a task twice, all are run
        second.wait_active(lambda got: len(got) == 4)
        first.wait_active(lambda got: len(got) == 4)
        assert first.active() | second.active() == every and not first.active() & second.active()
        # the first dies without leaving: after its session timeout the second runs everything
        first.stop()
        second.wait_active(lambda got: got == every, timeout_s=60)
        expected = {w: str(words.count(w)) for w in set(words)}
        assert counts(bootstrap, sink, expected) == expected
    finally:
        first.proc.kill()
        if second is not None:
            assert second.stop() == 0


def _described(bootstrap: str, group: str) -> tuple[int, list[tuple[str, int, set[str]]]]:
    """The group's epoch and each member's id, epoch and active tasks, as StreamsGroupDescribe gives them."""
    raw = Raw(bootstrap)
    try:
        deadline = time.monotonic() + 60
        while True:
            (g,) = raw.request(ApiKey.STREAMS_GROUP_DESCRIBE, 0, StreamsGroupDescribeRequest(
                group_ids=(group,), include_authorized_operations=False)).groups  # type: ignore[attr-defined]
            if g.error_code not in COORDINATOR_NOT_READY or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    finally:
        raw.close()
    assert g.error_code == 0, g
    return int(g.group_epoch), sorted(
        (m.member_id, int(m.member_epoch), {f"{t.subtopology_id}_{p}" for t in m.assignment.active_tasks
                                            for p in t.partitions})
        for m in g.members)


def _wait_committed(bootstrap: str, group: str, source: str, timeout_s: float = 60) -> None:
    """Until the group has committed an offset at the end of every partition it reads: the source's and its
    repartition topics' (``<group>-...-repartition``). A partition with no commit yet does not count as done:
    Kafka Streams commits a repartition topic's first offsets a commit interval after the source's, and a broker
    killed between the two leaves the application to read the repartition topic again from its start after the
    restart, counting every word twice (seen on Apache Kafka 4.4.0 in CI)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:6]}"})
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            topics = c.list_topics(timeout=10).topics
            wanted = {(t, p) for t, md in topics.items() for p in md.partitions
                      if t == source or (t.startswith(f"{group}-") and t.endswith("-repartition"))}
            got = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(30)
            committed = {(tp.topic, tp.partition): tp.offset for tp in got.topic_partitions if tp.offset >= 0}
            ends = {tp: c.get_watermark_offsets(TopicPartition(*tp), 10)[1] for tp in sorted(wanted)}
            behind = [(t, p, committed.get((t, p)), high) for (t, p), high in ends.items()
                      if high > 0 and committed.get((t, p), -1) < high]  # an empty partition needs no commit
            if len(wanted) > len(topics[source].partitions) and not behind:
                return
            assert time.monotonic() < deadline, behind or "nothing committed"
            time.sleep(0.2)
    finally:
        c.close()


def test_an_app_keeps_its_tasks_across_a_broker_restart(node: KafkaNode | LooselyNode, tmp_path: Path) -> None:
    """Kafka keeps a streams group's members, epochs, assignments and topology in ``__consumer_offsets``, loosely in
    ``streams-groups.json``: after the broker restarts (Kafka's node is killed and started again on its data,
    loosely stopped and started on its data directory and port) the application goes on with the same member at the
    same epochs and tasks. No rebalance: the member never gives up a task, and its epoch does not start again."""
    bootstrap = node.bootstrap_servers
    source, sink = new_topic(bootstrap, 2), new_topic(bootstrap, 1)
    app_id = f"app-{uuid.uuid4().hex[:6]}"
    every = {"0_0", "0_1", "1_0", "1_1"}
    words = ["a", "b", "a", "c"] * 3
    produce(bootstrap, source, words)
    app = App(bootstrap, app_id, source, sink, tmp_path)
    try:
        assert app.wait_active(lambda got: got == every) == every
        expected = {w: str(words.count(w)) for w in set(words)}
        assert counts(bootstrap, sink, expected) == expected
        before = _described(bootstrap, app_id)
        assert [tasks for _, _, tasks in before[1]] == [every]
        # the app commits every 200 ms; a broker killed before its commit covers what it counted hands the records
        # out again (at-least-once), which would count them twice on either broker
        _wait_committed(bootstrap, app_id, source)
        node.restart()
        more = ["c", "d", "a"] * 2
        produce(bootstrap, source, more)
        expected = {w: str((words + more).count(w)) for w in set(words + more)}
        assert counts(bootstrap, sink, expected, timeout_s=120) == expected
        # the same member with the same tasks, at its epoch or later: Kafka may bump the group epoch once when it
        # loads the group (it measures the topology again against topics it is still loading), keeping the tasks
        (epoch, members), (epoch_before, members_before) = _described(bootstrap, app_id), before
        assert [(m, tasks) for m, _, tasks in members] == [(m, tasks) for m, _, tasks in members_before]
        assert epoch >= epoch_before and members[0][1] >= members_before[0][1], (before, epoch, members)
        with app._cond:
            changes = [x for x in app.lines if x.startswith("active")]
        full = f"active {','.join(sorted(every))}"
        assert changes[changes.index(full):] == [full], changes
    finally:
        assert app.stop() == 0


def _heartbeat(raw: Raw, group: str, member: str, epoch: int, topology: hb.Topology | None = None,
               process: str | None = None) -> object:
    """One StreamsGroupHeartbeat, sent again while the coordinator is still loading (as a client does)."""
    deadline = time.monotonic() + 30
    while True:
        r = raw.request(ApiKey.STREAMS_GROUP_HEARTBEAT, 0, hb.StreamsGroupHeartbeatRequest(
            group_id=group, member_id=member, member_epoch=i32(epoch), endpoint_information_epoch=i32(0),
            rebalance_timeout=datetime.timedelta(seconds=30) if epoch == 0 else datetime.timedelta(milliseconds=-1),
            topology=topology, active_tasks=() if epoch == 0 else None, standby_tasks=() if epoch == 0 else None,
            warmup_tasks=() if epoch == 0 else None, process_id=process, client_tags=() if epoch == 0 else None,
            task_offsets=None, task_end_offsets=None))
        if r.error_code not in COORDINATOR_NOT_READY or time.monotonic() > deadline:  # type: ignore[attr-defined]
            return r
        time.sleep(0.2)


def _topology(source: str, changelog_partitions: int = 0) -> hb.Topology:
    return hb.Topology(epoch=i32(0), subtopologies=(hb.Subtopology(
        subtopology_id="0", source_topics=(source,), repartition_sink_topics=(),
        state_changelog_topics=(hb.TopicInfo(name=f"{source}-store-changelog", partitions=i32(changelog_partitions),
                                             replication_factor=i16(0), topic_configs=()),),
        repartition_source_topics=(), copartition_groups=()),))


def test_bad_streams_requests_get_kafkas_error_codes(bootstrap: str) -> None:
    group, member = f"sg-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    source = new_topic(bootstrap, 2)
    raw = Raw(bootstrap)
    try:
        find_coordinator(raw, group)
        # malformed: no topology on a join; a changelog topic with a partition count; an epoch below -2
        r = _heartbeat(raw, group, member, 0, None, "p")
        assert r.error_code == INVALID_REQUEST, r  # type: ignore[attr-defined]
        r = _heartbeat(raw, group, member, 0, _topology(source, 3), "p")
        assert r.error_code == STREAMS_INVALID_TOPOLOGY, r  # type: ignore[attr-defined]
        assert _heartbeat(raw, group, member, -3).error_code == INVALID_REQUEST  # type: ignore[attr-defined]
        # no group yet: only a join makes one
        assert _heartbeat(raw, group, member, 4).error_code == GROUP_ID_NOT_FOUND  # type: ignore[attr-defined]
        # a source topic that does not exist: the member joins, and hears why it gets no tasks
        missing = f"{group}-missing"
        r = _heartbeat(raw, f"{group}-m", member, 0, _topology(missing), "p")
        assert r.error_code == 0, r  # type: ignore[attr-defined]
        assert MISSING_SOURCE_TOPICS in {s.status_code for s in r.status or ()}  # type: ignore[attr-defined]
        assert not r.active_tasks  # type: ignore[attr-defined]
        # the changelog topic is missing: the broker says so and creates it (once the broker's metadata has the
        # source topic: Kafka's coordinator reads it there a moment after CreateTopics answered)
        deadline = time.monotonic() + 30
        while source not in topics_of(bootstrap, source):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        # (and Kafka's coordinator may still miss it in its own image after Metadata has it: the member then hears
        # MISSING_SOURCE_TOPICS and joins again, as a Streams client does on its next heartbeat)
        while True:
            joined = _heartbeat(raw, group, member, 0, _topology(source), "p")
            assert joined.error_code == 0, joined  # type: ignore[attr-defined]
            statuses = {s.status_code for s in joined.status or ()}  # type: ignore[attr-defined]
            if MISSING_SOURCE_TOPICS not in statuses or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert MISSING_INTERNAL_TOPICS in statuses, joined
        deadline = time.monotonic() + 30
        while f"{source}-store-changelog" not in topics_of(bootstrap, source):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert topics_of(bootstrap, source)[f"{source}-store-changelog"] == 2
        epoch = joined.member_epoch  # type: ignore[attr-defined]
        # another topology than the group's, at its topology epoch or a newer one, is an update Kafka 4.4 refuses
        other = hb.Topology(epoch=i32(0), subtopologies=(_topology(source).subtopologies[0], hb.Subtopology(
            subtopology_id="1", source_topics=(source,), repartition_sink_topics=(), state_changelog_topics=(),
            repartition_source_topics=(), copartition_groups=())))
        for changed in (other, hb.Topology(epoch=i32(1), subtopologies=other.subtopologies)):
            r = _heartbeat(raw, group, str(uuid.uuid4()), 0, changed, "q")
            assert (r.error_code, r.error_message) == (  # type: ignore[attr-defined]
                INVALID_REQUEST, "Topology updates are not supported yet."), r
        assert _heartbeat(raw, group, str(uuid.uuid4()), 5).error_code == UNKNOWN_MEMBER_ID  # type: ignore
        assert _heartbeat(raw, group, member, epoch + 7).error_code == FENCED_MEMBER_EPOCH  # type: ignore
        # the group id is a streams group's: a consumer-protocol member cannot join it
        consumer = raw.request(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, ConsumerGroupHeartbeatRequest(
            group_id=group, member_id=str(uuid.uuid4()), member_epoch=i32(0),
            rebalance_timeout=datetime.timedelta(seconds=30), subscribed_topic_names=(source,),
            server_assignor=None, topic_partitions=()))
        assert consumer.error_code == GROUP_ID_NOT_FOUND  # type: ignore[attr-defined]
        listed = raw.request(ApiKey.LIST_GROUPS, 5, ListGroupsRequest(states_filter=(), types_filter=("streams",)))
        assert group in {g.group_id for g in listed.groups}  # type: ignore[attr-defined]
        assert {g.group_type for g in listed.groups} == {"streams"}  # type: ignore[attr-defined]
        described = raw.request(ApiKey.STREAMS_GROUP_DESCRIBE, 0, StreamsGroupDescribeRequest(
            group_ids=(group, f"{group}-none"), include_authorized_operations=False))
        by_id = {g.group_id: g for g in described.groups}  # type: ignore[attr-defined]
        ours, none = by_id[group], by_id[f"{group}-none"]
        assert ours.error_code == 0 and [m.member_id for m in ours.members] == [member]
        assert ours.topology.subtopologies[0].source_topics == (source,)
        assert (none.error_code, none.error_message, none.group_state, none.group_epoch) == (
            GROUP_ID_NOT_FOUND, f"Group {group}-none not found.", "", 0)
        # leaving
        left = _heartbeat(raw, group, member, -1)
        assert left.error_code == 0 and left.member_epoch == -1  # type: ignore[attr-defined]
    finally:
        raw.close()


def test_topology_descriptions_are_answered_as_kafka_without_a_plugin(bootstrap: str) -> None:
    """KIP-1331: with no ``group.streams.topology.description.plugin.class`` (Kafka's default) a v1 heartbeat never
    asks for a description, a pushed one is refused and StreamsGroupDescribe v1 says none is stored."""
    group, member = f"sd-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    source = new_topic(bootstrap, 1)
    raw = Raw(bootstrap)
    try:
        find_coordinator(raw, group)
        deadline = time.monotonic() + 30
        while True:
            joined: Any = raw.request(ApiKey.STREAMS_GROUP_HEARTBEAT, 1, load_request_schema(88, 1)(
                group_id=group, member_id=member, member_epoch=i32(0), endpoint_information_epoch=i32(0),
                rebalance_timeout=datetime.timedelta(seconds=30), topology=_topology(source), active_tasks=(),
                standby_tasks=(), warmup_tasks=(), process_id="p", client_tags=(), task_offsets=None,
                task_end_offsets=None))
            if joined.error_code not in COORDINATOR_NOT_READY or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (joined.error_code, joined.topology_description_required) == (0, False), joined
        node = TopologyDescriptionNode(name="KSTREAM-SOURCE-0000000000", node_type=i8(1), source_topics=(source,),
                                       successors=())
        pushed: Any = raw.request(ApiKey.STREAMS_GROUP_TOPOLOGY_DESCRIPTION_UPDATE, 0,
                                  StreamsGroupTopologyDescriptionUpdateRequest(
                                      group_id=group, member_id=member, topology_epoch=i32(0),
                                      topology_description=TopologyDescription(subtopologies=(
                                          TopologyDescriptionSubtopology(subtopology_id="0", nodes=(node,)),),
                                          global_stores=())))
        assert (pushed.error_code, pushed.error_message) == (
            UNSUPPORTED_VERSION, "The broker has no streams group topology description plugin configured.")
        for include, status in ((True, NOT_STORED), (False, NOT_REQUESTED)):
            described: Any = raw.request(ApiKey.STREAMS_GROUP_DESCRIBE, 1, StreamsGroupDescribeRequestV1(
                group_ids=(group, f"{group}-none"), include_authorized_operations=False,
                include_topology_description=include))
            by_id = {g.group_id: g for g in described.groups}
            ours, none = by_id[group], by_id[f"{group}-none"]
            assert ours.error_code == 0 and [m.member_id for m in ours.members] == [member]
            assert (ours.topology_description, ours.topology_description_status, ours.assignor_name) == (
                None, status, "sticky")
            assert (none.error_code, none.topology_description, none.topology_description_status,
                    none.assignor_name) == (GROUP_ID_NOT_FOUND, None, NOT_REQUESTED, None)
        _heartbeat(raw, group, member, -1)
    finally:
        raw.close()


def configs_tool(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``kafka-configs.sh`` of kafka-tools 4.4.0."""
    return subprocess.run(
        ["java", "-Xmx128m", "-XX:TieredStopAtLevel=1", "-cp", f"{tools_jars(VERSION)}/*",
         "org.apache.kafka.tools.ConfigCommand", "--bootstrap-server", bootstrap, *args],
        capture_output=True, text=True, timeout=90, check=False)


# Kafka 4.4's group configs that loosely refused before: set, then described as the group's (with the default
# after it as a synonym); the internal ones (offloading, the streams task offset interval, warm-up replicas and
# recovery lag) are described only once set
KAFKA_44_GROUP_CONFIGS = {
    "consumer.assignment.interval.ms": "500", "share.assignment.interval.ms": "0",
    "streams.assignment.interval.ms": "2000", "streams.initial.rebalance.delay.ms": "0",
    "streams.assignor.name": "sticky", "streams.rack.aware.assignment.tags": "zone,rack",
    "errors.deadletterqueue.topic.name": "dlq", "errors.deadletterqueue.copy.record.enable": "true",
}
INTERNAL_GROUP_CONFIGS = {
    "consumer.assignor.offload.enable": "false", "share.assignor.offload.enable": "false",
    "streams.assignor.offload.enable": "false", "streams.task.offset.interval.ms": "30000",
    "streams.num.warmup.replicas": "5", "streams.acceptable.recovery.lag": "99999999999",
}


def test_kafka_44_group_configs_are_accepted_described_and_checked_alike(bootstrap: str) -> None:
    group = f"cfg-{uuid.uuid4().hex[:8]}"
    fresh = describe(bootstrap, GROUP, group, ())
    assert set(KAFKA_44_GROUP_CONFIGS) <= set(fresh) and not set(INTERNAL_GROUP_CONFIGS) & set(fresh)
    assert fresh["streams.assignor.name"] == ("sticky", DEFAULT, False, [DEFAULT])
    assert fresh["errors.deadletterqueue.topic.name"] == ("", DEFAULT, False, [DEFAULT])
    every = {**KAFKA_44_GROUP_CONFIGS, **INTERNAL_GROUP_CONFIGS}
    done = configs_tool(bootstrap, "--alter", "--entity-type", "groups", "--entity-name", group, "--add-config",
                        ",".join(f"{k}={v}" if "," not in v else f"{k}=[{v}]" for k, v in every.items()))
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    deadline = time.monotonic() + 20
    while (seen := describe(bootstrap, GROUP, group, ())).get("errors.deadletterqueue.topic.name", ("",))[0] != "dlq":
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    assert {k: seen[k] for k in every} == {k: (v, GROUP_CONFIG, False, [GROUP_CONFIG, DEFAULT])
                                           for k, v in every.items()}
    # a list is stored trimmed; booleans as given
    assert alter(bootstrap, group, [("streams.rack.aware.assignment.tags", SET, " a , b "),
                                    ("consumer.assignor.offload.enable", SET, "TRUE")], rtype=GROUP) == (0, None)
    # Kafka 4.4's checks and sentences
    refused = configs_tool(bootstrap, "--alter", "--entity-type", "groups", "--entity-name", group, "--add-config",
                           "consumer.assignment.interval.ms=99999")
    assert refused.returncode != 0
    assert "consumer.assignment.interval.ms must be in the range 0 to 15000 inclusive." in refused.stdout + \
        refused.stderr, refused.stdout + refused.stderr[-2000:]
    for name, value, message in [
        ("share.assignment.interval.ms", "-1",
         "Invalid value -1 for configuration share.assignment.interval.ms: Value must be at least 0"),
        ("streams.assignor.offload.enable", "nope",
         "Invalid value nope for configuration streams.assignor.offload.enable: Expected value to be either true or "
         "false"),
        ("streams.task.offset.interval.ms", "1", "streams.task.offset.interval.ms must be greater than or equal to "
                                                 "15000"),
        ("streams.num.warmup.replicas", "100", "streams.num.warmup.replicas must be less than or equal to 20"),
        ("streams.acceptable.recovery.lag", "x",
         "Invalid value x for configuration streams.acceptable.recovery.lag: Not a number of type LONG"),
        ("streams.assignor.name", "nope",
         "streams.assignor.name 'nope' is not a registered task assignor. Registered assignors are: [sticky]."),
        ("streams.rack.aware.assignment.tags", "a,a", "streams.rack.aware.assignment.tags must not contain duplicate "
                                                      "tag keys."),
        ("errors.deadletterqueue.topic.name", "__dlq",
         "errors.deadletterqueue.topic.name: DLQ topic name must not start with '__'"),
    ]:
        assert alter(bootstrap, group, [(name, SET, value)], rtype=GROUP) == (INVALID_CONFIG, message)
    deadline = time.monotonic() + 20
    while (seen := describe(bootstrap, GROUP, group, ()))["streams.rack.aware.assignment.tags"][0] != "a,b":
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    assert seen["consumer.assignor.offload.enable"][0] == "TRUE"
    assert seen["streams.assignor.name"][0] == "sticky"  # the refusals changed nothing


def test_group_configs_refuse_append_and_subtract_even_for_a_list_as_kafka_44_does(bootstrap: str) -> None:
    """Kafka 4.4 looks an APPEND's or SUBTRACT's config up among the broker's configs, so it refuses them for every
    group config, the one list (the rack-aware tags) included."""
    group = f"cfg-{uuid.uuid4().hex[:8]}"
    tags = "streams.rack.aware.assignment.tags"
    assert alter(bootstrap, group, [(tags, SET, "a,b")], rtype=GROUP) == (0, None)
    for name in (tags, "streams.num.standby.replicas"):
        for op, verb in ((APPEND, "APPEND"), (SUBTRACT, "SUBTRACT")):
            assert alter(bootstrap, group, [(name, op, "c,a")], rtype=GROUP) == (
                INVALID_CONFIG, f"Can't {verb} to key {name} because its type is not LIST.")
    wait_for(bootstrap, GROUP, group, tags, "a,b", GROUP_CONFIG)


def _source_only(source: str) -> hb.Topology:
    return hb.Topology(epoch=i32(0), subtopologies=(hb.Subtopology(
        subtopology_id="0", source_topics=(source,), repartition_sink_topics=(), state_changelog_topics=(),
        repartition_source_topics=(), copartition_groups=()),))


def _commit(raw: Raw, group: str, member: str, epoch: int, topic: str, version: int = 9) -> dict[int, int]:
    """OffsetCommit of partitions 0 and 1 of ``topic``: each partition's error code."""
    r: Any = raw.request(ApiKey.OFFSET_COMMIT, version, oc.OffsetCommitRequest(
        group_id=group, generation_id_or_member_epoch=i32(epoch), member_id=member, group_instance_id=None,
        topics=(oc.OffsetCommitRequestTopic(name=topic, partitions=tuple(oc.OffsetCommitRequestPartition(
            partition_index=i32(p), committed_offset=i64(0), committed_metadata="") for p in (0, 1))),)))
    return {p.partition_index: p.error_code for t in r.topics for p in t.partitions}


def test_a_group_without_members_waits_the_initial_rebalance_delay(bootstrap: str) -> None:
    """``group.streams.initial.rebalance.delay.ms`` (3000, the default on both brokers here): the member that joins
    a group without members gets no tasks, status ASSIGNMENT_DELAYED, until the delay is over; a group's
    ``streams.initial.rebalance.delay.ms`` of 0 assigns at once. A member joining within
    ``streams.assignment.interval.ms`` (1000) of the last assignment hears ASSIGNMENT_DELAYED too."""
    group, eager, member = f"dl-{uuid.uuid4().hex[:8]}", f"dl0-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    source = new_topic(bootstrap, 2)
    assert alter(bootstrap, eager, [("streams.initial.rebalance.delay.ms", SET, "0")], rtype=GROUP) == (0, None)
    raw = Raw(bootstrap)
    try:
        find_coordinator(raw, group)
        deadline = time.monotonic() + 30
        while source not in topics_of(bootstrap, source):  # Kafka's coordinator sees a new topic a moment later
            assert time.monotonic() < deadline
            time.sleep(0.2)
        sent = time.monotonic()
        joined: Any = _heartbeat(raw, group, member, 0, _source_only(source), "p")
        assert (joined.error_code, joined.member_epoch, joined.active_tasks) == (0, 1, ()), joined
        assert [s.status_code for s in joined.status] == [ASSIGNMENT_DELAYED], joined
        assert joined.status[0].status_detail == "Assignment delayed due to the configured initial rebalance delay."
        epoch, seen = joined.member_epoch, [ASSIGNMENT_DELAYED]
        while True:  # heartbeats (every 0.2 s) hear the same until the delay is over, then get every task
            time.sleep(0.2)
            r: Any = _heartbeat(raw, group, member, epoch)
            assert r.error_code == 0 and time.monotonic() - sent < 30, r
            if r.active_tasks:
                break
            assert [s.status_code for s in r.status or ()] == [ASSIGNMENT_DELAYED], r
            seen.append(ASSIGNMENT_DELAYED)
        assert time.monotonic() - sent >= 2.9 and len(seen) >= 10, seen
        assert (r.member_epoch, r.status or (), [(t.subtopology_id, t.partitions) for t in r.active_tasks]) == (
            2, (), [("0", (0, 1))])
        # a member joining right after that assignment waits for the assignment interval (1000 ms)
        other: Any = _heartbeat(raw, group, str(uuid.uuid4()), 0, _source_only(source), "q")
        assert (other.error_code, [(x.status_code, x.status_detail) for x in other.status or ()]) == (0, [(
            ASSIGNMENT_DELAYED, "Assignment delayed due to the configured assignment interval.")]), other
        _heartbeat(raw, group, other.member_id, -1)
        _heartbeat(raw, group, member, -1)
        find_coordinator(raw, eager)
        at_once: Any = _heartbeat(raw, eager, member, 0, _source_only(source), "p")
        assert (at_once.error_code, at_once.status or ()) == (0, ()), at_once  # (epoch 2 on Kafka, 1 on loosely)
        assert [(t.subtopology_id, t.partitions) for t in at_once.active_tasks] == [("0", (0, 1))]
        # Offsets: the member's epoch commits; a newer one, or an older one than its tasks came at, is stale
        epoch = at_once.member_epoch
        assert _commit(raw, eager, member, epoch, source) == {0: 0, 1: 0}
        assert _commit(raw, eager, member, epoch + 1, source) == {0: STALE_MEMBER_EPOCH, 1: STALE_MEMBER_EPOCH}
        assert _commit(raw, eager, member, epoch - 1, source) == {0: STALE_MEMBER_EPOCH, 1: STALE_MEMBER_EPOCH}
        assert _commit(raw, eager, member, epoch, source, version=8) == {0: UNSUPPORTED_VERSION, 1: UNSUPPORTED_VERSION}
        assert _commit(raw, eager, "nobody", epoch, source) == {0: UNKNOWN_MEMBER_ID, 1: UNKNOWN_MEMBER_ID}
        _heartbeat(raw, eager, member, -1)
    finally:
        raw.close()
