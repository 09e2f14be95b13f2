"""AccessPolicy: happy paths with decoded events, every refusal with its exact custom error."""

from __future__ import annotations

import pytest

from mbds_py.errors import PolicyDenied
from mbds_py.sharing.agent import AccessPolicyAgent, AccessPolicyRefusal
from mbds_py.sharing.policy import (DAY, HOUR, ZERO32, Action, Basis, Decision, EmergencyState, Grant, PolicyConfig,
                                    Reason, RequestState, Revocation, Scope, keyword_set_tag)
from mbds_py.toolchain import artifact
from tests.sharing._support import CONFIG, World, record, reverts

R1, R2 = record("r1"), record("r2")
TAG_KEY = bytes(range(32))  # a patient's keyword-set tag key (PatientSecrets.keyword_set_tag)
KW = keyword_set_tag(TAG_KEY, ["icd10|E11.9", "loinc|4548-4"])


def check(w: World, grantee: str, rec: bytes = R1, action: Action = Action.READ, *, patient: str = "patient",
          kw: bytes = ZERO32) -> Decision:
    return w.policy.check_access(w.id(patient), w.id(grantee), rec, action, keyword_set_hash=kw)


def record_access(w: World, grantee: str, rec: bytes = R1, action: Action = Action.READ, *, epoch: int = 0,
                  patient: str = "patient", kw: bytes = ZERO32):
    return w.policy.record_access(w.proxy, w.id(patient), w.id(grantee), rec, action, epoch, keyword_set_hash=kw)


def grant(w: World, grantee: str, *, scope: Scope = Scope.RECORD, target: bytes = R1, actions: int = Action.READ,
          start: int | None = None, end: int | None = None, patient: str = "patient"):
    now = w.now()
    return w.policy.grant(w.acct(patient), w.id(grantee), scope=scope, target=target, actions=actions,
                          not_before=now if start is None else start, expires_at=now + DAY if end is None else end)


def denied(w: World, grantee: str, reason: Reason, rec: bytes = R1, action: Action = Action.READ, **kw):
    """recordAccess refuses with AccessPolicyAccessDenied(patient, grantee, record, action, reason)."""
    return reverts("AccessPolicyAccessDenied", w.id(kw.pop("patient", "patient")), w.id(grantee), rec, int(action),
                   int(reason))


# ---------------------------------------------------------------------------------------------------
# Deployment
# ---------------------------------------------------------------------------------------------------


def test_config_views_match_constructor(world):
    assert world.policy.config() == CONFIG
    assert world.policy.is_proxy(world.proxy.address)


@pytest.mark.parametrize("field", ["request_ttl", "emergency_approval_window", "emergency_max_duration",
                                   "emergency_quorum"])
def test_constructor_rejects_zero_parameter(world, deployer, field):
    cfg = PolicyConfig(**{**CONFIG.__dict__, field: 0})
    registry = world.registry.address
    with reverts("AccessPolicyInvalidConfig", registry, *cfg.as_args()):
        AccessPolicyAgent.deploy(world.chain, deployer, registry, cfg)


def test_constructor_rejects_zero_registry(world, deployer):
    art = artifact("AccessPolicy")
    zero = "0x" + "00" * 20
    with reverts("AccessPolicyInvalidConfig", zero, *CONFIG.as_args()):
        world.chain.deploy("AccessPolicy", art.abi, art.bytecode, deployer, zero, *CONFIG.as_args())


# ---------------------------------------------------------------------------------------------------
# Grants
# ---------------------------------------------------------------------------------------------------


def test_grant_emits_event_and_allows_the_action(world):
    now = world.now()
    receipt = grant(world, "doctor-b1", actions=Action.READ | Action.COPY, start=now, end=now + DAY)
    (ev,) = world.policy.events(receipt, "AccessGranted")
    assert ev == {"patient": world.id("patient"), "grantee": world.id("doctor-b1"), "target": R1,
                  "scope": int(Scope.RECORD), "actions": 5, "notBefore": now, "expiresAt": now + DAY}
    assert check(world, "doctor-b1") == Decision(True, Reason.OK, 0)
    assert check(world, "doctor-b1", action=Action.COPY).allowed
    g = world.policy.grant_of(world.acct("patient"), world.acct("doctor-b1").address, Scope.RECORD, R1)
    assert (g.actions, g.not_before, g.expires_at) == (Action.READ | Action.COPY, now, now + DAY)
    assert world.policy.grant_count(world.id("patient"), world.id("doctor-b1")) == 1


def test_grant_by_account_address_resolves_to_the_participant_id(world):
    world.policy.grant(world.acct("patient"), world.acct("doctor-b1").address, scope=Scope.RECORD, target=R1,
                       duration=HOUR)
    assert check(world, "doctor-b1").allowed


def test_granting_the_same_thing_again_changes_nothing_and_emits_nothing(world):
    now = world.now()
    grant(world, "doctor-b1", start=now, end=now + DAY)
    receipt = grant(world, "doctor-b1", start=now, end=now + DAY)
    assert receipt["logs"] == []
    assert world.policy.grant_count(world.id("patient"), world.id("doctor-b1")) == 1


def test_granting_new_terms_replaces_the_old_ones_and_emits_again(world):
    now = world.now()
    grant(world, "doctor-b1", actions=Action.READ | Action.WRITE, start=now, end=now + DAY)
    receipt = grant(world, "doctor-b1", actions=Action.READ, start=now, end=now + 2 * DAY)
    (ev,) = world.policy.events(receipt, "AccessGranted")
    assert (ev["actions"], ev["expiresAt"]) == (1, now + 2 * DAY)
    assert check(world, "doctor-b1", action=Action.WRITE).reason is Reason.ACTION_NOT_ALLOWED
    assert world.policy.grant_count(world.id("patient"), world.id("doctor-b1")) == 1


def test_a_grant_for_one_record_does_not_open_another(world):
    grant(world, "doctor-b1", target=R1)
    assert check(world, "doctor-b1", R1).allowed
    assert check(world, "doctor-b1", R2) == Decision(False, Reason.OUT_OF_SCOPE, 0)
    with denied(world, "doctor-b1", Reason.OUT_OF_SCOPE, R2):
        record_access(world, "doctor-b1", R2)


