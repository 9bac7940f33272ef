"""loosely: decoupled microservices with a Kafka-compatible log, materialized views and Hollow datasets."""

__version__ = "0.1.0"

__all__ = ["__version__"]
