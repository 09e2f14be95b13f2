"""Shared fixtures: one throw-away Anvil per test session (per xdist worker),
session-scoped deployments, function-scoped isolation by chain snapshot."""

from __future__ import annotations

import os
import signal
from typing import Iterator

import pytest
import umbral_pre
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hypothesis import settings

from mbds_py.chain.client import ChainClient
from mbds_py.chain.governance import GovernanceParams
from mbds_py.devnet import DEV_DEPLOYER_KEY, launch_chain
from mbds_py.toolchain import artifact

TEST_CHAIN_ID = 43199

# Property tests draw the same examples on every run (seeded from each test's name) and keep no example
# database in the checkout: a red run is reproducible, and a green one stays green.  Loaded before the
# test modules, so their own @settings inherit it.
settings.register_profile("mbds", derandomize=True, database=None, print_blob=True)
settings.load_profile("mbds")


def _stop(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def anvil_url() -> Iterator[str]:
    proc, url = launch_chain("anvil", TEST_CHAIN_ID)
    yield url
    _stop(proc)


@pytest.fixture(scope="session")
def session_client(anvil_url: str) -> ChainClient:
    return ChainClient(anvil_url, name="test-anvil")


@pytest.fixture()
def chain(session_client: ChainClient) -> Iterator[ChainClient]:
    """The session chain, reverted to a snapshot after each test."""
    snap = session_client.snapshot()
    yield session_client
    session_client.revert(snap)


@pytest.fixture(scope="session")
def deployer() -> LocalAccount:
    return Account.from_key(DEV_DEPLOYER_KEY)


@pytest.fixture(scope="session")
def make_account(session_client: ChainClient, deployer: LocalAccount):
    """Factory: a deterministic, funded account per label."""
    from eth_utils import keccak

    def make(label: str) -> LocalAccount:
        acct = Account.from_key(keccak(text=f"mbds-test/{label}"))
        # Checked every time: a snapshot revert may have undone an earlier funding.
        if session_client.w3.eth.get_balance(acct.address) < 10**19:
            session_client.transfer(deployer, acct.address, 10**20)
        return acct

    return make


@pytest.fixture(scope="session")
def kmc(make_account) -> LocalAccount:
    return make_account("kmc")


@pytest.fixture(scope="session")
def identity_address(session_client: ChainClient, deployer: LocalAccount, kmc: LocalAccount) -> str:
    art = artifact("IdentityRegistry")
    address, _ = session_client.deploy("IdentityRegistry", art.abi, art.bytecode, deployer, kmc.address,
                                       *GovernanceParams().as_args())
    return address


def pre_key(label: str) -> bytes:
    """A real Umbral public key, deterministic per label."""
    from eth_utils import keccak

    factory = umbral_pre.SecretKeyFactory.from_secure_randomness(keccak(text=label))
    return factory.make_key(b"mbds/identity").public_key().to_compressed_bytes()


BLS12_381_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001


def peks_key(label: str) -> bytes:
    """A real PEKS public key (compressed G1), deterministic per label."""
    from eth_utils import keccak

    from mbds_py.crypto.peks import PeksSecretKey

    scalar = int.from_bytes(keccak(text=label + "/peks"), "big") % BLS12_381_ORDER or 1
    return PeksSecretKey.from_bytes(scalar.to_bytes(32, "big")).public_key().to_bytes()

def pytest_ignore_collect(collection_path, config):
    """tests/ape runs under `ape test tests/ape` (Ape's plugin), not in the plain suite."""
    if collection_path.name == "ape" and not config.pluginmanager.has_plugin("ape_test"):
        return True
    return None
