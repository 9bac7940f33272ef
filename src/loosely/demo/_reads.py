"""Two of the talk's read sides that need a server of their own: documents as static files, and Hollow in memory.

:class:`DocumentSite` is what a single-page app gets from a bucket: the documents view's directory (a ``dir:``
sink, :mod:`loosely.views._documents`) served as files, a listing of a view's serving version (``GET
/docs/<view>/current/``, newest first, as a bucket's list call would give it), and the small page under
``/`` (``static/``) that reads them with nothing but ``fetch``. Files are resolved inside the directory only; the
``current`` symlink is followed, so a blue/green switch changes what ``/docs/<view>/current/<key>.json`` returns in
one rename.

:class:`HollowReader` is a read service that answers from memory: a Hollow consumer follows the dataset the
Hollow view publishes (polling the blob store's announcement), and each lookup is a primary-key index probe. It
keeps answering from the version it holds whatever happens to the broker.
"""

from __future__ import annotations

import json
import mimetypes
import os
from importlib import resources
from pathlib import Path
from typing import Any

from loosely.demo._http import Request, Response, json_response
from loosely.hollow.api import Consumer, FilesystemBlobStore, UniqueKeyIndex

__all__ = ["DocumentSite", "HollowReader"]

# Documents a listing names at most: the page shows the newest few, and a large view must not cost a huge answer.
LISTING_MAX = 100
_PAGES = ("index.html", "app.js", "style.css")


class DocumentSite:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def route(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return json_response(405, {"error": "documents are read-only here; write through the write service"})
        p = req.path
        if not p or (len(p) == 1 and p[0] in _PAGES):
            name = p[0] if p else "index.html"
            data = resources.files("loosely.demo").joinpath("static", name).read_bytes()
            return Response(200, data, mimetypes.guess_type(name)[0] or "application/octet-stream")
        if p[0] != "docs" or len(p) < 2:
            return json_response(404, {"error": f"no route {req.raw_path}"})
        target = self.root.joinpath(*p[1:]).resolve()
        if not target.is_relative_to(self.root) or any(s.startswith(".") for s in p[1:]):
            return json_response(404, {"error": "outside the documents directory"})
        if target.is_dir():
            limit = req.query.get("limit", str(LISTING_MAX))
            if not limit.isdigit():
                return json_response(400, {"error": f"limit is a whole number up to {LISTING_MAX}"})
            return json_response(200, {"items": self.listing(target, int(limit))})
        try:
            return Response(200, target.read_bytes())
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return json_response(404, {"error": f"no document {'/'.join(p[1:])}"})

    @staticmethod
    def listing(directory: Path, limit: int) -> list[dict[str, Any]]:
        found = []
        with os.scandir(directory) as it:
            for e in it:
                if e.name.endswith(".json") and not e.name.startswith(("_", ".")):
                    try:
                        found.append((e.stat().st_mtime_ns, e.name))
                    except FileNotFoundError:  # replaced or deleted while listing
                        continue
        found.sort(reverse=True)
        return [{"name": n, "modified_ms": t // 1_000_000} for t, n in found[:max(0, min(limit, LISTING_MAX))]]


class HollowReader:
    """Lookups by key in the Hollow dataset of a view, published into ``blob_dir`` as type ``type_name``."""

    def __init__(self, blob_dir: Path, type_name: str, *, poll_interval_ms: int = 200) -> None:
        blob_dir.mkdir(parents=True, exist_ok=True)
        store = FilesystemBlobStore(str(blob_dir))
        self.type_name = type_name
        self.consumer = Consumer(retriever=store, watcher=store, poll_interval_ms=poll_interval_ms)
        self._index: UniqueKeyIndex | None = None

    def start(self) -> HollowReader:
        self.consumer.start()
        return self

    def stop(self) -> None:
        self.consumer.stop()

    def _ready(self) -> UniqueKeyIndex | None:
        engine = self.consumer.engine
        if self._index is None and engine is not None and self.type_name in engine.type_names():
            self._index = UniqueKeyIndex(self.consumer, self.type_name)
        return self._index

    def get(self, key: str) -> Any:
        """The view's value for ``key`` (``None`` when absent), from memory."""
        index = self._ready()
        if index is None:
            return None
        with self.consumer.reading():
            rec = index.get(key)
            return None if rec is None else json.loads(str(rec["value"]))

    def route(self, req: Request) -> Response:
        p = req.path
        version = self.consumer.version
        if p == ("status",) or not p:
            return json_response(200, {"type": self.type_name, "version": version,
                                       "lookup": f"/{self.type_name}/<key>"})
        if len(p) == 2 and p[0] == self.type_name:
            if version is None:
                return json_response(503, {"error": "no Hollow version announced yet"})
            value = self.get(p[1])
            if value is None:
                return json_response(404, {"error": f"no key {p[1]!r} in Hollow version {version}",
                                           "version": version})
            return json_response(200, {"key": p[1], "value": value, "version": version})
        return json_response(404, {"error": f"no route {req.raw_path}; try /{self.type_name}/<key>"})
