"""L-6 (issue 13, item 8): the committing producer never pays for an unbounded number of missed-slot
penalties. A round of K = 20 slots: at most ``MAX_MISSED_SLOTS_PER_CALL`` (16) misses are examined per call;
``reportMissedSlots`` (anyone) leaves the rest pending for the next call, a commit forgives them."""

from __future__ import annotations

import dataclasses

import pytest

from tests.consortium._consortium_support import SMALL_INCENTIVES, Net, build_net, gas_report, reverts, small_dims

K, M = 20, 3
BOUND = 16
SLOT_SECONDS = 3600


@pytest.fixture(scope="module")
def wide_net(module_snapshot, session_client, identity_address, kmc, deployer) -> Net:
    return build_net(session_client, identity_address, kmc, deployer, dims=small_dims(K + M + 2), rpn_count=K,
                     atn_count=M, reserve_capacity=2,
                     incentives=dataclasses.replace(SMALL_INCENTIVES, removal_threshold=1000), quorum=2, prefix="wide",
                     slot_seconds=SLOT_SECONDS)


@pytest.fixture()
def net(wide_net: Net, chain) -> Net:
    wide_net.client = chain
    return wide_net


def stranger(net: Net):
    return net.by_order()[-1].account


def missed(net: Net, receipt) -> list[int]:
    return [e["slot"] for e in net.index.events(receipt, "SlotMissed")]


def test_the_bound_is_public(net):
    assert net.index.contract.functions.MAX_MISSED_SLOTS_PER_CALL().call() == BOUND


def test_a_commit_after_19_missed_slots_charges_16_and_forgives_the_rest(net, record_property):
    """The attack: RPNs stay silent for 19 slots so that seat 19's commit pays 19 penalty calls. It pays 16."""
    net.goto_slot(K - 1)
    block = net.build([], K - 1)
    producer = net.inst(block.header.producer)
    receipt = net.index.commit(producer.account, block, net.attestations(block, net.atn_insts()[:2]))
    assert missed(net, receipt) == list(range(BOUND))
    assert net.index.events(receipt, "SlotsForgiven") == [{"fromSlot": BOUND, "toSlot": K - 1}]
    assert len(net.credit.events(receipt, "Penalised")) == BOUND
    assert net.index.next_unsettled_slot() == K
    gas_report(f"commitBlock (empty) settling {K - 1} missed slots: {BOUND} charged", f"{receipt['gasUsed']} gas",
               record_property)


def test_report_missed_slots_settles_a_backlog_in_bounded_steps(net):
    net.goto_slot(K - 1)
    first = net.index.report_missed_slots(stranger(net))
    assert missed(net, first) == list(range(BOUND)) and net.index.events(first, "SlotsForgiven") == []
    assert net.index.next_unsettled_slot() == BOUND
    second = net.index.report_missed_slots(stranger(net))
    assert missed(net, second) == list(range(BOUND, K - 1))
    assert net.index.next_unsettled_slot() == K - 1
    # nothing left to charge: the producer of slot 19 pays for no miss
    block = net.build([], K - 1)
    receipt = net.index.commit(net.inst(block.header.producer).account, block,
                               net.attestations(block, net.atn_insts()[:2]))
    assert missed(net, receipt) == [] and net.index.events(receipt, "SlotsForgiven") == []


def test_the_round_advances_only_once_its_misses_are_settled(net):
    """Across a boundary: the old round's misses are charged to the old roster first (bounded), the registry
    moves to the new round only when they are all settled."""
    net.goto_slot(K + 5)
    first = net.index.report_missed_slots(stranger(net))
    assert missed(net, first) == list(range(BOUND))
    assert net.credit.round() == 0 and net.credit.events(first, "RoundAdvanced") == []
    second = net.index.report_missed_slots(stranger(net))
    assert missed(net, second) == list(range(BOUND, K)) + list(range(K, K + 5))
    assert net.credit.events(second, "RoundAdvanced") == [{"previous": 0, "round": 1}]
    assert net.index.next_unsettled_slot() == K + 5


def test_a_report_waits_until_the_headers_round_is_settled(net):
    """L-3: a header of round 1 cannot be judged while the registry, with misses of round 0 still pending,
    has not reached round 1 (its ATN set is not fixed yet)."""
    from mbds_py.consortium import attest, ordered_signatures, reject

    net.goto_slot(K + 5)
    header = net.build([], K + 5).header
    domain = net.index.domain()
    producer = net.inst(header.producer)
    rejections = ordered_signatures(reject(header, domain, a.signer) for a in net.atn_insts()[:2])
    with reverts("ConsortiumIndexRoundNotSettled", 1, 0):  # after the bounded settlement, round 0 is pending
        net.index.report_invalid_block(stranger(net), header, attest(header, domain, producer.signer).signature,
                                       rejections, atn_set=net.credit.atn_set())
    net.index.report_missed_slots(stranger(net))
    net.index.report_missed_slots(stranger(net))  # round 0 settled: the registry is in round 1
    assert net.credit.round() == 1
    receipt = net.index.report_invalid_block(stranger(net), header, attest(header, domain, producer.signer).signature,
                                             rejections)
    assert net.index.events(receipt, "BlockRejected")[0]["headerHash"] == header.block_hash
