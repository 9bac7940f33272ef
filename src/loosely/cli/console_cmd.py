"""``loosely console``: the web console against any Kafka-compatible cluster; and its part of ``loosely broker``.

Examples::

    loosely console -b 127.0.0.1:9092                      # http://127.0.0.1:9000
    loosely console -b kafka:9092 --listen 127.0.0.1:9001 --read-only --hollow ./hollow-store
    loosely console -b 127.0.0.1:9092 --views sqlite:///views.db
    loosely console -b 127.0.0.1:9092 --schema-registry http://127.0.0.1:8081
    loosely broker --data-dir ./data --console-listen 127.0.0.1:9000
    loosely broker --data-dir ./data --console-listen 127.0.0.1:9000 --schema-registry-listen 127.0.0.1:8081

With a schema registry (``--schema-registry``; beside the broker, its own ``--schema-registry-listen`` one),
keys and values in Confluent's framing are shown decoded as JSON, with their schema id and subject.

Loopback by default: the console can create and delete topics and move a group's offsets (unless --read-only),
so serving it on another address is a choice the user writes out, best with --users-file (the broker's SCRAM
users, as HTTP Basic auth).
SIGINT/SIGTERM stop it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from loosely.cli._args import add_client_options, password_check
from loosely.cli._heap import freeze_startup

__all__ = ["add_broker_options", "add_console_command", "start_beside_broker"]

LISTEN_DEFAULT = "127.0.0.1:9000"


def _options(p: argparse.ArgumentParser, prefix: str) -> None:
    p.add_argument(f"--{prefix}read-only", action="store_true",
                   help="show everything, change nothing (no topic creation or deletion, produce or offset reset)")
    p.add_argument(f"--{prefix}hollow", metavar="DIR-or-S3-URL", help="a Hollow blob store for the Hollow pages")
    p.add_argument(f"--{prefix}views", action="append", default=[], metavar="SINK-URL",
                   help="a views sink (e.g. sqlite:///views.db) for the views page: versions, lag, freshness, "
                        "blue/green switch (repeatable)")
    p.add_argument(f"--{prefix}users-file", metavar="FILE",
                   help="require HTTP Basic auth from the SCRAM users in FILE (a broker's "
                        "<data-dir>/scram-credentials.json; re-read when it changes)")
    p.add_argument(f"--{prefix}sample-interval-ms", type=int, default=5_000, metavar="MS",
                   help="how often the charts (messages/s, group lag) sample the cluster (default 5000)")


def add_broker_options(p: argparse.ArgumentParser) -> None:
    """``loosely broker --console-listen HOST:PORT`` (off by default) and the console's settings, prefixed."""
    p.add_argument("--console-listen", metavar="HOST:PORT",
                   help="serve the web console here, a client of this broker (e.g. 127.0.0.1:9000; off by default)")
    _options(p, "console-")


def _start(bootstrap: str, listen: str, *, client_config: dict[str, str], read_only: bool, hollow: str | None,
           views: list[str], users_file: str | None, sample_interval_ms: int, key_lookup: Any = None,
           schema_registry: str | None = None, latency_families: Any = None, broker_metrics: str | None = None) -> Any:
    from loosely.broker.config import parse_listen  # noqa: PLC0415 - keeps `loosely -h` free of these imports
    from loosely.console import ConsoleServer, create_app  # noqa: PLC0415
    from loosely.console._sampler import LatencySource, latency_totals, scraped_latencies  # noqa: PLC0415

    host, port = parse_listen(listen)
    if sample_interval_ms < 100:
        raise ValueError(f"--sample-interval-ms must be at least 100, got {sample_interval_ms}")
    authenticate = password_check(users_file) if users_file is not None else None
    latencies: LatencySource | None = None
    if latency_families is not None:  # beside the broker: its own histogram

        def latencies() -> dict[str, tuple[float, float]]:
            return latency_totals(latency_families())

    elif broker_metrics is not None:
        if not broker_metrics.startswith(("http://", "https://")):
            raise ValueError(f"--broker-metrics {broker_metrics!r}: expected a URL such as "
                             "http://127.0.0.1:9308/metrics")
        latencies = scraped_latencies(broker_metrics)
    app = create_app(bootstrap, client_config=client_config, read_only=read_only, hollow=hollow, views=views,
                     key_lookup=key_lookup, authenticate=authenticate, sample_interval_ms=sample_interval_ms,
                     schema_registry=schema_registry, request_latencies=latencies)
    return ConsoleServer(app, host, port).start()


def start_beside_broker(args: argparse.Namespace, bootstrap: str, key_lookup: Any = None,
                        schema_registry: str | None = None, latency_families: Any = None) -> Any:
    """Start the console ``loosely broker --console-listen`` asked for (blocking briefly: call it in a thread);
    ``schema_registry``: the URL of the registry the broker serves too, if any; ``latency_families``: the broker's
    request-duration histogram (``BrokerMetrics.request_latency_families``)."""
    try:
        server = _start(bootstrap, args.console_listen, client_config=args.services_kafka_config,
                        read_only=args.console_read_only,
                        hollow=args.console_hollow, views=args.console_views, users_file=args.console_users_file,
                        sample_interval_ms=args.console_sample_interval_ms,
                        key_lookup=key_lookup, schema_registry=schema_registry,
                        latency_families=latency_families)
    except (OSError, ValueError) as e:
        raise OSError(f"console: {e}") from None
    print(f"console on {server.url}", flush=True)
    return server


def _console(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before the URL is printed: a client may signal at once
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = _start(args.bootstrap, args.listen, client_config=args.kafka_config, read_only=args.read_only,
                        hollow=args.hollow, views=args.views, users_file=args.users_file,
                        sample_interval_ms=args.sample_interval_ms, schema_registry=args.schema_registry,
                        broker_metrics=args.broker_metrics)
    except (OSError, ValueError) as e:  # port taken, a bad address: one line
        print(f"loosely console: {e}", file=sys.stderr)
        return 1
    mode = " (read-only)" if args.read_only else ""
    print(f"console on {server.url}{mode} for {args.bootstrap}", flush=True)
    freeze_startup()
    stop.wait()
    server.stop()
    return 0


def add_console_command(sub: Any) -> None:
    p = sub.add_parser("console", help="web console for a Kafka cluster: topics, messages, groups, lag, Hollow")
    p.add_argument("-b", "--bootstrap", required=True, metavar="HOST:PORT,...", help="bootstrap brokers")
    p.add_argument("--listen", default=LISTEN_DEFAULT, metavar="HOST:PORT",
                   help=f"where to serve the console (default {LISTEN_DEFAULT}, loopback)")
    p.add_argument("--schema-registry", metavar="URL",
                   help="a schema registry (http(s)://[user:password@]host:port): keys and values in Confluent's "
                        "framing are shown decoded (Avro, JSON Schema, Protobuf) with their schema id and subject")
    p.add_argument("--broker-metrics", metavar="URL",
                   help="a loosely broker's Prometheus endpoint (its --metrics-listen, e.g. "
                        "http://127.0.0.1:9308/metrics): the overview charts its request latencies")
    _options(p, "")
    add_client_options(p)
    p.set_defaults(func=_console)
