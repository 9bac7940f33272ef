"""Argument helpers shared by the subcommands."""

from __future__ import annotations

__all__ = ["BadArgument", "name_values"]


class BadArgument(ValueError):
    """A malformed command-line value; the message says which flag and why."""


def name_values(items: list[str] | None, flag: str) -> dict[str, str]:
    """``["a=1", "b="]`` -> ``{"a": "1", "b": ""}``; raises :class:`BadArgument` for an item without ``=``.

    >>> name_values(["retention.ms=1000"], "--config")
    {'retention.ms': '1000'}
    """
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise BadArgument(f"{flag} expects NAME=VALUE, got {item!r}")
        out[name] = value
    return out
