"""AccessPolicy through Ape (`ape test tests/ape`): patient grants, requests, emergency access, proxy audit.

A hospital, one of its doctors and a patient in a fresh IdentityRegistry; the policy's proxy is appointed
through the governor; emergency access needs two of the three health authorities.  The full suites are
tests/sharing/test_access_policy.py and foundry/test.
"""

import pytest

from _support import DAY, DOCTOR, HOSPITAL, PATIENT, PEKS_KEY, PRE_KEY, ZERO32, call, govern, pid, reverts

HOUR = 3600
READ, WRITE = 1, 2
ALL, RECORD = 0, 1  # Scope
OK, GRANT_BASIS, EMERGENCY_BASIS = 0, 1, 3  # AccessReason.Ok, Basis.Grant, Basis.Emergency
APPROVED, ACTIVE = 2, 2  # RequestState.Approved, EmergencyState.Active
REC = b"\x7e" * 32
PATIENT_ID, DOCTOR_ID = pid("patient"), pid("doctor")


@pytest.fixture(scope="module")
def people(identity, kmc, accounts):
    """hospital, doctor (of the hospital), patient"""
    identity.register(pid("hospital"), accounts[4], HOSPITAL, ZERO32, PRE_KEY, PEKS_KEY, sender=kmc)
    identity.register(DOCTOR_ID, accounts[5], DOCTOR, pid("hospital"), PRE_KEY, PEKS_KEY, sender=kmc)
    identity.register(PATIENT_ID, accounts[6], PATIENT, ZERO32, PRE_KEY, PEKS_KEY, sender=kmc)
    return accounts[4], accounts[5], accounts[6]


@pytest.fixture(scope="module")
def proxy(accounts):
    return accounts[7]


@pytest.fixture(scope="module")
def policy(project, identity, governor, kmc, authorities, people, proxy, chain):
    contract = project.AccessPolicy.deploy(identity, DAY, HOUR, DAY, 2, sender=kmc)
    govern(governor, authorities, [call(contract, "addProxy", proxy)], chain)
    return contract


def later(chain, seconds=10 * DAY):
    return chain.pending_timestamp + seconds


def test_a_grant_allows_the_read_and_the_proxy_records_it(policy, people, proxy, chain):
    _, doctor, patient = people
    policy.grant(DOCTOR_ID, RECORD, REC, READ, 0, later(chain), sender=patient)
    allowed, reason, epoch = policy.checkAccess(PATIENT_ID, DOCTOR_ID, REC, ZERO32, READ)
    assert allowed and reason == OK
    tx = policy.recordAccess(PATIENT_ID, DOCTOR_ID, REC, ZERO32, READ, epoch, sender=proxy)
    assert tx.events[0].event_name == "AccessRecorded" and tx.events[0].basis == GRANT_BASIS
    assert not policy.checkAccess(PATIENT_ID, DOCTOR_ID, REC, ZERO32, WRITE)[0]  # read only


def test_a_revoked_grant_is_denied_to_the_proxy(policy, people, proxy, chain):
    _, _, patient = people
    policy.grant(DOCTOR_ID, RECORD, REC, READ, 0, later(chain), sender=patient)
    policy.revoke(DOCTOR_ID, RECORD, REC, sender=patient)
    allowed, reason, epoch = policy.checkAccess(PATIENT_ID, DOCTOR_ID, REC, ZERO32, READ)
    assert not allowed
    with reverts(policy.AccessPolicyAccessDenied, patient=PATIENT_ID, grantee=DOCTOR_ID, recordId=REC,
                 action=READ, reason=reason):
        policy.recordAccess(PATIENT_ID, DOCTOR_ID, REC, ZERO32, READ, epoch, sender=proxy)


def test_a_request_approved_by_the_patient_becomes_a_grant(policy, people, chain):
    _, doctor, patient = people
    tx = policy.requestAccess(PATIENT_ID, ALL, ZERO32, READ, 0, later(chain), "consultation", sender=doctor)
    request_id = tx.events[0].requestId
    policy.approveRequest(request_id, sender=patient)
    assert policy.requestState(request_id) == APPROVED
    assert policy.checkAccess(PATIENT_ID, DOCTOR_ID, REC, ZERO32, READ)[0]


def test_two_authorities_activate_emergency_access(policy, people, authorities):
    _, doctor, _ = people
    tx = policy.requestEmergencyAccess(PATIENT_ID, HOUR, "unconscious patient", sender=doctor)
    emergency_id = tx.events[0].emergencyId
    policy.approveEmergencyAccess(emergency_id, sender=authorities[0])
    assert not policy.checkAccess(PATIENT_ID, DOCTOR_ID, REC, ZERO32, READ)[0]
    policy.approveEmergencyAccess(emergency_id, sender=authorities[1])
    assert policy.emergencyState(emergency_id) == ACTIVE
    assert policy.checkAccess(PATIENT_ID, DOCTOR_ID, REC, ZERO32, READ)[0]


def test_only_the_patient_grants(policy, people, chain):
    _, doctor, _ = people
    with reverts(policy.AccessPolicyNotPatient, caller=doctor.address):
        policy.grant(DOCTOR_ID, ALL, ZERO32, READ, 0, later(chain), sender=doctor)


def test_only_the_patient_approves_a_request_about_it(policy, people, chain):
    hospital, doctor, _ = people
    tx = policy.requestAccess(PATIENT_ID, ALL, ZERO32, READ, 0, later(chain), "x", sender=doctor)
    request_id = tx.events[0].requestId
    with reverts(policy.AccessPolicyNotRequestPatient, requestId=request_id, caller=hospital.address):
        policy.approveRequest(request_id, sender=hospital)


def test_only_a_proxy_records_access(policy, people, chain):
    _, doctor, patient = people
    policy.grant(DOCTOR_ID, ALL, ZERO32, READ, 0, later(chain), sender=patient)
    with reverts(policy.AccessPolicyNotProxy, caller=doctor.address):
        policy.recordAccess(PATIENT_ID, DOCTOR_ID, REC, ZERO32, READ, 0, sender=doctor)


def test_an_expired_window_is_refused(policy, people, chain):
    _, _, patient = people
    past = chain.blocks.head.timestamp - 1
    with reverts(policy.AccessPolicyInvalidWindow, notBefore=0, expiresAt=past):
        policy.grant(DOCTOR_ID, ALL, ZERO32, READ, 0, past, sender=patient)


def test_an_authority_approves_an_emergency_once(policy, people, authorities, accounts):
    _, doctor, _ = people
    emergency_id = policy.requestEmergencyAccess(PATIENT_ID, HOUR, "er", sender=doctor).events[0].emergencyId
    policy.approveEmergencyAccess(emergency_id, sender=authorities[0])
    with reverts(policy.AccessPolicyDuplicateEmergencyApproval, emergencyId=emergency_id, authority=pid("national")):
        policy.approveEmergencyAccess(emergency_id, sender=authorities[0])
    with reverts(policy.AccessPolicyNotAuthority, caller=doctor.address):
        policy.approveEmergencyAccess(emergency_id, sender=doctor)
