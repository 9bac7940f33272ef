"""The read API's answers for what is not there: a view that does not exist or is not serving, a search on a view
without a full-text index, a malformed search. Real SQLite sinks and a real HTTP server on loopback."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from loosely.views import View, ViewServer, open_sink


def _view(name: str, version: int = 1) -> View[Any, Any]:
    return View(name, version, ("t",), lambda r: None)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewServer]:
    d = tmp_path_factory.mktemp("serve")
    plain = open_sink(f"sqlite:///{d}/views.db")
    plain.open(_view("plain"))
    plain.switch("plain", 1)  # type: ignore[attr-defined]
    plain.open(_view("building"))
    plain.close()
    searchable = open_sink(f"sqlite:///{d}/views.db?search=title")
    searchable.open(_view("docs"))
    searchable.switch("docs", 1)  # type: ignore[attr-defined]
    s = ViewServer(searchable, "127.0.0.1", 0)  # type: ignore[arg-type]
    s.start()
    try:
        yield s
    finally:
        s.stop()
        searchable.close()


def get(server: ViewServer, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("route", ["/views/nope/keys/1", "/views/nope/keys", "/views/nope/search?q=x"])
def test_an_unknown_view_is_named_as_such(server: ViewServer, route: str) -> None:
    assert get(server, route) == (404, {"error": "no such view 'nope'"})


def test_a_view_that_is_not_serving_yet_says_so(server: ViewServer) -> None:
    assert get(server, "/views/building/keys/1") == (404, {"error": "no view 'building' is serving"})


def test_a_missing_key_of_a_serving_view_is_a_missing_key(server: ViewServer) -> None:
    assert get(server, "/views/plain/keys/1") == (404, {"error": "no key '1' in view 'plain'"})


def test_search_on_a_view_without_an_index_is_a_404_that_says_how(server: ViewServer) -> None:
    code, body = get(server, "/views/plain/search?q=x")
    assert code == 404
    assert "no full-text index" in body["error"] and "?search=" in body["error"]


def test_a_malformed_search_is_the_client_s_error(server: ViewServer) -> None:
    assert get(server, "/views/docs/search?q=title")[0] == 200
    code, body = get(server, "/views/docs/search?q=%22unbalanced")
    assert code == 400 and "bad search query" in body["error"]
