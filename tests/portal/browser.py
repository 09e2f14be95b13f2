"""Headless Debian Chromium for the portal tests (no browser download: /usr/bin/chromium + chromedriver)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MBDS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MBDS_CHROMEDRIVER", "/usr/bin/chromedriver")
PHONE = (412, 915)  # a phone-sized viewport: the page must be usable there


def missing() -> str | None:
    """Why the browser cannot run here (None when it can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() or shutil.which(path)):
            return f"{path} is not installed (`make setup` installs Debian's chromium and chromium-driver)"
    return None


def chromium(size: tuple[int, int] = PHONE) -> WebDriver:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-extensions", "--disable-sync", "--no-first-run",
                "--password-store=basic", f"--window-size={size[0]},{size[1]}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def artifacts_dir() -> Path:
    """Where screenshots go: $MBDS_TEST_ARTIFACTS or .build/test-artifacts/portal."""
    path = Path(os.environ.get("MBDS_TEST_ARTIFACTS", ROOT / ".build" / "test-artifacts")) / "portal"
    path.mkdir(parents=True, exist_ok=True)
    return path


def full_page_screenshot(driver: WebDriver, path: Path) -> Path:
    """The whole page (the window grows to the document's height for the shot)."""
    width, height = driver.get_window_size()["width"], driver.get_window_size()["height"]
    doc_height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, max(height, int(doc_height) + 120))
    driver.save_screenshot(str(path))
    driver.set_window_size(width, height)
    return path


class Page:
    """One participant's browser tab on its portal."""

    def __init__(self, driver: WebDriver, url: str, timeout: float = 60.0):
        self.d = driver
        self.url = url
        self.timeout = timeout

    def wait(self, predicate, what: str):
        """Until ``predicate()`` is true; a section swapped in by a live update meanwhile is just re-read."""
        return WebDriverWait(self.d, self.timeout, poll_frequency=0.1,
                             ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: predicate(), message=what)

    def open(self) -> None:
        self.d.get(self.url)

    def by_id(self, id_: str):
        return self.d.find_element(By.ID, id_)

    def css(self, selector: str):
        return self.d.find_elements(By.CSS_SELECTOR, selector)

    def text(self, id_: str) -> str:
        """The element's visible text ('' if absent), read in one step (live updates replace sections)."""
        return self.d.execute_script("const e = document.getElementById(arguments[0]); return e ? e.innerText : ''",
                                     id_)

    def texts(self, selector: str) -> list[str]:
        """The visible text of every element matching ``selector``, read in one step."""
        return self.d.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText)", selector)

    def unlock(self, passphrase: str) -> None:
        field = self.by_id("passphrase")
        field.clear()
        field.send_keys(passphrase)
        self.click("unlock")

    def wait_live(self) -> None:
        """Until the page's event stream is connected (live updates flow from then on)."""
        self.wait(lambda: self.d.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "connected",
                  "the live-update stream to connect")

    def mark(self) -> None:
        """A marker in the page's memory: still there later ⇒ the page was not reloaded."""
        self.d.execute_script("window.__mbdsMarker = 'same page'")

    def still_marked(self) -> bool:
        return self.d.execute_script("return window.__mbdsMarker") == "same page"

    def fill(self, id_: str, value: str) -> None:
        field = self.by_id(id_)
        field.clear()
        field.send_keys(value)

    def click(self, id_: str) -> None:
        """Click a form button and wait for the action's page (the POST/redirect/GET) to load."""
        old = self.d.find_element(By.TAG_NAME, "html")
        self.by_id(id_).click()
        self.wait(lambda: _stale(old), f"the page after clicking {id_}")

    def flash(self) -> str:
        return self.text("flash")


def _stale(element) -> bool:
    try:
        element.is_enabled()
    except StaleElementReferenceException:  # the page was replaced
        return True
    return False
