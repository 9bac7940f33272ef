"""Standard output shared by the subcommands: a reader that goes away, text Java strings may hold."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import IO, Final

__all__ = ["json_line", "quiet_stdout"]

_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def quiet_stdout() -> None:
    """stdout's reader went away (``| head``): stop writing, as Unix tools do on SIGPIPE, without the traceback
    Python's final flush would print."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def json_line(obj: object, out: IO[str]) -> None:
    r"""Write ``obj`` as one JSON line, non-ASCII text as it is but lone UTF-16 surrogates (a Java string may hold
    them; UTF-8 cannot) escaped, as JSON allows.

    >>> import io; buf = io.StringIO(); json_line({"t": "café \ud800"}, buf); buf.getvalue()
    '{"t": "café \\ud800"}\n'
    """
    text = json.dumps(obj, ensure_ascii=False, sort_keys=True)
    if not text.isascii():
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    out.write(text + "\n")
