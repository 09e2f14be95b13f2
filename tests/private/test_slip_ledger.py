"""SlipLedger: certified headers in sequence, slip proofs, validator sets bound to heights (with a model)."""

from __future__ import annotations

import pytest
from eth_account import Account
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from eth_utils import keccak

from mbds_py.chain.slip_ledger import SlipLedgerAgent, header_tuple, set_of
from mbds_py.errors import ContractRevert
from mbds_py.pbft.crypto import EthSigner
from mbds_py.pbft.merkle import merkle_proof, merkle_root
from mbds_py.pbft.types import (BlockHeader, CommitSignature, QuorumCertificate, SlipEnvelope, ZERO32,
                                commit_vote_digest, header_struct_hash, slip_leaf)
from mbds_py.toolchain import artifact
from tests.helpers import reverts

N_VALIDATORS = 4  # the hospital + national, provincial, municipal authorities


def key(label: str) -> bytes:
    return keccak(text=f"slipledger/{label}")


@pytest.fixture(scope="module")
def signers():
    return [EthSigner(key(f"validator-{i}")) for i in range(N_VALIDATORS + 2)]  # two spares


@pytest.fixture(scope="module")
def ledger_address(session_client, deployer, signers):
    for s in signers:
        session_client.transfer(deployer, "0x" + s.address.hex(), 10**20)
    art = artifact("SlipLedger")
    vals = [Account.from_key(key(f"validator-{i}")).address for i in range(N_VALIDATORS)]
    address, _ = session_client.deploy("SlipLedger", art.abi, art.bytecode, deployer, vals)
    return address


@pytest.fixture()
def ledger(chain, ledger_address) -> SlipLedgerAgent:
    return SlipLedgerAgent(chain, ledger_address)


def account(i: int):
    return Account.from_key(key(f"validator-{i}"))


def slips(n: int, tag: str = "") -> list[SlipEnvelope]:
    return [SlipEnvelope(keccak(text=f"slip/{tag}/{i}"), f"payload {tag} {i}".encode()) for i in range(n)]


def header_for(height: int, prev: bytes, body: list[SlipEnvelope], seq: int | None = None) -> BlockHeader:
    return BlockHeader(height=height, seq=seq if seq is not None else height, prev_hash=prev,
                       timestamp=1_700_000_000_000 + height, creator=bytes.fromhex(account(0).address[2:]),
                       merkle_root=merkle_root([slip_leaf(s) for s in body]),
                       body_cid=bytes.fromhex("1220") + keccak(text=f"body/{height}"))


def certify(ledger: SlipLedgerAgent, header: BlockHeader, signers, which=(0, 1, 2), view: int = 0,
            sign_header: BlockHeader | None = None) -> QuorumCertificate:
    digest = commit_vote_digest(ledger.domain_separator(), view, header.seq,
                                header_struct_hash(sign_header or header))
    return QuorumCertificate(header, view, tuple(CommitSignature(i, signers[i].sign(digest)) for i in which))


def addresses(signers) -> list[bytes]:
    """The current validator set (the first N_VALIDATORS keys; the rest are spares)."""
    return [s.address for s in signers[:N_VALIDATORS]]




def test_python_and_contract_agree_on_hashes(ledger):
    h = header_for(1, ZERO32, slips(3))
    assert ledger.hash_header(h) == header_struct_hash(h)
    dom = ledger.domain_separator()
    got = ledger.client.call(ledger.contract.functions.commitDigest(header_struct_hash(h), 7, 1))
    assert bytes(got) == commit_vote_digest(dom, 7, 1, header_struct_hash(h))


def test_commit_block_stores_header_and_proves_slips(ledger, signers):
    body = slips(5)
    h = header_for(1, ZERO32, body)
    receipt = ledger.commit(account(1), certify(ledger, h, signers), addresses(signers))
    (ev,) = ledger.events(receipt, "BlockCommitted")
    assert ev == {"height": 1, "headerHash": header_struct_hash(h)}
    assert ledger.head() == (1, header_struct_hash(h))
    leaves = [slip_leaf(s) for s in body]
    for i, s in enumerate(body):
        assert ledger.verify_slip(h, merkle_proof(leaves, i), s)
    foreign = slips(1, "foreign")[0]
    assert not ledger.verify_slip(h, merkle_proof(leaves, 0), foreign)
    tampered = SlipEnvelope(body[0].slip_id, body[0].payload + b"!")
    assert not ledger.verify_slip(h, merkle_proof(leaves, 0), tampered)


def test_chain_of_blocks_links_prev_hash(ledger, signers):
    prev = ZERO32
    for height in (1, 2, 3):
        h = header_for(height, prev, slips(2, str(height)))
        ledger.commit(account(0), certify(ledger, h, signers, which=(1, 2, 3)), addresses(signers))
        prev = header_struct_hash(h)
    assert ledger.head() == (3, prev)
    assert ledger.header_hash_at(3) == prev


