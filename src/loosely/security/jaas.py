"""Kafka's ``sasl.jaas.config`` values: one JAAS login module line, read by a small tokenizer.

Grammar (the subset of JAAS configuration files Kafka accepts in a property)::

    config  := module ';'
    module  := CLASS FLAG option*          FLAG is required | requisite | sufficient | optional
    option  := NAME '=' VALUE              VALUE is a "double-quoted string" (\\ escapes the next character)
                                           or a bare word

Kafka's brokers read one module per mechanism from ``listener.name.<listener>.<mechanism>.sasl.jaas.config``; the
PlainLoginModule's ``user_<name>="<password>"`` options are the PLAIN users. Values are secrets: errors name the
position, never the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "OAUTHBEARER_LOGIN_MODULE",
    "PLAIN_LOGIN_MODULE",
    "SCRAM_LOGIN_MODULE",
    "JaasModule",
    "parse_jaas",
    "plain_users",
]

PLAIN_LOGIN_MODULE: Final = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_LOGIN_MODULE: Final = "org.apache.kafka.common.security.scram.ScramLoginModule"
OAUTHBEARER_LOGIN_MODULE: Final = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
_FLAGS: Final = frozenset({"required", "requisite", "sufficient", "optional"})
_PUNCT: Final = "=;"


@dataclass(frozen=True, slots=True)
class JaasModule:
    login_module: str
    flag: str
    options: Mapping[str, str] = field(repr=False)


def _tokens(text: str) -> list[tuple[str, bool]]:
    """``(token, quoted)`` pairs; ValueError on an unterminated string."""
    out: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in _PUNCT:
            out.append((c, False))
            i += 1
        elif c == '"':
            value: list[str] = []
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
            if i >= n:
                raise ValueError("JAAS config has an unterminated quoted value")
            out.append(("".join(value), True))
            i += 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in _PUNCT and text[i] != '"':
                i += 1
            out.append((text[start:i], False))
    return out


def parse_jaas(text: str) -> JaasModule:
    """The single login module of a ``sasl.jaas.config`` value; ValueError says what is wrong (never a value).

    >>> m = parse_jaas('org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="s3cret";')
    >>> m.login_module, m.flag, dict(m.options)
    ('org.apache.kafka.common.security.plain.PlainLoginModule', 'required', {'user_alice': 's3cret'})
    """
    toks = _tokens(text)
    if len(toks) < 3 or toks[0][1] or toks[1][1]:
        raise ValueError("JAAS config must be 'LoginModuleClass FLAG [name=value ...];'")
    module, flag = toks[0][0], toks[1][0]
    if flag.lower() not in _FLAGS:
        raise ValueError(f"JAAS config: login module control flag must be one of {sorted(_FLAGS)}, got {flag!r}")
    options: dict[str, str] = {}
    i = 2
    while i < len(toks) and toks[i] != (";", False):
        name, quoted = toks[i]
        if quoted or name in _PUNCT or i + 2 >= len(toks) or toks[i + 1] != ("=", False):
            raise ValueError(f"JAAS config: expected name=value at token {i + 1}")
        value, vquoted = toks[i + 2]
        if not vquoted and value in _PUNCT:
            raise ValueError(f"JAAS config: missing value for option {name!r}")
        options[name] = value
        i += 3
    if i >= len(toks):
        raise ValueError("JAAS config must end with ';'")
    if i + 1 != len(toks):
        raise ValueError("JAAS config holds more than one login module; Kafka allows exactly one per property")
    return JaasModule(module, flag.lower(), options)


def plain_users(module: JaasModule) -> dict[str, str]:
    """The ``user_NAME="password"`` options of a PlainLoginModule line."""
    if module.login_module != PLAIN_LOGIN_MODULE:
        raise ValueError(f"the PLAIN mechanism needs {PLAIN_LOGIN_MODULE}, got {module.login_module}")
    return {k[len("user_") :]: v for k, v in module.options.items() if k.startswith("user_") and len(k) > len("user_")}
