"""The web portal end to end, in headless Chromium, on a live network (chains, replicas, consortium
nodes, storage nodes, three proxies) with `mbds portal` processes for a patient and for dr-li (doctor).

The issue's journey: the patient approves a request, the doctor reads the record, the patient
revokes, the doctor's next read is refused and the page says why, and the audit trail shows both
reads — with live updates (no reload) — then the bad inputs: a wrong passphrase, two proxies
down, an expired request (the consortium chain down has a network of its own:
test_portal_chain_down.py).  Screenshots of both views are saved under .build/test-artifacts/portal/.

One network for the module; no test depends on another: each starts its own portal processes (fresh
sessions) and works on a patient of its own (`pt-…`, extra members of the population) whose records it
writes itself, so the requests, grants, revocations and emergencies it makes are nobody else's.  Requests
expire after REQUEST_TTL seconds of chain time, so the expired-request test waits for the chain clock
instead of moving it (a jump would change every other test's chain).
"""

from __future__ import annotations

import time

import pytest

from mbds_py.deploy import DposParams
from mbds_py.demo import record_visit, wait_for_items
from mbds_py.identity import Role
from mbds_py.network import Network
from mbds_py.population import DEFAULT_POPULATION
from mbds_py.sharing.launch import policy_agent, restart_proxy, start_proxies, stop_proxy
from mbds_py.sharing.policy import RequestState
from tests.helpers import live_network_of, members_for
from tests.portal._portal_support import DOCTOR, Page, Portals, page, unlocked
from tests.portal.browser import artifacts_dir, chromium, full_page_screenshot, missing

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("portal-e2e")]

COUGH_TEXT = "Online consultation: cough for two weeks"
CT_TEXT = "Chest CT: community-acquired pneumonia"
PNEUMONIA = "icd10|J18.9"
PATIENTS = ("pt-approve", "pt-reject", "pt-emergency", "pt-a11y", "pt-receipt", "pt-proxies", "pt-expired",
            "pt-secrets")
REQUEST_TTL = 60  # seconds of chain time a request waits for the patient


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    population = DEFAULT_POPULATION + members_for(PATIENTS, Role.PATIENT)
    with live_network_of(tmp_path_factory.mktemp("portal-e2e"), population,
                         dpos=DposParams(request_ttl=REQUEST_TTL)) as network:
        start_proxies(network)
        yield network


def write_records(net: Network, patient: str) -> None:
    """dr-zhao's online consultation (platform-c) and dr-li's chest CT (hospital-a), indexed on the consortium."""
    record_visit(net, "dr-zhao", patient, ["icd10|R05"], COUGH_TEXT)
    record_visit(net, "dr-li", patient, [PNEUMONIA, "loinc|24627-2"], CT_TEXT)
    wait_for_items(net, patient, 2, timeout=90)


@pytest.fixture()
def start_portal(net, tmp_path):
    """Factory of this test's portal processes, all stopped after it."""
    portals = Portals(net, tmp_path)
    yield portals
    for p in portals.started:
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


@pytest.fixture()
def pages(net, start_portal, browsers):
    """Factory: unlocked pages of ``patient``'s portal and of dr-li's, each on a portal process of this test."""

    def make(patient: str) -> tuple[Page, Page]:
        return (unlocked(browsers[0], start_portal(patient), net.passphrase),
                unlocked(browsers[1], start_portal(DOCTOR), net.passphrase))

    return make


def _request_access(doctor: Page, patient: str, reason: str, *, record: str = "") -> str:
    doctor.fill("ask-patient", patient)
    doctor.fill("ask-record", record)
    doctor.fill("ask-reason", reason)
    doctor.click("ask-send")
    assert doctor.flash().startswith("Request #"), doctor.flash()
    return doctor.flash().split()[1].lstrip("#")


def _approve_live(patient: Page, request_id: str) -> None:
    patient.wait(lambda: patient.css(f"#approve-{request_id}"), f"request #{request_id} on the patient's page")
    patient.click(f"approve-{request_id}")
    assert patient.flash().startswith(f"Approved request #{request_id} from {DOCTOR}"), patient.flash()


