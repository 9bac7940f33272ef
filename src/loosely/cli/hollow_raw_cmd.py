"""``loosely hollow put / get / delete / tail / writer``: a read-after-write Hollow dataset from the shell.

Every command names the dataset the way ``loosely.hollow.raw.Dataset`` does::

    --dataset NAME -b BOOTSTRAP --blob-store DIR --types MODULE:Class[,Class...] [--partitions N]

``--types`` imports the dataset's ``@hollow_type(primary_key=...)`` classes from a module (``pkg.models:Movie``)
or a file (``models.py:Movie,Actor``). Records and keys are JSON: ``put --type Movie '{"id": 1, "title":
"Heat"}'`` (or JSON lines on stdin), ``get --type Movie --key 1``. ``put`` and ``delete`` go to the writer at
``--writer URL`` (repeatable: the candidates) or, without it, to a writer started in the command, which waits to
be elected. ``writer`` runs an elected writer with its HTTP API until interrupted; with ``--producer`` it is
also a candidate Hollow producer: the producers of all ``writer --producer`` processes elect one of their own
(not necessarily in the elected writer's process: the two roles fail over independently). Each answer is one JSON
line; a failure prints ``loosely hollow: <why>`` and exits 1, a failed condition exits 3.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from loosely.cli._output import json_line

__all__ = ["add_raw_commands"]

EXIT_CONDITION_FAILED = 3


def _import_types(spec: str) -> list[type]:
    where, _, names = spec.rpartition(":")
    if not where or not names:
        raise ValueError(f"--types wants MODULE:Class[,Class...] or FILE.py:Class, not {spec!r}")
    if where.endswith(".py"):
        path = Path(where)
        module_spec = importlib.util.spec_from_file_location(f"loosely_raw_types_{path.stem}", path)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"cannot load {where}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module  # dataclasses look their module up while being built
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    out = []
    for name in names.split(","):
        cls = getattr(module, name.strip(), None)
        if not isinstance(cls, type):
            raise ValueError(f"{where} has no class {name.strip()!r}")
        out.append(cls)
    return out


def _dataset_of(args: argparse.Namespace) -> Any:
    """The command's dataset (made once per command)."""
    if getattr(args, "raw_dataset", None) is None:
        args.raw_dataset = _dataset(args)
    return args.raw_dataset


def _dataset(args: argparse.Namespace) -> Any:
    from loosely.clients.client_config import client_config  # noqa: PLC0415 - keeps other commands light
    from loosely.hollow.raw import Dataset  # noqa: PLC0415

    types = [cls for spec in args.types for cls in _import_types(spec)]
    return Dataset(args.dataset, types, bootstrap_servers=args.bootstrap_servers, blob_store=args.blob_store,
                   partitions=args.partitions, client_config=client_config(args.command_config or ()))


def _key(values: list[str]) -> tuple[object, ...]:
    from loosely.cli.hollow_cmd import _key as key_values  # noqa: PLC0415 - hollow_cmd imports this module first

    return tuple(key_values(values))


def _if_version(text: str | None) -> Any:
    from loosely.hollow.raw import ANY  # noqa: PLC0415

    if text is None:
        return ANY
    if text == "absent":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--if-version wants a version or 'absent', not {text!r}") from None


class _Writing:
    """The writer a put or delete goes to: remote when ``--writer`` names one, else started here."""

    def __init__(self, args: argparse.Namespace, ds: Any) -> None:
        from loosely.hollow.raw import RemoteWriter, Writer  # noqa: PLC0415

        self._local: Any = None
        if args.writer:
            self.writer: Any = RemoteWriter(args.writer, ds, timeout_ms=args.timeout_ms)
        else:
            self._local = self.writer = Writer(ds).start()
            if not self._local.wait_for_leadership(args.timeout_ms):
                leader = self._local.leader_address()
                self.close()
                raise ValueError(f"this command's writer was not elected in {args.timeout_ms} ms (another writer "
                                 f"leads{' at ' + leader if leader else ''}: pass --writer URL)")

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
        else:
            self.writer.close()


