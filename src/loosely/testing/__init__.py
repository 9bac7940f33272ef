"""Helpers shipped for the tests of services built on loosely (and for loosely's own tests).

* :func:`embedded_broker` and the ``loosely_broker`` pytest fixture: a real broker on a free loopback port.
* :func:`embedded_schema_registry` and the ``registry_url`` fixture: a schema registry stored in that broker.
* :class:`ApacheKafka`: a real Apache Kafka cluster from Maven Central jars, for differential tests.
* :class:`FakeClock`, :class:`FaultyFileSystem`: inject time and disk faults into the storage engine.
"""

from loosely.testing.apache_kafka import ApacheKafka, ensure_kafka_jars, free_port
from loosely.testing.clock import FakeClock
from loosely.testing.embedded import embedded_broker, embedded_schema_registry
from loosely.testing.faulty_fs import FaultyFileSystem, InjectedFault

__all__ = [
    "ApacheKafka",
    "FakeClock",
    "FaultyFileSystem",
    "InjectedFault",
    "embedded_broker",
    "embedded_schema_registry",
    "ensure_kafka_jars",
    "free_port",
]
