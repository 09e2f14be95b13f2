"""The sharing walk-throughs the demo narrates (paper "The process of a patient using the MBDS system").

* :func:`run_journey` — the paper's hybrid care journey for alice: an online
  consultation on platform-c (dr-zhao) → hospital-a's dr-li, after alice
  approves his request, reads that online record and writes his own →
  referral to hospital-b, whose dr-wang reads both and writes a third →
  online follow-up where dr-zhao reads the whole history, combined across the
  three private chains into one timeline.
* :func:`run_policy_script` — grant / revoke on bob's records: no grant is
  refused; a grant opens exactly its record; revoke bites; a stale epoch is
  refused until the patient re-issues; one proxy down still serves and a
  single proxy cannot; break-glass access by two health authorities works and
  shows in bob's audit trail; abnormal access suspends the requester; an
  expired grant is refused (last: it waits for the chain clock).

Each step is a function returning a short outcome (or raising); the ``run_*``
functions wrap them in ``narrator.step(name, expected)`` (``mbds_py.demo.Narrator``).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from .clients import Directory, DoctorClient, PatientClient, SharedRecord, Timeline, combine
from .launch import (AUTHORITIES, DEFAULT_RATE_LIMIT, directory, policy_agent, start_proxies,
                     stop_proxy, restart_proxy)
from .proxy import DEFAULT_THRESHOLD, ProxyRefused, Refusal

DOCTORS = ("dr-li", "dr-wang", "dr-zhao")
PATIENTS = ("alice", "bob")

# Coded keywords (ICD-10 diagnoses, LOINC observations) of the journey's records.
COUGH = "icd10|R05"
PNEUMONIA = "icd10|J18.9"
CHEST_CT = "loinc|24627-2"
FOLLOW_UP = "icd10|Z09"
HYPERTENSION = "icd10|I10"
DIABETES = "icd10|E11.9"


# ---------------------------------------------------------------------------------------------
# the world the steps act on
# ---------------------------------------------------------------------------------------------


@dataclass
class SharingWorld:
    """Proxies, clients and the records written so far (by label)."""

    net: Any
    urls: list[str]
    directory: Directory
    patients: dict[str, PatientClient]
    doctors: dict[str, DoctorClient]
    records: dict[str, bytes] = field(default_factory=dict)
    chains: dict[str, str] = field(default_factory=dict)  # record label -> chain

    def pid(self, name: str) -> bytes:
        return self.net.people[name].id

    def label_of(self, record_id: bytes) -> str:
        return next((k for k, v in self.records.items() if v == record_id), "0x" + record_id.hex()[:10])

    def doctor_names(self) -> dict[str, str]:
        return {self.net.people[d].address: d for d in DOCTORS}


def setup_sharing(net, *, threshold: int = DEFAULT_THRESHOLD, rate_limit: int = DEFAULT_RATE_LIMIT,
                  rate_window: float = 60.0) -> SharingWorld:
    """Start (or find) the three authority proxies and make the clients."""
    urls = start_proxies(net, threshold, rate_limit=rate_limit, rate_window=rate_window)
    d = directory(net, urls, threshold)
    return SharingWorld(net, urls, d, {p: PatientClient(net.keys(p), d) for p in PATIENTS},
                        {doc: DoctorClient(net.keys(doc), d) for doc in DOCTORS})


# ---------------------------------------------------------------------------------------------
# writing records (Algorithms 1-2) and waiting for the consortium index
# ---------------------------------------------------------------------------------------------


def record_visit_keywords(net, doctor: str, patient: str, keywords: Sequence[str], text: str, *,
                          record_type: str = "consultation"):
    """:func:`mbds_py.sharing.records.record_visit` with several coded keywords (one PEKS ciphertext each,
    padded to ``KEYWORD_SLOTS``)."""
    from .records import record_visit

    return record_visit(net, doctor, patient, list(keywords), text, record_type=record_type)


def wait_indexed(world: SharingWorld, patient: str, record_ids: Sequence[bytes], timeout: float = 90) -> None:
    """Poll a consortium node until every record's summary item of ``patient`` is indexed."""
    from ..private.cluster import wait_until

    want = {"0x" + r.hex() for r in record_ids}

    def indexed() -> bool:
        have = {i["slip_id"] for i in world.directory.consortium_items(world.pid(patient))}
        return want <= have

    wait_until(indexed, timeout, f"{len(want)} summary item(s) of {patient} on the consortium", interval=0.25)


