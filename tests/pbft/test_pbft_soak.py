"""``python -m mbds_py.pbft.soak`` / ``make soak``: progress, failing seeds with their families, exit status."""

import io

import pytest

from mbds_py.pbft import soak
from mbds_py.pbft.sim import run as real_run


def _main(*argv):
    out, err = io.StringIO(), io.StringIO()
    return soak.main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


def test_a_clean_range_exits_zero_and_reports_progress():
    code, out, err = _main("--start", "100", "--count", "6", "--jobs", "1")
    assert code == 0 and "all 6 scenarios safe and live (seeds 100..105)" in out
    assert "soak: 6/6 scenarios, 0 failing" in err


def test_failing_seeds_are_listed_with_their_family_and_exit_one(monkeypatch):
    def broken_run(scenario):
        result = real_run(scenario)
        if scenario.seed == 4:  # a replica that never applied its last block
            r = min(result.honest & result.running)
            result.chains[r] = result.chains[r][:-1]
        return result

    monkeypatch.setattr(soak, "run", broken_run)
    code, out, err = _main("--start", "0", "--count", "6", "--jobs", "1")
    assert code == 1
    assert "1 of 6 scenarios failed (seeds 0..5)" in out
    assert "\n4\tpartition-1-3\tSimulationLivenessError\t[seed=4 " in out
    assert "FAIL seed 4 (partition-1-3): SimulationLivenessError" in err


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        _main("--count", "0")


@pytest.mark.slow
def test_seeds_run_in_worker_processes():
    code, out, _ = _main("--start", "7", "--count", "4", "--jobs", "2")
    assert code == 0 and "all 4 scenarios" in out
    batches = list(soak.soak(0, 60, jobs=2, batch=25))
    assert sorted(n for n, _ in batches) == [10, 25, 25]
