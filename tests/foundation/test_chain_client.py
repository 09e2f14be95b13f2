"""ChainClient: every write goes through the account's one TxSender; stale nonces and snapshot reverts."""

from __future__ import annotations

from mbds_py.chain.client import ChainClient
from mbds_py.chain.governance import GovernanceParams
from mbds_py.chain.sender import Endpoint, TxSender
from mbds_py.toolchain import artifact


def test_a_stale_local_nonce_is_re_read_and_the_transaction_sent(anvil_url, chain, make_account, kmc):
    """Another client of the same account (its own sender, as another process has) uses our next nonce."""
    sender = make_account("chain-client/two-clients")
    art = artifact("IdentityRegistry")
    first = ChainClient(anvil_url, name="a")
    start = first.w3.eth.get_transaction_count(sender.address)
    first.deploy("IdentityRegistry", art.abi, art.bytecode, sender, kmc.address,
                 *GovernanceParams().as_args())  # caches nonce n + 1
    factory = first.w3.eth.contract(abi=art.abi, bytecode="0x" + art.bytecode)
    init = factory.constructor(kmc.address, *GovernanceParams().as_args()) \
        .build_transaction({"from": sender.address, "gas": 1, "gasPrice": 1, "nonce": 0, "chainId": first.chain_id})
    TxSender(Endpoint(anvil_url, "b"), sender).transact(None, init["data"], gas=3_000_000)  # takes n + 1
    address, receipt = first.deploy("IdentityRegistry", art.abi, art.bytecode, sender, kmc.address,
                                    *GovernanceParams().as_args())
    assert receipt["status"] == 1 and first.code_hash(address) is not None
    assert first.w3.eth.get_transaction_count(sender.address) == start + 3


def test_clients_of_one_chain_share_the_sender_of_an_account(anvil_url, chain, make_account):
    sender = make_account("chain-client/shared")
    a, b = ChainClient(anvil_url, name="a"), ChainClient(anvil_url + "/", name="b")
    assert a.sender(sender) is b.sender(sender)
    receipts = [a.transfer(sender, b.w3.eth.accounts[1], 1), b.transfer(sender, a.w3.eth.accounts[2], 1)]
    assert [r["status"] for r in receipts] == [1, 1]


def test_send_then_wait_by_hash_and_decoded_receipts(anvil_url, chain, deployer, kmc):
    client = ChainClient(anvil_url, name="send-wait")
    art = artifact("IdentityRegistry")
    factory = client.w3.eth.contract(abi=art.abi, bytecode="0x" + art.bytecode)
    client.errors.add_abi("IdentityRegistry", art.abi)
    hashes = [client.send(factory.constructor(kmc.address, *GovernanceParams().as_args()), deployer,
                          contract="IdentityRegistry") for _ in range(3)]
    receipts = [client.wait(h, contract="IdentityRegistry") for h in hashes]
    assert [r["transactionHash"] for r in receipts] == hashes
    assert all(r["status"] == 1 and r["contractAddress"] for r in receipts)
    first = receipts[0]
    assert isinstance(first["blockNumber"], int) and first["logs"][0]["address"] == first["contractAddress"]


def test_a_snapshot_revert_makes_every_sender_re_read_its_nonce(anvil_url, chain, deployer):
    """After evm_revert the chain's nonces went back; the senders' cached ones must not stay ahead."""
    client = ChainClient(anvil_url, name="revert")
    to = client.w3.eth.accounts[3]
    snap = client.snapshot()
    start = client.w3.eth.get_transaction_count(deployer.address)
    for _ in range(3):
        client.transfer(deployer, to, 1)
    client.revert(snap)
    assert client.w3.eth.get_transaction_count(deployer.address) == start
    receipt = client.transfer(deployer, to, 1)  # would wait forever at nonce start + 3 without the reset
    assert receipt["status"] == 1
    assert client.w3.eth.get_transaction(receipt["transactionHash"])["nonce"] == start
