"""Agents for CreditRegistry and ConsortiumIndex: calls and events as consortium dataclasses.

The only module of :mod:`mbds_py.consortium` that talks to a chain; everything it
returns is a type of the pure core.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from eth_account.signers.local import LocalAccount

from ..chain.client import ChainClient, receipt_events
from ..chain.governance import Council, Governor, GovernorAgent, Outcome, call_of, lead_of
from ..toolchain import artifact
from .blocks import BlockHeader, ConsortiumBlock
from .credit import CreditRecord, Dimensions, Incentives, Offence, SeatKind, Service, Weights
from .eip712 import Domain
from .election import eligible_ranking
from .schedule import SlotClock

CREDIT = "CreditRegistry"
INDEX = "ConsortiumIndex"


def _plain(value: Any) -> Any:
    """web3's AttributeDict/HexBytes/lists as plain Python values."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return value


def _struct(cls: Any) -> Any:
    return lambda d: cls(*d.values())


# Event arguments that are structs become the core's dataclasses.
_EVENT_STRUCTS: dict[str, Any] = {
    "dimensions": _struct(Dimensions),
    "weights": _struct(Weights),
    "incentives": _struct(Incentives),
    "header": lambda d: BlockHeader.from_abi(list(d.values())),
}


def _record(institution_id: bytes, raw: Sequence[Any]) -> CreditRecord:
    dims, reward, penalty, registered, willing, queued, role, account, suspended = raw
    return CreditRecord(id=institution_id, dimensions=Dimensions(*dims), reward_points=reward,
                        penalty_points=penalty, willing=willing, account=account, role=role,
                        removal_queued=queued, registered=registered, suspended=suspended)


def _decode_events(contract: Any, receipt: dict[str, Any], name: str) -> list[dict[str, Any]]:
    out = []
    for raw in receipt_events(contract, receipt, name):
        args = {k: _plain(v) for k, v in raw.items()}
        out.append({k: _EVENT_STRUCTS[k](v) if k in _EVENT_STRUCTS and isinstance(v, dict) else v
                    for k, v in args.items()})
    return out


@dataclass(frozen=True)
class PendingRoster:
    version: int
    from_round: int
    rpn: tuple[bytes, ...]
    atn: tuple[bytes, ...]


@dataclass(frozen=True)
class CommittedBlock:
    """A ``BlockCommitted`` event: the header and the institution IDs of its attesters."""

    header: BlockHeader
    attesters: tuple[bytes, ...]
    tx_hash: bytes


