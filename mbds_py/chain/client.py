"""A JSON-RPC EVM endpoint: contracts, calls, transactions and error decoding.

Works against Anvil, Ganache and any other EVM node by URL.  Transactions go
through the account's shared :class:`~mbds_py.chain.sender.TxSender` (local
signing with eth-account, one nonce sequence per account and chain in the
process, repair of stale, dropped and stuck transactions); contract reverts are
decoded into :class:`~mbds_py.errors.ContractRevert` carrying the custom error
name and arguments, using every ABI the client knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import requests
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3._utils.method_formatters import receipt_formatter
from web3.datastructures import AttributeDict
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError, Web3RPCError
from web3.logs import DISCARD
from web3.providers.rpc.utils import ExceptionRetryConfiguration

from ..errors import ChainError, ContractRevert
from .sender import PendingTx, TxSender, pending_by_hash, reset_chain, revert_bytes, sender_for

_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)


@dataclass(frozen=True)
class ErrorSpec:
    """A Solidity custom error known from an ABI."""

    contract: str
    name: str
    types: tuple[str, ...]


class ErrorDecoder:
    """Maps 4-byte error selectors to custom errors across many ABIs."""

    def __init__(self) -> None:
        self._by_selector: dict[bytes, ErrorSpec] = {}

    def add_abi(self, contract: str, abi: Iterable[dict[str, Any]]) -> None:
        for entry in abi:
            if entry.get("type") != "error":
                continue
            types = tuple(_canonical_type(i) for i in entry.get("inputs", []))
            selector = function_signature_to_4byte_selector(f"{entry['name']}({','.join(types)})")
            self._by_selector.setdefault(selector, ErrorSpec(contract, entry["name"], types))

    def decode(self, data: bytes, contract: str = "contract") -> ContractRevert:
        """Decode revert ``data`` into a ContractRevert (unknown data is kept as hex)."""
        selector, payload = data[:4], data[4:]
        if selector == _ERROR_STRING:
            (reason,) = abi_decode(["string"], payload)
            return ContractRevert(contract, "Error", (reason,), f"{contract} reverted: {reason}")
        if selector == _PANIC:
            (code,) = abi_decode(["uint256"], payload)
            return ContractRevert(contract, "Panic", (code,), f"{contract} panicked with code {code:#x}")
        spec = self._by_selector.get(selector)
        if spec is None:
            return ContractRevert(contract, "UnknownError", (data.hex(),), f"{contract} reverted with data 0x{data.hex()}")
        args = abi_decode(list(spec.types), payload) if spec.types else ()
        args = tuple(to_checksum_address(a) if t == "address" else a for t, a in zip(spec.types, args))
        return ContractRevert(spec.contract, spec.name, args)


def _canonical_type(param: dict[str, Any]) -> str:
    typ = param["type"]
    if typ.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){typ[5:]}"
    return typ


def _revert_data(exc: Exception) -> bytes | None:
    """Extract revert data from web3's exceptions (Anvil and Ganache formats)."""
    return revert_bytes(getattr(exc, "data", None))


# Reads a node may be asked again when the connection fails: a loaded node (Ganache) resets a pooled
# keep-alive connection now and then.  Writes are not here: they go through the sender, which knows when a
# transaction may be sent again; nor are evm_* test methods (a second evm_mine or evm_revert is not harmless).
READ_METHODS = ("eth_chainId", "eth_blockNumber", "eth_call", "eth_estimateGas",
                "eth_gasPrice", "eth_maxPriorityFeePerGas", "eth_feeHistory", "eth_getBalance", "eth_getCode",
                "eth_getStorageAt", "eth_getTransactionCount", "eth_getBlockByNumber", "eth_getBlockByHash",
                "eth_getTransactionByHash", "eth_getTransactionReceipt", "eth_getLogs")
# web3's default retries only the built-in ConnectionError, which requests' own errors are not
READ_RETRY = ExceptionRetryConfiguration(
    errors=(requests.ConnectionError, requests.exceptions.ChunkedEncodingError, ConnectionError),
    retries=6, backoff_factor=0.1, method_allowlist=list(READ_METHODS))  # ≈ 3 s of backoff in all