def test_grant_records_grants_each_listed_record_only(world):
    now = world.now()
    r3 = record("r3")
    receipt = world.policy.grant_records(world.acct("patient"), world.id("doctor-b1"), [R1, R2], not_before=now,
                                         expires_at=now + DAY)
    assert [e["target"] for e in world.policy.events(receipt, "AccessGranted")] == [R1, R2]
    assert check(world, "doctor-b1", R1).allowed and check(world, "doctor-b1", R2).allowed
    assert check(world, "doctor-b1", r3).reason is Reason.OUT_OF_SCOPE


def test_grant_for_all_records_covers_any_record(world):
    grant(world, "doctor-b1", scope=Scope.ALL, target=ZERO32)
    assert check(world, "doctor-b1", R1).allowed and check(world, "doctor-b1", record("any")).allowed


def test_keyword_set_grant_covers_only_records_of_that_set(world):
    grant(world, "doctor-b1", scope=Scope.KEYWORD_SET, target=KW)
    assert check(world, "doctor-b1", R1, kw=KW).allowed
    other = keyword_set_tag(TAG_KEY, ["icd10|I10"])
    assert check(world, "doctor-b1", R1, kw=other).reason is Reason.OUT_OF_SCOPE
    assert check(world, "doctor-b1", R1).reason is Reason.OUT_OF_SCOPE
    event = record_access(world, "doctor-b1", R1, kw=KW)
    assert event.basis is Basis.GRANT


def test_grant_to_an_institution_is_not_a_grant_to_its_doctors(world):
    grant(world, "hospital-a")
    assert check(world, "hospital-a").allowed
    assert check(world, "doctor-a1").reason is Reason.NO_GRANT


def test_grants_of_one_patient_do_not_leak_to_another(world):
    grant(world, "doctor-b1", scope=Scope.ALL, target=ZERO32)
    assert check(world, "doctor-b1", patient="patient-2").reason is Reason.NO_GRANT


def test_grant_reverts_for_non_patient(world):
    doctor = world.acct("doctor-a1")
    with reverts("AccessPolicyNotPatient", doctor.address):
        world.policy.grant(doctor, world.id("doctor-b1"), scope=Scope.ALL, duration=HOUR)


def test_grant_reverts_for_unregistered_caller(world, outsider):
    with reverts("AccessPolicyNotPatient", outsider.address):
        world.policy.grant(outsider, world.id("doctor-b1"), scope=Scope.ALL, duration=HOUR)


def test_grant_reverts_for_suspended_patient(world):
    world.registry.suspend(world.acct("authority-national"), world.id("patient"), "identity theft suspected")
    with reverts("AccessPolicyPatientSuspended", world.id("patient")):
        grant(world, "doctor-b1")


@pytest.mark.parametrize("grantee", ["patient", "patient-2", "nobody"])
def test_grant_reverts_for_invalid_grantee(world, grantee):
    with reverts("AccessPolicyInvalidGrantee", world.id(grantee)):
        grant(world, grantee)


@pytest.mark.parametrize("scope,target", [(Scope.ALL, R1), (Scope.RECORD, ZERO32), (Scope.KEYWORD_SET, ZERO32)])
def test_grant_reverts_for_invalid_scope(world, scope, target):
    with reverts("AccessPolicyInvalidScope", int(scope), target):
        grant(world, "doctor-b1", scope=scope, target=target)


@pytest.mark.parametrize("actions", [0, 8, 0xFF])
def test_grant_reverts_for_invalid_actions(world, actions):
    with reverts("AccessPolicyInvalidActions", actions):
        grant(world, "doctor-b1", actions=actions)


def test_grant_reverts_for_empty_window(world):
    now = world.now()
    with reverts("AccessPolicyInvalidWindow") as info:
        grant(world, "doctor-b1", start=now + HOUR, end=now + HOUR)
    assert info.value.args_decoded[:2] == (now + HOUR, now + HOUR)


def test_grant_reverts_for_window_already_over(world):
    now = world.now()
    with reverts("AccessPolicyInvalidWindow") as info:
        grant(world, "doctor-b1", start=now - DAY, end=now - HOUR)
    assert info.value.args_decoded[:2] == (now - DAY, now - HOUR)


def test_grant_records_reverts_for_non_patient(world):
    insurer = world.acct("insurer")
    with reverts("AccessPolicyNotPatient", insurer.address):
        world.policy.grant_records(insurer, world.id("doctor-b1"), [R1], duration=HOUR)


def test_grant_records_reverts_for_a_zero_record_id(world):
    with reverts("AccessPolicyInvalidScope", int(Scope.RECORD), ZERO32):
        world.policy.grant_records(world.acct("patient"), world.id("doctor-b1"), [R1, ZERO32], duration=HOUR)


# ---------------------------------------------------------------------------------------------------
# Validity windows and actions
# ---------------------------------------------------------------------------------------------------


def test_grant_is_not_valid_before_its_window_then_valid_then_expired(world):
    now = world.now()
    grant(world, "doctor-b1", start=now + HOUR, end=now + 3 * HOUR)
    assert check(world, "doctor-b1").reason is Reason.NOT_YET_VALID
    with denied(world, "doctor-b1", Reason.NOT_YET_VALID):
        record_access(world, "doctor-b1")
    world.chain.increase_time(HOUR)
    assert check(world, "doctor-b1").allowed
    record_access(world, "doctor-b1")
    world.chain.increase_time(2 * HOUR)
    assert check(world, "doctor-b1").reason is Reason.EXPIRED


def test_expired_grant_refuses_access(world):
    now = world.now()
    grant(world, "doctor-b1", start=now, end=now + HOUR)
    world.chain.increase_time(HOUR)
    assert check(world, "doctor-b1") == Decision(False, Reason.EXPIRED, 0)
    with denied(world, "doctor-b1", Reason.EXPIRED):
        record_access(world, "doctor-b1")


def test_wrong_action_refuses_access(world):
    grant(world, "doctor-b1", actions=Action.READ)
    assert check(world, "doctor-b1", action=Action.WRITE).reason is Reason.ACTION_NOT_ALLOWED
    with denied(world, "doctor-b1", Reason.ACTION_NOT_ALLOWED, action=Action.COPY):
        record_access(world, "doctor-b1", action=Action.COPY)


