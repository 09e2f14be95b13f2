"""IdentityRegistry: happy paths with decoded events, every refusal with its custom error."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from mbds_py.chain.governance import Council
from mbds_py.chain.identity import IdentityRegistryAgent
from mbds_py.errors import ContractRevert
from mbds_py.identity import Participant, Role
from tests.conftest import peks_key, pre_key
from tests.helpers import reverts

ZERO32 = b"\x00" * 32


def person(label: str, role: Role, account, institution: bytes = ZERO32) -> Participant:
    return Participant(id=keccak(text=f"id/{label}"), name=label, role=role, address=account.address,
                       pre_key=pre_key(label), peks_key=peks_key(label), institution=institution)


@pytest.fixture()
def registry(chain, identity_address) -> IdentityRegistryAgent:
    return IdentityRegistryAgent(chain, identity_address)


@pytest.fixture()
def population(registry, kmc, make_account):
    """A hospital, a doctor of it, a patient and two health authorities (municipal, provincial)."""
    hospital = person("hospital", Role.HOSPITAL, make_account("hospital"))
    authority = person("authority", Role.AUTHORITY_MUNICIPAL, make_account("authority"))
    doctor = person("doctor", Role.DOCTOR, make_account("doctor"), institution=hospital.id)
    patient = person("patient", Role.PATIENT, make_account("patient"))
    authority_b = person("authority-b", Role.AUTHORITY_PROVINCIAL, make_account("authority-b"))
    for p in (hospital, authority, doctor, patient, authority_b):
        registry.register(kmc, p)
    return {"hospital": hospital, "authority": authority, "doctor": doctor, "patient": patient,
            "authority-b": authority_b}


@pytest.fixture()
def council(make_account, population) -> Council:
    """The two authorities: the governor's quorum (k = 2)."""
    return Council(make_account("authority"), make_account("authority-b"))




# -- register ----------------------------------------------------------------------------------


def test_register_records_participant_and_emits_event(registry, kmc, make_account):
    acct = make_account("alice")
    alice = person("alice", Role.PATIENT, acct)
    receipt = registry.register(kmc, alice)
    (ev,) = registry.events(receipt, "ParticipantRegistered")
    assert ev == {"id": alice.id, "account": acct.address, "role": int(Role.PATIENT), "institution": ZERO32,
                  "preKey": alice.pre_key, "peksKey": alice.peks_key}
    entry = registry.get(alice.id)
    assert (entry.account, entry.role, entry.suspended, entry.key_version) == (acct.address, Role.PATIENT, False, 1)
    assert registry.id_of(acct.address) == alice.id
    assert registry.is_active(acct.address)
    assert registry.count() == 1


def test_register_doctor_records_institution(population, registry):
    entry = registry.get(population["doctor"].id)
    assert entry.institution == population["hospital"].id
    assert entry.role is Role.DOCTOR


def test_register_reverts_for_non_kmc(registry, make_account):
    intruder = make_account("intruder")
    with reverts("IdentityRegistryNotKmc", intruder.address):
        registry.register(intruder, person("x", Role.PATIENT, intruder))


def test_register_reverts_on_duplicate_participant(population, registry, kmc, make_account):
    again = person("patient", Role.PATIENT, make_account("patient-second-key"))
    with reverts("IdentityRegistryAlreadyRegistered", again.id):
        registry.register(kmc, again)


def test_register_reverts_when_account_already_used(population, registry, kmc, make_account):
    other = person("other", Role.PATIENT, make_account("patient"))  # same account as the patient
    with reverts("IdentityRegistryAccountInUse", other.address):
        registry.register(kmc, other)


def test_register_reverts_for_role_none(registry, kmc, make_account):
    acct = make_account("nobody")
    p = person("nobody", Role.NONE, acct)
    with reverts("IdentityRegistryInvalidParticipant", p.id, acct.address, 0):
        registry.register(kmc, p)


def test_register_reverts_for_bad_key_lengths(registry, kmc, make_account):
    p = person("badkey", Role.PATIENT, make_account("badkey"))
    bad = Participant(p.id, p.name, p.role, p.address, p.pre_key[:32], p.peks_key)
    with reverts("IdentityRegistryInvalidKey", p.id, 32, 48):
        registry.register(kmc, bad)


def test_register_doctor_without_hospital_reverts(registry, kmc, make_account, population):
    orphan = person("orphan", Role.DOCTOR, make_account("orphan"), institution=population["patient"].id)
    with reverts("IdentityRegistryInvalidInstitution", orphan.id, population["patient"].id):
        registry.register(kmc, orphan)


