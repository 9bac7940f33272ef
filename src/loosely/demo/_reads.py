"""Two of the talk's read sides that need a server of their own: documents as static files, and Hollow in memory.

:class:`DocumentSite` is what a single-page app gets from a bucket: the documents view's directory (a ``dir:``
sink, :mod:`loosely.views._documents`) served as files, a listing of a view's serving version (``GET
/docs/<view>/current/``, newest first, as a bucket's list call would give it), and the small page under
``/`` (``static/``) that reads them with nothing but ``fetch``. Files are resolved inside the directory only; the
``current`` symlink is followed, so a blue/green switch changes what ``/docs/<view>/current/<key>.json`` returns in
one rename.

:class:`HollowReader` is a read service that answers from memory: a read-after-write Hollow client
(:class:`~loosely.hollow.raw.RawClient`) holds the newest Hollow version the catalog's producer published plus the
changes it has tailed from the log since, and each lookup is a primary-key probe. A lookup is eventual by default
(whatever the client holds, no waiting); ``?after=TOKEN`` (the token a write answered with) first waits until the
client has read that write, and ``?consistency=strong`` until it has read every write committed before the
lookup. Every answer says how stale the client may be (``staleness_ms``). When the broker is away, eventual
lookups keep answering from memory with a growing staleness, and the waiting ones answer ``504`` after their
timeout rather than something older than asked.
"""

from __future__ import annotations

import mimetypes
import os
import threading
from importlib import resources
from pathlib import Path
from typing import Any

from loosely.demo._catalog import Movie, movie_json
from loosely.demo._http import Request, Response, json_response
from loosely.hollow.raw import ConsistencyTimeout, RawClient, Token

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
    """Lookups by movie id from a :class:`RawClient` of the catalog (started and closed by the caller)."""

    def __init__(self, client: RawClient, *, timeout_ms: int = 5_000, ready: threading.Event | None = None) -> None:
        self.client = client
        self.timeout_ms = timeout_ms  # how long an after= or strong lookup waits for the log
        self.ready = ready  # set once the client is started (None: it is)

    def route(self, req: Request) -> Response:
        p = req.path
        client = self.client
        if p == ("status",) or not p:
            return json_response(200, {"type": "Movie", "hollow_version": client.version,
                                       "staleness_ms": client.staleness_ms, "reached": client.reached(),
                                       "lookup": "/movies/<id>[?after=TOKEN|?consistency=strong]"})
        if len(p) != 2 or p[0] != "movies":
            return json_response(404, {"error": f"no route {req.raw_path}; try /movies/<id>"})
        if self.ready is not None and not self.ready.is_set():
            return json_response(503, {"error": "the Hollow client is starting: it waits for the log; try again"})
        consistency = req.query.get("consistency", "eventual")
        after = req.query.get("after")
        if consistency not in ("eventual", "strong"):
            return json_response(400, {"error": f"consistency is eventual or strong, not {consistency!r}"})
        try:
            token = None if after is None else Token.parse(after)
        except ValueError as e:
            return json_response(400, {"error": f"{e}: after= takes the token a write answered with"})
        try:
            record, version = client.get_versioned(Movie, p[1], consistency=consistency, after=token,
                                                   timeout_ms=self.timeout_ms)
        except ConsistencyTimeout as e:
            return json_response(504, {"error": f"the {'write' if token else 'log'} was not read within "
                                                f"{self.timeout_ms} ms ({e}); is the broker reachable? An eventual "
                                                "read answers from memory"})
        out: dict[str, Any] = {"key": p[1], "consistency": "after" if token is not None and consistency ==
                               "eventual" else consistency, "staleness_ms": client.staleness_ms,
                               "hollow_version": client.version}
        if record is None:
            return json_response(404, {"error": f"no movie {p[1]!r}", **out})
        return json_response(200, {**out, "value": movie_json(record), "version": version})
