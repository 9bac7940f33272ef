"""Transactions: the per-transactional-id state machine (pure), its ``__transaction_state`` records, and the
coordinator that persists it and writes transaction markers.

* :mod:`.state`: one transactional id's state machine (Kafka's TransactionCoordinator and TransactionMetadata).
* :mod:`.records`: the ``__transaction_state`` records in Apache Kafka's schemas.
* :mod:`.coordinator`: the asyncio shell around the state machine.
"""

__all__ = [
    "coordinator",
    "records",
    "state",
]
