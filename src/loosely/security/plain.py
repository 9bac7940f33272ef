"""SASL/PLAIN, server side (RFC 4616), as Apache Kafka's PlainSaslServer checks it.

The one client message is ``authzid NUL authcid NUL password`` (UTF-8). As in Kafka: exactly three fields, the user
name and the password must not be empty, an authzid must equal the user name, and the password is compared in
constant time with the one configured for the user (``user_NAME="..."`` options of the PlainLoginModule JAAS line).
PLAIN sends the password in the clear; it belongs on a TLS listener outside development.

Kafka sends PlainSaslServer's own messages to the client ("Authentication failed: Invalid username or password"),
so :class:`PlainError` carries text that may be shown to clients; it never holds the password.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

__all__ = ["PlainError", "authenticate_plain"]


class PlainError(Exception):
    """Authentication failed; the text is Kafka's message to the client."""


def authenticate_plain(token: bytes, users: Mapping[str, str]) -> str:
    """The authenticated user name, or :class:`PlainError`.

    >>> authenticate_plain(b"\\0alice\\0alice-secret", {"alice": "alice-secret"})
    'alice'
    """
    try:
        text = token.decode("utf-8")
    except UnicodeDecodeError:
        raise PlainError("Invalid SASL/PLAIN response: not UTF-8") from None
    fields = text.split("\0")
    if len(fields) != 3:
        raise PlainError(f"Invalid SASL/PLAIN response: expected 3 tokens, got {len(fields)}")
    authzid, user, password = fields
    if not user:
        raise PlainError("Authentication failed: username not specified")
    if not password:
        raise PlainError("Authentication failed: password not specified")
    expected = users.get(user)
    # Compare against something even for an unknown user, so the time taken does not tell which names exist.
    ok = hmac.compare_digest(password.encode(), (expected if expected is not None else "\0" + password).encode())
    if expected is None or not ok:
        raise PlainError("Authentication failed: Invalid username or password")
    if authzid and authzid != user:
        raise PlainError("Authentication failed: Client requested an authorization id that is different from username")
    return user
