"""Statistics of the benchmark harness: fixed numbers, hand-computed (type-7 percentiles)."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mbds_py.bench.stats import (FAILED, MEASURED, NOT_MEASURED, Measurement, Spread, Target, median, percentile,
                                 percentiles, spread)

SAMPLES = [15.0, 20.0, 35.0, 40.0, 50.0]  # the textbook example of linear-interpolation percentiles


def test_median_of_odd_count_is_the_middle_sample():
    assert median([3.0, 1.0, 2.0]) == 2.0


def test_median_of_even_count_is_the_mean_of_the_two_middle_samples():
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_median_of_one_sample_is_that_sample():
    assert median([7.25]) == 7.25


def test_percentile_interpolates_linearly_between_closest_ranks():
    # h = (n - 1) q: q=0.4 -> h=1.6 -> 20 + 0.6 * (35 - 20) = 29
    assert percentile(SAMPLES, 0.40) == pytest.approx(29.0)
    assert percentile(SAMPLES, 0.25) == pytest.approx(20.0)
    assert percentile(SAMPLES, 0.75) == pytest.approx(40.0)
    assert percentile(SAMPLES, 0.90) == pytest.approx(46.0)  # h = 3.6 -> 40 + 0.6 * 10


def test_percentile_ends_are_min_and_max():
    assert percentile(SAMPLES, 0.0) == 15.0
    assert percentile(SAMPLES, 1.0) == 50.0


def test_p99_of_few_samples_stays_between_the_two_largest():
    p99 = percentile(SAMPLES, 0.99)  # h = 3.96
    assert 40.0 < p99 < 50.0
    assert p99 == pytest.approx(49.6)


def test_percentile_does_not_depend_on_input_order():
    assert percentile(list(reversed(SAMPLES)), 0.4) == percentile(SAMPLES, 0.4)


def test_percentiles_reports_p50_p90_p99():
    got = percentiles(SAMPLES)
    assert list(got) == ["p50", "p90", "p99"]
    assert got["p50"] == 35.0 and got["p90"] == pytest.approx(46.0) and got["p99"] == pytest.approx(49.6)


@pytest.mark.parametrize("q", [-0.01, 1.01])
def test_percentile_rejects_a_fraction_outside_0_1(q):
    with pytest.raises(ValueError, match="fraction"):
        percentile(SAMPLES, q)


def test_statistics_of_no_samples_raise():
    with pytest.raises(ValueError, match="no samples"):
        median([])
    with pytest.raises(ValueError, match="no samples"):
        spread([])


def test_a_nan_sample_is_rejected():
    with pytest.raises(ValueError, match="NaN"):
        median([1.0, math.nan])


def test_spread_gives_quartiles_iqr_and_extremes():
    s = spread(SAMPLES)
    assert s == Spread(q1=20.0, q3=40.0, min=15.0, max=50.0)
    assert s.iqr == 20.0
    assert s.to_dict() == {"q1": 20.0, "q3": 40.0, "iqr": 20.0, "min": 15.0, "max": 50.0}


def test_spread_of_identical_samples_is_zero():
    s = spread([5.0] * 4)
    assert s.iqr == 0.0 and s.min == s.max == 5.0


@given(st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=50),
       st.floats(min_value=0, max_value=1), st.floats(min_value=0, max_value=1))
def test_percentile_is_monotone_and_bounded(samples, a, b):
    lo, hi = sorted((a, b))
    assert min(samples) <= percentile(samples, lo) <= percentile(samples, hi) <= max(samples)


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=50))
def test_median_agrees_with_the_standard_library(samples):
    assert median(samples) == pytest.approx(statistics.median(samples), abs=1e-6)


# --- targets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, op, bound", [(">=1000", ">=", 1000.0), ("<= 1.2", "<=", 1.2),
                                             ("≥1,000", ">=", 1000.0), ("≤600", "<=", 600.0), ("<250", "<", 250.0)])
def test_target_parses_operator_and_bound(text, op, bound):
    assert Target.parse(text) == Target(op, bound)


@pytest.mark.parametrize("text", ["1000", ">=", "== 5", "<=fast"])
def test_target_rejects_text_without_operator_and_number(text):
    with pytest.raises(ValueError, match="operator and a number"):
        Target.parse(text)


def test_target_is_met_on_the_right_side_of_the_bound():
    at_least, at_most = Target.parse(">=1000"), Target.parse("<=600")
    assert at_least.met_by(1000) and at_least.met_by(1500) and not at_least.met_by(999)
    assert at_most.met_by(600) and not at_most.met_by(716.3)
    assert at_least.higher_is_better and not at_most.higher_is_better
    assert str(at_most) == "<=600" and str(Target.parse("<=1.2")) == "<=1.2"


# --- measurements ------------------------------------------------------------------------------------


def test_measurement_from_samples_reports_median_spread_percentiles_and_count():
    m = Measurement.from_samples("storage_p50_ms", "ms", SAMPLES, target="<=20", extra={"size": "1KiB"})
    assert m.status == MEASURED and m.measured
    assert m.median == 35.0 and m.n == 5 and m.spread == spread(SAMPLES)
    assert m.percentiles == percentiles(SAMPLES)
    assert m.meets_target() is False
    assert m.extra == {"size": "1KiB"}


def test_measurement_ratio_to_its_baseline():
    ours = Measurement.from_samples("gas_per_slip", "gas/slip", [700.0], baseline="naive_gas_per_slip")
    naive = Measurement.from_samples("naive_gas_per_slip", "gas/slip", [46_000.0, 46_000.0])
    assert ours.ratio_to(naive) == pytest.approx(700 / 46_000)


def test_ratio_is_none_when_either_side_has_no_figure_or_the_baseline_is_zero():
    ours = Measurement.from_samples("share_p50_ms", "ms", [80.0])
    missing = Measurement.unavailable("share_p50_ms_single_proxy", "ms", "nothing registered")
    zero = Measurement.from_samples("zero", "ms", [0.0])
    assert ours.ratio_to(missing) is None and missing.ratio_to(ours) is None
    assert ours.ratio_to(None) is None and ours.ratio_to(zero) is None


def test_unavailable_measurement_is_null_with_a_reason():
    m = Measurement.unavailable("pbft_slips_per_s", "slips/s", "no measurement registered", target=">=1000")
    assert m.status == NOT_MEASURED and not m.measured
    assert m.meets_target() is None
    d = m.to_dict()
    assert d["median"] is None and d["spread"] is None and d["percentiles"] is None and d["n"] == 0
    assert d["reason"] == "no measurement registered" and d["target"] == ">=1000"


def test_unavailable_measurement_cannot_claim_to_be_measured():
    with pytest.raises(ValueError, match="cannot have status"):
        Measurement.unavailable("k", "ms", "why", status=MEASURED)


def test_failed_measurement_keeps_its_status():
    assert Measurement.unavailable("k", "ms", "RuntimeError: boom", status=FAILED).to_dict()["status"] == FAILED


def test_measurement_dict_rounds_to_significant_digits():
    d = Measurement.from_samples("peks_test_ms", "ms/item", [1.23456789, 1.23456789]).to_dict(digits=3)
    assert d["median"] == 1.23 and d["spread"]["iqr"] == 0.0
