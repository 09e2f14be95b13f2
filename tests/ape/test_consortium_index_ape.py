"""ConsortiumIndex through Ape (`ape test tests/ape`): the consortium chain's slots, producers and attestations.

A CreditRegistry with one RPN seat and two ATN seats, three hospitals elected to them (credit 9000: the
producer; 8000 and 7000: the attesters), one-hour slots from the deployment on, attestation quorum 2.
Election, clock and reporter are set through the governor.  The full suites are tests/consortium/ and
foundry/test.
"""

import pytest
from eth_account import Account
from eth_utils import keccak

from _support import HOSPITAL, PEKS_KEY, PRE_KEY, ZERO32, call, govern, pid, reverts

WEIGHTS = (5000, 3000, 2000)
INCENTIVES = (10, 5, 2, 500, 200, 100, 1000)  # block and attestation rewards 10 and 5
SLOT_SECONDS = 3600
GRADES = {"c-a": 9000, "c-b": 8000, "c-c": 7000}
IDS = [pid(label) for label in GRADES]
NO_PATIENTS = keccak(b"")


@pytest.fixture(scope="module")
def members(accounts):
    """producer, attester, attester"""
    return [accounts[4], accounts[5], accounts[6]]


@pytest.fixture(scope="module")
def credit(project, identity, governor, kmc, authorities, members, chain):
    registry = project.CreditRegistry.deploy(identity, 1, 2, 0, WEIGHTS, INCENTIVES, sender=kmc)
    calls = []
    for (label, grade), account in zip(GRADES.items(), members):
        identity.register(pid(label), account, HOSPITAL, ZERO32, PRE_KEY, PEKS_KEY, sender=kmc)
        calls.append(call(registry, "registerInstitution", pid(label), (grade, grade, grade)))
    govern(governor, authorities, calls, chain)
    for account in members:
        registry.setWilling(True, sender=account)
    return registry


@pytest.fixture(scope="module")
def index(project, credit, governor, kmc, authorities, chain):
    contract = project.ConsortiumIndex.deploy(credit, 0, SLOT_SECONDS, 2, sender=kmc)
    calls = [call(credit, "elect", IDS), call(credit, "setClock", contract),
             call(credit, "setReporter", contract, True)]
    govern(governor, authorities, calls, chain, salt=b"\x01" * 32)
    return contract


def header(index, producer=IDS[0], slot=None, height=1, patients_hash=NO_PATIENTS):
    slot = index.currentSlot() if slot is None else slot
    start = index.genesisTime() + index.currentSlot() * SLOT_SECONDS
    return (height, ZERO32, start, slot, producer, ZERO32, 0, patients_hash, b"\x33" * 32)


def attest(index, hdr, signers):
    digest = index.headerDigest(hdr)
    ordered = sorted(signers, key=lambda a: int(a.address, 16))  # the contract wants ascending signers
    return [Account.unsafe_sign_hash(digest, s.private_key).signature for s in ordered]


def test_the_scheduled_producer_commits_with_a_quorum(index, credit, members):
    assert index.producerOf(index.currentSlot()) == (IDS[0], members[0].address)
    hdr = header(index)
    tx = index.commitBlock(hdr, [], attest(index, hdr, members[1:]), sender=members[0])
    committed = [e for e in tx.events if e.event_name == "BlockCommitted"]
    assert committed and committed[0].height == 1 and committed[0].producer == IDS[0]
    assert index.head() == (1, index.hashHeader(hdr))
    assert [credit.creditOf(i) for i in IDS] == [9000 + 10, 8000 + 5, 7000 + 5]


def test_only_the_scheduled_producer_commits(index, members):
    hdr = header(index)
    with reverts(index.ConsortiumIndexNotScheduledProducer, slot=hdr[3], expected=members[0].address,
                 caller=members[1].address):
        index.commitBlock(hdr, [], attest(index, hdr, members[1:]), sender=members[1])


def test_one_attestation_is_not_a_quorum(index, members):
    hdr = header(index)
    with reverts(index.ConsortiumIndexInsufficientAttestations, count=1, quorum=2):
        index.commitBlock(hdr, [], attest(index, hdr, members[1:2]), sender=members[0])


def test_the_producer_cannot_attest_its_own_block(index, members):
    hdr = header(index)
    with reverts(index.ConsortiumIndexNotAttester, signer=members[0].address):
        index.commitBlock(hdr, [], attest(index, hdr, [members[0], members[1]]), sender=members[0])


def test_attestations_must_be_sorted_by_signer(index, members):
    hdr = header(index)
    sigs = attest(index, hdr, members[1:])
    first = sorted(members[1:], key=lambda a: int(a.address, 16))[0]
    with reverts(index.ConsortiumIndexSignersNotSorted, index=1, signer=first.address):
        index.commitBlock(hdr, [], sigs[::-1], sender=members[0])


def test_a_block_for_another_slot_is_refused(index, members):
    hdr = header(index, slot=index.currentSlot() + 5)
    with reverts(index.ConsortiumIndexWrongSlot, slot=hdr[3], currentSlot=index.currentSlot()):
        index.commitBlock(hdr, [], attest(index, hdr, members[1:]), sender=members[0])


def test_the_patient_list_must_match_its_hash(index, members):
    patients = [b"\x01" * 32, b"\x02" * 32]
    hdr = header(index)  # claims no patients
    with reverts(index.ConsortiumIndexPatientsMismatch, patientsHash=NO_PATIENTS,
                 computed=keccak(b"".join(patients))):
        index.commitBlock(hdr, patients, attest(index, hdr, members[1:]), sender=members[0])


def test_one_block_per_slot(index, members):
    hdr = header(index)
    index.commitBlock(hdr, [], attest(index, hdr, members[1:]), sender=members[0])
    second = header(index, height=2)
    slot = hdr[3]
    with reverts(index.ConsortiumIndexSlotAlreadyCommitted, slot=slot, nextUnsettledSlot=slot + 1):
        index.commitBlock(second, [], attest(index, second, members[1:]), sender=members[0])


def test_a_quorum_above_the_atn_seats_is_refused(project, credit, kmc):
    with reverts(project.ConsortiumIndex.ConsortiumIndexInvalidConfig, slotSeconds=SLOT_SECONDS, quorum=3, atnCount=2):
        project.ConsortiumIndex.deploy(credit, 0, SLOT_SECONDS, 3, sender=kmc)
