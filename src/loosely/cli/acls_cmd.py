"""``loosely acls list|add|remove``: Kafka ACLs through the admin API, with kafka-acls' option names.

It talks to any cluster whose broker runs an authorizer (loosely with ``authorizer.class.name`` set, or Kafka), via
confluent-kafka's create_acls / describe_acls / delete_acls::

    loosely acls add -b 127.0.0.1:9092 --allow-principal User:alice --operation Read --operation Describe \\
        --topic orders --group billing
    loosely acls list -b 127.0.0.1:9092 --topic orders
    loosely acls remove -b 127.0.0.1:9092 --allow-principal User:alice --operation Read --topic orders

As with kafka-acls, ``add`` writes every (principal, host, operation) for every resource named, ``remove`` deletes
exactly those bindings, and ``list`` shows every binding (or those of the resources named; with
``--resource-pattern-type match`` also the prefixed and ``*`` bindings that cover them).
"""

from __future__ import annotations

import argparse
import itertools
from typing import Any

# The modules that define them: confluent_kafka.admin re-exports these without saying so to a type checker.
from confluent_kafka.admin._acl import AclBinding, AclBindingFilter, AclOperation, AclPermissionType
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType

from loosely.cli.admin import AdminError, _admin, _common, _emit, _run, _wait

__all__ = ["add_acls_command"]

CLUSTER_NAME = "kafka-cluster"
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED,
             "match": ResourcePatternType.MATCH, "any": ResourcePatternType.ANY}


def _operation(text: str) -> AclOperation:
    """kafka-acls' spelling (IdempotentWrite), the enum's (IDEMPOTENT_WRITE), any case."""
    by_name = {o.name.replace("_", ""): o for o in AclOperation}
    try:
        op = by_name[text.strip().upper().replace("_", "").replace("-", "")]
    except KeyError:
        ops = ", ".join(o.name.title().replace("_", "") for o in AclOperation if o.value > AclOperation.ANY.value)
        raise argparse.ArgumentTypeError(f"unknown operation {text!r} (one of {ops})") from None
    if op in (AclOperation.UNKNOWN, AclOperation.ANY):
        raise argparse.ArgumentTypeError(f"{text!r} is not an operation an ACL can grant")
    return op


def _resources(args: argparse.Namespace) -> list[tuple[ResourceType, str]]:
    out = [(ResourceType.TOPIC, t) for t in args.topic or ()]
    out += [(ResourceType.GROUP, g) for g in args.group or ()]
    out += [(ResourceType.TRANSACTIONAL_ID, t) for t in args.transactional_id or ()]
    if args.cluster:
        out.append((ResourceType.BROKER, CLUSTER_NAME))  # confluent-kafka calls the cluster resource BROKER
    return out


def _name(value: object) -> str:
    return str(getattr(value, "name", value))


def _row(b: AclBinding) -> dict[str, str]:
    rtype = "CLUSTER" if b.restype == ResourceType.BROKER else _name(b.restype)
    return {
        "resource_type": rtype, "name": b.name, "pattern_type": _name(b.resource_pattern_type),
        "principal": b.principal, "host": b.host, "operation": _name(b.operation),
        "permission": _name(b.permission_type),
    }


def _table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "no ACLs\n"
    head = list(rows[0])
    widths = [max(len(h), *(len(r[h]) for r in rows)) for h in head]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(r[h].ljust(w) for h, w in zip(head, widths, strict=True)) for r in rows]
    return "\n".join(lines) + "\n"


def _bindings(args: argparse.Namespace) -> list[AclBinding]:
    resources = _resources(args)
    if not resources:
        raise AdminError("name a resource: --topic, --group, --transactional-id or --cluster")
    if not args.operation:
        raise AdminError("name at least one --operation")
    grants = [(p, args.allow_host, AclPermissionType.ALLOW) for p in args.allow_principal or ()]
    grants += [(p, args.deny_host, AclPermissionType.DENY) for p in args.deny_principal or ()]
    if not grants:
        raise AdminError("name at least one --allow-principal or --deny-principal (e.g. User:alice)")
    pattern = _PATTERNS[args.resource_pattern_type]
    if pattern not in (ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED):
        raise AdminError("--resource-pattern-type must be literal or prefixed to add or remove")
    return [
        AclBinding(rtype, name, pattern, principal, host, op, perm)
        for (rtype, name), (principal, host, perm), op in itertools.product(resources, grants, args.operation)
    ]


