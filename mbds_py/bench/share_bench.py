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

Also: ``share_search_1000_items_ms`` and ``share_search_10000_items_ms`` — the proxy's
PEKS conjunction (:func:`mbds_py.sharing.proxy.match_items`) over 1,000 / 10,000 items of
one patient (KEYWORD_SLOTS = 4 distinct ciphertexts each, one item in 100 matching),
items already parsed as in a running proxy (the cold first search is reported
beside), each with the previous search as baseline in the same run; the
``share_search_ms`` curve against items up to 10,000 (with its baseline curve);
and the gas of ``grantRecords`` (one record), ``revoke`` and ``recordAccess``.
"""

from __future__ import annotations

import hashlib
import random
import statistics
import time
from collections.abc import Sequence
from typing import Any

from ..sharing.policy import Action
from .context import NETWORK, BenchContext
from .registry import CATALOGUE, KeySpec, Samples, curve, measurement

for _spec in (
    KeySpec("share_search_1000_items_ms", "ms", "<=500", "share_search_1000_items_ms_previous",
            "proxy PEKS search (match_items) over 1,000 items of one patient, KEYWORD_SLOTS = 4 ciphertexts each "
            "sharing the record's A, items parsed once (cache), trapdoor lines precomputed, all cores"),
    KeySpec("share_search_1000_items_ms_previous", "ms", None, None,
            "baseline: the previous search over the same items (parsed every search, blspy pairing per Test)"),
    KeySpec("share_search_10000_items_ms", "ms", "<=4000", "share_search_10000_items_ms_previous",
            "the same proxy search over 10,000 items of one patient"),
    KeySpec("share_search_10000_items_ms_previous", "ms", None, None,
            "baseline: the previous search over the same 10,000 items (one run)"),
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


SEARCH_WORD = "icd10|R05"
#: One item in this many carries the searched keyword (a patient's history: a few records match).
SEARCH_HIT_EVERY = 100


def search_items(n: int, *, seed: int = 15, shared_a: bool = True) -> tuple[list[dict[str, Any]], list[Any], list[int]]:
    """``n`` consortium items of one patient as ``GET /v1/items`` serves them — each with ``KEYWORD_SLOTS``
    80-byte PEKS ciphertexts, as records carry them now: one A = g^r shared by the record's slots
    (``shared_a=False``: one A per ciphertext, as records made before) — the trapdoor of :data:`SEARCH_WORD`
    and the indexes of the items it matches (one in :data:`SEARCH_HIT_EVERY`, at a seeded slot).  Fast to
    set up: the A's of non-matching items are consecutive multiples of a random point (one point addition
    each), their B's seeded random bytes — to a Test, which cannot tell them from real ciphertexts, they
    cost exactly what real non-matching ones do; matching items are real (:func:`peks_encrypt_record`)."""
    import pyblst

    from ..crypto import PatientSecrets, peks
    from ..crypto.envelope import KEYWORD_SLOTS

    rng = random.Random(seed)
    patient = PatientSecrets.derive(hashlib.sha256(b"bench-search-patient").digest())
    pk = patient.public_keys.peks_key
    step = pyblst.BlstP1Element.uncompress(peks._bls.g1_mul_generator(rng.randrange(1, peks.GROUP_ORDER)))
    point = step
    items, hits = [], []
    for i in range(n):
        cts = []
        for j in range(KEYWORD_SLOTS):
            if j == 0 or not shared_a:
                point = point + step
                a = point.compress()
            cts.append(a + rng.randbytes(32))
        if i % SEARCH_HIT_EVERY == SEARCH_HIT_EVERY // 2:
            (hit,), a, _ = peks.peks_encrypt_record(pk, [SEARCH_WORD])
            slot = rng.randrange(KEYWORD_SLOTS)
            cts = [(c if not shared_a else a + c[48:]) for c in cts]
            cts[slot] = hit.to_bytes()
            hits.append(i)
        items.append({"height": 1 + i // 4, "slip": 0, "index": i % 4, "slip_id": f"#{i}",
                      "keywords": ["0x" + c.hex() for c in sorted(cts)]})
    return items, [patient.trapdoor(SEARCH_WORD)], hits


def match_items_previous(items: Sequence[dict[str, Any]], trapdoors: Sequence[Any]) -> list[int]:
    """The baseline: the proxy's search before issue 15 item 4 — every item parsed on every search, each
    Test a full blspy pairing (no precomputed trapdoor lines), on the same thread pool."""
    import hmac

    from ..crypto import PeksCiphertext, peks

    by_index = {i: [PeksCiphertext.from_bytes(bytes.fromhex(k[2:])) for k in item["keywords"]]
                for i, item in enumerate(items)}
    points = [td.point for td in trapdoors]

    def matches(cts: Sequence[Any]) -> bool:
        remaining = list(cts)
        for point in points:
            for j, c in enumerate(remaining):
                if hmac.compare_digest(peks.h2(peks._bls.pair(c.a, point)), c.b):
                    del remaining[j]
                    break
            else:
                return False
        return True

    rows = list(by_index.items())
    flags = peks._map_chunks(lambda chunk: [matches(cts) for _, cts in chunk], rows,
                             peks._plan(len(rows) * len(points), None))
    return [i for (i, _), ok in zip(rows, flags) if ok]


def _search_samples(ctx: BenchContext, n: int, reps: int, baseline_reps: int) -> tuple[Samples, Samples]:
    from ..crypto.peks import usable_cores
    from ..sharing.proxy import ParsedItems, match_items

    t0 = time.perf_counter()
    items, tds, hits = search_items(n)
    setup_s = time.perf_counter() - t0
    ctx.progress(f"{n:,} items x {len(items[0]['keywords'])} PEKS ciphertexts set up in {setup_s:.1f} s, "
                 f"{len(hits)} matching")
    cache = ParsedItems(capacity=max(n, 1))
    c0, t0 = time.process_time(), time.perf_counter()
    found = match_items(items, tds, cache=cache)  # cold: parses every item (a proxy's first search)
    cold_ms, cold_cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
    if found != hits:
        raise RuntimeError("the search did not find exactly the planted items")
    warm, cpu = [], []
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        match_items(items, tds, cache=cache)
        warm.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    ctx.progress(f"{n:,} items: {statistics.median(warm):,.0f} ms (cold {cold_ms:,.0f} ms); baseline ...")
    base = []
    for _ in range(baseline_reps):
        t0 = time.perf_counter()
        if match_items_previous(items, tds) != hits:
            raise RuntimeError("the baseline search did not find exactly the planted items")
        base.append((time.perf_counter() - t0) * 1000)
    if n <= 1000:  # the new search over records made before (one A per ciphertext): one pairing each
        old_items, _, old_hits = search_items(n, shared_a=False)
        old_cache = ParsedItems(capacity=n)
        match_items(old_items, tds, cache=old_cache)
        t0 = time.perf_counter()
        if match_items(old_items, tds, cache=old_cache) != old_hits:
            raise RuntimeError("the search over one-A-per-ciphertext items did not find the planted items")
        distinct_ms: float | None = (time.perf_counter() - t0) * 1000
    else:
        distinct_ms = None
    extra = {"items": n, "ciphertexts": n * len(items[0]["keywords"]), "matches": len(hits),
             "ms_items_with_one_a_per_ciphertext": None if distinct_ms is None else round(distinct_ms, 1),
             "cold_ms": round(cold_ms, 1), "cold_cpu_ms": round(cold_cpu, 1),
             "cpu_ms": round(statistics.median(cpu), 1), "cores": usable_cores(), "setup_s": round(setup_s, 2)}
    return Samples(warm, extra=extra), Samples(base)


@measurement("share_search_1000_items_ms", unit="ms", estimate_s=(8, 40))
def measure_search_1000(ctx: BenchContext) -> dict[str, Samples]:
    """The proxy's search (:func:`mbds_py.sharing.proxy.match_items`) over 1,000 items of one patient, items
    already parsed (a running proxy's cache; the cold first search is in ``cold_ms``), and its baseline."""
    new, old = _search_samples(ctx, 1000, 3 if ctx.quick else 7, 1 if ctx.quick else 3)
    return {"share_search_1000_items_ms": new, "share_search_1000_items_ms_previous": old}


@measurement("share_search_10000_items_ms", unit="ms", estimate_s=(40, 120))
def measure_search_10000(ctx: BenchContext) -> dict[str, Samples]:
    """The same over 10,000 items (the baseline once per run: it takes tens of seconds)."""
    new, old = _search_samples(ctx, 10_000, 1 if ctx.quick else 3, 1)
    return {"share_search_10000_items_ms": new, "share_search_10000_items_ms_previous": old}


@curve("share_search_ms", panel="peks_search", label="proxy search (match_items, items parsed)", unit="ms",
       estimate_s=(10, 150))
def curve_share_search(ctx: BenchContext, sizes: Sequence[int]) -> dict[int, list[float]]:
    from ..sharing.proxy import ParsedItems, match_items

    items, tds, _ = search_items(max(sizes))
    cache = ParsedItems(capacity=max(sizes))
    match_items(items, tds, cache=cache)  # parse once
    out = {}
    for n in sizes:
        part = items[:n]
        out[n] = ctx.time_ms(lambda part=part: match_items(part, tds, cache=cache), reps=3, warmup=0)
        ctx.progress(f"{n:,} items: {statistics.median(out[n]):,.0f} ms")
    return out


@curve("share_search_ms_previous", panel="peks_search", label="baseline: previous proxy search", unit="ms",
       estimate_s=(10, 200))
def curve_share_search_previous(ctx: BenchContext, sizes: Sequence[int]) -> dict[int, list[float]]:
    items, tds, _ = search_items(max(sizes))
    out = {}
    for n in sizes:
        part = items[:n]
        out[n] = ctx.time_ms(lambda part=part: match_items_previous(part, tds), reps=1 if n >= 3000 else 3,
                             warmup=0)
        ctx.progress(f"baseline {n:,} items: {statistics.median(out[n]):,.0f} ms")
    return out


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
