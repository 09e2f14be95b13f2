"""ConsortiumIndex: DPoS-scheduled, ATN-attested blocks — happy paths with decoded events,
every refusal with its custom error, byzantine producers and attesters, missed slots,
replacement at round boundaries, Python/contract hash equality, gas per summary item."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from mbds_py.consortium import (
    BlockFault,
    ConsortiumBlock,
    ConsortiumSlip,
    InvalidBlock,
    Offence,
    Service,
    attest,
    ordered_signatures,
    recover,
    reject,
    verify_block,
)
from mbds_py.consortium.agents import ConsortiumIndexAgent
from mbds_py.consortium.blocks import patients_hash
from mbds_py.consortium.cid import default_cid_of
from mbds_py.consortium.merkle import hash_pair, process_proof, verify_item
from mbds_py.identity import Participant
from tests.conftest import peks_key, pre_key
from tests.consortium._consortium_support import Net, account, fund, gas_report, reverts

ZERO32 = bytes(32)
K, M, QUORUM = 5, 4, 3


# -- helpers ---------------------------------------------------------------------------------------------


def origins(net: Net):
    """Bridge institutions that sign slips (reserve ranks: not in the roster)."""
    return net.by_order()[9:12]


def sorted_by_address(insts):
    return sorted(insts, key=lambda i: int(i.account.address, 16))


def honest_verify(net: Net, block: ConsortiumBlock, prev=None, **kw) -> None:
    verify_block(block, prev=prev, clock=net.index.clock(), rpn=net.credit.rpn_set(), domain=net.index.domain(),
                 account_of=net.account_of, **kw)


def produce(net: Net, slot: int, *, prev=None, slips=None, n_slips: int = 2, seed: int = 1):
    """The scheduled RPN builds a block in ``slot``, three ATNs verify and attest, the RPN commits it."""
    net.goto_slot(slot)
    slips = net.slips(origins(net), n_slips, 3, patients=4, seed=seed) if slips is None else slips
    block = net.build(slips, slot, prev=prev)
    honest_verify(net, block, prev)
    atns = net.atn_insts()[:QUORUM]
    receipt = net.index.commit(net.inst(block.header.producer).account, block, net.attestations(block, atns))
    return block, receipt


def rpn(net: Net, seat: int):
    return net.inst(net.credit.rpn_set()[seat])


# -- happy path -------------------------------------------------------------------------------------------


def test_commit_block_emits_header_patients_and_rewards(net):
    block, receipt = produce(net, 0)
    h = block.header
    atn_ids = [a.id for a in sorted_by_address(net.atn_insts()[:QUORUM])]
    (ev,) = net.index.events(receipt, "BlockCommitted")
    assert ev == {"height": 1, "headerHash": h.block_hash, "producer": rpn(net, 0).id, "header": h,
                  "attesters": atn_ids}
    patients = [(e["patientId"], e["height"]) for e in net.index.events(receipt, "PatientIndexed")]
    assert patients == [(p, 1) for p in block.patient_ids] and len(patients) == 4
    rewards = [(e["id"], e["service"], e["points"]) for e in net.credit.events(receipt, "Rewarded")]
    assert rewards == [(rpn(net, 0).id, int(Service.BLOCK_PRODUCED), 2)] + [
        (a, int(Service.BLOCK_ATTESTED), 1) for a in atn_ids]
    assert net.index.head() == (1, h.block_hash)
    assert net.index.header_hash_at(1) == h.block_hash
    assert net.index.next_unsettled_slot() == 1
    assert net.index.events(receipt, "SlotMissed") == []


def test_python_hashes_and_digests_equal_the_contract(net):
    block, _ = produce(net, 0)
    h, domain = block.header, net.index.domain()
    assert (domain.name, domain.version, domain.chain_id, domain.verifying_contract) == (
        "MBDS ConsortiumIndex", "1", net.client.chain_id, net.index.address)
    assert net.index.domain_separator() == domain.separator
    assert net.index.hash_header(h) == h.block_hash
    assert net.index.header_digest(h) == h.digest(domain)
    assert net.index.rejection_digest(h.block_hash) == h.rejection_digest(domain)
    slip = block.slips[1]
    assert net.index.item_leaf(slip.struct_hash, 2, slip.items[2].struct_hash) == block.item_proof(1, 2).leaf
    # an independent EIP-712 implementation agrees on the header digest
    types = {"ConsortiumBlockHeader": [
        {"name": "height", "type": "uint64"}, {"name": "prevHash", "type": "bytes32"},
        {"name": "timestamp", "type": "uint64"}, {"name": "slot", "type": "uint64"},
        {"name": "producer", "type": "bytes32"}, {"name": "merkleRoot", "type": "bytes32"},
        {"name": "itemCount", "type": "uint32"}, {"name": "patientsHash", "type": "bytes32"},
        {"name": "bodyCid", "type": "bytes32"}]}
    message = dict(zip([f["name"] for f in types["ConsortiumBlockHeader"]], h.as_abi()))
    signable = encode_typed_data(
        domain_data={"name": domain.name, "version": domain.version, "chainId": domain.chain_id,
                     "verifyingContract": domain.verifying_contract},
        message_types=types, message_data=message)
    assert signable.body == h.block_hash and signable.header == domain.separator
    sig = attest(h, domain, net.atn_insts()[0].signer).signature
    assert Account.recover_message(signable, signature=sig) == net.atn_insts()[0].account.address


def test_verify_item_proves_items_of_a_committed_block(net):
    block, _ = produce(net, 0, n_slips=3)
    for s, i in [(0, 0), (1, 2), (2, 1)]:
        p = block.item_proof(s, i)
        assert net.index.verify_item(block.header, p.proof, p.slip_hash, p.index, p.item_hash)
        assert verify_item(p.proof, block.header.merkle_root, p.slip_hash, p.index, p.item_hash)
    p = block.item_proof(0, 0)
    assert not net.index.verify_item(block.header, p.proof, p.slip_hash, p.index, keccak(b"forged item"))
    assert not net.index.verify_item(block.header, p.proof, p.slip_hash, p.index + 1, p.item_hash)
    uncommitted = replace(block.header, merkle_root=keccak(b"other"))
    with reverts("ConsortiumIndexHeaderNotCommitted", 1, uncommitted.block_hash):
        net.index.verify_item(uncommitted, p.proof, p.slip_hash, p.index, p.item_hash)


def test_verify_item_refuses_an_inner_node_posing_as_a_leaf(net):
    """L-5: with a raw bytes32 leaf, the parent of two leaves and the proof minus its first node verified.
    Now the leaf is hashed from the item on both sides, and no raw-leaf entry point is left."""
    block, _ = produce(net, 0, n_slips=3)
    p = block.item_proof(0, 0)
    inner = hash_pair(p.leaf, p.proof[0])
    root = block.header.merkle_root
    assert process_proof(p.proof[1:], inner) == root  # what a raw-leaf verifier accepted
    # the attacker's only handles are the item's fields: the inner node cannot be passed as the leaf
    for slip_hash, index, item_hash in [(inner, 0, ZERO32), (p.leaf, 0, p.proof[0]), (ZERO32, 0, inner)]:
        assert not net.index.verify_item(block.header, p.proof[1:], slip_hash, index, item_hash)
        assert not verify_item(p.proof[1:], root, slip_hash, index, item_hash)
    # the old raw-leaf function is gone: its selector hits no function (the contract has no fallback)
    old = net.index.contract.w3.codec.encode(
        ["(uint64,bytes32,uint64,uint64,bytes32,bytes32,uint32,bytes32,bytes32)", "bytes32[]", "bytes32"],
        [block.header.as_abi(), list(p.proof[1:]), inner])
    selector = keccak(text="verifyItem((uint64,bytes32,uint64,uint64,bytes32,bytes32,uint32,bytes32,bytes32),"
                           "bytes32[],bytes32)")[:4]
    with pytest.raises(Exception):
        net.client.w3.eth.call({"to": net.index.address, "data": "0x" + (selector + old).hex()})


def test_blocks_chain_and_the_proxy_finds_a_patient_by_log_filter(net):
    b1, _ = produce(net, 0, seed=1)
    b2, _ = produce(net, 1, prev=b1.header, seed=2)
    b3, _ = produce(net, 2, prev=b2.header, seed=1)  # seed 1 again: same patient IDs as block 1
    assert b2.header.prev_hash == b1.header.block_hash
    assert net.index.head() == (3, b3.header.block_hash)
    followed = net.index.committed_blocks()
    assert [c.header for c in followed] == [b1.header, b2.header, b3.header]
    patient = b1.patient_ids[0]
    assert net.index.patient_heights(patient) == [1, 3]
    assert net.index.patient_heights(b2.patient_ids[0]) == [2]


def test_producer_schedule_follows_rpn_seats(net):
    seats = net.credit.rpn_set()
    for slot in range(2 * K):
        assert net.index.producer_of(slot) == (seats[slot % K], net.account_of(seats[slot % K]))
    clock = net.index.clock()
    assert (clock.slot_seconds, clock.slots_per_round) == (3600, K)
    assert net.index.quorum() == QUORUM and net.index.current_slot() == 0


def test_empty_block_is_accepted(net):
    block, receipt = produce(net, 0, slips=[])
    assert block.header.item_count == 0 and net.index.events(receipt, "PatientIndexed") == []


# -- refusals ----------------------------------------------------------------------------------------------


@pytest.fixture()
def pending(net):
    """An honest block for slot 0 with three ATN attestations, not yet committed."""
    block = net.build(net.slips(origins(net), 2, 3, patients=4), 0)
    return block, net.attestations(block, net.atn_insts()[:QUORUM])


def test_commit_out_of_turn_reverts(net, pending):
    block, sigs = pending
    byzantine = rpn(net, 1)
    with reverts("ConsortiumIndexNotScheduledProducer", 0, rpn(net, 0).account.address, byzantine.account.address):
        net.index.commit(byzantine.account, block, sigs)


def test_commit_by_an_atn_reverts(net, pending):
    block, sigs = pending
    atn = net.atn_insts()[0]
    with reverts("ConsortiumIndexNotScheduledProducer", 0, rpn(net, 0).account.address, atn.account.address):
        net.index.commit(atn.account, block, sigs)


def test_commit_reverts_for_wrong_producer_id(net):
    block = net.build([], 0, producer=rpn(net, 1).id)
    sigs = net.attestations(block, net.atn_insts()[:QUORUM])
    with reverts("ConsortiumIndexWrongProducer", 0, rpn(net, 0).id, rpn(net, 1).id):
        net.index.commit(rpn(net, 0).account, block, sigs)


def test_commit_reverts_for_a_slot_that_is_not_now(net):
    block = net.build([], 1, producer=rpn(net, 0).id)
    with reverts("ConsortiumIndexWrongSlot", 1, 0):
        net.index.commit(rpn(net, 0).account, block, net.attestations(block, net.atn_insts()[:QUORUM]))


def _commit_header(net, header, patients=None, signers=None):
    sigs = net.attestations(header, signers or net.atn_insts()[:QUORUM])
    return net.index.commit_block(rpn(net, 0).account, header, [] if patients is None else patients, sigs)


def test_commit_reverts_for_wrong_height_and_prev_hash(net):
    h = net.build([], 0).header
    with reverts("ConsortiumIndexWrongHeight", 1, 2):
        _commit_header(net, replace(h, height=2), patients=[])
    bad_prev = keccak(b"fork")
    with reverts("ConsortiumIndexWrongPrevHash", ZERO32, bad_prev):
        _commit_header(net, replace(h, prev_hash=bad_prev), patients=[])


def test_commit_reverts_for_timestamp_outside_the_slot(net):
    h = net.build([], 0).header
    genesis = net.index.clock().genesis_time
    with reverts("ConsortiumIndexTimestampOutOfSlot"):
        _commit_header(net, replace(h, timestamp=genesis - 1), patients=[])
    future = net.now() + 1000
    with reverts("ConsortiumIndexTimestampOutOfSlot") as info:
        _commit_header(net, replace(h, timestamp=future), patients=[])
    assert info.value.args_decoded[:2] == (future, genesis)


def test_commit_reverts_for_unsorted_or_mismatched_patients(net, pending):
    block, sigs = pending
    ids = list(block.patient_ids)
    swapped = [ids[1], ids[0]] + ids[2:]
    with reverts("ConsortiumIndexPatientsNotSorted", 1, ids[0]):
        net.index.commit_block(rpn(net, 0).account, block.header, swapped, sigs)
    with reverts("ConsortiumIndexPatientsMismatch", block.header.patients_hash, patients_hash(ids[:-1])):
        net.index.commit_block(rpn(net, 0).account, block.header, ids[:-1], sigs)


def test_commit_reverts_with_fewer_attestations_than_quorum(net, pending):
    block, sigs = pending
    with reverts("ConsortiumIndexInsufficientAttestations", 2, 3):
        net.index.commit(rpn(net, 0).account, block, sigs[:2])


def test_commit_reverts_for_unsorted_or_duplicate_signers(net, pending):
    block, sigs = pending
    digest = block.header.digest(net.index.domain())
    signers = [recover(digest, s) for s in sigs]
    with reverts("ConsortiumIndexSignersNotSorted", 1, signers[0]):
        net.index.commit(rpn(net, 0).account, block, [sigs[1], sigs[0], sigs[2]])
    with reverts("ConsortiumIndexSignersNotSorted", 1, signers[0]):
        net.index.commit(rpn(net, 0).account, block, [sigs[0], sigs[0], sigs[1]])


def test_commit_reverts_for_a_signer_without_atn_seat(net, pending):
    block, _ = pending
    signers = net.atn_insts()[:2] + [rpn(net, 3)]
    sigs = net.attestations(block, signers)
    with reverts("ConsortiumIndexNotAttester", rpn(net, 3).account.address):
        net.index.commit(rpn(net, 0).account, block, sigs)


def test_commit_reverts_for_a_malformed_signature(net, pending):
    block, sigs = pending
    with reverts("ConsortiumIndexInvalidSignature", 0):
        net.index.commit(rpn(net, 0).account, block, [sigs[0][:64]] + sigs[1:])


def test_attestations_do_not_carry_over_to_a_tampered_header(net, pending):
    """A producer that swaps the root after collecting attestations presents signatures of nobody."""
    block, sigs = pending
    tampered = replace(block.header, merkle_root=keccak(b"forged root"))
    recovered = [recover(tampered.digest(net.index.domain()), s) for s in sigs]
    # the contract's order of checks: ascending signers first, then ATN seats
    expected = ("ConsortiumIndexNotAttester", recovered[0])
    for i in range(1, len(recovered)):
        if int(recovered[i], 16) <= int(recovered[i - 1], 16):
            expected = ("ConsortiumIndexSignersNotSorted", i, recovered[i])
            break
    with reverts(*expected):
        net.index.commit_block(rpn(net, 0).account, tampered, list(block.patient_ids), sigs)


# -- H-1: rounds follow the consortium's own slot clock ------------------------------------------------------


@pytest.mark.parametrize("who", ["reporter", "governor", "rpn"])
def test_advance_round_reverts_for_anyone_but_the_clock(net, who):
    """H-1: a reporter, a health authority or a producer calling the registry's advanceRound is refused."""
    net.credit.set_reporter(net.governor, net.reporter.address, True)
    attacker = {"reporter": net.reporter, "governor": net.governor.lead, "rpn": rpn(net, 0).account}[who]
    with reverts("CreditRegistryNotClock", attacker.address):
        net.client.transact(net.credit.contract.functions.advanceRound(), attacker, contract="CreditRegistry")
    assert net.credit.round() == 0


