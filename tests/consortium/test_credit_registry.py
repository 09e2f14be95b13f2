"""CreditRegistry: governance, institutions, reporters, election and replacement — happy
paths with decoded events, every refusal with its custom error, Python/contract equality."""

from __future__ import annotations

import dataclasses

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mbds_py.consortium import Dimensions, Incentives, Offence, Roster, SeatKind, Service, Weights, credit_score
from mbds_py.consortium.agents import ConsortiumIndexAgent, CreditRegistryAgent
from mbds_py.consortium.election import elect
from mbds_py.identity import Participant, Role
from tests.conftest import peks_key, pre_key
from tests.consortium._consortium_support import SMALL_INCENTIVES, account, as_contract, fund, reverts

ZERO32 = bytes(32)


@pytest.fixture()
def reporter(net):
    net.credit.set_reporter(net.governor, net.reporter.address, True)
    return net.reporter


def ranked(net) -> list:
    """The population in ranking order (small_dims gives distinct, decreasing credits)."""
    return net.by_order()


def new_participant(net, kmc, label: str, role: Role = Role.HOSPITAL) -> Participant:
    acct = account(label)
    fund(net.client, acct.address)
    p = Participant(id=keccak(text=f"new/{label}"), name=label, role=role, address=acct.address,
                    pre_key=pre_key(label), peks_key=peks_key(label))
    net.identity.register(kmc, p)
    return p


# -- registration ----------------------------------------------------------------------------------------


def test_register_institution_binds_identity_account_and_emits_event(net, kmc):
    p = new_participant(net, kmc, "hospital-new", Role.HOSPITAL)
    dims = Dimensions(8000, 6000, 4000)
    receipt = net.credit.register_institution(net.governor, p.id, dims)
    (ev,) = net.credit.events(receipt, "InstitutionRegistered")
    expected_credit = credit_score(dims, Weights())
    assert ev == {"id": p.id, "account": p.address, "role": int(Role.HOSPITAL), "dimensions": dims,
                  "credit": expected_credit}
    rec = net.credit.institution(p.id)
    assert (rec.account, rec.dimensions, rec.willing, rec.reward_points, rec.penalty_points) == (
        p.address, dims, False, 0, 0)
    assert net.credit.id_of(p.address) == p.id
    assert net.credit.credit_of(p.id) == expected_credit
    assert not net.credit.is_eligible(p.id)  # not willing yet


def test_register_reverts_for_non_governor(net, kmc):
    p = new_participant(net, kmc, "h-ng")
    intruder = ranked(net)[0].account
    with reverts("CreditRegistryNotGovernance", intruder.address):
        net.credit.register_institution(intruder, p.id, Dimensions(1, 1, 1))


def test_register_reverts_when_already_registered(net):
    inst = ranked(net)[0]
    with reverts("CreditRegistryAlreadyRegistered", inst.id):
        net.credit.register_institution(net.governor, inst.id, Dimensions(1, 1, 1))


def test_register_reverts_for_unknown_participant(net):
    ghost = keccak(text="ghost")
    with reverts("CreditRegistryUnknownParticipant", ghost):
        net.credit.register_institution(net.governor, ghost, Dimensions(1, 1, 1))


def test_register_reverts_for_patient_role(net, kmc):
    p = new_participant(net, kmc, "patient-x", Role.PATIENT)
    with reverts("CreditRegistryNotAnInstitutionRole", p.id, int(Role.PATIENT)):
        net.credit.register_institution(net.governor, p.id, Dimensions(1, 1, 1))


def test_register_reverts_for_suspended_participant(net, kmc):
    p = new_participant(net, kmc, "h-suspended")
    net.identity.suspend(net.governor, p.id, "audit")
    with reverts("CreditRegistryParticipantSuspended", p.id):
        net.credit.register_institution(net.governor, p.id, Dimensions(1, 1, 1))


def test_register_reverts_for_raw_dimension_above_10000(net, kmc):
    p = new_participant(net, kmc, "h-dims2")
    with reverts("CreditRegistryInvalidDimensions", p.id, (10_001, 0, 0)):
        net.as_governor("registerInstitution", p.id, (10_001, 0, 0))


# -- governance --------------------------------------------------------------------------------------------


def test_set_dimensions_emits_event_and_changes_credit(net):
    inst = ranked(net)[12]
    dims = Dimensions(10_000, 10_000, 10_000)
    receipt = net.as_governor("setDimensions", inst.id, dims.as_tuple())
    (ev,) = net.credit.events(receipt, "DimensionsSet")
    assert ev == {"id": inst.id, "dimensions": dims, "credit": 10_000}
    assert net.credit.credit_of(inst.id) == 10_000


