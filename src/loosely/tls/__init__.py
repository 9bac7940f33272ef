"""TLS for loosely's listeners: settings in Kafka's names, server contexts that follow certificate files, principals.

Sits below the broker on the layer ladder (next to storage): it knows nothing of sockets or asyncio; the broker's
shell hands its contexts to ``loop.connect_accepted_socket`` and asks it who a client certificate names.
"""

from loosely.tls.context import ServerContexts, build_server_context
from loosely.tls.principal import (
    ANONYMOUS,
    NoMatchingRuleError,
    PrincipalRule,
    map_principal,
    parse_rules,
    principal_from_certificate,
    rfc2253_name,
)
from loosely.tls.settings import SSL_SETTINGS, TlsSettings, tls_settings

__all__ = [
    "ANONYMOUS",
    "SSL_SETTINGS",
    "NoMatchingRuleError",
    "PrincipalRule",
    "ServerContexts",
    "TlsSettings",
    "build_server_context",
    "map_principal",
    "parse_rules",
    "principal_from_certificate",
    "rfc2253_name",
    "tls_settings",
]