def test_a_reporter_cannot_freeze_the_consortium_with_round_2_pow_64_minus_1(net):
    """H-1: the old ``advanceRound(uint64)`` with 2^64-1 froze every commit, report and election for good;
    no function takes a round any more, the call reverts, and blocks keep being committed."""
    assert [f["name"] for f in net.credit.contract.abi if f.get("name") == "advanceRound"] == ["advanceRound"]
    assert [f["inputs"] for f in net.credit.contract.abi if f.get("name") == "advanceRound"] == [[]]
    w3, attacker = net.client.w3, account("legacy-reporter")
    fund(net.client, attacker.address)
    net.credit.set_reporter(net.governor, attacker.address, True)
    legacy = keccak(text="advanceRound(uint64)")[:4] + (2**64 - 1).to_bytes(32, "big")
    signed = attacker.sign_transaction({"to": net.credit.address, "data": legacy, "gas": 200_000,
                                        "gasPrice": w3.eth.gas_price, "chainId": w3.eth.chain_id,
                                        "nonce": w3.eth.get_transaction_count(attacker.address)})
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
    assert receipt["status"] == 0 and receipt["logs"] == []
    assert net.credit.round() == 0
    b1, _ = produce(net, 0)
    _, receipt = produce(net, K + 1, prev=b1.header)  # the next round still comes, from the clock
    assert net.credit.events(receipt, "RoundAdvanced") == [{"previous": 0, "round": 1}]


