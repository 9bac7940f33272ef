"""Java ``.properties`` text (Kafka's ``server.properties``, client config files) to a dict, sans-IO.

Theory of operation
-------------------
The syntax is ``java.util.Properties.load``'s, so a file written for Kafka means the same here:

- a *natural line* ends at ``\\n``, ``\\r`` or ``\\r\\n``; a line whose first non-blank character is ``#`` or ``!``
  is a comment, a blank line is nothing;
- a *logical line* continues onto the next natural line when it ends in an odd number of backslashes; the next
  line's leading blanks are dropped (so long values can be wrapped and indented);
- the key ends at the first unescaped ``=``, ``:`` or blank; blanks, then one ``=`` or ``:``, then blanks are
  skipped; the rest is the value (trailing blanks kept, as Java does);
- ``\\t``, ``\\n``, ``\\r``, ``\\f`` and ``\\uXXXX`` are escapes; a backslash before any other character stands for
  that character (``\\=`` ``\\:`` ``\\ `` ``\\\\``); a later key wins over an earlier one.

Written here rather than taken from a library: it is forty lines, and the available packages either parse only
a subset (no continuations, no ``!`` comments) or pull in a dependency for nothing else.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["PropertiesError", "parse_properties"]

_BLANK: Final = " \t\f"
_ESCAPES: Final = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_LINES: Final = re.compile(r"\r\n|\r|\n")


class PropertiesError(ValueError):
    """Text that is not valid properties syntax (only a malformed ``\\uXXXX`` escape is)."""


def _logical_lines(text: str) -> list[str]:
    out: list[str] = []
    pending: str | None = None
    for raw in _LINES.split(text):
        line = raw.lstrip(_BLANK)
        if pending is None and (not line or line[0] in "#!"):
            continue  # comments and blank lines; never continued (Java reads them as whole natural lines)
        trailing = len(line) - len(line.rstrip("\\"))
        continued = trailing % 2 == 1
        if continued:
            line = line[:-1]
        pending = line if pending is None else pending + line
        if not continued:
            out.append(pending)
            pending = None
    if pending is not None:  # a continuation at the end of the file ends the line
        out.append(pending)
    return out


def _unescape(s: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c != "\\" or i + 1 == len(s):
            out.append(c)
            i += 1
            continue
        nxt = s[i + 1]
        if nxt == "u":
            digits = s[i + 2 : i + 6]
            if len(digits) != 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise PropertiesError("malformed \\uXXXX escape")  # never the text: it may hold a password
            out.append(chr(int(digits, 16)))
            i += 6
        else:
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
    return "".join(out)


def _split(line: str) -> tuple[str, str]:
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c in "=:" or c in _BLANK:
            break
        i += 1
    key, rest = line[:i], line[i:]
    rest = rest.lstrip(_BLANK)
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(_BLANK)
    return key, rest


def parse_properties(text: str) -> dict[str, str]:
    """The key/value pairs of properties ``text``, in file order, a later duplicate key winning.

    >>> parse_properties("# broker\\nlisteners = PLAINTEXT://:9092,\\\\\\n    SSL://:9093\\n! old\\nnode.id: 1\\n")
    {'listeners': 'PLAINTEXT://:9092,SSL://:9093', 'node.id': '1'}
    >>> parse_properties("a\\\\=b=c\\nempty\\nspaced   value")
    {'a=b': 'c', 'empty': '', 'spaced': 'value'}
    """
    out: dict[str, str] = {}
    for number, line in enumerate(_logical_lines(text), 1):
        key, value = _split(line)
        try:
            name = _unescape(key)
        except PropertiesError as e:
            raise PropertiesError(f"logical line {number}: {e} in the key") from None
        try:
            out[name] = _unescape(value)
        except PropertiesError as e:
            raise PropertiesError(f"{name}: {e} in the value") from None
    return out
