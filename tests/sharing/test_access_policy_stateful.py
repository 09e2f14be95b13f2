"""AccessPolicy against its pure model: a hypothesis RuleBasedStateMachine with a ghost PolicyState.

Every step runs on both; a change either succeeds on both or is refused by
both with the same custom error.  After every step the invariants compare the
whole observable state: live grants, active grants (grants − revokes −
expiries), epochs, counts, emergency windows, suspensions, request and
emergency states, and ``checkAccess`` over every (patient, grantee, record,
keyword set, action).

The chain's clock is driven exactly (``evm_setNextBlockTimestamp``), so the
model and the chain agree to the second; windows sit on an hour grid from the
example's start.  Each example runs on its own chain snapshot.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, invariant, multiple, precondition, rule,
                                 run_state_machine_as_test)

from mbds_py.chain.governance import Call
from mbds_py.errors import ContractRevert
from mbds_py.sharing.errors import PolicyViolation
from mbds_py.sharing.policy import (HOUR, ZERO32, Action, EmergencyState, Grant, Identity, PolicyState, PresetRule,
                                    Reason, RequestState, Scope, keyword_set_tag)
from tests.sharing._support import CONFIG, POPULATION, World, pid, record

PATIENTS = ["patient", "patient-2"]
GRANTEES = ["doctor-a1", "doctor-b1", "insurer"]
INSTITUTIONS = ["hospital-a", "hospital-b"]
AUTHORITIES = ["authority-national", "authority-provincial", "authority-municipal"]
R1, R2 = record("r1"), record("r2")
KW = keyword_set_tag(bytes(range(32)), ["icd10|E11.9"])
SCOPES = [(Scope.ALL, ZERO32), (Scope.RECORD, R1), (Scope.RECORD, R2), (Scope.KEYWORD_SET, KW)]
QUERIES = [(rec, kw, act) for rec in (R1, R2) for kw in (ZERO32, KW) for act in (Action.READ, Action.WRITE)]

patients = st.sampled_from(PATIENTS)
grantees = st.sampled_from(GRANTEES)
scopes = st.sampled_from(SCOPES)
# Mostly valid terms, sometimes not (the refusals must agree too).
actions = st.sampled_from([1, 1, 2, 3, 4, 5, 7, 7, 0, 8])
starts = st.sampled_from([0, 0, 0, 1, 2, -1])  # hours from the current hour mark
lengths = st.sampled_from([1, 2, 3, 6, 12, 48, 0])  # hours; 0 is an empty window
valid_actions = st.integers(1, 7)
valid_lengths = st.sampled_from([1, 2, 6, 24, 72])


class PolicyMachine(RuleBasedStateMachine):
    world: World  # set by the test function

    requests = Bundle("requests")
    emergencies = Bundle("emergencies")

    def __init__(self) -> None:
        super().__init__()
        w = self.world
        self.snapshot = w.chain.snapshot()
        self.clock = w.now() + 1
        self.base = self.clock  # the hour grid starts here
        self.hours = 0
        self._mine(self.clock)
        self.model = PolicyState(config=CONFIG)
        for label, (role, inst) in POPULATION.items():
            self.model.register(Identity(pid(label), role, pid(inst) if inst else ZERO32))
        self.request_patient: dict[int, str] = {}

    def teardown(self) -> None:
        self.world.chain.revert(self.snapshot)

    # -- clock ------------------------------------------------------------------------------------

    def _rpc(self, method: str, params: list) -> None:
        resp = self.world.chain.w3.provider.make_request(method, params)
        assert "error" not in resp, resp

    def _mine(self, t: int) -> None:
        self._rpc("evm_setNextBlockTimestamp", [t])
        self._rpc("evm_mine", [])

    def _tick(self) -> int:
        """The timestamp of the next transaction (one second after the last)."""
        self.clock += 1
        self._rpc("evm_setNextBlockTimestamp", [self.clock])
        return self.clock

    def _mark(self, offset_hours: int) -> int:
        return self.base + (self.hours + offset_hours) * HOUR

    # -- both sides -------------------------------------------------------------------------------

    def _both(self, model_op, chain_op):
        """Apply on the model at the next timestamp, then on the chain; the outcomes must agree."""
        t = self._tick()
        try:
            expected = model_op(t)
        except PolicyViolation as refusal:
            with pytest.raises(ContractRevert) as info:
                chain_op()
            self.clock -= 1  # refused before broadcast: no block was mined
            got = info.value
            assert got.error_name == refusal.error_name, (got, refusal)
            n = 2 if got.error_name == "AccessPolicyInvalidWindow" else len(refusal.args_decoded)
            assert got.args_decoded[:n] == refusal.args_decoded[:n], (got, refusal)
            return None
        chain_op()
        return expected

    def _acct(self, label: str):
        return self.world.acct(label)

    # -- rules: grants --------------------------------------------------------------------------

    @rule(patient=patients, grantee=st.sampled_from(GRANTEES * 3 + ["patient-2"]), scope=scopes, acts=actions,
          start=starts, length=lengths)
    def grant(self, patient, grantee, scope, acts, start, length):
        nb, exp = self._mark(start), self._mark(start + length)
        g = Grant(pid(patient), pid(grantee), scope[0], scope[1], Action(acts), nb, exp)
        self._both(lambda t: self.model.grant(g, t),
                   lambda: self.world.policy.grant(self._acct(patient), pid(grantee), scope=scope[0],
                                                   target=scope[1], actions=acts, not_before=nb, expires_at=exp))

    @rule(patient=patients, grantee=grantees, scope=scopes, acts=valid_actions, length=valid_lengths)
    def grant_from_now(self, patient, grantee, scope, acts, length):
        """A valid grant starting at the current hour mark (so grants are common, not just attempted)."""
        self.grant(patient, grantee, scope, acts, 0, length)

    @rule(patient=patients, grantee=grantees, scope=scopes)
    def revoke(self, patient, grantee, scope):
        self._both(lambda t: self.model.revoke(pid(patient), pid(grantee), *scope),
                   lambda: self.world.policy.revoke(self._acct(patient), pid(grantee), scope=scope[0],
                                                    target=scope[1]))

    @precondition(lambda self: self.model.live_grants())
    @rule(data=st.data())
    def revoke_a_live_grant(self, data):
        g = data.draw(st.sampled_from(self.model.live_grants()))
        patient = next(label for label in PATIENTS if pid(label) == g.patient)
        grantee = next(label for label in GRANTEES if pid(label) == g.grantee)
        self.revoke(patient, grantee, (g.scope, g.target))

    @rule(patient=patients, grantee=grantees)
    def revoke_all(self, patient, grantee):
        self._both(lambda t: self.model.revoke_all(pid(patient), pid(grantee)),
                   lambda: self.world.policy.revoke_all(self._acct(patient), pid(grantee)))

    # -- rules: preset rules --------------------------------------------------------------------

    @rule(patient=patients, institution=st.sampled_from(INSTITUTIONS * 3 + ["insurer"]), scope=scopes,
          acts=actions, start=starts, length=lengths, remove=st.sampled_from([False, False, False, True]))
    def preset_rule(self, patient, institution, scope, acts, start, length, remove):
        if remove:
            self._both(lambda t: self.model.remove_preset_rule(pid(patient), pid(institution), *scope),
                       lambda: self.world.policy.remove_preset_rule(self._acct(patient), pid(institution),
                                                                    scope=scope[0], target=scope[1]))
            return
        nb, exp = self._mark(start), self._mark(start + length)
        r = PresetRule(pid(patient), pid(institution), scope[0], scope[1], Action(acts), nb, exp)
        self._both(lambda t: self.model.set_preset_rule(r, t),
                   lambda: self.world.policy.set_preset_rule(self._acct(patient), pid(institution), scope=scope[0],
                                                             target=scope[1], actions=acts, not_before=nb,
                                                             expires_at=exp))

    # -- rules: requests ------------------------------------------------------------------------

    @rule(target=requests, requester=st.sampled_from(GRANTEES * 3 + ["patient"]), patient=patients, scope=scopes,
          acts=valid_actions, start=starts, length=valid_lengths)
    def request(self, requester, patient, scope, acts, start, length):
        nb, exp = self._mark(start), self._mark(start + length)
        req = self._both(
            lambda t: self.model.request_access(pid(patient), pid(requester), scope[0], scope[1], acts, nb, exp, t),
            lambda: self.world.policy.request_access(self._acct(requester), pid(patient), scope=scope[0],
                                                     target=scope[1], actions=acts, not_before=nb, expires_at=exp))
        if req is None:
            return multiple()
        self.request_patient[req.id] = patient
        return req.id

    @rule(request_id=requests)
    def approve(self, request_id):
        patient = self._acct(self.request_patient[request_id])
        self._both(lambda t: self.model.approve_request(request_id, t),
                   lambda: self.world.policy.approve_request(patient, request_id))

    @rule(request_id=requests)
    def reject(self, request_id):
        patient = self._acct(self.request_patient[request_id])
        self._both(lambda t: self.model.reject_request(request_id, t, "no"),
                   lambda: self.world.policy.reject_request(patient, request_id, "no"))

    # -- rules: emergency access ----------------------------------------------------------------

    @rule(target=emergencies, doctor=st.sampled_from(["doctor-a1", "doctor-b1"]), patient=patients,
          hours=st.integers(0, 25))
    def request_emergency(self, doctor, patient, hours):
        e = self._both(lambda t: self.model.request_emergency(pid(patient), pid(doctor), hours * HOUR, t),
                       lambda: self.world.policy.request_emergency(self._acct(doctor), pid(patient), hours * HOUR,
                                                                   "er"))
        return multiple() if e is None else e.id

    @rule(emergency_id=emergencies, authority=st.sampled_from(AUTHORITIES))
    def approve_emergency(self, emergency_id, authority):
        self._both(lambda t: self.model.approve_emergency(emergency_id, pid(authority), t),
                   lambda: self.world.policy.approve_emergency(self._acct(authority), emergency_id))

    @rule(emergency_id=emergencies, authorities=st.permutations(AUTHORITIES))
    def approve_emergency_by_two(self, emergency_id, authorities):
        for authority in authorities[:2]:
            self.approve_emergency(emergency_id, authority)

    # -- rules: suspension and time ------------------------------------------------------------

    @rule(grantee=grantees, suspend=st.sampled_from([True, False, False]))
    def suspension(self, grantee, suspend):
        if suspend:
            self._both(lambda t: self.model.suspend(pid(grantee)),
                       lambda: self.world.policy.suspend_requester(self.world.proxy, pid(grantee), "abnormal"))
        else:
            self._both(lambda t: self.model.clear(pid(grantee)), lambda: self._clear_on_chain(grantee))

    def _clear_on_chain(self, grantee: str) -> None:
        """The k-of-n clearance: national proposes, provincial approves, then it executes — one block each,
        each at the next second of the model's clock."""
        policy, council = self.world.policy, self.world.council()
        gov = policy.governor()
        call = Call(policy.address, policy._methods["clearSuspension"].encode((pid(grantee), "ok")))  # noqa: SLF001
        salt = self.clock.to_bytes(32, "big")
        gov.propose(council.members[0], [call], salt)
        self._tick()
        gov.approve(council.members[1], gov.hash_operation([call], salt))
        self._tick()
        gov.execute(council.members[0], [call], salt)

    @rule(hours=st.sampled_from([1, 1, 2, 3, 6, 24, 48]))
    def advance(self, hours):
        self.hours += hours
        self.clock += hours * HOUR
        self._mine(self.clock)

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def chain_agrees_with_model(self):
        w, m, now = self.world, self.model, self.clock
        assert w.now() == now
        pairs = [(pid(p), pid(g)) for p in PATIENTS for g in GRANTEES]
        keys = [(p, g, scope, target) for p, g in pairs for scope, target in SCOPES]
        checks = [(p, g, rec, kw, act) for p, g in pairs for rec, kw, act in QUERIES]
        req_ids = sorted(self.request_patient)
        em_ids = list(range(1, len(m._emergencies) + 1))
        calls = ([("epochOf", pair) for pair in pairs] + [("grantCountOf", pair) for pair in pairs]
                 + [("emergencyWindowOf", pair) for pair in pairs] + [("grantOf", k) for k in keys]
                 + [("checkAccess", c) for c in checks] + [("isSuspended", (pid(g),)) for g in GRANTEES]
                 + [("requestState", (i,)) for i in req_ids] + [("emergencyState", (i,)) for i in em_ids])
        results = iter(w.policy.call_many(calls))

        assert [next(results) for _ in pairs] == [m.epoch(*pair) for pair in pairs]
        assert [next(results) for _ in pairs] == [m.grant_count(*pair) for pair in pairs]
        assert [tuple(next(results)) for _ in pairs] == [m.emergency_window(*pair) for pair in pairs]
        chain_active = set()
        for p, g, scope, target in keys:
            actions_, nb, exp, _since = next(results)
            expected = m.grant_of(p, g, scope, target)
            got = None if actions_ == 0 else (actions_, nb, exp)
            assert got == (None if expected is None else (int(expected.actions), expected.not_before,
                                                          expected.expires_at)), ("grant", g.hex()[:6], scope)
            if got is not None and nb <= now < exp:
                chain_active.add((p, g, scope, target))
        model_active = {(x.patient, x.grantee, x.scope, x.target) for x in m.active_grants(now)}
        assert chain_active == model_active  # active grants = grants − revokes − expiries
        for p, g, rec, kw, act in checks:
            allowed, reason, epoch = next(results)
            d = m.evaluate(p, g, rec, act, now, keyword_set_hash=kw)
            assert (allowed, Reason(reason), epoch) == (d.allowed, d.reason, d.epoch), (
                p.hex()[:6], g.hex()[:6], rec.hex()[:6], kw.hex()[:6], act)
        assert [next(results) for _ in GRANTEES] == [m.is_suspended(pid(g)) for g in GRANTEES]
        for i in req_ids:
            assert RequestState(next(results)) is m.request(i).state_at(now), ("request", i)
        for i in em_ids:
            assert EmergencyState(next(results)) is m.emergency(i).state_at(now), ("emergency", i)


def test_access_policy_matches_the_pure_model(world):
    PolicyMachine.world = world
    run_state_machine_as_test(
        PolicyMachine,
        settings=settings(max_examples=25, stateful_step_count=20, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck)),
    )
