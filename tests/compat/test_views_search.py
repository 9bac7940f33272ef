"""Full-text search views: SQLite FTS5 (embedded default, exactly-once) and a real Sphinx searchd (idempotent),
each under a kill -9 loop, compared with the reference computed from the topic, documents and search counts.

Event count: ``LOOSELY_VIEWS_CRASH_EVENTS`` (default 20 000 for CI; the 1M runs are in docs/views.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loosely.broker.server import BrokerThread
from loosely.views import (
    Batch,
    Delete,
    Put,
    SinkError,
    SqliteSink,
    TopicPartition,
    VersionState,
    _sphinx,
    latest_by_key,
)
from loosely.views._sphinx import SphinxSink
from views import services
from views.crashkit import (
    CRASH_TIMEOUT_S,
    WORDS,
    Reference,
    Runners,
    committed,
    crash_batch,
    crash_events,
    crash_keys,
    crash_kills,
    crash_loop,
    create_topic,
    produce_events,
    record_result,
    reference,
    view_group,
)
from views.services import Sphinx

sphinx = services.sphinx  # the fixture

TP = TopicPartition("t", 0)


def expected_docs(ref: Reference) -> dict[str, object]:
    return {k: {"title": v["title"], "body": v["body"], "seq": v["seq"]} for k, v in ref.last.items()}


def word_counts(ref: Reference) -> dict[str, int]:
    """How many keys' latest title has each word: what a search for that word must find."""
    return {w: sum(1 for v in ref.last.values() if w in str(v["title"]).split()) for w in WORDS}


def test_fts5_search_follows_upserts_and_deletes(tmp_path: Path) -> None:
    sink = SqliteSink(str(tmp_path / "s.db"), search=("title", "body"))
    sink.open(latest_by_key("products", ["t"]))
    sink.apply(Batch.build([(TP, 0, 0, Put("p1", {"title": "Red running shoes", "body": "light"})),
                            (TP, 1, 0, Put("p2", {"title": "Blue boots", "body": "waterproof leather"})),
                            (TP, 2, 0, Put("p3", {"title": "Red socks", "body": "wool"}))]))
    sink.switch("products", 1)
    assert [k for k, _ in sink.search_docs("products", "red")] in (["p1", "p3"], ["p3", "p1"])
    assert [k for k, _ in sink.search_docs("products", "run")] == ["p1"]  # porter stemming
    sink.apply(Batch.build([(TP, 3, 0, Put("p1", {"title": "Green shoes", "body": "light"})),
                            (TP, 4, 0, Delete("p3"))], starts={TP: 3}))
    assert sink.search_docs("products", "red") == []
    assert [k for k, _ in sink.search_docs("products", "shoes")] == ["p1"]


def test_sphinx_replays_are_no_ops(sphinx: Sphinx) -> None:
    sink = SphinxSink(sphinx.host, sphinx.port, "views_unit", fields=sphinx.fields)
    sink.open(latest_by_key("products", ["t"]))
    batch = Batch.build([(TP, 0, 0, Put("p1", {"title": "Red running shoes", "body": "light"})),
                         (TP, 1, 0, Put("p2", {"title": "Blue boots", "body": "waterproof"})),
                         (TP, 2, 0, Put("p1", {"title": "Red shoes", "body": "v2"}))])
    sink.apply(batch)
    sink.apply(batch)
    sink.apply(Batch.build([(TP, 0, 0, Put("p1", {"title": "stale", "body": "replayed"}))]))
    assert sink.get("products", "p1") is None  # nothing serves yet
    sink.switch("products", 1)
    assert sink.get("products", "p1") == {"title": "Red shoes", "body": "v2"}
    assert [k for k, _ in sink.search_docs("products", "red")] == ["p1"]
    assert sink.count("products", "shoe") == 1  # stem_en
    sink.apply(Batch.build([(TP, 3, 0, Delete("p1"))]))
    assert sink.count("products", "red") == 0 and sink.count("products") == 1
    with pytest.raises(ValueError, match="JSON objects"):
        sink.apply(Batch.build([(TP, 4, 0, Put("p9", "not an object"))]))
    sink.close()


