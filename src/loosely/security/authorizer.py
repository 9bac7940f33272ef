"""ACLs and the decision they make, with the semantics of Kafka's StandardAuthorizer. Pure: no I/O, no clock.

Theory of operation
-------------------
An :class:`AclBinding` says "principal P from host H may (ALLOW) or may not (DENY) do operation O on resources
matching pattern R". A pattern is a resource type and a name that is either LITERAL (the exact name, or ``*`` for
every name of the type) or PREFIXED (every name starting with it). Principals are strings ``Type:name``;
``User:*`` matches every principal. Hosts are IP addresses as the broker sees the client, or ``*``.

:meth:`Authorizer.authorize` decides one action the way StandardAuthorizer does:

1. A principal listed in ``super.users`` is allowed everything.
2. The ACLs whose pattern matches the resource are the *resource ACLs*. Among them, those whose principal
   (the caller or ``User:*``), host (the caller's or ``*``) and operation match are *matching*. An ACL's
   operation matches when it is ALL or the requested one; an ALLOW ACL also matches DESCRIBE when its operation
   is READ, WRITE, DELETE or ALTER, and DESCRIBE_CONFIGS when it is ALTER_CONFIGS (a DENY never implies: denying
   READ does not deny DESCRIBE).
3. Any matching DENY: denied. Else any matching ALLOW: allowed. Else, if there are resource ACLs (for anyone,
   any operation): denied. Else, no ACL was found for the resource: ``allow.everyone.if.no.acl.found`` decides.

Note the last rule's reach: an ACL for Bob on topic ``orders`` makes ``orders`` closed to Alice even with
``allow.everyone.if.no.acl.found=true``, while a topic nobody wrote an ACL for stays open.

The index keeps, per resource type, the LITERAL ACLs by name and the PREFIXED ACLs by prefix plus the set of
prefix lengths in use, so one decision costs a few dict look-ups (one per distinct prefix length) whatever the
number of ACLs. :class:`AclBindingFilter` is what DescribeAcls and DeleteAcls match with (ANY and MATCH
pattern types, None for "any" in the name, principal and host), as Kafka's AclBindingFilter does.

The numeric codes of every enum are Kafka's wire codes (org.apache.kafka.common.acl / resource).

>>> az = Authorizer(allow_if_no_acl=False)
>>> az.add(AclBinding(ResourceType.TOPIC, "orders", PatternType.LITERAL, "User:alice", "*",
...                   AclOperation.READ, PermissionType.ALLOW))
True
>>> az.authorize("User:alice", "10.0.0.1", AclOperation.DESCRIBE, ResourceType.TOPIC, "orders")
<Decision.ALLOWED: 1>
>>> az.authorize("User:bob", "10.0.0.1", AclOperation.READ, ResourceType.TOPIC, "orders")
<Decision.DENIED: 0>
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Final

__all__ = [
    "CLUSTER_NAME",
    "WILDCARD",
    "WILDCARD_PRINCIPAL",
    "AclBinding",
    "AclBindingFilter",
    "AclOperation",
    "Authorizer",
    "Decision",
    "InvalidAclError",
    "PatternType",
    "PermissionType",
    "ResourceType",
    "UnbuildableAclError",
    "decode_bindings",
    "encode_bindings",
    "parse_super_users",
    "validate_binding",
    "validate_filter",
]

WILDCARD: Final = "*"  # a LITERAL name or a host matching everything
WILDCARD_PRINCIPAL: Final = "User:*"
CLUSTER_NAME: Final = "kafka-cluster"  # the one name a CLUSTER resource has


class ResourceType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclOperation(IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14
    TWO_PHASE_COMMIT = 15


class PermissionType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


class Decision(Enum):
    DENIED = 0
    ALLOWED = 1


# What an ALLOW ACL for one of these operations also grants (StandardAuthorizer's implied operations).
_IMPLIES: Final[dict[AclOperation, frozenset[AclOperation]]] = {
    AclOperation.DESCRIBE: frozenset(
        {AclOperation.DESCRIBE, AclOperation.READ, AclOperation.WRITE, AclOperation.DELETE, AclOperation.ALTER}
    ),
    AclOperation.DESCRIBE_CONFIGS: frozenset({AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}),
}


class InvalidAclError(ValueError):
    """A binding or filter Kafka would refuse with INVALID_REQUEST; the message says why."""


class UnbuildableAclError(InvalidAclError):
    """A binding with a filter value (ANY, MATCH) in it, which Kafka refuses with UNKNOWN_SERVER_ERROR."""


@dataclass(frozen=True, slots=True)
class AclBinding:
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: AclOperation
    permission: PermissionType

    def matches_resource(self, resource_type: ResourceType, name: str) -> bool:
        """Whether this ACL's pattern covers the resource (a LITERAL action on it)."""
        if resource_type != self.resource_type:
            return False
        if self.pattern_type == PatternType.LITERAL:
            return self.resource_name in (name, WILDCARD)
        return self.pattern_type == PatternType.PREFIXED and name.startswith(self.resource_name)

    def decides(self, principal: str, host: str, operation: AclOperation) -> Decision | None:
        """This ACL's verdict on the caller and operation, None when it does not apply (the resource is not checked)."""
        if self.principal not in (principal, WILDCARD_PRINCIPAL):
            return None
        if self.host not in (WILDCARD, host):
            return None
        allow = self.permission == PermissionType.ALLOW
        if self.operation != AclOperation.ALL:
            implied = _IMPLIES.get(operation) if allow else None
            if implied is not None:
                if self.operation not in implied:
                    return None
            elif self.operation != operation:
                return None
        return Decision.ALLOWED if allow else Decision.DENIED


