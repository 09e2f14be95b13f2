"""Agent for the AuthorityGovernor: k-of-n governance by the active health authorities.

Every chain's IdentityRegistry creates one AuthorityGovernor; the governed contracts of the chain
(IdentityRegistry, CreditRegistry, AccessPolicy) accept their privileged calls from it alone. An
operation is a list of calls (target, calldata) under a salt: one authority proposes it (its first
approval), others approve, and once ``quorum`` distinct authorities that are still active have
approved — and, for parameter changes, the delay has passed — anyone executes it, once.

A :class:`Council` is the set of authority keys one process holds (the devnet holds all three:
nha, pha, mha); :meth:`GovernorAgent.govern` has ``quorum`` of them propose and approve and then
executes, which is what the coordinators and the demo use for routine operations (elections,
reporters, proxies, clearances). A delayed operation is left proposed and approved with its
ready time; execute it with :meth:`GovernorAgent.execute` once the chain clock has passed it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence, Union

from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from ..errors import GovernanceError
from ..toolchain import artifact
from .client import ChainClient, receipt_events

CONTRACT = "AuthorityGovernor"
HOUR = 3600
DAY = 24 * HOUR

# The contract's bounds (AuthorityGovernor.MIN_QUORUM … MAX_DELAY), checked again on chain.
MIN_QUORUM, MAX_QUORUM = 2, 32
MIN_DELAY, MAX_DELAY = HOUR, 30 * DAY

# Operation states (IAuthorityGovernor.OperationState).
UNKNOWN, PROPOSED, EXECUTED, CANCELLED = range(4)


@dataclass(frozen=True)
class GovernanceParams:
    """k and the parameter-change delay of every chain's governor (IdentityRegistry constructor).

    Default: 2 of the devnet's 3 authorities (nha, pha, mha), parameter changes after one day.
    """

    quorum: int = 2
    delay: int = DAY

    def __post_init__(self) -> None:
        if not MIN_QUORUM <= self.quorum <= MAX_QUORUM or not MIN_DELAY <= self.delay <= MAX_DELAY:
            raise ValueError(f"governance quorum must be in [{MIN_QUORUM}, {MAX_QUORUM}] and delay in "
                             f"[{MIN_DELAY}, {MAX_DELAY}] s, got {self.quorum} and {self.delay}")

    def as_args(self) -> tuple[int, int]:
        return (self.quorum, self.delay)


@dataclass(frozen=True)
class Call:
    """One call of an operation: a target contract and the calldata."""

    target: str
    data: bytes

    def as_tuple(self) -> tuple[str, bytes]:
        return (to_checksum_address(self.target), self.data)


def call_of(fn: Any) -> Call:
    """A bound contract function (``contract.functions.f(args)``) as a governance call (encoding only, no RPC)."""
    tx = fn.build_transaction({"from": "0x" + "00" * 20, "gas": 1, "gasPrice": 1, "nonce": 0, "chainId": 1,
                               "value": 0})
    data = tx["data"]
    return Call(tx["to"], bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data))


@dataclass(frozen=True)
class Council:
    """The authority keys a process may govern with (proposer first); at least the quorum is needed."""

    members: tuple[LocalAccount, ...]

    def __init__(self, *members: LocalAccount):
        object.__setattr__(self, "members", tuple(members))

    @property
    def lead(self) -> LocalAccount:
        """The first authority: the one that proposes, and acts alone where one authority may."""
        return self.members[0]


#: What a governed agent method accepts: a council (the operation goes through the governor) or one
#: account (a direct call, which a governed function refuses with its ``...NotGovernance`` error).
Governor = Union[Council, LocalAccount]


def lead_of(governor: Governor) -> LocalAccount:
    """The one account that acts for ``governor`` where a single authority may act."""
    return governor.lead if isinstance(governor, Council) else governor


@dataclass(frozen=True)
class Operation:
    """A stored operation (``IAuthorityGovernor.Operation``)."""

    id: bytes
    proposer: bytes
    proposed_at: int
    ready_at: int
    approvals: int
    state: int


@dataclass(frozen=True)
class Outcome:
    """What :meth:`GovernorAgent.govern` did: the operation, its salt and calls, and the receipt of its
    execution (``None`` while a delayed operation waits for ``ready_at``)."""

    operation_id: bytes
    salt: bytes
    calls: tuple[Call, ...]
    ready_at: int
    receipt: dict[str, Any] | None

    @property
    def executed(self) -> bool:
        return self.receipt is not None


class GovernorAgent:
    """Thin adapter over one AuthorityGovernor."""

    def __init__(self, client: ChainClient, address: str):
        self.client = client
        self.address = to_checksum_address(address)
        self.contract = client.contract(CONTRACT, self.address, artifact(CONTRACT).abi)

    @classmethod
    def of(cls, client: ChainClient, governed_address: str) -> "GovernorAgent":
        """The governor of a governed contract (IdentityRegistry, CreditRegistry, AccessPolicy)."""
        abi = [{"type": "function", "name": "governor", "stateMutability": "view", "inputs": [],
                "outputs": [{"name": "", "type": "address"}]}]
        governed = client.w3.eth.contract(address=to_checksum_address(governed_address), abi=abi)
        return cls(client, client.call(governed.functions.governor(), contract="governed"))

    # -- transactions ---------------------------------------------------------------------

    def propose(self, authority: LocalAccount, calls: Sequence[Call], salt: bytes) -> dict[str, Any]:
        fn = self.contract.functions.propose([c.as_tuple() for c in calls], salt)
        return self.client.transact(fn, authority, contract=CONTRACT)

    def approve(self, authority: LocalAccount, operation_id: bytes) -> dict[str, Any]:
        return self.client.transact(self.contract.functions.approve(operation_id), authority, contract=CONTRACT)

    def execute(self, sender: LocalAccount, calls: Sequence[Call], salt: bytes) -> dict[str, Any]:
        fn = self.contract.functions.execute([c.as_tuple() for c in calls], salt)
        return self.client.transact(fn, sender, contract=CONTRACT)

    def cancel(self, proposer: LocalAccount, operation_id: bytes) -> dict[str, Any]:
        return self.client.transact(self.contract.functions.cancel(operation_id), proposer, contract=CONTRACT)

    def govern(self, council: Council, calls: Sequence[Call] | Call, *, salt: bytes | None = None,
               execute: bool = True) -> Outcome:
        """Propose ``calls`` with the council's lead, approve with the next members up to the quorum, and
        execute when ready (at once for routine operations; a delayed one is left for :meth:`execute`)."""
        calls = (calls,) if isinstance(calls, Call) else tuple(calls)
        salt = os.urandom(32) if salt is None else salt
        k = self.quorum()
        if len(council.members) < k:
            raise GovernanceError(f"the governor needs {k} distinct active authorities, the council holds "
                                  f"{len(council.members)}: add authority keys to the council")
        receipt = self.propose(council.lead, calls, salt)
        op_id = bytes(self.events(receipt, "OperationProposed")[0]["operationId"])
        for member in council.members[1:k]:
            self.approve(member, op_id)
        op = self.operation(op_id)
        done = None
        if execute and op.ready_at <= self.client.w3.eth.get_block("latest")["timestamp"]:
            done = self.execute(council.lead, calls, salt)
        return Outcome(op_id, salt, calls, op.ready_at, done)

    def join(self, authority: LocalAccount, calls: Sequence[Call] | Call) -> Outcome:
        """One authority's part in an operation that each authority runs from its own process: the salt is
        derived from the calls, so the same request from several authorities meets in one operation. The
        first proposes, the next approve; whoever brings it to the quorum (and finds it ready) executes it.
        A finished operation with the same calls moves the next request on to the next salt."""
        calls = (calls,) if isinstance(calls, Call) else tuple(calls)
        me = bytes(self.client.call(self._registry().functions.idOf(authority.address), contract=CONTRACT))
        for n in range(1_000):
            salt = keccak(b"".join(c.target.lower().encode() + c.data for c in calls) + n.to_bytes(32, "big"))
            op_id = self.hash_operation(calls, salt)
            op = self.operation(op_id)
            if op.state in (EXECUTED, CANCELLED):
                continue
            if op.state == UNKNOWN:
                self.propose(authority, calls, salt)
            elif not self.has_approved(op_id, me):
                self.approve(authority, op_id)
            op = self.operation(op_id)
            receipt = None
            now = self.client.w3.eth.get_block("latest")["timestamp"]
            if self.active_approvals(op_id) >= self.quorum() and op.ready_at <= now:
                receipt = self.execute(authority, calls, salt)
            return Outcome(op_id, salt, calls, op.ready_at, receipt)
        raise GovernanceError("no free operation salt in 1000 tries")  # not reached in practice

    def _registry(self) -> Any:
        abi = [{"type": "function", "name": "idOf", "stateMutability": "view",
                "inputs": [{"name": "account", "type": "address"}], "outputs": [{"name": "", "type": "bytes32"}]}]
        return self.client.w3.eth.contract(address=self.registry(), abi=abi)

    def finish(self, outcome: Outcome, sender: LocalAccount) -> Outcome:
        """Execute a delayed operation left by :meth:`govern` (its ``ready_at`` must have passed)."""
        if outcome.executed:
            return outcome
        now = self.client.w3.eth.get_block("latest")["timestamp"]
        if now < outcome.ready_at:
            raise GovernanceError(f"operation 0x{outcome.operation_id.hex()} is ready at {outcome.ready_at}, "
                                  f"the chain is at {now}: execute it after the governance delay")
        receipt = self.execute(sender, outcome.calls, outcome.salt)
        return Outcome(outcome.operation_id, outcome.salt, outcome.calls, outcome.ready_at, receipt)

    # -- views ------------------------------------------------------------------------------

    def hash_operation(self, calls: Sequence[Call], salt: bytes) -> bytes:
        fn = self.contract.functions.hashOperation([c.as_tuple() for c in calls], salt)
        return bytes(self.client.call(fn, contract=CONTRACT))

    def operation(self, operation_id: bytes) -> Operation:
        r = self.client.call(self.contract.functions.getOperation(operation_id), contract=CONTRACT)
        return Operation(operation_id, bytes(r[0]), r[1], r[2], r[3], r[4])

    def has_approved(self, operation_id: bytes, authority_id: bytes) -> bool:
        return self.client.call(self.contract.functions.hasApproved(operation_id, authority_id), contract=CONTRACT)

    def active_approvals(self, operation_id: bytes) -> int:
        return self.client.call(self.contract.functions.activeApprovals(operation_id), contract=CONTRACT)

    def quorum(self) -> int:
        return self.client.call(self.contract.functions.quorum(), contract=CONTRACT)

    def delay(self) -> int:
        return self.client.call(self.contract.functions.delay(), contract=CONTRACT)

    def registry(self) -> str:
        return self.client.call(self.contract.functions.registry(), contract=CONTRACT)

    def events(self, receipt: dict[str, Any], name: str) -> list[dict[str, Any]]:
        return receipt_events(self.contract, receipt, name)
