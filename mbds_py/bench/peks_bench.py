"""PEKS benchmark for `mbds bench`: Test per item beside py_ecc, and search time as a patient's items grow.

``peks_test_ms`` / ``peks_test_ms_py_ecc`` come from
:func:`mbds_py.bench.crypto_bench.bench_peks`, run several times: each run
warms up and returns the median over its own repetitions, and those medians
are the samples here (so the spread is run-to-run).  ``peks_test_ms`` is the
one-core wall time per item (the target is per item per core).

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


@measurement("peks_test_ms", estimate_s=(16, 70))
def measure_peks(ctx: BenchContext) -> dict[str, Samples]:
    runs = 3 if ctx.quick else 5
    results = []
    for i in range(runs):
        ctx.progress(f"crypto_bench.bench_peks run {i + 1}/{runs}")
        results.append(crypto_bench.bench_peks(ctx.quick))

    def med(field: str) -> float:
        return median(r[field] for r in results)

    return {
        "peks_test_ms": Samples([r["test_ms_per_item_1_core"] for r in results], extra={
            "items_per_run": results[0]["items"],
            "cpu_ms_per_item_1_core": med("test_cpu_ms_per_item_1_core"),
            "wall_ms_per_item_all_cores": med("test_ms_per_item_wall_all_cores"),
            "cores": results[0]["cores"],
            "pairing_ms": med("pairing_ms"),
        }),
        "peks_test_ms_py_ecc": Samples([r["py_ecc_test_ms"] for r in results],
                                       extra={"items_per_run": results[0]["py_ecc_items"]}),
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
       estimate_s=(6, 110))
def curve_peks_search(ctx: BenchContext, sizes: Sequence[int]) -> dict[int, list[float]]:
    ctx.progress(f"encrypting {max(sizes)} PEKS items")
    patient = _Patient(max(sizes))
    reps = 3 if ctx.quick else 5
    out = {}
    for n in sizes:
        cts = patient.ciphertexts[:n]
        out[n] = ctx.time_ms(lambda: batch_test(patient.trapdoor, cts), reps=reps)
        ctx.progress(f"{n} items: {median(out[n]):.1f} ms")
    return out