def test_resubmitting_a_committed_header_is_a_noop(ledger, signers):
    h = header_for(1, ZERO32, slips(2))
    qc = certify(ledger, h, signers)
    ledger.commit(account(0), qc, addresses(signers))
    receipt = ledger.commit(account(2), qc, addresses(signers))
    assert ledger.events(receipt, "BlockCommitted") == []
    assert ledger.head()[0] == 1


def test_too_few_signatures_reverts(ledger, signers):
    h = header_for(1, ZERO32, slips(2))
    with reverts("SlipLedgerInsufficientSignatures", 2, 3):
        ledger.commit(account(0), certify(ledger, h, signers, which=(0, 1)), addresses(signers))


def test_duplicate_signature_reverts(ledger, signers):
    h = header_for(1, ZERO32, slips(2))
    qc = certify(ledger, h, signers, which=(0, 1, 1))
    fn = ledger.contract.functions.commitBlock(header_tuple(h), 0, current_set(), bytes([0, 1, 1]),
                                               b"".join(s.signature for s in qc.signatures))
    with reverts("SlipLedgerDuplicateSignature", account(1).address):
        ledger.client.transact(fn, account(0), contract="SlipLedger")


def current_set() -> list[str]:
    return [account(i).address for i in range(N_VALIDATORS)]


def test_unsorted_signatures_revert(ledger, signers):
    h = header_for(1, ZERO32, slips(2))
    qc = certify(ledger, h, signers)
    ordered = sorted(qc.signatures, key=lambda s: s.signer, reverse=True)
    fn = ledger.contract.functions.commitBlock(header_tuple(h), 0, current_set(), bytes(s.signer for s in ordered),
                                               b"".join(s.signature for s in ordered))
    with reverts("SlipLedgerUnsortedSignatures", 2, 1):
        ledger.client.transact(fn, account(0), contract="SlipLedger")


def test_signatures_not_lining_up_with_indexes_revert(ledger, signers):
    h = header_for(1, ZERO32, slips(2))
    qc = certify(ledger, h, signers)
    fn = ledger.contract.functions.commitBlock(header_tuple(h), 0, current_set(), bytes([0, 1, 2]),
                                               b"".join(s.signature for s in qc.signatures)[:-1])
    with reverts("SlipLedgerMalformedSignatures", 3, 194):
        ledger.client.transact(fn, account(0), contract="SlipLedger")


def test_signer_index_outside_the_set_reverts(ledger, signers):
    h = header_for(1, ZERO32, slips(2))
    qc = certify(ledger, h, signers)
    fn = ledger.contract.functions.commitBlock(header_tuple(h), 0, current_set(), bytes([0, 1, 7]),
                                               b"".join(s.signature for s in qc.signatures))
    with reverts("SlipLedgerSignerIndexOutOfRange", 7, 4):
        ledger.client.transact(fn, account(0), contract="SlipLedger")


def test_certificate_naming_another_validator_set_reverts(ledger, signers):
    h = header_for(1, ZERO32, slips(2))
    qc = certify(ledger, h, signers)
    forged_set = current_set()[:3] + [account(N_VALIDATORS).address]  # swap in an outsider
    fn = ledger.contract.functions.commitBlock(header_tuple(h), 0, forged_set, bytes([0, 1, 2]),
                                               b"".join(s.signature for s in qc.signatures))
    given = keccak(b"".join(bytes(12) + bytes.fromhex(a[2:]) for a in forged_set))  # abi.encodePacked pads
    current = keccak(b"".join(bytes(12) + bytes.fromhex(a[2:]) for a in current_set()))
    with reverts("SlipLedgerUnknownValidatorSet", given, current):
        ledger.client.transact(fn, account(0), contract="SlipLedger")


def test_non_validator_signature_reverts(ledger, signers):
    h = header_for(1, ZERO32, slips(2))
    outsider = N_VALIDATORS  # a spare key, not in the set, signing in validator 2's place
    qc = certify(ledger, h, signers, which=(0, 1, outsider))
    forged = QuorumCertificate(h, 0, qc.signatures[:2] + (CommitSignature(2, qc.signatures[2].signature),))
    with reverts("SlipLedgerInvalidSignature", account(2).address, account(outsider).address):
        ledger.commit(account(0), forged, addresses(signers))


def test_signatures_for_another_header_revert(ledger, signers):
    h = header_for(1, ZERO32, slips(2))
    other = header_for(1, ZERO32, slips(2, "other"))
    qc = certify(ledger, h, signers, sign_header=other)
    with pytest.raises(ContractRevert) as info:
        ledger.commit(account(0), qc, addresses(signers))
    assert info.value.error_name == "SlipLedgerInvalidSignature"
    signer, recovered = info.value.args_decoded
    assert signer in {account(i).address for i in (0, 1, 2)} and recovered != signer


