"""An embedded loosely broker for tests: a fresh data directory, a free port, stopped afterwards."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from loosely.broker.config import BrokerConfig, split_kafka_settings
from loosely.broker.server import BrokerThread
from loosely.registry import SchemaRegistry
from loosely.storage.clock import Clock

__all__ = ["embedded_broker", "embedded_schema_registry"]


@contextmanager
def embedded_broker(
    *,
    data_dir: str | None = None,
    log_defaults: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    settings: Mapping[str, str] | None = None,
    schema_registry: bool = False,
    **config: object,
) -> Iterator[BrokerThread]:
    """A running broker on 127.0.0.1 and a free port; ``.bootstrap_servers`` is what clients connect to.

    ``settings`` are Kafka-named broker settings, as ``loosely broker --config`` takes them (listeners and TLS:
    ``{"listeners": "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0", "ssl.keystore.location": ...}``; then
    ``.bootstrap_servers_for("SSL")``). An unknown name is a :class:`ValueError`.

    With ``schema_registry=True`` a schema registry stored in this broker runs beside it, and the broker gets a
    ``registry_url`` attribute (``http://127.0.0.1:PORT``) for confluent-kafka's ``SchemaRegistryClient``.

    >>> from confluent_kafka import Producer
    >>> with embedded_broker() as broker:
    ...     p = Producer({"bootstrap.servers": broker.bootstrap_servers})
    ...     p.produce("greetings", b"hello")
    ...     p.flush(10)
    0
    """
    own = data_dir is None
    d = data_dir or tempfile.mkdtemp(prefix="loosely-")
    config.setdefault("port", 0)  # a fixed port lets a test restart the broker where clients expect it
    if settings:
        fields, topic_defaults, unknown = split_kafka_settings(settings)
        if unknown:
            raise ValueError(f"unknown broker settings: {', '.join(unknown)}")
        config = {**fields, **config}
        log_defaults = {**topic_defaults, **(log_defaults or {})}
    cfg = BrokerConfig(data_dir=d, log_defaults=dict(log_defaults or {}), **config)  # type: ignore[arg-type]
    b = BrokerThread(cfg, clock=clock)
    b.start()
    try:
        if schema_registry:
            with embedded_schema_registry(b.bootstrap_servers) as registry:
                b.registry_url = registry.url  # type: ignore[attr-defined]
                yield b
        else:
            yield b
    finally:
        b.stop()
        if own:
            shutil.rmtree(d, ignore_errors=True)


@contextmanager
def embedded_schema_registry(bootstrap_servers: str, **options: Any) -> Iterator[SchemaRegistry]:
    """A schema registry on 127.0.0.1 and a free port, stored in ``_schemas`` of ``bootstrap_servers``.

    ``options`` go to :class:`~loosely.registry.SchemaRegistry` (``topic``, ``default_compatibility``, ...).

    >>> from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    >>> with embedded_broker() as broker, embedded_schema_registry(broker.bootstrap_servers) as registry:
    ...     client = SchemaRegistryClient({"url": registry.url})
    ...     client.register_schema("greetings-value", Schema('"string"', "AVRO"))
    1
    """
    with SchemaRegistry(bootstrap_servers, **options) as registry:
        yield registry