def test_rounds_follow_the_clock_across_a_long_outage(net):
    """Boundary: after 1 000 silent rounds the registry moves straight to the clock's round, charges nobody
    for the whole rounds between, and the scheduled RPN commits."""
    far = 1_000 * K + 3
    block, receipt = produce(net, far)
    assert net.credit.round() == net.index.current_round() == 1_000
    assert net.credit.events(receipt, "RoundAdvanced") == [{"previous": 0, "round": 1_000}]
    assert [e["slot"] for e in net.index.events(receipt, "SlotMissed")] == [0, 1, 2, 3, 4, far - 3, far - 2, far - 1]
    assert net.index.head()[0] == 1 and block.header.slot == far


# -- M-1: one block per slot ------------------------------------------------------------------------------------


def test_a_second_block_in_the_same_slot_is_refused_and_not_rewarded(net):
    """M-1: the scheduled RPN, with an honest ATN quorum, extends its own block in the same slot: refused."""
    producer = rpn(net, 0)
    b1, _ = produce(net, 0)
    rewards = net.credit.institution(producer.id).reward_points
    second = net.build(net.slips(origins(net), 1, 2, seed=9), 0, prev=b1.header)
    sigs = net.attestations(second, net.atn_insts()[:QUORUM])
    with pytest.raises(InvalidBlock) as info:  # the Python auditor refuses it too
        honest_verify(net, second, b1.header)
    assert info.value.fault is BlockFault.WRONG_SLOT
    with reverts("ConsortiumIndexSlotAlreadyCommitted", 0, 1):
        net.index.commit(producer.account, second, sigs)
    assert net.index.head() == (1, b1.header.block_hash)
    assert net.credit.institution(producer.id).reward_points == rewards


