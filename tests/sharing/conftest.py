"""Fixtures for AccessPolicy tests: one population and deployment per session, snapshot per test.

The sharing tests use their own IdentityRegistry (deployed beside the shared
one), so registering this population never shows up in other modules' tests.
"""

from __future__ import annotations

import pytest
from eth_account.signers.local import LocalAccount

from mbds_py.chain.client import ChainClient
from mbds_py.chain.governance import Council, GovernanceParams
from mbds_py.chain.identity import IdentityRegistryAgent
from mbds_py.identity import Participant
from mbds_py.sharing.agent import AccessPolicyAgent
from mbds_py.sharing.policy import ZERO32
from mbds_py.toolchain import artifact
from tests.conftest import peks_key, pre_key
from tests.sharing._support import CONFIG, POPULATION, World, pid


@pytest.fixture(scope="session")
def sharing_world(session_client: ChainClient, deployer: LocalAccount, kmc: LocalAccount, make_account) -> World:
    """Registry + population + AccessPolicy + one proxy, deployed once (before any snapshot)."""
    art = artifact("IdentityRegistry")
    registry_address, _ = session_client.deploy("IdentityRegistry", art.abi, art.bytecode, deployer, kmc.address,
                                                *GovernanceParams().as_args())
    registry = IdentityRegistryAgent(session_client, registry_address)
    accounts = {label: make_account(f"sharing/{label}") for label in POPULATION}
    for label, (role, inst) in POPULATION.items():
        registry.register(kmc, Participant(
            id=pid(label), name=label, role=role, address=accounts[label].address, pre_key=pre_key(label),
            peks_key=peks_key(label), institution=pid(inst) if inst else ZERO32))
    policy = AccessPolicyAgent.deploy(session_client, deployer, registry_address, CONFIG)
    proxy = make_account("sharing/proxy")
    policy.add_proxy(Council(accounts["authority-national"], accounts["authority-provincial"]), proxy.address)
    return World(session_client, policy, registry, accounts, proxy, kmc)


@pytest.fixture()
def world(sharing_world: World, chain: ChainClient) -> World:
    """The session world, reverted after each test (the chain fixture snapshots after it exists)."""
    return sharing_world


@pytest.fixture()
def outsider(make_account, chain) -> LocalAccount:
    """A funded account registered nowhere."""
    return make_account("sharing/outsider")
