"""The pure consortium core: credit arithmetic, ranking and seats, replacement, slot clock,
canonical encodings, Merkle proofs, block building/verification, attestation sets."""

from __future__ import annotations

import random
import sys

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from mbds_py.consortium import (
    AccountSigner,
    AttestationSet,
    BlockFault,
    BlockHeader,
    ConsortiumSlip,
    CreditRecord,
    Dimensions,
    ElectionError,
    Incentives,
    InvalidBlock,
    InvalidSignature,
    Roster,
    SlotClock,
    SummaryItem,
    Weights,
    attest,
    build_block,
    credit_score,
    decode_body,
    elect,
    eligible_ranking,
    index_domain,
    ordered_signatures,
    rank,
    recover,
    verify_block,
)
from mbds_py.consortium.cid import cid_v0, cid_v0_digest
from mbds_py.consortium.election import AtnAdmitted, AtnRemoved, Candidate, RpnReplaced, is_valid_ranking
from mbds_py.consortium.merkle import MerkleTree, hash_pair, item_leaf, merkle_root, process_proof, verify_item
from mbds_py.errors import ConsensusError

ZERO32 = bytes(32)
DOMAIN = index_domain(43100, "0x" + "ab" * 20)


def ident(n: int) -> bytes:
    return n.to_bytes(32, "big")


def signer(label: str) -> AccountSigner:
    return AccountSigner(Account.from_key(keccak(text=label)))


# -- credit -----------------------------------------------------------------------------------------


def test_credit_score_weights_floor_and_clamp():
    d = Dimensions(9000, 7001, 3333)
    w = Weights(5000, 3000, 2000)
    # (9000*5000 + 7001*3000 + 3333*2000) // 10000 = (45_000_000 + 21_003_000 + 6_666_000) // 10000 = 7266
    assert credit_score(d, w) == 7266
    assert credit_score(d, w, reward_points=34, penalty_points=300) == 7000
    assert credit_score(d, w, penalty_points=10**9) == 0


def test_weights_must_sum_to_10000_bps():
    with pytest.raises(ValueError, match="sum to 10000"):
        Weights(5000, 3000, 1999)


def test_dimensions_are_bounded():
    with pytest.raises(ValueError, match=r"hospital_grade must be an integer in \[0, 10000\], got 10001"):
        Dimensions(10_001, 0, 0)


def test_incentive_points_per_service_and_offence():
    inc = Incentives(block_reward=3, attestation_reward=2, data_served_reward=1, invalid_block_penalty=900,
                     wrong_attestation_penalty=400, missed_slot_penalty=50, removal_threshold=10)
    from mbds_py.consortium import Offence, Service

    assert inc.reward_points(Service.BLOCK_PRODUCED, 2) == 6
    assert inc.reward_points(Service.DATA_SERVED, 7) == 7
    assert inc.penalty_points(Offence.WRONG_ATTESTATION) == 400


# -- ranking and election ---------------------------------------------------------------------------


def test_rank_orders_by_credit_then_lower_id():
    ranking = rank([Candidate(ident(5), 100), Candidate(ident(2), 300), Candidate(ident(9), 300),
                    Candidate(ident(1), 100), Candidate(ident(3), 200)])
    assert ranking == (ident(2), ident(9), ident(3), ident(1), ident(5))


def test_rank_rejects_duplicates():
    with pytest.raises(ElectionError, match="a ranking lists each institution once; duplicate IDs given"):
        rank([Candidate(ident(1), 1), Candidate(ident(1), 1)])


def test_eligible_ranking_skips_unwilling_suspended_and_below_threshold():
    w = Weights()
    records = [CreditRecord(ident(1), Dimensions(9000, 9000, 9000), willing=True),
               CreditRecord(ident(2), Dimensions(9000, 9000, 9000), willing=False),
               CreditRecord(ident(3), Dimensions(1000, 1000, 1000), willing=True),
               CreditRecord(ident(4), Dimensions(8000, 8000, 8000), willing=True, penalty_points=8000),
               CreditRecord(ident(5), Dimensions(9500, 9500, 9500), willing=True, suspended=True)]
    assert eligible_ranking(records, w, threshold=1500) == (ident(1),)
    assert not records[4].eligible(w, 0)


