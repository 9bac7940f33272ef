"""``loosely users``: list, add and remove SCRAM users.

Through a running broker (``-b HOST:PORT``, with ``-X`` client settings for a secured listener) the Admin API's
Describe/AlterUserScramCredentials do the work, so it works against Apache Kafka as well; on a stopped broker's data
directory (``--data-dir``) the credential store is changed directly, under the directory's lock. Passwords are read
from ``--password`` or, without it, from the terminal (or one line of standard input); they are salted here and
never stored.
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
from typing import Any

__all__ = ["add_users_command"]

_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


class UsersError(Exception):
    pass


def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return str(args.password)
    if sys.stdin.isatty():
        return getpass.getpass(f"password for {args.name}: ")
    return sys.stdin.readline().rstrip("\n")


def _client_settings(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsersError(f"-X expects NAME=VALUE, got {name!r}")
        out[name] = value
    return out


def _on_broker(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException  # noqa: PLC0415 - client imports only for this path
    from confluent_kafka.admin import (  # type: ignore[attr-defined,unused-ignore]  # noqa: PLC0415
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialAlteration,
        UserScramCredentialDeletion,
        UserScramCredentialUpsertion,
    )

    # Any: describe_user_scram_credentials returns a future or a dict of them, depending on its argument
    admin: Any = AdminClient({"bootstrap.servers": args.bootstrap, "log_level": 0, **_client_settings(args.X)})
    by_name = {"SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256, "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512}
    try:
        if args.action == "list":
            described = admin.describe_user_scram_credentials().result(timeout=args.timeout)
            for user, d in sorted(described.items()):
                text = ", ".join(f"{m.mechanism.name.replace('_', '-')} (iterations={m.iterations})"
                                 for m in d.scram_credential_infos)  # fmt: skip
                print(f"{user}\t{text}")
            return 0
        if args.action == "add":
            info = ScramCredentialInfo(by_name[args.mechanism], args.iterations)
            alteration = UserScramCredentialUpsertion(
                args.name, info, _password(args).encode(), secrets.token_bytes(32)
            )
            admin.alter_user_scram_credentials([alteration])[args.name].result(timeout=args.timeout)
        else:
            mechs = [args.mechanism] if args.mechanism else list(_MECHANISMS)
            if not args.mechanism:  # only those the user has: deleting a missing one is RESOURCE_NOT_FOUND
                d = admin.describe_user_scram_credentials([args.name])[args.name].result(timeout=args.timeout)
                mechs = [i.mechanism.name.replace("_", "-") for i in d.scram_credential_infos]
            deletions: list[UserScramCredentialAlteration] = [
                UserScramCredentialDeletion(args.name, by_name[m]) for m in mechs
            ]
            for f in admin.alter_user_scram_credentials(deletions).values():
                f.result(timeout=args.timeout)
    except KafkaException as e:
        raise UsersError(str(e.args[0].str() if e.args else e)) from None
    print(f"{args.action} {args.name}: done")
    return 0


def _on_data_dir(args: argparse.Namespace) -> int:
    from loosely.security.credentials import CredentialStore  # noqa: PLC0415
    from loosely.security.scram import SCRAM_MECHANISMS, credential_from_password  # noqa: PLC0415
    from loosely.storage.dirlock import DataDirLock  # noqa: PLC0415
    from loosely.storage.fs import OsFileSystem  # noqa: PLC0415

    if args.action == "add":  # users made before the broker's first start, as kafka-storage format --add-scram
        os.makedirs(args.data_dir, exist_ok=True)
    elif not os.path.isdir(args.data_dir):
        raise UsersError(f"{args.data_dir} is not a data directory")
    lock = DataDirLock(args.data_dir).acquire()  # DataDirLockedError (an OSError) while a broker runs: use -b
    try:
        store = CredentialStore(OsFileSystem(), args.data_dir)
        if args.action == "list":
            for user in store.users():
                text = ", ".join(f"{m} (iterations={c.iterations})" for m, c in sorted(store.mechanisms(user).items()))
                print(f"{user}\t{text}")
            return 0
        if args.action == "add":
            m = SCRAM_MECHANISMS[args.mechanism]
            if not m.iterations_min <= args.iterations <= m.iterations_max:
                raise UsersError(f"iterations must be {m.iterations_min} to {m.iterations_max}")
            store.put(args.name, m.name, credential_from_password(m, _password(args), args.iterations))
        else:
            mechs = [args.mechanism] if args.mechanism else list(store.mechanisms(args.name))
            if not mechs or not all(store.get(args.name, m) is not None for m in mechs):
                raise UsersError(f"user {args.name} has no such credential")
            store.apply([(args.name, m, None) for m in mechs])
    finally:
        lock.release()
    print(f"{args.action} {args.name}: done")
    return 0


def _run(args: argparse.Namespace) -> int:
    if (args.bootstrap is None) == (args.data_dir is None):
        print("loosely users: give either -b BOOTSTRAP (a running broker) or --data-dir DIR (a stopped one)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        return _on_broker(args) if args.bootstrap else _on_data_dir(args)
    except (UsersError, OSError) as e:
        hint = "; a running broker holds it: use -b" if type(e).__name__ == "DataDirLockedError" else ""
        print(f"loosely users {args.action}: {e}{hint}", file=sys.stderr)
        return 1


def add_users_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    u = sub.add_parser("users", help="list, add and remove SCRAM users (SASL)")
    actions = u.add_subparsers(dest="action", required=True)
    for name, text in (("list", "list users and their SCRAM mechanisms"), ("add", "add or change a SCRAM user"),
                       ("remove", "remove a user's SCRAM credentials")):  # fmt: skip
        a = actions.add_parser(name, help=text)
        a.add_argument("-b", "--bootstrap", help="a running broker (loosely or Kafka), through the Admin API")
        a.add_argument("-X", action="append", metavar="NAME=VALUE", help="client setting, e.g. security.protocol")
        a.add_argument("--data-dir", help="a stopped loosely broker's data directory, changed directly")
        a.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the broker (default 30)")
        if name != "list":
            a.add_argument("name", help="user name")
            a.add_argument("--mechanism", choices=_MECHANISMS, default="SCRAM-SHA-256" if name == "add" else None)
        if name == "add":
            a.add_argument("--password", help="the password (default: asked for, or one line of standard input)")
            a.add_argument("--iterations", type=int, default=8192, help="PBKDF2 iterations, 4096-16384 (default 8192)")
        a.set_defaults(func=_run)
