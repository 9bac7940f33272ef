"""Services that plug into a running broker (group coordinator, producer state, transactions).

Each is a factory returning an object with ``async start(ctx)`` and ``async stop()``; ``start`` registers the
service's handlers and hooks on the :class:`~loosely.broker.context.BrokerContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["EXTENSIONS"]

EXTENSIONS: list[Callable[[], Any]] = []
