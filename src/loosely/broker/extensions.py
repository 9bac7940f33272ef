"""Services that plug into a running broker (group coordinator, share groups, producer state, transactions,
key search).

Each is a factory returning an object with ``async start(ctx)`` and ``async stop()``; ``start`` registers the
service's handlers and hooks on the :class:`~loosely.broker.context.BrokerContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loosely.broker.groups.coordinator import GroupCoordinator
from loosely.broker.groups.share_shell import ShareGroups
from loosely.broker.key_search import KeySearch
from loosely.broker.producers import ProducersService
from loosely.broker.transactions.coordinator import TransactionCoordinator

__all__ = ["EXTENSIONS"]

# In start order: the group coordinator listens to the producer state for transaction markers, and the transaction
# coordinator writes markers through it. Key search (the logs' key indexes, for the web console) needs none of them.
EXTENSIONS: list[Callable[[], Any]] = [
    ProducersService, GroupCoordinator, ShareGroups, TransactionCoordinator, KeySearch,
]
