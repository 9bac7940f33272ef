"""Every handler refuses a principal with no rights, with the code Kafka gives (loosely alone: with
``allow.everyone.if.no.acl.found=false`` a PLAINTEXT client, ``User:ANONYMOUS``, may do nothing, a setup Apache Kafka
cannot run on PLAINTEXT since its own controller traffic is ANONYMOUS too; tests/compat/test_acls.py holds the
side-by-side checks). The same client may do everything once it is a super user."""

from __future__ import annotations

import datetime
import logging
import re
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from broker._raw import Raw
from loosely.broker.server import BrokerThread
from loosely.protocol.messages import ApiKey, load_request_schema
from loosely.testing import embedded_broker, free_port

STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
TOPIC, GROUP = "orders", "billing"


@pytest.fixture(scope="module")
def locked_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    data = str(tmp_path_factory.mktemp("locked"))
    with embedded_broker(data_dir=data, authorizer_class=STANDARD, allow_everyone_if_no_acl_found=True) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap_servers})
        admin.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(30)
        c = Consumer({"bootstrap.servers": b.bootstrap_servers, "group.id": GROUP})
        c.commit(offsets=[TopicPartition(TOPIC, 0, 0)], asynchronous=False)
        c.close()
        port = b.broker.port
    metrics = f"127.0.0.1:{free_port()}"
    with embedded_broker(data_dir=data, port=port, authorizer_class=STANDARD, metrics_listen=metrics) as b:
        yield b


@pytest.fixture(scope="module")
def locked(locked_broker: BrokerThread) -> str:
    return locked_broker.bootstrap_servers


def code(e: pytest.ExceptionInfo[BaseException]) -> int:
    assert isinstance(e.value, KafkaException), repr(e.value)
    return int(e.value.args[0].code())


def test_admin_requests_are_refused(locked: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="loosely.broker.audit")
    admin = AdminClient({"bootstrap.servers": locked})
    assert TOPIC not in admin.list_topics(timeout=10).topics
    checks = {
        "create topic": lambda: admin.create_topics([NewTopic("new", 1, 1)])["new"].result(30),
        "delete topic": lambda: admin.delete_topics([TOPIC])[TOPIC].result(30),
        "add partitions": lambda: admin.create_partitions([NewPartitions(TOPIC, 3)])[TOPIC].result(30),
        "describe group": lambda: admin.describe_consumer_groups([GROUP])[GROUP].result(30),
        "delete group": lambda: admin.delete_consumer_groups([GROUP])[GROUP].result(30),
    }
    got = {}
    for what, call in checks.items():
        with pytest.raises(KafkaException) as e:
            call()
        got[what] = code(e)
    assert got == {
        "create topic": KafkaError.TOPIC_AUTHORIZATION_FAILED,
        "delete topic": KafkaError.TOPIC_AUTHORIZATION_FAILED,
        "add partitions": KafkaError.TOPIC_AUTHORIZATION_FAILED,
        "describe group": KafkaError.GROUP_AUTHORIZATION_FAILED,
        "delete group": KafkaError.GROUP_AUTHORIZATION_FAILED,
    }
    for rtype, name, expected in ((ConfigResource.Type.TOPIC, TOPIC, KafkaError.TOPIC_AUTHORIZATION_FAILED),
                                  (ConfigResource.Type.BROKER, "1", KafkaError.CLUSTER_AUTHORIZATION_FAILED)):
        r = ConfigResource(rtype, name)
        with pytest.raises(KafkaException) as e:
            admin.describe_configs([r])[r].result(30)
        assert code(e) == expected
    # A group's configs (resource type 32, which confluent-kafka cannot name) need the operation on the group.
    from kio.schema.describe_configs.v4.request import DescribeConfigsRequest, DescribeConfigsResource
    from kio.static.primitive import i8

    raw = Raw(locked)
    try:
        resp = raw.request(ApiKey.DESCRIBE_CONFIGS, 4, DescribeConfigsRequest(
            resources=(DescribeConfigsResource(resource_type=i8(32), resource_name=GROUP, configuration_keys=None),),
            include_synonyms=False, include_documentation=False))
    finally:
        raw.close()
    assert [r.error_code for r in resp.results] == [KafkaError.GROUP_AUTHORIZATION_FAILED]  # type: ignore[attr-defined]
    assert admin.list_consumer_groups().result(30).valid == []
    # The first refusal is audited (this is the module's first test: the interval starts here); the next ones within
    # the interval are counted, not logged.
    audit = [rec.getMessage() for rec in caplog.records if rec.name == "loosely.broker.audit"]
    assert len(audit) == 1
    assert audit[0].startswith("Principal = User:ANONYMOUS is Denied operation = CREATE from host = 127.0.0.1")


