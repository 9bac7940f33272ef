"""The write side: a movie catalog that only appends to the log, and a stream of edits to keep it moving.

Theory of operation. The catalog has no database. ``PUT /movies/<id>`` checks the document and produces it to the
catalog topic under its id (a ``DELETE`` produces a tombstone), then answers once the broker has acknowledged it
(``acks=all``), with the offset it got. Every read side is a view of that topic, built by its own runner, so a
write is visible in each of them a moment later, in log order. When the broker cannot be reached, librdkafka gives
up after ``write_timeout_ms`` and the write answers ``503`` saying that nothing was written; reads are not this
service's business, and ``GET`` says where they are.

:class:`ChangeStream` is the talk's live traffic: a thread that edits a small fixed set of movies (new ratings,
occasional deletes and re-adds) a few times a second through the same :meth:`Catalog.write`, so every read side
visibly moves. It can be switched off and on while the demo runs; during a partition its writes fail like any other.

>>> movie_document({"title": "Heat", "year": 1995, "genres": ["crime"], "rating": 8.3})
{'title': 'Heat', 'year': 1995, 'genres': ['crime'], 'rating': 8.3}
>>> movie_document({"year": 1995})
Traceback (most recent call last):
...
ValueError: a movie needs a "title": a non-empty string of at most 200 characters
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from loosely.demo._http import Request, Response, json_response
from loosely.views import JSON, Add, Change, Delete, Put, Record, View, latest_by_key

__all__ = ["Catalog", "ChangeStream", "WriteResult", "metrics_view", "movie_document", "movies_view"]

log = logging.getLogger(__name__)

ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TITLE_CHARS_MAX = 200
GENRES_MAX = 10
# How long a write waits for the broker's acknowledgement before it is reported as failed (librdkafka's
# message.timeout.ms): long enough for a busy broker, short enough that a person sees a partition at once.
WRITE_TIMEOUT_MS = 3_000


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


def movies_view(name: str, topic: str) -> View[object, Any]:
    """The latest document of every movie (a delete removes it): what search, documents and Hollow are built of."""
    return latest_by_key(name, [topic], value=JSON)


def metrics_view(name: str, topic: str) -> View[bytes, Any]:
    """Numbers for Prometheus: writes and deletes so far, and each movie's current rating."""

    def fn(r: Record[bytes, Any]) -> list[Change] | None:
        if r.key is None:
            return None
        key = r.key.decode("utf-8", "replace")
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
    offset: int


class Catalog:
    """The write service: movies in, log records out. Thread-safe (one librdkafka producer shared)."""

    def __init__(self, bootstrap_servers: str, topic: str, *, client_config: Mapping[str, str] | None = None,
                 write_timeout_ms: int = WRITE_TIMEOUT_MS, reads: Mapping[str, str] | None = None) -> None:
        self.topic = topic
        self.write_timeout_ms = write_timeout_ms
        self.reads = dict(reads or {})  # where each read side answers, for a GET that came to the wrong place
        # Not idempotent: a write the broker never saw is reported failed, and the client decides to retry it.
        self._producer = Producer({**(client_config or {}), "bootstrap.servers": bootstrap_servers, "acks": "all",
                                   "enable.idempotence": False, "linger.ms": 0,
                                   "message.timeout.ms": write_timeout_ms, "log_level": 0})
        self._lock = threading.Lock()
        self.writes = self.failures = 0

    def write(self, movie_id: str, movie: dict[str, Any] | None) -> WriteResult:
        """Append ``movie`` (``None``: a delete) to the log; raises ``ConnectionError`` when the log did not take
        it within ``write_timeout_ms``."""
        done = threading.Event()
        got: list[Message] = []

        def delivered(err: KafkaError | None, msg: Message) -> None:
            got.append(msg)
            done.set()

        value = None if movie is None else json.dumps({"id": movie_id, **movie}, ensure_ascii=False).encode()
        self._producer.produce(self.topic, key=movie_id.encode(), value=value, on_delivery=delivered)
        self._producer.flush(self.write_timeout_ms / 1000 + 1)
        err = got[0].error() if got else None
        with self._lock:
            if got and err is None:
                self.writes += 1
            else:
                self.failures += 1
        if not got or err is not None:
            why = err.str() if err is not None else "no acknowledgement"
            raise ConnectionError(f"the log did not take the write within {self.write_timeout_ms} ms ({why}): "
                                  "nothing was written; is the broker reachable? Try again")
        m = got[0]
        return WriteResult(m.topic() or self.topic, m.partition() or 0, m.offset() or 0)

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
        return json_response(200 if req.method != "POST" else 201, {
            "id": movie_id, "deleted": req.method == "DELETE", "topic": r.topic, "partition": r.partition,
            "offset": r.offset})

    def close(self) -> None:
        self._producer.flush(1)


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
