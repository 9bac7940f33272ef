"""The ``loosely`` command line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from typing import Any

__all__ = ["main"]


def _broker_command(args: argparse.Namespace) -> int:
    # imported here: the broker pulls in asyncio (about 60 ms) and the protocol codec, which client subcommands
    # (`loosely produce` runs in loops, as kcat does) do not need at start-up
    import asyncio  # noqa: PLC0415

    from loosely.broker.config import BrokerConfig, parse_listen, split_kafka_settings  # noqa: PLC0415
    from loosely.broker.server import Broker, _new_event_loop  # noqa: PLC0415
    from loosely.cli._heap import freeze_startup  # noqa: PLC0415

    try:
        host, port = parse_listen(args.listen or "127.0.0.1:9092")
        adv_host, adv_port = parse_listen(args.advertise) if args.advertise else (None, None)
    except ValueError as e:
        print(f"loosely broker: {e}", file=sys.stderr)
        return 2
    overrides: dict[str, str] = {}
    if args.config_file is not None:
        from loosely.protocol.properties import PropertiesError, parse_properties  # noqa: PLC0415

        try:
            with open(args.config_file, encoding="utf-8") as f:
                overrides.update(parse_properties(f.read()))
        except (OSError, UnicodeDecodeError, PropertiesError) as e:
            print(f"loosely broker: --config-file {args.config_file}: {e}", file=sys.stderr)
            return 2
    for item in args.config or []:  # the command line wins over the file
        name, sep, value = item.partition("=")
        if not sep:
            print(f"loosely broker: --config expects NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        overrides[name] = value
    try:
        settings, topic_defaults, unknown = split_kafka_settings(overrides)
    except ValueError as e:
        print(f"loosely broker: --config {e}", file=sys.stderr)
        return 2
    from loosely.broker.config import IGNORED_SETTINGS  # noqa: PLC0415

    for name in sorted(IGNORED_SETTINGS & overrides.keys()):
        print(f"loosely broker: {name} has no use on one node (no inter-broker connections); ignored", file=sys.stderr)
    for name in unknown:
        print(f"loosely broker: ignoring unknown setting {name}", file=sys.stderr)
    if "listeners" in settings and (args.listen or args.advertise):
        print(
            "loosely broker: give either --listen/--advertise (one PLAINTEXT listener) or listeners=..., not both",
            file=sys.stderr,
        )
        return 2
    if args.allow_unauthenticated:
        settings["allow_unauthenticated"] = True
    from loosely.security.scram import parse_scram_spec  # noqa: PLC0415

    try:
        scram = [parse_scram_spec(spec) for spec in args.add_scram or []]
    except ValueError as e:
        print(f"loosely broker: --add-scram {e}", file=sys.stderr)
        return 2
    options: dict[str, object] = {
        "node_id": args.node_id,
        "auto_create_topics": not args.no_auto_create_topics,
        "num_partitions": args.num_partitions,
        **settings,  # --config wins over the flag defaults
    }
    config = BrokerConfig(
        data_dir=args.data_dir,
        host=host,
        port=port,
        advertised_host=adv_host,
        advertised_port=adv_port,
        metrics_listen=args.metrics_listen,
        influx_url=args.influx_url,
        influx_db=args.influx_db,
        influx_interval_ms=args.influx_interval_ms,
        log_defaults=topic_defaults,
        initial_scram_credentials=tuple((user, m.name, cred) for user, m, cred in scram),
        **options,  # type: ignore[arg-type]
    )
    _raise_open_files_limit()
    try:
        broker = Broker(config)
    except ValueError as e:  # a limit out of range, an unsafe listen/advertise pair: one line, no traceback
        print(f"loosely broker: {e}", file=sys.stderr)
        return 2
    loop = _new_event_loop()
    asyncio.set_event_loop(loop)

    async def run() -> None:
        await broker.start()
        where = ", ".join(
            f"{b.bound_host}:{b.bound_port}" if b.name == "PLAINTEXT" and len(broker.listeners) == 1
            else f"{b.name}://{b.bound_host}:{b.bound_port}"
            for b in broker.listeners
        )
        print(f"loosely broker listening on {where} (data in {config.data_dir})", flush=True)
        if broker.metrics is not None and broker.metrics.port is not None:
            print(f"metrics on http://{parse_listen(args.metrics_listen)[0]}:{broker.metrics.port}/metrics", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            registry = await _start_registry(args, broker)
        except OSError:
            await broker.stop()  # the registry was asked for and cannot run: the broker stops cleanly, exit 1
            raise
        try:
            console = await _start_console(args, broker, registry.url if registry is not None else None)
        except OSError:
            if registry is not None:
                await asyncio.to_thread(registry.stop)
            await broker.stop()
            raise
        freeze_startup()
        await stop.wait()
        if console is not None:
            await asyncio.to_thread(console.stop)
        if registry is not None:
            await asyncio.to_thread(registry.stop)
        await broker.stop()

    try:
        loop.run_until_complete(run())
    except (OSError, ValueError) as e:  # the port is taken, the data directory is not writable, a damaged acls.json
        print(f"loosely broker: {e}", file=sys.stderr)
        return 1
    finally:
        loop.close()
    return 0


def _own_bootstrap(broker: Any, client_config: dict[str, str], flag: str) -> str:
    """The bootstrap address of the broker's first listener that speaks the security protocol of the services'
    client settings (``--services-client-config`` / ``--services-config``; PLAINTEXT without them), for a service
    the broker runs as its own client."""
    protocol = client_config.get("security.protocol", "plaintext").upper()
    matching = [b.name for b in broker.listeners if b.security_protocol == protocol]
    if not matching:
        have = ", ".join(sorted({b.security_protocol for b in broker.listeners}))
        raise OSError(f"{flag} needs a {protocol} listener to reach this broker (it has {have}): give the "
                      "services' client settings, e.g. --services-config security.protocol=SASL_SSL and its "
                      "sasl.* and ssl.* settings, or --services-client-config FILE")
    return str(broker.bootstrap_servers_for(matching[0]))


def _check_services_access(args: argparse.Namespace, bootstrap: str, flag: str) -> None:
    """Make sure this broker takes the services' own credentials before a service starts on them: a wrong password
    or an untrusted certificate is one line naming the flag, not a registry that times out on "Broker transport
    failure". Checked once, for the first service asked for; nothing to check on a plaintext listener."""
    from loosely.clients.client_config import is_secured  # noqa: PLC0415

    config = args.services_kafka_config
    if getattr(args, "services_access_checked", False) or not is_secured(config):
        return
    from loosely.clients.access import AccessDenied, check_access  # noqa: PLC0415 - imports confluent-kafka

    try:  # anything short of a refusal (an ACL, a slow answer) the service meets and reports itself
        check_access({**config, "bootstrap.servers": bootstrap}, 10)
    except AccessDenied as e:
        raise OSError(f"{flag}: this broker refused the services' client settings: {e}") from None
    args.services_access_checked = True


