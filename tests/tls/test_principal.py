"""ssl.principal.mapping.rules as Kafka's SslPrincipalMapper reads them, and subjects named as Java names them."""

from __future__ import annotations

import doctest
import importlib

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from loosely.tls.principal import (
    ANONYMOUS,
    NoMatchingRuleError,
    map_principal,
    parse_rules,
    principal_from_certificate,
    rfc2253_name,
)


@pytest.mark.parametrize(
    "module", ["loosely.tls.principal", "loosely.tls.settings", "loosely.protocol.properties",
               "loosely.broker._listening", "loosely.testing.certs"]
)
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


# The rules Kafka's own tests call valid and invalid (SslPrincipalMapperTest).
@pytest.mark.parametrize(
    "rules",
    [
        "DEFAULT",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT",
        "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/",
        "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L",
        "RULE:^cn=(.?),ou=(.?),dc=(.?),dc=(.?)$/$1@$2/U",
        "RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/",
        "RULE:^CN=([^,DEFAULT,]+)(,.*|$)/$1/",
    ],
)
def test_valid_rules(rules: str) -> None:
    assert parse_rules(rules)


@pytest.mark.parametrize(
    "rules",
    [
        "default",
        "DEFAUL",
        "DEFAULT/L",
        "DEFAULT/U",
        "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
        "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/U",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
    ],
)
def test_invalid_rules(rules: str) -> None:
    with pytest.raises(ValueError, match=r"ssl\.principal\.mapping\.rules"):
        parse_rules(rules)


def test_mapping_as_kafka_maps() -> None:
    rules = parse_rules(
        ", ".join(
            [
                "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L",
                "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L",
                "RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U",
                "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U",
                "DEFAULT",
            ]
        )
    )
    assert map_principal(rules, "CN=Duke,OU=ServiceUsers,O=Org,C=US") == "duke"
    assert map_principal(rules, "CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US") == "duke@sme"
    assert map_principal(rules, "cn=duke,ou=sme,dc=mycp,dc=com") == "DUKE@SME"
    assert map_principal(rules, "cN=duke,OU=JavaSoft,O=Sun Microsystems") == "DUKE"
    assert map_principal(rules, "OU=JavaSoft,O=Sun Microsystems,C=US") == "OU=JavaSoft,O=Sun Microsystems,C=US"


def test_a_comma_escaped_in_the_dn() -> None:
    rules = parse_rules("RULE:^CN=((\\\\, *|\\w)+)(,.*|$)/$1/,DEFAULT")
    assert map_principal(rules, "CN=Tkac\\, Adam,OU=ITZ,DC=geodis,DC=cz") == "Tkac\\, Adam"


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("", 0),
        (",   , , ,      , , ,   ", 0),  # empty rules are skipped
        (",,RULE://,,,DEFAULT,,", 2),
        ("  RULE:([A-Z]*)/$1/U   ,RULE:([a-z]+)/$1/,   DEFAULT  ", 3),
    ],
)
def test_rules_are_split_as_kafka_splits_them(text: str, count: int) -> None:
    assert len(parse_rules(text)) == count


def test_commas_inside_patterns_and_replacements_belong_to_them() -> None:
    """Kafka's "rules rule" case: a pattern runs to the first unescaped slash, commas and all."""
    text = "RULE:,RULE:,/,RULE:,\\//U,RULE:,/RULE:,/,RULE:,RULE:,/L,RULE:,/L,RULE:, DEFAULT, /DEFAULT/,DEFAULT"
    parsed = [(r.pattern.pattern if r.pattern else None, r.replacement, r.case) for r in parse_rules(text)]
    assert parsed == [
        (",RULE:,", ",RULE:,\\/", "U"),
        (",", "RULE:,", ""),
        (",RULE:,", "L,RULE:,", "L"),
        (", DEFAULT, ", "DEFAULT", ""),
        (None, "", ""),
    ]


def test_no_matching_rule_refuses() -> None:
    with pytest.raises(NoMatchingRuleError):
        map_principal(parse_rules("RULE:^CN=(.*?),OU=Eng$/$1/"), "CN=x,OU=Sales")


def test_replacement_backreferences_beyond_the_groups_stay_literal() -> None:
    rules = parse_rules("RULE:^CN=(.*?),O=(.*)$/$1@$3/")
    assert map_principal(rules, "CN=a,O=b") == "a@$3"
    assert map_principal(parse_rules("RULE:^CN=(.*?),O=(.*)$/$12/"), "CN=a,O=b") == "a2"  # $12 -> group 1, then "2"


def _cert(name: x509.Name) -> bytes:
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_the_subject_is_named_in_rfc2253_order_with_javas_keywords() -> None:
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc."),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "eng"),
        x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
        x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@x"),
    ])
    # Java writes attributes without an RFC 2253 keyword (emailAddress) as OID=#<DER hex>: IA5String "a@x"
    assert rfc2253_name(name) == "1.2.840.113549.1.9.1=#1603614078,CN=alice,OU=eng,O=Example\\, Inc.,C=US"
    der = _cert(name)
    assert principal_from_certificate(der, parse_rules("DEFAULT")).startswith("User:1.2.840.113549.1.9.1=#")
    rules = parse_rules("RULE:^.*CN=([a-z]+),OU=(.*?),.*$/$1@$2/U")
    assert principal_from_certificate(der, rules) == "User:ALICE@ENG"
    assert principal_from_certificate(None, rules) == ANONYMOUS


@pytest.mark.parametrize("pattern", ["(" * 5000, "a{99999999999}", "["])
def test_a_pattern_python_cannot_compile_is_a_value_error(pattern: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        parse_rules(f"RULE:{pattern}/x/")


def test_sasl_ssl_listeners_ask_for_client_certificates_only_when_told_by_name() -> None:
    from loosely.tls.settings import tls_settings

    broad = {"ssl.keystore.location": "/b.pem", "ssl.client.auth": "required", "ssl.truststore.location": "/ca"}
    assert tls_settings(broad, "SSL").client_auth == "required"
    assert tls_settings(broad, "SASL_SSL", "SASL_SSL").client_auth == "none"
    named = broad | {"listener.name.sasl_ssl.ssl.client.auth": "requested"}
    assert tls_settings(named, "SASL_SSL", "SASL_SSL").client_auth == "requested"
