"""The web portal end to end, in headless Chromium, on a live network (chains, replicas, consortium
nodes, storage nodes, three proxies) with two `mbds portal` processes: alice (patient) and dr-li
(doctor).

The issue's journey: the patient approves a request, the doctor reads the record, the patient
revokes, the doctor's next read is refused and the page says why, and the audit trail shows both
reads — with live updates (no reload) — then the bad inputs: a wrong passphrase, two proxies
down, an expired request, the consortium chain down.  Screenshots of both views are saved under
.build/test-artifacts/portal/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mbds_py.demo import record_visit, wait_for_items
from mbds_py.network import Network
from mbds_py.sharing.launch import policy_agent, restart_proxy, start_proxies, stop_proxy
from mbds_py.sharing.policy import RequestState
from tests.helpers import live_network
from tests.portal.browser import Page, artifacts_dir, chromium, full_page_screenshot, missing

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("portal-e2e")]

COUGH_TEXT = "Online consultation: cough for two weeks"
CT_TEXT = "Chest CT: community-acquired pneumonia"
PNEUMONIA = "icd10|J18.9"


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    with live_network(tmp_path_factory.mktemp("portal-e2e")) as network:
        start_proxies(network)
        record_visit(network, "dr-zhao", "alice", ["icd10|R05"], COUGH_TEXT)
        record_visit(network, "dr-li", "alice", [PNEUMONIA, "loinc|24627-2"], CT_TEXT)
        wait_for_items(network, "alice", 2, timeout=90)
        yield network


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


@pytest.fixture(scope="module")
def portals(net, tmp_path_factory):
    logs = tmp_path_factory.mktemp("portal-logs")
    alice = PortalProcess(net, "alice", logs / "alice.log", passphrase_stdin=False)
    li = PortalProcess(net, "dr-li", logs / "dr-li.log", passphrase_stdin=True)
    yield {"alice": alice, "dr-li": li}
    for p in (alice, li):
        if p.proc.poll() is None:
            p.stop()


@pytest.fixture(scope="module")
def browsers():
    reason = missing()
    if reason:
        pytest.fail(reason)
    drivers = [chromium(), chromium()]
    yield drivers
    for d in drivers:
        d.quit()


@pytest.fixture(scope="module")
def patient(portals, browsers) -> Page:
    return Page(browsers[0], portals["alice"].url)


@pytest.fixture(scope="module")
def doctor(portals, browsers) -> Page:
    return Page(browsers[1], portals["dr-li"].url)


def _request_access(doctor: Page, reason: str, *, record: str = "") -> str:
    doctor.fill("ask-patient", "alice")
    doctor.fill("ask-record", record)
    doctor.fill("ask-reason", reason)
    doctor.click("ask-send")
    assert doctor.flash().startswith("Request #"), doctor.flash()
    return doctor.flash().split()[1].lstrip("#")


def _approve_live(patient: Page, request_id: str) -> None:
    patient.wait(lambda: patient.css(f"#approve-{request_id}"), f"request #{request_id} on the patient's page")
    patient.click(f"approve-{request_id}")
    assert patient.flash().startswith(f"Approved request #{request_id} from dr-li"), patient.flash()


def _search_ct(patient: Page, doctor: Page) -> str:
    """The patient issues a trapdoor; the doctor searches with it; returns the matching record ID."""
    patient.fill("trapdoor-keyword", PNEUMONIA)
    patient.click("trapdoor-issue")
    trapdoor = patient.by_id("flash-detail").get_attribute("value")
    assert trapdoor.startswith("0x") and len(trapdoor) > 66
    doctor.fill("search-patient", "alice")
    doctor.fill("search-trapdoors", trapdoor)
    doctor.click("search-go")
    assert doctor.flash().startswith("1 record(s) of alice match"), doctor.flash()
    (row,) = doctor.css("#matches-table tr[data-record]")
    return row.get_attribute("data-record")


# -------------------------------------------------------------------------------------------------


def test_a_wrong_passphrase_is_refused_on_the_page_and_unlocks_nothing(patient):
    patient.open()
    patient.unlock("not the passphrase")
    assert patient.flash() == "Wrong passphrase: the keystore could not be decrypted. Nothing was unlocked; try again."
    assert patient.css("#unlock-form") and not patient.css("#records")
    patient.open()  # still locked: nothing but the unlock form
    assert patient.css("#unlock-form") and not patient.css("#records")


def test_approve_read_revoke_refused_and_the_audit_trail_shows_both_reads(net, patient, doctor):
    patient.open()
    patient.unlock(net.passphrase)
    patient.wait_live()
    rows = {r.get_attribute("data-record"): r.text for r in patient.css("#records-table tr[data-record]")}
    assert len(rows) == 2
    assert any(COUGH_TEXT in t and "platform-c" in t and "ICD-10 R05" in t for t in rows.values())
    ct_row = next(t for t in rows.values() if CT_TEXT in t)
    assert "hospital-a" in ct_row and "ICD-10 J18.9" in ct_row and "LOINC 24627-2" in ct_row
    doctor.open()
    doctor.unlock(net.passphrase)  # a browser must prove the passphrase even to a portal unlocked at start
    doctor.wait_live()

    # the doctor asks; the request appears on the patient's page without a reload
    patient.mark()
    request_id = _request_access(doctor, "Follow-up of the pneumonia")
    assert "awaiting the patient" in doctor.text("my-requests-table")
    patient.wait(lambda: patient.css(f"#approve-{request_id}"), "the request to arrive live")
    assert patient.still_marked()
    assert f"New access request #{request_id} from dr-li." in patient.text("live")

    # the patient approves; the doctor's status changes live
    doctor.mark()
    _approve_live(patient, request_id)
    doctor.wait(lambda: "approved" in doctor.text("my-requests-table"), "the approval to arrive live")
    assert doctor.still_marked()
    assert "dr-li" in patient.text("grants-table") and "all records" in patient.text("grants-table")

    # search with the patient's trapdoor, read through the proxies
    record_id = _search_ct(patient, doctor)
    doctor.click(f"read-{record_id}")
    assert doctor.flash().startswith("Read 1 record(s) of alice"), doctor.flash()
    timeline = doctor.text("timeline-list")
    assert CT_TEXT in timeline and "hospital-a" in timeline
    full_page_screenshot(doctor.d, artifacts_dir() / "doctor-view.png")

    # the patient revokes; the doctor's page learns it live and forgets what it read
    doctor.mark()
    patient.click("revoke-0")
    assert patient.flash().startswith("Revoked dr-li's access (all records)"), patient.flash()
    assert "Nobody may read your records." in patient.text("grants")
    doctor.wait(lambda: "alice revoked an access of yours." in doctor.text("live"), "the revoke to arrive live")
    doctor.wait(lambda: doctor.css("#timeline-empty"), "the revoked record to leave the timeline")
    assert doctor.still_marked()

    # the next read is refused and the page says why
    doctor.click(f"read-{record_id}")
    assert doctor.flash() == ("Refused by the proxies (revoked): the patient revoked your access to this record. "
                              "Nothing was decrypted.")
    assert CT_TEXT not in doctor.text("timeline")

    # the audit trail shows both reads: the one served and the one refused (one line per proxy)
    def trail():
        return patient.texts(f'table[data-record="{record_id}"] tr.read, table[data-record="{record_id}"] tr.refused')
    patient.wait(lambda: any("refused" in t for t in trail()), "the refused read on the audit trail")
    lines = trail()
    assert sum("dr-li" in t and "read by grant" in t for t in lines) == 2
    assert sum("dr-li" in t and "refused" in t and "revoked" in t for t in lines) == 2
    full_page_screenshot(patient.d, artifacts_dir() / "patient-view.png")
    assert (artifacts_dir() / "patient-view.png").stat().st_size > 10_000


def test_the_patient_rejects_a_request_and_the_doctor_sees_it_live(patient, doctor):
    request_id = _request_access(doctor, "Insurance paperwork")
    doctor.mark()
    patient.wait(lambda: patient.css(f"#reject-{request_id}"), "the request on the patient's page")
    patient.fill(f"reject-reason-{request_id}", "not needed for my care")
    patient.click(f"reject-{request_id}")
    assert patient.flash() == f"Rejected request #{request_id}."
    row = f'#my-requests-table tr[data-request="{request_id}"]'
    doctor.wait(lambda: any("rejected" in t for t in doctor.texts(row)), "the rejection to arrive live")
    assert doctor.still_marked()


def test_an_emergency_access_shows_on_the_patients_page_and_her_portal_serves_it(net, patient, doctor):
    """Break-glass: two health authorities approve; alice's online portal issues the key shares itself."""
    patient.mark()
    doctor.fill("emergency-patient", "alice")
    doctor.fill("emergency-minutes", "60")
    doctor.fill("emergency-reason", "unconscious patient in the emergency room")
    doctor.click("emergency-send")
    assert doctor.flash().startswith("Emergency request #"), doctor.flash()
    emergency_id = int(doctor.flash().split()[2].lstrip("#"))
    assert "pending" in doctor.texts(f'#my-emergencies-table tr[data-emergency="{emergency_id}"]')[0]
    doctor.mark()
    policy = policy_agent(net)
    for authority in ("nha", "pha"):  # the health authorities approve (no portal of theirs)
        policy.approve_emergency(net.keys(authority).account, emergency_id)
    doctor.wait(lambda: any("active" in t for t in doctor.texts(f'#my-emergencies-table tr[data-emergency="'
                                                               f'{emergency_id}"]')), "the activation on the doctor's page")
    assert doctor.still_marked()
    row = f'#emergency-table tr[data-emergency="{emergency_id}"]'
    patient.wait(lambda: any("active" in t for t in patient.texts(row)), "the emergency to show live")
    patient.wait(lambda: "key shares for 2 record(s) issued" in patient.text("live"),
                 "the portal to serve the emergency")
    assert "unconscious patient" in patient.texts(row)[0] and patient.still_marked()
    doctor.open()
    record_id = doctor.css("#matches-table tr[data-record]")[0].get_attribute("data-record")
    doctor.click(f"read-{record_id}")
    assert doctor.flash().startswith("Read 1 record(s) of alice"), doctor.flash()
    audit = f'table[data-record="{record_id}"] tr.read'
    patient.wait(lambda: any("by emergency" in t for t in patient.texts(audit)), "the emergency read audited")