def test_replaying_a_committed_block_in_its_slot_is_refused(net):
    b1, receipt = produce(net, 0)
    atns = net.atn_insts()[:QUORUM]
    with reverts("ConsortiumIndexSlotAlreadyCommitted", 0, 1):
        net.index.commit(rpn(net, 0).account, b1, net.attestations(b1, atns))


def test_the_next_slot_after_a_committed_one_is_open(net):
    """Boundary: the refusal is for the committed slot only; the very next slot takes its block."""
    b1, _ = produce(net, 0)
    b2, receipt = produce(net, 1, prev=b1.header)
    assert net.index.head() == (2, b2.header.block_hash) and net.index.next_unsettled_slot() == 2
    assert net.index.events(receipt, "SlotMissed") == []


# -- M-2: a suspended participant neither produces nor attests ------------------------------------------------


def test_a_suspended_rpn_cannot_produce_in_its_slot(net):
    producer = rpn(net, 0)
    net.identity.suspend(net.governor, producer.id, "audit")
    block = net.build([], 0)
    sigs = net.attestations(block, net.atn_insts()[:QUORUM])
    with reverts("ConsortiumIndexProducerSuspended", 0, producer.id):
        net.index.commit(producer.account, block, sigs)
    net.identity.reinstate(net.governor, producer.id, "cleared")
    net.index.commit(producer.account, block, sigs)


