"""Gas of the hot paths, pinned with head-room so regressions show (run with -s to see the table)."""

from __future__ import annotations

from mbds_py.sharing.policy import HOUR, ZERO32, Action, Scope
from tests.sharing._support import record

# Measured (solc 0.8.28, optimizer 200 runs, shanghai) + ~15 % head-room.  Most of each figure is the
# IdentityRegistry.participant() read (a full key set) that every caller and grantee check needs.
BUDGET = {
    "grant (new record grant)": 150_000,
    "grant (same again: no-op)": 100_000,
    "revoke": 80_000,
    "recordAccess (record grant)": 80_000,
    "recordAccess (preset rule)": 85_000,
}


def test_gas_of_grant_revoke_and_record_access(world):
    w, p = world, world.policy
    patient, b1 = w.acct("patient"), w.id("doctor-b1")
    now = w.now()
    used = {}
    used["grant (new record grant)"] = p.grant(patient, b1, scope=Scope.RECORD, target=record("a"), not_before=now,
                                               expires_at=now + HOUR)["gasUsed"]
    used["grant (same again: no-op)"] = p.grant(patient, b1, scope=Scope.RECORD, target=record("a"),
                                                not_before=now, expires_at=now + HOUR)["gasUsed"]
    used["recordAccess (record grant)"] = p.transact("recordAccess", w.proxy, w.id("patient"), b1, record("a"), ZERO32,
                                                int(Action.READ), 0)["gasUsed"]
    p.set_preset_rule(patient, w.id("hospital-a"), duration=HOUR)
    used["recordAccess (preset rule)"] = p.transact("recordAccess", w.proxy, w.id("patient"), w.id("doctor-a1"),
                                               record("a"), ZERO32, int(Action.READ), 0)["gasUsed"]
    used["revoke"] = p.revoke(patient, b1, scope=Scope.RECORD, target=record("a"))["gasUsed"]
    print()
    for name, gas in used.items():
        print(f"  {name:30s} {gas:>9,} gas (budget {BUDGET[name]:,})")
    assert all(used[name] <= BUDGET[name] for name in BUDGET), used
