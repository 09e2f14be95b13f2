"""PBFT throughput, block commit latency and end-to-end ingest on four replica processes.

Four real replica processes on loopback (``mbds_py.private.testbed``), blocks
of up to 128 slips.  Slips are real patient-confirmed records (doctor's and
patient's EIP-712 signatures, Umbral, 3 PEKS keywords), generated beforehand on
both cores so the timed part is what the chain does: HTTP ingestion, validity
checks on every replica (both signatures, identities), PBFT, durable logs,
receipts and anchoring in SlipLedger.  The driver streams them in batches of 64 per
request (``POST /v1/slips/batch``) on keep-alive connections, each batch to every replica.

* ``pbft_slips_per_s`` — slips from the first submission to the last commit;
* ``pbft_commit_p99_ms`` — per block, from the primary's proposal (header
  timestamp) to its delivery at each replica, pooled over every block of the runs
  (the full run's 3 × 2,048 slips give ≥ 40 blocks);
* ``ingest_records_per_s`` — records per second including generating them
  (envelope, 3 PEKS, store, sign, confirm) with the PBFT and anchoring time:
  the two phases are timed one after the other, so the figure is conservative;
* ``replica_cpu_us_per_slip`` — CPU time (utime + stime from ``/proc/<pid>/stat``)
  of each replica process from the first submission to the last commit, per
  committed slip (the mean over the four replicas; each one in the JSON);
* ``replica_floor_us_per_slip`` — what a replica cannot avoid per slip, timed on
  this machine in this process: two secp256k1 recoveries (coincurve), the EIP-712
  hashes of both signed structs and one keccak of the slip;
* ``driver_cpu_us_per_slip`` — the bench driver's own CPU per committed slip, to
  show the client is not the limit.

The plot series ``pbft_slips_per_s`` sweeps the block size: the full run starts a
fresh testbed per size (384 slips each); the quick run measures two sizes (64
slips each) on the measurement's testbed, kept for it as the shared resource
``pbft-testbed``: 128 on its replica group, the smallest on a fresh SlipLedger and
replica group on the same Anvil.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import requests

from ..chain.client import ChainClient
from .context import BenchContext, kill_devnet
from .registry import Samples, curve, measurement

CHAIN_ID = 43170
BLOCK_SLIPS = 128
TESTBED = "pbft-testbed"
"""Resource name of the measurement's replica group (blocks of up to 128 slips)."""
NODE_PARAMS = dict(max_wait=0.05, max_inflight=2, request_timeout=10.0, view_change_timeout=10.0, checkpoint_interval=16,
                   anchor_grace=5.0, identity_ttl=30.0)


def _make(args: tuple) -> bytes:
    from ..crypto.signing import Eip712Domain
    from ..private.testbed import make_record

    chain_id, ledger, start, count, tag = args
    domain = Eip712Domain(chain_id, ledger)
    return [make_record(domain, n, tag=tag)[1].to_bytes() for n in range(start, start + count)]


def generate(chain_id: int, ledger: str, count: int, tag: str, workers: int = 2) -> tuple[list[bytes], float]:
    t0 = time.perf_counter()
    chunk = max(1, count // (workers * 4))
    jobs = [(chain_id, ledger, s, min(chunk, count - s), tag) for s in range(0, count, chunk)]
    with ProcessPoolExecutor(workers) as pool:
        out = [r for batch in pool.map(_make, jobs) for r in batch]
    return out, time.perf_counter() - t0


BATCH = 64
"""Confirmed records per ``POST /v1/slips/batch`` request."""


def stream(urls: list[str], records: list[bytes], threads: int = 4, batch: int = BATCH, to_all: bool = True) -> None:
    """Submit ``records`` in batches of ``batch`` from ``threads`` keep-alive connections, each batch to every
    replica (as :class:`~mbds_py.private.client.HospitalClient` does; ``to_all=False``: to one, round robin);
    a 429 is retried after the pause the replica names.

    To all is the measured choice: every replica then checks the slips as they arrive, not when the
    PRE-PREPARE carries them (the critical path of the block) — p99 144 ms against 512 ms for one replica
    per batch, at a similar rate (+20 % replica CPU for the extra HTTP work)."""
    from ..private.batch import encode_batch

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=threads * 2)
    session.mount("http://", adapter)
    bodies = [encode_batch(records[i:i + batch]) for i in range(0, len(records), batch)]

    targets = [(i, u) for i in range(len(bodies)) for u in (urls if to_all else [urls[i % len(urls)]])]

    def post(job: tuple[int, str]) -> None:
        i, url = job
        while True:
            resp = session.post(f"{url}/v1/slips/batch", data=bodies[i], timeout=30)
            if resp.status_code == 429:
                time.sleep(float(resp.json().get("retry_after", 0.2)))
                continue
            if resp.status_code != 200:
                raise RuntimeError(f"batch {i} refused: {resp.text[:200]}")
            refused = [r for r in resp.json()["results"] if "error" in r]
            if refused:
                raise RuntimeError(f"{len(refused)} slips of batch {i} refused: {refused[0]['error'][:200]}")
            return

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(post, targets))


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """utime + stime of process ``pid`` in seconds (fields 14 and 15 of ``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def driver_cpu_s() -> float:
    """This process's CPU time, every thread (not the record generators: they are child processes)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def replica_pids(bed) -> list[int]:
    services = bed.devnet.load_services()
    return [services[name].pid for name in bed.cluster.service_names]


