"""The broker's ACLs: the authorizer in memory, its durable copy in the data directory, and the audit log.

Theory of operation
-------------------
``authorizer.class.name`` set to Kafka's StandardAuthorizer (or the older AclAuthorizer name) turns authorization
on; then the broker builds one :class:`BrokerAcls` at start. The decisions are made by the pure
:class:`loosely.security.authorizer.Authorizer`; this module adds what needs I/O:

* **Durability.** Every change rewrites ``<data_dir>/acls.json`` whole with ``FileSystem.write_atomic`` (temporary
  file, fsync, rename, fsync of the directory) before CreateAcls/DeleteAcls answer, so an acknowledged change
  survives ``kill -9`` and a crash mid-write leaves the old file. The file is small (a binding is ~60 bytes;
  100,000 ACLs are a few MiB) and changes are rare, so rewriting it whole is simpler than a log. A file that does
  not parse stops the broker at start with one line naming it: starting with no ACLs would open every resource.
* **The caller.** Handlers ask :func:`allowed` with the operation and resource; the principal and client host
  come from the context variables the dispatcher sets per request (``current_principal``, ``current_peer``).
  Without an authorizer every call answers True at the cost of one attribute test.
* **Audit.** A denial that refuses something the client asked for is logged on ``loosely.broker.audit`` at INFO,
  at most one line per ``AUDIT_INTERVAL_MS`` (the next line says how many were left out), so a client retrying
  in a loop cannot flood the log. Checks that only filter (Metadata hiding topics, authorized-operations fields)
  pass ``log_denied=False``, as Kafka's logIfDenied.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Final

from loosely.broker._admission import LogEvery
from loosely.broker.context import current_peer, current_principal
from loosely.security.authorizer import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    Authorizer,
    Decision,
    InvalidAclError,
    ResourceType,
    decode_bindings,
    encode_bindings,
)
from loosely.storage.clock import Clock
from loosely.storage.fs import FileSystem

if TYPE_CHECKING:
    from loosely.broker.context import BrokerContext

__all__ = [
    "ACL_FILE",
    "AUDIT_INTERVAL_MS",
    "SUPPORTED_OPERATIONS",
    "BrokerAcls",
    "allowed",
    "authorized_operations",
    "client_host",
]

ACL_FILE: Final = "acls.json"
AUDIT_INTERVAL_MS: Final = 10_000

audit_log = logging.getLogger("loosely.broker.audit")


def client_host(peer: str) -> str:
    """The IP address of ``host:port`` (``[::1]:5`` for IPv6), as ACL host fields name clients.

    >>> client_host("127.0.0.1:50000"), client_host("[::1]:5"), client_host("?")
    ('127.0.0.1', '::1', '?')
    """
    host, sep, _ = peer.rpartition(":")
    return host.strip("[]") if sep else peer


class BrokerAcls:
    def __init__(
        self, fs: FileSystem, data_dir: str, clock: Clock, *, super_users: frozenset[str], allow_if_no_acl: bool
    ) -> None:
        self._fs = fs
        self.path = os.path.join(data_dir, ACL_FILE)
        bindings: list[AclBinding] = []
        if fs.exists(self.path):
            try:
                bindings = decode_bindings(fs.read_file(self.path))
            except InvalidAclError as e:
                raise ValueError(
                    f"{self.path}: {e} (fix or remove the file; refusing to start without its ACLs)"
                ) from None
        self.authorizer = Authorizer(super_users=super_users, allow_if_no_acl=allow_if_no_acl, bindings=bindings)
        self._audit = LogEvery(audit_log, clock, AUDIT_INTERVAL_MS)
        self.denied_total = 0
        # denials by (operation, resource type), for the metrics: at most 13 x 7 series, names never a label
        self.denied: dict[tuple[str, str], int] = {}

    def add(self, bindings: list[AclBinding]) -> None:
        """Add validated bindings and make them durable (OSError from the disk propagates; memory is rolled back)."""
        added = [b for b in bindings if self.authorizer.add(b)]
        if added:
            try:
                self._save()
            except OSError:
                for b in added:
                    self.authorizer.remove(b)
                raise

    def delete(self, filters: list[AclBindingFilter]) -> list[list[AclBinding]]:
        """Remove what each filter matches (a binding matched by two filters is reported by both, as Kafka does)."""
        matched = [self.authorizer.matching(f) for f in filters]
        removed = [b for b in {b: None for m in matched for b in m} if self.authorizer.remove(b)]
        if removed:
            try:
                self._save()
            except OSError:
                for b in removed:
                    self.authorizer.add(b)
                raise
        return matched

    def statistics(self) -> dict[str, int]:
        return {**self.authorizer.statistics(), "denied_total": self.denied_total}

    def _save(self) -> None:
        data = encode_bindings(self.authorizer.bindings())
        self._fs.write_atomic(self.path, data)
        assert decode_bindings(self._fs.read_file(self.path)) == self.authorizer.bindings()

    def check(
        self, operation: AclOperation, resource_type: ResourceType, name: str, *, log_denied: bool = True
    ) -> bool:
        principal = current_principal.get()
        peer = current_peer.get()
        decision = self.authorizer.authorize(principal, client_host(peer), operation, resource_type, name)
        if decision is Decision.ALLOWED:
            return True
        if log_denied:
            self.denied_total += 1
            kind = (operation.name, resource_type.name)
            self.denied[kind] = self.denied.get(kind, 0) + 1
            self._audit(
                logging.INFO,
                "Principal = %s is Denied operation = %s from host = %s on resource = %s:LITERAL:%s",
                principal,
                operation.name,
                client_host(peer),
                resource_type.name,
                name,
            )
        return False

    def check_any(self, operation: AclOperation, resource_type: ResourceType) -> bool:
        """Whether the caller may do the operation on some resource of the type (authorizeByResourceType)."""
        decision = self.authorizer.authorize_by_resource_type(
            current_principal.get(), client_host(current_peer.get()), operation, resource_type
        )
        return decision is Decision.ALLOWED


# What Kafka reports in authorized-operations fields for each resource type (AclEntry.supportedOperations).
SUPPORTED_OPERATIONS: Final[dict[ResourceType, tuple[AclOperation, ...]]] = {
    ResourceType.TOPIC: (
        AclOperation.READ,
        AclOperation.WRITE,
        AclOperation.CREATE,
        AclOperation.DESCRIBE,
        AclOperation.DELETE,
        AclOperation.ALTER,
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
    ),
    ResourceType.GROUP: (
        AclOperation.READ,
        AclOperation.DESCRIBE,
        AclOperation.DELETE,
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
    ),
    ResourceType.CLUSTER: (
        AclOperation.CREATE,
        AclOperation.CLUSTER_ACTION,
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
        AclOperation.IDEMPOTENT_WRITE,
        AclOperation.ALTER,
        AclOperation.DESCRIBE,
    ),
    ResourceType.TRANSACTIONAL_ID: (AclOperation.DESCRIBE, AclOperation.WRITE, AclOperation.TWO_PHASE_COMMIT),
}


def authorized_operations(ctx: BrokerContext, resource_type: ResourceType, name: str) -> int:
    """The 32-bit field of operations the caller may do on the resource (bit n set: operation code n allowed);
    every supported operation when ACLs are off, as Kafka answers."""
    ops = SUPPORTED_OPERATIONS[resource_type]
    acls = ctx.acls
    if acls is not None:
        ops = tuple(op for op in ops if acls.check(op, resource_type, name, log_denied=False))
    return sum(1 << op for op in ops)


def allowed(
    ctx: BrokerContext,
    operation: AclOperation,
    resource_type: ResourceType,
    name: str,
    *,
    log_denied: bool = True,
) -> bool:
    """Whether the request being handled may do ``operation`` on the resource; True when ACLs are off."""
    acls = ctx.acls
    return acls is None or acls.check(operation, resource_type, name, log_denied=log_denied)
