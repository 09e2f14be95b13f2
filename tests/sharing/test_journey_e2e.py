"""Sharing end to end on real processes: 3 private chains (4 PBFT replicas each), the DPoS consortium,
storage nodes and the three authority proxies (2-of-3).

One network for the whole module (starting it costs ~40 s). No test depends on what another did: the paper's
hybrid journey for alice is a module fixture the three tests about it share (running any of them alone runs it),
and every policy test writes the records of a patient of its own (`p-…`, extra members of the population), so the
grants, revocation epochs, emergency windows and denials it creates and checks are nobody else's. The two tests
that suspend a requester have doctors of their own as well. Every refusal asserts the proxies' specific code.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from mbds_py.crypto import decrypt_reencrypted, load_cfrag, make_record_kfrags
from mbds_py.crypto.errors import DecryptionError
from mbds_py.demo import Narrator
from mbds_py.identity import Role
from mbds_py.population import DEFAULT_POPULATION
from mbds_py.sharing import journey
from mbds_py.sharing.agent import AccessPolicyRefusal
from mbds_py.sharing.clients import DoctorClient, PatientClient, SharingError, ThresholdNotMet, combine
from mbds_py.sharing.journey import expect_refusal, read_label
from mbds_py.sharing.launch import AUTHORITIES, policy_agent, proxy_keys, restart_proxy, stop_proxy
from mbds_py.sharing.policy import Action, Basis, Grant, Reason, Scope
from mbds_py.sharing.proxy import ProxyConfig, ProxyRefused, Refusal
from tests.helpers import live_network_of, members_for
from tests.sharing._support import unkeyed_keyword_set_guesses

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sharing-e2e")]

# one patient per policy test
PATIENTS = ("p-one-hospital", "p-no-grant", "p-one-record", "p-revoke", "p-epoch", "p-threshold", "p-tamper",
            "p-forged-request", "p-emergency", "p-abnormal", "p-suspended", "p-expired", "p-slow-read",
            "p-not-threshold", "p-rotated", "p-keyword-set", "p-trapdoor", "p-search-scope")
DOCTORS = ("dr-burst", "dr-held")  # hospital-b doctors whose suspension nobody else sees
# Seconds the proxies count a requester's re-encryptions in.  Only dr-burst reads more than a few times in this
# module, so an hour holds its whole burst however long a loaded machine (or a block time) makes each read: a
# 60 s window let a burst of 61 reads on Ganache beside two concurrent suites outlast it and never suspend.  The
# sliding window itself is unit-tested with an injected clock (test_proxy_units).
RATE_WINDOW = 3600.0


@pytest.fixture(scope="module")
def devchain() -> tuple[str, int]:
    """(engine, block time) of every chain of the module's network; ``test_journey_e2e_devchains`` overrides it."""
    return ("anvil", 0)


@pytest.fixture(scope="module")
def world(tmp_path_factory, devchain):
    engine, block_time = devchain
    population = (DEFAULT_POPULATION + members_for(PATIENTS, Role.PATIENT)
                  + members_for(DOCTORS, Role.DOCTOR, institution="hospital-b"))
    with live_network_of(tmp_path_factory.mktemp(f"sharing-e2e-{engine}-{block_time}"), population, engine=engine,
                         block_time=block_time) as net:
        w = journey.setup_sharing(net, rate_window=RATE_WINDOW)
        for name in PATIENTS:
            w.patients[name] = PatientClient(net.keys(name), w.directory)
        for name in DOCTORS:
            w.doctors[name] = DoctorClient(net.keys(name), w.directory)
        yield w


@pytest.fixture(scope="module")
def alice_journey(world):
    """The paper's hybrid journey, once: alice's four records on three chains, read by three doctors."""
    narrator = Narrator(out=lambda line: None)
    journey.run_journey(world.net, narrator, world=world, out=lambda line: None)
    return narrator


def records_of(world, patient: str, *which: str) -> dict[str, str]:
    """dr-li writes the patient's records on hospital-a (hypertension, diabetes); returns label by kind."""
    texts = {"hypertension": (journey.HYPERTENSION, "Hypertension, started amlodipine 5 mg"),
             "diabetes": (journey.DIABETES, "Type 2 diabetes, started metformin 500 mg")}
    labels = {}
    for kind in which:
        keyword, text = texts[kind]
        labels[kind] = f"{patient}-{kind}"
        journey.write(world, labels[kind], "dr-li", patient, [keyword], text)
    return labels


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _proxy_account(world, authority: str):
    from eth_account import Account

    return Account.from_key(proxy_keys(world.net, authority).to_bytes()[6:38])


# --- scenarios 2 and 3: several hospitals, hospitals and platforms (the paper's journey) ----------


