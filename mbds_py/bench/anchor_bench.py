"""Anchoring benchmark: gas per slip of a certified block in SlipLedger beside one transaction per slip.

``gas_per_slip``: a 128-slip block header with its quorum certificate (n = 4
validators, 3 COMMIT signatures) committed to SlipLedger, gas divided by 128.
``naive_gas_per_slip``: the baseline in the same run on the same chain — every
slip its own transaction into NaiveSlipRegistry (its hash stored under its ID,
plus an event).  Gas is read from receipts, so the samples barely vary; the
spread is reported anyway.  Both include the 21,000 intrinsic gas of their
transactions.  The curves give gas per slip and anchoring slips/s on Anvil as
blocks grow (8 → 128 slips); the latter includes building the Merkle tree and
signing the certificate and is bounded by one local node's automine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from ..chain.client import ChainClient
from ..chain.slip_ledger import SlipLedgerAgent
from ..devnet import DEV_DEPLOYER_KEY
from ..pbft.crypto import EthSigner
from ..pbft.merkle import merkle_root
from ..pbft.types import (BlockHeader, CommitSignature, QuorumCertificate, SlipEnvelope, ZERO32,
                          commit_vote_digest, header_struct_hash, slip_leaf)
from ..toolchain import artifact
from .context import BenchContext
from .registry import Samples, curve, measurement

N_VALIDATORS = 4  # the hospital + national, provincial, municipal authorities
N_SIGNATURES = 3  # quorum 2f + 1 with f = 1
BLOCK_SLIPS = 128
PAYLOAD_BYTES = 256  # a slip's opaque bytes; only its leaf hash reaches the chain
COMMIT_GAS = 2_000_000  # fixed limits: no estimate round trip inside the timed path
RECORD_GAS = 200_000
NAIVE_CONTRACT = "NaiveSlipRegistry"


@dataclass(frozen=True)
class Anchored:
    """One anchoring: gas of its transactions and wall time from slips to receipts."""

    slips: int
    gas: int
    seconds: float

    @property
    def gas_per_slip(self) -> float:
        return self.gas / self.slips

    @property
    def slips_per_s(self) -> float:
        return self.slips / self.seconds


class AnchorBench:
    """SlipLedger and NaiveSlipRegistry deployed on one chain, with a validator set that certifies blocks."""

    def __init__(self, client: ChainClient):
        self.client = client
        keys = [keccak(text=f"mbds-bench/validator-{i}") for i in range(N_VALIDATORS)]
        self.signers = [EthSigner(k) for k in keys]
        self.validators = [s.address for s in self.signers]
        self.submitter: LocalAccount = Account.from_key(keys[0])  # the hospital submits its own blocks
        deployer = Account.from_key(DEV_DEPLOYER_KEY)
        client.transfer(deployer, self.submitter.address, 10**21)
        ledger = artifact("SlipLedger")
        address, _ = client.deploy("SlipLedger", ledger.abi, ledger.bytecode, deployer,
                                   [Account.from_key(k).address for k in keys])
        self.ledger = SlipLedgerAgent(client, address)
        self.domain = self.ledger.domain_separator()
        naive = artifact(NAIVE_CONTRACT)
        naive_address, _ = client.deploy(NAIVE_CONTRACT, naive.abi, naive.bytecode, deployer)
        self.naive = client.contract(NAIVE_CONTRACT, naive_address, naive.abi)
        self.height = 0
        self.prev = ZERO32
        self._next_slip = 0
        self._sweeps: dict[tuple[int, int], list[Anchored]] = {}
        self._naive_sweeps: dict[tuple[int, int], list[Anchored]] = {}

    def slips(self, n: int) -> list[SlipEnvelope]:
        """``n`` fresh slips (never seen by either contract)."""
        out = []
        for _ in range(n):
            i = self._next_slip
            self._next_slip += 1
            out.append(SlipEnvelope(keccak(text=f"mbds-bench/slip/{i}"),
                                    keccak(text=f"payload/{i}") * (PAYLOAD_BYTES // 32)))
        return out

    def anchor_block(self, n: int) -> Anchored:
        """Certify and commit the next block of ``n`` fresh slips; the timed path starts from the slips."""
        body = self.slips(n)
        start = time.perf_counter()
        header = BlockHeader(height=self.height + 1, seq=self.height + 1, prev_hash=self.prev,
                             timestamp=int(time.time() * 1000), creator=self.validators[0],
                             merkle_root=merkle_root([slip_leaf(s) for s in body]),
                             body_cid=bytes.fromhex("1220") + keccak(b"".join(s.slip_id for s in body)))
        header_hash = header_struct_hash(header)
        digest = commit_vote_digest(self.domain, 0, header.seq, header_hash)
        qc = QuorumCertificate(header, 0, tuple(CommitSignature(i, self.signers[i].sign(digest))
                                                for i in range(N_SIGNATURES)))
        receipt = self.client.transact(self.ledger.commit_function(qc, self.validators), self.submitter,
                                       contract="SlipLedger", gas=COMMIT_GAS)
        seconds = time.perf_counter() - start
        if len(self.ledger.events(receipt, "BlockCommitted")) != 1:
            raise RuntimeError(f"block {header.height} was not committed (no BlockCommitted event)")
        self.height, self.prev = header.height, header_hash
        return Anchored(n, receipt["gasUsed"], seconds)

    def record_naive(self, n: int) -> list[Anchored]:
        """One transaction per slip, all sent before waiting (pipelined); one :class:`Anchored` per slip.

        Each carries its own gas; ``seconds`` is the whole batch's wall time split evenly.
        """
        body = self.slips(n)
        start = time.perf_counter()
        sent = [self.client.send(self.naive.functions.recordSlip(s.slip_id, slip_leaf(s)), self.submitter,
                                 contract=NAIVE_CONTRACT, gas=RECORD_GAS) for s in body]
        receipts = [self.client.wait(h, contract=NAIVE_CONTRACT) for h in sent]
        seconds = time.perf_counter() - start
        for r in receipts:
            if len(r["logs"]) != 1:
                raise RuntimeError("a naive slip was not recorded (no SlipRecorded event)")
        return [Anchored(1, r["gasUsed"], seconds / n) for r in receipts]

    def sweep(self, sizes: Sequence[int], reps: int) -> dict[int, list[Anchored]]:
        """``reps`` blocks per size (after one warm-up block each); memoized so curves share it."""
        out = {}
        for n in sizes:
            if (n, reps) not in self._sweeps:
                self.anchor_block(n)  # warm-up
                self._sweeps[(n, reps)] = [self.anchor_block(n) for _ in range(reps)]
            out[n] = self._sweeps[(n, reps)]
        return out

    def naive_sweep(self, sizes: Sequence[int], reps: int) -> dict[int, list[float]]:
        """Slips/s of the naive design for batches of each size (``reps`` batches each)."""
        out = {}
        for n in sizes:
            if (n, reps) not in self._naive_sweeps:
                self.record_naive(min(n, 8))  # warm-up
                self._naive_sweeps[(n, reps)] = [Anchored(n, sum(a.gas for a in batch),
                                                          sum(a.seconds for a in batch))
                                                 for batch in (self.record_naive(n) for _ in range(reps))]
            out[n] = [a.slips_per_s for a in self._naive_sweeps[(n, reps)]]
        return out


def anchor_bench(ctx: BenchContext) -> AnchorBench:
    """The run's shared deployment (one chain, one SlipLedger, one NaiveSlipRegistry)."""
    return ctx.resource("anchor-bench", lambda: AnchorBench(ctx.chain()))


