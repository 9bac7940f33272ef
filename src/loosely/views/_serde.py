"""Turning record bytes into values: bytes, UTF-8 strings, JSON, and anything the user supplies (Avro, Protobuf).

A deserializer is any callable ``bytes -> value``; :class:`Serde` pairs one with its inverse for the code that
produces test data or dead-letters records. A deserializer that raises makes the record a *poison record* (see
:mod:`loosely.views._runner` for the policy): the error names the topic, partition and offset, and nothing is lost.

>>> JSON(b'{"a": 1}')
{'a': 1}
>>> STRING(b"caf\\xc3\\xa9")
'café'
>>> avro_like = Serde(decode=lambda b: b[::-1], encode=lambda v: v[::-1])
>>> avro_like(b"olleh"), avro_like.encode(b"hello")
(b'hello', b'olleh')
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

__all__ = ["BYTES", "JSON", "STRING", "Deserializer", "Serde"]

T = TypeVar("T")

Deserializer: TypeAlias = Callable[[bytes], T]


@dataclass(frozen=True, slots=True)
class Serde(Generic[T]):
    """A deserializer (called on record bytes) with the matching serializer."""

    decode: Callable[[bytes], T]
    encode: Callable[[T], bytes]

    def __call__(self, data: bytes) -> T:
        return self.decode(data)


def _identity(b: bytes) -> bytes:
    return b


_json_decoder = json.JSONDecoder()


def _json_decode(b: bytes) -> Any:
    # json.loads(bytes) sniffs the encoding on every call; Kafka JSON is UTF-8, and skipping that halves the cost
    return _json_decoder.decode(b.decode("utf-8"))


def _json_encode(v: Any) -> bytes:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


BYTES: Serde[bytes] = Serde(_identity, _identity)
# The C methods themselves (UTF-8 is their default): no Python frame per record on the hot path.
STRING: Serde[str] = Serde(bytes.decode, str.encode)
JSON: Serde[Any] = Serde(_json_decode, _json_encode)