def _records(args: argparse.Namespace) -> Iterator[Any]:
    from loosely.cli.hollow_cmd import _json_lines  # noqa: PLC0415 - hollow_cmd imports this module first

    if not args.records:
        yield from _json_lines(sys.stdin)
    for n, text in enumerate(args.records, 1):
        try:
            yield json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"record {n} is not JSON: {e}") from None


def _write(args: argparse.Namespace, out: IO[str], writes: Iterator[Callable[[Any, Any], Any]]) -> int:
    """Run each write against the writer with the command's condition; a failed condition ends with exit 3."""
    from loosely.hollow.raw import ConditionFailed  # noqa: PLC0415

    condition = _if_version(args.if_version)
    writing = _Writing(args, _dataset_of(args))
    try:
        for write in writes:
            try:
                result = write(writing.writer, condition)
            except ConditionFailed as e:
                print(f"loosely hollow: condition failed: {e}", file=sys.stderr)
                return EXIT_CONDITION_FAILED
            json_line({"version": result.version, "token": str(result.token)}, out)
    finally:
        writing.close()
    return 0


def _put(args: argparse.Namespace, out: IO[str]) -> int:
    from loosely.hollow.raw._codec import record_from_json  # noqa: PLC0415

    cls = _dataset_of(args).type_of(args.type)

    def writes() -> Iterator[Callable[[Any, Any], Any]]:
        for value in _records(args):
            record = record_from_json(cls, value)
            yield lambda writer, condition: writer.put(record, if_version=condition)  # noqa: B023 - run at once

    return _write(args, out, writes())


def _delete(args: argparse.Namespace, out: IO[str]) -> int:
    _dataset_of(args).type_of(args.type)
    key = _key(args.key)
    return _write(args, out, iter([lambda writer, condition: writer.delete(args.type, key, if_version=condition)]))


def _get(args: argparse.Namespace, out: IO[str]) -> int:
    from loosely.hollow.raw import RawClient  # noqa: PLC0415
    from loosely.hollow.raw._codec import record_to_json  # noqa: PLC0415

    ds = _dataset_of(args)
    with RawClient(ds, timeout_ms=args.timeout_ms) as client:
        record, version = client.get_versioned(args.type, _key(args.key), consistency=args.consistency,
                                               after=args.after)
        json_line({"record": None if record is None else record_to_json(record), "version": version}, out)
    return 0


def _tail(args: argparse.Namespace, out: IO[str]) -> int:
    from loosely.hollow.raw._codec import parse_key  # noqa: PLC0415
    from loosely.hollow.raw._log import ChangeTail  # noqa: PLC0415

    ds = _dataset(args)
    ds.ensure_topics()
    seen = 0

    def show(partition: int, offset: int, key: bytes, value: bytes | None) -> None:
        nonlocal seen
        try:
            type_name, values = parse_key(key)
            record = None if value is None else json.loads(value)
        except ValueError:
            type_name, values, record = "?", (key.decode(errors="replace"),), value and value.decode(errors="replace")
        json_line({"partition": partition, "offset": offset, "type": type_name, "key": list(values),
                   "record": record}, out)
        seen += 1

    tail = ChangeTail(ds, show, name="cli-tail")
    try:
        ends = tail.high_watermarks(args.timeout_ms) if not args.follow else None
        while args.max is None or seen < args.max:
            tail.poll(0.2)
            out.flush()
            if ends is not None and tail.caught_up(ends):
                break
    except KeyboardInterrupt:
        pass
    finally:
        tail.close()
    return 0