def test_hybrid_journey_combines_records_of_three_chains(world, alice_journey):
    assert all(s.ok for s in alice_journey.steps), [(s.name, s.actual) for s in alice_journey.steps if not s.ok]
    ticket = world.patients["alice"].search_ticket(world.pid("dr-zhao"), journey.COUGH)
    timeline = world.doctors["dr-zhao"].history(world.pid("alice"), ticket)
    assert [r.chain for r in timeline.entries] == ["platform-c"]
    full = combine(journey.read_keyword(world, "dr-zhao", "alice", journey.COUGH)
                   + journey.read_keyword(world, "dr-zhao", "alice", journey.PNEUMONIA))
    assert [r.chain for r in full.entries] == ["platform-c", "hospital-a", "hospital-b"]
    assert [r.timestamp for r in full.entries] == sorted(r.timestamp for r in full.entries)
    assert set(full.entries[2].keywords) == {"http://hl7.org/fhir/sid/icd-10|J18.9", "http://loinc.org|24627-2"}


def test_every_read_is_on_the_patients_audit_trail(world, alice_journey):
    trail = world.patients["alice"].audit_trail(record=world.records["online-consultation"])
    readers = {e.grantee for e in trail}
    assert readers == {world.pid("dr-li"), world.pid("dr-wang"), world.pid("dr-zhao")}
    assert all(e.action == Action.READ and e.basis is Basis.GRANT for e in trail)
    registered = {proxy_keys(world.net, a).address for a in ("nha", "pha", "mha")}
    assert {e.proxy for e in trail} <= registered


def test_conjunctive_search_needs_every_keyword(world, alice_journey):
    alice, wang = world.patients["alice"], world.doctors["dr-wang"]
    both = wang.search(world.pid("alice"), alice.search_ticket(world.pid("dr-wang"), journey.PNEUMONIA,
                                                               journey.CHEST_CT))
    assert [m.slip_id for m in both] == [world.records["referral"]]
    assert wang.search(world.pid("alice"), alice.search_ticket(world.pid("dr-wang"), journey.COUGH,
                                                               journey.CHEST_CT)) == []
    # another patient's ticket cannot search alice's records (a token names its patient)
    with pytest.raises(SharingError, match="bob's, not alice's"):
        wang.search(world.pid("alice"), world.patients["bob"].search_ticket(world.pid("dr-wang"), journey.PNEUMONIA))


def _record_access_keyword_set(world, tx_hash: bytes) -> bytes:
    """The keywordSetHash argument of a recordAccess transaction, decoded from its public calldata."""
    from eth_abi import decode

    policy = world.directory.policy
    method = policy._methods["recordAccess"]  # noqa: SLF001 - the agent's ABI of the function
    data = bytes(policy.client.w3.eth.get_transaction(tx_hash)["input"])
    assert data[:4] == method.selector
    return decode(list(method.inputs), data[4:])[3]


JOURNEY_KEYWORDS = [journey.COUGH, journey.PNEUMONIA, journey.CHEST_CT, journey.FOLLOW_UP, journey.HYPERTENSION,
                    journey.DIABETES]


def test_what_the_chains_hold_of_the_journey_tests_no_guess(world, alice_journey):
    """Issue 13 items 9, 10, 13 on alice's real records: every consortium item carries KEYWORD_SLOTS keyword
    ciphertexts and a salted H(M) (not keccak of the decrypted M, which a reader rechecks with the salt), and
    no recordAccess names a keyword set: the journey's grants are not keyword-scoped, so the deposits carry
    zero (the keyed tag only serves KeywordSet grants: see the next test)."""
    from eth_utils import keccak

    from mbds_py.crypto import KEYWORD_SLOTS

    pid, alice = world.pid("alice"), world.patients["alice"]
    items = {i["slip_id"]: i for i in world.directory.consortium_items(pid)}
    assert len(items) >= 4 and {len(i["keywords"]) for i in items.values()} == {KEYWORD_SLOTS}
    for rec in journey.read_keyword(world, "dr-zhao", "alice", journey.PNEUMONIA):
        onchain = bytes.fromhex(items["0x" + rec.record_id.hex()]["hmi_hash"][2:])
        assert onchain != keccak(rec.payload.hmi) and onchain == keccak(rec.payload.salt + rec.payload.hmi)
        assert rec.keyword_set_tag == bytes(32)
    guesses = unkeyed_keyword_set_guesses(JOURNEY_KEYWORDS)
    audited = 0
    for rid, mine in alice.records().items():
        for event in alice.audit_trail(record=rid):
            onchain = _record_access_keyword_set(world, event.tx_hash)
            assert onchain == bytes(32) and onchain not in guesses and mine.keyword_set_hash not in guesses
            audited += 1
    assert audited >= 3  # the journey's reads and the ones above


# --- scenario 1: one hospital; grants and refusals, each test on records of a patient of its own ----------------


