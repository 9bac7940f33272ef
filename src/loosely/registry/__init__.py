"""A Confluent-compatible schema registry whose only storage is the ``_schemas`` topic.

The registry is a Kafka client: it reads and writes ``_schemas`` through the Kafka protocol, so the same code runs
beside loosely's broker (``loosely broker --schema-registry-listen``) and against any Kafka cluster (``loosely
schema-registry -b HOST:PORT``). Its records are Confluent's (:mod:`loosely.registry._records`), so Confluent
Schema Registry or Karapace can take over the topic, and the reverse.

Rooms: :mod:`~loosely.registry._records` (the log format), :mod:`~loosely.registry._types` (Avro and JSON Schema:
parsing, identity, compatibility), :mod:`~loosely.registry._state` (the sans-IO state machine and the planned
changes), :mod:`~loosely.registry._store` (the Kafka-backed store, one writer, read-your-write),
:mod:`~loosely.registry._group` (the election in Confluent's ``schema-registry`` group: its JSON and the member's
pure state machine), :mod:`~loosely.registry._election` (the member's thread and socket) and
:mod:`~loosely.registry._http` (the REST API; followers forward changes to the leader);
:mod:`~loosely.registry._decode` reads Confluent-framed records with a registry's schemas, for ``loosely consume
-s value=avro -r URL`` and the web console.

>>> from loosely.testing import embedded_broker
>>> import json, urllib.request
>>> with embedded_broker() as broker, SchemaRegistry(broker.bootstrap_servers) as registry:
...     request = urllib.request.Request(f"{registry.url}/subjects/greetings-value/versions", method="POST",
...         data=json.dumps({"schema": '"string"'}).encode(),
...         headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
...     json.loads(urllib.request.urlopen(request).read())
{'id': 1}
"""

from __future__ import annotations

from loosely.registry._decode import FRAME_BYTES, Decoded, DecodeError, FramedDecoder, SchemaSource
from loosely.registry._errors import RegistryError
from loosely.registry._http import REQUEST_BYTES_MAX, RegistryServer
from loosely.registry._records import Reference, SchemaVersion
from loosely.registry._service import RegistryStatistics, SchemaRegistry
from loosely.registry._state import RegistryState
from loosely.registry._store import KafkaStore

__all__ = [
    "FRAME_BYTES",
    "REQUEST_BYTES_MAX",
    "DecodeError",
    "Decoded",
    "FramedDecoder",
    "KafkaStore",
    "Reference",
    "RegistryError",
    "RegistryServer",
    "RegistryState",
    "RegistryStatistics",
    "SchemaRegistry",
    "SchemaSource",
    "SchemaVersion",
]