def test_set_dimensions_reverts_for_non_governor_and_unknown(net):
    inst = ranked(net)[0]
    with reverts("CreditRegistryNotGovernance", inst.account.address):
        net.credit.set_dimensions(inst.account, inst.id, Dimensions(1, 1, 1))
    ghost = keccak(text="ghost")
    with reverts("CreditRegistryUnknownInstitution", ghost):
        net.as_governor("setDimensions", ghost, Dimensions(1, 1, 1).as_tuple())


def test_set_weights_emits_event_and_reweights_every_credit(net):
    w = Weights(2000, 2000, 6000)
    receipt = net.as_governor("setWeights", w.as_tuple())
    assert net.credit.events(receipt, "WeightsSet") == [{"weights": w}]
    assert net.credit.weights() == w
    inst = ranked(net)[3]
    assert net.credit.credit_of(inst.id) == credit_score(inst.dimensions, w)


def test_set_weights_reverts_when_not_summing_to_10000(net):
    with reverts("CreditRegistryInvalidWeights", (5000, 3000, 1000)):
        net.as_governor("setWeights", (5000, 3000, 1000))


def test_set_weights_reverts_for_non_governor(net):
    stranger = ranked(net)[1].account
    with reverts("CreditRegistryNotGovernance", stranger.address):
        net.credit.set_weights(stranger, Weights())


def test_set_incentives_emits_event(net):
    inc = Incentives(5, 4, 3, 2000, 700, 90, 4000)
    receipt = net.as_governor("setIncentives", inc.as_tuple())
    assert net.credit.events(receipt, "IncentivesSet") == [{"incentives": inc}]
    assert net.credit.incentives() == inc


def test_set_incentives_reverts_for_non_governor(net):
    stranger = ranked(net)[1].account
    with reverts("CreditRegistryNotGovernance", stranger.address):
        net.credit.set_incentives(stranger, Incentives())


def test_set_reporter_is_idempotent_and_evented(net):
    r = account("extra-reporter").address
    receipt = net.credit.set_reporter(net.governor, r, True)
    assert net.credit.events(receipt, "ReporterSet") == [{"reporter": r, "enabled": True}]
    assert net.credit.is_reporter(r)
    assert net.credit.events(net.credit.set_reporter(net.governor, r, True), "ReporterSet") == []
    receipt = net.credit.set_reporter(net.governor, r, False)
    assert net.credit.events(receipt, "ReporterSet") == [{"reporter": r, "enabled": False}]
    assert not net.credit.is_reporter(r)


def test_set_reporter_reverts_for_non_governor(net):
    stranger = ranked(net)[1].account
    with reverts("CreditRegistryNotGovernance", stranger.address):
        net.credit.set_reporter(stranger, stranger.address, True)


def test_clear_penalties_emits_event_and_is_idempotent(net, reporter):
    inst = ranked(net)[10]
    net.credit.penalise(reporter, inst.id, Offence.MISSED_SLOT)
    receipt = net.credit.clear_penalties(net.governor, inst.id)
    (ev,) = net.credit.events(receipt, "PenaltiesCleared")
    assert ev == {"id": inst.id, "governor": net.credit.governor().address,
                  "cleared": SMALL_INCENTIVES.missed_slot_penalty,
                  "credit": credit_score(inst.dimensions, Weights())}
    assert net.credit.events(net.credit.clear_penalties(net.governor, inst.id), "PenaltiesCleared") == []


def test_clear_penalties_reverts_for_non_governor(net):
    stranger = ranked(net)[1].account
    with reverts("CreditRegistryNotGovernance", stranger.address):
        net.credit.clear_penalties(stranger, ranked(net)[0].id)


# -- institutions ----------------------------------------------------------------------------------------------


def test_set_willing_by_the_institution_itself(net):
    inst = ranked(net)[13]
    receipt = net.credit.set_willing(inst.account, False)
    assert net.credit.events(receipt, "WillingnessSet") == [{"id": inst.id, "willing": False}]
    assert not net.credit.is_eligible(inst.id)
    assert net.credit.events(net.credit.set_willing(inst.account, False), "WillingnessSet") == []


def test_set_willing_reverts_for_non_institution(net):
    stranger = account("stranger")
    fund(net.client, stranger.address)
    with reverts("CreditRegistryNotInstitution", stranger.address):
        net.credit.set_willing(stranger, True)


def test_withdrawing_seated_rpn_schedules_removal(net):
    rpn = ranked(net)[1]
    receipt = net.credit.set_willing(rpn.account, False)
    (ev,) = net.credit.events(receipt, "RemovalScheduled")
    assert ev["id"] == rpn.id and ev["round"] == 0