@dataclass(frozen=True)
class RunResult:
    """One streamed run: throughput, latencies and who spent how much CPU on it."""

    slips: int
    rate: float
    latencies: list[float]
    replica_cpu_s: list[float]
    driver_cpu_s: float
    blocks: int  # distinct blocks committed in the run (each gives one latency per replica)

    @property
    def replica_us_per_slip(self) -> list[float]:
        return [c * 1e6 / self.slips for c in self.replica_cpu_s]

    @property
    def driver_us_per_slip(self) -> float:
        return self.driver_cpu_s * 1e6 / self.slips


def run_once(bed, records: list[bytes], timeout: float = 300) -> RunResult:
    """Submit ``records`` to the replicas; measure until every replica delivered them."""
    urls = bed.cluster.api_urls
    pids = replica_pids(bed)
    before = [requests.get(f"{u}/v1/status", timeout=10).json() for u in urls]
    base = min(s["delivered_slips"] for s in before)
    cpu0 = [process_cpu_s(p) for p in pids]
    drv0 = driver_cpu_s()
    t0 = time.perf_counter()
    stream(urls, records)
    deadline = time.monotonic() + timeout
    while True:
        status = [requests.get(f"{u}/v1/status", timeout=10).json() for u in urls]
        if min(s["delivered_slips"] for s in status) - base >= len(records):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {min(s['delivered_slips'] for s in status) - base} of {len(records)} committed")
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    cpu = [process_cpu_s(p) - c for p, c in zip(pids, cpu0)]
    drv = driver_cpu_s() - drv0
    heights = {h for s in before for h, _n, _l in s["commit_latency_ms"]}
    fresh = [(h, lat) for s in status for h, _n, lat in s["commit_latency_ms"] if h not in heights]
    return RunResult(len(records), len(records) / elapsed, [lat for _h, lat in fresh], cpu, drv,
                     len({h for h, _lat in fresh}))


def replica_floor_us(records: list[bytes], domain, passes: int = 5) -> list[float]:
    """Thread CPU-µs per slip of exactly the checks a replica must do (see the module docstring),
    one sample per pass over ``records``; parsing is done beforehand and not timed."""
    from ..crypto.confirmation import CONFIRMATION_STRUCT, ConfirmedRecord
    from ..crypto.envelope import RECORD_STRUCT
    import coincurve

    from ..pbft.crypto import keccak256 as keccak

    def recover_address(digest: bytes, sig: bytes) -> bytes:  # the recovery and the address, nothing else
        pub = coincurve.PublicKey.from_signature_and_message(sig[:64] + bytes((sig[64] - 27,)), digest, hasher=None)
        return keccak(pub.format(compressed=False)[1:])[-20:]

    prepared = []
    for raw in records:
        rec = ConfirmedRecord.from_bytes(raw)
        h = rec.header
        prepared.append((b"\x01" + bytes(96) + raw, h.timestamp, h.record_type, h.text, h.doctor,
                         h.patient.address, h.patient.to_bytes(), h.hmi_hash, h.hmi_ciphertext_hash,
                         b"".join(c.to_bytes() for c in h.keyword_ciphertexts), h.doctor_signature,
                         rec.record_key + rec.kfrag_verifying_key, rec.record_ciphertext_hash,
                         rec.encrypted_address.to_bytes(), rec.patient_signature))
    samples = []
    for _ in range(passes):
        t0 = time.thread_time()
        for (slip, ts, rtype, text, doctor, patient, pkeys, hmi, cm, kws, dsig, rkeys, cth, eaddr,
             psig) in prepared:
            keccak(slip)
            record_id = domain.digest(RECORD_STRUCT.hash_struct({
                "timestamp": ts, "recordType": rtype, "text": text, "doctor": doctor, "patient": patient,
                "patientKeys": keccak(pkeys), "hmiHash": hmi, "hmiCiphertext": cm, "keywordCiphertexts": keccak(kws)}))
            recover_address(record_id, dsig)
            confirmation = domain.digest(CONFIRMATION_STRUCT.hash_struct({
                "recordId": record_id, "patient": patient, "hmiHash": hmi, "recordKeys": keccak(rkeys),
                "recordCiphertext": cth, "storageAddress": keccak(eaddr)}))
            recover_address(confirmation, psig)
        samples.append((time.thread_time() - t0) * 1e6 / len(prepared))
    return samples