def write(world: SharingWorld, label: str, doctor: str, patient: str, keywords: Sequence[str], text: str, *,
          record_type: str = "consultation") -> str:
    """A doctor writes a record, the patient confirms, PBFT commits, the consortium indexes it."""
    receipt = record_visit_keywords(world.net, doctor, patient, keywords, text, record_type=record_type)
    world.records[label] = receipt.slip_id
    world.chains[label] = world.net.chain_of(doctor)
    wait_indexed(world, patient, [receipt.slip_id])
    return (f"{label}: slip 0x{receipt.slip_id.hex()[:10]}… in block {receipt.height} of {world.chains[label]}, "
            f"indexed on the consortium")


# ---------------------------------------------------------------------------------------------
# reading and refusing
# ---------------------------------------------------------------------------------------------


def read_keyword(world: SharingWorld, doctor: str, patient: str, *keywords: str) -> list[SharedRecord]:
    """The patient issues the doctor a search ticket (trapdoors of every key version, encrypted to the proxies,
    bound to his grant), the doctor searches through a proxy and reads every match."""
    ticket = world.patients[patient].search_ticket(world.pid(doctor), *keywords)
    return world.doctors[doctor].read(world.pid(patient), ticket)


def read_label(world: SharingWorld, doctor: str, patient: str, label: str) -> SharedRecord:
    """Read one known record (location from the index, slip proven on its chain)."""
    rid = world.records[label]
    chain_id = world.net.spec.chain(world.chains[label]).chain_id
    return world.doctors[doctor].read_record(world.pid(patient), (chain_id, rid))


def expect_refusal(code: Refusal, fn: Callable[[], Any]) -> ProxyRefused:
    """Run ``fn``; it must be refused with ``code``."""
    try:
        fn()
    except ProxyRefused as exc:
        if exc.code is not code:
            raise AssertionError(f"expected refusal {code.value}, got {exc.code.value}: {exc}") from exc
        return exc
    raise AssertionError(f"expected refusal {code.value}, but the read succeeded")


def _refused(exc: ProxyRefused) -> str:
    others = getattr(exc, "refusals", ())
    by = sorted({r.proxy for r in others if r.code is exc.code and r.proxy}) or [exc.proxy]
    return f"refused ({exc.code.value}) by {', '.join(b for b in by if b) or 'the proxies'}"


def _audit(world: SharingWorld, record: SharedRecord) -> str:
    return f"{len(record.audits)} AccessRecorded event(s) on chain (blocks {sorted(a['block'] for a in record.audits)})"


# ---------------------------------------------------------------------------------------------
# the hybrid journey (paper, four steps)
# ---------------------------------------------------------------------------------------------


def step_online_consultation(world: SharingWorld) -> str:
    return write(world, "online-consultation", "dr-zhao", "alice", [COUGH],
                 "Online consultation: persistent cough for 10 days, advised an offline visit")


def step_offline_reads_online(world: SharingWorld) -> str:
    """alice gives dr-li a search ticket; without a grant the proxies refuse it; he asks, she approves, he
    finds the online record with the same ticket and reads it."""
    alice, li = world.patients["alice"], world.doctors["dr-li"]
    ticket = alice.search_ticket(world.pid("dr-li"), COUGH)
    before = expect_refusal(Refusal.NO_GRANT, lambda: li.search(world.pid("alice"), ticket))
    req = li.request_access(world.pid("alice"), duration=3600, reason="offline follow-up of the online consultation")
    pending = [r.id for r in alice.pending_requests()]
    if req.id not in pending:
        raise AssertionError("alice does not see dr-li's request")
    alice.approve(req.id)
    matches = li.search(world.pid("alice"), ticket)
    if [m.slip_id for m in matches] != [world.records["online-consultation"]]:
        raise AssertionError(f"search found {len(matches)} match(es), expected the online consultation")
    rec = li.read_record(world.pid("alice"), matches[0])
    if rec.record_id != world.records["online-consultation"] or rec.text not in str(rec.hmi):
        raise AssertionError("dr-li decrypted something else")
    return (f"before approval {_refused(before)}; request #{req.id} approved; dr-li read "
            f"\"{rec.text[:40]}…\" from {rec.chain}; {_audit(world, rec)}")


