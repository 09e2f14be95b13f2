"""The anchoring benchmark on the session chain: one certified 128-slip header per commitBlock, eight per
commitBlocks, and the breakdown of their gas (gas is counted, not timed: the figures are deterministic)."""

from __future__ import annotations

from mbds_py.bench.anchor_bench import BLOCK_SLIPS, ECRECOVER_GAS, INTRINSIC_GAS, N_SIGNATURES, AnchorBench


def parts(split: dict[str, int]) -> int:
    return sum(v for k, v in split.items() if k != "total")


def test_anchoring_gas_per_slip_single_and_batched_with_its_breakdown(chain):
    bench = AnchorBench(chain)
    bench.anchor_block(BLOCK_SLIPS)  # height 1: its parent is genesis
    single = bench.anchor_block(BLOCK_SLIPS, trace=True)
    split = bench.last_breakdown
    assert split["total"] == single.gas == parts(split)
    assert split["intrinsic"] == INTRINSIC_GAS and split["ecrecover"] == N_SIGNATURES * ECRECOVER_GAS
    # one new word (20,000) and four cold slots read: the schedule, the set hash, the parent and the new height
    assert split["storage"] == 20_000 + 4 * 2_100
    assert split["events"] > 0 and split["calldata"] > 0 and split["execution"] > 0
    assert single.gas_per_slip <= 600  # issue 14's target (gas, not time)

    batch = bench.anchor_batch(BLOCK_SLIPS, 8, trace=True)
    split = bench.last_breakdown
    assert split["total"] == batch.gas == parts(split)
    assert split["ecrecover"] == 8 * N_SIGNATURES * ECRECOVER_GAS
    assert batch.gas_per_slip <= 400 < single.gas_per_slip
    assert bench.ledger.head() == (10, bench.prev)