def test_signatures_from_another_view_revert(ledger, signers):
    h = header_for(1, ZERO32, slips(2))
    qc = certify(ledger, h, signers, view=1)
    forged = QuorumCertificate(h, 0, qc.signatures)  # claims view 0 with view-1 votes
    with reverts("SlipLedgerInvalidSignature"):
        ledger.commit(account(0), forged, addresses(signers))


def test_out_of_order_header_reverts(ledger, signers):
    h = header_for(2, ZERO32, slips(2))
    with reverts("SlipLedgerOutOfOrder", 1, 2):
        ledger.commit(account(0), certify(ledger, h, signers), addresses(signers))


def test_header_not_extending_head_reverts(ledger, signers):
    h1 = header_for(1, ZERO32, slips(2))
    ledger.commit(account(0), certify(ledger, h1, signers), addresses(signers))
    bad_prev = keccak(text="elsewhere")
    h2 = header_for(2, bad_prev, slips(2, "2"))
    with reverts("SlipLedgerPrevHashMismatch", 2, header_struct_hash(h1), bad_prev):
        ledger.commit(account(0), certify(ledger, h2, signers), addresses(signers))


def test_forked_header_at_committed_height_reverts(ledger, signers):
    h1 = header_for(1, ZERO32, slips(2))
    ledger.commit(account(0), certify(ledger, h1, signers), addresses(signers))
    fork = header_for(1, ZERO32, slips(3, "fork"))
    with reverts("SlipLedgerForkedHeader", 1, header_struct_hash(h1), header_struct_hash(fork)):
        ledger.commit(account(0), certify(ledger, fork, signers), addresses(signers))


def test_commit_by_non_validator_reverts(ledger, signers, make_account):
    outsider = make_account("not-a-validator")
    h = header_for(1, ZERO32, slips(2))
    with reverts("SlipLedgerNotValidator", outsider.address):
        ledger.commit(outsider, certify(ledger, h, signers), addresses(signers))


# -- commitBlocks: consecutive certified headers in one transaction --------------------------------


def chain_of(ledger, signers, count: int, *, start: int = 1, prev: bytes = ZERO32, which=(0, 1, 2)) -> list:
    """Certificates of ``count`` consecutive headers from ``start`` on top of ``prev``."""
    qcs = []
    for height in range(start, start + count):
        h = header_for(height, prev, slips(2, f"batch/{height}"))
        qcs.append(certify(ledger, h, signers, which=which))
        prev = header_struct_hash(h)
    return qcs


def test_commit_blocks_anchors_a_batch_as_one_by_one(ledger, signers):
    qcs = chain_of(ledger, signers, 4)
    receipt = ledger.commit_many(account(2), qcs, addresses(signers))
    events = ledger.events(receipt, "BlockCommitted")
    assert events == [{"height": qc.header.height, "headerHash": header_struct_hash(qc.header)} for qc in qcs]
    assert ledger.head() == (4, header_struct_hash(qcs[-1].header))
    assert [ledger.header_hash_at(h) for h in range(1, 5)] == [header_struct_hash(qc.header) for qc in qcs]
    # the next single commit goes on top of the batch
    (nxt,) = chain_of(ledger, signers, 1, start=5, prev=header_struct_hash(qcs[-1].header))
    ledger.commit(account(0), nxt, addresses(signers))
    assert ledger.head()[0] == 5


def test_commit_blocks_with_a_forged_certificate_in_the_middle_commits_nothing(ledger, signers):
    qcs = chain_of(ledger, signers, 3)
    outsider = N_VALIDATORS
    forged = certify(ledger, qcs[1].header, signers, which=(0, 1, outsider))
    forged = QuorumCertificate(forged.header, 0,
                               forged.signatures[:2] + (CommitSignature(2, forged.signatures[2].signature),))
    with reverts("SlipLedgerInvalidSignature", account(2).address, account(outsider).address):
        ledger.commit_many(account(0), [qcs[0], forged, qcs[2]], addresses(signers))
    short = QuorumCertificate(qcs[1].header, 0, qcs[1].signatures[:2])
    with reverts("SlipLedgerInsufficientSignatures", 2, 3):
        ledger.commit_many(account(0), [qcs[0], short, qcs[2]], addresses(signers))
    # header 2 carrying header 3's certificate
    swapped = QuorumCertificate(qcs[1].header, 0, qcs[2].signatures)
    with reverts("SlipLedgerInvalidSignature"):
        ledger.commit_many(account(0), [qcs[0], swapped, qcs[2]], addresses(signers))
    assert ledger.head() == (0, ZERO32)