def test_is_valid_ranking_matches_the_contract_rule():
    credits = {ident(1): 5, ident(2): 5, ident(3): 4}
    assert is_valid_ranking([ident(1), ident(2), ident(3)], credits)
    assert not is_valid_ranking([ident(2), ident(1), ident(3)], credits)  # tie in the wrong order
    assert not is_valid_ranking([ident(3), ident(1)], credits)


def test_elect_with_paper_values_splits_101_20_reserve():
    ranking = tuple(ident(i) for i in range(1, 151))
    e = elect(ranking)  # K=101, M=20, reserve 20
    assert (len(e.rpn), len(e.atn), len(e.reserve)) == (101, 20, 20)
    assert e.rpn[0] == ident(1) and e.atn[0] == ident(102) and e.atn[-1] == ident(121) and e.reserve[0] == ident(122)


def test_elect_refuses_too_few_candidates():
    with pytest.raises(ElectionError, match="register more institutions"):
        elect([ident(i) for i in range(10)], rpn_count=8, atn_count=3)


# -- replacement -------------------------------------------------------------------------------------


def _roster() -> Roster:
    return Roster.from_election(elect([ident(i) for i in range(1, 11)], rpn_count=3, atn_count=3, reserve_capacity=3))


def test_rpn_replaced_by_best_atn_and_atn_refilled_from_reserve():
    roster = _roster()  # rpn 1,2,3  atn 4,5,6  reserve 7,8,9
    after, changes = roster.apply_removals([ident(2)], lambda i: i != ident(2))
    assert after.rpn == (ident(1), ident(4), ident(3))
    assert after.atn == (ident(5), ident(6), ident(7))
    assert changes == (RpnReplaced(ident(2), ident(4), 1), AtnAdmitted(ident(7)))


def test_ineligible_atn_is_skipped_on_promotion_and_reserve_skips_ineligible():
    roster = _roster()
    bad = {ident(1), ident(4), ident(7)}
    after, changes = roster.apply_removals([ident(1)], lambda i: i not in bad)
    assert after.rpn == (ident(5), ident(2), ident(3))
    assert after.atn == (ident(6), ident(8), ident(9))
    assert changes == (AtnRemoved(ident(4)), RpnReplaced(ident(1), ident(5), 0), AtnAdmitted(ident(8)),
                       AtnAdmitted(ident(9)))


def test_recovered_member_keeps_its_seat():
    roster = _roster()
    after, changes = roster.apply_removals([ident(2)], lambda i: True)
    assert after == roster and changes == ()


def test_rpn_seat_vacant_when_no_atn_left():
    roster = Roster((ident(1), ident(2)), (ident(3),), (), 1)
    after, changes = roster.apply_removals([ident(1), ident(3)], lambda i: i == ident(2))
    assert after.rpn == (ZERO32, ident(2)) and after.atn == ()
    assert changes == (AtnRemoved(ident(3)), RpnReplaced(ident(1), ZERO32, 0))


# -- slot clock ------------------------------------------------------------------------------------------


def test_slot_clock_schedule_and_rounds():
    clock = SlotClock(genesis_time=1000, slot_seconds=10, slots_per_round=5)
    assert clock.slot_at(1000) == 0 and clock.slot_at(1009) == 0 and clock.slot_at(1010) == 1
    assert clock.slot_start(7) == 1070 and clock.slot_end(7) == 1080
    assert clock.round_of(4) == 0 and clock.round_of(5) == 1 and clock.seat_of(12) == 2
    rpn = [ident(i) for i in range(1, 6)]
    assert clock.producer_of(12, rpn) == ident(3)
    assert clock.producer_of(1, [ident(1), ZERO32]) is None
    assert clock.next_slot_of(2, after_slot=12) == 17 and clock.next_slot_of(3, after_slot=12) == 13
    with pytest.raises(ValueError, match="time 999 is before the genesis time 1000"):
        clock.slot_at(999)


def test_missed_slots_mirror_settlement_across_a_round_boundary():
    clock = SlotClock(0, 10, 5)
    # registry in round 0, last block in slot 2, next commit in slot 7: 3,4 (round 0) and 5,6 (round 1)
    assert clock.missed_slots(next_unsettled=3, end=7, registry_round=0) == [3, 4, 5, 6]
    # whole rounds without any block are skipped
    assert clock.missed_slots(next_unsettled=3, end=17, registry_round=0) == [3, 4, 15, 16]