class CreditRegistryAgent:
    """Thin adapter over one CreditRegistry deployment."""

    def __init__(self, client: ChainClient, address: str):
        self.client = client
        self.address = address
        # Registration reverts may come from the IdentityRegistry it reads.
        client.errors.add_abi("IdentityRegistry", artifact("IdentityRegistry").abi)
        self.contract = client.contract(CREDIT, address, artifact(CREDIT).abi)

    @classmethod
    def deploy(cls, client: ChainClient, deployer: LocalAccount, identity: str, *, rpn_count: int, atn_count: int,
               reserve_capacity: int, weights: Weights = Weights(),
               incentives: Incentives = Incentives()) -> "CreditRegistryAgent":
        art = artifact(CREDIT)
        address, _ = client.deploy(CREDIT, art.abi, art.bytecode, deployer, identity, rpn_count, atn_count,
                                   reserve_capacity, weights.as_tuple(), incentives.as_tuple())
        return cls(client, address)

    def _tx(self, fn: Any, sender: LocalAccount | Council) -> dict[str, Any]:
        return self.client.transact(fn, lead_of(sender), contract=CREDIT)

    def _call(self, fn: Any) -> Any:
        return self.client.call(fn, contract=CREDIT)

    # -- governance ---------------------------------------------------------------------------

    # Every governed method takes a :class:`Council` (the operation goes through the k-of-n
    # AuthorityGovernor) or one account (a direct call: refused with ``CreditRegistryNotGovernance``).

    def governor(self) -> GovernorAgent:
        """The k-of-n AuthorityGovernor, the only caller of the governed functions."""
        if getattr(self, "_governor", None) is None:
            self._governor = GovernorAgent(self.client, self._call(self.contract.functions.governor()))
        return self._governor

    def _govern(self, fn: Any, governor: Governor) -> dict[str, Any]:
        """A routine governed call (no delay): executed at once; returns its receipt."""
        if isinstance(governor, Council):
            return self.governor().govern(governor, call_of(fn)).receipt
        return self._tx(fn, governor)

    def _propose_change(self, fn: Any, governor: Governor) -> Outcome | dict[str, Any]:
        """A parameter change: proposed and approved now, executed by ``governor().finish`` after the delay."""
        if isinstance(governor, Council):
            return self.governor().govern(governor, call_of(fn))
        return self._tx(fn, governor)

    def register_institution(self, governor: Governor, institution_id: bytes,
                             dimensions: Dimensions) -> dict[str, Any]:
        return self._govern(self.contract.functions.registerInstitution(institution_id, dimensions.as_tuple()),
                            governor)

    def register_institutions(self, council: Council, items: Sequence[tuple[bytes, Dimensions]], *,
                              per_operation: int = 40) -> list[dict[str, Any]]:
        """Register many institutions, ``per_operation`` registrations per governance operation (each one
        proposal, k - 1 approvals and one execution); returns the execution receipts."""
        fns = self.contract.functions
        governor = self.governor()
        out = []
        for start in range(0, len(items), per_operation):
            calls = [call_of(fns.registerInstitution(i, d.as_tuple())) for i, d in items[start:start + per_operation]]
            out.append(governor.govern(council, calls).receipt)
        return out

    def set_dimensions(self, governor: Governor, institution_id: bytes,
                       dimensions: Dimensions) -> Outcome | dict[str, Any]:
        return self._propose_change(self.contract.functions.setDimensions(institution_id, dimensions.as_tuple()),
                                    governor)

    def set_weights(self, governor: Governor, weights: Weights) -> Outcome | dict[str, Any]:
        return self._propose_change(self.contract.functions.setWeights(weights.as_tuple()), governor)

    def set_incentives(self, governor: Governor, incentives: Incentives) -> Outcome | dict[str, Any]:
        return self._propose_change(self.contract.functions.setIncentives(incentives.as_tuple()), governor)

    def set_reporter(self, governor: Governor, reporter: str, enabled: bool = True) -> dict[str, Any]:
        return self._govern(self.contract.functions.setReporter(reporter, enabled), governor)

    def clear_penalties(self, governor: Governor, institution_id: bytes) -> dict[str, Any]:
        return self._govern(self.contract.functions.clearPenalties(institution_id), governor)

    def set_clock(self, governor: Governor, clock: str) -> dict[str, Any]:
        """Bind the ConsortiumIndex whose slot clock drives the rounds (once, at deployment)."""
        return self._govern(self.contract.functions.setClock(clock), governor)

    def elect(self, governor: Governor, ranking: Sequence[bytes] | None = None) -> dict[str, Any]:
        """Submit ``ranking`` (default: the one computed from the current chain state)."""
        ranking = self.current_ranking() if ranking is None else ranking
        return self._govern(self.contract.functions.elect(list(ranking)), governor)

    # -- institutions ----------------------------------------------------------------------------

    def set_willing(self, institution: LocalAccount, willing: bool = True) -> dict[str, Any]:
        return self._tx(self.contract.functions.setWilling(willing), institution)

    def sync_account(self, sender: LocalAccount, institution_id: bytes) -> dict[str, Any]:
        return self._tx(self.contract.functions.syncAccount(institution_id), sender)

    def review_seat(self, sender: LocalAccount, institution_id: bytes) -> dict[str, Any]:
        """Queue a seated, no longer eligible (e.g. suspended) institution for replacement (anyone)."""
        return self._tx(self.contract.functions.reviewSeat(institution_id), sender)

    # -- reporters -------------------------------------------------------------------------------

    def reward(self, reporter: LocalAccount, institution_id: bytes, service: Service,
               units: int = 1) -> dict[str, Any]:
        return self._tx(self.contract.functions.reward(institution_id, int(service), units), reporter)

    def reward_block(self, reporter: LocalAccount, producer: bytes, attesters: Sequence[bytes]) -> dict[str, Any]:
        return self._tx(self.contract.functions.rewardBlock(producer, list(attesters)), reporter)

    def penalise(self, reporter: LocalAccount, institution_id: bytes, offence: Offence,
                 evidence: bytes = bytes(32)) -> dict[str, Any]:
        return self._tx(self.contract.functions.penalise(institution_id, int(offence), evidence), reporter)

    # -- views -----------------------------------------------------------------------------------

    def institution(self, institution_id: bytes) -> CreditRecord:
        return _record(institution_id, self._call(self.contract.functions.institution(institution_id)))

    def institutions(self, page: int = 200) -> list[CreditRecord]:
        """Every registered institution's record, in registration order (one call per ``page``)."""
        out: list[CreditRecord] = []
        while True:
            ids, records = self._call(self.contract.functions.institutionsPage(len(out), page))
            out += [_record(bytes(i), r) for i, r in zip(ids, records)]
            if len(ids) < page:
                return out

    def institution_ids(self) -> list[bytes]:
        return [r.id for r in self.institutions()]

    def credit_of(self, institution_id: bytes) -> int:
        return self._call(self.contract.functions.creditOf(institution_id))

    def credit_formula(self, dimensions: Dimensions, weights: Weights, reward_points: int = 0,
                       penalty_points: int = 0) -> int:
        return self._call(self.contract.functions.creditFormula(dimensions.as_tuple(), weights.as_tuple(),
                                                                reward_points, penalty_points))

    def is_eligible(self, institution_id: bytes) -> bool:
        return self._call(self.contract.functions.isEligible(institution_id))

    def is_suspended(self, institution_id: bytes) -> bool:
        return self._call(self.contract.functions.isSuspended(institution_id))

    def clock(self) -> str:
        """The ConsortiumIndex the rounds follow (the zero address until ``set_clock``)."""
        return self._call(self.contract.functions.clock())

    def id_of(self, account: str) -> bytes:
        return bytes(self._call(self.contract.functions.idOf(account)))

    def weights(self) -> Weights:
        return Weights(*self._call(self.contract.functions.weights()))

    def incentives(self) -> Incentives:
        return Incentives(*self._call(self.contract.functions.incentives()))

    def is_governor(self, account: str) -> bool:
        return self._call(self.contract.functions.isGovernor(account))

    def is_reporter(self, account: str) -> bool:
        return self._call(self.contract.functions.isReporter(account))

    def rpn_count(self) -> int:
        return self._call(self.contract.functions.rpnCount())

    def atn_count(self) -> int:
        return self._call(self.contract.functions.atnCount())

    def round(self) -> int:
        return self._call(self.contract.functions.round())

    def roster_version(self) -> int:
        return self._call(self.contract.functions.rosterVersion())

    def rpn_set(self) -> tuple[bytes, ...]:
        return tuple(bytes(x) for x in self._call(self.contract.functions.rpnSet()))

    def atn_set(self) -> tuple[bytes, ...]:
        return tuple(bytes(x) for x in self._call(self.contract.functions.atnSet()))

    def reserve_set(self) -> tuple[bytes, ...]:
        return tuple(bytes(x) for x in self._call(self.contract.functions.reserveSet()))

    def pending_roster(self) -> PendingRoster | None:
        pending, version, from_round, rpn, atn = self._call(self.contract.functions.pendingRoster())
        if not pending:
            return None
        return PendingRoster(version, from_round, tuple(bytes(x) for x in rpn), tuple(bytes(x) for x in atn))

    def seat_of(self, institution_id: bytes) -> tuple[SeatKind, int]:
        kind, index = self._call(self.contract.functions.seatOf(institution_id))
        return SeatKind(kind), index

    def rpn_at(self, seat: int) -> tuple[bytes, str]:
        institution_id, account = self._call(self.contract.functions.rpnAt(seat))
        return bytes(institution_id), account

    def atn_seated(self) -> int:
        """ATN seats the active roster holds now (fewer than M once the reserve ran out)."""
        return self._call(self.contract.functions.atnSeated())

    def atn_set_at(self, round_: int) -> tuple[bytes, ...]:
        """The ATN set in force in ``round_`` (what ``reportInvalidBlock`` judges a header of that round with):
        the IDs of the ``AtnSetRecorded`` event the registry's ``atnSetAt`` points to."""
        from_round, atn_hash = self._call(self.contract.functions.atnSetAt(round_))
        logs = self.contract.events.AtnSetRecorded().get_logs(
            from_block=0, argument_filters={"fromRound": from_round, "atnHash": bytes(atn_hash)})
        if not logs:
            raise LookupError(f"no AtnSetRecorded event for round {from_round}")
        return tuple(bytes(x) for x in logs[-1]["args"]["atn"])

    def atn_accounts(self) -> list[str]:
        return [self.institution(i).account for i in self.atn_set()]

    def attester_accounts(self) -> list[str]:
        """Accounts of the ATN seats whose participant is not suspended: the signers ``commitBlock`` accepts."""
        return [r.account for r in map(self.institution, self.atn_set()) if not r.suspended]

    def current_ranking(self) -> tuple[bytes, ...]:
        """The ranking ``elect`` accepts now, computed off-chain by the pure core."""
        inc = self.incentives()
        return eligible_ranking(self.institutions(), self.weights(), inc.removal_threshold)

    # -- events ----------------------------------------------------------------------------------

    def events(self, receipt: dict[str, Any], name: str) -> list[dict[str, Any]]:
        """Decoded ``name`` events of a receipt: plain dicts, struct arguments as core dataclasses."""
        return _decode_events(self.contract, receipt, name)