@pytest.mark.parametrize("action", [0, 3, 8])
def test_access_must_name_exactly_one_action(world, action):
    with reverts("AccessPolicyInvalidActions", action):
        world.policy.check_access(world.id("patient"), world.id("doctor-b1"), R1, action)
    with reverts("AccessPolicyInvalidActions", action):
        record_access(world, "doctor-b1", action=action)


def test_no_grant_at_all_is_reported_as_such(world):
    assert check(world, "doctor-b1") == Decision(False, Reason.NO_GRANT, 0)
    with denied(world, "doctor-b1", Reason.NO_GRANT):
        record_access(world, "doctor-b1")


# ---------------------------------------------------------------------------------------------------
# Revocation and epochs
# ---------------------------------------------------------------------------------------------------


def test_revoke_emits_event_bumps_epoch_and_refuses_at_once(world):
    grant(world, "doctor-b1")
    record_access(world, "doctor-b1", epoch=0)
    receipt = world.policy.revoke(world.acct("patient"), world.id("doctor-b1"), scope=Scope.RECORD, target=R1)
    (ev,) = world.policy.events(receipt, "AccessRevoked")
    assert ev == {"patient": world.id("patient"), "grantee": world.id("doctor-b1"), "target": R1,
                  "scope": int(Scope.RECORD), "epoch": 1}
    assert world.policy.epoch(world.id("patient"), world.id("doctor-b1")) == 1
    assert check(world, "doctor-b1") == Decision(False, Reason.REVOKED, 1)
    assert world.policy.grant_of(world.id("patient"), world.id("doctor-b1"), Scope.RECORD, R1) is None
    with denied(world, "doctor-b1", Reason.REVOKED):
        record_access(world, "doctor-b1", epoch=1)


def test_revoking_what_does_not_exist_is_a_no_op(world):
    receipt = world.policy.revoke(world.acct("patient"), world.id("doctor-b1"), scope=Scope.RECORD, target=R1)
    assert receipt["logs"] == []
    assert world.policy.epoch(world.id("patient"), world.id("doctor-b1")) == 0


def test_revoking_twice_bumps_the_epoch_once(world):
    grant(world, "doctor-b1")
    for _ in range(2):
        world.policy.revoke(world.acct("patient"), world.id("doctor-b1"), scope=Scope.RECORD, target=R1)
    assert world.policy.epoch(world.id("patient"), world.id("doctor-b1")) == 1


def test_key_of_an_older_epoch_is_useless_after_regrant(world):
    grant(world, "doctor-b1")
    world.policy.revoke(world.acct("patient"), world.id("doctor-b1"), scope=Scope.RECORD, target=R1)
    grant(world, "doctor-b1")
    assert check(world, "doctor-b1") == Decision(True, Reason.OK, 1)
    with reverts("AccessPolicyStaleEpoch", world.id("patient"), world.id("doctor-b1"), 0, 1):
        record_access(world, "doctor-b1", epoch=0)
    assert record_access(world, "doctor-b1", epoch=1).epoch == 1


def test_revoking_one_grant_keeps_the_others_but_moves_the_epoch(world):
    grant(world, "doctor-b1", target=R1)
    grant(world, "doctor-b1", target=R2)
    world.policy.revoke(world.acct("patient"), world.id("doctor-b1"), scope=Scope.RECORD, target=R1)
    assert check(world, "doctor-b1", R1) == Decision(False, Reason.REVOKED, 1)
    assert check(world, "doctor-b1", R2) == Decision(True, Reason.OK, 1)


def test_revoke_all_retires_every_grant(world):
    grant(world, "doctor-b1", target=R1)
    grant(world, "doctor-b1", scope=Scope.ALL, target=ZERO32, actions=Action.READ | Action.WRITE)
    receipt = world.policy.revoke_all(world.acct("patient"), world.id("doctor-b1"))
    (ev,) = world.policy.events(receipt, "AllAccessRevoked")
    assert ev == {"patient": world.id("patient"), "grantee": world.id("doctor-b1"), "grants": 2, "epoch": 1}
    assert world.policy.grant_count(world.id("patient"), world.id("doctor-b1")) == 0
    assert check(world, "doctor-b1", R1) == Decision(False, Reason.REVOKED, 1)
    assert check(world, "doctor-b1", R2).reason is Reason.REVOKED  # the All grant is in scope
    grant(world, "doctor-b1", target=R2)
    assert check(world, "doctor-b1", R2) == Decision(True, Reason.OK, 1)
    assert check(world, "doctor-b1", R1).reason is Reason.REVOKED


def test_revoke_all_without_grants_is_a_no_op(world):
    receipt = world.policy.revoke_all(world.acct("patient"), world.id("doctor-b1"))
    assert receipt["logs"] == []
    assert world.policy.epoch(world.id("patient"), world.id("doctor-b1")) == 0


def test_revoke_reverts_for_non_patient(world):
    grant(world, "doctor-b1")
    doctor = world.acct("doctor-b1")
    with reverts("AccessPolicyNotPatient", doctor.address):
        world.policy.revoke(doctor, world.id("doctor-b1"), scope=Scope.RECORD, target=R1)


def test_revoke_all_reverts_for_non_patient(world):
    authority = world.acct("authority-national")
    with reverts("AccessPolicyNotPatient", authority.address):
        world.policy.revoke_all(authority, world.id("doctor-b1"))


def test_another_patient_cannot_revoke_this_patients_grant(world):
    grant(world, "doctor-b1")
    receipt = world.policy.revoke(world.acct("patient-2"), world.id("doctor-b1"), scope=Scope.RECORD, target=R1)
    assert receipt["logs"] == []  # patient-2 revoked in its own (empty) policy
    assert check(world, "doctor-b1").allowed


def test_suspended_patient_can_still_revoke(world):
    grant(world, "doctor-b1")
    world.registry.suspend(world.acct("authority-national"), world.id("patient"), "identity check")
    world.policy.revoke(world.acct("patient"), world.id("doctor-b1"), scope=Scope.RECORD, target=R1)
    assert check(world, "doctor-b1").reason is Reason.REVOKED


# ---------------------------------------------------------------------------------------------------
# Preset rules (the paper's "preset access permissions")
# ---------------------------------------------------------------------------------------------------