def test_keyword_set_grant_opens_that_set_only_and_names_a_keyed_tag(world):
    """Issue 13 item 9: a KeywordSet grant names the patient's keyed tag (grant target, kfrag deposit, the
    proxies' recordAccess agree on it); the doctor reads the record of that set, not another; nothing on
    chain equals an unkeyed hash of any candidate keyword set."""
    p = "p-keyword-set"
    labels = records_of(world, p, "hypertension", "diabetes")
    patient = world.patients[p]
    granted = patient.grant(world.pid("dr-wang"), keywords=[journey.HYPERTENSION], duration=3600)
    (tag,) = granted["tags"]
    assert tag == patient.keyword_set_tags(journey.HYPERTENSION)[0]
    assert tag not in unkeyed_keyword_set_guesses(JOURNEY_KEYWORDS)
    rec = read_label(world, "dr-wang", p, labels["hypertension"])
    assert rec.record_id == world.records[labels["hypertension"]] and rec.keyword_set_tag == tag
    assert {a["basis"] for a in rec.audits} == {int(Basis.GRANT)}
    refused = expect_refusal(Refusal.OUT_OF_SCOPE, lambda: read_label(world, "dr-wang", p, labels["diabetes"]))
    assert refused.reason is Reason.OUT_OF_SCOPE
    history = world.directory.policy.grant_history(world.pid(p))
    assert [(g.scope, g.target) for g in history if isinstance(g, Grant)] == [(Scope.KEYWORD_SET, tag)]
    trail = patient.audit_trail(record=world.records[labels["hypertension"]])
    assert trail and {_record_access_keyword_set(world, e.tx_hash) for e in trail} == {tag}
    # a record grant beside it, then revoked: the epoch moves and the keyword-set record's keys are re-issued
    # with its tag (the only grant covering it), the other record's are not
    diabetes = world.records[labels["diabetes"]]
    patient.grant(world.pid("dr-wang"), records=[diabetes], duration=3600)
    assert read_label(world, "dr-wang", p, labels["diabetes"]).keyword_set_tag == bytes(32)
    patient.revoke(world.pid("dr-wang"), record=diabetes)
    assert read_label(world, "dr-wang", p, labels["hypertension"]).keyword_set_tag == tag
    with pytest.raises(ProxyRefused) as refused:
        read_label(world, "dr-wang", p, labels["diabetes"])
    assert refused.value.code in (Refusal.REVOKED, Refusal.OUT_OF_SCOPE)  # the keyword-set grant does not cover it


def test_one_hospital_scenario(world):
    p = "p-one-hospital"
    labels = records_of(world, p, "hypertension", "diabetes")
    patient, li = world.patients[p], world.doctors["dr-li"]
    patient.grant(world.pid("dr-li"), duration=600)
    ticket = patient.search_ticket(world.pid("dr-li"), journey.DIABETES)
    assert li.search(world.pid(p), ticket)
    timeline = combine(journey.read_keyword(world, "dr-li", p, journey.HYPERTENSION)
                       + journey.read_keyword(world, "dr-li", p, journey.DIABETES))
    assert [r.record_id for r in timeline.entries] == [world.records[labels["hypertension"]],
                                                       world.records[labels["diabetes"]]]
    assert {r.chain for r in timeline.entries} == {"hospital-a"}
    denied = dict(patient=world.pid(p), grantee=world.pid("dr-li"), record_id=world.records[labels["diabetes"]])
    before = len(world.directory.policy.denials(**denied))
    patient.revoke(world.pid("dr-li"))  # revokeAll
    refused = expect_refusal(Refusal.REVOKED, lambda: read_label(world, "dr-li", p, labels["diabetes"]))
    assert refused.reason is Reason.REVOKED
    # the refused attempt is on the audit trail too, once per proxy asked, with the policy's reason
    denials = world.directory.policy.denials(**denied)[before:]
    assert len(denials) == len(refused.refusals) >= 1
    assert {d.reason for d in denials} == {Reason.REVOKED}
    # a search ticket issued before the revoke is refused with it: a search needs a live grant
    expect_refusal(Refusal.REVOKED, lambda: li.search(world.pid(p), ticket))