def step_offline_visit(world: SharingWorld) -> str:
    return write(world, "offline-visit", "dr-li", "alice", [PNEUMONIA],
                 "Offline visit: chest X-ray shows right lower lobe pneumonia; amoxicillin 7 days")


def step_referral(world: SharingWorld) -> str:
    """alice grants dr-wang both records; he reads them (two searches, two chains) and writes his own."""
    alice = world.patients["alice"]
    alice.grant(world.pid("dr-wang"), records=[world.records["online-consultation"], world.records["offline-visit"]],
                duration=3600)
    read = read_keyword(world, "dr-wang", "alice", COUGH) + read_keyword(world, "dr-wang", "alice", PNEUMONIA)
    timeline = combine(read)
    if [r.record_id for r in timeline.entries] != [world.records["online-consultation"], world.records["offline-visit"]]:
        raise AssertionError("dr-wang's timeline is not [online consultation, offline visit]")
    written = write(world, "referral", "dr-wang", "alice", [PNEUMONIA, CHEST_CT],
                    "Referral: chest CT confirms resolving pneumonia; switch to oral cefuroxime")
    return (f"dr-wang read {len(timeline)} records from {sorted({r.chain for r in timeline.entries})}; "
            f"{written.split(':')[0]} written on hospital-b")


def step_conjunctive_search(world: SharingWorld) -> str:
    """PEKS conjunction: pneumonia AND chest CT matches only the referral record (alice lets dr-wang see the
    referral he wrote: a search shows a grantee only the records he may read)."""
    alice, wang = world.patients["alice"], world.doctors["dr-wang"]
    alice.grant(world.pid("dr-wang"), records=[world.records["referral"]], duration=3600)
    both = alice.search_ticket(world.pid("dr-wang"), PNEUMONIA, CHEST_CT)
    matches = wang.search(world.pid("alice"), both)
    if [m.slip_id for m in matches] != [world.records["referral"]]:
        raise AssertionError(f"conjunctive search found {[world.label_of(m.slip_id) for m in matches]}")
    single = wang.search(world.pid("alice"), alice.search_ticket(world.pid("dr-wang"), PNEUMONIA))
    return (f"{PNEUMONIA} alone matches {len(single)} records; {PNEUMONIA} AND {CHEST_CT} matches only "
            f"'referral' (block {matches[0].block_height} of {matches[0].chain})")


def step_online_follow_up(world: SharingWorld) -> Timeline:
    """dr-zhao, on the platform again, gets alice's grant and reads the whole history from three chains."""
    alice = world.patients["alice"]
    labels = ["online-consultation", "offline-visit", "referral"]
    alice.grant(world.pid("dr-zhao"), records=[world.records[k] for k in labels], duration=3600)
    timeline = combine(read_keyword(world, "dr-zhao", "alice", COUGH) + read_keyword(world, "dr-zhao", "alice", PNEUMONIA))
    if [r.record_id for r in timeline.entries] != [world.records[k] for k in labels]:
        raise AssertionError(f"follow-up timeline is {[world.label_of(r.record_id) for r in timeline.entries]}")
    write(world, "online-follow-up", "dr-zhao", "alice", [FOLLOW_UP],
          "Online follow-up: cough resolved, no fever; treatment complete")
    return timeline


