"""``loosely demo``: the talk's system on the embedded broker (:mod:`loosely.demo`), everything kept in one directory.

The command line only parses addresses, starts :class:`loosely.demo.Demo`, prints what to open and try (the first
line is JSON with every address, for scripts and tests), and stops everything on SIGINT or SIGTERM. The log, the
views, the documents and the Hollow blobs stay in the data directory, and a restart carries on where it stopped.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loosely.broker.config import BrokerConfig, parse_listen
from loosely.cli._args import add_client_options
from loosely.cli._heap import freeze_startup

if TYPE_CHECKING:
    from loosely.demo import DemoConfig

__all__ = ["add_demo_command"]


def _demo(args: argparse.Namespace) -> int:
    try:
        return _run_demo(args)
    except OSError as e:  # a port is taken, the data directory is not writable, ...
        print(f"loosely demo: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # a bad address, or a non-loopback --listen without --advertise
        print(f"loosely demo: {e}", file=sys.stderr)
        return 2


def _config(args: argparse.Namespace) -> DemoConfig:
    # imported here, not at the top: the parser is built for every command, and the demo imports the broker, the
    # views and RAW Hollow -- seconds of start-up for every `loosely` process on a loaded machine
    from loosely.demo import DemoConfig  # noqa: PLC0415

    host, port = parse_listen(args.listen)
    adv_host, adv_port = parse_listen(args.advertise) if args.advertise else (None, None)
    data = Path(args.data_dir)
    return DemoConfig(
        data_dir=data,
        broker=BrokerConfig(data_dir=str(data / "log"), host=host, port=port, advertised_host=adv_host,
                            advertised_port=adv_port, num_partitions=args.partitions,
                            allow_unauthenticated=args.allow_unauthenticated),
        topic=args.topic, partitions=args.partitions, views=parse_listen(args.http),
        schema_registry=None if args.schema_registry == "off" else parse_listen(args.schema_registry),
        write=parse_listen(args.write), documents=parse_listen(args.documents), metrics=parse_listen(args.metrics),
        hollow=parse_listen(args.hollow), changes_per_second=args.changes_per_second,
        console=None if args.console == "off" else parse_listen(args.console),
        client_config=args.kafka_config)


def _run_demo(args: argparse.Namespace) -> int:
    if args.changes_per_second < 0 or args.changes_per_second > 1000:
        raise ValueError("--changes-per-second is from 0 (off) to 1000")
    config = _config(args)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    from loosely.demo import Demo  # noqa: PLC0415 - see _config

    demo = Demo(config)
    try:
        demo.start()
        print(json.dumps(demo.addresses()), flush=True)
        print(demo.guide(), flush=True)
        freeze_startup()
        failed = None
        while not stop.wait(0.2) and failed is None:
            failed = demo.failure()
        if failed is not None:
            print(f"loosely demo: {failed}", file=sys.stderr)
            return 1
        return 0
    finally:
        demo.stop()


def _control(args: argparse.Namespace) -> int:
    """``loosely demo partition|rebuild``: ask the running demo's control routes, print the answer as one line."""
    host, port = parse_listen(args.write)
    query = {"seconds": args.seconds} if args.demo_action == "partition" else {"side": args.side}
    url = f"http://{host}:{port}/demo/{args.demo_action}?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=30) as r:
            print(r.read().decode().strip())
            return 0
    except urllib.error.HTTPError as e:
        try:
            why = json.loads(e.read())["error"]
        except (ValueError, KeyError, TypeError):
            why = f"HTTP {e.code}"
        print(f"loosely demo {args.demo_action}: {why}", file=sys.stderr)
        return 1
    except OSError as e:  # refused, unreachable, timed out
        print(f"loosely demo {args.demo_action}: no demo answers on {host}:{port} ({getattr(e, 'reason', e)}); "
              "start one with scripts/demo, or give its --write HOST:PORT", file=sys.stderr)
        return 1


def add_demo_command(sub: Any) -> None:
    d = sub.add_parser("demo", help="the talk's system: a write service, read sides built from the log, scenarios")
    d.add_argument("--data-dir", default="./data", help="the log, views, documents and Hollow blobs (default ./data)")
    d.add_argument("--listen", default="127.0.0.1:9092", help="the broker's HOST:PORT (default 127.0.0.1:9092)")
    d.add_argument("--advertise", help="the broker's HOST:PORT for clients (required when --listen is not loopback)")
    d.add_argument("--allow-unauthenticated", action="store_true",
                   help="let a non-loopback --listen serve anyone who reaches it (the demo has no users)")
    d.add_argument("--http", default="127.0.0.1:8080",
                   help="the SQLite views and full-text search, HOST:PORT (default 127.0.0.1:8080)")
    d.add_argument("--schema-registry", default="127.0.0.1:8081", metavar="HOST:PORT",
                   help="serve a schema registry here (default 127.0.0.1:8081; off: none)")
    d.add_argument("--write", default="127.0.0.1:8090", metavar="HOST:PORT",
                   help="the write service and the demo's controls (default 127.0.0.1:8090)")
    d.add_argument("--documents", default="127.0.0.1:8091", metavar="HOST:PORT",
                   help="the documents page and files (default 127.0.0.1:8091)")
    d.add_argument("--metrics", default="127.0.0.1:8092", metavar="HOST:PORT",
                   help="the Prometheus endpoint of the metrics view (default 127.0.0.1:8092)")
    d.add_argument("--hollow", default="127.0.0.1:8093", metavar="HOST:PORT",
                   help="the Hollow read service (default 127.0.0.1:8093)")
    d.add_argument("--console", default="127.0.0.1:8094", metavar="HOST:PORT",
                   help="the web console (default 127.0.0.1:8094; off: none)")
    d.add_argument("--changes-per-second", type=float, default=2.0, metavar="N",
                   help="catalog edits the change stream makes per second (default 2; 0: off)")
    d.add_argument("--topic", default="the-topic", help="the topic of the kcat example's views (default the-topic)")
    d.add_argument("--partitions", type=int, default=1, help="partitions of new topics (default 1)")
    # the settings the views' clients connect with, for a broker whose listener asks for TLS or SASL
    add_client_options(d)
    d.set_defaults(func=_demo)
    # The talk's scenarios, asked of a demo already running (its write service carries the controls).
    actions = d.add_subparsers(dest="demo_action", metavar="{partition,rebuild}")
    p = actions.add_parser("partition", help="stop the running demo's broker for a while: reads go on, writes fail")
    p.add_argument("--seconds", type=float, default=20, help="how long the broker stays away (default 20)")
    r = actions.add_parser("rebuild", help="blue/green: build the next version of a read side's view and switch")
    r.add_argument("--side", choices=["search", "documents"], default="search", help="which read side (search)")
    for a in (p, r):
        a.add_argument("--write", default="127.0.0.1:8090", metavar="HOST:PORT",
                       help="the running demo's write service (default 127.0.0.1:8090)")
        a.set_defaults(func=_control)
