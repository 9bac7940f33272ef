"""loosely.testing.browser drives Debian's real chromium: a page's script runs, and screenshots land as artifacts."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from loosely.testing.browser import chromium, screenshot, wait_for

PAGE = b"""<!doctype html><title>probe</title><p id="out">waiting</p>
<script>setTimeout(() => { document.getElementById('out').textContent = 'ran ' + (6 * 7); }, 50);</script>"""


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def page_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_chromium_runs_the_pages_script_and_saves_a_screenshot(page_url: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOOSELY_TEST_ARTIFACTS", str(tmp_path))
    from selenium.webdriver.common.by import By

    with chromium() as browser:
        browser.get(page_url)
        assert browser.title == "probe"
        text = wait_for(browser, lambda b: b.find_element(By.ID, "out").text.startswith("ran") and
                        b.find_element(By.ID, "out").text, message="script output")
        assert text == "ran 42"
        shot = screenshot(browser, "probe page")
    assert shot == tmp_path / "probe_page.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wait_for_times_out_with_a_screenshot(page_url: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOOSELY_TEST_ARTIFACTS", str(tmp_path))
    with chromium() as browser:
        browser.get(page_url)
        with pytest.raises(AssertionError, match="never"):
            wait_for(browser, lambda b: False, timeout_s=0.3, message="never")
    assert (tmp_path / "timeout-never.png").exists()