def _search_ct(patient: Page, doctor: Page, name: str) -> str:
    """The patient issues the doctor a search ticket; the doctor searches with it; returns the matching record ID."""
    patient.fill("trapdoor-doctor", DOCTOR)
    patient.fill("trapdoor-keyword", PNEUMONIA)
    patient.click("trapdoor-issue")
    ticket = patient.by_id("flash-detail").get_attribute("value")
    assert ticket.startswith("mbds-search-ticket:") and len(ticket) > 200
    doctor.fill("search-patient", name)
    doctor.fill("search-trapdoors", ticket)
    doctor.click("search-go")
    assert doctor.flash().startswith(f"1 record(s) of {name} match"), doctor.flash()
    (row,) = doctor.css("#matches-table tr[data-record]")
    return row.get_attribute("data-record")


def _granted_read(patient: Page, doctor: Page, name: str) -> str:
    """The doctor asks, the patient approves, the doctor finds the CT record and reads it; its record ID."""
    request_id = _request_access(doctor, name, "Follow-up of the pneumonia")
    _approve_live(patient, request_id)
    record_id = _search_ct(patient, doctor, name)
    doctor.click(f"read-{record_id}")
    assert doctor.flash().startswith(f"Read 1 record(s) of {name}"), doctor.flash()
    assert CT_TEXT in doctor.text("timeline-list")
    return record_id


# -------------------------------------------------------------------------------------------------


def test_a_wrong_passphrase_is_refused_on_the_page_and_unlocks_nothing(start_portal, browsers):
    patient = page(browsers[0], start_portal("alice"))
    patient.open()
    patient.unlock("not the passphrase")
    assert patient.flash() == "Wrong passphrase: the keystore could not be decrypted. Nothing was unlocked; try again."
    assert patient.css("#unlock-form") and not patient.css("#records")
    patient.open()  # still locked: nothing but the unlock form
    assert patient.css("#unlock-form") and not patient.css("#records")


def test_approve_read_revoke_refused_and_the_audit_trail_shows_both_reads(net, pages):
    name = "pt-approve"
    write_records(net, name)
    patient, doctor = pages(name)
    rows = {r.get_attribute("data-record"): r.text for r in patient.css("#records-table tr[data-record]")}
    assert len(rows) == 2
    assert any(COUGH_TEXT in t and "platform-c" in t and "ICD-10 R05" in t for t in rows.values())
    ct_row = next(t for t in rows.values() if CT_TEXT in t)
    assert "hospital-a" in ct_row and "ICD-10 J18.9" in ct_row and "LOINC 24627-2" in ct_row

    # the doctor asks; the request appears on the patient's page without a reload
    patient.mark()
    request_id = _request_access(doctor, name, "Follow-up of the pneumonia")
    assert "awaiting the patient" in doctor.text("my-requests-table")
    patient.wait(lambda: patient.css(f"#approve-{request_id}"), "the request to arrive live")
    assert patient.still_marked()
    assert f"New access request #{request_id} from {DOCTOR}." in patient.text("live")

    # the patient approves; the doctor's status changes live
    doctor.mark()
    _approve_live(patient, request_id)
    doctor.wait(lambda: "approved" in doctor.text("my-requests-table"), "the approval to arrive live")
    assert doctor.still_marked()
    assert DOCTOR in patient.text("grants-table") and "all records" in patient.text("grants-table")

    # search with the patient's trapdoor, read through the proxies
    record_id = _search_ct(patient, doctor, name)
    doctor.click(f"read-{record_id}")
    assert doctor.flash().startswith(f"Read 1 record(s) of {name}"), doctor.flash()
    timeline = doctor.text("timeline-list")
    assert CT_TEXT in timeline and "hospital-a" in timeline
    full_page_screenshot(doctor.d, artifacts_dir() / "doctor-view.png")

    # the patient revokes; the doctor's page learns it live and forgets what it read
    doctor.mark()
    patient.click("revoke-0")
    assert patient.flash().startswith(f"Revoked {DOCTOR}'s access (all records)"), patient.flash()
    assert "Nobody may read your records." in patient.text("grants")
    doctor.wait(lambda: f"{name} revoked an access of yours." in doctor.text("live"), "the revoke to arrive live")
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
    def counts(lines: list[str]) -> tuple[int, int]:
        return (sum(DOCTOR in t and "read by grant" in t for t in lines),
                sum(DOCTOR in t and "refused" in t and "revoked" in t for t in lines))

    # each proxy audits in a transaction of its own: wait for all four lines, not for the first refusal
    patient.wait(lambda: min(counts(trail())) >= 2, "both proxies' reads and refusals on the audit trail")
    assert counts(trail()) == (2, 2)
    full_page_screenshot(patient.d, artifacts_dir() / "patient-view.png")
    assert (artifacts_dir() / "patient-view.png").stat().st_size > 10_000