def test_the_pages_are_accessible_and_fit_a_phone(patient, doctor):
    for page in (patient, doctor):
        page.open()
        unlabelled = page.d.execute_script("""
            return [...document.querySelectorAll('input:not([type=hidden]), textarea, select')]
              .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.id || e.name);""")
        assert unlabelled == []
        nameless = page.d.execute_script("""
            return [...document.querySelectorAll('button')].filter(b => !b.textContent.trim()).length;""")
        assert nameless == 0
        assert page.d.execute_script("return document.documentElement.lang") == "en"
        assert page.css("#live[aria-live=polite]") and page.css("main#main") and page.css("nav[aria-label]")
        overflow = page.d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow}px wider than a phone screen"


def test_the_unlock_form_works_from_the_keyboard(net, portals, browsers):
    """A fresh browser: the passphrase typed and Enter pressed, no mouse."""
    from selenium.webdriver.common.keys import Keys

    page = Page(browsers[0], portals["alice"].url)
    page.d.delete_all_cookies()
    page.open()
    page.by_id("passphrase").send_keys(net.passphrase + Keys.ENTER)
    page.wait(lambda: page.css("#records"), "the unlocked page")


def test_receipt_check_verifies_the_inclusion_proof_against_the_anchored_root(patient):
    patient.open()
    (row,) = [r for r in patient.css("#records-table tr[data-record]") if "platform-c" in r.text]
    patient.click("receipt-" + row.get_attribute("data-record"))
    text = patient.flash()
    assert text.startswith("Receipt verified: record 0x") and "of platform-c" in text
    assert "is the one SlipLedger anchored at that height" in text


