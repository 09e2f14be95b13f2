"""The sender's fee does not feed back into the node's fee oracle (the price must not climb with use)."""

from __future__ import annotations

import os
import signal

from eth_account import Account

from mbds_py.chain.client import ChainClient
from mbds_py.chain.sender import PRIORITY_TIP
from mbds_py.devnet import DEV_DEPLOYER_KEY, launch_chain


def test_a_hundred_transactions_do_not_raise_the_price_the_sender_pays():
    proc, url = launch_chain("anvil", 43911)
    try:
        client = ChainClient(url, name="fees")
        sender = client.sender(Account.from_key(DEV_DEPLOYER_KEY))
        to = Account.create().address
        first = sender.submit(to, b"", value=1, gas=21_000, contract="transfer", function="transfer")
        first.wait()
        for _ in range(100):
            sender.endpoint.gas_price(fresh=True)
            sender.submit(to, b"", value=1, gas=21_000, contract="transfer", function="transfer").wait()
        base = client.w3.eth.get_block("latest")["baseFeePerGas"]
        price = sender.endpoint.gas_price(fresh=True)
        assert price == 2 * base + PRIORITY_TIP
        assert price <= first.gas_price  # the base fee of one-transaction blocks only falls
        # before the fix, paying 2 x eth_gasPrice doubled Anvil's oracle price with every block (> 1000 ETH per tx)
        assert client.w3.eth.gas_price < 10 * PRIORITY_TIP
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