def test_register_doctor_under_suspended_hospital_reverts(acct, registry, kmc, make_account, population, council):
    hospital = population["hospital"]
    registry.suspend(acct("authority"), hospital.id, "licence withdrawn")
    recruit = person("recruit", Role.DOCTOR, make_account("recruit"), institution=hospital.id)
    with reverts("IdentityRegistryInstitutionSuspended", recruit.id, hospital.id):
        registry.register(kmc, recruit)
    assert registry.count() == 5  # nothing was written
    registry.reinstate(council, hospital.id, "licence restored")
    receipt = registry.register(kmc, recruit)  # an active institution again: accepted
    (ev,) = registry.events(receipt, "ParticipantRegistered")
    assert (ev["id"], ev["institution"]) == (recruit.id, hospital.id)


def test_register_doctor_under_suspended_platform_reverts(acct, registry, kmc, make_account, population):
    platform = person("platform", Role.INTERNET_PLATFORM, make_account("platform"))
    registry.register(kmc, platform)
    registry.suspend(acct("authority"), platform.id, "abnormal access")
    online = person("online-doctor", Role.DOCTOR, make_account("online-doctor"), institution=platform.id)
    with reverts("IdentityRegistryInstitutionSuspended", online.id, platform.id):
        registry.register(kmc, online)


def test_register_patient_with_institution_reverts(registry, kmc, make_account, population):
    p = person("p2", Role.PATIENT, make_account("p2"), institution=population["hospital"].id)
    with reverts("IdentityRegistryInvalidInstitution", p.id, population["hospital"].id):
        registry.register(kmc, p)


# -- rotate ----------------------------------------------------------------------------------------


def test_rotate_keeps_id_and_emits_event(population, registry, kmc, make_account):
    old = population["patient"]
    new_acct = make_account("patient-rotated")
    rotated = Participant(old.id, old.name, old.role, new_acct.address, pre_key("rot"), peks_key("rot"))
    receipt = registry.rotate(kmc, rotated)
    (ev,) = registry.events(receipt, "KeysRotated")
    assert ev == {"id": old.id, "oldAccount": old.address, "newAccount": new_acct.address, "keyVersion": 2,
                  "preKey": rotated.pre_key, "peksKey": rotated.peks_key}
    entry = registry.get(old.id)
    assert (entry.account, entry.key_version, entry.pre_key) == (new_acct.address, 2, rotated.pre_key)
    assert registry.id_of(new_acct.address) == old.id
    assert registry.id_of(old.address) == ZERO32
    assert not registry.is_active(old.address)


def test_rotate_reverts_for_non_kmc(acct, population, registry):
    doctor = population["doctor"]
    from tests.conftest import pre_key as pk

    with reverts("IdentityRegistryNotKmc"):
        registry.rotate(acct("doctor"), Participant(doctor.id, "d", doctor.role, doctor.address,
                                                                     pk("z"), peks_key("z")))


def test_rotate_reverts_for_unknown_participant(registry, kmc, make_account):
    ghost = person("ghost", Role.PATIENT, make_account("ghost"))
    with reverts("IdentityRegistryUnknownParticipant", ghost.id):
        registry.rotate(kmc, ghost)


def test_rotate_reverts_onto_an_account_in_use(acct, population, registry, kmc):
    patient, doctor = population["patient"], population["doctor"]
    stolen = Participant(patient.id, "p", patient.role, doctor.address, patient.pre_key, patient.peks_key)
    with reverts("IdentityRegistryAccountInUse", doctor.address):
        registry.rotate(kmc, stolen)


# -- suspension ----------------------------------------------------------------------------------


@pytest.fixture()
def acct(make_account):
    return make_account


@pytest.mark.filterwarnings("error")  # the governor's own logs in the receipt are skipped, not mis-decoded
def test_authority_suspends_and_the_governor_reinstates(acct, population, registry, council):
    auth = acct("authority")
    doctor = population["doctor"]
    receipt = registry.suspend(auth, doctor.id, "abnormal access rate")
    (ev,) = registry.events(receipt, "ParticipantSuspended")
    assert ev == {"id": doctor.id, "authority": population["authority"].id, "reason": "abnormal access rate"}
    assert registry.get(doctor.id).suspended
    assert not registry.is_active(doctor.address)
    receipt = registry.reinstate(council, doctor.id, "cleared by review")  # k-of-n: the governor acts
    (ev,) = registry.events(receipt, "ParticipantReinstated")
    assert ev == {"id": doctor.id, "authority": ZERO32, "reason": "cleared by review"}
    assert registry.is_active(doctor.address)


def test_suspension_count_moves_on_every_suspension_only(acct, population, registry, council):
    """What lets the CreditRegistry notice a suspension at a round boundary in O(1) (issue 13, L-4)."""
    count = lambda: registry.contract.functions.suspensionCount().call()  # noqa: E731
    before = count()
    registry.suspend(acct("authority"), population["doctor"].id, "audit")
    assert count() == before + 1
    registry.reinstate(council, population["doctor"].id, "cleared")
    assert count() == before + 1  # a reinstatement never makes anyone ineligible
    registry.suspend(acct("authority"), population["doctor"].id, "again")
    assert count() == before + 2