def test_a_suspended_atn_cannot_attest(net):
    atns = net.atn_insts()
    suspended = atns[1]
    net.identity.suspend(net.governor, suspended.id, "key compromise")
    block = net.build([], 0)
    with reverts("ConsortiumIndexAttesterSuspended", suspended.account.address, suspended.id):
        net.index.commit(rpn(net, 0).account, block, net.attestations(block, atns[:QUORUM]))
    assert suspended.account.address not in net.credit.attester_accounts()
    others = [a for a in atns if a is not suspended][:QUORUM]
    receipt = net.index.commit(rpn(net, 0).account, block, net.attestations(block, others))
    assert suspended.id not in net.index.events(receipt, "BlockCommitted")[0]["attesters"]


def test_a_suspended_atn_cannot_reject(net):
    block, producer, _ = _bad_block(net, "wrong-root")
    domain = net.index.domain()
    judges = net.atn_insts()[:QUORUM]
    net.identity.suspend(net.governor, judges[0].id, "audit")
    rejections = ordered_signatures(reject(block.header, domain, a.signer) for a in judges)
    proposal = attest(block.header, domain, producer.signer).signature
    with reverts("ConsortiumIndexAttesterSuspended", judges[0].account.address, judges[0].id):
        net.index.report_invalid_block(net.by_order()[13].account, block.header, proposal, rejections)


def test_a_rotated_but_unsynced_account_is_not_taken_for_suspended(net, kmc):
    """The IdentityRegistry no longer knows an account replaced by a key rotation; until ``syncAccount`` the
    old account still acts here (documented), so only the participant record decides suspension."""
    producer = rpn(net, 0)
    new = account("rotated-rpn")
    net.identity.rotate(kmc, Participant(producer.id, producer.label, producer.role, new.address,
                                         pre_key("rot-rpn"), peks_key("rot-rpn")))
    assert not net.credit.is_suspended(producer.id)
    block, _ = produce(net, 0)
    assert block.header.producer == producer.id
    net.identity.suspend(net.governor, producer.id, "audit")
    assert net.credit.is_suspended(producer.id)


def test_constructor_rejects_bad_config(net, deployer):
    for slot_seconds, quorum in [(0, 2), (60, 0), (60, 1), (60, M + 1)]:  # L-3: one ATN alone is no quorum
        with reverts("ConsortiumIndexInvalidConfig", slot_seconds, quorum, M):
            ConsortiumIndexAgent.deploy(net.client, deployer, net.credit.address, genesis_time=0,
                                        slot_seconds=slot_seconds, quorum=quorum)


# -- byzantine producers and attesters ---------------------------------------------------------------------


def _bad_block(net: Net, fault: str):
    """A block with one fault, produced in slot 0 (out of turn: by RPN seat 1), and its producer."""
    slips = net.slips(origins(net), 2, 3, patients=4)
    producer = rpn(net, 0)
    check_item = None
    if fault == "wrong-root":
        block = net.build(slips, 0)
        block = ConsortiumBlock(replace(block.header, merkle_root=keccak(b"not the items")), block.slips)
    elif fault == "forged-slip":
        forger = net.by_order()[12]  # signs a slip in the name of a hospital
        fake = ConsortiumSlip.create(origins(net)[0].id, net.now(), slips[0].items, net.index.domain(), forger.signer)
        block = net.build([fake, slips[1]], 0)
    elif fault == "forged-item":
        block = net.build(slips, 0)
        fake_item = slips[1].items[0]
        check_item = lambda item: item != fake_item  # noqa: E731 - the private chain has no such slip
    else:  # out of turn
        producer = rpn(net, 1)
        block = net.build(slips, 0, producer=producer.id)
    return block, producer, check_item


@pytest.mark.parametrize("fault,expected", [("wrong-root", BlockFault.WRONG_ROOT),
                                            ("forged-slip", BlockFault.BAD_SLIP_SIGNATURE),
                                            ("forged-item", BlockFault.FORGED_ITEM),
                                            ("out-of-turn", BlockFault.WRONG_PRODUCER)])