def set_rule(w: World, institution: str = "hospital-a", *, scope: Scope = Scope.ALL, target: bytes = ZERO32,
             actions: int = Action.READ, days: int = 30, patient: str = "patient"):
    now = w.now()
    return w.policy.set_preset_rule(w.acct(patient), w.id(institution), scope=scope, target=target,
                                    actions=actions, not_before=now, expires_at=now + days * DAY)


def test_preset_rule_lets_doctors_of_the_institution_in_and_no_one_else(world):
    now = world.now()
    receipt = set_rule(world, "hospital-a")
    (ev,) = world.policy.events(receipt, "PresetRuleSet")
    assert ev == {"patient": world.id("patient"), "institution": world.id("hospital-a"), "target": ZERO32,
                  "scope": int(Scope.ALL), "actions": 1, "notBefore": now, "expiresAt": now + 30 * DAY}
    assert check(world, "doctor-a1").allowed and check(world, "doctor-a2").allowed
    assert record_access(world, "doctor-a1").basis is Basis.PRESET_RULE
    assert check(world, "doctor-b1") == Decision(False, Reason.NO_GRANT, 0)
    assert check(world, "online-doctor").reason is Reason.NO_GRANT
    assert check(world, "hospital-a").reason is Reason.NO_GRANT  # "any doctor of", not the institution
    with denied(world, "doctor-b1", Reason.NO_GRANT):
        record_access(world, "doctor-b1")


def test_preset_rule_for_thirty_days_ends_after_thirty_days(world):
    set_rule(world, "hospital-a", days=30)
    world.chain.increase_time(30 * DAY - HOUR)
    assert check(world, "doctor-a1").allowed
    world.chain.increase_time(HOUR)
    assert check(world, "doctor-a1").reason is Reason.EXPIRED


def test_preset_rule_scoped_to_a_record_and_actions(world):
    set_rule(world, "platform", scope=Scope.RECORD, target=R1, actions=Action.READ)
    assert check(world, "online-doctor", R1).allowed
    assert check(world, "online-doctor", R2).reason is Reason.OUT_OF_SCOPE
    assert check(world, "online-doctor", R1, Action.WRITE).reason is Reason.ACTION_NOT_ALLOWED


def test_setting_the_same_rule_again_is_a_no_op(world):
    now = world.now()
    for expected_logs in (1, 0):
        receipt = world.policy.set_preset_rule(world.acct("patient"), world.id("hospital-a"), not_before=now,
                                               expires_at=now + DAY)
        assert len(receipt["logs"]) == expected_logs


def test_removing_a_rule_stops_access_and_removing_again_is_a_no_op(world):
    set_rule(world, "hospital-a")
    receipt = world.policy.remove_preset_rule(world.acct("patient"), world.id("hospital-a"))
    (ev,) = world.policy.events(receipt, "PresetRuleRemoved")
    assert ev == {"patient": world.id("patient"), "institution": world.id("hospital-a"), "target": ZERO32,
                  "scope": int(Scope.ALL)}
    assert check(world, "doctor-a1").reason is Reason.NO_GRANT
    assert world.policy.preset_rule_of(world.id("patient"), world.id("hospital-a")) is None
    assert world.policy.remove_preset_rule(world.acct("patient"), world.id("hospital-a"))["logs"] == []


def test_set_preset_rule_reverts_for_non_patient(world):
    doctor = world.acct("doctor-a1")
    with reverts("AccessPolicyNotPatient", doctor.address):
        world.policy.set_preset_rule(doctor, world.id("hospital-a"), duration=DAY)


def test_remove_preset_rule_reverts_for_non_patient(world):
    hospital = world.acct("hospital-a")
    with reverts("AccessPolicyNotPatient", hospital.address):
        world.policy.remove_preset_rule(hospital, world.id("hospital-a"))


@pytest.mark.parametrize("institution", ["doctor-a1", "insurer", "authority-national", "nobody"])
def test_preset_rule_names_a_hospital_or_platform(world, institution):
    with reverts("AccessPolicyInvalidInstitution", world.id(institution)):
        set_rule(world, institution)


def test_suspended_patient_cannot_set_rules(world):
    world.registry.suspend(world.acct("authority-national"), world.id("patient"), "identity check")
    with reverts("AccessPolicyPatientSuspended", world.id("patient")):
        set_rule(world, "hospital-a")


# ---------------------------------------------------------------------------------------------------
# Requests: Requested → Approved | Rejected | Expired
# ---------------------------------------------------------------------------------------------------


def ask(w: World, requester: str = "doctor-b1", *, scope: Scope = Scope.RECORD, target: bytes = R1,
        actions: int = Action.READ, reason: str = "referral: needs the HbA1c history"):
    return w.policy.request_access(w.acct(requester), w.id("patient"), scope=scope, target=target, actions=actions,
                                   duration=7 * DAY, reason=reason)


def test_request_then_approve_grants_the_requested_terms(world):
    req = ask(world)
    assert (req.id, req.state, req.reason) == (1, RequestState.REQUESTED, "referral: needs the HbA1c history")
    assert (req.patient, req.requester, req.scope, req.target) == (world.id("patient"), world.id("doctor-b1"),
                                                                   Scope.RECORD, R1)
    assert req.deadline == req.created_at + CONFIG.request_ttl
    assert check(world, "doctor-b1").reason is Reason.NO_GRANT
    receipt = world.policy.approve_request(world.acct("patient"), req.id)
    (approved,) = world.policy.events(receipt, "AccessRequestApproved")
    assert approved == {"requestId": 1, "patient": world.id("patient"), "requester": world.id("doctor-b1")}
    (granted,) = world.policy.events(receipt, "AccessGranted")
    assert (granted["grantee"], granted["target"], granted["expiresAt"]) == (world.id("doctor-b1"), R1,
                                                                             req.expires_at)
    assert world.policy.request_state(req.id) is RequestState.APPROVED
    assert check(world, "doctor-b1").allowed


def test_request_then_reject_records_the_reason(world):
    req = ask(world)
    receipt = world.policy.reject_request(world.acct("patient"), req.id, "not relevant to the referral")
    (ev,) = world.policy.events(receipt, "AccessRequestRejected")
    assert ev == {"requestId": req.id, "patient": world.id("patient"), "requester": world.id("doctor-b1"),
                  "reason": "not relevant to the referral"}
    assert world.policy.request(req.id).state is RequestState.REJECTED
    assert check(world, "doctor-b1").reason is Reason.NO_GRANT


