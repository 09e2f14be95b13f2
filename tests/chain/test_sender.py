"""The one transaction path (TxSender) against real Anvil and Ganache processes, each fault injected into the
real node: concurrent senders of one account, a stale nonce, dropped transactions, a node restart, reverts."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from mbds_py.chain.client import ChainClient
from mbds_py.chain.governance import Council, GovernanceParams
from mbds_py.chain.identity import IdentityRegistryAgent
from mbds_py.chain.sender import Endpoint, PendingTx, SenderTiming, TxSender, endpoint_for, forget_chain, sender_for
from mbds_py.devnet import DEV_DEPLOYER_KEY, DEV_MNEMONIC
from mbds_py.errors import ChainError, ContractRevert
from mbds_py.identity import Participant, Role
from mbds_py.toolchain import PROJECT_ROOT, artifact
from tests.conftest import peks_key, pre_key
from tests.helpers import reverts

CHAIN_ID = 43197
ANVIL = PROJECT_ROOT / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
GANACHE = PROJECT_ROOT / "node_modules/ganache"
# Ganache's CLI refuses port 0; its server API binds it, and this reports the port the way Anvil does.
GANACHE_SERVER = """
const server = require(process.argv[1]).server(JSON.parse(process.argv[2]));
server.listen(0, "127.0.0.1").then(() => console.log("Listening on 127.0.0.1:" + server.address().port));
"""
QUICK = SenderTiming(stall_after=0.2, replace_after=30.0, reconnect=20.0)


@dataclass
class Node:
    """A chain process this test started; ``url`` is on the port the process itself bound and reported."""

    proc: subprocess.Popen
    port: int
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rpc(self, method: str, *params: Any) -> Any:
        import requests

        reply = requests.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                              timeout=10).json()
        assert "error" not in reply, reply
        return reply["result"]

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=30)


def _start(argv: list[str]) -> Node:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, start_new_session=True, cwd=PROJECT_ROOT)
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:  # ends at EOF if the process dies
        lines.append(line)
        if line.startswith("Listening on "):
            node = Node(proc, int(line.rsplit(":", 1)[1]), lines)
            threading.Thread(target=lambda: [lines.append(x) for x in proc.stdout], daemon=True).start()
            return node
    proc.wait()
    raise AssertionError(f"{argv[0]} exited ({proc.returncode}) before listening: {''.join(lines)[-2000:]}")


def start_anvil(*extra: str, port: int = 0) -> Node:
    return _start([str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(CHAIN_ID),
                   "--mnemonic", DEV_MNEMONIC, "--accounts", "3", "--balance", "1000000", *extra])


def start_ganache(block_time: float = 0) -> Node:
    options = {"chain": {"chainId": CHAIN_ID, "networkId": CHAIN_ID, "hardfork": "shanghai"},
               "wallet": {"mnemonic": DEV_MNEMONIC, "totalAccounts": 3, "defaultBalance": 1000000},
               "miner": {"blockTime": block_time}, "logging": {"quiet": True}}
    return _start(["node", "-e", GANACHE_SERVER, str(GANACHE), json.dumps(options)])


@pytest.fixture()
def nodes() -> Iterator[list[Node]]:
    """Chains started by the test (killed at the end, whatever happened)."""
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


def engine(nodes: list[Node], kind: str, block_time: float = 0, *extra: str) -> Node:
    if kind == "anvil":
        node = start_anvil(*extra, *(["--block-time", str(block_time)] if block_time else []))
    else:
        node = start_ganache(block_time)
    forget_chain(node.url)  # a chain of an earlier test of this worker may have had the port
    nodes.append(node)
    return node


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``condition`` (backing off) until it is truthy; fail naming ``what`` after ``timeout``."""
    deadline, delay = time.monotonic() + timeout, 0.002
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def deployer() -> LocalAccount:
    return Account.from_key(DEV_DEPLOYER_KEY)


