"""Data contracts: a schema version's ``metadata`` and ``ruleSet``, checked, compared and merged as Confluent does.

Theory of operation
-------------------

A register request may carry Confluent's ``metadata`` (``{"tags": {path: [tag]}, "properties": {name: value},
"sensitive": [name]}``) and ``ruleSet`` (``{"migrationRules": [...], "domainRules": [...], "encodingRules":
[...]}``). The registry never runs rules -- confluent-kafka's serializers do, client side -- so it only checks
their shape (:func:`from_body`, Confluent's Metadata and RuleSet classes: rule names unique, migration rules
UPGRADE/DOWNGRADE/UPDOWN, domain and encoding rules WRITE/READ/WRITEREAD) and keeps them as compact JSON text,
its maps sorted as Confluent's sorted maps and sets leave them.

A version's contract is computed at registration as Confluent's ``maybeSetMetadataRuleSet`` does:
``merge(merge(default, specific), override)``, where ``specific`` is the request's, or the latest version's
when the request has none, and ``default``/``override`` come from the subject's config (or the global one).
:func:`merge_metadata` lets the newer map entries win and unites the ``sensitive`` sets; :func:`merge_rule_sets`
keeps each group's older rules whose names the newer one does not use, followed by the newer ones.
"""

from __future__ import annotations

import json
from typing import Any

from loosely.registry._errors import invalid_schema

__all__ = ["CONFIG_FIELDS", "from_body", "merge_metadata", "merge_rule_sets", "same_contract"]

RULE_KINDS = ("TRANSFORM", "CONDITION")
RULE_GROUPS = {  # the modes each group of rules may have, as Confluent's RuleSet checks them
    "migrationRules": ("UPGRADE", "DOWNGRADE", "UPDOWN"),
    "domainRules": ("WRITE", "READ", "WRITEREAD"),
    "encodingRules": ("WRITE", "READ", "WRITEREAD"),
}
CONFIG_FIELDS = ("defaultMetadata", "overrideMetadata", "defaultRuleSet", "overrideRuleSet")
"""The contract fields of a config (``PUT /config``), each a metadata or a rule set."""


def _text(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _meaning(text: str | None) -> dict[str, Any]:
    """What a contract says: its fields that are not empty (Confluent leaves empty ones out of its JSON)."""
    doc = json.loads(text) if text is not None else {}
    return {k: v for k, v in doc.items() if v not in (None, [], {})}


def same_contract(a: str | None, b: str | None) -> bool:
    """Whether two ``metadata`` (or ``ruleSet``) JSON texts say the same, whatever their key order and empty
    fields."""
    return a == b or _meaning(a) == _meaning(b)


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _string_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _metadata_problem(md: dict[str, Any]) -> str | None:
    tags = md.get("tags")
    if tags is not None and not (isinstance(tags, dict) and all(_strings(t) for t in tags.values())):
        return "metadata tags must map each path to a list of tags"
    if md.get("properties") is not None and not _string_map(md["properties"]):
        return "metadata properties must map names to strings"
    if md.get("sensitive") is not None and not _strings(md["sensitive"]):
        return "metadata sensitive must be a list of property names"
    return None


def _rule_set_problem(rs: dict[str, Any]) -> str | None:
    names: set[str] = set()
    for group, modes in RULE_GROUPS.items():
        rules = rs.get(group)
        if rules is None:
            continue
        if not isinstance(rules, list):
            return f"ruleSet {group} must be a list of rules"
        for rule in rules:
            if not isinstance(rule, dict) or not isinstance(rule.get("name"), str) or not rule["name"]:
                return f"each rule in ruleSet {group} needs a name"
            if rule["name"] in names:
                return f"found rule with duplicate name {rule['name']!r}"
            names.add(rule["name"])
            if rule.get("kind") is not None and rule["kind"] not in RULE_KINDS:
                return f"rule {rule['name']}: kind must be one of {', '.join(RULE_KINDS)}"
            if rule.get("mode") is not None and rule["mode"] not in modes:
                return f"rule {rule['name']}: the mode of {group} must be one of {', '.join(modes)}"
            if rule.get("params") is not None and not _string_map(rule["params"]):
                return f"rule {rule['name']}: params must map names to strings"
    return None


def _sorted_metadata(md: dict[str, Any]) -> dict[str, Any]:
    out = dict(md)
    if isinstance(md.get("tags"), dict):
        out["tags"] = {k: sorted(set(v)) for k, v in sorted(md["tags"].items())}
    if isinstance(md.get("properties"), dict):
        out["properties"] = dict(sorted(md["properties"].items()))
    if isinstance(md.get("sensitive"), list):
        out["sensitive"] = sorted(set(md["sensitive"]))
    return out


def from_body(body: dict[str, Any], name: str) -> str | None:
    """The JSON to store for the metadata or rule set ``body[name]`` (``None`` when absent or empty); 42201 when
    its shape is not Confluent's. ``name`` ends in ``Metadata``/``metadata`` or ``RuleSet``/``ruleSet``."""
    part = body.get(name)
    if part is None or part == {}:
        return None
    is_metadata = name.lower().endswith("metadata")
    if not isinstance(part, dict):
        raise invalid_schema(f"Invalid {name}: {name} must be a JSON object")
    problem = _metadata_problem(part) if is_metadata else _rule_set_problem(part)
    if problem:
        raise invalid_schema(f"Invalid {name}: {problem}")
    return _text(_sorted_metadata(part) if is_metadata else part)


def merge_metadata(old: str | None, new: str | None) -> str | None:
    """``new`` over ``old``, as Confluent's ``Metadata.mergeMetadata``."""
    if old is None or new is None:
        return new if old is None else old
    a, b = json.loads(old), json.loads(new)
    out: dict[str, Any] = {}
    for key in ("tags", "properties"):
        merged = {**(a.get(key) or {}), **(b.get(key) or {})}
        if merged:
            out[key] = dict(sorted(merged.items()))
    sensitive = sorted(set(a.get("sensitive") or []) | set(b.get("sensitive") or []))
    if sensitive:
        out["sensitive"] = sensitive
    return _text(out)


def merge_rule_sets(old: str | None, new: str | None) -> str | None:
    """``new`` over ``old``, as Confluent's ``RuleSet.mergeRuleSets``: per group, the old rules ``new`` does not
    rename, then ``new``'s."""
    if old is None or new is None:
        return new if old is None else old
    a, b = json.loads(old), json.loads(new)
    out: dict[str, Any] = {}
    for group in RULE_GROUPS:
        older, newer = a.get(group) or [], b.get(group) or []
        names = {r["name"] for r in newer}
        merged = [r for r in older if r["name"] not in names] + newer
        if merged:
            out[group] = merged
    return _text(out)
