"""CreditRegistry through Ape (`ape test tests/ape`): institution credit, elections, rewards and penalties.

One RPN seat, two ATN seats, one reserve; four hospitals with credit 9000, 8000, 7000 and 6000 (equal
dimensions, so the credit is the dimension).  Registration and elections go through the governor.  The
full suites are tests/consortium/test_credit_registry.py and foundry/test.
"""

import pytest

from _support import HOSPITAL, PATIENT, PEKS_KEY, PRE_KEY, ZERO32, call, govern, pid, reverts

WEIGHTS = (5000, 3000, 2000)
# blockReward, attestationReward, dataServedReward, invalidBlockPenalty, wrongAttestationPenalty,
# missedSlotPenalty, removalThreshold
INCENTIVES = (10, 5, 2, 500, 200, 100, 1000)
DATA_SERVED, MISSED_SLOT = 2, 2  # Service.DataServed, Offence.MissedSlot
RPN, ATN = 1, 2  # SeatKind
GRADES = {"h-a": 9000, "h-b": 8000, "h-c": 7000, "h-d": 6000}
IDS = [pid(label) for label in GRADES]


@pytest.fixture(scope="module")
def hospitals(accounts):
    return [accounts[4 + i] for i in range(len(GRADES))]


@pytest.fixture(scope="module")
def credit(project, identity, governor, kmc, authorities, hospitals, chain):
    registry = project.CreditRegistry.deploy(identity, 1, 2, 1, WEIGHTS, INCENTIVES, sender=kmc)
    calls = []
    for (label, grade), account in zip(GRADES.items(), hospitals):
        identity.register(pid(label), account, HOSPITAL, ZERO32, PRE_KEY, PEKS_KEY, sender=kmc)
        calls.append(call(registry, "registerInstitution", pid(label), (grade, grade, grade)))
    govern(governor, authorities, calls, chain)
    for account in hospitals:
        registry.setWilling(True, sender=account)
    return registry


@pytest.fixture(scope="module")
def reporter(credit, governor, authorities, accounts, chain):
    govern(governor, authorities, [call(credit, "setReporter", accounts[8], True)], chain)
    return accounts[8]


def test_registered_institutions_carry_their_credit(credit, hospitals):
    assert credit.institutionCount() == 4
    assert [credit.creditOf(i) for i in IDS] == list(GRADES.values())
    assert credit.idOf(hospitals[0]) == IDS[0] and credit.isEligible(IDS[0])
    assert credit.institution(IDS[1]).willing


def test_the_election_seats_the_top_ranked(credit, governor, authorities, chain):
    govern(governor, authorities, [call(credit, "elect", IDS)], chain)
    assert credit.rpnSet() == [IDS[0]] and credit.atnSet() == IDS[1:3] and credit.reserveSet() == [IDS[3]]
    assert credit.seatOf(IDS[0]) == (RPN, 0) and credit.seatOf(IDS[2]) == (ATN, 1)
    assert credit.rosterVersion() == 1


def test_a_reporter_rewards_and_penalises(credit, reporter):
    credit.reward(IDS[0], DATA_SERVED, 3, sender=reporter)
    assert credit.creditOf(IDS[0]) == 9000 + 2 * 3
    tx = credit.penalise(IDS[1], MISSED_SLOT, b"\x01" * 32, sender=reporter)
    assert tx.events[0].event_name == "Penalised"
    assert credit.creditOf(IDS[1]) == 8000 - 100


def test_only_the_governor_registers(credit, authorities):
    with reverts(credit.CreditRegistryNotGovernance, caller=authorities[0].address):
        credit.registerInstitution(pid("h-a"), (1, 1, 1), sender=authorities[0])


def test_only_a_reporter_rewards(credit, hospitals):
    with reverts(credit.CreditRegistryNotReporter, caller=hospitals[0].address):
        credit.reward(IDS[0], DATA_SERVED, 1_000, sender=hospitals[0])


def test_a_stranger_cannot_declare_itself_willing(credit, accounts):
    with reverts(credit.CreditRegistryNotInstitution, caller=accounts[9].address):
        credit.setWilling(True, sender=accounts[9])


def test_a_patient_is_not_an_institution(credit, identity, governor, kmc, authorities, accounts, chain):
    identity.register(pid("patient"), accounts[9], PATIENT, ZERO32, PRE_KEY, PEKS_KEY, sender=kmc)
    calls = [call(credit, "registerInstitution", pid("patient"), (1, 1, 1))]
    with reverts(credit.CreditRegistryNotAnInstitutionRole, id=pid("patient"), role=PATIENT):
        govern(governor, authorities, calls, chain)  # the governor bubbles the target's own error


def test_weights_must_sum_to_one(project, identity, kmc):
    with reverts(project.CreditRegistry.CreditRegistryInvalidWeights):
        project.CreditRegistry.deploy(identity, 1, 2, 1, (5000, 3000, 1000), INCENTIVES, sender=kmc)