def funded(node: Node, label: str) -> LocalAccount:
    acct = Account.from_key(keccak(text=f"test-sender/{label}"))
    sender_for(node.url, deployer()).transact(acct.address, value=10**21, gas=21_000, contract="fund",
                                              function="transfer")
    return acct


def mined_nonces(node: Node, receipts: list[dict[str, Any]]) -> list[int]:
    return sorted(int(node.rpc("eth_getTransactionByHash", r["transactionHash"])["nonce"], 16) for r in receipts)


def assert_all_mined_once(node: Node, account: str, start: int, receipts: list[dict[str, Any]]) -> None:
    """Every transaction mined, each once, and the account's nonce advanced by exactly their number: the nonces
    are contiguous and none was lost.  (Ganache may report a wrong ``nonce`` for a transaction that arrived
    while another with its nonce was pooled, so the count is what is checked on both engines.)"""
    hashes = {r["transactionHash"] for r in receipts}
    assert len(hashes) == len(receipts)
    for h in hashes:
        assert node.rpc("eth_getTransactionReceipt", h)["status"] == "0x1"
    assert int(node.rpc("eth_getTransactionCount", account, "latest"), 16) == start + len(receipts)


def recipient(i: int) -> str:
    return Account.from_key(keccak(text=f"test-sender/recipient/{i}")).address


# -- concurrency ----------------------------------------------------------------------------------


def _many_threads(node: Node, threads: int, per_thread: int, seed: int) -> None:
    """``threads`` threads share one account; each sends ``per_thread`` transactions, some through ChainClient
    (gas estimated), some through the sender directly (fixed gas), waiting at once or after a batch."""
    acct = funded(node, f"many-{seed}")
    endpoint_for(node.url, "many", QUICK)
    clients = [ChainClient(node.url, name="many") for _ in range(threads)]
    start = int(node.rpc("eth_getTransactionCount", acct.address, "latest"), 16)
    receipts: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        rnd = random.Random(seed * 1000 + t)
        pending: list[PendingTx] = []
        try:
            for i in range(per_thread):
                to, value = recipient(rnd.randrange(50)), rnd.randrange(1, 10**6)
                if rnd.random() < 0.3:
                    r = clients[t].transfer(acct, to, value)
                    with lock:
                        receipts.append({"transactionHash": "0x" + bytes(r["transactionHash"]).hex()})
                else:
                    pending.append(clients[t].sender(acct).submit(to, value=value, gas=21_000, contract="test",
                                                                  function=f"t{t}.{i}"))
            done = [p.wait(60) for p in pending]
            with lock:
                receipts.extend(done)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert not errors, errors
    assert len(receipts) == threads * per_thread
    assert_all_mined_once(node, acct.address, start, receipts)
    assert len({id(c.sender(acct)) for c in clients}) == 1  # one sender per account and chain


def test_concurrent_senders_of_one_account_on_anvil_automine(nodes):
    _many_threads(engine(nodes, "anvil"), threads=8, per_thread=15, seed=1)


@pytest.mark.slow
def test_concurrent_senders_of_one_account_on_anvil_with_a_block_time(nodes):
    _many_threads(engine(nodes, "anvil", 1), threads=6, per_thread=10, seed=2)


@pytest.mark.ganache
@pytest.mark.slow
def test_concurrent_senders_of_one_account_on_ganache(nodes):
    _many_threads(engine(nodes, "ganache"), threads=6, per_thread=10, seed=3)


@pytest.mark.ganache
@pytest.mark.slow
def test_concurrent_senders_of_one_account_on_ganache_with_a_block_time(nodes):
    _many_threads(engine(nodes, "ganache", 1), threads=6, per_thread=10, seed=4)


