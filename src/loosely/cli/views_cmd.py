"""``loosely views ...``: run, rebuild, switch, drop, inspect and serve materialized views.

A view is named by ``module:attribute`` (a :class:`loosely.views.View`, or a function of no arguments returning
one), a sink by URL (see :func:`loosely.views.open_sink`). Failures print ``loosely views: <why>`` and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaException

from loosely.cli._args import add_client_options
from loosely.cli._heap import freeze_startup
from loosely.cli._kafka_errors import kafka_error_text
from loosely.views import (
    Catalog,
    Guarantee,
    PoisonRecord,
    Runner,
    RunnerConfig,
    SinkError,
    VersionDropped,
    View,
    ViewError,
    default_groups,
    open_sink,
)
from loosely.views._follow import Follower
from loosely.views._progress import Progress, render
from loosely.views._rebuild import rebuild
from loosely.views._serve import ViewServer
from loosely.views._status import STATUS_TIMEOUT_S, StatusRow, collect, high_watermarks, render_table

__all__ = ["add_views_command", "load_view"]

log = logging.getLogger("loosely.views")


def load_view(spec: str, version: int | None = None, *, reload: bool = False) -> View[Any, Any]:
    """``package.module:name`` -> the view (calling ``name()`` when it is a factory); ``reload`` imports the
    module again if it was imported (a runner following a switch runs the code deployed for the new version)."""
    mod_name, sep, attr = spec.partition(":")
    if not sep or not attr:
        raise ValueError(f"view spec {spec!r} must look like package.module:name")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: a view module beside the user is found
    try:
        module = importlib.import_module(mod_name)
        if reload:
            module = importlib.reload(module)
    except SyntaxError as e:  # new code deployed with a mistake in it: one line, not a traceback
        raise ViewError(f"{spec}: {e.msg} ({e.filename}, line {e.lineno})") from None
    try:
        obj: Any = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {mod_name!r} ({module.__file__}) has no attribute {attr!r}") from None
    if not isinstance(obj, View) and callable(obj):
        obj = obj()
    if not isinstance(obj, View):
        raise ValueError(f"{spec} is not a loosely.views.View")
    return obj if version is None else obj.with_version(version)


def _runner_config(args: argparse.Namespace, version: int | None = None) -> RunnerConfig:
    """The runner's settings; ``version`` fills ``{version}`` in ``--group`` (a follower fills it per version)."""
    if args.on_poison == "dead-letter" and not args.dead_letter_topic:
        raise ValueError("--on-poison dead-letter needs --dead-letter-topic TOPIC")
    group = args.group if args.group is None or version is None else args.group.replace("{version}", str(version))
    return RunnerConfig(
        group_id=group,
        batch_records_max=args.batch_records,
        on_poison=args.on_poison,
        dead_letter_topic=args.dead_letter_topic,
        session_timeout_ms=args.session_timeout_ms,
        client_config=args.kafka_config,
        consumer={"group.instance.id": args.instance_id} if args.instance_id else {},
    )


def _parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def _catalog(sink: object) -> Catalog:
    if not isinstance(sink, Catalog):
        raise ViewError(f"{type(sink).__name__} keeps no versions to read, switch or drop")
    return sink


