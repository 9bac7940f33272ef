"""The console as a person uses it: Debian's chromium, driven by Selenium, against loosely's embedded broker AND
Apache Kafka 4.1.1 with the same assertions. One browser and one console per cluster for the module; every test
saves a screenshot (build/test-artifacts, or LOOSELY_TEST_ARTIFACTS).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from console._support import commit, create_topic, hollow_store, produce
from loosely.console import ConsoleServer, create_app
from loosely.testing import ApacheKafka, embedded_broker, embedded_schema_registry
from loosely.testing.browser import chromium, screenshot, wait_for


@dataclass(frozen=True)
class Console:
    kind: str
    bootstrap: str
    url: str
    hollow: Path
    versions: tuple[int, int]
    registry_url: str


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def hollow_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[int, int]]:
    path = tmp_path_factory.mktemp("hollow")
    return path, hollow_store(path)


@pytest.fixture(scope="module", params=["loosely", "kafka"])
def console(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            hollow_dir: tuple[Path, tuple[int, int]]) -> Iterator[Console]:
    with contextlib.ExitStack() as stack:
        if request.param == "kafka":
            kafka: ApacheKafka = request.getfixturevalue("apache_kafka")
            bootstrap = kafka.bootstrap_servers
        else:
            broker = stack.enter_context(embedded_broker(data_dir=str(tmp_path_factory.mktemp("console-b"))))
            bootstrap = broker.bootstrap_servers
        registry = stack.enter_context(embedded_schema_registry(bootstrap, topic=f"_schemas-{uuid.uuid4().hex[:8]}"))
        app = create_app(bootstrap, hollow=str(hollow_dir[0]), sample_interval_ms=300, schema_registry=registry.url)
        server = stack.enter_context(ConsoleServer(app))
        yield Console(request.param, bootstrap, server.url, hollow_dir[0], hollow_dir[1], registry.url)


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def text_of(driver: Any, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def test_overview_and_topic_pages_render(browser: Any, console: Console, topic: str) -> None:
    create_topic(console.bootstrap, topic, 3)
    produce(console.bootstrap, topic, [(b"k", b"v")] * 4, partition=2)
    browser.get(console.url + "/")
    assert browser.title == "Topics · loosely"
    row = browser.find_element(By.CSS_SELECTOR, f'#topics tr[data-topic="{topic}"]')
    assert row.find_elements(By.TAG_NAME, "td")[1].text == "3"
    assert row.find_elements(By.TAG_NAME, "td")[2].text == "4"
    size = row.find_element(By.CSS_SELECTOR, "td.size").text  # from DescribeLogDirs
    assert re.fullmatch(r"\d+ B", size) and int(size.split()[0]) > 4 * 2, size
    assert browser.find_element(By.CSS_SELECTOR, "#rates svg.chart").is_displayed()
    screenshot(browser, f"console-{console.kind}-overview")
    row.find_element(By.LINK_TEXT, topic).click()
    assert text_of(browser, "#topic-name") == topic
    cells = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
             for tr in browser.find_elements(By.CSS_SELECTOR, "#partitions tbody tr")]
    assert [c[0] for c in cells] == ["0", "1", "2"]
    assert cells[2][4:7] == ["0", "4", "4"]  # start, end, messages
    assert cells[2][7] == size and cells[0][7] == "0 B"
    assert "retention.ms" in text_of(browser, "#retention")
    screenshot(browser, f"console-{console.kind}-topic")


def _gone(element: Any) -> Any:
    """A wait condition: ``element`` left the document. Chromium says so either as a stale reference or, while
    the next page is being swapped in, as an inspector error that the node no longer belongs to the document."""

    def check(_: Any) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            if "does not belong to the document" in str(e):
                return True
            raise
        return False

    return check


def test_produce_then_browse_shows_the_message(browser: Any, console: Console, topic: str) -> None:
    create_topic(console.bootstrap, topic)
    browser.get(f"{console.url}/topics/{topic}")
    form = browser.find_element(By.ID, "produce")
    form.find_element(By.NAME, "key").send_keys("order-1")
    form.find_element(By.NAME, "value").send_keys('{"item": "tea", "qty": 2}')
    form.find_element(By.NAME, "headers").send_keys("origin=console")
    form.find_element(By.TAG_NAME, "button").click()
    wait_for(browser, lambda b: "/messages" in b.current_url, message="messages page after produce")
    row = browser.find_element(By.CSS_SELECTOR, 'tr.record[data-offset="0"]')
    assert row.find_element(By.CSS_SELECTOR, ".key pre").text == "order-1"
    assert row.find_element(By.CSS_SELECTOR, ".value pre").text == '{\n  "item": "tea",\n  "qty": 2\n}'
    assert row.find_element(By.CSS_SELECTOR, ".headers").text == "origin: console"
    screenshot(browser, f"console-{console.kind}-produced")
    Select(browser.find_element(By.NAME, "decode")).select_by_visible_text("hex")
    browser.find_element(By.CSS_SELECTOR, "#browse button").click()
    # the click loads a new page: wait until the old row is gone before reading the new one
    wait_for(browser, _gone(row), message="the page after browse")
    assert browser.find_element(By.CSS_SELECTOR, 'tr.record[data-offset="0"] .key pre').text == (
        "6f 72 64 65 72 2d 31")
    # a value in Confluent's Avro framing is shown decoded, under its schema
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    serialize = AvroSerializer(SchemaRegistryClient({"url": console.registry_url}), '["null", "long"]')
    produce(console.bootstrap, topic, [(b"framed", serialize(7, SerializationContext(topic, MessageField.VALUE)))])
    browser.get(f"{console.url}/topics/{topic}/messages?offset=1")
    value = browser.find_element(By.CSS_SELECTOR, 'tr.record[data-offset="1"] .value')
    assert value.text == f'AVRO schema 1 ({topic}-value v1)\n{{\n  "long": 7\n}}'


def test_key_search_finds_the_right_message(browser: Any, console: Console, topic: str) -> None:
    create_topic(console.bootstrap, topic, 2)
    produce(console.bootstrap, topic, [(f"user-{i}".encode(), f'{{"n": {i}}}'.encode()) for i in range(300)])
    produce(console.bootstrap, topic, [(f"user-{i}".encode(), b"other") for i in range(50)], partition=1)
    browser.get(f"{console.url}/topics/{topic}/search")
    form = browser.find_element(By.ID, "search")
    form.find_element(By.NAME, "text").send_keys("user-137")
    form.find_element(By.TAG_NAME, "button").click()
    wait_for(browser, lambda b: b.find_element(By.ID, "search-status").get_attribute("data-done") == "1",
             message="search to finish")

    def found(b: Any) -> list[tuple[str, str, str]] | None:
        """The rows shown, read in one go; None while the page is still replacing them."""
        try:
            return [(r.get_attribute("data-partition"), r.get_attribute("data-offset"),
                     r.find_element(By.CSS_SELECTOR, ".value pre").text)
                    for r in b.find_elements(By.CSS_SELECTOR, "#records tr.record")]
        except StaleElementReferenceException:
            return None

    rows = wait_for(browser, found, message="the rows to settle")
    assert rows == [("0", "137", '{\n  "n": 137\n}')]
    assert "scanned 350 of 350 record(s)" in text_of(browser, "#search-status")
    screenshot(browser, f"console-{console.kind}-key-search")


def test_lag_moves_as_a_consumer_falls_behind(browser: Any, console: Console, topic: str) -> None:
    group = f"g-{topic}"
    create_topic(console.bootstrap, topic)
    produce(console.bootstrap, topic, [(None, b"x")] * 10)
    commit(console.bootstrap, group, topic, 10)  # caught up
    browser.get(f"{console.url}/groups/{group}")
    assert text_of(browser, "#total-lag") == "0"

    def legend(b: Any) -> str | None:
        found = b.find_elements(By.CSS_SELECTOR, "#lag-chart text.legend")
        return found[0].get_attribute("data-last") if found else None

    wait_for(browser, lambda b: legend(b) == "0", message="lag 0 in the chart")
    produce(console.bootstrap, topic, [(None, b"y")] * 25)  # the consumer does not keep up
    wait_for(browser, lambda b: legend(b) == "25", message="lag 25 in the chart")
    points = browser.find_element(By.CSS_SELECTOR, "#lag-chart polyline").get_attribute("points").split()
    assert len(points) >= 2 and points[0].split(",")[1] != points[-1].split(",")[1]  # the line rose
    screenshot(browser, f"console-{console.kind}-lag")
    browser.refresh()
    assert text_of(browser, "#total-lag") == "25"
    lag_cell = browser.find_element(By.CSS_SELECTOR, f'#group-partitions tr[data-topic="{topic}"] td.lag')
    assert lag_cell.text == "25"


def test_read_only_refuses_a_delete(browser: Any, console: Console, topic: str) -> None:
    create_topic(console.bootstrap, topic)
    with ConsoleServer(create_app(console.bootstrap, read_only=True, sample_interval_ms=60_000)) as ro:
        browser.get(f"{ro.url}/topics/{topic}")
        assert text_of(browser, "#read-only") == "read-only"
        assert 'id="produce"' not in browser.page_source  # (find_elements would wait the implicit wait out)
        browser.find_element(By.CSS_SELECTOR, "#delete-topic button").click()
        wait_for(browser, lambda b: b.switch_to.alert, message="confirm dialog").accept()
        assert text_of(browser, "#error") == f"this console is read-only: deleting topic {topic} refused"
        screenshot(browser, f"console-{console.kind}-read-only")
        browser.get(ro.url + "/")
        assert browser.find_elements(By.CSS_SELECTOR, f'#topics tr[data-topic="{topic}"]')


def test_hollow_diff_shows_the_changed_field(browser: Any, console: Console) -> None:
    v1, v2 = console.versions
    browser.get(console.url + "/hollow")
    assert text_of(browser, "#announced") == str(v2)
    browser.find_element(By.LINK_TEXT, "Diff two versions").click()
    Select(browser.find_element(By.NAME, "from")).select_by_visible_text(str(v1))
    Select(browser.find_element(By.NAME, "to")).select_by_visible_text(str(v2))
    browser.find_element(By.CSS_SELECTOR, "#diff button").click()
    section = browser.find_element(By.CSS_SELECTOR, 'section.type-diff[data-type="Movie"]')
    assert "1 added, 0 removed, 1 changed" in section.find_element(By.TAG_NAME, "h2").text
    change = section.find_element(By.CSS_SELECTOR, "tr.change")
    assert [f.text for f in change.find_elements(By.CSS_SELECTOR, ".field")] == ["year"]
    assert change.find_element(By.TAG_NAME, "del").text == "1978"
    assert change.find_element(By.TAG_NAME, "ins").text == "1979"
    screenshot(browser, f"console-{console.kind}-hollow-diff")
