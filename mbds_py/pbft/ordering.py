"""Normal-case ordering: requests, block cutting, pre-prepare / prepare / commit, execution.

Blocks are chained (height, previous hash) when they are *proposed*, so a
backup checks a fresh pre-prepare against the chain it would have after every
earlier accepted pre-prepare of the view ("tentative head"); a pre-prepare
whose predecessor has not arrived yet is deferred, not rejected.  At execution
a committed block whose link or slips no longer fit the applied chain is an
*orphan*: it changes nothing and its slips go back to the pool.  Orphans
never carry a quorum certificate: a replica sends its COMMIT for ``seq`` only
after executing every lower sequence number and checking that the block
extends the executed head, so every certified block is applied by every honest
replica.  A chain contract that accepts a certified header on top of its
stored head therefore follows the applied chain exactly.

COMMIT signatures bind ``(view, seq, digest)``: counting commits from
different views could certify a digest that was never committed.
"""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING

from .errors import Equivocation, InvalidPrePrepare, MalformedMessage, StaleMessage
from .merkle import merkle_root
from .messages import Commit, Hold, PrePrepare, Prepare, PreparedCert, Request, Want
from .state import Committed, Fault, Slot, chains
from .types import NULL_DIGEST, Block, BlockHeader, CertifiedBlock, CommitSignature, Head, QuorumCertificate, SlipEnvelope
from .votes import VoteOutcome

if TYPE_CHECKING:
    from .replica import Replica


