"""Sharing end to end on real processes: 3 private chains (4 PBFT replicas each), the DPoS consortium,
storage nodes and the three authority proxies (2-of-3).

One network for the whole module (starting it costs ~40 s); the tests run in file order and build
on each other's records: the hybrid journey writes alice's records (scenarios "several hospitals" and
"hospitals and platforms"), bob's records are the "one hospital" scenario and the policy checks.
Every refusal asserts the proxies' specific code.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from mbds_py.crypto import decrypt_reencrypted, load_cfrag, make_record_kfrags
from mbds_py.crypto.errors import DecryptionError
from mbds_py.demo import Narrator
from mbds_py.sharing import journey
from mbds_py.sharing.agent import AccessPolicyRefusal
from mbds_py.sharing.clients import ThresholdNotMet, combine
from mbds_py.sharing.journey import expect_refusal, read_label
from mbds_py.sharing.launch import policy_agent, proxy_keys
from mbds_py.sharing.policy import Action, Basis, Reason
from mbds_py.sharing.proxy import ProxyRefused, Refusal
from tests.helpers import live_network

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sharing-e2e")]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with live_network(tmp_path_factory.mktemp("sharing-e2e")) as net:
        yield journey.setup_sharing(net)


@pytest.fixture(scope="module")
def narrator():
    return Narrator(out=lambda line: None)


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# --- scenarios 2 and 3: several hospitals, hospitals and platforms (the paper's journey) ----------


def test_hybrid_journey_combines_records_of_three_chains(world, narrator):
    journey.run_journey(world.net, narrator, world=world, out=lambda line: None)
    assert all(s.ok for s in narrator.steps), [(s.name, s.actual) for s in narrator.steps if not s.ok]
    timeline = world.doctors["dr-zhao"].history(world.pid("alice"), world.patients["alice"].trapdoors(journey.COUGH))
    assert [r.chain for r in timeline.entries] == ["platform-c"]
    full = combine(journey.read_keyword(world, "dr-zhao", "alice", journey.COUGH)
                   + journey.read_keyword(world, "dr-zhao", "alice", journey.PNEUMONIA))
    assert [r.chain for r in full.entries] == ["platform-c", "hospital-a", "hospital-b"]
    assert [r.timestamp for r in full.entries] == sorted(r.timestamp for r in full.entries)
    assert set(full.entries[2].keywords) == {"http://hl7.org/fhir/sid/icd-10|J18.9", "http://loinc.org|24627-2"}


def test_every_read_is_on_the_patients_audit_trail(world):
    trail = world.patients["alice"].audit_trail(record=world.records["online-consultation"])
    readers = {e.grantee for e in trail}
    assert readers == {world.pid("dr-li"), world.pid("dr-wang"), world.pid("dr-zhao")}
    assert all(e.action == Action.READ and e.basis is Basis.GRANT for e in trail)
    registered = {proxy_keys(world.net, a).address for a in ("nha", "pha", "mha")}
    assert {e.proxy for e in trail} <= registered


def test_conjunctive_search_needs_every_keyword(world):
    alice, wang = world.patients["alice"], world.doctors["dr-wang"]
    both = wang.search(world.pid("alice"), alice.trapdoors(journey.PNEUMONIA, journey.CHEST_CT))
    assert [m.slip_id for m in both] == [world.records["referral"]]
    assert wang.search(world.pid("alice"), alice.trapdoors(journey.COUGH, journey.CHEST_CT)) == []
    # another patient's trapdoor matches nothing of alice's
    assert wang.search(world.pid("alice"), world.patients["bob"].trapdoors(journey.PNEUMONIA)) == []


# --- scenario 1: one hospital; grants and refusals on bob's records ----------------------------------


def test_one_hospital_scenario(world):
    journey.step_bob_records(world)
    bob, li = world.patients["bob"], world.doctors["dr-li"]
    bob.grant(world.pid("dr-li"), duration=600)
    timeline = combine(journey.read_keyword(world, "dr-li", "bob", journey.HYPERTENSION)
                       + journey.read_keyword(world, "dr-li", "bob", journey.DIABETES))
    assert [r.record_id for r in timeline.entries] == [world.records["bob-hypertension"], world.records["bob-diabetes"]]
    assert {r.chain for r in timeline.entries} == {"hospital-a"}
    bob.revoke(world.pid("dr-li"))  # revokeAll: the expiry test re-grants one record to dr-li
    refused = expect_refusal(Refusal.REVOKED, lambda: read_label(world, "dr-li", "bob", "bob-diabetes"))
    assert refused.reason is Reason.REVOKED
    # the refused attempt is on the audit trail too, once per proxy asked, with the policy's reason
    denials = world.directory.policy.denials(patient=world.pid("bob"), grantee=world.pid("dr-li"),
                                   record_id=world.records["bob-diabetes"])
    assert len(denials) == len(refused.refusals) >= 1
    assert {d.reason for d in denials} == {Reason.REVOKED}
    assert li.search(world.pid("bob"), bob.trapdoors(journey.DIABETES))  # search is not access


def test_doctor_without_grant_is_refused(world):
    refused = expect_refusal(Refusal.NO_GRANT, lambda: read_label(world, "dr-wang", "bob", "bob-hypertension"))
    assert refused.reason is Reason.NO_GRANT
    assert {r.code for r in refused.refusals} == {Refusal.NO_GRANT}


def test_grant_for_one_record_does_not_open_another(world):
    out = journey.step_grant_one_record(world)
    assert "out-of-scope" in out
    expect_refusal(Refusal.OUT_OF_SCOPE, lambda: read_label(world, "dr-wang", "bob", "bob-diabetes"))


def test_revoke_refuses_the_same_read_and_proxies_drop_the_keys(world):
    before = [p.status()["deleted"] for p in world.directory.proxies]
    journey.step_revoke(world)
    _wait(lambda: all(p.status()["deleted"] > b for p, b in zip(world.directory.proxies, before)), 15,
          "every proxy to delete the revoked record's kfrags")
    expect_refusal(Refusal.REVOKED, lambda: read_label(world, "dr-wang", "bob", "bob-hypertension"))


def test_stale_epoch_is_refused_until_the_patient_reissues(world):
    out = journey.step_stale_epoch(world)
    assert out.startswith("refused (stale-epoch)")
    # a proxy that missed the revoke and still used an old key: the contract itself refuses the audit
    policy = policy_agent(world.net)
    bob, wang = world.pid("bob"), world.pid("dr-wang")
    current = policy.epoch(bob, wang)
    with pytest.raises(AccessPolicyRefusal) as info:
        policy.record_access(_proxy_account(world, "nha"), bob, wang, world.records["bob-diabetes"], Action.READ,
                             current - 1)
    assert info.value.error_name == "AccessPolicyStaleEpoch"
    assert info.value.args_decoded[2:] == (current - 1, current)


def _proxy_account(world, authority: str):
    from eth_account import Account

    return Account.from_key(proxy_keys(world.net, authority).to_bytes()[6:38])


def test_threshold_one_proxy_down_serves_one_alone_cannot(world):
    out = journey.step_threshold(world)
    assert "ThresholdNotMet" in out
    # cryptographically too: one capsule fragment does not open the record
    wang = world.doctors["dr-wang"]
    rec = read_label(world, "dr-wang", "bob", "bob-diabetes")
    owned = world.directory.proven_slip(world.net.spec.chain("hospital-a").chain_id, rec.record_id)
    proxy = world.directory.proxies[0]
    answer = proxy.reencrypt(wang._read_doc(proxy.info(), world.pid("bob"), owned, Action.READ))  # noqa: SLF001
    record = owned.record
    ciphertext = record.load_ciphertext(bytes.fromhex(answer["blob"][2:]))
    cfrag = load_cfrag(bytes.fromhex(answer["cfrag"][2:]), capsule=ciphertext.capsule,
                       verifying_pk=record.kfrag_verifying_key, delegating_pk=record.record_key,
                       receiving_pk=wang.secrets.public_keys.pre_key)
    with pytest.raises(DecryptionError):
        decrypt_reencrypted(wang.secrets.identity_secret_key, record.record_key, ciphertext, [cfrag])


def test_a_tampered_blob_is_refused(world):
    """The patient's deposit points at another record's stored ciphertext: the hash check refuses it."""
    alice, d = world.patients["alice"], world.directory
    li = world.pid("dr-li")
    own = alice.records()
    rid = world.records["referral"]
    forged = dataclasses.replace(own[rid], address=own[world.records["offline-visit"]].address)
    alice.policy.grant_records(alice.account, li, [rid], duration=600)
    epoch = alice.policy.epoch(alice.id, li)
    kfrags = make_record_kfrags(alice.secrets, rid, d.pre_key(li), d.threshold, len(d.proxies))
    for proxy, kfrag in zip(d.proxies, kfrags):
        proxy.deposit(alice._deposit_doc(proxy.info(), li, forged, epoch, bytes(kfrag)))  # noqa: SLF001
    refused = expect_refusal(Refusal.INTEGRITY, lambda: read_label(world, "dr-li", "alice", "referral"))
    assert "does not match the hash the patient confirmed" in str(refused)
    alice.issue_keys(li, [rid])  # honest keys: now it reads
    assert read_label(world, "dr-li", "alice", "referral").record_id == rid


def test_a_request_signed_by_someone_else_is_refused(world):
    zhao = world.doctors["dr-zhao"]
    owned = world.directory.proven_slip(world.net.spec.chain("hospital-a").chain_id, world.records["bob-diabetes"])
    proxy = world.directory.proxies[0]
    doc = zhao._read_doc(proxy.info(), world.pid("bob"), owned, Action.READ)  # noqa: SLF001
    doc["grantee"] = "0x" + world.pid("dr-wang").hex()  # dr-zhao pretends to be dr-wang
    with pytest.raises(ProxyRefused) as info:
        proxy.reencrypt(doc)
    assert info.value.code is Refusal.UNAUTHENTICATED


def test_emergency_access_is_time_boxed_and_audited(world):
    out = journey.step_emergency(world)
    assert "basis EMERGENCY" in out
    policy = policy_agent(world.net)
    start, until = policy.emergency_window(world.pid("bob"), world.pid("dr-zhao"))
    assert until - start == 900
    emergencies = [e for e in world.patients["bob"].audit_trail() if e.basis is Basis.EMERGENCY]
    assert emergencies and {e.grantee for e in emergencies} == {world.pid("dr-zhao")}


def test_abnormal_access_suspends_the_requester(world):
    out = journey.step_abnormal_access(world)
    assert "suspended on chain" in out
    assert not policy_agent(world.net).is_suspended(world.pid("dr-wang"))  # cleared by nha at the end


def test_suspended_requester_is_refused_with_its_reason(world):
    policy = policy_agent(world.net)
    wang = world.pid("dr-wang")
    journey.retry_chain(lambda: policy.suspend_requester(world.net.keys("pha").account, wang, "test"))
    try:
        refused = expect_refusal(Refusal.SUSPENDED, lambda: read_label(world, "dr-wang", "bob", "bob-diabetes"))
        assert refused.reason is Reason.GRANTEE_SUSPENDED
    finally:
        journey.retry_chain(lambda: policy.clear_suspension(world.net.keys("nha").account, wang, "test over"))
    read_label(world, "dr-wang", "bob", "bob-diabetes")


def test_an_expired_grant_is_refused(world):
    """Last: it waits for the consortium chain's clock to pass the grant's expiry."""
    out = journey.step_expired(world)
    assert "refused (expired)" in out


def test_no_refusal_is_a_threshold_failure(world):
    with pytest.raises(ProxyRefused) as info:
        read_label(world, "dr-li", "bob", "bob-diabetes")
    assert not isinstance(info.value, ThresholdNotMet)
    assert info.value.code is Refusal.EXPIRED
