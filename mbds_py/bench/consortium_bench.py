"""Consortium benchmarks: gas per summary item in ConsortiumIndex, and items/s end to end.

``gas_per_item``: one ConsortiumIndex block of 128 consortium slips × 10 summary
items, attested by 3 ATNs (K = 5 RPN, M = 4 ATN, quorum 3, 14 institutions),
committed on the run's Anvil; the receipt's ``gasUsed`` divided by 1280.  The
samples are blocks whose 1280 items belong to 1280 distinct patients (one
``PatientIndexed`` log each, the worst case); ``extra`` also gives the same block
for 128 patients × 10 items.  Every block is committed inside a snapshot that is
reverted afterwards, so each is height 1 in slot 0 — as in the consortium tests.
Gas includes the 21,000 intrinsic gas.

``consortium_items_per_s``: the real devnet (``mbds_py.network.Network``, as in
``mbds demo``; the run's shared one, :meth:`BenchContext.network`, also used by the
sharing measurement): N confirmed records of one patient are built beforehand
(envelope, PEKS, storage, patient's confirmation), then submitted concurrently to the
hospital's PBFT replicas; the clock runs from the first submission until a
consortium node's ``GET /v1/items?patient=…`` lists all N items (PBFT commit →
anchoring → bridge → RPN block → ATN audit → ConsortiumIndex).  With the devnet's
4 s slots and N = 20, a run is about one slot long: the quick figure is mostly
end-to-end latency (N / time-to-finality), not a saturated throughput.  One record
is carried to consortium finality first as a warm-up; the quick run skips it when
the patient already has items on the consortium (the sharing measurement's record
went the same path on this network).
"""

from __future__ import annotations

import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from ..chain.governance import Council, GovernanceParams
from .context import NETWORK, BenchContext
from .registry import Samples, measurement

# -- gas per item ---------------------------------------------------------------------------------------------

SLIPS = 128
ITEMS_PER_SLIP = 10
ITEMS = SLIPS * ITEMS_PER_SLIP
RPN, ATN, QUORUM, RESERVE, INSTITUTIONS = 5, 4, 3, 3, 14
SLOT_SECONDS = 3600  # one long slot: every block is committed in slot 0
COMMIT_GAS = 29_000_000  # explicit: Anvil estimates against the last block's timestamp
ZERO32 = bytes(32)
BLS12_381_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001


def _account(label: str) -> LocalAccount:
    return Account.from_key(keccak(text=f"mbds-bench/consortium/{label}"))


def _pre_key(label: str) -> bytes:
    import umbral_pre

    factory = umbral_pre.SecretKeyFactory.from_secure_randomness(keccak(text=label))
    return factory.make_key(b"mbds/identity").public_key().to_compressed_bytes()


def _peks_key(label: str) -> bytes:
    from ..crypto.peks import PeksSecretKey

    scalar = int.from_bytes(keccak(text=label + "/peks"), "big") % BLS12_381_ORDER or 1
    return PeksSecretKey.from_bytes(scalar.to_bytes(32, "big")).public_key().to_bytes()


@dataclass(frozen=True)
class _Inst:
    id: bytes
    account: LocalAccount