def _serve(args: argparse.Namespace, out: IO[str]) -> int:
    from loosely.cli._heap import freeze_startup  # noqa: PLC0415
    from loosely.hollow.raw import RawProducer, Writer, WriterServer  # noqa: PLC0415

    ds = _dataset(args)
    host, _, port = args.listen.rpartition(":")
    writer = Writer(ds, http_address=args.advertise)
    server = WriterServer(writer, host or "127.0.0.1", int(port or 0)).start()
    writer.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    json_line({"listening": server.url, "dataset": ds.name, "member": writer.member}, out)
    out.flush()  # before the producer joins its election: writes do not wait for it
    producer = RawProducer(ds, cycle_interval_ms=args.cycle_interval_ms).start() if args.producer else None
    freeze_startup()
    stop.wait()
    server.close()
    writer.close()
    if producer is not None:
        producer.close()
    return 0


def add_raw_commands(hs: Any) -> None:
    """Register ``put``, ``get``, ``delete``, ``tail`` and ``writer`` on ``loosely hollow``'s subparsers."""

    def dataset(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dataset", required=True,
                       help="the dataset's name (topics <name>.changes, .writer, .producer)")
        q.add_argument("-b", "--bootstrap-servers", default="localhost:9092", help="the Kafka bootstrap servers")
        q.add_argument("--blob-store", required=True, help="the directory of the dataset's Hollow versions")
        q.add_argument("--types", action="append", required=True,
                       help="MODULE:Class[,Class...] or FILE.py:Class: the dataset's Hollow types (repeatable)")
        q.add_argument("--partitions", type=int, default=1, help="partitions of the changes topic (default 1)")
        q.add_argument("--command-config", action="append",
                       help="a Java client properties file (security settings), repeatable")
        q.add_argument("--timeout-ms", type=int, default=10_000, help="how long to wait (default 10000)")

    def writing(q: argparse.ArgumentParser) -> None:
        q.add_argument("--writer", action="append", help="a writer's URL (repeatable); default: a writer here")
        q.add_argument("--if-version", help="write only if the record has this version ('absent': has none)")

    q = hs.add_parser("put", help="insert or replace records of a read-after-write dataset")
    dataset(q)
    writing(q)
    q.add_argument("--type", required=True, help="the records' type")
    q.add_argument("records", nargs="*", help="records as JSON objects (default: JSON lines on stdin)")
    q.set_defaults(hollow_func=_put, command_name="put")
    q = hs.add_parser("delete", help="delete a record of a read-after-write dataset by primary key")
    dataset(q)
    writing(q)
    q.add_argument("--type", required=True, help="the record's type")
    q.add_argument("--key", nargs="+", required=True, help="primary key values (JSON, or bare strings)")
    q.set_defaults(hollow_func=_delete, command_name="delete")
    q = hs.add_parser("get", help="read a record of a read-after-write dataset (state plus the log)")
    dataset(q)
    q.add_argument("--type", required=True, help="the record's type")
    q.add_argument("--key", nargs="+", required=True, help="primary key values (JSON, or bare strings)")
    q.add_argument("--consistency", choices=("eventual", "strong"), default="strong",
                   help="strong (default here: a fresh process has nothing to be eventual about) or eventual")
    q.add_argument("--after", help="a token a write returned: read only once that write is visible")
    q.set_defaults(hollow_func=_get, command_name="get")
    q = hs.add_parser("tail", help="the changes of a read-after-write dataset as JSON lines")
    dataset(q)
    q.add_argument("--follow", action="store_true", help="keep following (default: stop at the end)")
    q.add_argument("--max", type=int, help="stop after this many changes")
    q.set_defaults(hollow_func=_tail, command_name="tail")
    q = hs.add_parser("writer", help="run an elected writer with its HTTP API (a standby until elected)")
    dataset(q)
    q.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT of the HTTP API (default a free port)")
    q.add_argument("--advertise", help="the URL other services reach this writer at (default: the listen URL)")
    q.add_argument("--producer", action="store_true",
                   help="also be a candidate producer: the producers of all writer processes elect one, which folds "
                        "the log into Hollow versions (the others are standbys, fenced when deposed)")
    q.add_argument("--cycle-interval-ms", type=int, default=1_000, help="the producer's cycle interval")
    q.set_defaults(hollow_func=_serve, command_name="writer")
