"""AuthorityGovernor through Ape (`ape test tests/ape`): k-of-n governance, no single authority governs.

The governor of a fresh IdentityRegistry (k = 2 of three health authorities, parameter changes after one
day).  The full suites are tests/contracts/test_governance.py and foundry/test.
"""

import pytest

from _support import DAY, HOSPITAL, PEKS_KEY, PRE_KEY, ZERO32, call, govern, pid, reverts

PROPOSED, EXECUTED, CANCELLED = 1, 2, 3


@pytest.fixture(scope="module")
def hospital(identity, kmc, accounts):
    identity.register(pid("hospital"), accounts[4], HOSPITAL, ZERO32, PRE_KEY, PEKS_KEY, sender=kmc)
    return accounts[4]


@pytest.fixture(scope="module")
def suspended(identity, authorities, hospital):
    """The hospital, suspended by one authority (a non-authority participant needs no quorum)."""
    identity.suspend(pid("hospital"), "audit", sender=authorities[0])
    return pid("hospital")


def test_two_authorities_reinstate_at_once(identity, governor, authorities, suspended, hospital, chain):
    assert not identity.isActive(hospital)
    calls = [call(identity, "reinstate", suspended, "cleared")]
    tx = govern(governor, authorities, calls, chain)
    assert any(e.event_name == "OperationExecuted" and e.activeApprovals == 2 for e in tx.events)
    assert identity.isActive(hospital)
    assert governor.getOperation(governor.hashOperation(calls, ZERO32)).state == EXECUTED


def test_a_parameter_change_waits_its_delay(governor, authorities, chain):
    calls = [call(governor, "setConfig", 3, 2 * DAY)]
    op = governor.hashOperation(calls, ZERO32)
    proposed = governor.propose(calls, ZERO32, sender=authorities[0])
    governor.approve(op, sender=authorities[1])
    ready_at = governor.getOperation(op).readyAt
    assert ready_at == chain.blocks[proposed.block_number].timestamp + DAY
    with reverts(governor.AuthorityGovernorNotReady, operationId=op, readyAt=ready_at):
        governor.execute(calls, ZERO32, sender=authorities[2])
    chain.pending_timestamp = ready_at + 1
    governor.execute(calls, ZERO32, sender=authorities[2])
    assert governor.quorum() == 3 and governor.delay() == 2 * DAY


def test_an_outsider_cannot_propose(identity, governor, accounts, suspended):
    calls = [call(identity, "reinstate", suspended, "bribe")]
    with reverts(governor.AuthorityGovernorNotAuthority, caller=accounts[7].address):
        governor.propose(calls, ZERO32, sender=accounts[7])


def test_one_authority_alone_is_not_a_quorum(identity, governor, authorities, suspended):
    calls = [call(identity, "reinstate", suspended, "alone")]
    op = governor.hashOperation(calls, ZERO32)
    governor.propose(calls, ZERO32, sender=authorities[0])
    with reverts(governor.AuthorityGovernorQuorumNotReached, operationId=op, activeApprovals=1, quorum=2):
        governor.execute(calls, ZERO32, sender=authorities[0])


def test_the_proposer_cannot_approve_twice(identity, governor, authorities, suspended):
    calls = [call(identity, "reinstate", suspended, "twice")]
    op = governor.hashOperation(calls, ZERO32)
    governor.propose(calls, ZERO32, sender=authorities[0])
    with reverts(governor.AuthorityGovernorAlreadyApproved, operationId=op, authority=pid("national")):
        governor.approve(op, sender=authorities[0])


def test_an_executed_operation_cannot_be_replayed(identity, governor, authorities, suspended, chain):
    calls = [call(identity, "reinstate", suspended, "once")]
    govern(governor, authorities, calls, chain)
    op = governor.hashOperation(calls, ZERO32)
    with reverts(governor.AuthorityGovernorUnexpectedState, operationId=op, current=EXECUTED, expected=PROPOSED):
        governor.execute(calls, ZERO32, sender=authorities[2])


def test_only_the_proposer_cancels(identity, governor, authorities, suspended):
    calls = [call(identity, "reinstate", suspended, "cancel")]
    op = governor.hashOperation(calls, ZERO32)
    governor.propose(calls, ZERO32, sender=authorities[0])
    with reverts(governor.AuthorityGovernorNotProposer, operationId=op, caller=authorities[1].address):
        governor.cancel(op, sender=authorities[1])
    governor.cancel(op, sender=authorities[0])
    assert governor.getOperation(op).state == CANCELLED


def test_governed_calls_bypassing_the_governor_revert(identity, governor, authorities, suspended):
    with reverts(governor.AuthorityGovernorUnauthorizedCall, caller=authorities[0].address):
        governor.setConfig(2, DAY, sender=authorities[0])
    with reverts(identity.IdentityRegistryNotGovernance, caller=authorities[0].address):
        identity.reinstate(suspended, "alone", sender=authorities[0])


def test_an_empty_operation_is_refused(governor, authorities):
    with reverts(governor.AuthorityGovernorEmptyOperation):
        governor.propose([], ZERO32, sender=authorities[0])