def test_suspend_reverts_for_non_authority(acct, population, registry):
    hospital_acct = acct("hospital")
    with reverts("IdentityRegistryNotAuthority", hospital_acct.address):
        registry.suspend(hospital_acct, population["patient"].id, "no")


def test_reinstate_reverts_for_one_authority_or_a_non_authority(acct, population, registry):
    registry.suspend(acct("authority"), population["patient"].id, "x")
    for caller in (acct("doctor"), acct("authority")):  # one authority alone is not the governor either
        with reverts("IdentityRegistryNotGovernance", caller.address):
            registry.reinstate(caller, population["patient"].id, "no")


def test_suspended_authority_cannot_suspend(acct, population, registry, kmc, make_account):
    second = person("authority2", Role.AUTHORITY_NATIONAL, make_account("authority2"))
    registry.register(kmc, second)
    with reverts("IdentityRegistryNotGovernance", make_account("authority2").address):  # not alone
        registry.suspend(make_account("authority2"), population["authority"].id, "under review")
    registry.suspend(Council(make_account("authority2"), make_account("authority-b")), population["authority"].id,
                     "under review")
    auth = acct("authority")
    with reverts("IdentityRegistryNotAuthority", auth.address):
        registry.suspend(auth, population["patient"].id, "no")


def test_suspend_twice_reverts(acct, population, registry):
    auth = acct("authority")
    registry.suspend(auth, population["patient"].id, "x")
    with reverts("IdentityRegistrySuspensionUnchanged", population["patient"].id, True):
        registry.suspend(auth, population["patient"].id, "x")


def test_reinstate_active_reverts(acct, population, registry, council):
    with reverts("IdentityRegistrySuspensionUnchanged", population["patient"].id, False):
        registry.reinstate(council, population["patient"].id, "x")


def test_authority_cannot_suspend_itself_or_another_authority_alone(acct, population, registry):
    for target in ("authority", "authority-b"):
        with reverts("IdentityRegistryNotGovernance", acct("authority").address):
            registry.suspend(acct("authority"), population[target].id, "x")


def test_suspend_unknown_participant_reverts(acct, population, registry):
    with reverts("IdentityRegistryUnknownParticipant", b"\x01" * 32):
        registry.suspend(acct("authority"), b"\x01" * 32, "x")


# -- KMC authority transfer (OpenZeppelin Ownable2Step) ----------------------------------------------


def test_kmc_transfer_is_two_step(registry, kmc, make_account, chain):
    new_kmc = make_account("new-kmc")
    c = registry.contract
    chain.transact(c.functions.transferOwnership(new_kmc.address), kmc, contract="IdentityRegistry")
    assert registry.kmc() == kmc.address
    chain.transact(c.functions.acceptOwnership(), new_kmc, contract="IdentityRegistry")
    assert registry.kmc() == new_kmc.address


def test_kmc_transfer_reverts_for_non_kmc(registry, make_account, chain):
    intruder = make_account("intruder")
    with reverts("OwnableUnauthorizedAccount", intruder.address):
        chain.transact(registry.contract.functions.transferOwnership(intruder.address), intruder,
                       contract="IdentityRegistry")


def test_kmc_renounce_is_disabled(registry, kmc, chain):
    with reverts("IdentityRegistryRenounceDisabled", kmc.address):
        chain.transact(registry.contract.functions.renounceOwnership(), kmc, contract="IdentityRegistry")
    assert registry.kmc() == kmc.address


def test_kmc_renounce_stays_disabled_after_a_transfer(registry, kmc, make_account, chain):
    new_kmc = make_account("new-kmc")
    c = registry.contract
    chain.transact(c.functions.transferOwnership(new_kmc.address), kmc, contract="IdentityRegistry")
    chain.transact(c.functions.acceptOwnership(), new_kmc, contract="IdentityRegistry")
    with reverts("IdentityRegistryRenounceDisabled", new_kmc.address):
        chain.transact(c.functions.renounceOwnership(), new_kmc, contract="IdentityRegistry")
    with reverts("OwnableUnauthorizedAccount", kmc.address):  # the former KMC has no say any more
        chain.transact(c.functions.renounceOwnership(), kmc, contract="IdentityRegistry")
    assert registry.kmc() == new_kmc.address


def test_kmc_renounce_reverts_for_non_kmc(registry, make_account, chain):
    intruder = make_account("intruder")
    with reverts("OwnableUnauthorizedAccount", intruder.address):
        chain.transact(registry.contract.functions.renounceOwnership(), intruder, contract="IdentityRegistry")


def test_accept_ownership_reverts_for_non_pending(registry, make_account, chain):
    intruder = make_account("intruder")
    with reverts("OwnableUnauthorizedAccount", intruder.address):
        chain.transact(registry.contract.functions.acceptOwnership(), intruder, contract="IdentityRegistry")
