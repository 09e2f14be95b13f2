"""Sharing benchmark: one record from search to plaintext through the 2-of-3 proxies (design §7).

``share_p50_ms``: a doctor holding the patient's search ticket asks a proxy to search
(consortium items → PEKS → Merkle proofs against ConsortiumIndex → slip proven
against SlipLedger), then asks two proxies in parallel to re-encrypt (each:
signed request, on-chain ``checkAccess``, C_M from storage checked against the
slip, Umbral re-encryption, ``recordAccess`` transaction mined), verifies both
capsule fragments and decrypts.  Real processes: 3 private chains × 4 PBFT
replicas, the DPoS consortium nodes, 2 storage nodes and 3 proxy processes.
Committed slips and consortium headers are cached once proven (they never
change); the first, cold, read is reported beside the median.
``share_p50_ms_single_proxy``: the same with one proxy and a 1-of-1 key (the
baseline), in the same run on the same record.

The network is the run's shared devnet (:meth:`BenchContext.network`, also used
by the consortium measurement); the 3 proxies are started on it here.

Also: ``share_search_1000_items_ms`` — the proxy's PEKS conjunction
(:func:`mbds_py.sharing.proxy.match_items`) over 1,000 summary items of one
patient (3 keyword ciphertexts each, one match), and the gas of ``grantRecords``
(one record), ``revoke`` and ``recordAccess``.
"""

from __future__ import annotations

import statistics
import time

from ..sharing.policy import Action
from .context import NETWORK, BenchContext
from .registry import CATALOGUE, KeySpec, Samples, measurement

for _spec in (
    KeySpec("share_search_1000_items_ms", "ms", None, None,
            "proxy PEKS search (conjunction) over 1,000 summary items of one patient, 3 keywords each"),
    KeySpec("share_gas_grant", "gas", None, None, "AccessPolicy.grantRecords for one record"),
    KeySpec("share_gas_revoke", "gas", None, None, "AccessPolicy.revoke of one record's grant"),
    KeySpec("share_gas_record_access", "gas", None, None, "AccessPolicy.recordAccess (one audit event per proxy)"),
):
    CATALOGUE.setdefault(_spec.key, _spec)


class ShareBench:
    """The shared network with 3 proxies, one record of alice, dr-li holding 2-of-3 keys, dr-wang 1-of-1 at nha."""

    def __init__(self, ctx: BenchContext):
        from ..sharing import journey
        from ..sharing.clients import Directory, DoctorClient, PatientClient
        from ..sharing.launch import chain_refs

        self.net = net = ctx.network()
        t0 = time.perf_counter()
        ctx.progress("starting 3 proxies on the devnet")
        self.world = world = journey.setup_sharing(net, rate_limit=10**6)
        ctx.progress(f"3 proxies up in {time.perf_counter() - t0:.0f}s; writing one record")
        journey.write(world, "bench", "dr-zhao", "alice", [journey.COUGH], "Online consultation: cough")
        self.record = world.records["bench"]
        self.patient = world.pid("alice")
        world.patients["alice"].grant(world.pid("dr-li"), records=[self.record], duration=24 * 3600)
        self.threshold_doctor = world.doctors["dr-li"]
        # each doctor's search ticket: alice's trapdoors encrypted to the proxies, bound to his grant
        self.tickets = {id(self.threshold_doctor): world.patients["alice"].search_ticket(
            world.pid("dr-li"), journey.COUGH, ttl=24 * 3600)}
        d = world.directory
        # the same agent (one nonce cache per account in this process)
        single = Directory(d.policy, world.urls[:1], chain_refs(net), d.consortium_nodes, d.storage_urls,
                           storage_replicas=d.storage_replicas, threshold=1)
        alice_single = PatientClient(net.keys("alice"), single)
        alice_single.grant(world.pid("dr-wang"), records=[self.record], duration=24 * 3600)
        self.single_doctor = DoctorClient(net.keys("dr-wang"), single)
        self.tickets[id(self.single_doctor)] = alice_single.search_ticket(world.pid("dr-wang"), journey.COUGH,
                                                                          ttl=24 * 3600)
        self.audit_txs: list[str] = []

    def share_once(self, doctor) -> float:
        """Search to plaintext for the bench record; ms."""
        t0 = time.perf_counter()
        matches = doctor.search(self.patient, self.tickets[id(doctor)])
        record = doctor.read_record(self.patient, matches[0])
        ms = (time.perf_counter() - t0) * 1000
        if record.record_id != self.record or "cough" not in record.text:
            raise RuntimeError("the shared record is not the one written")
        self.audit_txs.extend(a["tx"] for a in record.audits)
        return ms