def _run(args: argparse.Namespace) -> int:
    """A runner pinned to ``--version`` (or to a ``--group`` without ``{version}``), else a follower of the version
    the sink serves (see :mod:`loosely.views._follow`)."""
    pinned = args.version is not None or (args.group is not None and "{version}" not in args.group)
    view = load_view(args.view, args.version)
    sink = open_sink(args.sink)
    worker: Runner | Follower
    if pinned:
        worker = Runner(view, sink, args.bootstrap, _runner_config(args, view.version))
    else:
        loads = iter(range(1 << 62))  # the first load is the import above; every later one reloads the module
        worker = Follower(lambda: load_view(args.view, reload=next(loads) > 0), sink, args.bootstrap,
                          _runner_config(args))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: worker.stop())
    server = None
    if args.serve:
        server = ViewServer(_catalog(sink), *_parse_listen(args.serve),
                            status=lambda: _status_rows(_catalog(sink), [view.name], args.bootstrap, sink,
                                                        group=args.group, client_config=args.kafka_config))
        server.start()
        print(f"serving {view.name} on http://{_parse_listen(args.serve)[0]}:{server.port}/views", flush=True)
    try:
        stats = worker.run(until_caught_up=args.until_caught_up)
    except VersionDropped as e:
        print(f"loosely views: {e}; stopping (a runner started with --version keeps its version; without "
              "--version it follows the serving one)", file=sys.stderr)
        return 0
    except (PoisonRecord, SinkError) as e:
        print(f"loosely views: {e}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
        if isinstance(worker, Runner):
            worker.close()
        sink.close()
    if args.until_caught_up:
        print(json.dumps({"view": stats.view, "records": stats.records, "batches": stats.batches,
                          "lag": stats.lag_total}))
    return 0


def _now_ms() -> int:
    return int(time.time() * 1000)


def _status_rows(cat: Catalog, names: Iterable[str], bootstrap: str, sink: object, *, group: str | None = None,
                 timeout_s: float = STATUS_TIMEOUT_S, client_config: Mapping[str, str] | None = None
                 ) -> list[StatusRow]:
    """Lag and freshness of every version of ``names``. Versions whose sink keeps no positions (the idempotent
    sinks) are measured by their consumer group's committed offsets: ``group`` (``--group``, ``{version}``
    filled in), else the default groups, the sink's own before the one of runners older than it."""
    infos = [i for n in names for i in cat.versions(n)]
    group_of: dict[tuple[str, int], tuple[str, ...]] = {
        (i.name, i.version): default_groups(i.name, i.version, sink) if group is None
        else (group.replace("{version}", str(i.version)),) for i in infos}
    return collect(infos, bootstrap, _now_ms(), group_of, timeout_s, client_config=client_config)


def _status(args: argparse.Namespace) -> int:
    sink = open_sink(args.sink)
    try:
        cat = _catalog(sink)
        rows = _status_rows(cat, args.names or cat.names(), args.bootstrap, sink, group=args.group,
                            timeout_s=args.timeout, client_config=args.kafka_config)
    finally:
        sink.close()
    if args.json:
        print(json.dumps({"views": [r.as_json() for r in rows]}, indent=2))
    else:
        print(render_table(rows))
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    view = load_view(args.view, args.version)
    sink = open_sink(args.sink)
    tty = sys.stderr.isatty()

    def show(p: Progress) -> None:
        line = render(p)
        print(f"\r{line}" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    try:
        if sink.guarantee is Guarantee.REBUILT:
            raise ViewError(f"{args.sink} keeps its views in the memory of the process that serves them, so a "
                            "rebuild in this process would end with it; deploy the new version as a new "
                            "`loosely views run` (it exports its values once caught up), then stop the old one")
        old = _catalog(sink).serving_version(view.name)
        if old == view.version:
            raise ViewError(f"{view.id} is already serving; rebuild under a new --version")
        # A batch job: an unreachable cluster at the start is an error within --timeout (once running, the runner
        # rides out outages as `views run` does).
        high_watermarks(args.bootstrap, set(view.topics), args.timeout, args.kafka_config)
        stats = rebuild(view, sink, args.bootstrap, config=_runner_config(args, view.version), drop_old=args.drop_old,
                        drop_delay_ms=args.drop_delay_ms, on_progress=show)
    finally:
        sink.close()
    print(file=sys.stderr)
    print(json.dumps({"view": stats.view, "records": stats.records, "previous_version": old,
                      "dropped": bool(args.drop_old and old is not None)}))
    return 0


def _on_catalog(args: argparse.Namespace, action: str) -> int:
    """``switch`` or ``drop`` ``args.name``@``args.version``."""
    sink = open_sink(args.sink)
    try:
        getattr(_catalog(sink), action)(args.name, args.version)
    finally:
        sink.close()
    return 0


def _get(args: argparse.Namespace) -> int:
    sink = open_sink(args.sink)
    try:
        value = _catalog(sink).get(args.name, args.key)
    finally:
        sink.close()
    if value is None:
        print(f"loosely views: no key {args.key!r} in {args.name}", file=sys.stderr)
        return 1
    print(json.dumps(value, default=lambda o: o.hex() if isinstance(o, bytes) else str(o)))
    return 0


def _serve(args: argparse.Namespace) -> int:
    sink = open_sink(args.sink)
    cat = _catalog(sink)
    status = None
    if args.bootstrap:
        def status() -> Any:
            return _status_rows(cat, cat.names(), args.bootstrap, sink, client_config=args.kafka_config)
    host, port = _parse_listen(args.listen)
    server = ViewServer(cat, host, port, status=status).start()
    print(f"serving views on http://{host}:{server.port}/views", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    freeze_startup()
    stop.wait()
    server.stop()
    sink.close()
    return 0


def _guard(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            rc: int = func(args)
            return rc
        except (ViewError, SinkError, ValueError, ImportError, TimeoutError) as e:
            print(f"loosely views: {e}", file=sys.stderr)
            return 1
        except KafkaException as e:  # the cluster did not answer (views status), or refused
            print(f"loosely views: {kafka_error_text(e)}", file=sys.stderr)
            return 1
    return run


def _add_common(p: argparse.ArgumentParser, *, bootstrap: bool = True) -> None:
    p.add_argument("--sink", required=True, metavar="URL", help="where the view lives, e.g. sqlite:///var/views.db")
    if bootstrap:
        p.add_argument("-b", "--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
        add_client_options(p)


def _add_runner_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("view", metavar="MODULE:NAME", help="the view definition")
    p.add_argument("--version", type=int, help="build this version instead of the one in the definition")
    p.add_argument("--group", help="consumer group, {version} replaced by the version (default "
                                   "loosely.view.<name>.v<version>.<sink id>)")
    p.add_argument("--batch-records", type=int, default=RunnerConfig().batch_records_max,
                   help="records per sink transaction at most (default %(default)s); batches grow toward it "
                        "while the sink is busy writing the one before")
    p.add_argument("--on-poison", choices=["stop", "dead-letter"], default="stop")
    p.add_argument("--dead-letter-topic")
    p.add_argument("--session-timeout-ms", type=int, default=10_000,
                   help="how long a dead runner keeps its partitions (default 10000)")
    p.add_argument("--instance-id", metavar="ID",
                   help="static group membership (group.instance.id): a runner restarted with the same ID takes "
                        "its partitions back at once instead of waiting for a rebalance (e.g. the pod's name)")


def add_views_command(sub: Any) -> None:
    v = sub.add_parser("views", help="materialized views: run, rebuild, switch, status, serve")
    vs = v.add_subparsers(dest="views_command", required=True)
    r = vs.add_parser("run", help="keep a view up to date (one member of its consumer group); without --version "
                                  "it follows the version the sink serves across rebuilds")
    _add_runner_args(r)
    _add_common(r)
    r.add_argument("--until-caught-up", action="store_true", help="exit once every partition is read to its end")
    r.add_argument("--serve", metavar="HOST:PORT", help="also serve the read API (port 0: any free port)")
    r.set_defaults(func=_guard(_run))

    b = vs.add_parser("rebuild", help="build a new version from the beginning beside the serving one, then switch")
    _add_runner_args(b)
    _add_common(b)
    b.add_argument("--keep-old", dest="drop_old", action="store_false", help="do not drop the previous version")
    b.add_argument("--drop-delay-ms", type=int, default=5_000, help="grace for readers before the drop")
    b.add_argument("--timeout", type=float, default=STATUS_TIMEOUT_S, metavar="SECONDS",
                   help="give up when the cluster has not answered at the start within this (default %(default)g)")
    b.set_defaults(func=_guard(_rebuild))

    st = vs.add_parser("status", help="consumer lag and freshness of every view version in a sink")
    _add_common(st)
    st.add_argument("names", nargs="*", help="views to show (default: all)")
    st.add_argument("--json", action="store_true")
    st.add_argument("--group", help="the --group the runners were given ({version} replaced), to measure the "
                                    "lag of sinks that keep no positions")
    st.add_argument("--timeout", type=float, default=STATUS_TIMEOUT_S, metavar="SECONDS",
                    help="give up when the cluster has not answered within this (default %(default)g)")
    st.set_defaults(func=_guard(_status))

    sw = vs.add_parser("switch", help="make a version the serving one (atomic)")
    _add_common(sw, bootstrap=False)
    sw.add_argument("name")
    sw.add_argument("version", type=int)
    sw.set_defaults(func=_guard(lambda a: _on_catalog(a, "switch")))

    dr = vs.add_parser("drop", help="delete a version that is not serving (runners pinned to it stop, followers "
                                    "move to the serving one)")
    _add_common(dr, bootstrap=False)
    dr.add_argument("name")
    dr.add_argument("version", type=int)
    dr.set_defaults(func=_guard(lambda a: _on_catalog(a, "drop")))

    g = vs.add_parser("get", help="print one key of the serving version as JSON")
    _add_common(g, bootstrap=False)
    g.add_argument("name")
    g.add_argument("key")
    g.set_defaults(func=_guard(_get))

    sv = vs.add_parser("serve", help="serve the read API over HTTP")
    _add_common(sv, bootstrap=False)
    sv.add_argument("-b", "--bootstrap", help="brokers, to report lag on /status")
    add_client_options(sv)
    sv.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (default 127.0.0.1:8080)")
    sv.set_defaults(func=_guard(_serve))