async def _start_registry(args: argparse.Namespace, broker: Any) -> Any:
    """The schema registry ``--schema-registry-listen`` asks for, a client of this broker (None when not asked)."""
    if not args.schema_registry_listen:
        return None
    import asyncio  # noqa: PLC0415 - see _broker_command

    from loosely.cli import registry_cmd  # noqa: PLC0415 - the registry's imports only when it is asked for

    bootstrap = _own_bootstrap(broker, args.services_kafka_config, "--schema-registry-listen")
    await asyncio.to_thread(_check_services_access, args, bootstrap, "--schema-registry-listen")
    # in a thread: the registry reads _schemas through this very broker, whose loop must keep running meanwhile
    return await asyncio.to_thread(registry_cmd.start_beside_broker, args, bootstrap)


async def _start_console(args: argparse.Namespace, broker: Any, registry_url: str | None) -> Any:
    """The web console ``--console-listen`` asks for, a client of this broker (None when not asked). It serves on
    a thread of its own: the broker's loop carries none of its pages."""
    if not args.console_listen:
        return None
    import asyncio  # noqa: PLC0415 - see _broker_command

    from loosely.cli import console_cmd  # noqa: PLC0415 - the console's imports only when it is asked for

    bootstrap = _own_bootstrap(broker, args.services_kafka_config, "--console-listen")
    await asyncio.to_thread(_check_services_access, args, bootstrap, "--console-listen")
    metrics = await broker.ensure_metrics()  # request latencies, read from the console's sampling thread
    # key searches are answered from this broker's key index (called from the console's threads, never this loop)
    # framed values are shown decoded with the registry this broker serves, when it serves one
    return await asyncio.to_thread(console_cmd.start_beside_broker, args, bootstrap, broker.key_lookup, registry_url,
                                   metrics.request_latency_families)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("loosely")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one, as the JVM does for Kafka (-XX:+MaxFDLimit).

    Connections and segments share the process's file descriptors; a soft limit of 1024 (a common default) would
    run out long before max.connections (10,000) is reached.
    """
    import resource  # noqa: PLC0415 - Unix only, and only the broker command needs it

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):  # not allowed here: keep the soft limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked for: importlib.metadata costs every other command ~50 ms."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help=str(kwargs.get("help", "")))

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"loosely {_version()}")
        parser.exit()


def _top_parser() -> tuple[argparse.ArgumentParser, Any]:
    p = argparse.ArgumentParser(prog="loosely", description="Decoupled microservices: log, views, Hollow.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    p.add_argument("--version", action=_VersionAction, help="print loosely's version and exit")
    return p, p.add_subparsers(dest="command", required=True)


def _mirror_parser() -> argparse.ArgumentParser:
    """The parser of ``loosely mirror`` alone: building every subcommand's parser imports the admin commands, the
    views, Hollow and the demo (about a second of CPU), which a mirror timed from its start would pay for nothing."""
    from loosely.cli import mirror_cmd  # noqa: PLC0415

    p, sub = _top_parser()
    mirror_cmd.add_mirror_command(sub)
    return p


def build_parser() -> argparse.ArgumentParser:
    # imported here, not at the top: `loosely produce`/`consume` start without confluent-kafka's import cost
    from loosely.cli import admin, mirror_cmd, top  # noqa: PLC0415

    p, sub = _top_parser()
    for name, mode in KCAT_COMMANDS.items():
        what = {None: "kcat's full command line", "P": "kcat -P", "C": "kcat -C (or -G GROUP topics...)",
                "L": "kcat -L", "Q": "kcat -Q"}[mode]
        sub.add_parser(name, help=f"{what}: same flags, output and exit codes (see `loosely {name} -h`)")
    b = sub.add_parser("broker", help="run the Kafka-compatible broker")
    b.add_argument("--data-dir", required=True, help="directory holding the log (created if missing)")
    b.add_argument(
        "--listen",
        help="HOST:PORT of the one PLAINTEXT listener (default 127.0.0.1:9092); --config listeners=... for several",
    )
    b.add_argument(
        "--advertise",
        help="HOST:PORT clients should connect to (default: the listen address; required when that is not loopback)",
    )
    b.add_argument(
        "--config-file",
        metavar="FILE",
        help="Kafka broker settings in Java properties syntax (server.properties); --config wins over it",
    )
    b.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="let a listener that is not on loopback run without SASL or required client certificates",
    )
    b.add_argument("--node-id", type=int, default=1)
    b.add_argument("--num-partitions", type=int, default=1, help="partitions of auto-created topics")
    b.add_argument("--no-auto-create-topics", action="store_true", help="refuse to create topics on Metadata")
    b.add_argument(
        "--config",
        action="append",
        metavar="NAME=VALUE",
        help="broker-level Kafka setting, e.g. log.retention.ms=3600000 (repeatable)",
    )
    b.add_argument(
        "--add-scram",
        action="append",
        metavar="SPEC",
        help="a SCRAM user as kafka-storage format takes it, e.g. 'SCRAM-SHA-256=[name=admin,password=admin-secret]',"
        " stored (salted) at start unless the user already has that mechanism (repeatable)",
    )
    b.add_argument("--metrics-listen", metavar="HOST:PORT", help="serve Prometheus metrics here (e.g. 127.0.0.1:9308)")
    b.add_argument("--influx-url", metavar="URL", help="push InfluxDB line protocol to URL (e.g. http://127.0.0.1:8086)")
    b.add_argument("--influx-db", default="loosely", help="InfluxDB database for --influx-url (default loosely)")
    b.add_argument("--influx-interval-ms", type=int, default=10_000, help="push interval (default 10000)")
    from loosely.cli import registry_cmd  # noqa: PLC0415 - argparse only; the registry loads when it starts

    registry_cmd.add_broker_options(b)
    from loosely.cli import console_cmd  # noqa: PLC0415 - argparse only; the console loads when it starts

    console_cmd.add_broker_options(b)
    from loosely.cli._args import add_client_options  # noqa: PLC0415 - argparse only

    add_client_options(b, side="services_")
    b.set_defaults(func=_broker_command)
    top.add_top_command(sub)
    from loosely.cli import log_cmd  # noqa: PLC0415 - storage tools, only for the subcommands that use them

    log_cmd.add_log_command_help(sub)
    mirror_cmd.add_mirror_command(sub)
    admin.add_topic_commands(sub)
    admin.add_group_commands(sub)
    from loosely.cli import acls_cmd  # noqa: PLC0415 - like the other admin commands, loaded with the parser

    acls_cmd.add_acls_command(sub)
    from loosely.cli import views_cmd  # noqa: PLC0415 - keeps the views' imports out of other subcommands

    views_cmd.add_views_command(sub)
    from loosely.cli import hollow_cmd  # noqa: PLC0415 - keeps Hollow's imports out of other subcommands

    hollow_cmd.add_hollow_command(sub)
    from loosely.cli import users_cmd  # noqa: PLC0415

    users_cmd.add_users_command(sub)
    from loosely.cli import demo  # noqa: PLC0415 - the demo imports the broker and the views

    demo.add_demo_command(sub)
    from loosely.cli import security_cmd  # noqa: PLC0415

    security_cmd.add_security_command(sub)
    registry_cmd.add_registry_command(sub)
    console_cmd.add_console_command(sub)
    return p


# Subcommands that take kcat's own command line (getopt, not argparse), and the kcat mode each implies.
KCAT_COMMANDS: dict[str, str | None] = {"kcat": None, "produce": "P", "consume": "C", "metadata": "L", "query": "Q"}


def _innermost(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser of the deepest subcommand named in ``argv``."""
    for action in parser._actions:  # argparse keeps its subparsers nowhere public
        if isinstance(action, argparse._SubParsersAction):
            for i, word in enumerate(argv):
                if word in action.choices:
                    return _innermost(action.choices[word], argv[i + 1 :])
    return parser


