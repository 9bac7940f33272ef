"""PostgreSQL sink: exactly-once, values as ``jsonb``.

The tables are those of :mod:`loosely.views._sql`, in the connection's default schema. ``Add`` becomes
``to_jsonb(value::numeric + n)``; ``bytes`` values cannot be stored in ``jsonb`` and are refused with a clear error
(decode them in the view). Readers in other services can query the SQL view ``"<name>"`` directly; it always
points at one complete version.

>>> sink = PostgresSink("postgresql://postgres@127.0.0.1:5432/postgres")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from loosely.views._model import Json, ViewError
from loosely.views._sql import SqlSink

__all__ = ["PostgresSink"]


def _encode(v: Json) -> Any:
    if isinstance(v, bytes | bytearray):
        raise ViewError("PostgreSQL stores view values as jsonb; decode bytes values in the view function")
    return Jsonb(v)


def _decode(v: Any) -> Json:
    return v  # type: ignore[no-any-return]  # psycopg already loads jsonb


class PostgresSink(SqlSink):
    placeholder = "%s"
    begin_write = "BEGIN"
    begin_read = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    value_type = "jsonb"
    add_expression = "to_jsonb(({t}.value)::numeric + (excluded.value)::numeric)"
    integrity_errors = (psycopg.errors.UniqueViolation,)
    encode = staticmethod(_encode)
    decode = staticmethod(_decode)
    encode_amount = staticmethod(Jsonb)

    def __init__(self, url: str) -> None:
        self.url = url
        self.location = f"postgresql:{url.rsplit('@', 1)[-1]}"  # the server and database, not who logs in
        conn = psycopg.connect(url, autocommit=True)
        super().__init__(conn, url.rsplit("@", 1)[-1])
