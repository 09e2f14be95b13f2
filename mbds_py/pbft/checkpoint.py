"""Checkpoints, garbage collection and state transfer (STATUS / FETCH / BLOCKS).

Every ``checkpoint_interval`` executed sequence numbers a replica signs its
chain head; a quorum of matching CHECKPOINTs makes it stable, moves the low
water mark and collects the log at or below it.  A replica that finds itself
behind (a stable checkpoint or a STATUS from a peer is ahead of it) fetches
committed blocks and applies each one only after verifying its quorum
certificate and its link to the local head.  STATUS beacons also drive
retransmission, so lost messages are recovered once the network heals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import InvalidCertificate, MalformedMessage, StaleMessage
from .merkle import merkle_root
from .messages import Blocks, Checkpoint, Fetch, StableCheckpoint, Status
from .state import Fault, chains
from .types import CertifiedBlock, Head

if TYPE_CHECKING:
    from .replica import Replica


class CheckpointService:
    """Checkpoint messages, stability and log garbage collection."""

    def __init__(self, replica: Replica):
        self.r = replica
        self.s = replica.state
        self.cfg = replica.config

    def on_advanced(self, old: int, new: int, head_before: Head, now: float) -> None:
        """Execution moved from ``old`` to ``new``: sign a checkpoint at each boundary passed.

        Boundaries strictly below ``new`` (skipped by state transfer) had
        ``head_before``, since nothing was applied between ``old`` and ``new``.
        """
        s, k = self.s, self.cfg.checkpoint_interval
        first = (max(old, s.stable.seq) // k + 1) * k
        for seq in range(first, new + 1, k):
            head = s.head if seq == new else head_before
            checkpoint = self.r.sign(Checkpoint(seq, head.height, head.hash, head.timestamp, s.me))
            self.r.broadcast(checkpoint)
            self._add(checkpoint, now)

    def on_checkpoint(self, msg: Checkpoint, now: float) -> None:
        s, cfg = self.s, self.cfg
        if msg.seq % cfg.checkpoint_interval or msg.seq == 0:
            raise MalformedMessage(f"checkpoint at {msg.seq} is not a multiple of {cfg.checkpoint_interval}")
        if msg.seq <= s.stable.seq:
            raise StaleMessage(f"checkpoint {msg.seq} at or below the stable checkpoint {s.stable.seq}")
        if msg.seq > s.stable.seq + 4 * cfg.window:
            raise StaleMessage(f"checkpoint {msg.seq} too far ahead; STATUS will start state transfer")
        self._add(msg, now)

    def _add(self, msg: Checkpoint, now: float) -> None:
        s = self.s
        votes = s.checkpoint_votes.setdefault(msg.seq, {})
        earlier = votes.get(msg.sender)
        if earlier is not None:
            if earlier.head != msg.head:
                detail = f"two different checkpoints at {msg.seq}"
                s.record_fault(Fault("conflicting-checkpoint", msg.sender, detail, (earlier, msg)))
                self.r.reject("conflicting-checkpoint", msg.sender, detail)
            return
        votes[msg.sender] = msg
        matching = sorted((c for c in votes.values() if c.head == msg.head), key=lambda c: c.sender)
        if len(matching) >= self.cfg.quorum:
            self.make_stable(StableCheckpoint(msg.seq, msg.head, tuple(matching[: self.cfg.quorum])), now)

    def verify_proof(self, proof: tuple[Checkpoint, ...]) -> StableCheckpoint:
        """A stable checkpoint from quorum matching, correctly signed CHECKPOINTs."""
        if not proof:
            return StableCheckpoint(0, self.cfg.genesis, ())
        first = proof[0]
        senders = set()
        for cp in proof:
            if cp.seq != first.seq or cp.head != first.head:
                raise InvalidCertificate("checkpoint proof mixes different checkpoints")
            self.r.auth.check(cp)
            senders.add(cp.sender)
        if len(senders) < self.cfg.quorum:
            raise InvalidCertificate(f"checkpoint proof has {len(senders)} signers, needs {self.cfg.quorum}")
        if first.seq % self.cfg.checkpoint_interval:
            raise InvalidCertificate("checkpoint proof at a non-checkpoint sequence number")
        return StableCheckpoint(first.seq, first.head, tuple(sorted(proof, key=lambda c: c.sender)))

    def make_stable(self, stable: StableCheckpoint, now: float) -> None:
        """Adopt a stable checkpoint: persist, move the water marks, collect the log."""
        s = self.s
        if stable.seq <= s.stable.seq:
            return
        if s.last_executed == stable.seq and s.head != stable.head:
            s.record_fault(Fault("diverged", s.me, f"local head differs from stable checkpoint {stable.seq}"))
        self.r.store.save_stable_checkpoint(stable)
        s.stable = stable
        seq = stable.seq
        for table in (s.slots, s.deferred, s.prepared_certs, s.checkpoint_votes, s.applied_digests):
            for k in [k for k in table if k <= seq]:
                del table[k]
        s.prepares.prune(up_to_seq=seq)
        s.commits.prune(up_to_seq=seq)
        if s.last_executed < seq and s.head == stable.head:
            # Only null requests or orphans since our last execution: same state.
            self.r.store.save_executed(seq, s.head, None)
            s.last_executed = seq
            self.r.ordering.after_jump(now)
        elif s.last_executed < seq:
            self.r.catchup.fetch([c.sender for c in stable.proof], now)
        self.r.ordering.maybe_propose(now)


class CatchupService:
    """STATUS beacons, retransmission and block fetching."""

    def __init__(self, replica: Replica):
        self.r = replica
        self.s = replica.state
        self.cfg = replica.config
        self._rotation = 0

    # --- periodic beacon ---------------------------------------------------------------

    def tick(self, now: float) -> None:
        s = self.s
        s.status_deadline = now + self.cfg.status_interval
        self.r.broadcast(self.r.sign(Status(s.view, s.active, s.last_executed, s.head.height, s.stable.seq, s.me)))
        if not s.active and s.my_view_change is not None:
            self.r.broadcast(s.my_view_change)
        self._resend_overdue_slips(now)

    def _resend_overdue_slips(self, now: float) -> None:
        """Broadcast slips pending for long: the primary may never have got them, and
        the other backups start their request timers (censorship shows up everywhere)."""
        s, cfg = self.s, self.cfg
        if s.active and s.is_primary:
            return
        limit = now - cfg.max_wait - cfg.request_timeout / 2
        overdue = []
        for pending in s.pool.available.values():
            if pending.first_seen > limit or len(overdue) >= 4 * cfg.max_slips:
                break
            overdue.append(pending.slip)
        self.r.ordering.relay(overdue, to_all=True)

    def on_status(self, msg: Status, now: float) -> None:
        s = self.s
        peer = msg.sender
        if msg.height > s.head.height:
            self.fetch([peer], now)
        if msg.stable_seq < s.stable.seq:
            for cp in s.stable.proof:
                self.r.send(peer, cp)
        for seq, votes in s.checkpoint_votes.items():  # checkpoints not yet stable anywhere
            own = votes.get(s.me)
            if own is not None and seq > msg.stable_seq:
                self.r.send(peer, own)
        if not s.active:
            return
        if s.new_view is not None and (msg.view < s.view or (msg.view == s.view and not msg.active)):
            self.r.send(peer, s.new_view)
        elif msg.view == s.view and msg.active:
            self._retransmit_log(peer, msg.last_executed, now)

    def _retransmit_log(self, peer: int, peer_executed: int, now: float) -> None:
        """Resend our pre-prepares / votes for slots the peer has not executed and that stall."""
        s = self.s
        for seq in sorted(s.slots):
            slot = s.slots[seq]
            if seq <= peer_executed or now - slot.accepted_at < self.cfg.status_interval:
                continue
            self.r.send(peer, slot.pre_prepare)
            own_prepare = s.prepares.vote_of(s.view, seq, s.me)
            if own_prepare is not None:
                self.r.send(peer, own_prepare)
            own_commit = s.commits.vote_of(s.view, seq, s.me)
            if own_commit is not None:
                self.r.send(peer, own_commit)

    # --- state transfer ----------------------------------------------------------------

    def fetch(self, candidates: list[int], now: float) -> None:
        """Ask one of ``candidates`` for blocks above our head (one request in flight)."""
        s = self.s
        if s.fetch_deadline is not None and now < s.fetch_deadline:
            return
        peers = [p for p in candidates if p != s.me]
        if not peers:
            return
        peer = peers[self._rotation % len(peers)]
        self._rotation += 1
        s.fetch_deadline = now + self.cfg.status_interval
        self.r.send(peer, self.r.sign(Fetch(s.head.height + 1, s.me)))

    def on_fetch(self, msg: Fetch, now: float) -> None:
        s = self.s
        blocks = tuple(self.r.store.blocks_from(msg.from_height, self.cfg.fetch_batch)) if msg.from_height <= s.head.height else ()
        self.r.send(msg.sender, self.r.sign(Blocks(blocks, s.stable.proof, s.head.height, s.me)))

    def verify_certified(self, certified: CertifiedBlock) -> bytes:
        """Digest of a fetched block after checking its quorum certificate and Merkle root."""
        cfg = self.cfg
        block, qc = certified.block, certified.qc
        header = block.header
        if qc.header != header:
            raise InvalidCertificate("certificate is for another header")
        if not block.slips or len({x.slip_id for x in block.slips}) != len(block.slips):
            raise InvalidCertificate("block has no slips or repeats a slip")
        if merkle_root([cfg.scheme.slip_leaf(x) for x in block.slips]) != header.merkle_root:
            raise InvalidCertificate("Merkle root does not match the slips")
        digest = cfg.scheme.header_digest(header)
        signed = cfg.scheme.commit_digest(cfg.domain, qc.view, header.seq, digest)
        signers = set()
        for sig in qc.signatures:
            if not 0 <= sig.signer < cfg.n or sig.signer in signers:
                raise InvalidCertificate("certificate signer unknown or repeated")
            if not self.r.verifier.verify(signed, sig.signature, cfg.validators[sig.signer]):
                raise InvalidCertificate(f"certificate signature of replica {sig.signer} does not verify")
            signers.add(sig.signer)
        if len(signers) < cfg.quorum:
            raise InvalidCertificate(f"certificate has {len(signers)} signatures, needs {cfg.quorum}")
        return digest

    def on_blocks(self, msg: Blocks, now: float) -> None:
        s = self.s
        s.fetch_deadline = None
        jumped = False
        try:
            for certified in msg.blocks:
                header = certified.block.header
                if header.height <= s.head.height:
                    continue
                digest = self.verify_certified(certified)
                if not chains(s.head, certified.block) or header.seq <= s.last_executed:
                    raise InvalidCertificate(f"block {header.height} does not extend the local chain")
                if any(x.slip_id in s.applied_slips for x in certified.block.slips):
                    raise InvalidCertificate(f"block {header.height} repeats an applied slip")
                self.r.ordering.apply_transferred(certified, digest, now)
                jumped = True
            if msg.checkpoints:
                self.r.checkpoints.make_stable(self.r.checkpoints.verify_proof(msg.checkpoints), now)
        finally:
            if jumped:
                self.r.ordering.after_jump(now)
        if msg.height > s.head.height:
            self.fetch([msg.sender], now)


__all__ = ["CatchupService", "CheckpointService"]