def testbed(ctx: BenchContext, max_slips: int, chain_id: int):
    """A fresh group of 4 replica processes (own Anvil, SlipLedger, storage node); stopped on release."""
    from ..private.testbed import private_testbed

    stack = ExitStack()
    ctx.on_close(stack.close)
    tmp = Path(tempfile.mkdtemp(prefix=f"mbds-bench-pbft-{max_slips}-", dir=ctx.tmpdir))
    bed = stack.enter_context(private_testbed(tmp, chain_id, max_slips=max_slips, **NODE_PARAMS))
    ctx.on_close(lambda: kill_devnet(bed.devnet))  # runs first: the testbed's down() then has nothing to wait for
    return bed


def regroup(ctx: BenchContext, bed, max_slips: int):
    """The same Anvil, identities and storage node with a fresh SlipLedger and a fresh replica group of ≤ ``max_slips``.

    The old replicas are killed; the new group has its own ports and data folder, so
    it starts from height 0 as on a fresh testbed.  Returns the new :class:`Testbed`.
    """
    from dataclasses import replace

    from eth_account import Account

    from ..chain.slip_ledger import SlipLedgerAgent
    from ..devnet import DEV_DEPLOYER_KEY
    from ..private.cluster import bind_replica_sockets, deploy_slip_ledger, start_cluster
    from ..private.node import PeerConfig

    kill_devnet(bed.devnet, bed.cluster.service_names)
    old = bed.cluster.config
    ledger = deploy_slip_ledger(bed.client, Account.from_key(DEV_DEPLOYER_KEY), old.validators)
    data = Path(tempfile.mkdtemp(prefix=f"nodes-{max_slips}-", dir=Path(old.data_dir).parent))
    sockets = bind_replica_sockets(bed.devnet, old.chain, len(old.peers))
    peers = tuple(PeerConfig(p.index, p.host, s["peer"].getsockname()[1], s["http"].getsockname()[1])
                  for p, s in zip(old.peers, sockets))
    config = replace(old, slip_ledger=ledger, peers=peers, data_dir=str(data), max_slips=max_slips)
    cluster = start_cluster(bed.devnet, config, bed.keys, sockets)
    return replace(bed, cluster=cluster, ledger=SlipLedgerAgent(ChainClient(bed.url), ledger))


def shared_testbed(ctx: BenchContext):
    """The measurement's replica group (blocks of up to 128 slips), made once per run."""
    return ctx.resource(TESTBED, lambda: testbed(ctx, BLOCK_SLIPS, CHAIN_ID))


@measurement("pbft_slips_per_s", also=("pbft_commit_p99_ms", "ingest_records_per_s", "replica_cpu_us_per_slip",
                                       "replica_floor_us_per_slip", "driver_cpu_us_per_slip"),
             estimate_s=(16, 150), uses=(TESTBED,))
