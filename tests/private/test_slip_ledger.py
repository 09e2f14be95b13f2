"""SlipLedger: certified headers in sequence, slip proofs, validator-set governance."""

from __future__ import annotations

import pytest
from eth_account import Account
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
    assert ev == {"height": 1, "headerHash": header_struct_hash(h), "merkleRoot": h.merkle_root}
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


# -- validator set governance ---------------------------------------------------------------------


def change_signatures(ledger, new_set: list[str], which, signers, epoch: int):
    from eth_account.messages import encode_typed_data

    domain = {"name": "MBDS SlipLedger", "version": "1", "chainId": ledger.client.chain_id,
              "verifyingContract": ledger.address}
    types = {"ValidatorSetChange": [{"name": "epoch", "type": "uint64"}, {"name": "validators", "type": "address[]"}]}
    msg = encode_typed_data(domain, types, {"epoch": epoch, "validators": new_set})
    return [(i, Account.sign_message(msg, key(f"validator-{i}")).signature) for i in which]


def test_validator_set_changes_with_quorum_and_event(ledger, signers):
    new_set = [account(i).address for i in (0, 1, 2, 4)]  # validator 3 replaced by spare 4
    receipt = ledger.change_validators(account(0), new_set, current_set(), change_signatures(ledger, new_set, (0, 1, 3), signers, 1))
    (ev,) = ledger.events(receipt, "ValidatorSetChanged")
    assert ev == {"epoch": 1, "validators": new_set}
    assert ledger.epoch() == 1 and ledger.validators() == new_set
    new_vals = [s.address for s in (signers[0], signers[1], signers[2], signers[4])]
    h = header_for(1, ZERO32, slips(2))
    digest = commit_vote_digest(ledger.domain_separator(), 0, h.seq, header_struct_hash(h))

    def qc_from(pairs):  # (index in the new set, key that signs)
        return QuorumCertificate(h, 0, tuple(CommitSignature(idx, signers[who].sign(digest)) for idx, who in pairs))

    with reverts("SlipLedgerUnknownValidatorSet"):  # the old set is no longer accepted
        ledger.commit(account(0), qc_from([(1, 1), (2, 2), (3, 3)]), addresses(signers))
    with reverts("SlipLedgerInvalidSignature", account(4).address, account(3).address):  # removed key: no vote
        ledger.commit(account(0), qc_from([(1, 1), (2, 2), (3, 3)]), new_vals)
    ledger.commit(account(4), qc_from([(1, 1), (2, 2), (3, 4)]), new_vals)
    with reverts("SlipLedgerNotValidator", account(3).address):
        ledger.commit(account(3), qc_from([(1, 1), (2, 2), (3, 4)]), new_vals)


def test_validator_change_needs_quorum(ledger, signers):
    new_set = [account(i).address for i in (0, 1, 2, 4)]
    with reverts("SlipLedgerInsufficientSignatures", 2, 3):
        ledger.change_validators(account(0), new_set, current_set(), change_signatures(ledger, new_set, (0, 1), signers, 1))


def test_validator_change_signed_for_another_set_reverts(ledger, signers):
    new_set = [account(i).address for i in (0, 1, 2, 4)]
    other = [account(i).address for i in (0, 1, 2, 5)]
    with reverts("SlipLedgerInvalidSignature"):
        ledger.change_validators(account(0), new_set, current_set(), change_signatures(ledger, other, (0, 1, 2), signers, 1))


def test_validator_change_by_outsider_reverts(ledger, signers, make_account):
    outsider = make_account("outsider")
    new_set = [account(i).address for i in (0, 1, 2, 4)]
    with reverts("SlipLedgerNotValidator", outsider.address):
        ledger.change_validators(outsider, new_set, current_set(), change_signatures(ledger, new_set, (0, 1, 2), signers, 1))


def test_validator_set_below_four_reverts(ledger, signers):
    new_set = [account(i).address for i in (0, 1, 2)]
    with reverts("SlipLedgerInvalidValidatorSet", 3):
        ledger.change_validators(account(0), new_set, current_set(), change_signatures(ledger, new_set, (0, 1, 2), signers, 1))


def test_validator_set_with_duplicate_reverts(ledger, signers):
    new_set = [account(i).address for i in (0, 1, 2, 2)]
    with reverts("SlipLedgerInvalidValidatorSet", 4):
        ledger.change_validators(account(0), new_set, current_set(), change_signatures(ledger, new_set, (0, 1, 2), signers, 1))


def test_anchor_gas_is_reported_for_a_128_slip_block(ledger, signers, record_property):
    """Records (does not assert a time) the anchoring gas per slip at 128 slips; see `mbds bench`."""
    h = header_for(1, ZERO32, slips(128))
    receipt = ledger.commit(account(0), certify(ledger, h, signers), addresses(signers))
    record_property("gas_per_slip", receipt["gasUsed"] / 128)
    assert receipt["gasUsed"] < 128 * 44_000  # far below one transaction per slip
