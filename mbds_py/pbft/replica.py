"""The PBFT replica: a pure state machine driven by inputs, speaking through an outbox.

Inputs (call them from one thread / one asyncio task)::

    replica.start()                  # once, after construction or restore
    replica.on_request(slip)         # a slip from a local client -> None or refusal reason
    replica.on_requests(slips)       # ... a batch of them (one relayed REQUEST)
    replica.on_message(msg)          # a decoded message from a peer
    replica.on_wire(data)            # ... or its wire bytes
    replica.on_timer(now)            # when the time last passed to outbox.wake_at has come

Outputs go to the injected :class:`Outbox`: ``send`` / ``broadcast`` messages,
``deliver`` each applied block with its quorum certificate (in height order),
and ``wake_at`` the next instant ``on_timer`` must run.  The replica reads time
only from the injected ``clock`` and persists through the injected
:class:`~mbds_py.pbft.store.ReplicaStore` before sending anything that depends
on the write; it never blocks, sleeps or touches sockets.
"""

from __future__ import annotations

from typing import Callable, Protocol

from .checkpoint import CatchupService, CheckpointService
from .codec import decode_message
from .config import PbftConfig
from .crypto import Signer, Verifier
from .errors import MalformedMessage, MessageRejected, PbftConfigError
from .messages import (
    Blocks,
    Checkpoint,
    Commit,
    Fetch,
    Hold,
    Message,
    MessageAuth,
    NewView,
    PrePrepare,
    Prepare,
    Request,
    Status,
    ViewChange,
    Want,
)
from .ordering import OrderingService
from .state import Fault, ReplicaState, Slot
from .store import ReplicaStore
from .types import CertifiedBlock, Head, SlipEnvelope
from .viewchange import ViewChangeService

SlipValidator = Callable[[SlipEnvelope], "str | None"]
BodyCid = Callable[[tuple[SlipEnvelope, ...]], bytes]


class Outbox(Protocol):
    """Where a replica's outputs go; a network adapter implements it."""

    def send(self, to: int, msg: Message) -> None:
        """Send ``msg`` to replica ``to`` (best effort; the protocol retransmits)."""
        ...

    def broadcast(self, msg: Message) -> None:
        """Send ``msg`` to every other replica."""
        ...

    def deliver(self, block: CertifiedBlock) -> None:
        """A block was applied (height order); persist/publish/anchor it downstream."""
        ...

    def wake_at(self, when: float | None) -> None:
        """Call ``on_timer`` at clock time ``when`` (replaces the previous request)."""
        ...