def test_sync_account_follows_a_key_rotation(net, kmc):
    inst = ranked(net)[6]
    new = account("rotated")
    fund(net.client, new.address)
    net.identity.rotate(kmc, Participant(inst.id, inst.label, inst.role, new.address, pre_key("rot"), peks_key("rot")))
    receipt = net.credit.sync_account(new, inst.id)
    assert net.credit.events(receipt, "AccountSynced") == [
        {"id": inst.id, "oldAccount": inst.account.address, "newAccount": new.address}]
    assert net.credit.id_of(new.address) == inst.id and net.credit.id_of(inst.account.address) == ZERO32
    assert net.credit.events(net.credit.sync_account(new, inst.id), "AccountSynced") == []


# -- reporters ----------------------------------------------------------------------------------------------------


def test_reward_adds_points_per_unit(net, reporter):
    inst = ranked(net)[4]
    receipt = net.credit.reward(reporter, inst.id, Service.DATA_SERVED, 7)
    base = credit_score(inst.dimensions, Weights())
    assert net.credit.events(receipt, "Rewarded") == [
        {"id": inst.id, "service": int(Service.DATA_SERVED), "points": 7, "credit": base + 7}]
    assert net.credit.institution(inst.id).reward_points == 7


def test_reward_block_rewards_producer_and_attesters(net, reporter):
    producer, a1, a2 = ranked(net)[0], ranked(net)[5], ranked(net)[6]
    receipt = net.credit.reward_block(reporter, producer.id, [a1.id, a2.id])
    evs = net.credit.events(receipt, "Rewarded")
    assert [(e["id"], e["service"], e["points"]) for e in evs] == [
        (producer.id, int(Service.BLOCK_PRODUCED), 2), (a1.id, int(Service.BLOCK_ATTESTED), 1),
        (a2.id, int(Service.BLOCK_ATTESTED), 1)]


def test_penalise_emits_evidence_and_credit(net, reporter):
    inst = ranked(net)[7]
    evidence = keccak(text="header")
    receipt = net.credit.penalise(reporter, inst.id, Offence.WRONG_ATTESTATION, evidence)
    base = credit_score(inst.dimensions, Weights())
    (ev,) = net.credit.events(receipt, "Penalised")
    assert ev == {"id": inst.id, "offence": int(Offence.WRONG_ATTESTATION), "points": 500, "credit": base - 500,
                  "evidence": evidence}


@pytest.mark.parametrize("call", ["reward", "reward_block", "penalise"])
def test_reporter_functions_revert_for_non_reporter(net, call):
    caller = ranked(net)[0].account
    target = ranked(net)[1].id
    args = {"reward": (target, Service.DATA_SERVED, 1), "reward_block": (target, []),
            "penalise": (target, Offence.MISSED_SLOT)}[call]
    with reverts("CreditRegistryNotReporter", caller.address):
        getattr(net.credit, call)(caller, *args)
    with reverts("CreditRegistryNotReporter", net.governor.lead.address):  # an authority is not a reporter
        getattr(net.credit, call)(net.governor.lead, *args)


def test_reward_reverts_for_unknown_institution(net, reporter):
    ghost = keccak(text="ghost")
    with reverts("CreditRegistryUnknownInstitution", ghost):
        net.credit.reward(reporter, ghost, Service.DATA_SERVED, 1)


def test_advance_round_follows_the_clock_and_reverts_unless_it_moved(net):
    receipt = net.advance_round()
    assert net.credit.events(receipt, "RoundAdvanced") == [{"previous": 0, "round": 1}]
    assert net.credit.round() == net.index.current_round() == 1
    with reverts("CreditRegistryRoundNotAhead", 1, 1):  # the clock is still in round 1
        as_contract(net.client, net.index.address, net.credit.contract, "advanceRound", [])


# -- the clock (H-1) ----------------------------------------------------------------------------------------------


def _unbound_registry(net, deployer):
    return CreditRegistryAgent.deploy(net.client, deployer, net.identity.address, rpn_count=5, atn_count=4,
                                      reserve_capacity=3, incentives=SMALL_INCENTIVES)


def test_the_clock_is_bound_once_and_evented(net, deployer):
    assert net.credit.clock() == net.index.address
    fresh = _unbound_registry(net, deployer)
    index = ConsortiumIndexAgent.deploy(net.client, deployer, fresh.address, genesis_time=0, slot_seconds=60, quorum=3)
    receipt = fresh.set_clock(net.governor, index.address)
    assert fresh.events(receipt, "ClockSet") == [{"clock": index.address}]
    rogue = ConsortiumIndexAgent.deploy(net.client, deployer, fresh.address, genesis_time=0, slot_seconds=1, quorum=3)
    with reverts("CreditRegistryClockAlreadySet", index.address):  # no second clock, not even a valid one
        fresh.set_clock(net.governor, rogue.address)