def test_rotated_patient_reads_searches_and_shares_all_versions(world):
    """Issue 13 item 14: a patient rotated twice keeps records of all three key versions readable (by her),
    searchable (one trapdoor set per version) and shareable (kfrags from each record's own version, through
    the real 2-of-3 proxies); new records use the new keys and the retired accounts are gone on chain."""
    from mbds_py.crypto import normalize_keyword

    p, net = "p-rotated", world.net
    pid = world.pid(p)
    addresses, labels = [], []
    for version in (1, 2, 3):
        if version > 1:
            net.rotate(p)
        keys = net.keys(p)
        assert keys.key_version == version and keys.keyring.versions == tuple(range(1, version + 1))
        addresses.append(keys.account.address)
        world.patients[p] = PatientClient(keys, world.directory)
        labels.append(f"{p}-v{version}")
        journey.write(world, labels[-1], "dr-li", p, [journey.HYPERTENSION], f"Hypertension, visit {version}")
    rids = [world.records[label] for label in labels]
    patient, li = world.patients[p], world.doctors["dr-li"]

    # read: the patient opens every record with the key version it names
    own = patient.records()
    assert [own[r].owned.record.header.patient.key_version for r in rids] == [1, 2, 3]
    assert [own[r].owned.record.header.patient.address for r in rids] == addresses
    assert all(own[r].keywords == (normalize_keyword(journey.HYPERTENSION),) for r in rids)

    # search: the current version's trapdoor finds the newest record only; one set per version finds all
    patient.grant(world.pid("dr-li"), duration=600, issue=False)
    current = patient.search_ticket(world.pid("dr-li"), journey.HYPERTENSION, all_versions=False)
    assert [m.slip_id for m in li.search(pid, current)] == [rids[2]]
    every = patient.search_ticket(world.pid("dr-li"), journey.HYPERTENSION)
    assert {m.slip_id for m in li.search(pid, every)} == set(rids)

    # share: the current account grants; the proxies verify kfrags signed by each record's own version
    patient.grant(world.pid("dr-wang"), duration=600)
    shared = journey.read_keyword(world, "dr-wang", p, journey.HYPERTENSION)
    assert sorted(r.text for r in shared) == [f"Hypertension, visit {v}" for v in (1, 2, 3)]
    assert {r.record_id for r in shared} == set(rids) and all(len(r.audits) == 2 for r in shared)

    # the retired accounts no longer stand for the patient on any chain; the current one does
    for chain in net.spec.chains:
        registry = net.identity(chain.name)
        assert [registry.id_of(a) for a in addresses] == [bytes(32), bytes(32), pid]
        assert registry.get(pid).key_version == 3


def test_doctor_without_grant_is_refused(world):
    p = "p-no-grant"
    labels = records_of(world, p, "hypertension")
    refused = expect_refusal(Refusal.NO_GRANT, lambda: read_label(world, "dr-wang", p, labels["hypertension"]))
    assert refused.reason is Reason.NO_GRANT
    assert {r.code for r in refused.refusals} == {Refusal.NO_GRANT}


def test_grant_for_one_record_does_not_open_another(world):
    p = "p-one-record"
    labels = records_of(world, p, "hypertension", "diabetes")
    world.patients[p].grant(world.pid("dr-wang"), records=[world.records[labels["hypertension"]]], duration=3600)
    assert read_label(world, "dr-wang", p, labels["hypertension"]).record_id == world.records[labels["hypertension"]]
    refused = expect_refusal(Refusal.OUT_OF_SCOPE, lambda: read_label(world, "dr-wang", p, labels["diabetes"]))
    assert refused.reason is Reason.OUT_OF_SCOPE


def test_revoke_refuses_the_same_read_and_proxies_drop_the_keys(world):
    p = "p-revoke"
    labels = records_of(world, p, "hypertension")
    record = world.records[labels["hypertension"]]
    world.patients[p].grant(world.pid("dr-wang"), records=[record], duration=3600)
    read_label(world, "dr-wang", p, labels["hypertension"])
    before = [proxy.status()["deleted"] for proxy in world.directory.proxies]
    world.patients[p].revoke(world.pid("dr-wang"), record=record)
    _wait(lambda: all(proxy.status()["deleted"] > b for proxy, b in zip(world.directory.proxies, before)), 15,
          "every proxy to delete the revoked record's kfrags")
    expect_refusal(Refusal.REVOKED, lambda: read_label(world, "dr-wang", p, labels["hypertension"]))


def test_stale_epoch_is_refused_until_the_patient_reissues(world):
    """Two records granted; revoking one moves the epoch, so the other's key is stale until re-issued."""
    p = "p-epoch"
    labels = records_of(world, p, "hypertension", "diabetes")
    patient, wang = world.patients[p], world.pid("dr-wang")
    patient.grant(wang, records=[world.records[labels["hypertension"]], world.records[labels["diabetes"]]],
                  duration=3600)
    read_label(world, "dr-wang", p, labels["diabetes"])
    patient.revoke(wang, record=world.records[labels["hypertension"]], reissue=False)
    expect_refusal(Refusal.STALE_EPOCH, lambda: read_label(world, "dr-wang", p, labels["diabetes"]))
    # a proxy that missed the revoke and still used an old key: the contract itself refuses the audit
    policy = policy_agent(world.net)
    current = policy.epoch(world.pid(p), wang)
    with pytest.raises(AccessPolicyRefusal, match="AccessPolicyStaleEpoch") as info:
        policy.record_access(_proxy_account(world, "nha"), world.pid(p), wang, world.records[labels["diabetes"]],
                             Action.READ, current - 1)
    assert info.value.error_name == "AccessPolicyStaleEpoch"
    assert info.value.args_decoded[2:] == (current - 1, current)
    issued = patient.issue_keys(wang, [world.records[labels["diabetes"]]])
    assert issued.epoch == current
    assert read_label(world, "dr-wang", p, labels["diabetes"]).record_id == world.records[labels["diabetes"]]


