"""ChainClient: local nonce tracking survives the same account sending from another client."""

from __future__ import annotations

from mbds_py.chain.client import ChainClient
from mbds_py.toolchain import artifact


def test_a_stale_local_nonce_is_re_read_and_the_transaction_sent(anvil_url, chain, make_account, kmc):
    sender = make_account("chain-client/two-clients")
    art = artifact("IdentityRegistry")
    first, other = ChainClient(anvil_url, name="a"), ChainClient(anvil_url, name="b")
    first.deploy("IdentityRegistry", art.abi, art.bytecode, sender, kmc.address)  # caches nonce n + 1
    other.deploy("IdentityRegistry", art.abi, art.bytecode, sender, kmc.address)  # uses n + 1 behind its back
    address, receipt = first.deploy("IdentityRegistry", art.abi, art.bytecode, sender, kmc.address)
    assert receipt["status"] == 1 and first.code_hash(address) is not None
    assert first.w3.eth.get_transaction_count(sender.address) == 3
