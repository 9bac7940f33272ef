"""A Sphinx real-time index as a search sink, over SphinxQL (the MySQL protocol, with PyMySQL): idempotent.

The index must declare, besides one ``rt_field`` per searchable field of the view's values::

    rt_attr_string = vkey       # the view key
    rt_attr_uint   = vversion   # the view version, so versions build side by side in one index
    rt_attr_json   = vdoc       # {"value": ..., "versions": {"<topic>/<partition>": offset}}

(:func:`index_config` writes such a block.) A document's id is 63 bits of BLAKE2b of ``(view, version, key)``.
Searches and counts filter by version only, so give each view its own index. Sphinx
has no transactions spanning our offsets, so the guarantee is *idempotent* (see :mod:`loosely.views._sink`): each
batch reads the stored versions of its keys (``WHERE id IN (...)``), skips records already applied, then writes
with ``REPLACE`` and ``DELETE``; the runner commits offsets to the consumer group afterwards. With
``binlog_flush = 1`` (as :func:`index_config` sets) every write is on disk when the call returns.

Sphinx cannot list or drop by attribute, so this sink does not switch versions: a reader names the version it
searches (``search_docs(..., version=N)``); build N+1 beside N and point readers at it.

Values must be JSON objects; their ``fields`` are indexed (``None`` or a missing field indexes as empty text).

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

import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

from loosely.views._batch import DELETED, Batch, entries_by_key, fold_versioned
from loosely.views._model import Json, TopicPartition, View, ViewError
from loosely.views._sink import Guarantee, SinkError, SinkStatistics

__all__ = ["SphinxSink", "doc_id", "index_config"]

# Sphinx's default max_matches is 1000; one IN list and one REPLACE carry at most this many documents.
_DOCS_PER_STATEMENT_MAX = 1000


def doc_id(name: str, version: int, key: str) -> int:
    h = hashlib.blake2b(f"{name}\0{version}\0{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(h, "big") & 0x7FFF_FFFF_FFFF_FFFF) or 1


def index_config(index: str, path: str, fields: Sequence[str]) -> str:
    """The ``index`` block of a sphinx.conf for a view's RT index (English stemming)."""
    lines = [f"index {index}", "{", "    type = rt", f"    path = {path}", "    rt_mem_limit = 128M",
             "    morphology = stem_en", *(f"    rt_field = {f}" for f in fields),
             "    rt_attr_string = vkey", "    rt_attr_uint = vversion", "    rt_attr_json = vdoc", "}"]
    return "\n".join(lines) + "\n"


class SphinxSink:
    guarantee = Guarantee.IDEMPOTENT
    wants_positions = True

    def __init__(self, host: str, port: int, index: str, *, fields: Sequence[str]) -> None:
        import pymysql  # type: ignore[import-untyped]  # noqa: PLC0415 - optional dependency (the "sphinx" extra)

        if not index.isidentifier() or not fields or not all(f.isidentifier() for f in fields):
            raise ViewError(f"sphinx index {index!r} and fields {fields!r} must be identifiers")
        self.index = index
        self.fields = tuple(fields)
        self._conn = pymysql.connect(host=host, port=port, autocommit=True)
        self._view: View[object, object] | None = None
        self._batches = self._written = self._apply_ms = self._failures = 0

    def _q(self, sql: str, args: Sequence[Any] | None = None) -> list[Any]:
        with self._conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def open(self, view: View[object, object]) -> None:
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
        try:
            stored = self._stored(list(ids.values()))
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
            cols = ", ".join(("id", *self.fields, "vkey", "vversion", "vdoc"))
            marks = "(" + ", ".join(["%s"] * (len(self.fields) + 4)) + ")"
            for i in range(0, len(replace_rows), _DOCS_PER_STATEMENT_MAX):
                chunk = replace_rows[i:i + _DOCS_PER_STATEMENT_MAX]
                self._q(f"REPLACE INTO {self.index} ({cols}) VALUES " + ", ".join([marks] * len(chunk)),
                        [x for row in chunk for x in row])
            for i in range(0, len(deletes), _DOCS_PER_STATEMENT_MAX):
                self._q(f"DELETE FROM {self.index} WHERE id IN ({','.join(map(str, deletes[i:i + 1000]))})")
        except ViewError:
            self._failures += 1
            raise
        except Exception as e:
            self._failures += 1
            raise SinkError(f"sphinx {self.index}: writing {len(groups)} documents failed: {e!r}") from e
        self._batches += 1
        self._written += len(replace_rows) + len(deletes)
        self._apply_ms += int((time.monotonic() - t0) * 1000)

    def close(self) -> None:
        self._conn.close()

    def statistics(self) -> SinkStatistics:
        return SinkStatistics(self._batches, self._written, self._apply_ms, self._failures)

    # -- reading ------------------------------------------------------------------------------------------------

    def get(self, name: str, key: str, version: int | None = None) -> Json | None:
        rows = self._q(f"SELECT vdoc FROM {self.index} WHERE id = {doc_id(name, version or 1, key)}")
        return json.loads(rows[0][0])["value"] if rows else None

    def search_docs(self, name: str, query: str, *, limit: int = 20, version: int | None = None) -> list[
        tuple[str, Json]
    ]:
        """Full-text search (Sphinx extended syntax), best match first, within one view version."""
        rows = self._q(
            f"SELECT vkey, vdoc, WEIGHT() AS w FROM {self.index} WHERE MATCH(%s) AND vversion = %s "
            f"ORDER BY w DESC LIMIT %s OPTION max_matches=%s",
            (query, version or 1, limit, max(limit, 1)),
        )
        return [(k, json.loads(d)["value"]) for k, d, _ in rows]

    def count(self, query: str = "", version: int = 1) -> int:
        """How many documents of ``version`` match ``query`` (all of them with an empty query)."""
        where = "WHERE MATCH(%s) AND vversion = %s" if query else "WHERE vversion = %s"
        args: tuple[Any, ...] = (query, version) if query else (version,)
        self._q(f"SELECT id FROM {self.index} {where} LIMIT 1", args)
        meta = dict(self._q("SHOW META"))
        return int(meta["total_found"])

    def all_docs(self, version: int = 1, limit: int = 10_000_000) -> dict[str, Json]:
        rows = self._q(f"SELECT vkey, vdoc FROM {self.index} WHERE vversion = %s LIMIT %s OPTION max_matches=%s",
                       (version, limit, limit))
        return {k: json.loads(d)["value"] for k, d in rows}
