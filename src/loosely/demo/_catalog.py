"""The write side: a movie catalog that only appends to the log, and a stream of edits to keep it moving.

Theory of operation. The catalog has no database: it is a read-after-write Hollow dataset (``loosely.hollow.raw``)
whose log, the compacted topic ``movies.changes``, every read side is a view of. ``PUT /movies/<id>`` checks the
document and hands it to the dataset's elected :class:`~loosely.hollow.raw.Writer`, which appends it to the log
in a Kafka transaction (a ``DELETE`` appends a tombstone) and answers once it is committed, with the record's
*version* (its log offset) and a *token*: the log position a reader must have reached to see the write. The Hollow
read service takes that token (``?after=``) to read the write back at once; the other read sides simply follow
the log and show it a moment later, in log order. When the broker cannot be reached the writer cannot commit (or
is no longer the elected one) and the write answers ``503`` saying what is known: that nothing was written, or,
when a commit went unanswered, that it may or may not have been, and how to find out. Reads are not this
service's business, and ``GET`` says where they are.

On the log a movie is keyed ``["Movie",["<id>"]]`` and its value is the record's JSON (``_codec`` of
``loosely.hollow.raw``); :func:`movie_id` and :func:`movie_document` turn them back into the id and the document
the views show.

:class:`ChangeStream` is the talk's live traffic: a thread that edits a small fixed set of movies (new ratings,
occasional deletes and re-adds) a few times a second through the same :meth:`Catalog.write`, so every read side
visibly moves. It can be switched off and on while the demo runs; during a partition its writes fail like any other.

>>> movie_document({"title": "Heat", "year": 1995, "genres": ["crime"], "rating": 8.3})
{'title': 'Heat', 'year': 1995, 'genres': ['crime'], 'rating': 8.3}
>>> movie_document({"year": 1995})
Traceback (most recent call last):
...
ValueError: a movie needs a "title": a non-empty string of at most 200 characters
>>> movie_id(b'["Movie",["heat"]]'), movie_id(b"heat")
('heat', None)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from loosely.demo._http import Request, Response, json_response
from loosely.hollow.core import INLINE, hollow_type
from loosely.hollow.raw import Dataset, NotLeaderError, WriteError, Writer
from loosely.views import JSON, Add, Change, Delete, Put, Record, View

__all__ = ["Catalog", "ChangeStream", "Movie", "WriteResult", "catalog_dataset", "metrics_view", "movie_document",
           "movie_id", "movie_json", "movies_view"]

log = logging.getLogger(__name__)

ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TITLE_CHARS_MAX = 200
GENRES_MAX = 10
# How long a write waits for its commit before it is reported as failed: long enough for a busy broker, short
# enough that a person sees a partition at once.
WRITE_TIMEOUT_MS = 3_000


@hollow_type(name="Movie", primary_key=("id",))
@dataclass(frozen=True, slots=True)
class Movie:
    """A movie of the catalog, as the Hollow dataset holds it (``None``: the field was not given)."""

    id: Annotated[str, INLINE]
    title: Annotated[str, INLINE]
    year: Annotated[int | None, INLINE] = None
    genres: list[str] | None = None
    rating: Annotated[float | None, INLINE] = None


def catalog_dataset(name: str, bootstrap_servers: str, blob_store: Any, *, partitions: int = 1,
                    client_config: Mapping[str, str] | None = None) -> Dataset:
    """The catalog: the dataset of :class:`Movie` records whose log is the topic ``<name>.changes``."""
    return Dataset(name, [Movie], bootstrap_servers=bootstrap_servers, blob_store=blob_store,
                   partitions=partitions, client_config=client_config)


def movie_document(body: Any) -> dict[str, Any]:
    """The movie a request body describes, checked field by field (``ValueError`` says which field is wrong)."""
    if not isinstance(body, Mapping):
        raise ValueError("a movie is a JSON object, e.g. {\"title\": \"Heat\", \"year\": 1995}")
    title = body.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > TITLE_CHARS_MAX:
        raise ValueError(f'a movie needs a "title": a non-empty string of at most {TITLE_CHARS_MAX} characters')
    out: dict[str, Any] = {"title": title}
    year = body.get("year")
    if year is not None:
        if type(year) is not int or not 1870 <= year <= 2100:
            raise ValueError('"year" is a whole number from 1870 to 2100')
        out["year"] = year
    genres = body.get("genres")
    if genres is not None:
        if not isinstance(genres, list) or len(genres) > GENRES_MAX or not all(
                isinstance(g, str) and 0 < len(g) <= 40 for g in genres):
            raise ValueError(f'"genres" is a list of at most {GENRES_MAX} short strings')
        out["genres"] = genres
    rating = body.get("rating")
    if rating is not None:
        if type(rating) not in (int, float) or not 0 <= rating <= 10:
            raise ValueError('"rating" is a number from 0 to 10')
        out["rating"] = rating
    unknown = sorted(set(body) - {"id", "title", "year", "genres", "rating"})
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}: a movie has title, year, genres and rating")
    return out


def movie_id(key: bytes | None) -> str | None:
    """The movie id of a log key ``["Movie",["<id>"]]``; ``None`` for any other key (not one of the catalog's)."""
    try:
        value = json.loads(key or b"null")
    except ValueError:
        return None
    if (isinstance(value, list) and len(value) == 2 and value[0] == "Movie" and isinstance(value[1], list)
            and len(value[1]) == 1 and isinstance(value[1][0], str)):
        return value[1][0]
    return None


def _document(value: Any) -> Any:
    """The record's JSON as the read sides show it: the fields that were given (``None`` ones left out)."""
    return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value


def movie_json(movie: Movie) -> dict[str, Any]:
    """A :class:`Movie` as the read sides show it (the same JSON as its document)."""
    return {f.name: v for f in dataclasses.fields(movie) if (v := getattr(movie, f.name)) is not None}


def movies_view(name: str, topic: str) -> View[bytes, Any]:
    """The latest document of every movie by id (a delete removes it): what search and documents are built of."""

    def fn(r: Record[bytes, Any]) -> list[Change] | None:
        key = movie_id(r.key)
        if key is None:
            return None
        return [Delete(key)] if r.value is None else [Put(key, _document(r.value))]

    return View(name, 1, (topic,), fn, value=JSON, description="the latest document of every movie")


def metrics_view(name: str, topic: str) -> View[bytes, Any]:
    """Numbers for Prometheus: writes and deletes so far, and each movie's current rating."""

    def fn(r: Record[bytes, Any]) -> list[Change] | None:
        key = movie_id(r.key)
        if key is None:
            return None
        if r.value is None:
            return [Add("deletes", 1), Delete(f"rating/{key}")]
        rating = r.value.get("rating") if isinstance(r.value, dict) else None
        out: list[Change] = [Add("writes", 1)]
        if type(rating) in (int, float):
            out.append(Put(f"rating/{key}", rating))
        return out

    return View(name, 1, (topic,), fn, value=JSON, description="catalog writes, deletes and ratings")


@dataclass(frozen=True, slots=True)
class WriteResult:
    topic: str
    partition: int
    offset: int  # the record's version
    token: str  # what a reader passes as ?after= to see this write


class Catalog:
    """The write service: movies in, log records out, through the dataset's elected ``writer`` (started by the
    caller; it may lead or not, and lose or regain the lead while the service runs). Thread-safe."""

    def __init__(self, writer: Writer, *, reads: Mapping[str, str] | None = None, hollow_url: str = "") -> None:
        self.writer = writer
        self.dataset: Dataset = writer.dataset
        self.topic = self.dataset.changes_topic
        self.write_timeout_ms = writer.write_timeout_ms
        self.reads = dict(reads or {})  # where each read side answers, for a GET that came to the wrong place
        self.hollow_url = hollow_url  # the Hollow read service, for the read-your-write link of each answer
        self._lock = threading.Lock()
        self.writes = self.failures = 0

    def write(self, movie_id: str, movie: dict[str, Any] | None) -> WriteResult:
        """Append ``movie`` (``None``: a delete) to the log; raises ``ConnectionError`` saying what is known when
        the log did not take it. Not retried behind the caller's back: the caller sees the failure and decides."""
        try:
            if movie is None:
                done = self.writer.delete(Movie, movie_id)
            else:
                fields = {**movie, "rating": float(movie["rating"])} if "rating" in movie else movie
                done = self.writer.put(Movie(id=movie_id, **fields))  # a rating of 8 is 8.0 on every side
        except NotLeaderError as e:
            self._count(ok=False)
            raise ConnectionError(f"the write service is not the log's elected writer right now ({e}): nothing "
                                  "was written; is the broker reachable? Try again") from None
        except WriteError as e:
            self._count(ok=False)
            if e.uncertain:
                raise ConnectionError(
                    f"the log did not confirm the write within {self.write_timeout_ms} ms ({e}): it may or may not "
                    "have been written (a strong read of the Hollow service tells); is the broker reachable? Try "
                    "again") from None
            raise ConnectionError(f"the log did not take the write within {self.write_timeout_ms} ms ({e}): "
                                  "nothing was written; is the broker reachable? Try again") from None
        self._count(ok=True)
        partition = self.dataset.partition_of(self.dataset.key_bytes("Movie", (movie_id,)))
        return WriteResult(self.topic, partition, done.version, str(done.token))

    def _count(self, *, ok: bool) -> None:
        with self._lock:
            if ok:
                self.writes += 1
            else:
                self.failures += 1

    def route(self, req: Request) -> Response:
        """``PUT``/``POST``/``DELETE /movies/<id>`` (``POST /movies`` with an ``id`` in the body)."""
        p = req.path
        if not p or p[0] != "movies" or len(p) > 2:
            return json_response(404, {"error": f"no route {req.raw_path}; writes go to /movies/<id>",
                                       "reads": self.reads})
        if req.method in ("GET", "HEAD"):
            return json_response(405, {"error": "this service only writes to the log; read from the read sides",
                                       "reads": self.reads})
        body: Any = None
        if req.method in ("PUT", "POST"):
            try:
                body = json.loads(req.body or b"null")
                movie = movie_document(body)
            except ValueError as e:  # JSONDecodeError is one too
                return json_response(400, {"error": str(e)})
        movie_id = p[1] if len(p) == 2 else (body.get("id") if isinstance(body, dict) else None)
        if not isinstance(movie_id, str) or not ID.match(movie_id):
            return json_response(400, {"error": "a movie id is 1 to 64 letters, digits, '-' or '_': "
                                                "PUT /movies/<id>, or POST /movies with an \"id\""})
        if req.method not in ("PUT", "POST", "DELETE"):
            return json_response(405, {"error": f"{req.method} is not a write; use PUT, POST or DELETE"})
        try:
            r = self.write(movie_id, None if req.method == "DELETE" else movie)
        except ConnectionError as e:
            return json_response(503, {"error": str(e)})
        out = {"id": movie_id, "deleted": req.method == "DELETE", "topic": r.topic, "partition": r.partition,
               "offset": r.offset, "version": r.offset, "token": r.token}
        if self.hollow_url:  # read your write: the Hollow service waits until it has read up to the token
            out["read_your_write"] = f"{self.hollow_url}/movies/{movie_id}?after={urllib.parse.quote(r.token)}"
        return json_response(200 if req.method != "POST" else 201, out)

    def close(self) -> None:
        """Nothing of its own to release: the writer belongs to whoever started it."""


# The stream edits these; a fixed set keeps every read side (and the metrics' series) bounded however long it runs.
_TITLES = [
    ("Heat", 1995, ["crime", "thriller"]), ("Alien", 1979, ["horror", "science fiction"]),
    ("Amélie", 2001, ["comedy", "romance"]), ("Spirited Away", 2001, ["animation", "fantasy"]),
    ("The Third Man", 1949, ["noir", "thriller"]), ("Seven Samurai", 1954, ["action", "drama"]),
    ("Paris, Texas", 1984, ["drama"]), ("Stalker", 1979, ["science fiction", "drama"]),
    ("Groundhog Day", 1993, ["comedy", "fantasy"]), ("Jaws", 1975, ["thriller", "adventure"]),
    ("Playtime", 1967, ["comedy"]), ("Fargo", 1996, ["crime", "comedy"]),
    ("Cléo from 5 to 7", 1962, ["drama"]), ("Ran", 1985, ["drama", "war"]),
    ("Arrival", 2016, ["science fiction", "drama"]), ("Le Samouraï", 1967, ["crime", "noir"]),
]


class ChangeStream:
    """Edits the catalog ``per_second`` times a second in a background thread while :attr:`on`."""

    def __init__(self, catalog: Catalog, per_second: float, *, seed: int | None = None) -> None:
        self.catalog = catalog
        self.per_second = per_second if per_second > 0 else 2.0
        self.on = per_second > 0
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-change-stream", daemon=True)
        self.sent = self.failed = 0

    def start(self) -> ChangeStream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.catalog.write_timeout_ms / 1000 + 5)

    def next_change(self) -> tuple[str, dict[str, Any] | None]:
        i = self._rng.randrange(len(_TITLES))
        title, year, genres = _TITLES[i]
        if self._rng.random() < 0.1:
            return f"m{i + 1:03d}", None
        return f"m{i + 1:03d}", {"title": title, "year": year, "genres": genres,
                                 "rating": round(self._rng.uniform(5, 10), 1)}

    def _run(self) -> None:
        while not self._stop.wait(1 / self.per_second):
            if not self.on:
                continue
            movie_id, movie = self.next_change()
            try:
                self.catalog.write(movie_id, movie)
                self.sent += 1
            except ConnectionError as e:  # a partition: keep trying, one line per failure is enough
                self.failed += 1
                log.info("change stream: %s", e)