# -- a stale nonce ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,block_time", [("anvil", 0), pytest.param("ganache", 1, marks=pytest.mark.ganache)])
def test_another_client_of_the_same_account_makes_the_nonce_stale(nodes, kind, block_time):
    """A second client (its own sender, as in another process) sends from the account between two of ours."""
    node = engine(nodes, kind, block_time)
    acct = funded(node, "stale")
    ours = sender_for(node.url, acct, name="ours")
    theirs = TxSender(Endpoint(node.url, "theirs", QUICK), acct)
    first = ours.submit(recipient(1), value=1, gas=21_000)
    other = theirs.submit(recipient(2), value=2, gas=21_000)  # same nonce as ``first`` on Ganache (pool unseen)
    second = ours.submit(recipient(3), value=3, gas=21_000)  # our cached nonce is taken now
    receipts = [p.wait(30) for p in (first, other, second)]
    assert_all_mined_once(node, acct.address, 0, receipts)


# -- dropped transactions ---------------------------------------------------------------------------


def _in_pool(node: Node, tx_hash: str) -> bool:
    tx = node.rpc("eth_getTransactionByHash", tx_hash)
    return tx is not None and tx["blockNumber"] is None


def _waiting(handles: list[PendingTx]) -> tuple[list[threading.Thread], list[Any]]:
    results: list[Any] = [None] * len(handles)

    def wait(i: int) -> None:
        try:
            results[i] = handles[i].wait(30)
        except BaseException as exc:  # noqa: BLE001 - checked by the test
            results[i] = exc

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(len(handles))]
    for t in threads:
        t.start()
    return threads, results


def test_dropped_transactions_are_broadcast_again_and_mined(nodes):
    """Anvil without mining: the middle of three is dropped (Anvil drops its dependant too), the first mined;
    the senders' waiters put both back in the pool with the same signed bytes, and the next block has them."""
    node = engine(nodes, "anvil", 0, "--no-mining")
    endpoint_for(node.url, "dropping", QUICK)
    sender = sender_for(node.url, deployer())
    handles = [sender.submit(recipient(i), value=i + 1, gas=21_000, contract="test", function=f"t{i}")
               for i in range(3)]
    original = [h.tx_hash for h in handles]
    assert node.rpc("anvil_dropTransaction", original[1]) == original[1]
    assert not _in_pool(node, original[2])  # dropped with it
    node.rpc("evm_mine")
    threads, results = _waiting(handles)
    wait_until(lambda: _in_pool(node, original[1]) and _in_pool(node, original[2]), "the re-broadcasts")
    node.rpc("evm_mine")
    for t in threads:
        t.join(60)
    assert [r["transactionHash"] for r in results] == original  # the same signed transactions
    assert mined_nonces(node, results) == [0, 1, 2]


def test_a_transaction_dropped_again_is_replaced_with_a_higher_fee(nodes):
    node = engine(nodes, "anvil", 0, "--no-mining")
    endpoint_for(node.url, "replacing", QUICK)
    handle = sender_for(node.url, deployer()).submit(recipient(9), value=9, gas=21_000, contract="test",
                                                     function="replaced")
    first_price = handle.gas_price
    threads, results = _waiting([handle])
    node.rpc("anvil_dropTransaction", handle.tx_hash)
    wait_until(lambda: _in_pool(node, handle.tx_hash), "the re-broadcast of the same bytes")
    node.rpc("anvil_dropTransaction", handle.tx_hash)
    replacement = wait_until(lambda: len(handle.hashes) > 1 and _in_pool(node, handle.hashes[-1])
                             and handle.hashes[-1], "the replacement")
    node.rpc("evm_mine")
    threads[0].join(60)
    (receipt,) = results
    assert receipt["transactionHash"] == replacement != handle.tx_hash
    mined = node.rpc("eth_getTransactionByHash", replacement)
    assert int(mined["nonce"], 16) == 0
    assert int(mined["gasPrice"], 16) * 8 >= first_price * 9  # at least 12.5 % more