def test_sphinx_catalog_lives_in_the_index(sphinx: Sphinx, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two connections (two processes' worth) see one catalog; scans page in byte order; catalog documents are never
    view documents; a drop deletes by id in pages and leaves another view of the same version number alone."""
    a, b, zombie = (SphinxSink(sphinx.host, sphinx.port, "views_catalog", fields=sphinx.fields) for _ in range(3))
    view = latest_by_key("cat", ["t"])
    a.open(view)
    a.open(view)  # idempotent
    assert [(i.version, i.state, i.topics) for i in b.versions("cat")] == [(1, VersionState.BUILDING, ("t",))]
    assert b.serving_version("cat") is None and b.get("cat", "a") is None and b.scan("cat") == []
    keys = ["b", "a", "B", "\u00e4", "a b", "k/1", "_z", "a'\\"] + [f"n{i:02d}" for i in range(40)]
    a.apply(Batch.build([(TP, i, 0, Put(k, {"title": f"red {k}", "body": "x"})) for i, k in enumerate(keys)]))
    a.switch("cat", 1)
    assert b.serving_version("cat") == 1 and b.get("cat", "a b") == {"title": "red a b", "body": "x"}
    assert [k for k, _ in b.scan("cat", limit=1000)] == sorted(keys)
    want = [(k, {"title": f"red {k}", "body": "x"}) for k in ("n31", "n32", "n33")]
    assert b.scan("cat", after="n30", limit=3) == want  # past the first windows of sorted keys
    paged: list[str] = []
    while page := b.scan("cat", after=paged[-1] if paged else "", limit=7):
        paged += [k for k, _ in page]
    assert paged == sorted(keys)
    assert b.count("cat") == len(keys) == len(b.all_docs("cat")) == len(b.search_docs("cat", "red", limit=100))
    with pytest.raises(ValueError, match=">= 1"):
        b.get("cat", "a", version=0)  # the catalog's documents are not a version

    other = latest_by_key("other", ["t"])  # another view, same version number, same index
    a.open(other)
    a.apply(Batch.build([(TP, 0, 0, Put("a", {"title": "blue", "body": ""}))]))
    assert b.names() == ["cat", "other"]
    zombie.open(view)  # a runner of version 1 that nobody stops
    a.open(view.with_version(2))
    a.apply(Batch.build([(TP, 0, 0, Put("a", {"title": "green", "body": ""}))]))
    with pytest.raises(ValueError, match="does not exist"):
        a.switch("cat", 3)
    a.switch("cat", 2)
    assert [(i.version, i.state) for i in b.versions("cat")] == [(1, VersionState.RETIRED), (2, VersionState.SERVING)]
    assert b.scan("cat") == [("a", {"title": "green", "body": ""})]
    with pytest.raises(ValueError, match="is serving"):
        b.drop("cat", 2)
    monkeypatch.setattr(_sphinx, "_DROP_PAGE_DOCS", 5)  # many pages, each bounded by max_matches
    b.drop("cat", 1)
    assert [i.version for i in a.versions("cat")] == [2]
    assert a.all_docs("cat", version=1) == {} and a.count("cat", version=1) == 1  # the other view's document
    assert a.all_docs("other", version=1) == {"a": {"title": "blue", "body": ""}}
    with pytest.raises(SinkError, match="not in the catalog"):
        zombie.apply(Batch.build([(TP, 99, 0, Put("a", {"title": "late", "body": ""}))]))
    assert a.all_docs("cat", version=1) == {}
    for s in (a, b, zombie):
        s.close()


@pytest.mark.slow
@pytest.mark.timeout(CRASH_TIMEOUT_S)
@pytest.mark.parametrize("runners", [1, 3])
def test_fts5_kill9_loop(loosely: BrokerThread, tmp_path: Path, topic: str, runners: int) -> None:
    events = crash_events(20_000)
    create_topic(loosely.bootstrap_servers, topic, 4)
    produce_events(loosely.bootstrap_servers, topic, events, keys=crash_keys(events))
    ref = reference(loosely.bootstrap_servers, topic)
    db = tmp_path / "search.db"
    procs = Runners(["views.crash_views:documents", "--sink", f"sqlite://{db}?search=title,body", "-b",
                     loosely.bootstrap_servers, "--batch-records", crash_batch(2000), "--session-timeout-ms", "6000"],
                    runners, {"LOOSELY_CRASH_TOPIC": topic, "LOOSELY_CRASH_VIEW": "docs"}, tmp_path)

    def done() -> bool:
        if not db.exists():
            return False
        s = SqliteSink(str(db))
        try:
            infos = s.versions("docs")
            return bool(infos) and all(infos[0].positions.get(TopicPartition(t, p), 0) >= o
                                       for (t, p), o in ref.ends.items() if o > 0)
        finally:
            s.close()

    report = crash_loop(procs, kills=crash_kills(8), done=done, pause_s=(0.5, 2.5))
    record_result("sqlite-fts5", events, runners, report)
    s = SqliteSink(str(db), search=("title", "body"))
    assert dict(s.scan("docs", limit=10**9, version=1)) == expected_docs(ref)
    for word, n in word_counts(ref).items():
        assert len(s.search_docs("docs", word, limit=10**9, version=1)) == n, word
    s.close()


@pytest.mark.slow
@pytest.mark.timeout(CRASH_TIMEOUT_S)
@pytest.mark.parametrize("runners", [1, 3])
def test_sphinx_kill9_loop(loosely: BrokerThread, sphinx: Sphinx, tmp_path: Path, topic: str, runners: int) -> None:
    events = crash_events(20_000)
    create_topic(loosely.bootstrap_servers, topic, 4)
    produce_events(loosely.bootstrap_servers, topic, events, keys=crash_keys(events))
    ref = reference(loosely.bootstrap_servers, topic)
    index = f"views_crash{runners}"  # one index per test: documents of another run must not count
    url = f"sphinx://{sphinx.host}:{sphinx.port}/{index}?fields=title,body"
    view = f"docs_{topic[2:]}"
    procs = Runners(["views.crash_views:documents", "--sink", url, "-b", loosely.bootstrap_servers,
                     "--batch-records", crash_batch(2000), "--session-timeout-ms", "6000"],
                    runners, {"LOOSELY_CRASH_TOPIC": topic, "LOOSELY_CRASH_VIEW": view}, tmp_path)

    group = view_group(view, url)

    def done() -> bool:
        got = committed(loosely.bootstrap_servers, group, topic)
        return all(got.get(tp, -1) >= end for tp, end in ref.ends.items() if end > 0)

    report = crash_loop(procs, kills=crash_kills(8), done=done, pause_s=(0.5, 2.5))
    record_result("sphinx", events, runners, report)
    s = SphinxSink(sphinx.host, sphinx.port, index, fields=sphinx.fields)
    assert s.all_docs(view, version=1) == expected_docs(ref)
    for word, n in word_counts(ref).items():
        assert s.count(view, word, version=1) == n, word
    s.close()
