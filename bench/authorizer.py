"""Authorization cost: what one request's ACL checks cost loosely with 1,000 ACLs, literal and prefixed.

    .venv/bin/python bench/authorizer.py [--acls 1000] [--checks 200000]

Three ACL sets of ``--acls`` bindings each, for 50 principals on topics, groups and transactional ids:

* ``literal``   every binding names one resource exactly (``orders-17``)
* ``prefixed``  every binding covers a prefix (``team-17-``), of 1-3 levels, so each lookup meets several lengths
* ``mixed``     half and half, plus ``User:*`` wildcards and DENY bindings, the shape of a real cluster

Measured per set, in this process, after a warm-up:

* one ``Authorizer.authorize`` call (hit: an ACL decides; miss: no ACL covers the name), in microseconds;
* a *request*: what a Produce to 10 topics and a Fetch of 10 topics cost in checks (10 each) and the Metadata
  answer for all topics filtering 1,000 topics by DESCRIBE, in microseconds per request;
* a reference scan: the same decision by walking every binding, to show what the index saves.

Then the floor (``bench/_floors.py``): one Python call doing one ``dict.get`` in a dict of ``--acls`` keys, the
least an authorizer written in Python pays per check (one hash probe; these ACLs fit the caches, so the memory
under it costs nothing the random-access floor can resolve). A single check is printed against one lookup, a
request against one lookup per check it makes (20 for the Produce + Fetch, 1,000 for the Metadata answer).

Prints one table; ``--json`` prints the numbers instead. The decisions themselves are checked against the scan on
a sample, so a fast wrong answer cannot pass.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable

from _floors import dict_lookup_ns, time_ratio  # bench/_floors.py
from loosely.security.authorizer import (
    AclBinding,
    AclOperation,
    Authorizer,
    Decision,
    PatternType,
    PermissionType,
    ResourceType,
)

OPS = [AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.ALL]


def acl_set(kind: str, n: int, rng: random.Random) -> list[AclBinding]:
    out = []
    for i in range(n):
        principal = f"User:u{i % 50}"
        rtype = [ResourceType.TOPIC, ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID][i % 4]
        prefixed = kind == "prefixed" or (kind == "mixed" and i % 2)
        if prefixed:
            name = "-".join(f"team{rng.randrange(40)}" for _ in range(1 + i % 3)) + "-"
            pattern = PatternType.PREFIXED
        else:
            name, pattern = f"orders-{i}", PatternType.LITERAL
        perm = PermissionType.DENY if kind == "mixed" and i % 17 == 0 else PermissionType.ALLOW
        if kind == "mixed" and i % 23 == 0:
            principal = "User:*"
        out.append(AclBinding(rtype, name, pattern, principal, "*", OPS[i % len(OPS)], perm))
    return out


def scan(acls: list[AclBinding], principal: str, op: AclOperation, rtype: ResourceType, name: str) -> Decision:
    """The decision by definition (allow.everyone.if.no.acl.found=false), walking every binding."""
    allowed = False
    for b in acls:
        if not b.matches_resource(rtype, name):
            continue
        verdict = b.decides(principal, "10.0.0.1", op)
        if verdict is Decision.DENIED:
            return verdict
        allowed = allowed or verdict is Decision.ALLOWED
    return Decision.ALLOWED if allowed else Decision.DENIED


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def run(kind: str, n: int, checks: int, rng: random.Random) -> dict[str, float]:
    acls = acl_set(kind, n, rng)
    az = Authorizer(bindings=acls, allow_if_no_acl=False)
    hit_names = [b.resource_name + ("x" if b.pattern_type == PatternType.PREFIXED else "") for b in acls
                 if b.resource_type == ResourceType.TOPIC]
    topics = [rng.choice(hit_names) for _ in range(1000)]
    principal = "User:u3"
    sample = [(rng.choice(OPS[:3]), rng.choice([*hit_names, "nobody-has-this"])) for _ in range(500)]
    for op, name in sample:  # the index must agree with the definition
        assert az.authorize(principal, "10.0.0.1", op, ResourceType.TOPIC, name) is scan(
            acls, principal, op, ResourceType.TOPIC, name
        )
    it = iter(range(10**12))

    def hit() -> object:
        return az.authorize(principal, "10.0.0.1", AclOperation.READ, ResourceType.TOPIC,
                            hit_names[next(it) % len(hit_names)])

    def miss() -> object:
        return az.authorize(principal, "10.0.0.1", AclOperation.READ, ResourceType.TOPIC, "nobody-has-this-topic")

    def produce_fetch() -> object:
        base = next(it) % 990
        return [az.allows(principal, "10.0.0.1", op, ResourceType.TOPIC, t)
                for op in (AclOperation.WRITE, AclOperation.READ) for t in topics[base:base + 10]]

    def metadata_all() -> object:
        return [t for t in topics if az.allows(principal, "10.0.0.1", AclOperation.DESCRIBE, ResourceType.TOPIC, t)]

    def reference() -> object:
        return scan(acls, principal, AclOperation.READ, ResourceType.TOPIC, hit_names[next(it) % len(hit_names)])

    return {
        "authorize_hit_us": per_call_us(hit, checks),
        "authorize_miss_us": per_call_us(miss, checks),
        "produce_plus_fetch_10_topics_us": per_call_us(produce_fetch, max(1, checks // 20)),
        "metadata_1000_topics_us": per_call_us(metadata_all, max(1, checks // 1000)),
        "reference_scan_us": per_call_us(reference, max(1, checks // 200)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--acls", type=int, default=1000)
    ap.add_argument("--checks", type=int, default=200_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = random.Random(7)
    results = {kind: run(kind, args.acls, args.checks, rng) for kind in ("literal", "prefixed", "mixed")}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    cols = list(next(iter(results.values())))
    print(f"{args.acls} ACLs; microseconds per call")
    print(f"{'set':10}" + "".join(f"{c:>34}" for c in cols))
    for kind, r in results.items():
        print(f"{kind:10}" + "".join(f"{r[c]:>34.2f}" for c in cols))
    floor = dict_lookup_ns(args.acls)
    checks = {"authorize_hit_us": 1, "authorize_miss_us": 1, "produce_plus_fetch_10_topics_us": 20,
              "metadata_1000_topics_us": 1000}
    print(f"\nagainst the floor (bench/_floors.py):\n  {floor}")
    for kind, r in results.items():
        for c, k in checks.items():
            print("  " + time_ratio(f"{kind} {c.removesuffix('_us')} ({k} check{'s' * (k > 1)})", r[c] / 1e6,
                                    floor.seconds * k))


if __name__ == "__main__":
    main()
