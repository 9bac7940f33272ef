"""Kafka request and response messages: decoding requests and encoding responses with ``kio``, sans-IO.

kio is generated from Apache Kafka's own JSON message specs, so we do not hand-write message classes. This module
adds what a broker needs on top:

* :data:`SUPPORTED_VERSIONS`, the ``api_key -> (min, max)`` table the broker advertises in ApiVersions. It follows
  Apache Kafka 4.x with the old minimums kept that librdkafka 2.0.2 (Debian's kcat) checks for feature detection
  (Produce 0, JoinGroup 0, ...). Produce v0-2 are advertised but answered by closing the connection, exactly as
  Kafka 4 does (KAFKA-18659): no client we know sends them.
* :func:`decode_request`: ``frame -> (RequestHeader, request)``, raising only :class:`ProtocolError` subclasses.
* :func:`encode_response`: ``(header, response) -> framed bytes``. kio's writer omits tagged fields that hold
  their default value, which old librdkafka requires.
* :func:`build`: construct a version-specific kio dataclass from keyword arguments, dropping fields the version
  does not have, so one handler serves every version of its API.

Request header layout (the first 8 bytes are the same in every version)::

    int16 api_key | int16 api_version | int32 correlation_id | nullable string client_id | [tagged fields, v2]
"""

from __future__ import annotations

import dataclasses
import functools
import io
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

from kio.index import KioIndexError
from kio.index import load_request_schema as kio_request_schema
from kio.index import load_response_schema as kio_response_schema
from kio.serial import entity_reader, entity_writer
from kio.serial.errors import SerialError

from loosely.protocol.errors import ProtocolError, UnsupportedVersionError
from loosely.protocol.guard import check_entity, clamp_durations
from loosely.protocol.schemas import REQUESTS, RESPONSES

__all__ = [
    "API_NAMES",
    "REQUEST_PREFIX",
    "SUPPORTED_VERSIONS",
    "ApiKey",
    "RequestHeader",
    "build",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "load_request_schema",
    "load_response_schema",
    "nested",
    "peek_request_prefix",
    "response_class",
]

REQUEST_PREFIX: Final = struct.Struct(">hhi")
assert REQUEST_PREFIX.size == 8


