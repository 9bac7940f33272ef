"""SQLite sink (the embedded default), with optional FTS5 full-text search: exactly-once.

Layout of one database file (any number of views and versions):

* ``loosely_views(name, version, topics, state, created_ms)``: every version and whether it is building, serving
  or retired.
* ``loosely_view_offsets(name, version, topic, partition, next_offset, last_timestamp_ms)``: the source positions,
  written in the same transaction as the rows (this is what makes the sink exactly-once).
* ``"<name>__v<version>"(key TEXT PRIMARY KEY, value)``: one table per version. ``value`` has no declared type:
  numbers are stored as numbers (so ``Add`` is one ``UPDATE``), ``bytes`` as BLOBs, everything else as JSON text.
* ``"<name>"``: a SQL view over the serving version. Switching versions replaces it in one transaction, so a
  reader, through that view or through :meth:`SqliteSink.get`, sees the old version or the new one, never a mix.
* with ``search=(fields...)``, ``"<name>__v<version>__fts"``: an FTS5 index of those fields of each JSON value,
  kept in step by triggers inside the same transactions.

The database runs in WAL mode with ``synchronous=NORMAL``: a power loss may drop the last transactions, but rows
and offsets are dropped together, so the runner replays exactly what was lost. Several runner processes may write
to one file; transactions serialize on SQLite's write lock and the offset check fences a runner whose partitions
moved to another one.

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
import sqlite3
import threading
import time
from collections.abc import Sequence
from json.encoder import encode_basestring
from typing import Any

from loosely.views._batch import Batch, net_changes
from loosely.views._model import Delete, Json, Put, TopicPartition, View, ViewError
from loosely.views._sink import Fenced, Guarantee, SinkError, SinkStatistics, VersionInfo, VersionState

__all__ = ["SqliteSink"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS loosely_views (
    name TEXT NOT NULL, version INTEGER NOT NULL, topics TEXT NOT NULL, state TEXT NOT NULL,
    search TEXT, created_ms INTEGER NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS loosely_view_offsets (
    name TEXT NOT NULL, version INTEGER NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL, last_timestamp_ms INTEGER, PRIMARY KEY (name, version, topic, partition));
"""


def _table(name: str, version: int) -> str:
    return f'"{name}__v{int(version)}"'


def encode_value(v: Json) -> Any:
    """A view value as stored in the ``value`` column (see the module docstring)."""
    t = type(v)
    if t is int or t is float or t is bytes:
        return v
    if t is str:
        return encode_basestring(v)  # type: ignore[arg-type]
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def decode_value(v: Any) -> Json:
    if isinstance(v, str):
        return json.loads(v)  # type: ignore[no-any-return]
    return v  # type: ignore[no-any-return]


