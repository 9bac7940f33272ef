"""``loosely hollow ...``: look into Hollow blob stores and publish to them from the command line.

A store is a directory (Java's file names) or ``s3://bucket/prefix`` (``--s3-endpoint`` or ``$AWS_ENDPOINT_URL``
for S3-compatible servers).  Blobs written by Java Hollow carry no digest: pass ``--no-require-digest``.

    loosely hollow versions STORE                       announced version, snapshots and transitions
    loosely hollow dump STORE [--version V] [--type T]  records as JSON lines (top-level types by default)
    loosely hollow diff STORE FROM TO [--type T]        added / removed / changed records per type, as JSON
    loosely hollow history STORE --type T --key K...    every change of one record, as JSON lines
    loosely hollow publish STORE --schema F --type T    one producer cycle from JSON lines on stdin or --input,
                                                        with a progress bar on stderr
    loosely hollow put / get / delete / tail / writer   a read-after-write dataset (see ``hollow_raw_cmd``)

Records are JSON lines in UTF-8; a lone UTF-16 surrogate, which a Java string may hold, is escaped (``\ud800``).
A reader that stops early (``| head``) ends the command quietly with exit 0.  Failures print
``loosely hollow: <why>`` and exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import IO, Any

from loosely.cli._output import json_line, quiet_stdout
from loosely.cli.hollow_raw_cmd import add_raw_commands

__all__ = ["add_hollow_command"]


def _store(args: argparse.Namespace) -> Any:
    from loosely.hollow.api import FilesystemBlobStore, S3BlobStore  # noqa: PLC0415 - keeps other commands light

    spec: str = args.store
    if spec.startswith("s3://"):
        bucket, _, prefix = spec[5:].partition("/")
        endpoint = args.s3_endpoint or os.environ.get("AWS_ENDPOINT_URL")
        return S3BlobStore(bucket, prefix, endpoint_url=endpoint)
    return FilesystemBlobStore(spec, create=args.command_name == "publish")


def _version(store: Any, text: str | None) -> Any:
    """A version named as the commands take it: a number, ``announced``, ``announced~N`` (N versions before the
    announced one, as git counts commits) or ``first`` (the oldest snapshot)."""
    from loosely.hollow.api import Version  # noqa: PLC0415

    text = "announced" if text is None else text
    if text == "first":
        return _first_version(store)
    name, _, back = text.partition("~")
    if name != "announced":
        try:
            return Version(int(text))
        except ValueError:
            raise ValueError(
                f"{text!r} is not a version: use a number, 'announced', 'announced~N' or 'first'") from None
    if back and not back.isdigit():
        raise ValueError(f"{text!r}: after '~' comes how many versions back, e.g. announced~1")
    v = store.latest_version()
    if v is None:
        raise ValueError("nothing is announced in this store; name a version")
    if not back:
        return Version(int(v))
    known = sorted({x for r in store.refs() for x in (r.from_version, r.to_version) if x is not None and x <= v})
    steps = int(back)
    if steps >= len(known):
        raise ValueError(f"{text}: the store goes back only {len(known) - 1} version(s) from the announced one")
    return Version(known[-1 - steps])


def _key(values: list[str]) -> list[object]:
    out: list[object] = []
    for v in values:
        try:
            out.append(json.loads(v))
        except json.JSONDecodeError:
            out.append(v)  # a bare string
    return out


def _versions(args: argparse.Namespace, out: IO[str]) -> int:
    store = _store(args)
    refs = store.refs()
    by_type: dict[str, list[str]] = {}
    for r in sorted(refs, key=lambda r: (r.to_version, r.from_version or 0)):
        by_type.setdefault(r.type.value, []).append(r.name)
    json_line({"announced": store.latest_version(), **by_type}, out)
    return 0


def _dump(args: argparse.Namespace, out: IO[str]) -> int:
    from loosely.hollow.api import dump_records, load_version  # noqa: PLC0415

    store = _store(args)
    version = _version(store, args.version)
    engine = load_version(store, version, require_digest=args.require_digest)
    for rec in dump_records(engine, args.type or None):
        json_line({"version": version, **rec}, out)
    return 0


def _diff(args: argparse.Namespace, out: IO[str]) -> int:
    from loosely.hollow.api import diff_versions  # noqa: PLC0415

    store = _store(args)
    a, b = _version(store, args.from_version), _version(store, args.to_version)
    diffs = diff_versions(store, a, b, args.type or None, require_digest=args.require_digest)
    json_line({"from": a, "to": b, "types": [d.as_json() for d in diffs.values()]}, out)
    return 0 if all(d.unchanged for d in diffs.values()) or not args.exit_code else 3


def _history(args: argparse.Namespace, out: IO[str]) -> int:
    from loosely.hollow.api import record_history  # noqa: PLC0415

    store = _store(args)
    to = _version(store, args.to_version)
    start = _version(store, args.from_version) if args.from_version is not None else _first_version(store)
    for e in record_history(store, args.type, _key(args.key), start, to, require_digest=args.require_digest):
        json_line({"version": e.version, "change": e.change, "record": e.record}, out)
    return 0


def _first_version(store: Any) -> Any:
    from loosely.hollow.api import Version  # noqa: PLC0415

    snapshots = [r.to_version for r in store.refs() if r.type.value == "snapshot"]
    if not snapshots:
        raise ValueError("the store has no snapshot; name a version")
    return Version(min(snapshots))


class _Progress:
    """A one-line progress display on stderr, redrawn at most every ``interval_s``."""

    def __init__(self, stream: IO[str], total: int | None, interval_s: float = 0.2) -> None:
        self.stream = stream
        self.total = total
        self.interval_s = interval_s
        self.started = time.monotonic()
        self._drawn = 0.0

    def records(self, n: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < self.interval_s:
            return
        self._drawn = now
        rate = n / max(now - self.started, 1e-9)
        if self.total:
            width = 30
            filled = int(width * n / self.total)
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\rpopulating [{bar}] {n}/{self.total} ({100 * n // self.total}%) {rate:,.0f}/s")
        else:
            self.stream.write(f"\rpopulating {n} records {rate:,.0f}/s")
        self.stream.flush()

    def event(self, event: object) -> None:
        from loosely.hollow.api import BlobPublished, CycleCompleted, StageCompleted  # noqa: PLC0415

        if isinstance(event, StageCompleted):
            if event.stage.value == "populating":
                self.stream.write("\n")
            status = "failed: " + event.error if event.error else "done"
            self.stream.write(f"{event.stage.value:<11} {status} in {event.duration_ms} ms\n")
        elif isinstance(event, BlobPublished):
            self.stream.write(f"  published {event.ref.name} ({event.size_bytes:,} bytes)\n")
        elif isinstance(event, CycleCompleted):
            self.stream.write(f"cycle {event.status}: version {event.version} in {event.duration_ms} ms\n")
        self.stream.flush()


def _json_lines(stream: IO[str]) -> Iterator[Any]:
    for n, line in enumerate(stream, 1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"input line {n} is not JSON: {e}") from None


def _publish(args: argparse.Namespace, out: IO[str]) -> int:
    from loosely.hollow.api import Producer, WriteState, add_json  # noqa: PLC0415
    from loosely.hollow.core import parse_schemas  # noqa: PLC0415

    store = _store(args)
    with open(args.schema, encoding="utf-8") as f:
        schemas = parse_schemas(f.read())
    progress = _Progress(sys.stderr, args.total) if args.progress else None
    producer = Producer(publisher=store, announcer=store, retriever=store, schemas=schemas,
                        listeners=[progress.event] if progress else [], require_digest=args.require_digest,
                        snapshot_every_cycles=args.snapshot_every)
    announced = store.latest_version()
    if announced is not None and not args.new_chain:
        producer.restore(announced)

    def populate(state: WriteState) -> None:
        stream = open(args.input, encoding="utf-8") if args.input else sys.stdin  # noqa: SIM115
        try:
            n = 0
            for record in _json_lines(stream):
                add_json(state.engine, args.type, record)
                n += 1
                if progress is not None:
                    progress.records(n)
            if progress is not None:
                progress.records(n, force=True)
        finally:
            if stream is not sys.stdin:
                stream.close()

    version = producer.run_cycle(populate)
    json_line({"version": version, "changed": version != announced}, out)
    return 0


def add_hollow_command(sub: Any) -> None:
    """Register ``loosely hollow`` and its subcommands on the top-level parser's subparsers."""
    p = sub.add_parser("hollow", help="inspect and publish Hollow datasets (dump, diff, history, versions, publish; "
                                      "put, get, delete, tail, writer of a read-after-write dataset)")
    hs = p.add_subparsers(dest="hollow_command", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("store", help="a directory, or s3://bucket/prefix")
        q.add_argument("--s3-endpoint", help="S3-compatible endpoint URL (default $AWS_ENDPOINT_URL)")
        q.add_argument("--no-require-digest", dest="require_digest", action="store_false",
                       help="accept blobs without loosely's digest tag (stores written by Java Hollow)")

    q = hs.add_parser("versions", help="the announced version and the blobs in a store")
    common(q)
    q.set_defaults(hollow_func=_versions, command_name="versions")
    q = hs.add_parser("dump", help="records as JSON lines")
    common(q)
    q.add_argument("--version", help="a version, 'announced' (default), 'announced~N' or 'first'")
    q.add_argument("--type", action="append", help="a type to dump (repeatable; default: the top-level types)")
    q.set_defaults(hollow_func=_dump, command_name="dump")
    q = hs.add_parser("diff", help="what changed between two versions, per type")
    common(q)
    q.add_argument("from_version", help="a version, 'announced', 'announced~N' or 'first'")
    q.add_argument("to_version", help="a version, 'announced', 'announced~N' or 'first'")
    q.add_argument("--type", action="append", help="a type to compare (repeatable; default: the top-level types)")
    q.add_argument("--exit-code", action="store_true", help="exit 3 when the versions differ")
    q.set_defaults(hollow_func=_diff, command_name="diff")
    q = hs.add_parser("history", help="every change of one record along the delta chain")
    common(q)
    q.add_argument("--type", required=True, help="the record's type (it needs a primary key)")
    q.add_argument("--key", nargs="+", required=True, help="primary key values (JSON, or bare strings)")
    q.add_argument("--from", dest="from_version", help="first version (default: the oldest snapshot)")
    q.add_argument("--to", dest="to_version", help="last version (default: the announced one)")
    q.set_defaults(hollow_func=_history, command_name="history")
    q = hs.add_parser("publish", help="run one producer cycle from JSON lines (the complete new state)")
    common(q)
    q.add_argument("--schema", required=True, help="a file of Hollow schemas (Java's schema text)")
    q.add_argument("--type", required=True, help="the type of each input record")
    q.add_argument("--input", help="a JSON lines file (default: stdin)")
    q.add_argument("--total", type=int, help="expected number of records, for the progress bar")
    q.add_argument("--progress", action="store_true", help="show progress on stderr")
    q.add_argument("--snapshot-every", type=int, default=1, help="publish a snapshot every N cycles (default 1)")
    q.add_argument("--new-chain", action="store_true", help="do not restore from the announced version")
    q.set_defaults(hollow_func=_publish, command_name="publish")
    add_raw_commands(hs)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from loosely.hollow.core import HollowError  # noqa: PLC0415

    try:
        rc: int = args.hollow_func(args, sys.stdout)
        sys.stdout.flush()  # a reader gone while the last lines sit in the buffer is found here, not at exit
        return rc
    except BrokenPipeError:
        quiet_stdout()
        return 0
    except (HollowError, ValueError, OSError, KeyError) as e:
        print(f"loosely hollow: {e}", file=sys.stderr)
        return 1
