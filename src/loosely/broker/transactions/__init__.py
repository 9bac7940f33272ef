"""Transactions: the per-transactional-id state machine (pure), its ``__transaction_state`` records, and the
coordinator that persists it and writes transaction markers.
"""