def test_set_clock_reverts_for_non_governor(net, deployer):
    fresh = _unbound_registry(net, deployer)
    index = ConsortiumIndexAgent.deploy(net.client, deployer, fresh.address, genesis_time=0, slot_seconds=60, quorum=3)
    stranger = ranked(net)[0].account
    with reverts("CreditRegistryNotGovernance", stranger.address):
        fresh.set_clock(stranger, index.address)


def test_set_clock_reverts_for_an_account_or_another_registrys_index(net, deployer):
    fresh = _unbound_registry(net, deployer)
    eoa = net.reporter.address
    with reverts("CreditRegistryInvalidClock", eoa):
        fresh.set_clock(net.governor, eoa)
    with reverts("CreditRegistryInvalidClock", net.index.address):  # bound to net.credit, not to `fresh`
        fresh.set_clock(net.governor, net.index.address)
    assert fresh.clock() == "0x0000000000000000000000000000000000000000"


def test_without_a_clock_nobody_advances_the_round(net, deployer):
    fresh = _unbound_registry(net, deployer)
    for caller in (net.governor.lead, net.reporter):
        with reverts("CreditRegistryNotClock", caller.address):
            net.client.transact(fresh.contract.functions.advanceRound(), caller, contract="CreditRegistry")


# -- election -------------------------------------------------------------------------------------------------------


def test_first_election_is_active_at_once_with_the_python_sets(net):
    expected = elect(net.credit.current_ranking(), rpn_count=5, atn_count=4, reserve_capacity=3)
    assert net.credit.rpn_set() == expected.rpn == tuple(i.id for i in ranked(net)[:5])
    assert net.credit.atn_set() == expected.atn
    assert net.credit.reserve_set() == expected.reserve
    assert net.credit.roster_version() == 1 and net.credit.pending_roster() is None
    assert net.credit.seat_of(ranked(net)[2].id) == (SeatKind.RPN, 2)
    assert net.credit.seat_of(ranked(net)[6].id) == (SeatKind.ATN, 1)
    assert net.credit.seat_of(ranked(net)[10].id) == (SeatKind.NONE, 0)


def test_election_applies_from_the_next_round(net, reporter):
    last = ranked(net)[13]
    net.as_governor("setDimensions", last.id, Dimensions(10_000, 10_000, 10_000).as_tuple())
    ranking = net.credit.current_ranking()
    assert ranking[0] == last.id
    receipt = net.credit.elect(net.governor, ranking)
    (ev,) = net.credit.events(receipt, "Elected")
    assert ev == {"version": 2, "fromRound": 1, "rpn": list(ranking[:5]), "atn": list(ranking[5:9]),
                  "reserve": list(ranking[9:12])}
    assert net.credit.rpn_set()[0] == ranked(net)[0].id  # still the old roster in round 0
    pending = net.credit.pending_roster()
    assert (pending.version, pending.from_round, pending.rpn) == (2, 1, tuple(ranking[:5]))

    receipt = net.advance_round()
    assert net.credit.events(receipt, "RosterActivated") == [{"version": 2, "round": 1}]
    assert net.credit.rpn_set() == tuple(ranking[:5]) and net.credit.atn_set() == tuple(ranking[5:9])
    assert net.credit.pending_roster() is None


def test_elect_reverts_for_non_governor(net):
    stranger = ranked(net)[0].account
    with reverts("CreditRegistryNotGovernance", stranger.address):
        net.credit.elect(stranger, net.credit.current_ranking())


def elected(net) -> tuple:
    """RPN + ATN of the pending (else the active) roster."""
    pending = net.credit.pending_roster()
    if pending is not None:
        return pending.rpn + pending.atn
    return net.credit.rpn_set() + net.credit.atn_set()


def test_elect_repairs_an_out_of_order_ranking(net):
    """L-4: the ranking is a hint; swapping two ranks neither reverts nor steers the election."""
    honest = list(net.credit.current_ranking())
    r = list(honest)
    r[3], r[4] = r[4], r[3]
    receipt = net.credit.elect(net.governor, r)
    assert net.credit.events(receipt, "RankingRepaired") == []  # nothing skipped or added, only reordered
    assert elected(net) == tuple(honest[:9])


