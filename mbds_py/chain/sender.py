"""One transaction path: a pipelined, thread-safe sender per (chain, account).

Every write to a chain goes through the :class:`TxSender` of its account,
obtained with :func:`sender_for` from a process-wide registry keyed by
(chain URL, address), so every agent and client of one process that writes
from one account shares one nonce sequence.

``submit`` assigns the nonce, signs and broadcasts under the sender's lock
(nonces reach the node in order, and a broadcast the node refuses for good
frees its nonce for the next transaction) and returns a :class:`PendingTx`
at once; ``PendingTx.wait`` polls the receipt with exponential backoff and,
while it waits, repairs what went wrong on the way:

* the node says the nonce is stale (another client sent from the account):
  re-read the pending nonce and re-sign; a nonce taken by another transaction
  in the pool (``replacement transaction underpriced``, Ganache's ``transaction
  underpriced`` or ``transaction can't be replaced, mining has already
  started``): move on to the next nonce;
* the transaction left the pool without a receipt (dropped, node restarted
  without it): re-broadcast the same signed bytes, then replace it at the same
  nonce with a fee at least 12.5 % higher; a nonce consumed by another
  transaction (found on the chain): send again at a fresh nonce; a nonce the
  node counts as used with no transaction on the chain (history lost with a
  restart): fail with an error, never send again (it may have run); a hole
  below the transaction that nobody fills: fill it with a no-op so the account
  does not wedge;
* the node does not answer (restart): retry with backoff, then raise a
  :class:`~mbds_py.errors.ChainError` that names the chain and what was not done.

Reverts become the contract's custom error (:class:`~mbds_py.errors.ContractRevert`):
during gas estimation, or, for a transaction mined with status 0 (a fixed gas
limit skips estimation), by replaying it as ``eth_call`` at its block.
Fees are legacy ``gasPrice`` (Anvil, Ganache, geth, Besu), cached briefly.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from ..errors import ChainError, ContractRevert

log = logging.getLogger(__name__)

_CONNECTION_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                      ConnectionError)
_KNOWN = ("already known", "already imported", "known transaction")
_NONCE_LOW = ("nonce too low", "doesn't have the correct nonce", "nonce has already been used", "oldnonce")
_OCCUPIED = ("underpriced", "can't be replaced", "mining has already started")
READ_TIMEOUT = 5.0  # seconds for any answer but a broadcast's (Ganache's eager mining answers those late)
SEND_READ_TIMEOUT = 10.0  # a broadcast not answered by then is sent again (the same signed bytes: idempotent)
_MAX_ATTEMPTS = 16  # broadcasts of one transaction before giving up (each answers a distinct refusal)
_HOLDER_SCAN = 256  # blocks searched back from the head for the transaction that used a nonce


class RevertDecoder(Protocol):
    """Turns revert data into the contract's custom error (see ``ErrorDecoder``)."""

    def decode(self, data: bytes, contract: str = "contract") -> ContractRevert: ...


PRIORITY_TIP = 10**9  # 1 gwei above twice the base fee: what a transaction offers its block producer


@dataclass(frozen=True)
class SenderTiming:
    """How a sender polls, when it starts repairing, how long it waits (seconds)."""

    poll_first: float = 0.002  # first receipt poll; doubles up to poll_cap
    poll_cap: float = 0.25
    stall_after: float = 3.0  # no receipt this long after a broadcast: look at the pool (dropped? superseded?)
    replace_after: float = 15.0  # pending at the head of the account this long: replace with a higher fee
    reconnect: float = 15.0  # node unreachable (connection refused or reset) this long: give up with ChainError
    slow_answer: float = 60.0  # node reachable but not answering (read timeouts) this long: give up likewise
    price_ttl: float = 2.0  # gas price cache
    receipt_timeout: float = 120.0


class RpcError(ChainError):
    """The node answered a JSON-RPC request with an error."""

    def __init__(self, method: str, error: dict[str, Any], where: str):
        self.method = method
        self.code = error.get("code")
        self.message = str(error.get("message", error))
        self.data = error.get("data")
        super().__init__(f"{where}: {method} refused: {self.message}")

    def has(self, phrases: tuple[str, ...]) -> bool:
        text = self.message.lower()
        return any(p in text for p in phrases)

    def revert_data(self) -> bytes | None:
        """The revert data of an ``execution reverted`` error (Anvil, Ganache, geth formats), else None."""
        data = revert_bytes(self.data)
        if data is not None:
            return data
        return b"" if "revert" in self.message.lower() else None


