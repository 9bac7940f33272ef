"""JSON documents per key, in a directory and in a real S3 server (SeaweedFS, started by the test): idempotent
writes make kill -9 loops end with exactly the reference view; blue/green switches the ``current`` pointer.

Event count: ``LOOSELY_VIEWS_CRASH_EVENTS`` (default 20 000 for CI; the 1M runs are in docs/views.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loosely.broker.server import BrokerThread
from loosely.views import Add, Batch, Delete, Put, TopicPartition, count_by_key
from loosely.views._documents import DirectoryStore, DocumentSink, S3Store, doc_name
from views import services
from views.crashkit import (
    CRASH_TIMEOUT_S,
    Runners,
    committed,
    crash_batch,
    crash_events,
    crash_keys,
    crash_kills,
    crash_loop,
    create_topic,
    expected_rows,
    produce_events,
    record_result,
    reference,
    view_group,
)
from views.services import SeaweedFS

seaweedfs = services.seaweedfs  # the fixture

TP = TopicPartition("t", 0)


def all_docs(sink: DocumentSink, name: str) -> dict[str, object]:
    return dict(sink.scan(name, limit=10**9, version=1))


def test_replayed_batches_change_nothing(tmp_path: Path) -> None:
    sink = DocumentSink(DirectoryStore(str(tmp_path)))
    sink.open(count_by_key("c", ["t"]))
    first = Batch.build([(TP, 0, 0, Add("a", 1)), (TP, 1, 0, Add("a", 1)), (TP, 2, 0, Put("b", "x"))])
    sink.apply(first)
    sink.apply(first)  # a crash before the offset commit replays it
    sink.apply(Batch.build([(TP, 1, 0, Add("a", 1)), (TP, 2, 0, Put("b", "x")), (TP, 3, 0, Add("a", 5)),
                            (TP, 4, 0, Delete("b"))]))
    assert all_docs(sink, "c") == {"a": 7}
    doc = json.loads((tmp_path / "c" / "v1" / doc_name("a")).read_text())
    assert doc == {"key": "a", "value": 7, "versions": {"t/0": 3}}


def test_switch_is_one_atomic_pointer_and_a_symlink(tmp_path: Path) -> None:
    sink = DocumentSink(DirectoryStore(str(tmp_path)))
    for version, value in ((1, "old"), (2, "new")):
        sink.open(count_by_key("c", ["t"], version=version))
        sink.apply(Batch.build([(TP, 0, 0, Put("k", value))]))
    sink.switch("c", 1)
    assert sink.get("c", "k") == "old"
    sink.switch("c", 2)
    assert sink.get("c", "k") == "new"
    assert json.loads((tmp_path / "c" / "current" / doc_name("k")).read_text())["value"] == "new"
    with pytest.raises(ValueError, match="is serving"):
        sink.drop("c", 2)
    sink.drop("c", 1)
    assert [v.version for v in sink.versions("c")] == [2]


def test_odd_keys_get_safe_file_names() -> None:
    assert doc_name("a/b c") == "a%2Fb%20c.json"
    assert doc_name("_meta").startswith("~") and doc_name("").startswith("~")
    assert doc_name("x" * 500).startswith("~") and len(doc_name("x" * 500)) < 80


def run_crash(loosely: BrokerThread, tmp_path: Path, topic: str, sink_url: str, make_reader: object, label: str,
              runners: int = 1, default_events: int = 20_000) -> None:
    events = crash_events(default_events)
    create_topic(loosely.bootstrap_servers, topic, 4)
    produce_events(loosely.bootstrap_servers, topic, events, keys=crash_keys(events))
    ref = reference(loosely.bootstrap_servers, topic)
    view = f"docs_{topic[2:]}"
    group = view_group(view, sink_url)
    procs = Runners(["views.crash_views:combined", "--sink", sink_url, "-b", loosely.bootstrap_servers,
                     "--batch-records", crash_batch(2000), "--session-timeout-ms", "6000"],
                    runners, {"LOOSELY_CRASH_TOPIC": topic, "LOOSELY_CRASH_VIEW": view}, tmp_path)

    def done() -> bool:
        got = committed(loosely.bootstrap_servers, group, topic)
        return all(got.get(tp, -1) >= end for tp, end in ref.ends.items() if end > 0)

    report = crash_loop(procs, kills=crash_kills(8), done=done, pause_s=(0.5, 2.5))
    record_result(label, events, runners, report)
    reader = make_reader()  # type: ignore[operator]
    rows = all_docs(reader, view)
    expected = expected_rows(ref)
    wrong = {k: (rows.get(k), v) for k, v in expected.items() if rows.get(k) != v}
    assert rows.keys() == expected.keys() and not wrong, (len(rows), len(expected), list(wrong.items())[:5])


@pytest.mark.slow
@pytest.mark.timeout(CRASH_TIMEOUT_S)
@pytest.mark.parametrize("runners", [1, 3])
def test_directory_kill9_loop(loosely: BrokerThread, tmp_path: Path, topic: str, runners: int) -> None:
    root = tmp_path / "docs"
    run_crash(loosely, tmp_path, topic, f"dir://{root}", lambda: DocumentSink(DirectoryStore(str(root))), "dir",
              runners)


@pytest.mark.slow
@pytest.mark.timeout(CRASH_TIMEOUT_S)
@pytest.mark.parametrize("runners", [1, 3])
def test_s3_kill9_loop(loosely: BrokerThread, seaweedfs: SeaweedFS, tmp_path: Path, topic: str,
                       runners: int) -> None:
    bucket = f"views-{topic[2:]}"
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "loosely")
    url = f"s3://{bucket}/spa?endpoint={seaweedfs.s3_endpoint}"
    run_crash(loosely, tmp_path, topic, url,
              lambda: DocumentSink(S3Store(bucket, "spa", endpoint_url=seaweedfs.s3_endpoint)), "s3-seaweedfs",
              runners, default_events=10_000)


def test_s3_blue_green_pointer(seaweedfs: SeaweedFS) -> None:
    store = S3Store("bluegreen", "app", endpoint_url=seaweedfs.s3_endpoint)
    sink = DocumentSink(store)
    for version, value in ((1, {"v": 1}), (2, {"v": 2})):
        sink.open(count_by_key("spa", ["t"], version=version))
        sink.apply(Batch.build([(TP, 0, 0, Put("home", value))]))
    sink.switch("spa", 2)
    assert json.loads(store.read("spa/current.json") or b"") == {"version": 2}
    assert sink.get("spa", "home") == {"v": 2}
    sink.drop("spa", 1)
    assert [v.version for v in sink.versions("spa")] == [2]
    assert store.client.get_object(Bucket="bluegreen", Key=f"app/spa/v2/{doc_name('home')}")["ContentType"] == \
        "application/json"
    sink.close()