def run_journey(net, narrator=None, *, world: SharingWorld | None = None,
                out: Callable[[str], None] = print) -> SharingWorld:
    """The paper's four-step hybrid journey, each step narrated and timed."""
    step = _stepper(narrator)
    if world is None:
        with step("start the authority proxies", "3 proxy processes (nha, pha, mha), registered with addProxy (2-of-3 authorities each), "
                  f"{DEFAULT_THRESHOLD}-of-3 threshold") as s:
            world = setup_sharing(net)
            s.actual = f"proxies at {', '.join(world.urls)}; all registered on chain"
    with step("1. online consultation (platform-c)", "dr-zhao writes, alice confirms, indexed on the consortium") as s:
        s.actual = step_online_consultation(world)
    with step("2. offline hospital reads the online record", "no grant → search refused; request → alice approves "
              "→ dr-li finds and reads it through 2-of-3 proxies") as s:
        s.actual = step_offline_reads_online(world)
    with step("2b. offline visit recorded (hospital-a)", "dr-li's record committed and indexed") as s:
        s.actual = step_offline_visit(world)
    with step("3. referral to hospital-b", "dr-wang reads both records (two chains), writes his own") as s:
        s.actual = step_referral(world)
    with step("3b. conjunctive PEKS search", "pneumonia AND chest CT → only the referral record") as s:
        s.actual = step_conjunctive_search(world)
    with step("4. online follow-up (platform-c)", "dr-zhao reads the combined history of three chains") as s:
        timeline = step_online_follow_up(world)
        s.actual = f"M = Combine(M1..M{len(timeline)}), {len(timeline)} records in time order; follow-up written"
        for line in timeline.lines(world.doctor_names()):
            out(f"      {line}")
    return world


# ---------------------------------------------------------------------------------------------
# grant / revoke script on bob's records
# ---------------------------------------------------------------------------------------------


def step_bob_records(world: SharingWorld) -> str:
    a = write(world, "bob-hypertension", "dr-li", "bob", [HYPERTENSION], "Hypertension, started amlodipine 5 mg")
    b = write(world, "bob-diabetes", "dr-li", "bob", [DIABETES], "Type 2 diabetes, started metformin 500 mg")
    return f"two records on hospital-a (one hospital only): {a.split(':')[0]}, {b.split(':')[0]}"


def step_no_grant(world: SharingWorld) -> str:
    exc = expect_refusal(Refusal.NO_GRANT, lambda: read_label(world, "dr-wang", "bob", "bob-hypertension"))
    return _refused(exc)


def step_grant_one_record(world: SharingWorld) -> str:
    bob = world.patients["bob"]
    out = bob.grant(world.pid("dr-wang"), records=[world.records["bob-hypertension"]], duration=3600)
    rec = read_label(world, "dr-wang", "bob", "bob-hypertension")
    other = expect_refusal(Refusal.OUT_OF_SCOPE, lambda: read_label(world, "dr-wang", "bob", "bob-diabetes"))
    return (f"grant ({out['gas']} gas) → read \"{rec.text}\"; the other record {_refused(other)}")


def step_revoke(world: SharingWorld) -> str:
    bob = world.patients["bob"]
    out = bob.revoke(world.pid("dr-wang"), record=world.records["bob-hypertension"])
    exc = expect_refusal(Refusal.REVOKED, lambda: read_label(world, "dr-wang", "bob", "bob-hypertension"))
    return f"revoke ({out['gas']} gas) → the same read {_refused(exc)}"


def step_stale_epoch(world: SharingWorld) -> str:
    """Re-grant both; revoking one moves the epoch, so the other's key is stale until re-issued."""
    bob, wid = world.patients["bob"], world.pid("dr-wang")
    bob.grant(wid, records=[world.records["bob-hypertension"], world.records["bob-diabetes"]], duration=3600)
    read_label(world, "dr-wang", "bob", "bob-diabetes")
    bob.revoke(wid, record=world.records["bob-hypertension"], reissue=False)
    exc = expect_refusal(Refusal.STALE_EPOCH, lambda: read_label(world, "dr-wang", "bob", "bob-diabetes"))
    issued = bob.issue_keys(wid, [world.records["bob-diabetes"]])
    read_label(world, "dr-wang", "bob", "bob-diabetes")
    return f"{_refused(exc)}; after re-issue for epoch {issued.epoch} the read succeeds"