def test_threshold_one_proxy_down_serves_one_alone_cannot(world):
    p = "p-threshold"
    labels = records_of(world, p, "diabetes")
    world.patients[p].grant(world.pid("dr-wang"), records=[world.records[labels["diabetes"]]], duration=3600)
    first, second, last = AUTHORITIES
    assert stop_proxy(world.net, first)
    try:
        rec = read_label(world, "dr-wang", p, labels["diabetes"])
        served_by = {a["proxy"].lower() for a in rec.audits}
        assert served_by == {proxy_keys(world.net, a).address.lower() for a in (second, last)}
        assert stop_proxy(world.net, second)
        try:
            with pytest.raises(ThresholdNotMet, match=r"1 valid capsule fragment\(s\), 2 needed") as info:
                read_label(world, "dr-wang", p, labels["diabetes"])
            assert len(info.value.refusals) == 2
        finally:
            restart_proxy(world.net, second)
    finally:
        restart_proxy(world.net, first)
    # cryptographically too: one capsule fragment does not open the record
    wang = world.doctors["dr-wang"]
    rec = read_label(world, "dr-wang", p, labels["diabetes"])
    owned = world.directory.proven_slip(world.net.spec.chain("hospital-a").chain_id, rec.record_id)
    proxy = world.directory.proxies[0]
    answer = proxy.reencrypt(wang._read_doc(proxy.info(), world.pid(p), owned, Action.READ))  # noqa: SLF001
    record = owned.record
    ciphertext = record.load_ciphertext(bytes.fromhex(answer["blob"][2:]))
    cfrag = load_cfrag(bytes.fromhex(answer["cfrag"][2:]), capsule=ciphertext.capsule,
                       verifying_pk=record.kfrag_verifying_key, delegating_pk=record.record_key,
                       receiving_pk=wang.secrets.public_keys.pre_key)
    with pytest.raises(DecryptionError, match="re-encrypted ciphertext does not open"):
        decrypt_reencrypted(wang.secrets.identity_secret_key, record.record_key, ciphertext, [cfrag])


def test_a_tampered_blob_is_refused(world):
    """The patient's deposit points at another record's stored ciphertext: the hash check refuses it."""
    p = "p-tamper"
    labels = records_of(world, p, "hypertension", "diabetes")
    patient, d = world.patients[p], world.directory
    li = world.pid("dr-li")
    own = patient.records()
    rid = world.records[labels["hypertension"]]
    forged = dataclasses.replace(own[rid], address=own[world.records[labels["diabetes"]]].address)
    patient.policy.grant_records(patient.account, li, [rid], duration=600)
    epoch = patient.policy.epoch(patient.id, li)
    kfrags = make_record_kfrags(patient.secrets, rid, d.pre_key(li), d.threshold, len(d.proxies))
    for proxy, kfrag in zip(d.proxies, kfrags):
        proxy.deposit(patient._deposit_doc(proxy.info(), li, forged, epoch, bytes(kfrag)))  # noqa: SLF001
    refused = expect_refusal(Refusal.INTEGRITY, lambda: read_label(world, "dr-li", p, labels["hypertension"]))
    assert "does not match the hash the patient confirmed" in str(refused)
    patient.issue_keys(li, [rid])  # honest keys: now it reads
    assert read_label(world, "dr-li", p, labels["hypertension"]).record_id == rid


def test_a_request_signed_by_someone_else_is_refused(world):
    p = "p-forged-request"
    labels = records_of(world, p, "diabetes")
    world.patients[p].grant(world.pid("dr-wang"), records=[world.records[labels["diabetes"]]], duration=3600)
    zhao = world.doctors["dr-zhao"]
    owned = world.directory.proven_slip(world.net.spec.chain("hospital-a").chain_id, world.records[labels["diabetes"]])
    proxy = world.directory.proxies[0]
    doc = zhao._read_doc(proxy.info(), world.pid(p), owned, Action.READ)  # noqa: SLF001
    doc["grantee"] = "0x" + world.pid("dr-wang").hex()  # dr-zhao pretends to be dr-wang, who has a grant
    with pytest.raises(ProxyRefused, match=r"refused \(unauthenticated\)") as info:
        proxy.reencrypt(doc)
    assert info.value.code is Refusal.UNAUTHENTICATED


