"""PEKS benchmark for `mbds bench`: Test per item beside py_ecc, and search time as a patient's items grow.

``peks_test_ms`` (baseline ``peks_test_ms_arkworks``: the previous binding, same
run), ``peks_test_ms_py_ecc``, ``peks_encrypt_ms`` (baseline
``peks_encrypt_ms_pairing``: one pairing per keyword on blst) and
``peks_encrypt_ms_arkworks`` come from
:func:`mbds_py.bench.crypto_bench.bench_peks`, run several times: each run
warms up and returns the median over its own repetitions, and those medians
are the samples here (so the spread is run-to-run).  ``peks_test_ms`` is the
one-core wall time per item (the target is per item per core); the encryption
keys are per keyword with H1 and E_w cached, as in a doctor's client.

The curve times :func:`mbds_py.crypto.peks.batch_test` — one trapdoor against
all of a patient's PEKS ciphertexts, on every usable core — for 100 → 10,000
items (keywords drawn from a pool, so some match).
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

from ..crypto import PeksSecretKey, batch_test, peks_encrypt
from ..crypto.peks import usable_cores
from . import crypto_bench
from .context import BenchContext
from .registry import Samples, curve, measurement


@measurement("peks_test_ms", also=("peks_test_ms_py_ecc", "peks_encrypt_ms", "peks_encrypt_ms_pairing",
                                   "peks_encrypt_ms_arkworks"), estimate_s=(5, 80))
def measure_peks(ctx: BenchContext) -> dict[str, Samples]:
    runs = 1 if ctx.quick else 5  # each run: the median of its own repetitions (3 quick, 25 full)
    results = []
    for i in range(runs):
        ctx.progress(f"crypto_bench.bench_peks run {i + 1}/{runs}")
        results.append(crypto_bench.bench_peks(ctx.quick))

    def med(field: str) -> float | None:
        values = [r[field] for r in results if field in r]
        return median(values) if values else None

    extra = {"items_per_run": results[0].get("items"), "cores": results[0].get("cores")}
    extra.update({name: med(field) for name, field in (
        ("cpu_ms_per_item_1_core", "test_cpu_ms_per_item_1_core"),
        ("min_ms_per_item_1_core", "test_min_ms_per_item_1_core"),
        ("wall_ms_per_item_all_cores", "test_ms_per_item_wall_all_cores"),
        ("pairing_ms", "pairing_ms")) if med(field) is not None})
    return {
        "peks_test_ms": Samples([r["test_ms_per_item_1_core"] for r in results], extra=extra),
        "peks_test_ms_arkworks": Samples([r["test_ms_per_item_arkworks"] for r in results],
                                         extra={"pairing_ms": med("pairing_ms_arkworks")}),
        "peks_test_ms_py_ecc": Samples([r["py_ecc_test_ms"] for r in results],
                                       extra={"items_per_run": results[0].get("py_ecc_items")}),
        "peks_encrypt_ms": Samples([r["encrypt_ms_cached_h1"] for r in results],
                                   extra={"min_ms": med("encrypt_min_ms")}),
        "peks_encrypt_ms_pairing": [r["encrypt_ms_pairing"] for r in results],
        "peks_encrypt_ms_arkworks": [r["encrypt_ms_arkworks"] for r in results],
    }


@measurement("record_crypto_ms", estimate_s=(3, 25))
def measure_record(ctx: BenchContext) -> dict[str, Samples]:
    """Each sample: the median ms per record over 10 records (build + review + confirm, 3 keywords), the
    new path and its baseline interleaved."""
    runs = 1 if ctx.quick else 3
    results = []
    for i in range(runs):
        ctx.progress(f"crypto_bench.bench_record run {i + 1}/{runs}")
        results.append(crypto_bench.bench_record(ctx.quick))

    def med(field: str) -> float:
        return round(median(r[field] for r in results), 3)

    return {
        "record_crypto_ms": Samples([r["record_ms"] for r in results], extra={
            "cpu_ms": med("record_cpu_ms"), "min_ms": med("record_min_ms"), "build_ms": med("build_ms"),
            "review_ms": med("review_ms"), "keywords": 3}),
        "record_crypto_ms_pairings": Samples([r["record_ms_pairings"] for r in results],
                                             extra={"cpu_ms": med("record_cpu_ms_pairings")}),
    }


class _Patient:
    """One patient's PEKS ciphertexts (keywords cycling through the bench pool) and a trapdoor."""

    def __init__(self, items: int):
        sk = PeksSecretKey.generate()
        pk = sk.public_key()
        pool = crypto_bench.KEYWORD_POOL
        self.ciphertexts = [peks_encrypt(pk, pool[i % len(pool)]) for i in range(items)]
        self.trapdoor = sk.trapdoor(pool[0])


@curve("peks_search_ms", panel="peks_search", label=f"batch_test, {usable_cores()} core(s)", unit="ms",
       estimate_s=(6, 70))
def curve_peks_search(ctx: BenchContext, sizes: Sequence[int]) -> dict[int, list[float]]:
    ctx.progress(f"encrypting {max(sizes)} PEKS items")
    patient = _Patient(max(sizes))
    out = {}
    for i, n in enumerate(sizes):
        cts = patient.ciphertexts[:n]
        # the first size warms the thread pool and caches up; 3 timed searches per size
        out[n] = ctx.time_ms(lambda cts=cts: batch_test(patient.trapdoor, cts), reps=3, warmup=1 if i == 0 else 0)
        ctx.progress(f"{n} items: {median(out[n]):.1f} ms")
    return out