def test_request_expires_after_its_ttl(world):
    req = ask(world)
    world.chain.increase_time(CONFIG.request_ttl - HOUR)
    assert world.policy.request_state(req.id) is RequestState.REQUESTED
    world.chain.increase_time(HOUR)
    assert world.policy.request_state(req.id) is RequestState.EXPIRED
    with reverts("AccessPolicyUnexpectedRequestState", req.id, int(RequestState.EXPIRED),
                 int(RequestState.REQUESTED)):
        world.policy.approve_request(world.acct("patient"), req.id)
    with reverts("AccessPolicyUnexpectedRequestState", req.id, int(RequestState.EXPIRED),
                 int(RequestState.REQUESTED)):
        world.policy.reject_request(world.acct("patient"), req.id, "late")


@pytest.mark.parametrize("first,second,state", [
    ("approve", "approve", RequestState.APPROVED),
    ("approve", "reject", RequestState.APPROVED),
    ("reject", "approve", RequestState.REJECTED),
    ("reject", "reject", RequestState.REJECTED),
])
def test_a_decided_request_cannot_be_decided_again(world, first, second, state):
    req = ask(world)
    patient = world.acct("patient")
    decide = {"approve": lambda: world.policy.approve_request(patient, req.id),
              "reject": lambda: world.policy.reject_request(patient, req.id, "no")}
    decide[first]()
    with reverts("AccessPolicyUnexpectedRequestState", req.id, int(state), int(RequestState.REQUESTED)):
        decide[second]()


@pytest.mark.parametrize("caller", ["patient-2", "doctor-b1", "authority-national"])
def test_approve_reverts_for_anyone_but_the_patient(world, caller):
    req = ask(world)
    acct = world.acct(caller)
    with reverts("AccessPolicyNotRequestPatient", req.id, acct.address):
        world.policy.approve_request(acct, req.id)


@pytest.mark.parametrize("caller", ["patient-2", "doctor-b1"])
def test_reject_reverts_for_anyone_but_the_patient(world, caller):
    req = ask(world)
    acct = world.acct(caller)
    with reverts("AccessPolicyNotRequestPatient", req.id, acct.address):
        world.policy.reject_request(acct, req.id, "no")


def test_suspended_patient_cannot_approve_but_can_reject(world):
    req = ask(world)
    world.registry.suspend(world.acct("authority-national"), world.id("patient"), "identity check")
    with reverts("AccessPolicyPatientSuspended", world.id("patient")):
        world.policy.approve_request(world.acct("patient"), req.id)
    world.policy.reject_request(world.acct("patient"), req.id, "not me")


def test_unknown_request_reverts(world):
    with reverts("AccessPolicyUnknownRequest", 99):
        world.policy.approve_request(world.acct("patient"), 99)
    with reverts("AccessPolicyUnknownRequest", 99):
        world.policy.request_state(99)


def test_request_by_a_patient_reverts(world):
    with reverts("AccessPolicyInvalidGrantee", world.id("patient-2")):
        ask(world, "patient-2")


def test_request_by_an_unregistered_account_reverts(world, outsider):
    with reverts("AccessPolicyNotParticipant", outsider.address):
        world.policy.request_access(outsider, world.id("patient"), scope=Scope.ALL, duration=DAY)


def test_request_to_a_non_patient_reverts(world):
    with reverts("AccessPolicyInvalidPatient", world.id("doctor-a1")):
        world.policy.request_access(world.acct("doctor-b1"), world.id("doctor-a1"), scope=Scope.ALL, duration=DAY)


def test_request_by_a_suspended_requester_reverts(world):
    world.policy.suspend_requester(world.proxy, world.id("doctor-b1"), "200 reads in a minute")
    with reverts("AccessPolicyRequesterSuspended", world.id("doctor-b1")):
        ask(world)


def test_insurer_may_request_and_be_granted(world):
    req = ask(world, "insurer", scope=Scope.KEYWORD_SET, target=KW, reason="claim 42")
    world.policy.approve_request(world.acct("patient"), req.id)
    assert check(world, "insurer", kw=KW).allowed


# ---------------------------------------------------------------------------------------------------
# Emergency (break-glass) access
# ---------------------------------------------------------------------------------------------------


def emergency(w: World, doctor: str = "doctor-b1", duration: int = 12 * HOUR,
              reason: str = "unconscious at ER, allergy check"):
    return w.policy.request_emergency(w.acct(doctor), w.id("patient"), duration, reason)


def test_emergency_needs_a_quorum_of_authorities_and_notifies_the_patient(world):
    e = emergency(world)
    assert (e.id, e.state, e.approvals, e.reason) == (1, EmergencyState.PENDING, 0, "unconscious at ER, allergy check")
    notified = world.policy.contract.events.EmergencyAccessRequested().get_logs(
        argument_filters={"patient": world.id("patient")}, from_block=0)
    assert [dict(n["args"])["grantee"] for n in notified] == [world.id("doctor-b1")]

    receipt = world.policy.approve_emergency(world.acct("authority-national"), e.id)
    (ev,) = world.policy.events(receipt, "EmergencyAccessApproved")
    assert ev == {"emergencyId": e.id, "authority": world.id("authority-national"), "approvals": 1}
    assert world.policy.events(receipt, "EmergencyAccessActivated") == []
    assert world.policy.emergency_state(e.id) is EmergencyState.PENDING
    assert check(world, "doctor-b1").reason is Reason.NO_GRANT  # fewer than k approvals
    with denied(world, "doctor-b1", Reason.NO_GRANT):
        record_access(world, "doctor-b1")

    receipt = world.policy.approve_emergency(world.acct("authority-municipal"), e.id)
    now = world.now()
    (act,) = world.policy.events(receipt, "EmergencyAccessActivated")
    assert act == {"emergencyId": e.id, "patient": world.id("patient"), "grantee": world.id("doctor-b1"),
                   "activatedAt": now, "expiresAt": now + 12 * HOUR}
    e = world.policy.emergency(e.id)
    assert (e.state, e.approvals, e.activated_at, e.expires_at) == (EmergencyState.ACTIVE, 2, now, now + 12 * HOUR)
    assert e.approvers == {world.id("authority-national"), world.id("authority-municipal")}
    assert world.policy.emergency_window(world.id("patient"), world.id("doctor-b1")) == (now, now + 12 * HOUR)
    assert check(world, "doctor-b1", record("anything")).allowed
    assert record_access(world, "doctor-b1").basis is Basis.EMERGENCY
    assert check(world, "doctor-b1", action=Action.WRITE).reason is Reason.ACTION_NOT_ALLOWED  # read only


