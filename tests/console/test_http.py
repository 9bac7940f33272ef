"""The console's HTTP layer through Starlette's TestClient: what each page answers, errors as one line, refusals.

Against loosely's embedded broker (one per module); the pages a person uses are also checked in a real browser
against both loosely and Apache Kafka in test_browser.py.
"""

from __future__ import annotations

import doctest
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import loosely.console
from console._support import commit, create_topic, hollow_store, produce
from loosely.broker.server import BrokerThread
from loosely.console import _render, create_app
from loosely.console._cluster import Cluster, ConsoleError
from loosely.console._sampler import scraped_latencies
from loosely.testing import embedded_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    with embedded_broker(data_dir=str(tmp_path_factory.mktemp("console-http"))) as b:
        yield b


@pytest.fixture(scope="module")
def hollow_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    path = tmp_path_factory.mktemp("hollow")
    v1, v2 = hollow_store(path)
    return path, v1, v2


@pytest.fixture(scope="module")
def client(broker: BrokerThread, hollow_dir: tuple[Path, int, int]) -> Iterator[TestClient]:
    app = create_app(broker.bootstrap_servers, hollow=str(hollow_dir[0]), sample_interval_ms=200)
    with TestClient(app) as c:
        yield c


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def error_line(html: str) -> str:
    m = re.search(r'<p class="error" id="error">(.*?)</p>', html, re.S)
    assert m, html[:500]
    return m.group(1)


def test_public_surface_and_doctests() -> None:
    assert sorted(loosely.console.__all__) == ["Cluster", "ConsoleError", "ConsoleServer", "KeyLookup",
                                               "SearchProgress", "SearchQuery", "create_app"]
    assert doctest.testmod(_render).failed == 0


def test_decode_picks_json_text_or_hex() -> None:
    assert _render.decode(b'{"a": [1]}', "auto")[0] == "json"
    assert _render.decode(b"plain words", "auto") == ("text", "plain words")
    assert _render.decode(b"\x00\x01", "auto") == ("hex", "00 01")
    assert _render.decode(b"not json", "json") == ("text", "not json")
    assert _render.decode(b"AB", "hex") == ("hex", "41 42")
    assert _render.decode(None, "auto") == ("null", "null")
    big = b"x" * (_render._SHOWN_BYTES_MAX + 10)
    assert _render.decode(big, "text")[1].endswith(f"({_render._SHOWN_BYTES_MAX} bytes shown)")


def test_sizes_are_shown_in_binary_units() -> None:
    from loosely.console._app import _bytes_text

    assert [_bytes_text(n) for n in (None, 0, 1023, 1536, 5 << 30)] == ["-", "0 B", "1023 B", "1.5 KiB", "5.0 GiB"]


def test_chart_is_svg_scaled_to_the_data() -> None:
    svg = _render.line_chart({"lag of g": [(0.0, 0.0), (10.0, 40.0)]})
    assert svg.startswith("<svg") and 'data-last="40"' in svg
    assert "no samples yet" in _render.line_chart({"x": []})
    assert "&lt;b&gt;" in _render.line_chart({"<b>": [(0.0, 1.0)]})  # names are escaped


def test_create_produce_browse_and_topic_page(client: TestClient, topic: str) -> None:
    r = client.post("/topics", data={"name": topic, "partitions": "2", "configs": "retention.ms=3600000"})
    assert r.status_code == 200 and str(r.url).endswith(f"/topics/{topic}")
    assert "<dt>retention.ms</dt><dd>3600000</dd>" in r.text
    r = client.post(f"/topics/{topic}/produce",
                    data={"partition": "1", "key": "order-7", "value": '{"total": 42}', "headers": "source=web"})
    assert r.status_code == 200 and "partition=1&amp;offset=0" not in r.text
    assert 'data-partition="1" data-offset="0"' in r.text
    assert "&#34;total&#34;: 42" in r.text and "order-7" in r.text and "<b>source</b>: web" in r.text
    r = client.get(f"/topics/{topic}/messages?partition=1&offset=0&decode=hex")
    assert "6f 72 64 65 72 2d 37" in r.text  # the key in hex
    overview = client.get("/").text
    assert f'data-topic="{topic}"' in overview