class ChainClient:
    """One EVM chain by URL: contracts, calls and signed transactions."""

    def __init__(self, url: str, *, name: str = "chain", timeout: float = 30.0):
        self.url = url
        self.name = name
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        provider = Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}, session=session,
                                     exception_retry_configuration=READ_RETRY)
        self.w3 = Web3(provider)
        self.errors = ErrorDecoder()
        self._chain_id: int | None = None

    # -- basics -------------------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            try:
                self._chain_id = self.w3.eth.chain_id
            except (requests.RequestException, OSError) as exc:
                raise ChainError(f"{self.name}: no EVM node answers at {self.url} ({exc}); is the devnet up?") from exc
        return self._chain_id

    def is_alive(self) -> bool:
        try:
            return self.w3.is_connected()
        except Exception:  # noqa: BLE001 - any failure means "not alive"
            return False

    def contract(self, name: str, address: str, abi: Sequence[dict[str, Any]]) -> Contract:
        self.errors.add_abi(name, abi)
        return self.w3.eth.contract(address=to_checksum_address(address), abi=list(abi))

    def code_hash(self, address: str) -> str | None:
        code = self.w3.eth.get_code(to_checksum_address(address))
        return None if len(code) == 0 else Web3.keccak(bytes(code)).hex()

    # -- transactions: all through the account's shared TxSender ---------------------------

    def sender(self, account: LocalAccount) -> TxSender:
        """The process-wide sender of ``account`` on this chain (one nonce sequence per account)."""
        return sender_for(self.url, account, name=self.name)

    def submit(self, fn: Any, sender: LocalAccount, *, contract: str = "contract", gas: int | None = None,
               value: int = 0) -> PendingTx:
        """Sign and broadcast ``fn`` (a bound contract function or constructor) from ``sender``; don't wait.

        Gas is estimated unless given; a revert during estimation raises :class:`ContractRevert` here.
        """
        params = {"from": sender.address, "value": value, "gas": 1, "gasPrice": 1, "nonce": 0,
                  "chainId": self.chain_id}
        try:
            tx = fn.build_transaction(params)  # every field given: only encodes, no RPC
        except (ContractCustomError, ContractLogicError, ContractPanicError, Web3RPCError) as exc:
            raise self._translate(exc, contract) from None
        to = tx.get("to") or None
        data = tx.get("data") or b""
        data = bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data)
        function = getattr(fn, "fn_name", None) or ("constructor" if to is None else "transaction")
        return self.sender(sender).submit(to, data, value=value, gas=gas, contract=contract, function=function,
                                          decoder=self.errors)

    def transact(self, fn: Any, sender: LocalAccount, *, contract: str = "contract", gas: int | None = None,
                 value: int = 0) -> dict[str, Any]:
        """Sign and send ``fn`` from ``sender``; wait for the receipt.

        Reverts raise :class:`ContractRevert` with the decoded custom error.
        """
        return _web3_receipt(self.submit(fn, sender, contract=contract, gas=gas, value=value).wait())

    def send(self, fn: Any, sender: LocalAccount, *, contract: str = "contract", gas: int | None = None,
             value: int = 0) -> bytes:
        """Sign and broadcast without waiting; returns the transaction hash (for :meth:`wait`)."""
        return HexBytes(self.submit(fn, sender, contract=contract, gas=gas, value=value).tx_hash)

    def wait(self, tx_hash: bytes | str, *, contract: str = "contract", timeout: float = 120) -> dict[str, Any]:
        """The successful receipt of a transaction; reverts raise :class:`ContractRevert`."""
        key = tx_hash.lower() if isinstance(tx_hash, str) else "0x" + bytes(tx_hash).hex()
        pending = pending_by_hash(key)
        if pending is not None:
            return _web3_receipt(pending.wait(timeout))
        receipt = self.w3.eth.wait_for_transaction_receipt(key, timeout=timeout, poll_latency=0.01)
        if receipt["status"] != 1:
            raise ChainError(f"{self.name}: transaction {key} to {contract} failed (status 0)")
        return dict(receipt)

    def deploy(self, name: str, abi: Sequence[dict[str, Any]], bytecode: str, sender: LocalAccount,
               *args: Any) -> tuple[str, dict[str, Any]]:
        """Deploy a contract; returns (address, receipt)."""
        self.errors.add_abi(name, abi)
        factory = self.w3.eth.contract(abi=list(abi), bytecode="0x" + bytecode)
        receipt = self.transact(factory.constructor(*args), sender, contract=name)
        return receipt["contractAddress"], receipt

    def transfer(self, sender: LocalAccount, to: str, value: int) -> dict[str, Any]:
        return _web3_receipt(self.sender(sender).transact(to_checksum_address(to), b"", value=value, gas=21_000,
                                                          contract="transfer", function="transfer",
                                                          decoder=self.errors))

    def call(self, fn: Any, *, contract: str = "contract", sender: str | None = None) -> Any:
        """Call a view function; reverts raise :class:`ContractRevert`."""
        try:
            return fn.call({"from": sender} if sender else {})
        except (ContractCustomError, ContractLogicError, ContractPanicError, Web3RPCError) as exc:
            raise self._translate(exc, contract) from None

    def _translate(self, exc: Exception, contract: str) -> Exception:
        data = _revert_data(exc)
        if data:
            return self.errors.decode(data, contract)
        return ChainError(f"{self.name}: call to {contract} failed: {exc}")

    # -- test helpers (Anvil and Ganache both implement these) ----------------------------

    def snapshot(self) -> str:
        return self.w3.provider.make_request("evm_snapshot", [])["result"]

    def revert(self, snapshot_id: str) -> None:
        ok = self.w3.provider.make_request("evm_revert", [snapshot_id]).get("result")
        if not ok:
            raise ChainError(f"{self.name}: evm_revert({snapshot_id}) failed")
        reset_chain(self.url)  # nonces went back with the state: every sender re-reads its own

    def increase_time(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])
        self.w3.provider.make_request("evm_mine", [])


def _web3_receipt(raw: dict[str, Any]) -> dict[str, Any]:
    """A raw JSON-RPC receipt in web3's form (ints, HexBytes, checksummed addresses)."""
    return dict(AttributeDict.recursive(receipt_formatter(raw)))


def receipt_events(contract: Contract, receipt: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The ``name`` events ``contract`` emitted in a receipt, as plain dicts of their arguments.

    Logs of other contracts in the same transaction (a governor's, a token's) are skipped, not
    decoded against this ABI: no warning, and no same-signature event of another contract slips in.
    """
    own = [log for log in receipt["logs"] if str(log["address"]).lower() == contract.address.lower()]
    event = getattr(contract.events, name)()
    return [dict(e["args"]) for e in event.process_receipt({**receipt, "logs": own}, errors=DISCARD)]


def new_account() -> LocalAccount:
    """A fresh random secp256k1 account."""
    return Account.create()