def test_byzantine_block_is_refused_rejected_and_penalised(net, fault, expected):
    block, producer, check_item = _bad_block(net, fault)
    domain = net.index.domain()
    honest, byzantine = net.atn_insts()[:QUORUM], net.atn_insts()[QUORUM]
    # honest ATNs verify and refuse to attest
    with pytest.raises(InvalidBlock) as info:
        honest_verify(net, block, check_item=check_item)
    assert info.value.fault is expected
    # only the byzantine ATN attests: the block cannot be committed
    lone = net.attestations(block, [byzantine])
    if fault == "out-of-turn":
        with reverts("ConsortiumIndexNotScheduledProducer", 0, rpn(net, 0).account.address, producer.account.address):
            net.index.commit(producer.account, block, lone)
    else:
        with reverts("ConsortiumIndexInsufficientAttestations", 1, QUORUM):
            net.index.commit(producer.account, block, lone)
    # the honest quorum rejects the producer-signed header; anyone reports it
    proposal = attest(block.header, domain, producer.signer).signature
    rejections = ordered_signatures(reject(block.header, domain, a.signer) for a in honest)
    before = {i.id: net.credit.credit_of(i.id) for i in (producer, byzantine)}
    receipt = net.index.report_invalid_block(net.by_order()[13].account, block.header, proposal, rejections, lone)
    (ev,) = net.index.events(receipt, "BlockRejected")
    assert ev == {"headerHash": block.header.block_hash, "slot": 0, "producer": producer.id,
                  "rejecters": [a.id for a in sorted_by_address(honest)], "attesters": [byzantine.id]}
    penalties = [(e["id"], e["offence"], e["points"], e["evidence"]) for e in net.credit.events(receipt, "Penalised")]
    assert penalties == [(producer.id, int(Offence.INVALID_BLOCK), 1000, block.header.block_hash),
                         (byzantine.id, int(Offence.WRONG_ATTESTATION), 500, block.header.block_hash)]
    assert net.credit.credit_of(producer.id) == before[producer.id] - 1000
    assert net.credit.credit_of(byzantine.id) == before[byzantine.id] - 500
    with reverts("ConsortiumIndexAlreadyReported", block.header.block_hash):
        net.index.report_invalid_block(net.by_order()[13].account, block.header, proposal, rejections, lone)


def test_report_invalid_block_refusals(net):
    block, producer, _ = _bad_block(net, "wrong-root")
    domain = net.index.domain()
    honest = net.atn_insts()[:QUORUM]
    reporter = net.by_order()[13].account
    rejections = ordered_signatures(reject(block.header, domain, a.signer) for a in honest)
    impostor = rpn(net, 4)
    forged_proposal = attest(block.header, domain, impostor.signer).signature
    with reverts("ConsortiumIndexBadProducerSignature", producer.id, impostor.account.address):
        net.index.report_invalid_block(reporter, block.header, forged_proposal, rejections)
    proposal = attest(block.header, domain, producer.signer).signature
    with reverts("ConsortiumIndexInsufficientAttestations", 2, QUORUM):
        net.index.report_invalid_block(reporter, block.header, proposal, rejections[:2])
    outsiders = ordered_signatures(reject(block.header, domain, a.signer) for a in honest[:2] + [rpn(net, 2)])
    with reverts("ConsortiumIndexNotAttester", rpn(net, 2).account.address):
        net.index.report_invalid_block(reporter, block.header, proposal, outsiders)


# -- L-3/L-4: reports judged by the header's round, committed blocks, a shrinking ATN set -------------------


def test_a_committed_block_and_its_attestations_cannot_be_reported(net):
    """L-3: a byzantine ATN quorum "rejects" a valid committed block to penalise its producer and attesters."""
    block, _ = produce(net, 0)
    domain = net.index.domain()
    producer = rpn(net, 0)
    rejections = ordered_signatures(reject(block.header, domain, a.signer) for a in net.atn_insts()[:QUORUM])
    attestations = net.attestations(block, net.atn_insts()[:QUORUM])
    proposal = attest(block.header, domain, producer.signer).signature
    before = net.credit.credit_of(producer.id)
    with reverts("ConsortiumIndexBlockCommitted", 1, block.header.block_hash):
        net.index.report_invalid_block(net.by_order()[13].account, block.header, proposal, rejections, attestations)
    assert net.credit.credit_of(producer.id) == before