def test_commit_blocks_needs_consecutive_linked_headers(ledger, signers):
    qcs = chain_of(ledger, signers, 3)
    with reverts("SlipLedgerOutOfOrder", 2, 3):
        ledger.commit_many(account(0), [qcs[0], qcs[2]], addresses(signers))
    with reverts("SlipLedgerOutOfOrder", 1, 2):
        ledger.commit_many(account(0), qcs[1:], addresses(signers))
    # height 2 on another parent, certified as such
    other = header_for(2, keccak(text="elsewhere"), slips(2, "other"))
    with reverts("SlipLedgerPrevHashMismatch", 2, header_struct_hash(qcs[0].header), keccak(text="elsewhere")):
        ledger.commit_many(account(0), [qcs[0], certify(ledger, other, signers)], addresses(signers))


def test_commit_blocks_empty_or_mismatched_batch_reverts(ledger, signers):
    with reverts("SlipLedgerEmptyBatch"):
        ledger.commit_many(account(0), [], addresses(signers))
    qcs = chain_of(ledger, signers, 2)
    fn = ledger.commit_many_function(qcs, addresses(signers))
    headers, certificates, validators = fn.args
    bad = ledger.contract.functions.commitBlocks(headers, certificates[:1], validators)
    with reverts("SlipLedgerBatchMismatch", 2, 1):
        ledger.client.transact(bad, account(0), contract="SlipLedger")


def test_replayed_headers_in_a_batch_revert(ledger, signers):
    qcs = chain_of(ledger, signers, 2)
    ledger.commit_many(account(0), qcs, addresses(signers))
    with reverts("SlipLedgerOutOfOrder", 3, 1):
        ledger.commit_many(account(1), qcs, addresses(signers))
    (third,) = chain_of(ledger, signers, 1, start=3, prev=header_struct_hash(qcs[-1].header))
    with reverts("SlipLedgerOutOfOrder", 3, 2):  # a committed header leading new ones
        ledger.commit_many(account(1), [qcs[1], third], addresses(signers))
    with reverts("SlipLedgerOutOfOrder", 4, 3):  # the same header twice
        ledger.commit_many(account(1), [third, third], addresses(signers))
    ledger.commit_many(account(1), [third], addresses(signers))
    assert ledger.head()[0] == 3


def test_commit_blocks_by_a_non_validator_or_with_another_set_reverts(ledger, signers, make_account):
    qcs = chain_of(ledger, signers, 2)
    outsider = make_account("not-a-validator")
    with reverts("SlipLedgerNotValidator", outsider.address):
        ledger.commit_many(outsider, qcs, addresses(signers))
    forged_set = current_set()[:3] + [account(N_VALIDATORS).address]
    given = keccak(b"".join(bytes(12) + bytes.fromhex(a[2:]) for a in forged_set))
    current = keccak(b"".join(bytes(12) + bytes.fromhex(a[2:]) for a in current_set()))
    with reverts("SlipLedgerUnknownValidatorSet", given, current):
        ledger.commit_many(account(N_VALIDATORS), qcs, forged_set)


# -- validator set governance ---------------------------------------------------------------------
# Sets are lists of key numbers: validator-i is key(f"validator-{i}"); OLD is the deployed set.

OLD = [0, 1, 2, 3]
NEW = [0, 1, 2, 4]  # validator 3 replaced by spare 4
MAX_VALIDATORS = 256  # signer indexes are one byte


_SIGNERS: dict[int, EthSigner] = {}


def signer(i: int) -> EthSigner:
    if i not in _SIGNERS:
        _SIGNERS[i] = EthSigner(key(f"validator-{i}"))
    return _SIGNERS[i]


def addrs(ids) -> list[str]:
    return [account(i).address for i in ids]


def set_hash(ids) -> bytes:
    return keccak(b"".join(bytes(12) + bytes.fromhex(a[2:]) for a in addrs(ids)))  # abi.encodePacked pads


