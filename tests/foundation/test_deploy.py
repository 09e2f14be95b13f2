"""Deployment: idempotent re-runs, redeploy after a chain restart."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils import keccak

from mbds_py.chain.client import ChainClient
from mbds_py.chain.identity import IdentityRegistryAgent
from mbds_py.deploy import Deployer
from mbds_py.devnet import Devnet
from mbds_py.spec import load_spec
from tests.foundation.test_devnet import spec_file

pytestmark = pytest.mark.xdist_group("devnet")

KMC = Account.from_key(keccak(text="deploy-test/kmc")).address
EXPECTED = ["consortium/AccessPolicy", "consortium/ConsortiumIndex", "consortium/CreditRegistry",
            "consortium/IdentityRegistry", "hospital-a/IdentityRegistry", "hospital-a/SlipLedger"]
VALIDATORS = {"hospital-a": [Account.from_key(keccak(text=f"deploy-test/v{i}")).address for i in range(4)]}


@pytest.fixture()
def devnet(tmp_path):
    d = Devnet(load_spec(spec_file(tmp_path)))
    d.up()
    yield d
    d.down()


def test_deploy_is_idempotent(devnet):
    deployer = Deployer(devnet.spec, KMC, VALIDATORS)
    table, created = deployer.deploy_all()
    assert sorted(created) == EXPECTED
    again, created_again = Deployer(devnet.spec, KMC, VALIDATORS).deploy_all()
    assert created_again == []
    assert {c: {n: d.address for n, d in e.items()} for c, e in again.items()} == \
           {c: {n: d.address for n, d in e.items()} for c, e in table.items()}
    urls = devnet.rpc_urls()
    for chain, entries in table.items():
        agent = IdentityRegistryAgent(ChainClient(urls[chain]), entries["IdentityRegistry"].address)
        assert agent.kmc().lower() == KMC.lower()


def test_restarted_chain_gets_a_fresh_deployment(devnet):
    deployer = Deployer(devnet.spec, KMC, VALIDATORS)
    deployer.deploy_all()
    devnet.down()
    devnet.up()  # fresh chains: the recorded addresses hold no code any more
    _table, created = Deployer(devnet.spec, KMC, VALIDATORS).deploy_all()
    assert sorted(created) == EXPECTED


def test_slip_ledger_needs_known_validators(devnet):
    from mbds_py.errors import DeploymentError

    with pytest.raises(DeploymentError, match="no PBFT validators known for 'hospital-a'"):
        Deployer(devnet.spec, KMC).deploy_all()


def test_deploy_without_devnet_says_what_to_run(tmp_path):
    from mbds_py.errors import DevnetError

    spec = load_spec(spec_file(tmp_path))
    with pytest.raises(DevnetError, match="run `mbds up` first"):
        Deployer(spec, KMC).deploy_all()


@pytest.mark.parametrize("changed,expected", [
    ("ConsortiumIndex", ["consortium/ConsortiumIndex", "consortium/CreditRegistry"]),
    ("IdentityRegistry", ["consortium/AccessPolicy", "consortium/ConsortiumIndex", "consortium/CreditRegistry",
                          "consortium/IdentityRegistry"]),
])
def test_a_changed_contract_takes_the_contracts_bound_to_it_along(devnet, changed, expected):
    """A CreditRegistry binds its ConsortiumIndex as its clock once: a new index comes with a new registry
    (and whatever binds a replaced contract's address is deployed again with it)."""
    from dataclasses import replace

    table, _ = Deployer(devnet.spec, KMC, VALIDATORS).deploy_all()
    deployer = Deployer(devnet.spec, KMC, VALIDATORS)
    table["consortium"][changed] = replace(table["consortium"][changed], artifact_hash="0x" + "00" * 32)
    deployer._save(table)  # as if the source of `changed` had changed since
    _again, created = deployer.deploy_all()
    assert sorted(created) == expected