def test_elect_ties_are_broken_by_the_lower_id(net):
    a, b = ranked(net)[2], ranked(net)[3]
    net.as_governor("setDimensions", b.id, a.dimensions.as_tuple())  # equal credit
    low, high = sorted([a.id, b.id])
    r = list(net.credit.current_ranking())
    assert r.index(low) + 1 == r.index(high)
    wrong = list(r)
    i = wrong.index(low)
    wrong[i], wrong[i + 1] = high, low
    net.credit.elect(net.governor, wrong)
    assert elected(net) == tuple(r[:9])  # the lower ID first, whatever the hint said


def test_elect_reverts_on_duplicate(net):
    r = list(net.credit.current_ranking())
    r[5] = r[4]
    with reverts("CreditRegistryDuplicateCandidate", r[4]):
        net.credit.elect(net.governor, r)


def test_a_withdrawal_landing_first_does_not_make_the_election_revert(net):
    """L-4: a listed institution calls setWilling(false) just before elect lands: it is skipped, not fatal."""
    r = list(net.credit.current_ranking())
    net.credit.set_willing(net.inst(r[3]).account, False)
    receipt = net.credit.elect(net.governor, r)
    assert net.credit.events(receipt, "RankingRepaired") == [{"skipped": 1, "added": 0}]
    assert elected(net) == tuple(r[:3] + r[4:10])


def test_a_new_willing_institution_landing_first_does_not_make_the_election_revert(net):
    """L-4: an institution declares itself willing just before elect lands: it is added in its place."""
    r = list(net.credit.current_ranking())
    newcomer = net.inst(r[1])
    net.credit.set_willing(newcomer.account, False)
    stale = list(net.credit.current_ranking())  # computed while it was unwilling
    net.credit.set_willing(newcomer.account, True)
    receipt = net.credit.elect(net.governor, stale)
    assert net.credit.events(receipt, "RankingRepaired") == [{"skipped": 0, "added": 1}]
    assert elected(net) == tuple(r[:9])


def test_a_penalty_landing_first_does_not_make_the_election_revert(net, reporter):
    """L-4: a penalty (as reportMissedSlots charges) reorders the credits before elect lands: sorted in."""
    r = list(net.credit.current_ranking())
    for _ in range(4):
        net.credit.penalise(reporter, r[0], Offence.MISSED_SLOT)
    fresh = list(net.credit.current_ranking())
    assert fresh != r and set(fresh) == set(r)
    net.credit.elect(net.governor, r)
    assert elected(net) == tuple(fresh[:9])


def test_an_omission_in_the_ranking_cannot_keep_an_institution_out(net):
    r = list(net.credit.current_ranking())
    net.credit.elect(net.governor, [i for i in r if i != r[2]])
    assert elected(net) == tuple(r[:9])


def test_a_suspended_institution_is_not_eligible_nor_electable(net):
    """M-2: suspended in the IdentityRegistry → not eligible, left out of the ranking, refused by elect."""
    r = list(net.credit.current_ranking())
    victim = net.inst(r[7])
    net.identity.suspend(net.governor, victim.id, "fraud inquiry")
    assert net.credit.is_suspended(victim.id) and not net.credit.is_eligible(victim.id)
    rec = net.credit.institution(victim.id)
    assert rec.suspended and rec.willing and not rec.eligible(Weights(), SMALL_INCENTIVES.removal_threshold)
    assert victim.id not in net.credit.current_ranking()
    receipt = net.credit.elect(net.governor, r)  # a stale ranking that still lists it: skipped
    assert net.credit.events(receipt, "RankingRepaired") == [{"skipped": 1, "added": 0}]
    assert victim.id not in net.credit.pending_roster().rpn + net.credit.pending_roster().atn


def test_a_suspended_member_loses_its_seat_at_the_next_round(net):
    """M-2: anyone asks the registry to review a suspended RPN; at the boundary the top ATN takes its seat."""
    victim = ranked(net)[3]
    stranger = ranked(net)[13].account
    assert net.credit.events(net.credit.review_seat(stranger, victim.id), "RemovalScheduled") == []  # eligible: no-op
    net.identity.suspend(net.governor, victim.id, "audit")
    (ev,) = net.credit.events(net.credit.review_seat(stranger, victim.id), "RemovalScheduled")
    assert (ev["id"], ev["round"]) == (victim.id, 0)
    assert net.credit.events(net.credit.review_seat(stranger, victim.id), "RemovalScheduled") == []  # queued once
    receipt = net.advance_round()
    assert net.credit.events(receipt, "RpnReplaced") == [
        {"round": 1, "removed": victim.id, "replacement": ranked(net)[5].id, "seat": 3}]
    assert net.credit.seat_of(victim.id) == (SeatKind.NONE, 0)


