"""The InfluxDB sink: one point per change, idempotent (the Prometheus sink is in :mod:`loosely.views._prometheus`).

**InfluxDB** (:class:`InfluxSink`): every change becomes one point, written with the 1.x ``/write`` line protocol
API: measurement = view name, tags ``key``, ``version`` and ``partition``, fields from the value (a number becomes
``value``; an object's numbers, booleans and strings become fields; ``Add`` writes ``amount``; ``Delete`` writes
``deleted=true``) plus ``loosely_change`` naming the change (``put``, ``put_object``, ``add``, ``delete``), time =
the record's timestamp in ms times 10^6 plus the offset modulo 10^6, in ns. A point's identity is (measurement,
tags, time), so replaying a record rewrites the same point: the guarantee is ``IDEMPOTENT`` (offsets are committed
to the consumer group after the write returns).

Versions build side by side (the ``version`` tag) and switch atomically. The catalog lives in the database, so
every runner and reader, on any machine, sees the same one: measurement ``loosely_view_versions`` (tags ``view``,
``version``; fields ``state``, ``topics``, ``created_ms``), one point per version, written by
:meth:`InfluxSink.open` when missing (so opening is idempotent and never demotes a serving version); and
``loosely_view_serving`` (tag ``view``; field ``version``), the pointer. Both are written at time 0, so writing a
point again replaces it, and the pointer's one point is the switch: it is atomic. (The database's retention policy
must keep points forever, as ``autogen`` does, or it would expire the catalog.) :meth:`InfluxSink.drop` refuses
the serving version, deletes the version's entry, then ``DROP SERIES FROM "<view>" WHERE "version" = '<N>'``, and
checks that no series is left (a runner still writing the version fails at its next batch, which checks the
entry). ``versions()`` reports no positions: they are the consumer group's committed offsets, which ``loosely
views status`` reads for such sinks.

This is a metrics sink: dashboards query the points. :meth:`InfluxSink.get` and :meth:`InfluxSink.scan` are for
inspection and tests, and cost what they read. A read without a version resolves the pointer first, then folds
each key's points of that version in time order (Put sets, Add adds, Delete removes); a switch may land between
the two, and the version resolved stays complete until it is dropped. ``get`` reads every point the key has in the
version; ``scan`` lists every key of the version (``SHOW TAG VALUES``), then reads every point of the keys it
returns. Time order is log order when a partition's record timestamps never decrease and no two records of a key
share a millisecond across an offset multiple of 10^6. Nested values and nulls are not written, so an object
reads back with its scalar fields only, and InfluxDB returns a float with no fraction as an integer.

>>> line_protocol("orders", {"key": "a b", "version": "1"}, {"value": 3, "ok": True, "note": 'say "hi"'}, 5)
'orders,key=a\\\\ b,version=1 value=3i,ok=true,note="say \\\\"hi\\\\"" 5'
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from loosely.views._batch import Batch, fold
from loosely.views._model import Add, Change, Delete, Json, Put, TopicPartition, View, ViewError
from loosely.views._sink import Guarantee, SinkError, SinkStatistics, VersionInfo, VersionState, read_version

__all__ = ["InfluxSink", "line_protocol"]


def _escape_key(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _field(v: object) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return None  # nested values are not fields


def line_protocol(measurement: str, tags: Mapping[str, str], fields: Mapping[str, object], time_ns: int) -> str:
    tag_part = "".join(f",{_escape_key(k)}={_escape_key(v)}" for k, v in sorted(tags.items()) if v != "")
    field_part = ",".join(f"{_escape_key(k)}={f}" for k, v in fields.items() if (f := _field(v)) is not None)
    return f"{_escape_key(measurement)}{tag_part} {field_part} {time_ns}"


# The catalog's measurements. Their points are written at time 0: a point's identity is (measurement, tags, time),
# so writing one again replaces it.
_VERSIONS = "loosely_view_versions"  # tags view, version; fields state, topics (JSON), created_ms
_SERVING = "loosely_view_serving"  # tag view; field version: the pointer
# A field on every point saying which change wrote it (put, put_object, add, delete), so reads fold it back exactly
# (without it, Put({"amount": 1}) and Add(1) would write the same fields).
_CHANGE = "loosely_change"
# How points written before the marker are read: by their field names alone.
_KINDS_BEFORE_MARKER: dict[tuple[str, ...], str] = {("deleted",): "delete", ("amount",): "add", ("value",): "put"}
# Columns of a view's points that are not the value's fields.
_NOT_FIELDS = frozenset(("time", "key", "version", "partition", _CHANGE))
# Keys whose points one scan query reads (an OR of this many tag conditions).
_SCAN_KEYS_PER_QUERY = 200
# Passes of DROP SERIES before giving up: a version whose series reappear is still being written.
_DROP_PASSES_MAX = 3


def _literal(s: str) -> str:
    """An InfluxQL string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _tag_of(key: str) -> str:
    """What a key's ``key`` tag holds: InfluxDB 1.x unescapes ``\\,``, ``\\=`` and ``\\ `` in a tag value but keeps
    the doubled backslashes :func:`line_protocol` writes (measured on 1.6)."""
    return key.replace("\\", "\\\\")