def test_emergency_access_is_time_boxed_and_audited(world):
    """dr-zhao has no grant; nha and pha approve break-glass access; the patient's client serves it; audited."""
    p = "p-emergency"
    labels = records_of(world, p, "diabetes")
    net, patient, zhao = world.net, world.patients[p], world.doctors["dr-zhao"]
    expect_refusal(Refusal.NO_GRANT, lambda: read_label(world, "dr-zhao", p, labels["diabetes"]))
    emergency = zhao.request_emergency(world.pid(p), duration=900, reason="unconscious in ER, hypoglycaemia?")
    policy = policy_agent(net)
    for authority in AUTHORITIES[:2]:
        policy.approve_emergency(net.keys(authority).account, emergency.id)
    assert patient.serve_emergencies() == [emergency.id]
    rec = read_label(world, "dr-zhao", p, labels["diabetes"])
    assert rec.record_id == world.records[labels["diabetes"]]
    start, until = policy.emergency_window(world.pid(p), world.pid("dr-zhao"))
    assert until - start == 900
    trail = patient.audit_trail()
    assert trail and {e.grantee for e in trail} == {world.pid("dr-zhao")}
    assert {e.basis for e in trail} == {Basis.EMERGENCY}


def _rate_limit(net) -> int:
    return min(ProxyConfig.load(Path(net.spec.state_dir / "proxies") / f"{a}.json").rate_limit for a in AUTHORITIES)


def test_abnormal_access_suspends_the_requester(world):
    """A burst of reads above a proxy's rate limit suspends the requester on chain until an authority clears it."""
    p, doctor = "p-abnormal", "dr-burst"
    labels = records_of(world, p, "diabetes")
    world.patients[p].grant(world.pid(doctor), records=[world.records[labels["diabetes"]]], duration=3600)
    policy = policy_agent(world.net)
    limit = _rate_limit(world.net)
    reads = 0
    with pytest.raises(ProxyRefused, match=r"refused \(suspended\)") as info:
        for _ in range(limit + 5):
            read_label(world, doctor, p, labels["diabetes"])
            reads += 1
    assert info.value.code is Refusal.SUSPENDED
    assert policy.is_suspended(world.pid(doctor))
    assert reads == limit  # every read up to the limit served, the next one refused
    expect_refusal(Refusal.SUSPENDED, lambda: read_label(world, doctor, p, labels["diabetes"]))
    policy.clear_suspension(world.net.council(), world.pid(doctor), "cleared")
    assert not policy.is_suspended(world.pid(doctor))


def test_suspended_requester_is_refused_with_its_reason(world):
    p, doctor = "p-suspended", "dr-held"
    labels = records_of(world, p, "diabetes")
    world.patients[p].grant(world.pid(doctor), records=[world.records[labels["diabetes"]]], duration=3600)
    policy = policy_agent(world.net)
    held = world.pid(doctor)
    policy.suspend_requester(world.net.keys("pha").account, held, "test")
    try:
        refused = expect_refusal(Refusal.SUSPENDED, lambda: read_label(world, doctor, p, labels["diabetes"]))
        assert refused.reason is Reason.GRANTEE_SUSPENDED
    finally:
        policy.clear_suspension(world.net.council(), held, "test over")
    assert read_label(world, doctor, p, labels["diabetes"]).record_id == world.records[labels["diabetes"]]


def test_an_expired_grant_is_refused(world):
    p = "p-expired"
    labels = records_of(world, p, "diabetes")
    journey.expire_a_read_grant(world, p, labels["diabetes"])
    refused = expect_refusal(Refusal.EXPIRED, lambda: read_label(world, "dr-li", p, labels["diabetes"]))
    assert refused.reason is Reason.EXPIRED


def test_a_first_read_slower_than_the_short_window_still_reads_before_the_grant_expires(world, monkeypatch):
    """The demo's expiry step on a loaded machine: the doctor's first read reaches the proxies only after more
    than the short window has passed on the chain clock.  It still reads (under the hour's grant), and only the
    shortened grant expires.  The fault is injected in the read: blocks at wall time until the window has passed."""
    p, seconds = "p-slow-read", 4
    labels = records_of(world, p, "diabetes")
    policy, real_read, delayed = policy_agent(world.net), journey.read_label, []

    def slow_first_read(*args):
        if not delayed:
            delayed.append(policy.now() + seconds + 1)
            journey.mine_until(policy, delayed[0], seconds + 30)
        return real_read(*args)

    monkeypatch.setattr(journey, "read_label", slow_first_read)
    journey.expire_a_read_grant(world, p, labels["diabetes"], seconds=seconds)
    assert delayed, "the first read was not delayed"
    refused = expect_refusal(Refusal.EXPIRED, lambda: real_read(world, "dr-li", p, labels["diabetes"]))
    assert refused.reason is Reason.EXPIRED


