"""Deterministic simulation: >= 1,000 seeded scenarios, safety and liveness in each.

Every scenario (see :func:`mbds_py.pbft.sim.random_scenario`) draws its faults
from its seed: latency and reordering, 0-30 % loss, delays far beyond the
timeouts, {2,2} and {1,3} partitions that heal, a crashed primary,
crash-restart from the durable store, an equivocating primary, a double-voting
replica, and chaos mixes of these.  ``SimResult.check`` asserts that no two
honest replicas apply different blocks at one height (every block with a valid
quorum certificate, no slip twice) and that, once the faults stop, every
submitted slip is applied exactly once by every running honest replica.

Reproduce one failing scenario with::

    python -c "from mbds_py.pbft.sim import random_scenario, run; run(random_scenario(SEED)).check()"
"""

import pytest

from mbds_py.pbft.sim import FAMILIES, FaultEvent, Scenario, random_scenario, run

CHUNK = 100
CHUNKS = 11  # 1,100 scenarios, 100 per fault family


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_seeded_scenarios_are_safe_and_live(chunk):
    failures = []
    for seed in range(chunk * CHUNK, (chunk + 1) * CHUNK):
        result = run(random_scenario(seed))
        try:
            result.check()
        except AssertionError as exc:
            failures.append(str(exc))
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
