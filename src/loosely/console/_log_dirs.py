"""Partition sizes on disk, asked of every broker with DescribeLogDirs (what ``kafka-log-dirs --describe`` does).

confluent-kafka's AdminClient has no DescribeLogDirs, so the console sends it itself: one short-lived connection
per broker (:class:`loosely.clients.wire.KafkaConnection`), with the console's own TLS and SASL settings (PLAIN,
SCRAM-SHA-256/512). Under a mechanism that connection does not speak (GSSAPI, OAUTHBEARER) sizes are shown as
unknown. A broker that refuses (an old version, an ACL, a login) or does not answer in time is skipped; sizes
are a nice-to-have on a page, never a reason for it to fail.

The size of a partition is its largest replica's (replicas of one partition hold the same records, a lagging
follower fewer); a topic's is the sum over its partitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from kio.schema.describe_log_dirs.v1.request import DescribeLogDirsRequest

from loosely.clients.wire import KafkaConnection, KafkaSecurity, WireError
from loosely.protocol.errors import ProtocolError
from loosely.protocol.messages import ApiKey

__all__ = ["partition_sizes"]

_VERSION: Final = 1  # every broker since Kafka 1.0 answers v1; Kafka 4 dropped only v0
RESPONSE_BYTES_MAX: Final = 64 << 20
"""Largest answer read (64 MiB); one entry per partition replica is ~40 bytes, so a million partitions fit."""


def _ask(host: str, port: int, security: KafkaSecurity, timeout_s: float) -> Any:
    with KafkaConnection(host, port, timeout_s, security, frame_bytes_max=RESPONSE_BYTES_MAX,
                         client_id="loosely-console") as c:
        return c.call(ApiKey.DESCRIBE_LOG_DIRS, _VERSION, DescribeLogDirsRequest(topics=None), timeout_s)


def partition_sizes(brokers: Iterable[tuple[int, str, int]], client_config: Mapping[str, str],
                    timeout_s: float) -> dict[tuple[str, int], int] | None:
    """``{(topic, partition): bytes}`` over every broker that answered; None when sizes cannot be asked for."""
    try:
        security = KafkaSecurity.from_client_config({k: str(v) for k, v in client_config.items()})
    except (ValueError, OSError):  # a mechanism of librdkafka's only, a certificate file that cannot be read
        return None
    out: dict[tuple[str, int], int] = {}
    answered = False
    for _, host, port in brokers:
        try:
            response = _ask(host, port, security, timeout_s)
        except (OSError, ProtocolError, ValueError, WireError):
            continue
        answered = True
        for result in response.results:
            if result.error_code != 0:
                continue
            for topic in result.topics:
                for p in topic.partitions:
                    if p.is_future_key:
                        continue
                    key = (str(topic.name), int(p.partition_index))
                    out[key] = max(out.get(key, 0), int(p.partition_size))
    return out if answered else None