def _key_of(tag: str) -> str:
    return tag.replace("\\\\", "\\")


def _change(key: str, row: Mapping[str, Json]) -> Change:
    """The change one point wrote."""
    fields: dict[str, Json] = {c: x for c, x in row.items() if c not in _NOT_FIELDS and x is not None}
    kind = row.get(_CHANGE)
    if kind is None:  # written before points carried their change: the fields tell, except for odd values
        kind = _KINDS_BEFORE_MARKER.get(tuple(sorted(fields)), "put_object")
    if kind == "delete":
        return Delete(key)
    if kind == "add":
        amount = fields.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            raise SinkError(f"InfluxDB: an Add point of key {key!r} has amount {amount!r}")
        return Add(key, amount)
    if kind == "put":
        return Put(key, fields.get("value"))
    return Put(key, fields)


def _folded(key: str, rows: Iterable[Mapping[str, Json]]) -> Json | None:
    """A key's value from its points in time order: Put sets, Add adds, Delete removes."""
    acc: Change | None = None
    for row in rows:
        acc = fold(acc, _change(key, row))
    if type(acc) is Put:
        return acc.value
    if type(acc) is Add:
        return acc.amount
    return None


class InfluxSink:
    """Points in an InfluxDB 1.x database, over HTTP; each call is a request of its own (thread-safe)."""

    guarantee = Guarantee.IDEMPOTENT
    wants_positions = True

    # InfluxDB 1.x's recommended batch: 5,000 points per write request.
    points_per_request_max = 5_000

    def __init__(self, url: str, database: str, *, create_database: bool = True, timeout_s: float = 30) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.location = f"influxdb:{self.url}/{database}"
        self.timeout_s = timeout_s
        self._view: View[object, object] | None = None
        self._batches = self._written = self._apply_ms = self._failures = 0
        if create_database:
            self._request("/query", urllib.parse.urlencode({"q": f'CREATE DATABASE "{database}"'}).encode(),
                          "application/x-www-form-urlencoded")

    def _request(self, path: str, body: bytes, content_type: str, query: str = "") -> bytes:
        req = urllib.request.Request(f"{self.url}{path}{query}", data=body, method="POST",
                                     headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                data: bytes = r.read()
                return data
        except urllib.error.HTTPError as e:
            raise SinkError(f"InfluxDB {path}: HTTP {e.code}: {e.read()[:500]!r}") from e
        except OSError as e:
            raise SinkError(f"InfluxDB {path}: {e}") from e

    def _write(self, lines: Sequence[str]) -> None:
        q = "?" + urllib.parse.urlencode({"db": self.database, "precision": "ns"})
        for i in range(0, len(lines), self.points_per_request_max):
            body = "\n".join(lines[i:i + self.points_per_request_max]).encode()
            self._request("/write", body, "text/plain; charset=utf-8", q)

    def _query(self, q: str) -> list[list[dict[str, Any]]]:
        """The series each statement of ``q`` (``;``-separated) returned; an error in any is a SinkError."""
        raw = self._request("/query", urllib.parse.urlencode({"db": self.database, "q": q, "epoch": "ns"}).encode(),
                            "application/x-www-form-urlencoded")
        body = json.loads(raw)
        if "error" in body:
            raise SinkError(f"InfluxDB {q!r}: {body['error']}")
        out = []
        for result in body["results"]:
            if "error" in result:
                raise SinkError(f"InfluxDB {q!r}: {result['error']}")
            out.append(result.get("series", []))
        return out

    @staticmethod
    def _rows(series: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Json]]:
        for s in series:
            tags = s.get("tags") or {}
            for values in s["values"]:
                yield {**tags, **dict(zip(s["columns"], values, strict=True))}

    def open(self, view: View[object, object]) -> None:
        entries, _ = self._catalog(view.name)
        if view.version not in entries:
            # Two runners opening at once both write it; they agree on everything but created_ms.
            self._write([_entry_line(view.name, view.version, list(view.topics), VersionState.BUILDING,
                                     int(time.time() * 1000))])
        self._view = view

    def stored_positions(self) -> dict[TopicPartition, int]:
        return {}  # the consumer group holds them

    def apply(self, batch: Batch) -> None:
        v = self._view
        if v is None:
            raise SinkError("the sink is not open: call open(view) first")
        t0 = time.monotonic()
        version = str(v.version)
        lines = []
        for c, tp, off, ts in zip(batch.changes, batch.sources, batch.offsets, batch.timestamps_ms, strict=True):
            if type(c) is Put:
                val = c.value
                if isinstance(val, dict):
                    if _CHANGE in val:
                        raise ViewError(f"{v.id}: key {c.key!r} has a field named {_CHANGE!r}, which InfluxSink uses")
                    fields: Mapping[str, object] = {**val, _CHANGE: "put_object"}
                else:
                    fields = {"value": val, _CHANGE: "put"}
            elif type(c) is Add:
                fields = {"amount": c.amount, _CHANGE: "add"}
            else:
                fields = {"deleted": True, _CHANGE: "delete"}
            if not any(_field(x) is not None for f, x in fields.items() if f != _CHANGE):
                raise ViewError(f"{v.id}: key {c.key!r} has no number, boolean or string to write as a field")
            tags = {"key": c.key, "version": version, "partition": str(tp.partition)}
            lines.append(line_protocol(v.name, tags, fields, ts * 1_000_000 + off % 1_000_000))
        try:
            # A runner left running for a dropped version fails here instead of writing points no catalog names.
            (found,) = self._query(f'SELECT "state" FROM "{_VERSIONS}" WHERE "view" = {_literal(v.name)} '
                                   f'AND "version" = {_literal(version)}')
            if not found:
                raise SinkError(f"InfluxDB {self.database}: {v.id} is not in the catalog (dropped?); stop its runners")
            self._write(lines)
        except SinkError:
            self._failures += 1
            raise
        self._batches += 1
        self._written += len(lines)
        self._apply_ms += int((time.monotonic() - t0) * 1000)

    def close(self) -> None:
        pass

    def statistics(self) -> SinkStatistics:
        return SinkStatistics(self._batches, self._written, self._apply_ms, self._failures)

    # -- catalog ------------------------------------------------------------------------------------------------

    def _catalog(self, name: str) -> tuple[dict[int, dict[str, Json]], int | None]:
        """The version entries of ``name`` and its serving version, read in one request."""
        entries, pointer = self._query(
            f'SELECT * FROM "{_VERSIONS}" WHERE "view" = {_literal(name)}; '
            f'SELECT "version" FROM "{_SERVING}" WHERE "view" = {_literal(name)}')
        serving = next((int(str(r["version"])) for r in self._rows(pointer)), None)
        return {int(str(r["version"])): r for r in self._rows(entries)}, serving

    def names(self) -> list[str]:
        (series,) = self._query(f'SHOW TAG VALUES FROM "{_VERSIONS}" WITH KEY = "view"')
        return sorted({str(r["value"]) for r in self._rows(series)})

    def serving_version(self, name: str) -> int | None:
        (series,) = self._query(f'SELECT "version" FROM "{_SERVING}" WHERE "view" = {_literal(name)}')
        return next((int(str(r["version"])) for r in self._rows(series)), None)

    def versions(self, name: str) -> list[VersionInfo]:
        entries, serving = self._catalog(name)
        return [VersionInfo(name, n, tuple(json.loads(str(e["topics"]))),
                            VersionState.SERVING if n == serving else VersionState(e["state"]),
                            int(str(e["created_ms"])), {}, None)
                for n, e in sorted(entries.items())]

    def switch(self, name: str, version: int) -> None:
        entries, serving = self._catalog(name)
        if version not in entries:
            known = ", ".join(map(str, sorted(entries))) or "none"
            raise ViewError(f"{name}@{version} does not exist in InfluxDB {self.database} (versions: {known})")
        lines = [line_protocol(_SERVING, {"view": name}, {"version": version}, 0)]
        old = entries.get(serving) if serving is not None and serving != version else None
        if old is not None:
            lines.append(_entry_line(name, int(str(old["version"])), json.loads(str(old["topics"])),
                                     VersionState.RETIRED, int(str(old["created_ms"]))))
        self._write(lines)  # the pointer first: that one point alone decides which version serves

    def drop(self, name: str, version: int) -> None:
        if version < 1:
            raise ViewError(f"view versions are >= 1, got {version}")
        if self.serving_version(name) == version:
            raise ViewError(f"{name}@{version} is serving; switch to another version before dropping it")
        tag = _literal(str(version))
        # the catalog entry first, so a half-done drop is no version at all; then the points
        self._query(f'DROP SERIES FROM "{_VERSIONS}" WHERE "view" = {_literal(name)} AND "version" = {tag}')
        for _ in range(_DROP_PASSES_MAX):
            self._query(f'DROP SERIES FROM "{name}" WHERE "version" = {tag}')
            (left,) = self._query(f'SHOW SERIES FROM "{name}" WHERE "version" = {tag} LIMIT 1')
            if not left:
                return
        raise SinkError(f"InfluxDB {self.database}: points of {name}@{version} keep appearing while it is dropped; "
                        "stop its runners and drop it again")

    # -- reading: for inspection ----------------------------------------------------------------------------------

    def get(self, name: str, key: str, version: int | None = None) -> Json | None:
        """The key's value folded from every point it has in the version (by default the serving one)."""
        v = read_version(self, name, version)
        if v is None:
            return None
        (series,) = self._query(f'SELECT * FROM "{name}" WHERE "version" = {_literal(str(v))} '
                                f'AND "key" = {_literal(_tag_of(key))}')
        return _folded(key, self._rows(series))

    def scan(self, name: str, *, after: str = "", limit: int = 100, version: int | None = None) -> list[
        tuple[str, Json]
    ]:
        """Keys after ``after`` in order with their folded values, at most ``limit``: lists every key of the version,
        then reads every point of the keys it returns."""
        v = read_version(self, name, version)
        if v is None or limit < 1:
            return []
        tag = _literal(str(v))
        (series,) = self._query(f'SHOW TAG VALUES FROM "{name}" WITH KEY = "key" WHERE "version" = {tag}')
        keys = sorted(k for r in self._rows(series) if (k := _key_of(str(r["value"]))) > after)
        out: list[tuple[str, Json]] = []
        i = 0
        while i < len(keys) and len(out) < limit:
            chunk = keys[i:i + min(limit - len(out), _SCAN_KEYS_PER_QUERY)]
            i += len(chunk)
            cond = " OR ".join(f'"key" = {_literal(_tag_of(k))}' for k in chunk)
            (series,) = self._query(f'SELECT * FROM "{name}" WHERE "version" = {tag} AND ({cond}) GROUP BY "key"')
            points = {_key_of(s["tags"]["key"]): list(self._rows([s])) for s in series}
            # a key deleted at the end of its points has no value, and is not listed
            out += [(k, value) for k in chunk if (value := _folded(k, points.get(k, ()))) is not None]
        return out[:limit]


def _entry_line(name: str, version: int, topics: list[str], state: VersionState, created_ms: int) -> str:
    return line_protocol(_VERSIONS, {"view": name, "version": str(version)},
                         {"state": state.value, "topics": json.dumps(topics), "created_ms": created_ms}, 0)
