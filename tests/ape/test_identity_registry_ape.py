"""IdentityRegistry through Ape (`ape test tests/ape`): the Ape toolchain path.

Ape compiles with the same solc entry point and runs the contracts on the
Anvil from npm (ape-foundry).  The full contract suite is
tests/contracts/test_identity_registry.py; this module checks the Ape path.
"""

import ape
import pytest

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
    with ape.reverts(registry.IdentityRegistryNotKmc, caller=accounts[2].address):
        registry.register(b"\x02" * 32, accounts[2], HOSPITAL, ZERO32, PRE_KEY, PEKS_KEY, sender=accounts[2])
