"""The pure policy model (no chain): the decision, lifecycles, idempotence, hashing."""

from __future__ import annotations

import pytest

from tests.helpers import raises_named
from tests.sharing._support import unkeyed_keyword_set_guesses
from eth_abi import encode
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from mbds_py.errors import MBDSError, PolicyDenied
from mbds_py.identity import Role
from mbds_py.sharing.agent import replay
from mbds_py.sharing.errors import AccessDenied, PolicyViolation
from mbds_py.sharing.policy import (DAY, HOUR, ZERO32, Action, Basis, Decision, EmergencyState, Grant, Identity,
                                    PolicyConfig, PolicyState, PresetRule, Reason, RequestState, Revocation, Scope,
                                    Tally, denial, grant_key, keyword_set_tag)

T0 = 1_700_000_000
P, P2 = keccak(text="p"), keccak(text="p2")
HOSP_A, HOSP_B = keccak(text="hospital-a"), keccak(text="hospital-b")
DOC_A, DOC_B, INSURER = keccak(text="doc-a"), keccak(text="doc-b"), keccak(text="insurer")
AUTH1, AUTH2, AUTH3 = keccak(text="auth1"), keccak(text="auth2"), keccak(text="auth3")
R1, R2 = keccak(text="r1"), keccak(text="r2")


@pytest.fixture()
def state() -> PolicyState:
    s = PolicyState(config=PolicyConfig(request_ttl=3 * DAY, emergency_approval_window=HOUR,
                                        emergency_max_duration=DAY, emergency_quorum=2))
    for ident in (Identity(P, Role.PATIENT), Identity(P2, Role.PATIENT), Identity(HOSP_A, Role.HOSPITAL),
                  Identity(HOSP_B, Role.HOSPITAL), Identity(DOC_A, Role.DOCTOR, HOSP_A),
                  Identity(DOC_B, Role.DOCTOR, HOSP_B), Identity(INSURER, Role.INSURER),
                  Identity(AUTH1, Role.AUTHORITY_NATIONAL), Identity(AUTH2, Role.AUTHORITY_MUNICIPAL)):
        s.register(ident)
    return s


def g(grantee=DOC_B, scope=Scope.RECORD, target=R1, actions=Action.READ, nb=T0, exp=T0 + DAY, patient=P) -> Grant:
    return Grant(patient, grantee, scope, target, Action(actions), nb, exp)


def decide(s: PolicyState, grantee=DOC_B, rec=R1, action=Action.READ, t=T0, kw=ZERO32, patient=P) -> Decision:
    return s.evaluate(patient, grantee, rec, action, t, keyword_set_hash=kw)



def violation(name: str, *args):
    """Assert the model refuses with the contract's custom error ``name``."""
    return raises_named(PolicyViolation, name, *args)


# -- hashing ----------------------------------------------------------------------------------------


def test_grant_key_is_the_contracts_abi_encoded_hash():
    expected = keccak(encode(["bytes32", "bytes32", "uint8", "bytes32"], [P, DOC_B, 1, R1]))
    assert grant_key(P, DOC_B, Scope.RECORD, R1) == expected == g().key


TAG_KEY, OTHER_TAG_KEY = bytes(range(32)), bytes(range(1, 33))


def test_keyword_set_tag_ignores_order_spelling_and_duplicates():
    a = keyword_set_tag(TAG_KEY, ["icd10|e119", "snomed|44054006"])
    b = keyword_set_tag(TAG_KEY, ["http://snomed.info/sct|44054006", "http://hl7.org/fhir/sid/icd-10|E11.9",
                                  "icd10|E11.9"])
    assert a == b and len(a) == 32
    assert keyword_set_tag(TAG_KEY, ["icd10|E11.9"]) != a


def test_keyword_set_tag_needs_a_keyword_and_a_key():
    with pytest.raises(ValueError, match="at least one keyword"):
        keyword_set_tag(TAG_KEY, [])
    with pytest.raises(ValueError, match="tag key is 32 bytes"):
        keyword_set_tag(b"", ["icd10|E11.9"])


def test_keyword_set_tag_cannot_be_tested_without_the_patients_key():
    """Issue 13 item 9: the chain's keywordSetHash matches no unkeyed hash of any candidate keyword set, and a
    guesser with another key gets other tags; only the key holder reproduces it."""
    truth = ["icd10|E11.9", "loinc|4548-4"]
    candidates = truth + ["icd10|I10", "icd10|R05", "snomed|44054006", "icd10|J18.9"]
    tag = keyword_set_tag(TAG_KEY, truth)
    assert tag not in unkeyed_keyword_set_guesses(candidates)
    assert tag != keyword_set_tag(OTHER_TAG_KEY, truth)
    assert tag == keyword_set_tag(TAG_KEY, list(reversed(truth)))