class SqliteSink:
    guarantee = Guarantee.EXACTLY_ONCE

    def __init__(self, path: str, *, search: Sequence[str] = (), busy_timeout_ms: int = 60_000) -> None:
        for f in search:
            if not f.isidentifier():
                raise ViewError(f"search field {f!r} must be an identifier")
        self.path = path
        self.search = tuple(search)
        self._lock = threading.Lock()  # one connection, used by the runner thread and by HTTP readers
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._view: View[object, object] | None = None
        self._batches = 0
        self._written = 0
        self._apply_ms = 0
        self._failures = 0

    # -- writing ------------------------------------------------------------------------------------------------

    def open(self, view: View[object, object]) -> None:
        t = _table(view.name, view.version)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(f"CREATE TABLE IF NOT EXISTS {t} (key TEXT PRIMARY KEY, value)")
                if self.search:
                    self._create_search(view.name, view.version)
                self._db.execute(
                    "INSERT OR IGNORE INTO loosely_views VALUES (?, ?, ?, ?, ?, ?)",
                    (view.name, view.version, json.dumps(list(view.topics)), VersionState.BUILDING.value,
                     json.dumps(list(self.search)) if self.search else None, int(time.time() * 1000)),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._view = view

    def _create_search(self, name: str, version: int) -> None:
        t = _table(name, version)
        fts = f'"{name}__v{int(version)}__fts"'
        cols = ", ".join(self.search)
        vals = ", ".join(f"json_extract(new.value, '$.{f}')" for f in self.search)
        self._db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5({cols}, tokenize='porter unicode61')")
        trg = f'"{name}__v{int(version)}__fts'
        self._db.execute(
            f'CREATE TRIGGER IF NOT EXISTS {trg}_i" AFTER INSERT ON {t} '
            f"BEGIN INSERT INTO {fts}(rowid, {cols}) VALUES (new.rowid, {vals}); END"
        )
        self._db.execute(
            f'CREATE TRIGGER IF NOT EXISTS {trg}_u" AFTER UPDATE ON {t} '
            f"BEGIN DELETE FROM {fts} WHERE rowid = old.rowid; "
            f"INSERT INTO {fts}(rowid, {cols}) VALUES (new.rowid, {vals}); END"
        )
        self._db.execute(
            f'CREATE TRIGGER IF NOT EXISTS {trg}_d" AFTER DELETE ON {t} '
            f"BEGIN DELETE FROM {fts} WHERE rowid = old.rowid; END"
        )

    def stored_positions(self) -> dict[TopicPartition, int]:
        v = self._bound()
        with self._lock:
            rows = self._db.execute(
                "SELECT topic, partition, next_offset FROM loosely_view_offsets WHERE name = ? AND version = ?",
                (v.name, v.version),
            ).fetchall()
        return {TopicPartition(t, p): o for t, p, o in rows}

    def apply(self, batch: Batch) -> None:
        v = self._bound()
        t = _table(v.name, v.version)
        t0 = time.monotonic()
        net = net_changes(batch)
        puts: list[tuple[str, Any]] = []
        adds: list[tuple[str, Any]] = []
        deletes: list[tuple[str]] = []
        enc = encode_value
        for k, c in net.items():
            tc = type(c)
            if tc is Put:
                puts.append((k, enc(c.value)))  # type: ignore[union-attr]
            elif tc is Delete:
                deletes.append((k,))
            else:
                adds.append((k, c.amount))  # type: ignore[union-attr]
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                self._failures += 1
                raise SinkError(f"{self.path}: cannot begin a transaction: {e}") from e
            try:
                self._advance_offsets(v, batch)
                if puts:
                    db.executemany(
                        f"INSERT INTO {t}(key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        puts,
                    )
                if adds:
                    db.executemany(
                        f"INSERT INTO {t}(key, value) VALUES (?, ?) "
                        f"ON CONFLICT(key) DO UPDATE SET value = {t}.value + excluded.value",
                        adds,
                    )
                if deletes:
                    db.executemany(f"DELETE FROM {t} WHERE key = ?", deletes)
                db.execute("COMMIT")
            except BaseException as e:
                self._failures += 1
                db.execute("ROLLBACK")
                if isinstance(e, SinkError | KeyboardInterrupt | SystemExit):
                    raise
                raise SinkError(f"{self.path}: applying a batch of {len(batch)} changes to {t} failed: {e}") from e
        self._batches += 1
        self._written += len(net)
        self._apply_ms += int((time.monotonic() - t0) * 1000)

    def _advance_offsets(self, v: View[object, object], batch: Batch) -> None:
        db = self._db
        for tp, end in batch.ends.items():
            start = batch.starts.get(tp)
            ts = batch.last_timestamp_ms.get(tp)
            if start is None:
                try:
                    db.execute(
                        "INSERT INTO loosely_view_offsets VALUES (?, ?, ?, ?, ?, ?)",
                        (v.name, v.version, tp.topic, tp.partition, end, ts),
                    )
                except sqlite3.IntegrityError as e:
                    raise Fenced(f"{v.id} {tp.topic}/{tp.partition}: another runner stored a position first") from e
            else:
                cur = db.execute(
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

    def versions(self, name: str) -> list[VersionInfo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT version, topics, state, created_ms FROM loosely_views WHERE name = ? ORDER BY version", (name,)
            ).fetchall()
            offs = self._db.execute(
                "SELECT version, topic, partition, next_offset, last_timestamp_ms FROM loosely_view_offsets "
                "WHERE name = ?",
                (name,),
            ).fetchall()
        out = []
        for version, topics, state, created in rows:
            mine = [o for o in offs if o[0] == version]
            stamps = [o[4] for o in mine if o[4] is not None]
            out.append(
                VersionInfo(
                    name, version, tuple(json.loads(topics)), VersionState(state), created,
                    {TopicPartition(o[1], o[2]): o[3] for o in mine}, max(stamps) if stamps else None,
                )
            )
        return out

    def names(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT name FROM loosely_views ORDER BY name")]

    def serving_version(self, name: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT version FROM loosely_views WHERE name = ? AND state = 'serving'", (name,)
            ).fetchone()
        return None if row is None else int(row[0])

    def switch(self, name: str, version: int) -> None:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                found = db.execute("SELECT 1 FROM loosely_views WHERE name = ? AND version = ?", (name, version))
                if found.fetchone() is None:
                    raise ViewError(f"{name}@{version} does not exist")
                db.execute(f'DROP VIEW IF EXISTS "{name}"')
                db.execute(f'CREATE VIEW "{name}" AS SELECT key, value FROM {_table(name, version)}')
                db.execute("UPDATE loosely_views SET state = 'retired' WHERE name = ? AND state = 'serving'", (name,))
                db.execute("UPDATE loosely_views SET state = 'serving' WHERE name = ? AND version = ?", (name, version))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def drop(self, name: str, version: int) -> None:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT state FROM loosely_views WHERE name = ? AND version = ?", (name, version))
                state = row.fetchone()
                if state is not None and state[0] == VersionState.SERVING.value:
                    raise ViewError(f"{name}@{version} is serving; switch to another version before dropping it")
                db.execute(f'DROP TABLE IF EXISTS "{name}__v{int(version)}__fts"')
                db.execute(f"DROP TABLE IF EXISTS {_table(name, version)}")
                db.execute("DELETE FROM loosely_view_offsets WHERE name = ? AND version = ?", (name, version))
                db.execute("DELETE FROM loosely_views WHERE name = ? AND version = ?", (name, version))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _read(self, name: str, version: int | None, sql: str, args: tuple[Any, ...]) -> list[Any]:
        """Run ``sql`` against the table of ``version`` (default: the serving one) inside one read snapshot."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                if version is None:
                    row = db.execute(
                        "SELECT version FROM loosely_views WHERE name = ? AND state = 'serving'", (name,)
                    ).fetchone()
                    if row is None:
                        return []
                    version = int(row[0])
                q = sql.format(t=_table(name, version), fts=f'"{name}__v{version}__fts"')
                return db.execute(q, args).fetchall()
            finally:
                db.execute("COMMIT")

    def get(self, name: str, key: str, version: int | None = None) -> Json | None:
        rows = self._read(name, version, "SELECT value FROM {t} WHERE key = ?", (key,))
        return decode_value(rows[0][0]) if rows else None

    def scan(self, name: str, *, after: str = "", limit: int = 100, version: int | None = None) -> list[
        tuple[str, Json]
    ]:
        q = "SELECT key, value FROM {t} WHERE key > ? ORDER BY key LIMIT ?"
        rows = self._read(name, version, q, (after, limit))
        return [(k, decode_value(v)) for k, v in rows]

    def count(self, name: str, version: int | None = None) -> int:
        rows = self._read(name, version, "SELECT count(*) FROM {t}", ())
        return int(rows[0][0]) if rows else 0

    def search_docs(self, name: str, query: str, *, limit: int = 20, version: int | None = None) -> list[
        tuple[str, Json]
    ]:
        """Full-text search (FTS5 query syntax) over the serving version, best match first."""
        if not self.search:
            raise ViewError(f"{self.path} was opened without search fields")
        rows = self._read(
            name, version,
            "SELECT t.key, t.value FROM {fts} f JOIN {t} t ON t.rowid = f.rowid WHERE {fts} MATCH ? "
            "ORDER BY bm25({fts}) LIMIT ?",
            (query, limit),
        )
        return [(k, decode_value(v)) for k, v in rows]
