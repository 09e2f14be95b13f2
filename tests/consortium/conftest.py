"""Consortium fixtures: a small network per test module (K=5 RPN, M=4 ATN, quorum 3),
built once on the session chain inside a module snapshot; every test runs in the
function-scoped ``chain`` snapshot on top of it."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.consortium._consortium_support import SMALL_INCENTIVES, Net, build_net, small_dims

# Long slots: every test starts in slot 0 (Anvil restores the clock on revert) however slow the machine.
SLOT_SECONDS = 3600


@pytest.fixture(scope="module")
def module_snapshot(session_client, identity_address, kmc, deployer) -> Iterator[None]:
    """Undo everything a module built on the session chain when the module ends.

    The session fixtures it depends on are created before the snapshot, so they survive it.
    """
    snap = session_client.snapshot()
    yield
    session_client.revert(snap)


@pytest.fixture(scope="module")
def small_net(module_snapshot, session_client, identity_address, kmc, deployer) -> Net:
    return build_net(session_client, identity_address, kmc, deployer, dims=small_dims(14), rpn_count=5,
                     atn_count=4, reserve_capacity=3, incentives=SMALL_INCENTIVES, quorum=3, prefix="small",
                     slot_seconds=SLOT_SECONDS)


@pytest.fixture()
def net(small_net: Net, chain) -> Net:
    """The small network, isolated per test by the chain snapshot."""
    small_net.client = chain
    return small_net