class ApiKey:
    PRODUCE: Final = 0
    FETCH: Final = 1
    LIST_OFFSETS: Final = 2
    METADATA: Final = 3
    OFFSET_COMMIT: Final = 8
    OFFSET_FETCH: Final = 9
    FIND_COORDINATOR: Final = 10
    JOIN_GROUP: Final = 11
    HEARTBEAT: Final = 12
    LEAVE_GROUP: Final = 13
    SYNC_GROUP: Final = 14
    DESCRIBE_GROUPS: Final = 15
    LIST_GROUPS: Final = 16
    SASL_HANDSHAKE: Final = 17
    API_VERSIONS: Final = 18
    CREATE_TOPICS: Final = 19
    DELETE_TOPICS: Final = 20
    DELETE_RECORDS: Final = 21
    INIT_PRODUCER_ID: Final = 22
    OFFSET_FOR_LEADER_EPOCH: Final = 23
    ADD_PARTITIONS_TO_TXN: Final = 24
    ADD_OFFSETS_TO_TXN: Final = 25
    END_TXN: Final = 26
    WRITE_TXN_MARKERS: Final = 27
    TXN_OFFSET_COMMIT: Final = 28
    DESCRIBE_ACLS: Final = 29
    CREATE_ACLS: Final = 30
    DELETE_ACLS: Final = 31
    DESCRIBE_CONFIGS: Final = 32
    ALTER_CONFIGS: Final = 33
    ALTER_REPLICA_LOG_DIRS: Final = 34
    DESCRIBE_LOG_DIRS: Final = 35
    SASL_AUTHENTICATE: Final = 36
    CREATE_PARTITIONS: Final = 37
    CREATE_DELEGATION_TOKEN: Final = 38
    RENEW_DELEGATION_TOKEN: Final = 39
    EXPIRE_DELEGATION_TOKEN: Final = 40
    DESCRIBE_DELEGATION_TOKEN: Final = 41
    DELETE_GROUPS: Final = 42
    ELECT_LEADERS: Final = 43
    INCREMENTAL_ALTER_CONFIGS: Final = 44
    ALTER_PARTITION_REASSIGNMENTS: Final = 45
    LIST_PARTITION_REASSIGNMENTS: Final = 46
    OFFSET_DELETE: Final = 47
    DESCRIBE_CLIENT_QUOTAS: Final = 48
    ALTER_CLIENT_QUOTAS: Final = 49
    DESCRIBE_USER_SCRAM_CREDENTIALS: Final = 50
    ALTER_USER_SCRAM_CREDENTIALS: Final = 51
    DESCRIBE_QUORUM: Final = 55
    DESCRIBE_CLUSTER: Final = 60
    DESCRIBE_PRODUCERS: Final = 61
    LIST_TRANSACTIONS: Final = 66
    DESCRIBE_TRANSACTIONS: Final = 65
    CONSUMER_GROUP_HEARTBEAT: Final = 68
    CONSUMER_GROUP_DESCRIBE: Final = 69
    GET_TELEMETRY_SUBSCRIPTIONS: Final = 71
    PUSH_TELEMETRY: Final = 72
    LIST_CONFIG_RESOURCES: Final = 74
    DESCRIBE_TOPIC_PARTITIONS: Final = 75
    SHARE_GROUP_HEARTBEAT: Final = 76
    SHARE_GROUP_DESCRIBE: Final = 77
    SHARE_FETCH: Final = 78
    SHARE_ACKNOWLEDGE: Final = 79
    STREAMS_GROUP_HEARTBEAT: Final = 88
    STREAMS_GROUP_DESCRIBE: Final = 89
    DESCRIBE_SHARE_GROUP_OFFSETS: Final = 90
    ALTER_SHARE_GROUP_OFFSETS: Final = 91
    DELETE_SHARE_GROUP_OFFSETS: Final = 92
    STREAMS_GROUP_TOPOLOGY_DESCRIPTION_UPDATE: Final = 93


