"""Lying produce batches, sent raw to loosely and to Apache Kafka side by side: the same error codes, the same
KIP-467 record_errors, a log end offset that does not move, and a partition that normal clients still use.

One broker of each kind per module, one topic setup, one raw connection: every case is a single Produce v9
request. Where loosely deliberately answers differently from Kafka (docs/broker.md, "Produce validation"), the
case names both answers.
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from kio.schema.list_offsets.v5.request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.schema.types import BrokerId, TopicName

from broker._raw import Raw
from compat._support import create_topic
from loosely.protocol.compression import Codec
from loosely.protocol.errors import ErrorCode
from loosely.protocol.records import BATCH_HEADER_BYTES, NewRecord, build_batch
from loosely.testing import ApacheKafka, embedded_broker
from protocol._forge import bomb, forge, records_of, with_codec

pytestmark = pytest.mark.kafka

NOW = int(time.time() * 1000)
HOUR_MS = 3_600_000
CODECS = [Codec.GZIP, Codec.SNAPPY, Codec.LZ4, Codec.ZSTD]
# Bombs that stay under max.message.bytes compressed: 200 MiB of zeros (snappy inflates at most ~21x, so 16 MiB).
BOMB_BYTES = {Codec.GZIP: 200 << 20, Codec.LZ4: 200 << 20, Codec.ZSTD: 200 << 20, Codec.SNAPPY: 16 << 20}


@dataclass(frozen=True)
class Target:
    kind: str
    bootstrap: str
    raw: Raw
    plain: str  # message.timestamp.before.max.ms = 1 day
    compacted: str
    log_append_time: str


@pytest.fixture(scope="module", params=["loosely", "kafka"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    def setup(kind: str, bootstrap: str) -> Target:
        plain, compacted, lat = (f"{p}-{uuid.uuid4().hex[:8]}" for p in ("v", "vc", "vl"))
        create_topic(bootstrap, plain, 1, **{"message.timestamp.before.max.ms": str(24 * HOUR_MS)})
        create_topic(bootstrap, compacted, 1, **{"cleanup.policy": "compact"})
        create_topic(bootstrap, lat, 1, **{"message.timestamp.type": "LogAppendTime"})
        return Target(kind, bootstrap, Raw(bootstrap), plain, compacted, lat)

    if request.param == "kafka":
        kafka: ApacheKafka = request.getfixturevalue("apache_kafka")
        t = setup("kafka", kafka.bootstrap_servers)
        yield t
        t.raw.close()
    else:
        with embedded_broker(data_dir=str(tmp_path_factory.mktemp("validation") / "data")) as b:
            t = setup("loosely", b.bootstrap_servers)
            yield t
            t.raw.close()


def produce(t: Target, topic: str, batch: bytes) -> tuple[ErrorCode, list[int], str | None]:
    req = ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout=datetime.timedelta(seconds=30),
        topic_data=(TopicProduceData(name=topic, partition_data=(PartitionProduceData(index=0, records=batch),)),),
    )
    p = t.raw.request(0, 9, req).responses[0].partition_responses[0]  # type: ignore[attr-defined]
    return p.error_code, [e.batch_index for e in p.record_errors], p.error_message


def log_end_offset(t: Target, topic: str) -> int:
    req = ListOffsetsRequest(
        replica_id=BrokerId(-1),
        isolation_level=0,  # type: ignore[arg-type]
        topics=(
            ListOffsetsTopic(
                name=TopicName(topic), partitions=(ListOffsetsPartition(partition_index=0, timestamp=-1),)
            ),
        ),  # type: ignore[arg-type]
    )
    p = t.raw.request(2, 5, req).topics[0].partitions[0]  # type: ignore[attr-defined]
    assert p.error_code == ErrorCode.none
    return int(p.offset)


def ten(codec: Codec = Codec.NONE) -> bytes:
    return build_batch(records_of(10, NOW), codec=codec)


INVALID = ErrorCode.invalid_record
CASES: dict[str, tuple[Callable[[], bytes], ErrorCode]] = {
    "count-1M-holding-10": (lambda: forge(ten(), count=1_000_000, last_offset_delta=999_999), INVALID),
    "count-1M-spanning-10": (lambda: forge(ten(), count=1_000_000), INVALID),
    "count-minus-1": (lambda: forge(ten(), count=-1), INVALID),
    "last-offset-delta-minus-1": (lambda: forge(ten(), last_offset_delta=-1), INVALID),
    "unknown-codec-6": (lambda: forge(ten(), attributes=6), ErrorCode.unsupported_compression_type),
    "count-3-holding-10": (lambda: forge(ten(), count=3, last_offset_delta=2), INVALID),
    "trailing-bytes": (lambda: forge(ten(), body=ten()[BATCH_HEADER_BYTES:] + b"\x00\x01\x02"), INVALID),
    "trailing-bytes-gzip": (lambda: with_codec(ten(), Codec.GZIP, ten()[BATCH_HEADER_BYTES:] + b"\x00\x01"), INVALID),
    "trailing-bytes-zstd": (lambda: with_codec(ten(), Codec.ZSTD, ten()[BATCH_HEADER_BYTES:] + b"\x00\x01"), INVALID),
    "base-offset-5": (lambda: forge(ten(), base_offset=5), INVALID),
    "control-batch": (lambda: forge(ten(), attributes=0x20), INVALID),
    "crc": (lambda: ten()[:-1] + b"\xff", ErrorCode.corrupt_message),
    "record-in-the-future": (
        lambda: forge(
            build_batch([NewRecord(b"k", b"v", NOW), NewRecord(b"k", b"v", NOW + 10 * HOUR_MS)]), max_timestamp=NOW
        ),
        ErrorCode.invalid_timestamp,
    ),
    "negative-timestamp": (lambda: build_batch([NewRecord(b"k", b"v", -5)]), ErrorCode.invalid_timestamp),
    "record-two-days-old": (
        lambda: build_batch([NewRecord(b"k", b"v", NOW - 48 * HOUR_MS), NewRecord(b"k", b"v", NOW)]),
        ErrorCode.invalid_timestamp,
    ),
    **{
        f"garbage-{c.name.lower()}": (
            (lambda c=c: forge(ten(), attributes=int(c), body=bytes(range(256)) * 2)),
            INVALID,
        )
        for c in CODECS
    },
    **{f"bomb-{c.name.lower()}": ((lambda c=c: bomb(c, BOMB_BYTES[c])), INVALID) for c in CODECS},
}
# Kafka's answers where loosely deliberately differs (docs/broker.md).
KAFKA_DIFFERS = {
    "unknown-codec-6": ErrorCode.unknown_server_error,
    **{f"garbage-{c.name.lower()}": ErrorCode.unknown_server_error for c in CODECS},
}
RECORD_ERRORS = {"record-in-the-future": [1], "record-two-days-old": [0], "negative-timestamp": [0]}


@pytest.mark.parametrize("case", list(CASES))
def test_a_lying_batch_appends_nothing(target: Target, case: str) -> None:
    make, code = CASES[case]
    if target.kind == "kafka":
        code = KAFKA_DIFFERS.get(case, code)
    before = log_end_offset(target, target.plain)
    got, indexes, message = produce(target, target.plain, make())
    assert got == code, message
    assert indexes == RECORD_ERRORS.get(case, [])
    if indexes:
        assert message  # KIP-467: an error_message goes with record_errors
    assert log_end_offset(target, target.plain) == before


def test_keyless_records_on_a_compacted_topic_are_named(target: Target) -> None:
    keyless = frozenset(range(3, 100, 10))
    before = log_end_offset(target, target.compacted)
    got, indexes, message = produce(target, target.compacted, build_batch(records_of(100, NOW, keyless)))
    assert (got, indexes) == (ErrorCode.invalid_record, sorted(keyless))
    assert message
    assert log_end_offset(target, target.compacted) == before


def test_a_producer_may_not_stamp_log_append_time_on_a_log_append_time_topic(target: Target) -> None:
    before = log_end_offset(target, target.log_append_time)
    got, indexes, message = produce(target, target.log_append_time, forge(ten(), attributes=0x08))
    assert (got, indexes) == (ErrorCode.invalid_timestamp, list(range(10)))
    assert message
    assert log_end_offset(target, target.log_append_time) == before


@pytest.mark.parametrize(
    ("case", "loosely_code"),
    [
        ("offset-deltas-out-of-order", INVALID),
        ("negative-timestamp", ErrorCode.invalid_timestamp),
        ("inflates-past-64x-max-message-bytes", ErrorCode.message_too_large),
    ],
)
def test_where_loosely_is_stricter_than_kafka(target: Target, case: str, loosely_code: ErrorCode) -> None:
    batch = {
        "offset-deltas-out-of-order": lambda: build_batch(
            [NewRecord(b"k", b"v", NOW, offset_delta=d) for d in (1, 0, 2)]
        ),
        "negative-timestamp": lambda: build_batch([NewRecord(b"k", b"v", -5)]),
        "inflates-past-64x-max-message-bytes": lambda: build_batch(
            [NewRecord(b"k", bytes(100 << 20), NOW)], codec=Codec.ZSTD
        ),
    }[case]()
    # the compacted topic keeps Kafka's default message.timestamp.before.max.ms (no bound)
    topic = target.compacted
    before = log_end_offset(target, topic)
    got, _, message = produce(target, topic, batch)
    if target.kind == "kafka":
        assert got == ErrorCode.none, message  # Kafka takes it; docs/broker.md says why loosely does not
    else:
        assert got == loosely_code, message
        assert log_end_offset(target, topic) == before


def test_normal_clients_still_produce_and_consume(target: Target) -> None:
    topic = target.plain
    start = log_end_offset(target, topic)
    p = Producer({"bootstrap.servers": target.bootstrap, "linger.ms": 5})
    for i in range(50):
        p.produce(topic, key=b"k%d" % i, value=b"after-%d" % i)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": target.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}"})
    c.assign([TopicPartition(topic, 0, start)])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < 50 and time.monotonic() < deadline:
        m = c.poll(1)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    assert got == [b"after-%d" % i for i in range(50)]


def test_what_librdkafka_reports_for_keyless_records_on_a_compacted_topic(target: Target) -> None:
    """confluent-kafka, one batch of 100 with 10 keyless: both brokers make it report the same per message.

    The batch must be one: librdkafka reports per batch, so a batch cut short by a stalled machine (a 500 ms linger
    once ran out in CI) would hold only keyed records and succeed. The producer learns the partition's leader first,
    lingers far longer than the loop takes, and flush() sends what it holds at once.
    """
    reports: dict[int, int] = {}
    p = Producer(
        {
            "bootstrap.servers": target.bootstrap,
            "linger.ms": 60_000,
            "batch.num.messages": 1000,
            "enable.idempotence": False,
            "retries": 0,
        }
    )
    assert p.list_topics(target.compacted, timeout=10).topics[target.compacted].partitions[0].leader >= 0
    keyless = set(range(7, 100, 10))
    for i in range(100):
        p.produce(
            target.compacted,
            key=None if i in keyless else b"k%d" % i,
            value=b"v%d" % i,
            on_delivery=lambda err, msg, i=i: reports.__setitem__(i, 0 if err is None else err.code()),
        )
    assert p.flush(30) == 0
    bad = {i for i, code in reports.items() if code == KafkaError.INVALID_RECORD}
    assert len(reports) == 100
    assert bad == keyless, reports
    others = {code for i, code in reports.items() if i not in keyless}
    assert others == {KafkaError._INVALID_DIFFERENT_RECORD}, others


@pytest.mark.parametrize("version", [3, 7])
def test_versions_before_kip_467_get_the_same_codes_without_record_errors(target: Target, version: int) -> None:
    import importlib

    m = importlib.import_module(f"kio.schema.produce.v{version}.request")
    for topic, batch, code in (
        (target.compacted, build_batch(records_of(4, NOW, frozenset({1}))), ErrorCode.invalid_record),
        (target.plain, build_batch([NewRecord(b"k", b"v", NOW + 10 * HOUR_MS)]), ErrorCode.invalid_timestamp),
        (target.plain, forge(ten(), count=3, last_offset_delta=2), ErrorCode.invalid_record),
    ):
        req = m.ProduceRequest(
            transactional_id=None,
            acks=-1,
            timeout=datetime.timedelta(seconds=30),
            topic_data=(
                m.TopicProduceData(name=topic, partition_data=(m.PartitionProduceData(index=0, records=batch),)),
            ),
        )
        p = target.raw.request(0, version, req).responses[0].partition_responses[0]  # type: ignore[attr-defined]
        assert p.error_code == code