class GasBench:
    """IdentityRegistry, CreditRegistry (elected roster) and ConsortiumIndex on the run's Anvil."""

    def __init__(self, client: Any):
        from ..chain.identity import IdentityRegistryAgent
        from ..consortium import Dimensions, Incentives
        from ..consortium.agents import ConsortiumIndexAgent, CreditRegistryAgent
        from ..devnet import DEV_DEPLOYER_KEY
        from ..identity import Participant, Role
        from ..toolchain import artifact

        self.client = client
        deployer = Account.from_key(DEV_DEPLOYER_KEY)
        kmc, governor, governor2 = _account("kmc"), _account("governor"), _account("governor-2")
        insts = [_Inst(keccak(text=f"mbds-bench/institution/{n}"), _account(f"inst-{n}")) for n in range(INSTITUTIONS)]
        for a in [kmc, governor, governor2] + [i.account for i in insts]:
            client.w3.provider.make_request("anvil_setBalance", [a.address, hex(10**20)])
        art = artifact("IdentityRegistry")
        identity_address, _ = client.deploy("IdentityRegistry", art.abi, art.bytecode, deployer, kmc.address,
                                            *GovernanceParams().as_args())
        identity = IdentityRegistryAgent(client, identity_address)
        identity.register(kmc, Participant(id=keccak(text="mbds-bench/authority"), name="authority",
                                           role=Role.AUTHORITY_NATIONAL, address=governor.address,
                                           pre_key=_pre_key("bench/authority"), peks_key=_peks_key("bench/authority")))
        identity.register(kmc, Participant(id=keccak(text="mbds-bench/authority-2"), name="authority-2",
                                           role=Role.AUTHORITY_PROVINCIAL, address=governor2.address,
                                           pre_key=_pre_key("bench/authority-2"),
                                           peks_key=_peks_key("bench/authority-2")))
        council = Council(governor, governor2)  # the governor's quorum: elections and appointments are k-of-n
        # the consortium tests' small population and incentives, so the figures are comparable
        incentives = Incentives(block_reward=2, attestation_reward=1, data_served_reward=1,
                                invalid_block_penalty=1000, wrong_attestation_penalty=500,
                                missed_slot_penalty=100, removal_threshold=5000)
        self.credit = CreditRegistryAgent.deploy(client, deployer, identity_address, rpn_count=RPN, atn_count=ATN,
                                                 reserve_capacity=RESERVE, incentives=incentives)
        roles = (Role.HOSPITAL, Role.INTERNET_PLATFORM, Role.INSURER, Role.RESEARCH_INSTITUTE,
                 Role.PHARMA_COMPANY, Role.AUTHORITY_MUNICIPAL)
        for n, inst in enumerate(insts):
            label = f"bench/inst-{n}"
            identity.register(kmc, Participant(id=inst.id, name=label, role=roles[n % len(roles)],
                                               address=inst.account.address, pre_key=_pre_key(label),
                                               peks_key=_peks_key(label)))
        self.credit.register_institutions(council, [(inst.id, Dimensions(9000 - 250 * n, 8000 - 200 * n,
                                                                         7000 - 100 * n))
                                                    for n, inst in enumerate(insts)])
        for inst in insts:
            self.credit.set_willing(inst.account, True)
        self.credit.elect(council)
        genesis = client.w3.eth.get_block("latest")["timestamp"]
        self.index = ConsortiumIndexAgent.deploy(client, deployer, self.credit.address, genesis_time=genesis,
                                                 slot_seconds=SLOT_SECONDS, quorum=QUORUM)
        self.credit.set_reporter(council, self.index.address, True)
        self.credit.set_clock(council, self.index.address)
        self.insts = {i.id: i for i in insts}
        self.origins = insts[9:12]  # bridge institutions in reserve ranks sign the slips

    def commit(self, *, patients: int | None, seed: int) -> tuple[int, int]:
        """Build, attest and commit one 128 × 10 block in slot 0 inside a reverted snapshot; (gas, patients)."""
        from ..consortium import AccountSigner, ConsortiumSlip, SummaryItem, attest, build_block, ordered_signatures
        from ..consortium.cid import default_cid_of

        client, index = self.client, self.index
        domain = index.domain()
        rng = random.Random(seed)
        snap = client.snapshot()
        try:
            now = client.w3.eth.get_block("latest")["timestamp"]
            slips, n = [], 0
            for s in range(SLIPS):
                origin = self.origins[s % len(self.origins)]
                items = []
                for _ in range(ITEMS_PER_SLIP):
                    pid = keccak(text=f"mbds-bench/patient/{seed}/{n if patients is None else n % patients}")
                    items.append(SummaryItem(patient_id=pid, keywords=tuple(rng.randbytes(80) for _ in range(3)),
                                             hmi_hash=rng.randbytes(32), chain_id=43101 + s % 3,
                                             block_height=1 + s // 10, slip_id=rng.randbytes(32)))
                    n += 1
                slips.append(ConsortiumSlip.create(origin.id, now, items, domain, AccountSigner(origin.account)))
            producer_id = index.producer_of(0)[0]
            block = build_block(slips, prev=None, slot=0, producer=producer_id, timestamp=now,
                                cid_of=default_cid_of)
            if block.header.item_count != ITEMS:
                raise RuntimeError(f"block has {block.header.item_count} items, expected {ITEMS}")
            atns = [self.insts[i] for i in self.credit.atn_set()][:QUORUM]
            sigs = ordered_signatures(attest(block.header, domain, AccountSigner(a.account)) for a in atns)
            receipt = index.commit(self.insts[producer_id].account, block, sigs, gas=COMMIT_GAS)
            if receipt["status"] != 1 or len(index.events(receipt, "BlockCommitted")) != 1:
                raise RuntimeError("the ConsortiumIndex block was not committed")
            return int(receipt["gasUsed"]), len(block.patient_ids)
        finally:
            client.revert(snap)


@measurement("gas_per_item", estimate_s=(5, 8))
def measure_gas_per_item(ctx: BenchContext) -> Samples:
    ctx.progress(f"ConsortiumIndex: {INSTITUTIONS} institutions, K={RPN} RPN, M={ATN} ATN, quorum {QUORUM}")
    bench = ctx.resource("consortium-gas-bench", lambda: GasBench(ctx.chain()))
    reps = 1 if ctx.quick else 3
    ctx.progress(f"{reps} block(s) of {SLIPS} slips x {ITEMS_PER_SLIP} items, 1280 distinct patients, "
                 "and one with 128 patients")
    distinct = [bench.commit(patients=None, seed=7 + r) for r in range(reps)]
    shared_gas, shared_patients = bench.commit(patients=128, seed=7)
    gas = sorted(g for g, _ in distinct)
    return Samples([g / ITEMS for g, _ in distinct], extra={
        "slips": SLIPS, "items_per_slip": ITEMS_PER_SLIP, "attestations": QUORUM,
        "variants": {
            "1280_distinct_patients": {"patients": distinct[0][1], "gas_per_block": gas[len(gas) // 2],
                                       "gas_per_item": round(gas[len(gas) // 2] / ITEMS, 1)},
            "128_patients": {"patients": shared_patients, "gas_per_block": shared_gas,
                             "gas_per_item": round(shared_gas / ITEMS, 1)},
        },
    })


# -- items per second, end to end ------------------------------------------------------------------------------

DOCTOR, PATIENT = "dr-zhao", "alice"


def _build_confirmed(net: Any, n: int, tag: str, doctor: str = DOCTOR) -> list[bytes]:
    """``n`` records of PATIENT by ``doctor``, reviewed, stored and confirmed (untimed)."""
    from ..crypto import build_envelope, confirm_record, review_envelope
    from ..storage.client import KuboClient
    from ..storage.replicated import ReplicatedStore

    chain = net.chain_of(doctor)
    domain = net.clusters[chain].config.record_domain
    doc, pat = net.keys(doctor), net.keys(PATIENT)
    store = ReplicatedStore([KuboClient(u) for u in net.devnet.storage_urls()], replicas=net.spec.storage.replicas)
    now = int(time.time())

    def one(i: int) -> bytes:
        text = f"Bench consultation {doctor} {tag}{i}"
        document = {"resourceType": "Condition", "subject": {"display": PATIENT}, "note": [{"text": text}],
                    "code": {"coding": [{"system": "icd10", "code": "J06.9"}]}}
        env = build_envelope(document, ["icd10|J06.9"], pat.secrets.public_keys, doc.secrets.signer,
                             timestamp=now + i, record_type="consultation", text=text, domain=domain)
        reviewed = review_envelope(env, pat.secrets, domain=domain, expected_doctor=doc.account.address)
        cid = store.add(reviewed.record_blob)
        return confirm_record(reviewed, pat.secrets, storage_address=cid).to_bytes()

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(n)))


def _item_count(url: str, pid: str) -> int:
    import requests

    resp = requests.get(f"{url}/v1/items?patient={pid}", timeout=10)
    return len(resp.json().get("items", [])) if resp.status_code == 200 else 0


class _NewItems:
    """Counts a patient's consortium items final after it was made, reading only blocks it has not seen
    (``GET /v1/items?after=H``): polling the whole list, proofs included, every 100 ms would load the very
    consortium node being measured more as the list grows."""

    def __init__(self, url: str, pid: str) -> None:
        import requests

        self.url, self.pid, self.session = url, pid, requests.Session()
        self.after = int(self.session.get(f"{url}/v1/status", timeout=10).json()["head"])
        self.count = 0

    def poll(self) -> int:
        resp = self.session.get(f"{self.url}/v1/items", params={"patient": self.pid, "after": self.after},
                                timeout=10)
        if resp.status_code == 200:
            items = resp.json().get("items", [])
            self.count += len(items)
            self.after = max([self.after, *(int(item["height"]) for item in items)])
        return self.count


def _run_once(net: Any, records: list[bytes], timeout: float) -> float:
    """Submit ``records`` concurrently; seconds from the first submission until all are consortium items."""
    from ..private.cluster import wait_until

    api = net.hospital_api(net.chain_of(DOCTOR))
    url = next(iter(net.consortium_nodes.values()))
    pid = net.people[PATIENT].id_hex
    new_items = _NewItems(url, pid)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(api.submit_confirmed, records))
    wait_until(lambda: new_items.poll() >= len(records) or None, timeout,
               f"{len(records)} consortium items of {PATIENT}", interval=0.1)
    return time.perf_counter() - t0


@measurement("consortium_items_per_s", estimate_s=(8, 45), uses=(NETWORK,))
def measure_consortium_items(ctx: BenchContext) -> Samples:
    n = 20 if ctx.quick else 100
    reps = 1 if ctx.quick else 3
    net = ctx.network()
    settings = net.settings
    pid = net.people[PATIENT].id_hex
    if ctx.quick and _item_count(next(iter(net.consortium_nodes.values())), pid) > 0:
        ctx.progress(f"{PATIENT} already has consortium items on this devnet: the path is warm, no warm-up")
    else:
        ctx.progress("warm-up: 1 record to consortium finality")
        _run_once(net, _build_confirmed(net, 1, "warm-"), timeout=180)
    rates, seconds = [], []
    for r in range(reps):
        records = _build_confirmed(net, n, f"run{r}-")
        ctx.progress(f"run {r + 1}/{reps}: {n} confirmed records of {PATIENT} submitted concurrently")
        s = _run_once(net, records, timeout=300)
        seconds.append(round(s, 2))
        rates.append(n / s)
    return Samples(rates, extra={"items_per_run": n, "seconds_per_run": seconds,
                                 "median_seconds": statistics.median(seconds),
                                 "pbft_max_slips": settings.max_slips, "pbft_max_wait_s": settings.max_wait,
                                 "consortium_slot_s": net.dpos.slot_seconds,
                                 "note": "first submission to GET /v1/items listing all N on a consortium node"})


# -- items per second, saturated: all three private chains streaming -------------------------------------------

DOCTORS = ("dr-li", "dr-wang", "dr-zhao")  # one per private chain of the default spec


def _delivered(api: Any) -> int:
    return int(api.status().get("delivered_slips", 0))


def _submit_all(api: Any, records: list[bytes]) -> None:
    """Stream a chain's records as a hospital does under load: batches on keep-alive connections."""
    refused = [ack.error for ack in api.submit_confirmed_many(records) if ack.error is not None]
    if refused:
        raise RuntimeError(f"{len(refused)} of {len(records)} records refused, e.g. {refused[0]}")


@measurement("consortium_items_per_s_saturated", estimate_s=(20, 120), uses=(NETWORK,))
def measure_consortium_items_saturated(ctx: BenchContext) -> Samples:
    """Every private chain streams N records at once; the consortium's rate from the first private commit until
    the last item is final on the consortium (``GET /v1/items`` on a consortium node lists it).

    The private chains' own rate over the same run is reported beside it (``extra``), so whether the
    consortium or the private chains set the pace shows in the figures.
    """
    from ..private.cluster import wait_until

    n = 30 if ctx.quick else 400
    reps = 1 if ctx.quick else 2
    net = ctx.network()
    url = next(iter(net.consortium_nodes.values()))
    pid = net.people[PATIENT].id_hex
    apis = {d: net.hospital_api(net.chain_of(d)) for d in DOCTORS}
    rates: list[float] = []
    runs: list[dict[str, float]] = []
    for r in range(reps):
        ctx.progress(f"run {r + 1}/{reps}: building {n} confirmed records on each of {len(DOCTORS)} private chains")
        records = {d: _build_confirmed(net, n, f"sat{r}-", doctor=d) for d in DOCTORS}
        total = n * len(DOCTORS)
        new_items = _NewItems(url, pid)
        before = {d: _delivered(apis[d]) for d in DOCTORS}
        first_commit: list[float] = []
        private_done: dict[str, float] = {}
        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(DOCTORS)) as pool:
            futures = [pool.submit(_submit_all, apis[d], records[d]) for d in DOCTORS]

            def progress() -> bool:
                now = time.perf_counter()
                for d in DOCTORS:
                    if d not in private_done:
                        done = _delivered(apis[d]) - before[d]
                        if done > 0 and not first_commit:
                            first_commit.append(now)
                        if done >= n:
                            private_done[d] = now
                return new_items.poll() >= total

            wait_until(lambda: progress() or None, 600, f"{total} consortium items", interval=0.1)
            for fut in futures:
                fut.result()
        t_final = time.perf_counter()
        start = first_commit[0] if first_commit else t0
        rates.append(total / (t_final - start))
        last_private = max(private_done.values(), default=t_final)
        runs.append({"items": total, "seconds_first_commit_to_final": round(t_final - start, 2),
                     "private_slips_per_s": round(total / (last_private - t0), 1),
                     "consortium_lag_after_private_s": round(t_final - last_private, 2)})
        ctx.progress(f"run {r + 1}: {rates[-1]:.1f} items/s; private chains {runs[-1]['private_slips_per_s']} slips/s; "
                     f"consortium finished {runs[-1]['consortium_lag_after_private_s']} s after the last private commit")
    return Samples(rates, extra={"records_per_chain": n, "chains": len(DOCTORS), "runs": runs,
                                 "consortium_slot_s": net.dpos.slot_seconds,
                                 "capacity_items_per_s": round(128 * 10 / net.dpos.slot_seconds, 1),
                                 "note": "first private commit to the last item final on the consortium; "
                                         "capacity = 128 slips x 10 items per block, one block per slot"})