def test_browse_from_a_time(client: TestClient, broker: BrokerThread, topic: str) -> None:
    create_topic(broker.bootstrap_servers, topic)
    produce(broker.bootstrap_servers, topic, [(b"early", b"1")])
    time.sleep(0.01)  # the next record's timestamp must be later than the first's: a millisecond clock
    cut = int(time.time() * 1000)
    time.sleep(0.01)
    produce(broker.bootstrap_servers, topic, [(b"late", b"2")])
    r = client.get(f"/topics/{topic}/messages", params={"partition": "0", "time": str(cut)})
    assert 'data-offset="1"' in r.text and 'data-offset="0"' not in r.text


def test_bad_input_is_one_line(client: TestClient, broker: BrokerThread, topic: str) -> None:
    create_topic(broker.bootstrap_servers, topic)
    cases = {
        f"/topics/{topic}/messages?partition=5": f"{topic} has no partition 5",
        f"/topics/{topic}/messages?offset=99": f"offset 99 is past the end of {topic}/0 (next offset 0)",
        f"/topics/{topic}/messages?offset=x": "offset must be a whole number, got 'x'",
        f"/topics/{topic}/messages?time=yesterday": "time 'yesterday': give epoch milliseconds or an ISO 8601 time",
        "/topics/no-such-topic-here": "topic no-such-topic-here:",
        "/searches/nope": "no such search",
    }
    for url, expected in cases.items():
        r = client.get(url)
        assert r.status_code == 400, url
        assert error_line(r.text).startswith(expected.replace("'", "&#39;")), url
        assert "Traceback" not in r.text


def test_unreachable_cluster_is_one_line() -> None:
    app = create_app("127.0.0.1:1", timeout_s=1.0, sample_interval_ms=60_000)
    with TestClient(app) as c:
        started = time.monotonic()
        r = c.get("/")
        assert time.monotonic() - started < 10
    assert r.status_code == 502
    assert error_line(r.text).startswith("cannot reach the cluster at 127.0.0.1:1:")


def test_key_value_and_header_search_scan(client: TestClient, broker: BrokerThread, topic: str) -> None:
    create_topic(broker.bootstrap_servers, topic, 2)
    produce(broker.bootstrap_servers, topic, [(f"k{i}".encode(), f"value {i}".encode()) for i in range(30)])
    produce(broker.bootstrap_servers, topic, [(b"k-h", b"with header")], partition=1, headers=[("trace", b"abc")])

    def search(**params: str) -> str:
        r = client.get(f"/topics/{topic}/search", params=params)
        assert "/searches/" in str(r.url)
        fragment = str(r.url).replace("http://testserver", "") + "/result"
        deadline = time.monotonic() + 10
        while 'data-done="1"' not in (text := client.get(fragment).text):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return text

    found = search(field="key", text="k17")
    assert re.findall(r'data-offset="(\d+)"', found) == ["17"]
    assert "scanned 31 of 31 record(s)" in found and "stopped at the end of the partitions" in found
    assert re.findall(r'data-offset="(\d+)"', search(field="value", text="value 2")) == ["2", "20", "21", "22",
                                                                                      "23", "24", "25", "26",
                                                                                      "27", "28", "29"]
    assert 'data-partition="1" data-offset="0"' in search(field="header", text="trace=abc")
    assert "1 match" not in search(field="header", text="trace=other")
    limited = search(field="key", text="nope", partition="0", records_max="10")
    assert "scanned 10 of 30 record(s)" in limited and "the limit of 10 records scanned" in limited


def test_key_search_uses_the_key_lookup(broker: BrokerThread, topic: str) -> None:
    """With a key index (a fake here; the broker's own in loosely broker), no scan: only its offsets are read."""
    create_topic(broker.bootstrap_servers, topic)
    produce(broker.bootstrap_servers, topic, [(b"a", b"first a"), (b"b", b"b"), (b"a", b"second a")])
    calls = []

    def lookup(t: str, partition: int, key: bytes, limit: int) -> list[int]:
        calls.append((t, partition, key, limit))
        return [2, 99, 0] if key == b"a" else []  # 99: an offset the log no longer has (left out)

    with TestClient(create_app(broker.bootstrap_servers, key_lookup=lookup, sample_interval_ms=60_000)) as c:
        r = c.get(f"/topics/{topic}/search", params={"field": "key", "text": "a"})
        fragment = str(r.url).replace("http://testserver", "") + "/result"
        deadline = time.monotonic() + 10
        while 'data-done="1"' not in (text := c.get(fragment).text):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert calls == [(topic, 0, b"a", 100)]
    assert re.findall(r'data-offset="(\d+)"', text) == ["2", "0"]  # newest first, as the index answers
    assert "answered from the broker&#39;s key index" in text and "scanned 0 " in text


