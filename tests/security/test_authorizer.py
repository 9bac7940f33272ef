"""The pure authorizer: every StandardAuthorizer rule, and the indexed decision against a brute-force reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loosely.security.authorizer import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    Authorizer,
    Decision,
    InvalidAclError,
    PatternType,
    PermissionType,
    ResourceType,
    decode_bindings,
    encode_bindings,
    parse_super_users,
    validate_binding,
    validate_filter,
)

Op = AclOperation
T = ResourceType
P = PatternType
ALLOW, DENY = PermissionType.ALLOW, PermissionType.DENY
A, D = Decision.ALLOWED, Decision.DENIED


def acl(
    name: str,
    op: AclOperation,
    perm: PermissionType = ALLOW,
    *,
    principal: str = "User:alice",
    host: str = "*",
    pattern: PatternType = P.LITERAL,
    rtype: ResourceType = T.TOPIC,
) -> AclBinding:
    return AclBinding(rtype, name, pattern, principal, host, op, perm)


def decide(
    az: Authorizer,
    op: AclOperation,
    name: str,
    *,
    principal: str = "User:alice",
    host: str = "10.0.0.1",
    rtype: ResourceType = T.TOPIC,
) -> Decision:
    return az.authorize(principal, host, op, rtype, name)


def test_no_acl_found_follows_the_setting() -> None:
    assert decide(Authorizer(allow_if_no_acl=False), Op.READ, "t") is D
    assert decide(Authorizer(allow_if_no_acl=True), Op.READ, "t") is A


def test_an_acl_for_someone_else_closes_the_resource_even_when_everyone_is_allowed() -> None:
    az = Authorizer(allow_if_no_acl=True, bindings=[acl("t", Op.WRITE, principal="User:bob")])
    assert decide(az, Op.READ, "t") is D  # resource ACLs exist: the default no longer applies
    assert decide(az, Op.READ, "other") is A  # no ACL on this one
    # A prefixed ACL or the wildcard counts as an ACL on every name it covers.
    az = Authorizer(allow_if_no_acl=True, bindings=[acl("o", Op.WRITE, principal="User:bob", pattern=P.PREFIXED)])
    assert decide(az, Op.READ, "orders") is D
    assert decide(az, Op.READ, "t") is A
    az = Authorizer(allow_if_no_acl=True, bindings=[acl("*", Op.WRITE, principal="User:bob")])
    assert decide(az, Op.READ, "anything") is D
    assert decide(az, Op.READ, "g", rtype=T.GROUP) is A  # another resource type


def test_literal_prefixed_and_wildcard_patterns() -> None:
    az = Authorizer(bindings=[acl("orders", Op.READ), acl("pay", Op.WRITE, pattern=P.PREFIXED), acl("*", Op.CREATE)])
    assert decide(az, Op.READ, "orders") is A
    assert decide(az, Op.READ, "orders2") is D  # literal is exact
    assert decide(az, Op.WRITE, "payments") is A
    assert decide(az, Op.WRITE, "pay") is A
    assert decide(az, Op.WRITE, "pa") is D
    assert decide(az, Op.CREATE, "whatever") is A
    # A literal name that is a prefix of the resource does not match it; a literal "pay*" is not a pattern.
    az = Authorizer(bindings=[acl("pay", Op.READ), acl("pay*", Op.READ)])
    assert decide(az, Op.READ, "payments") is D


def test_deny_wins_over_allow_from_any_pattern() -> None:
    az = Authorizer(bindings=[acl("orders", Op.READ), acl("ord", Op.READ, DENY, pattern=P.PREFIXED)])
    assert decide(az, Op.READ, "orders") is D
    az = Authorizer(bindings=[acl("orders", Op.ALL), acl("*", Op.READ, DENY, principal="User:*")])
    assert decide(az, Op.READ, "orders") is D
    assert decide(az, Op.WRITE, "orders") is A


def test_all_matches_every_operation_for_allow_and_deny() -> None:
    az = Authorizer(bindings=[acl("t", Op.ALL)])
    for op in (Op.READ, Op.WRITE, Op.CREATE, Op.DELETE, Op.ALTER, Op.DESCRIBE, Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS):
        assert decide(az, op, "t") is A
    az = Authorizer(bindings=[acl("t", Op.ALL), acl("t", Op.ALL, DENY, host="10.0.0.1")])
    assert decide(az, Op.DESCRIBE, "t") is D
    assert decide(az, Op.DESCRIBE, "t", host="10.0.0.2") is A


@pytest.mark.parametrize("op", [Op.READ, Op.WRITE, Op.DELETE, Op.ALTER, Op.DESCRIBE])
def test_describe_is_implied_by_read_write_delete_alter(op: AclOperation) -> None:
    assert decide(Authorizer(bindings=[acl("t", op)]), Op.DESCRIBE, "t") is A


@pytest.mark.parametrize("op", [Op.CREATE, Op.ALTER_CONFIGS, Op.DESCRIBE_CONFIGS, Op.IDEMPOTENT_WRITE])
def test_describe_is_not_implied_by_others(op: AclOperation) -> None:
    assert decide(Authorizer(bindings=[acl("t", op)]), Op.DESCRIBE, "t") is D


def test_describe_configs_is_implied_by_alter_configs_only() -> None:
    assert decide(Authorizer(bindings=[acl("t", Op.ALTER_CONFIGS)]), Op.DESCRIBE_CONFIGS, "t") is A
    assert decide(Authorizer(bindings=[acl("t", Op.ALTER)]), Op.DESCRIBE_CONFIGS, "t") is D
    # Implication runs one way: READ does not grant WRITE, DESCRIBE does not grant READ.
    assert decide(Authorizer(bindings=[acl("t", Op.DESCRIBE)]), Op.READ, "t") is D


def test_a_deny_does_not_imply() -> None:
    az = Authorizer(bindings=[acl("t", Op.DESCRIBE), acl("t", Op.READ, DENY)])
    assert decide(az, Op.DESCRIBE, "t") is A
    assert decide(az, Op.READ, "t") is D
    az = Authorizer(bindings=[acl("t", Op.DESCRIBE_CONFIGS), acl("t", Op.ALTER_CONFIGS, DENY)])
    assert decide(az, Op.DESCRIBE_CONFIGS, "t") is A


def test_principal_and_host_matching() -> None:
    az = Authorizer(bindings=[acl("t", Op.READ, principal="User:*"), acl("t", Op.WRITE, host="10.0.0.9")])
    assert decide(az, Op.READ, "t", principal="User:anyone") is A
    assert decide(az, Op.WRITE, "t", host="10.0.0.9") is A
    assert decide(az, Op.WRITE, "t", host="10.0.0.1") is D
    # Only the User:* wildcard exists; another type's wildcard is a plain principal.
    az = Authorizer(bindings=[acl("t", Op.READ, principal="Group:*")])
    assert decide(az, Op.READ, "t") is D


def test_super_users_pass_everything_even_denies() -> None:
    su = parse_super_users("User:admin;User:ops ;")
    assert su == {"User:admin", "User:ops"}
    az = Authorizer(super_users=su, bindings=[acl("t", Op.ALL, DENY, principal="User:*")])
    assert decide(az, Op.READ, "t", principal="User:ops") is A
    assert decide(az, Op.READ, "t", principal="User:alice") is D


def test_remove_reopens_and_keeps_the_prefix_index_right() -> None:
    a, b = acl("pa", Op.READ, pattern=P.PREFIXED), acl("pb", Op.READ, pattern=P.PREFIXED)
    az = Authorizer(bindings=[a, b])
    assert az.add(a) is False and len(az) == 2
    assert az.remove(a) and not az.remove(a)
    assert decide(az, Op.READ, "pa1") is D and decide(az, Op.READ, "pb1") is A
    az.remove(b)
    assert az.bindings() == [] and decide(Authorizer(allow_if_no_acl=True), Op.READ, "pb1") is A


def test_authorize_by_resource_type() -> None:
    def by_type(az: Authorizer) -> Decision:
        return az.authorize_by_resource_type("User:alice", "10.0.0.1", Op.WRITE, T.TOPIC)

    assert by_type(Authorizer()) is D
    assert by_type(Authorizer(allow_if_no_acl=True)) is A
    assert by_type(Authorizer(bindings=[acl("t", Op.WRITE)])) is A
    assert by_type(Authorizer(bindings=[acl("t", Op.WRITE), acl("t", Op.WRITE, DENY)])) is D
    assert by_type(Authorizer(bindings=[acl("tx", Op.WRITE), acl("t", Op.WRITE, DENY, pattern=P.PREFIXED)])) is D
    assert by_type(Authorizer(bindings=[acl("tx", Op.WRITE), acl("t", Op.WRITE, DENY)])) is A
    assert by_type(Authorizer(bindings=[acl("*", Op.WRITE), acl("t", Op.WRITE, DENY)])) is A
    assert by_type(Authorizer(bindings=[acl("t", Op.WRITE), acl("*", Op.WRITE, DENY)])) is D


def test_filters_match_as_kafka_acl_binding_filter() -> None:
    lit = acl("orders", Op.READ)
    pre = acl("ord", Op.WRITE, DENY, pattern=P.PREFIXED, principal="User:bob", host="10.0.0.2")
    star = acl("*", Op.DESCRIBE)
    grp = acl("g", Op.READ, rtype=T.GROUP)
    az = Authorizer(bindings=[lit, pre, star, grp])
    assert az.matching(AclBindingFilter()) == [lit, pre, star, grp]
    assert az.matching(AclBindingFilter(resource_type=T.TOPIC)) == [lit, pre, star]
    assert az.matching(AclBindingFilter(resource_name="orders")) == [lit]  # ANY pattern: exact name
    assert az.matching(AclBindingFilter(resource_name="orders", pattern_type=P.MATCH)) == [lit, pre, star]
    assert az.matching(AclBindingFilter(resource_name="ord", pattern_type=P.PREFIXED)) == [pre]
    assert az.matching(AclBindingFilter(resource_name="ord", pattern_type=P.LITERAL)) == []
    assert az.matching(AclBindingFilter(pattern_type=P.LITERAL)) == [lit, star, grp]
    assert az.matching(AclBindingFilter(principal="User:bob")) == [pre]
    assert az.matching(AclBindingFilter(host="10.0.0.2")) == [pre]
    assert az.matching(AclBindingFilter(operation=Op.DESCRIBE)) == [star]
    assert az.matching(AclBindingFilter(permission=DENY)) == [pre]
    assert az.matching(AclBindingFilter(principal="User:*")) == []  # no wildcard expansion in filters


def test_validation() -> None:
    validate_binding(acl("t", Op.READ))
    validate_binding(acl("kafka-cluster", Op.ALTER, rtype=T.CLUSTER))
    bad = [
        acl("t", Op.READ, pattern=P.MATCH),
        acl("t", Op.READ, pattern=P.ANY),
        acl("t", Op.ANY),
        acl("t", Op.UNKNOWN),
        acl("t", Op.READ, PermissionType.ANY),
        acl("", Op.READ),
        acl("t", Op.READ, principal="alice"),
        acl("t", Op.READ, rtype=T.ANY),
        acl("other", Op.ALTER, rtype=T.CLUSTER),
    ]
    for b in bad:
        with pytest.raises(InvalidAclError):
            validate_binding(b)
    validate_filter(AclBindingFilter())
    for f in (AclBindingFilter(pattern_type=P.UNKNOWN), AclBindingFilter(operation=Op.UNKNOWN)):
        with pytest.raises(InvalidAclError):
            validate_filter(f)


def test_file_round_trip_and_garbage() -> None:
    bindings = [acl("orders", Op.READ), acl("o", Op.WRITE, DENY, pattern=P.PREFIXED, rtype=T.GROUP)]
    assert decode_bindings(encode_bindings(bindings)) == bindings
    for garbage in (
        b"",
        b"{",
        b'{"version": 2, "acls": []}',
        b'{"version": 1, "acls": [[99]]}',
        b'{"version": 1, "acls": [[2, "t", 3, "nocolon", "*", 3, 3]]}',
        b"[]",
    ):
        with pytest.raises(InvalidAclError):
            decode_bindings(garbage)


# --- the index against the definition -------------------------------------------------------------------------

NAMES = ["a", "ab", "abc", "b", "ba", "*"]
PRINCIPALS = ["User:alice", "User:bob", "User:*"]
HOSTS = ["*", "10.0.0.1", "10.0.0.2"]
OPS = [Op.ALL, Op.READ, Op.WRITE, Op.DESCRIBE, Op.ALTER, Op.ALTER_CONFIGS, Op.DESCRIBE_CONFIGS, Op.CREATE]

bindings_st = st.builds(
    AclBinding,
    st.sampled_from([T.TOPIC, T.GROUP]),
    st.sampled_from(NAMES),
    st.sampled_from([P.LITERAL, P.PREFIXED]),
    st.sampled_from(PRINCIPALS),
    st.sampled_from(HOSTS),
    st.sampled_from(OPS),
    st.sampled_from([ALLOW, DENY]),
)


def reference(
    acls: list[AclBinding],
    super_users: set[str],
    allow_if_no_acl: bool,
    principal: str,
    host: str,
    op: AclOperation,
    rtype: ResourceType,
    name: str,
) -> Decision:
    """StandardAuthorizer's rules written out plainly over the whole list."""
    if principal in super_users:
        return A
    implied = {
        Op.DESCRIBE: {Op.DESCRIBE, Op.READ, Op.WRITE, Op.DELETE, Op.ALTER},
        Op.DESCRIBE_CONFIGS: {Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS},
    }
    on_resource = [
        b
        for b in acls
        if b.resource_type == rtype
        and (
            (b.pattern_type == P.LITERAL and b.resource_name in (name, "*"))
            or (b.pattern_type == P.PREFIXED and name.startswith(b.resource_name))
        )
    ]

    def applies(b: AclBinding) -> bool:
        if b.principal not in (principal, "User:*") or b.host not in (host, "*"):
            return False
        if b.operation in (Op.ALL, op):
            return True
        return b.permission == ALLOW and b.operation in implied.get(op, set())

    matching = [b for b in on_resource if applies(b)]
    if any(b.permission == DENY for b in matching):
        return D
    if matching:
        return A
    if on_resource:
        return D
    return A if allow_if_no_acl else D