def main(argv: list[str] | None = None) -> int:
    # The Kafka message classes (kio) register strategies with hypothesis whenever it can be imported, which costs
    # a command 0.25-0.6 s of start-up wherever it is installed (a development virtualenv); no command needs them.
    # A process that has imported hypothesis already (a test run calling main()) keeps it, and one that calls
    # main() and goes on (a test run that has not imported it yet) can import it afterwards.
    hidden = "hypothesis" not in sys.modules
    if hidden:
        sys.modules["hypothesis"] = None  # type: ignore[assignment]  # an import of it raises ImportError
    try:
        try:
            return _main(sys.argv[1:] if argv is None else argv)
        finally:  # also after --help: a reader gone while the last lines sit in the buffer is found here
            sys.stdout.flush()
            still: object = sys.modules.get("hypothesis", sys)  # sys: imported since (None is the hiding)
            if hidden and still is None:
                del sys.modules["hypothesis"]
    except BrokenPipeError:  # `loosely ... | head`: the reader left, and so does the command, as Unix tools do
        from loosely.cli._output import quiet_stdout  # noqa: PLC0415 - rare path

        quiet_stdout()
        return 0


def _main(argv: list[str]) -> int:
    if argv and argv[0] in KCAT_COMMANDS:
        from loosely.cli import kcat  # noqa: PLC0415 - keeps `loosely broker` free of client imports

        return kcat.main(argv[1:], prog=f"loosely {argv[0]}", mode=KCAT_COMMANDS[argv[0]])
    if argv and argv[0] == "log":
        from loosely.cli import log_cmd  # noqa: PLC0415 - its own parser: one-line argument errors

        return log_cmd.main(argv[1:])
    parser = _mirror_parser() if argv and argv[0] == "mirror" else build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse would print the top-level usage; the subcommand's own usage helps more
        _innermost(parser, argv).error(f"unrecognized arguments: {' '.join(extra)}")
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rc = _client_settings(args)
    if rc is None:
        rc = args.func(args)
    return rc