# -- the decision -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tally,holds_others,reason", [
    (Tally(found=True), False, Reason.ACTION_NOT_ALLOWED),
    (Tally(found=True, with_action=True, pending=True), False, Reason.NOT_YET_VALID),
    (Tally(found=True, with_action=True), False, Reason.EXPIRED),
    (Tally(found=True, with_action=True, revoked=True), True, Reason.EXPIRED),
    (Tally(revoked=True), True, Reason.REVOKED),
    (Tally(), True, Reason.OUT_OF_SCOPE),
    (Tally(), False, Reason.NO_GRANT),
])
def test_denial_names_the_most_specific_reason(tally, holds_others, reason):
    assert denial(tally, holds_others) is reason


def test_window_is_inclusive_at_start_exclusive_at_end(state):
    state.grant(g(nb=T0 + HOUR, exp=T0 + 2 * HOUR), T0)
    assert decide(state, t=T0 + HOUR - 1).reason is Reason.NOT_YET_VALID
    assert decide(state, t=T0 + HOUR) == Decision(True, Reason.OK, 0, Basis.GRANT)
    assert decide(state, t=T0 + 2 * HOUR - 1).allowed
    assert decide(state, t=T0 + 2 * HOUR).reason is Reason.EXPIRED


def test_grant_is_scoped_to_its_record_and_actions(state):
    state.grant(g(actions=Action.READ | Action.COPY), T0)
    assert decide(state, action=Action.COPY).allowed
    assert decide(state, action=Action.WRITE).reason is Reason.ACTION_NOT_ALLOWED
    assert decide(state, rec=R2).reason is Reason.OUT_OF_SCOPE
    assert decide(state, patient=P2).reason is Reason.NO_GRANT


def test_any_valid_permission_in_scope_allows(state):
    state.grant(g(scope=Scope.ALL, target=ZERO32, actions=Action.WRITE), T0)
    state.grant(g(actions=Action.READ), T0)
    assert decide(state, action=Action.READ).allowed and decide(state, action=Action.WRITE).allowed
    assert decide(state, rec=R2, action=Action.READ).reason is Reason.ACTION_NOT_ALLOWED


def test_suspension_overrides_everything(state):
    state.grant(g(), T0)
    state.suspend(DOC_B)
    assert decide(state).reason is Reason.GRANTEE_SUSPENDED
    state.clear(DOC_B)
    state.set_registry_suspended(DOC_B, True)
    assert decide(state).reason is Reason.GRANTEE_SUSPENDED


def test_unknown_grantee_has_no_grant(state):
    assert decide(state, grantee=keccak(text="ghost")).reason is Reason.NO_GRANT


def test_preset_rule_covers_doctors_of_the_institution_only(state):
    state.set_preset_rule(PresetRule(P, HOSP_A, Scope.ALL, ZERO32, Action.READ, T0, T0 + 30 * DAY), T0)
    assert decide(state, grantee=DOC_A) == Decision(True, Reason.OK, 0, Basis.PRESET_RULE)
    assert decide(state, grantee=DOC_B).reason is Reason.NO_GRANT
    assert decide(state, grantee=HOSP_A).reason is Reason.NO_GRANT
    assert decide(state, grantee=DOC_A, t=T0 + 30 * DAY).reason is Reason.EXPIRED


def test_preset_rule_only_names_hospitals_or_platforms(state):
    with violation("AccessPolicyInvalidInstitution", INSURER):
        state.set_preset_rule(PresetRule(P, INSURER, Scope.ALL, ZERO32, Action.READ, T0, T0 + DAY), T0)


# -- grants and revocation -----------------------------------------------------------------------------


def test_grant_is_idempotent_and_new_terms_replace_old(state):
    assert state.grant(g(), T0) is True
    assert state.grant(g(), T0 + 5) is False
    assert state.grant(g(actions=Action.WRITE), T0) is True
    assert state.grant_count(P, DOC_B) == 1
    assert state.grant_of(P, DOC_B, Scope.RECORD, R1).actions == Action.WRITE


def test_revoke_is_a_no_op_when_absent_and_bumps_the_epoch_once(state):
    assert state.revoke(P, DOC_B, Scope.RECORD, R1) is False
    assert state.epoch(P, DOC_B) == 0
    state.grant(g(), T0)
    assert state.revoke(P, DOC_B, Scope.RECORD, R1) is True
    assert state.revoke(P, DOC_B, Scope.RECORD, R1) is False
    assert state.epoch(P, DOC_B) == 1
    assert decide(state) == Decision(False, Reason.REVOKED, 1)