@settings(max_examples=300, deadline=None)
@given(
    acls=st.lists(bindings_st, max_size=12),
    removed=st.integers(0, 12),
    allow_if_no_acl=st.booleans(),
    principal=st.sampled_from(["User:alice", "User:bob", "User:carol", "User:root"]),
    host=st.sampled_from(["10.0.0.1", "10.0.0.2"]),
    op=st.sampled_from([*OPS[1:], Op.DELETE]),
    rtype=st.sampled_from([T.TOPIC, T.GROUP]),
    name=st.sampled_from(["a", "ab", "abc", "abcd", "b", "bab", "c", "*"]),
)
def test_index_agrees_with_the_reference(
    acls: list[AclBinding],
    removed: int,
    allow_if_no_acl: bool,
    principal: str,
    host: str,
    op: AclOperation,
    rtype: ResourceType,
    name: str,
) -> None:
    az = Authorizer(super_users={"User:root"}, allow_if_no_acl=allow_if_no_acl, bindings=acls)
    kept = list(dict.fromkeys(acls))
    if kept and removed < len(kept):  # removal must leave the index as if the binding had never been added
        az.remove(kept.pop(removed))
    expected = reference(kept, {"User:root"}, allow_if_no_acl, principal, host, op, rtype, name)
    assert az.authorize(principal, host, op, rtype, name) is expected