def step_threshold(world: SharingWorld, order: Sequence[str] = AUTHORITIES) -> str:
    """The first proxy down: the read fails over to the third; two down: the last one alone cannot serve."""
    from .clients import ThresholdNotMet

    net = world.net
    first, second, last = order
    stop_proxy(net, first)
    try:
        rec = read_label(world, "dr-wang", "bob", "bob-diabetes")
        names = {p.info().address: p.info().name for p in world.directory.proxies if p._info is not None}  # noqa: SLF001
        served_by = sorted(names.get(a["proxy"], a["proxy"]) for a in rec.audits)
        stop_proxy(net, second)
        try:
            try:
                read_label(world, "dr-wang", "bob", "bob-diabetes")
            except ThresholdNotMet as exc:
                alone = f"{last} alone: {exc.__class__.__name__} ({len(exc.refusals)} proxies unavailable)"
            else:
                raise AssertionError("one proxy alone served a record")
        finally:
            restart_proxy(net, second)
    finally:
        restart_proxy(net, first)
    return f"{first} down: read served by {' + '.join(served_by)}; {alone}"


def step_emergency(world: SharingWorld) -> str:
    """dr-zhao has no grant; nha and pha approve break-glass access; bob's client serves it; audited."""
    net, bob, zhao = world.net, world.patients["bob"], world.doctors["dr-zhao"]
    expect_refusal(Refusal.NO_GRANT, lambda: read_label(world, "dr-zhao", "bob", "bob-diabetes"))
    emergency = zhao.request_emergency(world.pid("bob"), duration=900, reason="unconscious in ER, hypoglycaemia?")
    policy = policy_agent(net)
    for authority in AUTHORITIES[:2]:
        policy.approve_emergency(net.keys(authority).account, emergency.id)
    state = policy.emergency(emergency.id)
    served = bob.serve_emergencies()
    rec = read_label(world, "dr-zhao", "bob", "bob-diabetes")
    trail = [e for e in bob.audit_trail(record=world.records["bob-diabetes"]) if e.grantee == world.pid("dr-zhao")]
    bases = sorted({e.basis.name for e in trail})
    if bases != ["EMERGENCY"]:
        raise AssertionError(f"emergency reads audited with basis {bases}")
    return (f"emergency #{emergency.id} {state.state.name.lower()} after {state.approvals} approvals, window "
            f"{state.expires_at - state.activated_at}s; served {served}; dr-zhao read \"{rec.text}\"; "
            f"{len(trail)} audit events with basis EMERGENCY in bob's trail")


BURST_READERS = 4  # concurrent reads of the abnormal-access burst


def step_abnormal_access(world: SharingWorld) -> str:
    """A burst of reads above a proxy's rate limit suspends the requester on chain until an authority clears it."""
    net = world.net
    policy = policy_agent(net)
    wid = world.pid("dr-wang")
    limit = _rate_limit(net)

    def attempt() -> ProxyRefused | None:
        try:
            read_label(world, "dr-wang", "bob", "bob-diabetes")
        except ProxyRefused as e:
            return e
        return None

    # BURST_READERS at a time, as an abusive client would: the burst must land inside the proxies' rate window
    # even where one read takes over a second (a loaded Ganache measured 65 reads in 70 s one at a time)
    with ThreadPoolExecutor(BURST_READERS) as pool:
        outcomes = list(pool.map(lambda _: attempt(), range(limit + 5)))
    reads = outcomes.count(None)
    refusals = [o for o in outcomes if o is not None]
    exc = next((e for e in refusals if e.code is Refusal.SUSPENDED), refusals[0] if refusals else None)
    if exc is None or exc.code is not Refusal.SUSPENDED or not policy.is_suspended(wid):
        raise AssertionError(f"no suspension after {reads} reads (limit {limit}): {exc}")
    expect_refusal(Refusal.SUSPENDED, lambda: read_label(world, "dr-wang", "bob", "bob-diabetes"))
    policy.clear_suspension(net.council(), wid, "identity confirmed by phone")  # k-of-n: nha proposes, pha approves
    read_label(world, "dr-wang", "bob", "bob-diabetes")
    return f"suspended on chain after {reads} reads (limit {limit}/min); refused while suspended; the authorities (2 of 3) cleared it"