def test_missed_slots_are_bounded_per_call():
    """L-6: at most MAX_MISSED_SLOTS_PER_CALL per call; a commit forgives the rest, a report leaves it."""
    clock = SlotClock(0, 10, 20)
    assert clock.missed_slots(0, 19, 0) == list(range(16))  # a commit: 16..18 forgiven
    assert clock.missed_slots(0, 19, 0, forgive=False) == list(range(16))
    assert clock.missed_slots(16, 19, 0, forgive=False) == [16, 17, 18]
    # across a boundary a report stops at the end of the unsettled round
    assert clock.missed_slots(0, 25, 0, forgive=False) == list(range(16))
    assert clock.missed_slots(16, 25, 0, forgive=False) == [16, 17, 18, 19, 20, 21, 22, 23, 24]
    # a commit forgives the rest of the old round and charges the new one with what is left of the budget
    assert clock.missed_slots(10, 25, 0) == list(range(10, 20)) + [20, 21, 22, 23, 24, 25][:5]
    assert clock.missed_slots(0, 25, 0) == list(range(16))
    assert clock.missed_slots(0, 19, 0, bound=None) == list(range(19))


# -- encodings and hashes ---------------------------------------------------------------------------------


def _item(n: int, patient: int = 0) -> SummaryItem:
    rng = random.Random(n)
    return SummaryItem(patient_id=ident(1000 + patient), keywords=(rng.randbytes(80), rng.randbytes(80)),
                       hmi_hash=rng.randbytes(32), chain_id=43101, block_height=n, slip_id=rng.randbytes(32))


def _slip(n: int, origin_signer: AccountSigner, origin: bytes, items: int = 3) -> ConsortiumSlip:
    return ConsortiumSlip.create(origin, 1_700_000_000 + n, [_item(10 * n + i, patient=i % 2) for i in range(items)],
                                 DOMAIN, origin_signer)


def test_slip_struct_hash_equals_eth_account_eip712():
    origin = signer("hospital")
    slip = _slip(1, origin, ident(77))
    types = {
        "SummaryItem": [{"name": "patientId", "type": "bytes32"}, {"name": "keywords", "type": "bytes[]"},
                        {"name": "hmiHash", "type": "bytes32"}, {"name": "chainId", "type": "uint64"},
                        {"name": "blockHeight", "type": "uint64"}, {"name": "slipId", "type": "bytes32"}],
        "ConsortiumSlip": [{"name": "slipId", "type": "bytes32"}, {"name": "timestamp", "type": "uint64"},
                           {"name": "origin", "type": "bytes32"}, {"name": "items", "type": "SummaryItem[]"}],
    }
    message = {"slipId": slip.slip_id, "timestamp": slip.timestamp, "origin": slip.origin,
               "items": [{"patientId": i.patient_id, "keywords": list(i.keywords), "hmiHash": i.hmi_hash,
                          "chainId": i.chain_id, "blockHeight": i.block_height, "slipId": i.slip_id}
                         for i in slip.items]}
    domain = {"name": DOMAIN.name, "version": DOMAIN.version, "chainId": DOMAIN.chain_id,
              "verifyingContract": DOMAIN.verifying_contract}
    signable = encode_typed_data(domain_data=domain, message_types=types, message_data=message)
    assert signable.body == slip.struct_hash
    assert signable.header == DOMAIN.separator
    assert Account.recover_message(signable, signature=slip.signature) == origin.address
    assert slip.signer(DOMAIN) == origin.address


def test_body_and_header_round_trip_through_the_canonical_encoding():
    origin = signer("hospital")
    slips = [_slip(n, origin, ident(77)) for n in range(4)]
    block = build_block(slips, prev=None, slot=3, producer=ident(9), timestamp=1_700_000_031,
                        cid_of=lambda body: keccak(body))
    assert decode_body(block.body()) == tuple(slips)
    assert BlockHeader.decode(block.header.encode()) == block.header
    assert block.header.height == 1 and block.header.prev_hash == ZERO32 and block.header.item_count == 12


