"""Who a TLS client is: its certificate's subject as Kafka names it, mapped by ``ssl.principal.mapping.rules``.

Theory of operation
-------------------
Kafka's default principal builder names a client that presented a certificate ``User:`` + the certificate's subject
distinguished name in RFC 2253 form (``CN=alice,OU=eng,O=Example,C=US``: the RDNs in reverse order of the
certificate's encoding, keywords for CN, C, L, ST, O, OU, STREET, DC and UID, other attributes as a dotted OID and
``#`` + the hex of their DER value, as ``javax.security.auth.x500.X500Principal.getName()`` writes them), and
``User:ANONYMOUS`` when it presented none. ``ssl.principal.mapping.rules`` turns the DN into a shorter name:

- rules are separated by commas (a comma inside a rule's pattern belongs to the pattern: the pattern runs to the
  first unescaped ``/``); empty rules are skipped;
- ``DEFAULT`` keeps the DN as it is;
- ``RULE:pattern/replacement/`` applies when ``pattern`` (a regular expression) matches the *whole* DN; the result is
  every match of ``pattern`` in the DN replaced by ``replacement`` (``$1`` is a group; a ``$n`` naming a group the
  pattern does not have stays literal text); a trailing ``L`` or ``U`` lower- or upper-cases the result;
- the first rule that applies names the principal; when none does, the client is refused (Kafka's NoMatchingRule).

The rules language is Java's regular expressions; Python's :mod:`re` reads the same constructs for the patterns
people write for DNs (groups, classes, lazy quantifiers, anchors).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = [
    "ANONYMOUS",
    "NoMatchingRuleError",
    "PrincipalRule",
    "map_principal",
    "parse_rules",
    "principal_from_certificate",
    "rfc2253_name",
]

ANONYMOUS: Final = "User:ANONYMOUS"

# The rule grammar (Kafka's, restated): DEFAULT, or RULE:<pattern>/<replacement>/<L|U|nothing><ignored>, or junk.
_RULE: Final = r"(DEFAULT)|RULE:((?:\\.|[^\\/])*)/((?:\\.|[^\\/])*)/([LU]?).*?|(.*?)"
_SPLITTER: Final = re.compile(r"\s*(" + _RULE + r")\s*(?:,\s*|$)")
_PARSER: Final = re.compile(_RULE)
_BACKREF: Final = re.compile(r"\$(\d+)")


class NoMatchingRuleError(ValueError):
    """No ``ssl.principal.mapping.rules`` rule applies to a DN: Kafka refuses the client."""


@dataclass(frozen=True, slots=True)
class PrincipalRule:
    """One parsed rule; ``pattern`` None is ``DEFAULT``."""

    pattern: re.Pattern[str] | None
    replacement: str = ""
    case: str = ""  # "L", "U" or ""

    def apply(self, dn: str) -> str | None:
        if self.pattern is None:
            return dn
        if self.pattern.fullmatch(dn) is None:
            return None
        out = self.pattern.sub(lambda m: _expand(self.replacement, m), dn)
        return out.lower() if self.case == "L" else out.upper() if self.case == "U" else out


def _expand(replacement: str, m: re.Match[str]) -> str:
    """Java's ``Matcher.appendReplacement`` rules, with unknown group numbers kept as text as Kafka keeps them."""
    groups = m.re.groups
    out: list[str] = []
    i = 0
    while i < len(replacement):
        c = replacement[i]
        if c == "\\" and i + 1 < len(replacement):
            out.append(replacement[i + 1])
            i += 2
        elif c == "$" and i + 1 < len(replacement) and replacement[i + 1].isdigit():
            j = i + 2
            ref = int(replacement[i + 1])
            while j < len(replacement) and replacement[j].isdigit() and ref * 10 + int(replacement[j]) <= groups:
                ref = ref * 10 + int(replacement[j])
                j += 1
            if ref > groups:  # Kafka escapes a reference to a group that does not exist: literal text
                out.append("$")
                i += 1
                continue
            out.append(m.group(ref) or "")
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_rules(text: str) -> tuple[PrincipalRule, ...]:
    """``ssl.principal.mapping.rules`` to rules; :class:`ValueError` naming a rule that does not parse.

    >>> [r.pattern.pattern if r.pattern else "DEFAULT" for r in parse_rules("RULE:^CN=(.*?),OU=Eng.*$/$1/L, DEFAULT")]
    ['^CN=(.*?),OU=Eng.*$', 'DEFAULT']
    >>> parse_rules("default")
    Traceback (most recent call last):
    ...
    ValueError: invalid ssl.principal.mapping.rules rule: 'default'
    """
    rules: list[PrincipalRule] = []
    for split in _SPLITTER.finditer(text.strip()):
        rule = split.group(1)
        m = _PARSER.match(rule)
        if m is None or m.end() != len(rule):
            raise ValueError(f"invalid ssl.principal.mapping.rules rule: {rule!r}")
        if m.group(1) is not None:
            rules.append(PrincipalRule(None))
        elif m.group(2) is not None:
            try:
                pattern = re.compile(m.group(2))
            except (re.error, RecursionError, OverflowError) as e:  # deep nesting, huge repeat counts
                reason = str(e) if isinstance(e, re.error) else "too complex"
                shown = m.group(2)[:200]
                raise ValueError(f"invalid ssl.principal.mapping.rules pattern {shown!r}: {reason}") from None
            rules.append(PrincipalRule(pattern, m.group(3), m.group(4)))
        elif m.group(5):
            raise ValueError(f"invalid ssl.principal.mapping.rules rule: {rule!r}")
    return tuple(rules)


