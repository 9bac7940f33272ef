"""``loosely log verify``: check every batch of every segment of a data dir, offline and read-only.

What ``kafka-dump-log --deep-iteration`` would reveal, summarised per segment: batches, records, offset range,
and each problem with the file and byte position where it is (a bad CRC, a header that does not parse, records
that do not walk, offsets that go backwards, index entries that disagree with the log). Quarantine files left by
recovery are listed too; they are damage already handled, so they alone do not fail the check.

Exit codes: 0 clean, 1 damage found, 2 bad arguments or a data dir that can't be read (one line on stderr, no
traceback). Nothing is ever written to the data dir: files are opened ``O_RDONLY``, so it also runs on a
read-only snapshot and beside a running broker (whose active segment may then show a torn tail).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, NoReturn

from loosely.storage.verify import PartitionReport, verify_data_dir

__all__ = ["add_log_command_help", "main"]

PROG = "loosely log"


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog=PROG, description="Offline tools for a broker's data dir.")
    sub = p.add_subparsers(dest="action", required=True, parser_class=_OneLineParser)
    v = sub.add_parser("verify", help="check every batch and index of every segment; exit 1 on damage")
    v.add_argument("--data-dir", required=True, help="the broker's data dir (read only)")
    v.add_argument("--topic", help="only this topic's partitions")
    v.add_argument("--json", action="store_true", help="one JSON document instead of the text report")
    return p


def add_log_command_help(sub: Any) -> None:
    """List ``log`` in ``loosely -h``; its arguments go to :func:`main` (for one-line argument errors)."""
    p = sub.add_parser(
        "log", help="offline data-dir tools: `loosely log verify --data-dir DIR [--topic T] [--json]`", add_help=False
    )
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda args: main(args.args))


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    prog = f"{PROG} {args.action}"
    if not os.path.isdir(args.data_dir):
        print(f"{prog}: {args.data_dir}: no such directory", file=sys.stderr)
        return 2
    try:
        reports = list(verify_data_dir(args.data_dir, args.topic))
    except OSError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    if args.topic is not None and not reports:
        print(f"{prog}: no partition of topic {args.topic!r} in {args.data_dir}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(_as_json(reports), indent=2))
    else:
        _print_text(reports)
    return 1 if any(r.damaged for r in reports) else 0


def _as_json(reports: list[PartitionReport]) -> dict[str, object]:
    return {
        "damaged": any(r.damaged for r in reports),
        "partitions": [
            {
                "partition": os.path.basename(r.directory),
                "segments": [
                    {
                        "file": os.path.basename(s.path),
                        "base_offset": s.base_offset,
                        "bytes": s.size,
                        "batches": s.batches,
                        "records": s.records,
                        "first_offset": s.first_offset,
                        "last_offset": s.last_offset,
                        "problems": [
                            {"file": os.path.basename(p.path), "position": p.position, "message": p.message}
                            for p in s.problems
                        ],
                    }
                    for s in r.segments
                ],
                "problems": [
                    {"file": os.path.basename(p.path), "position": p.position, "message": p.message} for p in r.problems
                ],
                "quarantine": [{"file": n, "bytes": size} for n, size in r.quarantined],
            }
            for r in reports
        ],
    }


def _print_text(reports: list[PartitionReport]) -> None:
    segments = batches = records = problems = 0
    for r in reports:
        part = os.path.basename(r.directory)
        for s in r.segments:
            segments += 1
            batches += s.batches
            records += s.records
            problems += len(s.problems)
            offsets = f"{s.first_offset}-{s.last_offset}" if s.first_offset >= 0 else "none"
            status = "ok" if not s.problems else f"{len(s.problems)} problem(s)"
            print(
                f"{part}/{os.path.basename(s.path)}: {s.batches} batches, {s.records} records, "
                f"offsets {offsets}, {s.size} bytes: {status}"
            )
            for p in s.problems:
                print(f"  {os.path.basename(p.path)} position {p.position}: {p.message}")
        for p in r.problems:
            problems += 1
            print(f"{part}/{os.path.basename(p.path)} position {p.position}: {p.message}")
        for name, size in r.quarantined:
            print(f"{part}/{name}: quarantine file, {size} bytes (cut off by recovery; remove when inspected)")
    print(
        f"{len(reports)} partitions, {segments} segments, {batches} batches, {records} records: "
        + ("clean" if problems == 0 else f"{problems} problem(s)")
    )