class ConsortiumIndexAgent:
    """Thin adapter over one ConsortiumIndex deployment."""

    def __init__(self, client: ChainClient, address: str):
        self.client = client
        self.address = address
        client.errors.add_abi(CREDIT, artifact(CREDIT).abi)
        self.contract = client.contract(INDEX, address, artifact(INDEX).abi)
        self._domain: Domain | None = None
        self._clock: SlotClock | None = None

    @classmethod
    def deploy(cls, client: ChainClient, deployer: LocalAccount, credit: str, *, genesis_time: int,
               slot_seconds: int, quorum: int) -> "ConsortiumIndexAgent":
        art = artifact(INDEX)
        address, _ = client.deploy(INDEX, art.abi, art.bytecode, deployer, credit, genesis_time, slot_seconds,
                                   quorum)
        return cls(client, address)

    def _tx(self, fn: Any, sender: LocalAccount, gas: int | None = None) -> dict[str, Any]:
        return self.client.transact(fn, sender, contract=INDEX, gas=gas)

    def _call(self, fn: Any) -> Any:
        return self.client.call(fn, contract=INDEX)

    # -- transactions ------------------------------------------------------------------------------

    def commit_block(self, producer: LocalAccount, header: BlockHeader, patient_ids: Sequence[bytes],
                     signatures: Sequence[bytes], gas: int | None = None) -> dict[str, Any]:
        """``commitBlock``; ``signatures`` in ascending signer order (see ``ordered_signatures``).

        Pass ``gas`` to skip estimation: some nodes (Anvil) estimate against the last block's
        timestamp, which may lie in an earlier slot than the block the transaction will be mined in.
        """
        fn = self.contract.functions.commitBlock(header.as_abi(), list(patient_ids), list(signatures))
        return self._tx(fn, producer, gas=gas)

    def commit(self, producer: LocalAccount, block: ConsortiumBlock, signatures: Sequence[bytes],
               gas: int | None = None) -> dict[str, Any]:
        return self.commit_block(producer, block.header, block.patient_ids, signatures, gas=gas)

    def report_missed_slots(self, sender: LocalAccount) -> dict[str, Any]:
        return self._tx(self.contract.functions.reportMissedSlots(), sender)

    def advance_round(self, sender: LocalAccount) -> dict[str, Any]:
        return self._tx(self.contract.functions.advanceRound(), sender)

    def report_invalid_block(self, sender: LocalAccount, header: BlockHeader, producer_signature: bytes,
                             rejections: Sequence[bytes], attestations: Sequence[bytes] = (),
                             atn_set: Sequence[bytes] | None = None) -> dict[str, Any]:
        """``reportInvalidBlock``; ``atn_set`` defaults to the ATN set of the header's round (read from the
        registry's ``AtnSetRecorded`` events)."""
        if atn_set is None:
            atn_set = self.credit_agent().atn_set_at(header.slot // self.clock().slots_per_round)
        fn = self.contract.functions.reportInvalidBlock(header.as_abi(), producer_signature, list(atn_set),
                                                        list(rejections), list(attestations))
        return self._tx(fn, sender)

    def credit_agent(self) -> CreditRegistryAgent:
        return CreditRegistryAgent(self.client, self.credit_address())

    # -- views -------------------------------------------------------------------------------------

    def domain(self) -> Domain:
        """The EIP-712 domain, read from ``eip712Domain()`` (ERC-5267)."""
        if self._domain is None:
            _, name, version, chain_id, verifying, _, _ = self._call(self.contract.functions.eip712Domain())
            self._domain = Domain(name, version, chain_id, verifying)
        return self._domain

    def clock(self) -> SlotClock:
        if self._clock is None:
            self._clock = SlotClock(self._call(self.contract.functions.genesisTime()),
                                    self._call(self.contract.functions.slotSeconds()),
                                    self._call(self.contract.functions.slotsPerRound()))
        return self._clock

    def quorum(self) -> int:
        """The configured quorum (≥ 2)."""
        return self._call(self.contract.functions.quorum())

    def attestation_quorum(self) -> int:
        """The attestations a block needs now: the quorum, or every seated ATN once fewer are left."""
        return self._call(self.contract.functions.attestationQuorum())

    def credit_address(self) -> str:
        return self._call(self.contract.functions.credit())

    def current_slot(self) -> int:
        return self._call(self.contract.functions.currentSlot())

    def current_round(self) -> int:
        return self._call(self.contract.functions.currentRound())

    def producer_of(self, slot: int) -> tuple[bytes, str]:
        institution_id, account = self._call(self.contract.functions.producerOf(slot))
        return bytes(institution_id), account

    def head(self) -> tuple[int, bytes]:
        height, header_hash = self._call(self.contract.functions.head())
        return height, bytes(header_hash)

    def header_hash_at(self, height: int) -> bytes:
        return bytes(self._call(self.contract.functions.headerHashAt(height)))

    def next_unsettled_slot(self) -> int:
        return self._call(self.contract.functions.nextUnsettledSlot())

    def hash_header(self, header: BlockHeader) -> bytes:
        return bytes(self._call(self.contract.functions.hashHeader(header.as_abi())))

    def header_digest(self, header: BlockHeader) -> bytes:
        return bytes(self._call(self.contract.functions.headerDigest(header.as_abi())))

    def rejection_digest(self, header_hash: bytes) -> bytes:
        return bytes(self._call(self.contract.functions.rejectionDigest(header_hash)))

    def domain_separator(self) -> bytes:
        return bytes(self._call(self.contract.functions.domainSeparator()))

    def item_leaf(self, slip_hash: bytes, index: int, item_hash: bytes) -> bytes:
        return bytes(self._call(self.contract.functions.itemLeaf(slip_hash, index, item_hash)))

    def verify_item(self, header: BlockHeader, proof: Iterable[bytes], slip_hash: bytes, index: int,
                    item_hash: bytes) -> bool:
        """``verifyItem``: the contract hashes the leaf from the item (a raw leaf is never accepted)."""
        return self._call(self.contract.functions.verifyItem(header.as_abi(), list(proof), slip_hash, index,
                                                             item_hash))

    # -- events ------------------------------------------------------------------------------------

    def events(self, receipt: dict[str, Any], name: str) -> list[dict[str, Any]]:
        """Decoded ``name`` events of a receipt: plain dicts, the header as a :class:`BlockHeader`."""
        return _decode_events(self.contract, receipt, name)

    def committed_blocks(self, from_block: int = 0, to_block: int | str = "latest") -> list[CommittedBlock]:
        """Every ``BlockCommitted`` in an EVM block range, oldest first: how a node follows the chain."""
        logs = self.contract.events.BlockCommitted().get_logs(from_block=from_block, to_block=to_block)
        return [CommittedBlock(BlockHeader.from_abi(list(log["args"]["header"].values())),
                               tuple(bytes(a) for a in log["args"]["attesters"]), bytes(log["transactionHash"]))
                for log in logs]

    def patient_heights(self, patient_id: bytes, from_block: int = 0, to_block: int | str = "latest") -> list[int]:
        """Heights of the consortium blocks holding items of a patient (one ``eth_getLogs`` on topic 1)."""
        logs = self.contract.events.PatientIndexed().get_logs(
            from_block=from_block, to_block=to_block, argument_filters={"patientId": patient_id})
        return [log["args"]["height"] for log in logs]


__all__ = ["CommittedBlock", "ConsortiumIndexAgent", "CreditRegistryAgent", "PendingRoster"]