def test_the_patient_rejects_a_request_and_the_doctor_sees_it_live(pages):
    name = "pt-reject"
    patient, doctor = pages(name)
    request_id = _request_access(doctor, name, "Insurance paperwork")
    doctor.mark()
    patient.wait(lambda: patient.css(f"#reject-{request_id}"), "the request on the patient's page")
    patient.fill(f"reject-reason-{request_id}", "not needed for my care")
    patient.click(f"reject-{request_id}")
    assert patient.flash() == f"Rejected request #{request_id}."
    row = f'#my-requests-table tr[data-request="{request_id}"]'
    doctor.wait(lambda: any("rejected" in t for t in doctor.texts(row)), "the rejection to arrive live")
    assert doctor.still_marked()


def test_an_emergency_access_shows_on_the_patients_page_and_her_portal_serves_it(net, pages):
    """Break-glass: two health authorities approve; the patient's online portal issues the key shares itself."""
    name = "pt-emergency"
    write_records(net, name)
    patient, doctor = pages(name)
    patient.mark()
    doctor.fill("emergency-patient", name)
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
    mine = f'#my-emergencies-table tr[data-emergency="{emergency_id}"]'
    doctor.wait(lambda: any("active" in t for t in doctor.texts(mine)), "the activation on the doctor's page")
    assert doctor.still_marked()
    row = f'#emergency-table tr[data-emergency="{emergency_id}"]'
    patient.wait(lambda: any("active" in t for t in patient.texts(row)), "the emergency to show live")
    patient.wait(lambda: "key shares for 2 record(s) issued" in patient.text("live"),
                 "the portal to serve the emergency")
    assert "unconscious patient" in patient.texts(row)[0] and patient.still_marked()
    record_id = _search_ct(patient, doctor, name)  # no grant: the emergency is what lets him read
    doctor.click(f"read-{record_id}")
    assert doctor.flash().startswith(f"Read 1 record(s) of {name}"), doctor.flash()
    audit = f'table[data-record="{record_id}"] tr.read'
    patient.wait(lambda: any("by emergency" in t for t in patient.texts(audit)), "the emergency read audited")
    assert not any("by grant" in t for t in patient.texts(audit))


def test_the_pages_are_accessible_and_fit_a_phone(net, pages):
    name = "pt-a11y"
    write_records(net, name)
    patient, doctor = pages(name)
    _approve_live(patient, _request_access(doctor, name, "Accessibility check"))  # a search needs a grant
    _search_ct(patient, doctor, name)  # the doctor's page with a search result table too
    for p in (patient, doctor):
        p.open()
        unlabelled = p.d.execute_script("""
            return [...document.querySelectorAll('input:not([type=hidden]), textarea, select')]
              .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.id || e.name);""")
        assert unlabelled == []
        nameless = p.d.execute_script("""
            return [...document.querySelectorAll('button')].filter(b => !b.textContent.trim()).length;""")
        assert nameless == 0
        assert p.d.execute_script("return document.documentElement.lang") == "en"
        assert p.css("#live[aria-live=polite]") and p.css("main#main") and p.css("nav[aria-label]")
        overflow = p.d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow}px wider than a phone screen"
    assert patient.css("#records-table tr[data-record]") and doctor.css("#matches-table tr[data-record]")


