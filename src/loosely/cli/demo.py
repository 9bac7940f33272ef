"""``loosely demo``: the embedded broker with two materialized views of one topic, served over HTTP.

Writes go to the log, reads come from views: the broker listens on 127.0.0.1:9092 as ``loosely broker`` does, and
two view runners follow the demo topic (``the-topic``, the talk's) into SQLite (``<data dir>/views.db``):

* ``latest``: the last value of every key (as text),
* ``counts``: how many records each key has had,

and the views' read API answers on 127.0.0.1:8080 (``/views``, ``/views/latest/keys/<key>``, ``/status``). Everything
stops on SIGINT or SIGTERM; the log and the views stay in the data directory, and a restart carries on where it
stopped (the runners commit their offsets with the rows).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loosely.broker.config import BrokerConfig, parse_listen
from loosely.broker.server import BrokerThread
from loosely.cli._args import add_client_options
from loosely.views import STRING, Runner, RunnerConfig, SqliteSink, View, count_by_key, latest_by_key
from loosely.views._serve import ViewServer
from loosely.views._status import collect

__all__ = ["add_demo_command"]

log = logging.getLogger(__name__)

@dataclass
class _ViewThread:
    runner: Runner
    thread: threading.Thread | None = None
    error: BaseException | None = None


def _views(topic: str) -> list[View[Any, Any]]:
    return [latest_by_key("latest", [topic], value=STRING), count_by_key("counts", [topic])]


def _ensure_topic(broker: BrokerThread, topic: str, partitions: int) -> None:
    """Create the demo topic in the broker itself, on its loop, before the views subscribe to it."""

    def create() -> None:
        logs = broker.broker.ctx.logs
        if logs.get(topic) is None:
            logs.create_topic(topic, partitions)

    broker.call(create)


def _start_view(view: View[Any, Any], db: Path, bootstrap: str, client_config: dict[str, str]) -> _ViewThread:
    sink = SqliteSink(str(db))
    runner = Runner(view, sink, bootstrap, RunnerConfig(client_config=client_config))
    holder = _ViewThread(runner)

    def run() -> None:
        try:
            runner.run()
        except BaseException as e:  # reported by the main thread, which then stops the demo
            holder.error = e
        finally:
            runner.close()
            sink.close()

    holder.thread = threading.Thread(target=run, name=f"view-{view.name}", daemon=True)
    holder.thread.start()
    return holder


def _demo(args: argparse.Namespace) -> int:
    try:
        return _run_demo(args)
    except OSError as e:  # a port is taken, the data directory is not writable, ...
        print(f"loosely demo: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # a bad address, or a non-loopback --listen without --advertise
        print(f"loosely demo: {e}", file=sys.stderr)
        return 2


def _run_demo(args: argparse.Namespace) -> int:
    host, port = parse_listen(args.listen)
    adv_host, adv_port = parse_listen(args.advertise) if args.advertise else (None, None)
    http_host, http_port = parse_listen(args.http)
    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    db = data / "views.db"
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    broker = BrokerThread(BrokerConfig(data_dir=str(data / "log"), host=host, port=port, advertised_host=adv_host,
                                       advertised_port=adv_port, num_partitions=args.partitions,
                                       allow_unauthenticated=args.allow_unauthenticated)).start()
    bootstrap = broker.bootstrap_servers
    views: list[_ViewThread] = []
    server: ViewServer | None = None
    registry: Any = None
    catalog = SqliteSink(str(db))
    try:
        _ensure_topic(broker, args.topic, args.partitions)
        if args.schema_registry != "off":  # what the team's Docker stack had beside Kafka
            from loosely.registry import SchemaRegistry  # noqa: PLC0415 - avro and protobuf load only when asked

            reg_host, reg_port = parse_listen(args.schema_registry)
            try:
                registry = SchemaRegistry(bootstrap, host=reg_host, port=reg_port,
                                          client_config=args.kafka_config).start()
            except Exception as e:  # the broker cannot be read back, the port is taken: one line, exit 1
                raise OSError(f"schema registry on {args.schema_registry}: {e}") from None
        views = [_start_view(v, db, bootstrap, args.kafka_config) for v in _views(args.topic)]
        server = ViewServer(catalog, http_host, http_port, status=lambda: collect(
            [i for n in catalog.names() for i in catalog.versions(n)], bootstrap, int(time.time() * 1000),
            client_config=args.kafka_config)).start()
        _print_guide(bootstrap, f"http://{http_host}:{server.port}", args.topic, data, db,
                     registry=registry.url if registry is not None else None)
        failed = None
        while not stop.wait(0.2) and failed is None:
            failed = next((v for v in views if v.error is not None), None)
        if failed is not None:
            print(f"loosely demo: view {failed.runner.view.name} stopped: {failed.error}", file=sys.stderr)
            return 1
        return 0
    finally:
        for v in views:
            v.runner.stop()
        for v in views:
            if v.thread is not None:
                v.thread.join()
        if server is not None:
            server.stop()
        if registry is not None:
            registry.stop()
        catalog.close()
        broker.stop()


def _print_guide(bootstrap: str, url: str, topic: str, data: Path, db: Path, *, registry: str | None) -> None:
    # The first line is machine-readable (tests and scripts read the addresses from it).
    print(json.dumps({"bootstrap_servers": bootstrap, "http": url, "topic": topic, "schema_registry": registry}),
          flush=True)
    where = f"\n  schemas {registry}  (a Confluent-compatible schema registry, stored in _schemas)" if registry else ""
    print(f"""loosely demo
  broker  {bootstrap}  (log in {data / "log"})
  views   {url}/views  (SQLite {db}: "latest" and "counts" of topic {topic}){where}

Write to the log, read from the views:
  seq 100000 | awk '{{printf "%s,{{\\"id\\":\\"%s\\", value: \\"bar\\"}}\\n", $1, $1}}' | \\
      kcat -P -b {bootstrap} -t {topic} -K ','
  kcat -C -b {bootstrap} -t {topic} -o beginning -e | tail -1
  curl {url}/views/latest/keys/42
  curl {url}/views/counts/keys/42
  curl {url}/status

Stop with Ctrl-C; the data stays in {data}.""", flush=True)


def add_demo_command(sub: Any) -> None:
    d = sub.add_parser("demo", help="the embedded broker plus two materialized views of a topic, served over HTTP")
    d.add_argument("--data-dir", default="./data", help="the log and the views' database (default ./data)")
    d.add_argument("--listen", default="127.0.0.1:9092", help="the broker's HOST:PORT (default 127.0.0.1:9092)")
    d.add_argument("--advertise", help="the broker's HOST:PORT for clients (required when --listen is not loopback)")
    d.add_argument("--allow-unauthenticated", action="store_true",
                   help="let a non-loopback --listen serve anyone who reaches it (the demo has no users)")
    d.add_argument("--http", default="127.0.0.1:8080", help="the views' HTTP HOST:PORT (default 127.0.0.1:8080)")
    d.add_argument("--schema-registry", default="127.0.0.1:8081", metavar="HOST:PORT",
                   help="serve a schema registry here (default 127.0.0.1:8081; off: none)")
    d.add_argument("--topic", default="the-topic", help="the topic the views follow (default the-topic)")
    d.add_argument("--partitions", type=int, default=1, help="partitions of new topics (default 1)")
    # the settings the views' clients connect with, for a broker whose listener asks for TLS or SASL
    add_client_options(d)
    d.set_defaults(func=_demo)
