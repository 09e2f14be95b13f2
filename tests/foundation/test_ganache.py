"""The same contracts deploy and work on Ganache 7.9 as on Anvil."""

from __future__ import annotations

import os
import signal

import pytest
from eth_account import Account
from eth_utils import keccak

from mbds_py.chain.client import ChainClient
from mbds_py.chain.identity import IdentityRegistryAgent
from mbds_py.devnet import DEV_DEPLOYER_KEY, launch_chain
from mbds_py.errors import ContractRevert
from mbds_py.identity import Participant, Role
from mbds_py.toolchain import artifact
from tests.conftest import peks_key, pre_key

pytestmark = [pytest.mark.ganache, pytest.mark.xdist_group("ganache")]


@pytest.fixture(scope="module")
def ganache():
    proc, url = launch_chain("ganache", 43198)
    yield ChainClient(url, name="ganache")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_identity_registry_smoke_on_ganache(ganache):
    deployer = Account.from_key(DEV_DEPLOYER_KEY)
    kmc = Account.from_key(keccak(text="ganache/kmc"))
    ganache.transfer(deployer, kmc.address, 10**20)
    art = artifact("IdentityRegistry")
    address, _ = ganache.deploy("IdentityRegistry", art.abi, art.bytecode, deployer, kmc.address)
    agent = IdentityRegistryAgent(ganache, address)
    hospital = Participant(keccak(text="g/hospital"), "h", Role.HOSPITAL, Account.from_key(keccak(text="g/h")).address,
                           pre_key("g/h"), peks_key("g/h"))
    receipt = agent.register(kmc, hospital)
    (ev,) = agent.events(receipt, "ParticipantRegistered")
    assert ev["id"] == hospital.id and ev["role"] == int(Role.HOSPITAL)
    assert agent.get(hospital.id).account == hospital.address
    # custom errors decode on Ganache too
    with pytest.raises(ContractRevert) as info:
        agent.register(deployer, hospital)
    assert info.value.error_name == "IdentityRegistryNotKmc"
    assert info.value.args_decoded == (deployer.address,)
