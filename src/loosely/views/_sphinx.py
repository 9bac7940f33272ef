"""A Sphinx real-time index as a search sink, over SphinxQL (the MySQL protocol, with PyMySQL): idempotent, with
versions side by side and an atomic switch.

The index must declare, besides one ``rt_field`` per searchable field of the view's values::

    rt_attr_string = vkey       # the view key
    rt_attr_uint   = vversion   # the view version, so versions build side by side in one index
    rt_attr_json   = vdoc       # {"value": ..., "versions": {"<topic>/<partition>": offset}}

(:func:`index_config` writes such a block.) A document's id is 63 bits of BLAKE2b of ``(view, version, key)``.
Searches and counts select by version, not by view (reads drop other views' documents by their ids, after
Sphinx has counted and limited them), so give each view its own index.

**Writing.** Sphinx has no transactions spanning our offsets, so the guarantee is *idempotent* (see
:mod:`loosely.views._sink`): each batch reads the stored versions of its keys (``WHERE id IN (...)``), skips
records already applied, then writes with ``REPLACE`` and ``DELETE``; the runner commits offsets to the consumer
group afterwards. With ``binlog_flush = 1`` in searchd's configuration every write is on disk when the call
returns.

**The catalog** lives in the index itself, so every runner and reader, on any machine, sees the same one. Its
documents have ``vversion = 0``, which is never a view version (versions are >= 1), so no search, count or scan of
a version ever sees them:

* one per version, id ``doc_id(view, 0, "version/<N>")``, ``vdoc`` = ``{"catalog": "version", "view", "version",
  "topics", "state", "created_ms"}``; :meth:`SphinxSink.open` writes it when it is missing, so opening is
  idempotent and never demotes a serving version;
* one pointer per view, id ``doc_id(view, 0, "serving")``, ``vdoc`` = ``{"catalog": "serving", "view",
  "version"}``. Which version serves is this document alone, so :meth:`SphinxSink.switch`, one ``REPLACE`` of it
  (with the previous version's entry marked retired in the same statement, which the RT index commits whole), is
  atomic.

**Reading.** A read without a version resolves the pointer, then reads that version by id or with
``vversion = N``; it sees the old complete version or the new complete one, never a half-built one. A switch can
land between the two queries; the version resolved stays complete until it is dropped, and
:func:`~loosely.views.rebuild` drops it ``drop_delay_ms`` after the switch: that is the grace for such readers.
:meth:`SphinxSink.scan` returns keys in byte order (the connection's collation is ``binary``). Sphinx 2.2 cannot
filter a string attribute by range, so a scan sorts the version's keys in searchd and takes a window that doubles
until it holds ``limit`` keys after ``after``: a page deep in a big view costs a transfer of every key before it.

**Dropping.** Sphinx 2.2 deletes by id only. :meth:`SphinxSink.drop` refuses the serving version, deletes the
version's catalog entry first (it can no longer be switched to, and the next batch of a runner still writing it
fails with :class:`~loosely.views._sink.SinkError`: each batch reads its version's entry along with its
documents), then selects the version's ids in pages ordered by id (so ``max_matches`` bounds each page) and
deletes them, passing again until a pass finds none. An interrupted drop leaves documents that no catalog entry
names; dropping again finishes it. A switch and a drop are several statements, not one transaction: do not switch
to a version while it is being dropped.

Values must be JSON objects; their ``fields`` are indexed (``None`` or a missing field indexes as empty text).
``versions()`` reports no positions: they are the consumer group's committed offsets, which ``loosely views
status`` reads for such sinks.

>>> print(index_config("products", "/var/lib/sphinx/products", ["title", "body"]), end="")
index products
{
    type = rt
    path = /var/lib/sphinx/products
    rt_mem_limit = 128M
    morphology = stem_en
    rt_field = title
    rt_field = body
    rt_attr_string = vkey
    rt_attr_uint = vversion
    rt_attr_json = vdoc
}
>>> doc_id("products", 1, "p1") == doc_id("products", 1, "p1") != doc_id("products", 2, "p1")
True
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

from loosely.views._batch import DELETED, Batch, entries_by_key, fold_versioned
from loosely.views._model import Json, TopicPartition, View, ViewError
from loosely.views._sink import Guarantee, SinkError, SinkStatistics, VersionInfo, VersionState, read_version

__all__ = ["SphinxSink", "doc_id", "index_config"]

# Sphinx's default max_matches is 1000; one IN list and one REPLACE carry at most this many documents.
_DOCS_PER_STATEMENT_MAX = 1000
# A drop selects the ids of a version in pages of this many (max_matches of the page query).
_DROP_PAGE_DOCS = 10_000
# Passes over a version being dropped before giving up: more than two means something still writes it.
_DROP_PASSES_MAX = 3
# Catalog documents one index may hold (a version entry per version, a pointer per view): far above real use.
_CATALOG_DOCS_MAX = 10_000


def doc_id(name: str, version: int, key: str) -> int:
    h = hashlib.blake2b(f"{name}\0{version}\0{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(h, "big") & 0x7FFF_FFFF_FFFF_FFFF) or 1


def _entry_id(name: str, version: int) -> int:
    return doc_id(name, 0, f"version/{version}")


def _pointer_id(name: str) -> int:
    return doc_id(name, 0, "serving")


def index_config(index: str, path: str, fields: Sequence[str]) -> str:
    """The ``index`` block of a sphinx.conf for a view's RT index (English stemming)."""
    lines = [f"index {index}", "{", "    type = rt", f"    path = {path}", "    rt_mem_limit = 128M",
             "    morphology = stem_en", *(f"    rt_field = {f}" for f in fields),
             "    rt_attr_string = vkey", "    rt_attr_uint = vversion", "    rt_attr_json = vdoc", "}"]
    return "\n".join(lines) + "\n"