def test_a_hole_nobody_fills_is_filled_and_later_transactions_mine(nodes):
    """A transaction fails for good after its broadcast (dropped, and the account can no longer pay for it or a
    replacement); the one queued behind it must not wedge: its nonce is filled with a no-op and both mine."""
    node = engine(nodes, "anvil", 0, "--no-mining")
    endpoint_for(node.url, "holes", QUICK)
    acct = Account.from_key(keccak(text="test-sender/holes"))
    node.rpc("anvil_setBalance", acct.address, hex(10**18))
    sender = sender_for(node.url, acct)
    big = sender.submit(recipient(1), value=9 * 10**17, gas=21_000, contract="test", function="big")
    small = sender.submit(recipient(2), value=1, gas=21_000, contract="test", function="small")
    node.rpc("anvil_dropTransaction", big.tx_hash)  # drops ``small`` too
    node.rpc("anvil_setBalance", acct.address, hex(10**17))
    threads, results = _waiting([big, small])
    wait_until(lambda: big.done() and int(node.rpc("eth_getTransactionCount", acct.address, "pending"), 16) == 2,
               "the failed transaction's nonce filled and the later one back in the pool")
    node.rpc("evm_mine")
    for t in threads:
        t.join(60)
    assert isinstance(results[0], ChainError) and "could not be replaced" in str(results[0]), results[0]
    assert results[1]["transactionHash"] == small.tx_hash
    assert int(node.rpc("eth_getTransactionCount", acct.address, "latest"), 16) == 2
    later = sender.submit(recipient(3), value=1, gas=21_000)
    node.rpc("evm_mine")
    assert later.nonce == 2 and later.wait(10)["status"] == "0x1"


# -- a node restart -------------------------------------------------------------------------------------


def test_a_node_restart_mid_run_loses_nothing(nodes, tmp_path: Path):
    """Four threads send; Anvil is stopped (state dumped) and started again on the port it had reported.

    Anvil's dump on SIGTERM can hold the effects of the block being mined while losing the block itself (its
    transaction and receipt are gone, the nonce counts as used).  The sender cannot know whether such a
    transaction ran, so it fails it with a named error instead of sending it again: every recipient must still
    hold exactly its one wei, whichever way each transaction ended."""
    state = tmp_path / "state.json"
    node = engine(nodes, "anvil", 0, "--state", str(state))
    endpoint_for(node.url, "restarting", QUICK)
    sender = sender_for(node.url, deployer())
    receipts: list[dict[str, Any]] = []
    unaccounted: list[ChainError] = []
    errors: list[BaseException] = []

    def work(t: int) -> None:
        for i in range(20):
            try:
                receipts.append(sender.transact(recipient(t * 100 + i), value=1, gas=21_000, contract="test",
                                                function=f"t{t}.{i}", timeout=60))
            except ChainError as exc:
                (unaccounted if "holds no transaction with it" in str(exc) else errors).append(exc)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(receipts) >= 20, "the first transactions")
    node.stop(signal.SIGTERM)  # Anvil dumps its state on SIGTERM
    restarted = start_anvil("--state", str(state), port=node.port)
    nodes.append(restarted)
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(receipts) + len(unaccounted) == 80
    assert len(unaccounted) <= 1, unaccounted  # only the block being mined at the dump can lose its record
    nonces = mined_nonces(restarted, receipts)
    assert len(set(nonces)) == len(receipts)  # each on the restarted chain, at a nonce of its own
    # Each transaction ran exactly once: every recipient holds exactly its one wei.  (A transaction lost with
    # the pool may come back at a new nonce, its old one filled by a no-op, so the nonces need not be 0..79.)
    for t in range(4):
        for i in range(20):
            assert int(restarted.rpc("eth_getBalance", recipient(t * 100 + i), "latest"), 16) == 1
    assert sender.endpoint.epoch >= 1  # the sender noticed the restart


def _left_the_pool(nodes: list[Node], label: str, to: str, function: str) -> tuple[Node, LocalAccount, PendingTx]:
    """Anvil without mining, a funded account of its own, and one transaction of it sent and then dropped."""
    node = engine(nodes, "anvil", 0, "--no-mining")
    endpoint_for(node.url, label, QUICK)
    acct = Account.from_key(keccak(text=f"test-sender/{label}"))
    node.rpc("anvil_setBalance", acct.address, hex(10**21))
    ours = sender_for(node.url, acct).submit(to, value=1, gas=21_000, contract="test", function=function)
    node.rpc("anvil_dropTransaction", ours.tx_hash)
    return node, acct, ours


