"""Chaos under load (issue 12, item 6): sustained mixed traffic on a whole network while a seeded fault plan
SIGKILLs and restarts, one at a time, a backup replica, a primary, a storage node, a proxy, an RPN and an ATN.

Traffic (a few threads, bounded loops, every operation retried with bounded backoff on transient failures):

* writers, one per doctor — Algorithm 1: the doctor writes, the patient reviews, stores and confirms; the slip
  id the replicas return is the acknowledgement.  The writer then waits for its receipt and for the patient to
  have handled the record, so the load follows the speed of the whole pipeline;
* patients (alice, bob) — every record of theirs indexed on the consortium is granted to a doctor (the mined
  grant is the acknowledgement), and now and then a grant is revoked;
* readers — doctors read through the 2-of-3 proxies: every new grant (must be served), every revoke (must be
  refused: revoked) and random probes (served, or refused for the reason the patients' grants give).

The fault plan comes from ``random.Random(seed)``: the order of the six faults, which chain, replica, node or
proxy, and how much acknowledged traffic runs before and during each fault (a primary is killed right after it
acknowledged a write; a storage node stays down until a write has felt it).  The seed is printed first; pin it
with ``MBDS_CHAOS_SEED``.  A killed service is restarted on its ports (``Network.attach()``, ``up_storage()``,
``restart_proxy``); between faults the test waits for health (every replica on one view with one primary and
caught up, the consortium node caught up, every service answering), never for a fixed time.

Afterwards: every acknowledged record is committed (receipt from the replicas, proven against ``SlipLedger``,
anchored), appears exactly once in its chain's anchored blocks (bodies fetched from storage), is indexed exactly
once on every consortium node and is readable by its grantee through the proxies; every acknowledged grant is in
force on chain; every refused read was refused for the right reason; every service is healthy again.
"""

from __future__ import annotations

import os
import queue
import random
import secrets
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import requests

from mbds_py.crypto import HmiEnvelope, build_envelope, confirm_record, review_envelope
from mbds_py.errors import (ChainError, ContractRevert, CryptoError, IntegrityError, InvalidSlip, MBDSError,
                            StorageError)
from mbds_py.network import Network, PrivateChainSettings
from mbds_py.private.body import body_cid_bytes, cid_text, decode_body
from mbds_py.private.client import HospitalClient, NodeUnavailable, verify_receipt
from mbds_py.sharing.clients import DoctorClient, PatientClient, SharingError
from mbds_py.sharing.launch import AUTHORITIES, directory, restart_proxy, service_name, start_proxies
from mbds_py.sharing.policy import Action
from mbds_py.sharing.proxy import ProxyRefused, Refusal
from mbds_py.spec import load_spec
from mbds_py.storage.client import KuboClient
from mbds_py.storage.replicated import ReplicatedStore

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("chaos")]

SEED_ENV = "MBDS_CHAOS_SEED"
# The suite's fault plan: the seed that lost an acknowledged slip when the primary was killed right after
# acknowledging it (fixed by the client's broadcast of confirmed slips).  Another plan: MBDS_CHAOS_SEED=N.
PINNED_SEED = 129961
TRAFFIC_SECONDS = 120.0  # traffic runs at least this long, and until the last fault has recovered
HARD_STOP = 170.0  # ... but never longer than this
FAULT_KINDS = ("backup", "primary", "storage", "proxy", "rpn", "atn")
DOCTORS = ("dr-li", "dr-wang", "dr-zhao")
PATIENTS = ("alice", "bob")
KEYWORDS = ("icd10|R05", "icd10|J18.9", "icd10|I10", "icd10|E11.9", "loinc|24627-2", "icd10|Z09")
MAX_WRITES = 40  # per doctor: the writers' loops are bounded
MAX_PROBES = 400  # random reads, all readers together
RATE_LIMIT = 1_000_000  # the proxies' abnormal-access limit is not what this test is about
HEALTH_TIMEOUT = 90.0
DOWN_TIMEOUT = 45.0


# ---------------------------------------------------------------------------------------------
# waiting and retrying
# ---------------------------------------------------------------------------------------------


