"""Bad input gets the right Kafka error or a closed connection, and the broker stays up with nothing lost."""

from __future__ import annotations

import datetime
import struct

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kio.schema.errors import ErrorCode

from broker._raw import Raw
from loosely.broker.server import BrokerThread
from loosely.protocol.messages import ApiKey, encode_request
from loosely.protocol.records import NewRecord, build_batch


def produce_ok(bootstrap: str, topic: str, n: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(n):
        p.produce(topic, b"v%d" % i)
    assert p.flush(30) == 0


def read_all(bootstrap: str, topic: str, n: int) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    out: list[bytes] = []
    while len(out) < n:
        batch = c.consume(n - len(out), timeout=10)
        assert batch, f"only {len(out)} of {n} records came back"
        out += [m.value() for m in batch if m.error() is None]
    c.close()
    return out


def still_healthy(b: BrokerThread, topic: str, n: int) -> None:
    assert read_all(b.bootstrap_servers, topic, n) == [b"v%d" % i for i in range(n)]
    produce_ok(b.bootstrap_servers, topic, 0)


def produce_request(topic: str, records: bytes, version: int = 7) -> bytes:
    from kio.schema.produce.v7.request import PartitionProduceData, ProduceRequest, TopicProduceData

    body = ProduceRequest(
        transactional_id=None,
        acks=1,
        timeout=datetime.timedelta(seconds=5),
        topic_data=(TopicProduceData(name=topic, partition_data=(PartitionProduceData(index=0, records=records),)),),
    )
    return encode_request(ApiKey.PRODUCE, version, 1, body)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(struct.pack(">i", -5), id="negative-size"),
        pytest.param(struct.pack(">i", 200 * 1024 * 1024), id="over-socket.request.max.bytes"),
        pytest.param(struct.pack(">i", 3) + b"abc", id="shorter-than-a-header"),
        pytest.param(struct.pack(">ihhi", 8, 999, 0, 1), id="unknown-api-key"),
        pytest.param(struct.pack(">ihhi", 8, 0, 99, 1), id="unsupported-produce-version"),
        pytest.param(struct.pack(">ihhi", 8, 0, 1, 1), id="produce-v1-advertised-never-served"),
        pytest.param(struct.pack(">ihhihh", 12, 3, 12, 1, 5, 0), id="truncated-metadata-body"),
        pytest.param(
            struct.pack(">ihhi", 18, 3, 1, 1) + b"\x00\x00" + struct.pack(">i", 5) + b"\x00\x10ab",
            id="metadata-topic-name-runs-past-the-frame",
        ),
    ],
)
def test_malformed_frames_close_only_that_connection(loosely: BrokerThread, topic: str, payload: bytes) -> None:
    produce_ok(loosely.bootstrap_servers, topic, 5)
    raw = Raw(loosely.bootstrap_servers)
    raw.send(payload)
    assert raw.closed_by_peer()
    still_healthy(loosely, topic, 5)


def test_unknown_api_versions_version_gets_the_v0_list(loosely: BrokerThread) -> None:
    raw = Raw(loosely.bootstrap_servers)
    raw.send(struct.pack(">ihhi", 10, 18, 77, 42) + b"\x00\x00")
    frame = raw.recv_frame()
    assert frame is not None
    corr, error = struct.unpack_from(">ih", frame, 0)
    assert (corr, error) == (42, ErrorCode.unsupported_version.value)
    (n,) = struct.unpack_from(">i", frame, 6)
    keys = {struct.unpack_from(">hhh", frame, 10 + 6 * i)[0] for i in range(n)}
    assert {0, 1, 2, 3, 18} <= keys


def test_corrupt_crc_is_refused_and_the_log_unchanged(loosely: BrokerThread, topic: str) -> None:
    produce_ok(loosely.bootstrap_servers, topic, 3)
    batch = bytearray(build_batch([NewRecord(b"k", b"bad", 1_700_000_000_000)]))
    batch[-2] ^= 0x55
    raw = Raw(loosely.bootstrap_servers)
    raw.send(produce_request(topic, bytes(batch)))
    frame = raw.recv_frame()
    assert frame is not None
    from loosely.protocol.messages import decode_response

    _, resp = decode_response(ApiKey.PRODUCE, 7, frame)
    part = resp.responses[0].partition_responses[0]  # type: ignore[attr-defined]
    assert part.error_code == ErrorCode.corrupt_message
    still_healthy(loosely, topic, 3)