def test_a_report_is_judged_by_the_atn_set_of_the_headers_round(net):
    """L-3: a bad header of round 0, reported in round 1 after an ATN left and a reserve joined: the ATNs of
    round 0 judge it (the departed attester still pays), the newcomer is no judge, another set is refused."""
    block, producer, _ = _bad_block(net, "wrong-root")
    domain = net.index.domain()
    round0 = net.credit.atn_set()
    honest, byzantine = net.atn_insts()[:QUORUM], net.atn_insts()[QUORUM]
    lone = net.attestations(block, [byzantine])
    proposal = attest(block.header, domain, producer.signer).signature
    reporter = net.by_order()[13].account
    net.identity.suspend(net.governor, byzantine.id, "signed a bad header")
    net.goto_slot(K)
    receipt = net.index.advance_round(reporter)  # the boundary unseats it by itself, a reserve joins
    (admitted,) = [net.inst(e["admitted"]) for e in net.credit.events(receipt, "AtnAdmitted")]
    assert byzantine.id not in net.credit.atn_set() and admitted.id in net.credit.atn_set()
    assert net.credit.events(receipt, "AtnSetRecorded")[0]["fromRound"] == 1
    assert net.credit.atn_set_at(0) == round0 and net.credit.atn_set_at(1) == net.credit.atn_set()

    rejections = ordered_signatures(reject(block.header, domain, a.signer) for a in honest)
    current = net.credit.atn_set()
    with reverts("ConsortiumIndexWrongAtnSet", 0, keccak(b"".join(round0)), keccak(b"".join(current))):
        net.index.report_invalid_block(reporter, block.header, proposal, rejections, lone, atn_set=current)
    newcomer = ordered_signatures(reject(block.header, domain, a.signer) for a in honest[:2] + [admitted])
    with reverts("ConsortiumIndexNotAttester", admitted.account.address):
        net.index.report_invalid_block(reporter, block.header, proposal, newcomer, lone)
    receipt = net.index.report_invalid_block(reporter, block.header, proposal, rejections, lone)
    (ev,) = net.index.events(receipt, "BlockRejected")
    assert ev["attesters"] == [byzantine.id]
    offences = [(e["id"], e["offence"]) for e in net.credit.events(receipt, "Penalised")]
    assert offences == [(producer.id, int(Offence.INVALID_BLOCK)), (byzantine.id, int(Offence.WRONG_ATTESTATION))]


def test_a_header_of_a_future_slot_cannot_be_reported(net):
    block, producer, _ = _bad_block(net, "wrong-root")
    domain = net.index.domain()
    future = replace(block.header, slot=7)
    rejections = ordered_signatures(reject(future, domain, a.signer) for a in net.atn_insts()[:QUORUM])
    with reverts("ConsortiumIndexFutureSlot", 7, 0):
        net.index.report_invalid_block(net.by_order()[13].account, future,
                                       attest(future, domain, producer.signer).signature, rejections,
                                       atn_set=net.credit.atn_set())


def test_a_shrinking_atn_set_does_not_halt_commits(net):
    """L-4: two ATNs withdraw and the reserve is unwilling: 2 ATNs are left for a quorum of 3. The quorum
    follows the seated set (down to 2), so the chain goes on; one attestation is still not enough."""
    leaving = net.atn_insts()[2:]
    for inst in leaving + net.by_order()[9:]:  # two ATNs and every reserve
        net.credit.set_willing(inst.account, False)
    net.goto_slot(K)
    net.index.advance_round(net.by_order()[13].account)
    assert net.credit.atn_seated() == 2 and net.index.attestation_quorum() == 2 and net.index.quorum() == QUORUM
    producer = rpn(net, 1)
    net.goto_slot(K + 1)
    block = net.build([], K + 1)
    with reverts("ConsortiumIndexInsufficientAttestations", 1, 2):
        net.index.commit(producer.account, block, net.attestations(block, net.atn_insts()[:1]))
    receipt = net.index.commit(producer.account, block, net.attestations(block, net.atn_insts()))
    assert net.index.events(receipt, "BlockCommitted")[0]["height"] == 1


# -- missed slots ------------------------------------------------------------------------------------------


def test_offline_rpn_slot_passes_to_the_next_and_the_absent_one_loses_credit(net):
    absent = rpn(net, 0)
    before = net.credit.credit_of(absent.id)
    block, receipt = produce(net, 1)  # nobody produced in slot 0; seat 1 produces in its own slot
    assert block.header.producer == rpn(net, 1).id
    assert net.index.events(receipt, "SlotMissed") == [{"slot": 0, "producer": absent.id}]
    (pen,) = net.credit.events(receipt, "Penalised")
    assert (pen["id"], pen["offence"], pen["points"], pen["evidence"]) == (
        absent.id, int(Offence.MISSED_SLOT), 100, ZERO32)
    assert net.credit.credit_of(absent.id) == before - 100


def test_anyone_reports_missed_slots_once(net):
    net.goto_slot(3)
    stranger = net.by_order()[13].account
    receipt = net.index.report_missed_slots(stranger)
    assert [(e["slot"], e["producer"]) for e in net.index.events(receipt, "SlotMissed")] == [
        (s, rpn(net, s).id) for s in range(3)]
    assert net.index.next_unsettled_slot() == 3
    assert net.index.events(net.index.report_missed_slots(stranger), "SlotMissed") == []


def test_missed_slots_across_a_round_boundary_and_round_advance(net):
    b1, _ = produce(net, 3)
    _, receipt = produce(net, K + 2, prev=b1.header)  # slot 7 = round 1, seat 2
    missed = [e["slot"] for e in net.index.events(receipt, "SlotMissed")]
    assert missed == [4, 5, 6]
    assert net.index.clock().missed_slots(4, K + 2, registry_round=0) == missed
    assert net.credit.events(receipt, "RoundAdvanced") == [{"previous": 0, "round": 1}]
    assert net.credit.round() == 1


# -- replacement at round boundaries through the index ----------------------------------------------------------


