"""``loosely views ...``: run, rebuild, switch, drop, inspect and serve materialized views.

A view is named by ``module:attribute`` (a :class:`loosely.views.View`, or a function of no arguments returning
one), a sink by URL (see :func:`loosely.views.open_sink`). Failures print ``loosely views: <why>`` and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
import threading
import time
from typing import Any

from loosely.views import Catalog, PoisonRecord, Runner, RunnerConfig, SinkError, View, open_sink

__all__ = ["add_views_command", "load_view"]

log = logging.getLogger("loosely.views")


def load_view(spec: str, version: int | None = None) -> View[Any, Any]:
    """``package.module:name`` -> the view (calling ``name()`` when it is a factory)."""
    mod_name, sep, attr = spec.partition(":")
    if not sep or not attr:
        raise ValueError(f"view spec {spec!r} must look like package.module:name")
    obj: Any = getattr(importlib.import_module(mod_name), attr)
    if not isinstance(obj, View) and callable(obj):
        obj = obj()
    if not isinstance(obj, View):
        raise ValueError(f"{spec} is not a loosely.views.View")
    return obj if version is None else obj.with_version(version)


def _runner_config(args: argparse.Namespace) -> RunnerConfig:
    return RunnerConfig(
        group_id=args.group,
        batch_records_max=args.batch_records,
        on_poison=args.on_poison,
        dead_letter_topic=args.dead_letter_topic,
        session_timeout_ms=args.session_timeout_ms,
    )


def _run(args: argparse.Namespace) -> int:
    view = load_view(args.view, args.version)
    sink = open_sink(args.sink)
    runner = Runner(view, sink, args.bootstrap, _runner_config(args))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: runner.stop())
    try:
        stats = runner.run(until_caught_up=args.until_caught_up)
    except (PoisonRecord, SinkError) as e:
        print(f"loosely views: {e}", file=sys.stderr)
        return 1
    finally:
        runner.close()
        sink.close()
    if args.until_caught_up:
        print(json.dumps({"view": stats.view, "records": stats.records, "batches": stats.batches,
                          "lag": stats.lag_total}))
    return 0


def _add_common(p: argparse.ArgumentParser, *, bootstrap: bool = True) -> None:
    p.add_argument("--sink", required=True, metavar="URL", help="where the view lives, e.g. sqlite:///var/views.db")
    if bootstrap:
        p.add_argument("-b", "--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")


def _add_runner_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("view", metavar="MODULE:NAME", help="the view definition")
    p.add_argument("--version", type=int, help="build this version instead of the one in the definition")
    p.add_argument("--group", help="consumer group (default loosely.view.<name>.v<version>)")
    p.add_argument("--batch-records", type=int, default=10_000, help="records per sink transaction (default 10000)")
    p.add_argument("--on-poison", choices=["stop", "dead-letter"], default="stop")
    p.add_argument("--dead-letter-topic")
    p.add_argument("--session-timeout-ms", type=int, default=10_000,
                   help="how long a dead runner keeps its partitions (default 10000)")


def add_views_command(sub: Any) -> None:
    v = sub.add_parser("views", help="materialized views: run, rebuild, switch, status, serve")
    vs = v.add_subparsers(dest="views_command", required=True)
    r = vs.add_parser("run", help="keep a view up to date (one member of its consumer group)")
    _add_runner_args(r)
    _add_common(r)
    r.add_argument("--until-caught-up", action="store_true", help="exit once every partition is read to its end")
    r.set_defaults(func=_run)


_unused = (threading, time, Catalog)