def test_emergency_access_ends_after_its_duration(world):
    e = emergency(world, duration=6 * HOUR)
    for auth in ("authority-national", "authority-provincial"):
        world.policy.approve_emergency(world.acct(auth), e.id)
    world.chain.increase_time(6 * HOUR)
    assert world.policy.emergency_state(e.id) is EmergencyState.EXPIRED
    assert check(world, "doctor-b1").reason is Reason.EXPIRED
    with denied(world, "doctor-b1", Reason.EXPIRED):
        record_access(world, "doctor-b1")


def test_emergency_not_approved_in_time_expires(world):
    e = emergency(world)
    world.policy.approve_emergency(world.acct("authority-national"), e.id)
    world.chain.increase_time(CONFIG.emergency_approval_window)
    assert world.policy.emergency_state(e.id) is EmergencyState.EXPIRED
    with reverts("AccessPolicyUnexpectedEmergencyState", e.id, int(EmergencyState.EXPIRED),
                 int(EmergencyState.PENDING)):
        world.policy.approve_emergency(world.acct("authority-municipal"), e.id)


def test_approving_an_active_emergency_reverts(world):
    e = emergency(world)
    for auth in ("authority-national", "authority-provincial"):
        world.policy.approve_emergency(world.acct(auth), e.id)
    with reverts("AccessPolicyUnexpectedEmergencyState", e.id, int(EmergencyState.ACTIVE),
                 int(EmergencyState.PENDING)):
        world.policy.approve_emergency(world.acct("authority-municipal"), e.id)


def test_duplicate_emergency_approval_reverts(world):
    e = emergency(world)
    world.policy.approve_emergency(world.acct("authority-national"), e.id)
    with reverts("AccessPolicyDuplicateEmergencyApproval", e.id, world.id("authority-national")):
        world.policy.approve_emergency(world.acct("authority-national"), e.id)


@pytest.mark.parametrize("caller", ["doctor-a1", "hospital-a", "patient"])
def test_emergency_approval_reverts_for_non_authority(world, caller):
    e = emergency(world)
    acct = world.acct(caller)
    with reverts("AccessPolicyNotAuthority", acct.address):
        world.policy.approve_emergency(acct, e.id)


def test_an_approver_suspended_before_activation_does_not_count(world):
    """The quorum counts approvers still active when the access activates (issue 13, M-3 item 3)."""
    e = emergency(world)
    world.policy.approve_emergency(world.acct("authority-national"), e.id)
    world.registry.suspend(world.council("authority-provincial", "authority-municipal"), world.id("authority-national"),
                           "key leak")
    receipt = world.policy.approve_emergency(world.acct("authority-provincial"), e.id)
    assert world.policy.events(receipt, "EmergencyAccessActivated") == []  # 2 approvals, 1 still active
    assert world.policy.emergency(e.id).state is EmergencyState.PENDING
    assert check(world, "doctor-b1").allowed is False
    receipt = world.policy.approve_emergency(world.acct("authority-municipal"), e.id)
    assert len(world.policy.events(receipt, "EmergencyAccessActivated")) == 1
    assert world.policy.emergency(e.id).state is EmergencyState.ACTIVE


def test_suspended_authority_cannot_approve_emergencies(world):
    e = emergency(world)
    world.registry.suspend(world.council("authority-provincial", "authority-municipal"), world.id("authority-national"),
                           "key leak")
    national = world.acct("authority-national")
    with reverts("AccessPolicyNotAuthority", national.address):
        world.policy.approve_emergency(national, e.id)


@pytest.mark.parametrize("duration", [0, 24 * HOUR + 1])
def test_emergency_duration_is_bounded(world, duration):
    with reverts("AccessPolicyInvalidEmergencyDuration", duration, CONFIG.emergency_max_duration):
        emergency(world, duration=duration)


@pytest.mark.parametrize("caller", ["insurer", "hospital-a", "patient-2"])
def test_emergency_request_reverts_for_non_doctor(world, caller):
    acct = world.acct(caller)
    with reverts("AccessPolicyNotDoctor", acct.address):
        world.policy.request_emergency(acct, world.id("patient"), HOUR, "x")


def test_emergency_request_by_unregistered_account_reverts(world, outsider):
    with reverts("AccessPolicyNotParticipant", outsider.address):
        world.policy.request_emergency(outsider, world.id("patient"), HOUR, "x")


def test_emergency_for_a_non_patient_reverts(world):
    with reverts("AccessPolicyInvalidPatient", world.id("doctor-a1")):
        world.policy.request_emergency(world.acct("doctor-b1"), world.id("doctor-a1"), HOUR, "x")


def test_unknown_emergency_reverts(world):
    with reverts("AccessPolicyUnknownEmergency", 7):
        world.policy.approve_emergency(world.acct("authority-national"), 7)


def test_suspended_doctor_cannot_request_emergency_access(world):
    world.registry.suspend(world.acct("authority-national"), world.id("doctor-b1"), "abnormal access")
    with reverts("AccessPolicyRequesterSuspended", world.id("doctor-b1")):
        emergency(world)


def test_a_second_emergency_extends_but_never_shortens_the_window(world):
    first = emergency(world, duration=12 * HOUR)
    for auth in ("authority-national", "authority-provincial"):
        world.policy.approve_emergency(world.acct(auth), first.id)
    start, end = world.policy.emergency_window(world.id("patient"), world.id("doctor-b1"))
    second = emergency(world, duration=HOUR)
    for auth in ("authority-national", "authority-provincial"):
        world.policy.approve_emergency(world.acct(auth), second.id)
    assert world.policy.emergency_window(world.id("patient"), world.id("doctor-b1")) == (start, end)


