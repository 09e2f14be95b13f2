"""The consortium benchmarks are registered; the gas one runs on a throw-away Anvil (slow)."""

from __future__ import annotations

import pytest

from mbds_py.bench import consortium_bench
from mbds_py.bench.context import BenchContext
from mbds_py.bench.registry import CATALOGUE, MEASUREMENTS, Samples


def test_gas_per_item_and_consortium_items_per_s_are_registered():
    for key, fn in (("gas_per_item", consortium_bench.measure_gas_per_item),
                    ("consortium_items_per_s", consortium_bench.measure_consortium_items)):
        assert key in CATALOGUE
        assert MEASUREMENTS[key].fn is fn
        assert MEASUREMENTS[key].keys == (key,)
    assert CATALOGUE["gas_per_item"].unit == "gas/item"
    assert CATALOGUE["consortium_items_per_s"].unit == "items/s"


@pytest.mark.slow
def test_gas_per_item_reports_both_patient_variants():
    with BenchContext(quick=True) as ctx:
        result = consortium_bench.measure_gas_per_item(ctx)
    assert isinstance(result, Samples) and len(result.values) == 1
    variants = result.extra["variants"]
    assert variants["1280_distinct_patients"]["patients"] == 1280
    assert variants["128_patients"]["patients"] == 128
    # one PatientIndexed log per distinct patient: fewer patients, less gas
    assert variants["128_patients"]["gas_per_block"] < variants["1280_distinct_patients"]["gas_per_block"] < 30_000_000
