"""A TLS listener's settings, read from Kafka's ``ssl.*`` names with ``listener.name.<name>.ssl.*`` overrides.

PEM only: ``ssl.keystore.type`` and ``ssl.truststore.type`` must be ``PEM`` when given (Kafka's JKS and PKCS12
stores are Java formats; ``keytool``/``openssl`` convert them). loosely takes PEM when the type is not given, where
Kafka would assume JKS. Secrets (``ssl.key.password``, inline keys) never appear in a repr or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from loosely.tls.principal import parse_rules

__all__ = ["CLIENT_AUTH_VALUES", "SSL_SETTINGS", "TLS_PROTOCOLS", "TlsSettings", "tls_settings"]

TLS_PROTOCOLS: Final = ("TLSv1.2", "TLSv1.3")
CLIENT_AUTH_VALUES: Final = ("required", "requested", "none")

# The ssl.* names a listener reads (each may be prefixed by listener.name.<lowercase listener name>.).
SSL_SETTINGS: Final = (
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.key.password",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
    "ssl.enabled.protocols",
    "ssl.client.auth",
    "ssl.principal.mapping.rules",
)


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """What building a listener's server-side TLS context needs. Inline PEM values are the text itself."""

    keystore_location: str | None = None
    keystore_certificate_chain: str | None = field(default=None, repr=False)
    keystore_key: str | None = field(default=None, repr=False)
    key_password: str | None = field(default=None, repr=False)
    truststore_location: str | None = None
    truststore_certificates: str | None = field(default=None, repr=False)
    enabled_protocols: tuple[str, ...] = TLS_PROTOCOLS  # Kafka: ssl.enabled.protocols (TLSv1.2,TLSv1.3)
    client_auth: str = "none"  # Kafka: ssl.client.auth
    principal_mapping_rules: str = "DEFAULT"  # Kafka: ssl.principal.mapping.rules

    def check(self, listener: str) -> None:
        """Raise :class:`ValueError` with one sentence naming the setting that is missing or wrong."""
        has_file = self.keystore_location is not None
        has_inline = self.keystore_certificate_chain is not None or self.keystore_key is not None
        if not has_file and not has_inline:
            raise ValueError(
                f"listener {listener} uses TLS but has no key and certificate: set ssl.keystore.location (a PEM file "
                "with the private key and the certificate chain) or ssl.keystore.certificate.chain and ssl.keystore.key"
            )
        if has_file and has_inline:
            raise ValueError(f"listener {listener}: give ssl.keystore.location or the inline ssl.keystore.*, not both")
        if has_inline and (self.keystore_certificate_chain is None or self.keystore_key is None):
            raise ValueError(f"listener {listener}: ssl.keystore.certificate.chain and ssl.keystore.key go together")
        if self.truststore_location is not None and self.truststore_certificates is not None:
            raise ValueError(
                f"listener {listener}: give ssl.truststore.location or ssl.truststore.certificates, not both"
            )
        if self.client_auth == "required" and self.truststore_location is None and not self.truststore_certificates:
            raise ValueError(
                f"listener {listener}: ssl.client.auth=required needs the CA certificates that sign client "
                "certificates: set ssl.truststore.location or ssl.truststore.certificates"
            )

    @property
    def watched_files(self) -> tuple[str, ...]:
        """Files whose change means new certificates (re-read without a restart)."""
        return tuple(p for p in (self.keystore_location, self.truststore_location) if p is not None)


def _pick(settings: Mapping[str, str], listener: str, name: str) -> str | None:
    value = settings.get(f"listener.name.{listener.lower()}.{name}")
    return value if value is not None else settings.get(name)


def tls_settings(settings: Mapping[str, str], listener: str, protocol: str = "SSL") -> TlsSettings:
    """The TLS settings of ``listener`` from Kafka-named ``settings``; :class:`ValueError` for a bad value.

    On a SASL_SSL listener only ``listener.name.<name>.ssl.client.auth`` asks for client certificates: the
    broker-wide ``ssl.client.auth`` is for SSL listeners (Kafka's rule since KIP-684).

    >>> s = tls_settings({"ssl.keystore.location": "/a.pem", "listener.name.ssl.ssl.client.auth": "required",
    ...                   "ssl.truststore.location": "/ca.pem"}, "SSL")
    >>> s.client_auth, s.keystore_location, s.enabled_protocols
    ('required', '/a.pem', ('TLSv1.2', 'TLSv1.3'))
    """

    def get(name: str) -> str | None:
        return _pick(settings, listener, name)

    for kind in ("keystore", "truststore"):
        store_type = get(f"ssl.{kind}.type")
        if store_type is not None and store_type.upper() != "PEM":
            raise ValueError(
                f"ssl.{kind}.type={store_type}: loosely reads PEM only; convert the store to PEM (openssl pkcs12 "
                "-in store.p12 -nodes) and set ssl.{kind}.type=PEM".replace("{kind}", kind)
            )
    wanted = get("ssl.enabled.protocols") or ",".join(TLS_PROTOCOLS)
    protocols = tuple(p.strip() for p in wanted.split(",") if p.strip())
    bad = [p for p in protocols if p not in TLS_PROTOCOLS]
    if bad or not protocols:
        raise ValueError(f"ssl.enabled.protocols: {', '.join(bad) or 'empty'}: loosely offers TLSv1.2 and TLSv1.3")
    client_auth_setting = f"listener.name.{listener.lower()}.ssl.client.auth"
    client_auth = (settings.get(client_auth_setting) if protocol == "SASL_SSL" else get("ssl.client.auth")) or "none"
    client_auth = client_auth.lower()
    if client_auth not in CLIENT_AUTH_VALUES:
        raise ValueError(f"ssl.client.auth={client_auth}: expected required, requested or none")
    rules = get("ssl.principal.mapping.rules") or "DEFAULT"
    parse_rules(rules)  # a bad rule is refused at start-up, not at the first client
    return TlsSettings(
        keystore_location=get("ssl.keystore.location"),
        keystore_certificate_chain=get("ssl.keystore.certificate.chain"),
        keystore_key=get("ssl.keystore.key"),
        key_password=get("ssl.key.password"),
        truststore_location=get("ssl.truststore.location"),
        truststore_certificates=get("ssl.truststore.certificates"),
        enabled_protocols=protocols,
        client_auth=client_auth,
        principal_mapping_rules=rules,
    )
