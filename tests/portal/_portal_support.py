"""Portal processes and browser pages for the portal's end-to-end tests."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By

from mbds_py.network import Network
from tests.portal.browser import Page as BrowserPage

DOCTOR = "dr-li"


class PortalProcess:
    """One `mbds portal` process; its log is kept to check what it wrote."""

    def __init__(self, net: Network, name: str, log: Path, *, passphrase_stdin: bool):
        argv = [sys.executable, "-m", "mbds_py.cli", "portal", "--as", name, "--state-dir", str(net.spec.state_dir)]
        if passphrase_stdin:
            argv.append("--passphrase-stdin")
        self.log = log
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("wb"),
                                     text=True)
        if passphrase_stdin:
            self.proc.stdin.write(net.passphrase + "\n")
        self.proc.stdin.close()
        line = self.proc.stdout.readline()  # "MBDS portal for NAME (ROLE) at URL ..." once it listens
        assert " at http://127.0.0.1:" in line, f"portal did not start: {line!r} {log.read_text()}"
        self.url = line.split(" at ", 1)[1].split()[0]

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)
        return self.log.read_text()


class Portals:
    """Starts portal processes for this test (the patient's starts locked; the doctor's is unlocked at start
    from its passphrase on stdin) and remembers them."""

    def __init__(self, net: Network, folder: Path):
        self.net, self.folder = net, folder
        self.started: list[PortalProcess] = []

    def __call__(self, name: str) -> PortalProcess:
        p = PortalProcess(self.net, name, self.folder / f"{name}.log", passphrase_stdin=name == DOCTOR)
        self.started.append(p)
        return p


def _replaced(element) -> bool:
    """True once ``element`` left the document. Chromium says so either as a stale element or, when the node
    is asked about while the new page replaces it, as "Node with given id does not belong to the document"."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


class Page(BrowserPage):
    """:class:`tests.portal.browser.Page` whose clicks also recognise Chromium's other "page replaced" answer."""

    def click(self, id_: str) -> None:
        old = self.d.find_element(By.TAG_NAME, "html")
        self.by_id(id_).click()
        self.wait(lambda: _replaced(old), f"the page after clicking {id_}")


def page(driver, portal: PortalProcess) -> Page:
    """A tab on ``portal`` with no cookie of an earlier session."""
    driver.delete_all_cookies()
    return Page(driver, portal.url)


def unlocked(driver, portal: PortalProcess, passphrase: str) -> Page:
    p = page(driver, portal)
    p.open()
    p.unlock(passphrase)  # a browser must prove the passphrase even to a portal unlocked at start
    p.wait_live()
    return p