def quorum_of(n: int) -> int:
    return (n + (n - 1) // 3 + 2) // 2


def sign_as(digest: bytes, ids, positions=None, keys=None) -> list[tuple[int, bytes]]:
    """(position in the set, signature): by default the set's first quorum of members sign; ``keys``
    overrides which key signs at each position (a forgery)."""
    positions = list(range(quorum_of(len(ids)))) if positions is None else list(positions)
    keys = [ids[p] for p in positions] if keys is None else list(keys)
    return [(p, signer(k).sign(digest)) for p, k in zip(positions, keys)]


def schedule(ledger, new_ids, from_height, *, old_ids=OLD, by_current=None, by_new=None, sender=None,
             epoch=None, signed_epoch=None, signed_set=None):
    """Schedule ``new_ids`` from ``from_height``, signed by a quorum of ``old_ids`` and of ``new_ids`` unless
    ``by_current`` / ``by_new`` (callables digest → signatures) say otherwise."""
    epoch = ledger.latest_epoch()[0] + 1 if epoch is None else epoch
    digest = ledger.change_digest(epoch if signed_epoch is None else signed_epoch, from_height,
                                  addrs(new_ids if signed_set is None else signed_set))
    cur = sign_as(digest, old_ids) if by_current is None else by_current(digest)
    new = sign_as(digest, new_ids) if by_new is None else by_new(digest)
    who = account(old_ids[0]) if sender is None else sender
    return ledger.change_validators(who, addrs(new_ids), from_height, addrs(old_ids), cur, new, epoch=epoch)


def certified(ledger, header: BlockHeader, ids, positions=None, keys=None) -> QuorumCertificate:
    digest = commit_vote_digest(ledger.domain_separator(), 0, header.seq, header_struct_hash(header))
    return QuorumCertificate(header, 0, tuple(CommitSignature(p, sig) for p, sig in sign_as(digest, ids, positions, keys)))


def commit_with(ledger, header, ids, *, sender=None, positions=None, keys=None):
    who = account(ids[0]) if sender is None else sender
    return ledger.commit(who, certified(ledger, header, ids, positions, keys), addrs(ids))


def grow(ledger, heights) -> bytes:
    """Commit ``heights`` headers certified by OLD; returns the head hash."""
    prev = ledger.head()[1]
    for height in heights:
        h = header_for(height, prev, slips(1, str(height)))
        commit_with(ledger, h, OLD)
        prev = header_struct_hash(h)
    return prev


def test_validator_set_change_applies_from_its_stated_height(ledger, signers):
    prev = grow(ledger, [1])
    receipt = schedule(ledger, NEW, 3)
    (ev,) = ledger.events(receipt, "ValidatorSetChanged")
    assert ev == {"epoch": 1, "fromHeight": 3, "validators": addrs(NEW)}
    assert ledger.latest_epoch() == (1, 3)
    assert (ledger.epoch(), ledger.validators()) == (0, addrs(OLD))  # height 2 is still the old set's
    # Height 2 is below the change: the new set cannot certify it, the old set still does.
    h2 = header_for(2, prev, slips(1, "2"))
    with reverts("SlipLedgerUnknownValidatorSet", set_hash(NEW), set_hash(OLD)):
        commit_with(ledger, h2, NEW)
    commit_with(ledger, h2, OLD, sender=account(3))
    assert (ledger.epoch(), ledger.validators(), ledger.quorum()) == (1, addrs(NEW), 3)
    # Height 3 is the new set's: the old set, the removed validator and its key are refused.
    h3 = header_for(3, header_struct_hash(h2), slips(1, "3"))
    with reverts("SlipLedgerUnknownValidatorSet", set_hash(OLD), set_hash(NEW)):
        commit_with(ledger, h3, OLD)
    with reverts("SlipLedgerNotValidator", account(3).address):
        commit_with(ledger, h3, NEW, sender=account(3))
    with reverts("SlipLedgerInvalidSignature", account(4).address, account(3).address):
        commit_with(ledger, h3, NEW, positions=(1, 2, 3), keys=(1, 2, 3))
    commit_with(ledger, h3, NEW, positions=(1, 2, 3), sender=account(4))
    assert ledger.head() == (3, header_struct_hash(h3))
    assert ledger.validator_set_at(2) == (0, 1, addrs(OLD))
    assert ledger.validator_set_at(3) == (1, 3, addrs(NEW))
    assert ledger.validator_set_at(10**6) == (1, 3, addrs(NEW))
    assert ledger.client.call(ledger.contract.functions.isValidator(account(4).address))
    assert not ledger.client.call(ledger.contract.functions.isValidator(account(3).address))


def test_headers_below_the_change_are_still_verified_against_the_old_set(ledger, signers):
    grow(ledger, [1])
    schedule(ledger, NEW, 2)
    h1 = header_for(1, ZERO32, slips(1, "1"))
    receipt = commit_with(ledger, h1, OLD)  # idempotent re-submission, judged by height 1's set
    assert ledger.events(receipt, "BlockCommitted") == []
    with reverts("SlipLedgerUnknownValidatorSet", set_hash(NEW), set_hash(OLD)):
        commit_with(ledger, h1, NEW)
    fork = header_for(1, ZERO32, slips(2, "fork"))
    with reverts("SlipLedgerForkedHeader", 1, header_struct_hash(h1), header_struct_hash(fork)):
        commit_with(ledger, fork, OLD)


def test_validator_set_change_at_the_next_height_takes_effect_at_once(ledger, signers):
    prev = grow(ledger, [1, 2])
    schedule(ledger, NEW, 3)  # boundary: head + 1
    assert (ledger.epoch(), ledger.validators()) == (1, addrs(NEW))
    h3 = header_for(3, prev, slips(1, "3"))
    with reverts("SlipLedgerUnknownValidatorSet", set_hash(OLD), set_hash(NEW)):
        commit_with(ledger, h3, OLD)
    commit_with(ledger, h3, NEW)


def test_a_batch_across_a_validator_set_change_reverts(ledger, signers):
    schedule(ledger, NEW, 3)
    qcs = [certified(ledger, header_for(1, ZERO32, slips(1, "1")), OLD)]
    qcs.append(certified(ledger, header_for(2, header_struct_hash(qcs[0].header), slips(1, "2")), OLD))
    qcs.append(certified(ledger, header_for(3, header_struct_hash(qcs[1].header), slips(1, "3")), OLD))
    with reverts("SlipLedgerUnknownValidatorSet", set_hash(OLD), set_hash(NEW)):
        ledger.commit_many(account(0), qcs, addrs(OLD))
    new3 = certified(ledger, qcs[2].header, NEW)
    with reverts("SlipLedgerUnknownValidatorSet", set_hash(OLD), set_hash(NEW)):  # the new set's certificate, too
        ledger.commit_many(account(0), [*qcs[:2], new3], addrs(OLD))
    assert ledger.head()[0] == 0
    ledger.commit_many(account(0), qcs[:2], addrs(OLD))  # split at the change
    ledger.commit_many(account(4), [new3], addrs(NEW))
    assert ledger.head() == (3, header_struct_hash(qcs[2].header)) and ledger.epoch() == 1


def test_validator_change_height_in_the_past_reverts(ledger, signers):
    grow(ledger, [1, 2])
    for past in (0, 1, 2):  # 2 is the head: already certified by the old set
        with reverts("SlipLedgerInvalidChangeHeight", past, 3):
            schedule(ledger, NEW, past)


def test_validator_change_must_follow_the_latest_scheduled_change(ledger, signers):
    schedule(ledger, NEW, 5)
    third = [0, 1, 2, 5]
    with reverts("SlipLedgerUnknownValidatorSet", set_hash(OLD), set_hash(NEW)):  # the old set no longer decides
        schedule(ledger, third, 6, old_ids=OLD)
    with reverts("SlipLedgerInvalidChangeHeight", 5, 6):  # not after the pending change
        schedule(ledger, third, 5, old_ids=NEW)
    schedule(ledger, third, 6, old_ids=NEW)
    assert ledger.latest_epoch() == (2, 6)
    assert [ledger.validator_set_at(h)[:2] for h in (1, 4, 5, 6, 7)] == [(0, 1), (0, 1), (1, 5), (2, 6), (2, 6)]
    prev = grow(ledger, [1, 2, 3, 4])
    for height, ids in ((5, NEW), (6, third), (7, third)):
        h = header_for(height, prev, slips(1, str(height)))
        commit_with(ledger, h, ids)
        prev = header_struct_hash(h)
    assert ledger.epoch() == 2


def test_validator_change_signed_only_by_the_old_set_reverts(ledger, signers):
    with reverts("SlipLedgerInsufficientSignatures", 0, 3):
        schedule(ledger, NEW, 2, by_new=lambda d: [])
    # The new set's slots filled with old-set keys: validator 3 cannot vote for spare 4.
    with reverts("SlipLedgerInvalidSignature", account(4).address, account(3).address):
        schedule(ledger, NEW, 2, by_new=lambda d: sign_as(d, NEW, (1, 2, 3), keys=(1, 2, 3)))


def test_validator_change_signed_only_by_the_new_set_reverts(ledger, signers):
    with reverts("SlipLedgerInsufficientSignatures", 0, 3):
        schedule(ledger, NEW, 2, by_current=lambda d: [])
    # The old set's slots filled with new-set keys: spare 4 cannot vote for validator 3.
    with reverts("SlipLedgerInvalidSignature", account(3).address, account(4).address):
        schedule(ledger, NEW, 2, by_current=lambda d: sign_as(d, OLD, (1, 2, 3), keys=(1, 2, 4)))


def test_validator_change_new_set_needs_its_own_quorum(ledger, signers):
    grow(ledger, [1])
    bigger = [0, 1, 2, 3, 4, 5, 6]  # n = 7: quorum 5
    with reverts("SlipLedgerInsufficientSignatures", 4, 5):
        schedule(ledger, bigger, 2, by_new=lambda d: sign_as(d, bigger, (0, 1, 2, 3)))  # only the old members
    schedule(ledger, bigger, 2)
    assert ledger.quorum() == 5


def test_replayed_validator_change_reverts(ledger, signers):
    digest = ledger.change_digest(1, 2, addrs(NEW))
    first = (sign_as(digest, OLD), sign_as(digest, NEW))
    schedule(ledger, NEW, 2, by_current=lambda d: first[0], by_new=lambda d: first[1])
    schedule(ledger, OLD, 3, old_ids=NEW)  # back to the old set from height 3
    # Replaying epoch 1's certificate (old set → new set) would re-install the new set.
    with reverts("SlipLedgerUnexpectedEpoch", 3, 1):
        schedule(ledger, NEW, 2, epoch=1, by_current=lambda d: first[0], by_new=lambda d: first[1])
    # Re-signed for epoch 3 with the old height, it is still refused: the height is not after the latest change.
    with reverts("SlipLedgerInvalidChangeHeight", 2, 4):
        schedule(ledger, NEW, 2)


def test_validator_change_naming_another_epoch_reverts(ledger, signers):
    with reverts("SlipLedgerUnexpectedEpoch", 1, 2):
        schedule(ledger, NEW, 2, epoch=2)
    with reverts("SlipLedgerInvalidSignature"):  # signed for epoch 2, submitted as epoch 1
        schedule(ledger, NEW, 2, epoch=1, signed_epoch=2)


def test_validator_change_needs_quorum(ledger, signers):
    with reverts("SlipLedgerInsufficientSignatures", 2, 3):
        schedule(ledger, NEW, 2, by_current=lambda d: sign_as(d, OLD, (0, 1)))


def test_validator_change_signed_for_another_set_reverts(ledger, signers):
    with reverts("SlipLedgerInvalidSignature"):
        schedule(ledger, NEW, 2, signed_set=[0, 1, 2, 5])


def test_validator_change_by_outsider_reverts(ledger, signers, make_account):
    outsider = make_account("outsider")
    with reverts("SlipLedgerNotValidator", outsider.address):
        schedule(ledger, NEW, 2, sender=outsider)
    with reverts("SlipLedgerNotValidator", account(4).address):  # a member of the new set only
        schedule(ledger, NEW, 2, sender=account(4))


def test_validator_set_below_four_reverts(ledger, signers):
    with reverts("SlipLedgerInvalidValidatorSet", 3):
        schedule(ledger, [0, 1, 2], 2)


def test_validator_set_with_duplicate_reverts(ledger, signers):
    with reverts("SlipLedgerInvalidValidatorSet", 4):
        schedule(ledger, [0, 1, 2, 2], 2, by_new=lambda d: sign_as(d, [0, 1, 2, 2], (0, 1, 2)))


def test_validator_set_of_257_reverts(ledger, signers, session_client, deployer):
    too_many = list(range(MAX_VALIDATORS + 1))
    with reverts("SlipLedgerTooManyValidators", 257, 256):
        schedule(ledger, too_many, 2, by_new=lambda d: [])
    art = artifact("SlipLedger")
    with reverts("SlipLedgerTooManyValidators", 257, 256):
        session_client.deploy("SlipLedger", art.abi, art.bytecode, deployer, addrs(too_many))


def test_validator_set_of_256_certifies_with_signer_index_255(ledger, signers, chain, deployer):
    full = list(range(10, 10 + MAX_VALIDATORS))  # 256 fresh keys; the last one is signer index 255
    q = quorum_of(MAX_VALIDATORS)
    top = range(MAX_VALIDATORS - q, MAX_VALIDATORS)  # the last quorum of positions, up to 255
    prev = grow(ledger, [1])
    schedule(ledger, full, 2, by_new=lambda d: sign_as(d, full, top))
    assert ledger.quorum() == q == 171
    chain.transfer(deployer, account(full[-1]).address, 10**18)
    h = header_for(2, prev, slips(2))
    receipt = commit_with(ledger, h, full, positions=top, sender=account(full[-1]))
    (ev,) = ledger.events(receipt, "BlockCommitted")
    assert ev["height"] == 2


# -- the schedule against a ghost model (hypothesis state machine) ---------------------------------

SETS = [OLD, NEW, [1, 2, 3, 4, 5], [4, 5, 6, 7], [0, 1, 2, 3, 4, 5, 6]]


class ScheduleMachine(RuleBasedStateMachine):
    """Ghost model: ``schedule`` (first height, set) per epoch and the committed ``head``.  Changes at any
    height near the boundary, commits and re-submissions by any set either succeed on both or are refused
    with the error the model predicts; after every step the set of every height up to head + 3 agrees."""

    ledger: SlipLedgerAgent  # set by the test function

    def __init__(self) -> None:
        super().__init__()
        self.snapshot = self.ledger.client.snapshot()
        self.schedule = [(1, OLD)]
        self.head = 0
        self.headers: list[BlockHeader] = []

    def teardown(self) -> None:
        self.ledger.client.revert(self.snapshot)

    def set_at(self, height: int) -> tuple[int, int, list[int]]:
        epoch = max(e for e, (first, _) in enumerate(self.schedule) if first <= height)
        return (epoch, *self.schedule[epoch])

    @rule(offset=st.integers(-2, 3), ids=st.sampled_from(SETS))
    def change(self, offset: int, ids: list[int]) -> None:
        earliest = max(self.head, self.schedule[-1][0]) + 1
        from_height = max(0, earliest + offset - 1)
        latest = self.schedule[-1][1]
        if from_height < earliest:
            with reverts("SlipLedgerInvalidChangeHeight", from_height, earliest):
                schedule(self.ledger, ids, from_height, old_ids=latest)
            return
        (ev,) = self.ledger.events(schedule(self.ledger, ids, from_height, old_ids=latest), "ValidatorSetChanged")
        assert ev == {"epoch": len(self.schedule), "fromHeight": from_height, "validators": addrs(ids)}
        self.schedule.append((from_height, ids))

    @rule(ids=st.sampled_from(SETS))
    def commit(self, ids: list[int]) -> None:
        height = self.head + 1
        prev = header_struct_hash(self.headers[-1]) if self.headers else ZERO32
        h = header_for(height, prev, slips(1, f"sm/{height}"))
        expected = self.set_at(height)[2]
        if ids != expected:
            with reverts("SlipLedgerUnknownValidatorSet", set_hash(ids), set_hash(expected)):
                commit_with(self.ledger, h, ids)
            return
        commit_with(self.ledger, h, ids)
        self.head, self.headers = height, self.headers + [h]

    @precondition(lambda self: self.head > 0)
    @rule(data=st.data())
    def resubmit(self, data) -> None:
        height = data.draw(st.integers(1, self.head))
        receipt = commit_with(self.ledger, self.headers[height - 1], self.set_at(height)[2])
        assert self.ledger.events(receipt, "BlockCommitted") == []

    @invariant()
    def sets_agree(self) -> None:
        for height in range(1, self.head + 4):
            epoch, first, ids = self.set_at(height)
            assert self.ledger.validator_set_at(height) == (epoch, first, addrs(ids)), height
        epoch, _, ids = self.set_at(self.head + 1)
        assert (self.ledger.epoch(), self.ledger.validators(), self.ledger.quorum()) == (
            epoch, addrs(ids), quorum_of(len(ids)))
        assert self.ledger.latest_epoch() == (len(self.schedule) - 1, self.schedule[-1][0])


def test_validator_schedule_matches_the_model(ledger, chain, deployer):
    for i in range(8):
        chain.transfer(deployer, account(i).address, 10**19)
    ScheduleMachine.ledger = ledger
    run_state_machine_as_test(
        ScheduleMachine,
        settings=settings(max_examples=20, stateful_step_count=15, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck)),
    )


