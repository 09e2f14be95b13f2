"""View change: VIEW-CHANGE with the stable checkpoint and prepared set P, NEW-VIEW with O.

Triggers: the request timer (no progress although a block was due), a
primary caught equivocating or proposing an invalid block, f+1 peers already
changing view, or a NEW-VIEW that does not arrive in time (timeout doubles).

The new primary builds O deterministically from the quorum of VIEW-CHANGEs it
includes, and every backup recomputes it:

* ``min_s`` = the highest stable checkpoint among them, ``max_s`` = the highest
  prepared sequence number;
* each sequence number in ``(min_s, max_s]`` gets the prepared certificate of
  the highest view, or the null request;
* MBDS rule: folding O over the checkpoint's head, a block that does not extend
  the chain (or repeats a slip) becomes a null request.  O's prefix is exactly
  what will execute before that block, so the block could only ever execute as
  an orphan, which changes nothing: replacing it by null is safe.  Such a block
  was never committed, because a COMMIT is only sent for a block that extends
  the executed chain (see :meth:`OrderingService.maybe_commit`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InvalidCertificate, MalformedMessage, StaleMessage
from .merkle import merkle_root
from .messages import NewView, PrePrepare, StableCheckpoint, ViewChange
from .state import Fault, chains
from .types import NULL_DIGEST, Block, Head

if TYPE_CHECKING:
    from .replica import Replica


@dataclass(frozen=True)
class NewViewPlan:
    """What a NEW-VIEW must contain for a given set of VIEW-CHANGEs."""

    stable: StableCheckpoint
    entries: tuple[tuple[int, bytes, Block | None], ...]
    """(seq, digest, block) for every seq in (min_s, max_s]; null entries carry no block."""

    @property
    def max_seq(self) -> int:
        return self.entries[-1][0] if self.entries else self.stable.seq


class ViewChangeService:
    """Leaves a view, collects VIEW-CHANGEs, builds / verifies / installs NEW-VIEWs."""

    def __init__(self, replica: Replica):
        self.r = replica
        self.s = replica.state
        self.cfg = replica.config
        self._valid_blocks: dict[bytes, Block] = {}

    # --- leaving a view -----------------------------------------------------------------

    def view_change_message(self) -> ViewChange:
        s = self.s
        prepared = tuple(s.prepared_certs[k] for k in sorted(s.prepared_certs) if k > s.stable.seq)
        return self.r.sign(ViewChange(s.view, s.stable.seq, s.stable.proof, prepared, s.me))

    def start(self, target: int, now: float) -> None:
        """Stop accepting messages of the current view and ask for ``target``."""
        s = self.s
        if target <= s.view:
            return
        s.view, s.active = target, False
        self.r.store.save_view(target, False)
        s.deferred.clear()
        s.vc_deadline = None
        vc = self.view_change_message()
        s.my_view_change = vc
        s.view_changes[s.me] = vc
        self.r.broadcast(vc)
        self._progress(now)

    def on_timeout(self, now: float) -> None:
        """No NEW-VIEW in time: try the next view, waiting twice as long."""
        self.s.vc_timeout *= 2
        self.start(self.s.view + 1, now)

    # --- collecting ---------------------------------------------------------------------

    def on_view_change(self, vc: ViewChange, now: float) -> None:
        s = self.s
        if vc.new_view < s.view or (vc.new_view == s.view and s.active):
            if s.active and s.new_view is not None:
                self.r.send(vc.sender, s.new_view)  # help a replica that missed it
            raise StaleMessage(f"VIEW-CHANGE to view {vc.new_view}, current view {s.view}")
        earlier = s.view_changes.get(vc.sender)
        if earlier == vc:
            return  # periodic retransmission
        self.validate(vc)
        if earlier is not None and earlier.new_view > vc.new_view:
            raise StaleMessage(f"replica {vc.sender} already asked for view {earlier.new_view}")
        s.view_changes[vc.sender] = vc
        self._maybe_join(now)
        self._progress(now)

    def _maybe_join(self, now: float) -> None:
        """f+1 replicas want a higher view: join the highest view f+1 of them reached."""
        s = self.s
        views = sorted(
            (vc.new_view for sender, vc in s.view_changes.items() if sender != s.me and vc.new_view > s.view),
            reverse=True,
        )
        if len(views) >= self.cfg.weak:
            self.start(views[self.cfg.weak - 1], now)

    def _progress(self, now: float) -> None:
        s = self.s
        if s.active:
            return
        # A quorum has left the old view (some may already be further on): the
        # NEW-VIEW is due, so its timer runs.  A lone replica never escalates.
        moved_on = sum(1 for vc in s.view_changes.values() if vc.new_view >= s.view)
        if moved_on >= self.cfg.quorum and s.vc_deadline is None:
            s.vc_deadline = now + s.vc_timeout
        vcs = [vc for vc in s.view_changes.values() if vc.new_view == s.view]
        if len(vcs) >= self.cfg.quorum and s.is_primary and s.my_view_change is not None:
            self._send_new_view(vcs, now)

    def _send_new_view(self, vcs: list[ViewChange], now: float) -> None:
        s = self.s
        chosen = sorted(vcs, key=lambda vc: (vc.sender != s.me, vc.sender))[: self.cfg.quorum]
        chosen.sort(key=lambda vc: vc.sender)
        plan = self.plan(tuple(chosen))
        pre_prepares = tuple(self.r.sign(PrePrepare(s.view, seq, digest, s.me)) for seq, digest, _ in plan.entries)
        nv = self.r.sign(NewView(s.view, tuple(chosen), pre_prepares, s.me))
        self.r.store.save_new_view(nv)
        self.r.broadcast(nv)
        self._install(nv, plan, now)

    # --- validation ---------------------------------------------------------------------

    def validate(self, vc: ViewChange) -> None:
        """Raise :class:`InvalidCertificate` unless every proof inside ``vc`` holds."""
        cfg, auth = self.cfg, self.r.auth
        stable = self.r.checkpoints.verify_proof(vc.checkpoints)
        if stable.seq != vc.stable_seq:
            raise InvalidCertificate(f"stable_seq {vc.stable_seq} does not match its proof ({stable.seq})")
        seen = set()
        for cert in vc.prepared:
            pp = cert.pre_prepare
            if not vc.stable_seq < pp.seq <= vc.stable_seq + cfg.window or pp.seq in seen:
                raise InvalidCertificate(f"prepared certificate for seq {pp.seq} outside the window or repeated")
            seen.add(pp.seq)
            if pp.view >= vc.new_view or pp.sender != cfg.primary(pp.view):
                raise InvalidCertificate(f"prepared certificate for seq {pp.seq} has a bad view or primary")
            auth.check(pp)
            self._check_cert_block(pp)
            primary = cfg.primary(pp.view)
            senders = set()
            for prepare in cert.prepares:
                if (prepare.view, prepare.seq, prepare.digest) != (pp.view, pp.seq, pp.digest):
                    raise InvalidCertificate(f"prepare does not match the pre-prepare at seq {pp.seq}")
                if prepare.sender == primary or prepare.sender in senders:
                    raise InvalidCertificate(f"prepare from the primary or repeated at seq {pp.seq}")
                auth.check(prepare)
                senders.add(prepare.sender)
            if len(senders) < cfg.quorum - 1:
                raise InvalidCertificate(f"prepared certificate for seq {pp.seq} has {len(senders)} prepares")

    def _check_cert_block(self, pp: PrePrepare) -> None:
        cfg = self.cfg
        block = pp.block
        if pp.digest == NULL_DIGEST:
            if block is not None:
                raise InvalidCertificate("null request with a block")
            return
        if block is None:
            raise InvalidCertificate(f"prepared certificate at seq {pp.seq} lacks its block")
        if self._valid_blocks.get(pp.digest) == block:
            return
        if block.header.seq != pp.seq or cfg.scheme.header_digest(block.header) != pp.digest:
            raise InvalidCertificate(f"block does not match the digest at seq {pp.seq}")
        if not block.slips or merkle_root([cfg.scheme.slip_leaf(x) for x in block.slips]) != block.header.merkle_root:
            raise InvalidCertificate(f"block Merkle root does not match its slips at seq {pp.seq}")
        if len(self._valid_blocks) > 4 * cfg.window:
            self._valid_blocks.clear()
        self._valid_blocks[pp.digest] = block

    def plan(self, vcs: tuple[ViewChange, ...]) -> NewViewPlan:
        """The deterministic O set for ``vcs`` (all already validated)."""
        best_vc = max(vcs, key=lambda vc: vc.stable_seq)
        stable = self.r.checkpoints.verify_proof(best_vc.checkpoints)
        best = {}
        for vc in vcs:
            for cert in vc.prepared:
                if cert.seq <= stable.seq:
                    continue
                current = best.get(cert.seq)
                if current is None or (cert.view, cert.digest) > (current.view, current.digest):
                    best[cert.seq] = cert
        max_s = max(best, default=stable.seq)
        head, used, entries = stable.head, set(), []
        for seq in range(stable.seq + 1, max_s + 1):
            cert = best.get(seq)
            block = cert.pre_prepare.block if cert is not None else None
            ids = {x.slip_id for x in block.slips} if block is not None else set()
            if block is not None and chains(head, block) and not (ids & used):
                assert cert is not None
                entries.append((seq, cert.digest, block))
                head = Head(block.header.height, cert.digest, block.header.timestamp)
                used |= ids
            else:
                entries.append((seq, NULL_DIGEST, None))
        return NewViewPlan(stable, tuple(entries))

    # --- installing ---------------------------------------------------------------------

    def on_new_view(self, nv: NewView, now: float) -> None:
        s, cfg = self.s, self.cfg
        if nv.view < s.view or (nv.view == s.view and s.active):
            raise StaleMessage(f"NEW-VIEW for view {nv.view}, current view {s.view}")
        if nv.sender != cfg.primary(nv.view):
            raise MalformedMessage(f"NEW-VIEW for view {nv.view} from non-primary {nv.sender}")
        senders = {vc.sender for vc in nv.view_changes}
        if len(senders) != len(nv.view_changes) or len(senders) < cfg.quorum:
            raise InvalidCertificate(f"NEW-VIEW carries {len(senders)} distinct VIEW-CHANGEs, needs {cfg.quorum}")
        for vc in nv.view_changes:
            if vc.new_view != nv.view:
                raise InvalidCertificate("NEW-VIEW carries a VIEW-CHANGE for another view")
            self.r.auth.check(vc)
            self.validate(vc)
        plan = self.plan(nv.view_changes)
        if len(nv.pre_prepares) != len(plan.entries):
            raise InvalidCertificate("NEW-VIEW pre-prepares do not match the recomputed O set")
        for pp, (seq, digest, _) in zip(nv.pre_prepares, plan.entries):
            if (pp.view, pp.seq, pp.digest, pp.sender) != (nv.view, seq, digest, nv.sender) or pp.block is not None:
                raise InvalidCertificate(f"NEW-VIEW pre-prepare for seq {pp.seq} differs from the O set")
            self.r.auth.check(pp)
        self._install(nv, plan, now)

    def _install(self, nv: NewView, plan: NewViewPlan, now: float) -> None:
        s, cfg = self.s, self.cfg
        s.view, s.active = nv.view, False
        self.r.checkpoints.make_stable(plan.stable, now)
        s.active = True
        self.r.store.save_view(nv.view, True)
        self.r.store.save_new_view(nv)
        s.new_view = nv
        s.vc_deadline = None
        s.vc_timeout = cfg.view_change_timeout
        s.my_view_change = None
        s.view_changes = {k: vc for k, vc in s.view_changes.items() if vc.new_view > nv.view}
        s.slots.clear()
        s.deferred.clear()
        s.prepares.prune(below_view=nv.view)
        s.commits.prune(below_view=nv.view)
        s.pool.release_all(s.applied_slips)
        o_digest = {seq: digest for seq, digest, _ in plan.entries}
        for seq, entry in list(s.committed.items()):
            if o_digest.get(seq, entry.digest) != entry.digest:  # PBFT safety says: never
                s.record_fault(Fault("diverged", s.me, f"committed seq {seq} differs from the new view's O set"))
                del s.committed[seq]
        s.next_seq = plan.max_seq + 1
        s.last_progress = s.view_started = now
        for pp, (seq, _, block) in zip(nv.pre_prepares, plan.entries):
            if seq > s.stable.seq:  # executed ones too: laggards need our votes
                self.r.ordering.accept(dataclasses.replace(pp, block=block), now)
        self.r.replay_future(nv.view, now)
        self.r.ordering.execute_ready(now)
        self.r.ordering.maybe_propose(now)


__all__ = ["NewViewPlan", "ViewChangeService"]
