"""`mbds bench --quick --json` end to end, as a separate process (figures are reported, never asserted as times)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from mbds_py.bench import runner
from mbds_py.bench.context import BENCH_CHAIN_ID
from mbds_py.bench.registry import CATALOGUE, MEASUREMENTS

pytestmark = pytest.mark.slow

MEASURED_NOW = {"gas_per_slip", "naive_gas_per_slip", "peks_test_ms", "peks_test_ms_py_ecc", "storage_p50_ms",
                "storage_p50_ms_new_connection"}


def bench_processes() -> list[str]:
    """Command lines of processes still alive that only the benchmark starts (its chain)."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"--chain-id {BENCH_CHAIN_ID}" in cmd:
                out.append(cmd)
    return out


def test_quick_bench_json_has_figures_for_every_registered_key_and_reasons_for_the_rest(tmp_path):
    assert runner.discover() == []
    registered = {k for m in MEASUREMENTS.values() for k in m.keys}
    assert MEASURED_NOW <= registered
    out_json, out_md, out_png = tmp_path / "bench.json", tmp_path / "bench.md", tmp_path / "bench.png"
    cmd = [sys.executable, "-m", "mbds_py.bench.runner", "--quick", "--json", str(out_json),
           "--markdown", str(out_md)]
    plotting = importlib.util.find_spec("matplotlib") is not None
    if plotting:
        cmd += ["--plot", str(out_png)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "expected duration" in done.stderr and "tearing down" in done.stderr
    # the sharing and consortium measurements share one devnet, stopped after the last of them
    assert done.stderr.count("devnet up in") == 1 and "releasing devnet-network" in done.stderr
    assert bench_processes() == []

    report = json.loads(out_json.read_text())
    assert report["mode"] == "quick"
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu_model"]
    assert not report["versions"]["anvil"].startswith("unavailable")
    assert not report["versions"]["solc"].startswith("unavailable")
    ms = report["measurements"]
    assert set(ms) == set(CATALOGUE)
    for key, entry in ms.items():
        if key in registered:
            assert entry["status"] == "measured", (key, entry["reason"])
            assert isinstance(entry["median"], (int, float)) and entry["n"] >= 1, key
            assert all(isinstance(entry["spread"][f], (int, float)) for f in ("q1", "q3", "iqr", "min", "max")), key
        else:
            assert entry["median"] is None and entry["spread"] is None, key
            assert entry["status"] == "not measured" and entry["reason"], key
    # not a time: anchoring a certified 128-slip block costs far less per slip than one transaction per slip
    assert ms["gas_per_slip"]["median"] < ms["naive_gas_per_slip"]["median"] / 10
    assert isinstance(ms["gas_per_slip"]["ratio_to_baseline"], float)
    assert "| `gas_per_slip` |" in out_md.read_text()
    if plotting:
        assert out_png.read_bytes()[:4] == b"\x89PNG"
        curves = report["curves"]
        assert curves["anchor_gas_per_slip"]["status"] == "measured"
        assert curves["peks_search_ms"]["status"] == "measured"
        # quick: two block sizes, the largest on the PBFT measurement's own testbed
        assert curves["pbft_slips_per_s"]["status"] == "measured"
        assert [p["x"] for p in curves["pbft_slips_per_s"]["points"]] == [8, 128]