# ---------------------------------------------------------------------------------------------------
# Proxies and the audit trail
# ---------------------------------------------------------------------------------------------------


def test_record_access_emits_the_audit_event(world):
    grant(world, "doctor-b1", actions=Action.READ | Action.COPY)
    event = record_access(world, "doctor-b1", action=Action.COPY)
    assert (event.patient, event.grantee, event.record_id, event.action, event.basis, event.epoch, event.proxy) == (
        world.id("patient"), world.id("doctor-b1"), R1, Action.COPY, Basis.GRANT, 0, world.proxy.address)
    assert event.at == world.now()
    trail = world.policy.audit_trail(patient=world.id("patient"))
    assert trail == [event]


def test_audit_trail_filters_by_record_and_grantee(world):
    grant(world, "doctor-b1", scope=Scope.ALL, target=ZERO32)
    set_rule(world, "hospital-a")
    record_access(world, "doctor-b1", R1)
    record_access(world, "doctor-b1", R2)
    record_access(world, "doctor-a1", R1)
    by_record = world.policy.audit_trail(record_id=R1)
    assert [(e.grantee, e.basis) for e in by_record] == [(world.id("doctor-b1"), Basis.GRANT),
                                                        (world.id("doctor-a1"), Basis.PRESET_RULE)]
    assert [e.record_id for e in world.policy.audit_trail(grantee=world.id("doctor-b1"))] == [R1, R2]
    assert world.policy.audit_trail(patient=world.id("patient-2")) == []


def test_record_denial_audits_a_refused_attempt_with_its_reason(world):
    grant(world, "doctor-b1")
    world.policy.revoke(world.acct("patient"), world.id("doctor-b1"), scope=Scope.RECORD, target=R1)
    denial = world.policy.record_denial(world.proxy, world.id("patient"), world.id("doctor-b1"), R1, Action.READ)
    assert (denial.patient, denial.grantee, denial.record_id, denial.action, denial.reason, denial.proxy) == (
        world.id("patient"), world.id("doctor-b1"), R1, Action.READ, Reason.REVOKED, world.proxy.address)
    assert denial.at == world.now()
    assert world.policy.denials(patient=world.id("patient")) == [denial]
    assert world.policy.denials(record_id=R2) == []
    assert world.policy.audit_trail(patient=world.id("patient")) == []  # a refusal is not an access


def test_record_denial_without_any_grant_names_no_grant(world):
    denial = world.policy.record_denial(world.proxy, world.id("patient"), world.id("doctor-b1"), R2, Action.READ)
    assert denial.reason is Reason.NO_GRANT


def test_record_denial_cannot_forge_a_refusal_of_an_allowed_access(world):
    grant(world, "doctor-b1")
    with reverts("AccessPolicyAccessAllowed", world.id("patient"), world.id("doctor-b1"), R1, int(Action.READ)):
        world.policy.record_denial(world.proxy, world.id("patient"), world.id("doctor-b1"), R1, Action.READ)
    assert world.policy.denials(patient=world.id("patient")) == []


def test_record_denial_reverts_for_non_proxy(world):
    for label in ("doctor-b1", "authority-national", "patient"):
        acct = world.acct(label)
        with reverts("AccessPolicyNotProxy", acct.address):
            world.policy.record_denial(acct, world.id("patient"), world.id("doctor-b1"), R1, Action.READ)


def test_record_access_reverts_for_non_proxy(world):
    grant(world, "doctor-b1")
    for label in ("doctor-b1", "authority-national", "patient"):
        acct = world.acct(label)
        with reverts("AccessPolicyNotProxy", acct.address):
            world.policy.record_access(acct, world.id("patient"), world.id("doctor-b1"), R1, Action.READ, 0)


def test_governor_adds_and_removes_proxies_idempotently(world, make_account):
    proxy2 = make_account("sharing/proxy-2")
    council = world.council("authority-provincial", "authority-municipal")
    receipt = world.policy.add_proxy(council, proxy2.address)
    (ev,) = world.policy.events(receipt, "ProxyAdded")
    assert ev == {"proxy": proxy2.address, "authority": ZERO32}  # the governor (k authorities) acted
    assert world.policy.events(world.policy.add_proxy(council, proxy2.address), "ProxyAdded") == []
    receipt = world.policy.remove_proxy(council, proxy2.address)
    (ev,) = world.policy.events(receipt, "ProxyRemoved")
    assert ev == {"proxy": proxy2.address, "authority": ZERO32}
    assert world.policy.events(world.policy.remove_proxy(council, proxy2.address), "ProxyRemoved") == []
    assert not world.policy.is_proxy(proxy2.address)


def test_removed_proxy_can_no_longer_record(world):
    grant(world, "doctor-b1")
    world.policy.remove_proxy(world.council(), world.proxy.address)
    with reverts("AccessPolicyNotProxy", world.proxy.address):
        record_access(world, "doctor-b1")


@pytest.mark.parametrize("caller", ["doctor-a1", "hospital-a", "patient", "authority-national"])
def test_add_proxy_reverts_for_anyone_but_the_governor(world, caller, make_account):
    acct = world.acct(caller)  # one authority alone included (M-3)
    with reverts("AccessPolicyNotGovernance", acct.address):
        world.policy.add_proxy(acct, make_account("sharing/proxy-2").address)


def test_remove_proxy_reverts_for_anyone_but_the_governor(world):
    for acct in (world.proxy, world.acct("authority-provincial")):
        with reverts("AccessPolicyNotGovernance", acct.address):
            world.policy.remove_proxy(acct, world.proxy.address)


def test_add_zero_proxy_reverts(world):
    zero = "0x" + "00" * 20
    with reverts("AccessPolicyInvalidProxy", zero):
        world.policy.add_proxy(world.council(), zero)


# ---------------------------------------------------------------------------------------------------
# Abnormal-access suspension
# ---------------------------------------------------------------------------------------------------


