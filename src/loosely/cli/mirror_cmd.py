"""``loosely mirror``: MirrorMaker 2 compatible mirroring from one cluster to another (see loosely.clients.mirror).

Example::

    loosely mirror --source-alias east --source 127.0.0.1:9092 --target-alias west --target 127.0.0.1:9093 \\
        --topics 'orders|payments' --checkpoint-interval-s 10 --sync-group-offsets \\
        --source-client-config east-client.properties --target-config security.protocol=SASL_SSL ...

Each side takes its own Kafka client settings: ``--source-client-config FILE`` / ``--target-client-config FILE``
(Java client properties, see loosely.clients.client_config) and ``--source-config`` / ``--target-config``
``NAME=VALUE`` items over them.

SIGINT/SIGTERM stop it after the batch in flight; a crash (SIGKILL) loses nothing either: the next run resumes
from the progress kept on the target cluster.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from typing import Any

from confluent_kafka import KafkaException

from loosely.cli._args import add_client_options
from loosely.cli._heap import freeze_startup
from loosely.clients.fastpath import WireError
from loosely.clients.mirror import Mirror, MirrorConfig
from loosely.clients.mm2 import DefaultReplicationPolicy, IdentityReplicationPolicy, ReplicationPolicy, TopicFilter

__all__ = ["add_mirror_command"]


def _mirror(args: argparse.Namespace) -> int:
    policy: ReplicationPolicy = (
        IdentityReplicationPolicy() if args.identity else DefaultReplicationPolicy(args.separator)
    )
    source: dict[str, Any] = {"bootstrap.servers": args.source, **args.source_kafka_config}
    target: dict[str, Any] = {"bootstrap.servers": args.target, **args.target_kafka_config}
    config = MirrorConfig(
        source_alias=args.source_alias,
        source=source,
        target_alias=args.target_alias,
        target=target,
        topics=TopicFilter(args.topics, args.topics_exclude),
        groups=args.groups,
        policy=policy,
        exactly_once=args.exactly_once,
        offset_lag_max=args.offset_lag_max,
        heartbeat_interval_s=args.heartbeat_interval_s,
        checkpoint_interval_s=args.checkpoint_interval_s,
        sync_group_offsets=args.sync_group_offsets,
        refresh_topics_interval_s=args.refresh_topics_interval_s,
        copy=args.copy,
    )
    logging.getLogger("loosely.mirror").setLevel(logging.INFO if args.verbose else logging.WARNING)
    mirror = Mirror(config)

    def stop(signum: int, frame: object) -> None:
        mirror.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        mirror.start()
        # what start-up loaded lives as long as the process: keep the collector from walking it again and again
        # while every batch allocates tens of thousands of message objects
        freeze_startup()
        # and collect young objects every 100,000 allocations, not 700: a batch's 20,000 message objects live until
        # it is committed, so the default walks each of them twice or more (young, then middle generation) for
        # nothing, since they hold no cycles and reference counting frees them. Consuming a million records took
        # 1.38-1.60 s of the main thread's CPU with this, 1.75-1.92 s without (2026-12-07, loaded machine).
        gc.set_threshold(100_000, 20, 10)
        stats = mirror.statistics()
        mode = "exactly-once (transactions)" if stats.transactional else "exactly-once (reconciliation)"
        if stats.batches_whole:
            mode += ", record batches copied whole"
        print(f"mirroring {args.source_alias} -> {args.target_alias}: {stats.topics} topics, "
              f"{stats.partitions} partitions, {mode}", file=sys.stderr, flush=True)
        mirror.run()
    except KafkaException as e:
        print(f"loosely mirror: {e.args[0].str() if e.args else e}", file=sys.stderr)
        return 1
    except (TimeoutError, OSError, WireError) as e:
        print(f"loosely mirror: {e}", file=sys.stderr)
        return 1
    s = mirror.statistics()
    print(f"mirrored {s.records_total} records in {s.batches_total} batches", file=sys.stderr)
    return 0


def add_mirror_command(sub: Any) -> None:
    p = sub.add_parser("mirror", help="mirror topics between clusters, MirrorMaker 2 compatible")
    p.add_argument("--source", required=True, metavar="HOST:PORT,...", help="source cluster bootstrap servers")
    p.add_argument("--source-alias", required=True, help="source cluster alias (prefix of remote topics)")
    p.add_argument("--target", required=True, metavar="HOST:PORT,...", help="target cluster bootstrap servers")
    p.add_argument("--target-alias", required=True, help="target cluster alias")
    p.add_argument("--topics", default=".*", help="comma-separated regexes of topics to mirror (default .*)")
    p.add_argument("--topics-exclude", default=TopicFilter().exclude, help="regexes never mirrored")
    p.add_argument("--groups", default=".*", help="regexes of consumer groups to checkpoint (default .*)")
    p.add_argument("--identity", action="store_true", help="keep topic names (IdentityReplicationPolicy)")
    p.add_argument("--separator", default=".", help="replication.policy.separator (default .)")
    p.add_argument("--exactly-once", choices=["auto", "on", "off"], default="auto",
                   help="transactions on the target: auto (when supported), on (required), off")
    p.add_argument("--offset-lag-max", type=int, default=100, help="offset.lag.max (default 100)")
    p.add_argument("--heartbeat-interval-s", type=float, default=1.0, help="emit.heartbeats.interval.seconds")
    p.add_argument("--checkpoint-interval-s", type=float, default=60.0, help="emit.checkpoints.interval.seconds")
    p.add_argument("--sync-group-offsets", action="store_true", help="sync.group.offsets.enabled")
    p.add_argument("--refresh-topics-interval-s", type=float, default=600.0,
                   help="refresh.topics.interval.seconds (new topics and partitions)")
    p.add_argument("--copy", choices=["batches", "records"], default="batches",
                   help="batches (default): copy the source's record batches whole when transactional over plain "
                        "connections; records: one record at a time through librdkafka")
    add_client_options(p, side="source_")
    add_client_options(p, side="target_")
    p.set_defaults(func=_mirror)