def until(predicate: Callable[[], Any], timeout: float, *, interval: float = 0.25,
          stop: threading.Event | None = None) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned), ``timeout`` passes or ``stop`` is set
    (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline or (stop is not None and stop.is_set()):
            return None
        time.sleep(interval)


def is_transient(exc: BaseException) -> bool:
    """A failure a restarting service explains: retry.  A refusal with a reason or a revert is an answer."""
    if isinstance(exc, ProxyRefused):
        return exc.code is Refusal.UNAVAILABLE
    if isinstance(exc, (ContractRevert, InvalidSlip, IntegrityError, CryptoError)):
        return False
    return isinstance(exc, (NodeUnavailable, StorageError, ChainError, SharingError, MBDSError,
                            requests.RequestException, TimeoutError, ConnectionError))


class Tally:
    """Counters of the traffic, thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.retry_reasons: Counter[str] = Counter()
        self.wrong: list[str] = []  # reads answered for the wrong reason (or served when they must not be)
        self.gave_up: list[str] = []  # operations still failing after their retries
        self.progress = threading.Condition(self.lock)

    def done(self, kind: str) -> None:
        with self.lock:
            self.ops[kind] += 1
            self.progress.notify_all()

    def total(self) -> int:
        with self.lock:
            return sum(self.ops.values())

    def retried(self, kind: str, exc: BaseException) -> None:
        with self.lock:
            self.retries[kind] += 1
            self.retry_reasons[f"{kind}: {type(exc).__name__}"] += 1

    def failure(self, text: str) -> None:
        with self.lock:
            self.wrong.append(text)

    def gave_up_on(self, text: str) -> None:
        with self.lock:
            self.gave_up.append(text)

    def wait_total(self, target: int, timeout: float, stop: threading.Event) -> None:
        """Until ``target`` operations are done in all (bounded; returns early on ``stop``)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while sum(self.ops.values()) < target and not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.progress.wait(min(left, 0.5))


def retry(tally: Tally, kind: str, fn: Callable[[], Any], *, attempts: int = 12, first: float = 0.2,
          cap: float = 3.0, transient: Callable[[BaseException], bool] = is_transient,
          deadline: float | None = None) -> Any:
    """``fn()``, retried with bounded exponential backoff (≈ 25 s in all, never past ``deadline``, a
    ``time.monotonic()`` value) while it fails transiently."""
    delay = first
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below
            late = deadline is not None and time.monotonic() + delay > deadline
            if attempt == attempts - 1 or late or not transient(exc):
                raise
            tally.retried(kind, exc)
            time.sleep(delay)  # backoff between attempts, not synchronisation
            delay = min(cap, delay * 2)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# what the traffic acknowledged
# ---------------------------------------------------------------------------------------------


@dataclass
class Record:
    slip_id: bytes
    chain: str
    chain_id: int
    doctor: str
    patient: str
    text: str
    acked_at: float
    handled: threading.Event = field(default_factory=threading.Event, repr=False)  # granted by the patient
    grantee: str | None = None

    @property
    def label(self) -> str:
        return f"0x{self.slip_id.hex()[:10]}… ({self.doctor} → {self.patient}, {self.chain})"


class Pair:
    """What a patient granted one doctor (record grants only); the lock orders grants, revokes and reads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: set[bytes] = set()
        self.revoked: set[bytes] = set()

    def expected(self, record_id: bytes) -> Refusal | None:
        """None: the read must be served; else the refusal AccessPolicy must give."""
        if record_id in self.live:
            return None
        if record_id in self.revoked:
            return Refusal.REVOKED
        return Refusal.OUT_OF_SCOPE if self.live else Refusal.NO_GRANT


@dataclass
class FaultPlan:
    kind: str
    chain: str  # for replica faults
    pick: int  # which one, among the candidates at injection time
    gap_ops: int  # acknowledged operations before the fault
    down_ops: int  # acknowledged operations while the service is down (bounded by DOWN_TIMEOUT)


@dataclass
class FaultRun:
    plan: FaultPlan
    service: str = ""
    killed: float | None = None
    restarted: float | None = None
    healthy: float | None = None
    ops_down: int = 0
    note: str = ""


def fault_plan(rng: random.Random, chains: list[str]) -> list[FaultPlan]:
    kinds = list(FAULT_KINDS)
    rng.shuffle(kinds)
    return [FaultPlan(k, rng.choice(chains), rng.randrange(1 << 16), rng.randint(8, 20), rng.randint(4, 10))
            for k in kinds]


# ---------------------------------------------------------------------------------------------
# the world the threads share
# ---------------------------------------------------------------------------------------------


class World:
    def __init__(self, net: Network, passphrase: str, proxy_urls: list[str], seed: int,
                 say: Callable[[str], None]):
        self.net = net
        self.say = say
        self.passphrase = passphrase
        self.proxy_urls = proxy_urls
        self.seed = seed
        self.tally = Tally()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.records: list[Record] = []
        self.by_patient: dict[str, list[Record]] = {p: [] for p in PATIENTS}
        self.handled: list[Record] = []  # indexed and granted: what probes pick from
        self.pairs = {(p, d): Pair() for p in PATIENTS for d in DOCTORS}
        self.reads: "queue.Queue[tuple[str, Record, str]]" = queue.Queue()
        self.new_ack = threading.Condition(self.lock)
        self.t0 = time.monotonic()
        self.faults: list[FaultRun] = []
        self.probes = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def pid(self, name: str) -> bytes:
        return self.net.people[name].id

    def rng(self, who: str) -> random.Random:
        return random.Random(f"{self.seed}/{who}")

    def acked(self, rec: Record) -> None:
        with self.lock:
            self.records.append(rec)
            self.by_patient[rec.patient].append(rec)
            self.new_ack.notify_all()
        self.tally.done("write")

    def wait_write(self, chain: str, timeout: float) -> bool:
        """Until the next write on ``chain`` is acknowledged (bounded; False on timeout or stop)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            seen = sum(r.chain == chain for r in self.records)
            while sum(r.chain == chain for r in self.records) == seen:
                left = deadline - time.monotonic()
                if left <= 0 or self.stop.is_set():
                    return False
                self.new_ack.wait(min(left, 0.5))
        return True

    def store(self) -> ReplicatedStore:
        urls = self.net.devnet.storage_urls()
        return ReplicatedStore([KuboClient(u) for u in urls], replicas=min(self.net.spec.storage.replicas, len(urls)))


# ---------------------------------------------------------------------------------------------
# traffic
# ---------------------------------------------------------------------------------------------


def writer(world: World, doctor: str) -> None:
    """One doctor writing records for alice and bob (Algorithm 1), each acknowledged by a slip id."""
    net, tally = world.net, world.tally
    rng = world.rng(f"writer/{doctor}")
    chain = net.chain_of(doctor)
    api = net.hospital_api(chain)  # sticky on the replica that last answered: the patient reads it there
    domain = net.clusters[chain].config.record_domain
    chain_id = net.spec.chain(chain).chain_id
    store = world.store()
    doc = net.keys(doctor)
    for n in range(MAX_WRITES):
        if world.stop.is_set():
            return
        patient = rng.choice(PATIENTS)
        pat = net.keys(patient)
        keywords = rng.sample(KEYWORDS, rng.randint(1, 2))
        text = f"chaos {world.seed} {doctor} #{n} for {patient}"
        codings = [{"system": k.split("|")[0], "code": k.split("|")[1]} for k in keywords]
        document = {"resourceType": "Condition", "subject": {"display": patient}, "note": [{"text": text}],
                    "code": {"coding": codings}}
        env = build_envelope(document, keywords, pat.secrets.public_keys, doc.secrets.signer,
                             timestamp=int(time.time()), record_type="consultation", text=text, domain=domain)
        raw = env.to_bytes()
        try:
            record_id = retry(tally, "write", lambda: api.submit_envelope(raw))

            def fetch() -> bytes:
                try:
                    return api.envelope(record_id)
                except InvalidSlip:  # the replica holding it is down: upload again where we are now
                    api.submit_envelope(raw)
                    return api.envelope(record_id)

            pending = retry(tally, "write", fetch, transient=lambda e: is_transient(e) or isinstance(e, InvalidSlip))
            reviewed = review_envelope(HmiEnvelope.from_bytes(pending), pat.secrets, domain=domain,
                                       expected_doctor=doc.account.address)
            cid = retry(tally, "write", lambda: store.add(reviewed.record_blob))
            confirmed = confirm_record(reviewed, pat.secrets, storage_address=cid).to_bytes()
            slip_hex = retry(tally, "write", lambda: api.submit_confirmed(confirmed))
        except Exception as exc:  # noqa: BLE001 - nothing acknowledged: not lost, but say why it stopped
            tally.gave_up_on(f"write #{n} by {doctor} never acknowledged: {type(exc).__name__}: {exc}")
            continue
        rec = Record(bytes.fromhex(slip_hex[2:]), chain, chain_id, doctor, patient, text, world.now())
        world.acked(rec)
        # pace on the pipeline: committed, then indexed and granted by the patient (bounded waits)
        until(lambda: _receipt_quietly(api, slip_hex), 30, stop=world.stop)
        until(rec.handled.is_set, 30, stop=world.stop)


def _receipt_quietly(api: HospitalClient, slip_hex: str):
    try:
        return api.receipt(slip_hex)
    except MBDSError:
        return None


def patient_loop(world: World, patient: str) -> None:
    """Grant each of the patient's newly indexed records to a doctor; now and then revoke a grant."""
    net, tally = world.net, world.tally
    rng = world.rng(f"patient/{patient}")
    d = directory(net, world.proxy_urls)
    client = PatientClient(net.keys(patient), d)
    pid = world.pid(patient)
    done: set[bytes] = set()
    grants = 0
    while not world.stop.is_set():
        with world.lock:
            waiting = [r for r in world.by_patient[patient] if r.slip_id not in done]
            if not waiting:
                world.new_ack.wait(0.5)
                continue
        try:
            items = retry(tally, "index", lambda: d.consortium_items(pid))
        except Exception as exc:  # noqa: BLE001
            tally.gave_up_on(f"{patient}: consortium items unavailable: {exc}")
            continue
        indexed = {bytes.fromhex(i["slip_id"][2:]) for i in items}
        ready = [r for r in waiting if r.slip_id in indexed]
        if not ready:
            world.stop.wait(0.3)  # poll interval of the consortium index
            continue
        for rec in ready:
            done.add(rec.slip_id)
            grantee = rng.choice(DOCTORS)
            if grant(world, client, rec, grantee):
                grants += 1
                world.reads.put(("grant", rec, grantee))
            rec.handled.set()
            with world.lock:
                world.handled.append(rec)
            if grants and rng.random() < 0.2:
                revoke_one(world, client, rng)


def grant(world: World, client: PatientClient, rec: Record, grantee: str) -> bool:
    """Grant one record on chain (the mined transaction is the acknowledgement) and issue the proxies' keys."""
    tally = world.tally
    gid = world.pid(grantee)
    pair = world.pairs[(rec.patient, grantee)]
    with pair.lock:
        try:
            retry(tally, "grant", lambda: client.grant(gid, records=[rec.slip_id], duration=3600, issue=False))
        except Exception as exc:  # noqa: BLE001
            tally.gave_up_on(f"grant of {rec.label} to {grantee} never acknowledged: {type(exc).__name__}: {exc}")
            return False
        rec.grantee = grantee
        pair.live.add(rec.slip_id)
        pair.revoked.discard(rec.slip_id)
        tally.done("grant")
        try:
            retry(tally, "issue-keys", lambda: client.issue_keys(gid, [rec.slip_id]))
        except Exception as exc:  # noqa: BLE001 - the final reads will show it; say why now
            tally.gave_up_on(f"keys for {rec.label} → {grantee} not issued: {type(exc).__name__}: {exc}")
    return True


def revoke_one(world: World, client: PatientClient, rng: random.Random) -> None:
    """Revoke one live record grant of this patient; re-issue the pair's other records for the new epoch."""
    tally = world.tally
    patient = next(p for p in PATIENTS if world.pid(p) == client.id)
    choices = sorted((d, rid) for d in DOCTORS for rid in world.pairs[(patient, d)].live)
    if not choices:
        return
    grantee, rid = rng.choice(choices)
    pair, gid = world.pairs[(patient, grantee)], world.pid(grantee)
    rec = next(r for r in world.by_patient[patient] if r.slip_id == rid)
    with pair.lock:
        try:
            retry(tally, "revoke", lambda: client.revoke(gid, record=rid, reissue=False))
        except Exception as exc:  # noqa: BLE001
            tally.gave_up_on(f"revoke of {rec.label} from {grantee} never acknowledged: {type(exc).__name__}: {exc}")
            return
        pair.live.discard(rid)
        pair.revoked.add(rid)
        tally.done("revoke")
        if pair.live:
            still = sorted(pair.live)
            try:
                retry(tally, "issue-keys", lambda: client.issue_keys(gid, still))
            except Exception as exc:  # noqa: BLE001
                tally.gave_up_on(f"keys of {patient} → {grantee} not re-issued after a revoke: {exc}")
    world.reads.put(("revoke", rec, grantee))


def read(world: World, doctors: dict[str, DoctorClient], rec: Record, reader: str, *, why: str,
         deadline: float | None = None) -> bool:
    """One read through the proxies, checked against the grant model (the pair's lock held throughout);
    True when it was served or refused as the model says."""
    tally = world.tally
    pair = world.pairs[(rec.patient, reader)]
    with pair.lock:
        expected = pair.expected(rec.slip_id)

        def attempt():
            try:
                return doctors[reader].read_record(world.pid(rec.patient), (rec.chain_id, rec.slip_id))
            except ProxyRefused as exc:
                # with the grant in force, a missing or stale key is a proxy that missed a deposit while down
                if expected is None and exc.code in (Refusal.NO_KEY, Refusal.STALE_EPOCH):
                    raise SharingError(f"transient while granted: {exc}") from exc
                if exc.code is not Refusal.UNAVAILABLE:
                    return exc
                raise

        try:
            got = retry(tally, "read", attempt, deadline=deadline)
        except Exception as exc:  # noqa: BLE001
            tally.gave_up_on(f"{why} read of {rec.label} by {reader} failed: {type(exc).__name__}: {exc}")
            return False
    if isinstance(got, ProxyRefused):
        if got.code is expected:
            tally.done(f"read-refused:{got.code.value}")
            return True
        want = "served" if expected is None else f"refused ({expected.value})"
        tally.failure(f"{why} read of {rec.label} by {reader}: {want} expected, got {got}")
    elif expected is None:
        if got.record_id == rec.slip_id and got.text == rec.text:
            tally.done("read-served")
            return True
        tally.failure(f"{why} read of {rec.label} by {reader} decrypted something else: {got.text!r}")
    else:
        tally.failure(f"{why} read of {rec.label} by {reader} was SERVED; refusal {expected.value} expected")
    return False


def reader_loop(world: World, name: str) -> None:
    """Doctors reading: each grant and revoke event, a random probe after each grant and whenever no event
    came for two seconds (reads go on while writes cannot)."""
    rng = world.rng(f"reader/{name}")
    d = directory(world.net, world.proxy_urls)
    doctors = {doc: DoctorClient(world.net.keys(doc), d) for doc in DOCTORS}
    while not world.stop.is_set():
        try:
            kind, rec, grantee = world.reads.get(timeout=2.0)
        except queue.Empty:
            kind = "idle"
        else:
            read(world, doctors, rec, grantee, why=kind)
        with world.lock:
            pool = list(world.handled)
            probe = kind != "revoke" and world.probes < MAX_PROBES and bool(pool)
            world.probes += probe
        if probe:
            read(world, doctors, rng.choice(pool), rng.choice(DOCTORS), why="probe")


# ---------------------------------------------------------------------------------------------
# services: status, faults, restarts, health
# ---------------------------------------------------------------------------------------------


def _get(url: str) -> dict | None:
    try:
        resp = requests.get(url, timeout=2)
        return resp.json() if resp.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None


def replica_statuses(net: Network, chain: str) -> list[dict | None]:
    return [_get(f"{u}/v1/status") for u in net.clusters[chain].api_urls]


def consortium_statuses(net: Network) -> dict[str, dict | None]:
    return {n: _get(f"{u}/v1/status") for n, u in net.consortium_nodes.items()}


def primary_of(net: Network, chain: str) -> tuple[int, int] | None:
    """(index, view) of the replica every live replica agrees is primary, if they agree."""
    st = replica_statuses(net, chain)
    live = [s for s in st if s]
    views = {s["view"] for s in live}
    primaries = [i for i, s in enumerate(st) if s and s["primary"]]
    if len(views) == 1 and len(primaries) == 1:
        return primaries[0], views.pop()
    return None


def restart_nodes(world: World) -> None:
    """Restart every recorded replica and consortium node that is not running (same ports): a fresh
    ``Network.attach()`` over the state folder."""
    net = world.net
    Network(net.spec, world.passphrase, settings=net.settings, scrypt_n=net.scrypt_n).attach()


def gas_price(net: Network) -> int:
    """The consortium chain's ``eth_gasPrice`` (what every sender there prices its transactions from)."""
    return int(net.client(net.spec.consortium.name).w3.eth.gas_price)


def all_up(net: Network) -> list[str]:
    """Names of chains and services not up (empty: all healthy)."""
    return [r["name"] for r in net.devnet.status() if not r["up"]]


def inject(world: World, run: FaultRun) -> None:
    """Kill one service, let traffic run without it, restart it and wait until the network is healthy."""
    net, plan = world.net, run.plan
    consortium_names = {p.id: n for n, p in net.people.items()}
    replica_chain: str | None = None
    target_head = 0
    before_ops = world.tally.total()
    if plan.kind in ("backup", "primary"):
        replica_chain = plan.chain
        found = until(lambda: primary_of(net, plan.chain), HEALTH_TIMEOUT)
        assert found, f"{plan.chain}: no agreed primary before the fault"
        primary, view = found
        backups = [i for i in range(len(net.clusters[plan.chain].api_urls)) if i != primary]
        index = primary if plan.kind == "primary" else backups[plan.pick % len(backups)]
        run.service = f"{plan.chain}-replica-{index}"
        if plan.kind == "primary" and not world.wait_write(plan.chain, 30):
            # the primary dies right after acknowledging: the slip it took must still commit
            run.note = f"no write acknowledged on {plan.chain} within 30s before the kill"
        heads = [s["head"] for s in replica_statuses(net, plan.chain) if s]
        head_at_kill = max(heads)
    elif plan.kind == "storage":
        run.service = f"storage-{plan.pick % net.spec.storage.nodes}"
    elif plan.kind == "proxy":
        run.service = service_name(AUTHORITIES[plan.pick % len(AUTHORITIES)])
    else:
        credit = net.credit()
        seated = credit.rpn_set() if plan.kind == "rpn" else credit.atn_set()
        names = sorted(consortium_names[i] for i in seated)
        run.service = f"consortium-{names[plan.pick % len(names)]}"

    assert net.devnet.stop_service(run.service, kill=True), f"{run.service} was not running"
    run.killed = world.now()
    world.say(f"  +{run.killed:6.1f}s  SIGKILL {run.service} ({plan.kind})")

    # while it is down: the rest of the network must make progress
    if replica_chain is not None:
        dead = int(run.service.rsplit("-", 1)[1])

        def progressed():
            st = replica_statuses(net, replica_chain)
            live = [s for i, s in enumerate(st) if s and i != dead]
            moved = any(s["head"] > head_at_kill for s in live)
            if plan.kind == "primary":  # a view change elected another primary
                return moved and any(s["primary"] and s["view"] > view for s in live)
            return moved

        if not until(progressed, DOWN_TIMEOUT, stop=world.stop) and not world.stop.is_set():
            run.note = f"no progress on {replica_chain} within {DOWN_TIMEOUT:.0f}s while {run.service} was down"
    elif plan.kind == "storage":  # down until a write has felt it (each write needs both nodes) and reads went on
        writes_retried = world.tally.retries["write"]
        until(lambda: world.tally.total() >= before_ops + plan.down_ops
              and world.tally.retries["write"] > writes_retried, 20, stop=world.stop)
    else:
        world.tally.wait_total(before_ops + plan.down_ops, DOWN_TIMEOUT, world.stop)
    run.ops_down = world.tally.total() - before_ops

    # restart on the same ports
    if plan.kind == "storage":
        net.devnet.up_storage()
    elif plan.kind == "proxy":
        restart_proxy(net, run.service.removeprefix("proxy-"))
    else:
        if replica_chain is not None:
            target_head = max(s["head"] for s in replica_statuses(net, replica_chain) if s)
        else:
            others = [s["head"] for n, s in consortium_statuses(net).items()
                      if s and f"consortium-{n}" != run.service]
            target_head = max(others)
        restart_nodes(world)
    run.restarted = world.now()

    # healthy again: every service up; the restarted one caught up and agreeing
    def healthy() -> bool:
        if all_up(net):
            return False
        if replica_chain is not None:
            st = replica_statuses(net, replica_chain)
            return (all(st) and primary_of(net, replica_chain) is not None
                    and st[dead]["head"] >= target_head)  # type: ignore[index]
        if plan.kind in ("rpn", "atn"):
            st = consortium_statuses(net)[run.service.removeprefix("consortium-")]
            return bool(st) and st["head"] >= target_head
        return True

    if until(healthy, HEALTH_TIMEOUT, interval=0.3):
        run.healthy = world.now()
        world.say(f"  +{run.healthy:6.1f}s  {run.service} healthy again (restarted at +{run.restarted:.1f}s, "
                  f"{run.ops_down} operations while down)")
    else:
        detail = (replica_statuses(net, replica_chain) if replica_chain else consortium_statuses(net)
                  if plan.kind in ("rpn", "atn") else all_up(net))
        run.note = (run.note + "; " if run.note else "") + f"not healthy within {HEALTH_TIMEOUT:.0f}s: {detail}"


def fault_loop(world: World, plan: list[FaultPlan]) -> None:
    for p in plan:
        run = FaultRun(p)
        world.faults.append(run)
        world.tally.wait_total(world.tally.total() + p.gap_ops, 30, world.stop)
        if world.stop.is_set():
            run.note = "not injected: traffic stopped"
            return
        try:
            inject(world, run)
        except Exception as exc:  # noqa: BLE001 - recorded, asserted at the end
            run.note = f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------------------------
# checks after the traffic
# ---------------------------------------------------------------------------------------------


def chain_slip_counts(net: Network, chain: str, store: ReplicatedStore) -> tuple[Counter, list[str]]:
    """Every slip id in the chain's anchored blocks (headers from SlipLedger's commit transactions, bodies
    from storage, each checked against its header's CID), with the problems found."""
    ledger = net.ledger(chain)
    w3 = ledger.client.w3
    head, _ = ledger.head()
    logs = ledger.contract.events.BlockCommitted().get_logs(from_block=0, to_block="latest")
    problems: list[str] = []
    heights = sorted(int(log["args"]["height"]) for log in logs)
    if heights != list(range(1, head + 1)):
        problems.append(f"{chain}: anchored heights {heights[:5]}… are not 1..{head} exactly once")
    counts: Counter = Counter()
    for log in logs:
        tx = w3.eth.get_transaction(log["transactionHash"])
        _fn, args = ledger.contract.decode_function_input(tx["input"])
        # commitBlock carries one header, commitBlocks several: the one this log is about
        candidates = args["headers"] if "headers" in args else [args["header"]]
        header = next(h for h in candidates
                      if (h["height"] if isinstance(h, dict) else h[0]) == log["args"]["height"])
        body_cid = bytes(header["bodyCid"] if isinstance(header, dict) else header[6])
        try:
            slips = decode_body(store.cat(cid_text(body_cid)))
        except MBDSError as exc:
            problems.append(f"{chain}: body of anchored block {log['args']['height']} unavailable: {exc}")
            continue
        if body_cid_bytes(slips) != body_cid:
            problems.append(f"{chain}: body of block {log['args']['height']} does not match its header")
        counts.update(s.slip_id for s in slips)
    return counts, problems


@dataclass
class Findings:
    """What the checks after the traffic found: acknowledged operations lost (by operation), other problems."""

    lost: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def record(self, rec: Record, why: str) -> None:
        self.lost.setdefault(f"record {rec.label}", []).append(why)

    def grant(self, what: str, why: str) -> None:
        self.lost.setdefault(f"grant {what}", []).append(why)


def final_checks(world: World) -> Findings:
    """Everything acknowledged survived (each check waits a bounded time for what is still on its way)."""
    net, tally = world.net, world.tally
    found = Findings()
    store = world.store()
    d = directory(net, world.proxy_urls)

    # 1. committed: receipt from the replicas, proven against SlipLedger, anchored
    receipts: dict[bytes, Any] = {}

    def all_committed() -> bool:
        for rec in world.records:
            if rec.slip_id not in receipts:
                r = _receipt_anywhere(net, rec)
                if r is not None:
                    receipts[rec.slip_id] = r
        tops: dict[str, int] = {}
        for r in receipts.values():
            tops[r.chain] = max(tops.get(r.chain, 0), r.height)
        return len(receipts) == len(world.records) and all(net.ledger(c).head()[0] >= h for c, h in tops.items())

    until(all_committed, 30, interval=0.5)
    for rec in world.records:
        receipt = receipts.get(rec.slip_id)
        if receipt is None:
            found.record(rec, f"acknowledged at +{rec.acked_at:.1f}s, never committed")
            continue
        ledger = net.ledger(rec.chain)
        if ledger.head()[0] < receipt.height:
            found.record(rec, f"block {receipt.height} never anchored")
            continue
        try:
            verify_receipt(receipt, ledger)
        except MBDSError as exc:
            found.record(rec, f"receipt does not verify against SlipLedger: {exc}")

    # 2. exactly once across each chain's anchored blocks
    for chain in sorted(c.name for c in net.spec.private_chains):
        counts, problems = chain_slip_counts(net, chain, store)
        found.problems.extend(problems)
        twice = [sid for sid, k in counts.items() if k > 1]
        if twice:
            found.problems.append(f"{chain}: {len(twice)} slip(s) committed more than once, e.g. 0x{twice[0].hex()}")
        for rec in world.records:
            if rec.chain == chain and rec.slip_id in receipts and counts[rec.slip_id] != 1:
                found.record(rec, f"in {counts[rec.slip_id]} anchored blocks of {chain}")

    # 3. indexed exactly once on every consortium node
    indexed: dict[tuple[str, str], Counter] = {}

    def all_indexed() -> bool:
        for name, url in net.consortium_nodes.items():
            for patient in PATIENTS:
                got = _get(f"{url}/v1/items?patient=0x{world.pid(patient).hex()}")
                if got is not None:
                    indexed[(name, patient)] = Counter(bytes.fromhex(i["slip_id"][2:]) for i in got["items"])
        return all(r.slip_id in indexed.get((n, r.patient), ()) for n in net.consortium_nodes for r in world.records)

    until(all_indexed, 30, interval=0.5)
    for name in net.consortium_nodes:
        for patient in PATIENTS:
            c = indexed.get((name, patient), Counter())
            for r in world.by_patient[patient]:
                if r.slip_id not in c:
                    found.record(r, f"not indexed on consortium-{name}")
            twice = [sid for sid, k in c.items() if k > 1]
            if twice:
                found.problems.append(f"consortium-{name}: {len(twice)} item(s) of {patient} indexed more than "
                                      f"once, e.g. 0x{twice[0].hex()}")

    # 4. every record has a grantee (records acknowledged late are granted now); every grant is in force
    patients = {p: PatientClient(net.keys(p), d) for p in PATIENTS}
    rng = world.rng("final")
    present = [r for r in world.records if f"record {r.label}" not in found.lost]  # lost ones are not read
    for rec in present:
        if rec.grantee is None and not rec.handled.is_set():
            rec.handled.set()
            if not grant(world, patients[rec.patient], rec, rng.choice(DOCTORS)):
                found.record(rec, "could not be granted after the chaos")
    for (patient, doctor), pair in world.pairs.items():
        live = sorted(pair.live)
        if not live:
            continue
        decisions = d.policy.check_access_many(world.pid(patient), world.pid(doctor),
                                               [(rid, bytes(32)) for rid in live], Action.READ)
        for rid, dec in zip(live, decisions):
            if not dec.allowed:
                found.grant(f"0x{rid.hex()[:10]}… {patient} → {doctor}",
                            f"acknowledged, not in force ({dec.reason})")

    # 5. readable by its grantee through the proxies (a revoked grantee is refused: revoked)
    before = len(tally.wrong), len(tally.gave_up)
    deadline = time.monotonic() + 90

    def read_all(doctor: str) -> None:
        doctors = {doc: DoctorClient(net.keys(doc), directory(net, world.proxy_urls)) for doc in DOCTORS}
        for rec in [r for r in present if r.grantee == doctor]:
            if time.monotonic() > deadline:
                found.record(rec, f"final read by {doctor} not done: out of time")
            elif not read(world, doctors, rec, doctor, why="final", deadline=deadline):
                found.record(rec, f"not readable by its grantee {doctor} (see below)")

    with ThreadPoolExecutor(len(DOCTORS)) as pool:
        list(pool.map(read_all, DOCTORS))
    found.problems.extend(tally.wrong[before[0]:] + tally.gave_up[before[1]:])
    del tally.wrong[before[0]:], tally.gave_up[before[1]:]
    return found


def _receipt_anywhere(net: Network, rec: Record):
    """The receipt from any replica of the chain (a replica that is behind answers 404)."""
    for url in net.clusters[rec.chain].api_urls:
        try:
            r = HospitalClient([url], timeout=5).receipt("0x" + rec.slip_id.hex())
        except MBDSError:
            continue
        if r is not None:
            return r
    return None


# ---------------------------------------------------------------------------------------------
# the test
# ---------------------------------------------------------------------------------------------


def _at(t: float | None) -> str:
    return "-" if t is None else f"+{t:.1f}s"


def test_chaos_under_load(tmp_path_factory, capsys):
    seed = int(os.environ.get(SEED_ENV) or PINNED_SEED)
    printing = threading.Lock()

    def say(line: str) -> None:
        with printing, capsys.disabled():
            print(line, flush=True)

    say(f"\nchaos seed {seed} (reproduce the fault plan with {SEED_ENV}={seed})")
    rng = random.Random(seed)
    work = tmp_path_factory.mktemp("chaos")
    passphrase = secrets.token_urlsafe(16)
    net = Network(load_spec(None, state_dir=work / "devnet"), passphrase,
                  settings=PrivateChainSettings(max_slips=32, max_wait=0.5), scrypt_n=2**10)
    t_start = time.monotonic()
    try:
        net.bring_up()
        urls = start_proxies(net, rate_limit=RATE_LIMIT)
        for name in (*DOCTORS, *PATIENTS):
            net.keys(name)  # unlocked once, before the threads share them
        plan = fault_plan(rng, sorted(c.name for c in net.spec.private_chains))
        say(f"network up in {time.monotonic() - t_start:.0f}s; fault plan: "
            + ", ".join(f"{p.kind}" + (f"@{p.chain}" if p.kind in ('backup', 'primary') else "") for p in plan))

        world = World(net, passphrase, urls, seed, say)
        price_before = gas_price(net)
        threads = [threading.Thread(target=writer, args=(world, doc), name=f"writer-{doc}") for doc in DOCTORS]
        threads += [threading.Thread(target=patient_loop, args=(world, p), name=f"patient-{p}") for p in PATIENTS]
        threads += [threading.Thread(target=reader_loop, args=(world, f"r{i}"), name=f"reader-{i}") for i in range(2)]
        faults = threading.Thread(target=fault_loop, args=(world, plan), name="faults")
        for t in threads:
            t.start()
        faults.start()
        faults.join(HARD_STOP)
        world.stop.wait(max(0.0, TRAFFIC_SECONDS - world.now()))  # the traffic's minimum duration
        world.stop.set()
        traffic_seconds = world.now()
        joined_by = time.monotonic() + 60
        for t in [*threads, faults]:
            t.join(max(0.0, joined_by - time.monotonic()))
        stuck = [t.name for t in threads + [faults] if t.is_alive()]
        healthy = until(lambda: not all_up(net), HEALTH_TIMEOUT)
        found = final_checks(world)
        lost = found.lost
        down = all_up(net)
        price_after = gas_price(net)
        ops = world.tally.ops
        lines = [
            f"chaos summary (seed {seed}; pin with {SEED_ENV}={seed})",
            f"  traffic {traffic_seconds:.0f}s, whole test {time.monotonic() - t_start:.0f}s; consortium gas price "
            f"{price_before:,} wei before the traffic, {price_after:,} wei after",
            "  operations: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())),
            "  retries after transient failures: "
            + (", ".join(f"{k} {v}" for k, v in sorted(world.tally.retry_reasons.items())) or "none"),
            "  faults injected:",
            *(f"    {r.plan.kind:8} {r.service or '-':24} killed {_at(r.killed)}, restarted {_at(r.restarted)}, "
              f"healthy {_at(r.healthy)}, {r.ops_down} ops while down" + (f" — {r.note}" if r.note else "")
              for r in world.faults),
            f"  acknowledged: {len(world.records)} records, {ops['grant']} grants, {ops['revoke']} revokes; "
            f"acknowledged-but-lost: {len(lost)}",
            *(f"    LOST {k}: {'; '.join(v[:3])}" for k, v in list(lost.items())[:20]),
            f"  other problems found afterwards: {len(found.problems)}",
            *(f"    {x}" for x in found.problems[:20]),
            f"  wrong answers: {len(world.tally.wrong)}",
            *(f"    {x}" for x in world.tally.wrong[:20]),
            f"  operations given up after their retries: {len(world.tally.gave_up)}",
            *(f"    {x}" for x in world.tally.gave_up[:20]),
        ]
        say("\n".join(lines))
        assert not stuck, f"threads did not finish: {stuck}"
        assert len(world.faults) == len(FAULT_KINDS) and all(r.healthy and not r.note for r in world.faults), \
            [(r.plan.kind, r.service, r.note) for r in world.faults]
        assert traffic_seconds >= TRAFFIC_SECONDS
        assert ops["write"] > 0 and ops["grant"] > 0 and ops["read-served"] > 0
        assert not lost, lost
        assert not found.problems, found.problems
        assert not world.tally.wrong, world.tally.wrong
        assert not world.tally.gave_up, world.tally.gave_up
        assert healthy is not None and not down, f"not healthy after the chaos: {down}"
    finally:
        net.stop()
