"""Materialized views: derived data built from the log, thrown away and rebuilt at will.

A :class:`View` maps each source record to changes (:class:`Put`, :class:`Add`, :class:`Delete`) of a keyed
table; a :class:`Runner` keeps that table up to date in a sink, as one member of a consumer group; sinks say what
they guarantee after a crash (:class:`Guarantee`).
"""

import importlib
from typing import TYPE_CHECKING

from loosely.views._batch import Batch, fold_versioned, net_changes
from loosely.views._build import PoisonRecord
from loosely.views._model import (
    Add,
    Change,
    Delete,
    Json,
    Put,
    Record,
    TopicPartition,
    View,
    ViewError,
    ViewId,
    count_by_key,
    latest_by_key,
)
from loosely.views._runner import Runner, RunnerConfig, RunnerStatistics, default_groups, group_id_for
from loosely.views._serde import BYTES, JSON, STRING, Deserializer, Serde
from loosely.views._sink import (
    Catalog,
    Fenced,
    Guarantee,
    Sink,
    SinkError,
    SinkStatistics,
    VersionDropped,
    VersionInfo,
    VersionState,
)
from loosely.views._sqlite import SqliteSink

if TYPE_CHECKING:  # for type checkers; at run time these come from __getattr__ below
    from loosely.views._follow import Follower
    from loosely.views._hollow import HollowSink
    from loosely.views._postgres import PostgresSink
    from loosely.views._rebuild import rebuild
    from loosely.views._serve import ViewServer
    from loosely.views._status import StatusRow
    from loosely.views._status import collect as view_status
    from loosely.views._urls import open_sink

# Imported when first asked for: a runner process needs none of them, and the HTTP server alone brings in
# http.server and email (measured: loosely.views took 7 MiB of RSS over confluent_kafka's, with them); sink URLs
# bring in urllib.parse (0.5 MiB).
_LAZY = {
    "Follower": ("loosely.views._follow", "Follower"),
    "open_sink": ("loosely.views._urls", "open_sink"),
    "HollowSink": ("loosely.views._hollow", "HollowSink"),  # the Hollow engine
    "PostgresSink": ("loosely.views._postgres", "PostgresSink"),  # psycopg, the "postgres" extra
    "StatusRow": ("loosely.views._status", "StatusRow"),
    "ViewServer": ("loosely.views._serve", "ViewServer"),
    "rebuild": ("loosely.views._rebuild", "rebuild"),
    "view_status": ("loosely.views._status", "collect"),
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(name)
    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)


__all__ = [
    "BYTES",
    "JSON",
    "STRING",
    "Add",
    "Batch",
    "Catalog",
    "Change",
    "Delete",
    "Deserializer",
    "Fenced",
    "Follower",
    "Guarantee",
    "HollowSink",
    "Json",
    "PoisonRecord",
    "PostgresSink",
    "Put",
    "Record",
    "Runner",
    "RunnerConfig",
    "RunnerStatistics",
    "Serde",
    "Sink",
    "SinkError",
    "SinkStatistics",
    "SqliteSink",
    "StatusRow",
    "TopicPartition",
    "VersionDropped",
    "VersionInfo",
    "VersionState",
    "View",
    "ViewError",
    "ViewId",
    "ViewServer",
    "count_by_key",
    "default_groups",
    "fold_versioned",
    "group_id_for",
    "latest_by_key",
    "net_changes",
    "open_sink",
    "rebuild",
    "view_status",
]
