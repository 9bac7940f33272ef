"""Several registries over one topic: the election in the ``schema-registry`` group, forwarding, a leader killed.

Differential: loosely's broker and Apache Kafka 4.1.1 run the same group protocol, so the same assertions hold on
both. Per module and broker: one leader started through the command line (a subprocess, so it can be killed with
SIGKILL) and one follower in this process. The follower advertises ``localhost`` and the leader ``127.0.0.1``, so
Confluent's rule (the lowest url leads) makes the subprocess the leader whatever order they join in.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from loosely.registry import SchemaRegistry
from loosely.registry._group import Identity
from loosely.testing import embedded_broker

LOOSELY = [sys.executable, "-m", "loosely.cli.main"]
URL = re.compile(r"schema registry on (http://\S+)")
SESSION_MS = 6_000  # the least both brokers accept (group.min.session.timeout.ms)
TAKEOVER_S_MAX = 30  # session timeout, a heartbeat, a join: well under this on a loaded machine


def schema(n: int) -> str:
    return json.dumps({"type": "record", "name": f"R{n}", "fields": [{"name": "f", "type": "int"}]})


# ---- two registries on a real broker ----------------------------------------------------------------------------


@dataclass
class Pair:
    bootstrap_servers: str
    topic: str
    leader: subprocess.Popen[str]
    leader_url: str
    leader_log: Path
    follower: SchemaRegistry


@pytest.fixture(scope="module", params=["loosely", "kafka"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("election")
    topic = f"_schemas-{uuid.uuid4().hex[:8]}"  # its own group too (schema-registry-<topic>)
    if request.param == "kafka":
        yield from _pair(request.getfixturevalue("apache_kafka").bootstrap_servers, topic, tmp)
        return
    with embedded_broker(data_dir=str(tmp / "data")) as b:
        yield from _pair(b.bootstrap_servers, topic, tmp)


def _pair(bootstrap: str, topic: str, tmp: Path) -> Iterator[Pair]:
    log = tmp / "leader.log"
    with log.open("w") as err:
        leader = subprocess.Popen([*LOOSELY, "schema-registry", "-b", bootstrap, "--listen", "127.0.0.1:0",
                                   "--topic", topic, "--session-timeout-ms", str(SESSION_MS)],
                                  stdout=subprocess.PIPE, stderr=err, text=True,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert leader.stdout is not None
        url = next((m.group(1) for line in leader.stdout if (m := URL.search(line))), None)
        assert url is not None, log.read_text()
        follower = SchemaRegistry(bootstrap, host="localhost", topic=topic, session_timeout_ms=SESSION_MS,
                                  heartbeat_interval_ms=500, rebalance_timeout_ms=SESSION_MS,
                                  leader_wait_ms=1_000).start()
        try:
            yield Pair(bootstrap, topic, leader, url, log, follower)
        finally:
            follower.stop()
    finally:
        leader.kill()
        leader.wait(30)


def schema_records(pair: Pair) -> list[dict[str, object]]:
    """The SCHEMA records of the topic, read from the log itself."""
    c = Consumer({"bootstrap.servers": pair.bootstrap_servers, "group.id": "probe", "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(pair.topic, 0, 0)])
        out: list[dict[str, object]] = []
        while True:
            msg = c.poll(10)
            assert msg is not None, "the log could not be read to its end"
            if msg.error() is not None:
                return out
            key = json.loads(msg.key())
            if key.get("keytype") == "SCHEMA" and msg.value():
                out.append(json.loads(msg.value()))
    finally:
        c.close()


def test_a_change_through_the_follower_is_stored_once_and_seen_by_both(pair: Pair) -> None:
    lead = pair.follower.elector
    assert lead is not None and lead.leadership().leader_url == pair.leader_url
    assert not lead.leadership().is_leader
    assert f"leader of group schema-registry-{pair.topic}" in pair.leader_log.read_text()

    via_follower = SchemaRegistryClient({"url": pair.follower.url})
    via_leader = SchemaRegistryClient({"url": pair.leader_url})
    sid = via_follower.register_schema("fwd-value", Schema(schema(1), "AVRO"))
    assert via_leader.get_latest_version("fwd-value").schema_id == sid
    assert via_follower.get_latest_version("fwd-value").schema_id == sid  # read-your-write on the follower too
    # registered again through either: the same id, nothing written (the follower answers from memory)
    assert via_follower.register_schema("fwd-value", Schema(schema(1), "AVRO")) == sid
    assert SchemaRegistryClient({"url": pair.follower.url}).register_schema("fwd-value",
                                                                            Schema(schema(1), "AVRO")) == sid
    assert [r["id"] for r in schema_records(pair) if r["subject"] == "fwd-value"] == [sid]
    # a config change is forwarded too
    via_follower.set_compatibility("fwd-value", "NONE")
    assert via_leader.get_compatibility("fwd-value") == "NONE"
    assert pair.follower.store.statistics().forwarded >= 2


def test_the_follower_takes_over_from_a_killed_leader_with_every_id(pair: Pair) -> None:
    before = SchemaRegistryClient({"url": pair.leader_url})
    ids = {before.register_schema(f"kill-{n}-value", Schema(schema(n), "AVRO")) for n in range(3)}
    records_before = schema_records(pair)

    pair.leader.send_signal(signal.SIGKILL)
    pair.leader.wait(30)
    killed = time.monotonic()
    # the client retries 5xx answers by itself (and would succeed once the follower has taken over): not here
    follower = SchemaRegistryClient({"url": pair.follower.url, "max.retries": 0})
    with pytest.raises(SchemaRegistryError) as gap:  # the leader is gone and no one has taken over yet
        follower.register_schema("gap-value", Schema(schema(9), "AVRO"))
    assert (gap.value.http_status_code, gap.value.error_code) in ((500, 50003), (500, 50004)), gap.value
    assert time.monotonic() - killed < SESSION_MS / 1000  # refused in bounded time, not held until takeover
    assert schema_records(pair) == records_before  # nothing written during the gap

    elector = pair.follower.elector
    assert elector is not None
    while not elector.leadership().is_leader:
        assert time.monotonic() - killed < TAKEOVER_S_MAX, elector.statistics()
        time.sleep(0.1)

    every = {s: follower.get_latest_version(s).schema_id for s in follower.get_subjects()}
    assert set(every.values()) >= ids
    new = follower.register_schema("after-value", Schema(schema(10), "AVRO"))
    assert new not in {r["id"] for r in records_before}
    assert new == max(int(str(r["id"])) for r in records_before) + 1
    stored = [r["id"] for r in schema_records(pair)]
    assert len(stored) == len(records_before) + 1 and stored.count(new) == 1


def test_advertise_and_the_single_writer_fallback() -> None:
    bootstrap = "127.0.0.1:1"  # never asked: nothing here starts
    r = SchemaRegistry(bootstrap, advertise="https://sr-1.internal:8443", leader_eligible=False)
    try:
        assert r.elector is not None
        assert r.elector.identity == Identity("sr-1.internal", 8443, "https", eligible=False)
        assert r.elector.group_id == "schema-registry"  # Confluent's default over _schemas
    finally:
        r.server.close()
    r = SchemaRegistry(bootstrap, topic="other", client_config={"security.protocol": "SASL_SSL",
                                                                 "sasl.mechanism": "OAUTHBEARER"})
    try:  # a mechanism the member does not speak: this registry writes alone, and says so when it starts
        assert r.elector is None and "OAUTHBEARER" in r._election_off and "without a leader" in r._election_off
    finally:
        r.server.close()
    for bad in ("ftp://x:1", "http://x:port"):
        with pytest.raises(ValueError, match="--advertise"):
            SchemaRegistry(bootstrap, advertise=bad)


def test_with_no_eligible_member_reads_work_and_writes_are_refused(pair: Pair) -> None:
    topic = f"_schemas-{uuid.uuid4().hex[:8]}"
    with SchemaRegistry(pair.bootstrap_servers, topic=topic, leader_eligible=False, leader_wait_ms=300) as alone:
        assert alone.elector is not None and alone.elector.leadership().leader is None
        client = SchemaRegistryClient({"url": alone.url, "max.retries": 0})
        assert client.get_subjects() == []
        started = time.monotonic()
        with pytest.raises(SchemaRegistryError) as refused:
            client.register_schema("nobody-value", Schema(schema(1), "AVRO"))
        assert (refused.value.http_status_code, refused.value.error_code) == (500, 50004)
        assert time.monotonic() - started < 5


def test_a_session_timeout_the_broker_refuses_fails_the_start_at_once(pair: Pair) -> None:
    started = time.monotonic()
    registry = SchemaRegistry(pair.bootstrap_servers, topic=f"_schemas-{uuid.uuid4().hex[:8]}",
                              session_timeout_ms=1_000, heartbeat_interval_ms=300)
    with pytest.raises(TimeoutError, match="JoinGroup refused: invalid_session_timeout"):
        registry.start()
    assert time.monotonic() - started < 30  # not the 60 s init timeout