def test_a_suspended_reserve_is_skipped_when_the_atn_set_is_refilled(net, reporter):
    atn, first_reserve, second_reserve = ranked(net)[6], ranked(net)[9], ranked(net)[10]
    net.identity.suspend(net.governor, first_reserve.id, "audit")
    for _ in range(5):
        net.credit.penalise(reporter, atn.id, Offence.WRONG_ATTESTATION)
    receipt = net.advance_round()
    assert net.credit.events(receipt, "AtnAdmitted") == [{"round": 1, "admitted": second_reserve.id}]


def test_a_suspended_member_loses_its_seat_at_the_next_round_without_a_review(net):
    """L-4: nobody calls reviewSeat; the boundary notices the IdentityRegistry's suspensionCount moved and
    re-checks every seat: the suspended RPN and the suspended ATN lose theirs."""
    rpn_victim, atn_victim = ranked(net)[3], ranked(net)[7]
    net.identity.suspend(net.governor, rpn_victim.id, "audit")
    net.identity.suspend(net.governor, atn_victim.id, "audit")
    receipt = net.advance_round()
    scheduled = {e["id"] for e in net.credit.events(receipt, "RemovalScheduled")}
    assert scheduled == {rpn_victim.id, atn_victim.id}
    assert net.credit.events(receipt, "RpnReplaced") == [
        {"round": 1, "removed": rpn_victim.id, "replacement": ranked(net)[5].id, "seat": 3}]
    assert {"round": 1, "removed": atn_victim.id} in net.credit.events(receipt, "AtnRemoved")
    assert net.credit.seat_of(rpn_victim.id) == (SeatKind.NONE, 0)
    assert net.credit.seat_of(atn_victim.id) == (SeatKind.NONE, 0)
    # a quiet boundary (no suspension, no parameter change) reviews nothing
    assert net.credit.events(net.advance_round(), "RemovalScheduled") == []


def test_a_raised_threshold_unseats_members_below_it_at_the_next_round(net):
    """L-4: setIncentives moves the threshold for everyone; the boundary re-checks every seat."""
    weakest_rpn = ranked(net)[4]
    inc = net.credit.incentives()
    raised = dataclasses.replace(inc, removal_threshold=net.credit.credit_of(weakest_rpn.id) + 1)
    net.as_governor("setIncentives", raised.as_tuple())
    receipt = net.advance_round()
    assert weakest_rpn.id in {e["id"] for e in net.credit.events(receipt, "RemovalScheduled")}
    assert net.credit.seat_of(weakest_rpn.id) == (SeatKind.NONE, 0)


def test_a_member_reinstated_before_the_boundary_keeps_its_seat(net):
    victim = ranked(net)[6]
    net.identity.suspend(net.governor, victim.id, "audit")
    net.credit.review_seat(net.governor, victim.id)
    net.identity.reinstate(net.governor, victim.id, "cleared")
    receipt = net.advance_round()
    assert net.credit.events(receipt, "AtnRemoved") == []
    assert net.credit.seat_of(victim.id) == (SeatKind.ATN, 1)


def test_elect_reverts_on_unknown_institution(net):
    ghost = b"\x00" * 31 + b"\x01"
    with reverts("CreditRegistryUnknownInstitution", ghost):
        net.credit.elect(net.governor, list(net.credit.current_ranking()) + [ghost])


def test_elect_reverts_with_fewer_candidates_than_seats(net):
    for inst in ranked(net)[8:]:
        net.credit.set_willing(inst.account, False)
    with reverts("CreditRegistryTooFewCandidates", 8, 9):
        net.credit.elect(net.governor, net.credit.current_ranking())


# -- replacement --------------------------------------------------------------------------------------------------------