def test_cid_v0_digest_round_trip():
    digest = keccak(b"body")
    cid = cid_v0(digest)
    assert cid.startswith("Qm") and len(cid) == 46
    assert cid_v0_digest(cid) == digest
    with pytest.raises(ValueError, match="'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku' is not a CIDv0"):
        cid_v0_digest("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")


def test_merkle_proofs_verify_for_every_leaf_and_odd_sizes():
    slip = keccak(b"slip")
    for n in (1, 2, 3, 7, 10):
        items = [keccak(ident(i)) for i in range(n)]
        leaves = [item_leaf(slip, i, h) for i, h in enumerate(items)]
        tree = MerkleTree(leaves)
        for i, h in enumerate(items):
            assert verify_item(tree.proof(leaves[i]), tree.root, slip, i, h)
        assert not verify_item(tree.proof(leaves[0]), tree.root, slip, 0, keccak(b"other"))
    assert merkle_root([]) == ZERO32


def test_an_inner_node_does_not_verify_as_an_item():
    """L-5 off chain: leaves are double-hashed (domain-separated from 64-byte inner nodes) and checked
    only from the item's fields, so the parent of two leaves with the shorter proof is refused."""
    slip = keccak(b"slip")
    items = [keccak(ident(i)) for i in range(4)]
    leaves = [item_leaf(slip, i, h) for i, h in enumerate(items)]
    tree = MerkleTree(leaves)
    proof = tree.proof(leaves[0])
    inner = hash_pair(leaves[0], proof[0])
    assert process_proof(proof[1:], inner) == tree.root  # a raw-leaf check would accept it
    assert not verify_item(proof[1:], tree.root, inner, 0, ZERO32)
    assert not verify_item(proof[1:], tree.root, leaves[0], 0, proof[0])
    assert item_leaf(slip, 1, items[1]) == keccak(keccak(slip + (1).to_bytes(32, "big") + items[1]))


# -- build and verify ------------------------------------------------------------------------------------


class _Fixture:
    def __init__(self):
        self.origin = signer("hospital-a")
        self.origin_id = ident(77)
        self.clock = SlotClock(genesis_time=1_700_000_000, slot_seconds=10, slots_per_round=3)
        self.rpn = [ident(1), ident(2), ident(3)]
        self.slips = [_slip(n, self.origin, self.origin_id) for n in range(3)]
        self.cid_of = keccak

    def accounts(self, origin: bytes) -> str | None:
        return self.origin.address if origin == self.origin_id else None

    def block(self, slips=None, **kw):
        args = dict(prev=None, slot=4, producer=ident(2), timestamp=1_700_000_042, cid_of=self.cid_of)
        args.update(kw)
        return build_block(self.slips if slips is None else slips, **args)

    def verify(self, block, **kw):
        args = dict(prev=None, clock=self.clock, rpn=self.rpn, domain=DOMAIN, account_of=self.accounts,
                    cid_of=self.cid_of)
        args.update(kw)
        verify_block(block, **args)


@pytest.fixture()
def fx() -> _Fixture:
    return _Fixture()


def test_build_then_verify_accepts_an_honest_block(fx):
    block = fx.block()
    fx.verify(block)
    assert block.patient_ids == (ident(1000), ident(1001))
    proof = block.item_proof(1, 2)
    assert verify_item(proof.proof, block.header.merkle_root, proof.slip_hash, proof.index, proof.item_hash)
    nxt = fx.block(prev=block.header, slot=5, producer=ident(3), timestamp=1_700_000_051)
    fx.verify(nxt, prev=block.header)


def _fault(fx, block, fault: BlockFault, **kw):
    with pytest.raises(InvalidBlock) as info:
        fx.verify(block, **kw)
    assert info.value.fault is fault, str(info.value)
    assert isinstance(info.value, ConsensusError) and isinstance(info.value, ValueError)


def _with(block, **fields):
    from dataclasses import replace

    return type(block)(replace(block.header, **fields), block.slips)


def test_verify_rejects_wrong_root(fx):
    _fault(fx, _with(fx.block(), merkle_root=keccak(b"forged root")), BlockFault.WRONG_ROOT)


def test_verify_rejects_out_of_turn_producer(fx):
    _fault(fx, fx.block(producer=ident(3)), BlockFault.WRONG_PRODUCER)


