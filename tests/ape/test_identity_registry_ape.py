"""IdentityRegistry through Ape (`ape test tests/ape`): the Ape toolchain path.

Ape compiles with the same solc entry point and runs the contracts on the
Anvil from npm (ape-foundry).  The full contract suite is
tests/contracts/test_identity_registry.py; this module checks the Ape path.
"""

import pytest

from _support import pid, reverts

PATIENT = 4
HOSPITAL = 1
ZERO32 = b"\x00" * 32
PRE_KEY = b"\x02" + b"\x11" * 32
PEKS_KEY = b"\x22" * 96


@pytest.fixture(scope="module")
def kmc(accounts):
    return accounts[0]


@pytest.fixture(scope="module")
def registry(project, kmc):
    return kmc.deploy(project.IdentityRegistry, kmc, 2, 86400)  # k = 2 authorities, 1-day delay


def test_kmc_registers_a_patient(registry, kmc, accounts):
    pid = b"\x01" * 32
    tx = registry.register(pid, accounts[1], PATIENT, ZERO32, PRE_KEY, PEKS_KEY, sender=kmc)
    event = tx.events[0]
    assert event.event_name == "ParticipantRegistered"
    assert event.id == pid and event.account == accounts[1].address and event.role == PATIENT
    assert registry.idOf(accounts[1]) == pid
    assert registry.isActive(accounts[1])


def test_register_reverts_for_non_kmc(registry, accounts):
    with reverts(registry.IdentityRegistryNotKmc, caller=accounts[2].address):
        registry.register(b"\x02" * 32, accounts[2], HOSPITAL, ZERO32, PRE_KEY, PEKS_KEY, sender=accounts[2])


def test_rotation_keeps_the_id(registry, kmc, accounts):
    pid_ = b"\x03" * 32
    registry.register(pid_, accounts[3], PATIENT, ZERO32, PRE_KEY, PEKS_KEY, sender=kmc)
    registry.rotateKeys(pid_, accounts[5], PRE_KEY, PEKS_KEY, sender=kmc)
    assert registry.idOf(accounts[5]) == pid_ and registry.idOf(accounts[3]) == ZERO32
    assert registry.participant(pid_).keyVersion == 2


def test_one_key_set_per_participant(registry, kmc, accounts):
    pid_ = b"\x04" * 32
    registry.register(pid_, accounts[3], PATIENT, ZERO32, PRE_KEY, PEKS_KEY, sender=kmc)
    with reverts(registry.IdentityRegistryAlreadyRegistered, id=pid_):
        registry.register(pid_, accounts[6], PATIENT, ZERO32, PRE_KEY, PEKS_KEY, sender=kmc)
    with reverts(registry.IdentityRegistryAccountInUse, account=accounts[3].address):
        registry.register(b"\x05" * 32, accounts[3], PATIENT, ZERO32, PRE_KEY, PEKS_KEY, sender=kmc)


def test_a_malformed_key_is_refused(registry, kmc, accounts):
    with reverts(registry.IdentityRegistryInvalidKey, id=b"\x06" * 32, preKeyLength=32, peksKeyLength=96):
        registry.register(b"\x06" * 32, accounts[6], PATIENT, ZERO32, PRE_KEY[:32], PEKS_KEY, sender=kmc)


def test_only_an_authority_suspends(identity, accounts):
    """`identity` (conftest) has the three health authorities registered."""
    with reverts(identity.IdentityRegistryNotAuthority, caller=accounts[8].address):
        identity.suspend(pid("national"), "coup", sender=accounts[8])


def test_an_authority_cannot_suspend_another(identity, authorities):
    with reverts(identity.IdentityRegistryNotGovernance, caller=authorities[0].address):
        identity.suspend(pid("provincial"), "rivalry", sender=authorities[0])
