"""One line of text for a confluent-kafka failure, as every subcommand prints it."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

__all__ = ["kafka_error_text"]


def kafka_error_text(e: KafkaException) -> str:
    """The error's own text, or librdkafka's name for its code when it carries none (timeouts)."""
    err = e.args[0] if e.args else None
    if not isinstance(err, KafkaError):
        return str(e)
    text: str = err.str() or KafkaError(err.code()).str()
    return text