def test_verify_rejects_sequence_and_time_faults(fx):
    _fault(fx, _with(fx.block(), height=2), BlockFault.WRONG_HEIGHT)
    _fault(fx, _with(fx.block(), prev_hash=keccak(b"x")), BlockFault.WRONG_PREV_HASH)
    _fault(fx, fx.block(timestamp=1_700_000_055), BlockFault.TIMESTAMP_OUT_OF_SLOT)
    _fault(fx, fx.block(), BlockFault.WRONG_SLOT, now=1_700_000_061)


def test_verify_rejects_forged_slip_signature(fx):
    forger = signer("forger")
    forged = fx.slips[:2] + [ConsortiumSlip.create(fx.origin_id, 1, [_item(99)], DOMAIN, forger)]
    _fault(fx, fx.block(forged), BlockFault.BAD_SLIP_SIGNATURE)


def test_verify_rejects_forged_item_by_cross_chain_check(fx):
    fake = fx.slips[1].items[0]
    _fault(fx, fx.block(), BlockFault.FORGED_ITEM, check_item=lambda item: item != fake)


def test_verify_rejects_counts_patients_cid_duplicates_and_sizes(fx):
    _fault(fx, _with(fx.block(), item_count=8), BlockFault.WRONG_ITEM_COUNT)
    _fault(fx, _with(fx.block(), patients_hash=keccak(b"")), BlockFault.WRONG_PATIENTS)
    _fault(fx, _with(fx.block(), body_cid=keccak(b"other")), BlockFault.WRONG_BODY_CID)
    _fault(fx, fx.block(fx.slips + fx.slips[:1]), BlockFault.DUPLICATE_SLIP)
    _fault(fx, fx.block(), BlockFault.TOO_MANY_SLIPS, max_slips=2)
    big = ConsortiumSlip.create(fx.origin_id, 5, [_item(i) for i in range(11)], DOMAIN, fx.origin)
    _fault(fx, fx.block([big]), BlockFault.BAD_SLIP)


def test_empty_block_has_zero_root_and_verifies(fx):
    block = fx.block([])
    assert block.header.merkle_root == ZERO32 and block.header.item_count == 0
    assert block.header.patients_hash == keccak(b"")
    fx.verify(block)


# -- signatures --------------------------------------------------------------------------------------------


def test_attestation_set_ignores_duplicates_and_refuses_foreign_signers(fx):
    block = fx.block()
    atns = [signer(f"atn-{i}") for i in range(3)]
    votes = AttestationSet(block.header.digest(DOMAIN), frozenset(a.address for a in atns))
    assert votes.add(attest(block.header, DOMAIN, atns[0]))
    assert not votes.add(attest(block.header, DOMAIN, atns[0]))
    assert votes.add(attest(block.header, DOMAIN, atns[2]))
    assert len(votes) == 2
    outsider = signer("outsider")
    with pytest.raises(InvalidSignature, match=f"{outsider.address} is not an attester of this round"):
        votes.add(attest(block.header, DOMAIN, outsider))
    other = _with(block, merkle_root=keccak(b"y")).header
    with pytest.raises(InvalidSignature, match=f"signature does not recover to {atns[1].address}"):
        votes.add(attest(other, DOMAIN, atns[1]))
    sigs = votes.signatures()
    assert [recover(block.header.digest(DOMAIN), s) for s in sigs] == sorted(
        [atns[0].address, atns[2].address], key=lambda a: int(a, 16))


def test_ordered_signatures_sort_by_signer_address(fx):
    block = fx.block()
    atts = [attest(block.header, DOMAIN, signer(f"atn-{i}")) for i in range(5)]
    ordered = ordered_signatures(reversed(atts))
    signers = [int(recover(block.header.digest(DOMAIN), s), 16) for s in ordered]
    assert signers == sorted(signers)


def test_recover_refuses_high_s_and_bad_v():
    s = signer("x")
    digest = keccak(b"d")
    sig = s.sign_digest(digest)
    assert recover(digest, sig) == s.address
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high = sig[:32] + (n - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big") + bytes([sig[64] ^ 1])
    assert recover(digest, high) is None
    assert recover(digest, sig[:64] + b"\x05") is None


def test_core_does_not_import_web3():
    import subprocess

    code = "import sys, mbds_py.consortium; sys.exit('web3' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
