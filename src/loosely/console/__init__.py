"""A web console for any Kafka-compatible cluster, and for Hollow blob stores.

``loosely console -b HOST:PORT`` serves it on its own; ``loosely broker --console-listen 127.0.0.1:PORT`` serves
it beside loosely's broker, where key searches use the broker's key index. It is a Kafka client (confluent-kafka),
so the same pages show Apache Kafka, Redpanda or loosely: topics and their partitions, offsets and configs;
messages browsed, searched and produced; consumer groups with their lag over time and offset resets; live
messages/s in and out; and a Hollow blob store's versions, types, records, diffs and record histories.

>>> from loosely.console import ConsoleServer, create_app                  # doctest: +SKIP
>>> with ConsoleServer(create_app("127.0.0.1:9092", read_only=True)) as server:  # doctest: +SKIP
...     print(server.url)
"""

from loosely.console._app import create_app
from loosely.console._cluster import Cluster, ConsoleError, KeyLookup, SearchProgress, SearchQuery
from loosely.console._server import ConsoleServer

__all__ = ["Cluster", "ConsoleError", "ConsoleServer", "KeyLookup", "SearchProgress", "SearchQuery", "create_app"]