def test_the_unlock_form_works_from_the_keyboard(net, start_portal, browsers):
    """A fresh browser session: the passphrase typed and Enter pressed, no mouse."""
    from selenium.webdriver.common.keys import Keys

    p = page(browsers[0], start_portal("alice"))
    p.open()
    assert p.css("#unlock-form") and not p.css("#records")
    p.by_id("passphrase").send_keys(net.passphrase + Keys.ENTER)
    p.wait(lambda: p.css("#records"), "the unlocked page")


def test_receipt_check_verifies_the_inclusion_proof_against_the_anchored_root(net, start_portal, browsers):
    name = "pt-receipt"
    record_visit(net, "dr-zhao", name, ["icd10|R05"], COUGH_TEXT)
    wait_for_items(net, name, 1, timeout=90)
    patient = unlocked(browsers[0], start_portal(name), net.passphrase)
    (row,) = [r for r in patient.css("#records-table tr[data-record]") if "platform-c" in r.text]
    patient.click("receipt-" + row.get_attribute("data-record"))
    text = patient.flash()
    assert text.startswith("Receipt verified: record 0x") and "of platform-c" in text
    assert "is the one SlipLedger anchored at that height" in text


def test_two_proxies_down_the_read_fails_clearly_and_changes_nothing(net, pages):
    name = "pt-proxies"
    write_records(net, name)
    patient, doctor = pages(name)
    record_id = _granted_read(patient, doctor, name)
    assert stop_proxy(net, "nha") and stop_proxy(net, "pha")
    try:
        doctor.click(f"read-{record_id}")
        assert doctor.flash().startswith("Too few re-encryption proxies answered"), doctor.flash()
        assert "Nothing was decrypted or changed" in doctor.flash()
        assert CT_TEXT in doctor.text("timeline-list")  # what was read before is still there
    finally:
        restart_proxy(net, "nha")
        restart_proxy(net, "pha")
    doctor.click(f"read-{record_id}")
    assert doctor.flash().startswith(f"Read 1 record(s) of {name}"), doctor.flash()


def test_an_expired_request_cannot_be_approved_and_nothing_changes(net, pages):
    name = "pt-expired"
    patient, doctor = pages(name)
    request_id = _request_access(doctor, name, "Old question")
    patient.wait(lambda: patient.css(f"#approve-{request_id}"), "the request on the patient's page")
    policy = policy_agent(net)
    deadline = policy.request(int(request_id)).deadline
    assert deadline - policy.now() <= REQUEST_TTL
    # blocks at wall-clock time until the chain's clock passes the request's deadline (no time jump)
    w3 = net.client(net.spec.consortium.name).w3
    give_up = time.monotonic() + REQUEST_TTL + 60
    while policy.now() < deadline:
        assert time.monotonic() < give_up, "the consortium chain clock did not pass the request's deadline"
        time.sleep(0.5)
        w3.provider.make_request("evm_mine", [])
    patient.click(f"approve-{request_id}")
    assert patient.flash() == (f"Request #{request_id} has expired, so it can no longer be approved or rejected. "
                               "Nothing changed; the doctor can send a new request.")
    assert not patient.css(f"#approve-{request_id}")  # no longer awaiting a decision
    assert policy.request_state(int(request_id)) is RequestState.EXPIRED  # not approved
    doctor.open()
    row = doctor.css(f'#my-requests-table tr[data-request="{request_id}"]')[0]
    assert "expired" in row.text


def test_the_portals_write_no_secret_and_no_record_data(net, pages, start_portal):
    """Both portals unlock, share and read a record; then their logs hold neither the passphrase nor record data."""
    name = "pt-secrets"
    write_records(net, name)
    patient, doctor = pages(name)
    _granted_read(patient, doctor, name)
    for p in (patient, doctor):
        p.open()
    logs = {}
    for proc in start_portal.started:
        logs[proc.log.stem] = proc.stop()
        assert proc.proc.returncode == 0, proc.log.stem
    assert set(logs) == {name, DOCTOR}
    for who, log in logs.items():
        assert net.passphrase not in log
        for text in (COUGH_TEXT, CT_TEXT, "pneumonia"):
            assert text not in log, f"{who}'s log holds record data"