def test_a_nonce_taken_by_another_transaction_is_sent_again_at_a_new_nonce(nodes):
    """Ours leaves the pool; another client of the account (another process) sends at that nonce and it mines.
    The sender finds that transaction on the chain, so ours cannot have run: it goes again at the next nonce."""
    node, acct, ours = _left_the_pool(nodes, "taken", recipient(1), "ours")
    theirs = TxSender(Endpoint(node.url, "theirs", QUICK), acct).submit(recipient(2), value=2, gas=21_000)
    assert theirs.nonce == ours.nonce == 0
    node.rpc("evm_mine")
    node.rpc("evm_setAutomine", True)
    receipt = ours.wait(30)
    assert receipt["transactionHash"] != ours.tx_hash
    assert mined_nonces(node, [theirs.wait(5), receipt]) == [0, 1]
    assert int(node.rpc("eth_getBalance", recipient(1), "latest"), 16) == 1
    assert int(node.rpc("eth_getBalance", recipient(2), "latest"), 16) == 2


def test_a_nonce_used_with_no_transaction_on_the_chain_is_never_sent_again(nodes):
    """The node counts our nonce as used, yet holds no transaction with it (history lost with a restart; here
    the nonce is set by hand after ours left the pool).  Ours may have run: the sender refuses to send it again
    and says so, and the account's nonce shows nothing else was sent."""
    node, acct, ours = _left_the_pool(nodes, "unaccounted", recipient(3), "lost")
    node.rpc("anvil_setNonce", acct.address, hex(ours.nonce + 1))
    node.rpc("evm_setAutomine", True)
    with pytest.raises(ChainError, match=r"test\.lost .*nonce 0.*holds no transaction with it.*not sent again"):
        ours.wait(30)
    assert int(node.rpc("eth_getTransactionCount", acct.address, "pending"), 16) == 1
    assert int(node.rpc("eth_getBalance", recipient(3), "latest"), 16) == 0
    later = sender_for(node.url, acct).transact(recipient(4), value=1, gas=21_000)
    assert int(node.rpc("eth_getTransactionByHash", later["transactionHash"])["nonce"], 16) == 1


def test_a_node_that_stays_down_gives_a_clear_error(nodes):
    node = engine(nodes, "anvil", 0, "--no-mining")
    endpoint_for(node.url, "vanishing", SenderTiming(stall_after=0.2, reconnect=0.5))
    sender = sender_for(node.url, deployer())
    handle = sender.submit(recipient(1), value=1, gas=21_000, contract="Ledger", function="commit")
    node.stop()
    with pytest.raises(ChainError) as waited:
        handle.wait(10)
    assert "vanishing" in str(waited.value) and node.url in str(waited.value)
    assert handle.tx_hash in str(waited.value) and "Ledger.commit" in str(waited.value)
    with pytest.raises(ChainError) as sent:
        sender.submit(recipient(2), value=1, gas=21_000, contract="Ledger", function="commit")
    assert "vanishing" in str(sent.value) and "Ledger.commit" in str(sent.value) and "not sent" in str(sent.value)


