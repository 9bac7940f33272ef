"""The entry point of ``loosely kcat``: parse, install kcat's signal handling, run the path that serves the command.

kcat's errors end here: :class:`Fatal` as ``% ERROR: ...`` and exit code 1, :class:`UsageError` as ``Error: ...``
and the usage text, a closed stdout (``| head``) quietly.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from typing import IO, NoReturn

from loosely.cli._output import quiet_stdout
from loosely.cli.kcat._native import try_consumer, try_producer
from loosely.cli.kcat._options import USAGE, Conf, Exit, Fatal, UsageError, info, parse_args

__all__ = ["main"]


def _run(conf: Conf, out: IO[bytes]) -> int:
    """The native path for plain produce/consume when it applies, else librdkafka's (confluent-kafka)."""
    fast = try_producer(conf) if conf.mode == "P" else try_consumer(conf, out) if conf.mode == "C" else None
    if fast is not None:
        info(conf, 2, "% loosely: served by the native path\n")
        return fast
    from loosely.cli.kcat import _rdkafka  # noqa: PLC0415 - confluent-kafka's import costs ~0.2 s of start-up

    return _rdkafka.RUNNERS[conf.mode](conf, out)


def _fatal(text: str) -> NoReturn:
    sys.stderr.write(f"% ERROR: {text}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def main(argv: Sequence[str], *, prog: str = "loosely kcat", mode: str | None = None) -> int:
    """Run one kcat command line; ``mode`` ("P", "C", "L", "Q") is implied by ``produce``/``consume``/...."""
    args = list(argv)
    if mode is not None:
        args.insert(0, f"-{mode}")
    try:
        conf = parse_args(args)
    except Exit as e:
        sys.stdout.write(e.stdout)
        return e.code
    except UsageError as e:
        sys.stderr.write(f"Error: {e}\n\n{USAGE}")
        return 1
    except Fatal as e:
        _fatal(str(e))
    def stop(signum: int, frame: object) -> None:
        if not conf.run:
            raise KeyboardInterrupt
        conf.run = False

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    out = sys.stdout.buffer
    try:
        return _run(conf, out)
    except Fatal as e:
        _fatal(str(e))
    except BrokenPipeError:
        quiet_stdout()
        return 0
    except KeyboardInterrupt:
        return 0