def share_bench(ctx: BenchContext) -> ShareBench:
    return ctx.resource("share-bench", lambda: ShareBench(ctx))


@measurement("share_p50_ms", estimate_s=(42, 60), uses=(NETWORK,))
def measure_share(ctx: BenchContext) -> dict[str, Samples]:
    bench = share_bench(ctx)
    reps = 15 if ctx.quick else 60
    ctx.progress(f"{reps} shares through 2-of-3 proxies and {reps} through one proxy, interleaved")
    cold = bench.share_once(bench.threshold_doctor)
    cold_single = bench.share_once(bench.single_doctor)
    threshold, single = [], []
    for _ in range(reps):
        threshold.append(bench.share_once(bench.threshold_doctor))
        single.append(bench.share_once(bench.single_doctor))
    p90 = lambda xs: sorted(xs)[int(0.9 * (len(xs) - 1))]  # noqa: E731
    return {
        "share_p50_ms": Samples(threshold, extra={"cold_ms": round(cold, 1), "p90_ms": round(p90(threshold), 1),
                                                  "proxies": 3, "threshold": 2}),
        "share_p50_ms_single_proxy": Samples(single, extra={"cold_ms": round(cold_single, 1),
                                                            "p90_ms": round(p90(single), 1)}),
    }


@measurement("share_search_1000_items_ms", unit="ms", estimate_s=(5, 35))
def measure_search_1000(ctx: BenchContext) -> Samples:
    """Full run: a checked search (warm-up), one more warm-up, 7 timed; quick: the checked search is the sample."""
    from ..crypto import PatientSecrets, peks_encrypt
    from ..sharing.proxy import match_items

    patient = PatientSecrets.derive(b"\x07" * 32)
    pk = patient.public_keys.peks_key
    pool = ["0x" + peks_encrypt(pk, f"icd10|Z{i:02d}.{i % 10}").to_bytes().hex() for i in range(30)]
    target = "0x" + peks_encrypt(pk, "icd10|R05").to_bytes().hex()
    items = [{"keywords": [pool[(3 * i + k) % 30] for k in range(3)], "slip_id": f"#{i}"} for i in range(1000)]
    items[617]["keywords"][1] = target
    tds = [patient.trapdoor("icd10|R05")]
    ctx.progress("1,000 items x 3 PEKS ciphertexts, one trapdoor, one match")
    t0 = time.perf_counter()
    found = match_items(items, tds)
    checked_ms = (time.perf_counter() - t0) * 1000
    if found != [617]:
        raise RuntimeError("the search did not find exactly the planted item")
    samples = [checked_ms] if ctx.quick else ctx.time_ms(lambda: match_items(items, tds), reps=7)
    return Samples(samples, extra={"items": 1000, "ciphertexts": 3000})


@measurement("share_gas_grant", unit="gas", also=("share_gas_revoke", "share_gas_record_access"), estimate_s=(1, 2),
             uses=(NETWORK,))
def measure_gas(ctx: BenchContext) -> dict[str, Samples]:
    bench = share_bench(ctx)
    world = bench.world
    policy = world.directory.policy
    alice = bench.net.keys("alice").account
    zhao = world.pid("dr-zhao")
    grants, revokes = [], []
    for _ in range(3 if ctx.quick else 5):
        grants.append(policy.grant_records(alice, zhao, [bench.record], actions=Action.READ, duration=3600)["gasUsed"])
        revokes.append(policy.revoke(alice, zhao, scope=1, target=bench.record)["gasUsed"])
    if not bench.audit_txs:
        bench.share_once(bench.threshold_doctor)
    provider = policy.client.w3.provider
    audits = [int(provider.make_request("eth_getTransactionReceipt", [tx])["result"]["gasUsed"], 16)
              for tx in bench.audit_txs[-10:]]
    return {"share_gas_grant": Samples(grants), "share_gas_revoke": Samples(revokes),
            "share_gas_record_access": Samples(audits, extra={"median": statistics.median(audits)})}
