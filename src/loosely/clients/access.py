"""A first look at a secured cluster: are the credentials and certificates good, before a command does its work.

librdkafka treats a refused login or a failed TLS handshake like any lost connection: it reports it to the
error callback and tries again, while a blocking call (``list_topics``, a future's ``result``) just waits out its
timeout and then says "Broker transport failure". A user with a wrong password deserves the broker's own reason,
at once. :func:`check_access` asks the cluster for its description (DescribeCluster, a future) and serves the
client's callbacks while it waits: an authentication or TLS failure ends the wait with :class:`AccessDenied`,
whose text is librdkafka's one line (it names the broker and the mechanism, never a secret). A cluster that is
merely away is left to the caller, which knows whether to give up (``topics``) or to wait (``views run``).

Commands call it only when the settings ask for security (:func:`loosely.clients.client_config.is_secured`), so a
plaintext command costs nothing more.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined,unused-ignore]  # no __all__ in some versions

__all__ = ["AccessDenied", "check_access"]

_POLL_S: Final = 0.05
# A login refused and a TLS handshake that failed (an unknown CA, a host name mismatch): retrying cannot help.
_FATAL_CODES: Final = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL})


class AccessDenied(Exception):
    """The cluster refused the client's credentials or certificate, or librdkafka refused the settings themselves;
    the message is one line, free of secrets."""


def check_access(config: Mapping[str, Any], timeout_s: float) -> str | None:
    """Connect with ``config`` (librdkafka settings, with ``bootstrap.servers``) and wait until the cluster
    answers (returns None), refuses (raises :class:`AccessDenied`), or ``timeout_s`` passes (returns the last
    connection error seen, or a line saying nothing answered)."""
    errors: list[KafkaError] = []
    conf: dict[str, Any] = {**config, "error_cb": errors.append, "log_level": 0}
    try:
        admin = AdminClient(conf)
    except KafkaException as e:  # librdkafka refused the settings (an unknown mechanism, an unreadable CA file)
        err = e.args[0] if e.args else None
        text = err.str() if isinstance(err, KafkaError) else str(e)
        raise AccessDenied(text.removeprefix("Failed to create admin client: ")) from None
    future = admin.describe_cluster(request_timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while not future.done():
        admin.poll(_POLL_S)
        fatal = next((e for e in errors if e.code() in _FATAL_CODES), None)
        if fatal is not None:
            future.cancel()
            raise AccessDenied(fatal.str())
        if time.monotonic() > deadline:
            return errors[-1].str() if errors else f"no answer within {timeout_s:g} s"
    try:
        future.result(0)
    except Exception as e:  # the cluster answered with an error: the command will meet it and say so
        return str(e)
    return None
