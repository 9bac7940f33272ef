"""The broker's ACL store and audit log: durable writes, a refused damaged file, a rate-limited audit line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from loosely.broker.acls import AUDIT_INTERVAL_MS, BrokerAcls, client_host
from loosely.broker.config import split_kafka_settings
from loosely.broker.context import current_peer, current_principal
from loosely.security.authorizer import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    PatternType,
    PermissionType,
    ResourceType,
)
from loosely.storage.fs import FileSystem, OsFileSystem
from loosely.testing import FakeClock, FaultyFileSystem

READ_ORDERS = AclBinding(
    ResourceType.TOPIC, "orders", PatternType.LITERAL, "User:alice", "*", AclOperation.READ, PermissionType.ALLOW
)


def store(data: Path, fs: FileSystem | None = None, clock: FakeClock | None = None) -> BrokerAcls:
    return BrokerAcls(fs or OsFileSystem(), str(data), clock or FakeClock(), super_users=frozenset(),
                      allow_if_no_acl=False)


def test_changes_are_on_disk_before_they_return(tmp_path: Path) -> None:
    a = store(tmp_path)
    a.add([READ_ORDERS, READ_ORDERS])
    assert store(tmp_path).authorizer.bindings() == [READ_ORDERS]
    assert a.delete([AclBindingFilter(principal="User:alice")]) == [[READ_ORDERS]]
    assert store(tmp_path).authorizer.bindings() == []


def test_a_failed_write_changes_nothing(tmp_path: Path) -> None:
    fs = FaultyFileSystem(1)
    a = store(tmp_path, fs)
    a.add([READ_ORDERS])
    fs.fail("write_atomic", path_contains="acls.json")
    other = AclBinding(ResourceType.GROUP, "g", PatternType.PREFIXED, "User:*", "*", AclOperation.ALL,
                       PermissionType.DENY)
    with pytest.raises(OSError):
        a.add([other])
    with pytest.raises(OSError):
        a.delete([AclBindingFilter()])
    assert a.authorizer.bindings() == [READ_ORDERS]  # memory rolled back to what the disk holds
    assert store(tmp_path).authorizer.bindings() == [READ_ORDERS]


def test_a_damaged_file_is_refused_not_ignored(tmp_path: Path) -> None:
    (tmp_path / "acls.json").write_text('{"version": 1, "acls": [[2, "t", 3]]}')
    with pytest.raises(ValueError, match=r"acls\.json"):
        store(tmp_path)


def test_denials_are_audited_at_most_once_per_interval(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    a = store(tmp_path, clock=clock)
    a.add([READ_ORDERS])
    current_principal.set("User:mallory")
    current_peer.set("10.1.2.3:5555")
    caplog.set_level(logging.INFO, logger="loosely.broker.audit")
    for _ in range(1000):
        assert not a.check(AclOperation.READ, ResourceType.TOPIC, "orders")
    assert not a.check(AclOperation.DESCRIBE, ResourceType.TOPIC, "orders", log_denied=False)
    clock.advance(AUDIT_INTERVAL_MS)
    assert not a.check(AclOperation.WRITE, ResourceType.TOPIC, "orders")
    lines = [r.getMessage() for r in caplog.records if r.name == "loosely.broker.audit"]
    assert len(lines) == 2
    assert "Principal = User:mallory is Denied operation = READ from host = 10.1.2.3" in lines[0]
    assert "999 more like this" in lines[1]
    assert a.statistics() == {"acls": 1, "super_users": 0, "denied_total": 1001}
    assert a.denied == {("READ", "TOPIC"): 1000, ("WRITE", "TOPIC"): 1}  # log_denied=False is not a denial
    current_principal.set("User:alice")
    assert a.check(AclOperation.DESCRIBE, ResourceType.TOPIC, "orders")  # READ implies DESCRIBE


def test_client_host() -> None:
    assert client_host("[::1]:9092") == "::1"
    assert client_host("127.0.0.1:1") == "127.0.0.1"


def test_authorizer_settings_as_kafka_names_them() -> None:
    settings, _, unknown = split_kafka_settings({
        "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
        "super.users": "User:admin;User:CN=ops,O=acme",
        "allow.everyone.if.no.acl.found": "true",
    })
    assert not unknown
    assert settings == {
        "authorizer_class": "kafka.security.authorizer.AclAuthorizer",
        "super_users": frozenset({"User:admin", "User:CN=ops,O=acme"}),
        "allow_everyone_if_no_acl_found": True,
    }
    assert split_kafka_settings({"authorizer.class.name": ""})[0] == {"authorizer_class": None}
    with pytest.raises(ValueError, match=r"authorizer\.class\.name: 'com\.example\.Mine' is not an authorizer"):
        split_kafka_settings({"authorizer.class.name": "com.example.Mine"})
