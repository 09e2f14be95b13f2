"""The election with the paper's values: K = 101 RPN, M = 20 ATN (ranks 102–121) over
150 institutions with many equal credits, within the 30M block gas limit."""

from __future__ import annotations

import random

import pytest

from mbds_py.consortium import Dimensions, Incentives, Offence, Weights
from mbds_py.consortium.election import PAPER_ATN_COUNT, PAPER_RPN_COUNT, elect, is_valid_ranking
from tests.consortium._consortium_support import Net, build_net, gas_report, reverts

N_INSTITUTIONS = 150
BLOCK_GAS_LIMIT = 30_000_000


def paper_dims() -> list[Dimensions]:
    """Coarse scores from a seeded RNG: few distinct credits, so ties are everywhere (also at rank 101/102)."""
    rng = random.Random(20220501)
    levels = [4000, 6000, 8000, 10_000]
    return [Dimensions(rng.choice(levels), rng.choice(levels), rng.choice(levels)) for _ in range(N_INSTITUTIONS)]


@pytest.fixture(scope="module")
def paper_net(module_snapshot, session_client, identity_address, kmc, deployer) -> Net:
    return build_net(session_client, identity_address, kmc, deployer, dims=paper_dims(), rpn_count=PAPER_RPN_COUNT,
                     atn_count=PAPER_ATN_COUNT, reserve_capacity=PAPER_ATN_COUNT,
                     incentives=Incentives(removal_threshold=1000), prefix="paper", elect=False)


@pytest.fixture()
def net(paper_net: Net, chain) -> Net:
    return paper_net


def credits_of(net: Net) -> dict[bytes, int]:
    return {r.id: r.credit(Weights()) for r in net.credit.institutions()}


def test_election_with_paper_values_over_150_institutions(net, record_property):
    ranking = net.credit.current_ranking()
    credits = credits_of(net)
    assert len(ranking) == N_INSTITUTIONS and is_valid_ranking(ranking, credits)
    # ties straddle the RPN/ATN boundary: the tie rule decides who is rank 101
    assert credits[ranking[100]] == credits[ranking[101]] and ranking[100] < ranking[101]

    receipt = net.credit.elect(net.governor, ranking)
    gas = receipt["gasUsed"]
    gas_report(f"elect K=101 M=20 reserve=20 over {N_INSTITUTIONS} institutions (first election)", f"{gas} gas",
               record_property)
    assert gas < BLOCK_GAS_LIMIT

    expected = elect(ranking, PAPER_RPN_COUNT, PAPER_ATN_COUNT, PAPER_ATN_COUNT)
    assert net.credit.rpn_set() == expected.rpn and len(expected.rpn) == 101
    assert net.credit.atn_set() == expected.atn and len(expected.atn) == 20
    assert net.credit.reserve_set() == expected.reserve
    (ev,) = net.credit.events(receipt, "Elected")
    assert (ev["version"], ev["fromRound"], tuple(ev["rpn"]), tuple(ev["atn"])) == (1, 0, expected.rpn, expected.atn)


def test_the_atn_set_of_a_round_is_recorded_from_the_first_election(net):
    with reverts("CreditRegistryNoAtnSet", 0):
        net.credit.atn_set_at(0)
    net.credit.elect(net.governor)
    assert net.credit.atn_set_at(0) == net.credit.atn_set() and len(net.credit.atn_set()) == PAPER_ATN_COUNT
    assert net.credit.atn_seated() == PAPER_ATN_COUNT


def test_re_elections_reuse_the_roster_buffers(net, record_property):
    gases = []
    for n in range(3):
        if n:  # move credits around so each election differs
            inst = net.by_order()[n * 7]
            net.credit.set_dimensions(net.governor, inst.id, Dimensions(10_000, 10_000, 10_000 - n))
        gases.append(net.credit.elect(net.governor)["gasUsed"])
    gas_report(f"elect over {N_INSTITUTIONS}: 1st / 2nd (other buffer) / 3rd (reused buffer)",
               " / ".join(str(g) for g in gases), record_property)
    assert max(gases) < BLOCK_GAS_LIMIT and gases[2] < gases[0]
    assert net.credit.pending_roster().version == 3


def test_swapping_a_tie_at_the_rpn_boundary_cannot_steer_the_election(net, record_property):
    """L-4: the ranking is a hint the contract repairs: a swapped tie at rank 101/102 and a dropped
    institution both end in the honest roster (no revert, no steering)."""
    honest = net.credit.current_ranking()
    expected = elect(honest, PAPER_RPN_COUNT, PAPER_ATN_COUNT, PAPER_ATN_COUNT)
    ranking = list(honest)
    ranking[100], ranking[101] = ranking[101], ranking[100]
    gas = net.credit.elect(net.governor, ranking)["gasUsed"]
    assert net.credit.rpn_set() == expected.rpn and net.credit.atn_set() == expected.atn
    receipt = net.credit.elect(net.governor, list(honest)[:-1])
    assert net.credit.events(receipt, "RankingRepaired") == [{"skipped": 0, "added": 1}]
    assert net.credit.pending_roster().rpn == expected.rpn
    gas_report(f"elect over {N_INSTITUTIONS}: swapped tie / one institution missing from the hint",
               f"{gas} / {receipt['gasUsed']}", record_property)


def test_rank_102_replaces_a_removed_rpn_and_rank_122_joins_the_atn(net):
    ranking = net.credit.current_ranking()
    net.credit.elect(net.governor, ranking)
    net.credit.set_reporter(net.governor, net.reporter.address, True)
    victim = ranking[50]
    while net.credit.is_eligible(victim):
        net.credit.penalise(net.reporter, victim, Offence.INVALID_BLOCK)
    receipt = net.advance_round()
    assert net.credit.events(receipt, "RpnReplaced") == [
        {"round": 1, "removed": victim, "replacement": ranking[101], "seat": 50}]
    assert net.credit.events(receipt, "AtnAdmitted") == [{"round": 1, "admitted": ranking[121]}]
    assert net.credit.rpn_set()[50] == ranking[101]
    assert net.credit.atn_set() == tuple(ranking[102:122])