class RecordingOutbox:
    """Outbox that just records outputs (unit tests, simple drivers)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int | None, Message]] = []
        self.delivered: list[CertifiedBlock] = []
        self.wake: float | None = None

    def send(self, to: int, msg: Message) -> None:
        self.sent.append((to, msg))

    def broadcast(self, msg: Message) -> None:
        self.sent.append((None, msg))

    def deliver(self, block: CertifiedBlock) -> None:
        self.delivered.append(block)

    def wake_at(self, when: float | None) -> None:
        self.wake = when

    def drain(self) -> list[tuple[int | None, Message]]:
        """Messages recorded since the last drain (``None`` destination = broadcast)."""
        out, self.sent = self.sent, []
        return out


def _accept_all(slip: SlipEnvelope) -> str | None:
    return None


def _no_cid(slips: tuple[SlipEnvelope, ...]) -> bytes:
    return b""


class Replica:
    """One PBFT replica of a hospital's private chain.

    ``validate_slip(slip)`` returns None or why the slip is invalid (signatures,
    identities: the node layer's business); ``body_cid(slips)`` returns the CID
    under which the block body is published and must be deterministic, because
    backups recompute it.  A store that already holds state is resumed from
    (see :meth:`restore`).
    """

    MAX_FUTURE = 1024

    def __init__(
        self,
        config: PbftConfig,
        me: int,
        signer: Signer,
        verifier: Verifier,
        clock: Callable[[], float],
        outbox: Outbox,
        store: ReplicaStore,
        *,
        validate_slip: SlipValidator = _accept_all,
        body_cid: BodyCid = _no_cid,
    ):
        if not 0 <= me < config.n or signer.address != config.validators[me]:
            raise PbftConfigError(f"signer address is not validator {me} of the configuration", field="validators")
        self.config = config
        self.me = me
        self.signer = signer
        self.verifier = verifier
        self.clock = clock
        self.outbox = outbox
        self.store = store
        self.validate_slip = validate_slip
        self.body_cid = body_cid
        self.auth = MessageAuth(config.domain, config.validators, verifier, config.scheme)
        self.state = ReplicaState(config, me, clock())
        self.ordering = OrderingService(self)
        self.checkpoints = CheckpointService(self)
        self.catchup = CatchupService(self)
        self.view_change = ViewChangeService(self)
        self._future: dict[int, list[Message]] = {}
        self._future_count = 0
        self._wake: float | None = None
        self._handlers: dict[type, Callable[[Message, float], None]] = {
            Request: self.ordering.on_request,
            PrePrepare: self.ordering.on_pre_prepare,
            Prepare: self.ordering.on_prepare,
            Commit: self.ordering.on_commit,
            Checkpoint: self.checkpoints.on_checkpoint,
            ViewChange: self.view_change.on_view_change,
            NewView: self.view_change.on_new_view,
            Status: self.catchup.on_status,
            Fetch: self.catchup.on_fetch,
            Blocks: self.catchup.on_blocks,
            Hold: self.ordering.on_hold,
            Want: self.ordering.on_want,
        }  # type: ignore[dict-item]
        self._resume()

    @classmethod
    def restore(cls, store: ReplicaStore, **kwargs) -> Replica:
        """Rebuild a replica after a crash from its durable ``store`` (other args as the constructor)."""
        return cls(store=store, **kwargs)

    # --- inputs -----------------------------------------------------------------------

    def start(self) -> None:
        """Announce ourselves (STATUS) and arm the timer; call once before other inputs."""
        now = self.clock()
        self.ordering.maybe_commit(now)
        self.catchup.tick(now)
        self._refresh_wake()

    def on_request(self, slip: SlipEnvelope) -> str | None:
        """Submit a client slip; returns None if taken, else why not (duplicates are no-ops)."""
        return self.on_requests([slip])[0]

    def on_requests(self, slips: list[SlipEnvelope]) -> list[str | None]:
        """Submit a batch of client slips (relayed to the primary in one signed REQUEST)."""
        now = self.clock()
        reasons = [self.ordering.submit(slip, now) for slip in slips]
        self.ordering.relay([slip for slip, reason in zip(slips, reasons) if reason is None])
        self.ordering.maybe_propose(now)
        self._refresh_wake()
        return reasons

    def on_wire(self, data: bytes) -> None:
        """Decode and handle a message from the network."""
        try:
            msg = decode_message(data)
        except MalformedMessage as exc:
            self.reject(exc.reason, -1, str(exc))
            return
        self.on_message(msg)

    def on_message(self, msg: Message) -> None:
        """Verify and handle a peer message; invalid ones are recorded and ignored."""
        now = self.clock()
        try:
            self.auth.check(msg)
            if msg.sender != self.me:
                self._handlers[type(msg)](msg, now)
        except MessageRejected as exc:
            self.reject(exc.reason, getattr(msg, "sender", -1), str(exc))
        self._refresh_wake()

    def on_timer(self, now: float) -> None:
        """Run everything due at ``now`` (status beacon, batch cut, timeouts)."""
        s = self.state
        if s.fetch_deadline is not None and now >= s.fetch_deadline:
            s.fetch_deadline = None
        if now >= s.status_deadline:
            self.catchup.tick(now)
        if s.vc_deadline is not None and now >= s.vc_deadline:
            self.view_change.on_timeout(now)
        deadline = self.ordering.request_deadline()
        if deadline is not None and now >= deadline:
            self.view_change.start(s.view + 1, now)
        self.ordering.maybe_propose(now)
        self._refresh_wake()

    # --- read-only views --------------------------------------------------------------

    @property
    def view(self) -> int:
        return self.state.view

    @property
    def is_primary(self) -> bool:
        return self.state.active and self.state.is_primary

    @property
    def head(self) -> Head:
        """Tip of the applied chain."""
        return self.state.head

    @property
    def faults(self) -> list[Fault]:
        """Evidence of misbehaviour seen so far (equivocation, double votes, invalid blocks)."""
        return self.state.faults

    # --- helpers for the services -----------------------------------------------------

    def sign(self, msg: Message) -> Message:
        return self.auth.sign(msg, self.signer)

    def send(self, to: int, msg: Message) -> None:
        if to != self.me:
            self.outbox.send(to, msg)

    def broadcast(self, msg: Message) -> None:
        self.outbox.broadcast(msg)

    def reject(self, reason: str, sender: int, detail: str) -> None:
        s = self.state
        s.rejections.append((reason, sender, detail))
        s.rejection_counts[reason] = s.rejection_counts.get(reason, 0) + 1

    def buffer_future(self, msg: Message) -> None:
        """Keep an early message of a view we have not installed yet (bounded)."""
        if self._future_count >= self.MAX_FUTURE:
            self.reject("future-overflow", msg.sender, "too many messages for future views")
            return
        self._future.setdefault(msg.view, []).append(msg)  # type: ignore[union-attr]
        self._future_count += 1

    def replay_future(self, view: int, now: float) -> None:
        """Handle the buffered messages of ``view`` (already verified); drop older views."""
        msgs = self._future.pop(view, [])
        for old in [v for v in self._future if v < view]:
            del self._future[old]
        self._future_count = sum(len(v) for v in self._future.values())
        for msg in msgs:
            try:
                self._handlers[type(msg)](msg, now)
            except MessageRejected as exc:
                self.reject(exc.reason, msg.sender, str(exc))

    def _refresh_wake(self) -> None:
        s = self.state
        candidates = [
            s.status_deadline,
            s.vc_deadline,
            s.fetch_deadline,
            self.ordering.request_deadline(),
            self.ordering.batch_deadline(),
        ]
        wake = min(t for t in candidates if t is not None)
        if wake != self._wake:
            self._wake = wake
            self.outbox.wake_at(wake)

    # --- recovery ---------------------------------------------------------------------

    def _own_checkpoint(self, seq: int, head: Head) -> None:
        cp = self.sign(Checkpoint(seq, head.height, head.hash, head.timestamp, self.me))
        self.state.checkpoint_votes.setdefault(seq, {})[self.me] = cp

    def _resume(self) -> None:
        """Load durable state (a fresh store yields the genesis state)."""
        s, stored, now = self.state, self.store.load(), self.clock()
        if stored.stable is not None:
            s.stable = stored.stable
        s.last_executed = stored.last_executed
        s.head = stored.head or self.config.genesis
        # Re-sign the checkpoints passed since the stable one (they died with the process).
        k = self.config.checkpoint_interval
        boundary = (s.stable.seq // k + 1) * k
        head = s.stable.head
        for certified in self.store.iter_blocks():
            header = certified.block.header
            s.applied_slips.update(x.slip_id for x in certified.block.slips)
            while boundary < header.seq and boundary <= s.last_executed:
                self._own_checkpoint(boundary, head)
                boundary += k
            if header.seq > s.stable.seq:
                head = Head(header.height, self.config.scheme.header_digest(header), header.timestamp)
                s.applied_digests[header.seq] = head.hash
        while boundary <= s.last_executed:
            self._own_checkpoint(boundary, head)
            boundary += k
        s.view, s.active, s.new_view = stored.view, stored.active, stored.new_view
        s.prepared_certs = {cert.seq: cert for cert in stored.prepared}
        s.next_seq = s.last_executed + 1
        if not s.active:
            vc = self.view_change.view_change_message()
            s.my_view_change = vc
            s.view_changes[self.me] = vc
            return
        for pp in stored.pre_prepares:
            if pp.view != s.view or pp.seq <= s.stable.seq:
                continue
            slot = Slot(pp.seq, pp, now)
            s.slots[pp.seq] = slot
            s.next_seq = max(s.next_seq, pp.seq + 1)
            if pp.block is not None and pp.seq > s.last_executed:
                s.pool.take(pp.block.slips, pp.seq, now)
            if not s.is_primary:
                s.prepares.add(self.sign(Prepare(s.view, pp.seq, pp.digest, self.me)))
            cert = s.prepared_certs.get(pp.seq)
            if cert is not None and cert.view == s.view and cert.digest == pp.digest:
                for prepare in cert.prepares:
                    s.prepares.add(prepare)
                slot.prepared = True  # COMMIT is (re)sent by maybe_commit in start()


__all__ = ["Outbox", "RecordingOutbox", "Replica"]