def test_group_lag_and_reset(client: TestClient, broker: BrokerThread, topic: str) -> None:
    group = f"g-{topic}"
    create_topic(broker.bootstrap_servers, topic)
    produce(broker.bootstrap_servers, topic, [(None, b"x")] * 10)
    commit(broker.bootstrap_servers, group, topic, 4)
    page = client.get(f"/groups/{group}").text
    assert '<b id="total-lag">6</b>' in page
    assert group in client.get("/groups").text
    r = client.post(f"/groups/{group}/reset", data={"topic": topic, "to": "latest"})
    assert r.status_code == 200 and '<b id="total-lag">0</b>' in r.text and "reset-done" in r.text
    r = client.post(f"/groups/{group}/reset", data={"topic": topic, "to": "offset", "offset": "3"})
    assert '<b id="total-lag">7</b>' in r.text
    r = client.post(f"/groups/{group}/reset", data={"topic": topic, "to": "offset", "offset": "99"})
    assert r.status_code == 400 and error_line(r.text) == f"offset 99 is outside {topic}/0 (0..10)"
    # the sampler draws the lag over time
    deadline = time.monotonic() + 10
    while 'data-last="7"' not in client.get(f"/groups/{group}/lag-chart").text:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_reset_refused_while_the_group_has_members(client: TestClient, broker: BrokerThread, topic: str) -> None:
    from confluent_kafka import Consumer

    group = f"g-{topic}"
    create_topic(broker.bootstrap_servers, topic)
    produce(broker.bootstrap_servers, topic, [(None, b"x")])
    c = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": group, "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 20
        while c.poll(0.2) is None:
            assert time.monotonic() < deadline
        c.commit(asynchronous=False)
        r = client.post(f"/groups/{group}/reset", data={"topic": topic, "to": "earliest"})
    finally:
        c.close()
    assert r.status_code == 400
    assert error_line(r.text) == (f"group {group} has 1 active member(s); stop its consumers before resetting "
                                  "its offsets")


def test_read_only_refuses_every_change(broker: BrokerThread, topic: str) -> None:
    create_topic(broker.bootstrap_servers, topic)
    with TestClient(create_app(broker.bootstrap_servers, read_only=True, sample_interval_ms=60_000)) as c:
        page = c.get(f"/topics/{topic}").text
        assert 'id="read-only"' in page and 'id="produce"' not in page
        for url, data in [(f"/topics/{topic}/delete", {}), ("/topics", {"name": "x"}),
                          (f"/topics/{topic}/produce", {"value": "v"}),
                          ("/groups/g/reset", {"topic": topic, "to": "earliest"})]:
            r = c.post(url, data=data)
            assert r.status_code == 403, url
            assert error_line(r.text).startswith("this console is read-only: "), url
        assert f'data-topic="{topic}"' in c.get("/").text  # still there