def map_principal(rules: tuple[PrincipalRule, ...], dn: str) -> str:
    """The name the first applicable rule gives ``dn``; :class:`NoMatchingRuleError` when none applies.

    >>> rules = parse_rules("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L,DEFAULT")
    >>> map_principal(rules, "CN=Duke,OU=ServiceUsers,O=Org,C=US"), map_principal(rules, "CN=x,O=y")
    ('duke', 'CN=x,O=y')
    """
    for rule in rules:
        name = rule.apply(dn)
        if name is not None:
            return name
    raise NoMatchingRuleError(f"no ssl.principal.mapping.rules rule applies to {dn!r}")


_KEYWORDS: Final = {
    NameOID.COMMON_NAME: "CN",
    NameOID.COUNTRY_NAME: "C",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.STREET_ADDRESS: "STREET",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
}


def _escape(value: str) -> str:
    """RFC 2253 section 2.4 escaping of an attribute value."""
    out = "".join("\\" + c if c in ',+"\\<>;' else c for c in value)
    if out.startswith((" ", "#")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


def _der_hex(attr: x509.NameAttribute[str | bytes]) -> str:
    """``#`` + the hex of the attribute value's DER encoding (RFC 2253 for attributes without a keyword)."""
    value = attr.value if isinstance(attr.value, bytes) else attr.value.encode()
    tag = attr._type.value  # the ASN.1 string type the certificate used
    n = len(value)
    width = (n.bit_length() + 7) // 8
    length = bytes([n]) if n < 0x80 else bytes([0x80 | width]) + n.to_bytes(width)
    return "#" + (bytes([tag]) + length + value).hex()


def rfc2253_name(name: x509.Name) -> str:
    """``name`` as Java's ``X500Principal.getName()`` writes it (RFC 2253: last RDN first).

    >>> from cryptography.x509 import Name, NameAttribute
    >>> rfc2253_name(Name([NameAttribute(NameOID.COUNTRY_NAME, "US"), NameAttribute(NameOID.COMMON_NAME, "a,b")]))
    'CN=a\\\\,b,C=US'
    """
    rdns: list[str] = []
    for rdn in reversed(name.rdns):
        parts: list[str] = []
        for attr in rdn:
            keyword = _KEYWORDS.get(attr.oid)
            if keyword is not None and isinstance(attr.value, str):
                parts.append(f"{keyword}={_escape(attr.value)}")
            else:
                parts.append(f"{attr.oid.dotted_string}={_der_hex(attr)}")
        rdns.append("+".join(parts))
    return ",".join(rdns)


def principal_from_certificate(der: bytes | None, rules: tuple[PrincipalRule, ...]) -> str:
    """Kafka's principal for a TLS client: ``User:`` + its mapped subject DN, or ``User:ANONYMOUS`` without one."""
    if not der:
        return ANONYMOUS
    cert = x509.load_der_x509_certificate(der)
    return "User:" + map_principal(rules, rfc2253_name(cert.subject))
