"""Client-side building blocks shared by the command line, the mirror and services built on loosely.

* :mod:`loosely.clients.partitioner`: Apache Kafka's murmur2 partitioner and librdkafka's CRC32 one.
* :mod:`loosely.clients.kcat_format`: kcat's delimiters, ``-f`` format tokens, ``-J`` envelope and listings.
* :mod:`loosely.clients.mm2`: MirrorMaker 2's replication policy and internal record formats.
* :mod:`loosely.clients.mirror`: a MirrorMaker 2 compatible topic mirror between two clusters.
* :mod:`loosely.clients.groups`: consumer groups' committed offsets: one group's through a consumer handle, or
  many groups' at once with OffsetFetch over :mod:`~loosely.clients.wire` (the console's lag sampler).
* :mod:`loosely.clients.fastpath`: the command line's native produce and consume paths (plain sockets and the
  compiled ``_fast`` loops, kcat's output byte for byte), which step aside to librdkafka for anything else.
* :mod:`loosely.clients.batch_consumer`: a consumer group member (classic protocol, range assignor) that hands
  over whole fetched record batches, without confluent-kafka: the views' fast source.
* :mod:`loosely.clients.reachability`: what a long-running client says while its cluster is unreachable.
* :mod:`loosely.clients.client_config`: Kafka client settings for a secured cluster (``--client-config FILE``,
  ``-X NAME=VALUE``), Java's names translated to librdkafka's, secrets redacted; pure, for every layer above.
* :mod:`loosely.clients.wire`: a blocking connection of loosely's own (TLS, SASL PLAIN and SCRAM) for requests
  confluent-kafka cannot send: the schema registry's group membership, the console's DescribeLogDirs and
  OffsetFetch.
* :mod:`loosely.clients.access`: a first DescribeCluster that turns a refused login or an untrusted certificate
  into one line at once.

Everything but the native path, the batch consumer, :mod:`~loosely.clients.wire` and ``GroupOffsets`` talks to
Kafka through ``confluent-kafka`` (librdkafka), so it works against loosely's broker and against any Apache Kafka
cluster alike. Nothing here imports :mod:`loosely.cli`.
"""

__all__ = [
    "access",
    "batch_consumer",
    "client_config",
    "fastpath",
    "groups",
    "kcat_format",
    "mirror",
    "mm2",
    "partitioner",
    "reachability",
    "wire",
]