@dataclass(frozen=True, slots=True)
class AclBindingFilter:
    """Which bindings DescribeAcls returns and DeleteAcls removes. None fields match anything."""

    resource_type: ResourceType = ResourceType.ANY
    resource_name: str | None = None
    pattern_type: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: AclOperation = AclOperation.ANY
    permission: PermissionType = PermissionType.ANY

    def matches(self, b: AclBinding) -> bool:
        if self.resource_type not in (ResourceType.ANY, b.resource_type):
            return False
        if self.pattern_type not in (PatternType.ANY, PatternType.MATCH) and self.pattern_type != b.pattern_type:
            return False
        if self.resource_name is not None:
            if self.pattern_type in (PatternType.ANY, b.pattern_type):
                if self.resource_name != b.resource_name:
                    return False
            elif not b.matches_resource(b.resource_type, self.resource_name):  # MATCH: patterns covering the name
                return False
        if self.principal is not None and self.principal != b.principal:
            return False
        if self.host is not None and self.host != b.host:
            return False
        if self.operation not in (AclOperation.ANY, b.operation):
            return False
        return self.permission in (PermissionType.ANY, b.permission)


def validate_binding(b: AclBinding) -> None:
    """Raise :class:`InvalidAclError` for a binding CreateAcls refuses, with Kafka's messages.

    A filter value in a binding (ANY, MATCH) raises :class:`UnbuildableAclError`: Kafka cannot even construct such a
    binding and answers UNKNOWN_SERVER_ERROR for it, not INVALID_REQUEST.
    """
    filters = (
        b.resource_type == ResourceType.ANY,
        b.pattern_type in (PatternType.ANY, PatternType.MATCH),
        b.operation == AclOperation.ANY,
        b.permission == PermissionType.ANY,
    )
    if any(filters):
        raise UnbuildableAclError(f"a binding cannot hold a filter value: {b}")
    if b.resource_type == ResourceType.UNKNOWN:
        raise InvalidAclError("Invalid resourceType UNKNOWN")
    if b.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
        raise InvalidAclError(f"Invalid patternType {b.pattern_type.name}")
    if b.operation == AclOperation.UNKNOWN:
        raise InvalidAclError("Invalid operation UNKNOWN")
    if b.permission not in (PermissionType.ALLOW, PermissionType.DENY):
        raise InvalidAclError(f"Invalid permissionType {b.permission.name}")
    if b.resource_type == ResourceType.CLUSTER and b.resource_name != CLUSTER_NAME:
        raise InvalidAclError(f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}")
    if not b.resource_name:
        raise InvalidAclError("Invalid empty resource name")
    if ":" not in b.principal:
        raise InvalidAclError(
            f"Could not parse principal from `{b.principal}` (no colon is present separating the principal type "
            "from the principal name)"
        )