class SilentBroadcasts:
    """A JSON-RPC front for ``node`` (a real socket) that forwards every request but never answers an
    ``eth_sendRawTransaction``: the fault of Ganache's eager mining, which takes a transaction that lands while
    another block is mined and never answers the request that brought it."""

    def __init__(self, node_url: str):
        import http.server
        import urllib.request

        self.release = threading.Event()
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                forwarded = urllib.request.Request(node_url, body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(forwarded, timeout=10) as answer:
                    reply = answer.read()
                if json.loads(body)["method"] == "eth_sendRawTransaction":
                    front.release.wait(30)  # the node has it; its answer never comes
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_broadcast_the_node_takes_but_never_answers_counts_as_sent(nodes, monkeypatch):
    from mbds_py.chain import sender as sender_module

    node = engine(nodes, "anvil")
    front = SilentBroadcasts(node.url)
    try:
        monkeypatch.setattr(sender_module, "SEND_READ_TIMEOUT", 0.3)
        endpoint_for(front.url, "silent", SenderTiming(stall_after=0.2, reconnect=1.0, slow_answer=1.0))
        account = funded(node, "silent")
        sender = sender_for(front.url, account)
        start = int(node.rpc("eth_getTransactionCount", account.address, "latest"), 16)
        handles = [sender.submit(recipient(i), value=1, gas=21_000, contract="Ledger", function="commit")
                   for i in range(3)]
        receipts = [h.wait(30) for h in handles]
    finally:
        front.close()
    assert [h.nonce for h in handles] == [start, start + 1, start + 2]
    assert_all_mined_once(node, account.address, start, receipts)


def test_a_receipt_timeout_names_the_chain_the_function_and_the_hash(nodes):
    node = engine(nodes, "anvil", 0, "--no-mining")
    endpoint_for(node.url, "idle", QUICK)
    handle = sender_for(node.url, deployer()).submit(recipient(1), value=1, gas=21_000, contract="Ledger",
                                                     function="commit")
    with pytest.raises(ChainError) as info:
        handle.wait(0.5)
    text = str(info.value)
    assert "idle" in text and "Ledger.commit" in text and handle.tx_hash in text and "not mined" in text


# -- reverts ------------------------------------------------------------------------------------------


def _registry(node: Node) -> tuple[ChainClient, IdentityRegistryAgent, Participant]:
    client = ChainClient(node.url, name="reverts")
    kmc = Account.from_key(keccak(text="test-sender/kmc"))
    art = artifact("IdentityRegistry")
    address, _ = client.deploy("IdentityRegistry", art.abi, art.bytecode, deployer(), kmc.address,
                               *GovernanceParams().as_args())
    hospital = Participant(keccak(text="s/hospital"), "h", Role.HOSPITAL,
                           Account.from_key(keccak(text="s/h")).address, pre_key("s/h"), peks_key("s/h"))
    return client, IdentityRegistryAgent(client, address), hospital


@pytest.mark.parametrize("kind", ["anvil", pytest.param("ganache", marks=[pytest.mark.ganache, pytest.mark.slow])])
def test_a_revert_is_decoded_to_the_custom_error_when_estimated_and_when_mined(nodes, kind):
    node = engine(nodes, kind)
    client, agent, hospital = _registry(node)
    with reverts("IdentityRegistryNotKmc", deployer().address):  # found by gas estimation
        agent.register(deployer(), hospital)
    fn = agent.contract.functions.register(hospital.id, hospital.address, int(hospital.role), hospital.institution,
                                           hospital.pre_key, hospital.peks_key)
    with reverts("IdentityRegistryNotKmc", deployer().address):  # fixed gas: mined with status 0, replayed
        client.transact(fn, deployer(), contract="IdentityRegistry", gas=500_000)
    with pytest.raises(ContractRevert) as info:  # the same through the sender, with the client's decoder
        client.sender(deployer()).transact(agent.address, fn.build_transaction(
            {"from": deployer().address, "gas": 1, "gasPrice": 1, "nonce": 0, "chainId": CHAIN_ID})["data"],
            gas=500_000, contract="IdentityRegistry", function="register", decoder=client.errors)
    assert info.value.error_name == "IdentityRegistryNotKmc"
    # the reverted transactions used their nonces; the next one goes through
    assert client.transfer(deployer(), recipient(1), 1)["status"] == 1


# -- the proxy's audit path ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind,block_time", [
    ("anvil", 0), pytest.param("ganache", 1, marks=[pytest.mark.ganache, pytest.mark.slow])])