def test_an_inner_node_does_not_verify_as_a_slip(ledger, signers):
    """L-5: no raw-leaf entry point (``verifyLeaf`` is gone); ``verifySlip`` hashes the leaf itself, so the
    parent of two leaves with the proof minus its first node — which a raw-leaf check accepted — is refused."""
    from mbds_py.pbft.merkle import hash_pair, process_proof

    body = slips(4)
    h = header_for(1, ZERO32, body)
    ledger.commit(account(1), certify(ledger, h, signers), addresses(signers))
    leaves = [slip_leaf(s) for s in body]
    proof = merkle_proof(leaves, 0)
    inner = hash_pair(leaves[0], proof[0])
    assert process_proof(proof[1:], inner) == h.merkle_root
    assert not any(f.get("name") == "verifyLeaf" for f in ledger.contract.abi)
    assert not ledger.verify_slip(h, proof[1:], SlipEnvelope(inner, b""))
    assert not ledger.verify_slip(h, proof[1:], SlipEnvelope(leaves[0], proof[0]))
    selector = keccak(text="verifyLeaf((uint64,uint64,bytes32,uint64,address,bytes32,bytes),bytes32[],bytes32)")[:4]
    data = ledger.client.w3.codec.encode(["(uint64,uint64,bytes32,uint64,address,bytes32,bytes)", "bytes32[]", "bytes32"],
                                         [header_tuple(h), list(proof[1:]), inner])
    with pytest.raises(Exception):
        ledger.client.w3.eth.call({"to": ledger.address, "data": "0x" + (selector + data).hex()})


def test_anchor_gas_is_reported_for_a_128_slip_block(ledger, signers, record_property):
    """Records (does not assert a time) the anchoring gas per slip at 128 slips; see `mbds bench`."""
    h = header_for(1, ZERO32, slips(128))
    receipt = ledger.commit(account(0), certify(ledger, h, signers), addresses(signers))
    record_property("gas_per_slip", receipt["gasUsed"] / 128)
    assert receipt["gasUsed"] < 128 * 44_000  # far below one transaction per slip