def test_repeated_penalties_replace_rpn_by_top_atn_at_the_boundary(net, reporter):
    victim = ranked(net)[2]  # credit ≈ 7550, threshold 5000, invalid block −1000
    credits = []
    scheduled = []
    for _ in range(3):
        receipt = net.credit.penalise(reporter, victim.id, Offence.INVALID_BLOCK, keccak(text="bad"))
        credits.append(net.credit.credit_of(victim.id))
        scheduled += net.credit.events(receipt, "RemovalScheduled")
    assert credits[-1] < 5000 <= credits[-2]
    assert len(scheduled) == 1 and scheduled[0]["id"] == victim.id
    assert net.credit.rpn_set()[2] == victim.id  # changes wait for the round boundary

    before = Roster(net.credit.rpn_set(), net.credit.atn_set(), net.credit.reserve_set(), 4)
    receipt = net.advance_round()
    top_atn, first_reserve = ranked(net)[5].id, ranked(net)[9].id
    assert net.credit.events(receipt, "RpnReplaced") == [
        {"round": 1, "removed": victim.id, "replacement": top_atn, "seat": 2}]
    assert net.credit.events(receipt, "AtnAdmitted") == [{"round": 1, "admitted": first_reserve}]
    expected, _ = before.apply_removals([victim.id], lambda i: i != victim.id)
    assert net.credit.rpn_set() == expected.rpn and net.credit.atn_set() == expected.atn
    assert net.credit.seat_of(top_atn) == (SeatKind.RPN, 2)
    assert net.credit.seat_of(victim.id) == (SeatKind.NONE, 0)
    assert net.credit.seat_of(first_reserve) == (SeatKind.ATN, 3)


def test_penalised_atn_is_removed_and_refilled(net, reporter):
    atn = ranked(net)[6]
    for _ in range(5):
        net.credit.penalise(reporter, atn.id, Offence.WRONG_ATTESTATION)
    receipt = net.advance_round()
    assert net.credit.events(receipt, "AtnRemoved") == [{"round": 1, "removed": atn.id}]
    assert net.credit.events(receipt, "AtnAdmitted") == [{"round": 1, "admitted": ranked(net)[9].id}]
    assert net.credit.atn_set() == (ranked(net)[5].id, ranked(net)[7].id, ranked(net)[8].id, ranked(net)[9].id)


def test_member_that_recovers_before_the_boundary_keeps_its_seat(net, reporter):
    victim = ranked(net)[4]
    for _ in range(4):
        net.credit.penalise(reporter, victim.id, Offence.INVALID_BLOCK)
    net.credit.clear_penalties(net.governor, victim.id)
    receipt = net.advance_round()
    assert net.credit.events(receipt, "RpnReplaced") == []
    assert net.credit.rpn_set()[4] == victim.id
    assert not net.credit.institution(victim.id).removal_queued


def test_rpn_seat_stays_vacant_when_no_eligible_atn_is_left(net, reporter):
    for inst in ranked(net)[5:12]:  # every ATN and the whole reserve withdraw
        net.credit.set_willing(inst.account, False)
    victim = ranked(net)[0]
    for _ in range(4):
        net.credit.penalise(reporter, victim.id, Offence.INVALID_BLOCK)
    receipt = net.advance_round()
    assert [e["removed"] for e in net.credit.events(receipt, "AtnRemoved")] == [i.id for i in ranked(net)[5:9]]
    assert net.credit.events(receipt, "RpnReplaced") == [
        {"round": 1, "removed": victim.id, "replacement": ZERO32, "seat": 0}]
    assert net.credit.rpn_set()[0] == ZERO32 and net.credit.atn_set() == ()
    assert net.credit.rpn_at(0) == (ZERO32, "0x0000000000000000000000000000000000000000")


# -- Python and contract agree ---------------------------------------------------------------------------------------------

_dims = st.builds(Dimensions, st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 10_000))


@st.composite
def _weights(draw):
    a = draw(st.integers(0, 10_000))
    b = draw(st.integers(0, 10_000 - a))
    return Weights(a, b, 10_000 - a - b)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(d=_dims, w=_weights(), reward=st.integers(0, 2**40), penalty=st.integers(0, 2**40))
def test_credit_formula_matches_python(net, d, w, reward, penalty):
    assert net.credit.credit_formula(d, w, reward, penalty) == credit_score(d, w, reward, penalty)


@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scores=st.lists(st.tuples(st.sampled_from([0, 2500, 5000, 7500, 10_000]),
                                 st.sampled_from([0, 5000, 10_000]), st.sampled_from([0, 10_000])),
                       min_size=14, max_size=14))
def test_python_ranking_is_what_the_contract_elects(net, scores):
    """Coarse random scores (many ties): the Python ranking is accepted and gives the same seats."""
    snap = net.client.snapshot()
    try:
        net.as_governor("setIncentives", Incentives(removal_threshold=0).as_tuple())
        for inst, (g, s, e) in zip(ranked(net), scores):
            net.as_governor("setDimensions", inst.id, (g, s, e))
        records = net.credit.institutions()
        assert [r.dimensions.as_tuple() for r in records] == scores
        for r in records[:3]:
            assert net.credit.credit_of(r.id) == r.credit(Weights())
        ranking = net.credit.current_ranking()
        net.credit.elect(net.governor, ranking)
        pending = net.credit.pending_roster()
        expected = elect(ranking, 5, 4, 3)
        assert (pending.rpn, pending.atn) == (expected.rpn, expected.atn)
    finally:
        net.client.revert(snap)


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=st.lists(st.tuples(st.sampled_from(["swap", "drop", "withdraw", "rejoin", "penalise"]),
                                st.integers(0, 13), st.integers(0, 13)), min_size=1, max_size=6))
