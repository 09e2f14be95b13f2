"""The crypto benchmark runs in quick mode and reports every figure (no timing assertions)."""

from __future__ import annotations

from mbds_py.bench import crypto_bench


def test_quick_benchmark_reports_peks_and_envelope_figures(capsys):
    result = crypto_bench.run(quick=True)
    peks, env = result["peks"], result["envelope"]
    for key in ("test_ms_per_item_1_core", "test_cpu_ms_per_item_1_core", "test_ms_per_item_wall_all_cores",
                "pairing_ms", "encrypt_ms_cached_h1", "py_ecc_test_ms", "test_ms_per_item_arkworks",
                "pairing_ms_arkworks", "encrypt_ms_pairing", "encrypt_ms_arkworks"):
        assert peks[key] > 0, key
    assert peks["speedup_vs_py_ecc"] > 1
    for key in ("envelope_ms", "review_ms", "confirm_ms", "record_ms_1_core", "records_per_s_1_core"):
        assert env[key] > 0, key
    assert "ingest_crypto_2_processes" not in result
    table = crypto_bench._table(result)
    assert "PEKS Test, 1 core" in table and "py_ecc" in table and "arkworks (baseline)" in table
