"""Replica state shared by the ordering, checkpoint and view-change services."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from .config import PbftConfig
from .messages import Commit, Checkpoint, NewView, PrePrepare, Prepare, PreparedCert, StableCheckpoint, ViewChange
from .types import NULL_DIGEST, Block, Head, QuorumCertificate, SlipEnvelope
from .votes import VoteSet


@dataclass
class Slot:
    """One sequence number of the current view."""

    seq: int
    pre_prepare: PrePrepare
    """Accepted pre-prepare, block attached (None block = null request)."""
    accepted_at: float
    prepared: bool = False
    commit_sent: bool = False
    committed: bool = False

    @property
    def digest(self) -> bytes:
        return self.pre_prepare.digest

    @property
    def block(self) -> Block | None:
        return self.pre_prepare.block


@dataclass(frozen=True)
class Committed:
    """A sequence number committed locally and waiting for its turn to execute."""

    seq: int
    digest: bytes
    block: Block | None
    qc: QuorumCertificate | None


@dataclass(frozen=True)
class Fault:
    """Evidence that a replica misbehaved (kept for operators and the credit system)."""

    kind: str
    replica: int
    detail: str
    evidence: tuple[Any, ...] = ()


@dataclass
class PendingSlip:
    slip: SlipEnvelope
    first_seen: float


class PendingPool:
    """Slips seen but not yet applied: ``available`` to propose, or ``in_flight`` in a slot."""

    def __init__(self) -> None:
        self.available: dict[bytes, PendingSlip] = {}
        self.in_flight: dict[bytes, tuple[int, PendingSlip]] = {}

    def __contains__(self, slip_id: bytes) -> bool:
        return slip_id in self.available or slip_id in self.in_flight

    def __len__(self) -> int:
        return len(self.available) + len(self.in_flight)

    def add(self, slip: SlipEnvelope, now: float) -> bool:
        if slip.slip_id in self:
            return False
        self.available[slip.slip_id] = PendingSlip(slip, now)
        return True

    def take(self, slips: tuple[SlipEnvelope, ...], seq: int, now: float) -> None:
        """Mark ``slips`` as proposed at ``seq`` (adding the ones not seen before)."""
        for slip in slips:
            sid = slip.slip_id
            if sid in self.in_flight:
                entry = self.in_flight[sid][1]
            else:
                entry = self.available.pop(sid, None) or PendingSlip(slip, now)
            self.in_flight[sid] = (seq, entry)

    def release(self, slip_ids: Any, applied: set[bytes]) -> None:
        """Return in-flight slips to ``available`` (oldest first), dropping applied ones."""
        back = []
        for slip_id in slip_ids:
            item = self.in_flight.pop(slip_id, None)
            if item is not None and slip_id not in applied:
                back.append(item[1])
        if back:
            merged = sorted([*back, *self.available.values()], key=lambda p: p.first_seen)
            self.available = {p.slip.slip_id: p for p in merged}

    def release_all(self, applied: set[bytes]) -> None:
        self.release(list(self.in_flight), applied)

    def remove(self, slip_ids: Any) -> None:
        for slip_id in slip_ids:
            self.available.pop(slip_id, None)
            self.in_flight.pop(slip_id, None)

    def get(self, slip_id: bytes) -> SlipEnvelope | None:
        """The pending slip with this ID, available or in flight."""
        entry = self.available.get(slip_id) or (self.in_flight.get(slip_id) or (None, None))[1]
        return entry.slip if entry is not None else None

    def oldest(self) -> PendingSlip | None:
        return next(iter(self.available.values()), None)


class ReplicaState:
    """Mutable state of one replica; the services read and write it directly."""

    def __init__(self, config: PbftConfig, me: int, now: float):
        self.config = config
        self.me = me
        # views
        self.view = 0
        self.active = True
        self.new_view: NewView | None = None
        self.view_changes: dict[int, dict[int, ViewChange]] = {}
        self.my_view_change: ViewChange | None = None
        self.vc_deadline: float | None = None
        self.vc_timeout = config.view_change_timeout
        self.view_started = now
        # ordering
        self.slots: dict[int, Slot] = {}
        self.deferred: dict[int, PrePrepare] = {}
        self.prepares: VoteSet[Prepare] = VoteSet()
        self.commits: VoteSet[Commit] = VoteSet()
        self.prepared_certs: dict[int, PreparedCert] = {}
        self.committed: dict[int, Committed] = {}
        self.next_seq = 1
        self.pool = PendingPool()
        self.future: dict[int, list[Any]] = {}
        # execution
        self.last_executed = 0
        self.head: Head = config.genesis
        self.applied_slips: set[bytes] = set()
        self.applied_digests: dict[int, bytes] = {}
        """Digest of the block applied at each seq above the stable checkpoint (see :meth:`executed_digest`)."""
        self.last_progress = now
        # checkpoints
        self.stable = StableCheckpoint(0, config.genesis, ())
        self.checkpoint_votes: dict[int, dict[int, Checkpoint]] = {}
        # catch-up
        self.status_deadline = now
        self.fetch_deadline: float | None = None
        # observability
        self.faults: list[Fault] = []
        self.rejections: deque[tuple[str, int, str]] = deque(maxlen=256)
        self.rejection_counts: dict[str, int] = {}
        self.orphans = 0

    @property
    def primary(self) -> int:
        return self.config.primary(self.view)

    @property
    def is_primary(self) -> bool:
        return self.primary == self.me

    @property
    def low(self) -> int:
        return self.stable.seq

    @property
    def high(self) -> int:
        return self.stable.seq + self.config.window

    def in_window(self, seq: int) -> bool:
        return self.low < seq <= self.high

    def executed_digest(self, seq: int) -> bytes | None:
        """What executing ``seq`` left in the state: the applied block's digest, or the null
        digest when it applied nothing (null request or orphan); None if ``seq`` is not in
        (stable, last executed].

        Derived from the applied chain alone, so it survives a crash-restart and holds for
        sequence numbers skipped by state transfer.
        """
        if not self.stable.seq < seq <= self.last_executed:
            return None
        return self.applied_digests.get(seq, NULL_DIGEST)

    def record_fault(self, fault: Fault) -> None:
        self.faults.append(fault)


def chains(parent: Head, block: Block) -> bool:
    """True iff ``block`` extends ``parent`` (height and previous hash)."""
    return block.header.prev_hash == parent.hash and block.header.height == parent.height + 1


__all__ = ["Committed", "Fault", "PendingPool", "PendingSlip", "ReplicaState", "Slot", "chains"]