def revert_bytes(data: Any) -> bytes | None:
    """Revert data from a JSON-RPC error's ``data`` (a hex string, or nested dicts as Ganache sends)."""
    while isinstance(data, dict):
        data = data.get("data") or data.get("result")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


class Endpoint:
    """One chain by URL: JSON-RPC with reconnection, chain ID, a briefly cached gas price."""

    def __init__(self, url: str, name: str = "chain", timing: SenderTiming | None = None, *,
                 request_timeout: float = 30.0):
        self.url = url
        self.name = name
        self.timing = timing or SenderTiming()
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=32)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.request_timeout = request_timeout
        self.epoch = 0  # bumped when the node answers again after being unreachable (restart)
        self._chain_id: int | None = None
        self._price: tuple[float, int] | None = None
        self._lock = threading.Lock()
        self._ids = iter(range(1, 1 << 62))

    @property
    def label(self) -> str:
        return f"{self.name} ({self.url})"

    def rpc(self, method: str, params: list[Any], *, doing: str) -> Any:
        """Call ``method``; failures to connect are retried with backoff for ``timing.reconnect`` s, requests
        the node does not answer in time for ``timing.slow_answer`` s.

        ``doing`` names what the caller was about (it ends up in the error if the node stays away).  Reads
        time out after ``READ_TIMEOUT`` s (broadcasts after ``SEND_READ_TIMEOUT`` s) and are asked again:
        Ganache sometimes never answers an ``eth_estimateGas`` or an ``eth_sendRawTransaction`` that overlaps
        the mining of a block.
        """
        start = time.monotonic()
        delay, restarted = 0.05, False
        read = min(self.request_timeout, SEND_READ_TIMEOUT if method == "eth_sendRawTransaction" else READ_TIMEOUT)
        while True:
            try:
                resp = self.session.post(self.url, json={"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                                                         "params": params}, timeout=(3.0, read))
                reply = resp.json()
            except _CONNECTION_ERRORS as exc:
                elapsed = time.monotonic() - start
                # a node that accepts the connection but is slow to answer (a loaded Ganache) gets longer
                slow = isinstance(exc, requests.ReadTimeout)
                budget = self.timing.slow_answer if slow else self.timing.reconnect
                if elapsed >= budget:
                    raise ChainError(f"{self.label}: node unreachable or not answering for {elapsed:.1f} s "
                                     f"({type(exc).__name__}); {doing}. Start the node (or fix the URL) and retry."
                                     ) from None
                restarted = restarted or not slow
                time.sleep(min(delay, max(budget - elapsed, 0.0)))
                delay = min(delay * 2, 1.0)
                continue
            except ValueError:
                raise ChainError(f"{self.label}: {method} answered HTTP {resp.status_code} without JSON; "
                                 f"{doing}. Is this URL an EVM JSON-RPC endpoint?") from None
            if restarted:
                with self._lock:
                    self.epoch += 1
                    self._price = None
                log.warning("%s answers again after %.1f s", self.label, time.monotonic() - start)
            if "error" in reply:
                raise RpcError(method, reply["error"], self.label)
            return reply.get("result")

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.rpc("eth_chainId", [], doing="could not read the chain ID"), 16)
        return self._chain_id

    def gas_price(self, *, fresh: bool = False) -> int:
        """Twice the latest base fee (head room for a rising one) plus a fixed tip, cached ``timing.price_ttl`` s;
        the node's ``eth_gasPrice`` on chains without a base fee.

        Never a multiple of ``eth_gasPrice`` where there is a base fee: nodes derive that from the tips of
        recent transactions (Anvil's fee oracle), so paying a multiple of it feeds back and doubles the price
        with every block until no account can pay for gas.
        """
        now = time.monotonic()
        with self._lock:
            cached = self._price
        if fresh or cached is None or now - cached[0] > self.timing.price_ttl:
            head = self.rpc("eth_getBlockByNumber", ["latest", False], doing="could not read the latest block")
            base = int((head or {}).get("baseFeePerGas") or "0x0", 16)
            if base:
                price = 2 * base + PRIORITY_TIP
            else:
                price = max(int(self.rpc("eth_gasPrice", [], doing="could not read the gas price"), 16), 1)
            with self._lock:
                self._price = cached = (now, price)
        return cached[1]


@dataclass(eq=False)
class PendingTx:
    """A broadcast transaction; ``wait()`` (alias ``result()``) returns its receipt (raw JSON-RPC form)."""

    sender: TxSender
    to: str | None
    data: bytes
    value: int
    gas: int
    contract: str
    function: str
    decoder: RevertDecoder | None
    nonce: int = -1
    gas_price: int = 0
    raw: bytes = b""
    hashes: list[str] = field(default_factory=list)  # every broadcast version at the current nonce, oldest first
    first_hash: str = ""
    sent_at: float = 0.0
    rebroadcasts: int = 0
    superseded: int = 0  # repair checks in a row that found the nonce used and none of our versions mined
    hole: int | None = None  # the nonce below ours the last repair check found unused
    receipt: dict[str, Any] | None = None
    error: Exception | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def tx_hash(self) -> str:
        """The hash ``submit`` handed out (the first version broadcast; a replacement has another)."""
        return self.first_hash

    @property
    def what(self) -> str:
        return f"{self.contract}.{self.function}"

    def done(self) -> bool:
        return self.receipt is not None or self.error is not None

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """The successful receipt; raises ContractRevert (decoded) on a revert, ChainError otherwise."""
        timing = self.sender.endpoint.timing
        timeout = timing.receipt_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if not self._lock.acquire(timeout=timeout):
            raise self._timeout(timeout)
        try:
            delay = timing.poll_first
            next_check = self.sent_at + timing.stall_after
            while not self.done():
                receipt = self._find_receipt()
                if receipt is not None:
                    self._settle(receipt)
                    break
                now = time.monotonic()
                if now >= deadline:
                    raise self._timeout(timeout)
                if now >= next_check:
                    self.sender._recover(self)  # noqa: SLF001 - the sender repairs its own transactions
                    next_check = time.monotonic() + timing.stall_after
                    delay = timing.poll_first
                    continue
                time.sleep(min(delay, deadline - now, max(next_check - now, 0.0)))
                delay = min(delay * 2, timing.poll_cap)
        finally:
            self._lock.release()
        if self.error is not None:
            raise self.error
        assert self.receipt is not None
        return self.receipt

    result = wait

    def _timeout(self, timeout: float) -> ChainError:
        return ChainError(f"{self.sender.endpoint.label}: {self.what} transaction {self.tx_hash} (nonce {self.nonce}, "
                          f"from {self.sender.address}) not mined within {timeout:.0f} s; is the node mining "
                          f"(automine or a block time)? Wait again with a longer timeout.")

    def _find_receipt(self) -> dict[str, Any] | None:
        for h in reversed(self.hashes):
            receipt = self.sender.endpoint.rpc("eth_getTransactionReceipt", [h],
                                               doing=f"could not read the receipt of {self.what} transaction {h} "
                                                     f"(sent; its outcome is unknown)")
            if receipt is not None and receipt.get("blockNumber") is not None:
                return receipt
        return None

    def _settle(self, receipt: dict[str, Any]) -> None:
        self.sender._retire(self)  # noqa: SLF001
        if int(receipt["status"], 16) == 1:
            self.receipt = receipt
        else:
            self.error = self._revert(receipt)

    def _revert(self, receipt: dict[str, Any]) -> ChainError:
        """Replay a status-0 transaction as ``eth_call`` (state before its block, then after) to decode it:
        the contract's custom error, or a ChainError when it ran out of gas."""
        ep = self.sender.endpoint
        block = int(receipt["blockNumber"], 16)
        call = {"from": self.sender.address, "data": "0x" + self.data.hex(), "gas": hex(self.gas),
                "value": hex(self.value)}
        if self.to:
            call["to"] = self.to
        for tag in (hex(max(block - 1, 0)), hex(block)):
            try:
                ep.rpc("eth_call", [call, tag], doing=f"could not replay reverted {self.what} transaction")
            except RpcError as exc:
                data = exc.revert_data()
                if data is not None:
                    return _decoder(self.decoder).decode(data, self.contract)
                if "gas" in exc.message.lower():
                    return ChainError(f"{ep.label}: {self.what} transaction {receipt['transactionHash']} ran out "
                                      f"of gas (limit {self.gas}); send it with a higher gas limit")
        return ContractRevert(self.contract, "UnknownError", (),
                              f"{self.what} transaction {receipt['transactionHash']} reverted in block {block}; "
                              f"replaying it did not reproduce the revert")


def _decoder(decoder: RevertDecoder | None) -> RevertDecoder:
    if decoder is not None:
        return decoder
    from .client import ErrorDecoder

    return ErrorDecoder()


class TxSender:
    """The one transaction sender of an account on a chain (see the module docstring)."""

    def __init__(self, endpoint: Endpoint, account: LocalAccount):
        self.endpoint = endpoint
        self.account = account
        self.address = to_checksum_address(account.address)
        self._lock = threading.RLock()
        self._next: int | None = None  # next nonce to assign; None: read it from the node
        self._inflight: dict[int, PendingTx] = {}  # broadcast, receipt not seen yet
        self._epoch = endpoint.epoch

    # -- public ---------------------------------------------------------------------------------

    def submit(self, to: str | None, data: bytes | str = b"", *, value: int = 0, gas: int | None = None,
               contract: str = "contract", function: str = "transaction",
               decoder: RevertDecoder | None = None) -> PendingTx:
        """Assign a nonce, sign and broadcast; returns at once with the pending transaction.

        ``data`` is bytes or 0x-hex; ``to=None`` deploys it (init code).  ``gas=None`` estimates it
        (reverts raise the decoded custom error here); a fixed ``gas`` skips estimation, and a revert shows
        when waiting.
        """
        to = to_checksum_address(to) if to else None
        data = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else bytes(data)
        tx = PendingTx(self, to, data, value, 0, contract, function, decoder)
        tx.gas = gas if gas is not None else self._estimate(tx)
        with self._lock:
            self._sign_and_send(tx)
        track(tx)
        return tx

    def transact(self, to: str | None, data: bytes | str = b"", *, value: int = 0, gas: int | None = None,
                 contract: str = "contract", function: str = "transaction", decoder: RevertDecoder | None = None,
                 timeout: float | None = None) -> dict[str, Any]:
        """``submit`` and ``wait``: the successful receipt (raw JSON-RPC form)."""
        return self.submit(to, data, value=value, gas=gas, contract=contract, function=function,
                           decoder=decoder).wait(timeout)

    def reset(self) -> None:
        """Forget every nonce (after ``evm_revert``): the next transaction re-reads the node's."""
        with self._lock:
            self._next = None
            self._inflight.clear()

    # -- nonces ---------------------------------------------------------------------------------

    def _node_nonce(self, tag: str = "pending") -> int:
        return int(self.endpoint.rpc("eth_getTransactionCount", [self.address, tag],
                                     doing=f"could not read the nonce of {self.address}"), 16)

    def _resync(self) -> int:
        """The next free nonce: the node's pending count, past everything this sender has in flight."""
        ours = max(self._inflight) + 1 if self._inflight else 0
        self._next = max(self._node_nonce(), ours)
        return self._next

    def _assign(self) -> int:
        if self._epoch != self.endpoint.epoch:  # the node restarted: what it knows may have changed
            self._epoch, self._next = self.endpoint.epoch, None
        if not self._inflight:  # idle: re-read the node's count (another process may have sent meanwhile)
            self._next = None
        if len(self._inflight) > 1024:  # transactions nobody waited for: forget the mined ones
            mined = self._node_nonce("latest")
            self._inflight = {n: t for n, t in self._inflight.items() if n >= mined}
        return self._next if self._next is not None else self._resync()

    def _retire(self, tx: PendingTx) -> None:
        """``tx`` is no longer in flight at its nonce (mined, moved to another nonce, or failed)."""
        with self._lock:
            if self._inflight.get(tx.nonce) is tx:
                del self._inflight[tx.nonce]

    # -- broadcasting (sender lock held) ----------------------------------------------------------

    def _estimate(self, tx: PendingTx) -> int:
        call: dict[str, Any] = {"from": self.address, "data": "0x" + tx.data.hex(), "value": hex(tx.value)}
        if tx.to:
            call["to"] = tx.to
        try:
            estimate = int(self.endpoint.rpc("eth_estimateGas", [call], doing=f"could not send {tx.what} "
                                                                             f"from {self.address} (not sent)"), 16)
        except RpcError as exc:
            data = exc.revert_data()
            if data is not None:
                raise _decoder(tx.decoder).decode(data, tx.contract) from None
            raise ChainError(f"{self.endpoint.label}: {tx.what} from {self.address} not sent: gas estimation "
                             f"failed: {exc.message}") from None
        return int(estimate * 1.2) + 10_000

    def _sign(self, tx: PendingTx, nonce: int, price: int) -> None:
        fields: dict[str, Any] = {"data": tx.data, "value": tx.value, "gas": tx.gas, "gasPrice": price,
                                  "nonce": nonce, "chainId": self.endpoint.chain_id}
        if tx.to:
            fields["to"] = tx.to
        signed = self.account.sign_transaction(fields)
        tx.nonce, tx.gas_price, tx.raw = nonce, price, bytes(signed.raw_transaction)
        tx.hashes.append("0x" + bytes(signed.hash).hex())

    def _broadcast(self, tx: PendingTx) -> RpcError | None:
        """Send ``tx.raw``; None when the node has it (accepted now or before), else the node's refusal."""
        try:
            self.endpoint.rpc("eth_sendRawTransaction", ["0x" + tx.raw.hex()],
                              doing=f"{tx.what} from {self.address} (nonce {tx.nonce}) was not sent")
        except RpcError as exc:
            if exc.has(_KNOWN) or (exc.has(_NONCE_LOW + _OCCUPIED) and self._known(tx.hashes[-1])):
                return None
            return exc
        except ChainError as unanswered:
            # No answer: Ganache's eager mining can take a transaction and never answer the request that
            # brought it (when it lands while another block is mined). If the node has it, the receipt follows.
            try:
                known = self._known(tx.hashes[-1])
            except ChainError:
                known = False
            if not known:
                raise unanswered from None
        tx.sent_at = time.monotonic()
        return None

    def _known(self, tx_hash: str, *, mined: bool = False) -> bool:
        """Whether the node has this signed transaction (pooled or mined; with ``mined``, mined)."""
        found = self.endpoint.rpc("eth_getTransactionByHash", [tx_hash],
                                  doing=f"could not look up transaction {tx_hash}")
        return found is not None and (not mined or found.get("blockNumber") is not None)

    def _sign_and_send(self, tx: PendingTx) -> None:
        """Give ``tx`` a free nonce and broadcast it, stepping over nonces the node says are taken."""
        price = self.endpoint.gas_price()
        for _ in range(_MAX_ATTEMPTS):
            nonce = self._assign()
            self._sign(tx, nonce, price)
            refusal = self._broadcast(tx)
            if refusal is None:
                tx.sent_at = time.monotonic()
                tx.first_hash = tx.first_hash or tx.hashes[-1]
                self._next = nonce + 1
                self._inflight[nonce] = tx
                return
            tx.hashes.pop()  # that version was refused: never look for its receipt
            if refusal.has(_NONCE_LOW):
                self._next = max(self._node_nonce(), nonce + 1)
            elif refusal.has(_OCCUPIED):
                self._next = nonce + 1  # another transaction of this account holds the nonce in the pool
            elif refusal.revert_data() is not None:  # nodes that execute on send (Ganache vmErrorsOnRPCResponse)
                self._next = None
                raise _decoder(tx.decoder).decode(refusal.revert_data() or b"", tx.contract)
            else:
                raise ChainError(f"{self.endpoint.label}: {tx.what} from {self.address} not sent: {refusal.message}"
                                 ) from None
        self._next = None
        raise ChainError(f"{self.endpoint.label}: {tx.what} from {self.address} not sent: the node refused "
                         f"{_MAX_ATTEMPTS} nonces in a row; is another process flooding this account?")

    # -- repair (called from PendingTx.wait with the transaction's lock held) ----------------------

    def _recover(self, tx: PendingTx) -> None:
        """No receipt for a while: find out why and repair it (see the module docstring)."""
        ep = self.endpoint
        pooled = ep.rpc("eth_getTransactionByHash", [tx.hashes[-1]],
                        doing=f"could not look up {tx.what} transaction {tx.hashes[-1]}")
        if pooled is not None and pooled.get("blockNumber") is not None:
            return  # mined just now: the next poll reads the receipt
        mined = self._node_nonce("latest")
        if mined > tx.nonce:
            if tx._find_receipt() is not None or any(self._known(h, mined=True) for h in tx.hashes):  # noqa: SLF001
                return  # ours is mined: its receipt is on its way
            tx.superseded += 1
            if tx.superseded < 2:  # sending again is the one repair that could run it twice: make sure first
                return
            holder = self._nonce_holder(tx.nonce)
            if holder in tx.hashes:
                return  # ours after all: its receipt is on its way
            if holder is None:
                if tx.superseded >= 3:  # twice in a row: the node counts the nonce used but holds no transaction
                    self._unaccounted(tx)
                return
            log.warning("%s: nonce %d of %s was used by transaction %s; sending %s again at a new nonce",
                        ep.label, tx.nonce, self.address, holder, tx.what)
            with self._lock:
                self._retire(tx)
                superseded = list(tx.hashes)
                tx.hashes.clear()
                try:
                    self._sign_and_send(tx)
                except ChainError as exc:
                    tx.hashes[:] = superseded
                    tx.error = exc
                tx.superseded, tx.rebroadcasts, tx.hole = 0, 0, None
            return
        tx.superseded = 0
        if mined < tx.nonce:
            self._fill_hole(mined, seen_before=tx.hole == mined)
        tx.hole = mined if mined < tx.nonce else None
        if pooled is None:
            if tx.rebroadcasts == 0:
                log.warning("%s: %s transaction %s (nonce %d) left the pool; broadcasting it again", ep.label,
                            tx.what, tx.hashes[-1], tx.nonce)
                self._rebroadcast(tx)
            else:
                self._replace(tx)
            tx.rebroadcasts += 1
        elif mined == tx.nonce and time.monotonic() - tx.sent_at > ep.timing.replace_after:
            self._replace(tx)

    def _nonce_holder(self, nonce: int) -> str | None:
        """The hash of this account's mined transaction at ``nonce``, searched back from the head (stopping at
        one of its transactions below ``nonce``, or after ``_HOLDER_SCAN`` blocks); None if there is none."""
        ep = self.endpoint
        me = self.address.lower()
        head = int(ep.rpc("eth_blockNumber", [], doing="could not read the block number"), 16)
        for number in range(head, max(head - _HOLDER_SCAN, -1), -1):
            block = ep.rpc("eth_getBlockByNumber", [hex(number), True],
                           doing=f"could not look for the transaction that used nonce {nonce} of {self.address}")
            below = False
            for t in (block or {}).get("transactions", []):
                if isinstance(t, dict) and str(t.get("from", "")).lower() == me:
                    if (n := int(t["nonce"], 16)) == nonce:
                        return str(t["hash"])
                    below = below or n < nonce
            if below:
                return None
        return None

    def _unaccounted(self, tx: PendingTx) -> None:
        """The node counts ``tx``'s nonce as used, yet no transaction with it is on the chain (a node restarted
        from a state dump taken mid-block keeps the block's effects and loses the block).  ``tx`` may have run:
        sending it again could run it twice, so it fails with an error that says so."""
        self._retire(tx)
        tx.error = ChainError(f"{self.endpoint.label}: {tx.what} transaction {tx.hashes[-1]} (nonce {tx.nonce}, "
                              f"from {self.address}): the node counts the nonce as used but holds no transaction "
                              f"with it (its history was lost, e.g. restarted from a state dump); its outcome is "
                              f"unknown and it was not sent again, so it cannot run twice. Check its effect on the "
                              f"chain before sending it again.")

    def _rebroadcast(self, tx: PendingTx) -> None:
        with self._lock:
            refusal = self._broadcast(tx)
        if refusal is not None and not refusal.has(_NONCE_LOW):
            log.warning("%s: re-broadcast of %s refused (%s)", self.endpoint.label, tx.hashes[-1], refusal.message)

    def _replace(self, tx: PendingTx) -> None:
        """Re-sign at the same nonce with a fee at least 12.5 % higher (and no lower than the node's price)."""
        with self._lock:
            price = max(tx.gas_price * 9 // 8 + 1, self.endpoint.gas_price(fresh=True))
            old, old_raw = tx.hashes[-1], tx.raw
            self._sign(tx, tx.nonce, price)
            refusal = self._broadcast(tx)
            if refusal is None:
                log.warning("%s: replaced %s transaction %s by %s (nonce %d, gas price %d)", self.endpoint.label,
                            tx.what, old, tx.hashes[-1], tx.nonce, price)
                return
            tx.hashes.pop()
            tx.raw = old_raw  # still the version in the pool (if any); the next replacement bumps from ``price``
            if refusal.has(_NONCE_LOW + _OCCUPIED):
                return  # mined or being mined meanwhile: the receipt (or the superseded check) settles it
            tx.error = ChainError(f"{self.endpoint.label}: {tx.what} transaction {old} (nonce {tx.nonce}) was "
                                  f"dropped and could not be replaced: {refusal.message}")
            self._release(tx)

    def _release(self, tx: PendingTx) -> None:
        """``tx`` failed for good: free its nonce (reused next, or filled if later ones wait behind it)."""
        self._retire(tx)
        if any(n > tx.nonce for n in self._inflight):
            self._fill_hole(tx.nonce)
        elif self._next == tx.nonce + 1:
            self._next = tx.nonce

    def _fill_hole(self, nonce: int, *, seen_before: bool = True) -> None:
        """Nonce ``nonce`` blocks later transactions: repair our own, or (once seen twice) fill it with a no-op."""
        with self._lock:
            own = self._inflight.get(nonce)
            if own is None:
                if not seen_before or (self._next is not None and nonce >= self._next):
                    return
                log.warning("%s: nonce %d of %s holds up later transactions; filling it with a no-op",
                            self.endpoint.label, nonce, self.address)
                filler = PendingTx(self, self.address, b"", 0, 21_000, "account", "no-op", None)
                self._sign(filler, nonce, self.endpoint.gas_price())
                filler.first_hash = filler.hashes[-1]
                if self._broadcast(filler) is None:
                    self._inflight[nonce] = filler
                return
        if own._lock.acquire(blocking=False):  # noqa: SLF001 - nobody waits for it: repair it here
            try:
                if not own.done() and own._find_receipt() is None:  # noqa: SLF001
                    self._recover(own)
            finally:
                own._lock.release()  # noqa: SLF001


# -- the process-wide registry ----------------------------------------------------------------------

_registry_lock = threading.Lock()
_endpoints: dict[str, Endpoint] = {}
_senders: dict[tuple[str, str], TxSender] = {}
_by_hash: weakref.WeakValueDictionary[str, PendingTx] = weakref.WeakValueDictionary()


def _key(url: str) -> str:
    return url.rstrip("/")


def endpoint_for(url: str, name: str = "chain", timing: SenderTiming | None = None) -> Endpoint:
    """The shared endpoint of ``url`` (``timing`` replaces its timing when given)."""
    with _registry_lock:
        ep = _endpoints.get(_key(url))
        if ep is None:
            ep = _endpoints[_key(url)] = Endpoint(_key(url), name, timing)
        elif timing is not None:
            ep.timing = timing
        return ep


def sender_for(url: str, account: LocalAccount, *, name: str = "chain") -> TxSender:
    """The one sender of ``account`` on the chain at ``url`` in this process."""
    ep = endpoint_for(url, name)
    key = (ep.url, to_checksum_address(account.address))
    with _registry_lock:
        sender = _senders.get(key)
        if sender is None:
            sender = _senders[key] = TxSender(ep, account)
        return sender


def forget_chain(url: str) -> None:
    """A new node now serves ``url`` (a chain started on a port an earlier one used): drop the endpoint and the
    senders this process kept for the old node, so no stale nonce or chain ID is carried over."""
    with _registry_lock:
        _endpoints.pop(_key(url), None)
        for key in [k for k in _senders if k[0] == _key(url)]:
            del _senders[key]


def reset_chain(url: str) -> None:
    """Every sender on ``url`` forgets its nonces (the chain was reverted to a snapshot)."""
    with _registry_lock:
        senders = [s for (u, _), s in _senders.items() if u == _key(url)]
    for s in senders:
        s.reset()


def track(tx: PendingTx) -> None:
    """Remember ``tx`` by its first hash, for :func:`pending_by_hash`."""
    _by_hash[tx.tx_hash] = tx


def pending_by_hash(tx_hash: str) -> PendingTx | None:
    """A transaction handed out by a sender of this process (and still referenced), by its first hash."""
    return _by_hash.get(tx_hash)