# What the broker can serve. The broker advertises the subset it has handlers for (see loosely.broker).
SUPPORTED_VERSIONS: Final[dict[int, tuple[int, int]]] = {
    ApiKey.PRODUCE: (0, 13),  # 0-2 advertised for librdkafka 2.0.2's feature checks, never served; 13: topic ids
    ApiKey.FETCH: (4, 18),  # 13+ address topics by id
    ApiKey.LIST_OFFSETS: (1, 11),  # 11: the earliest offset pending upload to tiered storage (KIP-1023)
    ApiKey.METADATA: (0, 13),
    ApiKey.OFFSET_COMMIT: (2, 10),  # 10: topics by id
    ApiKey.OFFSET_FETCH: (1, 10),  # 10: topics by id
    ApiKey.FIND_COORDINATOR: (0, 6),
    ApiKey.JOIN_GROUP: (0, 9),
    ApiKey.HEARTBEAT: (0, 4),
    ApiKey.LEAVE_GROUP: (0, 5),
    ApiKey.SYNC_GROUP: (0, 5),
    ApiKey.DESCRIBE_GROUPS: (0, 6),
    ApiKey.LIST_GROUPS: (0, 5),
    ApiKey.SASL_HANDSHAKE: (0, 1),  # Kafka 4.1 keeps v0 (bare tokens after it); advertised on every listener
    ApiKey.API_VERSIONS: (0, 5),  # 5: the cluster and node the client means (KIP-1242)
    ApiKey.CREATE_TOPICS: (2, 7),
    ApiKey.DELETE_TOPICS: (1, 6),
    ApiKey.DELETE_RECORDS: (0, 2),
    ApiKey.INIT_PRODUCER_ID: (0, 5),
    ApiKey.OFFSET_FOR_LEADER_EPOCH: (2, 4),
    ApiKey.ADD_PARTITIONS_TO_TXN: (0, 5),  # 4+: the batched broker-to-broker form
    ApiKey.ADD_OFFSETS_TO_TXN: (0, 4),
    ApiKey.END_TXN: (0, 5),  # 5: transactions version 2 (KIP-890), with transaction.version 2 finalized
    ApiKey.WRITE_TXN_MARKERS: (1, 2),  # 2: each marker's transaction version (KIP-1228)
    ApiKey.TXN_OFFSET_COMMIT: (0, 6),  # 5: adds the group's partition itself (KIP-890); 6: topics by id
    ApiKey.DESCRIBE_CONFIGS: (1, 4),
    ApiKey.ALTER_CONFIGS: (0, 2),
    ApiKey.ALTER_REPLICA_LOG_DIRS: (1, 2),
    ApiKey.DESCRIBE_LOG_DIRS: (1, 5),  # 5: whether the directory is cordoned
    ApiKey.SASL_AUTHENTICATE: (0, 2),
    ApiKey.CREATE_PARTITIONS: (0, 3),
    ApiKey.CREATE_DELEGATION_TOKEN: (1, 3),  # Kafka 4 dropped v0 of the four token APIs (KIP-896); 3: the owner
    ApiKey.RENEW_DELEGATION_TOKEN: (1, 2),
    ApiKey.EXPIRE_DELEGATION_TOKEN: (1, 2),
    ApiKey.DESCRIBE_DELEGATION_TOKEN: (1, 3),  # 3: the requester of each token
    ApiKey.DESCRIBE_ACLS: (1, 3),  # Kafka 4 dropped v0 of the three ACL APIs (KIP-896)
    ApiKey.CREATE_ACLS: (1, 3),
    ApiKey.DELETE_ACLS: (1, 3),
    ApiKey.DELETE_GROUPS: (0, 3),  # 3: an error message per group
    ApiKey.ELECT_LEADERS: (0, 2),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: (0, 1),
    ApiKey.ALTER_PARTITION_REASSIGNMENTS: (0, 1),
    ApiKey.LIST_PARTITION_REASSIGNMENTS: (0, 0),
    ApiKey.OFFSET_DELETE: (0, 0),
    ApiKey.DESCRIBE_CLIENT_QUOTAS: (0, 1),
    ApiKey.ALTER_CLIENT_QUOTAS: (0, 1),
    ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: (0, 0),
    ApiKey.ALTER_USER_SCRAM_CREDENTIALS: (0, 0),
    ApiKey.DESCRIBE_QUORUM: (0, 2),
    ApiKey.DESCRIBE_CLUSTER: (0, 2),
    ApiKey.DESCRIBE_PRODUCERS: (0, 0),
    ApiKey.DESCRIBE_TRANSACTIONS: (0, 0),
    ApiKey.LIST_TRANSACTIONS: (0, 2),
    ApiKey.CONSUMER_GROUP_HEARTBEAT: (0, 1),
    ApiKey.CONSUMER_GROUP_DESCRIBE: (0, 1),
    ApiKey.GET_TELEMETRY_SUBSCRIPTIONS: (0, 0),  # advertised only with telemetry on (loosely.broker.client_metrics)
    ApiKey.PUSH_TELEMETRY: (0, 0),
    ApiKey.LIST_CONFIG_RESOURCES: (0, 1),
    ApiKey.DESCRIBE_TOPIC_PARTITIONS: (0, 0),
    # share groups (KIP-932), Kafka 4.4's versions; 2 of ShareFetch / ShareAcknowledge: the record-limit acquire
    # mode and RENEW acknowledgements
    ApiKey.SHARE_GROUP_HEARTBEAT: (1, 1),
    ApiKey.SHARE_GROUP_DESCRIBE: (1, 1),
    ApiKey.SHARE_FETCH: (1, 2),
    ApiKey.SHARE_ACKNOWLEDGE: (1, 2),
    ApiKey.DESCRIBE_SHARE_GROUP_OFFSETS: (0, 1),  # 1: the share-partition lag
    ApiKey.ALTER_SHARE_GROUP_OFFSETS: (0, 0),
    ApiKey.DELETE_SHARE_GROUP_OFFSETS: (0, 0),
    # streams groups (KIP-1071); 1: KIP-1331's topology descriptions (Kafka 4.4 serves 0-1 of the describe too)
    ApiKey.STREAMS_GROUP_HEARTBEAT: (0, 1),
    ApiKey.STREAMS_GROUP_DESCRIBE: (0, 1),
    ApiKey.STREAMS_GROUP_TOPOLOGY_DESCRIPTION_UPDATE: (0, 0),  # refused as Kafka without a description plugin
}