def test_any_stale_or_perturbed_hint_elects_the_honest_roster(net, reporter, moves):
    """L-4 property: whatever lands between computing the ranking and elect (withdrawals, rejoins, penalties)
    and whatever the hint gets wrong (swaps, omissions), elect neither reverts nor deviates from the pure
    core's ranking of the chain state it lands on."""
    snap = net.client.snapshot()
    try:
        hint = list(net.credit.current_ranking())
        for move, a, b in moves:
            inst = net.by_order()[a]
            if move == "swap" and a < len(hint) and b < len(hint):
                hint[a], hint[b] = hint[b], hint[a]
            elif move == "drop" and a < len(hint):
                hint.pop(a)
            elif move == "withdraw":
                net.credit.set_willing(inst.account, False)
            elif move == "rejoin":
                net.credit.set_willing(inst.account, True)
            elif move == "penalise":
                net.credit.penalise(reporter, inst.id, Offence.MISSED_SLOT)
        honest = net.credit.current_ranking()
        if len(honest) < 9:
            with reverts("CreditRegistryTooFewCandidates", len(honest), 9):
                net.credit.elect(net.governor, hint)
            return
        net.credit.elect(net.governor, hint)
        assert elected(net) == tuple(honest[:9])
    finally:
        net.client.revert(snap)


# -- replacement against a ghost model (stateful property test) -------------------------------------------------------


class _Ghost:
    """What CreditRegistry should hold: penalty points, willingness, the removal queue and the roster."""

    def __init__(self, net, roster: Roster):
        self.net = net
        self.weights = Weights()
        self.threshold = SMALL_INCENTIVES.removal_threshold
        self.penalties = {i.id: 0 for i in net.by_order()}
        self.willing = {i.id: True for i in net.by_order()}
        self.queue: list[bytes] = []
        self.roster = roster

    def credit(self, inst_id: bytes) -> int:
        return credit_score(self.net.inst(inst_id).dimensions, self.weights, 0, self.penalties[inst_id])

    def eligible(self, inst_id: bytes) -> bool:
        return self.willing[inst_id] and self.credit(inst_id) >= self.threshold

    def touched(self, inst_id: bytes) -> None:
        """The contract queues a seated member the first time it becomes ineligible."""
        if inst_id not in self.queue and not self.eligible(inst_id) and self.roster.is_seated(inst_id):
            self.queue.append(inst_id)

    def boundary(self) -> None:
        self.roster, _ = self.roster.apply_removals(self.queue, self.eligible)
        self.queue = []


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(["penalise", "withdraw", "rejoin", "clear", "boundary"]),
                                st.integers(0, 13), st.sampled_from(list(Offence))), min_size=5, max_size=25))
def test_replacement_matches_the_ghost_model(net, steps):
    """Random penalties, withdrawals, clearances and round boundaries: the on-chain roster, credits
    and removal queue stay equal to the pure model's."""
    snap = net.client.snapshot()
    try:
        net.credit.set_reporter(net.governor, net.reporter.address, True)
        ghost = _Ghost(net, Roster(net.credit.rpn_set(), net.credit.atn_set(), net.credit.reserve_set(), 4))
        for action, who, offence in steps:
            inst = ranked(net)[who]
            if action == "penalise":
                net.credit.penalise(net.reporter, inst.id, offence)
                ghost.penalties[inst.id] += SMALL_INCENTIVES.penalty_points(offence)
                ghost.touched(inst.id)
            elif action in ("withdraw", "rejoin"):
                net.credit.set_willing(inst.account, action == "rejoin")
                ghost.willing[inst.id] = action == "rejoin"
                ghost.touched(inst.id)
            elif action == "clear":
                net.credit.clear_penalties(net.governor, inst.id)
                ghost.penalties[inst.id] = 0
            else:
                net.advance_round()
                ghost.boundary()
                assert net.credit.rpn_set() == ghost.roster.rpn
                assert net.credit.atn_set() == ghost.roster.atn
                assert net.credit.reserve_set() == ghost.roster.reserve
            assert net.credit.credit_of(inst.id) == ghost.credit(inst.id)
        queued = {r.id for r in net.credit.institutions() if r.removal_queued}
        assert queued == set(ghost.queue)
    finally:
        net.client.revert(snap)