def test_revoke_all_retires_every_grant_and_a_new_grant_starts_clean(state):
    state.grant(g(target=R1), T0)
    state.grant(g(target=R2), T0)
    assert state.revoke_all(P, DOC_B) is True and state.revoke_all(P, DOC_B) is False
    assert state.live_grants(P) == [] and state.epoch(P, DOC_B) == 1
    state.grant(g(target=R2), T0)
    assert decide(state, rec=R2) == Decision(True, Reason.OK, 1, Basis.GRANT)
    assert decide(state, rec=R1).reason is Reason.REVOKED


@pytest.mark.parametrize("bad,error", [
    (dict(grantee=P2), "AccessPolicyInvalidGrantee"),
    (dict(scope=Scope.ALL, target=R1), "AccessPolicyInvalidScope"),
    (dict(scope=Scope.KEYWORD_SET, target=ZERO32), "AccessPolicyInvalidScope"),
    (dict(actions=0), "AccessPolicyInvalidActions"),
    (dict(nb=T0 + 5, exp=T0 + 5), "AccessPolicyInvalidWindow"),
    (dict(nb=T0 - 10, exp=T0), "AccessPolicyInvalidWindow"),
])
def test_grant_validation_mirrors_the_contract(state, bad, error):
    with violation(error):
        state.grant(g(**bad), T0)


def test_active_grants_are_grants_minus_revokes_minus_expiries(state):
    state.grant(g(target=R1, exp=T0 + HOUR), T0)
    state.grant(g(target=R2, exp=T0 + DAY), T0)
    state.grant(g(grantee=DOC_A, scope=Scope.ALL, target=ZERO32), T0)
    state.revoke(P, DOC_A, Scope.ALL, ZERO32)
    assert {x.target for x in state.active_grants(T0)} == {R1, R2}
    assert {x.target for x in state.active_grants(T0 + HOUR)} == {R2}


def test_replaying_logged_history_rebuilds_live_grants(state):
    history = [g(target=R1), g(target=R2), Revocation(P, DOC_B, 1, Scope.RECORD, R1), g(grantee=DOC_A),
               Revocation(P, DOC_A, 1, None, None, 1), g(grantee=DOC_A, target=R2)]
    live = {(x.grantee, x.target) for x in replay(history).live_grants()}
    assert live == {(DOC_B, R2), (DOC_A, R2)}


# -- requests -------------------------------------------------------------------------------------------


def test_request_lifecycle(state):
    req = state.request_access(P, DOC_B, Scope.RECORD, R1, Action.READ, T0, T0 + DAY, T0, "referral")
    assert (req.id, req.state, req.deadline) == (1, RequestState.REQUESTED, T0 + 3 * DAY)
    assert req.state_at(T0 + 3 * DAY) is RequestState.EXPIRED
    state.approve_request(req.id, T0 + 1)
    assert decide(state, t=T0 + 1).allowed
    with violation("AccessPolicyUnexpectedRequestState", 1, int(RequestState.APPROVED), int(RequestState.REQUESTED)):
        state.reject_request(req.id, T0 + 2)


def test_expired_request_cannot_be_decided(state):
    req = state.request_access(P, DOC_B, Scope.ALL, ZERO32, Action.READ, T0, T0 + 5 * DAY, T0)
    with violation("AccessPolicyUnexpectedRequestState", 1, int(RequestState.EXPIRED), int(RequestState.REQUESTED)):
        state.approve_request(req.id, T0 + 3 * DAY)


def test_request_refusals(state):
    with violation("AccessPolicyInvalidGrantee", P2):
        state.request_access(P, P2, Scope.ALL, ZERO32, 1, T0, T0 + DAY, T0)
    with violation("AccessPolicyInvalidPatient", DOC_A):
        state.request_access(DOC_A, DOC_B, Scope.ALL, ZERO32, 1, T0, T0 + DAY, T0)
    state.suspend(DOC_B)
    with violation("AccessPolicyRequesterSuspended", DOC_B):
        state.request_access(P, DOC_B, Scope.ALL, ZERO32, 1, T0, T0 + DAY, T0)
    with violation("AccessPolicyUnknownRequest", 9):
        state.approve_request(9, T0)


# -- emergency ------------------------------------------------------------------------------------------