def _acls_add(args: argparse.Namespace) -> int:
    bindings = _bindings(args)
    admin = _admin(args)
    _wait(admin.create_acls(bindings, request_timeout=args.timeout), "add ACL", args.timeout)
    rows = [_row(b) for b in bindings]
    _emit(args, {"added": rows}, f"added {len(rows)} ACL(s)\n" + _table(rows))
    return 0


def _acls_remove(args: argparse.Namespace) -> int:
    filters = [
        AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
                         b.permission_type)
        for b in _bindings(args)
    ]
    admin = _admin(args)
    futures = admin.delete_acls(filters, request_timeout=args.timeout)
    removed = [b for f in futures.values() for b in f.result(args.timeout)]
    rows = [_row(b) for b in removed]
    _emit(args, {"removed": rows}, f"removed {len(rows)} ACL(s)\n" + _table(rows))
    return 0


def _acls_list(args: argparse.Namespace) -> int:
    admin = _admin(args)
    pattern = _PATTERNS[args.resource_pattern_type or "any"]
    principal = args.principal
    wanted: list[tuple[ResourceType, str | None]] = list(_resources(args)) or [(ResourceType.ANY, None)]
    found: dict[str, AclBinding] = {}
    for rtype, name in wanted:
        # None matches anything (the stubs say str)
        f = AclBindingFilter(rtype, name, pattern, principal, None, AclOperation.ANY, AclPermissionType.ANY)  # type: ignore[arg-type]
        for b in admin.describe_acls(f, request_timeout=args.timeout).result(args.timeout):
            found.setdefault(str(b), b)
    rows = sorted((_row(b) for b in found.values()), key=lambda r: tuple(r.values()))
    _emit(args, {"acls": rows}, _table(rows))
    return 0


def _resource_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topic", action="append", metavar="NAME", help="a topic (repeatable)")
    p.add_argument("--group", action="append", metavar="NAME", help="a consumer group (repeatable)")
    p.add_argument("--transactional-id", action="append", metavar="ID", help="a transactional id (repeatable)")
    p.add_argument("--cluster", action="store_true", help="the cluster itself (kafka-cluster)")


def _grant_options(p: argparse.ArgumentParser) -> None:
    _resource_options(p)
    p.add_argument("--resource-pattern-type", choices=["literal", "prefixed"], default="literal",
                   help="literal: the names exactly (* for all); prefixed: every name starting with them")
    p.add_argument("--allow-principal", action="append", metavar="TYPE:NAME", help="e.g. User:alice, User:*")
    p.add_argument("--deny-principal", action="append", metavar="TYPE:NAME")
    p.add_argument("--allow-host", default="*", help="client IP address the allow applies to (default *)")
    p.add_argument("--deny-host", default="*", help="client IP address the deny applies to (default *)")
    p.add_argument("--operation", action="append", type=_operation, metavar="OP",
                   help="Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs, "
                        "AlterConfigs, IdempotentWrite, All (repeatable)")


def add_acls_command(sub: Any) -> None:
    a = sub.add_parser("acls", help="list, add and remove ACLs (the broker needs authorizer.class.name)")
    acts = a.add_subparsers(dest="action", required=True)
    p = acts.add_parser("list", help="ACL bindings, all or those of the resources named")
    _common(p)
    _resource_options(p)
    p.add_argument("--resource-pattern-type", choices=sorted(_PATTERNS), default=None,
                   help="any (default), literal, prefixed, or match (every binding covering the names)")
    p.add_argument("--principal", metavar="TYPE:NAME", help="only this principal's bindings")
    p.set_defaults(func=_run(_acls_list))
    p = acts.add_parser("add", help="grant or deny operations on resources")
    _common(p)
    _grant_options(p)
    p.set_defaults(func=_run(_acls_add))
    p = acts.add_parser("remove", help="remove exactly the bindings these options describe")
    _common(p)
    _grant_options(p)
    p.set_defaults(func=_run(_acls_remove))
