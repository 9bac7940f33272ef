"""pytest fixtures for services built on loosely (registered automatically through the ``pytest11`` entry point).

``loosely_broker``: a fresh embedded broker per test; use ``loosely_broker.bootstrap_servers`` with any Kafka client.
``registry_url``: the URL of a schema registry stored in that broker, for confluent-kafka's ``SchemaRegistryClient``
and its Avro, JSON Schema and Protobuf serializers (``{"url": registry_url}``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from loosely.broker.server import BrokerThread
from loosely.testing.embedded import embedded_broker, embedded_schema_registry


@pytest.fixture
def loosely_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    with embedded_broker(data_dir=str(tmp_path_factory.mktemp("loosely-broker"))) as b:
        yield b


@pytest.fixture
def registry_url(loosely_broker: BrokerThread) -> Iterator[str]:
    with embedded_schema_registry(loosely_broker.bootstrap_servers) as registry:
        yield registry.url
