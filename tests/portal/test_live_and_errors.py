"""Portal core without a network: which events change which sections, and the sentences errors become."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mbds_py.errors import ChainError, ContractRevert, KeystoreError
from mbds_py.portal.app import DOCTOR, PATIENT, PortalError, explain, parse_id
from mbds_py.portal.live import Broadcaster, affected
from mbds_py.sharing.clients import ThresholdNotMet
from mbds_py.sharing.policy import RequestState
from mbds_py.sharing.proxy import ProxyRefused, Refusal

ALICE, BOB, LI = b"\xa1" * 32, b"\xb0" * 32, b"\x11" * 32
NAMES = {ALICE: "alice", BOB: "bob", LI: "dr-li"}


def label(pid: bytes) -> str:
    return NAMES[pid]


def test_a_request_to_the_patient_refreshes_her_requests_and_names_the_doctor():
    u = affected("AccessRequested", {"requestId": 7, "patient": ALICE, "requester": LI}, ALICE, PATIENT, label)
    assert u.sections == ("requests",)
    assert u.message == "New access request #7 from dr-li."


def test_an_event_of_another_patient_changes_nothing():
    assert affected("AccessRequested", {"requestId": 7, "patient": BOB, "requester": LI}, ALICE, PATIENT, label) is None


def test_the_doctor_sees_the_approval_and_the_revoke_of_his_own_access():
    approved = affected("AccessRequestApproved", {"requestId": 7, "patient": ALICE, "requester": LI}, LI, DOCTOR, label)
    assert (approved.sections, approved.message, approved.counterpart) == (
        ("requests",), "alice approved request #7.", ALICE)
    revoked = affected("AllAccessRevoked", {"patient": ALICE, "grantee": LI, "grants": 1, "epoch": 2}, LI, DOCTOR, label)
    assert revoked.sections == ("timeline",)
    assert revoked.message == "alice revoked all your access."


def test_a_read_and_a_refusal_refresh_the_patients_audit_trail_only():
    for event in ("AccessRecorded", "AccessDenied"):
        args = {"patient": ALICE, "grantee": LI, "recordId": b"\x01" * 32}
        assert affected(event, args, ALICE, PATIENT, label).sections == ("audit",)
        assert affected(event, args, LI, DOCTOR, label) is None


def test_a_new_consortium_item_refreshes_the_patients_records():
    u = affected("PatientIndexed", {"patientId": ALICE, "height": 4}, ALICE, PATIENT, label)
    assert u.sections == ("records",)


def test_the_doctor_follows_his_own_emergency_request():
    args = {"emergencyId": 3, "patient": ALICE, "grantee": LI, "activatedAt": 1, "expiresAt": 2}
    u = affected("EmergencyAccessActivated", args, LI, DOCTOR, label)
    assert (u.sections, u.message) == (("break-glass",), "Your emergency access to alice's records is active.")
    p = affected("EmergencyAccessActivated", args, ALICE, PATIENT, label)
    assert (p.sections, p.message) == (("emergency",), "Emergency access of dr-li is active.")


def test_unknown_events_are_ignored():
    assert affected("ProxyAdded", {"proxy": "0x0", "authority": ALICE}, ALICE, PATIENT, label) is None


def test_broadcaster_delivers_to_every_subscriber_until_unsubscribed():
    u = affected("PatientIndexed", {"patientId": ALICE, "height": 1}, ALICE, PATIENT, label)

    async def scenario() -> None:
        b = Broadcaster()
        q1, q2 = b.subscribe(), b.subscribe()
        publisher = threading.Thread(target=b.publish, args=(u,))  # as the chain watcher does, from its thread
        publisher.start()
        publisher.join()
        assert await asyncio.wait_for(q1.get(), 10) is u and await asyncio.wait_for(q2.get(), 10) is u
        b.unsubscribe(q2)
        b.close()
        assert await asyncio.wait_for(q1.get(), 10) is None and q2.empty()

    asyncio.run(scenario())


@pytest.mark.parametrize("exc, words", [
    (KeystoreError("x: wrong passphrase"), ["Wrong passphrase", "Nothing was unlocked"]),
    (ProxyRefused(Refusal.REVOKED, proxy="nha"), ["Refused by the proxies (revoked)", "revoked your access",
                                                  "Nothing was decrypted"]),
    (ThresholdNotMet("only 1 of 3 proxies answer; 2 are needed"), ["Too few re-encryption proxies", "1 of 3",
                                                                   "try again"]),
    (ContractRevert("AccessPolicy", "AccessPolicyUnexpectedRequestState",
                    (4, int(RequestState.EXPIRED), int(RequestState.REQUESTED))),
     ["Request #4 has expired", "Nothing changed", "new request"]),
    (ContractRevert("AccessPolicy", "AccessPolicyUnexpectedRequestState",
                    (4, int(RequestState.APPROVED), int(RequestState.REQUESTED))), ["already approved"]),
    (ChainError("connection refused"), ["did not answer", "Nothing changed", "network is running"]),
])
def test_errors_become_sentences_that_say_what_failed_and_that_nothing_changed(exc, words):
    text = explain(exc)
    for w in words:
        assert w in text, (w, text)


def test_parse_id_names_the_field_and_the_expected_form():
    assert parse_id("0x" + "ab" * 32, "record ID") == b"\xab" * 32
    with pytest.raises(PortalError, match="record ID must be 0x followed by 64 hex digits"):
        parse_id("0xzz", "record ID")
    with pytest.raises(PortalError, match="record ID must be 32 bytes"):
        parse_id("0xabcd", "record ID")