def _client_settings(args: argparse.Namespace) -> int | None:
    """Resolve the subcommand's Kafka client settings (--client-config, -X) and, where they ask for TLS or SASL,
    make sure the cluster takes them: a wrong password or an untrusted certificate is one line and exit code 1
    here, before the command starts (see loosely.clients.access). None: go on."""
    from loosely.cli._args import resolve_client_options  # noqa: PLC0415
    from loosely.clients.client_config import ClientConfigError, is_secured  # noqa: PLC0415

    try:
        resolve_client_options(args)
    except ClientConfigError as e:
        print(f"loosely {args.command}: {e}", file=sys.stderr)
        return 2
    sides = {"": getattr(args, "bootstrap", None), "source_": getattr(args, "source", None),
             "target_": getattr(args, "target", None)}
    if args.command == "top" and not args.views:
        return None  # top reaches Kafka only for --views
    for side, bootstrap in sides.items():
        config = getattr(args, f"{side}kafka_config", None)
        if not bootstrap or not config or not is_secured(config):
            continue
        from loosely.clients.access import AccessDenied, check_access  # noqa: PLC0415 - imports confluent-kafka

        try:
            check_access({**config, "bootstrap.servers": bootstrap}, min(float(getattr(args, "timeout", 10)), 10))
        except AccessDenied as e:
            print(f"loosely {args.command}: {e}", file=sys.stderr)
            return 1
    return None


if __name__ == "__main__":
    sys.exit(main())