def test_truncated_batch_and_record_too_large(loosely: BrokerThread, topic: str) -> None:
    produce_ok(loosely.bootstrap_servers, topic, 2)
    from loosely.protocol.messages import decode_response

    raw = Raw(loosely.bootstrap_servers)
    good = build_batch([NewRecord(b"k", b"x", 1_700_000_000_000)])
    raw.send(produce_request(topic, good[:-4]))
    frame = raw.recv_frame()
    assert frame is not None
    _, resp = decode_response(ApiKey.PRODUCE, 7, frame)
    assert resp.responses[0].partition_responses[0].error_code == ErrorCode.corrupt_message  # type: ignore[attr-defined]
    huge = build_batch([NewRecord(b"k", b"x" * 2_000_000, 1_700_000_000_000)])
    raw.send(produce_request(topic, huge))
    frame = raw.recv_frame()
    assert frame is not None
    _, resp = decode_response(ApiKey.PRODUCE, 7, frame)
    assert resp.responses[0].partition_responses[0].error_code == ErrorCode.message_too_large  # type: ignore[attr-defined]
    still_healthy(loosely, topic, 2)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", ErrorCode.invalid_topic_exception),
        ("..", ErrorCode.invalid_topic_exception),
        ("spaces are bad", ErrorCode.invalid_topic_exception),
        ("x" * 250, ErrorCode.invalid_topic_exception),
        ("x" * 249, ErrorCode.none),
        ("ok.name_with-all", ErrorCode.none),
    ],
)
def test_topic_names(loosely: BrokerThread, name: str, code: ErrorCode) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": loosely.bootstrap_servers})
    fut = admin.create_topics([NewTopic(name, 1, 1)], operation_timeout=10)[name]
    if code == ErrorCode.none:
        fut.result(10)
    else:
        with pytest.raises(Exception) as e:
            fut.result(10)
        assert e.value.args[0].code() == code.value


def test_many_pipelined_requests_are_answered_in_order(loosely: BrokerThread) -> None:
    from kio.schema.api_versions.v3.request import ApiVersionsRequest

    from loosely.protocol.messages import decode_response

    raw = Raw(loosely.bootstrap_servers)
    req = ApiVersionsRequest(client_software_name="t", client_software_version="1")
    raw.send(b"".join(encode_request(18, 3, i, req) for i in range(2000)))
    for i in range(2000):
        frame = raw.recv_frame()
        assert frame is not None
        corr, _ = decode_response(18, 3, frame)
        assert corr == i


HUGE_COMPACT_ARRAY = bytes.fromhex("ffffffff62")  # uvarint count + 1 = 26,575,110,143


def test_kio_alone_would_abort_on_an_impossible_array_count() -> None:
    """The reason loosely.protocol.guard exists: kio allocates for the declared count first and aborts."""
    import subprocess
    import sys

    code = (
        "from kio.index import load_request_schema\n"
        "from kio.serial import entity_reader\n"
        f"entity_reader(load_request_schema(3, 12))(bytes.fromhex('{HUGE_COMPACT_ARRAY.hex()}'), 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=False)
    assert r.returncode < 0 or r.returncode > 1, "kio no longer aborts; the guard could be retired"


def test_an_impossible_array_count_closes_the_connection_not_the_broker(loosely: BrokerThread, topic: str) -> None:
    from loosely.protocol.errors import ProtocolError
    from loosely.protocol.messages import decode_request

    header = struct.pack(">hhi", 3, 12, 7) + struct.pack(">h", 1) + b"c" + b"\x00"
    frame = header + HUGE_COMPACT_ARRAY + b"\x00\x00\x00"
    with pytest.raises(ProtocolError):
        decode_request(frame)
    produce_ok(loosely.bootstrap_servers, topic, 4)
    raw = Raw(loosely.bootstrap_servers)
    raw.send(struct.pack(">i", len(frame)) + frame)
    assert raw.closed_by_peer()
    still_healthy(loosely, topic, 4)


def test_two_batches_for_one_partition_are_refused_as_kafka_does(loosely: BrokerThread, topic: str) -> None:
    from loosely.protocol.messages import decode_response

    produce_ok(loosely.bootstrap_servers, topic, 1)
    one = build_batch([NewRecord(b"k", b"x", 1_700_000_000_000)])
    raw = Raw(loosely.bootstrap_servers)
    raw.send(produce_request(topic, one + one))
    frame = raw.recv_frame()
    assert frame is not None
    _, resp = decode_response(ApiKey.PRODUCE, 7, frame)
    assert resp.responses[0].partition_responses[0].error_code == ErrorCode.invalid_record  # type: ignore[attr-defined]
    still_healthy(loosely, topic, 1)
