"""What the SQL sinks share: versioned tables, offsets in the same transaction, fencing, blue/green by SQL view.

Layout (any number of views and versions in one database):

* ``loosely_views(name, version, topics, state, search, created_ms)``: every version and whether it is building,
  serving or retired.
* ``loosely_view_offsets(name, version, topic, partition, next_offset, last_timestamp_ms)``: the source positions,
  written in the same transaction as the rows. This is what makes the SQL sinks exactly-once.
* ``"<name>__v<version>"(key PRIMARY KEY, value)``: one table per version, written in key order.
* ``"<name>"``: a SQL view over the serving version. Switching versions replaces it and flips the states in one
  transaction, so a reader (through that SQL view, or through :meth:`SqlSink.get`, which resolves the version and
  reads in one snapshot) sees the old version or the new one, never a mix and never a half-built one.

Each batch is one transaction: for each source partition, ``UPDATE ... SET next_offset = <end> WHERE next_offset =
<start>`` (or an ``INSERT`` for a partition never seen), then the net change of each key. If the update matches no
row, another runner moved the position first: the transaction rolls back and the runner reseeks
(:class:`~loosely.views._sink.Fenced`). Subclasses supply the connection, the value encoding and the dialect.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from loosely.views._batch import Batch, _plus, latest_split
from loosely.views._kernel import LatestText
from loosely.views._kernel import document as _document
from loosely.views._model import Delete, Json, Put, TopicPartition, View, ViewError
from loosely.views._sink import (
    Fenced,
    Guarantee,
    SinkError,
    SinkStatistics,
    VersionDropped,
    VersionInfo,
    VersionState,
)

__all__ = ["SqlSink", "batch_document", "table_name"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS loosely_views ("
    " name TEXT NOT NULL, version INTEGER NOT NULL, topics TEXT NOT NULL, state TEXT NOT NULL,"
    " search TEXT, created_ms BIGINT NOT NULL, PRIMARY KEY (name, version))",
    "CREATE TABLE IF NOT EXISTS loosely_view_offsets ("
    " name TEXT NOT NULL, version INTEGER NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,"
    " next_offset BIGINT NOT NULL, last_timestamp_ms BIGINT, PRIMARY KEY (name, version, topic, partition))",
)


def _unchanged(v: Any) -> Any:
    return v


def _as_is(keys: dict[str, Any]) -> dict[str, Any]:
    return keys


def _as_made(statements: list[tuple[str, Any, bool]]) -> Callable[[], Iterable[tuple[str, Any, bool]]]:
    """Statements made already, as the function a prepared write calls for them (see ``SqlSink.prepare``)."""
    return lambda: statements


def batch_document(rows: object) -> str:
    """A batch's rows (a dict of key -> value, or a list of keys) as one compact JSON text, for the statements that
    read a whole batch from one parameter (SQLite's ``json_each``, PostgreSQL's ``jsonb_each``).

    The cyclic garbage collector is paused for the call. The C encoder makes a ``(key, value)`` tuple per item of a
    dict, all alive until it returns; tuples are tracked by the collector, so a 40k-key batch set off about 57
    young collections, whose survivors were promoted into, and made due, full collections of the whole heap.
    Measured (2026-12-07, 20 batches of 50k events over 100k keys, in a process with loosely.views and
    confluent-kafka imported): 0.78 s of CPU with the collector running, 0.46-0.50 s paused; py-spy put the
    collector at a third of the runner's main thread, nearly all of it inside this call. The pause hides no
    garbage: the encoder frees every tuple before it returns, and the only Python code it can run is its own
    ``TypeError`` for a value JSON cannot hold (bytes, for the PostgreSQL sink).

    The common batches (text keys; text, 64-bit integer or null values) are written by a compiled writer instead
    (:mod:`loosely.views._kernel`, ``document``: the same text, without a str per key and value), measured
    (2026-12-07, py-spy, latest-value view) as the largest part of the main thread's time after the record loop.
    """
    doc = _document(rows)
    if doc is not None:
        return doc
    if not gc.isenabled():
        return json.dumps(rows, ensure_ascii=False, check_circular=False, separators=(",", ":"))
    gc.disable()
    try:
        return json.dumps(rows, ensure_ascii=False, check_circular=False, separators=(",", ":"))
    finally:
        gc.enable()


def table_name(name: str, version: int) -> str:
    return f'"{name}__v{int(version)}"'


class SqlSink:
    guarantee = Guarantee.EXACTLY_ONCE
    wants_positions = False

    # -- the dialect, set by subclasses --------------------------------------------------------------------------
    placeholder = "?"
    begin_write = "BEGIN"
    begin_read = "BEGIN"
    value_type = ""
    add_expression = "{t}.value + excluded.value"
    integrity_errors: tuple[type[BaseException], ...] = ()
    encode: Callable[[Json], Any] = staticmethod(_unchanged)
    decode: Callable[[Any], Json] = staticmethod(_unchanged)
    encode_amount: Callable[[int | float], Any] = staticmethod(_unchanged)
    # Whether the statements of _statements put the rows in key order themselves (SQLite's do, in SQL, outside
    # the interpreter); otherwise they are sorted in Python first.
    sorts_in_sql = False

    def __init__(self, conn: Any, where: str) -> None:
        self.where = where
        self.search: tuple[str, ...] = ()
        self._lock = threading.Lock()  # one connection, shared by the runner thread and HTTP readers
        self._db = conn
        self._view: View[object, object] | None = None
        self._batches = 0
        self._written = 0
        self._apply_ms = 0
        self._failures = 0
        with self._lock, self._tx(self.begin_write):
            for stmt in _SCHEMA:
                self._x(stmt)

    # -- small helpers ------------------------------------------------------------------------------------------

    def _q(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _x(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        cur = self._db.cursor()
        cur.execute(self._q(sql), args)
        return cur

    def _tx(self, begin: str) -> _Transaction:
        return _Transaction(self, begin)

    # -- writing ------------------------------------------------------------------------------------------------

    def open(self, view: View[object, object]) -> None:
        t = table_name(view.name, view.version)
        with self._lock, self._tx(self.begin_write):
            self._x(f"CREATE TABLE IF NOT EXISTS {t} (key TEXT PRIMARY KEY, value {self.value_type}){self._options()}")
            if self.search:
                self._create_search(view.name, view.version)
            self._x(
                "INSERT INTO loosely_views VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, version) DO NOTHING",
                (view.name, view.version, json.dumps(list(view.topics)), VersionState.BUILDING.value,
                 json.dumps(list(self.search)) if self.search else None, int(time.time() * 1000)),
            )
        self._view = view

    def _options(self) -> str:
        """What follows a view table's column list (SQLite: ``WITHOUT ROWID`` where nothing needs the rowid)."""
        return ""

    def _create_search(self, name: str, version: int) -> None:
        raise ViewError(f"{self.where}: this sink has no full-text search")

    def stored_positions(self) -> dict[TopicPartition, int]:
        v = self._bound()
        with self._lock, self._tx(self.begin_read):
            rows = self._x(
                "SELECT topic, partition, next_offset FROM loosely_view_offsets WHERE name = ? AND version = ?",
                (v.name, v.version),
            ).fetchall()
        return {TopicPartition(t, p): o for t, p, o in rows}

    def apply(self, batch: Batch) -> None:
        self.prepare(batch)()

    def prepare(self, batch: Batch) -> Callable[[], None]:
        """The half of :meth:`apply` that needs the interpreter (folding, encoding, ordering the rows); returns the
        other half, the transaction, which the runner calls in its writer thread while it builds the next batch.
        The write can be called again after it failed: it prepares nothing and changes nothing outside the
        transaction it rolls back."""
        v = self._bound()
        t = table_name(v.name, v.version)
        statements: Callable[[], Iterable[tuple[str, Any, bool]]]
        text = batch.latest_text
        by_chunks = None if text is None else self._latest_text_statements(t, text)
        latest = batch.latest if text is None or by_chunks is not None else text.to_dict()
        direct = None if latest is None or by_chunks is not None else self._latest_statements(t, latest)
        if by_chunks is not None:
            assert text is not None
            statements, rows = by_chunks, len(text)
        elif latest is not None and direct is not None:
            statements, rows = _as_made(direct), len(latest)
        else:
            made, rows = self._net_statements(t, *batch.net() if latest is None else (latest_split(latest), {}))
            statements = _as_made(made)
        del latest, direct  # the statements carry the rows; the fold is not needed while they are written

        def write() -> None:
            t0 = time.monotonic()
            with self._lock:
                try:
                    with self._tx(self.begin_write):
                        if self._x("SELECT 1 FROM loosely_views WHERE name = ? AND version = ?",
                                   (v.name, v.version)).fetchone() is None:
                            raise VersionDropped(f"{v.id} was dropped from {self.where}")
                        self._advance_offsets(v, batch)
                        cur = self._db.cursor()
                        for sql, params, many in statements():
                            if many:
                                cur.executemany(sql, params)
                            else:
                                cur.execute(sql, params)
                except (SinkError, KeyboardInterrupt, SystemExit):
                    self._failures += 1
                    raise
                except Exception as e:
                    self._failures += 1
                    raise SinkError(f"{self.where}: applying {len(batch)} changes to {t} failed: {e}") from e
                self._batches += 1
                self._written += rows
                self._apply_ms += int((time.monotonic() - t0) * 1000)

        return write

    def _net_statements(self, t: str, absolute: dict[str, Put | Delete],
                        relative: dict[str, int | float]) -> tuple[list[tuple[str, Any, bool]], int]:
        """The statements that write a batch's net effect (:func:`~loosely.views._batch.net_split`'s two dicts),
        and how many rows they write."""
        enc = self.encode
        # In key order: each upsert then lands next to the previous one in the primary key's B-tree, so a batch
        # touches each page once while it is cached (measured on SQLite, 10k-row batches over 100k keys: 1.2-1.3x
        # faster, sort included); on PostgreSQL, runners that write overlapping keys also lock them in one order.
        # A sink whose statements sort the rows themselves (sorts_in_sql) skips the sort here.
        order: Callable[[dict[str, Any]], Iterable[str]] = _as_is if self.sorts_in_sql else sorted
        puts: dict[str, Any] = {}
        deletes: list[str] = []
        keys = order(absolute)
        if not relative:  # latest-value views: only Puts and Deletes, so one comprehension does it
            puts = {k: enc(c[1]) for k in keys if type(c := absolute[k]) is Put}
            if len(puts) < len(absolute):
                deletes = [k for k in keys if type(absolute[k]) is not Put]
        else:
            for k in keys:
                c = absolute[k]
                amount = relative.get(k)
                if type(c) is Put:
                    puts[k] = enc(c.value if amount is None else _plus(k, c.value, amount))
                elif amount is None:
                    deletes.append(k)
                else:
                    puts[k] = enc(amount)  # deleted, then counted from zero
        enc_amount = self.encode_amount
        if not absolute and enc_amount is _unchanged and self.sorts_in_sql:
            adds: dict[str, Any] = relative  # counters: the fold is the rows (read only from here on)
        else:
            adds = {k: enc_amount(relative[k]) for k in order(relative) if k not in absolute}
        return self._statements(t, puts, adds, deletes), len(puts) + len(adds) + len(deletes)

    def _latest_text_statements(self, t: str, text: LatestText) -> Callable[[], Iterable[tuple[str, Any, bool]]] | None:
        """The statements that write a latest-value fold of text values kept as bytes (``Batch.latest_text``), as
        the function the write calls for them, or ``None`` to have it written as a dict (:meth:`_latest_statements`).
        The write holds that function, not ``text``."""
        return None

    def _latest_statements(self, t: str, latest: dict[str, Json]) -> list[tuple[str, Any, bool]] | None:
        """Statements that write a latest-value fold (``Batch.latest``: key -> value, ``None`` deleted) as it
        is, or ``None`` to have it written as Puts and Deletes (:meth:`_net_statements`)."""
        return None

    def _statements(self, t: str, puts: dict[str, Any], adds: dict[str, Any],
                    deletes: list[str]) -> list[tuple[str, Any, bool]]:
        """``(sql, parameters, executemany?)`` that write a batch's rows (key -> encoded value), in key order."""
        out: list[tuple[str, Any, bool]] = []
        if puts:
            out.append((self._q(self._upsert(t, "VALUES (?, ?)", add=False)), list(puts.items()), True))
        if adds:
            out.append((self._q(self._upsert(t, "VALUES (?, ?)", add=True)), list(adds.items()), True))
        if deletes:
            out.append((self._q(f"DELETE FROM {t} WHERE key = ?"), [(k,) for k in deletes], True))
        return out

    def _upsert(self, t: str, rows: str, *, add: bool) -> str:
        """``INSERT`` of ``rows`` (a ``VALUES`` list or a ``SELECT`` of key, value) into table ``t``: a key that
        exists gets the new value, or (``add``) the sum of both."""
        new = self.add_expression.format(t=t) if add else "excluded.value"
        return f"INSERT INTO {t} (key, value) {rows} ON CONFLICT (key) DO UPDATE SET value = {new}"

    def _advance_offsets(self, v: View[object, object], batch: Batch) -> None:
        for tp, end in batch.ends.items():
            start = batch.starts.get(tp)
            ts = batch.last_timestamp_ms.get(tp)
            if start is None:
                try:
                    self._x("INSERT INTO loosely_view_offsets VALUES (?, ?, ?, ?, ?, ?)",
                            (v.name, v.version, tp.topic, tp.partition, end, ts))
                except self.integrity_errors as e:
                    raise Fenced(f"{v.id} {tp.topic}/{tp.partition}: another runner stored a position first") from e
            else:
                cur = self._x(
                    "UPDATE loosely_view_offsets SET next_offset = ?, "
                    "last_timestamp_ms = coalesce(?, last_timestamp_ms) "
                    "WHERE name = ? AND version = ? AND topic = ? AND partition = ? AND next_offset = ?",
                    (end, ts, v.name, v.version, tp.topic, tp.partition, start),
                )
                if cur.rowcount != 1:
                    raise Fenced(f"{v.id} {tp.topic}/{tp.partition}: stored position is no longer {start}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def statistics(self) -> SinkStatistics:
        return SinkStatistics(self._batches, self._written, self._apply_ms, self._failures)

    def _bound(self) -> View[object, object]:
        if self._view is None:
            raise SinkError("the sink is not open: call open(view) first")
        return self._view

    # -- catalog: reading and blue/green ------------------------------------------------------------------------

    def names(self) -> list[str]:
        with self._lock, self._tx(self.begin_read):
            return [r[0] for r in self._x("SELECT DISTINCT name FROM loosely_views ORDER BY name").fetchall()]

    def versions(self, name: str) -> list[VersionInfo]:
        with self._lock, self._tx(self.begin_read):
            rows = self._x(
                "SELECT version, topics, state, created_ms FROM loosely_views WHERE name = ? ORDER BY version", (name,)
            ).fetchall()
            offs = self._x(
                "SELECT version, topic, partition, next_offset, last_timestamp_ms FROM loosely_view_offsets "
                "WHERE name = ?", (name,),
            ).fetchall()
        out = []
        for version, topics, state, created in rows:
            mine = [o for o in offs if o[0] == version]
            stamps = [o[4] for o in mine if o[4] is not None]
            out.append(VersionInfo(
                name, version, tuple(json.loads(topics)), VersionState(state), created,
                {TopicPartition(o[1], o[2]): o[3] for o in mine}, max(stamps) if stamps else None,
            ))
        return out

    def serving_version(self, name: str) -> int | None:
        with self._lock, self._tx(self.begin_read):
            row = self._x("SELECT version FROM loosely_views WHERE name = ? AND state = 'serving'", (name,)).fetchone()
        return None if row is None else int(row[0])

    def switch(self, name: str, version: int) -> None:
        with self._lock, self._tx(self.begin_write):
            found = self._x("SELECT 1 FROM loosely_views WHERE name = ? AND version = ?", (name, version))
            if found.fetchone() is None:
                raise ViewError(f"{name}@{version} does not exist")
            self._x(f'DROP VIEW IF EXISTS "{name}"')
            self._x(f'CREATE VIEW "{name}" AS SELECT key, value FROM {table_name(name, version)}')
            self._x("UPDATE loosely_views SET state = 'retired' WHERE name = ? AND state = 'serving'", (name,))
            self._x("UPDATE loosely_views SET state = 'serving' WHERE name = ? AND version = ?", (name, version))

    def drop(self, name: str, version: int) -> None:
        with self._lock, self._tx(self.begin_write):
            state = self._x("SELECT state FROM loosely_views WHERE name = ? AND version = ?",
                            (name, version)).fetchone()
            if state is not None and state[0] == VersionState.SERVING.value:
                raise ViewError(f"{name}@{version} is serving; switch to another version before dropping it")
            self._drop_extras(name, version)
            self._x(f"DROP TABLE IF EXISTS {table_name(name, version)}")
            self._x("DELETE FROM loosely_view_offsets WHERE name = ? AND version = ?", (name, version))
            self._x("DELETE FROM loosely_views WHERE name = ? AND version = ?", (name, version))

    def _drop_extras(self, name: str, version: int) -> None:
        pass

    def _read(self, name: str, version: int | None, sql: str, args: tuple[Any, ...]) -> list[Any]:
        """Run ``sql`` against the table of ``version`` (default: the serving one) inside one read snapshot."""
        with self._lock, self._tx(self.begin_read):
            if version is None:
                row = self._x("SELECT version FROM loosely_views WHERE name = ? AND state = 'serving'",
                              (name,)).fetchone()
                if row is None:
                    return []
                version = int(row[0])
            q = sql.format(t=table_name(name, version), fts=f'"{name}__v{int(version)}__fts"')
            return list(self._x(q, args).fetchall())

    def get(self, name: str, key: str, version: int | None = None) -> Json | None:
        rows = self._read(name, version, "SELECT value FROM {t} WHERE key = ?", (key,))
        return self.decode(rows[0][0]) if rows else None

    def scan(self, name: str, *, after: str = "", limit: int = 100, version: int | None = None) -> list[
        tuple[str, Json]
    ]:
        q = "SELECT key, value FROM {t} WHERE key > ? ORDER BY key LIMIT ?"
        return [(k, self.decode(v)) for k, v in self._read(name, version, q, (after, limit))]

    def count(self, name: str, version: int | None = None) -> int:
        rows = self._read(name, version, "SELECT count(*) FROM {t}", ())
        return int(rows[0][0]) if rows else 0


class _Transaction:
    """``BEGIN`` ... ``COMMIT``, or ``ROLLBACK`` on any exception (the connection is in autocommit mode)."""

    def __init__(self, sink: SqlSink, begin: str) -> None:
        self.sink = sink
        self.begin = begin

    def __enter__(self) -> None:
        try:
            self.sink._db.cursor().execute(self.begin)
        except Exception as e:
            raise SinkError(f"{self.sink.where}: cannot begin a transaction: {e}") from e

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.sink._db.cursor().execute("ROLLBACK" if exc_type is not None else "COMMIT")