def test_clients_are_refused(locked: str) -> None:
    errors: list[KafkaError] = []
    p = Producer({"bootstrap.servers": locked, "message.timeout.ms": 5000})
    p.produce(TOPIC, b"x", on_delivery=lambda err, _m: errors.append(err))
    p.flush(15)
    assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    t = Producer({"bootstrap.servers": locked, "transactional.id": "tx"})
    with pytest.raises(KafkaException) as e:
        t.init_transactions(15)
    assert code(e) == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_denials_are_counted_on_the_metrics_endpoint(locked_broker: BrokerThread) -> None:
    def topic_denials() -> dict[str, float]:
        url = f"http://{locked_broker.broker.config.metrics_listen}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        pattern = r'^loosely_authorization_denials_total\{operation="(\w+)",resource_type="TOPIC"\} (\S+)$'
        return {op: float(n) for op, n in re.findall(pattern, text, re.MULTILINE)}

    before = topic_denials()
    p = Producer({"bootstrap.servers": locked_broker.bootstrap_servers, "message.timeout.ms": 5000})
    p.produce(TOPIC, b"x")
    p.flush(15)
    after = topic_denials()
    # the producer's Metadata request is refused DESCRIBE on the topic before it can try to WRITE
    assert after.get("DESCRIBE", 0) > before.get("DESCRIBE", 0), (before, after)


def raw_call(bootstrap: str, api_key: int, version: int, **fields: object) -> object:
    raw = Raw(bootstrap)
    try:
        cls = load_request_schema(api_key, version)
        mod = sys.modules[cls.__module__]
        built = {k: v(mod) if callable(v) else v for k, v in fields.items()}
        return raw.request(api_key, version, cls(**built))
    finally:
        raw.close()


def test_raw_requests_get_the_codes_kafka_gives(locked: str) -> None:
    r = raw_call(locked, ApiKey.FIND_COORDINATOR, 3, key=GROUP, key_type=0)
    assert r.error_code == KafkaError.GROUP_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    r = raw_call(locked, ApiKey.FIND_COORDINATOR, 3, key="tx", key_type=1)
    assert r.error_code == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    r = raw_call(locked, ApiKey.OFFSET_FETCH, 7, group_id=GROUP, topics=None)
    assert r.error_code == KafkaError.GROUP_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    r = raw_call(locked, ApiKey.INIT_PRODUCER_ID, 4, transactional_id=None,
                 transaction_timeout=datetime.timedelta(seconds=60), producer_id=-1, producer_epoch=-1)
    assert r.error_code == KafkaError.CLUSTER_AUTHORIZATION_FAILED  # type: ignore[attr-defined]  # idempotence
    r = raw_call(locked, ApiKey.HEARTBEAT, 4, group_id=GROUP, generation_id=1, member_id="m", group_instance_id=None)
    assert r.error_code == KafkaError.GROUP_AUTHORIZATION_FAILED  # type: ignore[attr-defined]
    r = raw_call(locked, ApiKey.METADATA, 12, topics=lambda m: (m.MetadataRequestTopic(name=TOPIC, topic_id=None),),
                 allow_auto_topic_creation=True, include_topic_authorized_operations=True)
    assert [t.error_code for t in r.topics] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]  # type: ignore[attr-defined]
    r = raw_call(locked, ApiKey.DESCRIBE_CLUSTER, 1, include_cluster_authorized_operations=True, endpoint_type=1)
    assert r.error_code == 0 and r.cluster_authorized_operations == 0  # type: ignore[attr-defined]
    # client metrics subscriptions (KIP-714) are the cluster's configs
    r = raw_call(locked, ApiKey.DESCRIBE_CONFIGS, 4, resources=lambda m: (m.DescribeConfigsResource(
        resource_type=16, resource_name="subscription", configuration_keys=None),), include_synonyms=False,
        include_documentation=False)
    assert [x.error_code for x in r.results] == [KafkaError.CLUSTER_AUTHORIZATION_FAILED]  # type: ignore[attr-defined]
    # AddPartitionsToTxn v4+ is what brokers send each other: CLUSTER_ACTION, not WRITE on the transactional id
    r = raw_call(locked, ApiKey.ADD_PARTITIONS_TO_TXN, 4, transactions=lambda m: (m.AddPartitionsToTxnTransaction(
        transactional_id="tx", producer_id=1, producer_epoch=0, verify_only=True,
        topics=(m.AddPartitionsToTxnTopic(name=TOPIC, partitions=(0,)),)),))
    assert (r.error_code, r.results_by_transaction) == (  # type: ignore[attr-defined]
        KafkaError.CLUSTER_AUTHORIZATION_FAILED, ()
    )