class OrderingService:
    """Runs the three-phase protocol for the current view and executes in order."""

    def __init__(self, replica: Replica):
        self.r = replica
        self.s = replica.state
        self.cfg = replica.config
        self._retrying = False

    # --- requests ---------------------------------------------------------------------

    def submit(self, slip: SlipEnvelope, now: float) -> str | None:
        """Add a slip to the pool; returns why it was refused, or None."""
        s = self.s
        if slip.slip_id in s.applied_slips:
            return "already-committed"
        if slip.slip_id in s.pool:
            return "already-pending"
        reason = self.r.validate_slip(slip)
        if reason is not None:
            return reason
        s.pool.add(slip, now)
        return None

    def relay(self, slips: list[SlipEnvelope], *, to_all: bool = False) -> None:
        """Forward slips: their IDs in one signed HOLD to the primary (clients send every slip to every
        replica, so the primary asks with WANT only for what it lacks), or the bodies in one REQUEST to
        everyone (overdue slips, or no primary in office during a view change)."""
        s = self.s
        if not slips or (s.active and s.is_primary and not to_all):
            return
        if to_all or not s.active:
            self.r.broadcast(self.r.sign(Request(tuple(slips), s.me)))
        else:
            self.r.send(s.primary, self.r.sign(Hold(tuple(slip.slip_id for slip in slips), s.me)))

    def on_request(self, msg: Request, now: float) -> None:
        for slip in msg.slips:
            reason = self.submit(slip, now)
            if reason not in (None, "already-committed", "already-pending"):
                self.r.reject("invalid-slip", msg.sender, f"0x{slip.slip_id.hex()}: {reason}")
        self.maybe_propose(now)

    def _check_ids(self, kind: str, slip_ids: tuple[bytes, ...]) -> None:
        if len(slip_ids) > 4 * self.cfg.max_slips:  # a relay carries at most one drain of client slips
            raise MalformedMessage(f"{kind} names {len(slip_ids)} slips (at most {4 * self.cfg.max_slips})")

    def on_hold(self, msg: Hold, now: float) -> None:
        """Primary: ask the holder for the announced slips it has neither pending nor applied."""
        s = self.s
        self._check_ids("HOLD", msg.slip_ids)
        if not (s.active and s.is_primary):
            return
        missing = tuple(i for i in dict.fromkeys(msg.slip_ids) if i not in s.pool and i not in s.applied_slips)
        if missing:
            self.r.send(msg.sender, self.r.sign(Want(missing, s.me)))

    def on_want(self, msg: Want, now: float) -> None:
        """Send the primary of this view the bodies it asked for (only the primary's WANT is answered)."""
        s = self.s
        self._check_ids("WANT", msg.slip_ids)
        if msg.sender != s.primary:
            raise StaleMessage(f"WANT from replica {msg.sender}, not the primary {s.primary} of view {s.view}")
        slips = tuple(slip for slip in map(s.pool.get, dict.fromkeys(msg.slip_ids)) if slip is not None)
        if slips:
            self.r.send(msg.sender, self.r.sign(Request(slips, s.me)))

    # --- primary ----------------------------------------------------------------------

    def maybe_propose(self, now: float) -> None:
        """Cut blocks while the batch is full or old enough and the pipeline has room."""
        s, cfg = self.s, self.cfg
        if not (s.active and s.is_primary) or s.last_executed < s.stable.seq:
            return
        s.next_seq = max(s.next_seq, s.last_executed + 1)
        while s.pool.available and s.next_seq <= s.high:
            if s.next_seq - 1 - s.last_executed >= cfg.max_inflight:
                return
            oldest = s.pool.oldest()
            assert oldest is not None
            if len(s.pool.available) < cfg.max_slips and now < oldest.first_seen + cfg.max_wait:
                return
            parent = self.parent_head(s.next_seq)
            if parent is None:  # cannot happen for the primary's own log; be safe
                return
            slips = tuple(p.slip for p in islice(s.pool.available.values(), cfg.max_slips))
            block = self._make_block(s.next_seq, parent, slips, now)
            digest = cfg.scheme.header_digest(block.header)
            pre_prepare = self.r.sign(PrePrepare(s.view, s.next_seq, digest, s.me, block))
            s.next_seq += 1
            self.accept(pre_prepare, now)
            self.r.broadcast(pre_prepare)

    def batch_deadline(self) -> float | None:
        s = self.s
        if not (s.active and s.is_primary) or not s.pool.available:
            return None
        oldest = s.pool.oldest()
        return oldest.first_seen + self.cfg.max_wait if oldest else None

    def _make_block(self, seq: int, parent: Head, slips: tuple[SlipEnvelope, ...], now: float) -> Block:
        cfg = self.cfg
        root = merkle_root([cfg.scheme.slip_leaf(x) for x in slips])
        header = BlockHeader(
            height=parent.height + 1,
            seq=seq,
            prev_hash=parent.hash,
            timestamp=max(int(now * 1000), parent.timestamp),
            creator=cfg.validators[self.s.me],
            merkle_root=root,
            body_cid=self.r.body_cid(slips),
        )
        return Block(header, slips)

    # --- tentative chain --------------------------------------------------------------

    def parent_head(self, seq: int) -> Head | None:
        """Head the block at ``seq`` must extend, or None while a predecessor is missing."""
        s = self.s
        if s.last_executed >= s.stable.seq:
            head, start = s.head, s.last_executed
        else:  # lagging behind the stable checkpoint: its head is proven
            head, start = s.stable.head, s.stable.seq
        for k in range(start + 1, seq):
            slot = s.slots.get(k)
            if slot is None:
                return None
            block = slot.block
            if block is not None and chains(head, block):
                head = Head(block.header.height, slot.digest, block.header.timestamp)
        return head

    # --- pre-prepare ------------------------------------------------------------------

    def _check_current(self, msg: PrePrepare | Prepare | Commit) -> bool:
        """True if ``msg`` belongs to the active view; buffers early ones, rejects stale ones."""
        s = self.s
        if msg.view < s.view:
            raise StaleMessage(f"view {msg.view} < current view {s.view}")
        if msg.view > s.view or not s.active:
            self.r.buffer_future(msg)
            return False
        if msg.seq <= s.low:
            raise StaleMessage(f"seq {msg.seq} at or below the low water mark {s.low}")
        if msg.seq > s.high:
            raise StaleMessage(f"seq {msg.seq} above the high water mark {s.high}")
        return True

    def on_pre_prepare(self, pp: PrePrepare, now: float) -> None:
        s = self.s
        if pp.sender != self.cfg.primary(pp.view):
            raise MalformedMessage(f"PRE-PREPARE for view {pp.view} from non-primary {pp.sender}")
        if not self._check_current(pp):
            return
        if pp.seq <= s.last_executed:
            raise StaleMessage(f"seq {pp.seq} already executed")
        known = s.slots.get(pp.seq)
        known_pp = known.pre_prepare if known else s.deferred.get(pp.seq)
        if known_pp is not None:
            if known_pp.digest != pp.digest:
                self._misbehaved(
                    Equivocation(f"two pre-prepares for view {pp.view} seq {pp.seq}"), pp, (known_pp, pp), now
                )
            return
        problem = self._check_block(pp)
        if problem is not None:
            self._misbehaved(InvalidPrePrepare(problem), pp, (pp,), now)
            return
        s.deferred[pp.seq] = pp
        self.retry_deferred(now)

    def _check_block(self, pp: PrePrepare) -> str | None:
        """Checks that need no chain context; None if the block is acceptable."""
        cfg = self.cfg
        block = pp.block
        if pp.digest == NULL_DIGEST or block is None:
            return "a fresh pre-prepare must carry a block"
        header = block.header
        if header.seq != pp.seq:
            return f"header seq {header.seq} != pre-prepare seq {pp.seq}"
        if header.creator != cfg.validators[pp.sender]:
            return "header creator is not the primary"
        if not 1 <= len(block.slips) <= cfg.max_slips:
            return f"block has {len(block.slips)} slips (allowed 1..{cfg.max_slips})"
        if cfg.scheme.header_digest(header) != pp.digest:
            return "digest does not match the header"
        ids = [x.slip_id for x in block.slips]
        if len(set(ids)) != len(ids):
            return "duplicate slip inside the block"
        if merkle_root([cfg.scheme.slip_leaf(x) for x in block.slips]) != header.merkle_root:
            return "Merkle root does not match the slips"
        if self.r.body_cid(block.slips) != header.body_cid:
            return "body CID does not match the slips"
        pool = self.s.pool
        for slip in block.slips:
            pending = pool.available.get(slip.slip_id) or (pool.in_flight.get(slip.slip_id) or (0, None))[1]
            if pending is not None and pending.slip == slip:
                continue  # validated when it entered the pool
            reason = self.r.validate_slip(slip)
            if reason is not None:
                return f"invalid slip 0x{slip.slip_id.hex()}: {reason}"
        return None

    def _check_in_context(self, pp: PrePrepare, parent: Head, now: float) -> str | None:
        """Checks against the tentative chain: link, timestamp, no slip ordered twice."""
        s, cfg = self.s, self.cfg
        block = pp.block
        assert block is not None
        header = block.header
        if not chains(parent, block):
            return f"block does not extend the chain at height {parent.height}"
        now_ms = int(now * 1000)
        skew_ms = int(cfg.max_clock_skew * 1000)
        if header.timestamp < parent.timestamp or abs(header.timestamp - now_ms) > skew_ms:
            return f"timestamp {header.timestamp} outside [{parent.timestamp}, now±{skew_ms} ms]"
        for slip in block.slips:
            if slip.slip_id in s.applied_slips or slip.slip_id in s.pool.in_flight:
                return f"slip 0x{slip.slip_id.hex()} is already ordered"
        return None

    def retry_deferred(self, now: float) -> None:
        """Accept deferred fresh pre-prepares whose predecessor is now known."""
        if self._retrying:  # accepting can execute, which calls back here
            return
        self._retrying = True
        try:
            self._retry_deferred(now)
        finally:
            self._retrying = False

    def _retry_deferred(self, now: float) -> None:
        s = self.s
        progress = True
        while progress and s.deferred:
            progress = False
            for seq in sorted(s.deferred):
                pp = s.deferred.get(seq)
                if pp is None:
                    continue
                if pp.view != s.view or not s.active or seq <= s.last_executed or seq in s.slots or not s.in_window(seq):
                    del s.deferred[seq]
                    continue
                parent = self.parent_head(seq)
                if parent is None:
                    continue
                del s.deferred[seq]
                problem = self._check_in_context(pp, parent, now)
                if problem is not None:
                    self._misbehaved(InvalidPrePrepare(problem), pp, (pp,), now)
                    return
                self.accept(pp, now)
                progress = True
                break  # state changed: rescan from the lowest

    def _misbehaved(self, error: InvalidPrePrepare, pp: PrePrepare, evidence: tuple, now: float) -> None:
        kind = "equivocation" if isinstance(error, Equivocation) else "invalid-pre-prepare"
        self.s.record_fault(Fault(kind, pp.sender, str(error), evidence))
        self.r.reject(error.reason, pp.sender, str(error))
        self.r.view_change.start(self.s.view + 1, now)

    def accept(self, pp: PrePrepare, now: float) -> None:
        """Log an accepted pre-prepare (durably), then prepare it."""
        s = self.s
        s.slots[pp.seq] = Slot(pp.seq, pp, now)
        self.r.store.save_pre_prepare(pp)
        if pp.block is not None and pp.seq > s.last_executed:
            s.pool.take(pp.block.slips, pp.seq, now)
        if not s.is_primary:
            prepare = self.r.sign(Prepare(s.view, pp.seq, pp.digest, s.me))
            s.prepares.add(prepare)
            self.r.broadcast(prepare)
        self.check_prepared(pp.seq, now)

    # --- prepare / commit -------------------------------------------------------------

    def on_prepare(self, msg: Prepare, now: float) -> None:
        if msg.sender == self.cfg.primary(msg.view):
            raise MalformedMessage("the primary does not send PREPARE")
        if not self._check_current(msg):
            return
        if self._count(self.s.prepares.add(msg), msg):
            self.check_prepared(msg.seq, now)

    def on_commit(self, msg: Commit, now: float) -> None:
        if not self._check_current(msg):
            return
        if self._count(self.s.commits.add(msg), msg):
            self.check_committed(msg.seq, now)

    def _count(self, outcome: VoteOutcome, msg: Prepare | Commit) -> bool:
        if outcome is VoteOutcome.CONFLICT:
            kind = type(msg).__name__.upper()
            detail = f"second {kind} for view {msg.view} seq {msg.seq} with another digest"
            votes = self.s.prepares if isinstance(msg, Prepare) else self.s.commits
            self.s.record_fault(Fault("double-vote", msg.sender, detail, (votes.evidence[-1],)))
            self.r.reject("double-vote", msg.sender, detail)
        return outcome is VoteOutcome.ADDED

    def check_prepared(self, seq: int, now: float) -> None:
        s, q = self.s, self.cfg.quorum
        slot = s.slots.get(seq)
        if slot is None or slot.prepared:
            return
        votes = s.prepares.votes(s.view, seq, slot.digest)
        if len(votes) < q - 1:
            return
        slot.prepared = True
        cert = PreparedCert(slot.pre_prepare, tuple(votes[: q - 1]))
        s.prepared_certs[seq] = cert
        self.r.store.save_prepared(cert)
        self.maybe_commit(now)
        self.check_committed(seq, now)

    def maybe_commit(self, now: float) -> None:
        """Send COMMIT for prepared slots once everything below them is executed.

        A COMMIT is a vote that the block extends the *executed* chain, so a
        quorum certificate always certifies a block that every honest replica
        applies (never an orphan): the chain contract may accept any certified
        header that links to its head.  Slots at or below ``last_executed``
        (re-issued by a NEW-VIEW) are committed again so laggards can finish,
        if executing them left exactly this entry in the state (a null for a
        sequence number that applied nothing): see
        :meth:`~mbds_py.pbft.state.ReplicaState.executed_digest`, which a
        restart or a state transfer does not lose.
        """
        s = self.s
        if not s.active:
            return
        for seq in sorted(k for k in s.slots if k <= s.last_executed + 1):
            slot = s.slots[seq]
            if not slot.prepared or slot.commit_sent:
                continue
            if seq <= s.last_executed and s.executed_digest(seq) != slot.digest:
                continue
            block = slot.block
            if seq == s.last_executed + 1 and block is not None and (
                not chains(s.head, block) or any(x.slip_id in s.applied_slips for x in block.slips)
            ):
                detail = f"prepared block at {seq} cannot extend the executed chain"
                s.record_fault(Fault("invalid-pre-prepare", s.primary, detail))
                self.r.view_change.start(s.view + 1, now)
                return
            slot.commit_sent = True
            commit = self.r.sign(Commit(s.view, seq, slot.digest, s.me))
            s.commits.add(commit)
            self.r.broadcast(commit)
            self.check_committed(seq, now)

    def check_committed(self, seq: int, now: float) -> None:
        s, q = self.s, self.cfg.quorum
        slot = s.slots.get(seq)
        if slot is None or not slot.prepared or slot.committed:
            return
        votes = s.commits.votes(s.view, seq, slot.digest)
        if len(votes) < q:
            return
        slot.committed = True
        if seq <= s.last_executed:
            return
        block = slot.block
        qc = None
        if block is not None:
            sigs = tuple(CommitSignature(c.sender, c.signature) for c in votes[:q])
            qc = QuorumCertificate(block.header, s.view, sigs)
        s.committed[seq] = Committed(seq, slot.digest, block, qc)
        self.execute_ready(now)

    # --- execution --------------------------------------------------------------------

    def execute_ready(self, now: float) -> None:
        s = self.s
        executed = False
        while (entry := s.committed.pop(s.last_executed + 1, None)) is not None:
            self._execute(entry, now)
            executed = True
        if executed:
            for seq in [k for k in s.committed if k <= s.last_executed]:
                del s.committed[seq]
            self.maybe_commit(now)
            self.retry_deferred(now)
            self.maybe_propose(now)

    def _execute(self, entry: Committed, now: float) -> None:
        s = self.s
        block = entry.block
        certified = None
        head = s.head
        if block is not None:
            ids = [x.slip_id for x in block.slips]
            if chains(s.head, block) and not any(i in s.applied_slips for i in ids):
                assert entry.qc is not None
                certified = CertifiedBlock(block, entry.qc)
                head = Head(block.header.height, entry.digest, block.header.timestamp)
        self.r.store.save_executed(entry.seq, head, certified)
        before = s.head
        s.last_executed = entry.seq
        s.last_progress = now
        if certified is not None:
            self._applied(certified, head)
        elif block is not None:
            s.orphans += 1
            s.pool.release([x.slip_id for x in block.slips], s.applied_slips)
        self.r.checkpoints.on_advanced(entry.seq - 1, entry.seq, before, now)

    def _applied(self, certified: CertifiedBlock, head: Head) -> None:
        s = self.s
        ids = [x.slip_id for x in certified.block.slips]
        s.head = head
        s.applied_digests[certified.block.header.seq] = head.hash
        s.applied_slips.update(ids)
        s.pool.remove(ids)
        self.r.outbox.deliver(certified)

    def apply_transferred(self, certified: CertifiedBlock, digest: bytes, now: float) -> None:
        """Apply a block fetched with a verified certificate (state transfer)."""
        s = self.s
        header = certified.block.header
        head = Head(header.height, digest, header.timestamp)
        self.r.store.save_executed(header.seq, head, certified)
        old, before = s.last_executed, s.head
        s.last_executed = header.seq
        s.last_progress = now
        self._applied(certified, head)
        self.r.checkpoints.on_advanced(old, header.seq, before, now)

    def after_jump(self, now: float) -> None:
        """Execution jumped forward by state transfer: drop what it superseded."""
        s = self.s
        stale = [sid for sid, (seq, _) in s.pool.in_flight.items() if seq <= s.last_executed]
        s.pool.release(stale, s.applied_slips)
        for seq in [k for k in s.committed if k <= s.last_executed]:
            del s.committed[seq]
        self.execute_ready(now)
        self.maybe_commit(now)
        self.retry_deferred(now)
        self.maybe_propose(now)

    # --- timers -----------------------------------------------------------------------

    def request_deadline(self) -> float | None:
        """When a backup gives up on the primary (no progress although a block was due)."""
        s, cfg = self.s, self.cfg
        if not s.active or s.is_primary:
            return None
        due = None
        oldest = s.pool.oldest()
        if oldest is not None:
            full = len(s.pool.available) >= cfg.max_slips
            due = oldest.first_seen + (0.0 if full else cfg.max_wait)
        pending_slots = [slot.accepted_at for seq, slot in s.slots.items() if seq > s.last_executed]
        if pending_slots:
            due = min(pending_slots) if due is None else min(due, min(pending_slots))
        if due is None:
            return None
        deadline = max(due, s.last_progress) + cfg.request_timeout
        if oldest is not None:  # the primary executes others but skips this slip
            censored = oldest.first_seen + cfg.max_wait + cfg.censorship_timeout
            deadline = min(deadline, max(censored, s.view_started + cfg.request_timeout))
        return deadline


__all__ = ["OrderingService"]
