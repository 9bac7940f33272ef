"""Argument helpers shared by the subcommands."""

from __future__ import annotations

from typing import Any

__all__ = ["BadArgument", "add_client_options", "name_values", "password_check", "resolve_client_options"]


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


# --- Kafka client settings (a secured cluster) -------------------------------------------------------------------
#
# Every subcommand that reaches a cluster takes the same two options, parsed and translated by
# loosely.clients.client_config (the one place that knows Java's names). main() resolves them once, before the
# subcommand runs, into args.<side>kafka_config (a dict of librdkafka settings), so a bad file is one line and
# exit code 2 whatever the command.

# side prefix -> (flag of the file, flag of the NAME=VALUE items, what the side is)
CLIENT_SIDES: dict[str, tuple[str, str, str]] = {
    "": ("--client-config", "-X", "the cluster"),
    "source_": ("--source-client-config", "--source-config", "the source cluster"),
    "target_": ("--target-client-config", "--target-config", "the target cluster"),
    "services_": ("--services-client-config", "--services-config",
                  "the console and schema registry a broker serves, to reach that broker"),
}


def add_client_options(p: Any, *, side: str = "") -> None:
    """``--client-config FILE`` and ``-X NAME=VALUE`` (for a mirror's side: ``--source-client-config`` and
    ``--source-config``, ...), both repeatable, later ones winning."""
    file_flag, item_flag, what = CLIENT_SIDES[side]
    p.add_argument(file_flag, dest=f"{side}client_files", action="append", default=[], metavar="FILE",
                   help=f"Kafka client properties for {what} (Java or librdkafka names, e.g. security.protocol, "
                        "sasl.mechanism, sasl.jaas.config, ssl.truststore.location; repeatable)")
    flags = [item_flag, "--client-setting"] if item_flag == "-X" else [item_flag]
    p.add_argument(*flags, dest=f"{side}client_items", action="append", default=[], metavar="NAME=VALUE",
                   help=f"one Kafka client setting for {what}, over the files' (repeatable)")


def resolve_client_options(args: Any) -> None:
    """Turn the options :func:`add_client_options` added into ``args.<side>kafka_config`` dicts; raises
    :class:`loosely.clients.client_config.ClientConfigError` with a one-line reason."""
    from loosely.clients.client_config import client_config  # noqa: PLC0415 - pure, but only these commands need it

    for side, (_, item_flag, _) in CLIENT_SIDES.items():
        files = getattr(args, f"{side}client_files", None)
        if files is None:
            continue
        items = getattr(args, f"{side}client_items", [])
        setattr(args, f"{side}kafka_config", client_config(files, items, flag=item_flag))


# --- HTTP services beside the broker: its SCRAM users as HTTP Basic users -------------------------------------------


def password_check(users_file: str) -> Any:
    """A ``check(user, password) -> bool`` against the SCRAM users in ``users_file`` (a broker's
    ``<data-dir>/scram-credentials.json``, re-read when it changes); ValueError with one line when it is unreadable."""
    from loosely.security.passwords import CredentialsFile, PasswordCheck  # noqa: PLC0415 - only when asked for

    users = CredentialsFile(users_file)
    if users.error is not None:
        raise ValueError(f"users file {users.error}")
    return PasswordCheck(users)