def pbft(ctx: BenchContext):
    per_run = 256 if ctx.quick else 2048  # full: 3 runs of ≥ 16 blocks, so the p99 pools ≥ 40 blocks
    runs = 1 if ctx.quick else 3
    throughput: list[float] = []
    latencies: list[float] = []
    blocks = 0
    ingest: list[float] = []
    phases: list[dict[str, float]] = []
    replica_cpu: list[float] = []
    per_replica: list[list[float]] = []
    driver: list[float] = []
    floor: list[float] = []
    bed = shared_testbed(ctx)
    domain = bed.cluster.config.record_domain
    ctx.progress("pbft: warm-up")
    warm, _ = generate(domain.chain_id, domain.verifying_contract, 64, "warm")
    run_once(bed, warm)
    for r in range(runs):
        ctx.progress(f"pbft: generating {per_run} confirmed records (run {r + 1}/{runs})")
        records, gen_s = generate(domain.chain_id, domain.verifying_contract, per_run, f"run{r}-")
        ctx.progress(f"pbft: streaming {per_run} slips to 4 replicas")
        t0 = time.perf_counter()
        result = run_once(bed, records)
        if r == 0:
            floor = replica_floor_us(records[:256], domain)
        top = bed.ledger.head  # anchoring keeps up in the background; wait for it for the ingest figure
        target = max(h for s in [requests.get(f"{u}/v1/status").json() for u in bed.cluster.api_urls]
                     for h, _n, _l in s["commit_latency_ms"])
        deadline = time.monotonic() + 120
        while top()[0] < target and time.monotonic() < deadline:
            time.sleep(0.05)
        chain_s = time.perf_counter() - t0
        throughput.append(result.rate)
        latencies.extend(result.latencies)
        blocks += result.blocks
        per_replica.append([round(v, 1) for v in result.replica_us_per_slip])
        replica_cpu.append(sum(result.replica_us_per_slip) / len(result.replica_us_per_slip))
        driver.append(result.driver_us_per_slip)
        ingest.append(per_run / (gen_s + chain_s))
        phases.append({"generate_s": round(gen_s, 2), "commit_s": round(per_run / result.rate, 2),
                       "anchored_s": round(chain_s, 2)})
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan")
    return {
        "pbft_slips_per_s": Samples(throughput, extra={"slips_per_run": per_run, "block_max_slips": BLOCK_SLIPS}),
        "pbft_commit_p99_ms": Samples([p99], extra={"blocks": blocks, "blocks_x_replicas": len(latencies),
                                                    "p50_ms": latencies[len(latencies) // 2] if latencies else None}),
        "ingest_records_per_s": Samples(ingest, extra={"note": "generation and chain phases timed back to back",
                                                           "phases_per_run": phases}),
        "replica_cpu_us_per_slip": Samples(replica_cpu, extra={
            "per_replica_per_run": per_replica,
            "ratio_to_floor": (sorted(replica_cpu)[len(replica_cpu) // 2] / sorted(floor)[len(floor) // 2])
            if floor else None, "target": "<= 4 x replica_floor_us_per_slip"}),
        "replica_floor_us_per_slip": Samples(floor, extra={"slips_per_pass": min(256, per_run)}),
        "driver_cpu_us_per_slip": Samples(driver),
    }


@curve("pbft_slips_per_s", panel="throughput", label="PBFT commit, 4 replica processes", unit="slips/s",
       estimate_s=(9, 90), uses=(TESTBED,))
def pbft_curve(ctx: BenchContext, sizes) -> dict[int, list[float]]:
    """Committed slips/s as the block size grows.

    Full run: one fresh testbed (Anvil, identities, storage, replica group) per size,
    384 slips each.  Quick run: two sizes only (the smallest and the largest), 64
    slips each, on the measurement's testbed: 128 on its replica group as it is, the
    other on a fresh SlipLedger and replica group started on the same Anvil (see
    :func:`regroup`).
    """
    out: dict[int, list[float]] = {}
    if ctx.quick:
        per_size = 64
        bed = shared_testbed(ctx)
        sizes = sorted({min(sizes), max(sizes)}, key=lambda n: (n != bed.cluster.config.max_slips, n))
        ctx.progress(f"pbft curve (quick): block sizes {', '.join(map(str, sorted(sizes)))} only")
        for n in sizes:
            if n != bed.cluster.config.max_slips:
                ctx.progress(f"pbft curve: fresh SlipLedger and replica group with blocks of ≤ {n}")
                bed = regroup(ctx, bed, n)
            out[n] = [_curve_point(ctx, bed, n, per_size)]
        ctx.release(TESTBED)
        return out
    ctx.release(TESTBED)  # a fresh testbed per size; do not leave the measurement's idling beside them
    for n in sizes:
        name = f"pbft-testbed-{n}"
        bed = ctx.resource(name, lambda n=n: testbed(ctx, n, CHAIN_ID + n))
        try:
            out[n] = [_curve_point(ctx, bed, n, 384)]
        finally:
            ctx.release(name)
    return out


def _curve_point(ctx: BenchContext, bed, n: int, slips: int) -> float:
    ctx.progress(f"pbft curve: {slips} slips in blocks of ≤ {n}")
    domain = bed.cluster.config.record_domain
    records, _ = generate(domain.chain_id, domain.verifying_contract, slips, f"curve{n}-")
    return run_once(bed, records).rate