def test_a_change_from_another_site_is_refused(client: TestClient, topic: str) -> None:
    r = client.post("/topics", data={"name": topic}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    assert error_line(r.text) == "refused a change asked from another site (http://evil.example)"
    assert f'data-topic="{topic}"' not in client.get("/").text


def test_delete_topic(client: TestClient, broker: BrokerThread, topic: str) -> None:
    create_topic(broker.bootstrap_servers, topic)
    r = client.post(f"/topics/{topic}/delete")
    assert r.status_code == 200 and f'data-topic="{topic}"' not in r.text


def test_hollow_pages(client: TestClient, hollow_dir: tuple[Path, int, int]) -> None:
    _, v1, v2 = hollow_dir
    home = client.get("/hollow").text
    assert f'<b id="announced">{v2}</b>' in home and "Movie" in home and "@PrimaryKey(id)" in home
    assert "snapshot" in home and "delta" in home
    rec = client.get("/hollow/types/Movie", params={"version": str(v1), "key": "2"}).text
    assert '"year": 1978' in rec
    diff = client.get("/hollow/diff", params={"from": str(v1), "to": str(v2)}).text
    assert '<span class="field">year</span>' in diff and "1 added, 0 removed, 1 changed" in diff
    history = client.get("/hollow/history", params={"type": "Movie", "key": "2"}).text
    assert re.findall(r"<td>(present|modified|added|removed)</td>", history) == ["present", "modified"]
    r = client.get("/hollow/types/Movie", params={"version": "12x"})
    assert r.status_code == 400 and error_line(r.text) == "version &#39;12x&#39; is not a number"


def test_no_hollow_store_is_one_line(broker: BrokerThread) -> None:
    with TestClient(create_app(broker.bootstrap_servers, sample_interval_ms=60_000)) as c:
        r = c.get("/hollow")
    assert r.status_code == 400 and error_line(r.text).startswith("no Hollow blob store given")


def test_views_page_shows_versions_and_switches(broker: BrokerThread, topic: str, tmp_path: Path) -> None:
    from loosely.views import Runner, RunnerConfig, SqliteSink, count_by_key

    create_topic(broker.bootstrap_servers, topic)
    produce(broker.bootstrap_servers, topic, [(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])
    url = f"sqlite:///{tmp_path / 'views.db'}"
    view = count_by_key("counts", [topic])
    for v, serve in ((1, True), (2, False)):
        sink = SqliteSink(str(tmp_path / "views.db"))
        runner = Runner(view.with_version(v), sink, broker.bootstrap_servers, RunnerConfig(serve_when_caught_up=serve))
        runner.run(until_caught_up=True, timeout_s=60)
        runner.close()
        sink.close()
    produce(broker.bootstrap_servers, topic, [(b"c", b"4")])  # both versions one record behind now
    missing = f"sqlite:///{tmp_path / 'nowhere' / 'x.db'}"
    with TestClient(create_app(broker.bootstrap_servers, views=[url, missing], sample_interval_ms=60_000)) as c:
        page = c.get("/views").text
        rows = re.findall(r'<tr data-view="counts" data-version="(\d)">.*?class="state">(\w+)</td>\s*'
                          r'<td class="num lag">(\d+)</td>', page, re.S)
        assert rows == [("1", "serving", "1"), ("2", "building", "1")], rows
        assert page.count('class="switch"') == 1  # only the version not serving
        assert f"views sink {missing}:" in page  # one sink away: one line, the other still shown
        r = c.post("/views/switch", data={"sink": url, "view": "counts", "version": "2"})
        assert r.status_code == 200 and "Now serving counts@2." in r.text
        states = re.findall(r'data-version="(\d)">.*?class="state">(\w+)<', r.text, re.S)
        assert states == [("1", "retired"), ("2", "serving")], states
        r = c.post("/views/switch", data={"sink": "sqlite:///elsewhere.db", "view": "counts", "version": "1"})
        assert r.status_code == 400
        assert error_line(r.text) == "sqlite:///elsewhere.db is not one of this console&#39;s views sinks"


def test_rates_in_and_out_follow_the_cluster(broker: BrokerThread, topic: str) -> None:
    """messages/s in from the high watermarks' growth, out from the committed offsets' growth."""
    create_topic(broker.bootstrap_servers, topic)
    app = create_app(broker.bootstrap_servers, sample_interval_ms=200)
    with TestClient(app) as client:
        sampler = app.state.sampler

        def peak(series: str) -> float:
            return max((v for _, v in sampler.rates()[series]), default=0.0)

        def wait(what: str, check: Callable[[], bool]) -> None:
            deadline = time.monotonic() + 15
            while not check():
                assert time.monotonic() < deadline, what
                time.sleep(0.05)

        wait("two samples", lambda: len(sampler.rates()["in msg/s"]) >= 2)
        before = sampler.samples
        produce(broker.bootstrap_servers, topic, [(None, b"x")] * 200)
        wait("in rate", lambda: sampler.samples > before + 1 and peak("in msg/s") > 0)
        commit(broker.bootstrap_servers, f"g-{topic}", topic, 200)
        wait("out rate", lambda: peak("out msg/s") > 0)
        svg = client.get("/charts/rates").text
        assert 'data-series="in msg/s"' in svg and 'data-series="out msg/s"' in svg


def test_request_latencies_are_scraped_from_the_brokers_metrics(tmp_path: Path, topic: str) -> None:
    """``loosely console --broker-metrics URL``: the latency chart follows the broker's request histogram."""
    with embedded_broker(data_dir=str(tmp_path / "data"), metrics_listen="127.0.0.1:0") as b:
        assert b.broker.metrics is not None and b.broker.metrics.port is not None
        source = scraped_latencies(f"http://127.0.0.1:{b.broker.metrics.port}/metrics")
        app = create_app(b.bootstrap_servers, sample_interval_ms=200, request_latencies=source)
        with TestClient(app) as client:
            create_topic(b.bootstrap_servers, topic)
            deadline = time.monotonic() + 20
            while "produce ms" not in app.state.sampler.latencies():
                assert time.monotonic() < deadline, app.state.sampler.latencies()
                produce(b.bootstrap_servers, topic, [(None, b"x")] * 10)
            means = [v for _, v in app.state.sampler.latencies()["produce ms"]]
            assert all(0 <= v < 10_000 for v in means)
            assert 'data-series="produce ms"' in client.get("/charts/latency").text
            assert 'id="latency"' in client.get("/").text
        bad = create_app(b.bootstrap_servers, sample_interval_ms=60_000,
                         request_latencies=scraped_latencies("http://127.0.0.1:1/metrics", timeout_s=1))
        bad.state.sampler.sample()  # the endpoint away: counted, the cluster's sample still taken
        assert bad.state.sampler.latency_failures == 1 and bad.state.sampler.samples == 1
    with TestClient(create_app("127.0.0.1:1", timeout_s=1.0, sample_interval_ms=60_000)) as client:
        assert client.get("/charts/latency").status_code == 404  # no source: said, not an empty chart


def test_the_docs_name_the_factorys_parameters() -> None:
    """docs/console.md gives create_app's signature for programs (the broker's wiring, the demo): kept true."""
    import inspect

    doc = (Path(__file__).resolve().parents[2] / "docs" / "console.md").read_text()
    written = re.search(r"`create_app\((.*?)\)`", doc, re.S)
    assert written, "docs/console.md lost create_app's signature"
    names = [p.strip().split("=")[0] for p in " ".join(written.group(1).split()).split(",") if p.strip() != "*"]
    assert names == list(inspect.signature(create_app).parameters)


def test_basic_auth_with_the_brokers_users(broker: BrokerThread, tmp_path: Path) -> None:
    from loosely.security.credentials import CredentialStore
    from loosely.security.passwords import CredentialsFile, PasswordCheck
    from loosely.security.scram import SCRAM_MECHANISMS, credential_from_password
    from loosely.storage.fs import OsFileSystem

    CredentialStore(OsFileSystem(), str(tmp_path)).put(
        "alice", "SCRAM-SHA-256", credential_from_password(SCRAM_MECHANISMS["SCRAM-SHA-256"], "wonder"))
    check = PasswordCheck(CredentialsFile(str(tmp_path / "scram-credentials.json")))
    with TestClient(create_app(broker.bootstrap_servers, authenticate=check, sample_interval_ms=60_000)) as c:
        for auth in (None, ("alice", "wrong"), ("bob", "wonder")):
            r = c.get("/static/console.css", auth=auth)
            assert r.status_code == 401, auth
            assert r.headers["www-authenticate"] == 'Basic realm="loosely console"'
        assert c.get("/", headers={"Authorization": "Basic !!not-base64"}).status_code == 401
        r = c.get("/", auth=("alice", "wonder"))
        assert r.status_code == 200 and "<h1>Cluster</h1>" in r.text


def test_framed_values_are_shown_decoded_with_their_schema(broker: BrokerThread, topic: str) -> None:
    """With a schema registry, Avro and JSON Schema values in Confluent's framing show as JSON with their schema id
    and subject; a value that is not framed, or whose schema id the registry does not know, shows as bytes."""
    import json

    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from loosely.testing import embedded_schema_registry

    create_topic(broker.bootstrap_servers, topic)
    with embedded_schema_registry(broker.bootstrap_servers) as registry:
        sr = SchemaRegistryClient({"url": registry.url})
        user = json.dumps({"type": "record", "name": "User", "fields": [
            {"name": "name", "type": "string"}, {"name": "email", "type": ["null", "string"]}]})
        ctx = SerializationContext(topic, MessageField.VALUE)
        avro_value = AvroSerializer(sr, user)({"name": "Ada", "email": "ada@example.com"}, ctx)
        json_value = JSONSerializer(json.dumps({"type": "object"}), sr)(
            {"n": 1}, SerializationContext(f"{topic}-j", MessageField.VALUE))
        produce(broker.bootstrap_servers, topic, [(b"a", avro_value), (b"j", json_value), (b"p", b"\x00\x01"),
                                                  (b"u", b"\x00\x00\x00\x03\xe7{}")])
        app = create_app(broker.bootstrap_servers, schema_registry=registry.url, sample_interval_ms=200)
        with TestClient(app) as c:
            page = c.get(f"/topics/{topic}/messages?partition=0&offset=0").text
            hex_page = c.get(f"/topics/{topic}/messages?partition=0&offset=0&decode=hex").text
    rows = re.findall(r'<tr class="record".*?</tr>', page, re.S)
    assert len(rows) == 4
    assert f'<div class="schema">AVRO schema 1 ({topic}-value v1)</div>' in rows[0]
    assert '<pre class="json framed avro">{\n  &#34;name&#34;: &#34;Ada&#34;,\n  &#34;email&#34;: {\n    ' \
           '&#34;string&#34;: &#34;ada@example.com&#34;\n  }\n}</pre>' in rows[0]
    assert f'JSON schema 2 ({topic}-j-value v1)' in rows[1] and "&#34;n&#34;: 1" in rows[1]
    assert '<pre class="hex">00 01</pre>' in rows[2] and 'class="schema"' not in rows[2]  # too short: bytes
    assert '<pre class="hex">00 00 00 03 e7 7b 7d</pre>' in rows[3]  # schema 999 is unknown: bytes
    assert "framed" not in hex_page  # decode=hex shows the bytes themselves


def test_lag_and_sizes_on_a_cluster_reached_with_sasl_ssl(tmp_path: Path, topic: str) -> None:
    """Committed offsets (OffsetFetch) and sizes (DescribeLogDirs) go over loosely's own connection: with the
    console's TLS and SCRAM settings they work on a broker that only has a SASL_SSL listener."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    from loosely.broker.config import BrokerConfig, split_kafka_settings
    from loosely.security.scram import parse_scram_spec
    from loosely.testing.certs import make_dev_certs

    certs = make_dev_certs(tmp_path / "certs")
    settings, _, unknown = split_kafka_settings({"listeners": "SASL_SSL://127.0.0.1:0",
                                                 "ssl.keystore.location": str(certs.broker.pem)})
    assert not unknown
    user, mechanism, credential = parse_scram_spec("SCRAM-SHA-512=[name=alice,password=alice-secret]")
    config = BrokerConfig(data_dir=str(tmp_path / "data"), initial_scram_credentials=((user, mechanism.name,
                                                                                       credential),),
                          **settings)  # type: ignore[arg-type]
    secured = {"security.protocol": "SASL_SSL", "ssl.ca.location": str(certs.ca_crt),
               "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "alice", "sasl.password": "alice-secret"}
    with BrokerThread(config) as b:
        bootstrap, group = b.bootstrap_servers, f"g-{topic}"
        p = Producer({"bootstrap.servers": bootstrap, **secured})
        for _ in range(9):
            p.produce(topic, b"x" * 100)
        assert p.flush(30) == 0
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False, **secured})
        c.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
        c.close()
        app = create_app(bootstrap, client_config=secured, sample_interval_ms=200)
        with TestClient(app) as console:
            assert '<b id="total-lag">5</b>' in console.get(f"/groups/{group}").text
            deadline = time.monotonic() + 10
            while 'data-last="5"' not in console.get(f"/groups/{group}/lag-chart").text:  # the sampler's
                assert time.monotonic() < deadline, console.get(f"/groups/{group}/lag-chart").text
                time.sleep(0.1)
            size = re.search(r'<td class="num size">([^<]*)</td>', console.get(f"/topics/{topic}").text)
            assert size is not None and size.group(1) not in ("-", "0 B"), size
        wrong = Cluster(bootstrap, {**secured, "sasl.password": "not-her-password"}, timeout_s=5)
        with pytest.raises(ConsoleError, match=r"SASL authentication with .* failed") as refused:
            wrong.committed([group])
        assert "\n" not in str(refused.value) and "not-her-password" not in str(refused.value)
        wrong.close()