def test_no_refusal_is_a_threshold_failure(world):
    """Every proxy answers and refuses (here: the grant expired): that is the refusal, not 'too few proxies'."""
    p = "p-not-threshold"
    labels = records_of(world, p, "diabetes")
    journey.expire_a_read_grant(world, p, labels["diabetes"])
    with pytest.raises((ProxyRefused, ThresholdNotMet)) as info:
        read_label(world, "dr-li", p, labels["diabetes"])
    assert isinstance(info.value, ProxyRefused) and not isinstance(info.value, ThresholdNotMet), repr(info.value)
    assert info.value.code is Refusal.EXPIRED


# --- search tokens (issue 13 item 11): the attacker's attempts, each refused with its own code ------------------


def _proxy_named(world, authority: str):
    return next(p for p in world.directory.proxies if p.info().name == authority)


def _refused_search(code: Refusal, proxy, doc) -> ProxyRefused:
    with pytest.raises(ProxyRefused) as info:
        proxy.search(doc)
    assert info.value.code is code, info.value
    return info.value


def test_a_search_under_a_one_record_grant_shows_only_that_record(world):
    """The diabetes record matches its keyword, but a ticket bound to a grant of the hypertension record does not
    tell the doctor it exists: every proxy returns only hits the grantee may read."""
    p = "p-search-scope"
    labels = records_of(world, p, "hypertension", "diabetes")
    patient, li = world.patients[p], world.doctors["dr-li"]
    patient.grant(world.pid("dr-li"), records=[world.records[labels["hypertension"]]], duration=600, issue=False)
    for keyword, expected in ((journey.HYPERTENSION, [labels["hypertension"]]), (journey.DIABETES, [])):
        ticket = patient.search_ticket(world.pid("dr-li"), keyword)
        assert ticket.tokens[0].scope == int(Scope.RECORD)
        for proxy in world.directory.proxies:
            found = proxy.search(li.search_doc(proxy.info().address, ticket.token_for(proxy.info().address)))
            assert [m["slip_id"] for m in found] == ["0x" + world.records[x].hex() for x in expected], keyword


def test_search_ticket_hides_the_trapdoor_and_is_refused_to_anyone_but_its_grantee(world):
    """The doctor holds only trapdoors encrypted to the proxies; a use unsigned, signed by another doctor, at
    another proxy, with trapdoors in clear, or after the grant's revocation is refused with its own code."""
    from mbds_py.crypto import pre_decrypt
    from mbds_py.crypto.pre import UmbralCiphertext

    p = "p-trapdoor"
    labels = records_of(world, p, "diabetes")
    patient, li, zhao = world.patients[p], world.doctors["dr-li"], world.doctors["dr-zhao"]
    patient.grant(world.pid("dr-li"), duration=600, issue=False)
    ticket = patient.search_ticket(world.pid("dr-li"), journey.DIABETES)
    nha, pha = _proxy_named(world, "nha"), _proxy_named(world, "pha")
    token = ticket.token_for(nha.info().address)
    # the doctor never sees a trapdoor: not in the ticket, and the encrypted one does not open with his key
    clear = patient._trapdoor_sets(journey.DIABETES)[0][0]  # noqa: SLF001 - the patient's own view
    assert clear.hex() not in ticket.to_text() and clear.hex() not in str(token.to_json())
    with pytest.raises(DecryptionError):
        pre_decrypt(li.secrets.identity_secret_key, UmbralCiphertext.from_bytes(token.encrypted_trapdoors))

    unsigned = li.search_doc(nha.info().address, token)
    del unsigned["signature"]
    _refused_search(Refusal.UNAUTHENTICATED, nha, unsigned)
    _refused_search(Refusal.WRONG_GRANTEE, nha, zhao.search_doc(nha.info().address, token))
    _refused_search(Refusal.WRONG_PROXY, pha, li.search_doc(pha.info().address, token))  # nha's token at pha
    forged = dict(li.search_doc(nha.info().address, token))
    forged["token"] = {**forged["token"], "grantee": "0x" + world.pid("dr-zhao").hex()}  # rebound: signature breaks
    _refused_search(Refusal.UNAUTHENTICATED, nha, forged)
    old_style = {"patient": "0x" + world.pid(p).hex(), "trapdoors": ["0x" + clear.hex()]}
    assert "in clear are refused" in str(_refused_search(Refusal.BAD_REQUEST, nha, old_style))
    with pytest.raises(SharingError, match="issued to someone else"):
        zhao.search(world.pid(p), ticket)

    # the grantee's own signed use works, at every proxy with its own token
    for proxy in world.directory.proxies:
        found = proxy.search(li.search_doc(proxy.info().address, ticket.token_for(proxy.info().address)))
        assert [m["slip_id"] for m in found] == ["0x" + world.records[labels["diabetes"]].hex()]

    patient.revoke(world.pid("dr-li"))
    _refused_search(Refusal.REVOKED, nha, li.search_doc(nha.info().address, token))


