"""The storage benchmark runs end to end (figures are not asserted: benchmarks are not timed tests)."""

from __future__ import annotations

import pytest

from mbds_py.bench import storage_bench

pytestmark = pytest.mark.slow


def test_quick_run_reports_p50_for_both_sizes_and_the_baseline() -> None:
    report = storage_bench.run(quick=True)
    for section in ("results", "baseline_new_connection_per_request"):
        assert set(report[section]) == {"1KiB", "10KiB"}
        assert all(figures["p50_ms"] > 0 and figures["n"] == 50 for figures in report[section].values())
    assert report["target_p50_ms"] == 20.0
    assert isinstance(report["meets_target"], bool)
