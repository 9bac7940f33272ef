"""Consumer groups' committed offsets, read without librdkafka's admin call that crashes.

librdkafka 2.16's AdminClient ``list_consumer_group_offsets`` segfaults when the OffsetFetch answer carries a
retriable coordinator error (``rd_kafka_handle_OffsetFetch`` hands it to the consumer-group machinery, which an
admin client does not have: ``rd_kafka_cgrp_op`` dereferences NULL). A fresh Kafka cluster answers exactly that
while its offsets topic loads. Two ways around it live here:

* :func:`committed_offsets`: a consumer handle with the group's id has that machinery, so it asks through
  ``Consumer.committed`` (the consumer never subscribes, so it never joins the group). One librdkafka handle per
  call: fine for a command, heavy for something that asks every few seconds.
* :class:`GroupOffsets`: what a long-running reader of many groups (the console's lag sampler) uses. It sends the
  requests itself over :class:`loosely.clients.wire.KafkaConnection` (TLS and SASL as the rest of loosely's
  clients take them): one batched FindCoordinator (v4, every group at once) through a bootstrap broker, then one
  OffsetFetch (v8, many groups per request, every partition each group committed on) per coordinator.
  Connections are kept between calls and dropped on the first error; a coordinator that is loading or has moved
  (``COORDINATOR_LOAD_IN_PROGRESS``, ``NOT_COORDINATOR``, ``COORDINATOR_NOT_AVAILABLE``) is asked again until the
  timeout, as the Java admin client retries; any other error of a group leaves that group out of the answer.
  Kafka has answered both versions since 3.0 (FindCoordinator v4 since 2.8), loosely's broker too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final

from confluent_kafka import Consumer, TopicPartition

from loosely.clients.wire import (
    ConnectionPool,
    KafkaConnection,
    KafkaSecurity,
    error_code,
    parse_address,
    request_class,
)
from loosely.protocol.errors import ErrorCode, ProtocolError
from loosely.protocol.messages import ApiKey, build, nested

__all__ = ["GroupOffsets", "committed_offsets"]

FIND_COORDINATOR_V: Final = 4  # batched coordinator keys (KIP-699)
OFFSET_FETCH_V: Final = 8  # many groups in one request (KIP-709)
GROUPS_PER_REQUEST_MAX: Final = 100
"""Groups asked in one OffsetFetch at most, so that one answer stays well under ``frame_bytes_max``."""
FRAME_BYTES_MAX: Final = 64 << 20
"""Largest answer read (64 MiB): an OffsetFetch answer costs ~20 bytes per committed partition."""
_RETRY_S: Final = 0.1
_MOVED: Final = frozenset({ErrorCode.coordinator_load_in_progress, ErrorCode.not_coordinator,
                           ErrorCode.coordinator_not_available})


def committed_offsets(
    conf: dict[str, Any], group: str, partitions: Iterable[tuple[str, int]], timeout_s: float = 30.0
) -> dict[tuple[str, int], tuple[int, str]]:
    """``{(topic, partition): (offset, metadata)}`` for the partitions where ``group`` has a committed offset."""
    wanted = [TopicPartition(t, p) for t, p in partitions]
    if not wanted:
        return {}
    c = Consumer({**conf, "group.id": group, "enable.auto.commit": False, "log_level": 0})
    try:
        got = c.committed(wanted, timeout=timeout_s)
    finally:
        c.close()
    return {(tp.topic, tp.partition): (tp.offset, tp.metadata or "") for tp in got if tp.offset >= 0}


class GroupOffsets:
    """Committed offsets of many groups at once, over connections kept between calls. Thread-safe (one call at a
    time). ``client_config`` takes librdkafka's names (``bootstrap.servers``, ``security.protocol``, ``sasl.*``,
    ``ssl.*``); a mechanism :class:`KafkaConnection` cannot speak (GSSAPI, OAUTHBEARER) is a ``ValueError`` here.

    >>> GroupOffsets({"bootstrap.servers": "127.0.0.1:9092", "sasl.mechanism": "PLAIN",
    ...               "security.protocol": "sasl_ssl"}).security.mechanism
    'PLAIN'
    """

    def __init__(self, client_config: dict[str, Any], *, client_id: str = "loosely") -> None:
        self.security = KafkaSecurity.from_client_config({k: str(v) for k, v in client_config.items()})
        self.bootstrap = [parse_address(a) for a in str(client_config.get("bootstrap.servers", "")).split(",") if a]
        if not self.bootstrap:
            raise ValueError("bootstrap.servers is empty")
        self.client_id = client_id
        self._lock = threading.Lock()
        self._pool = ConnectionPool(self.security, frame_bytes_max=FRAME_BYTES_MAX, client_id=client_id)

    def committed(self, groups: Sequence[str], timeout_s: float) -> dict[str, dict[tuple[str, int], int]]:
        """``{group: {(topic, partition): offset}}`` for every group that answered (a group that committed
        nothing maps to ``{}``). Raises ``OSError`` (a broker unreachable), :class:`~loosely.clients.wire.WireError`
        (a refused login) or :class:`~loosely.protocol.errors.ProtocolError` (a garbled answer), and
        ``TimeoutError`` when a coordinator stays unavailable for ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        out: dict[str, dict[tuple[str, int], int]] = {}
        left = list(dict.fromkeys(groups))
        with self._lock:
            try:
                while left:
                    left = self._round(left, out, deadline)
                    if left:
                        if time.monotonic() + _RETRY_S > deadline:
                            raise TimeoutError(f"the coordinators of {len(left)} group(s) (e.g. {left[0]}) did "
                                               f"not answer within {timeout_s:g} s")
                        time.sleep(_RETRY_S)
            except (OSError, ProtocolError, ValueError):
                self._pool.close()  # a connection in an unknown state is not used again
                raise
        return out

    def _round(self, groups: list[str], out: dict[str, dict[tuple[str, int], int]], deadline: float) -> list[str]:
        """Ask every group once; returns the groups to ask again (their coordinator is loading or moved)."""
        again: list[str] = []
        by_coordinator: dict[tuple[str, int], list[str]] = {}
        for key, node in self._coordinators(groups, deadline).items():
            if node is None:
                again.append(key)
            else:
                by_coordinator.setdefault(node, []).append(key)
        for node, keys in by_coordinator.items():
            for i in range(0, len(keys), GROUPS_PER_REQUEST_MAX):
                again.extend(self._fetch(node, keys[i:i + GROUPS_PER_REQUEST_MAX], out, deadline))
        return again

    def _coordinators(self, groups: list[str], deadline: float) -> dict[str, tuple[str, int] | None]:
        """Each group's coordinator; None for one not available right now. Asked of the first bootstrap broker
        that answers."""
        problems = []
        for address in self.bootstrap:
            try:
                c = self._connection(address, deadline)
            except OSError as e:
                problems.append(f"{address[0]}:{address[1]}: {e.strerror or e}")
                continue
            request = build(request_class(ApiKey.FIND_COORDINATOR, FIND_COORDINATOR_V), key_type=0,
                            coordinator_keys=tuple(groups))
            answer = c.call(ApiKey.FIND_COORDINATOR, FIND_COORDINATOR_V, request, _left(deadline))
            found: dict[str, tuple[str, int] | None] = {}
            for co in answer.coordinators:
                code = error_code(co)
                if code == ErrorCode.none:
                    found[str(co.key)] = (str(co.host), int(co.port))
                elif code in _MOVED:
                    found[str(co.key)] = None
                # any other error (not authorized to describe the group): the group is left out of the answer
            return found
        raise OSError(f"no bootstrap broker reachable ({'; '.join(problems)})")

    def _fetch(self, node: tuple[str, int], groups: list[str], out: dict[str, dict[tuple[str, int], int]],
               deadline: float) -> list[str]:
        request_cls = request_class(ApiKey.OFFSET_FETCH, OFFSET_FETCH_V)
        group_cls = nested(request_cls, "OffsetFetchRequestGroup")
        request = build(request_cls, groups=tuple(build(group_cls, group_id=g, topics=None) for g in groups),
                        require_stable=False)
        answer = self._connection(node, deadline).call(ApiKey.OFFSET_FETCH, OFFSET_FETCH_V, request, _left(deadline))
        again = []
        for g in answer.groups:
            code = error_code(g)
            if code in _MOVED:
                again.append(str(g.group_id))
                continue
            if code != ErrorCode.none:
                continue  # not authorized, an unknown group id, ...: left out
            out[str(g.group_id)] = {(str(t.name), int(p.partition_index)): int(p.committed_offset)
                                    for t in g.topics for p in t.partitions
                                    if error_code(p) == ErrorCode.none and p.committed_offset >= 0}
        return again

    def _connection(self, address: tuple[str, int], deadline: float) -> KafkaConnection:
        return self._pool.connection(address, _left(deadline))

    def close(self) -> None:
        with self._lock:
            self._pool.close()


def _left(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())

