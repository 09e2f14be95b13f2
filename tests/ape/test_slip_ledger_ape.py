"""SlipLedger through Ape (`ape test tests/ape`): PBFT quorum certificates of a private chain's headers.

Four validators (Ape's test accounts 0–3, quorum 3); each COMMIT signature is over the contract's own
`commitDigest`.  The full suites are tests/private/test_slip_ledger.py and foundry/test.
"""

import pytest
from eth_account import Account

from _support import reverts

ZERO32 = b"\x00" * 32
ROOT = b"\x5a" * 32


@pytest.fixture(scope="module")
def validators(accounts):
    return [accounts[i] for i in range(4)]


@pytest.fixture(scope="module")
def ledger(project, validators):
    return project.SlipLedger.deploy([v.address for v in validators], sender=validators[0])


def header(height, prev=ZERO32, creator=None, seq=None):
    return (height, height if seq is None else seq, prev, 1_700_000_000_000 + height, creator, ROOT, b"cid-%d" % height)


def certificate(ledger, validators, hdr, indexes, view=0):
    digest = ledger.commitDigest(ledger.hashHeader(hdr), view, hdr[1])
    sigs = b"".join(Account.unsafe_sign_hash(digest, validators[i].private_key).signature for i in indexes)
    return bytes(indexes), sigs


def commit(ledger, validators, hdr, indexes=(0, 1, 2), sender=None):
    idx, sigs = certificate(ledger, validators, hdr, list(indexes))
    return ledger.commitBlock(hdr, 0, [v.address for v in validators], idx, sigs, sender=sender or validators[0])


def test_a_quorum_certificate_commits_the_header(ledger, validators):
    assert ledger.quorum() == 3 and ledger.isValidator(validators[3])
    hdr = header(1, creator=validators[0].address)
    tx = commit(ledger, validators, hdr)
    event = tx.events[0]
    assert event.event_name == "BlockCommitted" and event.height == 1 and event.headerHash == ledger.hashHeader(hdr)
    height, head_hash = ledger.head()
    assert height == 1 and head_hash == ledger.hashHeader(hdr) == ledger.headerHashAt(1)


def test_the_chain_links_by_prev_hash(ledger, validators):
    first = header(1, creator=validators[0].address)
    commit(ledger, validators, first)
    second = header(2, prev=ledger.hashHeader(first), creator=validators[1].address)
    commit(ledger, validators, second, indexes=(1, 2, 3), sender=validators[1])
    assert ledger.head()[0] == 2


def test_two_signatures_are_not_a_quorum(ledger, validators):
    hdr = header(1, creator=validators[0].address)
    with reverts(ledger.SlipLedgerInsufficientSignatures, got=2, needed=3):
        commit(ledger, validators, hdr, indexes=(0, 1))


def test_an_outsider_cannot_submit(ledger, validators, accounts):
    hdr = header(1, creator=validators[0].address)
    with reverts(ledger.SlipLedgerNotValidator, caller=accounts[5].address):
        commit(ledger, validators, hdr, sender=accounts[5])


def test_a_forged_signature_is_named(ledger, validators, accounts):
    hdr = header(1, creator=validators[0].address)
    idx, sigs = certificate(ledger, validators, hdr, [0, 1, 2])
    digest = ledger.commitDigest(ledger.hashHeader(hdr), 0, hdr[1])
    forged = Account.unsafe_sign_hash(digest, accounts[6].private_key).signature
    with reverts(ledger.SlipLedgerInvalidSignature, signer=validators[2].address, recovered=accounts[6].address):
        ledger.commitBlock(hdr, 0, [v.address for v in validators], idx, sigs[:130] + forged, sender=validators[0])


def test_a_repeated_signer_is_a_duplicate(ledger, validators):
    hdr = header(1, creator=validators[0].address)
    with reverts(ledger.SlipLedgerDuplicateSignature, signer=validators[1].address):
        commit(ledger, validators, hdr, indexes=(0, 1, 1))


def test_a_skipped_height_is_out_of_order(ledger, validators):
    hdr = header(2, creator=validators[0].address)
    with reverts(ledger.SlipLedgerOutOfOrder, expected=1, got=2):
        commit(ledger, validators, hdr)


def test_a_second_header_at_a_height_is_a_fork(ledger, validators):
    hdr = header(1, creator=validators[0].address)
    commit(ledger, validators, hdr)
    fork = header(1, creator=validators[1].address)
    with reverts(ledger.SlipLedgerForkedHeader, height=1, committed=ledger.hashHeader(hdr),
                     proposed=ledger.hashHeader(fork)):
        commit(ledger, validators, fork)


def test_a_set_of_three_is_refused_at_deployment(project, accounts):
    with reverts(project.SlipLedger.SlipLedgerInvalidValidatorSet, size=3):
        project.SlipLedger.deploy([accounts[i].address for i in range(3)], sender=accounts[0])
