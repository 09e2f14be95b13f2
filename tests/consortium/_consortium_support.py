"""Helpers for the consortium tests: a funded population of institutions, a deployed
CreditRegistry + ConsortiumIndex, slot travel, block building and attestation."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from mbds_py.chain.client import ChainClient
from mbds_py.chain.governance import Council
from mbds_py.chain.identity import IdentityRegistryAgent
from mbds_py.chain.sender import PendingTx
from mbds_py.consortium import (
    AccountSigner,
    ConsortiumBlock,
    ConsortiumSlip,
    Dimensions,
    Incentives,
    SummaryItem,
    Weights,
    attest,
    build_block,
    ordered_signatures,
)
from mbds_py.consortium.agents import ConsortiumIndexAgent, CreditRegistryAgent
from mbds_py.consortium.cid import default_cid_of
from mbds_py.errors import ContractRevert
from mbds_py.identity import Participant, Role
from tests.conftest import peks_key, pre_key
from tests.helpers import reverts

ZERO32 = bytes(32)
INSTITUTION_ROLES = (Role.HOSPITAL, Role.INTERNET_PLATFORM, Role.INSURER, Role.RESEARCH_INSTITUTE,
                     Role.PHARMA_COMPANY, Role.AUTHORITY_MUNICIPAL)




def fund(client: ChainClient, address: str) -> None:
    """Give an account ether without a transaction (Anvil)."""
    client.w3.provider.make_request("anvil_setBalance", [address, hex(10**20)])


def account(label: str) -> LocalAccount:
    return Account.from_key(keccak(text=f"mbds-consortium-test/{label}"))


@dataclass(frozen=True)
class Inst:
    """One consortium institution of a test population."""

    label: str
    id: bytes
    account: LocalAccount
    role: Role
    dimensions: Dimensions

    @property
    def signer(self) -> AccountSigner:
        return AccountSigner(self.account)


@dataclass
class Net:
    """A deployed consortium: IdentityRegistry (session), CreditRegistry, ConsortiumIndex."""

    client: ChainClient
    identity: IdentityRegistryAgent
    credit: CreditRegistryAgent
    index: ConsortiumIndexAgent | None
    governor: Council  # two authorities: the governor's quorum (k = 2)
    reporter: LocalAccount
    insts: dict[bytes, Inst] = field(default_factory=dict)

    # -- lookups ------------------------------------------------------------------------------

    def inst(self, institution_id: bytes) -> Inst:
        return self.insts[institution_id]

    def account_of(self, institution_id: bytes) -> str | None:
        inst = self.insts.get(institution_id)
        return inst.account.address if inst else None

    def by_order(self) -> list[Inst]:
        return list(self.insts.values())

    # -- governance -----------------------------------------------------------------------------

    def as_governor(self, fn_name: str, *args) -> dict:
        """Call a governed CreditRegistry function as its AuthorityGovernor (Anvil impersonation): for
        tests about what a parameter change does, not about the k-of-n and the delay that precede it
        (those are tests/contracts/test_governance.py)."""
        return as_contract(self.client, self.credit.governor().address, self.credit.contract, fn_name, list(args))

    # -- time -----------------------------------------------------------------------------------

    def now(self) -> int:
        return self.client.w3.eth.get_block("latest")["timestamp"]

    def goto_slot(self, slot: int) -> int:
        """Move the chain clock just past the start of ``slot``; returns the new block time."""
        clock = self.index.clock()
        target = clock.slot_start(slot) + 1
        now = self.now()
        if now > clock.slot_end(slot) - 60:
            raise AssertionError(f"slot {slot} has (nearly) passed: now {now}")
        if target > now:
            self.client.increase_time(target - now)
        return self.now()

    def advance_round(self) -> dict:
        """Move the chain clock to the first slot of the registry's next round and advance the registry as
        its clock, the ConsortiumIndex, does (the test plays the index by impersonation: the round change
        alone, without the missed-slot penalties a real ``ConsortiumIndex.advanceRound`` charges first)."""
        clock = self.index.clock()
        self.goto_slot(clock.round_start(self.credit.round() + 1))
        return as_contract(self.client, self.index.address, self.credit.contract, "advanceRound", [])

    # -- blocks -----------------------------------------------------------------------------------

    def slips(self, origins: Sequence[Inst], count: int, items_per_slip: int = 10, *, patients: int | None = None,
              seed: int = 1, timestamp: int | None = None) -> list[ConsortiumSlip]:
        """``count`` signed slips from ``origins`` in turn; ``patients`` distinct patient IDs (default: all distinct)."""
        rng = random.Random(seed)
        domain = self.index.domain()
        timestamp = self.now() if timestamp is None else timestamp
        out = []
        n = 0
        for s in range(count):
            origin = origins[s % len(origins)]
            items = []
            for _ in range(items_per_slip):
                pid = keccak(text=f"patient/{seed}/{n if patients is None else n % patients}")
                items.append(SummaryItem(patient_id=pid, keywords=tuple(rng.randbytes(80) for _ in range(3)),
                                         hmi_hash=rng.randbytes(32), chain_id=43101 + s % 3,
                                         block_height=1 + s // 10, slip_id=rng.randbytes(32)))
                n += 1
            out.append(ConsortiumSlip.create(origin.id, timestamp, items, domain, origin.signer))
        return out

    def build(self, slips: Sequence[ConsortiumSlip], slot: int, *, prev=None, producer: bytes | None = None,
              timestamp: int | None = None) -> ConsortiumBlock:
        producer = producer if producer is not None else self.index.producer_of(slot)[0]
        return build_block(slips, prev=prev, slot=slot, producer=producer,
                           timestamp=self.now() if timestamp is None else timestamp, cid_of=default_cid_of)

    def attestations(self, block_or_header, attesters: Iterable[Inst]) -> list[bytes]:
        header = getattr(block_or_header, "header", block_or_header)
        domain = self.index.domain()
        return ordered_signatures(attest(header, domain, a.signer) for a in attesters)

    def atn_insts(self) -> list[Inst]:
        return [self.insts[i] for i in self.credit.atn_set()]

    def rpn_insts(self) -> list[Inst]:
        return [self.insts[i] for i in self.credit.rpn_set() if i != ZERO32]


def as_contract(client: ChainClient, address: str, contract, fn_name: str, args: list,
                gas: int = 5_000_000) -> dict:
    """Send ``contract.fn_name(*args)`` from ``address`` — a contract the test plays (Anvil impersonation).
    A revert raises its decoded custom error (the call is simulated first)."""
    client.call(getattr(contract.functions, fn_name)(*args), contract="CreditRegistry", sender=address)
    w3 = client.w3
    fund(client, address)
    w3.provider.make_request("anvil_impersonateAccount", [address])
    try:
        tx_hash = w3.eth.send_transaction({"from": address, "to": contract.address, "gas": gas,
                                           "data": contract.encode_abi(fn_name, args=args)})
        return client.wait(tx_hash, contract="CreditRegistry")
    finally:
        w3.provider.make_request("anvil_stopImpersonatingAccount", [address])


class BatchSender:
    """Many transactions fast: submitted through each account's shared sender (fixed gas, no estimation),
    receipts checked at the end."""

    def __init__(self, client: ChainClient):
        self.client = client
        self.pending: list[PendingTx] = []

    def send(self, contract, fn_name: str, args: list, sender: LocalAccount, gas: int) -> None:
        self.pending.append(self.client.sender(sender).submit(
            contract.address, contract.encode_abi(fn_name, args=args), gas=gas, contract="batch", function=fn_name,
            decoder=self.client.errors))

    def finish(self) -> None:
        for tx in self.pending:
            assert tx.wait()["status"] == "0x1", f"transaction {tx.tx_hash} failed"


def register_population(client: ChainClient, identity: IdentityRegistryAgent, credit: CreditRegistryAgent,
                        kmc: LocalAccount, governor: Council, dims: Sequence[Dimensions], *, prefix: str,
                        willing: bool = True) -> list[Inst]:
    """Register institutions in the IdentityRegistry (KMC) and the CreditRegistry (governance)."""
    insts = []
    for n, d in enumerate(dims):
        label = f"{prefix}-{n}"
        acct = account(label)
        role = INSTITUTION_ROLES[n % len(INSTITUTION_ROLES)]
        insts.append(Inst(label, keccak(text=f"institution/{label}"), acct, role, d))
    batch = BatchSender(client)
    for inst in insts:
        fund(client, inst.account.address)
        batch.send(identity.contract, "register", [inst.id, inst.account.address, int(inst.role), ZERO32,
                                                   pre_key(inst.label), peks_key(inst.label)], kmc, 400_000)
    batch.finish()
    credit.register_institutions(governor, [(inst.id, inst.dimensions) for inst in insts])  # k-of-n, in chunks
    if willing:
        batch = BatchSender(client)
        for inst in insts:
            batch.send(credit.contract, "setWilling", [True], inst.account, 100_000)
        batch.finish()
    return insts


def build_net(client: ChainClient, identity_address: str, kmc: LocalAccount, deployer: LocalAccount, *,
              dims: Sequence[Dimensions], rpn_count: int, atn_count: int, reserve_capacity: int,
              incentives: Incentives = Incentives(), weights: Weights = Weights(), quorum: int | None = None,
              slot_seconds: int = 600, prefix: str = "inst", with_index: bool = True, elect: bool = True) -> Net:
    identity = IdentityRegistryAgent(client, identity_address)
    authorities = (account(f"{prefix}/governor"), account(f"{prefix}/governor-2"))
    reporter = account(f"{prefix}/reporter")
    for a in (*authorities, reporter):
        fund(client, a.address)
    for n, (a, role) in enumerate(zip(authorities, (Role.AUTHORITY_NATIONAL, Role.AUTHORITY_PROVINCIAL))):
        label = f"{prefix}/authority" + (f"-{n + 1}" if n else "")
        identity.register(kmc, Participant(id=keccak(text=f"authority/{prefix}" + (f"/{n + 1}" if n else "")),
                                           name=f"authority-{n}", role=role, address=a.address,
                                           pre_key=pre_key(label), peks_key=peks_key(label)))
    governor = Council(*authorities)
    credit = CreditRegistryAgent.deploy(client, deployer, identity_address, rpn_count=rpn_count, atn_count=atn_count,
                                        reserve_capacity=reserve_capacity, weights=weights, incentives=incentives)
    insts = register_population(client, identity, credit, kmc, governor, dims, prefix=prefix)
    net = Net(client, identity, credit, None, governor, reporter, {i.id: i for i in insts})
    if elect:
        credit.elect(governor)
    if with_index:
        genesis = net.now()
        net.index = ConsortiumIndexAgent.deploy(client, deployer, credit.address, genesis_time=genesis,
                                                slot_seconds=slot_seconds, quorum=quorum or atn_count)
        credit.set_reporter(governor, net.index.address, True)
        credit.set_clock(governor, net.index.address)
    return net


def small_dims(n: int = 14) -> list[Dimensions]:
    """Distinct, decreasing credits (≈ 8300 down to ≈ 5600 under the default weights)."""
    return [Dimensions(9000 - 250 * i, 8000 - 200 * i, 7000 - 100 * i) for i in range(n)]


SMALL_INCENTIVES = Incentives(block_reward=2, attestation_reward=1, data_served_reward=1, invalid_block_penalty=1000,
                              wrong_attestation_penalty=500, missed_slot_penalty=100, removal_threshold=5000)


def gas_report(name: str, value: str, record_property=None) -> None:
    """Print a measurement (shown with ``-s`` or ``-rP``) and record it as a test property (JUnit XML)."""
    line = f"[gas] {name}: {value}"
    print(line)
    if record_property is not None:
        record_property(f"gas: {name}", value)
    report = os.environ.get("MBDS_GAS_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
