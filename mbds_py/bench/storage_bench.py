"""Storage benchmark: add + cat of 1 KiB and 10 KiB blobs through a real node process.

Target (ARCHITECTURE §7): p50 ≤ 20 ms.  The baseline in the same run is the
same client without connection reuse (a new HTTP connection per request);
both are interleaved, iteration by iteration, so machine load affects them alike.
Run as ``python -m mbds_py.bench.storage_bench [--quick]``; prints JSON.
Also registered as ``storage_p50_ms`` for `mbds bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

from mbds_py.bench.context import BenchContext
from mbds_py.bench.registry import Samples, measurement
from mbds_py.storage.client import KuboClient

TARGET_P50_MS = 20.0
SIZES = {"1KiB": 1024, "10KiB": 10 * 1024}
START_DEADLINE_S = 30.0


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _summary(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {"p50_ms": round(_percentile(ms, 0.50), 3), "p90_ms": round(_percentile(ms, 0.90), 3),
            "p99_ms": round(_percentile(ms, 0.99), 3), "n": len(ms)}


def _start_node(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    ready = work / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mbds_py.storage.node", "--port", "0", "--data-dir", str(work / "data"),
         "--ready-file", str(ready), "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + START_DEADLINE_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"storage node exited: {proc.stderr.read().decode(errors='replace')}")
        if ready.exists():
            url = json.loads(ready.read_text())["url"]
            try:
                if requests.post(f"{url}/api/v0/version", timeout=2).ok:
                    return proc, url
            except requests.RequestException:
                pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("storage node did not answer within the deadline")
        time.sleep(0.02)


def _measure(ops: dict[str, Callable[[bytes], None]], size: int, iterations: int) -> dict[str, list[float]]:
    """Time each op on fresh content, interleaved so load changes hit every op alike."""
    samples: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(iterations):
        for name, op in ops.items():
            data = os.urandom(size)  # fresh content: every add really stores a block
            start = time.perf_counter()
            op(data)
            samples[name].append(time.perf_counter() - start)
    return samples


def collect(iterations: int) -> dict[str, dict[str, list[float]]]:
    """Raw add+cat latencies in seconds, ``{size: {"reused": [...], "baseline": [...]}}``.

    Starts a node process in a temporary folder, warms up, measures both clients
    interleaved, and stops the node (also when measuring fails).
    """
    with tempfile.TemporaryDirectory(prefix="mbds-storage-bench-") as tmp:
        proc, url = _start_node(Path(tmp))
        try:
            with KuboClient(url) as kubo:

                def reused(data: bytes) -> None:
                    assert kubo.cat(kubo.add(data)) == data

                def fresh_connections(data: bytes) -> None:
                    with KuboClient(url) as first:
                        cid = first.add(data)
                    with KuboClient(url) as second:
                        assert second.cat(cid) == data

                ops = {"reused": reused, "baseline": fresh_connections}
                _measure(ops, 1024, 10)  # warm-up
                return {name: _measure(ops, size, iterations) for name, size in SIZES.items()}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def run(quick: bool = False) -> dict:
    """Measure add+cat latency; returns the figures and whether the p50 target holds."""
    iterations = 50 if quick else 500
    measured = collect(iterations)
    results = {name: _summary(samples["reused"]) for name, samples in measured.items()}
    baseline = {name: _summary(samples["baseline"]) for name, samples in measured.items()}
    return {
        "benchmark": "storage add+cat through a node process",
        "target_p50_ms": TARGET_P50_MS,
        "iterations": iterations,
        "results": results,
        "baseline_new_connection_per_request": baseline,
        "speedup_p50": {name: round(baseline[name]["p50_ms"] / results[name]["p50_ms"], 2) for name in SIZES},
        "meets_target": all(r["p50_ms"] <= TARGET_P50_MS for r in results.values()),
    }


@measurement("storage_p50_ms", estimate_s=(4, 25))
def measure_storage(ctx: BenchContext) -> dict[str, Samples]:
    """`mbds bench`: every add+cat latency of both sizes pooled (the median is the p50)."""
    iterations = 50 if ctx.quick else 500
    ctx.progress(f"storage node: {iterations} add+cat per size ({', '.join(SIZES)}), "
                 "connection reused vs new, interleaved")
    measured = collect(iterations)

    def pooled(op: str) -> Samples:
        per_size = {name: _summary(samples[op])["p50_ms"] for name, samples in measured.items()}
        return Samples([s * 1000 for samples in measured.values() for s in samples[op]],
                       extra={"p50_ms_by_size": per_size, "iterations_per_size": iterations})

    return {"storage_p50_ms": pooled("reused"), "storage_p50_ms_new_connection": pooled("baseline")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mbds_py.bench.storage_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args(argv)
    report = run(quick=args.quick)
    print(json.dumps(report, indent=2))
    return 0 if report["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