def test_two_proxies_down_the_read_fails_clearly_and_changes_nothing(net, patient, doctor):
    request_id = _request_access(doctor, "Second opinion", record="")
    _approve_live(patient, request_id)
    record_id = _search_ct(patient, doctor)
    doctor.click(f"read-{record_id}")
    assert CT_TEXT in doctor.text("timeline-list")
    stop_proxy(net, "nha")
    stop_proxy(net, "pha")
    try:
        doctor.click(f"read-{record_id}")
        assert doctor.flash().startswith("Too few re-encryption proxies answered"), doctor.flash()
        assert "Nothing was decrypted or changed" in doctor.flash()
        assert CT_TEXT in doctor.text("timeline-list")  # what was read before is still there
    finally:
        restart_proxy(net, "nha")
        restart_proxy(net, "pha")
    doctor.click(f"read-{record_id}")
    assert doctor.flash().startswith("Read 1 record(s) of alice"), doctor.flash()


def test_an_expired_request_cannot_be_approved_and_nothing_changes(net, patient, doctor):
    request_id = _request_access(doctor, "Old question")
    patient.wait(lambda: patient.css(f"#approve-{request_id}"), "the request on the patient's page")
    w3 = net.client(net.spec.consortium.name).w3
    w3.provider.make_request("evm_increaseTime", [net.dpos.request_ttl + 60])
    w3.provider.make_request("evm_mine", [])
    patient.click(f"approve-{request_id}")
    assert patient.flash() == (f"Request #{request_id} has expired, so it can no longer be approved or rejected. "
                               "Nothing changed; the doctor can send a new request.")
    assert not patient.css(f"#approve-{request_id}")  # no longer awaiting a decision
    assert policy_agent(net).request_state(int(request_id)) is RequestState.EXPIRED  # not approved
    doctor.open()
    row = doctor.css(f'#my-requests-table tr[data-request="{request_id}"]')[0]
    assert "expired" in row.text


def test_a_chain_that_is_down_is_named_on_the_page_and_nothing_changes(net, patient, doctor):
    state = net.devnet.load_state()[net.spec.consortium.name]
    os.kill(state.pid, signal.SIGKILL)  # the consortium chain goes away (the last test of the module)
    doctor.open()
    doctor.fill("ask-patient", "alice")
    doctor.fill("ask-reason", "Anyone there?")
    doctor.click("ask-send")
    assert "did not answer" in doctor.flash() and "Nothing changed" in doctor.flash(), doctor.flash()
    patient.open()
    assert "Could not load this section." in patient.text("requests")
    assert patient.css("#trapdoor-keyword")  # the page still renders and can be used


def test_the_portals_write_no_secret_and_no_record_data(net, portals):
    for name, p in portals.items():
        log = p.stop()
        assert net.passphrase not in log
        for text in (COUGH_TEXT, CT_TEXT, "pneumonia"):
            assert text not in log, f"{name}'s log holds record data"
        assert p.proc.returncode == 0