def test_an_expired_search_token_is_refused(world):
    p = "p-trapdoor"
    world.patients[p].grant(world.pid("dr-wang"), duration=600, issue=False)
    ticket = world.patients[p].search_ticket(world.pid("dr-wang"), journey.DIABETES, ttl=-1)  # expired at issue
    expect_refusal(Refusal.TOKEN_EXPIRED, lambda: world.doctors["dr-wang"].search(world.pid(p), ticket))


def test_a_replayed_search_is_refused_after_a_proxy_restart_and_the_work_is_capped(world):
    """The nonce cache is in the proxy's SQLite store; the caps come from its configuration."""
    p = "p-trapdoor"
    records_of(world, p, "hypertension", "diabetes")  # at least two items to test
    patient, burst = world.patients[p], world.doctors["dr-wang"]
    patient.grant(world.pid("dr-wang"), duration=600, issue=False)
    nha = _proxy_named(world, "nha")
    ticket = patient.search_ticket(world.pid("dr-wang"), journey.HYPERTENSION)
    doc = burst.search_doc(nha.info().address, ticket.token_for(nha.info().address))
    assert nha.search(doc)
    _refused_search(Refusal.REPLAYED, nha, doc)

    path = Path(world.net.spec.state_dir / "proxies") / "nha.json"
    original = ProxyConfig.load(path)
    assert stop_proxy(world.net, "nha")
    dataclasses.replace(original, max_search_trapdoors=2, max_search_items=1).save(path)
    try:
        restart_proxy(world.net, "nha")
        _refused_search(Refusal.REPLAYED, nha, doc)  # the restarted proxy remembers the nonce
        three = patient.search_ticket(world.pid("dr-wang"), journey.HYPERTENSION, journey.DIABETES,
                                      journey.COUGH, all_versions=False)
        _refused_search(Refusal.TOO_MANY_TRAPDOORS, nha, burst.search_doc(nha.info().address,
                                                                          three.token_for(nha.info().address)))
        refused = _refused_search(Refusal.TOO_MANY_ITEMS, nha, burst.search_doc(nha.info().address,
                                                                                ticket.token_for(nha.info().address)))
        assert "cap of 1 per search" in str(refused)
    finally:
        assert stop_proxy(world.net, "nha")
        original.save(path)
        restart_proxy(world.net, "nha")
    assert nha.search(burst.search_doc(nha.info().address, ticket.token_for(nha.info().address)))


# --- service keys (issue 13 item 12): no key or passphrase in any launched process's environ or cmdline ---------


def test_launched_services_hold_no_key_or_passphrase_in_environ_or_cmdline(world):
    """Every replica, consortium node and proxy of the network (and a proxy restarted on its recorded port)
    got its key over an inherited pipe: none is in /proc/PID/environ or /proc/PID/cmdline."""
    import re

    from mbds_py.service_keys import SECRET_ENV

    net = world.net
    assert stop_proxy(net, "mha")
    restart_proxy(net, "mha")  # a restart gets its key the same way
    services = {s.name: s for s in net.devnet.load_services().values() if s.kind in ("replica", "consortium", "proxy")}
    assert {s.kind for s in services.values()} == {"replica", "consortium", "proxy"}
    secrets = [net.passphrase] + [proxy_keys(net, a).to_bytes().hex() for a in AUTHORITIES]
    secrets += [bytes(net.keys(n).account.key).hex() for n in net.people if n.startswith(("nha", "pha", "mha"))]
    for s in services.values():
        environ = Path(f"/proc/{s.pid}/environ").read_bytes().decode("utf-8", "replace")
        cmdline = Path(f"/proc/{s.pid}/cmdline").read_bytes().decode("utf-8", "replace")
        assert "--key-fd" in cmdline, s.name
        for where, text in (("environ", environ), ("cmdline", cmdline)):
            assert not re.search(r"[0-9a-fA-F]{64}", text), f"{s.name}: a 32-byte hex value in /proc/PID/{where}"
            assert not any(secret in text for secret in secrets), f"{s.name}: a secret in /proc/PID/{where}"
            assert not any(f"{name}=" in text for name in SECRET_ENV), f"{s.name}: a secret variable in {where}"


def test_every_launched_service_serves_and_answers_its_committed_openapi_document(world):
    """Each replica, consortium node and proxy process serves its file under docs/api at ``GET /openapi.json``
    and answers every documented operation (harmless requests: bodies that are refused, a patient with nothing
    pending) with a documented status whose JSON body its schema allows (tests/foundation/test_openapi.py)."""
    from tests.foundation.test_openapi import exercise, load, served_exactly

    services = [s for s in world.net.devnet.load_services().values() if s.kind in ("replica", "consortium", "proxy")]
    assert {s.kind for s in services} == {"replica", "consortium", "proxy"}
    for s in services:
        served_exactly(s.url, s.kind)
        exercise(s.url, load(s.kind), validate=True)