def test_emergency_needs_quorum_is_read_only_and_time_boxed(state):
    e = state.request_emergency(P, DOC_B, 6 * HOUR, T0, "er")
    state.approve_emergency(e.id, AUTH1, T0 + 1)
    assert decide(state, t=T0 + 1).reason is Reason.NO_GRANT
    with violation("AccessPolicyDuplicateEmergencyApproval", e.id, AUTH1):
        state.approve_emergency(e.id, AUTH1, T0 + 2)
    e = state.approve_emergency(e.id, AUTH2, T0 + 2)
    assert (e.state, e.activated_at, e.expires_at) == (EmergencyState.ACTIVE, T0 + 2, T0 + 2 + 6 * HOUR)
    assert decide(state, rec=R2, t=T0 + 3) == Decision(True, Reason.OK, 0, Basis.EMERGENCY)
    assert decide(state, action=Action.WRITE, t=T0 + 3).reason is Reason.ACTION_NOT_ALLOWED
    assert decide(state, t=T0 + 2 + 6 * HOUR).reason is Reason.EXPIRED
    assert e.state_at(T0 + 2 + 6 * HOUR) is EmergencyState.EXPIRED


def test_emergency_counts_only_approvers_still_active_at_activation(state):
    state.register(Identity(AUTH3, Role.AUTHORITY_PROVINCIAL))
    e = state.request_emergency(P, DOC_B, HOUR, T0)
    state.approve_emergency(e.id, AUTH1, T0 + 1)
    state.set_registry_suspended(AUTH1, True)
    e = state.approve_emergency(e.id, AUTH2, T0 + 2)
    assert (e.approvals, e.state) == (2, EmergencyState.PENDING)
    e = state.approve_emergency(e.id, AUTH3, T0 + 3)
    assert (e.approvals, e.state, e.activated_at) == (3, EmergencyState.ACTIVE, T0 + 3)


def test_emergency_refusals(state):
    with violation("AccessPolicyInvalidEmergencyDuration", DAY + 1, DAY):
        state.request_emergency(P, DOC_B, DAY + 1, T0)
    with violation("AccessPolicyNotDoctor", INSURER):
        state.request_emergency(P, INSURER, HOUR, T0)
    e = state.request_emergency(P, DOC_B, HOUR, T0)
    with violation("AccessPolicyUnexpectedEmergencyState", e.id, int(EmergencyState.EXPIRED),
                   int(EmergencyState.PENDING)):
        state.approve_emergency(e.id, AUTH1, T0 + HOUR)


# -- errors ---------------------------------------------------------------------------------------------


def test_decision_require_raises_access_denied_naming_the_rule():
    d = Decision(False, Reason.EXPIRED, 3)
    with pytest.raises(AccessDenied, match="expired") as info:
        d.require(patient=P, grantee=DOC_B, record_id=R1, action=Action.READ)
    assert isinstance(info.value, PolicyDenied) and isinstance(info.value, PermissionError)
    assert isinstance(info.value, MBDSError) and info.value.decision is d
    ok = Decision(True, Reason.OK, 3, Basis.GRANT)
    assert ok.require(patient=P, grantee=DOC_B, record_id=R1, action=Action.READ) is ok


def test_policy_violation_is_a_value_error():
    assert issubclass(PolicyViolation, ValueError) and issubclass(PolicyViolation, MBDSError)


# -- properties ----------------------------------------------------------------------------------------

ops = st.lists(st.tuples(st.sampled_from(["grant", "revoke", "revoke_all", "advance"]),
                         st.sampled_from([DOC_A, DOC_B]), st.sampled_from([(Scope.ALL, ZERO32), (Scope.RECORD, R1),
                                                                           (Scope.RECORD, R2)]),
                         st.integers(1, 7), st.integers(1, 48)), max_size=40)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(ops)
def test_epochs_only_grow_and_active_grants_are_live_and_valid(steps):
    state = PolicyState()
    state.register(Identity(DOC_A, Role.DOCTOR, HOSP_A))
    state.register(Identity(DOC_B, Role.DOCTOR, HOSP_B))
    now = T0
    epochs = {DOC_A: 0, DOC_B: 0}
    for op, who, (scope, target), acts, hours in steps:
        if op == "grant":
            state.grant(Grant(P, who, scope, target, Action(acts), now, now + hours * HOUR), now)
        elif op == "revoke":
            state.revoke(P, who, scope, target)
        elif op == "revoke_all":
            state.revoke_all(P, who)
        else:
            now += hours * HOUR
        for d, e in epochs.items():
            assert state.epoch(P, d) >= e
            epochs[d] = state.epoch(P, d)
        live = state.live_grants(P)
        assert all(x in live and x.valid_at(now) for x in state.active_grants(now, P))
        assert sum(state.grant_count(P, d) for d in epochs) == len(live)
        for x in state.active_grants(now, P):
            assert decide(state, grantee=x.grantee, rec=x.target if x.scope is Scope.RECORD else R1,
                          action=Action(x.actions & -x.actions), t=now).allowed