def validate_filter(f: AclBindingFilter) -> None:
    """Raise :class:`InvalidAclError` for a filter with an UNKNOWN field (DeleteAcls refuses it)."""
    if f.resource_type == ResourceType.UNKNOWN or f.pattern_type == PatternType.UNKNOWN:
        raise InvalidAclError("Unknown patternFilter.")
    if f.operation == AclOperation.UNKNOWN or f.permission == PermissionType.UNKNOWN:
        raise InvalidAclError("Unknown entryFilter.")


def parse_super_users(value: str) -> frozenset[str]:
    """``super.users``: principals separated by semicolons.

    >>> sorted(parse_super_users("User:admin; User:ops"))
    ['User:admin', 'User:ops']
    """
    return frozenset(p.strip() for p in value.split(";") if p.strip())


class _TypeIndex:
    """The ACLs of one resource type: LITERAL by name, PREFIXED by prefix, and the prefix lengths in use."""

    __slots__ = ("literal", "prefix_lengths", "prefixed")

    def __init__(self) -> None:
        self.literal: dict[str, list[AclBinding]] = {}
        self.prefixed: dict[str, list[AclBinding]] = {}
        self.prefix_lengths: list[int] = []  # sorted, distinct

    def resource_acls(self, name: str) -> Iterator[list[AclBinding]]:
        """The lists of ACLs whose pattern covers ``name``."""
        found = self.literal.get(name)
        if found:
            yield found
        if name != WILDCARD:
            found = self.literal.get(WILDCARD)
            if found:
                yield found
        for n in self.prefix_lengths:
            if n > len(name):
                break
            found = self.prefixed.get(name[:n])
            if found:
                yield found


