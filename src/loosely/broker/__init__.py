"""The broker: the asyncio shell that speaks Kafka's wire protocol over the storage engine.

Its modules are its public surface (``__all__`` names them; tests/test_public_api.py pins the list):

* :mod:`.server`: listening sockets, connections, request dispatch, housekeeping.
* :mod:`.handlers`: one handler module per Kafka API group; :mod:`.context` is what every handler sees.
* :mod:`.groups` and :mod:`.transactions`: the group and transaction coordinators, pure state machines and their
  asyncio shells; :mod:`.producers`: idempotent and transactional producer state; :mod:`.internal`: Kafka's
  internal topics; :mod:`.extensions`: the services that plug into a running broker.
* :mod:`.config` and :mod:`.config_doc`: settings and their generated reference; :mod:`.acls`: ACLs in memory, on
  disk and audited; :mod:`.metrics`: Prometheus and InfluxDB; :mod:`.scrubber`: background CRC checks;
  :mod:`.quotas`: client quotas, stored and enforced; :mod:`.dynamic_config`: dynamic broker configs (KIP-226),
  stored and applied at run time; :mod:`.group_configs`: per-group configs (KIP-848); :mod:`.client_metrics`:
  client telemetry subscriptions and pushed metrics (KIP-714); :mod:`.key_search`: the key index, asked from
  other threads.
"""

__all__ = [
    "acls",
    "client_metrics",
    "config",
    "config_doc",
    "context",
    "dynamic_config",
    "extensions",
    "group_configs",
    "groups",
    "handlers",
    "internal",
    "key_search",
    "metrics",
    "producers",
    "quotas",
    "scrubber",
    "server",
    "transactions",
]
