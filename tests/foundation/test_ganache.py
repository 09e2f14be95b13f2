"""The same contracts deploy and work on Ganache 7.9 as on Anvil."""

from __future__ import annotations

import os
import signal

import pytest
from eth_account import Account
from eth_utils import keccak

from mbds_py.chain.client import ChainClient
from mbds_py.chain.governance import GovernanceParams
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
    address, _ = ganache.deploy("IdentityRegistry", art.abi, art.bytecode, deployer, kmc.address,
                                *GovernanceParams().as_args())
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


def test_every_contract_deploys_and_slip_ledger_commits_on_ganache(ganache):
    """All contracts deploy on Ganache (Shanghai bytecode); a certified header commits and proves a slip."""
    from mbds_py.chain.slip_ledger import SlipLedgerAgent
    from mbds_py.consortium.credit import Incentives, Weights
    from mbds_py.pbft.crypto import EthSigner
    from mbds_py.pbft.merkle import merkle_proof, merkle_root
    from mbds_py.pbft.types import (BlockHeader, CommitSignature, QuorumCertificate, SlipEnvelope, ZERO32,
                                    commit_vote_digest, header_struct_hash, slip_leaf)

    deployer = Account.from_key(DEV_DEPLOYER_KEY)
    kmc = Account.from_key(keccak(text="ganache/kmc2"))
    identity, _ = ganache.deploy("IdentityRegistry", artifact("IdentityRegistry").abi,
                                 artifact("IdentityRegistry").bytecode, deployer, kmc.address,
                                 *GovernanceParams().as_args())
    credit, _ = ganache.deploy("CreditRegistry", artifact("CreditRegistry").abi, artifact("CreditRegistry").bytecode,
                               deployer, identity, 5, 3, 4, Weights().as_tuple(), Incentives().as_tuple())
    for name, args in [("ConsortiumIndex", (credit, 1_700_000_000, 4, 2)),
                       ("AccessPolicy", (identity, 3600, 3600, 3600, 2))]:
        address, _ = ganache.deploy(name, artifact(name).abi, artifact(name).bytecode, deployer, *args)
        assert ganache.code_hash(address) is not None

    keys = [keccak(text=f"ganache/validator-{i}") for i in range(4)]
    signers = [EthSigner(k) for k in keys]
    validators = [Account.from_key(k).address for k in keys]
    for v in validators[:1]:
        ganache.transfer(deployer, v, 10**19)
    ledger_address, _ = ganache.deploy("SlipLedger", artifact("SlipLedger").abi, artifact("SlipLedger").bytecode,
                                       deployer, validators)
    ledger = SlipLedgerAgent(ganache, ledger_address)
    body = [SlipEnvelope(keccak(text=f"g/slip/{i}"), b"payload %d" % i) for i in range(5)]
    leaves = [slip_leaf(s) for s in body]
    header = BlockHeader(1, 1, ZERO32, 1_700_000_000_000, signers[0].address, merkle_root(leaves),
                         bytes.fromhex("1220") + keccak(text="g/body"))
    digest = commit_vote_digest(ledger.domain_separator(), 0, 1, header_struct_hash(header))
    qc = QuorumCertificate(header, 0, tuple(CommitSignature(i, signers[i].sign(digest)) for i in range(3)))
    ledger.commit(Account.from_key(keys[0]), qc, [s.address for s in signers])
    assert ledger.head() == (1, header_struct_hash(header))
    assert ledger.verify_slip(header, merkle_proof(leaves, 2), body[2])