API_NAMES: Final[dict[int, str]] = {
    value: name.lower() for name, value in vars(ApiKey).items() if not name.startswith("_")
}


@dataclass(frozen=True, slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


def peek_request_prefix(frame: bytes | memoryview) -> tuple[int, int, int]:
    """``(api_key, api_version, correlation_id)``, readable even when the rest of the frame is not."""
    if len(frame) < REQUEST_PREFIX.size:
        raise ProtocolError(f"request of {len(frame)} bytes is shorter than a request header")
    key, version, corr = REQUEST_PREFIX.unpack_from(frame, 0)
    return int(key), int(version), int(corr)


@functools.cache  # kio resolves a dotted name at every call: a measurable share of each request's decoding
def load_request_schema(api_key: int, api_version: int) -> type[Any]:
    """The request class of one API version: kio's, or loosely's own where kio lacks it (:mod:`.schemas`).

    Raises kio's ``KioIndexError`` for a version neither has."""
    own = REQUESTS.get((api_key, api_version))
    return own if own is not None else kio_request_schema(api_key, api_version)


@functools.cache
def load_response_schema(api_key: int, api_version: int) -> type[Any]:
    """The response class of one API version, found as :func:`load_request_schema` finds a request's."""
    own = RESPONSES.get((api_key, api_version))
    return own if own is not None else kio_response_schema(api_key, api_version)


_Reader = Callable[[bytes | memoryview, int], tuple[object, int]]


@functools.cache
def _request_codec(api_key: int, api_version: int) -> tuple[_Reader, _Reader]:
    cls = load_request_schema(api_key, api_version)
    return (
        cast(_Reader, entity_reader(cls.__header_schema__)),
        cast(_Reader, entity_reader(cls)),
    )


def decode_request(frame: bytes | memoryview) -> tuple[RequestHeader, object]:
    """Decode one request frame (without its size prefix).

    Raises :class:`UnsupportedVersionError` for a version outside :data:`SUPPORTED_VERSIONS` (or one kio lacks),
    and :class:`ProtocolError` for bytes that do not decode. Bytes after a complete request are ignored.
    """
    api_key, api_version, correlation_id = peek_request_prefix(frame)
    lo_hi = SUPPORTED_VERSIONS.get(api_key)
    if lo_hi is None or not lo_hi[0] <= api_version <= lo_hi[1]:
        raise UnsupportedVersionError(f"api {api_key} v{api_version} is not supported", api_key, api_version)
    try:
        read_header, read_body = _request_codec(api_key, api_version)
        cls = load_request_schema(api_key, api_version)
    except KioIndexError:
        raise UnsupportedVersionError(f"api {api_key} v{api_version} is not supported", api_key, api_version) from None
    # Walk the frame's shape before kio sees it: kio allocates for a declared array count before checking that the
    # bytes are there, and an impossible count would abort the process (see loosely.protocol.guard).
    overflows: list[int] = []
    check_entity(cls, frame, check_entity(cls.__header_schema__, frame, 0), overflows)
    if overflows:  # Long.MAX_VALUE durations: pinned to what a timedelta holds (see loosely.protocol.guard)
        frame = clamp_durations(frame, overflows)
    try:
        header, n = read_header(frame, 0)
        body, _ = read_body(frame, n)
    except (SerialError, ValueError, OverflowError, UnicodeDecodeError, IndexError) as e:
        raise ProtocolError(f"malformed api {api_key} v{api_version} request: {e}") from e
    except KeyError as e:
        # kio refuses tagged fields it does not know (Kafka would skip them); found by fuzz/fuzz_requests.py.
        raise ProtocolError(f"api {api_key} v{api_version} request: {e.args[0] if e.args else e}") from e
    # Trailing bytes are ignored, as Apache Kafka ignores them: librdkafka 2.x sends three extra bytes after an
    # all-topics Metadata v12 request, and Kafka answers it.
    client_id = getattr(header, "client_id", None)
    return RequestHeader(api_key, api_version, correlation_id, client_id), body


@functools.cache
def response_class(api_key: int, api_version: int) -> type[object]:
    return cast(type[object], load_response_schema(api_key, api_version))


@functools.cache
def _response_writers(
    api_key: int, api_version: int
) -> tuple[Callable[..., object], Callable[[io.BytesIO, object], None], Callable[[io.BytesIO, object], None]]:
    cls = load_response_schema(api_key, api_version)
    header_cls = cls.__header_schema__
    return (
        cast(Callable[..., object], header_cls),
        cast(Callable[[io.BytesIO, object], None], entity_writer(header_cls)),
        cast(Callable[[io.BytesIO, object], None], entity_writer(cls)),
    )


def encode_response(api_key: int, api_version: int, correlation_id: int, response: object) -> bytes:
    """The framed response (size prefix, response header, body)."""
    header_cls, write_header, write_body = _response_writers(api_key, api_version)
    buf = io.BytesIO()
    buf.write(b"\0\0\0\0")
    write_header(buf, header_cls(correlation_id=correlation_id))
    write_body(buf, response)
    out = buf.getbuffer()
    struct.pack_into(">i", out, 0, len(out) - 4)
    return bytes(out)


def encode_request(
    api_key: int, api_version: int, correlation_id: int, request: object, client_id: str = "loosely"
) -> bytes:
    """A framed request (the client side of :func:`decode_request`; used by tools and tests)."""
    cls = load_request_schema(api_key, api_version)
    header_cls: Callable[..., object] = cls.__header_schema__
    write_header = cast(Callable[[io.BytesIO, object], None], entity_writer(cls.__header_schema__))
    write_body = cast(Callable[[io.BytesIO, object], None], entity_writer(cls))
    buf = io.BytesIO()
    buf.write(b"\0\0\0\0")
    header = header_cls(
        request_api_key=api_key, request_api_version=api_version, correlation_id=correlation_id, client_id=client_id
    )
    write_header(buf, header)
    write_body(buf, request)
    out = buf.getbuffer()
    struct.pack_into(">i", out, 0, len(out) - 4)
    return bytes(out)


def decode_response(api_key: int, api_version: int, frame: bytes | memoryview) -> tuple[int, object]:
    """``(correlation_id, response)`` from a response frame without its size prefix."""
    cls = load_response_schema(api_key, api_version)
    check_entity(cls, frame, check_entity(cls.__header_schema__, frame, 0))  # see loosely.protocol.guard
    try:
        header, n = entity_reader(cls.__header_schema__)(frame, 0)
        body, _ = entity_reader(cls)(frame, n)
    except (SerialError, ValueError, OverflowError, UnicodeDecodeError, IndexError) as e:
        raise ProtocolError(f"malformed api {api_key} v{api_version} response: {e}") from e
    return int(header.correlation_id), body


T = TypeVar("T")


@functools.cache
def _field_names(cls: type[object]) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]


def build(cls: type[T], **values: object) -> T:
    """An instance of a version-specific kio class, ignoring values for fields this version lacks."""
    names = _field_names(cls)  # type: ignore[arg-type]
    return cls(**{k: v for k, v in values.items() if k in names})


def nested(response_cls: type[object], name: str) -> type[object]:
    """A nested class of a kio message (they live in the message's module)."""
    module = sys.modules[response_cls.__module__]
    found = getattr(module, name)
    assert isinstance(found, type)
    return found
