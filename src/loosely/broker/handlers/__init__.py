"""One handler module per Kafka API group; :func:`all_handlers` is the dispatch table."""

from __future__ import annotations

from loosely.broker.context import Handler
from loosely.broker.handlers import (
    acls,
    admin,
    api_versions,
    consumer_groups,
    controller,
    fetch,
    group_offsets,
    groups,
    log_dirs,
    metadata,
    offsets,
    produce,
    quotas,
    sasl,
    share_groups,
    streams_groups,
    telemetry,
    tokens,
    txn,
    txn_admin,
)

__all__ = ["all_handlers"]


def all_handlers() -> dict[int, Handler]:
    table: dict[int, Handler] = {}
    for module in (
        api_versions,
        metadata,
        produce,
        fetch,
        offsets,
        admin,
        groups,
        group_offsets,
        consumer_groups,
        txn,
        log_dirs,
        txn_admin,
        controller,
        sasl,
        quotas,
        acls,
        telemetry,
        tokens,
        share_groups,
        streams_groups,
    ):
        table.update(module.HANDLERS)
    return table
