"""ACLs, differential: Apache Kafka with the StandardAuthorizer and loosely with the same settings get the same ACLs
(through confluent-kafka's AdminClient and Kafka's own kafka-acls tool) and give the same answers to the same
allowed and denied actions.

Both run ``allow.everyone.if.no.acl.found=true`` on PLAINTEXT, where every client is ``User:ANONYMOUS``; Kafka's
own controller and inter-broker traffic (CLUSTER_ACTION on the cluster) stay allowed because no test puts an ACL on
the cluster resource. Each test names its resources with a fresh prefix, so one broker of each serves the module.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    Consumer,
    ElectionType,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from broker._brokers import ChildBroker
from broker._raw import Raw
from compat._support import Cluster
from loosely.broker.config import BrokerConfig, split_kafka_settings
from loosely.broker.server import BrokerThread
from loosely.protocol.messages import ApiKey, decode_response, encode_request, load_request_schema
from loosely.protocol.primitives import Reader
from loosely.testing import ApacheKafka, embedded_broker, free_port
from loosely.testing.certs import DevCerts, make_dev_certs, subject_dn

STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
SETTINGS = {"authorizer.class.name": STANDARD, "allow.everyone.if.no.acl.found": "true"}
ME = "User:ANONYMOUS"
ANY = AclBindingFilter(
    ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY
)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=["loosely", pytest.param("kafka", marks=pytest.mark.kafka)])
def secured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "kafka":
        jars = Path(request.getfixturevalue("jars_dir"))
        kafka = ApacheKafka(base_dir=tmp_path_factory.mktemp("kafka-acls"), jars_dir=jars, config=SETTINGS)
        kafka.start()
        try:
            yield kafka.bootstrap_servers
        finally:
            kafka.stop()
    else:
        with embedded_broker(
            data_dir=str(tmp_path_factory.mktemp("loosely-acls")),
            authorizer_class=STANDARD,
            allow_everyone_if_no_acl_found=True,
        ) as b:
            yield b.bootstrap_servers


@pytest.fixture
def names() -> str:
    return f"acl{uuid.uuid4().hex[:8]}-"


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def key(b: AclBinding) -> tuple[object, ...]:
    return (b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)


def mine(admin: AdminClient, prefix: str, f: AclBindingFilter = ANY) -> set[tuple[object, ...]]:
    return {key(b) for b in admin.describe_acls(f).result(30) if b.name.startswith(prefix)}


def add(admin: AdminClient, bindings: list[AclBinding]) -> None:
    for fut in admin.create_acls(bindings).values():
        fut.result(30)
    want = {key(b) for b in bindings}
    # Kafka applies ACLs through its metadata log: wait until the broker's authorizer has them.
    wait_for(lambda: want <= {key(b) for b in admin.describe_acls(ANY).result(30)}, "the ACLs to apply")


def drop(admin: AdminClient, prefix: str) -> None:
    doomed = [b for b in admin.describe_acls(ANY).result(30) if b.name.startswith(prefix)]
    filters = [
        AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
                         b.permission_type)
        for b in doomed
    ]
    if filters:
        for fut in admin.delete_acls(filters).values():
            fut.result(30)
        wait_for(lambda: not mine(admin, prefix), "the ACLs to go")


def binding(rtype: ResourceType, name: str, op: AclOperation, perm: AclPermissionType = AclPermissionType.ALLOW,
            *, principal: str = ME, pattern: ResourcePatternType = ResourcePatternType.LITERAL,
            host: str = "*") -> AclBinding:
    return AclBinding(rtype, name, pattern, principal, host, op, perm)


def error_code(e: BaseException) -> int:
    assert isinstance(e, KafkaException), repr(e)
    return int(e.args[0].code())


def test_security_disabled_without_an_authorizer(cluster: Cluster) -> None:
    # confluent-kafka's describe_acls answers [] whatever the error, so DescribeAcls goes raw.
    raw = Raw(cluster.bootstrap_servers)
    try:
        describe = load_request_schema(ApiKey.DESCRIBE_ACLS, 2)
        resp = raw.request(ApiKey.DESCRIBE_ACLS, 2, describe(
            resource_type_filter=1, resource_name_filter=None, pattern_type_filter=1, principal_filter=None,
            host_filter=None, operation=1, permission_type=1,
        ))
        assert resp.error_code == KafkaError.SECURITY_DISABLED  # type: ignore[attr-defined]
    finally:
        raw.close()
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    b = binding(ResourceType.TOPIC, "t", AclOperation.READ)
    with pytest.raises(KafkaException) as e:
        admin.create_acls([b])[b].result(30)
    assert error_code(e.value) == KafkaError.SECURITY_DISABLED


def test_describe_and_delete_filters_match_the_same_bindings(secured: str, names: str) -> None:
    admin = AdminClient({"bootstrap.servers": secured})
    t, g, p = ResourceType.TOPIC, ResourceType.GROUP, ResourcePatternType
    lit = binding(t, names + "orders", AclOperation.READ, principal="User:alice")
    pre = binding(t, names + "ord", AclOperation.WRITE, AclPermissionType.DENY, principal="User:bob",
                  pattern=p.PREFIXED, host="10.0.0.2")
    grp = binding(g, names + "g", AclOperation.ALL, principal="User:*")
    txn = binding(ResourceType.TRANSACTIONAL_ID, names + "tx", AclOperation.WRITE, principal="User:alice")
    add(admin, [lit, pre, grp, txn])
    try:
        assert mine(admin, names) == {key(lit), key(pre), key(grp), key(txn)}
        by_name_match = AclBindingFilter(t, names + "orders", p.MATCH, None, None, AclOperation.ANY,
                                         AclPermissionType.ANY)
        assert mine(admin, names, by_name_match) == {key(lit), key(pre)}
        by_name_any = AclBindingFilter(t, names + "orders", p.ANY, None, None, AclOperation.ANY,
                                       AclPermissionType.ANY)
        assert mine(admin, names, by_name_any) == {key(lit)}
        prefixed = AclBindingFilter(ResourceType.ANY, None, p.PREFIXED, None, None, AclOperation.ANY,
                                    AclPermissionType.ANY)
        assert mine(admin, names, prefixed) == {key(pre)}
        alice = AclBindingFilter(ResourceType.ANY, None, p.ANY, "User:alice", None, AclOperation.ANY,
                                 AclPermissionType.ANY)
        assert mine(admin, names, alice) == {key(lit), key(txn)}
        denies = AclBindingFilter(ResourceType.ANY, None, p.ANY, None, "10.0.0.2", AclOperation.WRITE,
                                  AclPermissionType.DENY)
        assert mine(admin, names, denies) == {key(pre)}
        # Creating an existing binding again is a success that adds nothing.
        add(admin, [lit])
        assert len([b for b in admin.describe_acls(ANY).result(30) if key(b) == key(lit)]) == 1
        deleted = admin.delete_acls([by_name_match])[by_name_match].result(30)
        assert {key(b) for b in deleted} == {key(lit), key(pre)}
        wait_for(lambda: mine(admin, names) == {key(grp), key(txn)}, "the deletion")
    finally:
        drop(admin, names)


def test_invalid_bindings_are_refused_one_by_one(secured: str, names: str) -> None:
    admin = AdminClient({"bootstrap.servers": secured})
    good = binding(ResourceType.TOPIC, names + "t", AclOperation.READ)
    no_colon = binding(ResourceType.TOPIC, names + "u", AclOperation.READ, principal="alice")
    try:
        results = admin.create_acls([good, no_colon])
        results[good].result(30)
        with pytest.raises(KafkaException) as e:
            results[no_colon].result(30)
        assert error_code(e.value) == KafkaError.INVALID_REQUEST
    finally:
        drop(admin, names)


def produce_as(conf: dict[str, str], topic: str) -> int | None:
    errors: list[KafkaError | None] = []
    p = Producer({**conf, "message.timeout.ms": 10_000})
    p.produce(topic, b"x", on_delivery=lambda err, _msg: errors.append(err))
    p.flush(20)
    assert len(errors) == 1
    return None if errors[0] is None else int(errors[0].code())


def produce_error(bootstrap: str, topic: str) -> int | None:
    return produce_as({"bootstrap.servers": bootstrap}, topic)


def topic_listed(admin: AdminClient, topic: str) -> bool:
    return topic in admin.list_topics(timeout=10).topics


def test_topic_operations_follow_the_acls(secured: str, names: str) -> None:
    admin = AdminClient({"bootstrap.servers": secured})
    mine_t, hidden, fresh = names + "mine", names + "hidden", names + "fresh"
    for fut in admin.create_topics([NewTopic(t, 1, 1) for t in (mine_t, hidden)]).values():
        fut.result(30)
    wait_for(lambda: topic_listed(admin, hidden), "the topics")
    assert produce_error(secured, mine_t) is None  # no ACL on it: allowed
    try:
        add(admin, [
            # Any ACL on the topic ends allow.everyone.if.no.acl.found for it: ALLOW ALL, then DENY a few.
            binding(ResourceType.TOPIC, mine_t, AclOperation.ALL),
            binding(ResourceType.TOPIC, mine_t, AclOperation.WRITE, AclPermissionType.DENY),
            binding(ResourceType.TOPIC, mine_t, AclOperation.DELETE, AclPermissionType.DENY),
            binding(ResourceType.TOPIC, mine_t, AclOperation.DESCRIBE_CONFIGS, AclPermissionType.DENY),
            binding(ResourceType.TOPIC, mine_t, AclOperation.ALTER_CONFIGS, AclPermissionType.DENY),
            # An ACL for someone else closes the topic to ANONYMOUS, allow.everyone.if.no.acl.found or not.
            binding(ResourceType.TOPIC, hidden, AclOperation.READ, principal="User:alice"),
            binding(ResourceType.TOPIC, fresh, AclOperation.CREATE, AclPermissionType.DENY,
                    pattern=ResourcePatternType.PREFIXED),
        ])
        assert produce_error(secured, mine_t) == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert topic_listed(admin, mine_t)  # a DENY of WRITE does not deny DESCRIBE
        assert not topic_listed(admin, hidden)  # Metadata leaves out what may not be described
        resource = ConfigResource(ConfigResource.Type.TOPIC, mine_t)
        with pytest.raises(KafkaException) as e:
            admin.describe_configs([resource])[resource].result(30)
        assert error_code(e.value) == KafkaError.TOPIC_AUTHORIZATION_FAILED
        change = ConfigResource(ConfigResource.Type.TOPIC, mine_t, incremental_configs=[
            ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ])
        with pytest.raises(KafkaException) as e:
            admin.incremental_alter_configs([change])[change].result(30)
        assert error_code(e.value) == KafkaError.TOPIC_AUTHORIZATION_FAILED
        # DeleteRecords wants DELETE on the topic itself (no cluster-wide grant covers it).
        tp = TopicPartition(mine_t, 0, 0)
        with pytest.raises(KafkaException) as e:
            admin.delete_records([tp])[tp].result(30)
        assert error_code(e.value) == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert list_offsets_error(secured, hidden) == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert list_offsets_error(secured, mine_t) == KafkaError.NO_ERROR  # DESCRIBE, implied by ALL
        # CREATE and DELETE on the cluster (here allowed: no ACL names the cluster) cover every topic, so the
        # topic's DENY ACLs do not stop them, in Kafka as here.
        admin.create_topics([NewTopic(fresh + "1", 1, 1)])[fresh + "1"].result(30)
        admin.delete_topics([mine_t])[mine_t].result(30)
    finally:
        drop(admin, names)


def test_group_operations_follow_the_acls(secured: str, names: str) -> None:
    admin = AdminClient({"bootstrap.servers": secured})
    topic, group = names + "t", names + "g"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    try:
        add(admin, [binding(ResourceType.GROUP, group, AclOperation.READ, AclPermissionType.DENY)])
        c = Consumer({"bootstrap.servers": secured, "group.id": group, "enable.auto.commit": False})
        try:
            c.subscribe([topic])
            deadline = time.monotonic() + 20
            code = None
            while code is None and time.monotonic() < deadline:
                msg = c.poll(0.5)
                if msg is not None and msg.error() is not None:
                    code = msg.error().code()
            assert code == KafkaError.GROUP_AUTHORIZATION_FAILED
        finally:
            c.close()
        # OffsetFetch wants DESCRIBE on the group: a DENY of READ alone leaves the group closed (it has ACLs
        # now); an ALLOW of READ for everyone implies DESCRIBE, which the DENY of READ does not take away.
        assert offset_fetch_error(secured, group, topic) == KafkaError.GROUP_AUTHORIZATION_FAILED
        add(admin, [binding(ResourceType.GROUP, group, AclOperation.READ, principal="User:*")])
        assert offset_fetch_error(secured, group, topic) != KafkaError.GROUP_AUTHORIZATION_FAILED
        add(admin, [binding(ResourceType.GROUP, group, AclOperation.DELETE, AclPermissionType.DENY)])
        with pytest.raises(KafkaException) as e:
            admin.delete_consumer_groups([group])[group].result(30)
        assert error_code(e.value) == KafkaError.GROUP_AUTHORIZATION_FAILED
    finally:
        drop(admin, names)


def raw_call(bootstrap: str, api_key: int, version: int, make: Callable[[type], object]) -> object:
    raw = Raw(bootstrap)
    try:
        cls = load_request_schema(api_key, version)
        return raw.request(api_key, version, make(cls))
    finally:
        raw.close()


def list_offsets_error(bootstrap: str, topic: str) -> int:
    def make(cls: type) -> object:
        mod = sys.modules[cls.__module__]
        part = mod.ListOffsetsPartition(partition_index=0, current_leader_epoch=-1, timestamp=-1)
        return cls(replica_id=-1, isolation_level=0, topics=(mod.ListOffsetsTopic(name=topic, partitions=(part,)),))

    resp = raw_call(bootstrap, ApiKey.LIST_OFFSETS, 7, make)
    return int(resp.topics[0].partitions[0].error_code)  # type: ignore[attr-defined]


def offset_fetch_error(bootstrap: str, group: str, topic: str) -> int:
    def make(cls: type) -> object:
        mod = sys.modules[cls.__module__]
        return cls(group_id=group, topics=(mod.OffsetFetchRequestTopic(name=topic, partition_indexes=(0,)),))

    resp = raw_call(bootstrap, ApiKey.OFFSET_FETCH, 7, make)
    return int(resp.error_code)  # type: ignore[attr-defined]


def kafka_acls(jars: Path, bootstrap: str, *args: str) -> str:
    out = subprocess.run(
        ["java", "-cp", f"{jars}/*", "org.apache.kafka.tools.AclCommand", "--bootstrap-server", bootstrap, *args],
        capture_output=True, text=True, timeout=120, check=True,
    )
    return out.stdout


def test_kafka_acls_tool_adds_lists_and_removes(secured: str, names: str, jars_dir: Path) -> None:
    jars = tools_jars(jars_dir)
    topic = names + "t"
    kafka_acls(jars, secured, "--add", "--allow-principal", "User:alice", "--operation", "Read", "--operation",
               "Describe", "--topic", topic, "--resource-pattern-type", "prefixed")
    listed = kafka_acls(jars, secured, "--list", "--topic", topic, "--resource-pattern-type", "prefixed")
    assert f"name={topic}, patternType=PREFIXED" in listed
    for op in ("READ", "DESCRIBE"):
        assert f"(principal=User:alice, host=*, operation={op}, permissionType=ALLOW)" in listed
    kafka_acls(jars, secured, "--remove", "--force", "--allow-principal", "User:alice", "--operation", "Read",
               "--topic", topic, "--resource-pattern-type", "prefixed")
    admin = AdminClient({"bootstrap.servers": secured})
    wait_for(lambda: {b[5] for b in mine(admin, names)} == {AclOperation.DESCRIBE}, "the removal")
    drop(admin, names)


def tools_jars(jars_dir: Path) -> Path:
    """A jar directory with kafka-tools (AclCommand); interop/fetch-jars brings it."""
    if any(p.name.startswith("kafka-tools-4") for p in jars_dir.iterdir()):
        return jars_dir
    out = subprocess.run([str(ROOT / "interop" / "fetch-jars")], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def test_acls_survive_kill_9(tmp_path: Path) -> None:
    port = free_port()
    broker = ChildBroker(tmp_path / "data", port)
    broker.cmd += [f"--config={k}={v}" for k, v in SETTINGS.items()]
    broker.start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        kept = binding(ResourceType.TOPIC, "orders", AclOperation.WRITE, AclPermissionType.DENY,
                       pattern=ResourcePatternType.PREFIXED)
        add(admin, [kept])
        broker.kill()
        broker.start()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        assert {key(b) for b in admin.describe_acls(ANY).result(30)} == {key(kept)}
        assert produce_error(broker.bootstrap_servers, "orders-eu") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        broker.kill()


def test_a_damaged_acl_file_stops_the_broker_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "acls.json").write_text("{not json")
    broker = ChildBroker(data, free_port())
    broker.cmd += [f"--config={k}={v}" for k, v in SETTINGS.items()]
    proc = subprocess.run(broker.cmd, check=False, capture_output=True, text=True, timeout=60, env=os.environ)
    assert proc.returncode != 0
    assert "acls.json" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout


def loosely_acls(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "loosely.cli.main", "acls", *args], capture_output=True, text=True, timeout=60,
        check=True,
    )
    return out.stdout


def test_loosely_acls_command_adds_lists_and_removes(secured: str, names: str) -> None:
    topic, group = names + "t", names + "g"
    loosely_acls("add", "-b", secured, "--allow-principal", "User:alice", "--operation", "Read", "--operation",
                 "IdempotentWrite", "--topic", topic, "--group", group, "--json")
    admin = AdminClient({"bootstrap.servers": secured})
    wait_for(lambda: len(mine(admin, names)) == 4, "the ACLs to apply")
    rows = json.loads(loosely_acls("list", "-b", secured, "--topic", topic, "--json"))["acls"]
    assert {(r["resource_type"], r["name"], r["operation"]) for r in rows} == {
        ("TOPIC", topic, "READ"), ("TOPIC", topic, "IDEMPOTENT_WRITE"),
    }
    removed = json.loads(loosely_acls("remove", "-b", secured, "--allow-principal", "User:alice", "--operation",
                                      "Read", "--group", group, "--json"))["removed"]
    assert [(r["resource_type"], r["name"]) for r in removed] == [("GROUP", group)]
    wait_for(lambda: len(mine(admin, names)) == 3, "the removal")
    drop(admin, names)


def test_transactional_ids_and_authorized_operations(secured: str, names: str) -> None:
    admin = AdminClient({"bootstrap.servers": secured})
    topic, group, txn = names + "t", names + "g", names + "tx"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    wait_for(lambda: topic_listed(admin, topic), "the topic")
    try:
        add(admin, [
            binding(ResourceType.TRANSACTIONAL_ID, txn, AclOperation.WRITE, AclPermissionType.DENY),
            binding(ResourceType.TOPIC, topic, AclOperation.READ),
            binding(ResourceType.TOPIC, topic, AclOperation.ALTER_CONFIGS),
            binding(ResourceType.GROUP, group, AclOperation.READ),
        ])
        p = Producer({"bootstrap.servers": secured, "transactional.id": txn})
        with pytest.raises(KafkaException) as e:
            p.init_transactions(20)
        assert error_code(e.value) == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        described = admin.describe_topics(TopicCollection([topic]), include_authorized_operations=True)
        ops = {op.name for op in described[topic].result(30).authorized_operations}
        assert ops == {"READ", "DESCRIBE", "ALTER_CONFIGS", "DESCRIBE_CONFIGS"}  # with what they imply
        cluster = admin.describe_cluster(include_authorized_operations=True).result(30)
        assert {op.name for op in cluster.authorized_operations} == {  # no ACL on the cluster: everything
            "CREATE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE", "ALTER", "DESCRIBE",
        }
    finally:
        drop(admin, names)


# --- real principals: client certificates on a mutual-TLS listener ------------------------------------------------


def _mtls_settings(certs: DevCerts) -> dict[str, str]:
    return {
        **SETTINGS,
        # ANONYMOUS (the PLAINTEXT listener, Kafka's controller and inter-broker traffic) is a super user here, so
        # ACLs on the cluster resource can be tested without locking Kafka out of itself.
        "super.users": f"User:{subject_dn('admin')};User:ANONYMOUS",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs.broker.pem),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs.ca_crt),
        "listener.name.mtls.ssl.client.auth": "required",
    }


@pytest.fixture(scope="module", params=["loosely", pytest.param("kafka", marks=pytest.mark.kafka)])
def mtls(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DevCerts]]:
    """(bootstrap of the MTLS listener, the certificates of alice, bob and admin)."""
    certs = make_dev_certs(tmp_path_factory.mktemp("acl-certs"), clients=["alice", "bob", "admin"])
    if request.param == "kafka":
        kafka = ApacheKafka(
            base_dir=tmp_path_factory.mktemp("kafka-acls-mtls"), jars_dir=Path(request.getfixturevalue("jars_dir")),
            listeners={"MTLS": "SSL"}, config=_mtls_settings(certs),
        )
        kafka.start()
        try:
            yield kafka.bootstrap("MTLS"), certs
        finally:
            kafka.stop()
        return
    settings, _, unknown = split_kafka_settings({
        "listeners": "PLAINTEXT://127.0.0.1:0,MTLS://127.0.0.1:0",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,MTLS:SSL",
        **_mtls_settings(certs),
    })
    assert not unknown
    config = BrokerConfig(data_dir=str(tmp_path_factory.mktemp("loosely-acls-mtls")), **settings)  # type: ignore[arg-type]
    with BrokerThread(config) as b:
        yield b.bootstrap_servers_for("MTLS"), certs


def as_client(bootstrap: str, certs: DevCerts, who: str) -> dict[str, str]:
    pair = certs.clients[who]
    return {"bootstrap.servers": bootstrap, "security.protocol": "ssl", "ssl.ca.location": str(certs.ca_crt),
            "ssl.certificate.location": str(pair.crt), "ssl.key.location": str(pair.key)}


def test_certificate_principals_are_what_acls_name(mtls: tuple[str, DevCerts], names: str) -> None:
    bootstrap, certs = mtls
    alice, bob, admin_ = (as_client(bootstrap, certs, who) for who in ("alice", "bob", "admin"))
    admin = AdminClient(alice)
    topic = names + "t"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    wait_for(lambda: topic_listed(admin, topic), "the topic")
    try:
        add(admin, [binding(ResourceType.TOPIC, topic, AclOperation.WRITE, principal=f"User:{subject_dn('alice')}")])
        # loosely acls reaches a TLS listener with librdkafka's settings (-X), as the other admin commands do.
        tls = [f"-X{k}={v}" for k, v in alice.items() if k != "bootstrap.servers"]
        rows = json.loads(loosely_acls("list", "-b", bootstrap, "--topic", topic, "--json", *tls))["acls"]
        assert [(r["principal"], r["operation"]) for r in rows] == [(f"User:{subject_dn('alice')}", "WRITE")]
        assert produce_as(alice, topic) is None
        assert produce_as(bob, topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED  # the topic has ACLs now
        assert not topic_listed(AdminClient(bob), topic)  # nor may bob describe it
        assert produce_as(admin_, topic) is None  # super.users
        # Managing ACLs needs ALTER on the cluster, which no ACL names: allowed to everyone here.
        add(AdminClient(bob), [binding(ResourceType.TOPIC, topic, AclOperation.WRITE, AclPermissionType.DENY,
                                       principal="User:*")])
        assert produce_as(alice, topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED  # DENY for everyone wins
        assert produce_as(admin_, topic) is None  # but not over a super user
    finally:
        drop(admin, names)


def test_cluster_acls_gate_acl_management_and_auto_creation(mtls: tuple[str, DevCerts], names: str) -> None:
    bootstrap, certs = mtls
    alice, bob, root = (as_client(bootstrap, certs, who) for who in ("alice", "bob", "admin"))
    su = AdminClient(root)
    on_cluster = [
        binding(ResourceType.BROKER, "kafka-cluster", op, principal=f"User:{subject_dn('alice')}")
        for op in (AclOperation.CREATE, AclOperation.ALTER)
    ]
    alice_p = f"User:{subject_dn('alice')}"
    prefixed = ResourcePatternType.PREFIXED
    on_topics = [
        # Without an ACL covering a topic name, CREATE on the topic would be allowed to anyone.
        binding(ResourceType.TOPIC, names, AclOperation.CREATE, AclPermissionType.DENY, principal="User:*",
                pattern=prefixed),
        binding(ResourceType.TOPIC, names, AclOperation.WRITE, principal=alice_p, pattern=prefixed),
        binding(ResourceType.TOPIC, names, AclOperation.DESCRIBE, principal="User:*", pattern=prefixed),
        binding(ResourceType.TRANSACTIONAL_ID, names, AclOperation.DESCRIBE, AclPermissionType.DENY,
                principal="User:*", pattern=prefixed),
    ]
    add(su, on_cluster + on_topics)
    try:
        # The cluster has ACLs now, none for bob: he may neither manage ACLs nor have topics auto-created.
        refused = binding(ResourceType.TOPIC, names + "x", AclOperation.READ)
        bob_admin = AdminClient(bob)  # held: a collected client fails its futures with _DESTROY
        with pytest.raises(KafkaException) as e:
            bob_admin.create_acls([refused])[refused].result(30)
        assert error_code(e.value) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
        assert produce_as(bob, names + "by-bob") == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert names + "by-bob" not in su.list_topics(timeout=10).topics
        # SCRAM credentials are cluster business too: DESCRIBE on the cluster to list them (asked in raw bytes:
        # confluent-kafka 2.x aborts the process on that refusal, with either broker), ALTER to change them.
        refused = KafkaError.CLUSTER_AUTHORIZATION_FAILED
        # one result per user asked for, its name not echoed: Kafka's answer, followed
        assert described_scram_as(bootstrap, certs, "bob") == (refused, None, [("", refused, None)] * 2)
        # A transactional id bob may not describe: the answer names it with the error and nothing else.
        assert described_transaction_as(bootstrap, certs, "bob", names + "tx") == (
            KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, names + "tx", "", 0, 0, 0, 0, [])
        alter = [UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192),
                                              b"carol-secret")]
        with pytest.raises(KafkaException) as e:
            bob_admin.alter_user_scram_credentials(alter)["carol"].result(30)
        assert error_code(e.value) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
        alice_admin = AdminClient(alice)
        alice_admin.alter_user_scram_credentials(alter)["carol"].result(30)
        assert described_scram_as(bootstrap, certs, "alice") == (0, "", [
            ("carol", 0, ""), ("nobody", 91, "Attempt to describe a user credential that does not exist: nobody")])
        # So are the controller's APIs: electing leaders needs ALTER on the cluster.
        with pytest.raises(KafkaException) as e:
            bob_admin.elect_leaders(ElectionType.PREFERRED, None).result(30)
        assert error_code(e.value) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
        alice_admin.elect_leaders(ElectionType.PREFERRED, None).result(30)
        # alice may: CREATE on the cluster auto-creates, ALTER on the cluster manages ACLs.
        assert produce_as(alice, names + "by-alice") is None
        allowed_ = binding(ResourceType.TOPIC, names + "y", AclOperation.READ)
        alice_admin.create_acls([allowed_])[allowed_].result(30)
    finally:
        drop(su, names)
        for f in su.delete_acls([AclBindingFilter(ResourceType.BROKER, None, ResourcePatternType.ANY, None, None,
                                                  AclOperation.ANY, AclPermissionType.ANY)]).values():
            f.result(30)


def _tls_as(certs: DevCerts, who: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca_crt))
    ctx.load_cert_chain(str(certs.clients[who].crt), str(certs.clients[who].key))
    return ctx


def described_scram_as(bootstrap: str, certs: DevCerts, who: str) -> tuple[object, ...]:
    """DescribeUserScramCredentials v0 for two users, as ``who``: (error, message, (user, error, message) per result).
    Named users, not all (a null list): Kafka 4.1.1 leaves a refused request for all users unanswered."""
    raw = Raw(bootstrap, _tls_as(certs, who))
    try:
        cls = load_request_schema(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, 0)
        users = tuple(sys.modules[cls.__module__].UserName(name=n) for n in ("carol", "nobody"))
        resp: Any = raw.request(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, 0, cls(users=users))
        return (int(resp.error_code), resp.error_message,
                [(r.user, int(r.error_code), r.error_message) for r in resp.results])
    finally:
        raw.close()


def described_transaction_as(bootstrap: str, certs: DevCerts, who: str, txn: str) -> tuple[object, ...]:
    """DescribeTransactions v0 for one id, as ``who``, read field by field (kio's decoder turns the start time into
    a datetime and cannot show what was sent): (error, id, state, timeout, start time, producer id, epoch, topics)."""
    raw = Raw(bootstrap, _tls_as(certs, who))
    try:
        cls = load_request_schema(ApiKey.DESCRIBE_TRANSACTIONS, 0)
        raw.send(encode_request(ApiKey.DESCRIBE_TRANSACTIONS, 0, 7, cls(transactional_ids=(txn,))))
        frame = raw.recv_frame()
        assert frame is not None
    finally:
        raw.close()
    r = Reader(frame)
    assert r.i32() == 7
    r.skip_tagged_fields()  # response header v1
    r.i32()  # throttle time
    assert r.count(compact=True) == 1
    fields = (r.i16(), r.string(compact=True), r.string(compact=True), r.i32(), r.i64(), r.i64(), r.i16())
    topics = [(r.string(compact=True), [r.i32() for _ in range(r.count(compact=True))], r.skip_tagged_fields())[0]
              for _ in range(r.count(compact=True))]
    return (*fields, topics)


# --- what Kafka answers to malformed ACL requests, byte for byte in codes and messages ----------------------------

BAD_CREATIONS = {
    # (resource type, name, pattern, principal, operation, permission) -> (error code, message); None: closed
    (2, "t", 2, "User:a", 3, 3): (-1, None),  # MATCH is a filter, not a pattern: Kafka cannot build it
    (2, "t", 1, "User:a", 3, 3): (-1, None),
    (2, "t", 3, "User:a", 1, 3): (-1, None),  # operation ANY
    (2, "t", 3, "User:a", 3, 1): (-1, None),  # permission ANY
    (1, "t", 3, "User:a", 3, 3): (-1, None),  # resource type ANY
    (2, "t", 99, "User:a", 3, 3): (42, "Invalid patternType UNKNOWN"),
    (4, "other", 3, "User:a", 7, 3): (42, "The only valid name for the CLUSTER resource is kafka-cluster"),
    (2, "", 3, "User:a", 3, 3): (42, "Invalid empty resource name"),
    (2, "t", 3, "alice", 3, 3): (
        42, "Could not parse principal from `alice` (no colon is present separating the principal type from the "
        "principal name)",
    ),
    (2, "t", 0, "User:a", 3, 3): None,  # an explicit UNKNOWN: the request does not parse
    (0, "t", 3, "User:a", 3, 3): None,
}


def create_raw(bootstrap: str, rt: int, name: str, pt: int, principal: str, op: int, perm: int) -> object:
    raw = Raw(bootstrap)
    try:
        cls = load_request_schema(ApiKey.CREATE_ACLS, 3)
        creation = sys.modules[cls.__module__].AclCreation(
            resource_type=rt, resource_name=name, resource_pattern_type=pt, principal=principal, host="*",
            operation=op, permission_type=perm,
        )
        raw.send(encode_request(ApiKey.CREATE_ACLS, 3, 1, cls(creations=(creation,))))
        frame = raw.recv_frame()
        if frame is None:
            return None
        result = decode_response(ApiKey.CREATE_ACLS, 3, frame)[1].results[0]  # type: ignore[attr-defined]
        return int(result.error_code), result.error_message
    finally:
        raw.close()


def test_malformed_creations_get_kafkas_answers(secured: str) -> None:
    got = {case: create_raw(secured, *case) for case in BAD_CREATIONS}
    assert got == BAD_CREATIONS