class SphinxSink:
    """One connection to searchd, shared by the runner and readers (a lock serialises its statements); after a
    connection error the next statement reconnects."""

    guarantee = Guarantee.IDEMPOTENT
    wants_positions = True

    def __init__(self, host: str, port: int, index: str, *, fields: Sequence[str]) -> None:
        import pymysql  # type: ignore[import-untyped]  # noqa: PLC0415 - optional dependency (the "sphinx" extra)

        if not index.isidentifier() or not fields or not all(f.isidentifier() for f in fields):
            raise ViewError(f"sphinx index {index!r} and fields {fields!r} must be identifiers")
        self.index = index
        self.fields = tuple(fields)
        self._pymysql: Any = pymysql
        self._address = (host, port)
        self.location = f"sphinx:{host}:{port}/{index}"
        self._lock = threading.Lock()
        self._conn: Any = None
        self._view: View[object, object] | None = None
        self._batches = self._written = self._apply_ms = self._failures = 0
        with self._lock:
            self._connect()

    def _connect(self) -> None:
        try:
            # binary collation: ORDER BY vkey sorts by bytes, which is the order of Python's str comparison
            self._conn = self._pymysql.connect(host=self._address[0], port=self._address[1], autocommit=True,
                                               init_command="SET collation_connection = binary")
        except (self._pymysql.MySQLError, OSError) as e:
            raise SinkError(f"sphinx {self._address[0]}:{self._address[1]}: cannot connect: {e}") from e

    def _q(self, sql: str, args: Sequence[Any] | None = None) -> list[Any]:
        return self._statements([(sql, args)])[-1]

    def _statements(self, statements: Sequence[tuple[str, Sequence[Any] | None]]) -> list[list[Any]]:
        """Run statements back to back on the connection, no other thread's in between (``SHOW META`` describes
        the statement before it)."""
        with self._lock:
            if self._conn is None:
                self._connect()
            try:
                out = []
                for sql, args in statements:
                    with self._conn.cursor() as cur:
                        cur.execute(sql, args)
                        out.append(list(cur.fetchall()))
                return out
            except (self._pymysql.OperationalError, self._pymysql.InterfaceError, OSError) as e:
                # searchd went away or restarted: this connection is dead, the next statement reconnects
                conn, self._conn = self._conn, None
                with contextlib.suppress(Exception):
                    conn.close()
                raise SinkError(f"sphinx {self.index}: {e}") from e
            except self._pymysql.MySQLError as e:
                raise SinkError(f"sphinx {self.index}: {e}") from e

    def _replace(self, rows: Sequence[tuple[Any, ...]]) -> None:
        cols = ", ".join(("id", *self.fields, "vkey", "vversion", "vdoc"))
        marks = "(" + ", ".join(["%s"] * (len(self.fields) + 4)) + ")"
        for i in range(0, len(rows), _DOCS_PER_STATEMENT_MAX):
            chunk = rows[i:i + _DOCS_PER_STATEMENT_MAX]
            self._q(f"REPLACE INTO {self.index} ({cols}) VALUES " + ", ".join([marks] * len(chunk)),
                    [x for row in chunk for x in row])

    def _delete(self, ids: Sequence[int]) -> None:
        for i in range(0, len(ids), _DOCS_PER_STATEMENT_MAX):
            self._q(f"DELETE FROM {self.index} WHERE id IN ({','.join(map(str, ids[i:i + _DOCS_PER_STATEMENT_MAX]))})")

    def _catalog_row(self, doc: int, name: str, vdoc: dict[str, Any]) -> tuple[Any, ...]:
        return (doc, *([""] * len(self.fields)), name, 0, json.dumps(vdoc, ensure_ascii=False))

    def open(self, view: View[object, object]) -> None:
        entry = _entry_id(view.name, view.version)
        if not self._q(f"SELECT id FROM {self.index} WHERE id = {entry}"):
            # Two runners opening at once both write it; they agree on everything but created_ms.
            self._replace([self._catalog_row(entry, view.name, {
                "catalog": "version", "view": view.name, "version": view.version, "topics": list(view.topics),
                "state": VersionState.BUILDING.value, "created_ms": int(time.time() * 1000)})])
        self._view = view

    def stored_positions(self) -> dict[TopicPartition, int]:
        return {}  # the consumer group holds them

    def _stored(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for i in range(0, len(ids), _DOCS_PER_STATEMENT_MAX):
            chunk = ids[i:i + _DOCS_PER_STATEMENT_MAX]
            rows = self._q(f"SELECT id, vdoc FROM {self.index} WHERE id IN ({','.join(map(str, chunk))}) "
                           f"LIMIT {len(chunk)} OPTION max_matches={len(chunk)}")
            for doc, vdoc in rows:
                out[int(doc)] = json.loads(vdoc)
        return out

    def apply(self, batch: Batch) -> None:
        v = self._view
        if v is None:
            raise SinkError("the sink is not open: call open(view) first")
        t0 = time.monotonic()
        groups = entries_by_key(batch)
        ids = {k: doc_id(v.name, v.version, k) for k in groups}
        entry = _entry_id(v.name, v.version)
        try:
            stored = self._stored([entry, *ids.values()])
            if stored.pop(entry, None) is None:
                raise SinkError(f"sphinx {self.index}: {v.id} is not in the catalog (dropped?); stop its runners")
            replace_rows: list[tuple[Any, ...]] = []
            deletes: list[int] = []
            for k, es in groups.items():
                doc = stored.get(ids[k])
                cur: Any = DELETED if doc is None else doc["value"]
                value, versions, changed = fold_versioned(cur, {} if doc is None else doc["versions"], es)
                if not changed:
                    continue
                if value is DELETED:
                    deletes.append(ids[k])
                    continue
                if not isinstance(value, dict):
                    raise ViewError(f"{v.id}: Sphinx documents must be JSON objects, key {k!r} has {value!r}")
                texts = tuple("" if value.get(f) is None else str(value.get(f)) for f in self.fields)
                vdoc = json.dumps({"value": value, "versions": versions}, ensure_ascii=False)
                replace_rows.append((ids[k], *texts, k, v.version, vdoc))
            self._replace(replace_rows)
            self._delete(deletes)
        except ViewError:
            self._failures += 1
            raise
        except Exception as e:
            self._failures += 1
            raise SinkError(f"{v.id}: writing {len(groups)} documents failed: {e}") from e
        self._batches += 1
        self._written += len(replace_rows) + len(deletes)
        self._apply_ms += int((time.monotonic() - t0) * 1000)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def statistics(self) -> SinkStatistics:
        return SinkStatistics(self._batches, self._written, self._apply_ms, self._failures)

    # -- catalog ------------------------------------------------------------------------------------------------

    def _catalog(self) -> list[dict[str, Any]]:
        rows = self._q(f"SELECT vdoc FROM {self.index} WHERE vversion = 0 "
                       f"LIMIT {_CATALOG_DOCS_MAX} OPTION max_matches={_CATALOG_DOCS_MAX}")
        if len(rows) >= _CATALOG_DOCS_MAX:
            raise SinkError(f"sphinx {self.index}: over {_CATALOG_DOCS_MAX} catalog documents; drop old versions")
        return [json.loads(d) for (d,) in rows]

    def _entries(self, name: str) -> tuple[dict[int, dict[str, Any]], int | None]:
        """The versions of ``name`` (catalog entries by version) and the serving one, from one query."""
        entries: dict[int, dict[str, Any]] = {}
        serving = None
        for d in self._catalog():
            if d.get("view") != name:
                continue
            if d.get("catalog") == "version":
                entries[int(d["version"])] = d
            elif d.get("catalog") == "serving":
                serving = int(d["version"])
        return entries, serving

    def names(self) -> list[str]:
        return sorted({str(d["view"]) for d in self._catalog() if d.get("catalog") == "version"})

    def serving_version(self, name: str) -> int | None:
        rows = self._q(f"SELECT vdoc FROM {self.index} WHERE id = {_pointer_id(name)}")
        return int(json.loads(rows[0][0])["version"]) if rows else None

    def versions(self, name: str) -> list[VersionInfo]:
        entries, serving = self._entries(name)
        return [VersionInfo(name, n, tuple(e["topics"]),
                            VersionState.SERVING if n == serving else VersionState(e["state"]),
                            int(e["created_ms"]), {}, None)
                for n, e in sorted(entries.items())]

    def switch(self, name: str, version: int) -> None:
        entries, serving = self._entries(name)
        if version not in entries:
            known = ", ".join(map(str, sorted(entries))) or "none"
            raise ViewError(f"{name}@{version} does not exist in sphinx index {self.index} (versions: {known})")
        rows = [self._catalog_row(_pointer_id(name), name, {"catalog": "serving", "view": name, "version": version})]
        old = entries.get(serving) if serving is not None and serving != version else None
        if old is not None:
            rows.append(self._catalog_row(_entry_id(name, int(old["version"])), name,
                                          {**old, "state": VersionState.RETIRED.value}))
        self._replace(rows)  # one statement: the pointer moves and the old version retires together

    def drop(self, name: str, version: int) -> None:
        if version < 1:
            raise ViewError(f"view versions are >= 1, got {version}")
        if self.serving_version(name) == version:
            raise ViewError(f"{name}@{version} is serving; switch to another version before dropping it")
        self._delete([_entry_id(name, version)])  # first, so a half-done drop is no version at all
        for _ in range(_DROP_PASSES_MAX):
            if not self._drop_pass(name, version):
                return
        raise SinkError(f"sphinx {self.index}: documents of {name}@{version} keep appearing while it is dropped; "
                        "stop its runners and drop it again")

    def _drop_pass(self, name: str, version: int) -> int:
        """Delete every document of ``name``@``version`` seen in one pass over its ids; how many there were."""
        deleted = 0
        after = 0
        while True:
            rows = self._q(f"SELECT id, vkey FROM {self.index} WHERE vversion = %s AND id > %s ORDER BY id ASC "
                           f"LIMIT {_DROP_PAGE_DOCS} OPTION max_matches={_DROP_PAGE_DOCS}", (version, after))
            # another view's documents of the same version number may share the index: only ours go
            ours = [int(i) for i, k in rows if int(i) == doc_id(name, version, k)]
            self._delete(ours)
            deleted += len(ours)
            if len(rows) < _DROP_PAGE_DOCS:
                return deleted
            after = int(rows[-1][0])

    # -- reading ------------------------------------------------------------------------------------------------

    def get(self, name: str, key: str, version: int | None = None) -> Json | None:
        v = read_version(self, name, version)
        if v is None:
            return None
        rows = self._q(f"SELECT vdoc FROM {self.index} WHERE id = {doc_id(name, v, key)}")
        return json.loads(rows[0][0])["value"] if rows else None

    def scan(self, name: str, *, after: str = "", limit: int = 100, version: int | None = None) -> list[
        tuple[str, Json]
    ]:
        """Keys after ``after`` in byte order, at most ``limit`` (see the module's notes on the cost)."""
        v = read_version(self, name, version)
        if v is None or limit < 1:
            return []
        window = limit
        while True:
            rows = self._q(f"SELECT id, vkey FROM {self.index} WHERE vversion = %s ORDER BY vkey ASC "
                           "LIMIT %s OPTION max_matches=%s", (v, window, window))
            keys = [k for i, k in rows if k > after and int(i) == doc_id(name, v, k)]
            if len(keys) >= limit or len(rows) < window:
                break
            window *= 2
        page = keys[:limit]
        docs = self._stored([doc_id(name, v, k) for k in page])
        return [(k, docs[i]["value"]) for k in page if (i := doc_id(name, v, k)) in docs]

    def search_docs(self, name: str, query: str, *, limit: int = 20, version: int | None = None) -> list[
        tuple[str, Json]
    ]:
        """Full-text search (Sphinx extended syntax), best match first, within one view version (by default the
        serving one)."""
        v = read_version(self, name, version)
        if v is None:
            return []
        rows = self._q(
            f"SELECT id, vkey, vdoc, WEIGHT() AS w FROM {self.index} WHERE MATCH(%s) AND vversion = %s "
            f"ORDER BY w DESC LIMIT %s OPTION max_matches=%s",
            (query, v, limit, max(limit, 1)),
        )
        return [(k, json.loads(d)["value"]) for i, k, d, _ in rows if int(i) == doc_id(name, v, k)]

    def count(self, name: str, query: str = "", *, version: int | None = None) -> int:
        """How many documents of the version (by default the serving one) match ``query`` (all of them with an
        empty query)."""
        v = read_version(self, name, version)
        if v is None:
            return 0
        where = "WHERE MATCH(%s) AND vversion = %s" if query else "WHERE vversion = %s"
        args: tuple[Any, ...] = (query, v) if query else (v,)
        _, meta_rows = self._statements([(f"SELECT id FROM {self.index} {where} LIMIT 1", args), ("SHOW META", None)])
        meta = dict(meta_rows)
        return int(meta["total_found"])

    def all_docs(self, name: str, *, version: int | None = None, limit: int = 10_000_000) -> dict[str, Json]:
        """Every document of the version (by default the serving one), for tests and tools."""
        v = read_version(self, name, version)
        if v is None:
            return {}
        rows = self._q(f"SELECT id, vkey, vdoc FROM {self.index} WHERE vversion = %s LIMIT %s OPTION max_matches=%s",
                       (v, limit, limit))
        return {k: json.loads(d)["value"] for i, k, d in rows if int(i) == doc_id(name, v, k)}
