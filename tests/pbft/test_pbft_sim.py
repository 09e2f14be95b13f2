"""Deterministic simulation: 10,000 seeded scenarios, safety and liveness in each.

Every scenario (see :func:`mbds_py.pbft.sim.random_scenario`) draws its faults
from its seed: latency and reordering, 0-30 % loss, delays far beyond the
timeouts, {2,2} and {1,3} partitions that heal, a crashed primary,
crash-restart from the durable store, an equivocating primary, a double-voting
replica, and chaos mixes of these.  ``SimResult.check`` raises
``SimulationSafetyError`` unless no two honest replicas apply different blocks
at one height (every block with a valid quorum certificate, no slip twice), and
``SimulationLivenessError`` unless, once the faults stop, every submitted slip
is applied exactly once by every running honest replica.

The first 1,100 seeds (100 per fault family) run in ``make test-fast``; the
other 8,900 are marked slow.  Reproduce one failing scenario with::

    python -c "from mbds_py.pbft.sim import random_scenario, run; run(random_scenario(SEED)).check()"

and look further with ``make soak SEEDS=N START=S``.
"""

import dataclasses
import subprocess
import sys

import pytest

from mbds_py.errors import MBDSError
from mbds_py.pbft.errors import SimulationError, SimulationLivenessError, SimulationSafetyError
from mbds_py.pbft.sim import FAMILIES, FaultEvent, Scenario, random_scenario, run
from mbds_py.pbft.types import Block, CertifiedBlock

CHUNK = 100
CHUNKS = 100  # 10,000 scenarios
FAST_CHUNKS = 11  # 1,100 of them, 100 per fault family, outside the slow mark


@pytest.mark.parametrize(
    "chunk", [c if c < FAST_CHUNKS else pytest.param(c, marks=pytest.mark.slow) for c in range(CHUNKS)]
)
def test_seeded_scenarios_are_safe_and_live(chunk):
    failures = []
    for seed in range(chunk * CHUNK, (chunk + 1) * CHUNK):
        try:
            run(random_scenario(seed)).check()
        except SimulationError as exc:
            failures.append(f"{FAMILIES[seed % len(FAMILIES)]}: {exc}")
    assert not failures, "\n".join(failures)


def test_every_fault_family_is_covered_by_the_seeds():
    families = {FAMILIES[seed % len(FAMILIES)] for seed in range(CHUNK * CHUNKS)}
    assert families == set(FAMILIES)
    scenarios = [random_scenario(seed) for seed in range(CHUNK * CHUNKS)]
    assert max(s.loss for s in scenarios) > 0.25
    assert any(s.long_delay for s in scenarios)
    kinds = {(e.kind, tuple(sorted(len(g) for g in e.groups))) for s in scenarios for e in s.faults}
    assert {("partition", (2, 2)), ("partition", (1, 3)), ("crash", ()), ("restart", ())} <= kinds
    assert {b for s in scenarios for _, b in s.byzantine} == {"equivocate", "double-vote"}
    assert any(e.kind == "crash" and e.replica == 0 and not any(
        r.kind == "restart" and r.replica == 0 for r in s.faults) for s in scenarios for e in s.faults)


def test_a_seed_replays_exactly():
    a, b = run(random_scenario(42, "chaos")), run(random_scenario(42, "chaos"))
    assert a.messages == b.messages and a.end_time == b.end_time
    assert {i: [cb.block for cb in c] for i, c in a.chains.items()} == {i: [cb.block for cb in c] for i, c in b.chains.items()}


def test_seven_replicas_tolerate_two_crashed_replicas():
    scenario = Scenario(
        seed=7007, n=7, slips=20, loss=0.05, faults_until=3.0,
        faults=(FaultEvent(0.3, "crash", 0), FaultEvent(0.8, "crash", 4)),
    )
    result = run(scenario)
    result.check()
    assert result.running == {1, 2, 3, 5, 6} and min(result.views[i] for i in result.running) >= 1


def test_a_broken_result_fails_with_named_errors():
    result = run(random_scenario(3))
    result.check()
    r = min(result.honest & result.running)
    chain = result.chains[r]
    assert issubclass(SimulationSafetyError, MBDSError) and not issubclass(SimulationSafetyError, AssertionError)

    result.chains[r] = chain[:-1]  # a replica that never applied its last block
    with pytest.raises(SimulationLivenessError, match=r"seed=3 .*LIVENESS: replica \d lacks"):
        result.check()

    forged = dataclasses.replace(chain[0].block.header, timestamp=chain[0].block.header.timestamp + 1)
    result.chains[r] = [CertifiedBlock(Block(forged, chain[0].block.slips), chain[0].qc), *chain[1:]]
    with pytest.raises(SimulationSafetyError, match="SAFETY"):
        result.check()


def test_the_checks_hold_under_python_optimize():
    """``python -O`` strips asserts; the checks raise named errors, so they still fail."""
    script = (
        "from mbds_py.pbft.errors import SimulationLivenessError\n"
        "from mbds_py.pbft.sim import random_scenario, run\n"
        "assert False, 'asserts are on'\n"
        "result = run(random_scenario(3))\n"
        "r = min(result.honest & result.running)\n"
        "result.chains[r] = result.chains[r][:-1]\n"
        "try:\n"
        "    result.check()\n"
        "except SimulationLivenessError:\n"
        "    print('caught')\n"
    )
    out = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "caught"
