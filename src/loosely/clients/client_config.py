"""Kafka client settings for a secured cluster, as a user brings them: a properties file and ``-X NAME=VALUE``.

Every loosely client (the CLI, the views, the mirror, the Hollow announcer) talks to Kafka through librdkafka, so
what it finally needs is librdkafka's property names. Users, though, copy their cluster's settings from a Java
client's ``client.properties``, and some of Java's names differ from librdkafka's. This module is the one place
that reads such settings and turns them into librdkafka's, so no command parses them on its own:

* :func:`parse_properties` reads the text of a Java properties file (the syntax is
  :mod:`loosely.protocol.properties`', shared with the broker's ``--config-file``);
* :func:`translate` maps the Java-client names where librdkafka's differ (below) and leaves every other name as
  it is, for librdkafka to accept or refuse;
* :func:`client_config` puts files and ``NAME=VALUE`` items together (later ones win, as for kcat's ``-F`` and
  ``-X``), translated;
* :func:`redacted` is what may be shown of a configuration: secrets never reach a log or an error message.

Translations (Java client -> librdkafka):

=======================================================  ====================================================
``sasl.mechanism``                                       ``sasl.mechanisms``
``sasl.jaas.config`` with ``PlainLoginModule`` or        ``sasl.username`` / ``sasl.password``
``ScramLoginModule`` ``username=... password=...``
``sasl.jaas.config`` with ``OAuthBearerLoginModule``     ``sasl.oauthbearer.config`` (``principal=...``),
``unsecuredLoginStringClaim_sub=...``                    ``enable.sasl.oauthbearer.unsecure.jwt=true``
``ssl.truststore.location`` (``ssl.truststore.type=PEM``)  ``ssl.ca.location``
``ssl.truststore.certificates`` (PEM text)               ``ssl.ca.pem``
``ssl.keystore.location`` (``ssl.keystore.type=PEM``)    ``ssl.certificate.location`` and ``ssl.key.location``
``ssl.keystore.certificate.chain`` / ``ssl.keystore.key``  ``ssl.certificate.pem`` / ``ssl.key.pem``
``ssl.keystore.location`` (``ssl.keystore.type=PKCS12``)  kept (librdkafka reads PKCS#12 under the same name)
``ssl.endpoint.identification.algorithm=`` (empty)       ``ssl.endpoint.identification.algorithm=none``
=======================================================  ====================================================

JKS key and trust stores are refused with a line saying to convert them to PEM (librdkafka has no JKS reader);
so is a truststore without ``ssl.truststore.type``, since Java reads it as JKS. Settings that only say what the
translated ones already say (``ssl.truststore.type``, ``ssl.keystore.type``, a PEM truststore's password) are
dropped.

>>> sorted(translate({"sasl.mechanism": "SCRAM-SHA-256",
...     "sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required '
...                         'username="alice" password="s3cret";'}).items())
[('sasl.mechanisms', 'SCRAM-SHA-256'), ('sasl.password', 's3cret'), ('sasl.username', 'alice')]
>>> redacted({"sasl.username": "alice", "sasl.password": "s3cret"})
{'sasl.username': 'alice', 'sasl.password': '[redacted]'}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from loosely.protocol import properties

__all__ = [
    "ClientConfigError",
    "client_config",
    "is_secret",
    "is_secured",
    "load_properties",
    "parse_properties",
    "parse_settings",
    "redacted",
    "translate",
]

# A client properties file is a few dozen lines; anything this large is the wrong file (a keystore, a log).
PROPERTIES_BYTES_MAX: Final = 1 << 20
REDACTED: Final = "[redacted]"

# librdkafka's and Java's names of settings whose values are secrets (passwords, keys, tokens, JAAS lines).
_SECRET_NAMES: Final = frozenset({
    "sasl.password", "sasl.jaas.config", "sasl.oauthbearer.client.secret", "sasl.oauthbearer.config",
    "ssl.key.password", "ssl.key.pem", "ssl.keystore.password", "ssl.keystore.key", "ssl.truststore.password",
    "ssl_key",
})
_SECRET_WORDS: Final = ("password", "secret", "token", "credential")


class ClientConfigError(ValueError):
    """Client settings that cannot be used; the message names the setting (never its value if it is a secret)."""


def is_secret(name: str) -> bool:
    """Whether the value of setting ``name`` must not be shown."""
    lower = name.lower()
    return lower in _SECRET_NAMES or any(w in lower for w in _SECRET_WORDS)


def redacted(config: Mapping[str, object]) -> dict[str, object]:
    """``config`` with every secret value replaced: what may go into a log line or an error message."""
    return {k: REDACTED if is_secret(k) else v for k, v in config.items()}


def is_secured(config: Mapping[str, object]) -> bool:
    """Whether ``config`` asks for anything but a plaintext connection (TLS, SASL, or either's settings).

    The native fast paths speak plain TCP only; they step aside to librdkafka when this is true.
    """
    protocol = str(config.get("security.protocol", "plaintext")).lower()
    return protocol != "plaintext" or any(k.startswith(("ssl.", "sasl.", "ssl_")) for k in config)


# --- Java properties files ------------------------------------------------------------------------------------


def parse_properties(text: str, source: str = "properties") -> dict[str, str]:
    """The settings of a Java properties file's text (:mod:`loosely.protocol.properties` reads the syntax, as the
    broker's ``--config-file`` does); ``source`` names it in errors.

    >>> parse_properties("# a comment\\nsecurity.protocol = SASL_SSL\\nsasl.mechanism: SCRAM-SHA-256\\n")
    {'security.protocol': 'SASL_SSL', 'sasl.mechanism': 'SCRAM-SHA-256'}
    """
    try:
        out = properties.parse_properties(text)
    except properties.PropertiesError as e:  # names the setting, never its value
        raise ClientConfigError(f"{source}: {e}") from None
    if "" in out:
        raise ClientConfigError(f"{source}: a setting without a name (a line starting with = or :)")
    return out


def load_properties(path: str | Path) -> dict[str, str]:
    """Read and parse the properties file at ``path`` (not translated)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(PROPERTIES_BYTES_MAX + 1)
    except OSError as e:
        raise ClientConfigError(f"cannot read client config {path}: {e.strerror or e}") from None
    if len(data) > PROPERTIES_BYTES_MAX:
        raise ClientConfigError(f"client config {path} is over {PROPERTIES_BYTES_MAX} bytes: not a properties file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # what java.util.Properties.load(InputStream) reads
    return parse_properties(text, str(path))


def parse_settings(items: Iterable[str], flag: str = "-X") -> dict[str, str]:
    """``["name=value", ...]`` as ``-X`` gives them; an item without ``=`` is an error naming ``flag``."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            shown = "an item that names a secret" if is_secret(item) else repr(item)
            raise ClientConfigError(f"{flag} expects NAME=VALUE, got {shown}")
        out[name.strip()] = value
    return out


# --- Java names -> librdkafka's --------------------------------------------------------------------------------

_JAAS_ENTRY: Final = re.compile(r"^\s*([\w.$]+)\s+(required|requisite|sufficient|optional)\b(.*?);?\s*$", re.DOTALL)
_JAAS_OPTION: Final = re.compile(r'\s*([\w.$-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;"]+))')


def _jaas_options(text: str) -> tuple[str, dict[str, str]]:
    """The login module class and options of a one-entry ``sasl.jaas.config``."""
    m = _JAAS_ENTRY.match(text)
    if m is None:
        raise ClientConfigError("sasl.jaas.config: expected '<LoginModule class> required name=\"value\" ...;'")
    module, rest = m.group(1), m.group(3).strip().rstrip(";")
    options: dict[str, str] = {}
    pos = 0
    while pos < len(rest) and rest[pos:].strip():
        o = _JAAS_OPTION.match(rest, pos)
        if o is None:
            raise ClientConfigError(f"sasl.jaas.config: cannot read the options of {module} (name=\"value\" ...)")
        quoted = o.group(2)
        options[o.group(1)] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else o.group(3)
        pos = o.end()
    return module, options


def _from_jaas(text: str) -> dict[str, str]:
    module, options = _jaas_options(text)
    short = module.rsplit(".", 1)[-1]
    if short in ("PlainLoginModule", "ScramLoginModule"):
        if "username" not in options or "password" not in options:
            raise ClientConfigError(f"sasl.jaas.config: {short} needs username=\"...\" and password=\"...\"")
        return {"sasl.username": options["username"], "sasl.password": options["password"]}
    if short == "OAuthBearerLoginModule":
        sub = options.get("unsecuredLoginStringClaim_sub")
        if sub is None:
            raise ClientConfigError("sasl.jaas.config: only OAuthBearerLoginModule's unsecured tokens "
                                    "(unsecuredLoginStringClaim_sub) translate; set librdkafka's "
                                    "sasl.oauthbearer.* settings instead")
        return {"sasl.oauthbearer.config": f"principal={sub}", "enable.sasl.oauthbearer.unsecure.jwt": "true"}
    raise ClientConfigError(f"sasl.jaas.config: {short} does not translate to librdkafka; set its sasl.* "
                            "settings instead (e.g. sasl.kerberos.* for GSSAPI)")


def _store_type(config: Mapping[str, str], which: str, default: str) -> str:
    return config.get(f"ssl.{which}.type", default).strip().upper()


def _refuse_jks(which: str, what: str) -> ClientConfigError:
    return ClientConfigError(
        f"ssl.{which}.location: {what}; librdkafka cannot read JKS, convert the store to PEM "
        f"(keytool -importkeystore ... -deststoretype PKCS12, then openssl) and set ssl.{which}.type=PEM")


def translate(config: Mapping[str, str]) -> dict[str, str]:
    """``config`` with the Java client's names turned into librdkafka's (see the module's table).

    librdkafka's own names pass through untouched, so a file may mix both. A setting given both ways (say
    ``sasl.mechanism`` and ``sasl.mechanisms``) keeps librdkafka's.
    """
    out: dict[str, str] = {}
    native: dict[str, str] = {}
    for name, value in config.items():
        if name == "sasl.mechanism":
            out["sasl.mechanisms"] = value
        elif name == "sasl.jaas.config":
            out.update(_from_jaas(value))
        elif name == "ssl.truststore.location":
            kind = _store_type(config, "truststore", "JKS")
            if kind != "PEM":
                raise _refuse_jks("truststore", f"a {kind} truststore (Java's default type is JKS)"
                                  if kind in ("JKS", "PKCS12") else f"truststore type {kind}")
            out["ssl.ca.location"] = value
        elif name == "ssl.truststore.certificates":
            out["ssl.ca.pem"] = value
        elif name == "ssl.keystore.location":
            kind = _store_type(config, "keystore", "PKCS12" if not value.lower().endswith(".jks") else "JKS")
            if kind == "PEM":  # one file holds the key and the chain; OpenSSL's PEM readers pick each out
                out["ssl.certificate.location"] = value
                out["ssl.key.location"] = value
            elif kind == "PKCS12":
                native[name] = value
            else:
                raise _refuse_jks("keystore", f"a {kind} keystore")
        elif name == "ssl.keystore.certificate.chain":
            out["ssl.certificate.pem"] = value
        elif name == "ssl.keystore.key":
            out["ssl.key.pem"] = value
        elif name == "ssl.keystore.password" and _store_type(config, "keystore", "PKCS12") == "PEM":
            continue  # a PEM keystore has no store password; its key's is ssl.key.password
        elif name in ("ssl.truststore.type", "ssl.keystore.type", "ssl.truststore.password"):
            continue  # said by the translated names above
        elif name == "ssl.endpoint.identification.algorithm" and not value.strip():
            out[name] = "none"  # Java's empty value turns host name checks off; librdkafka spells it "none"
        else:
            native[name] = value
    return {**out, **native}


def client_config(files: Iterable[str | Path] = (), settings: Iterable[str] = (), *,
                  flag: str = "-X") -> dict[str, str]:
    """The librdkafka settings of ``files`` (properties files, in order) and then ``settings`` (``NAME=VALUE``
    items, which win), translated from Java's names where those differ.

    >>> client_config(settings=["security.protocol=SASL_PLAINTEXT", "sasl.mechanism=PLAIN"])
    {'sasl.mechanisms': 'PLAIN', 'security.protocol': 'SASL_PLAINTEXT'}
    """
    merged: dict[str, str] = {}
    for path in files:
        merged.update(load_properties(path))
    merged.update(parse_settings(settings, flag))
    return translate(merged)
