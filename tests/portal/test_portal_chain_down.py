"""The portal when the consortium chain goes away, in headless Chromium: the page names it and nothing changes.

Killing the chain cannot be undone, so this test has a network of its own (the other portal tests share one in
test_portal_e2e.py).
"""

from __future__ import annotations

import os
import signal

import pytest

from mbds_py.sharing.launch import start_proxies
from tests.helpers import live_network
from tests.portal.browser import chromium, missing
from tests.portal._portal_support import DOCTOR, Portals, unlocked

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("portal-chain-down")]


def test_a_chain_that_is_down_is_named_on_the_page_and_nothing_changes(tmp_path):
    reason = missing()
    if reason:
        pytest.fail(reason)
    with live_network(tmp_path / "net") as net:
        start_proxies(net)
        portals = Portals(net, tmp_path)
        drivers = [chromium(), chromium()]
        try:
            patient = unlocked(drivers[0], portals("alice"), net.passphrase)
            doctor = unlocked(drivers[1], portals(DOCTOR), net.passphrase)
            assert "Could not load this section." not in patient.text("requests")  # the chain answers now

            state = net.devnet.load_state()[net.spec.consortium.name]
            os.kill(state.pid, signal.SIGKILL)  # the consortium chain goes away
            doctor.open()
            doctor.fill("ask-patient", "alice")
            doctor.fill("ask-reason", "Anyone there?")
            doctor.click("ask-send")
            assert "did not answer" in doctor.flash() and "Nothing changed" in doctor.flash(), doctor.flash()
            patient.open()
            assert "Could not load this section." in patient.text("requests")
            assert patient.css("#trapdoor-keyword")  # the page still renders and can be used
        finally:
            for d in drivers:
                d.quit()
            for p in portals.started:
                if p.proc.poll() is None:
                    p.stop()