@measurement("gas_per_slip", estimate_s=(2, 10))
def measure_gas(ctx: BenchContext) -> dict[str, Samples]:
    bench = anchor_bench(ctx)
    ctx.progress(f"SlipLedger: {ctx.reps} blocks of {BLOCK_SLIPS} slips, n={N_VALIDATORS}, "
                 f"{N_SIGNATURES} signatures (after a warm-up block)")
    blocks = bench.sweep([BLOCK_SLIPS], ctx.reps)[BLOCK_SLIPS]
    naive_txs = 32 if ctx.quick else BLOCK_SLIPS * 3
    ctx.progress(f"NaiveSlipRegistry: {naive_txs} transactions, one per slip (after 8 warm-up)")
    bench.record_naive(8)
    naive = bench.record_naive(naive_txs)
    gas = sorted(a.gas for a in blocks)
    return {
        "gas_per_slip": Samples([a.gas_per_slip for a in blocks], extra={
            "slips_per_block": BLOCK_SLIPS, "validators": N_VALIDATORS, "signatures": N_SIGNATURES,
            "gas_per_block_median": gas[len(gas) // 2],
            "anchor_ms_per_block_median": round(sorted(a.seconds for a in blocks)[len(blocks) // 2] * 1000, 2),
        }),
        "naive_gas_per_slip": Samples([a.gas for a in naive], extra={"transactions": len(naive)}),
    }


@curve("anchor_gas_per_slip", panel="anchor_gas", label="SlipLedger (certified block)", unit="gas/slip",
       estimate_s=(1, 3))
def curve_gas(ctx: BenchContext, sizes: Sequence[int]) -> dict[int, list[float]]:
    reps = 2 if ctx.quick else 5
    return {n: [a.gas_per_slip for a in blocks] for n, blocks in anchor_bench(ctx).sweep(sizes, reps).items()}


@curve("anchor_slips_per_s", panel="throughput", label="SlipLedger anchoring on Anvil", unit="slips/s",
       estimate_s=(1, 0))  # shares curve_gas's blocks (in quick, 128 is only on this axis)
def curve_anchor_throughput(ctx: BenchContext, sizes: Sequence[int]) -> dict[int, list[float]]:
    reps = 2 if ctx.quick else 5
    return {n: [a.slips_per_s for a in blocks] for n, blocks in anchor_bench(ctx).sweep(sizes, reps).items()}


@curve("naive_slips_per_s", panel="throughput", label="one tx per slip on Anvil (naive)", unit="slips/s",
       estimate_s=(3, 10))
def curve_naive_throughput(ctx: BenchContext, sizes: Sequence[int]) -> dict[int, list[float]]:
    return anchor_bench(ctx).naive_sweep(sizes, 1 if ctx.quick else 3)
