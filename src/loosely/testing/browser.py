"""A real headless browser for tests that check what a person sees: Debian's ``chromium`` driven by Selenium.

No browser can be downloaded on the machines loosely is tested on, so Selenium's own driver manager is bypassed:
the browser is ``/usr/bin/chromium`` and the driver ``/usr/bin/chromedriver`` (Debian's ``chromium`` and
``chromium-driver`` packages, installed by ``scripts/bootstrap --dev``), or the paths in ``LOOSELY_CHROMIUM`` and
``LOOSELY_CHROMEDRIVER``.

Screenshots are test artifacts: :func:`screenshot` writes ``<name>.png`` under ``LOOSELY_TEST_ARTIFACTS`` (default
``build/test-artifacts``, relative to the working directory) and returns the path, so a failing page can be looked
at after the run.

>>> from loosely.testing.browser import chromium, screenshot     # doctest: +SKIP
>>> with chromium() as browser:                                  # doctest: +SKIP
...     browser.get("http://127.0.0.1:8080/")
...     path = screenshot(browser, "home")
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

__all__ = ["BrowserMissing", "artifacts_dir", "chromium", "screenshot", "wait_for"]

DEFAULT_WAIT_S: Final = 10.0
_WINDOW: Final = "1280,900"


class BrowserMissing(RuntimeError):
    """Chromium or its driver is not installed (``scripts/bootstrap --dev`` installs both)."""


def _executable(env: str, default: str) -> str:
    path = os.environ.get(env) or shutil.which(Path(default).name) or default
    if not Path(path).exists():
        raise BrowserMissing(f"{path} not found (set {env}, or run scripts/bootstrap --dev)")
    return path


@contextlib.contextmanager
def chromium(*, wait_s: float = DEFAULT_WAIT_S) -> Iterator[Any]:
    """A headless Chromium (a Selenium ``WebDriver``), closed on exit, with its own throwaway profile.

    ``wait_s`` is the implicit wait for ``find_element``: elements that appear after a page's scripts run are
    waited for, up to that long, instead of slept for.
    """
    # selenium is a test dependency (the `dev` extra), not loosely's: imported only when a browser is asked for.
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = _executable("LOOSELY_CHROMIUM", "/usr/bin/chromium")
    profile = tempfile.mkdtemp(prefix="loosely-chromium-")
    # --no-sandbox: CI runs as root, where Chromium refuses its sandbox. The pages are the test's own, on loopback.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={_WINDOW}", f"--user-data-dir={profile}", "--no-first-run",
                 "--disable-extensions", "--disable-background-networking"):
        options.add_argument(flag)
    service = Service(executable_path=_executable("LOOSELY_CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.implicitly_wait(wait_s)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def artifacts_dir() -> Path:
    """Where screenshots go: ``LOOSELY_TEST_ARTIFACTS`` or ``build/test-artifacts``, created on demand."""
    path = Path(os.environ.get("LOOSELY_TEST_ARTIFACTS", "build/test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def screenshot(driver: Any, name: str) -> Path:
    """Saves what the browser shows as ``<artifacts>/<name>.png`` (name made file-safe) and returns the path."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    path = artifacts_dir() / f"{safe}.png"
    driver.save_screenshot(str(path))
    return path


def wait_for(driver: Any, condition: Callable[[Any], Any], *, timeout_s: float = DEFAULT_WAIT_S,
             message: str = "") -> Any:
    """Waits until ``condition(driver)`` is truthy and returns it; on timeout, saves a screenshot and raises. A
    condition that reads an element the page replaces meanwhile (stale) is asked again, not failed."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    try:
        return WebDriverWait(driver, timeout_s, ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except TimeoutException:
        shot = screenshot(driver, f"timeout-{message or 'wait'}")
        raise AssertionError(f"waited {timeout_s:g} s for {message or condition!r}; page saved to {shot}") from None