class Authorizer:
    """The ACLs in memory and the decisions they make. Not thread-safe: the broker calls it from its event loop."""

    def __init__(
        self,
        *,
        super_users: Iterable[str] = (),
        allow_if_no_acl: bool = False,
        bindings: Iterable[AclBinding] = (),
    ) -> None:
        self.super_users = frozenset(super_users)
        self.allow_if_no_acl = allow_if_no_acl
        self._all: dict[AclBinding, None] = {}  # insertion-ordered set
        self._by_type: dict[ResourceType, _TypeIndex] = {}
        for b in bindings:
            self.add(b)

    def __len__(self) -> int:
        return len(self._all)

    def bindings(self) -> list[AclBinding]:
        return list(self._all)

    def add(self, b: AclBinding) -> bool:
        """Add a binding (validated by the caller); False when it was there already."""
        if b in self._all:
            return False
        self._all[b] = None
        idx = self._by_type.setdefault(b.resource_type, _TypeIndex())
        if b.pattern_type == PatternType.LITERAL:
            idx.literal.setdefault(b.resource_name, []).append(b)
        else:
            bucket = idx.prefixed.setdefault(b.resource_name, [])
            bucket.append(b)
            if len(bucket) == 1 and len(b.resource_name) not in idx.prefix_lengths:
                idx.prefix_lengths.append(len(b.resource_name))
                idx.prefix_lengths.sort()
        return True

    def remove(self, b: AclBinding) -> bool:
        if b not in self._all:
            return False
        del self._all[b]
        idx = self._by_type[b.resource_type]
        table = idx.literal if b.pattern_type == PatternType.LITERAL else idx.prefixed
        bucket = table[b.resource_name]
        bucket.remove(b)
        if not bucket:
            del table[b.resource_name]
            n = len(b.resource_name)
            if table is idx.prefixed and not any(len(p) == n for p in idx.prefixed):
                idx.prefix_lengths.remove(n)
        return True

    def matching(self, f: AclBindingFilter) -> list[AclBinding]:
        return [b for b in self._all if f.matches(b)]

    def authorize(
        self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType, name: str
    ) -> Decision:
        if principal in self.super_users:
            return Decision.ALLOWED
        idx = self._by_type.get(resource_type)
        allowed = found = False
        if idx is not None:
            for acls in idx.resource_acls(name):
                found = True
                for acl in acls:
                    verdict = acl.decides(principal, host, operation)
                    if verdict is Decision.DENIED:
                        return verdict
                    if verdict is Decision.ALLOWED:
                        allowed = True
        if allowed:
            return Decision.ALLOWED
        if found:
            return Decision.DENIED
        return Decision.ALLOWED if self.allow_if_no_acl else Decision.DENIED

    def allows(
        self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType, name: str
    ) -> bool:
        return self.authorize(principal, host, operation, resource_type, name) is Decision.ALLOWED

    def authorize_by_resource_type(
        self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType
    ) -> Decision:
        """Whether the caller may do ``operation`` on *some* resource of the type (Kafka's default implementation
        of Authorizer.authorizeByResourceType, used where an idempotent producer lacks IDEMPOTENT_WRITE): allowed
        when a name nobody has ACLs for would be allowed, or when an ALLOW for the caller is not cancelled by a
        DENY for the same name or a DENY prefix of it."""
        if self.authorize(principal, host, operation, resource_type, "hardcode") is Decision.ALLOWED:
            return Decision.ALLOWED
        deny_literal: set[str] = set()
        deny_prefixed: set[str] = set()
        allows: list[AclBinding] = []
        idx = self._by_type.get(resource_type)
        candidates = [] if idx is None else [*idx.literal.values(), *idx.prefixed.values()]
        for acls in candidates:
            for b in acls:
                if b.host not in (host, WILDCARD) or b.principal not in (principal, WILDCARD_PRINCIPAL):
                    continue
                if b.operation not in (operation, AclOperation.ALL):
                    continue
                if b.permission == PermissionType.DENY:
                    if b.pattern_type == PatternType.LITERAL:
                        if b.resource_name == WILDCARD:
                            return Decision.DENIED
                        deny_literal.add(b.resource_name)
                    else:
                        deny_prefixed.add(b.resource_name)
                elif b.permission == PermissionType.ALLOW:
                    if b.pattern_type == PatternType.LITERAL and b.resource_name == WILDCARD:
                        return Decision.ALLOWED
                    allows.append(b)
        for b in allows:
            if b.pattern_type == PatternType.LITERAL and b.resource_name in deny_literal:
                continue
            name = b.resource_name
            if any(name[:n] in deny_prefixed for n in range(1, len(name) + 1)):
                continue
            return Decision.ALLOWED
        return Decision.DENIED

    def statistics(self) -> dict[str, int]:
        return {"acls": len(self._all), "super_users": len(self.super_users)}


# --- the on-disk form (the broker writes it atomically; see loosely.broker.acls) ----------------------------------

_FORMAT_VERSION: Final = 1


def encode_bindings(bindings: Iterable[AclBinding]) -> bytes:
    """``{"version": 1, "acls": [[type, name, pattern, principal, host, operation, permission], ...]}`` in UTF-8
    JSON, enums by Kafka's numeric code, so the file is readable and stable across loosely versions."""
    rows = [
        [
            int(b.resource_type),
            b.resource_name,
            int(b.pattern_type),
            b.principal,
            b.host,
            int(b.operation),
            int(b.permission),
        ]
        for b in bindings
    ]
    return json.dumps({"version": _FORMAT_VERSION, "acls": rows}, separators=(",", ":")).encode()


def decode_bindings(data: bytes) -> list[AclBinding]:
    """The inverse of :func:`encode_bindings`; :class:`InvalidAclError` for anything else."""
    try:
        doc = json.loads(data)
        if doc.get("version") != _FORMAT_VERSION:
            raise InvalidAclError(f"unknown ACL file version {doc.get('version')!r}")
        out = []
        for rt, name, pt, principal, host, op, perm in doc["acls"]:
            b = AclBinding(
                ResourceType(rt),
                str(name),
                PatternType(pt),
                str(principal),
                str(host),
                AclOperation(op),
                PermissionType(perm),
            )
            validate_binding(b)
            out.append(b)
        return out
    except InvalidAclError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise InvalidAclError(f"malformed ACL file: {e}") from None
