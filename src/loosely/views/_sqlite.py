"""SQLite sink (the embedded default), with optional FTS5 full-text search: exactly-once.

The tables are those of :mod:`loosely.views._sql`. ``value`` has no declared type: numbers are stored as numbers
(so ``Add`` is one ``UPDATE``), ``bytes`` as BLOBs, everything else as JSON text. With ``search=(fields...)``,
``"<name>__v<version>__fts"`` is an FTS5 index (porter stemming) of those fields of each JSON value, kept in step
by triggers inside the same transactions, so a search never sees rows the offsets do not cover.

View tables are ``WITHOUT ROWID`` (one B-tree, ordered by key) unless they have a search index, whose triggers
need a rowid.

The database runs in WAL mode with ``synchronous=NORMAL``: a power loss may drop the last transactions, but rows
and offsets are dropped together, so the runner replays exactly what was lost. Several runner processes may write
to one file; transactions serialize on SQLite's write lock (``BEGIN IMMEDIATE``). They may also open one new file at
once: the switch to WAL mode waits for the others as any lock does (see :func:`_switch_to_wal`).

>>> import tempfile, os
>>> from loosely.views import count_by_key, Batch, Add, TopicPartition
>>> sink = SqliteSink(os.path.join(tempfile.mkdtemp(), "views.db"))
>>> sink.open(count_by_key("hits", ["t"]))
>>> tp = TopicPartition("t", 0)
>>> sink.apply(Batch.build([(tp, 0, 0, Add("a", 1)), (tp, 1, 0, Add("a", 1))]))
>>> sink.switch("hits", 1)
>>> sink.get("hits", "a"), sink.stored_positions()
(2, {TopicPartition(topic='t', partition=0): 2})
>>> sink.close()
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring
from typing import Any

from loosely.views._kernel import LatestText
from loosely.views._model import Json, ViewError
from loosely.views._sink import SinkError
from loosely.views._sql import SqlSink, batch_document, table_name

__all__ = ["SqliteSink", "decode_value", "encode_value"]


def encode_value(v: Json) -> Any:
    """A view value as stored in the ``value`` column (see the module docstring)."""
    t = type(v)
    if t is str:  # the common case first
        return encode_basestring(v)  # type: ignore[arg-type]
    if t is int or t is float or t is bytes:
        return v
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def decode_value(v: Any) -> Json:
    if isinstance(v, str):
        return json.loads(v)  # type: ignore[no-any-return]
    return v  # type: ignore[no-any-return]


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _json_safe(rows: dict[str, Any]) -> bool:
    """Whether every value survives a trip through JSON into SQLite unchanged: text, and 64-bit integers (JSON
    has no bytes; SQLite's JSON reader parses floats itself, which this code does not vouch for)."""
    types = set(map(type, rows.values()))
    if types <= {str}:
        return True
    return types <= {str, int} and _ints_fit(rows)


def _ints_fit(rows: dict[str, Any]) -> bool:
    """Whether every integer among the values fits SQLite's 64 bits."""
    ints = [v for v in rows.values() if type(v) is int]
    return not ints or (min(ints) >= _INT64_MIN and max(ints) <= _INT64_MAX)


_NONE = type(None)
_DIRECT_TYPES = frozenset((str, int, _NONE))


def _json_text(doc: str) -> str | None:
    """``doc`` if json_each reads every text in it whole: it ends a text at a NUL character (``\\u0000``), so
    a document with one (or with the six characters of that escape in a text, to be safe) goes row by row."""
    return None if "\\u0000" in doc else doc


def _json_rows(rows: dict[str, Any]) -> str | None:
    """The rows as one JSON document for json_each, or ``None`` where JSON cannot carry them exactly."""
    return _json_text(batch_document(rows)) if _json_safe(rows) else None


# Rows per document of a latest-value batch kept as bytes (see SqliteSink._latest_text_statements): about 45 KiB
# of JSON for the benchmark's rows; a statement per document costs SQLite little next to its rows. Measured
# 2026-12-07 (latest-value view, 1M events, loaded machine): 1,024 rows 29.8-30.2 MiB peak RSS, 4,096 30.2-30.5,
# 16,384 32.2-33.3, CPU within the load's noise.
_DOCUMENT_ROWS_MAX = 1024

# How long to wait between two attempts to switch a new database file to WAL while another connection holds it.
_WAL_RETRY_S = 0.005


def _switch_to_wal(db: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another connection holds the file, for up to the busy timeout.

    Why a loop: on a file not yet in WAL mode (a new one) the switch reads the header under a shared lock, then
    writes it under a write lock. When two connections (two runners started at once, or a runner and ``views
    status``) switch the same new file together, both hold the shared lock and both want the write lock: SQLite
    refuses one of them at once with "database is locked" instead of calling its busy handler (waiting could
    never end, as each waits on the other). The refused one lets go of its lock; tried again, it finds the file in
    WAL mode already (or switches it itself). On a file already in WAL mode the first attempt succeeds.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(_WAL_RETRY_S)


class SqliteSink(SqlSink):
    begin_write = "BEGIN IMMEDIATE"
    sorts_in_sql = True
    begin_read = "BEGIN"
    integrity_errors = (sqlite3.IntegrityError,)
    encode = staticmethod(encode_value)
    decode = staticmethod(decode_value)

    def __init__(self, path: str, *, search: Sequence[str] = (), busy_timeout_ms: int = 60_000,
                 cache_bytes_max: int = 2 * 1024 * 1024) -> None:
        for f in search:
            if not f.isidentifier():
                raise ViewError(f"search field {f!r} must be an identifier")
        self.path = path
        self.location = f"sqlite:{path if path == ':memory:' else os.path.realpath(path)}"
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
            _switch_to_wal(db, busy_timeout_ms)
        except sqlite3.Error as e:  # SQLite's own text ("unable to open database file") names no file
            raise SinkError(f"cannot open the SQLite database {path!r}: {e}") from None
        db.execute("PRAGMA synchronous=NORMAL")
        # The page cache: SQLite's default size, 2 MiB. Every upsert statement writes its rows in key order (the
        # statements sort them, or the text fold sorted them in C), so a batch walks the table's leaf pages once,
        # left to right: a page it spills to the WAL in the middle of the transaction is not dirtied again, and
        # one it reads back comes from the OS's cache. A cache holding the whole table (it was 32 MiB, when the
        # rows came unsorted and a spilled page was dirtied again and again) now buys 3-5 % of the writer's CPU
        # and costs the table's size in RSS: measured 2026-12-07 (1M events, 100k keys, a 5 MiB table, interleaved
        # pairs), the latest-value runner at 1.11-1.19 s of CPU and 33-34 MiB peak RSS with 32 MiB, 1.17-1.20 s
        # and 30 MiB with 2 MiB. A large view read often from the same process can raise it.
        db.execute(f"PRAGMA cache_size = -{max(cache_bytes_max // 1024, 1)}")  # negative: KiB, not pages
        super().__init__(db, path)
        self.search = tuple(search)

    def _statements(self, t: str, puts: dict[str, Any], adds: dict[str, Any],
                    deletes: list[str]) -> list[tuple[str, Any, bool]]:
        # One statement per kind of change, its rows in one JSON parameter that SQLite reads with json_each: the
        # whole upsert then runs inside one sqlite3_step, without the GIL, so the runner's writer thread writes
        # while its main thread builds the next batch. executemany takes the GIL back after every row, and a
        # thread that wants the GIL waits for the interpreter's switch interval (5 ms) whenever the other thread
        # runs Python: measured, 10k upserts took 7 ms alone and 3 s beside a busy thread. Values JSON cannot
        # carry exactly (bytes, floats, integers beyond 64 bits) go row by row as before.
        # The rows come in any order and SQLite sorts them (ORDER BY key, see _net_statements): in C, without the
        # GIL, in the writer thread, where Python's sort held the runner's main thread.
        out: list[tuple[str, Any, bool]] = []
        put_doc = _json_rows(puts) if puts else None
        add_doc = _json_rows(adds) if adds else None
        delete_doc = _json_text(batch_document(deletes)) if deletes else None
        # (an INSERT ... SELECT with ON CONFLICT needs a WHERE clause, or SQLite reads ON as a join's)
        from_json = "SELECT key, value FROM json_each(?) WHERE true ORDER BY key"
        if put_doc is not None:
            out.append((self._upsert(t, from_json, add=False), (put_doc,), False))
        if add_doc is not None:
            out.append((self._upsert(t, from_json, add=True), (add_doc,), False))
        if delete_doc is not None:
            out.append((f"DELETE FROM {t} WHERE key IN (SELECT value FROM json_each(?))", (delete_doc,), False))
        return out + super()._statements(
            t, dict(sorted(puts.items())) if put_doc is None else {},
            dict(sorted(adds.items())) if add_doc is None else {}, deletes if delete_doc is None else [])

    def _latest_text_statements(self, t: str, text: LatestText) -> Callable[[], list[tuple[str, Any, bool]]] | None:
        # The batch consumer's fold of text values (Batch.latest_text), written as the dict path below writes it,
        # from the bytes: in key order (sorted in C), so the statement has no ORDER BY and SQLite no sort to do (a
        # quarter of its time: measured 2026-12-07, docs/benchmarks.md), and in documents of _DOCUMENT_ROWS_MAX
        # rows, so SQLite's copy and parse of a document (about three times its size) stay small whatever the
        # batch. The documents are made here, in the runner's main thread (sorting and writing them release the
        # GIL), so the writer thread only runs SQLite, and the table (about twice the documents' size) is let go
        # before the write.
        if not text.vouched:
            return None
        upsert = self._upsert(t, "SELECT key, json_quote(value) FROM json_each(?) WHERE type = 'text'", add=False)
        delete = f"DELETE FROM {t} WHERE key IN (SELECT key FROM json_each(?) WHERE type = 'null')"
        text.sort()
        out: list[tuple[str, Any, bool]] = []
        start, end = 0, len(text)
        while start < end:
            doc, start, nulls = text.document(start, _DOCUMENT_ROWS_MAX)
            out.append((upsert, (doc,), False))
            if nulls:
                out.append((delete, (doc,), False))
        return lambda: out

    def _latest_statements(self, t: str, latest: dict[str, Json]) -> list[tuple[str, Any, bool]] | None:
        # A latest-value fold of text values (JSON and STRING views of text, the common case) goes to SQLite as
        # the dict itself, one json.dumps in C: json_each reads it back and json_quote makes each text the JSON
        # literal encode_value would have made in Python (same escapes: the two backslash escapes, \b \f \n \r \t,
        # \u00XX for other control characters, everything else as it is; tests/views/test_sqlite_encoding.py
        # checks both agree), integers stay integers and null marks a deletion. Any other value (bytes, floats,
        # objects) takes the general path.
        types = set(map(type, latest.values()))
        if not types <= _DIRECT_TYPES or (int in types and not _ints_fit(latest)):
            return None
        doc = _json_text(batch_document(latest))
        if doc is None:
            return None
        out: list[tuple[str, Any, bool]] = []
        if types - {_NONE}:
            rows = ("SELECT key, iif(type = 'text', json_quote(value), value) FROM json_each(?) "
                    "WHERE type != 'null' ORDER BY key")
            out.append((self._upsert(t, rows, add=False), (doc,), False))
        if _NONE in types:
            out.append((f"DELETE FROM {t} WHERE key IN (SELECT key FROM json_each(?) WHERE type = 'null')",
                        (doc,), False))
        return out

    def _options(self) -> str:
        # A rowid table with a TEXT primary key is two B-trees (rows by rowid, and an index from key to rowid), so
        # each upsert searches both; WITHOUT ROWID keeps the rows in the key's B-tree, one search (measured 1.2x
        # faster upserts, and a smaller file). FTS5's triggers join on the rowid, so searchable views keep it.
        return "" if self.search else " WITHOUT ROWID"

    def _create_search(self, name: str, version: int) -> None:
        t = table_name(name, version)
        fts = f'"{name}__v{int(version)}__fts"'
        trg = f'"{name}__v{int(version)}__fts'
        cols = ", ".join(self.search)
        vals = ", ".join(f"json_extract(new.value, '$.{f}')" for f in self.search)
        ins = f"INSERT INTO {fts}(rowid, {cols}) VALUES (new.rowid, {vals});"
        self._x(f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5({cols}, tokenize='porter unicode61')")
        self._x(f'CREATE TRIGGER IF NOT EXISTS {trg}_i" AFTER INSERT ON {t} BEGIN {ins} END')
        self._x(f'CREATE TRIGGER IF NOT EXISTS {trg}_u" AFTER UPDATE ON {t} '
                f"BEGIN DELETE FROM {fts} WHERE rowid = old.rowid; {ins} END")
        self._x(f'CREATE TRIGGER IF NOT EXISTS {trg}_d" AFTER DELETE ON {t} '
                f"BEGIN DELETE FROM {fts} WHERE rowid = old.rowid; END")

    def _drop_extras(self, name: str, version: int) -> None:
        self._x(f'DROP TABLE IF EXISTS "{name}__v{int(version)}__fts"')

    def search_docs(self, name: str, query: str, *, limit: int = 20, version: int | None = None) -> list[
        tuple[str, Json]
    ]:
        """Full-text search (FTS5 query syntax) over the serving version, best match first."""
        try:
            rows = self._read(
                name, version,
                "SELECT t.key, t.value FROM {fts} f JOIN {t} t ON t.rowid = f.rowid WHERE {fts} MATCH ? "
                "ORDER BY bm25({fts}) LIMIT ?",
                (query, limit),
            )
        except sqlite3.OperationalError as e:
            if str(e).startswith("no such table"):
                raise ViewError(f"view {name!r} has no full-text index (its sink URL needs ?search=FIELD,...)"
                                ) from None
            raise ValueError(f"bad search query {query!r}: {e}") from None  # FTS5 query syntax
        return [(k, decode_value(v)) for k, v in rows]