def test_the_proxys_audits_share_the_sender_and_decode_refusals(nodes, kind, block_time):
    """recordAccess from many threads of one proxy account (the collision case on Ganache with a block time),
    and a stale epoch refused by the contract itself, decoded from the mined, reverted transaction."""
    from mbds_py.sharing.agent import AccessPolicyAgent, AccessPolicyRefusal
    from mbds_py.sharing.policy import DAY, Action, PolicyConfig, Scope
    from mbds_py.sharing.proxy import AuditSender

    node = engine(nodes, kind, block_time)
    endpoint_for(node.url, "audit", QUICK)
    client = ChainClient(node.url, name="audit")
    accounts = {label: Account.from_key(keccak(text=f"test-sender/audit/{label}"))
                for label in ("kmc", "hospital", "doctor", "patient", "authority", "authority-2", "proxy")}
    funding = client.sender(deployer())
    for p in [funding.submit(a.address, value=10**21, gas=21_000) for a in accounts.values()]:
        p.wait(30)
    art = artifact("IdentityRegistry")
    registry_address, _ = client.deploy("IdentityRegistry", art.abi, art.bytecode, deployer(),
                                        accounts["kmc"].address, *GovernanceParams().as_args())
    registry = IdentityRegistryAgent(client, registry_address)
    ids = {label: keccak(text=f"test-sender/audit-id/{label}") for label in accounts}
    roles = {"hospital": Role.HOSPITAL, "doctor": Role.DOCTOR, "patient": Role.PATIENT,
             "authority": Role.AUTHORITY_NATIONAL, "authority-2": Role.AUTHORITY_PROVINCIAL}
    for label, role in roles.items():
        registry.register(accounts["kmc"], Participant(
            ids[label], label, role, accounts[label].address, pre_key(label), peks_key(label),
            institution=ids["hospital"] if label == "doctor" else b"\0" * 32))
    policy = AccessPolicyAgent.deploy(client, deployer(), registry_address, PolicyConfig())
    policy.add_proxy(Council(accounts["authority"], accounts["authority-2"]), accounts["proxy"].address)  # k = 2
    record = keccak(text="test-sender/audit-record")

    def grant() -> None:
        now = policy.now()
        policy.grant(accounts["patient"], ids["doctor"], scope=Scope.RECORD, target=record, actions=Action.READ,
                     not_before=now - 60, expires_at=now + DAY)

    grant()
    audit = AuditSender(policy, accounts["proxy"])
    assert audit.sender is client.sender(accounts["proxy"])
    start = int(node.rpc("eth_getTransactionCount", accounts["proxy"].address, "latest"), 16)
    results: list[Any] = []

    def work() -> None:
        for _ in range(4):
            try:
                results.append(audit.record_access(ids["patient"], ids["doctor"], record, b"\0" * 32,
                                                   int(Action.READ), 0))
            except BaseException as exc:  # noqa: BLE001
                results.append(exc)

    def agent_work() -> None:  # the same account through ChainClient (gas estimated), as the proxy's agent does
        for _ in range(4):
            try:
                event = policy.record_access(accounts["proxy"], ids["patient"], ids["doctor"], record,
                                             int(Action.READ), 0)
                results.append({"tx": "0x" + bytes(event.tx_hash).hex(), "epoch": event.epoch})
            except BaseException as exc:  # noqa: BLE001
                results.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)] + [threading.Thread(target=agent_work)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [r for r in results if not isinstance(r, dict) or r["epoch"] != 0] == []
    assert len({r["tx"] for r in results}) == 28
    assert int(node.rpc("eth_getTransactionCount", accounts["proxy"].address, "latest"), 16) == start + 28
    policy.revoke(accounts["patient"], ids["doctor"], scope=Scope.RECORD, target=record)
    grant()
    with pytest.raises(AccessPolicyRefusal) as info:  # gas is fixed: mined with status 0, replayed to decode
        audit.record_access(ids["patient"], ids["doctor"], record, b"\0" * 32, int(Action.READ), 0)
    assert info.value.error_name == "AccessPolicyStaleEpoch"
    assert info.value.args_decoded == (ids["patient"], ids["doctor"], 0, 1)
    assert audit.record_access(ids["patient"], ids["doctor"], record, b"\0" * 32, int(Action.READ), 1)["epoch"] == 1