def test_repeated_penalties_replace_the_rpn_at_the_next_round(net):
    victim = rpn(net, 2)
    domain = net.index.domain()
    honest = net.atn_insts()[:QUORUM]
    reporter = net.by_order()[13].account
    for n in range(3):  # three invalid proposals rejected by the ATN quorum: 7550 → 4550 < 5000
        bad = replace(net.build([], 0, producer=victim.id).header, body_cid=keccak(bytes([n])))
        rejections = ordered_signatures(reject(bad, domain, a.signer) for a in honest)
        receipt = net.index.report_invalid_block(reporter, bad, attest(bad, domain, victim.signer).signature,
                                                 rejections)
    assert net.credit.events(receipt, "RemovalScheduled")[0]["id"] == victim.id
    assert net.credit.rpn_set()[2] == victim.id  # still seated in round 0

    top_atn, first_reserve = net.atn_insts()[0], net.by_order()[9]
    net.goto_slot(K)  # round 1
    receipt = net.index.advance_round(reporter)
    assert net.credit.events(receipt, "RpnReplaced") == [
        {"round": 1, "removed": victim.id, "replacement": top_atn.id, "seat": 2}]
    assert net.credit.events(receipt, "AtnAdmitted") == [{"round": 1, "admitted": first_reserve.id}]
    assert first_reserve.id in net.credit.atn_set()

    net.goto_slot(K + 2)  # seat 2: the removed RPN is out of turn, its replacement produces
    block = net.build([], K + 2)
    assert block.header.producer == top_atn.id
    sigs = net.attestations(block, net.atn_insts()[:QUORUM])
    with reverts("ConsortiumIndexNotScheduledProducer", K + 2, top_atn.account.address, victim.account.address):
        net.index.commit(victim.account, block, sigs)
    receipt = net.index.commit(top_atn.account, block, sigs)
    assert net.index.events(receipt, "BlockCommitted")[0]["producer"] == top_atn.id


# -- gas ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case,patients", [("1280 distinct patients", None), ("128 patients x 10 items", 128)])
def test_commit_gas_per_item_at_128_slips_x_10_items(net, case, patients, record_property):
    slips = net.slips(origins(net), 128, 10, patients=patients, seed=7)
    block = net.build(slips, 0)
    assert block.header.item_count == 1280
    honest_verify(net, block, cid_of=default_cid_of)
    sigs = net.attestations(block, net.atn_insts()[:QUORUM])
    receipt = net.index.commit(rpn(net, 0).account, block, sigs)
    gas = receipt["gasUsed"]
    n_patients = len(block.patient_ids)
    gas_report(f"commitBlock 128 slips x 10 items, 3 attestations, {n_patients} patients",
               f"{gas} gas = {gas / 1280:.0f} gas/item", record_property)
    assert gas < 30_000_000


def test_commit_gas_without_patient_index_for_comparison(net, record_property):
    """The same block without on-chain patient logs (an empty ``patientIds``, ``patientsHash`` of nothing):
    what the index costs on top of the header. Not a valid block for ATNs; measured only."""
    slips = net.slips(origins(net), 128, 10, seed=7)
    block = net.build(slips, 0)
    header = replace(block.header, patients_hash=keccak(b""))
    sigs = net.attestations(header, net.atn_insts()[:QUORUM])
    snap = net.client.snapshot()
    receipt = net.index.commit_block(rpn(net, 0).account, header, [], sigs)
    gas = receipt["gasUsed"]
    gas_report("commitBlock 128 slips x 10 items, 3 attestations, no patient index",
               f"{gas} gas = {gas / 1280:.0f} gas/item", record_property)
    assert net.index.events(receipt, "PatientIndexed") == []
    assert len(net.index.events(receipt, "BlockCommitted")) == 1
    # the same block with its patient index, from the same state
    net.client.revert(snap)
    indexed = net.index.commit(rpn(net, 0).account, block, net.attestations(block, net.atn_insts()[:QUORUM]))
    n_patients = len(block.patient_ids)
    assert len(net.index.events(indexed, "PatientIndexed")) == n_patients == 1280
    # Each patient costs at least one LOG2 with 32 data bytes (375 + 2 x 375 + 8 x 32 = 1381 gas) and its
    # 32-byte calldata word (at least 4 gas a byte): the index adds at least that much per patient.
    assert indexed["gasUsed"] - gas >= n_patients * (1381 + 4 * 32), (indexed["gasUsed"], gas)
    assert gas < indexed["gasUsed"] < 30_000_000


def test_commit_gas_of_small_blocks(net, record_property):
    """An empty first block and a 2-slip second block, 3 attestations each: the per-block overhead
    (slot, producer, suspension and attester checks) without the per-item cost."""
    b1, r1 = produce(net, 0, slips=[])
    _, r2 = produce(net, 1, prev=b1.header)
    gas_report("commitBlock empty block, 3 attestations (first block)", f"{r1['gasUsed']} gas", record_property)
    gas_report("commitBlock 2 slips x 3 items, 4 patients, 3 attestations (second block)", f"{r2['gasUsed']} gas",
               record_property)
