"""The demo's pieces alone, without a broker: the movie checks at their limits, the documents site's files and
listing, the Hollow reader's parameters, a write with no elected writer, log keys, and the docstring examples."""

from __future__ import annotations

import doctest
import importlib
import json
import os
import pkgutil
from pathlib import Path
from typing import Any

import pytest

import loosely.demo
from loosely.demo import Catalog, DocumentSite, HollowReader, movie_document
from loosely.demo._catalog import Movie, catalog_dataset, movie_id, movie_json
from loosely.demo._http import Request
from loosely.hollow.raw import RawClient, Writer
from loosely.testing import free_port

MODULES = sorted(m.name for m in pkgutil.iter_modules(loosely.demo.__path__, "loosely.demo."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


@pytest.mark.parametrize(("movie", "ok"), [
    ({"title": "x" * 200}, True), ({"title": "x" * 201}, False), ({"title": " "}, False), ({"title": 7}, False),
    ({"title": "t", "year": 1870}, True), ({"title": "t", "year": 1869}, False), ({"title": "t", "year": 2100}, True),
    ({"title": "t", "year": 2101}, False), ({"title": "t", "year": True}, False), ({"title": "t", "year": 1.5}, False),
    ({"title": "t", "rating": 0}, True), ({"title": "t", "rating": 10}, True), ({"title": "t", "rating": 10.01}, False),
    ({"title": "t", "rating": -0.1}, False), ({"title": "t", "rating": "9"}, False),
    ({"title": "t", "genres": ["g"] * 10}, True), ({"title": "t", "genres": ["g"] * 11}, False),
    ({"title": "t", "genres": ["x" * 40]}, True), ({"title": "t", "genres": ["x" * 41]}, False),
    ({"title": "t", "genres": "drama"}, False), ({"title": "t", "id": "m1"}, True), ({"title": "t", "x": 1}, False),
    (["title"], False), (None, False),
])
def test_movie_documents_at_under_and_over_their_limits(movie: Any, ok: bool) -> None:
    if ok:
        assert movie_document(movie)["title"] == movie["title"]
    else:
        with pytest.raises(ValueError, match=r"^(a movie|\"|unknown)"):
            movie_document(movie)


def get(route: Any, path: str) -> tuple[int, Any]:
    where, _, qs = path.partition("?")
    parts = tuple(p for p in where.split("/") if p)
    query = dict(q.split("=") for q in qs.split("&")) if qs else {}
    r = route(Request("GET", parts, query, b"", path))
    return r.status, json.loads(r.body) if r.content_type == "application/json" else r.body


def test_the_documents_site_serves_files_inside_its_directory_only_and_lists_newest_first(tmp_path: Path) -> None:
    docs = tmp_path / "documents"
    (docs / "movies" / "v1").mkdir(parents=True)
    (docs / "movies" / "current").symlink_to("v1")
    for i, name in enumerate(["a", "b", "c"]):
        f = docs / "movies" / "v1" / f"{name}.json"
        f.write_text(json.dumps({"key": name}))
        os.utime(f, ns=(i * 10**9, i * 10**9))
    (docs / "movies" / "v1" / "_meta.json").write_text("{}")
    (tmp_path / "secret.json").write_text('{"secret": 1}')
    site = DocumentSite(docs).route
    assert get(site, "/docs/movies/current/b.json") == (200, {"key": "b"})
    assert get(site, "/docs/movies/current/") == (200, {"items": [
        {"name": "c.json", "modified_ms": 2000}, {"name": "b.json", "modified_ms": 1000},
        {"name": "a.json", "modified_ms": 0}]})
    assert get(site, "/docs/movies/current/?limit=1")[1]["items"] == [{"name": "c.json", "modified_ms": 2000}]
    assert get(site, "/docs/movies/current/?limit=x") == (400, {"error": "limit is a whole number up to 100"})
    assert len(get(site, "/docs/movies/current/?limit=1000")[1]["items"]) == 3  # at most 100, here all
    assert get(site, "/docs/movies/current/nope.json")[0] == 404
    assert get(site, "/docs/../secret.json")[0] == 404
    assert get(site, "/docs/movies/../../secret.json")[0] == 404
    page = get(site, "/")
    assert page[0] == 200 and b"<script src=\"/app.js\">" in page[1]
    assert get(site, "/app.js")[0] == 200
    assert site(Request("PUT", ("docs", "x.json"), {}, b"{}", "/docs/x.json")).status == 405


@pytest.fixture
def unreachable(tmp_path: Path) -> Any:
    """The catalog's dataset on a port nobody listens on."""
    return catalog_dataset("movies", f"127.0.0.1:{free_port()}", str(tmp_path / "hollow"))


def test_the_hollow_reader_checks_its_parameters_and_answers_from_memory_without_a_broker(unreachable: Any) -> None:
    reader = HollowReader(RawClient(unreachable), timeout_ms=200)
    assert get(reader.route, "/movies/heat?consistency=linear") == (
        400, {"error": "consistency is eventual or strong, not 'linear'"})
    code, body = get(reader.route, "/movies/heat?after=nonsense")
    assert code == 400 and "after= takes the token a write answered with" in body["error"], body
    code, body = get(reader.route, "/movies/heat")  # eventual: nothing loaded, nothing tailed, no waiting
    assert code == 404 and body["error"] == "no movie 'heat'" and body["hollow_version"] is None, body
    assert get(reader.route, "/status")[1]["hollow_version"] is None


def test_a_write_without_an_elected_writer_fails_clearly_and_at_once(unreachable: Any) -> None:
    catalog = Catalog(Writer(unreachable))  # never started: never elected
    r = catalog.route(Request("PUT", ("movies", "heat"), {}, b'{"title": "Heat"}', "/movies/heat"))
    assert r.status == 503
    error = json.loads(r.body)["error"]
    assert "not the log's elected writer" in error and "nothing was written" in error, error
    assert (catalog.writes, catalog.failures) == (0, 1)


def test_log_keys_and_records_become_ids_and_documents() -> None:
    assert [movie_id(k) for k in (b'["Movie",["m-1"]]', b'["Movie",[1]]', b'["Actor",["x"]]', b"m1", None)] == [
        "m-1", None, None, None, None]
    assert movie_json(Movie("heat", "Heat", rating=8.3)) == {"id": "heat", "title": "Heat", "rating": 8.3}