def mine_until(policy, timestamp: int, timeout: float) -> None:
    """Blocks at wall-clock time (no time jump) until the consortium chain's clock reaches ``timestamp``."""
    deadline = time.monotonic() + timeout
    while policy.now() < timestamp:
        if time.monotonic() > deadline:
            raise AssertionError(f"the consortium chain clock did not reach {timestamp} within {timeout:.0f} s")
        time.sleep(0.5)
        policy.client.w3.provider.make_request("evm_mine", [])


def expire_a_read_grant(world: SharingWorld, patient: str, label: str, doctor: str = "dr-li",
                        seconds: int = 8) -> dict[str, Any]:
    """``doctor`` reads ``label`` under an hour's grant; the patient then shortens the grant to ``seconds`` and
    the consortium clock passes the new expiry (empty blocks at wall time, no jump).

    The read comes before the short window: how long a read takes on a loaded machine or a slow devchain must
    not decide whether the grant has already expired when the doctor first reads."""
    client, policy, rid = world.patients[patient], policy_agent(world.net), world.records[label]
    client.grant(world.pid(doctor), records=[rid], duration=3600)
    read_label(world, doctor, patient, label)
    out = client.grant(world.pid(doctor), records=[rid], duration=seconds, issue=False)
    expires = policy.grant_of(world.pid(patient), world.pid(doctor), _record_scope(), rid).expires_at
    mine_until(policy, expires, seconds + 30)
    return out


def step_expired(world: SharingWorld, seconds: int = 8) -> str:
    """A grant works; shortened to ``seconds``, it expires on the chain clock and the same read is refused."""
    out = expire_a_read_grant(world, "bob", "bob-diabetes", seconds=seconds)
    exc = expect_refusal(Refusal.EXPIRED, lambda: read_label(world, "dr-li", "bob", "bob-diabetes"))
    return f"read, then shortened to {seconds}s ({out['gas']} gas): {_refused(exc)}"


def _record_scope():
    from .policy import Scope

    return Scope.RECORD


def _rate_limit(net) -> int:
    from pathlib import Path

    from .proxy import ProxyConfig

    return min(ProxyConfig.load(Path(net.spec.state_dir / "proxies") / f"{a}.json").rate_limit for a in AUTHORITIES)


def run_policy_script(net, narrator=None, *, world: SharingWorld | None = None, abnormal: bool = True,
                      expiry: bool = True) -> SharingWorld:
    """Grant / revoke / threshold / emergency / abnormal access / expiry on bob's records."""
    step = _stepper(narrator)
    if world is None:
        world = setup_sharing(net)
    with step("bob's records (one hospital)", "two records on hospital-a") as s:
        s.actual = step_bob_records(world)
    with step("doctor without a grant", "refused: no-grant") as s:
        s.actual = step_no_grant(world)
    with step("grant one record", "that record reads; the other is refused: out-of-scope") as s:
        s.actual = step_grant_one_record(world)
    with step("revoke", "the same read is refused: revoked") as s:
        s.actual = step_revoke(world)
    with step("stale revocation epoch", "refused: stale-epoch, until the patient re-issues") as s:
        s.actual = step_stale_epoch(world)
    with step("threshold proxies", "one proxy down still serves; one proxy alone cannot") as s:
        s.actual = step_threshold(world)
    with step("emergency access", "2 of 3 authorities approve; time-boxed read; basis EMERGENCY in the audit trail") as s:
        s.actual = step_emergency(world)
    if abnormal:
        with step("abnormal access", "a burst above the rate limit → requester suspended on chain") as s:
            s.actual = step_abnormal_access(world)
    if expiry:
        with step("expired grant", "refused: expired") as s:
            s.actual = step_expired(world)
    return world


class _Plain:
    actual = ""


@contextmanager
def _quiet(name: str, expected: str) -> Iterator[_Plain]:
    yield _Plain()


def _stepper(narrator):
    return narrator.step if narrator is not None else _quiet


__all__ = [
    "SharingWorld", "expect_refusal", "read_keyword", "read_label", "record_visit_keywords", "run_journey",
    "run_policy_script", "setup_sharing", "wait_indexed", "write",
]