def test_proxy_suspends_a_requester_until_the_governor_clears_it(world):
    grant(world, "doctor-b1")
    receipt = world.policy.suspend_requester(world.proxy, world.id("doctor-b1"), "300 reads in 60 s")
    (ev,) = world.policy.events(receipt, "RequesterSuspended")
    assert ev == {"requester": world.id("doctor-b1"), "by": world.proxy.address, "reason": "300 reads in 60 s"}
    assert world.policy.is_suspended(world.id("doctor-b1"))
    assert check(world, "doctor-b1") == Decision(False, Reason.GRANTEE_SUSPENDED, 0)
    with denied(world, "doctor-b1", Reason.GRANTEE_SUSPENDED):
        record_access(world, "doctor-b1")
    receipt = world.policy.clear_suspension(world.council("authority-municipal", "authority-national"),
                                            world.id("doctor-b1"), "verified")
    (ev,) = world.policy.events(receipt, "RequesterCleared")
    assert ev == {"requester": world.id("doctor-b1"), "authority": ZERO32, "reason": "verified"}
    assert check(world, "doctor-b1").allowed


def test_authority_may_suspend_too_and_suspension_is_idempotent(world):
    auth = world.acct("authority-national")
    assert len(world.policy.suspend_requester(auth, world.id("doctor-b1"), "x")["logs"]) == 1
    assert world.policy.suspend_requester(world.proxy, world.id("doctor-b1"), "again")["logs"] == []
    def cleared() -> list:
        receipt = world.policy.clear_suspension(world.council(), world.id("doctor-b1"), "ok")
        return world.policy.events(receipt, "RequesterCleared")

    assert len(cleared()) == 1
    assert cleared() == []


@pytest.mark.parametrize("caller", ["doctor-a1", "hospital-a", "patient"])
def test_suspend_reverts_for_non_proxy_non_authority(world, caller):
    acct = world.acct(caller)
    with reverts("AccessPolicyNotProxyOrAuthority", acct.address):
        world.policy.suspend_requester(acct, world.id("doctor-b1"), "x")


def test_clear_suspension_reverts_for_anyone_but_the_governor(world):
    world.policy.suspend_requester(world.proxy, world.id("doctor-b1"), "x")
    for acct in (world.proxy, world.acct("patient"), world.acct("doctor-b1"), world.acct("authority-national")):
        with reverts("AccessPolicyNotGovernance", acct.address):
            world.policy.clear_suspension(acct, world.id("doctor-b1"), "me")


def test_identity_registry_suspension_also_refuses(world):
    set_rule(world, "hospital-a")
    world.registry.suspend(world.acct("authority-national"), world.id("doctor-a1"), "abnormal access")
    assert check(world, "doctor-a1").reason is Reason.GRANTEE_SUSPENDED
    assert check(world, "doctor-a2").allowed


def test_suspension_overrides_emergency_access(world):
    e = emergency(world)
    for auth in ("authority-national", "authority-provincial"):
        world.policy.approve_emergency(world.acct(auth), e.id)
    world.policy.suspend_requester(world.proxy, world.id("doctor-b1"), "x")
    assert check(world, "doctor-b1").reason is Reason.GRANTEE_SUSPENDED


# ---------------------------------------------------------------------------------------------------
# Agent: errors as PolicyDenied, grants and revocations from the logs
# ---------------------------------------------------------------------------------------------------


def test_record_access_refusal_is_a_policy_denied_permission_error(world):
    with pytest.raises(PermissionError) as info:
        record_access(world, "doctor-b1")
    assert isinstance(info.value, (AccessPolicyRefusal, PolicyDenied))
    assert info.value.reason is Reason.NO_GRANT
    assert "ask the patient" in str(info.value)


def test_decision_require_raises_access_denied_with_the_rule(world):
    grant(world, "doctor-b1", actions=Action.READ)
    decision = check(world, "doctor-b1", action=Action.WRITE)
    with pytest.raises(PolicyDenied, match="does not include this action"):
        decision.require(patient=world.id("patient"), grantee=world.id("doctor-b1"), record_id=R1,
                         action=Action.WRITE)


def test_grants_and_revocations_from_the_logs_match_the_chain(world):
    p, b1, a1 = world.id("patient"), world.id("doctor-b1"), world.id("doctor-a1")
    grant(world, "doctor-b1", target=R1)
    grant(world, "doctor-b1", target=R2)
    grant(world, "doctor-a1", scope=Scope.ALL, target=ZERO32)
    world.policy.revoke(world.acct("patient"), b1, scope=Scope.RECORD, target=R1)
    world.policy.revoke_all(world.acct("patient"), a1)
    grant(world, "doctor-a1", target=R2, actions=Action.WRITE)
    grant(world, "doctor-b1", target=R1, start=world.now(), end=world.now() + HOUR)
    grant(world, "doctor-b1", target=R2, actions=Action.READ | Action.COPY)  # changed terms
    grant(world, "doctor-b1", target=R1, scope=Scope.RECORD, actions=Action.READ, start=world.now(),
          end=world.now() + HOUR)  # same again: no event
    history = world.policy.grant_history(p)
    revocations = [h for h in history if isinstance(h, Revocation)]
    assert [(r.grantee, r.scope, r.epoch, r.count) for r in revocations] == [(b1, Scope.RECORD, 1, 1),
                                                                             (a1, None, 1, 1)]
    from_logs = {(g.grantee, g.scope, g.target): g for g in world.policy.grants_from_logs(p)}
    on_chain = {k: world.policy.grant_of(p, k[0], k[1], k[2]) for k in from_logs}
    assert set(from_logs) == {(b1, Scope.RECORD, R1), (b1, Scope.RECORD, R2), (a1, Scope.RECORD, R2)}
    for key, g in from_logs.items():
        c = on_chain[key]
        assert isinstance(c, Grant)
        assert (g.actions, g.not_before, g.expires_at, g.since) == (c.actions, c.not_before, c.expires_at, c.since)
    assert world.policy.grant_of(p, a1, Scope.ALL, ZERO32) is None
    assert world.policy.grants_from_logs(p, grantee=a1)[0].actions == Action.WRITE


def test_resolve_names_participants_by_id_address_or_account(world):
    doc = world.acct("doctor-b1")
    assert world.policy.resolve(doc) == world.policy.resolve(doc.address) == world.id("doctor-b1")
    assert world.policy.resolve("0x" + world.id("doctor-b1").hex()) == world.id("doctor-b1")
    with pytest.raises(LookupError, match="not registered"):
        world.policy.resolve("0x" + "11" * 20)
