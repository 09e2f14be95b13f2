"""Anchoring benchmark: gas per slip of a certified block in SlipLedger beside one transaction per slip.

``gas_per_slip``: a 128-slip block header with its quorum certificate (n = 4
validators, 3 COMMIT signatures) committed to SlipLedger, gas divided by 128.
``gas_per_slip_batched``: anchoring that fell behind — 8 consecutive 128-slip
headers, each with its own certificate, in one ``commitBlocks`` transaction,
gas divided by the 1,024 slips (4 headers per transaction beside it in the
extra).  Both report where the gas goes (:func:`breakdown`): the 21,000
intrinsic, calldata (EIP-2028 byte prices of the input), storage and events
(the SLOAD/SSTORE and LOG opcodes of the call's opcode trace),
ecrecover (the precompile's 3,000 per signature) and the rest (execution:
ABI decoding, hashing, checks, the precompile calls' own overhead).  The trace
is a ``debug_traceCall`` of the very call just before it is sent (Anvil keeps no
opcode steps of mined transactions unless started with step tracing).
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
BATCH_BLOCKS = 8  # headers per commitBlocks in gas_per_slip_batched
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


INTRINSIC_GAS = 21_000
ECRECOVER_GAS = 3_000  # the precompile's fee per recovery


def calldata_gas(data: bytes) -> int:
    """EIP-2028: 16 gas per non-zero byte, 4 per zero byte."""
    zeros = data.count(0)
    return 4 * zeros + 16 * (len(data) - zeros)


def breakdown(client: ChainClient, fn, sender: str, signatures: int) -> dict[str, int]:
    """Gas of an anchoring call about to be sent, by where it goes: intrinsic, calldata (EIP-2028 prices of
    its input), storage (SLOAD/SSTORE) and events (LOG*) from the node's opcode trace of the call
    (``debug_traceCall`` at the latest block), ecrecover (the precompile's fee per signature) and
    execution (the rest: dispatch, ABI decoding, hashing, checks, the precompile calls' own overhead).
    ``total`` is the traced gas, what the transaction then uses."""
    data = fn._encode_transaction_data()
    out = {"intrinsic": INTRINSIC_GAS, "calldata": calldata_gas(bytes.fromhex(data[2:])), "storage": 0,
           "ecrecover": ECRECOVER_GAS * signatures, "events": 0}
    trace = client.w3.provider.make_request(
        "debug_traceCall", [{"from": sender, "to": fn.address, "data": data, "gas": hex(COMMIT_GAS * 8)},
                            "latest", {"disableStack": True, "disableMemory": True, "disableStorage": True}])
    result = trace.get("result") or {}
    if result.get("failed") or not result.get("structLogs"):
        raise RuntimeError(f"no opcode trace of the anchoring call: {str(trace)[:200]}")
    for step in result["structLogs"]:
        op = step["op"]
        if op in ("SLOAD", "SSTORE"):
            out["storage"] += step["gasCost"]
        elif op.startswith("LOG"):
            out["events"] += step["gasCost"]
    out["total"] = int(result["gas"])
    out["execution"] = out["total"] - sum(v for k, v in out.items() if k != "total")
    return out


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
        self.last_breakdown: dict[str, int] = {}

    def slips(self, n: int) -> list[SlipEnvelope]:
        """``n`` fresh slips (never seen by either contract)."""
        out = []
        for _ in range(n):
            i = self._next_slip
            self._next_slip += 1
            out.append(SlipEnvelope(keccak(text=f"mbds-bench/slip/{i}"),
                                    keccak(text=f"payload/{i}") * (PAYLOAD_BYTES // 32)))
        return out

    def certify(self, n: int, height: int, prev: bytes) -> QuorumCertificate:
        """A header at ``height`` over ``n`` fresh slips and its quorum certificate."""
        body = self.slips(n)
        header = BlockHeader(height=height, seq=height, prev_hash=prev,
                             timestamp=int(time.time() * 1000), creator=self.validators[0],
                             merkle_root=merkle_root([slip_leaf(s) for s in body]),
                             body_cid=bytes.fromhex("1220") + keccak(b"".join(s.slip_id for s in body)))
        digest = commit_vote_digest(self.domain, 0, header.seq, header_struct_hash(header))
        return QuorumCertificate(header, 0, tuple(CommitSignature(i, self.signers[i].sign(digest))
                                                  for i in range(N_SIGNATURES)))

    def anchor_block(self, n: int, *, trace: bool = False) -> Anchored:
        """Certify and commit the next block of ``n`` fresh slips; the timed path starts from the slips.
        ``trace``: break its gas down first (:attr:`last_breakdown`; not for timed blocks)."""
        start = time.perf_counter()
        qc = self.certify(n, self.height + 1, self.prev)
        fn = self.ledger.commit_function(qc, self.validators)
        if trace:
            self.last_breakdown = breakdown(self.client, fn, self.submitter.address, len(qc.signatures))
        receipt = self.client.transact(fn, self.submitter, contract="SlipLedger", gas=COMMIT_GAS)
        seconds = time.perf_counter() - start
        if len(self.ledger.events(receipt, "BlockCommitted")) != 1:
            raise RuntimeError(f"block {qc.header.height} was not committed (no BlockCommitted event)")
        self.height, self.prev = qc.header.height, header_struct_hash(qc.header)
        return Anchored(n, receipt["gasUsed"], seconds)

    def anchor_batch(self, n: int, blocks: int, *, trace: bool = False) -> Anchored:
        """Certify ``blocks`` consecutive blocks of ``n`` fresh slips each and commit them in one
        ``commitBlocks`` transaction (``trace`` as for :meth:`anchor_block`)."""
        start = time.perf_counter()
        qcs, prev = [], self.prev
        for i in range(blocks):
            qcs.append(self.certify(n, self.height + 1 + i, prev))
            prev = header_struct_hash(qcs[-1].header)
        fn = self.ledger.commit_many_function(qcs, self.validators)
        if trace:
            self.last_breakdown = breakdown(self.client, fn, self.submitter.address,
                                            sum(len(qc.signatures) for qc in qcs))
        receipt = self.client.transact(fn, self.submitter, contract="SlipLedger", gas=COMMIT_GAS * blocks)
        seconds = time.perf_counter() - start
        if len(self.ledger.events(receipt, "BlockCommitted")) != blocks:
            raise RuntimeError(f"blocks {self.height + 1}-{self.height + blocks} were not all committed")
        self.height, self.prev = qcs[-1].header.height, prev
        return Anchored(n * blocks, receipt["gasUsed"], seconds)

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
    traced = bench.anchor_block(BLOCK_SLIPS, trace=True)  # one more, its gas broken down
    split = bench.last_breakdown
    if split["total"] != traced.gas:
        raise RuntimeError(f"the traced call used {split['total']} gas, the transaction {traced.gas}")
    return {
        "gas_per_slip": Samples([a.gas_per_slip for a in blocks], extra={
            "slips_per_block": BLOCK_SLIPS, "validators": N_VALIDATORS, "signatures": N_SIGNATURES,
            "gas_per_block_median": gas[len(gas) // 2],
            "anchor_ms_per_block_median": round(sorted(a.seconds for a in blocks)[len(blocks) // 2] * 1000, 2),
            "breakdown_per_block": split,
        }),
        "naive_gas_per_slip": Samples([a.gas for a in naive], extra={"transactions": len(naive)}),
    }


@measurement("gas_per_slip_batched", estimate_s=(3, 8))
def measure_gas_batched(ctx: BenchContext) -> dict[str, Samples]:
    bench = anchor_bench(ctx)
    ctx.progress(f"SlipLedger.commitBlocks: {ctx.reps} transactions of {BATCH_BLOCKS} consecutive blocks of "
                 f"{BLOCK_SLIPS} slips, each with its certificate (after a warm-up transaction)")
    bench.anchor_batch(BLOCK_SLIPS, BATCH_BLOCKS)  # warm-up
    batches = [bench.anchor_batch(BLOCK_SLIPS, BATCH_BLOCKS) for _ in range(ctx.reps)]
    bench.anchor_batch(BLOCK_SLIPS, BATCH_BLOCKS, trace=True)
    split = bench.last_breakdown
    fours = [bench.anchor_batch(BLOCK_SLIPS, 4) for _ in range(3)]
    bench.anchor_batch(BLOCK_SLIPS, 4, trace=True)
    four_split = bench.last_breakdown
    gas = sorted(a.gas for a in batches)
    return {"gas_per_slip_batched": Samples([a.gas_per_slip for a in batches], extra={
        "slips_per_block": BLOCK_SLIPS, "blocks_per_tx": BATCH_BLOCKS, "validators": N_VALIDATORS,
        "signatures_per_block": N_SIGNATURES, "gas_per_tx_median": gas[len(gas) // 2],
        "breakdown_per_tx": split,
        "gas_per_slip_4_blocks_per_tx": sorted(a.gas_per_slip for a in fours)[1],
        "breakdown_per_tx_4_blocks": four_split,
    })}


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
