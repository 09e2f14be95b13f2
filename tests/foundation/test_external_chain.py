"""A chain by URL: `rpc_url` names an endpoint that MBDS checks but never launches or stops, and its contracts are
deployed with the key in the environment variable its `deployer_key_env` names.

The "external" chain is an Anvil this module starts; the deployer is a fresh account the test funds, so a deployment
made with Anvil's dev key instead would show. The key lives only in the test's monkeypatched environment (and in
the environment handed to the `mbds` processes).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from mbds_py.chain.client import ChainClient
from mbds_py.deploy import FUNDING_WEI, Deployer
from mbds_py.devnet import DEV_DEPLOYER_KEY, Devnet, launch_chain, rpc_chain_id
from mbds_py.errors import DeploymentError
from mbds_py.spec import load_spec

pytestmark = pytest.mark.slow

CHAIN_ID = 43171
KEY_ENV = "MBDS_TEST_EXTERNAL_DEPLOYER_KEY"
CONSORTIUM_CONTRACTS = ["IdentityRegistry", "CreditRegistry", "ConsortiumIndex", "AccessPolicy"]
MBDS = [str(Path(sys.executable).parent / "mbds")]
POPULATION = """
[[members]]
name = "insurer"
role = "insurer"
real_identity = "Mutual Health Insurance Co."
"""


@pytest.fixture(scope="module")
def external_url() -> Iterator[str]:
    proc, url = launch_chain("anvil", CHAIN_ID)
    try:
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture()
def deployer_key(external_url: str, monkeypatch) -> LocalAccount:
    """A fresh account, funded on the external chain by the dev key, set in KEY_ENV for this test only."""
    account = Account.from_key(secrets.token_bytes(32))
    ChainClient(external_url).transfer(Account.from_key(DEV_DEPLOYER_KEY), account.address, 50_000 * 10**18)
    monkeypatch.setenv(KEY_ENV, "0x" + account.key.hex().removeprefix("0x"))
    return account


def write_spec(folder: Path, url: str, *, key_env: str | None = KEY_ENV) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["[storage]", "nodes = 0", "", "[[chains]]", 'name = "consortium"', 'kind = "consortium"',
             f"chain_id = {CHAIN_ID}", f'rpc_url = "{url}"']
    if key_env:
        lines.append(f'deployer_key_env = "{key_env}"')
    path = folder / "spec.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def creator_of(client: ChainClient, address: str, block: int) -> str:
    """The sender of the transaction that created the contract at ``address`` in ``block``."""
    for tx in client.w3.eth.get_block(block, full_transactions=True)["transactions"]:
        receipt = client.w3.eth.get_transaction_receipt(tx["hash"])
        if receipt["contractAddress"] and receipt["contractAddress"].lower() == address.lower():
            return tx["from"]
    raise AssertionError(f"no transaction in block {block} created {address}")


def test_deployer_deploys_on_a_chain_by_url_with_the_key_its_spec_names(tmp_path, external_url, deployer_key):
    spec = load_spec(write_spec(tmp_path, external_url), state_dir=tmp_path / "state")
    [chain] = spec.chains
    assert chain.external and chain.deployer_key_env == KEY_ENV
    devnet = Devnet(spec)
    state = devnet.up()  # checks the endpoint's chain ID; launches nothing
    assert state["consortium"].rpc_url == external_url and state["consortium"].pid is None

    client = ChainClient(external_url)
    dev = Account.from_key(DEV_DEPLOYER_KEY)
    dev_nonce = client.w3.eth.get_transaction_count(dev.address)
    kmc = Account.from_key(keccak(text="external-chain-test/kmc")).address
    member = Account.from_key(keccak(text="external-chain-test/member")).address
    table, created = Deployer(spec, kmc).deploy_all(fund=[member])

    assert created == [f"consortium/{name}" for name in CONSORTIUM_CONTRACTS]
    for name, d in table["consortium"].items():
        assert client.code_hash(d.address) == d.code_hash, name
        assert creator_of(client, d.address, d.block) == deployer_key.address, name
    for funded in (kmc, member):  # the funding came from the named key as well
        assert client.w3.eth.get_balance(funded) >= FUNDING_WEI
    assert client.w3.eth.get_transaction_count(deployer_key.address) == len(CONSORTIUM_CONTRACTS) + 2
    assert client.w3.eth.get_transaction_count(dev.address) == dev_nonce  # the dev key sent nothing

    # idempotent: a second run finds everything; stopping the network leaves the external chain running
    assert Deployer(spec, kmc).deploy_all(fund=[member])[1] == []
    devnet.down()
    assert rpc_chain_id(external_url) == CHAIN_ID


@pytest.mark.parametrize("named", [True, False], ids=["variable-unset", "no-deployer_key_env"])
def test_a_missing_deployer_key_is_a_one_line_error_naming_the_variable(tmp_path, external_url, monkeypatch, named):
    monkeypatch.delenv(KEY_ENV, raising=False)
    spec = load_spec(write_spec(tmp_path, external_url, key_env=KEY_ENV if named else None),
                     state_dir=tmp_path / "state")
    Devnet(spec).up()
    head = ChainClient(external_url).w3.eth.block_number
    with pytest.raises(DeploymentError) as info:
        Deployer(spec, Account.from_key(keccak(text="external-chain-test/kmc")).address).deploy_all()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("external chain 'consortium' needs a funded deployer key")
    assert f"({KEY_ENV})" in message if named else "(not set in the spec)" in message
    assert ChainClient(external_url).w3.eth.block_number == head  # nothing was sent


def _mbds(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, MBDS_PASSPHRASE="external chain test passphrase")
    return subprocess.run(MBDS + args, capture_output=True, text=True, timeout=600, env=env, **kw)


def test_mbds_deploy_uses_the_named_key_and_says_which_variable_is_missing(tmp_path, external_url, deployer_key,
                                                                          monkeypatch):
    spec = write_spec(tmp_path, external_url)
    (tmp_path / "population.toml").write_text(POPULATION)
    where = ["--spec", str(spec), "--state-dir", str(tmp_path / "state")]
    up = _mbds(["devnet", "up", *where])
    assert up.returncode == 0, up.stderr

    # without the variable: one line on stderr naming it, exit 2, nothing deployed, nothing sent
    client = ChainClient(external_url)
    head = client.w3.eth.block_number
    missing = dict(os.environ)
    missing.pop(KEY_ENV)
    failed = subprocess.run(MBDS + ["deploy", *where, "--population", str(tmp_path / "population.toml")],
                            capture_output=True, text=True, timeout=600,
                            env=dict(missing, MBDS_PASSPHRASE="external chain test passphrase"))
    assert failed.returncode == 2, failed.stderr
    assert failed.stderr.count("\n") == 1 and KEY_ENV in failed.stderr, failed.stderr
    assert failed.stderr.startswith("mbds: error: external chain 'consortium' needs a funded deployer key")
    assert "Traceback" not in failed.stderr and client.w3.eth.block_number == head
    assert not (tmp_path / "state" / "deployments.json").exists()

    # with it (set only in this test's environment): deployed by that key
    done = _mbds(["deploy", *where, "--population", str(tmp_path / "population.toml")])
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("consortium ")]
    assert [(r[1], r[3]) for r in rows] == [(name, "deployed") for name in CONSORTIUM_CONTRACTS]
    for _chain, name, address, _tag in rows:
        code = client.w3.eth.get_code(address)
        assert code, name
        block = next(b for b in range(head, client.w3.eth.block_number + 1)
                     if any(client.w3.eth.get_transaction_receipt(tx)["contractAddress"] == address
                            for tx in client.w3.eth.get_block(b)["transactions"]))
        assert creator_of(client, address, block) == deployer_key.address, name

    again = _mbds(["deploy", *where, "--population", str(tmp_path / "population.toml")])
    assert again.returncode == 0, again.stderr
    assert [line.split()[3] for line in again.stdout.splitlines() if line.startswith("consortium ")] == \
        ["found"] * len(CONSORTIUM_CONTRACTS)
    assert _mbds(["devnet", "down", *where]).returncode == 0
    assert rpc_chain_id(external_url) == CHAIN_ID  # an external chain is never stopped
